/**
 * The NAT-strategy compliance suite. Every hard-NAT strategy, built-in or third-party, must
 * pass it; plugin authors run it from their own tests:
 *
 *   import { describeNatStrategyCompliance } from 'wzp/compliance';
 *   describeNatStrategyCompliance(myStrategyFactory);
 *
 * `natStrategyComplianceChecks` returns the same checks as plain functions for other runners
 * (a check fails by throwing); `runNatStrategyTrials` + `formatNatStrategyTrials` give the
 * per-scenario numbers alone (for `npm run bench`).
 *
 * Everything runs in the NAT simulator (core/nat/simulator.ts): no packet leaves the process.
 * Over a matrix of NAT pairs (every ordered pair of NAT_COMPLIANCE_NATS, so both orders), the
 * suite checks that applicable() agrees on both sides and needs both consents, that every plan
 * stays inside the limits it is given and its own budget and aims only at the peer's announced
 * addresses, that plans depend on nothing but the context (same random() sequence, same plan),
 * and, in seeded simulated calls, that the strategy reaches the success rate its plans claim.
 *
 * The statistical rule: in the applicable trials of a scenario, trial i's plans claim p_i (the
 * larger of the two sides' expectedSuccess). Under that claim the number of successes S is
 * Poisson-binomial; the scenario fails when the observed count is in the lower tail below
 * `alpha` (default 0.00135, the one-sided tail of 3 standard deviations of a normal), computed
 * exactly rather than by the normal approximation, which is poor near claims of 0.95-1. For
 * 200 trials at a claim of 0.9 that means at least 166 successes (3σ would say 167.3); a claim
 * of 1 tolerates no failure.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Prng } from '../media/prng.js';
import {
  type CallSimulation,
  type SimNatConfig,
  type SimSide,
  type SimulatedProfile,
  planViolations,
  simulateCall,
  simulateNatProfile,
  simulatedContexts,
} from '../nat/simulator.js';
import { DEFAULT_STRATEGY_LIMITS, type NatProfile, type NatStrategy, type NatStrategyFactory, type ProbePlan, type StrategyContext, type StrategyLimits } from '../nat/strategy-types.js';

export type { CallSimulation, SimNatConfig, SimSide, SimulatedProfile, SimulationConfig } from '../nat/simulator.js';
export { SIM_SERVER, planViolations, probeOrder, simulateCall, simulateNatProfile, simulateProfiles, simulatedContexts } from '../nat/simulator.js';

/** The NAT types of the matrix (the `-busy` ones carry 10 other flows per second). */
export const NAT_COMPLIANCE_NATS: Readonly<Record<string, Readonly<SimNatConfig>>> = deepFreeze({
  'full-cone': { mapping: 'endpoint-independent', filtering: 'endpoint-independent', allocation: 'port-preserving' },
  // Random allocation of its one mapping: measured as 'fixed' (a port that is not the local one).
  'address-restricted': { mapping: 'endpoint-independent', filtering: 'address-dependent', allocation: 'random' },
  // Linux masquerade (FACTS.md: the lab's default NAT).
  'port-restricted': { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', allocation: 'port-preserving' },
  'symmetric-sequential-1': { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', allocation: 'sequential', delta: 1 },
  'symmetric-sequential-1-busy': { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', allocation: 'sequential', delta: 1, backgroundPerSecond: 10 },
  'symmetric-sequential-2': { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', allocation: 'sequential', delta: 2 },
  'symmetric-sequential-2-busy': { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', allocation: 'sequential', delta: 2, backgroundPerSecond: 10 },
  'symmetric-random': { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', allocation: 'random' },
  // Keeps the local port when free, else the next free one: from one socket it looks sequential.
  'symmetric-port-preserving': { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', allocation: 'port-preserving' },
});

export interface NatStrategyScenario {
  /** "a-type × b-type"; side a is the caller (controlling). */
  name: string;
  a: SimNatConfig;
  b: SimNatConfig;
}

/**
 * Every ordered pair of the named NAT types (default: all of NAT_COMPLIANCE_NATS, 81 pairs:
 * both orders, and each type with itself).
 */
export function natComplianceScenarios(names: readonly string[] = Object.keys(NAT_COMPLIANCE_NATS)): NatStrategyScenario[] {
  for (const name of names) {
    if (!Object.hasOwn(NAT_COMPLIANCE_NATS, name)) throw new RangeError(`no NAT type ${JSON.stringify(name)}; known: ${Object.keys(NAT_COMPLIANCE_NATS).join(', ')}`);
  }
  return names.flatMap((a) => names.map((b) => ({ name: `${a} × ${b}`, a: { ...NAT_COMPLIANCE_NATS[a] }, b: { ...NAT_COMPLIANCE_NATS[b] } })));
}

export interface NatStrategyComplianceOptions {
  /** Simulated calls per scenario (default 200). */
  trials?: number;
  /** First seed; trial i uses seed + i (default 1). */
  seed?: number;
  /** Seeds per scenario for the applicability, limits and determinism checks (default 3). */
  profileSeeds?: number;
  /** One-way wan latency, ms (default 20). */
  latencyMs?: number;
  /** Wan loss, [0, 1) (default 0). */
  lossRate?: number;
  /** Default: natComplianceScenarios(). */
  scenarios?: NatStrategyScenario[];
  /** The limits plans get in the trials (default DEFAULT_STRATEGY_LIMITS). */
  limits?: StrategyLimits;
  /** Further limits every plan must also fit when given them (default: two tight sets, one without extra sockets). */
  otherLimits?: StrategyLimits[];
  /** Lower-tail probability below which a measured success count refutes the claim (default 0.00135). */
  alpha?: number;
}

export interface NatStrategyComplianceCheck {
  name: string;
  /** False only for checks that inspect the factory without creating a strategy. */
  requiresAvailability: boolean;
  /** Throws when the check fails; `log` receives the per-scenario summary where there is one. */
  run: (log?: (line: string) => void) => void;
}

export interface NatStrategyTrialSummary {
  scenario: string;
  trials: number;
  /** Trials in which both sides found the strategy applicable. */
  applicable: number;
  /** Applicable trials in which a probe was answered. */
  successes: number;
  successRate?: number;
  /** Mean claimed expectedSuccess over the applicable trials. */
  claimed?: number;
  /** The fewest successes that do not refute the claims (see the module comment). */
  minSuccesses?: number;
  passed: boolean;
  /** Median time from the plans' start to the first answered probe (successful trials). */
  medianMsToSuccess?: number;
  /** Applicable trials in which the plain checks had already got through. */
  checksSucceeded: number;
  /** Probes sent per side per applicable trial, and the largest plan budget seen. */
  packets: Record<SimSide, { mean: number; max: number; budget: number }>;
  /** Extra sockets opened per side, and the largest plan's `sockets`. */
  sockets: Record<SimSide, { max: number; budget: number }>;
  /** Trials in which a side sent more probes, opened more sockets, probed faster or later than its plan (or the limits) allowed. */
  overBudget: number;
  /** Trials that could not run (a plan refused, applicable() disagreeing, a throw), first few. */
  errors: string[];
  errorCount: number;
}

interface Settings {
  trials: number;
  seed: number;
  profileSeeds: number;
  latencyMs: number;
  lossRate: number;
  scenarios: NatStrategyScenario[];
  limits: StrategyLimits;
  otherLimits: StrategyLimits[];
  alpha: number;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const SEMVER_RE = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const DEFAULT_ALPHA = 0.00135;
const MAX_DESCRIBE_CHARS = 200;
const TIGHT_LIMITS: readonly StrategyLimits[] = [
  { maxPackets: 100, maxSockets: 8, maxMs: 2_000, maxRatePerSecond: 50 },
  { maxPackets: 20, maxSockets: 0, maxMs: 1_000, maxRatePerSecond: 20 },
];

function settingsFrom(options: NatStrategyComplianceOptions): Settings {
  const trials = options.trials ?? 200;
  if (!Number.isInteger(trials) || trials < 1 || trials > 100_000) throw new RangeError(`trials must be an integer in 1..100000, got ${trials}`);
  const alpha = options.alpha ?? DEFAULT_ALPHA;
  if (!(alpha > 0 && alpha < 0.5)) throw new RangeError(`alpha must be in (0, 0.5), got ${alpha}`);
  return {
    trials,
    seed: options.seed ?? 1,
    profileSeeds: Math.max(1, options.profileSeeds ?? 3),
    latencyMs: options.latencyMs ?? 20,
    lossRate: options.lossRate ?? 0,
    scenarios: options.scenarios ?? natComplianceScenarios(),
    limits: options.limits ?? { ...DEFAULT_STRATEGY_LIMITS },
    otherLimits: options.otherLimits ?? TIGHT_LIMITS.map((l) => ({ ...l })),
    alpha,
  };
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/** P[S ≤ s] for s = 0..n, S the number of successes of independent trials with chances `claims`. */
export function successCountCdf(claims: readonly number[]): number[] {
  let dist = [1];
  for (const p of claims) {
    const next = new Array<number>(dist.length + 1).fill(0);
    for (let k = 0; k < dist.length; k++) {
      next[k] += dist[k] * (1 - p);
      next[k + 1] += dist[k] * p;
    }
    dist = next;
  }
  let sum = 0;
  return dist.map((q) => (sum += q));
}

/** The fewest successes whose lower tail under `claims` is at least `alpha` (0 when every count passes). */
export function minPassingSuccesses(claims: readonly number[], alpha = DEFAULT_ALPHA): number {
  const cdf = successCountCdf(claims);
  const s = cdf.findIndex((q) => q >= alpha);
  return s === -1 ? claims.length : s;
}

// ---------------------------------------------------------------------------------------------
// Trials
// ---------------------------------------------------------------------------------------------

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The claim of one call: the stronger of the two halves' claims (0 when neither side plans). */
function claimOf(plans: Partial<Record<SimSide, ProbePlan>>): number {
  return Math.max(0, ...(['a', 'b'] as const).map((side) => plans[side]?.expectedSuccess ?? 0));
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

type Contexts = Readonly<Record<SimSide, Omit<StrategyContext, 'random'>>>;

/** Freezes a plain-data tree: a strategy that writes into the context it is given throws instead of corrupting the cache. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * Measured profiles and the contexts made of them, memoised: a side's measurement depends only
 * on its NAT config, side and seed (simulateNatProfile), so 9 NAT types × seeds serve all 81
 * pairs, and a trial of a pair the strategy does not apply to costs two applicable() calls,
 * not a simulated call. Everything cached is frozen.
 */
class ProfileCache {
  private readonly profiles = new Map<string, SimulatedProfile>();
  private readonly contextsByKey = new Map<string, Contexts>();
  private readonly natKeys = new WeakMap<SimNatConfig, string>();
  constructor(private readonly settings: Settings) {}

  contexts(scenario: NatStrategyScenario, seed: number): Contexts {
    const key = `${this.natKey(scenario.a)} ${this.natKey(scenario.b)} ${seed}`;
    let contexts = this.contextsByKey.get(key);
    if (contexts === undefined) {
      contexts = deepFreeze(simulatedContexts({ a: this.profile(scenario.a, 'a', seed), b: this.profile(scenario.b, 'b', seed) }));
      this.contextsByKey.set(key, contexts);
    }
    return contexts;
  }

  private natKey(nat: SimNatConfig): string {
    let key = this.natKeys.get(nat);
    if (key === undefined) {
      key = JSON.stringify(nat);
      this.natKeys.set(nat, key);
    }
    return key;
  }

  private profile(nat: SimNatConfig, side: SimSide, seed: number): SimulatedProfile {
    const key = `${side} ${seed} ${this.natKey(nat)}`;
    let profile = this.profiles.get(key);
    if (profile === undefined) {
      profile = deepFreeze(simulateNatProfile(nat, { seed, side, latencyMs: this.settings.latencyMs, lossRate: this.settings.lossRate }));
      this.profiles.set(key, profile);
    }
    return profile;
  }
}

function trialsOf(strategy: NatStrategy, scenario: NatStrategyScenario, settings: Settings, cache: ProfileCache): NatStrategyTrialSummary {
  const claims: number[] = [];
  const times: number[] = [];
  const sent: Record<SimSide, number[]> = { a: [], b: [] };
  const summary: NatStrategyTrialSummary = {
    scenario: scenario.name,
    trials: settings.trials,
    applicable: 0,
    successes: 0,
    passed: false,
    checksSucceeded: 0,
    packets: { a: { mean: 0, max: 0, budget: 0 }, b: { mean: 0, max: 0, budget: 0 } },
    sockets: { a: { max: 0, budget: 0 }, b: { max: 0, budget: 0 } },
    overBudget: 0,
    errors: [],
    errorCount: 0,
  };
  for (let i = 0; i < settings.trials; i++) {
    let call: CallSimulation;
    try {
      // The call would find the strategy inapplicable on both sides: nothing to simulate. Any
      // other answer (true, or the two sides disagreeing) goes to the simulator, which decides.
      const contexts = cache.contexts(scenario, settings.seed + i);
      const onA = strategy.applicable(withRandom(contexts.a, settings.seed + i));
      const onB = strategy.applicable(withRandom(contexts.b, settings.seed + i));
      if (onA === false && onB === false) continue;
      call = simulateCall(
        { a: scenario.a, b: scenario.b, latencyMs: settings.latencyMs, lossRate: settings.lossRate },
        { seed: settings.seed + i, strategy, limits: settings.limits },
      );
    } catch (error) {
      summary.errorCount++;
      if (summary.errors.length < 3) summary.errors.push(`seed ${settings.seed + i}: ${errorText(error)}`);
      continue;
    }
    if (call.applicable !== true) continue;
    summary.applicable++;
    claims.push(claimOf(call.plans));
    if (call.success) {
      summary.successes++;
      if (call.msToSuccess !== undefined) times.push(call.msToSuccess);
    }
    if (call.checks.succeeded) summary.checksSucceeded++;
    for (const side of ['a', 'b'] as const) {
      const plan = call.plans[side];
      const stats = call.sides[side];
      sent[side].push(stats.probesSent);
      const packets = summary.packets[side];
      packets.max = Math.max(packets.max, stats.probesSent);
      packets.budget = Math.max(packets.budget, plan?.budget.packets ?? 0);
      const sockets = summary.sockets[side];
      sockets.max = Math.max(sockets.max, stats.socketsOpened);
      sockets.budget = Math.max(sockets.budget, plan?.sockets ?? 0);
      // Counted here from the simulator's per-side statistics, independently of its own guard.
      const late = stats.lastProbeAtMs !== undefined && stats.lastProbeAtMs >= (plan?.budget.ms ?? 0);
      // Paced at ratePerSecond from startAfterMs to budget.ms: at most ceil(span × rate) probes.
      const byRate = plan === undefined ? 0 : Math.ceil(((plan.budget.ms - plan.startAfterMs) * plan.ratePerSecond) / 1000 - 1e-9);
      const overPlan = stats.probesSent > Math.min(plan?.budget.packets ?? 0, byRate) || stats.socketsOpened > (plan?.sockets ?? 0) || late;
      const overLimits = stats.probesSent > settings.limits.maxPackets || stats.socketsOpened > settings.limits.maxSockets;
      if (overPlan || overLimits) summary.overBudget++;
    }
  }
  for (const side of ['a', 'b'] as const) {
    summary.packets[side].mean = sent[side].length === 0 ? 0 : sent[side].reduce((x, y) => x + y, 0) / sent[side].length;
  }
  if (summary.applicable > 0) {
    summary.successRate = summary.successes / summary.applicable;
    summary.claimed = claims.reduce((x, y) => x + y, 0) / claims.length;
    summary.minSuccesses = minPassingSuccesses(claims, settings.alpha);
  }
  summary.medianMsToSuccess = median(times);
  summary.passed = summary.errorCount === 0 && summary.overBudget === 0 && summary.successes >= (summary.minSuccesses ?? 0);
  return summary;
}

/**
 * Runs `options.trials` seeded simulated calls per scenario with the factory's strategy on both
 * sides, and summarises each scenario (see NatStrategyTrialSummary and the module comment).
 */
export function runNatStrategyTrials(factory: NatStrategyFactory, options: NatStrategyComplianceOptions = {}): NatStrategyTrialSummary[] {
  const settings = settingsFrom(options);
  const strategy = factory.create();
  const cache = new ProfileCache(settings);
  return settings.scenarios.map((scenario) => trialsOf(strategy, scenario, settings, cache));
}

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);

/** The summaries as a table (one line per scenario; scenarios where the strategy never applied are left out). */
export function formatNatStrategyTrials(summaries: readonly NatStrategyTrialSummary[], options: { all?: boolean } = {}): string {
  const rows = summaries.filter((s) => options.all === true || s.applicable > 0 || s.errorCount > 0);
  if (rows.length === 0) return 'the strategy applied to none of the scenarios';
  const header = ['scenario', 'applicable', 'success', 'claimed', 'needs', 'median ms', 'probes a/b (budget)', 'sockets a/b (budget)', 'checks ok', 'verdict'];
  const lines = rows.map((s) => [
    s.scenario,
    `${s.applicable}/${s.trials}`,
    `${s.successes} (${pct(s.successRate)})`,
    pct(s.claimed),
    s.minSuccesses === undefined ? '-' : `≥${s.minSuccesses}`,
    s.medianMsToSuccess === undefined ? '-' : s.medianMsToSuccess.toFixed(0),
    `${s.packets.a.mean.toFixed(0)}/${s.packets.b.mean.toFixed(0)} (${s.packets.a.budget}/${s.packets.b.budget})`,
    `${s.sockets.a.max}/${s.sockets.b.max} (${s.sockets.a.budget}/${s.sockets.b.budget})`,
    `${s.checksSucceeded}`,
    s.passed ? 'ok' : s.errorCount > 0 ? `ERROR ${s.errors[0] ?? ''}` : s.overBudget > 0 ? 'OVER BUDGET' : 'BELOW CLAIM',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const format = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [format(header), ...lines.map(format)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

interface ScenarioContexts {
  scenario: NatStrategyScenario;
  seed: number;
  contexts: Contexts;
}

/** A context with its own random() stream (so that calls can be repeated exactly); the data stays shared and frozen. */
function withRandom(context: Omit<StrategyContext, 'random'>, seed: number): StrategyContext {
  const rng = new Prng(seed);
  return { ...context, random: () => rng.next() };
}

function withConsent(contexts: Contexts, refuser: SimSide): Contexts {
  const refused = (side: SimSide, which: 'local' | 'remote') => ({ ...contexts[side], [which]: Object.freeze({ ...contexts[side][which], consent: false }) });
  return refuser === 'a' ? { a: refused('a', 'local'), b: refused('b', 'remote') } : { a: refused('a', 'remote'), b: refused('b', 'local') };
}

function limitsText(limits: StrategyLimits): string {
  return `${limits.maxPackets} packets, ${limits.maxSockets} sockets, ${limits.maxMs} ms, ${limits.maxRatePerSecond}/s`;
}

function failWith(what: string, problems: string[]): void {
  if (problems.length === 0) return;
  const shown = problems.slice(0, 12);
  const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : '';
  assert.fail(`${what}:\n  ${shown.join('\n  ')}${more}`);
}

/** The compliance checks for one NAT-strategy factory, in a stable order. */
export function natStrategyComplianceChecks(factory: NatStrategyFactory, options: NatStrategyComplianceOptions = {}): NatStrategyComplianceCheck[] {
  const settings = settingsFrom(options);
  let strategy: NatStrategy | undefined;
  const strategyOf = () => (strategy ??= factory.create());
  // Profiles and trials are computed once and shared by the checks that read them.
  const cache = new ProfileCache(settings);
  let pairs: ScenarioContexts[] | undefined;
  const pairsOf = (): ScenarioContexts[] =>
    (pairs ??= settings.scenarios.flatMap((scenario) =>
      Array.from({ length: settings.profileSeeds }, (_, i) => ({ scenario, seed: settings.seed + i, contexts: cache.contexts(scenario, settings.seed + i) })),
    ));
  let trials: NatStrategyTrialSummary[] | undefined;
  const trialsOfAll = () => (trials ??= settings.scenarios.map((scenario) => trialsOf(strategyOf(), scenario, settings, cache)));

  return [
    { name: 'metadata is valid', requiresAvailability: false, run: () => checkMetadata(factory) },
    { name: 'is available here', requiresAvailability: false, run: () => checkAvailable(factory) },
    { name: 'the strategy matches its factory', requiresAvailability: true, run: () => checkInstance(factory, strategyOf()) },
    { name: 'describeFor() gives one line or nothing', requiresAvailability: true, run: () => checkDescribeFor(strategyOf(), settings) },
    { name: 'applicable() agrees on both sides and needs both consents', requiresAvailability: true, run: () => checkApplicable(strategyOf(), pairsOf()) },
    {
      name: 'plans stay inside their limits and budget, aimed only at announced addresses',
      requiresAvailability: true,
      run: () => checkPlans(strategyOf(), pairsOf(), [settings.limits, ...settings.otherLimits]),
    },
    { name: 'plans are deterministic for the same random()', requiresAvailability: true, run: () => checkDeterminism(strategyOf(), pairsOf(), settings.limits) },
    {
      name: `reaches its claimed success rate in the simulator (${settings.trials} calls per scenario)`,
      requiresAvailability: true,
      run: (log) => checkSuccessRates(trialsOfAll(), log),
    },
    { name: 'simulated calls stay within each plan’s packets, sockets and time', requiresAvailability: true, run: () => checkBudgets(trialsOfAll()) },
  ];
}

/**
 * Registers the compliance checks as node:test tests in a `describe` block. When the
 * strategy is unavailable here, the checks that need an instance are skipped with the reason.
 * The success-rate check prints its per-scenario table as test diagnostics.
 */
export function describeNatStrategyCompliance(factory: NatStrategyFactory, options: NatStrategyComplianceOptions = {}): void {
  const availability = safeAvailability(factory);
  const skip = availability.available ? false : `NAT strategy unavailable: ${availability.reason}`;
  describe(`NAT strategy compliance: ${String(factory.name)}`, () => {
    for (const check of natStrategyComplianceChecks(factory, options)) {
      test(check.name, { skip: check.requiresAvailability && skip }, (t) => check.run((line) => t.diagnostic(line)));
    }
  });
}

function safeAvailability(factory: NatStrategyFactory): { available: boolean; reason?: string } {
  try {
    return factory.availability();
  } catch (error) {
    return { available: false, reason: `availability() threw ${errorText(error)}` };
  }
}

function checkMetadata(factory: NatStrategyFactory): void {
  assert.match(String(factory.name), NAME_RE, 'name: 1-32 characters of [a-z0-9-], starting with a letter or digit');
  assert.match(String(factory.version), SEMVER_RE, 'version must be semver');
  assert.ok(typeof factory.description === 'string' && factory.description.trim().length > 0, 'description must be non-empty');
  assert.equal(typeof factory.availability, 'function', 'availability must be a function');
  assert.equal(typeof factory.create, 'function', 'create must be a function');
}

function checkAvailable(factory: NatStrategyFactory): void {
  const availability = factory.availability();
  assert.equal(typeof availability.available, 'boolean', 'availability() must return { available: boolean, ... }');
  if (!availability.available) {
    assert.equal(typeof availability.reason, 'string', 'an unavailable strategy must give a reason');
    assert.fail(`strategy is unavailable: ${availability.reason}${availability.hint ? ` (hint: ${availability.hint})` : ''}`);
  }
}

function checkInstance(factory: NatStrategyFactory, strategy: NatStrategy): void {
  assert.equal(strategy.name, factory.name, 'the strategy’s name must be its factory’s name (plans and reports carry it)');
  assert.equal(strategy.version, factory.version, 'the strategy’s version must be its factory’s version');
  assert.ok(typeof strategy.description === 'string' && strategy.description.trim().length > 0, 'the strategy’s description must be non-empty');
  for (const method of ['applicable', 'plan', 'describeFor'] as const) assert.equal(typeof strategy[method], 'function', `${method} must be a function`);
}

function checkDescribeFor(strategy: NatStrategy, settings: Settings): void {
  const problems: string[] = [];
  const profiles: Array<[string, NatProfile]> = Object.entries(NAT_COMPLIANCE_NATS).map(([name, nat]) => [
    name,
    simulateNatProfile(nat, { seed: settings.seed, latencyMs: settings.latencyMs }).profile,
  ]);
  const unknown: NatProfile = { mapping: 'unknown', filtering: 'unknown', allocation: { kind: 'unknown', recentPorts: [] }, reflexive: [], consent: true };
  profiles.push(['unmeasured (all unknown)', unknown]);
  for (const [name, profile] of profiles) {
    let line: unknown;
    try {
      line = strategy.describeFor(deepFreeze(profile));
    } catch (error) {
      problems.push(`${name}: describeFor() threw ${errorText(error)}`);
      continue;
    }
    if (line === undefined) continue;
    if (typeof line !== 'string' || line.trim().length === 0 || line.includes('\n') || line.length > MAX_DESCRIBE_CHARS) {
      problems.push(`${name}: describeFor() must return undefined or one non-empty line of at most ${MAX_DESCRIBE_CHARS} characters, got ${JSON.stringify(line)}`);
    }
  }
  failWith('describeFor() misbehaved', problems);
}

function checkApplicable(strategy: NatStrategy, pairs: ScenarioContexts[]): void {
  const problems: string[] = [];
  const ask = (context: Omit<StrategyContext, 'random'>, seed: number): unknown => strategy.applicable(withRandom(context, seed));
  for (const { scenario, seed, contexts } of pairs) {
    const where = `${scenario.name} (seed ${seed})`;
    try {
      const onA = ask(contexts.a, seed);
      const onB = ask(contexts.b, seed);
      if (typeof onA !== 'boolean' || typeof onB !== 'boolean') problems.push(`${where}: applicable() must return a boolean, got ${String(onA)} / ${String(onB)}`);
      else if (onA !== onB) problems.push(`${where}: applicable() is ${onA} on side a but ${onB} on side b (it sees the same pair swapped)`);
      for (const refuser of ['a', 'b'] as const) {
        const refused = withConsent(contexts, refuser);
        const answers = [ask(refused.a, seed), ask(refused.b, seed)];
        if (answers.some((x) => x !== false)) problems.push(`${where}: side ${refuser} did not consent, yet applicable() is ${answers.join(' / ')} (a / b)`);
      }
    } catch (error) {
      problems.push(`${where}: applicable() threw ${errorText(error)}`);
    }
  }
  failWith('applicable() must be a boolean, the same on both sides, and false without both consents', problems);
}

function checkPlans(strategy: NatStrategy, pairs: ScenarioContexts[], limitSets: StrategyLimits[]): void {
  const problems: string[] = [];
  for (const { scenario, seed, contexts } of pairs) {
    for (const side of ['a', 'b'] as const) {
      for (const limits of limitSets) {
        const where = `${scenario.name} (seed ${seed}), side ${side}, limits ${limitsText(limits)}`;
        try {
          const context = withRandom(contexts[side], seed);
          if (strategy.applicable(context) !== true) continue;
          const plan = strategy.plan(withRandom(contexts[side], seed), { ...limits });
          if (plan === undefined) continue;
          for (const problem of planViolations(plan, contexts[side], limits, strategy.name)) problems.push(`${where}: ${problem}`);
        } catch (error) {
          problems.push(`${where}: threw ${errorText(error)}`);
        }
      }
    }
  }
  failWith('plans must fit the limits they are given and their own budget, and aim only at the peer’s announced addresses', problems);
}

function checkDeterminism(strategy: NatStrategy, pairs: ScenarioContexts[], limits: StrategyLimits): void {
  const problems: string[] = [];
  for (const { scenario, seed, contexts } of pairs) {
    for (const side of ['a', 'b'] as const) {
      const where = `${scenario.name} (seed ${seed}), side ${side}`;
      try {
        if (strategy.applicable(withRandom(contexts[side], seed)) !== true) continue;
        const first = strategy.plan(withRandom(contexts[side], seed), { ...limits });
        const second = strategy.plan(withRandom(contexts[side], seed), { ...limits });
        try {
          assert.deepStrictEqual(second, first);
        } catch {
          problems.push(`${where}: two plans from the same context and random() sequence differ (use context.random(), never Math.random() or the clock)`);
        }
      } catch (error) {
        problems.push(`${where}: threw ${errorText(error)}`);
      }
    }
  }
  failWith('plans must depend only on the context', problems);
}

function checkSuccessRates(summaries: NatStrategyTrialSummary[], log?: (line: string) => void): void {
  const table = formatNatStrategyTrials(summaries);
  if (log) for (const line of table.split('\n')) log(line);
  const failed = summaries.filter((s) => s.errorCount > 0 || s.successes < (s.minSuccesses ?? 0));
  if (failed.length === 0) return;
  const problems = failed.map((s) =>
    s.errorCount > 0
      ? `${s.scenario}: ${s.errorCount} calls could not run: ${s.errors.join(' | ')}`
      : `${s.scenario}: ${s.successes} of ${s.applicable} applicable calls connected (${pct(s.successRate)}); the plans claimed ${pct(s.claimed)} on average, which needs at least ${s.minSuccesses}`,
  );
  failWith(`the measured success rate is below the claim (lower tail under the claims < alpha)\n${table}\n`, problems);
}

function checkBudgets(summaries: NatStrategyTrialSummary[]): void {
  // The simulator refuses plans over their limits and holds its own execution to each plan (an
  // InternalError); this recounts from its statistics, so a regression in either is caught.
  const problems = summaries.flatMap((s) => [
    ...(s.overBudget > 0 ? [`${s.scenario}: ${s.overBudget} calls sent more probes, opened more sockets, or probed faster or later than planned`] : []),
    ...s.errors.filter((e) => e.includes('InternalError')).map((e) => `${s.scenario}: ${e}`),
  ]);
  failWith('simulated calls went over a plan’s budget', problems);
}

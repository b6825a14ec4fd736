/**
 * The NAT-strategy compliance suite (core/compliance/nat-strategy.ts), on small strategies
 * written here: a correct one passes (and runs as a plugin author would run it), and each
 * misbehaving one is caught by the check that covers its fault, so passing the suite means
 * something.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type NatStrategyComplianceOptions,
  describeNatStrategyCompliance,
  formatNatStrategyTrials,
  minPassingSuccesses,
  natComplianceScenarios,
  natStrategyComplianceChecks,
  runNatStrategyTrials,
  successCountCdf,
} from '../../core/compliance/nat-strategy.js';
import type { NatProfile, NatStrategy, NatStrategyFactory, ProbePlan, StrategyContext, StrategyLimits } from '../../core/nat/strategy-types.js';

const EIM = 'endpoint-independent';

/**
 * A correct toy: between two endpoint-independent (cone) mappings, each side probes the
 * peer's reflexive endpoint from the call's socket. Simultaneous sends open both filters, so it
 * claims 0.95 (it gets 100% in the simulator; a claim may be modest).
 */
class ConeToy implements NatStrategy {
  readonly name: string = 'cone-toy';
  readonly version: string = '1.0.0';
  readonly description: string = 'aims at the peer’s reflexive address when both mappings are endpoint-independent';

  applicable(c: StrategyContext): boolean {
    return c.local.consent && c.remote.consent && c.local.mapping === EIM && c.remote.mapping === EIM && c.remote.reflexive.length > 0;
  }

  plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
    const targets = c.remote.reflexive.filter((e) => c.remoteAddresses.includes(e.address)).slice(0, 1);
    if (targets.length === 0) return undefined;
    return {
      strategy: this.name,
      sockets: 0,
      targets,
      startAfterMs: 0,
      ratePerSecond: Math.min(20, limits.maxRatePerSecond),
      budget: { packets: Math.min(10, limits.maxPackets), ms: Math.min(1000, limits.maxMs) },
      expectedSuccess: 0.95,
      rationale: 'both mappings are endpoint-independent: the reflexive address is where the peer is',
    };
  }

  describeFor(local: NatProfile): string | undefined {
    return local.mapping === EIM ? 'direct calls with cone peers: aims at their reflexive address' : undefined;
  }
}

function factoryOf(make: () => NatStrategy, overrides: Partial<NatStrategyFactory> = {}): NatStrategyFactory {
  const sample = make();
  return {
    name: sample.name,
    version: sample.version,
    description: sample.description,
    availability: () => ({ available: true }),
    create: make,
    ...overrides,
  };
}

/**
 * Enough to catch each fault, at a fraction of the default cost: four NAT types (16 pairs),
 * 20 calls each. The correct strategy also runs the full defaults (the end of this file).
 */
const FAST: NatStrategyComplianceOptions = {
  trials: 20,
  scenarios: natComplianceScenarios(['full-cone', 'port-restricted', 'symmetric-sequential-1', 'symmetric-random']),
};

/** Names of the failing checks. */
function failures(factory: NatStrategyFactory, options: NatStrategyComplianceOptions = FAST): string[] {
  const failed: string[] = [];
  for (const check of natStrategyComplianceChecks(factory, options)) {
    try {
      check.run();
    } catch {
      failed.push(check.name);
    }
  }
  return failed;
}

const PLANS = 'plans stay inside their limits and budget, aimed only at announced addresses';
const APPLICABLE = 'applicable() agrees on both sides and needs both consents';
const RATE = (trials: number) => `reaches its claimed success rate in the simulator (${trials} calls per scenario)`;

describe('NAT-strategy compliance suite', () => {
  it('passes a correct strategy', () => {
    assert.deepEqual(failures(factoryOf(() => new ConeToy())), []);
    assert.throws(() => natComplianceScenarios(['full-cone', 'carrier-grade']), /no NAT type "carrier-grade"/);
  });

  it('flags a probe outside the peer’s announced addresses (and the simulator refuses the plan)', () => {
    class Stray extends ConeToy {
      override plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
        const plan = super.plan(c, limits);
        return plan && { ...plan, targets: [...plan.targets, { address: '192.0.2.77', port: 3478 }] };
      }
    }
    assert.deepEqual(failures(factoryOf(() => new Stray())), [PLANS, RATE(20)]);
  });

  it('flags a plan over the limits it is given', () => {
    class Greedy extends ConeToy {
      override plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
        const plan = super.plan(c, limits);
        // Fits the default limits (so the simulated calls run), not the tighter ones.
        return plan && { ...plan, ratePerSecond: 100, budget: { packets: 50, ms: 1000 } };
      }
    }
    assert.deepEqual(failures(factoryOf(() => new Greedy())), [PLANS]);
    class StartsLate extends ConeToy {
      override plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
        const plan = super.plan(c, limits);
        return plan && { ...plan, startAfterMs: plan.budget.ms + 1 };
      }
    }
    assert.ok(failures(factoryOf(() => new StartsLate())).includes(PLANS));
    class Overconfident extends ConeToy {
      override plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
        const plan = super.plan(c, limits);
        return plan && { ...plan, expectedSuccess: 1.5 };
      }
    }
    assert.ok(failures(factoryOf(() => new Overconfident())).includes(PLANS));
  });

  it('flags a success rate it does not reach', () => {
    // Also "applies" to symmetric NATs facing a cone, where aiming at the reflexive address
    // only works if the cone filters nothing: against a port-restricted peer it never does.
    class Boastful extends ConeToy {
      override applicable(c: StrategyContext): boolean {
        return c.local.consent && c.remote.consent && (c.local.mapping === EIM || c.remote.mapping === EIM) && c.remote.reflexive.length > 0;
      }
    }
    assert.deepEqual(failures(factoryOf(() => new Boastful())), [RATE(20)]);
  });

  it('holds a probabilistic strategy to its claim: its true rate passes, a higher claim fails', () => {
    // Only the caller probes, at the right port or a wrong one, each with chance 1/2.
    const coinFlip = (claim: number) =>
      class extends ConeToy {
        override plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
          const plan = super.plan(c, limits);
          if (plan === undefined || c.role === 'controlled') return undefined;
          const target = plan.targets[0];
          const port = c.random() < 0.5 ? target.port : target.port === 65535 ? 1024 : target.port + 1;
          return { ...plan, targets: [{ ...target, port }], expectedSuccess: claim };
        }
      };
    const options = { trials: 200, scenarios: [{ name: 'port-restricted × port-restricted', a: prc(), b: prc() }] };
    const honest = runNatStrategyTrials(factoryOf(() => new (coinFlip(0.5))()), options)[0];
    assert.ok(honest.successes > 70 && honest.successes < 130, `${honest.successes} of 200 at a coin flip`);
    assert.equal(honest.passed, true);
    const inflated = runNatStrategyTrials(factoryOf(() => new (coinFlip(0.7))()), options)[0];
    assert.equal(inflated.successes, honest.successes, 'same seeds, same calls');
    assert.equal(inflated.passed, false);
    assert.ok((inflated.minSuccesses ?? 0) > honest.successes);
  });

  it('flags applicable() that differs between the two sides or ignores a refusal', () => {
    class CallerOnly extends ConeToy {
      override applicable(c: StrategyContext): boolean {
        return super.applicable(c) && c.role === 'controlling';
      }
    }
    assert.deepEqual(failures(factoryOf(() => new CallerOnly())), [APPLICABLE, RATE(20)]);
    class Pushy extends ConeToy {
      override applicable(c: StrategyContext): boolean {
        return c.local.mapping === EIM && c.remote.mapping === EIM;
      }
    }
    assert.deepEqual(failures(factoryOf(() => new Pushy())), [APPLICABLE]);
  });

  it('flags plans that use randomness other than context.random()', () => {
    class Moody extends ConeToy {
      override plan(c: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
        const plan = super.plan(c, limits);
        return plan && { ...plan, budget: { ...plan.budget, ms: Math.floor(plan.budget.ms * (0.5 + Math.random() / 2)) } };
      }
    }
    assert.deepEqual(failures(factoryOf(() => new Moody())), ['plans are deterministic for the same random()']);
  });

  it('flags bad metadata, a strategy that is not its factory’s, and a describeFor() of several lines', () => {
    assert.deepEqual(failures(factoryOf(() => new ConeToy(), { name: 'Cone Toy' })), ['metadata is valid', 'the strategy matches its factory']);
    assert.deepEqual(failures(factoryOf(() => new ConeToy(), { version: 'latest' })), ['metadata is valid', 'the strategy matches its factory']);
    class Chatty extends ConeToy {
      override describeFor(): string {
        return 'line one\nline two';
      }
    }
    assert.deepEqual(failures(factoryOf(() => new Chatty())), ['describeFor() gives one line or nothing']);
  });

  it('reports an unavailable strategy with its reason', () => {
    const unavailable = factoryOf(() => new ConeToy(), { availability: () => ({ available: false, reason: 'needs raw sockets', hint: 'run as root' }) });
    const check = natStrategyComplianceChecks(unavailable).find((c) => c.name === 'is available here');
    assert.throws(() => check?.run(), /needs raw sockets.*run as root/);
  });

  it('summarises each scenario: rate, claim, time to success, packets and sockets against the budget', () => {
    const summaries = runNatStrategyTrials(factoryOf(() => new ConeToy()), { trials: 20 });
    assert.equal(summaries.length, 81);
    const applicable = summaries.filter((s) => s.applicable > 0).map((s) => s.scenario);
    assert.equal(applicable.length, 9, applicable.join(', '));
    assert.ok(applicable.every((name) => !name.includes('symmetric')));
    for (const s of summaries.filter((x) => x.applicable > 0)) {
      assert.equal(s.successRate, 1);
      assert.ok(Math.abs((s.claimed ?? 0) - 0.95) < 1e-9);
      assert.equal(s.packets.a.budget, 10);
      assert.ok(s.packets.a.max <= 10 && s.sockets.a.max === 0);
      assert.ok(s.medianMsToSuccess !== undefined && s.medianMsToSuccess >= 0);
      assert.equal(s.passed, true);
    }
    const table = formatNatStrategyTrials(summaries);
    assert.match(table, /^scenario +applicable +success/);
    assert.match(table, /port-restricted × port-restricted +20\/20 +20 \(100\.0%\) +95\.0% +≥15 .* ok$/m);
    assert.equal(table.split('\n').length, 10, 'header + the 9 scenarios it applied to');
  });

  it('the tolerance: an exact lower tail at the one-sided 3σ level', () => {
    const cdf = successCountCdf(new Array<number>(200).fill(0.9));
    assert.ok(Math.abs(cdf[200] - 1) < 1e-9);
    assert.equal(minPassingSuccesses(new Array<number>(200).fill(0.9)), 166);
    assert.equal(minPassingSuccesses(new Array<number>(200).fill(1)), 200, 'a claim of certainty tolerates no failure');
    assert.equal(minPassingSuccesses(new Array<number>(200).fill(0)), 0);
    // Mixed claims: between the all-low and the all-high answer.
    const mixed = minPassingSuccesses([...new Array<number>(100).fill(0.5), ...new Array<number>(100).fill(0.9)]);
    assert.ok(mixed > minPassingSuccesses(new Array<number>(200).fill(0.5)) && mixed < 166, String(mixed));
  });
});

function prc() {
  return { mapping: EIM, filtering: 'address-and-port-dependent', allocation: 'port-preserving' } as const;
}

// As a plugin author runs it: the whole suite with its defaults, as node:test tests.
describeNatStrategyCompliance(factoryOf(() => new ConeToy()));

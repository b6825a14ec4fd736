/**
 * NAT strategy "sequential": direct paths through a symmetric NAT whose new mappings get
 * predictable ports (sequential allocation with a small step, or port-preserving), facing a
 * peer with endpoint-independent mapping.
 *
 * The two halves (H: the symmetric side, E: the endpoint-independent side), each computed by
 * its own side from the same two profiles and limits:
 * - H opens one extra socket and keeps sending from it to E's reflexive endpoint, open-only
 *   (with the link's priming TTL: the packets open H's NAT and die before E's). Its NAT gives
 *   that new socket's first destination a new mapping, at the next port of its sequence, and
 *   opens its filter for exactly E's endpoint (address-and-port-dependent filtering included).
 * - E, whose packets all leave from that one endpoint (endpoint-independent mapping), probes
 *   H's public IP at the ports the sequence gives next: lastPort + step·k, k = 1..W, wrapping
 *   within 1024..65535 (advancePort). The probe that reaches the mapping passes H's filter and
 *   opens E's for it; H's answer comes back through it. E starts a little after H (the mapping
 *   must exist first) and repeats the window within its budget.
 *
 * Why a fresh socket, open-only packets and the farthest ports first: a NAT that keeps state
 * from an unsolicited inbound packet (Linux conntrack with nothing dropping it first, as in
 * the two-NAT lab) gives a tuple away to the first packet that arrives for it. H's ordinary
 * checks have already sent, at full TTL, from the call socket's mapping toward E (k near 1):
 * E's NAT holds that tuple, and E's probe to that port leaves from another external port;
 * Linux then keeps the new port for E's later flows too, so every probe after it misses H's
 * filter. The fresh socket's mapping comes after the checks' (a larger k), H's packets for it
 * never reach E's NAT (open-only), and E walks the window from its far end, so it reaches the
 * fresh mapping before the poisoned one. Measured in the lab (port-restricted x
 * symmetric-sequential, plain UDP, after full-TTL packets from H's call socket): nearest
 * first, 0 of 1; a fresh open-only socket and farthest first, 3 of 3. With no extra socket
 * allowed (limits.maxSockets 0), H sends from the call socket and E walks nearest first.
 *
 * The window is one-sided: the mapping toward E is a NEW mapping, after every port in the
 * profile, and the k it lands on is 1 + the hard side's own other new mappings since the
 * profile (its checks to the peer's candidates) + mappings other hosts behind the same NAT
 * took in between (background traffic). Both only push it forward. The background rate is
 * estimated from the jitter the profile's own walk saw (a step of 3·step means two ports went
 * to someone else), over the time since the walk (observedAgoMs) plus the call set-up; the
 * window is sized to cover it with a margin, and the claimed success is the chance (a Poisson
 * model of the background) that it does.
 *
 * Both sides symmetric-sequential: each probe to a predicted port opens a new mapping on the
 * prober's own NAT, so each side's probing moves the ports the other side predicted, and on a
 * Linux (conntrack) NAT a probe arriving before the matching mapping exists moves that very
 * mapping (docs/direct-calls.md). A lockstep variant exists in theory (controlling and
 * controlled stepping through each other's sequences at different strides), but it needs
 * both sides' sequences free of background allocations during the probing and tight timing
 * between two peers that start their plans independently. That pair is declared not
 * applicable (it stays on the relay), except when both NATs map per destination ADDRESS
 * (address-dependent, not port-dependent): then each side's mapping toward the other's IP
 * already exists and carries all its probes, and each side probes the other's window.
 */
import {
  NAT_PORT_POOL,
  advancePort,
  checkNatProfile,
  ipFamily,
  sharedFamily,
  type Endpoint,
  type NatProfile,
  type NatStrategy,
  type NatStrategyFactory,
  type ProbePlan,
  type StrategyContext,
  type StrategyLimits,
} from '../../../core/plugin.js';

const NAME = 'sequential';
const VERSION = '0.1.0';

/** Highest probe rate used even when the limits allow more: bursts beyond this get policed by CPE. */
export const MAX_RATE = 400;
/** The probing side waits this long, so that the hard side's first packet has created the mapping. */
export const EASY_START_MS = 300;
/** Kept at the end of a plan for the answer to the last probes to come back. */
export const LINGER_MS = 500;
/** The hard side's packets toward the peer: one per 50 ms keeps its mapping and filter open. */
export const KEEP_OPEN_RATE = 20;
/**
 * New mappings the hard side's socket may open between its profile and its first packet
 * toward the peer's reflexive endpoint: the checks reach the peer's other candidates first
 * (host addresses rank above reflexive ones), each a new destination for the NAT.
 */
export const OWN_MAPPINGS = 8;
/** Time per step of the allocation walk that produced recentPorts (one STUN round trip; short: rates come out high). */
export const WALK_STEP_MS = 50;
/** Background allocation rate assumed even when the walk saw none (a short walk can miss a few per second). */
export const BACKGROUND_FLOOR_PER_S = 2;
/** Background rates above this are not believed (and keep the arithmetic bounded). */
export const BACKGROUND_CAP_PER_S = 1000;
/** Largest same-direction step counted as background (the classifier's MAX_JITTER_DELTA); larger ones are left out. */
const MAX_JITTER_PORTS = 256;
/**
 * Time from the hard side's profile being signed to its first packet toward the peer, when the
 * hard side is the callee: its profile goes out with the answer, and it primes toward the
 * caller's candidates as it answers; signalling and the first checks fit in this.
 */
export const MAPPING_DELAY_MS = 3_000;
/**
 * The same when the hard side is the caller: its profile went out with the offer, and it
 * learns where to send only from the answer, after the ringing (10 s assumed; --ring-timeout
 * allows up to 30 by default). Longer means a wider window on a busy NAT, not a missed one.
 */
export const CALLER_MAPPING_DELAY_MS = 13_000;
/**
 * A walk step implying more other hosts' mappings than this is left out of the rate: such a
 * step is not one round trip of the walk but an older mapping at the head of recentPorts (a
 * call's profile starts with the relay's mapping, made when the connection was), and a NAT
 * really that busy (>300/s) shows it in its other steps too.
 */
export const MAX_EXTRA_PER_STEP = 16;
/** Age assumed for a profile that does not say how old its ports are. */
export const UNKNOWN_AGE_MS = 10_000;
/** Smallest window probed: cheap (0.3 s a pass at 400/s), and covers a quiet NAT's own mappings and seconds of light background. */
export const MIN_WINDOW = 128;
/** Largest window: beyond this the prediction is not worth the name (and the budget is better repeated). */
export const MAX_WINDOW = 4_096;
/**
 * A plan's longest run, whatever the limits allow: the target is direct within 10 s
 * of the answer, and a mapping not found in twice that is not found by more of the same.
 */
export const MAX_PLAN_MS = 20_000;
/** Passes over the window the budget should allow: a probe arriving before the mapping is lost. */
export const MIN_PASSES = 3;
/** The most this strategy claims: NAT quirks the model leaves out (a pool smaller than 1024..65535 wrapping early, a step that changes). */
export const CEILING = 0.95;
/** Below this chance a plan is not worth its packets: none is made (limits too small, a profile too old). */
export const NOT_WORTH_BELOW = 0.05;
/** Discount when the budget allows a single pass: a probe that came too early is not repeated. */
export const SINGLE_PASS_FACTOR = 0.8;
/**
 * What a port-preserving symmetric NAT is claimed at. Such a NAT keeps the local port on
 * every mapping; it only looks symmetric when its mappings take different public IPs (an
 * address pool), and the IP a new destination gets need not be one the profile saw.
 */
export const PRESERVING_CLAIM = 0.8;
/** Extra sockets of the hard half (sequential): one fresh mapping that no full-TTL packet of ours has used. */
export const HARD_SOCKETS = 1;
/** Hard-side IPs probed at the preserved port (a pool's addresses as the profile saw them). */
export const MAX_PRESERVING_IPS = 4;
/** Probe rate at a preserved port: a handful of endpoints need no hundreds of packets a second. */
export const PRESERVING_RATE = 50;

type Dependent = 'address-dependent' | 'address-and-port-dependent';

function dependentMapping(p: NatProfile): p is NatProfile & { mapping: Dependent } {
  return p.mapping === 'address-dependent' || p.mapping === 'address-and-port-dependent';
}

/** A symmetric NAT whose next ports can be predicted (from a checked profile). */
export function isPredictable(p: NatProfile): boolean {
  return dependentMapping(p) && (p.allocation.kind === 'sequential' || p.allocation.kind === 'port-preserving') && p.allocation.recentPorts.length > 0 && p.reflexive.length > 0;
}

/** One endpoint for all destinations: what the hard side's mapping can be aimed at. */
export function isEasy(p: NatProfile): boolean {
  return p.mapping === 'endpoint-independent' && p.reflexive.length > 0;
}

type Pairing =
  | { mode: 'hard-easy'; hard: NatProfile; easy: NatProfile; family: 4 | 6 }
  | { mode: 'address-dependent-both'; family: 4 | 6 };

/** How this strategy pairs two checked profiles, the same whichever side asks (or undefined). */
function pairing(a: NatProfile, b: NatProfile): Pairing | undefined {
  if (!a.consent || !b.consent) return undefined;
  const family = sharedFamily(a, b);
  if (family === undefined) return undefined;
  if (isPredictable(a) && isEasy(b)) return { mode: 'hard-easy', hard: a, easy: b, family };
  if (isEasy(a) && isPredictable(b)) return { mode: 'hard-easy', hard: b, easy: a, family };
  if (isPredictable(a) && isPredictable(b) && a.mapping === 'address-dependent' && b.mapping === 'address-dependent') {
    return { mode: 'address-dependent-both', family };
  }
  return undefined;
}

/** Limits as numbers that cannot poison the arithmetic: NaN or negative is 0, fractions floor. */
function sane(limits: StrategyLimits): StrategyLimits {
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);
  return { maxPackets: n(limits.maxPackets), maxSockets: n(limits.maxSockets), maxMs: n(limits.maxMs), maxRatePerSecond: n(limits.maxRatePerSecond) };
}

/**
 * The walk's steps as distances travelled in the direction of allocation (`delta`'s sign),
 * across a wrap of the full pool (65535 -> 1024); 0 for a reused mapping. A step against the
 * direction that is not a full-pool wrap (a smaller pool wrapping) lands far away: it is
 * left out (undefined), as it says nothing about the step or the rate.
 */
function forwardSteps(recentPorts: readonly number[], delta: number): (number | undefined)[] {
  const size = NAT_PORT_POOL.size;
  return recentPorts.slice(1).map((port, i) => {
    const forward = ((((port - recentPorts[i]) * Math.sign(delta)) % size) + size) % size;
    return forward <= MAX_JITTER_PORTS ? forward : undefined;
  });
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The step the window walks: the greatest common divisor of delta and every step the walk
 * saw, with delta's sign. The classifier takes the most frequent step as delta, so a busy NAT
 * stepping by 1 whose walk went +2, +1, +2 is reported as delta 2 with one jitter; its next
 * port is as likely odd as even, and a window stepping by 2 would miss half of them (measured
 * in the NAT simulator: 88% against a claimed 95%).
 */
export function latticeStep(recentPorts: readonly number[], delta: number): number {
  let step = Math.abs(delta);
  for (const forward of forwardSteps(recentPorts, delta)) if (forward !== undefined && forward > 0) step = gcd(step, forward);
  return Math.sign(delta) * step;
}

/** Background allocations per second the profile's walk suggests (other hosts' new mappings between its steps, `step` apart). */
export function backgroundPerSecond(recentPorts: readonly number[], step: number): number {
  let extra = 0;
  let steps = 0;
  for (const forward of forwardSteps(recentPorts, step)) {
    if (forward === 0) continue; // a reused mapping, not a step
    if (forward === undefined) continue;
    const others = Math.max(0, Math.round(forward / Math.abs(step)) - 1);
    if (others > MAX_EXTRA_PER_STEP) continue;
    steps++;
    extra += others;
  }
  const perSecond = steps === 0 ? 0 : (extra * 1000) / (steps * WALK_STEP_MS);
  return Math.min(BACKGROUND_CAP_PER_S, Math.max(BACKGROUND_FLOOR_PER_S, perSecond));
}

/** P(X ≤ n) for X ~ Poisson(mean), summed in log space (mean up to ~10^5 stays finite). */
export function poissonCdf(n: number, mean: number): number {
  if (n < 0) return 0;
  if (mean <= 0) return 1;
  let logTerm = -mean; // log P(X = 0)
  let sum = Math.exp(logTerm);
  for (let i = 1; i <= n; i++) {
    logTerm += Math.log(mean) - Math.log(i);
    sum += Math.exp(logTerm);
  }
  return Math.min(1, sum);
}

/** Smallest n with P(X ≤ n) ≥ q, X ~ Poisson(mean), searched up to `limit`. */
function poissonQuantile(q: number, mean: number, limit: number): number {
  let logTerm = -mean;
  let sum = Math.exp(logTerm);
  for (let n = 0; n < limit; n++) {
    if (sum >= q) return n;
    logTerm += Math.log(mean) - Math.log(n + 1);
    sum += Math.exp(logTerm);
  }
  return limit;
}

/** What the probing side does against one predictable profile, under given limits. */
export interface WindowSchedule {
  /** The ports in the order probed (lattice positions k = 1..W, farthest first when the hard half has its own socket; or the preserved port). */
  ports: number[];
  /** Extra sockets of the hard half: its mapping is a fresh one (sequential, when the limits allow a socket). */
  hardSockets: number;
  /** Chance the mapping toward the peer is among `ports` (before the single-pass discount). */
  coverage: number;
  rate: number;
  startAfterMs: number;
  packets: number;
  /** From the plan's start to its end. */
  ms: number;
  passes: number;
  /** Expected background allocations before the mapping is made (sequential only). */
  backgroundMean?: number;
}

/**
 * The window for `hard` (a checked, predictable profile) and how it is probed within
 * `limits`. Both sides compute this from the same profile and know which of them called
 * (`hardIsCaller`; the hard side also needs it, to keep its mapping open as long as the peer
 * probes), so both claim the same rate.
 */
export function windowSchedule(hard: NatProfile, rawLimits: StrategyLimits, hardIsCaller = false, freshSocket = true): WindowSchedule | undefined {
  const limits = sane(rawLimits);
  // The hard half opens a fresh socket (sequential allocation, an extra socket allowed, and
  // not the both-address-dependent pairing, where each side probes from its call socket).
  const fresh = freshSocket && hard.allocation.kind === 'sequential' && limits.maxSockets >= HARD_SOCKETS;
  limits.maxMs = Math.min(limits.maxMs, MAX_PLAN_MS);
  const preserving = hard.allocation.kind === 'port-preserving';
  const rate = Math.min(preserving ? PRESERVING_RATE : MAX_RATE, limits.maxRatePerSecond);
  if (rate < 1 || limits.maxPackets < 1) return undefined;
  // Short budgets shrink the waits with them rather than leaving no time to probe.
  const startAfterMs = Math.min(EASY_START_MS, Math.floor(limits.maxMs / 4));
  const lingerMs = Math.min(LINGER_MS, Math.floor(limits.maxMs / 4));
  const probingMs = limits.maxMs - startAfterMs - lingerMs;
  const packets = Math.min(limits.maxPackets, Math.floor((probingMs * rate) / 1000));
  if (packets < 1) return undefined;
  const maxWindow = Math.min(MAX_WINDOW, packets >= MIN_PASSES ? Math.floor(packets / MIN_PASSES) : packets);
  const last = hard.allocation.recentPorts[hard.allocation.recentPorts.length - 1];

  let ports: number[];
  let coverage: number;
  let backgroundMean: number | undefined;
  if (preserving) {
    // The preserved port is the port: no window, only the pool's IPs (probePlan) and passes.
    ports = [last];
    coverage = PRESERVING_CLAIM;
  } else {
    const delta = latticeStep(hard.allocation.recentPorts, hard.allocation.delta ?? 1);
    const ageMs = hard.allocation.observedAgoMs ?? UNKNOWN_AGE_MS;
    const delayMs = hardIsCaller ? CALLER_MAPPING_DELAY_MS : MAPPING_DELAY_MS;
    backgroundMean = (backgroundPerSecond(hard.allocation.recentPorts, delta) * (ageMs + delayMs)) / 1000;
    // Positions beyond the pool's size would repeat ports.
    const positions = Math.min(maxWindow, Math.floor(NAT_PORT_POOL.size / Math.abs(delta)));
    const needed = 1 + OWN_MAPPINGS + poissonQuantile(0.999, backgroundMean, MAX_WINDOW);
    const size = Math.max(1, Math.min(positions, Math.max(needed, MIN_WINDOW)));
    ports = Array.from({ length: size }, (_, i) => advancePort(last, delta * (i + 1)));
    // With a fresh hard socket, the far end first (module comment: the near ports may be
    // held by the hard side's checks on a conntrack NAT, and probing one moves our mapping).
    if (fresh) ports.reverse();
    // k = 1 + m + b: m own new mappings (taken as uniform on 0..OWN_MAPPINGS: how many of the
    // peer's candidates came first is not known here), b ~ Poisson(backgroundMean).
    let sum = 0;
    for (let m = 0; m <= OWN_MAPPINGS; m++) sum += poissonCdf(size - 1 - m, backgroundMean);
    coverage = sum / (OWN_MAPPINGS + 1);
  }
  const passes = Math.floor(packets / ports.length);
  return {
    ports,
    hardSockets: fresh ? HARD_SOCKETS : 0,
    coverage,
    rate,
    startAfterMs,
    packets,
    ms: Math.min(limits.maxMs, startAfterMs + Math.ceil((packets * 1000) / rate) + lingerMs),
    passes,
    ...(backgroundMean === undefined ? {} : { backgroundMean }),
  };
}

/** The chance the probing finds the mapping, as far as the model goes. */
function hitChance(schedule: WindowSchedule): number {
  return schedule.coverage * (schedule.passes >= 2 ? 1 : SINGLE_PASS_FACTOR);
}

/** The first reflexive endpoint of `p` in `family`: where the other side aims (most recent first). */
function firstInFamily(p: NatProfile, family: 4 | 6): Endpoint | undefined {
  return p.reflexive.find((e) => ipFamily(e.address) === family);
}

/** The hard side's public IPs in `family`, most recent first, distinct. */
function hardIps(hard: NatProfile, family: 4 | 6, max: number): string[] {
  const ips: string[] = [];
  for (const e of hard.reflexive) {
    if (ipFamily(e.address) === family && !ips.includes(e.address)) ips.push(e.address);
    if (ips.length === max) break;
  }
  return ips;
}

/** The probing half against `hard`, whose window `schedule` is: on its IP(s), only those the peer announced. */
function probePlan(hard: NatProfile, schedule: WindowSchedule, family: 4 | 6, context: StrategyContext, expected: number, why: string): ProbePlan | undefined {
  const announced = new Set(context.remoteAddresses);
  let targets: Endpoint[];
  if (hard.allocation.kind === 'port-preserving') {
    targets = hardIps(hard, family, MAX_PRESERVING_IPS)
      .filter((ip) => announced.has(ip))
      .map((address) => ({ address, port: schedule.ports[0] }));
  } else {
    // The mapping appears on the IP the NAT pairs with this host: the one it showed last.
    const ip = firstInFamily(hard, family)?.address;
    targets = ip !== undefined && announced.has(ip) ? schedule.ports.map((port) => ({ address: ip, port })) : [];
  }
  if (targets.length === 0) return undefined;
  return {
    strategy: NAME,
    sockets: 0,
    targets,
    startAfterMs: schedule.startAfterMs,
    ratePerSecond: schedule.rate,
    budget: { packets: schedule.packets, ms: schedule.ms },
    expectedSuccess: expected,
    rationale: why,
  };
}

function describeWindow(hard: NatProfile): string {
  if (hard.allocation.kind === 'port-preserving') return `the preserved port ${hard.allocation.recentPorts[0]}`;
  const last = hard.allocation.recentPorts[hard.allocation.recentPorts.length - 1];
  return `the ports after ${last} in steps of ${latticeStep(hard.allocation.recentPorts, hard.allocation.delta ?? 1)}`;
}

export function createSequentialStrategy(): NatStrategy {
  return {
    name: NAME,
    version: VERSION,
    description: sequentialNatStrategy.description,
    applicable(context) {
      return pairing(checkNatProfile(context.local), checkNatProfile(context.remote)) !== undefined;
    },
    plan(context, limits) {
      const local = checkNatProfile(context.local);
      const remote = checkNatProfile(context.remote);
      const pair = pairing(local, remote);
      if (!pair) return undefined;
      const localIsCaller = context.role === 'controlling';
      if (pair.mode === 'address-dependent-both') {
        // Each side's single mapping toward the other's IP carries all its probes; both
        // windows must hold the truth.
        const mine = windowSchedule(local, limits, localIsCaller, false);
        const theirs = windowSchedule(remote, limits, !localIsCaller, false);
        if (!mine || !theirs) return undefined;
        const expected = CEILING * hitChance(mine) * hitChance(theirs);
        if (expected < NOT_WORTH_BELOW) return undefined;
        return probePlan(remote, theirs, pair.family, context, expected, `both NATs map per address with predictable ports: probing ${describeWindow(remote)} on the peer's IP while the peer probes ours`);
      }
      const schedule = windowSchedule(pair.hard, limits, (pair.hard === local) === localIsCaller);
      if (!schedule) return undefined;
      const expected = CEILING * hitChance(schedule);
      if (expected < NOT_WORTH_BELOW) return undefined;
      if (pair.hard === local) {
        // The hard half: make the mapping (and open the filter) toward the peer's one
        // endpoint, and keep it open for as long as the peer probes.
        const target = firstInFamily(remote, pair.family);
        if (target === undefined || !context.remoteAddresses.includes(target.address)) return undefined;
        const rate = Math.min(KEEP_OPEN_RATE, schedule.rate);
        return {
          strategy: NAME,
          sockets: schedule.hardSockets,
          targets: [target],
          startAfterMs: 0,
          // Our packets only need to open our NAT: arriving at the peer's NAT before its probe
          // left, they would take the very tuple the probe aims at (conntrack NATs).
          openOnly: true,
          ratePerSecond: rate,
          budget: { packets: Math.max(1, Math.min(sane(limits).maxPackets, Math.ceil((rate * schedule.ms) / 1000))), ms: schedule.ms },
          expectedSuccess: expected,
          rationale: `our NAT gives each new destination a predictable port: ${schedule.hardSockets > 0 ? 'a fresh socket sending' : 'sending'} to the peer's endpoint (open-only) opens the mapping it probes (${describeWindow(local)})`,
        };
      }
      return probePlan(
        remote,
        schedule,
        pair.family,
        context,
        expected,
        `the peer's NAT gives each new destination a predictable port: probing ${describeWindow(remote)}${schedule.hardSockets > 0 ? ', farthest first' : ''}, ${schedule.ports.length} port(s) repeated ${schedule.passes}x`,
      );
    },
    describeFor(profile) {
      const p = checkNatProfile(profile);
      if (!p.consent) return undefined;
      if (isPredictable(p)) {
        const how = p.allocation.kind === 'port-preserving' ? 'keeps the local port on every mapping' : `gives each new destination the next port (step ${p.allocation.delta})`;
        return `your NAT ${how}: direct calls with peers behind endpoint-independent NATs, which probe the port your NAT opens toward them`;
      }
      if (isEasy(p)) return 'direct calls with peers behind sequential symmetric NATs: probes the ports their NAT gives next';
      return undefined;
    },
  };
}

export const sequentialNatStrategy: NatStrategyFactory = {
  name: NAME,
  version: VERSION,
  description: 'sequential or port-preserving symmetric NAT facing an endpoint-independent one: predicts the next ports and probes them',
  availability: () => ({ available: true }),
  create: createSequentialStrategy,
};

/** The `wzp:nat-strategies` hook: contributes the "sequential" strategy. */
export default async function natSequentialHook(): Promise<NatStrategyFactory[]> {
  return [sequentialNatStrategy];
}

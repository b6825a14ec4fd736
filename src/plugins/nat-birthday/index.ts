/**
 * NAT strategy "birthday": direct paths through a symmetric NAT with random port allocation
 * (nothing to predict), facing a peer with endpoint-independent mapping: the "birthday
 * paradox" technique Tailscale uses.
 *
 * The two halves (H: the symmetric side, E: the endpoint-independent side), each computed by
 * its own side from the same two profiles and the same limits:
 * - H opens S extra sockets (default 256) and sends from each to E's reflexive endpoint. Its
 *   NAT gives each socket a mapping on some random port of its pool and opens each mapping's
 *   filter for E's endpoint. H keeps sending (round-robin over its sockets) until E is done,
 *   which keeps the mappings and filters open; then the sockets are closed.
 * - E, whose packets all leave from that one endpoint, waits until H's sockets have all sent
 *   once, then probes N distinct random ports (default 1024) of H's public IP, drawn from the
 *   pool 1024..65535 with the context's random(), paced. A probe that lands on one of the S
 *   mappings passes its filter and opens E's filter for it: the pair is found, and the plan
 *   ends on both sides.
 *
 * Each probe hits with probability S/P (P = 64512 ports), so the chance of at least one hit is
 * 1 - (1 - S/P)^N: 256 sockets and 1024 probes give 98.3%, which is what a plan claims, computed
 * from the numbers it actually uses (limits can shrink S and N). Distinct probes do slightly
 * better than this with-replacement formula; the excess is left as margin.
 *
 * The hard half is open-only (sent with the link's priming TTL): on a NAT that keeps state
 * from unsolicited inbound packets (Linux conntrack, as in the two-NAT lab), a hard socket's
 * packet reaching the easy side's NAT before the probe for its port has left would take the
 * probe's tuple, and the probe would leave from another port that no hard mapping admits.
 * Measured in the lab with real calls (port-restricted and symmetric-random, both orders):
 * 10 of 11 direct, 1.7-2.4 s after the answer; 0 of 2 before the hard half was open-only.
 *
 * Random symmetric facing random symmetric needs ~65,536 probes per side for 64%: not
 * applicable (the pair stays on the relay). Facing a sequential symmetric NAT neither: every
 * probe from that side leaves from a new mapping, never the endpoint H's sockets opened their
 * filters for.
 */
import {
  DEFAULT_STRATEGY_LIMITS,
  NAT_PORT_POOL,
  checkNatProfile,
  ipFamily,
  isPort,
  sharedFamily,
  type Endpoint,
  type NatProfile,
  type NatStrategy,
  type NatStrategyFactory,
  type ProbePlan,
  type StrategyContext,
  type StrategyLimits,
} from '../../../core/plugin.js';

const NAME = 'birthday';
const VERSION = '0.1.0';

/** Sockets the hard side opens when the limits allow (Tailscale's number; 256 file descriptors is modest). */
export const DEFAULT_SOCKETS = 256;
/** Random ports the easy side probes when the limits allow: 98.3% with 256 sockets. */
export const DEFAULT_PROBES = 1024;
/** Highest rate used even when the limits allow more (all sockets together, and the probes). */
export const MAX_RATE = 400;
/** After the hard side's sockets have all sent once, the easy side waits this much more (path delay, a late start). */
export const START_MARGIN_MS = 250;
/** The hard side's sockets stay open this long after the last probe, for its answer to come back. */
export const LINGER_MS = 500;
/** Below this chance a plan is not worth its sockets and packets: none is made (limits too small). */
export const NOT_WORTH_BELOW = 0.05;

/** 1 - (1 - sockets/pool)^probes: the chance that one of `probes` random ports is one of `sockets` mappings. */
export function birthdaySuccess(sockets: number, probes: number, pool: number = NAT_PORT_POOL.size): number {
  if (!(sockets > 0) || !(probes > 0) || !(pool > 0)) return 0;
  if (sockets >= pool) return 1;
  return 1 - Math.pow(1 - sockets / pool, probes);
}

/** The numbers both halves use; computed from the limits alone, so both sides agree on them. */
export interface BirthdaySchedule {
  sockets: number;
  probes: number;
  /** The hard side's rate, all its sockets together. */
  hardRate: number;
  /** The easy side's probe rate. */
  easyRate: number;
  /** When the easy side starts: once every hard socket has sent, plus START_MARGIN_MS. */
  easyStartMs: number;
  /** Both plans end by then (the easy side's last probe plus LINGER_MS). */
  ms: number;
  hardPackets: number;
  expectedSuccess: number;
}

function sane(limits: StrategyLimits): StrategyLimits {
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);
  return { maxPackets: n(limits.maxPackets), maxSockets: n(limits.maxSockets), maxMs: n(limits.maxMs), maxRatePerSecond: n(limits.maxRatePerSecond) };
}

/**
 * The hard side's rate for `sockets` sockets and `probes` probes within `limits`, or 0 when
 * they do not fit. The hard side must (1) send once from every socket before the easy side
 * starts, and (2) keep its sockets open (it stops when its packets are spent) until the last
 * probe has had LINGER_MS: its packets = sockets + rate · (margin + probing + linger) must fit
 * maxPackets, and the whole, opening included, maxMs. The fastest rate that fits is taken:
 * the sooner the sockets are open, the sooner a pair can be found.
 */
function hardRateFor(sockets: number, probes: number, easyRate: number, limits: StrategyLimits): number {
  if (probes > limits.maxPackets || sockets > limits.maxPackets) return 0;
  const afterOpenMs = START_MARGIN_MS + Math.ceil((probes * 1000) / easyRate) + LINGER_MS;
  if (afterOpenMs >= limits.maxMs) return 0;
  const byPackets = Math.floor(((limits.maxPackets - sockets) * 1000) / afterOpenMs);
  const rate = Math.min(easyRate, byPackets);
  if (rate < 1) return 0;
  return Math.ceil((sockets * 1000) / rate) + afterOpenMs <= limits.maxMs ? rate : 0;
}

/**
 * The sockets and probes with the best success within `limits` (it grows with their product): 256 and
 * 1024 under the default limits; smaller limits give smaller numbers and a lower claim.
 */
export function birthdaySchedule(rawLimits: StrategyLimits): BirthdaySchedule | undefined {
  const limits = sane(rawLimits);
  const easyRate = Math.min(MAX_RATE, limits.maxRatePerSecond);
  const maxSockets = Math.min(DEFAULT_SOCKETS, limits.maxSockets, limits.maxPackets);
  const maxProbes = Math.min(DEFAULT_PROBES, limits.maxPackets, NAT_PORT_POOL.size);
  if (easyRate < 1 || maxSockets < 1 || maxProbes < 1) return undefined;
  let best: { sockets: number; probes: number; rate: number } | undefined;
  for (let sockets = maxSockets; sockets >= 1; sockets--) {
    // Fewer probes always fit at least as well: the largest that fits, by bisection.
    let lo = 0;
    let hi = maxProbes;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (hardRateFor(sockets, mid, easyRate, limits) > 0) lo = mid;
      else hi = mid - 1;
    }
    if (lo === 0) continue;
    if (!best || birthdaySuccess(sockets, lo) > birthdaySuccess(best.sockets, best.probes)) {
      best = { sockets, probes: lo, rate: hardRateFor(sockets, lo, easyRate, limits) };
    }
  }
  if (!best || birthdaySuccess(best.sockets, best.probes) < NOT_WORTH_BELOW) return undefined;
  const easyStartMs = Math.ceil((best.sockets * 1000) / best.rate) + START_MARGIN_MS;
  const ms = Math.min(limits.maxMs, easyStartMs + Math.ceil((best.probes * 1000) / easyRate) + LINGER_MS);
  return {
    sockets: best.sockets,
    probes: best.probes,
    hardRate: best.rate,
    easyRate,
    easyStartMs,
    ms,
    hardPackets: Math.min(limits.maxPackets, Math.ceil((best.rate * ms) / 1000)),
    expectedSuccess: birthdaySuccess(best.sockets, best.probes),
  };
}

/**
 * A symmetric NAT whose ports cannot be predicted: random allocation, or allocation not
 * measured (the technique does not depend on the allocation order, only on the pool).
 */
export function isRandomSymmetric(p: NatProfile): boolean {
  const dependent = p.mapping === 'address-dependent' || p.mapping === 'address-and-port-dependent';
  return dependent && (p.allocation.kind === 'random' || p.allocation.kind === 'unknown') && p.reflexive.length > 0;
}

export function isEasy(p: NatProfile): boolean {
  return p.mapping === 'endpoint-independent' && p.reflexive.length > 0;
}

interface Pairing {
  hard: NatProfile;
  easy: NatProfile;
  family: 4 | 6;
}

function pairing(a: NatProfile, b: NatProfile): Pairing | undefined {
  if (!a.consent || !b.consent) return undefined;
  const family = sharedFamily(a, b);
  if (family === undefined) return undefined;
  if (isRandomSymmetric(a) && isEasy(b)) return { hard: a, easy: b, family };
  if (isEasy(a) && isRandomSymmetric(b)) return { hard: b, easy: a, family };
  return undefined;
}

function firstInFamily(p: NatProfile, family: 4 | 6): Endpoint | undefined {
  return p.reflexive.find((e) => ipFamily(e.address) === family);
}

/**
 * `count` distinct ports of NAT_PORT_POOL, uniformly, leaving out `exclude` (ports the hard
 * side is known to use for other destinations: a probe there is wasted). A partial
 * Fisher-Yates shuffle over the pool's indices, with only the swapped ones stored; one
 * random() per port, so a seeded random() gives the same ports.
 */
export function drawPorts(count: number, random: () => number, exclude: readonly number[] = []): number[] {
  const excluded = [...new Set(exclude.filter((p) => isPort(p) && p >= NAT_PORT_POOL.low))].sort((a, b) => a - b);
  const size = NAT_PORT_POOL.size - excluded.length;
  const n = Math.max(0, Math.min(Math.floor(count), size));
  // The i-th port of the pool without the excluded ones.
  const portAt = (i: number) => {
    let port = NAT_PORT_POOL.low + i;
    for (const x of excluded) {
      if (x <= port) port++;
      else break;
    }
    return port;
  };
  const swapped = new Map<number, number>();
  const ports: number[] = [];
  for (let k = 0; k < n; k++) {
    let u = random();
    // A broken random() must not break the plan (nor repeat a port): out of range counts as 0.
    if (!(u >= 0 && u < 1)) u = 0;
    const j = k + Math.floor(u * (size - k));
    const atJ = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(k) ?? k);
    ports.push(portAt(atJ));
  }
  return ports;
}

function formatPercent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

export function createBirthdayStrategy(): NatStrategy {
  return {
    name: NAME,
    version: VERSION,
    description: birthdayNatStrategy.description,
    applicable(context) {
      return pairing(checkNatProfile(context.local), checkNatProfile(context.remote)) !== undefined;
    },
    plan(context: StrategyContext, limits: StrategyLimits): ProbePlan | undefined {
      const local = checkNatProfile(context.local);
      const remote = checkNatProfile(context.remote);
      const pair = pairing(local, remote);
      if (!pair) return undefined;
      const schedule = birthdaySchedule(limits);
      if (!schedule) return undefined;
      const announced = new Set(context.remoteAddresses);
      if (pair.hard === local) {
        // The hard half: every socket sends to the peer's endpoint (the one its probes leave from).
        const target = firstInFamily(remote, pair.family);
        if (target === undefined || !announced.has(target.address)) return undefined;
        return {
          strategy: NAME,
          sockets: schedule.sockets,
          targets: [target],
          startAfterMs: 0,
          // Each socket's packets only need to open its mapping and filter: arriving at the
          // peer's NAT before the probe for that port left, they would take the probe's tuple.
          openOnly: true,
          ratePerSecond: schedule.hardRate,
          budget: { packets: schedule.hardPackets, ms: schedule.ms },
          expectedSuccess: schedule.expectedSuccess,
          rationale: `our NAT maps each socket to a random port: ${schedule.sockets} sockets open mappings toward the peer while it probes ${schedule.probes} random ports (${formatPercent(schedule.expectedSuccess)})`,
        };
      }
      // The easy half: random ports on the hard side's IP, which the peer must have announced.
      const ip = firstInFamily(remote, pair.family)?.address;
      if (ip === undefined || !announced.has(ip)) return undefined;
      const inUse = [...remote.allocation.recentPorts, ...remote.reflexive.filter((e) => e.address === ip).map((e) => e.port)];
      const targets = drawPorts(schedule.probes, () => context.random(), inUse).map((port) => ({ address: ip, port }));
      return {
        strategy: NAME,
        sockets: 0,
        targets,
        startAfterMs: schedule.easyStartMs,
        ratePerSecond: schedule.easyRate,
        budget: { packets: targets.length, ms: schedule.ms },
        expectedSuccess: schedule.expectedSuccess,
        rationale: `the peer's NAT maps each socket to a random port: probing ${targets.length} random ports of ${ip} while it holds ${schedule.sockets} mappings open toward us (${formatPercent(schedule.expectedSuccess)})`,
      };
    },
    describeFor(profile) {
      const p = checkNatProfile(profile);
      if (!p.consent) return undefined;
      const d = birthdaySchedule(DEFAULT_STRATEGY_LIMITS);
      const odds = d ? ` (~${formatPercent(d.expectedSuccess)})` : '';
      if (isRandomSymmetric(p)) {
        return `your NAT gives each destination an unpredictable port: direct calls with peers behind endpoint-independent NATs by opening ${DEFAULT_SOCKETS} sockets toward them while they probe ${DEFAULT_PROBES} random ports${odds}`;
      }
      if (isEasy(p)) return `direct calls with peers behind random symmetric NATs: probes ${DEFAULT_PROBES} random ports while they open ${DEFAULT_SOCKETS} sockets${odds}`;
      return undefined;
    },
  };
}

export const birthdayNatStrategy: NatStrategyFactory = {
  name: NAME,
  version: VERSION,
  description: 'random symmetric NAT facing an endpoint-independent one: 256 sockets on one side, 1024 random probes from the other (~98%)',
  availability: () => ({ available: true }),
  create: createBirthdayStrategy,
};

/** The `wzp:nat-strategies` hook: contributes the "birthday" strategy. */
export default async function natBirthdayHook(): Promise<NatStrategyFactory[]> {
  return [birthdayNatStrategy];
}

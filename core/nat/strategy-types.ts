/**
 * The hard-NAT strategy contract (`wzp:nat-strategies`). A strategy gets over a pair of NATs
 * the plain connectivity checks cannot (a symmetric NAT on at least one side): from both
 * sides' NAT profiles it returns, for the side it runs on, a bounded probing plan. Both peers
 * run the same strategy on the same two profiles (each sees itself as `local`), so the two
 * halves of a technique meet without any extra signalling: the side behind the hard NAT opens
 * mappings, the other side aims at where they will be.
 *
 * The checker (core/p2p) executes plans after the cheap candidates, in the background while
 * audio flows through the relay, and enforces every bound here itself: a plan over its
 * budget or the limits it was given is cut, and probes go only to the peer's announced
 * addresses (DESIGN.md §6). A plan is also what the compliance suite runs in the NAT
 * simulator (core/nat/simulator.ts) to check the success rate a strategy states.
 */
import type { Availability } from '../media/codec-types.js';
import type { FilteringBehaviour, MappingBehaviour } from './behaviour.js';
import type { PortAllocationKind } from './port-allocation.js';
import type { Endpoint } from './stun.js';

/**
 * What one side measured of its own NAT, at call time, from the call's own socket; sent to
 * the peer in the signed offer/answer. `unknown` fields are normal (no STUN server, a
 * measurement that timed out): a strategy must then decline or plan conservatively.
 */
export interface NatProfile {
  mapping: MappingBehaviour;
  filtering: FilteringBehaviour;
  allocation: {
    kind: PortAllocationKind;
    /** Step between consecutive new mappings ('sequential' only). */
    delta?: number;
    /** External ports of the last new mappings from the call's socket, oldest first (≤ 16). */
    recentPorts: number[];
    /** When the last of recentPorts was observed, ms before the profile was sent (ages the prediction). */
    observedAgoMs?: number;
  };
  /**
   * The side's public addresses as servers saw them (server-reflexive candidates of the
   * call's socket), most recent first. Their IPs are where the hard side's mappings appear.
   */
  reflexive: Endpoint[];
  /** The side accepts hard-NAT probing for this call (false with `--no-hard-nat`). */
  consent: boolean;
}

/** What a strategy is asked about: both profiles and what the peer announced. */
export interface StrategyContext {
  local: NatProfile;
  remote: NatProfile;
  /**
   * The IP addresses the peer announced in its signed candidates. Every plan target must be
   * on one of these (the checker drops any other target; the compliance suite fails it).
   */
  remoteAddresses: string[];
  /** The caller is controlling; the callee controlled. Symmetric strategies ignore it. */
  role: 'controlling' | 'controlled';
  /** Uniform in [0, 1): the only randomness a plan may use, so that trials reproduce. */
  random(): number;
}

/** The bounds the checker (or the suite) gives a plan; a plan's budget must fit in them. */
export interface StrategyLimits {
  /** Probe packets this side may send for the plan. */
  maxPackets: number;
  /** Extra local UDP sockets this side may open (besides the call's socket). */
  maxSockets: number;
  /** Wall-clock time from the plan's start to its end. */
  maxMs: number;
  /** Highest packet rate, all sockets together. */
  maxRatePerSecond: number;
}

export const DEFAULT_STRATEGY_LIMITS: Readonly<StrategyLimits> = Object.freeze({
  maxPackets: 2048,
  maxSockets: 256,
  maxMs: 10_000,
  maxRatePerSecond: 400,
});

/**
 * One side's half of a technique. The executor opens `sockets` extra sockets (0: the call's
 * own socket sends; otherwise only the extra ones do), waits `startAfterMs`, then sends probes round-robin: each target in
 * order from each sending socket, the list repeated, at most `ratePerSecond`. Sending stops
 * when `budget.packets` are sent; the plan ends when `budget.ms` is up (its sockets listen
 * until then: the peer's half may still be aiming at their mappings) or at once when any
 * pair succeeds. Extra sockets are closed when the plan ends, except one that carries the
 * pair found. Both sides give a strategy the same time slot: the longer of the two halves'
 * `budget.ms` (core/p2p/hard-nat.ts).
 */
export interface ProbePlan {
  /** The strategy's name. */
  strategy: string;
  /** Extra local sockets to open and send from (the call's socket is not one of them). */
  sockets: number;
  /** Where to send, in order; each on one of `StrategyContext.remoteAddresses`. May be empty (this side only listens). */
  targets: Endpoint[];
  /** Delay before the first probe (e.g. the easy side waits for the hard side's mappings). */
  startAfterMs: number;
  /**
   * The probes only open our own NAT (its mappings, and its filter toward the targets); they
   * need not arrive. The executor sends them with the link's priming TTL, so they die before
   * the peer's NAT: on Linux conntrack NATs an unsolicited packet arriving before the peer sent
   * anything leaves state that moves the peer's own later mapping (FACTS.md's hole-punching
   * note), which would break the other half. The hard side's half is typically this.
   */
  openOnly?: boolean;
  ratePerSecond: number;
  budget: { packets: number; ms: number };
  /** The chance the two halves find a pair within the budget, 0..1, as the strategy claims it; the compliance suite holds it to it. */
  expectedSuccess: number;
  /** One line for the report: what is tried and why. */
  rationale: string;
}

export interface NatStrategy {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  /**
   * Whether this strategy helps this pair. Called with both sides' profiles; must be true on
   * both sides for the same pair (it sees them swapped) so that both halves run.
   */
  applicable(context: StrategyContext): boolean;
  /** This side's half, inside `limits`; undefined when this side has nothing to send or open. */
  plan(context: StrategyContext, limits: StrategyLimits): ProbePlan | undefined;
  /**
   * For `wzp netcheck`: what this strategy does for a network with this profile (e.g. "direct
   * calls with peers behind endpoint-independent NATs: predicts the next ports"), or
   * undefined when it does nothing for it.
   */
  describeFor(local: NatProfile): string | undefined;
}

export interface NatStrategyFactory {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  availability(): Availability;
  create(): NatStrategy;
}

/**
 * PathChecker: the ICE-like connectivity-check agent of one direct call (RFC 8445 ideas,
 * shaped by iroh's magicsock and Tailscale's disco), independent of any transport.
 *
 * wzp has one UDP socket per client, so every pair shares the same local base: a pair is
 * effectively a remote candidate, and which local candidate it "is" becomes known when a
 * response says how the peer saw us (host when the observation is one of our interface
 * addresses, srflx/mapped when it is one of those, otherwise a new peer-reflexive address).
 *
 * What it does, for one call:
 * - pairs: one per remote candidate (signalled at any time, or peer-reflexive: an
 *   authenticated check from an unknown source), ordered by RFC 8445 §6.1.2.3 pair priority
 *   (2^32·min(G,D) + 2·max(G,D) + (G>D), G the controlling side's candidate priority).
 * - checks: one packet per pacing slot (default 20 ms) for the whole agent; each pair's
 *   retransmissions back off (100, 200, 400, 800, 800, ... ms) for a bounded number of
 *   attempts; the agent stops after a bounded number of checks and a deadline. Every attempt
 *   is a new transaction, so an RTT is never ambiguous; a late answer to an earlier attempt
 *   still counts.
 * - triggered checks: a valid request on a pair not yet succeeded queues an immediate check
 *   back (this is what gets through address-restricted filters: the peer's request proves our
 *   filter is open, our answer and our own check open theirs).
 * - extra checks: when a pair first succeeds, a few more checks follow (NAT state on both
 *   sides, and the peer's side sees requests even if some were lost).
 * - low-TTL priming (option `primeTtl`, off by default): before the first ordinary check to a
 *   remote candidate, one check with a small TTL (2-3) that opens our NAT's mapping but dies
 *   before the peer's NAT. On Linux conntrack NATs an early inbound packet from the peer
 *   (before we sent anything) creates conntrack state that makes our later outbound packet
 *   be mapped to another port or dropped; simultaneous open then fails (FACTS.md, NAT lab).
 *   Priming makes sure our mapping exists before their first packet arrives.
 * - nomination: only the controlling side (the caller) nominates; after its first success it
 *   waits until no better pair is pending (at most `nominationWaitMs`), then sends checks with
 *   the nominate flag on the best succeeded pair until one is answered. The controlled side
 *   follows: a pair the peer nominates is selected once its own check on it succeeds.
 * - keepalive / consent: both sides check the nominated pair every `keepaliveIntervalMs`
 *   (the controlling side's carry the nominate flag, so a controlled side that missed the
 *   nomination catches up). `lastReceivedAt` is the time of the last authenticated answer to
 *   one of our own checks on that pair: fresh proof only an answer to a new transaction can
 *   give (RFC 7675's reasoning). A 'stale' event fires when that is older than
 *   `staleAfterMs` (0.8 s: voice falls back to the relay), 'recovered' when answers return.
 *
 * Roles and the tie-breaker: the role comes from signed signalling (the caller is controlling),
 * never from the checks, so there is no RFC 8445 §7.3.1.1 role-conflict repair: each agent
 * draws a random 64-bit tie-breaker once (`tieBreaker`) and carries it in every check it sends
 * (the wire format has the field), but a check whose sender claims our own role is dropped and
 * counted (`dropped.roleConflict`): a buggy or hostile peer, or our own request reflected back.
 * Two agents that both believe they are controlling therefore select nothing (the call stays
 * on the relay) rather than one of them switching role on an unauthenticated coin toss.
 *
 * Wire format: core/wire/path-check.ts (through wirePathCheckCodec, the default codec).
 *
 * Hostile input: receive() never throws. Bytes that do not decode, fail authentication, carry
 * another call's id, the wrong role, a transaction id seen before, or answer nothing we sent
 * (or come from another address than the one we sent to) are dropped and counted in `stats`.
 * Remote candidates, peer-reflexive candidates, pending transactions, the replay memory and
 * the triggered queue all have hard bounds.
 */

import { randomBytes } from 'node:crypto';
import { DecodeError, UsageError } from '../errors.js';
import {
  type Candidate,
  type CandidateFamily,
  type CandidateType,
  type Endpoint,
  canonicalAddress,
  candidatePriority,
  endpointKey,
  familyOf,
  validateCandidate,
} from './candidates.js';
import { MIN_PATH_CHECK_KEY_BYTES, PATH_CHECK_CALL_ID_BYTES, PATH_CHECK_TRANSACTION_BYTES } from '../wire/path-check.js';
import {
  type CheckRole,
  type PathCheckCodec,
  type PathCheckMessage,
  type PathCheckRequestMessage,
  type PathCheckResponseMessage,
  wirePathCheckCodec,
} from './check-codec.js';

export type { CheckRole, PathCheckCodec, PathCheckMessage, PathCheckRequestMessage, PathCheckResponseMessage } from './check-codec.js';

/** Clock and timers; tests inject a fake one. Times are milliseconds. */
export interface CheckTimers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: CheckTimers = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Sends one datagram from the shared socket. It may throw; the checker counts that as a send
 * error. `ttl` is given only for priming packets. Node's dgram has no per-packet TTL: set the
 * socket's TTL (setTTL; on a udp6 socket it sets the unicast hop limit), send, and restore
 * the default in send()'s callback, not right after send() returns: dgram resolves even an IP
 * literal asynchronously, so a TTL restored synchronously is back before the packet leaves.
 * Other packets sent from the socket in that window also leave with the low TTL (QUIC
 * retransmits them; the window is one event-loop turn).
 */
export type CheckSend = (bytes: Uint8Array, address: string, port: number, ttl?: number) => void;

export const CHECK_DEFAULTS = {
  /** One check per slot for the whole agent (RFC 8445 Ta). */
  paceMs: 20,
  initialRtoMs: 100,
  maxRtoMs: 800,
  /** Ordinary checks per pair in one round (0, 100, 300, 700, 1500, 2300, 3100 ms; gives up at 3900). */
  maxAttemptsPerPair: 7,
  /** Nominating checks on one pair before trying another. */
  maxNominateAttempts: 10,
  /** Ordinary + triggered checks in one round (keepalives, extras and nominations aside). */
  maxChecks: 400,
  /** A round's deadline: pairs still unanswered then fail. */
  maxDurationMs: 20_000,
  /** After the first success, wait at most this long for better pairs before nominating. */
  nominationWaitMs: 150,
  extraChecksAfterSuccess: 3,
  /**
   * Keepalives on the selected pair every 200 ms, stale after 800 ms without an answer: a cut
   * path is left 600-800 ms after the cut (the last answer came up to a keepalive interval
   * before it), inside the 1 s voice can wait, and it takes four keepalives lost in a row to
   * leave a working one. (300 and 1000 left it 700-1000 ms after the cut, measured up to 996.)
   */
  keepaliveIntervalMs: 200,
  staleAfterMs: 800,
  /** Signalled (and predicted) remote candidates. */
  maxRemoteCandidates: 48,
  /** Peer-reflexive remote candidates learned from checks. */
  maxPeerReflexive: 8,
  /** Our own peer-reflexive addresses learned from answers. */
  maxLocalPeerReflexive: 8,
  maxPendingTransactions: 256,
  /** A transaction's answer is accepted this long after it was sent. */
  transactionLifetimeMs: 5_000,
  /** Remembered transaction ids of requests received and answers accepted (replay memory). */
  replayMemory: 1_024,
  maxTriggeredQueue: 64,
  /** Records of sends (tests, debugging); 0 disables. */
  sendLogSize: 0,
  /** Ordinary checks wait this long after start() (priming does not), unless a check from the peer comes first. */
  holdChecksMs: 0,
} as const;

export interface PathCheckerOptions {
  /** The caller is controlling: it nominates (and alone dials the direct connection). */
  role: CheckRole;
  /** Per-call check key, at least 16 bytes (MIN_PATH_CHECK_KEY_BYTES; from the call's signed offer/answer). */
  key: Uint8Array;
  /** The call id, 16 bytes. */
  callId: Uint8Array;
  /** Our candidates (what the peer was told); used for priorities and to name the local side of a pair. */
  localCandidates: readonly Candidate[];
  remoteCandidates?: readonly Candidate[];
  send: CheckSend;
  /** Families the shared socket can send to (default both). */
  families?: readonly CandidateFamily[];
  /** The check codec; default wirePathCheckCodec (core/wire/path-check.ts). Tests may wrap it. */
  codec?: PathCheckCodec;
  timers?: CheckTimers;
  /** Random transaction ids; tests may inject a deterministic source. */
  randomBytes?: (length: number) => Uint8Array;
  /** TTL of the priming packet; undefined (default) disables priming. */
  primeTtl?: number;
  /** Accept loopback remote candidates (loopback tests only). */
  allowLoopback?: boolean;
  paceMs?: number;
  initialRtoMs?: number;
  maxRtoMs?: number;
  maxAttemptsPerPair?: number;
  maxNominateAttempts?: number;
  maxChecks?: number;
  maxDurationMs?: number;
  nominationWaitMs?: number;
  extraChecksAfterSuccess?: number;
  keepaliveIntervalMs?: number;
  staleAfterMs?: number;
  maxRemoteCandidates?: number;
  maxPeerReflexive?: number;
  maxPendingTransactions?: number;
  transactionLifetimeMs?: number;
  sendLogSize?: number;
  /**
   * The controlled side (the callee) starts its checks when it sends the answer, before the
   * caller has it. Its ordinary checks wait this long (its priming packets go at once), or
   * until the caller's first check arrives: a check that reaches the caller's NAT before the
   * caller's own priming leaves conntrack state that moves the caller's mapping (see
   * `primeTtl`), and a port-restricted pair then fails. About one relay round trip.
   */
  holdChecksMs?: number;
}

export type PairState = 'waiting' | 'in-progress' | 'succeeded' | 'failed';
/** cancelled: still unchecked when a pair was selected (RFC 8445 stops the remaining checks). */
export type PairFailReason = 'timeout' | 'budget' | 'deadline' | 'nomination-timeout' | 'cancelled';

/** The per-pair record for the call report. Times are ms since the checker was created. */
export interface PairReport {
  readonly remote: Candidate;
  /** The local candidate type this pair turned out to use ('host' until answered). */
  readonly localType: CandidateType;
  /** Our address as the peer saw it (in the latest answer: a NAT may rebind mid-call). */
  readonly observed?: Endpoint;
  readonly state: PairState;
  /** RFC 8445 pair priority, as a decimal string (it exceeds 2^53). */
  readonly priority: string;
  /** Checks sent (ordinary, triggered, extra, nominating, keepalive). */
  readonly attempts: number;
  readonly primed: boolean;
  readonly responses: number;
  readonly rttMs?: number;
  readonly minRttMs?: number;
  readonly firstSentAt?: number;
  readonly lastSentAt?: number;
  readonly succeededAt?: number;
  readonly failedAt?: number;
  readonly failReason?: PairFailReason;
  readonly nominated: boolean;
  readonly nominatedAt?: number;
}

export type PathCheckEvent =
  | { type: 'pair-succeeded'; pair: PairReport }
  | { type: 'nominated'; pair: PairReport }
  | { type: 'failed'; reason: string }
  | { type: 'prflx-remote'; candidate: Candidate }
  | { type: 'prflx-local'; endpoint: Endpoint }
  | { type: 'stale'; silentMs: number }
  | { type: 'recovered'; pair: PairReport };

export type PathCheckListener = (event: PathCheckEvent) => void;

export interface PathCheckerStats {
  /** Ordinary + triggered checks in the current round (the budgeted ones). */
  checksSent: number;
  requestsSent: number;
  primedSent: number;
  extraSent: number;
  nominationsSent: number;
  keepalivesSent: number;
  /** Checks on succeeded pairs before any selection (one per keepalive interval). */
  warmSent: number;
  responsesSent: number;
  requestsReceived: number;
  responsesReceived: number;
  /** Hard-NAT probes sent (probe(): outside the pacing and the check budget) and answered. */
  probesSent: number;
  probesAnswered: number;
  dropped: {
    malformed: number;
    unauthenticated: number;
    wrongCall: number;
    roleConflict: number;
    replayed: number;
    unsolicited: number;
    refusedCandidate: number;
    prflxOverLimit: number;
    triggeredOverflow: number;
    evictedTransactions: number;
    sendErrors: number;
    listenerErrors: number;
  };
}

export interface PathCheckReport {
  readonly role: CheckRole;
  readonly selected?: PairReport;
  readonly stale: boolean;
  readonly localPeerReflexive: readonly Endpoint[];
  readonly pairs: readonly PairReport[];
  readonly stats: PathCheckerStats;
}

export interface SendRecord {
  readonly at: number;
  readonly to: string;
  readonly kind: TransactionKind | 'response';
  readonly ttl?: number;
}

interface Pair {
  readonly key: string;
  remote: Candidate;
  state: PairState;
  priority: bigint;
  /** Checks in the current schedule (reset by a triggered check on a failed pair and by restart). */
  roundAttempts: number;
  attempts: number;
  primed: boolean;
  nextDueAt: number;
  lastRtoMs: number;
  responses: number;
  lastResponseAt?: number;
  rttMs?: number;
  minRttMs?: number;
  firstSentAt?: number;
  lastSentAt?: number;
  /** When the pair (re)entered the checks: its deadline counts from here. */
  activeSince: number;
  succeededAt?: number;
  failedAt?: number;
  failReason?: PairFailReason;
  localType: CandidateType;
  localPriority?: number;
  observed?: Endpoint;
  nominatedByPeer: boolean;
  nominationFailed: boolean;
  nominatedAt?: number;
  triggeredQueued: boolean;
}

type TransactionKind = 'check' | 'prime' | 'triggered' | 'extra' | 'nominate' | 'keepalive' | 'warm' | 'probe';

/** Probe transactions remembered at once (a plan sends at most a few hundred a second; answers come within transactionLifetimeMs). */
export const MAX_PROBE_TRANSACTIONS = 4096;

interface Transaction {
  readonly pair: Pair;
  readonly kind: TransactionKind;
  readonly sentAt: number;
}

interface QueuedCheck {
  readonly pair: Pair;
  readonly kind: 'triggered' | 'extra';
}

interface Nomination {
  readonly pair: Pair;
  attempts: number;
  nextDueAt: number;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** RFC 8445 §6.1.2.3: G is the controlling agent's candidate priority, D the controlled's. */
export function pairPriority(controlling: number, controlled: number): bigint {
  const g = BigInt(controlling);
  const d = BigInt(controlled);
  const [min, max] = g < d ? [g, d] : [d, g];
  return (min << 32n) + 2n * max + (g > d ? 1n : 0n);
}

/** A Map used as a bounded insertion-ordered set. */
class BoundedSet {
  readonly #items = new Map<string, true>();
  constructor(readonly limit: number) {}
  has(key: string): boolean {
    return this.#items.has(key);
  }
  add(key: string): void {
    this.#items.set(key, true);
    while (this.#items.size > this.limit) this.#items.delete(this.#items.keys().next().value as string);
  }
  get size(): number {
    return this.#items.size;
  }
}

export class PathChecker {
  readonly role: CheckRole;
  /** This agent's random ICE tie-breaker (u64), drawn once and carried in every check it sends. */
  readonly tieBreaker: bigint = randomBytes(8).readBigUInt64BE(0);
  readonly stats: PathCheckerStats = {
    checksSent: 0,
    requestsSent: 0,
    primedSent: 0,
    extraSent: 0,
    nominationsSent: 0,
    keepalivesSent: 0,
    warmSent: 0,
    responsesSent: 0,
    requestsReceived: 0,
    responsesReceived: 0,
    probesSent: 0,
    probesAnswered: 0,
    dropped: {
      malformed: 0,
      unauthenticated: 0,
      wrongCall: 0,
      roleConflict: 0,
      replayed: 0,
      unsolicited: 0,
      refusedCandidate: 0,
      prflxOverLimit: 0,
      triggeredOverflow: 0,
      evictedTransactions: 0,
      sendErrors: 0,
      listenerErrors: 0,
    },
  };

  readonly #o: Required<Omit<PathCheckerOptions, 'remoteCandidates' | 'primeTtl' | 'families' | 'codec' | 'timers' | 'randomBytes' | 'allowLoopback'>> & {
    primeTtl?: number;
    allowLoopback: boolean;
  };
  readonly #families: ReadonlySet<CandidateFamily>;
  readonly #codec: PathCheckCodec;
  readonly #timers: CheckTimers;
  readonly #random: (length: number) => Uint8Array;
  readonly #key: Uint8Array;
  readonly #callId: Uint8Array;
  readonly #createdAt: number;
  readonly #local: Candidate[];
  readonly #localKeys: Map<string, Candidate>;
  readonly #pairs = new Map<string, Pair>();
  readonly #pending = new Map<string, Transaction>();
  /** Hard-NAT probes awaiting an answer: apart from #pending, so a plan's hundreds never evict the checks'. */
  readonly #probes = new Map<string, Transaction>();
  readonly #seenRequests: BoundedSet;
  readonly #answered: BoundedSet;
  readonly #queue: QueuedCheck[] = [];
  readonly #localPrflx: Endpoint[] = [];
  readonly #listeners = new Set<PathCheckListener>();
  readonly #sendLog: SendRecord[] = [];
  #started = false;
  #closed = false;
  #timer: unknown;
  #timerAt = Infinity;
  #lastSendAt = -Infinity;
  #roundStartedAt = 0;
  #firstSuccessAt: number | undefined;
  #nomination: Nomination | undefined;
  #nominated: Pair | undefined;
  #lastReceivedAt: number | undefined;
  #nextKeepaliveAt = Infinity;
  #stale = false;
  #failedEmitted = false;
  #signalledRemotes = 0;
  #prflxRemotes = 0;
  /** Ordinary checks wait until then (holdChecksMs after start; released by the peer's first check). */
  #holdUntil = -Infinity;

  constructor(options: PathCheckerOptions) {
    if (options.role !== 'controlling' && options.role !== 'controlled') throw new UsageError(`role must be controlling or controlled, got ${String(options.role)}`);
    if (!(options.key instanceof Uint8Array) || options.key.length < MIN_PATH_CHECK_KEY_BYTES) throw new UsageError(`the per-call key must be at least ${MIN_PATH_CHECK_KEY_BYTES} bytes`);
    if (!(options.callId instanceof Uint8Array) || options.callId.length !== PATH_CHECK_CALL_ID_BYTES) throw new UsageError(`the call id must be ${PATH_CHECK_CALL_ID_BYTES} bytes`);
    if (typeof options.send !== 'function') throw new UsageError('send must be a function');
    if (options.primeTtl !== undefined && (!Number.isInteger(options.primeTtl) || options.primeTtl < 1 || options.primeTtl > 255)) {
      throw new UsageError(`primeTtl must be 1-255, got ${options.primeTtl}`);
    }
    const positive = (name: keyof typeof CHECK_DEFAULTS, min = 1): number => {
      const value = (options as unknown as Record<string, unknown>)[name] ?? CHECK_DEFAULTS[name];
      if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw new UsageError(`${name} must be a number >= ${min}, got ${String(value)}`);
      return value;
    };
    this.role = options.role;
    this.#o = {
      role: options.role,
      key: options.key,
      callId: options.callId,
      localCandidates: options.localCandidates,
      send: options.send,
      primeTtl: options.primeTtl,
      allowLoopback: options.allowLoopback ?? false,
      paceMs: positive('paceMs'),
      initialRtoMs: positive('initialRtoMs'),
      maxRtoMs: positive('maxRtoMs'),
      maxAttemptsPerPair: positive('maxAttemptsPerPair'),
      maxNominateAttempts: positive('maxNominateAttempts'),
      maxChecks: positive('maxChecks'),
      maxDurationMs: positive('maxDurationMs'),
      nominationWaitMs: positive('nominationWaitMs', 0),
      extraChecksAfterSuccess: positive('extraChecksAfterSuccess', 0),
      keepaliveIntervalMs: positive('keepaliveIntervalMs'),
      staleAfterMs: positive('staleAfterMs'),
      maxRemoteCandidates: positive('maxRemoteCandidates'),
      maxPeerReflexive: positive('maxPeerReflexive', 0),
      maxPendingTransactions: positive('maxPendingTransactions'),
      transactionLifetimeMs: positive('transactionLifetimeMs'),
      sendLogSize: positive('sendLogSize', 0),
      holdChecksMs: positive('holdChecksMs', 0),
    };
    this.#families = new Set(options.families ?? ['IPv4', 'IPv6']);
    this.#codec = options.codec ?? wirePathCheckCodec;
    this.#timers = options.timers ?? realTimers;
    this.#random = options.randomBytes ?? ((length) => randomBytes(length));
    this.#key = Uint8Array.from(options.key);
    this.#callId = Uint8Array.from(options.callId);
    this.#createdAt = this.#timers.now();
    this.#roundStartedAt = this.#createdAt;
    this.#seenRequests = new BoundedSet(CHECK_DEFAULTS.replayMemory);
    this.#answered = new BoundedSet(CHECK_DEFAULTS.replayMemory);
    this.#local = [];
    this.#localKeys = new Map();
    for (const candidate of options.localCandidates.slice(0, 64)) {
      const key = endpointKey(candidate);
      if (this.#localKeys.has(key)) continue;
      this.#local.push(candidate);
      this.#localKeys.set(key, candidate);
    }
    if (options.remoteCandidates !== undefined) this.addRemoteCandidates(options.remoteCandidates);
  }

  // -------------------------------------------------------------------------------------------
  // Public API

  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: PathCheckListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts sending checks (pairs added before start wait for it). */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#roundStartedAt = this.#timers.now();
    if (this.#o.holdChecksMs > 0) this.#holdUntil = this.#roundStartedAt + this.#o.holdChecksMs;
    this.#schedule();
  }

  /**
   * Adds remote candidates (the offer/answer's, later candidate updates, or predicted ones).
   * Each is validated; invalid ones, our own addresses, unsendable families and any beyond
   * `maxRemoteCandidates` are refused and counted. Returns how many pairs were added or
   * upgraded. Before a pair is selected new pairs join the checks at once; after it, they
   * wait for restart() (a candidate update that matters, e.g. a peer's address change, comes
   * with a restart on both sides).
   */
  addRemoteCandidates(candidates: readonly unknown[]): number {
    if (this.#closed) return 0;
    // A candidate update after the last round ended (every pair settled) starts a new round:
    // a fresh check budget for the new pairs.
    const idle = ![...this.#pairs.values()].some((pair) => pair.state === 'waiting' || pair.state === 'in-progress');
    let changed = 0;
    for (const input of Array.isArray(candidates) ? candidates.slice(0, this.#o.maxRemoteCandidates * 2) : []) {
      let candidate: Candidate;
      try {
        candidate = validateCandidate(input, { allowLoopback: this.#o.allowLoopback });
      } catch {
        this.stats.dropped.refusedCandidate++;
        continue;
      }
      if (candidate.type === 'prflx') {
        // A peer-reflexive candidate only ever comes from our own checks.
        this.stats.dropped.refusedCandidate++;
        continue;
      }
      if (this.#addRemote(candidate)) changed++;
    }
    if (changed > 0) {
      if (idle) {
        this.stats.checksSent = 0;
        this.#roundStartedAt = this.#timers.now();
      }
      this.#schedule();
    }
    return changed;
  }

  /**
   * A hard-NAT probe (./hard-nat.ts): one authenticated check request to `to`, which need not
   * be a pair (a predicted port of the peer's NAT), outside the pacing and the check budget
   * (the plan executor paces and bounds probes). `send` sends it from elsewhere than the
   * shared socket (a side socket of the plan); default the checker's own. An answer from
   * exactly `to` makes it a succeeded `predicted` pair (bounded like peer-reflexive ones); a
   * request back from the peer makes a peer-reflexive pair as usual. Returns whether it left.
   */
  probe(to: Endpoint, send?: CheckSend): boolean {
    if (this.#closed) return false;
    const address = canonicalAddress(to?.address);
    const family = address === undefined ? undefined : familyOf(address);
    if (address === undefined || family === undefined || !this.#families.has(family) || !Number.isInteger(to.port) || to.port < 1 || to.port > 0xffff) return false;
    const endpoint = { address, port: to.port };
    const key = endpointKey(endpoint);
    if (this.#localKeys.has(key)) return false;
    const pair = this.#pairs.get(key) ?? this.#newPair({ type: 'predicted', address, port: to.port, family, priority: candidatePriority('predicted', family) });
    const encoded = this.#encodeRequest(pair, 'probe');
    if (encoded === undefined) return false;
    const now = this.#timers.now();
    if (send === undefined) {
      if (!this.#transmit(encoded.bytes, endpoint, 'probe')) return false;
    } else {
      try {
        send(encoded.bytes, address, to.port);
      } catch {
        this.stats.dropped.sendErrors++;
        return false;
      }
    }
    this.stats.probesSent++;
    for (const [id, old] of this.#probes) {
      if (now - old.sentAt <= this.#o.transactionLifetimeMs && this.#probes.size < MAX_PROBE_TRANSACTIONS) break;
      this.#probes.delete(id);
    }
    this.#probes.set(encoded.id, { pair, kind: 'probe', sentAt: now });
    return true;
  }

  /**
   * Offers one datagram that the demultiplexer classified as a path check. Never throws;
   * returns true when it was a valid check for this call (answered or matched).
   */
  receive(bytes: Uint8Array, from: Endpoint): boolean {
    if (this.#closed) return false;
    let message: PathCheckMessage;
    try {
      message = this.#codec.decode(bytes, this.#key);
    } catch (error) {
      if (error instanceof DecodeError && error.reason === 'bad-tag') this.stats.dropped.unauthenticated++;
      else this.stats.dropped.malformed++;
      return false;
    }
    const address = canonicalAddress(from?.address);
    if (address === undefined || !Number.isInteger(from.port) || from.port < 1 || from.port > 0xffff) {
      this.stats.dropped.malformed++;
      return false;
    }
    const source: Endpoint = { address, port: from.port };
    if (!(message.callId instanceof Uint8Array) || !sameBytes(message.callId, this.#callId)) {
      this.stats.dropped.wrongCall++;
      return false;
    }
    if (message.role === this.role) {
      this.stats.dropped.roleConflict++;
      return false;
    }
    if (!(message.transactionId instanceof Uint8Array) || message.transactionId.length !== PATH_CHECK_TRANSACTION_BYTES) {
      this.stats.dropped.malformed++;
      return false;
    }
    const accepted = message.kind === 'request' ? this.#onRequest(message, source) : this.#onResponse(message, source);
    this.#schedule();
    return accepted;
  }

  /**
   * Starts a new round of checks on every pair (after a stale path or a local address change;
   * the caller sends a candidate update first). Nomination is cleared; the records keep their
   * totals; the check budget and deadline start again.
   */
  restart(): void {
    if (this.#closed) return;
    const now = this.#timers.now();
    for (const pair of this.#pairs.values()) {
      pair.state = 'waiting';
      pair.roundAttempts = 0;
      pair.nextDueAt = now;
      pair.activeSince = now;
      pair.nominatedByPeer = false;
      pair.nominationFailed = false;
      pair.triggeredQueued = false;
      delete pair.failReason;
      delete pair.failedAt;
    }
    this.#queue.length = 0;
    this.#nomination = undefined;
    this.#nominated = undefined;
    this.#nextKeepaliveAt = Infinity;
    this.#stale = false;
    this.#firstSuccessAt = undefined;
    this.#failedEmitted = false;
    this.stats.checksSent = 0;
    this.#roundStartedAt = now;
    this.#schedule();
  }

  /** Stops all timers; later packets are ignored. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearTimer();
    this.#pending.clear();
    this.#probes.clear();
    this.#queue.length = 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The selected pair (controlling: its nomination was answered; controlled: nominated by the peer and checked). */
  get nominated(): PairReport | undefined {
    return this.#nominated === undefined ? undefined : this.#report(this.#nominated);
  }

  /** Time (timers' clock) of the last authenticated answer on the nominated pair. */
  get lastReceivedAt(): number | undefined {
    return this.#lastReceivedAt;
  }

  get stale(): boolean {
    return this.#stale;
  }

  /** Our own peer-reflexive addresses learned from answers. */
  get localPeerReflexive(): readonly Endpoint[] {
    return this.#localPrflx.slice();
  }

  /** Every pair's record, highest priority first (bounded by the candidate limits). */
  pairs(): PairReport[] {
    return [...this.#pairs.values()].sort((a, b) => (a.priority === b.priority ? 0 : a.priority > b.priority ? -1 : 1)).map((pair) => this.#report(pair));
  }

  /** Everything the call report needs about the checks (plain JSON data). */
  report(): PathCheckReport {
    return {
      role: this.role,
      selected: this.nominated,
      stale: this.#stale,
      localPeerReflexive: this.localPeerReflexive,
      pairs: this.pairs(),
      stats: structuredClone(this.stats),
    };
  }

  /** Pending transactions (bounded by maxPendingTransactions). */
  get pendingTransactions(): number {
    return this.#pending.size;
  }

  /** The last `sendLogSize` sends (empty unless enabled). */
  get sendLog(): readonly SendRecord[] {
    return this.#sendLog;
  }

  // -------------------------------------------------------------------------------------------
  // Candidates and pairs

  #addRemote(candidate: Candidate): boolean {
    if (!this.#families.has(candidate.family)) {
      this.stats.dropped.refusedCandidate++;
      return false;
    }
    const key = endpointKey(candidate);
    if (this.#localKeys.has(key)) {
      this.stats.dropped.refusedCandidate++;
      return false;
    }
    const existing = this.#pairs.get(key);
    if (existing !== undefined) {
      if (candidate.priority <= existing.remote.priority || existing.remote.type === candidate.type) return false;
      existing.remote = candidate;
      existing.priority = this.#pairPriorityOf(existing);
      return true;
    }
    if (candidate.type === 'prflx') {
      if (this.#prflxRemotes >= this.#o.maxPeerReflexive) {
        this.stats.dropped.prflxOverLimit++;
        return false;
      }
      this.#prflxRemotes++;
    } else {
      if (this.#signalledRemotes >= this.#o.maxRemoteCandidates) {
        this.stats.dropped.refusedCandidate++;
        return false;
      }
      this.#signalledRemotes++;
    }
    this.#pairs.set(key, this.#newPair(candidate));
    this.#failedEmitted = false;
    return true;
  }

  /** A pair record for `candidate` (not yet in #pairs). */
  #newPair(candidate: Candidate): Pair {
    const pair: Pair = {
      key: endpointKey(candidate),
      remote: candidate,
      state: 'waiting',
      priority: 0n,
      roundAttempts: 0,
      attempts: 0,
      primed: false,
      nextDueAt: this.#timers.now(),
      activeSince: this.#timers.now(),
      lastRtoMs: 0,
      responses: 0,
      localType: this.#defaultLocal(candidate.family)?.type ?? 'host',
      nominatedByPeer: false,
      nominationFailed: false,
      triggeredQueued: false,
    };
    pair.priority = this.#pairPriorityOf(pair);
    return pair;
  }

  /** The local candidate a pair uses before an answer says otherwise: the family's base (host), else its best. */
  #defaultLocal(family: CandidateFamily): Candidate | undefined {
    let best: Candidate | undefined;
    for (const candidate of this.#local) {
      if (candidate.family !== family) continue;
      const better =
        best === undefined ||
        (candidate.type === 'host' && best.type !== 'host') ||
        ((candidate.type === 'host') === (best.type === 'host') && candidate.priority > best.priority);
      if (better) best = candidate;
    }
    return best;
  }

  #localPriorityOf(pair: Pair): number {
    return pair.localPriority ?? this.#defaultLocal(pair.remote.family)?.priority ?? candidatePriority('prflx', pair.remote.family);
  }

  #pairPriorityOf(pair: Pair): bigint {
    const local = this.#localPriorityOf(pair);
    return this.role === 'controlling' ? pairPriority(local, pair.remote.priority) : pairPriority(pair.remote.priority, local);
  }

  // -------------------------------------------------------------------------------------------
  // Incoming

  #onRequest(message: PathCheckRequestMessage, source: Endpoint): boolean {
    const id = hex(message.transactionId);
    if (this.#seenRequests.has(id)) {
      this.stats.dropped.replayed++;
      return false;
    }
    this.#seenRequests.add(id);
    this.stats.requestsReceived++;
    // The peer is checking: its NAT state is there, ours may go out now.
    this.#holdUntil = -Infinity;
    if (message.nominate && this.role === 'controlling') {
      // The codec should refuse this already; a second line of defence.
      this.stats.dropped.roleConflict++;
      return false;
    }
    this.#respond(message, source);

    let pair = this.#pairs.get(endpointKey(source));
    if (pair === undefined) {
      const family = familyOf(source.address);
      const priority = Number.isInteger(message.priority) && message.priority >= 0 && message.priority <= 0xffffffff ? message.priority : 0;
      if (family !== undefined && this.#addRemote({ type: 'prflx', address: source.address, port: source.port, family, priority })) {
        pair = this.#pairs.get(endpointKey(source));
        if (pair !== undefined) this.#emit({ type: 'prflx-remote', candidate: pair.remote });
      }
    }
    if (pair === undefined) return true;

    if (message.nominate) {
      for (const other of this.#pairs.values()) other.nominatedByPeer = false;
      pair.nominatedByPeer = true;
      if (pair.state === 'succeeded') {
        if (this.#nominated !== pair) this.#select(pair);
        return true;
      }
    }
    if (pair.state !== 'succeeded') this.#trigger(pair);
    return true;
  }

  #respond(request: PathCheckRequestMessage, source: Endpoint): void {
    let bytes: Uint8Array;
    try {
      bytes = this.#codec.encode(
        {
          kind: 'response',
          transactionId: request.transactionId,
          callId: this.#callId,
          role: this.role,
          tieBreaker: this.tieBreaker,
          // The wire format: a response echoes its request's priority.
          priority: request.priority,
          observed: source,
        },
        this.#key,
      );
    } catch {
      this.stats.dropped.sendErrors++;
      return;
    }
    if (this.#transmit(bytes, source, 'response')) this.stats.responsesSent++;
  }

  #onResponse(message: PathCheckResponseMessage, source: Endpoint): boolean {
    const id = hex(message.transactionId);
    const transaction = this.#pending.get(id) ?? this.#probes.get(id);
    if (transaction === undefined) {
      if (this.#answered.has(id)) this.stats.dropped.replayed++;
      else this.stats.dropped.unsolicited++;
      return false;
    }
    const now = this.#timers.now();
    let pair = transaction.pair;
    if (endpointKey(source) !== pair.key || now - transaction.sentAt > this.#o.transactionLifetimeMs) {
      // RFC 8445 §7.2.5.2.1: an answer must come from where the request went.
      this.stats.dropped.unsolicited++;
      return false;
    }
    this.#pending.delete(id);
    this.#probes.delete(id);
    this.#answered.add(id);
    this.stats.responsesReceived++;
    if (transaction.kind === 'probe') {
      this.stats.probesAnswered++;
      const known = this.#pairs.get(pair.key);
      if (known !== undefined) pair = known;
      else {
        // A predicted port that answered: a pair now, bounded like the peer-reflexive ones.
        if (this.#prflxRemotes >= this.#o.maxPeerReflexive) {
          this.stats.dropped.prflxOverLimit++;
          return false;
        }
        this.#prflxRemotes++;
        this.#pairs.set(pair.key, pair);
        this.#failedEmitted = false;
      }
    }

    const rtt = now - transaction.sentAt;
    pair.responses++;
    pair.lastResponseAt = now;
    pair.rttMs = rtt;
    pair.minRttMs = pair.minRttMs === undefined ? rtt : Math.min(pair.minRttMs, rtt);
    this.#learnLocal(pair, message.observed);

    if (pair.state !== 'succeeded') {
      pair.state = 'succeeded';
      pair.succeededAt = now;
      pair.nominationFailed = false;
      // Until a pair is selected, a succeeded pair is checked every keepalive interval (see #sendOne).
      pair.nextDueAt = now + this.#o.keepaliveIntervalMs;
      delete pair.failReason;
      delete pair.failedAt;
      pair.priority = this.#pairPriorityOf(pair);
      this.#firstSuccessAt ??= now;
      for (let i = 0; i < this.#o.extraChecksAfterSuccess; i++) this.#enqueue({ pair, kind: 'extra' });
      this.#emit({ type: 'pair-succeeded', pair: this.#report(pair) });
    }

    if (this.role === 'controlling' && transaction.kind === 'nominate' && this.#nomination?.pair === pair) {
      this.#nomination = undefined;
      this.#select(pair);
    } else if (this.role === 'controlled' && pair.nominatedByPeer && this.#nominated !== pair) {
      this.#select(pair);
    }
    if (this.#nominated === pair) {
      this.#lastReceivedAt = now;
      if (this.#stale) {
        this.#stale = false;
        this.#emit({ type: 'recovered', pair: this.#report(pair) });
      }
    }
    return true;
  }

  /** Which local candidate the peer's observation corresponds to; a new one is peer-reflexive. */
  #learnLocal(pair: Pair, observed: Endpoint | undefined): void {
    if (observed === undefined) return;
    const address = canonicalAddress(observed.address);
    if (address === undefined || !Number.isInteger(observed.port)) return;
    const endpoint = { address, port: observed.port };
    const key = endpointKey(endpoint);
    const local = this.#localKeys.get(key);
    pair.observed = endpoint;
    if (local !== undefined) {
      pair.localType = local.type;
      pair.localPriority = local.priority;
      return;
    }
    pair.localType = 'prflx';
    pair.localPriority = candidatePriority('prflx', familyOf(address) ?? pair.remote.family);
    if (this.#localPrflx.length < CHECK_DEFAULTS.maxLocalPeerReflexive && !this.#localPrflx.some((known) => endpointKey(known) === key)) {
      this.#localPrflx.push(endpoint);
      this.#emit({ type: 'prflx-local', endpoint });
    }
  }

  #select(pair: Pair): void {
    const now = this.#timers.now();
    for (const other of this.#pairs.values()) {
      if (other !== pair && (other.state === 'waiting' || other.state === 'in-progress') && !other.triggeredQueued) this.#failPair(other, 'cancelled', now);
    }
    this.#nominated = pair;
    pair.nominatedAt = now;
    this.#lastReceivedAt = now;
    this.#stale = false;
    this.#nextKeepaliveAt = now + this.#o.keepaliveIntervalMs;
    this.#emit({ type: 'nominated', pair: this.#report(pair) });
  }

  // -------------------------------------------------------------------------------------------
  // Outgoing

  #trigger(pair: Pair): void {
    if (pair.triggeredQueued) return;
    if (pair.state === 'failed') {
      pair.state = 'waiting';
      pair.roundAttempts = 0;
      pair.activeSince = this.#timers.now();
      delete pair.failReason;
      delete pair.failedAt;
      this.#failedEmitted = false;
    }
    if (this.#enqueue({ pair, kind: 'triggered' })) pair.triggeredQueued = true;
  }

  #enqueue(item: QueuedCheck): boolean {
    if (this.#queue.length >= CHECK_DEFAULTS.maxTriggeredQueue) {
      this.stats.dropped.triggeredOverflow++;
      return false;
    }
    // Triggered checks go before extras (an answer to the peer's request is what opens the path).
    if (item.kind === 'triggered') {
      const firstExtra = this.#queue.findIndex((queued) => queued.kind === 'extra');
      this.#queue.splice(firstExtra < 0 ? this.#queue.length : firstExtra, 0, item);
    } else {
      this.#queue.push(item);
    }
    return true;
  }

  #rtoAfter(attempts: number): number {
    return Math.min(this.#o.initialRtoMs * 2 ** Math.max(0, attempts - 1), this.#o.maxRtoMs);
  }

  /** Sends one request on `pair`; returns false if it could not be encoded or sent. */
  #sendRequest(pair: Pair, kind: TransactionKind, ttl?: number): boolean {
    const now = this.#timers.now();
    const encoded = this.#encodeRequest(pair, kind);
    if (encoded === undefined) return false;
    this.#lastSendAt = now;
    if (!this.#transmit(encoded.bytes, pair.remote, kind, ttl)) return false;
    this.stats.requestsSent++;
    this.#remember(encoded.id, { pair, kind, sentAt: now });
    return true;
  }

  /** A request on `pair` with a fresh transaction id (counted on the pair); undefined if it cannot be encoded. */
  #encodeRequest(pair: Pair, kind: TransactionKind): { bytes: Uint8Array; id: string } | undefined {
    const now = this.#timers.now();
    const transactionId = this.#random(PATH_CHECK_TRANSACTION_BYTES);
    const nominate = this.role === 'controlling' && (kind === 'nominate' || (kind === 'keepalive' && this.#nominated === pair));
    let bytes: Uint8Array;
    try {
      bytes = this.#codec.encode(
        {
          kind: 'request',
          transactionId,
          callId: this.#callId,
          role: this.role,
          tieBreaker: this.tieBreaker,
          nominate,
          priority: candidatePriority('prflx', pair.remote.family),
        },
        this.#key,
      );
    } catch {
      this.stats.dropped.sendErrors++;
      return undefined;
    }
    pair.attempts++;
    pair.firstSentAt ??= now;
    pair.lastSentAt = now;
    return { bytes, id: hex(transactionId) };
  }

  #remember(id: string, transaction: Transaction): void {
    const now = this.#timers.now();
    // Expired transactions first, then the oldest, keep the map within its bound.
    for (const [key, old] of this.#pending) {
      if (now - old.sentAt <= this.#o.transactionLifetimeMs && this.#pending.size < this.#o.maxPendingTransactions) break;
      this.#pending.delete(key);
      if (now - old.sentAt <= this.#o.transactionLifetimeMs) this.stats.dropped.evictedTransactions++;
    }
    this.#pending.set(id, transaction);
  }

  #transmit(bytes: Uint8Array, to: Endpoint, kind: SendRecord['kind'], ttl?: number): boolean {
    if (this.#o.sendLogSize > 0) {
      this.#sendLog.push({ at: this.#timers.now() - this.#createdAt, to: endpointKey(to), kind, ...(ttl === undefined ? {} : { ttl }) });
      if (this.#sendLog.length > this.#o.sendLogSize) this.#sendLog.shift();
    }
    try {
      if (ttl === undefined) this.#o.send(bytes, to.address, to.port);
      else this.#o.send(bytes, to.address, to.port, ttl);
      return true;
    } catch {
      this.stats.dropped.sendErrors++;
      return false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The scheduler: one timer, one packet per pacing slot

  #checking(): boolean {
    // Ordinary checks stop once a pair is selected (controlling: its nomination was answered;
    // controlled: it follows one). Triggered checks, extras and keepalives go on.
    return this.#started && this.#nominated === undefined;
  }

  #budgetLeft(): boolean {
    return this.stats.checksSent < this.#o.maxChecks;
  }

  #tick(): void {
    this.#timerAt = Infinity;
    this.#timer = undefined;
    if (this.#closed || !this.#started) return;
    const now = this.#timers.now();
    this.#expire(now);
    this.#checkStale(now);
    this.#maybeNominate(now);
    if (now >= this.#lastSendAt + this.#o.paceMs) this.#sendOne(now);
    this.#maybeFail(now);
    this.#schedule();
  }

  #expire(now: number): void {
    for (const pair of this.#pairs.values()) {
      const pastDeadline = now >= pair.activeSince + this.#o.maxDurationMs;
      if (pair.state === 'in-progress' && now >= pair.nextDueAt && !pair.triggeredQueued) {
        if (pair.roundAttempts >= this.#o.maxAttemptsPerPair) this.#failPair(pair, 'timeout', now);
        else if (!this.#budgetLeft() && this.#checking()) this.#failPair(pair, 'budget', now);
      }
      if ((pair.state === 'waiting' || pair.state === 'in-progress') && !pair.triggeredQueued) {
        if (pastDeadline) this.#failPair(pair, 'deadline', now);
        else if (pair.state === 'waiting' && !this.#budgetLeft() && this.#checking()) this.#failPair(pair, 'budget', now);
      }
    }
    const nomination = this.#nomination;
    if (nomination !== undefined && now >= nomination.nextDueAt && nomination.attempts >= this.#o.maxNominateAttempts) {
      this.#nomination = undefined;
      nomination.pair.nominationFailed = true;
      this.#failPair(nomination.pair, 'nomination-timeout', now);
    }
  }

  #failPair(pair: Pair, reason: PairFailReason, now: number): void {
    pair.state = 'failed';
    pair.failReason = reason;
    pair.failedAt = now;
  }

  #bestSucceeded(): Pair | undefined {
    let best: Pair | undefined;
    for (const pair of this.#pairs.values()) {
      if (pair.state !== 'succeeded' || pair.nominationFailed) continue;
      if (best === undefined || pair.priority > best.priority) best = pair;
    }
    return best;
  }

  #maybeNominate(now: number): void {
    if (this.role !== 'controlling' || this.#nomination !== undefined) return;
    if (this.#nominated !== undefined) {
      // While the selected pair is stale, move to another pair that answers now, if there is
      // one (a NAT that rebound the peer's mapping: the peer's keepalives arrive from a new
      // address, a peer-reflexive pair is made and checked): the caller need not restart.
      if (!this.#stale) return;
      let fresh: Pair | undefined;
      for (const pair of this.#pairs.values()) {
        if (pair === this.#nominated || pair.state !== 'succeeded' || pair.nominationFailed || (pair.lastResponseAt ?? -Infinity) < now - this.#o.staleAfterMs) continue;
        if (fresh === undefined || pair.priority > fresh.priority) fresh = pair;
      }
      if (fresh !== undefined) this.#nomination = { pair: fresh, attempts: 0, nextDueAt: now };
      return;
    }
    if (this.#firstSuccessAt === undefined) return;
    const best = this.#bestSucceeded();
    if (best === undefined) return;
    const betterPending = [...this.#pairs.values()].some((pair) => (pair.state === 'waiting' || pair.state === 'in-progress') && pair.priority > best.priority);
    if (betterPending && now < this.#firstSuccessAt + this.#o.nominationWaitMs) return;
    this.#nomination = { pair: best, attempts: 0, nextDueAt: now };
  }

  #checkStale(now: number): void {
    if (this.#nominated === undefined || this.#stale || this.#lastReceivedAt === undefined) return;
    const silentMs = now - this.#lastReceivedAt;
    if (silentMs >= this.#o.staleAfterMs) {
      this.#stale = true;
      this.#emit({ type: 'stale', silentMs });
    }
  }

  /** The one packet this slot carries, by precedence. */
  #sendOne(now: number): void {
    // 1. Triggered checks and extras.
    while (this.#queue.length > 0) {
      const item = this.#queue.shift() as QueuedCheck;
      const pair = item.pair;
      if (item.kind === 'triggered') {
        pair.triggeredQueued = false;
        if (pair.state === 'succeeded' || !this.#budgetLeft()) continue;
        this.stats.checksSent++;
        pair.state = 'in-progress';
        pair.roundAttempts++;
        pair.lastRtoMs = this.#rtoAfter(pair.roundAttempts);
        pair.nextDueAt = now + pair.lastRtoMs;
        this.#sendRequest(pair, 'triggered');
        return;
      }
      this.stats.extraSent++;
      this.#sendRequest(pair, 'extra');
      return;
    }
    // 2. Nomination.
    const nomination = this.#nomination;
    if (nomination !== undefined && now >= nomination.nextDueAt) {
      nomination.attempts++;
      nomination.nextDueAt = now + this.#rtoAfter(nomination.attempts);
      this.stats.nominationsSent++;
      this.#sendRequest(nomination.pair, 'nominate');
      return;
    }
    // 3. Keepalive on the nominated pair.
    if (this.#nominated !== undefined && now >= this.#nextKeepaliveAt) {
      this.#nextKeepaliveAt = now + this.#o.keepaliveIntervalMs;
      this.stats.keepalivesSent++;
      this.#sendRequest(this.#nominated, 'keepalive');
      return;
    }
    // 4. Until a pair is selected, succeeded pairs stay warm: a check every keepalive interval
    //    (within the round's deadline). If the peer's answers to our checks were lost, its pair
    //    failed while ours succeeded; these requests trigger its checks again (and keep NAT
    //    state alive while the controlling side decides).
    const warm = this.#nextWarm(now);
    if (warm !== undefined) {
      warm.nextDueAt = now + this.#o.keepaliveIntervalMs;
      this.stats.warmSent++;
      this.#sendRequest(warm, 'warm');
      return;
    }
    // 5. Ordinary checks: the highest-priority pair that is due (while held, only priming).
    if (!this.#checking() || !this.#budgetLeft()) return;
    if (now < this.#holdUntil) {
      const prime = this.#nextToPrime();
      if (prime !== undefined) {
        prime.primed = true;
        this.stats.checksSent++;
        this.stats.primedSent++;
        this.#sendRequest(prime, 'prime', this.#o.primeTtl);
      }
      return;
    }
    let next: Pair | undefined;
    for (const pair of this.#pairs.values()) {
      if ((pair.state !== 'waiting' && pair.state !== 'in-progress') || pair.nextDueAt > now || pair.triggeredQueued) continue;
      if (pair.state === 'in-progress' && pair.roundAttempts >= this.#o.maxAttemptsPerPair) continue;
      if (next === undefined || pair.priority > next.priority) next = pair;
    }
    if (next === undefined) return;
    if (this.#o.primeTtl !== undefined && !next.primed && next.roundAttempts === 0) {
      next.primed = true;
      this.stats.checksSent++;
      this.stats.primedSent++;
      this.#sendRequest(next, 'prime', this.#o.primeTtl);
      return;
    }
    this.stats.checksSent++;
    next.state = 'in-progress';
    next.roundAttempts++;
    next.lastRtoMs = this.#rtoAfter(next.roundAttempts);
    next.nextDueAt = now + next.lastRtoMs;
    this.#sendRequest(next, 'check');
  }

  /** While checks are held: the best pair still to prime (undefined without priming). */
  #nextToPrime(): Pair | undefined {
    if (this.#o.primeTtl === undefined) return undefined;
    let next: Pair | undefined;
    for (const pair of this.#pairs.values()) {
      if (pair.state !== 'waiting' || pair.primed || pair.roundAttempts !== 0 || pair.triggeredQueued) continue;
      if (next === undefined || pair.priority > next.priority) next = pair;
    }
    return next;
  }

  /** A succeeded pair due for a warming check (before any selection), the best first. */
  #nextWarm(now: number): Pair | undefined {
    if (!this.#checking()) return undefined;
    let next: Pair | undefined;
    for (const pair of this.#pairs.values()) {
      if (pair.state !== 'succeeded' || pair.nextDueAt > now || this.#nomination?.pair === pair || now >= pair.activeSince + this.#o.maxDurationMs) continue;
      if (next === undefined || pair.priority > next.priority) next = pair;
    }
    return next;
  }

  #maybeFail(now: number): void {
    if (this.#failedEmitted || this.#firstSuccessAt !== undefined || this.#nominated !== undefined) return;
    const pairs = [...this.#pairs.values()];
    if (pairs.some((pair) => pair.state !== 'failed') || this.#queue.length > 0) return;
    if (pairs.length === 0 && now < this.#roundStartedAt + this.#o.maxDurationMs) return;
    this.#failedEmitted = true;
    const reasons = [...new Set(pairs.map((pair) => pair.failReason))].join(', ');
    this.#emit({ type: 'failed', reason: pairs.length === 0 ? 'no remote candidates' : `every pair failed (${reasons})` });
  }

  /** When the scheduler next has something to do. */
  #nextWake(now: number): number {
    if (!this.#started || this.#closed) return Infinity;
    const slot = this.#lastSendAt + this.#o.paceMs;
    let sendAt = Infinity;
    let otherAt = Infinity;
    if (this.#queue.length > 0) sendAt = now;
    if (this.#nomination !== undefined) sendAt = Math.min(sendAt, this.#nomination.nextDueAt);
    if (this.#nominated !== undefined) {
      sendAt = Math.min(sendAt, this.#nextKeepaliveAt);
      if (!this.#stale && this.#lastReceivedAt !== undefined) otherAt = Math.min(otherAt, this.#lastReceivedAt + this.#o.staleAfterMs);
    }
    if (this.#checking()) {
      for (const pair of this.#pairs.values()) {
        if (pair.state === 'succeeded' && this.#nomination?.pair !== pair && pair.nextDueAt < pair.activeSince + this.#o.maxDurationMs) {
          sendAt = Math.min(sendAt, pair.nextDueAt);
        }
        if ((pair.state !== 'waiting' && pair.state !== 'in-progress') || pair.triggeredQueued) continue;
        // While held, only priming is due; the rest waits for the hold's end.
        const due = now < this.#holdUntil && !(this.#o.primeTtl !== undefined && pair.state === 'waiting' && !pair.primed && pair.roundAttempts === 0) ? Math.max(pair.nextDueAt, this.#holdUntil) : pair.nextDueAt;
        // A due check waits for its slot; an exhausted pair's give-up time does not; the round's deadline.
        if (pair.state === 'in-progress' && pair.roundAttempts >= this.#o.maxAttemptsPerPair) otherAt = Math.min(otherAt, pair.nextDueAt);
        else if (this.#budgetLeft()) sendAt = Math.min(sendAt, due);
        else otherAt = Math.min(otherAt, pair.nextDueAt);
        otherAt = Math.min(otherAt, pair.activeSince + this.#o.maxDurationMs);
      }
    }
    if (
      this.role === 'controlling' &&
      this.#firstSuccessAt !== undefined &&
      this.#nominated === undefined &&
      this.#nomination === undefined &&
      this.#bestSucceeded() !== undefined
    ) {
      otherAt = Math.min(otherAt, this.#firstSuccessAt + this.#o.nominationWaitMs);
    }
    if (this.#pairs.size === 0 && !this.#failedEmitted && this.#firstSuccessAt === undefined) {
      otherAt = Math.min(otherAt, this.#roundStartedAt + this.#o.maxDurationMs);
    }
    const wake = Math.min(sendAt === Infinity ? Infinity : Math.max(sendAt, slot), otherAt);
    return wake === Infinity ? Infinity : Math.max(wake, now);
  }

  #schedule(): void {
    if (this.#closed) return;
    const now = this.#timers.now();
    const wake = this.#nextWake(now);
    if (wake === this.#timerAt) return;
    this.#clearTimer();
    if (wake === Infinity) return;
    this.#timerAt = wake;
    this.#timer = this.#timers.setTimeout(() => this.#tick(), Math.max(0, wake - now));
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  // -------------------------------------------------------------------------------------------

  #report(pair: Pair): PairReport {
    const rel = (at: number | undefined) => (at === undefined ? undefined : Math.round((at - this.#createdAt) * 10) / 10);
    const out: Record<string, unknown> = {
      remote: pair.remote,
      localType: pair.localType,
      observed: pair.observed,
      state: pair.state,
      priority: pair.priority.toString(),
      attempts: pair.attempts,
      primed: pair.primed,
      responses: pair.responses,
      rttMs: pair.rttMs === undefined ? undefined : Math.round(pair.rttMs * 10) / 10,
      minRttMs: pair.minRttMs === undefined ? undefined : Math.round(pair.minRttMs * 10) / 10,
      firstSentAt: rel(pair.firstSentAt),
      lastSentAt: rel(pair.lastSentAt),
      succeededAt: rel(pair.succeededAt),
      failedAt: rel(pair.failedAt),
      failReason: pair.failReason,
      nominated: this.#nominated === pair,
      nominatedAt: rel(pair.nominatedAt),
    };
    for (const key of Object.keys(out)) if (out[key] === undefined) delete out[key];
    return out as unknown as PairReport;
  }

  #emit(event: PathCheckEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        this.stats.dropped.listenerErrors++;
      }
    }
  }
}

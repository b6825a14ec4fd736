/**
 * DirectLink: everything one 1:1 call does to get a direct path and keep it, on the shared
 * UDP socket of its relay connection:
 *
 * - the connectivity checks (./checks.ts) over the socket's demultiplexer, with the call's
 *   check key, the caller controlling; the remote candidates are the peer's signed ones, the
 *   relay's observation of the peer (a hint), later candidate updates, and peer-reflexive
 *   ones the checks learn;
 * - the direct media path (./direct-path.ts), open while the checks hold a selected pair
 *   that is not stale;
 * - recovery: a stale path (no answer for 0.8 s) is left at once (the path switch sends on the
 *   relay again) while keepalives go on; answers coming back make it open again; still stale
 *   after RESTART_AFTER_STALE_MS, the checks start a new round on every pair;
 * - a local address change (interfaces polled every ADDRESS_POLL_MS) sends the peer a
 *   candidate update and starts a new round;
 * - the record for the call report: candidates gathered, sent and received, each pair's
 *   outcome, the direct path's round trips, and the path timeline.
 *
 * It knows nothing of rooms or signalling: the caller of DirectLink sends candidate updates
 * (`sendCandidates`) and feeds the peer's in (addRemoteCandidates).
 */
import { randomBytes } from 'node:crypto';
import { summarize } from '../media/analysis.js';
import { encodePathCheck } from '../wire/path-check.js';
import type { Demux, UdpSource } from '../transport/demux.js';
import { pathCheckClass } from '../transport/demux.js';
import { directMediaTags } from '../crypto/call-keys.js';
import {
  addressScope,
  canonicalAddress,
  endpointKey,
  familyOf,
  hostCandidates,
  type Candidate,
  type CandidateFamily,
  type Endpoint,
  type HostCandidateOptions,
  type SkippedAddress,
} from './candidates.js';
import { PathChecker, type CheckTimers, type PairReport, type PathCheckerOptions, type PathCheckerStats, type PathCheckEvent } from './checks.js';
import { DirectMediaTransport, formatEndpoint, type DirectMediaDrops } from './direct-path.js';
import { HardNatRunner, type HardNatOptions, type HardNatReport } from './hard-nat.js';
import type { NatProfile, NatStrategy, StrategyLimits } from '../nat/strategy-types.js';

/**
 * TTL of the priming packet before the first check to each remote candidate (PathChecker's
 * primeTtl): enough to leave our NAT (a router one hop away, or a home router and a carrier's
 * NAT), too little to reach the peer's NAT and make conntrack state there.
 */
export const DEFAULT_PRIME_TTL = 2;

/**
 * The callee starts its checks as it sends the answer, about half a relay round trip (plus the
 * caller's set-up) before the caller starts: its ordinary checks wait this long, or until the
 * caller's first check arrives (PathChecker's holdChecksMs: an early check would poison a
 * conntrack NAT on the caller's side). It only costs time where the caller's checks cannot
 * reach the callee (a symmetric callee): there the callee's own checks open the way.
 */
export const CALLEE_HOLD_CHECKS_MS = 250;

/** A stale path still stale after this long: the checks start a new round on every pair. */
export const RESTART_AFTER_STALE_MS = 3_000;
/** How often the interfaces are looked at for an address change. */
export const ADDRESS_POLL_MS = 2_000;
/** Round trips of the direct path kept for the report (one a second: a day's worth). */
const MAX_RTT_SAMPLES = 86_400;
/** Path timeline entries kept (a flapping path is counted beyond). */
export const MAX_TIMELINE = 200;
/**
 * How long the cheap candidates have to find a pair before the hard-NAT strategies start (or
 * until every pair failed, if sooner). Easy pairs succeed within ~300 ms in the lab; a hard
 * side's port prediction ages with every ms.
 */
export const HARD_NAT_AFTER_MS = 600;
/** Candidate updates received and applied in one call at most (a peer cannot make us churn). */
export const MAX_CANDIDATE_UPDATES = 32;

/** The socket's kind, as @matrixai/quic's QUICSocket.type says it. */
export type SocketType = 'ipv4' | 'ipv6' | 'ipv4&ipv6';

/** The families a socket of this type can send to. */
export function socketFamilies(type: SocketType): CandidateFamily[] {
  return type === 'ipv4' ? ['IPv4'] : type === 'ipv6' ? ['IPv6'] : ['IPv6', 'IPv4'];
}

export interface DirectLinkOptions {
  role: 'caller' | 'callee';
  /** The call id, 32 hex digits. */
  callId: string;
  /** The call's check key and direct-path key (core/crypto/call-keys.ts). */
  checkKey: Uint8Array;
  directPathKey: Uint8Array;
  /** The relay connection's socket: its demultiplexer and its type. */
  demux: Demux;
  socketType: SocketType;
  /** What we told the peer (our candidates, as gathered). */
  localCandidates: readonly Candidate[];
  /** The peer's signed candidates (wire form: no family), and the relay's observation of it. */
  peerCandidates: readonly unknown[];
  relayCandidate?: unknown;
  /**
   * Send the peer our candidates again (a candidate update): after a local address change,
   * or a candidate gathered late (a port mapping).
   */
  sendCandidates?(candidates: Candidate[]): void;
  /**
   * For re-gathering host candidates after an address change (the same as the first
   * gathering's). Without it (or sendCandidates) address changes are not watched.
   */
  hostOptions?: Omit<HostCandidateOptions, 'port' | 'families'> & { port: number };
  /** The relay's observations of us, kept in a re-gathered list. */
  keepCandidates?: readonly Candidate[];
  /** Low-TTL priming of our NAT before the first check to each remote candidate. */
  primeTtl?: number;
  /** The callee's hold on its ordinary checks (PathChecker's holdChecksMs); default CALLEE_HOLD_CHECKS_MS for the callee, 0 for the caller. */
  holdChecksMs?: number;
  allowLoopback?: boolean;
  /** Tests: the checker's timing and limits. */
  checks?: Partial<Pick<PathCheckerOptions, 'paceMs' | 'staleAfterMs' | 'keepaliveIntervalMs' | 'maxDurationMs' | 'nominationWaitMs'>>;
  timers?: CheckTimers;
  addressPollMs?: number;
  /**
   * Hard-NAT strategies (./hard-nat.ts): both sides' NAT profiles (ours as measured, the
   * peer's from its signed offer/answer) and the strategies to run in order, once the cheap
   * candidates had `afterMs` (default HARD_NAT_AFTER_MS) without a pair, or every pair failed.
   * Probes go only to addresses the peer announced (its candidates, the relay's observation
   * of it, its profile's reflexive addresses). Absent: no strategy runs.
   */
  hardNat?: {
    strategies: readonly NatStrategy[];
    local: NatProfile;
    remote: NatProfile;
    limits?: Partial<StrategyLimits>;
    afterMs?: number;
    openSocket?: HardNatOptions['openSocket'];
  };
  onEvent?(e: DirectLinkEvent): void;
}

export type DirectLinkEvent =
  /** The direct path can carry media now (first time or again); `pair` is the selected pair. */
  | { type: 'direct:up'; pair: PairSummary; reason: 'selected' | 'recovered' }
  /** The direct path stopped answering: media goes back through the relay. */
  | { type: 'direct:down'; reason: 'stale' | 'restart' | 'address-change'; silentMs?: number }
  /** Every pair failed this round: the call stays on the relay. */
  | { type: 'direct:failed'; reason: string }
  | { type: 'direct:candidates-sent'; count: number; reason: 'address-change' | 'late-candidate' };

/** A pair as status lines and reports show it. */
export interface PairSummary {
  /** e.g. `host -> srflx`: our side's candidate type and the peer's. */
  types: string;
  local: CandidateTypeName;
  remote: CandidateTypeName;
  remoteAddress: string;
  rttMs?: number;
}

type CandidateTypeName = Candidate['type'];

export interface DirectPathReport {
  role: 'controlling' | 'controlled';
  candidates: {
    gathered: WireCandidateRecord[];
    sent: number;
    received: WireCandidateRecord[];
    /** Received but refused (malformed, loopback, unusable scope, over the limits). */
    refused: number;
    relayObserved?: WireCandidateRecord;
    /** Candidate updates: sent after an address change, and received. */
    updatesSent: number;
    updatesReceived: number;
    /** Updates over MAX_CANDIDATE_UPDATES: dropped unread. */
    updatesDropped: number;
  };
  /** Each pair checked and its outcome (highest priority first). */
  pairs: PairReport[];
  selected?: PairSummary;
  /** Round trips of the direct path while selected, ms (one sample a second). */
  rttMs?: { p50: number; p95: number; max: number; mean: number; samples: number };
  checks: PathCheckerStats;
  media: { sent: number; received: number; drops: DirectMediaDrops };
  /** The checks' restarts (a stale path that did not come back, an address change). */
  restarts: number;
  /** Hard-NAT strategies: consent, which applied, each plan as run and its outcome (absent: none configured). */
  hardNat?: HardNatReport;
}

export interface WireCandidateRecord {
  type: CandidateTypeName;
  address: string;
  port: number;
  priority: number;
}

export class DirectLink {
  readonly transport: DirectMediaTransport;
  readonly checker: PathChecker;
  readonly #o: DirectLinkOptions;
  readonly #unregister: () => void;
  readonly #received: WireCandidateRecord[] = [];
  readonly #relayObserved: WireCandidateRecord | undefined;
  readonly #rttSamples: number[] = [];
  #local: Candidate[];
  #refused = 0;
  #updatesSent = 0;
  #updatesReceived = 0;
  #updatesDropped = 0;
  #restarts = 0;
  #closed = false;
  #up = false;
  #staleTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #rttTimer: NodeJS.Timeout | undefined;
  #hostKey: string;
  #hardNat: HardNatRunner | undefined;
  #hardNatTimer: NodeJS.Timeout | undefined;
  /** IPs the peer announced (candidates, the relay's observation, its profile): where probes may go. */
  readonly #peerAddresses = new Set<string>();

  constructor(options: DirectLinkOptions) {
    this.#o = options;
    this.#local = [...options.localCandidates];
    const families = socketFamilies(options.socketType);
    const callId = Uint8Array.from(Buffer.from(options.callId, 'hex'));
    const dualStack = options.socketType === 'ipv4&ipv6';
    const toSocket = (address: string) => (dualStack && familyOf(address) === 'IPv4' ? `::ffff:${address}` : address);
    this.checker = new PathChecker({
      role: options.role === 'caller' ? 'controlling' : 'controlled',
      key: options.checkKey,
      callId,
      localCandidates: this.#local,
      families,
      send: (bytes, address, port, ttl) => {
        options.demux.send(bytes, { host: toSocket(address), port }, ttl === undefined ? {} : { ttl });
      },
      ...(options.primeTtl === undefined ? {} : { primeTtl: options.primeTtl }),
      holdChecksMs: options.holdChecksMs ?? (options.role === 'callee' ? CALLEE_HOLD_CHECKS_MS : 0),
      ...(options.allowLoopback ? { allowLoopback: true } : {}),
      ...(options.timers ? { timers: options.timers } : {}),
      ...(options.checks ?? {}),
    });
    const tags = directMediaTags(options.directPathKey);
    this.transport = new DirectMediaTransport({
      demux: options.demux,
      checks: this.checker,
      sendTag: options.role === 'caller' ? tags.caller : tags.callee,
      receiveTag: options.role === 'caller' ? tags.callee : tags.caller,
      socketAddress: toSocket,
      sourceAddress: unmapped,
    });
    this.#unregister = options.demux.register(pathCheckClass((data, from) => this.#onCheck(data, from)));
    this.checker.on((e) => this.#onCheckEvent(e));
    this.addRemoteCandidates(options.peerCandidates, { initial: true });
    if (options.relayCandidate !== undefined) {
      const hint = toP2pCandidate(options.relayCandidate);
      if (hint !== undefined && this.checker.addRemoteCandidates([hint]) > 0) this.#relayObserved = wireRecord(hint);
    }
    this.#hostKey = hostKeyOf(this.#local);
    if (options.relayCandidate !== undefined) this.#notePeerAddress(toP2pCandidate(options.relayCandidate)?.address);
    for (const r of options.hardNat?.remote.reflexive ?? []) this.#notePeerAddress(r?.address);
  }

  /** Start the checks (and the address watch, the round-trip samples). */
  start(): void {
    if (this.#closed) return;
    this.checker.start();
    this.#rttTimer = setInterval(() => {
      const rtt = this.#up ? this.checker.nominated?.rttMs : undefined;
      if (rtt !== undefined && this.#rttSamples.length < MAX_RTT_SAMPLES) this.#rttSamples.push(rtt);
    }, 1000);
    this.#rttTimer.unref?.();
    if (this.#o.sendCandidates && this.#o.hostOptions) {
      this.#pollTimer = setInterval(() => this.#pollAddresses(), this.#o.addressPollMs ?? ADDRESS_POLL_MS);
      this.#pollTimer.unref?.();
    }
    if (this.#o.hardNat) {
      this.#hardNatTimer = setTimeout(() => this.#startHardNat(), this.#o.hardNat.afterMs ?? HARD_NAT_AFTER_MS);
      this.#hardNatTimer.unref?.();
    }
  }

  /** The strategies' turn: only while no pair succeeded (a late cheap pair makes them moot). */
  #startHardNat(): void {
    clearTimeout(this.#hardNatTimer);
    const h = this.#o.hardNat;
    if (this.#closed || !h || this.#hardNat || this.checker.pairs().some((p) => p.state === 'succeeded')) return;
    this.#hardNat = new HardNatRunner({
      strategies: h.strategies,
      local: h.local,
      remote: h.remote,
      remoteAddresses: [...this.#peerAddresses],
      role: this.#o.role === 'caller' ? 'controlling' : 'controlled',
      checker: this.checker,
      demux: this.#o.demux,
      families: socketFamilies(this.#o.socketType),
      ...(h.limits ? { limits: h.limits } : {}),
      ...(h.openSocket ? { openSocket: h.openSocket } : {}),
      ...(this.#o.primeTtl === undefined ? {} : { primeTtl: this.#o.primeTtl }),
    });
    void this.#hardNat.run().catch(() => undefined);
  }

  #notePeerAddress(address: string | undefined): void {
    const a = address === undefined ? undefined : canonicalAddress(address);
    if (a !== undefined && this.#peerAddresses.size < 64) this.#peerAddresses.add(a);
  }

  /** Our source id in the call's room: direct media carries it. */
  setSourceId(sourceId: number): void {
    this.transport.setSourceId(sourceId);
  }

  /**
   * Candidates of ours found after the offer or answer (a port mapping made for the call):
   * kept in the report and sent to the peer as a candidate update. Returns how many were new.
   */
  addLocalCandidates(list: readonly Candidate[]): number {
    if (this.#closed) return 0;
    // A new endpoint, or a known one as a better type (a mapping of the port the relay saw:
    // the same address, but open to anyone, so announced as mapped).
    const byKey = new Map(this.#local.map((c) => [endpointKey(c), c]));
    const fresh = list.filter((c) => (byKey.get(endpointKey(c))?.priority ?? -1) < c.priority);
    if (fresh.length === 0) return 0;
    for (const c of fresh) byKey.set(endpointKey(c), c);
    this.#local = [...byKey.values()].sort((a, b) => b.priority - a.priority).slice(0, 16);
    if (this.#o.sendCandidates) {
      this.#updatesSent++;
      this.#o.sendCandidates(this.#local);
      this.#emit({ type: 'direct:candidates-sent', count: this.#local.length, reason: 'late-candidate' });
    }
    return fresh.length;
  }

  /** The peer's candidates (an update); returns how many were new. */
  addRemoteCandidates(list: readonly unknown[], opts: { initial?: boolean } = {}): number {
    if (this.#closed) return 0;
    if (!opts.initial) {
      if (this.#updatesReceived >= MAX_CANDIDATE_UPDATES) {
        this.#updatesDropped++;
        return 0;
      }
      this.#updatesReceived++;
    }
    const converted: Candidate[] = [];
    for (const input of Array.isArray(list) ? list.slice(0, 16) : []) {
      const c = toP2pCandidate(input);
      if (c === undefined) {
        this.#refused++;
        continue;
      }
      converted.push(c);
    }
    const before = this.checker.stats.dropped.refusedCandidate;
    const added = this.checker.addRemoteCandidates(converted);
    this.#refused += this.checker.stats.dropped.refusedCandidate - before;
    for (const c of converted) if (this.#received.length < 64) this.#received.push(wireRecord(c));
    for (const c of converted) this.#notePeerAddress(c.address);
    if (!opts.initial && added > 0 && this.checker.nominated !== undefined) {
      // A peer whose addresses changed: check everything again.
      this.#restart('address-change');
    }
    return added;
  }

  /** Whether media goes direct now. */
  get up(): boolean {
    return this.transport.state === 'open';
  }

  /** The selected pair, as a status line shows it. */
  selected(): PairSummary | undefined {
    const pair = this.checker.nominated;
    return pair ? summary(pair) : undefined;
  }

  report(): DirectPathReport {
    const checks = this.checker.report();
    const media = this.transport.stats();
    const selected = this.selected();
    return {
      role: checks.role,
      candidates: {
        gathered: this.#local.map(wireRecord),
        sent: this.#local.length,
        received: [...this.#received],
        refused: this.#refused,
        ...(this.#relayObserved ? { relayObserved: this.#relayObserved } : {}),
        updatesSent: this.#updatesSent,
        updatesReceived: this.#updatesReceived,
        updatesDropped: this.#updatesDropped,
      },
      pairs: [...checks.pairs],
      ...(selected ? { selected } : {}),
      ...(this.#rttSamples.length ? { rttMs: summarizeRtt(this.#rttSamples) } : {}),
      checks: checks.stats,
      media: { sent: media.sent, received: media.received, drops: { ...this.transport.drops } },
      restarts: this.#restarts,
      ...(this.#o.hardNat ? { hardNat: this.#hardNat?.report() ?? { consent: { local: this.#o.hardNat.local.consent === true, remote: this.#o.hardNat.remote.consent === true }, notApplicable: [], attempts: [], sideSocketInUse: false } } : {}),
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#staleTimer);
    clearInterval(this.#pollTimer);
    clearInterval(this.#rttTimer);
    clearTimeout(this.#hardNatTimer);
    this.#hardNat?.close();
    this.checker.close();
    this.transport.close();
    this.#unregister();
  }

  #onCheck(data: Buffer, from: UdpSource): void {
    this.checker.receive(data, { address: unmapped(from.address), port: from.port });
  }

  #onCheckEvent(e: PathCheckEvent): void {
    switch (e.type) {
      case 'pair-succeeded':
        this.transport.validate(e.pair.remote);
        return;
      case 'nominated':
        this.transport.validate(e.pair.remote);
        this.#setUp('selected');
        return;
      case 'recovered':
        clearTimeout(this.#staleTimer);
        this.#setUp('recovered');
        return;
      case 'stale':
        this.#setDown('stale', e.silentMs);
        clearTimeout(this.#staleTimer);
        this.#staleTimer = setTimeout(() => {
          if (!this.#closed && this.checker.stale) this.#restart('restart');
        }, RESTART_AFTER_STALE_MS);
        this.#staleTimer.unref?.();
        return;
      case 'failed':
        this.#emit({ type: 'direct:failed', reason: e.reason });
        // Every cheap pair failed: the strategies need not wait their turn.
        if (this.#o.hardNat && !this.#hardNat) this.#startHardNat();
        return;
      default:
        return;
    }
  }

  #setUp(reason: 'selected' | 'recovered'): void {
    const pair = this.checker.nominated;
    if (pair === undefined) return;
    this.#up = true;
    this.#emit({ type: 'direct:up', pair: summary(pair), reason });
  }

  #setDown(reason: 'stale' | 'restart' | 'address-change', silentMs?: number): void {
    if (!this.#up) return;
    this.#up = false;
    this.#emit({ type: 'direct:down', reason, ...(silentMs === undefined ? {} : { silentMs: Math.round(silentMs) }) });
  }

  #restart(reason: 'restart' | 'address-change'): void {
    this.#setDown(reason);
    this.#restarts++;
    this.checker.restart();
  }

  #pollAddresses(): void {
    if (this.#closed || !this.#o.hostOptions || !this.#o.sendCandidates) return;
    let fresh: Candidate[];
    try {
      fresh = hostCandidates({ ...this.#o.hostOptions, families: socketFamilies(this.#o.socketType) }).candidates;
    } catch {
      return;
    }
    const key = hostKeyOf(fresh);
    if (key === this.#hostKey) return;
    this.#hostKey = key;
    const keep = [...(this.#o.keepCandidates ?? []), ...this.#local].filter((c) => c.type !== 'host');
    const seen = new Set<string>();
    this.#local = [...fresh, ...keep].filter((c) => {
      const k = endpointKey(c);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    this.#updatesSent++;
    this.#o.sendCandidates(this.#local);
    this.#emit({ type: 'direct:candidates-sent', count: this.#local.length, reason: 'address-change' });
    this.#restart('address-change');
  }

  #emit(e: DirectLinkEvent): void {
    try {
      this.#o.onEvent?.(e);
    } catch {
      // A listener's fault is not the path's.
    }
  }
}

/**
 * Prime our NAT toward the peer's candidates before anything of the peer's can arrive: one
 * check request per candidate with a low TTL (it leaves our NAT and dies before the peer's).
 * The callee does this before its answer goes out: the caller starts checking as soon as the
 * answer arrives, and a check that reaches a conntrack NAT before its own side has sent
 * anything there leaves state that moves the mapping (FACTS.md: hole punching). The checks'
 * own priming comes too late for that on the callee's side (its checker starts after the
 * answer). Returns how many were sent. Loopback and unusable candidates are skipped.
 */
export function primeTowards(options: {
  demux: Demux;
  socketType: SocketType;
  checkKey: Uint8Array;
  /** 32 hex digits. */
  callId: string;
  candidates: readonly unknown[];
  ttl: number;
}): number {
  const families = socketFamilies(options.socketType);
  const dualStack = options.socketType === 'ipv4&ipv6';
  const seen = new Set<string>();
  let sent = 0;
  for (const input of options.candidates.slice(0, 16)) {
    const c = toP2pCandidate(input);
    if (c === undefined || !families.includes(c.family) || !Number.isInteger(c.port) || c.port < 1 || c.port > 0xffff) continue;
    const scope = addressScope(c.address);
    if (scope === 'loopback' || scope === 'link-local' || scope === 'unspecified' || scope === 'multicast') continue;
    const key = endpointKey(c);
    if (seen.has(key)) continue;
    seen.add(key);
    const bytes = encodePathCheck(
      {
        type: 'request',
        transactionId: new Uint8Array(randomBytes(12)),
        callId: Uint8Array.from(Buffer.from(options.callId, 'hex')),
        controlling: false,
        nominate: false,
        tieBreaker: 0n,
        priority: 0,
      },
      options.checkKey,
    );
    const host = dualStack && c.family === 'IPv4' ? `::ffff:${c.address}` : c.address;
    if (options.demux.send(bytes, { host, port: c.port }, { ttl: options.ttl })) sent++;
  }
  return sent;
}

/** A candidate from signalling (wire form, no family) as the checks take it; undefined if it is none. */
export function toP2pCandidate(input: unknown): Candidate | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const c = input as Record<string, unknown>;
  if (typeof c.address !== 'string') return undefined;
  const address = canonicalAddress(c.address);
  const family = address === undefined ? undefined : familyOf(address);
  if (address === undefined || family === undefined) return undefined;
  return { type: c.type as Candidate['type'], address, port: c.port as number, family, priority: c.priority as number };
}

/** A candidate as signalling carries it (core/wire/candidate.ts): its four fields. */
export function toWireCandidate(c: Candidate): WireCandidateRecord {
  return wireRecord(c);
}

function wireRecord(c: Candidate): WireCandidateRecord {
  return { type: c.type, address: c.address, port: c.port, priority: c.priority };
}

function summary(pair: PairReport): PairSummary {
  return {
    types: `${pair.localType} -> ${pair.remote.type}`,
    local: pair.localType,
    remote: pair.remote.type,
    remoteAddress: formatEndpoint(pair.remote),
    ...(pair.rttMs === undefined ? {} : { rttMs: Math.round(pair.rttMs * 10) / 10 }),
  };
}

function hostKeyOf(list: readonly Candidate[]): string {
  return list
    .filter((c) => c.type === 'host')
    .map((c) => endpointKey(c))
    .sort()
    .join(',');
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function summarizeRtt(samples: number[]): { p50: number; p95: number; max: number; mean: number; samples: number } {
  const s = summarize(samples);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { p50: r(s.p50), p95: r(s.p95), max: r(s.max), mean: r(s.mean), samples: samples.length };
}

export type { Endpoint, SkippedAddress };

/**
 * A 1:1 call between two identities, set up with signed signals through the relay they are
 * registered on (./presence.ts, docs/direct-calls.md), with its media through that relay at
 * once: in an ephemeral room whose name and secret only the two parties can derive
 * (core/crypto/call-keys.ts), run by the room-call engine (runCall) with the peer as the only
 * identity allowed in.
 *
 *   caller                          relay                          callee
 *   offer(ephemeral key) ─────────► + relayCandidate ────────────► verify; ring or decide
 *   ◄──────────────────────────── ringing ◄────────────────────── (on a TTY)
 *   ◄── + relayCandidate ───────── answer(ephemeral key) ◄──────── accept
 *   both derive the call secret; both join the room it names; media flows via the relay
 *   hangup ◄──────────────────────────────────────────────────────► (either side, any time)
 *
 * Offers and answers carry the sender's candidates (./call-candidates.ts) and its NAT profile
 * with its consent to hard-NAT probing (signed separately: core/crypto/call-signal.ts);
 * `relayOnly` says the sender wants the call to stay relayed, sends neither, and asks the
 * relay not to add its observed address.
 */
import { CallDeclinedError, CalleeBusyError, CalleeOfflineError, AbortError, HandshakeError, InternalError, NetworkError, NoAnswerError, ProtocolError } from '../errors.js';
import { deriveCallKeys, deriveCallSecret, generateEphemeralKey, type CallContext, type CallKeys, type EphemeralKeyPair } from '../crypto/call-keys.js';
import { natProfileFrom, newCallId, ringingKeyFrom, type PeerNatProfile } from '../crypto/call-signal.js';
import type { NatProfile } from '../nat/strategy-types.js';
import type { Candidate } from '../wire/candidate.js';
import type { AnswerMessage, CallRole, OfferMessage, OfferPurpose } from '../wire/signal.js';
import { runCall, type CallEvent, type CallOptions, type CallReport, type CallView } from './call.js';
import type { RoomCallSession, RoomJoin, RoomJoinOptions } from './call-session.js';
import type { PresenceClient } from './presence.js';
import type { Candidate as P2pCandidate } from '../p2p/candidates.js';
import { DirectLink, MAX_TIMELINE, toWireCandidate, type DirectLinkEvent, type DirectLinkOptions, type DirectPathReport, type SocketType } from '../p2p/direct-link.js';
import type { Demux } from '../transport/demux.js';
import type { NatStrategy } from '../nat/strategy-types.js';
import { MediaPathSwitch } from '../transport/media-transport.js';
import type { KnownSignal } from '../transport/signal-stream.js';

/** How long the callee side keeps ringing at most (the caller's --ring-timeout is shorter). */
export const MAX_RING_MS = 120_000;
/** How long the peer has to show up, proven, in the call's room once both joined. */
export const DEFAULT_ADMIT_WITHIN_MS = 10_000;

/** What became of the peer's NAT profile (core/crypto/call-signal.ts natProfileFrom, without the profile). */
export type PeerNatStatus = { status: 'verified' } | Exclude<PeerNatProfile, { status: 'verified' }>;

/** What ended a call from the other side. */
export type PeerEnd = 'peer-hangup' | 'peer-gone';

/** An answered call: both sides hold its keys. */
export interface EstablishedCall {
  callId: string;
  role: CallRole;
  /** The other party's fingerprint (verified: it signed the offer or answer). */
  peer: string;
  keys: CallKeys;
  /** The peer's candidates (signed) and what the relay observed of it (a hint, unsigned). */
  peerCandidates: Candidate[];
  peerRelayOnly: boolean;
  relayCandidate?: Candidate;
  /**
   * The two NAT profiles of this call, as the hard-NAT strategies take them
   * (StrategyContext `{ local: localNat, remote: peerNat }`): exactly what each side signed, so
   * both sides run a strategy on the same pair. `localNat`: ours as sent in our offer or answer
   * (absent: none sent, with --relay-only or a loopback relay). `peerNat`: the peer's, its
   * signature verified (absent: none, or not usable: `peerNatStatus` says which). An absent
   * profile means no consent from that side.
   */
  localNat?: NatProfile;
  peerNat?: NatProfile;
  /** What became of the peer's profile: verified, absent, or ignored (with the problem). */
  peerNatStatus: PeerNatStatus;
  /** Resolves when the peer hangs up (signed) or the relay says its connection closed. */
  peerEnded: Promise<PeerEnd>;
  /** The peer's signed candidate updates (its addresses changed), from now on (replaces the previous listener). */
  onCandidateUpdate(listener: (candidates: Candidate[]) => void): void;
  /** Send the peer our candidates again (after an address change); errors ignored. */
  sendCandidates(candidates: Candidate[]): Promise<void>;
  /** Tell the peer we hung up (once; errors ignored: the call is over either way). */
  hangup(): Promise<void>;
  /** Stop receiving this call's signals. */
  close(): void;
}

export interface PlaceCallOptions {
  to: string;
  /** Send no host or mapped candidates, and ask the relay not to add our address. */
  relayOnly?: boolean;
  /** Our candidates (ignored with relayOnly). */
  candidates?: Candidate[];
  /** Our NAT profile with our consent, signed into the offer (ignored with relayOnly). */
  nat?: NatProfile;
  ringTimeoutMs: number;
  /** Not a call: a direct-path test (`wzp direct-test`; OfferMessage.purpose). */
  purpose?: OfferPurpose;
  signal?: AbortSignal;
  onRinging?(): void;
  /**
   * The callee rang with its ephemeral key (signed): the call's keys are known now, before
   * the answer, and its room can be joined while it rings (runDirectMedia with `answered`).
   * Told at most once. The answer must carry the same key, or the call fails (ProtocolError).
   */
  onRingingKeys?(ringing: RingingCall): void;
}

/**
 * A call ringing with the callee's key: the keys (and so the room) of the call it becomes when
 * answered. The caller has it from the callee's ringing; the callee from IncomingCall.ringingCall
 * once it rang.
 */
export interface RingingCall {
  callId: string;
  role: CallRole;
  /** The other party (for a caller, the callee that signed the ringing). */
  peer: string;
  keys: CallKeys;
}

/**
 * Offer a call to `to` and wait for its answer. Throws CalleeOfflineError, CallDeclinedError,
 * CalleeBusyError, NoAnswerError (after telling the callee we hung up), AbortError.
 */
export async function placeCall(presence: PresenceClient, opts: PlaceCallOptions): Promise<EstablishedCall> {
  const callId = newCallId();
  const ephemeral = generateEphemeralKey();
  const relayOnly = opts.relayOnly === true;
  let settle!: { resolve(m: AnswerMessage): void; reject(e: Error): void };
  const answered = new Promise<AnswerMessage>((resolve, reject) => (settle = { resolve, reject }));
  answered.catch(() => undefined); // a reject after we stopped waiting is nobody's concern
  const ended = peerEndWatch();
  let answer: AnswerMessage | undefined;
  /** The callee's key from its ringing (signed), if it sent one. */
  let ringingKey: string | undefined;
  const untrack = presence.track(callId, (msg) => {
    if (msg.type === 'call-gone') {
      if (answer === undefined) settle.reject(new CalleeOfflineError(`${opts.to} went offline before answering`));
      else ended.end('peer-gone');
      return;
    }
    if (msg.from !== opts.to) return;
    switch (msg.type) {
      case 'ringing':
        if (answer === undefined) {
          opts.onRinging?.();
          const key = ringingKeyFrom(msg);
          if (key !== undefined && ringingKey === undefined) {
            ringingKey = key;
            const keys = callKeysFor('caller', key, ephemeral, { callId, caller: presence.fingerprint, callee: opts.to });
            if (keys) opts.onRingingKeys?.({ callId, role: 'caller', peer: opts.to, keys });
          }
        }
        return;
      case 'answer':
        if (answer === undefined) {
          answer = msg;
          settle.resolve(msg);
        }
        return;
      case 'reject':
        if (answer === undefined) {
          settle.reject(msg.reason === 'busy' ? new CalleeBusyError(`${opts.to} is in another call`) : new CallDeclinedError(`${opts.to} declined the call`));
        }
        return;
      case 'hangup':
        if (answer === undefined) settle.reject(new CallDeclinedError(`${opts.to} hung up before answering`));
        else ended.end('peer-hangup');
        return;
      case 'candidate-update':
        if (answer !== undefined) updates.deliver(msg.candidates);
        return;
      default:
        return;
    }
  });
  const updates = candidateUpdates();
  const base = { callId, to: opts.to, role: 'caller' as const };
  const hangup = onceAsync(async () => {
    await presence.send({ ...base, type: 'hangup' }, { timeoutMs: 1000 }).catch(() => undefined);
  });
  const nat = relayOnly ? undefined : opts.nat;
  try {
    const routed = await presence.send(
      {
        ...base,
        type: 'offer',
        ephemeralKey: b64(ephemeral.publicKey),
        candidates: relayOnly ? [] : (opts.candidates ?? []),
        ...(relayOnly ? { relayOnly: true } : {}),
        ...(opts.purpose ? { purpose: opts.purpose } : {}),
        ...(nat ? { nat } : {}),
      },
      { signal: opts.signal },
    );
    if (routed === 'offline') {
      throw new CalleeOfflineError(`nobody is registered as ${opts.to} on this relay`, {
        suggestions: ['ask them to run `wzp listen RELAY` on this relay, then call again'],
      });
    }
    const msg = await waitFor(answered, opts.ringTimeoutMs, opts.signal, opts.to);
    if (ringingKey !== undefined && msg.ephemeralKey !== ringingKey) {
      // Both are signed by the callee: not the relay's doing, a callee that breaks the protocol.
      throw new ProtocolError(`${opts.to} answered with another ephemeral key than it rang with`);
    }
    const send = (candidates: Candidate[]) => presence.send({ ...base, type: 'candidate-update', candidates }, { timeoutMs: 2000 }).then(() => undefined, () => undefined);
    return established('caller', msg, ephemeral, { callId, caller: presence.fingerprint, callee: opts.to }, nat, ended, hangup, untrack, updates, send);
  } catch (err) {
    // Any end before an answer (timeout, Ctrl-C) hangs up, so the callee stops ringing.
    if (!(err instanceof CalleeOfflineError) && !(err instanceof CallDeclinedError) && !(err instanceof CalleeBusyError)) await hangup();
    untrack();
    throw err;
  }
}

/** An offer that verified, for the callee to ring, answer or reject. */
export class IncomingCall {
  /** Resolves when the caller gives up (hangs up, or its connection closes) before we answer. */
  readonly cancelled: Promise<PeerEnd>;
  private readonly ended = peerEndWatch();
  private readonly updates = candidateUpdates();
  private readonly untrack: () => void;
  private answered = false;
  private readonly base: { callId: string; to: string; role: 'callee' };
  /** Our ephemeral key for this call: sent with the ringing and the answer. */
  #ephemeral: EphemeralKeyPair | undefined;

  constructor(
    private readonly presence: PresenceClient,
    readonly offer: OfferMessage,
  ) {
    this.base = { callId: offer.callId, to: offer.from, role: 'callee' };
    this.cancelled = this.ended.promise;
    this.untrack = presence.track(offer.callId, (msg) => {
      if (msg.type === 'call-gone') this.ended.end('peer-gone');
      else if (msg.type === 'hangup' && msg.from === offer.from) this.ended.end('peer-hangup');
      else if (msg.type === 'candidate-update' && msg.from === offer.from && this.answered) this.updates.deliver(msg.candidates);
    });
  }

  get caller(): string {
    return this.offer.from;
  }

  get callId(): string {
    return this.offer.callId;
  }

  /**
   * Tell the caller we are ringing, with our ephemeral key for the call (signed): it derives
   * the call's keys and joins the call's room while we ring (nothing flows there until we
   * answer and join it too). The answer carries the same key.
   */
  async ring(): Promise<void> {
    await this.presence.send({ ...this.base, type: 'ringing', ephemeralKey: b64(this.ephemeral().publicKey) });
  }

  private ephemeral(): EphemeralKeyPair {
    return (this.#ephemeral ??= generateEphemeralKey());
  }

  /**
   * The call as it will be once we answer, with our key as ring() sent it: its keys, and so its
   * room, which we can join before answering (runDirectMedia with `answered`). Undefined when
   * the offer's key is no X25519 key (accept then fails on it, where it is reported).
   */
  ringingCall(): RingingCall | undefined {
    const keys = callKeysFor('callee', this.offer.ephemeralKey, this.ephemeral(), { callId: this.offer.callId, caller: this.offer.from, callee: this.presence.fingerprint });
    return keys && { callId: this.offer.callId, role: 'callee', peer: this.offer.from, keys };
  }

  async reject(reason: 'declined' | 'busy'): Promise<void> {
    try {
      await this.presence.send({ ...this.base, type: 'reject', reason }, { timeoutMs: 2000 }).catch(() => undefined);
    } finally {
      this.untrack();
    }
  }

  /**
   * Answer: our ephemeral key goes to the caller, and both derive the call's keys.
   * `beforeAnswer` runs with the call's keys just before the answer is sent (the direct path
   * primes our NAT then: the caller starts checking as soon as it has the answer).
   */
  async accept(
    opts: {
      relayOnly?: boolean;
      candidates?: Candidate[];
      /** Our NAT profile with our consent, signed into the answer (ignored with relayOnly). */
      nat?: NatProfile;
      beforeAnswer?(call: { callId: string; keys: CallKeys }): void;
      /**
       * Wait for the relay's `routed` (default true: an `offline` caller is a NetworkError). With
       * false the call is returned as soon as the answer is sent, and a caller gone meanwhile
       * ends it (`peerEnded`: peer-gone).
       */
      waitForRoute?: boolean;
    } = {},
  ): Promise<EstablishedCall> {
    if (this.answered) throw new Error('already answered');
    this.answered = true;
    const ephemeral = this.ephemeral();
    const relayOnly = opts.relayOnly === true;
    const nat = relayOnly ? undefined : opts.nat;
    if (opts.beforeAnswer) {
      const peerKey = new Uint8Array(Buffer.from(this.offer.ephemeralKey, 'base64'));
      const context: CallContext = {
        callId: this.offer.callId,
        callerFingerprint: this.offer.from,
        calleeFingerprint: this.presence.fingerprint,
        callerEphemeralKey: peerKey,
        calleeEphemeralKey: ephemeral.publicKey,
      };
      try {
        opts.beforeAnswer({ callId: this.offer.callId, keys: deriveCallKeys(deriveCallSecret(ephemeral.privateKey, peerKey, context)) });
      } catch {
        // A bad offer key fails again below, where it is reported; a failed priming costs only speed.
      }
    }
    const hangup = onceAsync(async () => {
      await this.presence.send({ ...this.base, type: 'hangup' }, { timeoutMs: 1000 }).catch(() => undefined);
    });
    const sent = this.presence.send({
      ...this.base,
      type: 'answer',
      ephemeralKey: b64(ephemeral.publicKey),
      candidates: relayOnly ? [] : (opts.candidates ?? []),
      ...(relayOnly ? { relayOnly: true } : {}),
      ...(nat ? { nat } : {}),
    });
    if (opts.waitForRoute === false) {
      // The media starts now, a relay round trip sooner; a caller gone meanwhile ends the call
      // as if its connection had closed.
      void sent.then(
        (routed) => {
          if (routed === 'offline') this.ended.end('peer-gone');
        },
        () => this.ended.end('peer-gone'),
      );
      // Let the answer leave before the media's set-up work (~10-20 ms of it) takes the
      // process: written in microtasks, it would otherwise wait for that work to end, and the
      // caller, who starts its media on the answer, with it.
      await new Promise<void>((resolve) => setImmediate(resolve));
    } else {
      try {
        if ((await sent) === 'offline') throw new NetworkError(`the caller ${this.offer.from} is no longer on the relay`);
      } catch (err) {
        this.untrack();
        throw err;
      }
    }
    const context = { callId: this.offer.callId, caller: this.offer.from, callee: this.presence.fingerprint };
    const send = (candidates: Candidate[]) =>
      this.presence.send({ ...this.base, type: 'candidate-update', candidates }, { timeoutMs: 2000 }).then(
        () => undefined,
        () => undefined,
      );
    return established('callee', this.offer, ephemeral, context, nat, this.ended, hangup, this.untrack, this.updates, send);
  }
}

function established(
  role: CallRole,
  peerMessage: OfferMessage | AnswerMessage,
  own: EphemeralKeyPair,
  ids: { callId: string; caller: string; callee: string },
  localNat: NatProfile | undefined,
  ended: PeerEndWatch,
  hangup: () => Promise<void>,
  untrack: () => void,
  updates: CandidateUpdates,
  sendCandidates: (candidates: Candidate[]) => Promise<void>,
): EstablishedCall {
  const keys = deriveKeysFor(role, peerMessage.ephemeralKey, own, ids);
  // The peer's message passed the CallSignalVerifier (PresenceClient.receive), so its key is its sender's.
  const peerNat = natProfileFrom(peerMessage);
  return {
    callId: ids.callId,
    role,
    peer: role === 'caller' ? ids.callee : ids.caller,
    keys,
    peerCandidates: peerMessage.candidates,
    peerRelayOnly: peerMessage.relayOnly === true,
    ...(peerMessage.relayCandidate ? { relayCandidate: peerMessage.relayCandidate } : {}),
    ...(localNat ? { localNat } : {}),
    ...(peerNat.status === 'verified' ? { peerNat: peerNat.profile } : {}),
    peerNatStatus: peerNat.status === 'verified' ? { status: 'verified' } : peerNat,
    peerEnded: ended.promise,
    onCandidateUpdate: (listener) => updates.listen(listener),
    sendCandidates,
    hangup,
    close: untrack,
  };
}

/** The call's keys from our ephemeral key and the peer's (base64); throws on a key that is no X25519 public key. */
function deriveKeysFor(role: CallRole, peerKeyB64: string, own: EphemeralKeyPair, ids: { callId: string; caller: string; callee: string }): CallKeys {
  const peerKey = new Uint8Array(Buffer.from(peerKeyB64, 'base64'));
  const context: CallContext = {
    callId: ids.callId,
    callerFingerprint: ids.caller,
    calleeFingerprint: ids.callee,
    callerEphemeralKey: role === 'caller' ? own.publicKey : peerKey,
    calleeEphemeralKey: role === 'caller' ? peerKey : own.publicKey,
  };
  return deriveCallKeys(deriveCallSecret(own.privateKey, peerKey, context));
}

/** deriveKeysFor, or undefined for a bad key (a ringing's: the answer then fails on it, where it is reported). */
function callKeysFor(role: CallRole, peerKeyB64: string, own: EphemeralKeyPair, ids: { callId: string; caller: string; callee: string }): CallKeys | undefined {
  try {
    return deriveKeysFor(role, peerKeyB64, own, ids);
  } catch {
    return undefined;
  }
}

interface CandidateUpdates {
  deliver(candidates: Candidate[]): void;
  listen(listener: (candidates: Candidate[]) => void): void;
}

/** The peer's candidate updates; those before a listener are kept (a few) for it. */
function candidateUpdates(): CandidateUpdates {
  let listener: ((candidates: Candidate[]) => void) | undefined;
  const early: Candidate[][] = [];
  return {
    deliver(candidates) {
      if (listener) listener(candidates);
      else if (early.length < 4) early.push(candidates);
    },
    listen(l) {
      listener = l;
      for (const c of early.splice(0)) l(c);
    },
  };
}

export interface DirectMediaResult {
  report: CallReport;
  /** Who ended it: we did (hangup: Ctrl-C; duration; source-ended; relay-lost), or the peer. */
  endedBy: CallReport['endedBy'] | PeerEnd | 'peer-left';
  /** Which way the media went, when it moved and why. */
  path: CallPathReport;
}

/** What runDirectMedia needs to try the direct path: the relay connection's socket and our candidates. */
export interface DirectPathOptions {
  demux: Demux;
  socketType: SocketType;
  /** Our candidates as sent in the offer or answer. */
  localCandidates: readonly P2pCandidate[];
  /** For watching the interfaces: host gathering's options (port: the socket's). */
  hostOptions?: DirectLinkOptions['hostOptions'];
  /** Candidates still being gathered (a port mapping): sent to the peer as an update when they come. */
  laterCandidates?: Promise<readonly P2pCandidate[]>;
  primeTtl?: number;
  allowLoopback?: boolean;
  checks?: DirectLinkOptions['checks'];
  addressPollMs?: number;
  /**
   * The hard-NAT strategies to run (installed NAT-strategy plugins, in order) when the cheap
   * candidates find no pair; they run only with both sides' signed profiles and consent
   * (EstablishedCall.localNat / peerNat). Absent or empty: none.
   */
  strategies?: readonly NatStrategy[];
  /** Tests: the strategies' limits, the start delay and the side sockets (DirectLinkOptions.hardNat). */
  hardNat?: Partial<Pick<NonNullable<DirectLinkOptions['hardNat']>, 'limits' | 'afterMs' | 'openSocket'>>;
}

/**
 * The direct link of an answered call (not started): its keys and the peer's candidates, our
 * gathering, the strategies, and the peer's candidate updates and our late candidates fed in.
 * `watchAddresses`: re-gather on a local address change (a call; a short test need not).
 */
export function directLinkFor(call: EstablishedCall, d: DirectPathOptions, o: { watchAddresses: boolean; onEvent(e: DirectLinkEvent): void }): DirectLink {
  const hardNat = hardNatFor(call, d);
  const link = new DirectLink({
    role: call.role,
    callId: call.callId,
    checkKey: call.keys.checkKey,
    directPathKey: call.keys.directPathKey,
    demux: d.demux,
    socketType: d.socketType,
    localCandidates: d.localCandidates,
    peerCandidates: call.peerCandidates,
    ...(call.relayCandidate ? { relayCandidate: call.relayCandidate } : {}),
    sendCandidates: (c) => void call.sendCandidates(c.map(toWireCandidate)),
    ...(o.watchAddresses && d.hostOptions ? { hostOptions: d.hostOptions, keepCandidates: d.localCandidates } : {}),
    ...(d.primeTtl === undefined ? {} : { primeTtl: d.primeTtl }),
    ...(d.allowLoopback ? { allowLoopback: true } : {}),
    ...(d.checks ? { checks: d.checks } : {}),
    ...(d.addressPollMs === undefined ? {} : { addressPollMs: d.addressPollMs }),
    ...(hardNat ? { hardNat } : {}),
    onEvent: o.onEvent,
  });
  call.onCandidateUpdate((c) => link.addRemoteCandidates(c));
  void d.laterCandidates?.then(
    (c) => link.addLocalCandidates(c),
    () => undefined,
  );
  return link;
}

/** The direct link's hard-NAT part for this call: both signed profiles and the strategies, or undefined. */
export function hardNatFor(call: Pick<EstablishedCall, 'localNat' | 'peerNat'>, d: DirectPathOptions): DirectLinkOptions['hardNat'] {
  if (!d.strategies || d.strategies.length === 0 || !call.localNat || !call.peerNat) return undefined;
  return { strategies: d.strategies, local: call.localNat, remote: call.peerNat, ...(d.hardNat ?? {}) };
}

/** One moment of the call's path: answered, first audio, or a switch between relay and direct. */
export interface PathTimelineEntry {
  /** ms since the answer (sent or received). */
  atMs: number;
  event: 'answered' | 'first-audio' | 'switch';
  /** The path our media took from then on. */
  path: 'relay' | 'direct';
  reason: string;
  /** For a switch to direct: the pair (`host -> srflx 192.0.2.2:4000`). */
  pair?: string;
  /**
   * For a switch: frames concealed in what we played around it, the audible gap of a switch.
   * To direct, from SWITCH_GAP_LEAD_MS before the first move of either side (this switch, or
   * the peer's first media on the direct path if that came first: nothing concealed before
   * either side moved can be the move's doing) to SWITCH_GAP_AFTER_MS after this switch;
   * back to the relay (the direct path went quiet before), from SWITCH_GAP_BEFORE_MS before
   * it. Never before the first audio. Absent when the call ended before the window did, or
   * no audio had played yet (nothing to interrupt).
   */
  concealedFrames?: number;
}

/** The call's two NAT profiles, for the report (EstablishedCall.localNat / peerNat). */
export interface CallNatReport {
  /** Ours, as measured on the call's socket and sent, signed (absent: --relay-only, a loopback relay). */
  local?: NatProfile;
  /** How ours was judged: why a field is unknown, what a judgement rests on. */
  localNotes?: string[];
  /** The peer's, as it signed it (absent: it sent none, or it was ignored). */
  remote?: NatProfile;
  /** verified; absent (an older peer, its --relay-only or loopback relay: no consent); ignored (treated as absent, see remoteProblem). */
  remoteStatus: PeerNatProfile['status'];
  remoteProblem?: string;
}

/**
 * The window around a switch in which concealed frames are counted as its gap: a switch back
 * to the relay from SWITCH_GAP_BEFORE_MS before it, a switch to direct from SWITCH_GAP_LEAD_MS
 * before the first move of either side (two frames: what was in flight or due to play when
 * the first side moved); both to SWITCH_GAP_AFTER_MS after it.
 */
export const SWITCH_GAP_BEFORE_MS = 200;
export const SWITCH_GAP_LEAD_MS = 40;
export const SWITCH_GAP_AFTER_MS = 1000;
/** How often the path tracker looks at the switch (a side that sends nothing still moves). */
const PATH_POLL_MS = 20;
/**
 * The call's start, for startConcealedFrames: from the answer to this many ms after it. It
 * holds the first upgrade's gap window when the upgrade comes within 500 ms of the answer (as
 * it does where both NATs map endpoint-independently), so a relay-only call's count is the
 * background that gap is to be compared with.
 */
export const CALL_START_WINDOW_MS = 1500;

export interface CallPathReport {
  /** When the call was answered (sent or received), ISO time: the timeline's 0. */
  answeredAt: string;
  /** The path at the end. */
  final: 'relay' | 'direct';
  /** Whether a direct path was tried, and if not, why. */
  attempted: boolean;
  notAttempted?: 'relay-only' | 'peer-relay-only' | 'no-socket';
  /** At most MAX_TIMELINE entries; more are counted. */
  timeline: PathTimelineEntry[];
  timelineNotListed: number;
  /** Answer to the first switch to direct, ms. */
  timeToDirectMs?: number;
  /**
   * Frames concealed from the first audio to CALL_START_WINDOW_MS after the answer, whatever
   * the path (absent when the call ended before, or no audio had played by then). On a call
   * that stays relayed this is the start's background concealment (late or lost packets, a
   * busy machine), which a switch's concealedFrames also counts when it falls in its window.
   */
  startConcealedFrames?: number;
  /** Time on each path, ms. */
  relayMs: number;
  directMs: number;
  /** Switches back to the relay (a direct path that stopped answering). */
  fallbacks: number;
  /** Both sides' NAT profiles: why a hard-NAT strategy could apply, or could not. */
  nat: CallNatReport;
  /** The relay leg's round trips (as the call report's relayRttMs) and the direct path's. */
  rttMs: { relay?: CallReport['relayRttMs']; direct?: DirectPathReport['rttMs'] };
  /** The checks, candidates and pairs (absent when not attempted). */
  direct?: DirectPathReport;
}

/** What a call started while ringing (runDirectMedia's `answered`) learns when it is answered. */
export interface AnsweredCall {
  call: EstablishedCall;
  /** When the answer was received (caller) or sent (callee), performance.now(): the path timeline's 0. */
  answeredAt: number;
  /** The direct path's options, when they were not known at the start (`directWithAnswer`). */
  direct?: DirectPathOptions;
  /** How our NAT profile was judged, when not known at the start. */
  natNotes?: readonly string[];
}

/**
 * Run the call's media through the relay: runCall in the call's room (name and secret from
 * the call secret), admitting only the peer. Ends when we hang up (the signal), the peer hangs
 * up or leaves the room, or the peer has not shown up proven within `admitWithinMs`
 * (HandshakeError: the peer's identity was not verified in the room). Tells the peer when
 * we end it.
 *
 * A caller whose callee rang with its key (placeCall's onRingingKeys), or a callee that rang
 * (IncomingCall.ringingCall), can start this before the answer: `call` is then
 * `{ ringing, answered }`. The call's room is joined at once; the media,
 * the direct path and everything that needs the answer start when `answered` resolves (with
 * the answer's arrival, performance.now(): the timeline's 0). If it rejects (declined, no answer, cancelled), the
 * room is left and this rejects with its error.
 */
export async function runDirectMedia(
  call: EstablishedCall | { ringing: RingingCall; answered: Promise<AnsweredCall> },
  opts: Omit<CallOptions, 'room' | 'roomSecret' | 'allow' | 'reconnect' | 'reconnectForMs' | 'startGate'> & {
    admitWithinMs?: number;
    /** Try a direct path (absent: the media stays on the relay, unless `answered` brings one). */
    direct?: DirectPathOptions;
    /**
     * The direct path's options come with `answered` (a callee that joins the room while it
     * gathers its candidates, before it answers): ready to take them then.
     */
    directWithAnswer?: boolean;
    /** We asked for --relay-only (no direct path either way). */
    relayOnly?: boolean;
    /** How our NAT profile (call.localNat) was judged, for the report (GatheredForCall.natNotes). */
    natNotes?: readonly string[];
    /** When the answer was received (caller) or sent (callee), performance.now(): the path timeline's 0 (default: now; with `answered`, when it resolves). */
    answeredAt?: number;
  },
): Promise<DirectMediaResult> {
  const early = 'ringing' in call ? call : undefined;
  const base: Pick<EstablishedCall, 'callId' | 'role' | 'peer' | 'keys'> = early ? early.ringing : (call as EstablishedCall);
  const admitWithinMs = opts.admitWithinMs ?? DEFAULT_ADMIT_WITHIN_MS;
  // Our media goes on a path switch whose direct path is added once the answer says we may try it.
  const wrapped = (opts.direct !== undefined || opts.directWithAnswer === true) && !opts.relayOnly ? new DirectCallSession(opts.session, base.peer) : undefined;
  let natNotes = opts.natNotes;
  const session: RoomCallSession = wrapped ?? opts.session;
  const stop = new AbortController();
  let peerEnd: PeerEnd | 'peer-left' | undefined;
  let admitted = false;
  let unverified = false;
  const timers: NodeJS.Timeout[] = [];
  let established: EstablishedCall | undefined;
  let tracker: PathTracker | undefined;
  let link: DirectLink | undefined;
  let notAttempted: CallPathReport['notAttempted'];
  let view: CallView | undefined;
  /** The media ended: no direct path is made any more. */
  let finished = false;
  /** The answer is in: the path's timeline starts, the direct path is tried, the peer has admitWithinMs to show up. */
  const onAnswered = (est: EstablishedCall, answeredAt: number, late?: Pick<AnsweredCall, 'direct' | 'natNotes'>) => {
    const direct = late?.direct ?? opts.direct;
    natNotes = late?.natNotes ?? natNotes;
    established = est;
    const t = (tracker = new PathTracker(answeredAt));
    if (view) t.observe(view);
    notAttempted = opts.relayOnly ? 'relay-only' : est.peerRelayOnly ? 'peer-relay-only' : direct === undefined ? 'no-socket' : undefined;
    if (notAttempted === undefined && direct !== undefined && wrapped) {
      t.watch(wrapped.mediaTransport);
      // The direct path is set up (3-8 ms of work in the lab) and its checks start after the
      // relayed media's first frame has gone (the answer's continuation sends it) and the call's
      // join request is out (runCall sends it first): the relayed media, which comes first,
      // waits for nothing the direct path does.
      setImmediate(() => {
        if (finished) return;
        const l = (link = directLinkFor(est, direct, { watchAddresses: true, onEvent: (e) => t.linkEvent(e) }));
        wrapped.attach(l);
        l.start();
      });
    }
    void est.peerEnded.then((why) => {
      peerEnd ??= why;
      stop.abort();
    });
    timers.push(
      setTimeout(() => {
        if (!admitted) {
          unverified = true;
          stop.abort();
        }
      }, admitWithinMs),
    );
  };
  let startGate: Promise<unknown> | undefined;
  if (early) {
    startGate = early.answered.then((a) => onAnswered(a.call, a.answeredAt, a));
    startGate.catch(() => undefined); // runCall takes it (and its error) once it has joined
  } else onAnswered(call as EstablishedCall, opts.answeredAt ?? performance.now());
  // Our hang-up (Ctrl-C) is signalled before we leave the room, so the peer learns why (before
  // the answer, placeCall hangs up itself).
  const onUserAbort = () => void (established?.hangup() ?? Promise.resolve()).finally(() => stop.abort());
  if (opts.signal?.aborted) onUserAbort();
  else opts.signal?.addEventListener('abort', onUserAbort, { once: true });
  const onEvent = (e: CallEvent) => {
    if ((e.type === 'call:member-joined' || e.type === 'call:member-reconnected') && e.fingerprint === base.peer) admitted = true;
    if (e.type === 'call:first-audio') tracker?.firstAudio();
    if (e.type === 'call:status') {
      tracker?.poll();
      const pair = link?.up ? link.selected() : undefined;
      e = { ...e, status: { ...e.status, path: pair ? { kind: 'direct', pair: pair.types, ...(pair.rttMs === undefined ? {} : { rttMs: pair.rttMs }) } : { kind: 'relay' } } };
      // On the direct path the member's round trip is the pair's, not the relay's two legs.
      if (pair?.rttMs !== undefined) e.status.rttMs = pair.rttMs;
    }
    if (e.type === 'call:member-left' && e.fingerprint === base.peer) {
      // Its signed hangup usually comes first; give it a moment before calling it a departure.
      timers.push(
        setTimeout(() => {
          peerEnd ??= 'peer-left';
          stop.abort();
        }, PEER_LEFT_GRACE_MS),
      );
    }
    opts.onEvent?.(e);
  };
  let report: CallReport;
  try {
    report = await runCall({
      ...opts,
      session,
      observe: (v) => {
        view = v;
        tracker?.observe(v);
        opts.observe?.(v);
      },
      room: base.keys.roomName,
      roomSecret: base.keys.roomSecret,
      allow: [base.peer],
      // Both first keys come from the call secret: no wrapped key on the way to first audio.
      seededKeys: {
        own: base.keys.firstSenderKeys[base.role],
        peer: base.peer,
        peerKey: base.keys.firstSenderKeys[base.role === 'caller' ? 'callee' : 'caller'],
      },
      ...(startGate ? { startGate } : {}),
      signal: stop.signal,
      onEvent,
    });
  } catch (err) {
    if (established) {
      await established.hangup();
      established.close();
    }
    throw err;
  } finally {
    finished = true;
    for (const t of timers) clearTimeout(t);
    opts.signal?.removeEventListener('abort', onUserAbort);
    tracker?.stop();
    link?.close();
  }
  // runCall ran its clock only after the gate: the call was answered.
  if (!established || !tracker) throw new InternalError('the call ended without its answer');
  if (peerEnd === undefined) await established.hangup();
  established.close();
  if (unverified && peerEnd === undefined) {
    throw new HandshakeError(`${base.peer} answered but did not prove its identity in the call's room within ${Math.round(admitWithinMs / 1000)} s`, {
      suggestions: ['the call was hung up; try again (a relay that interferes with the call room shows this too)'],
    });
  }
  const path = tracker.report(notAttempted, report.relayRttMs, link?.report(), natReport(established, natNotes));
  return { report, endedBy: peerEnd ?? report.endedBy, path };
}

function natReport(call: EstablishedCall, notes: readonly string[] | undefined): CallNatReport {
  const status = call.peerNatStatus;
  return {
    ...(call.localNat ? { local: call.localNat } : {}),
    ...(call.localNat && notes?.length ? { localNotes: [...notes] } : {}),
    ...(call.peerNat ? { remote: call.peerNat } : {}),
    remoteStatus: status.status,
    ...(status.status === 'ignored' ? { remoteProblem: status.problem } : {}),
  };
}

/**
 * A relay session as a direct call's media sees it: the same session, with media going on a
 * path switch of the direct path (preferred while open, once attached) and the relay's own
 * paths. Our source id in the room, once joined, goes to the direct path (direct media
 * carries it).
 */
class DirectCallSession implements RoomCallSession {
  readonly mediaTransport: MediaPathSwitch;
  #link: DirectLink | undefined;
  #sourceId: number | undefined;
  /** The peer's source id in our room as our relay numbers it (from the roster). */
  #peerSourceId: number | undefined;

  /** `peer`: the peer's fingerprint. */
  constructor(
    private readonly inner: RoomCallSession,
    private readonly peer: string,
  ) {
    this.mediaTransport = new MediaPathSwitch([inner.mediaTransport]);
  }

  /** The direct path to prefer from now on (made once the call is answered). */
  attach(link: DirectLink): void {
    this.#link = link;
    if (this.#sourceId !== undefined) link.setSourceId(this.#sourceId);
    link.transport.setPeerSourceId(this.#peerSourceId);
    this.mediaTransport.prepend(link.transport);
  }

  async joinRoom(room: string, opts?: RoomJoinOptions): Promise<RoomJoin> {
    const joined = await this.inner.joinRoom(room, opts);
    this.#sourceId = joined.sourceId;
    this.#link?.setSourceId(joined.sourceId);
    // A roster update sent after the answer can be handled before this continuation runs (its
    // listener runs as the frame is read): it is the newer roster.
    this.#roster(this.#pushed ?? joined.participants);
    return joined;
  }

  onPush(listener: (msg: KnownSignal) => void): void {
    this.inner.onPush((msg) => {
      if (msg.type === 'room-update') {
        this.#pushed = msg.participants;
        this.#roster(msg.participants);
      }
      listener(msg);
    });
  }

  /** The latest roster a room-update brought. */
  #pushed: readonly { sourceId: number; fingerprint: string }[] | undefined;

  /** The peer's id in our room: the direct path's datagrams are handed up under it. */
  #roster(participants: readonly { sourceId: number; fingerprint: string }[]): void {
    // By the fingerprint the relay lists (the one the member joined with); a call's room holds
    // its two parties only (admission), so failing that, the one member that is not us. (A
    // roster entry from another relay of a federation may list no fingerprint.)
    const others = participants.filter((p) => p.sourceId !== this.#sourceId);
    const id = (others.find((p) => p.fingerprint === this.peer) ?? (others.length === 1 && this.#sourceId !== undefined ? others[0] : undefined))?.sourceId;
    if (id === this.#peerSourceId) return;
    this.#peerSourceId = id;
    this.#link?.transport.setPeerSourceId(id);
  }

  roomSignal(payload: Record<string, unknown>, to?: number, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    return this.inner.roomSignal(payload, to, opts);
  }

  leave(opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    return this.inner.leave(opts);
  }

  mediaPathStats(): { path: 'udp' | 'quic' } {
    return this.inner.mediaPathStats();
  }

  ping(opts: { timeoutMs: number }): Promise<unknown> {
    return this.inner.ping(opts);
  }

  mediaRtt(timeoutMs: number): Promise<number | undefined> {
    return this.inner.mediaRtt(timeoutMs);
  }

  get closed(): Promise<void> {
    return this.inner.closed;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * The concealed-frame count at `at` from (time, count) samples, oldest first: the latest
 * sample taken at or before it, else the oldest (the window then starts before what is kept,
 * and counts a little more rather than less).
 */
function concealedAt(samples: readonly (readonly [number, number])[], at: number): number | undefined {
  let count = samples[0]?.[1];
  for (const [t, n] of samples) {
    if (t > at) break;
    count = n;
  }
  return count;
}

/** Follows which path our media takes (the switch's active path) and why, for the report. */
class PathTracker {
  readonly #timeline: PathTimelineEntry[] = [];
  #notListed = 0;
  #switch: MediaPathSwitch | undefined;
  #path: 'relay' | 'direct' = 'relay';
  #since: number;
  #relayMs = 0;
  #directMs = 0;
  #fallbacks = 0;
  #firstDirectAt: number | undefined;
  #reason = '';
  #pair: string | undefined;
  #poll: NodeJS.Timeout | undefined;
  #stopped = false;
  #view: CallView | undefined;
  #concealedAtFirstAudio: number | undefined;
  /** Concealed-frame counts of the last SWITCH_GAP_BEFORE_MS (time, count), newest last. */
  readonly #recentConcealed: [number, number][] = [];
  /** Datagrams the direct path had received at the last poll. */
  #directReceived = 0;
  /** When media from the peer started arriving on the direct path since our last move to the relay (to a poll's precision, early side). */
  #directMediaSince: number | undefined;
  readonly #gapTimers = new Set<NodeJS.Timeout>();
  readonly #answeredAtIso: string;
  #startConcealed: number | undefined;

  constructor(private readonly answeredAt: number) {
    this.#answeredAtIso = new Date(Date.now() - (performance.now() - answeredAt)).toISOString();
    this.#since = answeredAt;
    this.#add({ atMs: 0, event: 'answered', path: 'relay', reason: 'media through the relay at once' });
  }

  /** The call's live counters (for a switch's concealed frames). */
  observe(view: CallView): void {
    this.#view = view;
  }

  /** Watch a path switch: its moves are the timeline's switches. */
  watch(sw: MediaPathSwitch): void {
    this.#switch = sw;
    sw.onSwitch(() => this.poll());
    // A side that sends nothing (receive-only) still moves: look every 20 ms.
    this.#poll = setInterval(() => this.poll(), PATH_POLL_MS);
    this.#poll.unref?.();
  }

  linkEvent(e: DirectLinkEvent): void {
    if (e.type === 'direct:up') {
      this.#reason = e.reason === 'selected' ? 'checks selected a pair' : 'the direct path answers again';
      this.#pair = `${e.pair.types} ${e.pair.remoteAddress}`;
    } else if (e.type === 'direct:down') {
      this.#reason = e.reason === 'stale' ? `no answer on the direct path for ${e.silentMs ?? 0} ms` : e.reason === 'address-change' ? 'addresses changed: checking again' : 'checking every pair again';
    }
    this.poll();
  }

  firstAudio(): void {
    this.#concealedAtFirstAudio = this.#view?.concealedFrames();
    const view = this.#view;
    const wait = this.answeredAt + CALL_START_WINDOW_MS - performance.now();
    if (view && this.#concealedAtFirstAudio !== undefined && wait > 0) {
      const atFirst = this.#concealedAtFirstAudio;
      const timer = setTimeout(() => {
        this.#gapTimers.delete(timer);
        this.#startConcealed = view.concealedFrames() - atFirst;
      }, wait);
      timer.unref?.();
      this.#gapTimers.add(timer);
    }
    this.#add({ atMs: this.#at(performance.now()), event: 'first-audio', path: this.#path, reason: `first audio played, via the ${this.#path === 'direct' ? 'direct path' : 'relay'}` });
  }

  /** Record a move of the switch's active path. */
  poll(): void {
    if (this.#stopped || !this.#switch) return;
    const now = performance.now();
    if (this.#view) {
      const r = this.#recentConcealed;
      r.push([now, this.#view.concealedFrames()]);
      while (r.length > 1 && r[1][0] <= now - SWITCH_GAP_BEFORE_MS) r.shift();
    }
    // The peer's move to direct as we see it: its media arriving on the direct path.
    const direct = this.#switch.paths.find((p) => p.kind === 'direct');
    if (direct) {
      const received = direct.stats().received;
      if (received > this.#directReceived) this.#directMediaSince ??= now - PATH_POLL_MS;
      this.#directReceived = received;
    }
    const path = this.#switch.active?.kind === 'direct' ? 'direct' : 'relay';
    if (path === this.#path) return;
    this.#account(now);
    this.#path = path;
    // Where this switch's gap window starts (see PathTimelineEntry.concealedFrames).
    const windowFrom = path === 'direct' ? Math.min(now, this.#directMediaSince ?? now) - SWITCH_GAP_LEAD_MS : now - SWITCH_GAP_BEFORE_MS;
    if (path === 'direct') this.#firstDirectAt ??= now;
    else {
      this.#fallbacks++;
      this.#directMediaSince = undefined;
    }
    const entry: PathTimelineEntry = {
      atMs: this.#at(now),
      event: 'switch',
      path,
      reason: this.#reason || (path === 'direct' ? 'checks selected a pair' : 'the direct path closed'),
      ...(path === 'direct' && this.#pair ? { pair: this.#pair } : {}),
    };
    this.#add(entry);
    const view = this.#view;
    // Only a switch while audio plays can interrupt it; the window starts no earlier than the
    // first audio (what the stream's start concealed is not the switch's).
    if (view && this.#concealedAtFirstAudio !== undefined) {
      const before = Math.max(concealedAt(this.#recentConcealed, windowFrom) ?? 0, this.#concealedAtFirstAudio);
      const timer = setTimeout(() => {
        this.#gapTimers.delete(timer);
        entry.concealedFrames = view.concealedFrames() - before;
      }, SWITCH_GAP_AFTER_MS);
      timer.unref?.();
      this.#gapTimers.add(timer);
    }
  }

  stop(): void {
    if (this.#stopped) return;
    this.poll();
    this.#account(performance.now());
    this.#stopped = true;
    clearInterval(this.#poll);
    for (const t of this.#gapTimers) clearTimeout(t);
  }

  report(notAttempted: CallPathReport['notAttempted'], relayRtt: CallReport['relayRttMs'], direct: DirectPathReport | undefined, nat: CallNatReport): CallPathReport {
    this.stop();
    return {
      answeredAt: this.#answeredAtIso,
      final: this.#path,
      attempted: notAttempted === undefined,
      ...(notAttempted ? { notAttempted } : {}),
      timeline: this.#timeline,
      timelineNotListed: this.#notListed,
      ...(this.#firstDirectAt === undefined ? {} : { timeToDirectMs: this.#at(this.#firstDirectAt) }),
      ...(this.#startConcealed === undefined ? {} : { startConcealedFrames: this.#startConcealed }),
      relayMs: Math.round(this.#relayMs),
      directMs: Math.round(this.#directMs),
      fallbacks: this.#fallbacks,
      rttMs: { ...(relayRtt ? { relay: relayRtt } : {}), ...(direct?.rttMs ? { direct: direct.rttMs } : {}) },
      ...(direct ? { direct } : {}),
      nat,
    };
  }

  #account(now: number): void {
    if (this.#stopped) return;
    if (this.#path === 'direct') this.#directMs += now - this.#since;
    else this.#relayMs += now - this.#since;
    this.#since = now;
  }

  #at(t: number): number {
    return Math.round(t - this.answeredAt);
  }

  #add(entry: PathTimelineEntry): void {
    if (this.#timeline.length < MAX_TIMELINE) this.#timeline.push(entry);
    else this.#notListed++;
  }
}

/** How long after the peer left the room we wait for its hangup before ending the call anyway. */
const PEER_LEFT_GRACE_MS = 500;

interface PeerEndWatch {
  promise: Promise<PeerEnd>;
  end(why: PeerEnd): void;
}

function peerEndWatch(): PeerEndWatch {
  let resolve!: (why: PeerEnd) => void;
  const promise = new Promise<PeerEnd>((r) => (resolve = r));
  return { promise, end: (why) => resolve(why) };
}

function onceAsync(run: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= run());
}

async function waitFor<T>(promise: Promise<T>, timeoutMs: number, signal: AbortSignal | undefined, to: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NoAnswerError(`${to} did not answer within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    onAbort = () => reject(new AbortError('the call was cancelled before it was answered'));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

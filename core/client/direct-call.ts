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
 * No candidates are gathered yet (a later part does): offers and answers carry an empty list;
 * `relayOnly` says the sender wants it to stay that way and asks the relay not to add its
 * observed address.
 */
import { CallDeclinedError, CalleeBusyError, CalleeOfflineError, AbortError, HandshakeError, NetworkError, NoAnswerError } from '../errors.js';
import { deriveCallKeys, deriveCallSecret, generateEphemeralKey, type CallContext, type CallKeys, type EphemeralKeyPair } from '../crypto/call-keys.js';
import { newCallId } from '../crypto/call-signal.js';
import type { Candidate } from '../wire/candidate.js';
import type { AnswerMessage, CallRole, OfferMessage } from '../wire/signal.js';
import { runCall, type CallEvent, type CallOptions, type CallReport } from './call.js';
import type { PresenceClient } from './presence.js';

/** How long the callee side keeps ringing at most (the caller's --ring-timeout is shorter). */
export const MAX_RING_MS = 120_000;
/** How long the peer has to show up, proven, in the call's room once both joined. */
export const DEFAULT_ADMIT_WITHIN_MS = 10_000;

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
  /** Resolves when the peer hangs up (signed) or the relay says its connection closed. */
  peerEnded: Promise<PeerEnd>;
  /** Tell the peer we hung up (once; errors ignored: the call is over either way). */
  hangup(): Promise<void>;
  /** Stop receiving this call's signals. */
  close(): void;
}

export interface PlaceCallOptions {
  to: string;
  /** Send no host or mapped candidates, and ask the relay not to add our address. */
  relayOnly?: boolean;
  /** Our candidates (none are gathered yet; ignored with relayOnly). */
  candidates?: Candidate[];
  ringTimeoutMs: number;
  signal?: AbortSignal;
  onRinging?(): void;
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
  const untrack = presence.track(callId, (msg) => {
    if (msg.type === 'call-gone') {
      if (answer === undefined) settle.reject(new CalleeOfflineError(`${opts.to} went offline before answering`));
      else ended.end('peer-gone');
      return;
    }
    if (msg.from !== opts.to) return;
    switch (msg.type) {
      case 'ringing':
        if (answer === undefined) opts.onRinging?.();
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
      default:
        return;
    }
  });
  const base = { callId, to: opts.to, role: 'caller' as const };
  const hangup = onceAsync(async () => {
    await presence.send({ ...base, type: 'hangup' }, { timeoutMs: 1000 }).catch(() => undefined);
  });
  try {
    const routed = await presence.send(
      { ...base, type: 'offer', ephemeralKey: b64(ephemeral.publicKey), candidates: relayOnly ? [] : (opts.candidates ?? []), ...(relayOnly ? { relayOnly: true } : {}) },
      { signal: opts.signal },
    );
    if (routed === 'offline') {
      throw new CalleeOfflineError(`nobody is registered as ${opts.to} on this relay`, {
        suggestions: ['ask them to run `wzp listen RELAY` on this relay, then call again'],
      });
    }
    const msg = await waitFor(answered, opts.ringTimeoutMs, opts.signal, opts.to);
    return established('caller', msg, ephemeral, { callId, caller: presence.fingerprint, callee: opts.to }, ended, hangup, untrack);
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
  private readonly untrack: () => void;
  private answered = false;
  private readonly base: { callId: string; to: string; role: 'callee' };

  constructor(
    private readonly presence: PresenceClient,
    readonly offer: OfferMessage,
  ) {
    this.base = { callId: offer.callId, to: offer.from, role: 'callee' };
    this.cancelled = this.ended.promise;
    this.untrack = presence.track(offer.callId, (msg) => {
      if (msg.type === 'call-gone') this.ended.end('peer-gone');
      else if (msg.type === 'hangup' && msg.from === offer.from) this.ended.end('peer-hangup');
    });
  }

  get caller(): string {
    return this.offer.from;
  }

  get callId(): string {
    return this.offer.callId;
  }

  /** Tell the caller we are ringing. */
  async ring(): Promise<void> {
    await this.presence.send({ ...this.base, type: 'ringing' });
  }

  async reject(reason: 'declined' | 'busy'): Promise<void> {
    try {
      await this.presence.send({ ...this.base, type: 'reject', reason }, { timeoutMs: 2000 }).catch(() => undefined);
    } finally {
      this.untrack();
    }
  }

  /** Answer: our ephemeral key goes to the caller, and both derive the call's keys. */
  async accept(opts: { relayOnly?: boolean; candidates?: Candidate[] } = {}): Promise<EstablishedCall> {
    if (this.answered) throw new Error('already answered');
    this.answered = true;
    const ephemeral = generateEphemeralKey();
    const relayOnly = opts.relayOnly === true;
    const hangup = onceAsync(async () => {
      await this.presence.send({ ...this.base, type: 'hangup' }, { timeoutMs: 1000 }).catch(() => undefined);
    });
    try {
      const routed = await this.presence.send({
        ...this.base,
        type: 'answer',
        ephemeralKey: b64(ephemeral.publicKey),
        candidates: relayOnly ? [] : (opts.candidates ?? []),
        ...(relayOnly ? { relayOnly: true } : {}),
      });
      if (routed === 'offline') throw new NetworkError(`the caller ${this.offer.from} is no longer on the relay`);
    } catch (err) {
      this.untrack();
      throw err;
    }
    const context = { callId: this.offer.callId, caller: this.offer.from, callee: this.presence.fingerprint };
    return established('callee', this.offer, ephemeral, context, this.ended, hangup, this.untrack);
  }
}

function established(
  role: CallRole,
  peerMessage: OfferMessage | AnswerMessage,
  own: EphemeralKeyPair,
  ids: { callId: string; caller: string; callee: string },
  ended: PeerEndWatch,
  hangup: () => Promise<void>,
  untrack: () => void,
): EstablishedCall {
  const peerKey = new Uint8Array(Buffer.from(peerMessage.ephemeralKey, 'base64'));
  const context: CallContext = {
    callId: ids.callId,
    callerFingerprint: ids.caller,
    calleeFingerprint: ids.callee,
    callerEphemeralKey: role === 'caller' ? own.publicKey : peerKey,
    calleeEphemeralKey: role === 'caller' ? peerKey : own.publicKey,
  };
  const keys = deriveCallKeys(deriveCallSecret(own.privateKey, peerKey, context));
  return {
    callId: ids.callId,
    role,
    peer: role === 'caller' ? ids.callee : ids.caller,
    keys,
    peerCandidates: peerMessage.candidates,
    peerRelayOnly: peerMessage.relayOnly === true,
    ...(peerMessage.relayCandidate ? { relayCandidate: peerMessage.relayCandidate } : {}),
    peerEnded: ended.promise,
    hangup,
    close: untrack,
  };
}

export interface DirectMediaResult {
  report: CallReport;
  /** Who ended it: we did (hangup: Ctrl-C; duration; source-ended; relay-lost), or the peer. */
  endedBy: CallReport['endedBy'] | PeerEnd | 'peer-left';
}

/**
 * Run the call's media through the relay: runCall in the call's room (name and secret from
 * the call secret), admitting only the peer. Ends when we hang up (the signal), the peer hangs
 * up or leaves the room, or the peer has not shown up proven within `admitWithinMs`
 * (HandshakeError: the peer's identity was not verified in the room). Tells the peer when
 * we end it.
 */
export async function runDirectMedia(
  call: EstablishedCall,
  opts: Omit<CallOptions, 'room' | 'roomSecret' | 'allow' | 'reconnect' | 'reconnectForMs'> & { admitWithinMs?: number },
): Promise<DirectMediaResult> {
  const admitWithinMs = opts.admitWithinMs ?? DEFAULT_ADMIT_WITHIN_MS;
  const stop = new AbortController();
  let peerEnd: PeerEnd | 'peer-left' | undefined;
  let admitted = false;
  let unverified = false;
  const timers: NodeJS.Timeout[] = [];
  void call.peerEnded.then((why) => {
    peerEnd ??= why;
    stop.abort();
  });
  // Our hang-up (Ctrl-C) is signalled before we leave the room, so the peer learns why.
  const onUserAbort = () => void call.hangup().finally(() => stop.abort());
  if (opts.signal?.aborted) onUserAbort();
  else opts.signal?.addEventListener('abort', onUserAbort, { once: true });
  timers.push(
    setTimeout(() => {
      if (!admitted) {
        unverified = true;
        stop.abort();
      }
    }, admitWithinMs),
  );
  const onEvent = (e: CallEvent) => {
    if ((e.type === 'call:member-joined' || e.type === 'call:member-reconnected') && e.fingerprint === call.peer) admitted = true;
    if (e.type === 'call:member-left' && e.fingerprint === call.peer) {
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
      room: call.keys.roomName,
      roomSecret: call.keys.roomSecret,
      allow: [call.peer],
      signal: stop.signal,
      onEvent,
    });
  } catch (err) {
    await call.hangup();
    call.close();
    throw err;
  } finally {
    for (const t of timers) clearTimeout(t);
    opts.signal?.removeEventListener('abort', onUserAbort);
  }
  if (peerEnd === undefined) await call.hangup();
  call.close();
  if (unverified && peerEnd === undefined) {
    throw new HandshakeError(`${call.peer} answered but did not prove its identity in the call's room within ${Math.round(admitWithinMs / 1000)} s`, {
      suggestions: ['the call was hung up; try again (a relay that interferes with the call room shows this too)'],
    });
  }
  return { report, endedBy: peerEnd ?? report.endedBy };
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

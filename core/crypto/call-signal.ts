/**
 * Signatures on presence registrations and call signals (docs/direct-calls.md).
 *
 * Registration: a relay gives each connection a fresh random nonce; the client signs
 *
 *   labelled("wzp-presence-register-v1", relay certificate fingerprint, nonce (32 bytes),
 *            identity public key)
 *
 * with its Ed25519 identity key. The relay checks it against the nonce it gave this connection
 * and its own certificate's fingerprint, so a registration cannot be replayed on another
 * connection or relay, and nobody can register a fingerprint whose key they do not hold.
 *
 * Call signals: every offer / ringing / answer / reject / hangup / candidate-update is signed by
 * its sender over
 *
 *   labelled("wzp-call-signal-v1", type, call id (16 bytes), caller fingerprint,
 *            callee fingerprint, sender role, seq (u32), ts (u64 BE, ms), sender identity key,
 *            body)
 *
 * where body is the canonical JSON of the type's own signed fields (offer and answer:
 * {ephemeralKey, candidates, relayOnly}; reject: {reason}; candidate-update: {candidates};
 * the others: empty). A relay-added `relayCandidate` is not signed.
 *
 * An offer's or answer's NAT profile (`nat`, core/wire/nat-profile.ts) has a signature of its
 * own, `natSignature`, over the same fields under another label with the profile's canonical
 * JSON as the body:
 *
 *   labelled("wzp-call-nat-v1", type, call id, caller, callee, sender role, seq, ts,
 *            sender identity key, canonical nat)
 *
 * so it is bound to exactly that signal, and cannot be moved to another, changed, or made up
 * by anyone without the sender's key. It is not inside the main signature because receivers
 * and relays of earlier versions drop fields they do not know: a main signature covering
 * `nat` would fail there and lose the whole call, where a separate one loses only the
 * profile (wire-format.md §5: new optional fields stay backward compatible). A relay can
 * strip a profile (the receiver then sees no consent, as from an older peer), never forge or
 * alter one: natProfileFrom() says which it was.
 *
 * A ringing's `ephemeralKey` (the callee's key for the call, sent early so that the caller can
 * join the call's room while it rings) is signed the same way, as `keySignature`:
 *
 *   labelled("wzp-call-ringing-key-v1", type, call id, caller, callee, sender role, seq, ts,
 *            sender identity key, ephemeral key (base64, as sent))
 *
 * ringingKeyFrom() returns it only when that verifies. Receivers check, with
 * CallSignalVerifier: addressed to them, the fingerprint is the key's hash, the role fits the
 * type, the timestamp is fresh, the signature verifies, the call's parties never change, and
 * the sequence number is newer than any seen from that sender in that call (an offer's call id
 * must be new). Anything else is dropped and counted.
 */
import { randomBytes } from 'node:crypto';
import { InternalError } from '../errors.js';
import type { NatProfile } from '../nat/strategy-types.js';
import type { AnswerMessage, CallRole, CallSignalMessage, CallSignalType, OfferMessage, RegisterMessage, RingingMessage } from '../wire/signal.js';
import { canonicalCandidate } from '../wire/candidate.js';
import { canonicalNatProfile, natProfileProblem } from '../wire/nat-profile.js';
import { sha256Fingerprint } from './fingerprint.js';
import { Identity } from './identity.js';
import { labelledFields } from './media-crypto.js';

export const REGISTRATION_LABEL = 'wzp-presence-register-v1';
export const CALL_SIGNAL_LABEL = 'wzp-call-signal-v1';
export const CALL_NAT_LABEL = 'wzp-call-nat-v1';
export const CALL_RINGING_KEY_LABEL = 'wzp-call-ringing-key-v1';
/** How far a call signal's timestamp may be from the receiver's clock (either way). */
export const DEFAULT_MAX_SIGNAL_SKEW_MS = 60_000;
/** Calls a verifier remembers (their parties and sequence numbers). */
export const DEFAULT_MAX_TRACKED_CALLS = 1024;

/** Which role sends each type (hangup and candidate-update: either). */
const SENT_BY: Record<CallSignalType, CallRole | 'either'> = {
  offer: 'caller',
  ringing: 'callee',
  answer: 'callee',
  reject: 'callee',
  hangup: 'either',
  'candidate-update': 'either',
};

export function registrationTranscript(relayFingerprint: string, nonceHex: string, identityKey: Uint8Array): Uint8Array {
  return labelledFields(REGISTRATION_LABEL, [relayFingerprint, Buffer.from(nonceHex, 'hex'), identityKey]);
}

/** The register message for `nonce` (from the relay's challenge) on the relay with this certificate fingerprint. */
export function signRegistration(identity: Identity, relayFingerprint: string, nonceHex: string): RegisterMessage {
  return {
    type: 'register',
    fingerprint: identity.fingerprint,
    identityKey: Buffer.from(identity.publicKey).toString('base64'),
    nonce: nonceHex,
    signature: Buffer.from(identity.sign(registrationTranscript(relayFingerprint, nonceHex, identity.publicKey))).toString('base64'),
  };
}

/**
 * Why a registration is refused (undefined: it proves the fingerprint): the nonce is not the
 * one this connection was given, the fingerprint is not the key's, or the signature fails.
 */
export function registrationProblem(msg: RegisterMessage, relayFingerprint: string, expectedNonce: string | undefined): string | undefined {
  if (expectedNonce === undefined) return 'ask for a challenge first (register-challenge)';
  if (msg.nonce !== expectedNonce) return 'the nonce is not the one this connection was given';
  const key = new Uint8Array(Buffer.from(msg.identityKey, 'base64'));
  if (sha256Fingerprint(key) !== msg.fingerprint) return 'the fingerprint is not the hash of the identity key';
  const signature = new Uint8Array(Buffer.from(msg.signature, 'base64'));
  if (!Identity.verify(key, registrationTranscript(relayFingerprint, msg.nonce, key), signature)) return 'the signature does not verify';
  return undefined;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A call signal before signing: the sender's fingerprint and key come from its identity. */
export type UnsignedCallSignal = DistributiveOmit<CallSignalMessage, 'from' | 'identityKey' | 'signature' | 'relayCandidate' | 'natSignature' | 'keySignature'>;

/** Signs a call signal as `identity` (its fingerprint becomes `from`); an offer's or answer's `nat` gets its natSignature. */
export function signCallSignal(identity: Identity, unsigned: UnsignedCallSignal): CallSignalMessage {
  const message = {
    ...unsigned,
    from: identity.fingerprint,
    identityKey: Buffer.from(identity.publicKey).toString('base64'),
    signature: '',
  } as CallSignalMessage;
  message.signature = Buffer.from(identity.sign(callSignalTranscript(message))).toString('base64');
  if ((message.type === 'offer' || message.type === 'answer') && message.nat !== undefined) {
    message.natSignature = Buffer.from(identity.sign(natProfileTranscript(message, message.nat))).toString('base64');
  }
  if (message.type === 'ringing' && message.ephemeralKey !== undefined) {
    message.keySignature = Buffer.from(identity.sign(ringingKeyTranscript(message, message.ephemeralKey))).toString('base64');
  }
  return message;
}

/** The caller and callee of a signal, from its sender, recipient and role. */
export function callParties(msg: Pick<CallSignalMessage, 'from' | 'to' | 'role'>): { caller: string; callee: string } {
  return msg.role === 'caller' ? { caller: msg.from, callee: msg.to } : { caller: msg.to, callee: msg.from };
}

/** The byte string a call signal's signature covers (see the top of this file). */
export function callSignalTranscript(msg: CallSignalMessage): Uint8Array {
  return transcript(CALL_SIGNAL_LABEL, msg, signedBody(msg));
}

/** The byte string an offer's or answer's natSignature covers: `nat` bound to that signal (see the top of this file). */
export function natProfileTranscript(msg: OfferMessage | AnswerMessage, nat: NatProfile): Uint8Array {
  return transcript(CALL_NAT_LABEL, msg, JSON.stringify(canonicalNatProfile(nat)));
}

/** The byte string a ringing's keySignature covers: its ephemeral key bound to that signal (see the top of this file). */
export function ringingKeyTranscript(msg: RingingMessage, ephemeralKey: string): Uint8Array {
  return transcript(CALL_RINGING_KEY_LABEL, msg, ephemeralKey);
}

/**
 * The callee's ephemeral key in a ringing that a CallSignalVerifier accepted (so its
 * `identityKey` is its sender's), when keySignature verifies it; undefined otherwise (none
 * sent, an older callee, or stripped or altered on the way: the caller then waits for the
 * answer, which carries the key under the main signature).
 */
export function ringingKeyFrom(msg: RingingMessage): string | undefined {
  if (msg.ephemeralKey === undefined || msg.keySignature === undefined) return undefined;
  const key = new Uint8Array(Buffer.from(msg.identityKey, 'base64'));
  return Identity.verify(key, ringingKeyTranscript(msg, msg.ephemeralKey), new Uint8Array(Buffer.from(msg.keySignature, 'base64'))) ? msg.ephemeralKey : undefined;
}

function transcript(label: string, msg: CallSignalMessage, body: string): Uint8Array {
  const { caller, callee } = callParties(msg);
  const ts = new Uint8Array(8);
  if (!Number.isSafeInteger(msg.ts) || msg.ts < 0) throw new InternalError(`call signal ts ${msg.ts} is not a timestamp`);
  new DataView(ts.buffer).setBigUint64(0, BigInt(msg.ts));
  return labelledFields(label, [
    msg.type,
    Buffer.from(msg.callId, 'hex'),
    caller,
    callee,
    msg.role,
    msg.seq,
    ts,
    Buffer.from(msg.identityKey, 'base64'),
    body,
  ]);
}

/**
 * The peer's NAT profile in an offer or answer, and what became of it:
 * - `verified`: signed by the sender over this very signal;
 * - `absent`: none sent (an older client, --relay-only, a loopback relay) or both fields
 *   removed on the way: no consent to hard-NAT probing;
 * - `ignored`: there was something, but not a profile to act on (a signature without a
 *   profile: the profile was invalid and left out when decoded, or removed on the way; a
 *   profile without a valid signature). Treated as absent; `problem` says why, for the report.
 */
export type PeerNatProfile = { status: 'verified'; profile: NatProfile } | { status: 'absent' } | { status: 'ignored'; problem: string };

/**
 * The NAT profile of an offer or answer that a CallSignalVerifier accepted (so its
 * `identityKey` is its sender's): verified with natSignature, or why not.
 */
export function natProfileFrom(msg: OfferMessage | AnswerMessage): PeerNatProfile {
  if (msg.nat === undefined) {
    return msg.natSignature === undefined ? { status: 'absent' } : { status: 'ignored', problem: 'a NAT profile signature without a profile (the profile was invalid and left out, or removed on the way)' };
  }
  // Decoded messages are valid; a message built in memory may not be (never trust the caller here).
  const problem = natProfileProblem(msg.nat);
  if (problem !== undefined) return { status: 'ignored', problem };
  if (msg.natSignature === undefined) return { status: 'ignored', problem: 'a NAT profile without its signature (invalid, or removed on the way)' };
  const key = new Uint8Array(Buffer.from(msg.identityKey, 'base64'));
  if (!Identity.verify(key, natProfileTranscript(msg, msg.nat), new Uint8Array(Buffer.from(msg.natSignature, 'base64')))) {
    return { status: 'ignored', problem: 'the NAT profile signature does not verify (altered on the way, or signed for another signal)' };
  }
  return { status: 'verified', profile: canonicalNatProfile(msg.nat) };
}

function signedBody(msg: CallSignalMessage): string {
  switch (msg.type) {
    case 'offer':
    case 'answer':
      // An offer's purpose is signed only when present: a plain offer's transcript is the one
      // older peers compute, and a direct test can never be turned into a call (or back).
      return JSON.stringify({
        ephemeralKey: msg.ephemeralKey,
        candidates: msg.candidates.map(canonicalCandidate),
        relayOnly: msg.relayOnly === true,
        ...(msg.type === 'offer' && msg.purpose !== undefined ? { purpose: msg.purpose } : {}),
      });
    case 'reject':
      return JSON.stringify({ reason: msg.reason });
    case 'candidate-update':
      return JSON.stringify({ candidates: msg.candidates.map(canonicalCandidate) });
    case 'ringing':
    case 'hangup':
      return '';
  }
}

/** Why a verifier dropped a call signal. */
export type CallSignalDropReason =
  /** Not for us, the fingerprint is not the key's, the role does not fit, or the call's parties changed. */
  | 'mis-bound'
  /** The signature does not verify (forged, or altered on the way: by the relay, say). */
  | 'bad-signature'
  /** Not newer than what that sender already sent in that call, or an offer for a known call id. */
  | 'replayed'
  /** Signed too long ago (or in the future) for the receiver's clock. */
  | 'stale'
  /** The verifier's table of calls is full of recent calls. */
  | 'overloaded';
export const CALL_SIGNAL_DROP_REASONS: readonly CallSignalDropReason[] = ['mis-bound', 'bad-signature', 'replayed', 'stale', 'overloaded'];

export type CallSignalCheck = { ok: true } | { ok: false; reason: CallSignalDropReason; detail: string };

export interface CallSignalVerifierOptions {
  /** Our own fingerprint: signals to anyone else are mis-bound. */
  self: string;
  maxSkewMs?: number;
  maxCalls?: number;
  /** The clock (ms since the epoch); default Date.now. */
  now?(): number;
}

interface TrackedCall {
  caller: string;
  callee: string;
  /** The newest seq seen from each party. */
  lastSeq: Map<string, number>;
  lastSeenAt: number;
}

/** Checks incoming call signals for one identity (see the top of this file); bounded memory. */
export class CallSignalVerifier {
  readonly dropped: Record<CallSignalDropReason, number> = { 'mis-bound': 0, 'bad-signature': 0, replayed: 0, stale: 0, overloaded: 0 };
  private readonly calls = new Map<string, TrackedCall>();
  private readonly maxSkewMs: number;
  private readonly maxCalls: number;
  private readonly now: () => number;

  constructor(private readonly opts: CallSignalVerifierOptions) {
    this.maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SIGNAL_SKEW_MS;
    this.maxCalls = opts.maxCalls ?? DEFAULT_MAX_TRACKED_CALLS;
    this.now = opts.now ?? Date.now;
  }

  /** Calls remembered now. */
  get trackedCalls(): number {
    return this.calls.size;
  }

  /**
   * A call we offered ourselves: its parties are known before anything arrives for it, so a
   * signal for it from anyone else is mis-bound. False when the table is full of recent calls.
   */
  expect(callId: string, caller: string, callee: string): boolean {
    if (this.calls.has(callId)) return true;
    const now = this.now();
    if (!this.makeRoom(now)) return false;
    this.calls.set(callId, { caller, callee, lastSeq: new Map(), lastSeenAt: now });
    return true;
  }

  /** Accepts the signal (and records its seq) or says why it is dropped (and counts it). */
  check(msg: CallSignalMessage): CallSignalCheck {
    const result = this.evaluate(msg);
    if (!result.ok) this.dropped[result.reason]++;
    return result;
  }

  private evaluate(msg: CallSignalMessage): CallSignalCheck {
    if (msg.to !== this.opts.self) return drop('mis-bound', 'addressed to another identity');
    const key = new Uint8Array(Buffer.from(msg.identityKey, 'base64'));
    if (sha256Fingerprint(key) !== msg.from) return drop('mis-bound', "the sender's fingerprint is not the hash of its key");
    const sentBy = SENT_BY[msg.type];
    if (sentBy !== 'either' && sentBy !== msg.role) return drop('mis-bound', `${msg.type} is sent by the ${sentBy}`);
    const now = this.now();
    if (Math.abs(now - msg.ts) > this.maxSkewMs) return drop('stale', `signed ${Math.round((now - msg.ts) / 1000)} s from now`);
    if (!Identity.verify(key, callSignalTranscript(msg), new Uint8Array(Buffer.from(msg.signature, 'base64')))) {
      return drop('bad-signature', 'the signature does not verify');
    }
    const { caller, callee } = callParties(msg);
    const known = this.calls.get(msg.callId);
    if (known) {
      if (msg.type === 'offer') return drop('replayed', 'an offer for a call already seen');
      if (known.caller !== caller || known.callee !== callee) return drop('mis-bound', 'the call has other parties');
      const last = known.lastSeq.get(msg.from);
      if (last !== undefined && msg.seq <= last) return drop('replayed', `seq ${msg.seq} is not newer than ${last}`);
      known.lastSeq.set(msg.from, msg.seq);
      known.lastSeenAt = now;
      // Most recently used last: eviction takes the least recently used.
      this.calls.delete(msg.callId);
      this.calls.set(msg.callId, known);
      return { ok: true };
    }
    if (!this.makeRoom(now)) return drop('overloaded', `${this.maxCalls} recent calls tracked`);
    this.calls.set(msg.callId, { caller, callee, lastSeq: new Map([[msg.from, msg.seq]]), lastSeenAt: now });
    return { ok: true };
  }

  /**
   * Room for one more call: the least recently used is forgotten, unless it is recent enough
   * that a replay of its signals would still be fresh (then nothing is forgotten).
   */
  private makeRoom(now: number): boolean {
    if (this.calls.size < this.maxCalls) return true;
    const [oldestId, oldest] = this.calls.entries().next().value as [string, TrackedCall];
    if (now - oldest.lastSeenAt <= 2 * this.maxSkewMs) return false;
    this.calls.delete(oldestId);
    return true;
  }
}

function drop(reason: CallSignalDropReason, detail: string): CallSignalCheck {
  return { ok: false, reason, detail };
}

/** A fresh random call id: 16 bytes as 32 hex digits. */
export function newCallId(): string {
  return randomBytes(16).toString('hex');
}

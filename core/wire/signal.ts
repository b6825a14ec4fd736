/**
 * Signalling framing: length-prefixed UTF-8 JSON messages on a QUIC stream.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                    payload length (u32, BE)                   |  0
 * +---------------------------------------------------------------+
 * |        payload: `length` bytes of UTF-8 JSON (no BOM) ...     |  4
 * +---------------------------------------------------------------+
 * ```
 *
 * - payload length: at most MAX_SIGNAL_PAYLOAD_BYTES (64 KiB). A larger declared length is
 *   DecodeError 'too-large' and breaks the stream: framing is lost, the stream must close.
 * - payload: a JSON object with a string `type`. Its other fields are checked against
 *   SIGNAL_SCHEMA. A frame whose payload is not valid UTF-8 ('bad-utf8'), not JSON
 *   ('bad-json'), not an object ('not-object'), has no string `type` ('bad-type') or a
 *   missing or ill-typed field ('bad-field') is skipped; the frames after it still decode.
 * - An unknown `type` is not an error: it decodes to `{type: 'unknown', rawType}` for the
 *   caller to log and drop (forward compatibility). Unknown fields of known types are
 *   dropped, and `null` counts as absent for optional fields.
 * - A few optional fields are advisory extensions whose absence is safe (offer and answer
 *   `nat` and `natSignature`): an invalid one is left out when decoding instead of refusing
 *   the whole message (see `tolerated()`). Encoding an invalid one is still a bug.
 * - The encoder writes the canonical form: `type` first, then the fields in schema order,
 *   absent optional fields left out, no whitespace. Canonical frames re-encode byte-exactly.
 *   Nested values with a canonical form (candidates: ./candidate.ts) are written in it.
 * - Presence (register-challenge, challenge, register, registered, presence-replaced) and call
 *   signalling (offer, ringing, answer, reject, hangup, candidate-update; routed, offline,
 *   call-gone) are described in docs/wire-format.md and docs/direct-calls.md; their signatures
 *   in core/crypto/call-signal.ts.
 */

import { isIPv4, isIPv6 } from 'node:net';
import { DecodeError, InternalError } from '../errors.js';
import type { NatProfile } from '../nat/strategy-types.js';
import { canonicalCandidate, isCandidate, isCandidateList, MAX_CANDIDATES, type Candidate } from './candidate.js';
import { MAX_SOURCE_ID, MIN_SOURCE_ID } from './room-source.js';
import { canonicalNatProfile, isWireNatProfile, MAX_NAT_RECENT_PORTS, MAX_NAT_REFLEXIVE } from './nat-profile.js';

const FORMAT = 'signal';

export const OFFSET_SIGNAL_LENGTH = 0;
export const SIGNAL_LENGTH_BYTES = 4;
export const MAX_SIGNAL_PAYLOAD_BYTES = 64 * 1024;

export type SessionMode = 'echo' | 'room';

export interface HelloMessage {
  type: 'hello';
  version: number;
  alias?: string;
  client?: string;
  /**
   * An access token for a relay that requires one (`wzp relay --auth-url`; the client's
   * `--token` / WZP_TOKEN). Relays that require none ignore it, as older relays drop it.
   */
  token?: string;
}
export interface HelloAckMessage {
  type: 'hello-ack';
  version: number;
  relayFingerprint: string;
}
export interface PingMessage {
  type: 'ping';
  nonce: number;
}
export interface PongMessage {
  type: 'pong';
  nonce: number;
}
export interface ReflectMessage {
  type: 'reflect';
}
export interface ReflectResponseMessage {
  type: 'reflect-response';
  /** `ip:port`, IPv6 as `[ip]:port` (see formatSocketAddress). */
  observedAddress: string;
}
export interface JoinMessage {
  type: 'join';
  mode: SessionMode;
  /** Room id: the hash of the room name (core/crypto/room-name.ts), never the name. */
  room?: string;
  alias?: string;
  /** The member's identity fingerprint, as it claims it (members verify it end to end). */
  fingerprint?: string;
  /**
   * The member's signed announcement (core/crypto/sender-keys.ts MemberAnnouncement), opaque
   * to the relay: delivered to the others with the join notice and to later joiners in
   * `joined`, so nobody waits a round trip for it. At most MAX_ANNOUNCEMENT_BYTES as JSON.
   */
  announcement?: Record<string, unknown>;
  /**
   * The client can carry media on the UDP media path (core/transport/udp-media.ts): plain
   * UDP on its QUIC connection's 5-tuple. A relay that offers it answers with a mediaToken.
   */
  udpMedia?: boolean;
}
/**
 * The largest announcement (its JSON text, UTF-8 bytes) a relay keeps and forwards: a
 * signed announcement with its admission proof, a `replaces` and the longest alias
 * (docs/e2e-encryption.md) fits. Bounded so that a full room's announcements and roster fit
 * in one `joined` answer (the relay also checks each answer's size before admitting).
 */
export const MAX_ANNOUNCEMENT_BYTES = 768;
/**
 * The largest frame payload a relay reads from a client: every request a client makes is
 * far smaller (a join with its announcement is under 2 KiB, a room signal at most
 * MAX_ROOM_SIGNAL_BYTES). A larger declared length breaks the stream, as over the general
 * limit.
 */
export const MAX_REQUEST_PAYLOAD_BYTES = 8 * 1024;
/**
 * QUIC application close code of a relay that refuses a connection on purpose (over one of
 * its limits); the close reason says which, in words, for the client to show.
 */
export const RELAY_CLOSE_REFUSED = 0x5752;
/** The largest room-signal payload (its JSON text) a relay passes on. */
export const MAX_ROOM_SIGNAL_BYTES = 4 * 1024;
/** A member's announcement as a relay hands it on. */
export interface MemberAnnouncementEntry {
  /** The member's source id. */
  sourceId: number;
  announcement: Record<string, unknown>;
}
/** A room member as the relay announces it. */
export interface RoomParticipant {
  /** Relay-assigned id prefixed to this member's forwarded datagrams (1-65535). */
  sourceId: number;
  alias: string;
  fingerprint: string;
}
export interface JoinedMessage {
  type: 'joined';
  mode: SessionMode;
  room?: string;
  /** The joining member's own source id (room mode). */
  sourceId?: number;
  /** Everyone in the room, including the joining member (room mode). */
  participants?: RoomParticipant[];
  /**
   * The announcements the other members joined with (room mode), from a relay that keeps
   * them; absent from relays that do not (the joiner then waits for the members' own).
   */
  announcements?: MemberAnnouncementEntry[];
  /** The UDP media path token (8 bytes as hex), for a join that asked for the path. */
  mediaToken?: string;
}
/** Relay -> members: the roster changed (sent at once on every join and leave). */
export interface RoomUpdateMessage {
  type: 'room-update';
  room: string;
  participants: RoomParticipant[];
  joined?: number;
  left?: number;
  /** With `joined`: the announcement the member joined with, if it gave one. */
  announcement?: Record<string, unknown>;
}
/** Member -> relay: pass this opaque payload to one member (`to`) or all others. */
export interface RoomSignalMessage {
  type: 'room-signal';
  to?: number;
  payload: Record<string, unknown>;
}
/** Relay -> member: a payload another member sent with room-signal. */
export interface RelayedMessage {
  type: 'relayed';
  room: string;
  from: number;
  payload: Record<string, unknown>;
}
export interface LeaveMessage {
  type: 'leave';
}
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
}
/**
 * Relay -> every connected client (push): the relay is shutting down. It takes no new joins,
 * registrations or call offers (refused with error `draining`) and stops within `deadlineMs`
 * ms (or sooner once its rooms and calls are empty): a client that knows another relay
 * moves there now. Older clients drop it as an unknown type.
 */
export interface DrainingMessage {
  type: 'draining';
  deadlineMs: number;
}

// ---------------------------------------------------------------------------------------------
// Presence (docs/direct-calls.md): a client registers on a relay as its identity.

/** Client -> relay: give me a registration challenge for this connection. */
export interface RegisterChallengeMessage {
  type: 'register-challenge';
}
/** Relay -> client: the nonce to sign (fresh per connection and challenge; 32 bytes as hex). */
export interface ChallengeMessage {
  type: 'challenge';
  nonce: string;
}
/**
 * Client -> relay: register this connection as the identity whose key signed
 * labelled("wzp-presence-register-v1", relay certificate fingerprint, nonce, identity key)
 * (core/crypto/call-signal.ts registrationTranscript).
 */
export interface RegisterMessage {
  type: 'register';
  fingerprint: string;
  /** Raw Ed25519 identity public key, padded base64 (32 bytes). */
  identityKey: string;
  nonce: string;
  /** Ed25519 signature, padded base64 (64 bytes). */
  signature: string;
  /**
   * false: prove the identity for this connection's call signals only, without taking its
   * incoming calls (a caller: another session of the identity may be listening). Default true.
   */
  receiveCalls?: boolean;
}
export interface RegisteredMessage {
  type: 'registered';
  fingerprint: string;
}
/** Relay -> client: a newer registration of the same identity took over; this one ended. */
export interface PresenceReplacedMessage {
  type: 'presence-replaced';
  fingerprint: string;
}

// ---------------------------------------------------------------------------------------------
// Call signalling: routed by the relay from `from` to `to`, signed by the sender over the
// canonical transcript of core/crypto/call-signal.ts. The relay may add `relayCandidate` to
// offers and answers (unsigned: a hint).

export type CallRole = 'caller' | 'callee';
export type RejectReason = 'declined' | 'busy';

/** The fields every call signal carries, all covered by its signature. */
export interface CallSignalFields {
  /** 16 random bytes as 32 lowercase hex digits, chosen by the caller. */
  callId: string;
  /** The sender's identity fingerprint. */
  from: string;
  /** The recipient's identity fingerprint. */
  to: string;
  /** The sender's role in this call (so caller and callee are bound: caller = role === 'caller' ? from : to). */
  role: CallRole;
  /** Per sender and call, strictly increasing (receivers drop anything not newer). */
  seq: number;
  /** The sender's clock when it signed, ms since the Unix epoch (receivers drop stale ones). */
  ts: number;
  /** The sender's raw Ed25519 identity public key, padded base64 (32 bytes). */
  identityKey: string;
  /** Ed25519 signature over the transcript, padded base64 (64 bytes). */
  signature: string;
}
export interface OfferMessage extends CallSignalFields {
  type: 'offer';
  /** Ephemeral X25519 public key for this call, padded base64 (32 bytes). */
  ephemeralKey: string;
  candidates: Candidate[];
  /** The sender sends no host or mapped candidates and wants the call to stay relayed. */
  relayOnly?: boolean;
  /**
   * What the offer is for when it is not a call: 'direct-test' (`wzp direct-test`: the
   * connectivity checks and hard-NAT strategies only, no room, no audio). Signed when present;
   * `wzp listen` declines it, `wzp direct-test --wait` takes nothing else.
   */
  purpose?: OfferPurpose;
  /** Added by the relay (unsigned): the sender's address as the relay sees its connection. */
  relayCandidate?: Candidate;
  /**
   * The sender's NAT as it measured it on the call's socket, and its consent to hard-NAT
   * probing (./nat-profile.ts). Absent (an older client, --relay-only, a loopback relay, or
   * left out as invalid): no consent.
   */
  nat?: NatProfile;
  /**
   * The sender's Ed25519 signature over `nat` bound to this signal (padded base64, 64 bytes;
   * core/crypto/call-signal.ts natProfileTranscript). Separate from `signature`, so that an
   * older receiver or relay, which drops both fields, still verifies the offer.
   */
  natSignature?: string;
}
export interface RingingMessage extends CallSignalFields {
  type: 'ringing';
  /**
   * The callee's ephemeral X25519 key for this call (padded base64, 32 bytes), the one its
   * answer will carry: the caller derives the call's keys while it rings and joins the call's
   * room before the answer (docs/direct-calls.md). Optional (older callees send none).
   */
  ephemeralKey?: string;
  /**
   * The sender's signature over `ephemeralKey` bound to this signal (core/crypto/call-signal.ts
   * ringingKeyTranscript), separate from `signature` as natSignature is: an older caller or
   * relay drops both fields and still verifies the ringing.
   */
  keySignature?: string;
}
export interface AnswerMessage extends CallSignalFields {
  type: 'answer';
  ephemeralKey: string;
  candidates: Candidate[];
  relayOnly?: boolean;
  relayCandidate?: Candidate;
  /** As the offer's. */
  nat?: NatProfile;
  natSignature?: string;
}
export interface RejectMessage extends CallSignalFields {
  type: 'reject';
  reason: RejectReason;
}
export interface HangupMessage extends CallSignalFields {
  type: 'hangup';
}
export interface CandidateUpdateMessage extends CallSignalFields {
  type: 'candidate-update';
  candidates: Candidate[];
}
export type CallSignalMessage = OfferMessage | RingingMessage | AnswerMessage | RejectMessage | HangupMessage | CandidateUpdateMessage;
export type CallSignalType = CallSignalMessage['type'];
export const CALL_SIGNAL_TYPES: readonly CallSignalType[] = ['offer', 'ringing', 'answer', 'reject', 'hangup', 'candidate-update'];

/** Relay -> sender of a call signal: delivered to `to`'s registered connection. */
export interface RoutedMessage {
  type: 'routed';
  callId: string;
}
/** Relay -> sender of a call signal: nobody is registered as `to` here. */
export interface OfflineMessage {
  type: 'offline';
  callId: string;
  to: string;
}
/**
 * Relay -> a call's party: the other party's connection closed (`fingerprint`) while the call
 * was known to the relay. Unsigned: a hint (a relay can always drop a call anyway).
 */
export interface CallGoneMessage {
  type: 'call-gone';
  callId: string;
  fingerprint: string;
}

// Relay links (docs/federation.md, core/federation/): relay <-> relay only. A relay answers
// them from a client with an error; their `entries` are checked field by field by the
// federation code, which drops and counts a malformed one.

/**
 * Dialling relay -> accepting relay: its protocol version, fingerprint, certificate (DER,
 * base64) and source-id prefix (0-65535: the high 16 bits of its members' source ids,
 * ./room-source.ts; two linked relays must differ).
 */
export interface LinkHelloMessage {
  type: 'link-hello';
  version: number;
  fingerprint: string;
  certificate: string;
  sourcePrefix: number;
}
/** Accepting relay -> dialling relay: a fresh nonce to sign with the certificate's key, and its own source-id prefix. */
export interface LinkChallengeMessage {
  type: 'link-challenge';
  version: number;
  fingerprint: string;
  nonce: string;
  sourcePrefix: number;
}
/** Dialling relay -> accepting relay: the signature (core/federation/proof.ts). */
export interface LinkAuthMessage {
  type: 'link-auth';
  signature: string;
}
/** Accepting relay -> dialling relay: the link is up. */
export interface LinkReadyMessage {
  type: 'link-ready';
  fingerprint: string;
}
/** Either way: membership changes of global rooms (core/federation/federation.ts). */
export interface LinkUpdateMessage {
  type: 'link-update';
  entries: Record<string, unknown>[];
}
/** Either way: a member's room signal for a member (`to`) or all members (no `to`) elsewhere. */
export interface LinkSignalMessage {
  type: 'link-signal';
  room: string;
  from: string;
  to?: string;
  hops: number;
  payload: Record<string, unknown>;
}

export type KnownSignalMessage =
  | HelloMessage
  | HelloAckMessage
  | PingMessage
  | PongMessage
  | ReflectMessage
  | ReflectResponseMessage
  | JoinMessage
  | JoinedMessage
  | RoomUpdateMessage
  | RoomSignalMessage
  | RelayedMessage
  | LeaveMessage
  | ErrorMessage
  | DrainingMessage
  | RegisterChallengeMessage
  | ChallengeMessage
  | RegisterMessage
  | RegisteredMessage
  | PresenceReplacedMessage
  | CallSignalMessage
  | RoutedMessage
  | OfflineMessage
  | CallGoneMessage
  | LinkHelloMessage
  | LinkChallengeMessage
  | LinkAuthMessage
  | LinkReadyMessage
  | LinkUpdateMessage
  | LinkSignalMessage;
export type KnownSignalType = KnownSignalMessage['type'];

/** A message of a type this version does not know; the caller logs and drops it. */
export interface UnknownSignalMessage {
  type: 'unknown';
  rawType: string;
}

export type SignalMessage = KnownSignalMessage | UnknownSignalMessage;

/** How one field is checked. */
export interface FieldCheck<T> {
  /** What the value must be, for error messages. */
  readonly expected: string;
  accepts(value: unknown): value is T;
  /** The canonical copy of an accepted value (nested unknown fields dropped); default: the value itself. */
  canonical?(value: T): T;
}

export interface FieldRule<T> extends FieldCheck<T> {
  readonly required: boolean;
  /**
   * Decoding leaves an invalid value out instead of refusing the message (optional fields
   * only, whose absence is the safe default; encoding one is still refused).
   */
  readonly tolerated?: boolean;
}

/** One rule per field of message M (other than `type`), required exactly when M's is. */
export type FieldRules<M> = {
  readonly [K in Exclude<keyof M, 'type'>]-?: FieldRule<Exclude<M[K], undefined>> & {
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type -- `{} extends Pick<M, K>` is the test for an optional key
    readonly required: {} extends Pick<M, K> ? false : true;
  };
};

export type SignalSchema = { readonly [T in KnownSignalType]: FieldRules<Extract<KnownSignalMessage, { type: T }>> };

const text: FieldCheck<string> = { expected: 'a string', accepts: (value): value is string => typeof value === 'string' };
const flag: FieldCheck<boolean> = { expected: 'true or false', accepts: (value): value is boolean => typeof value === 'boolean' };
const mediaToken: FieldCheck<string> = {
  expected: '16 lowercase hex digits',
  accepts: (value): value is string => typeof value === 'string' && /^[0-9a-f]{16}$/.test(value),
};
const uint32: FieldCheck<number> = {
  expected: 'an integer 0-4294967295',
  accepts: (value): value is number => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff_ffff,
};
const nonce: FieldCheck<number> = {
  expected: 'a non-negative safe integer',
  accepts: (value): value is number => Number.isSafeInteger(value) && (value as number) >= 0,
};
const sessionMode: FieldCheck<SessionMode> = {
  expected: "'echo' or 'room'",
  accepts: (value): value is SessionMode => value === 'echo' || value === 'room',
};
const socketAddress: FieldCheck<string> = {
  expected: 'an address ip:port or [ipv6]:port',
  accepts: (value): value is string => typeof value === 'string' && parseSocketAddress(value) !== undefined,
};

const sourceId: FieldCheck<number> = {
  expected: 'a source id 1 to 2^32-1',
  accepts: (value): value is number => Number.isInteger(value) && (value as number) >= MIN_SOURCE_ID && (value as number) <= MAX_SOURCE_ID,
};
const sourcePrefix: FieldCheck<number> = {
  expected: 'a source-id prefix 0-65535',
  accepts: (value): value is number => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff,
};
/** Longest alias or fingerprint string accepted in a roster entry. */
const MAX_ROSTER_TEXT = 128;
/** Largest roster accepted (the relay caps rooms well below this). */
const MAX_ROSTER = 256;
const rosterText = (value: unknown): boolean => typeof value === 'string' && value.length <= MAX_ROSTER_TEXT;
const participants: FieldCheck<RoomParticipant[]> = {
  expected: `a list of at most ${MAX_ROSTER} {sourceId, alias, fingerprint}`,
  accepts: (value): value is RoomParticipant[] =>
    Array.isArray(value) &&
    value.length <= MAX_ROSTER &&
    value.every(
      (p) =>
        typeof p === 'object' &&
        p !== null &&
        sourceId.accepts((p as RoomParticipant).sourceId) &&
        rosterText((p as RoomParticipant).alias) &&
        rosterText((p as RoomParticipant).fingerprint),
    ),
};
const jsonObject: FieldCheck<Record<string, unknown>> = {
  expected: 'a JSON object',
  accepts: (value): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value),
};
const announcements: FieldCheck<MemberAnnouncementEntry[]> = {
  expected: `a list of at most ${MAX_ROSTER} {sourceId, announcement: object}`,
  accepts: (value): value is MemberAnnouncementEntry[] =>
    Array.isArray(value) &&
    value.length <= MAX_ROSTER &&
    value.every(
      (e) =>
        typeof e === 'object' &&
        e !== null &&
        sourceId.accepts((e as MemberAnnouncementEntry).sourceId) &&
        jsonObject.accepts((e as MemberAnnouncementEntry).announcement),
    ),
};

/** Fingerprints as wzp writes them: 16 groups of 4 lowercase hex digits. */
export const FINGERPRINT_PATTERN = /^[0-9a-f]{4}(?::[0-9a-f]{4}){15}$/;
const fingerprint: FieldCheck<string> = {
  expected: 'a fingerprint (16 groups of 4 lowercase hex digits)',
  accepts: (value): value is string => typeof value === 'string' && FINGERPRINT_PATTERN.test(value),
};
/** A call id: 16 bytes as 32 lowercase hex digits. */
export const CALL_ID_PATTERN = /^[0-9a-f]{32}$/;
const callId: FieldCheck<string> = {
  expected: '32 lowercase hex digits',
  accepts: (value): value is string => typeof value === 'string' && CALL_ID_PATTERN.test(value),
};
const challengeNonce: FieldCheck<string> = {
  expected: '64 lowercase hex digits',
  accepts: (value): value is string => typeof value === 'string' && /^[0-9a-f]{64}$/.test(value),
};
/** `bytes` bytes in the one padded base64 spelling Buffer writes for them. */
function base64Of(bytes: number): FieldCheck<string> {
  const length = 4 * Math.ceil(bytes / 3);
  return {
    expected: `${bytes} bytes in padded base64`,
    accepts: (value): value is string =>
      typeof value === 'string' && value.length === length && /^[A-Za-z0-9+/]*={0,2}$/.test(value) && canonicalBase64(value, bytes),
  };
}
function canonicalBase64(text: string, bytes: number): boolean {
  const decoded = Buffer.from(text, 'base64');
  return decoded.length === bytes && decoded.toString('base64') === text;
}
const key32 = base64Of(32);
/** A DER certificate in base64 (a relay's is ~400 bytes; at most 4096 characters). */
const certificateBase64: FieldCheck<string> = {
  expected: 'a certificate in padded base64 (at most 4096 characters)',
  accepts: (value): value is string => typeof value === 'string' && value.length > 0 && value.length <= 4096 && /^[A-Za-z0-9+/]*={0,2}$/.test(value),
};
/** Most entries in one link-update (each is checked by the federation code). */
export const MAX_LINK_UPDATE_ENTRIES = 64;
const objectList: FieldCheck<Record<string, unknown>[]> = {
  expected: `a list of at most ${MAX_LINK_UPDATE_ENTRIES} JSON objects`,
  accepts: (value): value is Record<string, unknown>[] =>
    Array.isArray(value) && value.length <= MAX_LINK_UPDATE_ENTRIES && value.every((e) => typeof e === 'object' && e !== null && !Array.isArray(e)),
};
const signature64 = base64Of(64);
const callRole: FieldCheck<CallRole> = {
  expected: "'caller' or 'callee'",
  accepts: (value): value is CallRole => value === 'caller' || value === 'callee',
};
export type OfferPurpose = 'direct-test';
const offerPurpose: FieldCheck<OfferPurpose> = {
  expected: "'direct-test'",
  accepts: (value): value is OfferPurpose => value === 'direct-test',
};

const rejectReason: FieldCheck<RejectReason> = {
  expected: "'declined' or 'busy'",
  accepts: (value): value is RejectReason => value === 'declined' || value === 'busy',
};
const timestamp: FieldCheck<number> = {
  expected: 'ms since the Unix epoch (a non-negative safe integer)',
  accepts: (value): value is number => Number.isSafeInteger(value) && (value as number) >= 0,
};
const candidates: FieldCheck<Candidate[]> = {
  expected: `a list of at most ${MAX_CANDIDATES} candidates {type, address, port, priority}`,
  accepts: (value): value is Candidate[] => isCandidateList(value),
  canonical: (value) => value.map(canonicalCandidate),
};
const candidate: FieldCheck<Candidate> = {
  expected: 'a candidate {type, address, port, priority}',
  accepts: (value): value is Candidate => isCandidate(value),
  canonical: canonicalCandidate,
};
const natProfile: FieldCheck<NatProfile> = {
  expected: `a NAT profile {mapping, filtering, allocation {kind, delta?, recentPorts (≤ ${MAX_NAT_RECENT_PORTS}), observedAgoMs?}, reflexive (≤ ${MAX_NAT_REFLEXIVE}), consent}`,
  accepts: (value): value is NatProfile => isWireNatProfile(value),
  canonical: canonicalNatProfile,
};

function required<T>(check: FieldCheck<T>): FieldRule<T> & { readonly required: true } {
  return { ...check, required: true };
}

function optional<T>(check: FieldCheck<T>): FieldRule<T> & { readonly required: false } {
  return { ...check, required: false };
}

/**
 * An optional field that a decoder leaves out when invalid, instead of refusing the message.
 * Only for advisory extensions whose absence is the safe default (a NAT profile: absent means
 * no consent to hard-NAT probing): a later version may widen their values (a new allocation
 * kind), and a relay or receiver of this version must not drop that version's offers over it.
 * Fields that change what a receiver may do (relayOnly, candidates) stay strict.
 */
function tolerated<T>(check: FieldCheck<T>): FieldRule<T> & { readonly required: false } {
  return { ...check, required: false, tolerated: true };
}

/**
 * The fields of every known message type. To add a message: declare its interface, add it
 * to KnownSignalMessage, and add its rules here (the compiler insists on all three).
 */
export const SIGNAL_SCHEMA: SignalSchema = {
  hello: { version: required(uint32), alias: optional(text), client: optional(text), token: optional(text) },
  'hello-ack': { version: required(uint32), relayFingerprint: required(text) },
  ping: { nonce: required(nonce) },
  pong: { nonce: required(nonce) },
  reflect: {},
  'reflect-response': { observedAddress: required(socketAddress) },
  join: {
    mode: required(sessionMode),
    room: optional(text),
    alias: optional(text),
    fingerprint: optional(text),
    announcement: optional(jsonObject),
    udpMedia: optional(flag),
  },
  joined: {
    mode: required(sessionMode),
    room: optional(text),
    sourceId: optional(sourceId),
    participants: optional(participants),
    announcements: optional(announcements),
    mediaToken: optional(mediaToken),
  },
  'room-update': {
    room: required(text),
    participants: required(participants),
    joined: optional(sourceId),
    left: optional(sourceId),
    announcement: optional(jsonObject),
  },
  'room-signal': { to: optional(sourceId), payload: required(jsonObject) },
  relayed: { room: required(text), from: required(sourceId), payload: required(jsonObject) },
  leave: {},
  error: { code: required(text), message: required(text) },
  draining: { deadlineMs: required(uint32) },
  'register-challenge': {},
  challenge: { nonce: required(challengeNonce) },
  register: {
    fingerprint: required(fingerprint),
    identityKey: required(key32),
    nonce: required(challengeNonce),
    signature: required(signature64),
    receiveCalls: optional(flag),
  },
  registered: { fingerprint: required(fingerprint) },
  'presence-replaced': { fingerprint: required(fingerprint) },
  offer: {
    ...callSignalRules(),
    ephemeralKey: required(key32),
    candidates: required(candidates),
    relayOnly: optional(flag),
    purpose: optional(offerPurpose),
    relayCandidate: optional(candidate),
    nat: tolerated(natProfile),
    natSignature: tolerated(signature64),
  },
  ringing: { ...callSignalRules(), ephemeralKey: tolerated(key32), keySignature: tolerated(signature64) },
  answer: {
    ...callSignalRules(),
    ephemeralKey: required(key32),
    candidates: required(candidates),
    relayOnly: optional(flag),
    relayCandidate: optional(candidate),
    nat: tolerated(natProfile),
    natSignature: tolerated(signature64),
  },
  reject: { ...callSignalRules(), reason: required(rejectReason) },
  hangup: callSignalRules(),
  'candidate-update': { ...callSignalRules(), candidates: required(candidates) },
  routed: { callId: required(callId) },
  offline: { callId: required(callId), to: required(fingerprint) },
  'call-gone': { callId: required(callId), fingerprint: required(fingerprint) },
  'link-hello': { version: required(uint32), fingerprint: required(fingerprint), certificate: required(certificateBase64), sourcePrefix: required(sourcePrefix) },
  'link-challenge': { version: required(uint32), fingerprint: required(fingerprint), nonce: required(challengeNonce), sourcePrefix: required(sourcePrefix) },
  'link-auth': { signature: required(signature64) },
  'link-ready': { fingerprint: required(fingerprint) },
  'link-update': { entries: required(objectList) },
  'link-signal': { room: required(text), from: required(text), to: optional(text), hops: required(uint32), payload: required(jsonObject) },
};

/** The rules of the fields every call signal carries, in their canonical order. */
function callSignalRules() {
  return {
    callId: required(callId),
    from: required(fingerprint),
    to: required(fingerprint),
    role: required(callRole),
    seq: required(uint32),
    ts: required(timestamp),
    identityKey: required(key32),
    signature: required(signature64),
  } as const;
}

export function isCallSignal(message: { type: string }): message is CallSignalMessage {
  return (CALL_SIGNAL_TYPES as readonly string[]).includes(message.type);
}

export interface SocketAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** `ip:port`, or `[ip]:port` for IPv6. */
export function formatSocketAddress(address: string, port: number): string {
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Parses `ip:port` / `[ipv6]:port` (port 1-65535, no leading zeros); undefined if malformed. */
export function parseSocketAddress(text: string): SocketAddress | undefined {
  const colon = text.lastIndexOf(':');
  const portText = text.slice(colon + 1);
  if (colon < 0 || !/^[1-9][0-9]{0,4}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 0xffff) return undefined;
  const host = text.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) {
    const address = host.slice(1, -1);
    return isIPv6(address) ? { address, port, family: 'IPv6' } : undefined;
  }
  return isIPv4(host) ? { address: host, port, family: 'IPv4' } : undefined;
}

/** One frame: length prefix and canonical JSON. Throws InternalError for an invalid message. */
export function encodeSignal(message: KnownSignalMessage): Uint8Array {
  const payload = textEncoder.encode(JSON.stringify(canonicalForm(message)));
  if (payload.length > MAX_SIGNAL_PAYLOAD_BYTES) {
    throw new InternalError(`signal: ${message.type} message of ${payload.length} bytes exceeds ${MAX_SIGNAL_PAYLOAD_BYTES}`);
  }
  const frame = new Uint8Array(SIGNAL_LENGTH_BYTES + payload.length);
  new DataView(frame.buffer).setUint32(OFFSET_SIGNAL_LENGTH, payload.length);
  frame.set(payload, SIGNAL_LENGTH_BYTES);
  return frame;
}

/**
 * Decodes exactly one complete frame. Throws DecodeError: 'truncated', 'too-large',
 * 'trailing-bytes', or one of the payload reasons.
 */
export function decodeSignal(frame: Uint8Array): SignalMessage {
  if (frame.length < SIGNAL_LENGTH_BYTES) throw truncated(frame.length, SIGNAL_LENGTH_BYTES);
  const length = readLength(frame, 0);
  if (length > MAX_SIGNAL_PAYLOAD_BYTES) throw tooLarge(length);
  const end = SIGNAL_LENGTH_BYTES + length;
  if (frame.length < end) throw truncated(frame.length, end);
  if (frame.length > end) throw new DecodeError(FORMAT, 'trailing-bytes', `${frame.length - end} bytes after the frame`);
  return decodeSignalPayload(frame.subarray(SIGNAL_LENGTH_BYTES));
}

export interface SignalFrameDecoderOptions {
  /** Told about each frame skipped because its payload was invalid (log and count it). */
  onInvalidFrame(error: DecodeError): void;
  /**
   * The largest payload length accepted (default and ceiling MAX_SIGNAL_PAYLOAD_BYTES); a
   * larger declared length is 'too-large' and breaks the stream.
   */
  maxPayloadBytes?: number;
}

/**
 * Decodes a byte stream into messages, whatever the chunking: a frame may span chunks and a
 * chunk may hold many frames. A frame with an invalid payload is skipped and reported to
 * `onInvalidFrame`; decoding goes on with the next frame. A declared length over the limit
 * makes `push` throw DecodeError 'too-large' (dropping any messages of that chunk) and
 * every later `push` throw it again: the stream is broken and must be closed.
 */
export class SignalFrameDecoder {
  readonly #onInvalidFrame: (error: DecodeError) => void;
  readonly #maxPayload: number;
  #buffer = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #broken: DecodeError | undefined;

  constructor(options: SignalFrameDecoderOptions) {
    this.#onInvalidFrame = options.onInvalidFrame;
    this.#maxPayload = Math.min(options.maxPayloadBytes ?? MAX_SIGNAL_PAYLOAD_BYTES, MAX_SIGNAL_PAYLOAD_BYTES);
  }

  /** Bytes received toward a frame not yet complete. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  push(chunk: Uint8Array): SignalMessage[] {
    return this.pushSized(chunk).map((m) => m.message);
  }

  /** As push(), with each message's payload size in bytes (for byte budgets). */
  pushSized(chunk: Uint8Array): { message: SignalMessage; payloadBytes: number }[] {
    if (this.#broken !== undefined) throw this.#broken;
    this.#append(chunk);
    const messages: { message: SignalMessage; payloadBytes: number }[] = [];
    for (let payload = this.#nextPayload(); payload !== undefined; payload = this.#nextPayload()) {
      try {
        messages.push({ message: decodeSignalPayload(payload), payloadBytes: payload.length });
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        this.#onInvalidFrame(error);
      }
    }
    return messages;
  }

  /** Takes the next complete frame's payload off the buffer, if there is one. */
  #nextPayload(): Uint8Array | undefined {
    if (this.bufferedBytes < SIGNAL_LENGTH_BYTES) return undefined;
    const length = readLength(this.#buffer, this.#start);
    if (length > this.#maxPayload) {
      this.#broken = tooLarge(length, this.#maxPayload);
      this.#start = this.#end = 0;
      throw this.#broken;
    }
    const payloadStart = this.#start + SIGNAL_LENGTH_BYTES;
    if (this.#end - payloadStart < length) return undefined;
    this.#start = payloadStart + length;
    return this.#buffer.subarray(payloadStart, this.#start);
  }

  #append(chunk: Uint8Array): void {
    if (this.#end + chunk.length > this.#buffer.length) this.#makeRoom(chunk.length);
    this.#buffer.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  /** Moves the unread bytes to the front, into a larger buffer if they still do not fit. */
  #makeRoom(extra: number): void {
    const unread = this.bufferedBytes;
    const needed = unread + extra;
    if (needed > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(needed, 2 * this.#buffer.length));
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
    } else {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    }
    this.#start = 0;
    this.#end = unread;
  }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeSignalPayload(payload: Uint8Array): SignalMessage {
  let json: string;
  try {
    json = textDecoder.decode(payload);
  } catch {
    throw new DecodeError(FORMAT, 'bad-utf8', 'payload is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new DecodeError(FORMAT, 'bad-json', 'payload is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DecodeError(FORMAT, 'not-object', 'payload is not a JSON object');
  }
  return parseMessage(value as Record<string, unknown>);
}

function parseMessage(object: Record<string, unknown>): SignalMessage {
  const type = ownField(object, 'type');
  if (typeof type !== 'string') throw new DecodeError(FORMAT, 'bad-type', 'message has no string type');
  if (!isKnownType(type)) return { type: 'unknown', rawType: type };
  const message = pickFields(type, object, (problem) => new DecodeError(FORMAT, 'bad-field', problem), { decoding: true });
  return message as unknown as KnownSignalMessage; // checked field by field against SIGNAL_SCHEMA
}

function canonicalForm(message: KnownSignalMessage): Record<string, unknown> {
  const type: unknown = message.type;
  if (typeof type !== 'string' || !isKnownType(type)) throw new InternalError(`signal: cannot encode type ${String(type)}`);
  const source = message as unknown as Record<string, unknown>;
  return pickFields(type, source, (problem) => new InternalError(`signal: ${problem}`), { decoding: false });
}

/**
 * The message of this type built from `source`'s own fields, in schema order: required
 * fields present, every present field valid, unknown fields and absent (undefined or null)
 * optional ones left out (and, when decoding, invalid tolerated ones). Throws what `fail`
 * makes of the first problem.
 */
function pickFields(type: KnownSignalType, source: Record<string, unknown>, fail: (problem: string) => Error, o: { decoding: boolean }): Record<string, unknown> {
  const message: Record<string, unknown> = { type };
  const rules: Record<string, FieldRule<unknown>> = SIGNAL_SCHEMA[type];
  for (const [name, rule] of Object.entries(rules)) {
    const value = ownField(source, name);
    if (value === undefined || value === null) {
      if (rule.required) throw fail(`${type}.${name} is missing`);
      continue;
    }
    if (!rule.accepts(value)) {
      if (o.decoding && rule.tolerated) continue;
      throw fail(`${type}.${name} must be ${rule.expected}`);
    }
    message[name] = rule.canonical ? rule.canonical(value) : value;
  }
  return message;
}

function isKnownType(type: string): type is KnownSignalType {
  return Object.hasOwn(SIGNAL_SCHEMA, type);
}

function ownField(object: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(object, name) ? object[name] : undefined;
}

function readLength(buf: Uint8Array, offset: number): number {
  return new DataView(buf.buffer, buf.byteOffset + offset, SIGNAL_LENGTH_BYTES).getUint32(OFFSET_SIGNAL_LENGTH);
}

function truncated(have: number, need: number): DecodeError {
  return new DecodeError(FORMAT, 'truncated', `need ${need} bytes, have ${have}`);
}

function tooLarge(length: number, limit = MAX_SIGNAL_PAYLOAD_BYTES): DecodeError {
  return new DecodeError(FORMAT, 'too-large', `declared payload of ${length} bytes exceeds ${limit}`);
}

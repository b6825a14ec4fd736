/**
 * Sender-key distribution for one member of one room session: who is in the room, how each
 * member's sender key reaches the others, and when keys rotate. The relay carries every
 * message below but holds no key that opens them. Full specification: docs/e2e-encryption.md.
 *
 * 1. Announce. On joining, a member makes an ephemeral X25519 key pair for this session and
 *    announces its public key and its alias, signed by its Ed25519 identity key over
 *      labelled("wzp-room-announce-v2", room id, identity public key, X25519 public key,
 *               replaces or empty, UTF-8 alias or empty)
 *    with a proof that it knows the room's name (and secret), which the relay cannot make:
 *      proof = HMAC-SHA256(admission key, labelled("wzp-room-admit-v1", room id, identity
 *              public key, X25519 public key, replaces or empty, alias or empty))
 *    (the admission key comes from the name, room-name.ts).
 * 2. Admit. Receivers check that the fingerprint is SHA-256 of the identity key, the
 *    signature and the proof (and the caller's allow list), then compute the pairwise X25519
 *    secret with their own ephemeral key. Nobody without the proof is ever sent a key.
 * 3. Rotate. A sender draws a fresh sender key for the next epoch and wraps it for every
 *    current member:
 *      wrap key = HKDF-SHA256(ikm = X25519 secret, salt = "",
 *                   info = labelled("wzp-sender-key-wrap-v1", room id, from, to, epoch,
 *                                   sender X25519 public key, recipient X25519 public key), 32)
 *      wrapped  = ChaCha20-Poly1305(wrap key, nonce = 12 zero bytes, AD = "", sender key)
 *    (each wrap key seals exactly one sender key, so the fixed nonce is never reused), and
 *    signs labelled("wzp-sender-key-wrap-sig-v1", room id, from, to, epoch, sender X25519,
 *    recipient X25519, wrapped) with its identity key.
 * 4. Install. The recipient checks the signature of a known member, refuses epochs not newer
 *    than that sender's latest, unwraps and installs the key in that sender's MediaDecryptor.
 *
 * A member is one room session: an identity and the X25519 key it announced. One identity
 * can be in a room more than once (the same 24 words restored on a laptop and a phone, or
 * two terminals on one machine); each session is a member of its own, with its own sender
 * keys. Sessions are named by their X25519 public key in base64 (`session` below).
 *
 * Every membership change sets needsRotation: the caller then calls rotate() and sends the
 * messages, so a member who left never receives a later key and a member who joined never
 * received an earlier one. A session's X25519 key is accepted once per keyring: once it is
 * removed, replaying its announcement (and with it its old wrapped keys and media) is refused.
 */
import { createHmac, createPublicKey, diffieHellman, generateKeyPairSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { DecodeError, ExitCode, InternalError, UsageError, WzpError } from '../errors.js';
import { MAX_ANNOUNCEMENT_BYTES } from '../wire/signal.js';
import { sha256Fingerprint } from './fingerprint.js';
import { ED25519_PUBLIC_KEY_BYTES, ED25519_SIGNATURE_BYTES, Identity } from './identity.js';
import {
  AEAD_KEY_BYTES,
  MediaDecryptor,
  MediaEncryptor,
  NONCE_BYTES,
  SENDER_KEY_BYTES,
  TAG_BYTES,
  aeadOpen,
  aeadSeal,
  hkdfSha256,
  labelledFields,
  type MediaDecryptorOptions,
  type MediaEncryptorOptions,
  type SenderKey,
} from './media-crypto.js';

export const X25519_PUBLIC_KEY_BYTES = 32;
/** A wrapped sender key: the encrypted 32-byte key and its tag. */
export const WRAPPED_KEY_BYTES = SENDER_KEY_BYTES + TAG_BYTES;
/** Longest room id, in UTF-8 bytes. */
export const MAX_ROOM_ID_BYTES = 255;
/** Label of the announcement signature (v2: covers `replaces` and the alias, always). */
export const ANNOUNCEMENT_SIGNATURE_LABEL = 'wzp-room-announce-v2';
/** Label of the v1 announcement signature: still verified, never admitted (no proof). */
export const LEGACY_ANNOUNCEMENT_SIGNATURE_LABEL = 'wzp-room-announce-v1';
/** Label of the admission proof's transcript. */
export const ADMISSION_PROOF_LABEL = 'wzp-room-admit-v1';
/** HMAC-SHA256 output. */
export const ADMISSION_PROOF_BYTES = 32;
/** The admission key (core/crypto/room-name.ts). */
export const ADMISSION_KEY_LENGTH = 32;
/** An alias is at most this many code points... */
export const MAX_ALIAS_CODE_POINTS = 64;
/** ...and this many UTF-8 bytes. */
export const MAX_ALIAS_BYTES = 128;
/**
 * The largest announcement, as JSON text in UTF-8 bytes, a relay carries (the relay's limit,
 * core/wire/signal.ts): every field at its longest, an alias of 64 characters that JSON
 * escapes, and `replaces`, fit (test/e2e/admission.test.ts checks it).
 */
export const MAX_ANNOUNCEMENT_JSON_BYTES = MAX_ANNOUNCEMENT_BYTES;
/**
 * Retired session keys a keyring remembers (the newest), to refuse replayed announcements of
 * sessions that left. A bound, because a member that joins and leaves in a loop would grow
 * the set forever. What the bound gives up: a relay that has collected more than this many
 * genuine announcements of sessions that left (each made by someone who knows the room name)
 * can cycle them through to push one out, then replay it. A keyring created later (a member
 * joining afterwards) has no record of any of them at all, which the relay can always use, so
 * this opens nothing new (docs/e2e-encryption.md, rotation rules).
 */
export const MAX_RETIRED_SESSIONS = 4096;
export const WRAP_KEY_LABEL = 'wzp-sender-key-wrap-v1';
export const WRAP_SIGNATURE_LABEL = 'wzp-sender-key-wrap-sig-v1';

const ANNOUNCEMENT_FORMAT = 'member-announcement';
const WRAPPED_KEY_FORMAT = 'wrapped-key';
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
/** Each wrap key seals exactly one sender key, so a constant nonce is never reused under a key. */
const WRAP_NONCE = new Uint8Array(NONCE_BYTES);
const FINGERPRINT_PATTERN = /^[0-9a-f]{4}(?::[0-9a-f]{4}){15}$/;
const EMPTY = new Uint8Array(0);
/** Control, format (bidi overrides, zero-width...), line and paragraph separators; lone surrogates. */
const ALIAS_FORBIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const U32_MAX = 0xffff_ffff;

// ---------------------------------------------------------------------------------------------
// Messages (JSON, binary fields in standard base64 with padding)

/** A member's signed session key, broadcast to the room on joining. */
export interface MemberAnnouncement {
  /** SHA-256 of the identity public key, `xxxx:xxxx:...`. */
  fingerprint: string;
  /** Raw Ed25519 identity public key, base64 (32 bytes). */
  identityPublicKey: string;
  /** Raw X25519 public key for this room session, base64 (32 bytes). */
  x25519PublicKey: string;
  /**
   * The name the member shows (1-64 code points, at most 128 UTF-8 bytes, no control, format
   * or separator characters). Signed and proven with the rest: the relay cannot change it.
   */
  alias?: string;
  /**
   * The session this one replaces (its X25519 public key, base64): the same member back after
   * losing the relay. Signed with the rest; receivers drop that session of this identity.
   */
  replaces?: string;
  /** Ed25519 signature by the identity key, base64 (64 bytes). */
  signature: string;
  /**
   * HMAC-SHA256 by the room's admission key, base64 (32 bytes): proof that the member knows
   * the room's name (and secret). Absent from v1 announcements, which are never admitted.
   */
  proof?: string;
}

/** One sender key, wrapped for one recipient session. The relay forwards it to `to`. */
export interface WrappedKeyMessage {
  /** Sender fingerprint. */
  from: string;
  /** Recipient fingerprint. */
  to: string;
  /** The sender's session: its X25519 public key, base64 (32 bytes). */
  fromSession: string;
  /** The recipient's session: its X25519 public key, base64 (32 bytes). */
  toSession: string;
  /** The sender's epoch this key belongs to, u32. */
  epoch: number;
  /** ChaCha20-Poly1305 ciphertext and tag of the sender key, base64 (48 bytes). */
  wrapped: string;
  /** Ed25519 signature by the sender's identity key, base64 (64 bytes). */
  signature: string;
}

/**
 * Validates an untrusted announcement (e.g. from JSON.parse) and returns a clean copy
 * (unknown fields dropped). Throws DecodeError 'not-object' or 'bad-field'. Does not check
 * the signature: RoomKeyring.addMember does.
 */
export function parseMemberAnnouncement(value: unknown): MemberAnnouncement {
  const record = asRecord(ANNOUNCEMENT_FORMAT, value);
  return {
    fingerprint: fingerprintField(ANNOUNCEMENT_FORMAT, record, 'fingerprint'),
    identityPublicKey: base64Field(ANNOUNCEMENT_FORMAT, record, 'identityPublicKey', ED25519_PUBLIC_KEY_BYTES),
    x25519PublicKey: base64Field(ANNOUNCEMENT_FORMAT, record, 'x25519PublicKey', X25519_PUBLIC_KEY_BYTES),
    ...(record.alias === undefined ? {} : { alias: aliasField(ANNOUNCEMENT_FORMAT, record, 'alias') }),
    ...(record.replaces === undefined ? {} : { replaces: base64Field(ANNOUNCEMENT_FORMAT, record, 'replaces', X25519_PUBLIC_KEY_BYTES) }),
    signature: base64Field(ANNOUNCEMENT_FORMAT, record, 'signature', ED25519_SIGNATURE_BYTES),
    ...(record.proof === undefined ? {} : { proof: base64Field(ANNOUNCEMENT_FORMAT, record, 'proof', ADMISSION_PROOF_BYTES) }),
  };
}

/**
 * Why `alias` cannot be an alias (undefined when it can): empty, more than 64 code points or
 * 128 UTF-8 bytes, or a control, format (e.g. a bidi override), line or paragraph separator
 * character, or a lone surrogate. Such characters would let a name impersonate another on a
 * terminal; the limits keep an announcement within MAX_ANNOUNCEMENT_JSON_BYTES.
 */
export function aliasProblem(alias: string): string | undefined {
  if (alias.length === 0) return 'an alias cannot be empty';
  const codePoints = [...alias].length;
  if (codePoints > MAX_ALIAS_CODE_POINTS) return `an alias is at most ${MAX_ALIAS_CODE_POINTS} characters (this one has ${codePoints})`;
  const bytes = Buffer.byteLength(alias, 'utf8');
  if (bytes > MAX_ALIAS_BYTES) return `an alias is at most ${MAX_ALIAS_BYTES} bytes of UTF-8 (this one has ${bytes})`;
  const bad = ALIAS_FORBIDDEN.exec(alias);
  if (bad) return `an alias cannot contain control, format or separator characters (U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
  return undefined;
}

function aliasField(format: string, record: Record<string, unknown>, name: string): string {
  const value = record[name];
  const problem = typeof value === 'string' ? aliasProblem(value) : 'not a string';
  if (problem !== undefined) throw new DecodeError(format, 'bad-field', `"${name}": ${problem}`);
  return value as string;
}

/**
 * Validates an untrusted wrapped-key message and returns a clean copy. Throws DecodeError
 * 'not-object' or 'bad-field'. Does not check the signature: RoomKeyring.receiveWrappedKey does.
 */
export function parseWrappedKeyMessage(value: unknown): WrappedKeyMessage {
  const record = asRecord(WRAPPED_KEY_FORMAT, value);
  return {
    from: fingerprintField(WRAPPED_KEY_FORMAT, record, 'from'),
    to: fingerprintField(WRAPPED_KEY_FORMAT, record, 'to'),
    fromSession: base64Field(WRAPPED_KEY_FORMAT, record, 'fromSession', X25519_PUBLIC_KEY_BYTES),
    toSession: base64Field(WRAPPED_KEY_FORMAT, record, 'toSession', X25519_PUBLIC_KEY_BYTES),
    epoch: epochField(WRAPPED_KEY_FORMAT, record, 'epoch'),
    wrapped: base64Field(WRAPPED_KEY_FORMAT, record, 'wrapped', WRAPPED_KEY_BYTES),
    signature: base64Field(WRAPPED_KEY_FORMAT, record, 'signature', ED25519_SIGNATURE_BYTES),
  };
}

function asRecord(format: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DecodeError(format, 'not-object', 'expected a JSON object');
  }
  return value as Record<string, unknown>;
}

function fingerprintField(format: string, record: Record<string, unknown>, name: string): string {
  const value = record[name];
  if (typeof value !== 'string' || !FINGERPRINT_PATTERN.test(value)) {
    throw new DecodeError(format, 'bad-field', `"${name}" must be a fingerprint xxxx:xxxx:... (64 lowercase hex digits)`);
  }
  return value;
}

function base64Field(format: string, record: Record<string, unknown>, name: string, bytes: number): string {
  const value = record[name];
  if (typeof value !== 'string' || !isCanonicalBase64(value, bytes)) {
    throw new DecodeError(format, 'bad-field', `"${name}" must be ${bytes} bytes in padded base64`);
  }
  return value;
}

/** Exactly `bytes` bytes, in the one padded base64 spelling Buffer produces for them. */
function isCanonicalBase64(text: string, bytes: number): boolean {
  if (text.length !== Math.ceil(bytes / 3) * 4) return false;
  const decoded = fromBase64(text);
  return decoded.length === bytes && toBase64(decoded) === text;
}

function epochField(format: string, record: Record<string, unknown>, name: string): number {
  const value = record[name];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new DecodeError(format, 'bad-field', `"${name}" must be an integer 0-${U32_MAX}`);
  }
  return value;
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64');
}

function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

// ---------------------------------------------------------------------------------------------
// Errors

export type KeyExchangeFailure =
  /** The announced fingerprint is not SHA-256 of the announced identity key. */
  | 'fingerprint-mismatch'
  /** A signature does not verify (forged, altered, or made for another room). */
  | 'bad-signature'
  /**
   * An announcement without a valid admission proof: made by someone who does not know the
   * room's name (or secret), such as the relay, or a v1 announcement (an older client).
   */
  | 'unproven'
  /** A proven member whose identity is not on the keyring's allow list. */
  | 'not-allowed'
  /** The local session's own announcement (its X25519 key), e.g. echoed back by the relay. */
  | 'self'
  /** An X25519 key already retired in this keyring (a replayed announcement). */
  | 'stale-announcement'
  /** An X25519 public key that gives no shared secret (a low-order point). */
  | 'bad-key'
  /** A wrapped key addressed to another member (or another session of the local identity). */
  | 'wrong-recipient'
  /** A wrapped key from someone who is not a current member. */
  | 'unknown-sender'
  /** A wrapped key for an epoch not newer than the sender's latest (a replay). */
  | 'stale-epoch'
  /** A correctly signed wrapped key that does not decrypt with the pairwise key. */
  | 'unwrap-failed';

/** A key-exchange message was refused. Drop it (and count it): the key state is unchanged. */
export class KeyExchangeError extends WzpError {
  readonly reason: KeyExchangeFailure;
  constructor(reason: KeyExchangeFailure, message: string) {
    super(`key exchange: ${message}`, ExitCode.PROTOCOL);
    this.name = 'KeyExchangeError';
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------------
// Derivations

/** Everything a wrapped key is bound to. */
export interface WrapContext {
  roomId: string;
  from: string;
  to: string;
  epoch: number;
  senderX25519PublicKey: Uint8Array;
  recipientX25519PublicKey: Uint8Array;
}

/** The single-use key that wraps one sender key for one recipient. Secret. */
export function deriveWrapKey(sharedSecret: Uint8Array, context: WrapContext): Uint8Array {
  return hkdfSha256(sharedSecret, labelledFields(WRAP_KEY_LABEL, wrapFields(context)), AEAD_KEY_BYTES);
}

function wrapFields(context: WrapContext): (string | number | Uint8Array)[] {
  const { roomId, from, to, epoch, senderX25519PublicKey, recipientX25519PublicKey } = context;
  return [roomId, from, to, epoch, senderX25519PublicKey, recipientX25519PublicKey];
}

function wrapTranscript(context: WrapContext, wrapped: Uint8Array): Uint8Array {
  return labelledFields(WRAP_SIGNATURE_LABEL, [...wrapFields(context), wrapped]);
}

/** What an announcement says, in the form its signature and proof cover. */
interface AnnouncementFields {
  identityPublicKey: Uint8Array;
  x25519PublicKey: Uint8Array;
  replaces?: Uint8Array;
  alias?: string;
}

/** The fields every v2 transcript covers: absent ones as empty, always five. */
function announcementFields(roomId: string, fields: AnnouncementFields): (string | Uint8Array)[] {
  return [roomId, fields.identityPublicKey, fields.x25519PublicKey, fields.replaces ?? EMPTY, fields.alias ?? ''];
}

function announcementTranscript(roomId: string, fields: AnnouncementFields): Uint8Array {
  return labelledFields(ANNOUNCEMENT_SIGNATURE_LABEL, announcementFields(roomId, fields));
}

/** v1: a fourth field only when there is one; no alias. Verified (to say "unproven"), never admitted. */
function legacyAnnouncementTranscript(roomId: string, fields: AnnouncementFields): Uint8Array {
  const { identityPublicKey, x25519PublicKey, replaces } = fields;
  return labelledFields(LEGACY_ANNOUNCEMENT_SIGNATURE_LABEL, [roomId, identityPublicKey, x25519PublicKey, ...(replaces ? [replaces] : [])]);
}

/** HMAC-SHA256(admission key, labelled("wzp-room-admit-v1", room id, identity, X25519, replaces or empty, alias or empty)). */
function admissionProof(admissionKey: Uint8Array, roomId: string, fields: AnnouncementFields): Uint8Array {
  const transcript = labelledFields(ADMISSION_PROOF_LABEL, announcementFields(roomId, fields));
  return new Uint8Array(createHmac('sha256', admissionKey).update(transcript).digest());
}

function fieldsOf(parsed: MemberAnnouncement): AnnouncementFields {
  return {
    identityPublicKey: fromBase64(parsed.identityPublicKey),
    x25519PublicKey: fromBase64(parsed.x25519PublicKey),
    ...(parsed.replaces === undefined ? {} : { replaces: fromBase64(parsed.replaces) }),
    ...(parsed.alias === undefined ? {} : { alias: parsed.alias }),
  };
}

/**
 * A signed and proven announcement of `x25519PublicKey` for `roomId` (RoomKeyring makes its
 * own with it). `admissionKey` comes from the room's name (room-name.ts deriveRoomKeys); an
 * alias must pass aliasProblem (UsageError otherwise).
 */
export function createAnnouncement(
  identity: Identity,
  roomId: string,
  admissionKey: Uint8Array,
  x25519PublicKey: Uint8Array,
  options: { alias?: string; replaces?: string } = {},
): MemberAnnouncement {
  if (admissionKey.length !== ADMISSION_KEY_LENGTH) throw new InternalError(`an admission key is ${ADMISSION_KEY_LENGTH} bytes, got ${admissionKey.length}`);
  if (x25519PublicKey.length !== X25519_PUBLIC_KEY_BYTES) throw new InternalError('an X25519 public key is 32 bytes');
  const alias = options.alias === '' ? undefined : options.alias;
  if (alias !== undefined) {
    const problem = aliasProblem(alias);
    if (problem !== undefined) throw new UsageError(`alias ${JSON.stringify(alias)}: ${problem}`);
  }
  const replaces = options.replaces === undefined ? undefined : fromBase64(options.replaces);
  if (replaces !== undefined && (replaces.length !== X25519_PUBLIC_KEY_BYTES || toBase64(replaces) !== options.replaces)) {
    throw new InternalError('replaces must be a session: an X25519 public key in base64');
  }
  const fields: AnnouncementFields = {
    identityPublicKey: identity.publicKey,
    x25519PublicKey,
    ...(replaces === undefined ? {} : { replaces }),
    ...(alias === undefined ? {} : { alias }),
  };
  return {
    fingerprint: identity.fingerprint,
    identityPublicKey: toBase64(identity.publicKey),
    x25519PublicKey: toBase64(x25519PublicKey),
    ...(alias === undefined ? {} : { alias }),
    ...(options.replaces === undefined ? {} : { replaces: options.replaces }),
    signature: toBase64(identity.sign(announcementTranscript(roomId, fields))),
    proof: toBase64(admissionProof(admissionKey, roomId, fields)),
  };
}

/** True when `parsed` carries a proof made with `admissionKey` over exactly its fields (constant time). */
export function hasValidProof(admissionKey: Uint8Array, roomId: string, parsed: MemberAnnouncement): boolean {
  if (parsed.proof === undefined) return false;
  const expected = admissionProof(admissionKey, roomId, fieldsOf(parsed));
  const given = fromBase64(parsed.proof);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function rawX25519PublicKey(publicKey: KeyObject): Uint8Array {
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(SPKI_X25519_PREFIX.length));
}

/** X25519 with a peer's raw public key; KeyExchangeError 'bad-key' for low-order points (all-zero output). */
function x25519SharedSecret(privateKey: KeyObject, peerPublicKey: Uint8Array): Uint8Array {
  try {
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, peerPublicKey]), format: 'der', type: 'spki' });
    return new Uint8Array(diffieHellman({ privateKey, publicKey }));
  } catch {
    throw new KeyExchangeError('bad-key', 'the X25519 public key is a low-order point');
  }
}

/**
 * Checks an untrusted announcement for `roomId`: well-formed, the fingerprint is the hash of
 * the identity key, and the identity key signed it for this room (v2; or v1, for an
 * announcement with neither alias nor proof, from an older client). Returns the clean copy.
 * Throws DecodeError, KeyExchangeError 'fingerprint-mismatch' or 'bad-signature'. It does not
 * check the admission proof (RoomKeyring.addMember does): the relay uses this too, to act on
 * a signed `replaces`, and it has no admission key.
 */
export function verifyAnnouncement(roomId: string, announcement: unknown): MemberAnnouncement {
  const parsed = parseMemberAnnouncement(announcement);
  const fields = fieldsOf(parsed);
  if (sha256Fingerprint(fields.identityPublicKey) !== parsed.fingerprint) {
    throw new KeyExchangeError('fingerprint-mismatch', 'the fingerprint is not the hash of the identity key');
  }
  const signature = fromBase64(parsed.signature);
  const legacy = parsed.alias === undefined && parsed.proof === undefined;
  if (
    !Identity.verify(fields.identityPublicKey, announcementTranscript(roomId, fields), signature) &&
    !(legacy && Identity.verify(fields.identityPublicKey, legacyAnnouncementTranscript(roomId, fields), signature))
  ) {
    throw new KeyExchangeError('bad-signature', `announcement of ${parsed.fingerprint} is not signed by its identity key for this room`);
  }
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// The keyring

interface Member {
  fingerprint: string;
  /** Its X25519 public key in base64: the member's name in this keyring. */
  session: string;
  identityPublicKey: Uint8Array;
  x25519PublicKey: Uint8Array;
  /** X25519(our ephemeral private key, their X25519 public key). Secret. */
  sharedSecret: Uint8Array;
  decryptor: MediaDecryptor;
}

export type RoomKeyringOptions = MediaEncryptorOptions &
  MediaDecryptorOptions & {
    /**
     * The room's admission key (room-name.ts deriveRoomKeys): our announcement's proof is made
     * with it, and only announcements proven with it are admitted.
     */
    admissionKey: Uint8Array;
    /** The name we show, signed into our announcement (see aliasProblem). */
    alias?: string;
    /** This session replaces an earlier one of ours (its `session`), announced as `replaces`. */
    replaces?: string;
    /**
     * Admit only these identities (canonical fingerprints), and our own; absent: every proven
     * member. Others are refused with 'not-allowed'.
     */
    allow?: Iterable<string>;
    /**
     * A 1:1 call's first sender keys, which both sides derived from the call secret
     * (call-keys.ts): we seal with `own` from the start, and `peer`'s first admitted session
     * gets `peerKey` as its epoch 0 at once. Neither waits for a wrapped key, so the first
     * packets either side sends can be opened on arrival. Only for a keyring's first room
     * session (a re-join rotates to random keys as usual); copied, the caller wipes its own.
     */
    seeded?: SeededKeys;
  };

/** See RoomKeyringOptions.seeded. */
export interface SeededKeys {
  /** Our first sender key (epoch 0). */
  own: Uint8Array;
  /** The one identity that derived it too (canonical fingerprint)... */
  peer: string;
  /** ...and its first sender key (epoch 0). */
  peerKey: Uint8Array;
}

/** A member as admitted: whose identity, and which session of it. */
export interface MemberSession {
  fingerprint: string;
  /** The alias signed into its announcement, if it gave one. */
  alias?: string;
  /** The member's X25519 public key, base64: pass it to removeMember and decryptorFor. */
  session: string;
  /** A session of the same identity this one replaced, now removed (the member came back). */
  replaced?: string;
}

/**
 * The key state of the local member in one room session. Not thread-safe; feed it the
 * room's signalling messages in order. A member who leaves and re-joins creates a new
 * RoomKeyring (a new X25519 key).
 */
export class RoomKeyring {
  readonly roomId: string;
  /** The local member's identity fingerprint. */
  readonly fingerprint: string;
  readonly #identity: Identity;
  readonly #x25519PrivateKey: KeyObject;
  readonly #x25519PublicKey: Uint8Array;
  readonly #announcement: MemberAnnouncement;
  readonly #encryptor: MediaEncryptor;
  readonly #decryptorOptions: MediaDecryptorOptions;
  readonly #admissionKey: Uint8Array;
  readonly #allow: ReadonlySet<string> | undefined;
  /** By session (base64 X25519 public key). */
  readonly #members = new Map<string, Member>();
  /** Hex X25519 keys of members removed: never admitted again (the newest MAX_RETIRED_SESSIONS). */
  readonly #retiredKeys = new Set<string>();
  #membershipChanged = false;
  /** The seeded peer's first key until its first session is admitted (RoomKeyringOptions.seeded). */
  #seededPeer: { fingerprint: string; key: Uint8Array } | undefined;

  constructor(identity: Identity, roomId: string, options: RoomKeyringOptions) {
    const roomIdBytes = Buffer.byteLength(roomId, 'utf8');
    if (roomIdBytes === 0 || roomIdBytes > MAX_ROOM_ID_BYTES) {
      throw new InternalError(`a room id is 1-${MAX_ROOM_ID_BYTES} UTF-8 bytes, got ${roomIdBytes}`);
    }
    if (!(options?.admissionKey instanceof Uint8Array) || options.admissionKey.length !== ADMISSION_KEY_LENGTH) {
      throw new InternalError(`a RoomKeyring needs the room's ${ADMISSION_KEY_LENGTH}-byte admission key`);
    }
    this.roomId = roomId;
    this.fingerprint = identity.fingerprint;
    this.#identity = identity;
    this.#admissionKey = Uint8Array.from(options.admissionKey);
    this.#allow = options.allow === undefined ? undefined : new Set(options.allow);
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    this.#x25519PrivateKey = privateKey;
    this.#x25519PublicKey = rawX25519PublicKey(publicKey);
    this.#announcement = createAnnouncement(identity, roomId, this.#admissionKey, this.#x25519PublicKey, {
      alias: options.alias,
      replaces: options.replaces,
    });
    this.#encryptor = new MediaEncryptor({ roomId, senderFingerprint: identity.fingerprint }, options);
    this.#decryptorOptions = { graceMs: options.graceMs, now: options.now };
    const seeded = options.seeded;
    if (seeded !== undefined) {
      if (seeded.peer === identity.fingerprint) throw new InternalError('seeded keys are shared with another identity, not our own');
      const own = Uint8Array.from(seeded.own);
      try {
        this.#encryptor.start({ epoch: 0, key: own });
      } finally {
        own.fill(0);
      }
      if (seeded.peerKey.length !== SENDER_KEY_BYTES) throw new InternalError(`a sender key is ${SENDER_KEY_BYTES} bytes, got ${seeded.peerKey.length}`);
      this.#seededPeer = { fingerprint: seeded.peer, key: Uint8Array.from(seeded.peerKey) };
    }
  }

  /** True when the local sender must rotate(): no key yet, membership changed, or key exhausted. */
  get needsRotation(): boolean {
    return this.#membershipChanged || this.#encryptor.packetsRemaining === 0;
  }

  /** The current remote members, in admission order. */
  get members(): MemberSession[] {
    return [...this.#members.values()].map(({ fingerprint, session }) => ({ fingerprint, session }));
  }

  /** The local session: our X25519 public key in base64, as in our announcement. */
  get session(): string {
    return this.#announcement.x25519PublicKey;
  }

  /** The signed announcement to broadcast to the room. */
  localAnnouncement(): MemberAnnouncement {
    return { ...this.#announcement };
  }

  /**
   * Checks everything addMember checks about an announcement itself, changing nothing:
   * well-formed, signed by its identity for this room, proven with the room's admission key,
   * allowed. Returns the clean copy. Throws as addMember does ('self' included).
   */
  checkAnnouncement(announcement: unknown): MemberAnnouncement {
    const parsed = verifyAnnouncement(this.roomId, announcement);
    if (parsed.x25519PublicKey === this.session) throw new KeyExchangeError('self', 'the local session\'s own announcement');
    if (!hasValidProof(this.#admissionKey, this.roomId, parsed)) {
      const why = parsed.proof === undefined ? 'carries no proof of knowing the room name (an older client?)' : 'does not prove knowledge of the room name';
      throw new KeyExchangeError('unproven', `announcement of ${parsed.fingerprint} ${why}`);
    }
    if (this.#allow !== undefined && parsed.fingerprint !== this.fingerprint && !this.#allow.has(parsed.fingerprint)) {
      throw new KeyExchangeError('not-allowed', `${parsed.fingerprint} is not on the allow list`);
    }
    return parsed;
  }

  /**
   * Admits the member session an untrusted announcement describes: only a member that proves
   * it knows the room's name (the admission key) and, with an allow list, only the identities
   * on it. Repeating an announcement in force is a no-op. Another session of a current
   * member's identity (or of the local identity) is a member of its own; when a session
   * replaces another (a member re-joined), the caller removes the old one. Throws DecodeError
   * for a malformed message, KeyExchangeError 'fingerprint-mismatch', 'bad-signature', 'self',
   * 'unproven', 'not-allowed', 'stale-announcement' or 'bad-key'.
   */
  addMember(announcement: unknown): MemberSession & { seeded?: true } {
    const parsed = this.checkAnnouncement(announcement);
    const identityPublicKey = fromBase64(parsed.identityPublicKey);
    const x25519PublicKey = fromBase64(parsed.x25519PublicKey);
    const session = parsed.x25519PublicKey;
    const admitted: MemberSession = { fingerprint: parsed.fingerprint, session, ...(parsed.alias === undefined ? {} : { alias: parsed.alias }) };
    if (this.#members.has(session)) return admitted;
    if (this.#retiredKeys.has(hex(x25519PublicKey))) {
      throw new KeyExchangeError('stale-announcement', `announcement of ${parsed.fingerprint} carries a session key already retired`);
    }
    const sharedSecret = x25519SharedSecret(this.#x25519PrivateKey, x25519PublicKey);
    // The member came back as a new session: its signed word that the old one is gone. Only
    // a session of the same identity can be replaced, so no one can evict anyone else.
    const old = parsed.replaces === undefined ? undefined : this.#members.get(parsed.replaces);
    if (old !== undefined && old.fingerprint === parsed.fingerprint) {
      this.#retire(old);
      this.#members.delete(old.session);
      admitted.replaced = old.session;
    }
    const context = { roomId: this.roomId, senderFingerprint: parsed.fingerprint };
    const decryptor = new MediaDecryptor(context, this.#decryptorOptions);
    this.#members.set(session, { fingerprint: parsed.fingerprint, session, identityPublicKey, x25519PublicKey, sharedSecret, decryptor });
    const seeded = this.#seededPeer;
    if (seeded !== undefined && seeded.fingerprint === parsed.fingerprint) {
      // The peer derived both first keys as we did: it reads our epoch 0 already, and we read
      // its. Once only: a later session of it (it re-joined) gets a rotated key as anyone would.
      this.#seededPeer = undefined;
      decryptor.install({ epoch: 0, key: seeded.key });
      seeded.key.fill(0);
      return { ...admitted, seeded: true };
    }
    this.#membershipChanged = true;
    return admitted;
  }

  /** Drops a member session and wipes its keys; false if it was not a member. */
  removeMember(session: string): boolean {
    const member = this.#members.get(session);
    if (member === undefined) return false;
    this.#retire(member);
    this.#members.delete(session);
    this.#membershipChanged = true;
    return true;
  }

  /**
   * Moves the local sender to a new sender key (next epoch) and returns it wrapped for
   * every current member, one message each, for the caller to send through the relay.
   * The encryptor seals with the new key from now on.
   */
  rotate(): WrappedKeyMessage[] {
    const senderKey = this.#encryptor.rotate();
    try {
      const messages = [...this.#members.values()].map((member) => this.#wrap(member, senderKey));
      this.#membershipChanged = false;
      return messages;
    } finally {
      senderKey.key.fill(0);
    }
  }

  /**
   * Unwraps an untrusted wrapped-key message and installs the key in its sender's decryptor.
   * Throws DecodeError for a malformed message, KeyExchangeError 'wrong-recipient',
   * 'unknown-sender', 'bad-signature', 'stale-epoch' or 'unwrap-failed'.
   */
  receiveWrappedKey(message: unknown): { from: string; fromSession: string; epoch: number } {
    const parsed = parseWrappedKeyMessage(message);
    if (parsed.to !== this.fingerprint || parsed.toSession !== this.session) {
      const whom = parsed.to === this.fingerprint ? 'another session of this identity' : parsed.to;
      throw new KeyExchangeError('wrong-recipient', `wrapped key addressed to ${whom}`);
    }
    const sender = this.#members.get(parsed.fromSession);
    if (sender === undefined || sender.fingerprint !== parsed.from) {
      throw new KeyExchangeError('unknown-sender', `wrapped key from non-member ${parsed.from}`);
    }
    const context = this.#wrapContext(sender, 'incoming', parsed.epoch);
    const wrapped = fromBase64(parsed.wrapped);
    if (!Identity.verify(sender.identityPublicKey, wrapTranscript(context, wrapped), fromBase64(parsed.signature))) {
      throw new KeyExchangeError('bad-signature', `wrapped key not signed by ${parsed.from}`);
    }
    const latest = sender.decryptor.latestEpoch;
    if (latest !== undefined && parsed.epoch <= latest) {
      throw new KeyExchangeError('stale-epoch', `epoch ${parsed.epoch} of ${parsed.from} is not newer than ${latest}`);
    }
    const wrapKey = deriveWrapKey(sender.sharedSecret, context);
    const key = aeadOpen(wrapKey, WRAP_NONCE, [], wrapped);
    wrapKey.fill(0);
    if (key === undefined) throw new KeyExchangeError('unwrap-failed', `wrapped key from ${parsed.from} does not decrypt`);
    sender.decryptor.install({ epoch: parsed.epoch, key });
    key.fill(0);
    return { from: parsed.from, fromSession: parsed.fromSession, epoch: parsed.epoch };
  }

  /** The local sender's encryptor (the same object across rotations). */
  encryptor(): MediaEncryptor {
    return this.#encryptor;
  }

  /** The decryptor for a current member session's media; undefined for non-members. */
  decryptorFor(session: string): MediaDecryptor | undefined {
    return this.#members.get(session)?.decryptor;
  }

  #wrap(member: Member, senderKey: SenderKey): WrappedKeyMessage {
    const context = this.#wrapContext(member, 'outgoing', senderKey.epoch);
    const wrapKey = deriveWrapKey(member.sharedSecret, context);
    const wrapped = aeadSeal(wrapKey, WRAP_NONCE, [], senderKey.key);
    wrapKey.fill(0);
    return {
      from: this.fingerprint,
      to: member.fingerprint,
      fromSession: this.session,
      toSession: member.session,
      epoch: senderKey.epoch,
      wrapped: toBase64(wrapped),
      signature: toBase64(this.#identity.sign(wrapTranscript(context, wrapped))),
    };
  }

  #wrapContext(member: Member, direction: 'incoming' | 'outgoing', epoch: number): WrapContext {
    const local = { fingerprint: this.fingerprint, x25519PublicKey: this.#x25519PublicKey };
    const [sender, recipient] = direction === 'outgoing' ? [local, member] : [member, local];
    return {
      roomId: this.roomId,
      from: sender.fingerprint,
      to: recipient.fingerprint,
      epoch,
      senderX25519PublicKey: sender.x25519PublicKey,
      recipientX25519PublicKey: recipient.x25519PublicKey,
    };
  }

  #retire(member: Member): void {
    this.#retiredKeys.add(hex(member.x25519PublicKey));
    // Oldest first (a Set keeps insertion order): see MAX_RETIRED_SESSIONS.
    while (this.#retiredKeys.size > MAX_RETIRED_SESSIONS) this.#retiredKeys.delete(this.#retiredKeys.values().next().value as string);
    member.sharedSecret.fill(0);
    member.decryptor.clear();
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
}

/**
 * The keys of one direct call (docs/direct-calls.md). Offer and answer each carry a fresh
 * ephemeral X25519 public key, signed by its sender's identity (core/crypto/call-signal.ts);
 * both sides compute the same secret from the DH, which the relay (it sees only the public
 * keys) cannot:
 *
 *   context     = labelled("wzp-call-context-v1", call id (16 bytes), caller fingerprint,
 *                          callee fingerprint, caller X25519 public key, callee X25519 public key)
 *   call secret = HKDF-SHA256(ikm = X25519(own ephemeral, peer's ephemeral), salt = "",
 *                             info = labelled("wzp-call-secret-v1", SHA-256(context)), 32)
 *
 * and from the call secret, each with its own label (so one never tells anything about another):
 *
 *   room name       = hex(HKDF(call secret, "wzp-call-room-name-v1", 16))
 *   room secret     = hex(HKDF(call secret, "wzp-call-room-secret-v1", 32))
 *       the ephemeral relayed media room: the relay sees only the room id derived from both
 *       (core/crypto/room-name.ts) and cannot prove knowledge of the name, so it cannot join.
 *   check key       = HKDF(call secret, "wzp-call-check-key-v1", 32)
 *       authenticates direct-path connectivity checks (both directions).
 *   direct-path key = HKDF(call secret, "wzp-call-direct-path-v1", 32)
 *       binds the direct path to this call: each direction's direct-media path tag is
 *       HMAC-SHA256(direct-path key, "wzp-direct-media-caller-v1" or "...-callee-v1"), first
 *       8 bytes (directMediaTags; core/wire/direct-media.ts).
 *   first sender keys = HKDF(call secret, "wzp-call-first-sender-key-caller-v1" / "...-callee-v1", 32)
 *       each side's epoch-0 media key in the call's room (RoomKeyringOptions.seeded): both are
 *       known to both sides the moment the answer is signed and read, so neither side's first
 *       packets wait for a wrapped key from the other (a round trip through the relay). Later
 *       keys (a re-join, a rotation) are random and wrapped as in any room.
 *
 * exportCallKey(secret, label, length) derives anything else a later part needs, with a label
 * of its own ("wzp-call-...-vN").
 */
import { createHash, createHmac, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { KeyExchangeError, X25519_PUBLIC_KEY_BYTES } from './sender-keys.js';
import { hkdfSha256, labelledFields } from './media-crypto.js';

export const CALL_CONTEXT_LABEL = 'wzp-call-context-v1';
export const CALL_SECRET_LABEL = 'wzp-call-secret-v1';
export const CALL_ROOM_NAME_LABEL = 'wzp-call-room-name-v1';
export const CALL_ROOM_SECRET_LABEL = 'wzp-call-room-secret-v1';
export const CALL_CHECK_KEY_LABEL = 'wzp-call-check-key-v1';
export const CALL_DIRECT_PATH_LABEL = 'wzp-call-direct-path-v1';
export const CALL_FIRST_SENDER_KEY_LABELS = { caller: 'wzp-call-first-sender-key-caller-v1', callee: 'wzp-call-first-sender-key-callee-v1' } as const;
export const CALL_SECRET_BYTES = 32;
export const CALL_ID_BYTES = 16;

const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** A fresh X25519 key pair for one call. */
export interface EphemeralKeyPair {
  privateKey: KeyObject;
  /** Raw 32-byte public key. */
  publicKey: Uint8Array;
}

export function generateEphemeralKey(): EphemeralKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: new Uint8Array(spki.subarray(SPKI_X25519_PREFIX.length)) };
}

/** Who is who in a call: everything the call secret is bound to besides the DH. */
export interface CallContext {
  /** 32 hex digits. */
  callId: string;
  callerFingerprint: string;
  calleeFingerprint: string;
  /** Raw 32-byte X25519 public keys from the signed offer and answer. */
  callerEphemeralKey: Uint8Array;
  calleeEphemeralKey: Uint8Array;
}

/** What both parties of a call derive, and the relay cannot. */
export interface CallKeys {
  /** The secret every other key comes from (exportCallKey). Never leaves the process. */
  callSecret: Uint8Array;
  /** The relayed media room's name... */
  roomName: string;
  /** ...and its secret (both go to runCall: the relay sees only the room id derived from both). */
  roomSecret: string;
  /** Authenticates direct-path connectivity checks. */
  checkKey: Uint8Array;
  /** Binds the direct path to this call (directMediaTags). */
  directPathKey: Uint8Array;
  /** Each side's first (epoch 0) sender key in the call's room. */
  firstSenderKeys: { caller: Uint8Array; callee: Uint8Array };
}

/**
 * The call secret from our ephemeral private key and the peer's public key (whichever side
 * we are), bound to the call's context. KeyExchangeError 'bad-key' for a low-order peer key.
 */
export function deriveCallSecret(own: KeyObject, peerPublicKey: Uint8Array, context: CallContext): Uint8Array {
  if (peerPublicKey.length !== X25519_PUBLIC_KEY_BYTES) throw new KeyExchangeError('bad-key', 'an X25519 public key is 32 bytes');
  let shared: Uint8Array;
  try {
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, peerPublicKey]), format: 'der', type: 'spki' });
    shared = new Uint8Array(diffieHellman({ privateKey: own, publicKey }));
  } catch {
    throw new KeyExchangeError('bad-key', 'the peer\'s X25519 public key is a low-order point');
  }
  const digest = createHash('sha256').update(callContextBytes(context)).digest();
  const secret = hkdfSha256(shared, labelledFields(CALL_SECRET_LABEL, [new Uint8Array(digest)]), CALL_SECRET_BYTES);
  shared.fill(0);
  return secret;
}

/** The context's unambiguous byte string (labelledFields). */
export function callContextBytes(c: CallContext): Uint8Array {
  return labelledFields(CALL_CONTEXT_LABEL, [
    Buffer.from(c.callId, 'hex'),
    c.callerFingerprint,
    c.calleeFingerprint,
    c.callerEphemeralKey,
    c.calleeEphemeralKey,
  ]);
}

/** Any key of this call: HKDF(call secret, labelled(label), length). Use a label of your own. */
export function exportCallKey(callSecret: Uint8Array, label: string, length = 32): Uint8Array {
  return hkdfSha256(callSecret, labelledFields(label, []), length);
}

/** Every key the call needs now (see the top of this file). */
export function deriveCallKeys(callSecret: Uint8Array): CallKeys {
  return {
    callSecret,
    roomName: Buffer.from(exportCallKey(callSecret, CALL_ROOM_NAME_LABEL, 16)).toString('hex'),
    roomSecret: Buffer.from(exportCallKey(callSecret, CALL_ROOM_SECRET_LABEL, 32)).toString('hex'),
    checkKey: exportCallKey(callSecret, CALL_CHECK_KEY_LABEL, 32),
    directPathKey: exportCallKey(callSecret, CALL_DIRECT_PATH_LABEL, 32),
    firstSenderKeys: {
      caller: exportCallKey(callSecret, CALL_FIRST_SENDER_KEY_LABELS.caller, 32),
      callee: exportCallKey(callSecret, CALL_FIRST_SENDER_KEY_LABELS.callee, 32),
    },
  };
}

export const DIRECT_MEDIA_TAG_LABELS = { caller: 'wzp-direct-media-caller-v1', callee: 'wzp-direct-media-callee-v1' } as const;

/**
 * The path tags of direct media (core/wire/direct-media.ts), one per sending direction: a
 * receiver takes only packets with its peer's tag.
 */
export function directMediaTags(directPathKey: Uint8Array): { caller: Uint8Array; callee: Uint8Array } {
  const tag = (label: string) => new Uint8Array(createHmac('sha256', directPathKey).update(label).digest().subarray(0, 8));
  return { caller: tag(DIRECT_MEDIA_TAG_LABELS.caller), callee: tag(DIRECT_MEDIA_TAG_LABELS.callee) };
}

/**
 * Room names never leave the client: the relay only sees an id derived from the name, so rooms
 * are addressed without telling the relay what they are called, and members prove to each
 * other that they know the name with a key the relay cannot derive from that id.
 *
 *   no secret:     room id       = hex(SHA-256("wzp-room-v1:" || UTF-8(NFC(name)))[0..16])
 *   with a secret: room id       = hex(HKDF-SHA256(ikm = UTF-8(NFC(name)), salt = UTF-8(NFC(secret)),
 *                                                  info = "wzp-room-id-v1", 16))
 *   both:          admission key = HKDF-SHA256(ikm = UTF-8(NFC(name)), salt = UTF-8(NFC(secret)) or empty,
 *                                              info = labelled("wzp-room-admission-v1", room id), 32)
 *
 * The name (and the secret) are NFC-normalised first so that the same text typed on different
 * systems (a precomposed "é" or "e" + combining accent) reaches the same room. 16 bytes (128
 * bits) keep accidental collisions out of reach; they do not stop a relay from guessing short
 * or common names by hashing candidates (both the id and the members' admission proofs are
 * fast to test): a guessable name needs a secret (see docs/e2e-encryption.md).
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import { hkdfSha256, labelledFields } from './media-crypto.js';

/** Domain prefix hashed in front of every room name (the v1 room id, for rooms without a secret). */
export const ROOM_NAME_PREFIX = 'wzp-room-v1:';
/** Bytes of SHA-256 kept: the room hash is twice as many hex digits. */
export const ROOM_HASH_BYTES = 16;
/** HKDF info for the room id of a room with a secret. */
export const ROOM_ID_INFO = 'wzp-room-id-v1';
/** HKDF info label for the admission key (with the room id as its one field). */
export const ROOM_ADMISSION_LABEL = 'wzp-room-admission-v1';
export const ADMISSION_KEY_BYTES = 32;

/** A lone UTF-16 surrogate (in a `u` regex, proper surrogate pairs are one code point). */
const LONE_SURROGATE = /\p{Cs}/u;
const NO_SALT = new Uint8Array(0);

/** What a member derives from the room's name (and secret). */
export interface RoomKeys {
  /** The 32-hex-digit id the relay knows the room by. */
  roomId: string;
  /**
   * The key members prove knowledge of the name (and secret) with (sender-keys.ts). Secret:
   * it never leaves the process.
   */
  admissionKey: Uint8Array;
}

/**
 * The 32-hex-digit hash the relay knows a room without a secret by. Throws UsageError for an
 * empty name and for a string that is not valid Unicode (a lone surrogate would be encoded as
 * U+FFFD, silently merging different names into one room).
 */
export function hashRoomName(name: string): string {
  checkText('room name', name);
  return createHash('sha256')
    .update(ROOM_NAME_PREFIX, 'utf8')
    .update(name.normalize('NFC'), 'utf8')
    .digest()
    .subarray(0, ROOM_HASH_BYTES)
    .toString('hex');
}

/**
 * Checks a room secret as names are checked (non-empty, valid Unicode); UsageError otherwise.
 * The message never repeats the secret.
 */
export function validateRoomSecret(secret: string): void {
  checkText('room secret', secret);
}

/**
 * The room id and admission key for a room `name`, strengthened by `secret` when given. Without
 * a secret the room id is hashRoomName(name), so such rooms keep their v1 ids. UsageError for
 * an empty or invalid name or secret.
 */
export function deriveRoomKeys(name: string, secret?: string): RoomKeys {
  checkText('room name', name);
  const ikm = utf8(name.normalize('NFC'));
  let roomId: string;
  let salt: Uint8Array = NO_SALT;
  if (secret === undefined) {
    roomId = hashRoomName(name);
  } else {
    validateRoomSecret(secret);
    salt = utf8(secret.normalize('NFC'));
    roomId = Buffer.from(hkdfSha256(ikm, utf8(ROOM_ID_INFO), ROOM_HASH_BYTES, salt)).toString('hex');
  }
  const admissionKey = hkdfSha256(ikm, labelledFields(ROOM_ADMISSION_LABEL, [roomId]), ADMISSION_KEY_BYTES, salt);
  ikm.fill(0);
  salt.fill(0);
  return { roomId, admissionKey };
}

function checkText(what: string, text: string): void {
  if (text.length === 0) throw new UsageError(`a ${what} cannot be empty`);
  if (LONE_SURROGATE.test(text)) {
    throw new UsageError(`the ${what} is not valid Unicode (it contains a lone surrogate)`);
  }
}

function utf8(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

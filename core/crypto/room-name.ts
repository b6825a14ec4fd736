/**
 * Room names never leave the client: the relay only sees a hash of the name, so rooms are
 * addressed without telling the relay what they are called.
 *
 *   room hash = hex(SHA-256("wzp-room-v1:" || UTF-8(NFC(name)))[0..16])
 *
 * The name is NFC-normalised first so that the same name typed on different systems (a
 * precomposed "é" or "e" + combining accent) reaches the same room. 16 bytes (128 bits) keep
 * accidental collisions out of reach; they do not stop a relay from guessing short or common
 * names by hashing candidates (see docs/e2e-encryption.md): the hash hides the name, it is
 * not a password.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';

/** Domain prefix hashed in front of every room name. */
export const ROOM_NAME_PREFIX = 'wzp-room-v1:';
/** Bytes of SHA-256 kept: the room hash is twice as many hex digits. */
export const ROOM_HASH_BYTES = 16;

/** A lone UTF-16 surrogate (in a `u` regex, proper surrogate pairs are one code point). */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * The 32-hex-digit hash the relay knows a room by. Throws UsageError for an empty name and
 * for a string that is not valid Unicode (a lone surrogate would be encoded as U+FFFD,
 * silently merging different names into one room).
 */
export function hashRoomName(name: string): string {
  if (name.length === 0) throw new UsageError('a room name cannot be empty');
  if (LONE_SURROGATE.test(name)) {
    throw new UsageError('the room name is not valid Unicode (it contains a lone surrogate)');
  }
  return createHash('sha256')
    .update(ROOM_NAME_PREFIX, 'utf8')
    .update(name.normalize('NFC'), 'utf8')
    .digest()
    .subarray(0, ROOM_HASH_BYTES)
    .toString('hex');
}

/**
 * The room source-id tag: the relay forwards each room member's media datagram, still end-to-end
 * encrypted, to the other members with the sender's source id in front, so receivers know
 * whose keys and jitter buffer a packet belongs to (core/relay/rooms.ts).
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-------------------------------+-------------------------------+-------------
 * |     relay prefix (u16)        |       member (u16, >= 1)      |  the sender's
 * +-------------------------------+-------------------------------+  datagram
 * ```
 *
 * - source id: a big-endian u32, 1 to 2^32-1, unique in a federation of relays: the high
 *   16 bits are the prefix of the member's own relay (derived from its fingerprint or set in
 *   its config), the low 16 bits that relay's number for the member (never 0, so no id is 0).
 *   Every relay forwards a member's datagrams under the same id (docs/federation.md).
 * - datagram: 1 to MAX_DATAGRAM_BYTES bytes, opaque here (a media datagram: ./datagram.ts).
 *
 * The tag is outside the end-to-end authentication: a relay that lies about it only makes
 * receivers try the wrong sender key, and authentication fails. It travels in QUIC DATAGRAM
 * frames or on the UDP media path (./media-path.ts), the same bytes on both.
 */

import { DecodeError, InternalError } from '../errors.js';
import { MAX_DATAGRAM_BYTES } from './datagram.js';

const FORMAT = 'room-source';

export const OFFSET_SOURCE_ID = 0;
/** Bytes the relay prepends to every forwarded room datagram. */
export const SOURCE_ID_BYTES = 4;
export const MIN_SOURCE_ID = 1;
export const MAX_SOURCE_ID = 0xffff_ffff;
/** The largest tagged datagram. */
export const MAX_TAGGED_DATAGRAM_BYTES = SOURCE_ID_BYTES + MAX_DATAGRAM_BYTES;

export interface TaggedDatagram {
  sourceId: number;
  /** The sender's datagram (a view into the tagged bytes when decoded). */
  datagram: Uint8Array;
}

/**
 * The forwarded form of `datagram` from member `sourceId`. Throws InternalError for a source
 * id outside 1 to 2^32-1 or a datagram that is empty or over MAX_DATAGRAM_BYTES (the relay checks
 * what it forwards first).
 */
export function encodeRoomDatagram(sourceId: number, datagram: Uint8Array): Uint8Array {
  if (!Number.isInteger(sourceId) || sourceId < MIN_SOURCE_ID || sourceId > MAX_SOURCE_ID) {
    throw new InternalError(`room source id ${sourceId}, must be ${MIN_SOURCE_ID}-${MAX_SOURCE_ID}`);
  }
  if (datagram.length < 1 || datagram.length > MAX_DATAGRAM_BYTES) {
    throw new InternalError(`room datagram of ${datagram.length} bytes, must be 1-${MAX_DATAGRAM_BYTES}`);
  }
  const tagged = new Uint8Array(SOURCE_ID_BYTES + datagram.length);
  new DataView(tagged.buffer).setUint32(OFFSET_SOURCE_ID, sourceId);
  tagged.set(datagram, SOURCE_ID_BYTES);
  return tagged;
}

/**
 * Split a forwarded room datagram into the sender's source id and its datagram (a view into
 * `buf`). Throws DecodeError: 'truncated' (no datagram after the tag), 'too-large',
 * 'bad-field' (source id 0).
 */
export function decodeRoomDatagram(buf: Uint8Array): TaggedDatagram {
  if (buf.length <= SOURCE_ID_BYTES) throw new DecodeError(FORMAT, 'truncated', `${buf.length} bytes: no datagram after the source id`);
  if (buf.length > MAX_TAGGED_DATAGRAM_BYTES) throw new DecodeError(FORMAT, 'too-large', `${buf.length} bytes exceeds ${MAX_TAGGED_DATAGRAM_BYTES}`);
  const sourceId = readSourceId(buf, OFFSET_SOURCE_ID);
  if (sourceId < MIN_SOURCE_ID) throw new DecodeError(FORMAT, 'bad-field', 'source id 0 is no member');
  return { sourceId, datagram: buf.subarray(SOURCE_ID_BYTES) };
}

/** The source id at `offset` of `buf` (a big-endian u32; the caller checks the length). */
export function readSourceId(buf: Uint8Array, offset: number): number {
  return buf[offset] * 0x100_0000 + ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]);
}

/** Write `sourceId` at `offset` of `buf` (a big-endian u32; the caller checks the range). */
export function writeSourceId(buf: Uint8Array, offset: number, sourceId: number): void {
  buf[offset] = sourceId >>> 24;
  buf[offset + 1] = (sourceId >>> 16) & 0xff;
  buf[offset + 2] = (sourceId >>> 8) & 0xff;
  buf[offset + 3] = sourceId & 0xff;
}

/** The relay prefix of a source id (its high 16 bits: which relay numbered the member). */
export function sourceIdPrefix(sourceId: number): number {
  return Math.floor(sourceId / 0x1_0000);
}

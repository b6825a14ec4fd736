/**
 * The room source-id tag: the relay forwards each room member's media datagram, still end-to-end
 * encrypted, to the other members with the sender's source id in front, so receivers know
 * whose keys and jitter buffer a packet belongs to (core/relay/rooms.ts).
 *
 * ```
 *  0                   1
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 ...
 * +-------------------------------+--------------------------
 * |        source id (u16)        |  the sender's datagram, unchanged
 * +-------------------------------+--------------------------
 * ```
 *
 * - source id: big-endian, 1-65535 (the relay allocates them; 0 is never a member's).
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
export const SOURCE_ID_BYTES = 2;
export const MIN_SOURCE_ID = 1;
export const MAX_SOURCE_ID = 0xffff;
/** The largest tagged datagram. */
export const MAX_TAGGED_DATAGRAM_BYTES = SOURCE_ID_BYTES + MAX_DATAGRAM_BYTES;

export interface TaggedDatagram {
  sourceId: number;
  /** The sender's datagram (a view into the tagged bytes when decoded). */
  datagram: Uint8Array;
}

/**
 * The forwarded form of `datagram` from member `sourceId`. Throws InternalError for a source
 * id outside 1-65535 or a datagram that is empty or over MAX_DATAGRAM_BYTES (the relay checks
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
  new DataView(tagged.buffer).setUint16(OFFSET_SOURCE_ID, sourceId);
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
  const sourceId = (buf[OFFSET_SOURCE_ID] << 8) | buf[OFFSET_SOURCE_ID + 1];
  if (sourceId < MIN_SOURCE_ID) throw new DecodeError(FORMAT, 'bad-field', 'source id 0 is no member');
  return { sourceId, datagram: buf.subarray(SOURCE_ID_BYTES) };
}

/**
 * Direct media: a call member's media datagram sent straight to its peer on the pair the
 * connectivity checks selected (./path-check.ts), on the same shared UDP socket.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+-----------------------------------------------+
 * | marker 0x31   |                                               |  0
 * +---------------+        path tag (64 bits)                     +
 * |                                                               |
 * +               +-----------------------------------------------+
 * |               |      sender's source id (u32) ...                8
 * +---------------+---------------+-------------------------------+
 * |   ... (u32)   |  the sender's datagram, unchanged (1-1306 B) ... 12
 * +---------------+-----------------------------------------------+
 * ```
 *
 * - marker 0x31: free in the first-byte map (docs/wire-format.md §4), next to path checks.
 * - path tag: says which call and which direction the packet belongs to. Each direction has its
 *   own (directMediaTags(): HMAC-SHA256 of the call's direct-path key, core/crypto/call-keys.ts),
 *   so a receiver takes only its peer's packets, never its own reflected back, and nobody
 *   without the call's keys (the relay included) can make one. It authenticates nothing: the
 *   datagram inside is sealed end to end with the sender's media key, which a receiver
 *   verifies as for relayed media.
 * - source id and datagram: exactly what the relay would have forwarded (./room-source.ts):
 *   the sender's source id in the call's room, then its datagram. A receiver hands bytes 9
 *   onwards to the same code that takes relayed media, with no copy.
 *
 * The overhead is 9 bytes over a relayed datagram (13 over what the sender's media layer
 * produced); the largest packet is 1319 bytes, within a 1400-byte path MTU.
 */
import { DecodeError, InternalError } from '../errors.js';
import { MAX_DATAGRAM_BYTES } from './datagram.js';
import { MAX_SOURCE_ID, MIN_SOURCE_ID, readSourceId, SOURCE_ID_BYTES, writeSourceId } from './room-source.js';

const FORMAT = 'direct-media';

export const DIRECT_MEDIA_MARKER = 0x31;
/** The first bytes direct media owns on the shared socket (inclusive). */
export const DIRECT_MEDIA_FIRST_BYTES = [DIRECT_MEDIA_MARKER, DIRECT_MEDIA_MARKER] as const;
export const OFFSET_DIRECT_MEDIA_TAG = 1;
export const DIRECT_MEDIA_TAG_BYTES = 8;
export const OFFSET_DIRECT_MEDIA_SOURCE_ID = OFFSET_DIRECT_MEDIA_TAG + DIRECT_MEDIA_TAG_BYTES;
/** Marker and tag: what comes before the room-tagged datagram. */
export const DIRECT_MEDIA_PREFIX_BYTES = OFFSET_DIRECT_MEDIA_SOURCE_ID;
/** Everything before the sender's datagram. */
export const DIRECT_MEDIA_HEADER_BYTES = DIRECT_MEDIA_PREFIX_BYTES + SOURCE_ID_BYTES;
export const MAX_DIRECT_MEDIA_BYTES = DIRECT_MEDIA_HEADER_BYTES + MAX_DATAGRAM_BYTES;

export interface DirectMedia {
  /** The 8-byte path tag (a view into the packet). */
  tag: Uint8Array;
  /** The sender's source id and datagram, as the relay forwards them (a view into the packet). */
  tagged: Uint8Array;
}

/**
 * The 13 bytes that go before the sender's datagram (send them as one packet's parts, with no
 * copy of the datagram). InternalError for a tag that is not 8 bytes or a source id outside
 * 1 to 2^32-1.
 */
export function encodeDirectMediaHeader(tag: Uint8Array, sourceId: number): Uint8Array {
  if (tag.length !== DIRECT_MEDIA_TAG_BYTES) throw new InternalError(`a direct-media path tag is ${DIRECT_MEDIA_TAG_BYTES} bytes, got ${tag.length}`);
  if (!Number.isInteger(sourceId) || sourceId < MIN_SOURCE_ID || sourceId > MAX_SOURCE_ID) {
    throw new InternalError(`direct-media source id ${sourceId}, must be ${MIN_SOURCE_ID}-${MAX_SOURCE_ID}`);
  }
  const header = new Uint8Array(DIRECT_MEDIA_HEADER_BYTES);
  header[0] = DIRECT_MEDIA_MARKER;
  header.set(tag, OFFSET_DIRECT_MEDIA_TAG);
  writeSourceId(header, OFFSET_DIRECT_MEDIA_SOURCE_ID, sourceId);
  return header;
}

/** A whole packet: the header and the sender's datagram (tests, tools; senders use parts). */
export function encodeDirectMedia(tag: Uint8Array, sourceId: number, datagram: Uint8Array): Uint8Array {
  if (datagram.length < 1 || datagram.length > MAX_DATAGRAM_BYTES) throw new InternalError(`direct-media datagram of ${datagram.length} bytes, must be 1-${MAX_DATAGRAM_BYTES}`);
  const header = encodeDirectMediaHeader(tag, sourceId);
  const out = new Uint8Array(header.length + datagram.length);
  out.set(header);
  out.set(datagram, header.length);
  return out;
}

/**
 * Split a direct-media packet (views, no copy). DecodeError: 'bad-marker', 'truncated' (no
 * datagram after the header), 'too-large', 'bad-field' (source id 0).
 */
export function decodeDirectMedia(buf: Uint8Array): DirectMedia {
  if (buf.length === 0 || buf[0] !== DIRECT_MEDIA_MARKER) throw new DecodeError(FORMAT, 'bad-marker', `first byte ${buf.length ? `0x${buf[0].toString(16)}` : 'missing'}, expected 0x31`);
  if (buf.length <= DIRECT_MEDIA_HEADER_BYTES) throw new DecodeError(FORMAT, 'truncated', `${buf.length} bytes: no datagram after the ${DIRECT_MEDIA_HEADER_BYTES}-byte header`);
  if (buf.length > MAX_DIRECT_MEDIA_BYTES) throw new DecodeError(FORMAT, 'too-large', `${buf.length} bytes exceeds ${MAX_DIRECT_MEDIA_BYTES}`);
  const sourceId = readSourceId(buf, OFFSET_DIRECT_MEDIA_SOURCE_ID);
  if (sourceId < MIN_SOURCE_ID) throw new DecodeError(FORMAT, 'bad-field', 'source id 0 is no member');
  return { tag: buf.subarray(OFFSET_DIRECT_MEDIA_TAG, OFFSET_DIRECT_MEDIA_SOURCE_ID), tagged: buf.subarray(DIRECT_MEDIA_PREFIX_BYTES) };
}

/** Whether `buf` may be direct media (marker and size; the demultiplexer's finer test). */
export function isDirectMedia(buf: Uint8Array): boolean {
  return buf.length > DIRECT_MEDIA_HEADER_BYTES && buf.length <= MAX_DIRECT_MEDIA_BYTES && buf[0] === DIRECT_MEDIA_MARKER;
}

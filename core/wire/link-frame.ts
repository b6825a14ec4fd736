/**
 * The relay link media frame: what one relay of a federation sends another in a QUIC
 * DATAGRAM on their link (core/federation/): one or more room members' media datagrams,
 * each with the member's source id (the same on every relay: ./room-source.ts) and a hop limit.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+---------------+-------------------------------+
 * | marker 0xF1   |     count     |  entry 1 source id (u32) ...  |  0
 * +---------------+---------------+-------------------------------+
 * |  ... (u32)                    | entry 1 hops  | entry 1 length|  4
 * +---------------+---------------+---------------+---------------+
 * | ... length    |  entry 1 datagram (length bytes), then entry 2 ...  8
 * +---------------+-----------------------------------------------+
 * ```
 *
 * - marker: 0xF1 (this layout is link protocol 2's, agreed in the link hello; a link carries
 *   nothing else in its datagrams; a frame with another first byte is dropped as 'bad-marker').
 * - count: 1-MAX_LINK_FRAME_ENTRIES entries.
 * - entry: source id (u32 BE, >= 1: the member's id, which its own relay chose and every
 *   relay of the federation forwards it under), hops left (u8, 1-MAX_LINK_HOPS: the
 *   receiver forwards it further only if more than 1 is left), length (u16 BE, 1 to
 *   MAX_DATAGRAM_BYTES) and the member's datagram, opaque (end-to-end encrypted).
 * - The frame ends exactly after the last entry and is at most MAX_DATAGRAM_BYTES.
 *
 * Why not the trunk frame (./trunk.ts): its entries are bare media packets, and a link needs
 * per entry whose packet it is and how far it may still go. This is the trunk frame's shape
 * with those two fields added to each entry.
 */

import { DecodeError, InternalError } from '../errors.js';
import { MAX_DATAGRAM_BYTES } from './datagram.js';
import { MAX_SOURCE_ID, MIN_SOURCE_ID, readSourceId, SOURCE_ID_BYTES, writeSourceId } from './room-source.js';

const FORMAT = 'link-frame';

export const LINK_FRAME_MARKER = 0xf1;
export const OFFSET_LINK_MARKER = 0;
export const OFFSET_LINK_COUNT = 1;
export const LINK_FRAME_HEADER_BYTES = 2;
/** Per entry: source id (4), hops (1), length (2). */
export const LINK_ENTRY_OVERHEAD = SOURCE_ID_BYTES + 3;
export const MAX_LINK_FRAME_ENTRIES = 64;
/** The most relay hops a datagram may take (a chain of MAX_LINK_HOPS + 1 relays). */
export const MAX_LINK_HOPS = 16;

export interface LinkEntry {
  sourceId: number;
  hops: number;
  /** The member's datagram (a view into the frame when decoded). */
  datagram: Uint8Array;
}

/** Bytes a frame of entries with these datagram lengths takes. */
export function linkFrameLength(datagramLengths: readonly number[]): number {
  let n = LINK_FRAME_HEADER_BYTES;
  for (const l of datagramLengths) n += LINK_ENTRY_OVERHEAD + l;
  return n;
}

/** Encode 1-MAX_LINK_FRAME_ENTRIES entries into one frame of at most `maxBytes`. Throws InternalError for what cannot be one. */
export function encodeLinkFrame(entries: readonly LinkEntry[], maxBytes: number = MAX_DATAGRAM_BYTES): Uint8Array {
  if (entries.length < 1 || entries.length > MAX_LINK_FRAME_ENTRIES) throw new InternalError(`link frame: ${entries.length} entries, must be 1-${MAX_LINK_FRAME_ENTRIES}`);
  let size = LINK_FRAME_HEADER_BYTES;
  for (const e of entries) {
    if (!Number.isInteger(e.sourceId) || e.sourceId < MIN_SOURCE_ID || e.sourceId > MAX_SOURCE_ID) throw new InternalError(`link frame: source id ${e.sourceId}`);
    if (!Number.isInteger(e.hops) || e.hops < 1 || e.hops > MAX_LINK_HOPS) throw new InternalError(`link frame: hops ${e.hops}`);
    if (e.datagram.length < 1 || e.datagram.length > MAX_DATAGRAM_BYTES) throw new InternalError(`link frame: a ${e.datagram.length}-byte datagram`);
    size += LINK_ENTRY_OVERHEAD + e.datagram.length;
  }
  if (size > Math.min(maxBytes, MAX_DATAGRAM_BYTES)) throw new InternalError(`link frame: ${size} bytes exceeds ${Math.min(maxBytes, MAX_DATAGRAM_BYTES)}`);
  const out = new Uint8Array(size);
  out[OFFSET_LINK_MARKER] = LINK_FRAME_MARKER;
  out[OFFSET_LINK_COUNT] = entries.length;
  let o = LINK_FRAME_HEADER_BYTES;
  for (const e of entries) {
    writeSourceId(out, o, e.sourceId);
    out[o + SOURCE_ID_BYTES] = e.hops;
    out[o + SOURCE_ID_BYTES + 1] = e.datagram.length >> 8;
    out[o + SOURCE_ID_BYTES + 2] = e.datagram.length & 0xff;
    out.set(e.datagram, o + LINK_ENTRY_OVERHEAD);
    o += LINK_ENTRY_OVERHEAD + e.datagram.length;
  }
  return out;
}

/**
 * Split a link frame into its entries (datagrams are views into `buf`). The whole frame is
 * checked before anything is returned. Throws DecodeError: 'too-large', 'truncated',
 * 'bad-marker', 'bad-field' (a count, source id, hop count or length out of range),
 * 'trailing-bytes'.
 */
export function decodeLinkFrame(buf: Uint8Array): LinkEntry[] {
  if (buf.length > MAX_DATAGRAM_BYTES) throw new DecodeError(FORMAT, 'too-large', `${buf.length} bytes exceeds ${MAX_DATAGRAM_BYTES}`);
  if (buf.length < LINK_FRAME_HEADER_BYTES) throw new DecodeError(FORMAT, 'truncated', `${buf.length} bytes: no header`);
  if (buf[OFFSET_LINK_MARKER] !== LINK_FRAME_MARKER) throw new DecodeError(FORMAT, 'bad-marker', `first byte 0x${buf[0].toString(16)} is not a link frame`);
  const count = buf[OFFSET_LINK_COUNT];
  if (count < 1 || count > MAX_LINK_FRAME_ENTRIES) throw new DecodeError(FORMAT, 'bad-field', `count ${count}, must be 1-${MAX_LINK_FRAME_ENTRIES}`);
  const entries: LinkEntry[] = [];
  let o = LINK_FRAME_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (buf.length < o + LINK_ENTRY_OVERHEAD) throw new DecodeError(FORMAT, 'truncated', `entry ${i}: need ${o + LINK_ENTRY_OVERHEAD} bytes, have ${buf.length}`);
    const sourceId = readSourceId(buf, o);
    const hops = buf[o + SOURCE_ID_BYTES];
    const length = (buf[o + SOURCE_ID_BYTES + 1] << 8) | buf[o + SOURCE_ID_BYTES + 2];
    if (sourceId === 0) throw new DecodeError(FORMAT, 'bad-field', `entry ${i}: source id 0`);
    if (hops < 1 || hops > MAX_LINK_HOPS) throw new DecodeError(FORMAT, 'bad-field', `entry ${i}: hops ${hops}, must be 1-${MAX_LINK_HOPS}`);
    if (length < 1) throw new DecodeError(FORMAT, 'bad-field', `entry ${i} is empty`);
    const start = o + LINK_ENTRY_OVERHEAD;
    if (buf.length < start + length) throw new DecodeError(FORMAT, 'truncated', `entry ${i}: need ${start + length} bytes, have ${buf.length}`);
    entries.push({ sourceId, hops, datagram: buf.subarray(start, start + length) });
    o = start + length;
  }
  if (o !== buf.length) throw new DecodeError(FORMAT, 'trailing-bytes', `${buf.length - o} bytes after the last entry`);
  return entries;
}

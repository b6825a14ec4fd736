/**
 * The trunk frame: several media packets (each with a full or mini header) in one
 * datagram, to save per-datagram overhead when many small packets go the same way.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+---------------+-------------------------------+
 * |  marker 0xC0  |     count     |        packet 1 length        |  0
 * +---------------+---------------+-------------------------------+
 * |                 packet 1 (packet 1 length bytes)              |
 * +-------------------------------+-------------------------------+
 * |        packet 2 length        |  packet 2 ...                 |
 * +-------------------------------+-------------------------------+
 *   ... `count` entries in all, nothing after the last one
 * ```
 *
 * - marker: 0xC0, trunk version 1 (see datagram.ts for the first-byte map).
 * - count: 1-128 entries. Each entry is a u16 big-endian length (at least 1) and that many
 *   bytes. An entry may not itself be a trunk frame (no nesting).
 * - The whole frame is at most MAX_DATAGRAM_BYTES and ends exactly after the last entry.
 *
 * Entries are opaque here; each is decoded as a media packet by the receiver's
 * MiniHeaderDecoder.
 */

import { DecodeError, InternalError } from '../errors.js';
import { MAX_DATAGRAM_BYTES, TRUNK_MARKER, checkDatagramSize } from './datagram.js';

const FORMAT = 'trunk';

export const OFFSET_TRUNK_MARKER = 0;
export const OFFSET_TRUNK_COUNT = 1;
export const TRUNK_HEADER_BYTES = 2;
/** Bytes in front of each entry: its u16 length. */
export const TRUNK_ENTRY_OVERHEAD = 2;
export const MAX_TRUNK_PACKETS = 128;

export interface TrunkBatcherOptions {
  /** Largest datagram to produce, up to (and by default) MAX_DATAGRAM_BYTES. */
  maxBytes?: number;
  /** Most packets per trunk frame, 2 up to (and by default) MAX_TRUNK_PACKETS. */
  maxPackets?: number;
}

/** Size of a trunk frame holding packets of these lengths. */
export function trunkLength(packetLengths: readonly number[]): number {
  let length = TRUNK_HEADER_BYTES;
  for (const packetLength of packetLengths) length += TRUNK_ENTRY_OVERHEAD + packetLength;
  return length;
}

/**
 * Packs 1-128 packets into one trunk frame of at most `maxBytes`. Throws InternalError when
 * they do not fit or a packet is empty or itself a trunk frame.
 */
export function encodeTrunk(packets: readonly Uint8Array[], maxBytes: number = MAX_DATAGRAM_BYTES): Uint8Array {
  checkMaxBytes(maxBytes);
  if (packets.length < 1 || packets.length > MAX_TRUNK_PACKETS) {
    throw new InternalError(`trunk: ${packets.length} packets, must be 1-${MAX_TRUNK_PACKETS}`);
  }
  packets.forEach(checkEntry);
  const size = trunkLength(packets.map((packet) => packet.length));
  if (size > maxBytes) throw new InternalError(`trunk: ${size} bytes exceeds the limit of ${maxBytes}`);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint8(OFFSET_TRUNK_MARKER, TRUNK_MARKER);
  view.setUint8(OFFSET_TRUNK_COUNT, packets.length);
  let offset = TRUNK_HEADER_BYTES;
  for (const packet of packets) {
    view.setUint16(offset, packet.length);
    bytes.set(packet, offset + TRUNK_ENTRY_OVERHEAD);
    offset += TRUNK_ENTRY_OVERHEAD + packet.length;
  }
  return bytes;
}

/**
 * Splits a trunk frame into its packets (views into `buf`, not copies). Throws DecodeError:
 * 'too-large', 'truncated', 'bad-marker', 'bad-field' (a count out of range, an empty or
 * nested entry), 'trailing-bytes'.
 */
export function decodeTrunk(buf: Uint8Array): Uint8Array[] {
  checkDatagramSize(buf, FORMAT);
  requireBytes(buf, TRUNK_HEADER_BYTES);
  const marker = buf[OFFSET_TRUNK_MARKER];
  if (marker !== TRUNK_MARKER) throw new DecodeError(FORMAT, 'bad-marker', `first byte 0x${marker.toString(16)} is not a trunk marker`);
  const count = buf[OFFSET_TRUNK_COUNT];
  if (count < 1 || count > MAX_TRUNK_PACKETS) throw new DecodeError(FORMAT, 'bad-field', `count ${count}, must be 1-${MAX_TRUNK_PACKETS}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const packets: Uint8Array[] = [];
  let offset = TRUNK_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    requireBytes(buf, offset + TRUNK_ENTRY_OVERHEAD);
    const length = view.getUint16(offset);
    const start = offset + TRUNK_ENTRY_OVERHEAD;
    requireBytes(buf, start + length);
    if (length === 0) throw new DecodeError(FORMAT, 'bad-field', `entry ${i} is empty`);
    if (buf[start] === TRUNK_MARKER) throw new DecodeError(FORMAT, 'bad-field', `entry ${i} is a nested trunk frame`);
    packets.push(buf.subarray(start, start + length));
    offset = start + length;
  }
  if (offset !== buf.length) throw new DecodeError(FORMAT, 'trailing-bytes', `${buf.length - offset} bytes after the last entry`);
  return packets;
}

/**
 * Collects outgoing media packets into as few datagrams as possible. `add` hands back a
 * datagram whenever the new packet would not fit beside those already queued; call `flush`
 * when the batch must go (typically once per frame tick). A batch of one packet is sent as
 * the bare packet, without a trunk frame around it. Queued packets are held by reference:
 * do not modify them until they have been flushed.
 */
export class TrunkBatcher {
  readonly #maxBytes: number;
  readonly #maxPackets: number;
  #queued: Uint8Array[] = [];
  #queuedBytes = TRUNK_HEADER_BYTES;

  constructor(options: TrunkBatcherOptions = {}) {
    this.#maxBytes = options.maxBytes ?? MAX_DATAGRAM_BYTES;
    checkMaxBytes(this.#maxBytes);
    this.#maxPackets = options.maxPackets ?? MAX_TRUNK_PACKETS;
    if (!Number.isInteger(this.#maxPackets) || this.#maxPackets < 2 || this.#maxPackets > MAX_TRUNK_PACKETS) {
      throw new InternalError(`TrunkBatcher: maxPackets must be an integer 2-${MAX_TRUNK_PACKETS}, got ${this.#maxPackets}`);
    }
  }

  /** Packets waiting for the next flush. */
  get queued(): number {
    return this.#queued.length;
  }

  /**
   * Queues a packet. Returns the datagram to send first if the packet did not fit next to
   * the queued ones, else undefined. Throws InternalError for a packet that can never be
   * sent (empty, over maxBytes, or a trunk frame).
   */
  add(packet: Uint8Array): Uint8Array | undefined {
    checkEntry(packet);
    if (packet.length > this.#maxBytes) {
      throw new InternalError(`trunk: a ${packet.length}-byte packet exceeds the limit of ${this.#maxBytes}`);
    }
    const entryBytes = TRUNK_ENTRY_OVERHEAD + packet.length;
    const full = this.#queued.length === this.#maxPackets || this.#queuedBytes + entryBytes > this.#maxBytes;
    const ready = this.#queued.length > 0 && full ? this.flush() : undefined;
    this.#queued.push(packet);
    this.#queuedBytes += entryBytes;
    return ready;
  }

  /** The datagram holding everything queued, or undefined when nothing is. */
  flush(): Uint8Array | undefined {
    const packets = this.#queued;
    this.#queued = [];
    this.#queuedBytes = TRUNK_HEADER_BYTES;
    if (packets.length <= 1) return packets[0];
    return encodeTrunk(packets, this.#maxBytes);
  }
}

function checkEntry(packet: Uint8Array): void {
  if (packet.length === 0) throw new InternalError('trunk: empty packet');
  if (packet[0] === TRUNK_MARKER) throw new InternalError('trunk: a trunk frame cannot be nested in another');
}

/** The smallest useful limit: one trunk frame holding one 1-byte packet. */
const MIN_MAX_BYTES = TRUNK_HEADER_BYTES + TRUNK_ENTRY_OVERHEAD + 1;

function checkMaxBytes(maxBytes: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_MAX_BYTES || maxBytes > MAX_DATAGRAM_BYTES) {
    throw new InternalError(`trunk: maxBytes must be an integer ${MIN_MAX_BYTES}-${MAX_DATAGRAM_BYTES}, got ${maxBytes}`);
  }
}

function requireBytes(buf: Uint8Array, length: number): void {
  if (buf.length < length) throw new DecodeError(FORMAT, 'truncated', `need ${length} bytes, have ${buf.length}`);
}

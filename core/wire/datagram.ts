/**
 * What a media datagram can hold, told apart by its first byte.
 *
 * Every QUIC DATAGRAM wzp sends carries one of three things: a media packet with a full
 * header, a media packet with a mini header, or a trunk frame batching several of those.
 * The first byte says which:
 *
 * ```
 *   first byte   bits        kind
 *   0x00-0x0F    0000 xxxx   reserved (full header version 0: never valid)
 *   0x10-0x1F    0001 xxxx   media packet, full header version 1 (media-header.ts)
 *   0x20-0x7F    0vvv xxxx   media packet, full header version 2-7 (not yet defined)
 *   0x80-0xBF    10xx xxxx   media packet, mini header (mini-header.ts)
 *   0xC0         1100 0000   trunk frame version 1 (trunk.ts)
 *   0xC1-0xFF    11xx xxxx   reserved for future container frames
 * ```
 */

import { DecodeError, InternalError } from '../errors.js';

/**
 * The largest QUIC DATAGRAM payload at the transport's default settings: a maximum UDP
 * payload of 1350 bytes minus 44 bytes of QUIC packet and frame overhead. wzp never builds
 * a larger media datagram and rejects larger ones.
 */
export const MAX_DATAGRAM_BYTES = 1306;

/** A full media header's first byte holds its version in the high nibble. */
export const FULL_HEADER_VERSION_SHIFT = 4;
/** The highest version a full header's first byte can express (the top bit must be 0). */
export const MAX_FULL_HEADER_VERSION = 7;
/** Mask and value of the two top bits that mark a mini header. */
export const MINI_HEADER_MARK_MASK = 0xc0;
export const MINI_HEADER_MARK = 0x80;
/** The first byte of a version-1 trunk frame. */
export const TRUNK_MARKER = 0xc0;

export type DatagramKind = 'full' | 'mini' | 'trunk';

/**
 * Which kind of datagram `buf` is, from its first byte alone (the body is not checked).
 * Throws DecodeError 'truncated' for an empty buffer, 'bad-marker' for a reserved first
 * byte. A full header of an unknown version still reports 'full': its decoder rejects it
 * with 'bad-version'.
 */
export function datagramKind(buf: Uint8Array): DatagramKind {
  if (buf.length === 0) throw new DecodeError('datagram', 'truncated', 'empty datagram');
  const first = buf[0];
  if (isMiniHeader(first)) return 'mini';
  if (first === TRUNK_MARKER) return 'trunk';
  const version = first >>> FULL_HEADER_VERSION_SHIFT;
  if (version >= 1 && version <= MAX_FULL_HEADER_VERSION) return 'full';
  throw new DecodeError('datagram', 'bad-marker', `reserved first byte 0x${first.toString(16)}`);
}

/** Whether a datagram's first byte marks a mini header. */
export function isMiniHeader(firstByte: number): boolean {
  return (firstByte & MINI_HEADER_MARK_MASK) === MINI_HEADER_MARK;
}

/**
 * One media datagram: header bytes followed by the payload. Throws InternalError when the
 * result would exceed MAX_DATAGRAM_BYTES (the caller built a frame the transport cannot
 * carry: a bug, not a network condition).
 */
export function assembleDatagram(header: Uint8Array, payload: Uint8Array): Uint8Array {
  const size = header.length + payload.length;
  if (size > MAX_DATAGRAM_BYTES) {
    throw new InternalError(`media packet of ${size} bytes exceeds the ${MAX_DATAGRAM_BYTES}-byte datagram limit`);
  }
  const packet = new Uint8Array(size);
  packet.set(header, 0);
  packet.set(payload, header.length);
  return packet;
}

/** Throws DecodeError 'too-large' for a datagram over MAX_DATAGRAM_BYTES. */
export function checkDatagramSize(buf: Uint8Array, format: string): void {
  if (buf.length > MAX_DATAGRAM_BYTES) {
    throw new DecodeError(format, 'too-large', `${buf.length} bytes exceeds the ${MAX_DATAGRAM_BYTES}-byte datagram limit`);
  }
}

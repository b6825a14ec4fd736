/**
 * The mini header: 5 bytes in place of a 15-byte full header (67 % smaller) for
 * steady-state media packets. It carries only what changes from packet to packet; the rest
 * is implied by a context, the last full header the receiver saw.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---+-+-------------------------+---------------+---------------+
 * |1 0|R|  sequence (low 13 bits) | fec block low |  fec symbol   |  0
 * +---+-+-------------------------+---------------+---------------+
 * |     crc-8     |                                                  4
 * +---------------+
 * ```
 *
 * - `10`: the mini-header mark (first byte 0x80-0xBF; see datagram.ts).
 * - R: repair flag. fec symbol: the packet's index in its FEC block.
 * - sequence: the low 13 bits. The receiver takes the sequence number d steps from the
 *   context's (d in -4096..4095, wrapping) whose low bits match, and the timestamp
 *   context.timestamp + d * context.frameSamples (wrapping).
 * - fec block low: the low 8 bits of the block id, resolved the same way within -128..127
 *   blocks of the context's block.
 * - crc-8: CRC-8/ROHC over the full header this mini header stands for, encoded as
 *   media-header.ts would (without a quality report). The receiver expands the mini header
 *   with its context, re-encodes the result and compares CRCs: a context that does not match
 *   the sender's (the full header that changed it was lost) is detected, and the packet is
 *   rejected with 'context-mismatch' instead of being played with the wrong codec or
 *   timestamp. A lost periodic full header costs nothing: the older context still expands
 *   the following mini headers correctly.
 *
 * All other fields (codec, tier, frame size, FEC scheme and geometry, extensions) are the
 * context's. Mini headers never carry a quality report.
 */

import { DecodeError, InternalError } from '../errors.js';
import { crc8 } from './crc8.js';
import { MINI_HEADER_MARK, assembleDatagram, checkDatagramSize, isMiniHeader } from './datagram.js';
import { type DecodedMediaHeader, type HeaderExtension, type MediaHeader, decodeMediaHeader, encodeMediaHeader } from './media-header.js';

const FORMAT = 'mini-header';

export const MINI_HEADER_BYTES = 5;
/** The first two bytes hold the mark, the repair flag and the sequence bits. */
export const OFFSET_MINI_SEQUENCE = 0;
export const OFFSET_MINI_FEC_BLOCK = 2;
export const OFFSET_MINI_FEC_SYMBOL = 3;
export const OFFSET_MINI_CRC = 4;

const MINI_REPAIR_FLAG = 0x2000;
export const MINI_SEQUENCE_BITS = 13;
export const MINI_FEC_BLOCK_BITS = 8;
/** Sequence numbers resolve within -4096..4095 steps of the context's. */
export const MINI_SEQUENCE_WINDOW = 1 << (MINI_SEQUENCE_BITS - 1);
/** Block ids resolve within -128..127 blocks of the context's. */
export const MINI_FEC_BLOCK_WINDOW = 1 << (MINI_FEC_BLOCK_BITS - 1);

export const DEFAULT_FULL_HEADER_INTERVAL = 50;
export const DEFAULT_FULL_HEADERS_AFTER_CHANGE = 3;

const U16_MASK = 0xffff;

export interface MiniHeaderEncoderOptions {
  /**
   * Send a full header at least once every this many packets, so that a receiver that
   * joins late or lost a context change recovers within one interval. 1-4096; 1 turns mini
   * headers off. Default 50 (once a second at 20 ms frames).
   */
  fullHeaderInterval?: number;
  /**
   * After anything the mini header cannot follow changes (codec, tier, frame size, FEC
   * scheme or geometry, extensions, a jump in sequence, timestamp or FEC block), send this
   * many full headers in a row, so that losing one does not cost a whole interval. 1 up to
   * fullHeaderInterval; default 3.
   */
  fullHeadersAfterChange?: number;
}

/** A decoded header and whether it came from a mini header. */
export interface DecodedCompressedHeader extends DecodedMediaHeader {
  compressed: boolean;
}

export interface DecodedCompressedPacket {
  header: MediaHeader;
  /** The bytes after the header: a view into the decoded buffer, not a copy. */
  payload: Uint8Array;
  compressed: boolean;
}

/**
 * Decides, packet by packet, between a full header and a mini header. One encoder per
 * sending stream; call it once per packet, in send order.
 *
 * A packet gets a mini header when all of these hold, and a full header otherwise:
 * it carries no quality report; every field except sequence, timestamp, FEC block, symbol
 * and repair flag equals the last full header's; its sequence and timestamp are the
 * previous packet's plus one and plus frameSamples; its FEC block is within the mini
 * header's window of the last full header's; fewer than fullHeaderInterval packets have
 * gone by since the last full header; and no full headers are still owed after a change.
 *
 * The encoder keeps the last headers it was given: treat headers as immutable values.
 */
export class MiniHeaderEncoder {
  readonly #interval: number;
  readonly #fullsAfterChange: number;
  /** The last full header sent: the receiver's context. */
  #anchor: MediaHeader | undefined;
  /** The last header sent, full or mini. */
  #previous: MediaHeader | undefined;
  #packetsSinceAnchor = 0;
  #fullsOwed = 0;

  constructor(options: MiniHeaderEncoderOptions = {}) {
    this.#interval = options.fullHeaderInterval ?? DEFAULT_FULL_HEADER_INTERVAL;
    checkOption('fullHeaderInterval', this.#interval, MINI_SEQUENCE_WINDOW);
    this.#fullsAfterChange = options.fullHeadersAfterChange ?? Math.min(DEFAULT_FULL_HEADERS_AFTER_CHANGE, this.#interval);
    checkOption('fullHeadersAfterChange', this.#fullsAfterChange, this.#interval);
  }

  /**
   * The header bytes for the next packet: a mini header or a full one. Throws InternalError
   * if a field is out of range.
   */
  encodeHeader(header: MediaHeader): Uint8Array {
    const full = encodeMediaHeader(header);
    if (this.#mayCompress(header)) {
      this.#packetsSinceAnchor++;
      this.#previous = header;
      return encodeMini(header, crc8(full));
    }
    const changed = !this.#extendsAnchor(header);
    this.#fullsOwed = changed ? this.#fullsAfterChange - 1 : Math.max(0, this.#fullsOwed - 1);
    this.#anchor = header;
    this.#previous = header;
    this.#packetsSinceAnchor = 0;
    return full;
  }

  /** Header followed by payload, as one datagram. */
  encodePacket(header: MediaHeader, payload: Uint8Array): Uint8Array {
    return assembleDatagram(this.encodeHeader(header), payload);
  }

  /** Forget the context: the next packet gets a full header (e.g. for a new receiver). */
  reset(): void {
    this.#anchor = undefined;
    this.#previous = undefined;
    this.#packetsSinceAnchor = 0;
    this.#fullsOwed = 0;
  }

  #mayCompress(header: MediaHeader): boolean {
    return (
      header.report === undefined &&
      this.#fullsOwed === 0 &&
      this.#packetsSinceAnchor < this.#interval - 1 &&
      this.#extendsAnchor(header)
    );
  }

  /**
   * Whether the receiver's context (the last full header) expands to `header`: same
   * context fields, sequence and timestamp continuing the previous packet's, FEC block
   * within the mini header's window.
   */
  #extendsAnchor(header: MediaHeader): boolean {
    const anchor = this.#anchor;
    const previous = this.#previous;
    return (
      anchor !== undefined &&
      previous !== undefined &&
      sameContext(header, anchor) &&
      isSuccessor(header, previous) &&
      withinWindow(header.fec.block - anchor.fec.block, MINI_FEC_BLOCK_WINDOW)
    );
  }
}

/**
 * Turns full and mini headers back into full MediaHeaders. One decoder per received stream.
 * It keeps the two most recent full headers (in arrival order) as contexts, so a mini header
 * reordered across a context change still expands.
 */
export class MiniHeaderDecoder {
  /** Newest first. */
  #contexts: MediaHeader[] = [];

  /**
   * Decodes the header at the start of `buf`, full or mini. Throws DecodeError: the full
   * header's reasons, or for a mini header 'truncated', 'no-context' (no full header seen
   * yet) or 'context-mismatch' (the full header it depends on was lost).
   */
  decodeHeader(buf: Uint8Array): DecodedCompressedHeader {
    if (buf.length > 0 && isMiniHeader(buf[0])) {
      return { header: this.#expand(buf), headerLength: MINI_HEADER_BYTES, compressed: true };
    }
    const decoded = decodeMediaHeader(buf);
    this.remember(decoded.header);
    return { ...decoded, compressed: false };
  }

  /** Splits a datagram into its header and payload. Throws DecodeError (also 'too-large'). */
  decodePacket(buf: Uint8Array): DecodedCompressedPacket {
    checkDatagramSize(buf, FORMAT);
    const { header, headerLength, compressed } = this.decodeHeader(buf);
    return { header, payload: buf.subarray(headerLength), compressed };
  }

  /**
   * For a receiver that authenticates packets before trusting their headers: where `buf`'s
   * header ends, and the header itself when it is a full one, without touching the contexts.
   * A mini header's fields depend on a context, so it is expanded afterwards with
   * expandMini(), and an authenticated full header becomes a context with remember().
   * Throws DecodeError ('too-large', 'truncated', the full header's reasons).
   */
  splitPacket(buf: Uint8Array): { headerLength: number; full?: MediaHeader } {
    checkDatagramSize(buf, FORMAT);
    if (buf.length > 0 && isMiniHeader(buf[0])) {
      if (buf.length < MINI_HEADER_BYTES) {
        throw new DecodeError(FORMAT, 'truncated', `need ${MINI_HEADER_BYTES} bytes, have ${buf.length}`);
      }
      return { headerLength: MINI_HEADER_BYTES };
    }
    const { header, headerLength } = decodeMediaHeader(buf);
    return { headerLength, full: header };
  }

  /** Make a full header the newest context (see splitPacket). */
  remember(header: MediaHeader): void {
    this.#contexts = [header, ...this.#contexts.slice(0, 1)];
  }

  /** Expand the mini header at the start of `buf` (see splitPacket and decodeHeader). */
  expandMini(buf: Uint8Array): MediaHeader {
    return this.#expand(buf);
  }

  /** Forget all contexts (e.g. when the sender restarts). */
  reset(): void {
    this.#contexts = [];
  }

  #expand(buf: Uint8Array): MediaHeader {
    if (buf.length < MINI_HEADER_BYTES) {
      throw new DecodeError(FORMAT, 'truncated', `need ${MINI_HEADER_BYTES} bytes, have ${buf.length}`);
    }
    if (this.#contexts.length === 0) throw new DecodeError(FORMAT, 'no-context', 'mini header before any full header');
    const fields = readMini(buf);
    for (const context of this.#contexts) {
      const header = expand(context, fields);
      if (crc8(encodeMediaHeader(header)) === fields.crc) return header;
    }
    throw new DecodeError(FORMAT, 'context-mismatch', 'mini header does not match the known context (a full header was lost)');
  }
}

interface MiniFields {
  repair: boolean;
  sequenceLow: number;
  blockLow: number;
  symbol: number;
  crc: number;
}

function encodeMini(header: MediaHeader, crc: number): Uint8Array {
  const bytes = new Uint8Array(MINI_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  const sequenceLow = header.sequence & lowMask(MINI_SEQUENCE_BITS);
  view.setUint16(OFFSET_MINI_SEQUENCE, (MINI_HEADER_MARK << 8) | (header.fec.repair ? MINI_REPAIR_FLAG : 0) | sequenceLow);
  view.setUint8(OFFSET_MINI_FEC_BLOCK, header.fec.block & lowMask(MINI_FEC_BLOCK_BITS));
  view.setUint8(OFFSET_MINI_FEC_SYMBOL, header.fec.symbol);
  view.setUint8(OFFSET_MINI_CRC, crc);
  return bytes;
}

/** Reads the fields of a mini header; the caller has checked the mark and the length. */
function readMini(buf: Uint8Array): MiniFields {
  const view = new DataView(buf.buffer, buf.byteOffset, MINI_HEADER_BYTES);
  const first = view.getUint16(OFFSET_MINI_SEQUENCE);
  return {
    repair: (first & MINI_REPAIR_FLAG) !== 0,
    sequenceLow: first & lowMask(MINI_SEQUENCE_BITS),
    blockLow: view.getUint8(OFFSET_MINI_FEC_BLOCK),
    symbol: view.getUint8(OFFSET_MINI_FEC_SYMBOL),
    crc: view.getUint8(OFFSET_MINI_CRC),
  };
}

function expand(context: MediaHeader, fields: MiniFields): MediaHeader {
  const steps = signedDistance(fields.sequenceLow, context.sequence, MINI_SEQUENCE_BITS);
  const blocks = signedDistance(fields.blockLow, context.fec.block, MINI_FEC_BLOCK_BITS);
  return {
    version: context.version,
    codecId: context.codecId,
    tier: context.tier,
    sequence: (context.sequence + steps) & U16_MASK,
    timestamp: (context.timestamp + steps * context.frameSamples) >>> 0,
    frameSamples: context.frameSamples,
    fec: {
      schemeId: context.fec.schemeId,
      block: (context.fec.block + blocks) & U16_MASK,
      symbol: fields.symbol,
      repair: fields.repair,
      k: context.fec.k,
      r: context.fec.r,
    },
    extensions: context.extensions,
  };
}

/** The signed distance from `reference` to the nearest value whose low `bits` bits are `low`. */
function signedDistance(low: number, reference: number, bits: number): number {
  const distance = (low - reference) & lowMask(bits);
  return distance >= 1 << (bits - 1) ? distance - (1 << bits) : distance;
}

/** Whether a u16 difference, taken modulo 2^16, lies within -window..window-1. */
function withinWindow(difference: number, window: number): boolean {
  const wrapped = difference & U16_MASK;
  return wrapped < window || wrapped >= U16_MASK + 1 - window;
}

function isSuccessor(header: MediaHeader, previous: MediaHeader): boolean {
  return (
    header.sequence === ((previous.sequence + 1) & U16_MASK) &&
    header.timestamp === (previous.timestamp + previous.frameSamples) >>> 0
  );
}

function sameContext(a: MediaHeader, b: MediaHeader): boolean {
  return (
    a.version === b.version &&
    a.codecId === b.codecId &&
    a.tier === b.tier &&
    a.frameSamples === b.frameSamples &&
    a.fec.schemeId === b.fec.schemeId &&
    a.fec.k === b.fec.k &&
    a.fec.r === b.fec.r &&
    sameExtensions(a.extensions, b.extensions)
  );
}

function sameExtensions(a: readonly HeaderExtension[], b: readonly HeaderExtension[]): boolean {
  return a.length === b.length && a.every((extension, i) => extension.id === b[i].id && sameBytes(extension.data, b[i].data));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function lowMask(bits: number): number {
  return (1 << bits) - 1;
}

function checkOption(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new InternalError(`MiniHeaderEncoder: ${name} must be an integer 1-${max}, got ${value}`);
  }
}

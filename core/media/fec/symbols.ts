/**
 * Block packing: how a variable-length frame becomes a fixed-size FEC symbol and back.
 *
 * ```
 *  0       2                2+len                 size
 * +-------+----------------+---------------------+
 * | len   | frame bytes    | zero padding        |
 * | u16BE |                |                     |
 * +-------+----------------+---------------------+
 * ```
 * Every symbol of a block has the same size: 2 + the longest frame in the block. Repair
 * symbols are linear combinations of these, so a recovered symbol gives back the exact
 * frame and its length; a length over the slot or non-zero padding means the repair data
 * was garbage, reported as DecodeError.
 */
import { DecodeError } from '../../errors.js';
import type { FecParams } from '../fec-types.js';
import type { CollectedBlock } from './block.js';
import { gfMul, gfMulAddInto } from './gf256.js';

export const LENGTH_PREFIX_BYTES = 2;

/** Symbol size for a block: the longest frame plus its length prefix. */
export function symbolSizeFor(frames: readonly Uint8Array[]): number {
  let longest = 0;
  for (const frame of frames) longest = Math.max(longest, frame.length);
  return LENGTH_PREFIX_BYTES + longest;
}

/** Write `frame` with its length prefix at `offset` of a zero-filled `target`. */
export function writeSymbol(frame: Uint8Array, target: Uint8Array, offset = 0): void {
  target[offset] = frame.length >>> 8;
  target[offset + 1] = frame.length & 0xff;
  target.set(frame, offset + LENGTH_PREFIX_BYTES);
}

/**
 * acc ^= c * symbol(frame) over GF(256), without building the symbol (its padding is zero,
 * so only the prefix and the frame bytes contribute). c = 1 is a plain XOR.
 */
export function mulAddSymbolInto(acc: Uint8Array, frame: Uint8Array, c: number): void {
  acc[0] ^= gfMul(c, frame.length >>> 8);
  acc[1] ^= gfMul(c, frame.length & 0xff);
  gfMulAddInto(acc.subarray(LENGTH_PREFIX_BYTES), frame, c);
}

/** The frame inside a recovered symbol (a copy). Throws DecodeError if it cannot be one. */
export function readSymbol(format: string, symbol: Uint8Array): Uint8Array {
  if (symbol.length < LENGTH_PREFIX_BYTES) {
    throw new DecodeError(format, 'bad-symbol', `recovered symbol of ${symbol.length} bytes has no length prefix`);
  }
  const length = (symbol[0] << 8) | symbol[1];
  const end = LENGTH_PREFIX_BYTES + length;
  if (end > symbol.length) {
    throw new DecodeError(format, 'bad-symbol', `recovered frame length ${length} exceeds its ${symbol.length}-byte symbol`);
  }
  for (let i = end; i < symbol.length; i++) {
    if (symbol[i] !== 0) {
      throw new DecodeError(format, 'bad-symbol', 'recovered symbol has non-zero padding');
    }
  }
  return symbol.slice(LENGTH_PREFIX_BYTES, end);
}

/**
 * The symbol size of a block whose repair payloads are bare symbols (xor, rs): all present
 * repair payloads must have one length in 2..2+maxFrameBytes, and every received source
 * frame must fit in it. Throws DecodeError otherwise.
 */
export function bareRepairSymbolSize(format: string, params: FecParams, block: CollectedBlock): number {
  let size: number | undefined;
  for (const repair of block.repairs) {
    if (repair === undefined) continue;
    if (size !== undefined && repair.length !== size) {
      throw new DecodeError(format, 'bad-length', `repair payloads of ${size} and ${repair.length} bytes in one block`);
    }
    size = repair.length;
  }
  if (size === undefined) {
    throw new DecodeError(format, 'bad-length', 'no repair payload in block');
  }
  checkSymbolSize(format, params, block, size);
  return size;
}

/** Throws DecodeError unless `size` fits params and every received source frame fits in it. */
export function checkSymbolSize(format: string, params: FecParams, block: CollectedBlock, size: number): void {
  if (size < LENGTH_PREFIX_BYTES || size > LENGTH_PREFIX_BYTES + params.maxFrameBytes) {
    throw new DecodeError(
      format,
      'bad-length',
      `symbol size ${size} outside ${LENGTH_PREFIX_BYTES}..${LENGTH_PREFIX_BYTES + params.maxFrameBytes}`,
    );
  }
  for (const [i, frame] of block.sources.entries()) {
    if (frame !== undefined && frame.length + LENGTH_PREFIX_BYTES > size) {
      throw new DecodeError(format, 'bad-length', `source frame ${i} (${frame.length} bytes) does not fit symbol size ${size}`);
    }
  }
}

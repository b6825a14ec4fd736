/**
 * Checks every FEC scheme shares: parameter validation (UsageError), encoder input
 * (PluginError) and the collection of one received block into source and repair slots
 * (DecodeError), so that no scheme meets an index, length or duplicate it did not expect.
 */
import { DecodeError, PluginError, UsageError } from '../../errors.js';
import { FEC_MAX_FRAME_BYTES, FEC_MAX_K, FEC_MAX_R, type FecCodec, type FecPacket, type FecParams } from '../fec-types.js';

export interface FecParamLimits {
  /** Largest r the scheme accepts (default FEC_MAX_R). */
  maxR?: number;
}

function checkIntegerParam(scheme: string, name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`FEC scheme ${scheme}: ${name} must be an integer ${min}..${max}, got ${String(value)}`);
  }
}

/** Throws UsageError unless k, r and maxFrameBytes are integers within the limits. */
export function validateFecParams(scheme: string, params: FecParams, limits: FecParamLimits = {}): void {
  if (typeof params !== 'object' || params === null) {
    throw new UsageError(`FEC scheme ${scheme}: params must be an object {k, r, maxFrameBytes}`);
  }
  checkIntegerParam(scheme, 'k', params.k, 1, FEC_MAX_K);
  checkIntegerParam(scheme, 'r', params.r, 0, limits.maxR ?? FEC_MAX_R);
  checkIntegerParam(scheme, 'maxFrameBytes', params.maxFrameBytes, 1, FEC_MAX_FRAME_BYTES);
}

/** Throws PluginError unless `frames` is 1..k frames of at most maxFrameBytes each. */
export function checkFramesToEncode(scheme: string, params: FecParams, frames: readonly Uint8Array[]): void {
  if (frames.length < 1 || frames.length > params.k) {
    throw new PluginError(`FEC scheme ${scheme}: a block holds 1..${params.k} frames, got ${frames.length}`);
  }
  for (const [i, frame] of frames.entries()) {
    if (!(frame instanceof Uint8Array)) {
      throw new PluginError(`FEC scheme ${scheme}: frame ${i} is not a Uint8Array`);
    }
    if (frame.length > params.maxFrameBytes) {
      throw new PluginError(
        `FEC scheme ${scheme}: frame ${i} is ${frame.length} bytes, larger than maxFrameBytes ${params.maxFrameBytes}`,
      );
    }
  }
}

/** One received block, sorted into slots. */
export interface CollectedBlock {
  /** Source frames by index 0..k-1; undefined where not received. */
  sources: (Uint8Array | undefined)[];
  /** Repair payloads by repair number j (packet index k + j), 0..r-1; undefined where not received. */
  repairs: (Uint8Array | undefined)[];
  /** Indexes of the source frames that did not arrive, ascending. */
  lost: number[];
}

function checkPacket(format: string, params: FecParams, packet: FecPacket, k: number): void {
  if (typeof packet !== 'object' || packet === null) {
    throw new DecodeError(format, 'bad-packet', 'a received packet is not an object');
  }
  const { index, repair, data } = packet;
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= k + params.r) {
    throw new DecodeError(format, 'bad-index', `packet index ${String(index)} outside 0..${k + params.r - 1}`);
  }
  if (repair !== index >= k) {
    throw new DecodeError(format, 'repair-flag', `packet ${index} has repair=${String(repair)} in a block of k=${k}`);
  }
  if (!(data instanceof Uint8Array)) {
    throw new DecodeError(format, 'bad-payload', `packet ${index} has no byte payload`);
  }
  if (!repair && data.length > params.maxFrameBytes) {
    throw new DecodeError(format, 'too-large', `source frame ${index} is ${data.length} bytes, over ${params.maxFrameBytes}`);
  }
}

/**
 * Sort the packets of one block into source and repair slots. Throws DecodeError for a k
 * outside 1..params.k, an index outside 0..k+r-1, a repair flag that does not match the
 * index, a duplicate index, or a source frame over maxFrameBytes.
 */
export function collectBlock(
  format: string,
  params: FecParams,
  received: readonly FecPacket[],
  k: number,
): CollectedBlock {
  if (!Number.isInteger(k) || k < 1 || k > params.k) {
    throw new DecodeError(format, 'bad-k', `block k=${String(k)} outside 1..${params.k}`);
  }
  const sources: (Uint8Array | undefined)[] = new Array(k).fill(undefined);
  const repairs: (Uint8Array | undefined)[] = new Array(params.r).fill(undefined);
  const seen = new Set<number>();
  for (const packet of received) {
    checkPacket(format, params, packet, k);
    if (seen.has(packet.index)) {
      throw new DecodeError(format, 'duplicate-index', `packet index ${packet.index} received twice`);
    }
    seen.add(packet.index);
    if (packet.repair) repairs[packet.index - k] = packet.data;
    else sources[packet.index] = packet.data;
  }
  const lost: number[] = [];
  for (let i = 0; i < k; i++) if (sources[i] === undefined) lost.push(i);
  return { sources, repairs, lost };
}

/** The present repair payloads with their repair numbers, ascending. */
export function presentRepairs(block: CollectedBlock): { j: number; data: Uint8Array }[] {
  const out: { j: number; data: Uint8Array }[] = [];
  block.repairs.forEach((data, j) => {
    if (data !== undefined) out.push({ j, data });
  });
  return out;
}

/** Source packets for a block of frames (indexes 0..frames.length-1), sent as-is. */
export function sourcePackets(frames: readonly Uint8Array[]): FecPacket[] {
  return frames.map((data, index) => ({ index, repair: false, data }));
}

/**
 * The FecCodec of a scheme whose encoding and decoding are plain functions of the block
 * parameters: validates the parameters once, then binds them.
 */
export function blockCodec(
  scheme: string,
  params: FecParams,
  encodeBlock: (params: FecParams, frames: readonly Uint8Array[]) => FecPacket[],
  decodeBlock: (params: FecParams, received: readonly FecPacket[], k: number) => (Uint8Array | undefined)[],
): FecCodec {
  validateFecParams(scheme, params);
  return {
    encoder: { encode: (frames) => encodeBlock(params, frames) },
    decoder: { decode: (received, k) => decodeBlock(params, received, k) },
  };
}

/**
 * The FEC extension contract. A scheme protects blocks of K source frames with R repair
 * packets. Encoders and decoders are stateless per block so that interleaving and block
 * geometry stay in the pipeline, not in each scheme.
 */

export interface FecParams {
  /** Source frames per block. */
  k: number;
  /** Repair packets per block. */
  r: number;
  /** Largest source frame in bytes (schemes that need a fixed symbol size pad to this). */
  maxFrameBytes: number;
}

/** One packet produced by an encoder: either a source frame or a repair symbol. */
export interface FecPacket {
  /** 0..k-1 for source packets, k..k+r-1 for repair packets. */
  index: number;
  repair: boolean;
  data: Uint8Array;
}

export interface FecEncoder {
  /** Protect one block of up to `k` source frames; returns the repair packets only. */
  encode(frames: readonly Uint8Array[]): FecPacket[];
}

export interface FecDecoder {
  /**
   * Recover source frames of one block from whatever packets arrived (source and repair).
   * Returns an array of length k with `undefined` where a frame could not be recovered.
   * Throws DecodeError for malformed repair data.
   */
  decode(received: readonly FecPacket[], k: number): (Uint8Array | undefined)[];
}

export interface FecSchemeFactory {
  /** Unique name (`--fec NAME`). */
  readonly name: string;
  readonly version: string;
  /** Scheme id carried in the media header; 0-63 reserved for built-ins. */
  readonly schemeId: number;
  readonly description: string;
  /**
   * The erasure patterns this scheme promises to repair, as the largest number of lost
   * packets (source or repair) per block it always recovers from, for the given params.
   * The compliance suite checks every pattern up to this bound.
   */
  guaranteedRecoverable(params: FecParams): number;
  availability(): import('./codec-types.js').Availability;
  create(params: FecParams): { encoder: FecEncoder; decoder: FecDecoder };
}

/**
 * The FEC extension contract. A scheme protects one block of up to K source frames with R
 * repair packets. Encoders and decoders are stateless per block, so block geometry and
 * interleaving stay in the pipeline (core/media/fec/interleaver.ts), not in each scheme.
 *
 * Every scheme is systematic: source frames travel unchanged, one per packet, so a receiver
 * that lost nothing needs no FEC decoding. Frames may differ in length; a scheme must give
 * back the exact bytes and length of every frame it recovers (the built-in schemes prefix
 * each frame with its u16 length inside the FEC symbol; see core/media/fec/symbols.ts).
 *
 * Block geometry on the wire: the media header of every packet carries the scheme id, the
 * block id, the packet index, the repair flag and the block's k and r. A block may be
 * closed with fewer than K frames (end of a talk spurt): its repair packets then carry the
 * actual number of frames as k and take indexes k..k+r-1 (its source packets, sent before
 * the block was closed, carry the nominal K; see FecBlockAssembler).
 */
import type { Availability } from './codec-types.js';

/** Largest K (source frames per block) any scheme accepts. */
export const FEC_MAX_K = 64;
/** Largest R (repair packets per block) any scheme accepts. */
export const FEC_MAX_R = 64;
/** Largest source frame any scheme accepts, in bytes (far above any voice codec frame). */
export const FEC_MAX_FRAME_BYTES = 4096;

export interface FecParams {
  /** Source frames per full block, 1..FEC_MAX_K. */
  k: number;
  /** Repair packets per block, 0..FEC_MAX_R. */
  r: number;
  /**
   * Largest source frame in bytes, 1..FEC_MAX_FRAME_BYTES. Encoders reject larger frames;
   * decoders reject packets that could only come from larger frames. A receiver that does
   * not know the sender's value passes FEC_MAX_FRAME_BYTES: decoding needs only k and r.
   */
  maxFrameBytes: number;
}

/** One packet of a block: a source frame (sent as-is) or a repair payload. */
export interface FecPacket {
  /** 0..k-1 for source packets, k..k+r-1 for repair packets (k = frames in this block). */
  index: number;
  repair: boolean;
  data: Uint8Array;
}

export interface FecEncoder {
  /**
   * Protect one block of 1..k source frames and return its r repair packets, with indexes
   * frames.length..frames.length+r-1, all of one length. Frames may be 0..maxFrameBytes
   * bytes long and are not modified. Throws a PluginError for an empty or oversized block
   * or a frame larger than maxFrameBytes.
   */
  encode(frames: readonly Uint8Array[]): FecPacket[];
}

export interface FecDecoder {
  /**
   * Recover the source frames of one block of `k` frames (the k from the media header,
   * 1..params.k) from whatever packets arrived, source and repair, in any order.
   * Returns an array of length k: every received source frame, every frame the scheme
   * could recover, and `undefined` where a frame is lost. Never returns wrong bytes for
   * well-formed packets, however many were lost. Throws DecodeError (and nothing else) for
   * malformed input: bad k, index out of range, duplicate index, repair flag not matching
   * the index, inconsistent or impossible payload lengths, repair data that decodes to an
   * impossible frame.
   */
  decode(received: readonly FecPacket[], k: number): (Uint8Array | undefined)[];
}

/** What `FecSchemeFactory.create` returns: one encoder and one decoder for a geometry. */
export interface FecCodec {
  encoder: FecEncoder;
  decoder: FecDecoder;
}

export interface FecSchemeFactory {
  /** Unique name (`--fec NAME`), 1-32 chars of [a-z0-9-]. */
  readonly name: string;
  /** Version of this implementation (semver). */
  readonly version: string;
  /** Scheme id carried in the media header; 0-63 reserved for built-ins, 64-254 others. */
  readonly schemeId: number;
  readonly description: string;
  /**
   * The erasure patterns this scheme promises to repair, as the largest number of lost
   * packets (source or repair, in any combination) per block it always recovers from, for
   * the given params and for every shorter block. The compliance suite checks every
   * pattern up to this bound. Throws UsageError for invalid params, like `create`.
   */
  guaranteedRecoverable(params: FecParams): number;
  /** Whether the scheme can run here (its wasm/native part loads). */
  availability(): Availability;
  /** Throws UsageError for invalid params, PluginError when the scheme is unavailable. */
  create(params: FecParams): FecCodec;
}

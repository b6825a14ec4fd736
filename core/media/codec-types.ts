/**
 * The codec extension contract. Built-in codecs (src/plugins/codec-*) and third-party
 * `wzp-plugin-*` packages implement exactly this.
 *
 * The pipeline speaks one PCM format at the codec boundary: mono, signed 16-bit, 48 kHz.
 * A codec that works at another rate (Codec2 at 8 kHz) resamples inside itself.
 */

/** The sample rate of PCM crossing the codec boundary. */
export const PIPELINE_SAMPLE_RATE = 48_000;

export interface CodecOptions {
  /** Frame duration in milliseconds; must be one of the factory's `frameDurationsMs`. */
  frameMs: number;
  /** Target bitrate in bits/s for codecs that take one; ignored by fixed-rate codecs. */
  bitrate?: number;
}

export interface Codec {
  readonly name: string;
  /** Samples per frame at PIPELINE_SAMPLE_RATE (960 for 20 ms). */
  readonly frameSamples: number;
  /** Encode exactly `frameSamples` samples. Throws a PluginError for a wrong-sized frame. */
  encode(pcm: Int16Array): Uint8Array;
  /** Decode one payload to exactly `frameSamples` samples. Throws DecodeError on bad input. */
  decode(payload: Uint8Array): Int16Array;
  /**
   * Produce a concealment frame for a lost packet (packet-loss concealment). Codecs without
   * their own PLC may omit this; the pipeline then fades the last frame out.
   */
  conceal?(): Int16Array;
  /** Release native resources. Safe to call twice. */
  close(): void;
}

export type Availability = { available: true } | { available: false; reason: string; hint?: string };

export interface CodecFactory {
  /** Unique name used on the command line (`--codec NAME`). Lowercase, [a-z0-9-]. */
  readonly name: string;
  /** Version of this codec implementation (semver). */
  readonly version: string;
  /**
   * Codec id carried in the media header. 0-63 are reserved for wzp's built-in codecs;
   * third-party codecs take an id from 64-254. Two codecs may not share an id.
   */
  readonly codecId: number;
  readonly description: string;
  /** Frame durations this codec supports, in ms. */
  readonly frameDurationsMs: readonly number[];
  /** Nominal bitrate at the default settings, bits/s (for listings and budgets). */
  readonly nominalBitrate: number;
  /**
   * For waveform codecs: the SNR in dB (aligned, over the whole signal) that a round trip of
   * the wzp test signal keeps at the default settings. The compliance suite holds the codec
   * to it. Vocoders, which do not preserve the waveform, omit it.
   */
  readonly minRoundTripSnrDb?: number;
  /** Whether the codec can run here (native library present, etc.). */
  availability(): Availability;
  create(options: CodecOptions): Codec;
}

/** Samples per frame at the pipeline rate for a frame duration. */
export function frameSamplesFor(frameMs: number): number {
  return (PIPELINE_SAMPLE_RATE * frameMs) / 1000;
}

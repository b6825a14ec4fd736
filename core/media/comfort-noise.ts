/**
 * Comfort noise: while the VAD hears no speech, a sender may stop sending audio frames and
 * instead send, every few hundred milliseconds, a silence descriptor (SID) of a few bytes:
 * the background noise's level and the rough shape of its spectrum. The receiver plays
 * noise of that level and shape, so the call does not fall dead silent between words.
 *
 * Spectral shape: six bands at 48 kHz, each a second-order filter (RBJ cookbook biquads):
 * a low-pass below 354 Hz, one-octave band-passes centred on 500, 1000, 2000 and 4000 Hz,
 * and a high-pass above 5657 Hz, which tile the spectrum at their -3 dB points. A band's
 * "share" is the fraction of the filter-bank output power it holds.
 *
 * SID payload (1 or 7 bytes):
 * ```
 *  0          1          2                     6
 * +-+--------+-+--------+-+--------+   ...   +-+--------+
 * |R| level  |R| band 0 |R| band 1 |         |R| band 5 |
 * +-+--------+-+--------+-+--------+   ...   +-+--------+
 *  R      reserved bit, must be 0
 *  level  noise level as -dBFS, 0..127 (0 dBFS = full-scale square wave)
 *  band   optional, all six or none: the band's share of the power as -dB, 0..127
 *         (1 dB steps; 127 = nothing in that band). Without bands the noise is white.
 * ```
 * Level and shares are quantised to 1 dB, as in RFC 3389's level byte.
 *
 * The receiver's generator draws from a seeded PRNG: the same seed and SIDs give the same
 * noise, sample for sample.
 */
import { DecodeError, InternalError } from '../errors.js';
import { PIPELINE_SAMPLE_RATE } from './codec-types.js';
import { Prng } from './prng.js';
import { dbToPower, frameEnergyDb, powerToDb } from './vad.js';

export const SID_FORMAT = 'sid';
/** Number of spectral bands in a SID. */
export const SID_BANDS = 6;
export const SID_LEVEL_ONLY_BYTES = 1;
export const SID_WITH_BANDS_BYTES = 1 + SID_BANDS;
/** The quietest level or band share a SID can express, dB (inaudible: in effect silence). */
export const SID_FLOOR_DB = -127;
const RESERVED_BIT = 0x80;
const DEFAULT_FRAME_SAMPLES = 960;
const ANALYSIS_TIME_CONSTANT_S = 0.1;
/** Uniform noise on ±sqrt(3) has variance 1. */
const UNIT_VARIANCE_HALF_WIDTH = Math.sqrt(3);
const OCTAVE_Q = Math.SQRT2;
const BUTTERWORTH_Q = Math.SQRT1_2;
/** Long enough for every band's impulse response to decay below double precision. */
const IMPULSE_RESPONSE_SAMPLES = 4800;

type BandDesign = { kind: 'lowpass' | 'bandpass' | 'highpass'; frequencyHz: number; q: number };

const BAND_DESIGNS: readonly BandDesign[] = [
  { kind: 'lowpass', frequencyHz: 250 * Math.SQRT2, q: BUTTERWORTH_Q },
  { kind: 'bandpass', frequencyHz: 500, q: OCTAVE_Q },
  { kind: 'bandpass', frequencyHz: 1000, q: OCTAVE_Q },
  { kind: 'bandpass', frequencyHz: 2000, q: OCTAVE_Q },
  { kind: 'bandpass', frequencyHz: 4000, q: OCTAVE_Q },
  { kind: 'highpass', frequencyHz: 4000 * Math.SQRT2, q: BUTTERWORTH_Q },
];

/** The noise a SID describes. */
export interface SidDescription {
  /** Noise level (mean power), dBFS. Quantised to whole dB within -127..0. */
  levelDb: number;
  /**
   * Optional spectral shape: for each of the SID_BANDS bands, its share of the noise power
   * in dB (<= 0; the shares' powers add up to 1). Quantised to whole dB within -127..0.
   */
  bandLevelsDb?: readonly number[];
}

/** Encode a SID. Values outside the format's range are clamped; NaN is a bug. */
export function encodeSid(sid: SidDescription): Uint8Array {
  const bands = sid.bandLevelsDb;
  if (bands !== undefined && bands.length !== SID_BANDS) {
    throw new InternalError(`sid: expected ${SID_BANDS} band levels, got ${bands.length}`);
  }
  const values = [sid.levelDb, ...(bands ?? [])];
  return Uint8Array.from(values, (db) => {
    if (Number.isNaN(db)) throw new InternalError('sid: a level is NaN');
    return Math.round(-Math.min(0, Math.max(SID_FLOOR_DB, db)));
  });
}

/** Decode a SID payload. Throws DecodeError for anything but a well-formed 1- or 7-byte SID. */
export function decodeSid(bytes: Uint8Array): SidDescription {
  if (bytes.length !== SID_LEVEL_ONLY_BYTES && bytes.length !== SID_WITH_BANDS_BYTES) {
    throw new DecodeError(
      SID_FORMAT,
      bytes.length === 0 ? 'truncated' : 'wrong-length',
      `payload is ${bytes.length} bytes, expected ${SID_LEVEL_ONLY_BYTES} or ${SID_WITH_BANDS_BYTES}`,
    );
  }
  const index = bytes.findIndex((byte) => (byte & RESERVED_BIT) !== 0);
  if (index !== -1) throw new DecodeError(SID_FORMAT, 'reserved-bit', `byte ${index} has its reserved bit set`);
  const levelDb = byteToDb(bytes[0]);
  if (bytes.length === SID_LEVEL_ONLY_BYTES) return { levelDb };
  return { levelDb, bandLevelsDb: Array.from(bytes.subarray(1), byteToDb) };
}

/** A SID byte's value in dB: its negation (as 0 - byte, so that byte 0 is 0 dB, not -0). */
function byteToDb(byte: number): number {
  return 0 - byte;
}

/**
 * Sender side: measures the background noise (feed it the frames the VAD calls silence)
 * and describes it for a SID. Level and band powers are averaged with a 100 ms time constant.
 */
export class NoiseAnalyzer {
  private readonly filters = createFilterBank();
  private levelPower: number | undefined;
  private readonly bandPowers = new Float64Array(SID_BANDS);

  /** Take in one frame of background noise (any length). */
  analyze(frame: Int16Array): void {
    if (frame.length === 0) return;
    const framePower = dbToPower(frameEnergyDb(frame));
    const frameBands = this.filters.map((filter) => filter.outputPower(frame));
    if (this.levelPower === undefined) {
      this.levelPower = framePower;
      this.bandPowers.set(frameBands);
      return;
    }
    const weight = 1 - Math.exp(-frame.length / (ANALYSIS_TIME_CONSTANT_S * PIPELINE_SAMPLE_RATE));
    this.levelPower += weight * (framePower - this.levelPower);
    frameBands.forEach((power, b) => (this.bandPowers[b] += weight * (power - this.bandPowers[b])));
  }

  /** The noise heard so far (silence before any frame), ready for encodeSid(). */
  describe(): SidDescription {
    if (this.levelPower === undefined) return { levelDb: SID_FLOOR_DB };
    const total = this.bandPowers.reduce((sum, power) => sum + power, 0);
    const levelDb = powerToDb(this.levelPower);
    if (total === 0) return { levelDb };
    return { levelDb, bandLevelsDb: Array.from(this.bandPowers, (power) => shareToDb(power / total)) };
  }
}

/**
 * Receiver side: plays noise matching the latest SID. Each band is independent uniform noise
 * through that band's filter, scaled so the band carries its share of the SID's level. A new
 * SID takes effect with a linear ramp over the next generated frame (no steps in level).
 */
export class ComfortNoiseGenerator {
  private readonly prng: Prng;
  private readonly filters = createFilterBank();
  /** Standard deviation of each band's noise before its filter, now and after the ramp. */
  private gains = new Float64Array(SID_BANDS);
  private targetGains = new Float64Array(SID_BANDS);

  constructor(seed = 1) {
    this.prng = new Prng(seed);
  }

  /** Switch to the noise a (decoded) SID describes. */
  update(sid: SidDescription): void {
    if (Number.isNaN(sid.levelDb)) throw new InternalError('comfort noise: the SID level is NaN');
    const power = dbToPower(sid.levelDb);
    const shares = sid.bandLevelsDb === undefined ? WHITE_NOISE_SHARES : normalisedShares(sid.bandLevelsDb);
    this.targetGains = Float64Array.from(shares, (share, b) => Math.sqrt((power * share) / BAND_POWER_GAINS[b]));
  }

  /** The next `samples` samples of comfort noise (silence until the first SID). */
  generate(samples = DEFAULT_FRAME_SAMPLES): Int16Array {
    if (!Number.isInteger(samples) || samples < 0) {
      throw new InternalError(`comfort noise: sample count must be a non-negative integer, got ${samples}`);
    }
    const mix = new Float64Array(samples);
    for (let b = 0; b < SID_BANDS; b++) this.addBand(mix, b);
    this.gains = this.targetGains;
    const out = new Int16Array(samples);
    for (let i = 0; i < samples; i++) out[i] = Math.max(-32768, Math.min(32767, Math.round(mix[i])));
    return out;
  }

  private addBand(mix: Float64Array, band: number): void {
    const from = this.gains[band];
    const to = this.targetGains[band];
    const filter = this.filters[band];
    for (let i = 0; i < mix.length; i++) {
      const gain = from + ((to - from) * (i + 1)) / mix.length;
      mix[i] += filter.step(gain * this.prng.uniform(-UNIT_VARIANCE_HALF_WIDTH, UNIT_VARIANCE_HALF_WIDTH));
    }
  }
}

/** A biquad filter, transposed direct form II, coefficients normalised by a0. */
class Biquad {
  private s1 = 0;
  private s2 = 0;

  constructor(
    private readonly b0: number,
    private readonly b1: number,
    private readonly b2: number,
    private readonly a1: number,
    private readonly a2: number,
  ) {}

  static design({ kind, frequencyHz, q }: BandDesign): Biquad {
    const w0 = (2 * Math.PI * frequencyHz) / PIPELINE_SAMPLE_RATE;
    const cos = Math.cos(w0);
    const alpha = Math.sin(w0) / (2 * q);
    const a0 = 1 + alpha;
    const [b0, b1, b2] =
      kind === 'lowpass'
        ? [(1 - cos) / 2, 1 - cos, (1 - cos) / 2]
        : kind === 'highpass'
          ? [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
          : [alpha, 0, -alpha];
    return new Biquad(b0 / a0, b1 / a0, b2 / a0, (-2 * cos) / a0, (1 - alpha) / a0);
  }

  step(x: number): number {
    const y = this.b0 * x + this.s1;
    this.s1 = this.b1 * x - this.a1 * y + this.s2;
    this.s2 = this.b2 * x - this.a2 * y;
    return y;
  }

  /** Filter the next chunk of the stream; return the output's mean square. */
  outputPower(input: Int16Array): number {
    let sum = 0;
    for (let i = 0; i < input.length; i++) sum += this.step(input[i]) ** 2;
    return sum / input.length;
  }
}

function createFilterBank(): Biquad[] {
  return BAND_DESIGNS.map((design) => Biquad.design(design));
}

/** Output power of each band's filter for unit-variance white noise: the sum of h[n]^2. */
const BAND_POWER_GAINS: readonly number[] = BAND_DESIGNS.map((design) => {
  const filter = Biquad.design(design);
  let energy = 0;
  for (let n = 0; n < IMPULSE_RESPONSE_SAMPLES; n++) energy += filter.step(n === 0 ? 1 : 0) ** 2;
  return energy;
});

/** The band shares white noise has: what a level-only SID sounds like. */
const WHITE_NOISE_SHARES: readonly number[] = normalise(BAND_POWER_GAINS);

/** Shares from a SID's band levels, renormalised (quantisation leaves their sum near 1). */
function normalisedShares(bandLevelsDb: readonly number[]): readonly number[] {
  if (bandLevelsDb.length !== SID_BANDS) {
    throw new InternalError(`comfort noise: expected ${SID_BANDS} band levels, got ${bandLevelsDb.length}`);
  }
  return normalise(bandLevelsDb.map((db) => 10 ** (db / 10)));
}

function normalise(values: readonly number[]): readonly number[] {
  const total = values.reduce((sum, value) => sum + value, 0);
  return total > 0 ? values.map((value) => value / total) : WHITE_NOISE_SHARES;
}

function shareToDb(share: number): number {
  return share > 0 ? Math.max(SID_FLOOR_DB, 10 * Math.log10(share)) : SID_FLOOR_DB;
}

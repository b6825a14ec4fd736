/**
 * Signal and statistics analysis for echo tests and codec checks: time alignment with SNR,
 * segmental SNR, percentiles and the RFC 3550 interarrival jitter estimator.
 */
import { InternalError } from '../errors.js';

/** SNR results are clamped to this range so they stay finite (and JSON-serialisable). */
export const MAX_SNR_DB = 100;
export const MIN_SNR_DB = -100;

/** Segmental SNR conventions (as in ITU-T P.Sup23 style measurements). */
const SEGMENT_SNR_FLOOR_DB = -10;
const SEGMENT_SNR_CEILING_DB = 35;
/** Reference segments quieter than this RMS (about -60 dBFS) are skipped as silence. */
const SILENT_SEGMENT_RMS = 32.767;
/** 20 ms at 48 kHz. */
const DEFAULT_SEGMENT_SAMPLES = 960;

/** Decimation factor of the coarse lag search, and the fine search radius around its pick. */
const COARSE_DECIMATION = 8;
const FINE_RADIUS = 2 * COARSE_DECIMATION;

export interface AlignOptions {
  /** Largest lag (in samples, either direction) to consider. */
  maxLagSamples: number;
}

export interface AlignmentResult {
  /** SNR of the received signal against the reference over their aligned overlap, dB. */
  snrDb: number;
  /** `received[n + lagSamples]` lines up with `reference[n]`; positive = received is late. */
  lagSamples: number;
  /** Mean per-20 ms-segment SNR over the aligned overlap (NaN if the reference is silent). */
  segmentalSnrDb: number;
  /** Normalised cross-correlation at the chosen lag (-1..1). */
  correlation: number;
}

/**
 * Find the lag within ±maxLagSamples that maximises the normalised cross-correlation of
 * `received` against `reference`, then measure SNR over the overlapping part.
 *
 * The search is coarse-to-fine: a full search on 8x block-averaged signals, then a
 * sample-exact search in a small window around the coarse pick (5 s at 48 kHz with a
 * 50 ms lag range takes a few tens of milliseconds).
 *
 * Silence received against a signal gives 0 dB; nothing received gives MIN_SNR_DB.
 */
export function alignAndSnr(reference: Int16Array, received: Int16Array, options: AlignOptions): AlignmentResult {
  const maxLag = Math.floor(options.maxLagSamples);
  if (!(maxLag >= 0)) throw new InternalError(`alignAndSnr: maxLagSamples must be >= 0, got ${options.maxLagSamples}`);
  const ref = Float64Array.from(reference);
  const rec = Float64Array.from(received);
  const minOverlap = Math.max(1, Math.floor(Math.min(ref.length, rec.length) / 2));

  const best = bestLag(ref, rec, maxLag, minOverlap);
  if (best === undefined) {
    return { snrDb: MIN_SNR_DB, lagSamples: 0, segmentalSnrDb: Number.NaN, correlation: 0 };
  }
  const start = Math.max(0, -best.lag);
  const end = Math.min(reference.length, received.length - best.lag);
  const alignedRef = reference.subarray(start, end);
  const alignedRec = received.subarray(start + best.lag, end + best.lag);
  return {
    snrDb: snr(alignedRef, alignedRec),
    lagSamples: best.lag,
    segmentalSnrDb: segmentalSnr(alignedRef, alignedRec),
    correlation: best.correlation,
  };
}

interface LagCandidate {
  lag: number;
  correlation: number;
}

function bestLag(ref: Float64Array, rec: Float64Array, maxLag: number, minOverlap: number): LagCandidate | undefined {
  let low = 0 - maxLag; // not -maxLag, which is -0 when maxLag is 0
  let high = maxLag;
  if (maxLag > FINE_RADIUS) {
    const coarse = searchLags(
      new Correlator(decimate(ref, COARSE_DECIMATION), decimate(rec, COARSE_DECIMATION)),
      -Math.ceil(maxLag / COARSE_DECIMATION),
      Math.ceil(maxLag / COARSE_DECIMATION),
      Math.max(1, Math.floor(minOverlap / COARSE_DECIMATION)),
    );
    if (coarse !== undefined) {
      low = Math.max(-maxLag, coarse.lag * COARSE_DECIMATION - FINE_RADIUS);
      high = Math.min(maxLag, coarse.lag * COARSE_DECIMATION + FINE_RADIUS);
    }
  }
  return searchLags(new Correlator(ref, rec), low, high, minOverlap);
}

function searchLags(correlator: Correlator, low: number, high: number, minOverlap: number): LagCandidate | undefined {
  let best: LagCandidate | undefined;
  for (let lag = low; lag <= high; lag++) {
    const correlation = correlator.at(lag, minOverlap);
    if (correlation !== undefined && (best === undefined || correlation > best.correlation)) {
      best = { lag, correlation };
    }
  }
  return best;
}

/** Normalised cross-correlation at any lag, with energies from prefix sums. */
class Correlator {
  private readonly refEnergy: Float64Array;
  private readonly recEnergy: Float64Array;

  constructor(
    private readonly ref: Float64Array,
    private readonly rec: Float64Array,
  ) {
    this.refEnergy = prefixEnergy(ref);
    this.recEnergy = prefixEnergy(rec);
  }

  /** Correlation at `lag`, or undefined when the overlap is shorter than `minOverlap`. */
  at(lag: number, minOverlap: number): number | undefined {
    const start = Math.max(0, -lag);
    const end = Math.min(this.ref.length, this.rec.length - lag);
    if (end - start < minOverlap) return undefined;
    const eRef = this.refEnergy[end] - this.refEnergy[start];
    const eRec = this.recEnergy[end + lag] - this.recEnergy[start + lag];
    if (eRef <= 0 || eRec <= 0) return 0;
    let dot = 0;
    for (let n = start; n < end; n++) dot += this.ref[n] * this.rec[n + lag];
    return dot / Math.sqrt(eRef * eRec);
  }
}

function prefixEnergy(x: Float64Array): Float64Array {
  const out = new Float64Array(x.length + 1);
  for (let i = 0; i < x.length; i++) out[i + 1] = out[i] + x[i] * x[i];
  return out;
}

/** Block-average decimation (a crude low-pass, good enough for a coarse lag estimate). */
function decimate(x: Float64Array, factor: number): Float64Array {
  const out = new Float64Array(Math.floor(x.length / factor));
  for (let i = 0; i < out.length; i++) {
    let sum = 0;
    for (let k = 0; k < factor; k++) sum += x[i * factor + k];
    out[i] = sum / factor;
  }
  return out;
}

/** SNR in dB of `received` against `reference` (same length, already aligned). */
function snr(reference: Int16Array, received: Int16Array): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = reference[i] - received[i];
    signal += reference[i] * reference[i];
    noise += d * d;
  }
  return energyRatioDb(signal, noise);
}

/** Identical signals (no noise, including silence vs silence) give MAX_SNR_DB. */
function energyRatioDb(signal: number, noise: number): number {
  if (noise === 0) return MAX_SNR_DB;
  if (signal === 0) return MIN_SNR_DB;
  return clamp(10 * Math.log10(signal / noise), MIN_SNR_DB, MAX_SNR_DB);
}

/**
 * Segmental SNR of two aligned signals: the mean of per-segment SNRs, each clamped to
 * [-10, 35] dB, over segments where the reference is not silent (RMS >= ~-60 dBFS).
 * Returns NaN when the reference has no such segment.
 */
export function segmentalSnr(
  reference: Int16Array,
  received: Int16Array,
  segmentSamples = DEFAULT_SEGMENT_SAMPLES,
): number {
  const length = Math.min(reference.length, received.length);
  let total = 0;
  let counted = 0;
  for (let start = 0; start + segmentSamples <= length; start += segmentSamples) {
    const ref = reference.subarray(start, start + segmentSamples);
    if (rms(ref) < SILENT_SEGMENT_RMS) continue;
    total += clamp(snr(ref, received.subarray(start, start + segmentSamples)), SEGMENT_SNR_FLOOR_DB, SEGMENT_SNR_CEILING_DB);
    counted++;
  }
  return counted === 0 ? Number.NaN : total / counted;
}

/** Root mean square of the samples (0 for an empty input). */
export function rms(samples: ArrayLike<number>): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length);
}

/**
 * The p-th percentile (0..100) with linear interpolation between closest ranks (the
 * common "type 7" definition). NaN for an empty input.
 */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new InternalError(`percentile: p must be within 0..100, got ${p}`);
  return percentileOfSorted(Float64Array.from(values).sort(), p);
}

function percentileOfSorted(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (rank - below);
}

export interface Summary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  max: number;
}

/** Count, mean, median, 95th percentile and maximum (NaN statistics for an empty input). */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    p50: percentileOfSorted(sorted, 50),
    p95: percentileOfSorted(sorted, 95),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1],
  };
}

/**
 * Interarrival jitter as defined in RFC 3550 section 6.4.1 (code in appendix A.8):
 * for consecutive packets i, j, D = (Rj - Ri) - (Sj - Si) and J += (|D| - J) / 16, with
 * arrival times R and media timestamps S both in milliseconds.
 */
export class Rfc3550JitterEstimator {
  private jitter = 0;
  private previous: { arrivalMs: number; timestamp: number } | undefined;

  /** @param clockRateHz media timestamp units per second (48000 for the media header's). */
  constructor(private readonly clockRateHz: number) {
    if (!(clockRateHz > 0)) throw new InternalError(`jitter estimator: clock rate must be > 0, got ${clockRateHz}`);
  }

  /**
   * Account for one received packet. `mediaTimestamp` is an unsigned 32-bit timestamp in
   * clock-rate units that may wrap around, as in the media header. Returns the updated
   * jitter in ms.
   */
  update(arrivalMs: number, mediaTimestamp: number): number {
    if (this.previous !== undefined) {
      const mediaTicks = (mediaTimestamp - this.previous.timestamp) | 0; // signed 32-bit difference
      const d = arrivalMs - this.previous.arrivalMs - (mediaTicks * 1000) / this.clockRateHz;
      this.jitter += (Math.abs(d) - this.jitter) / 16;
    }
    this.previous = { arrivalMs, timestamp: mediaTimestamp };
    return this.jitter;
  }

  /** Current interarrival jitter estimate in milliseconds. */
  get jitterMs(): number {
    return this.jitter;
  }
}

function clamp(x: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, x));
}

/**
 * Sub-frame time stretching of decoded audio, for the jitter buffer's fine delay control.
 *
 * The jitter buffer can only move its delay by a whole frame (20 ms) by dropping or
 * inserting frames. To settle a few milliseconds above its target it asks the caller to
 * shorten (or lengthen) one decoded frame by part of a frame. This module does that the way
 * WSOLA / NetEq's accelerate and preemptive-expand do: find a lag L (in [minLag, maxLag])
 * at which the signal resembles itself (highest normalised cross-correlation between the
 * window at `start` and the window L samples later), then cross-fade across it, so that L
 * samples disappear (compress) or repeat (expand) without a discontinuity:
 *
 * ```
 *   compress:  x[0, s)  +  fade(x[s, s+W) -> x[s+L, s+L+W))  +  x[s+L+W, N)      N - L samples
 *   expand:    x[0, s+L)  +  fade(x[s+L, s+L+W) -> x[s, s+W))  +  x[s+W, N)      N + L samples
 * ```
 *
 * Each seam joins samples that were neighbours in the input, and the fade runs between two
 * windows that match (periodic or quiet), so the output stays continuous. When nothing in
 * range matches well enough (unvoiced or transient audio at speaking level), the frame is
 * left as it is: the caller simply tries again on a later frame.
 */
import { PIPELINE_SAMPLE_RATE } from './codec-types.js';

const SAMPLES_PER_MS = PIPELINE_SAMPLE_RATE / 1000;
/** Samples at the start of the frame kept untouched (continuity with the previous output). */
const LEAD_SAMPLES = 2 * SAMPLES_PER_MS;
/** Cross-fade / correlation window: 5 ms covers a pitch period of most voices. */
const WINDOW_SAMPLES = 5 * SAMPLES_PER_MS;
/** Shortest lag removed or inserted: 1 ms (below that a stretch is not worth a fade). */
export const MIN_STRETCH_SAMPLES = SAMPLES_PER_MS;
/** Normalised correlation a lag needs before audio at speaking level is stretched (NetEq uses ~0.9 for voiced speech). */
const MIN_CORRELATION = 0.8;
/** RMS below which audio counts as quiet and any lag will do (about -50 dBFS). */
const QUIET_RMS = 100;
/** Among lags correlating within this of the best, prefer the longest (remove or insert more per fade). */
const CORRELATION_SLACK = 0.02;

export interface StretchResult {
  /** The stretched audio (the input itself when nothing was done). */
  pcm: Int16Array;
  /** Samples added (> 0) or removed (< 0); 0 when the frame was left as it is. */
  changedSamples: number;
}

/** Shorten `pcm` by between MIN_STRETCH_SAMPLES and `maxRemoveSamples` samples, if it can be done seamlessly. */
export function compressAudio(pcm: Int16Array, maxRemoveSamples: number): StretchResult {
  const lag = bestLag(pcm, MIN_STRETCH_SAMPLES, Math.floor(maxRemoveSamples));
  if (lag === undefined) return { pcm, changedSamples: 0 };
  const s = LEAD_SAMPLES;
  const w = WINDOW_SAMPLES;
  const out = new Int16Array(pcm.length - lag);
  out.set(pcm.subarray(0, s), 0);
  crossFade(out, s, pcm, s, s + lag, w);
  out.set(pcm.subarray(s + lag + w), s + w);
  return { pcm: out, changedSamples: -lag };
}

/**
 * Lengthen `pcm` by between `minInsertSamples` and `maxInsertSamples` samples, if it can be
 * done seamlessly; with `force`, at the best-matching lag even when it matches poorly (when
 * the caller needs the time more than the smoothness: the alternative is a whole frame of
 * concealment).
 */
export function expandAudio(pcm: Int16Array, minInsertSamples: number, maxInsertSamples: number, force = false): StretchResult {
  const lag = bestLag(pcm, Math.max(MIN_STRETCH_SAMPLES, Math.ceil(minInsertSamples)), Math.floor(maxInsertSamples), force);
  if (lag === undefined) return { pcm, changedSamples: 0 };
  const s = LEAD_SAMPLES;
  const w = WINDOW_SAMPLES;
  const out = new Int16Array(pcm.length + lag);
  out.set(pcm.subarray(0, s + lag), 0);
  crossFade(out, s + lag, pcm, s + lag, s, w);
  out.set(pcm.subarray(s + w), s + lag + w);
  return { pcm: out, changedSamples: lag };
}

/** Longest lag the frame has room for (the window after the lag must fit). */
export function maxStretchSamples(frameSamples: number): number {
  return Math.max(0, frameSamples - LEAD_SAMPLES - WINDOW_SAMPLES);
}

/** out[at + i] = fade from a[from + i] to a[to + i] over n samples (raised cosine). */
function crossFade(out: Int16Array, at: number, a: Int16Array, from: number, to: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = 0.5 - 0.5 * Math.cos((Math.PI * (i + 0.5)) / n);
    out[at + i] = Math.round(a[from + i] * (1 - g) + a[to + i] * g);
  }
}

/**
 * The lag in [minLag, maxLag] at which the window at LEAD_SAMPLES best matches the window
 * `lag` samples later, or undefined if none matches well enough (or none fits).
 */
function bestLag(pcm: Int16Array, minLag: number, maxLag: number, force = false): number | undefined {
  const s = LEAD_SAMPLES;
  const w = WINDOW_SAMPLES;
  const hi = Math.min(maxLag, pcm.length - s - w);
  if (!(hi >= minLag)) return undefined;
  let e0 = 0;
  for (let i = 0; i < w; i++) e0 += pcm[s + i] * pcm[s + i];
  // Energy of the window at s + lag, slid along the lags.
  let eL = 0;
  for (let i = 0; i < w; i++) eL += pcm[s + minLag + i] * pcm[s + minLag + i];
  let span = 0;
  for (let i = s; i < s + hi + w; i++) span += pcm[i] * pcm[i];
  const quiet = Math.sqrt(span / (hi + w)) < QUIET_RMS;
  if (quiet) return hi;
  const corr = new Float64Array(hi + 1);
  let best = -Infinity;
  for (let lag = minLag; lag <= hi; lag++) {
    if (lag > minLag) {
      const out = pcm[s + lag - 1];
      const inn = pcm[s + lag + w - 1];
      eL += inn * inn - out * out;
    }
    let dot = 0;
    for (let i = 0; i < w; i++) dot += pcm[s + i] * pcm[s + lag + i];
    const denom = Math.sqrt(e0 * Math.max(eL, 0));
    const c = denom > 0 ? dot / denom : 0;
    corr[lag] = c;
    if (c > best) best = c;
  }
  if (best < MIN_CORRELATION && !force) return undefined;
  for (let lag = hi; lag >= minLag; lag--) if (corr[lag] >= best - CORRELATION_SLACK) return lag;
  return undefined;
}

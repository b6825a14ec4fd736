/**
 * Sample-rate conversion: integer ratios (48 kHz <-> 16 kHz, 48 kHz <-> 8 kHz, ...) for codecs
 * that run below the pipeline rate, and rational ones (44.1 kHz <-> 48 kHz, 22.05 kHz -> 48 kHz,
 * ...) for WAV files at the other common rates (audio devices still use integer ratios only:
 * docs/audio.md).
 *
 * One linear-phase low-pass FIR (windowed sinc, Kaiser window) serves as the anti-aliasing
 * filter when decimating and the anti-imaging filter when interpolating; interpolation runs
 * it in polyphase form. A resampler is stateful: it keeps the filter history between calls,
 * so a stream resampled frame by frame is identical to the stream resampled in one go.
 *
 * Filter: 64 taps per phase of the ratio (192 taps for 3:1, 384 for 6:1), cut-off centred at
 * 92% of the lower rate's Nyquist frequency, Kaiser beta 8 (about 80 dB stop-band). The pass
 * band reaches ~6.7 kHz at 16 kHz and ~3.4 kHz at 8 kHz; the stop band starts at the lower
 * rate's Nyquist frequency. Delay: (taps - 1) / 2 samples at the higher rate (~2 ms at 3:1).
 *
 * A rational ratio L/M (in lowest terms: 44.1 -> 48 kHz is 160/147) runs the same design at
 * the virtual rate input x L: one polyphase branch per phase of L, 64 taps per branch (more
 * when M > L, so the transition band stays as narrow relative to the output rate), and each
 * output sample takes the branch its position falls on. Tables for L or M above
 * MAX_RATIONAL_FACTOR (unusual rates such as 44,101 Hz) are refused with a usage error.
 *
 * Hand-written, by choice rather than for want of a library: @alexanderolsen/libsamplerate-js
 * (libsamplerate in wasm) would do it, but it starts asynchronously, works on Float32, and would
 * be a second filter design next to the one the codecs' integer ratios already use here; the
 * rational case is that same filter in polyphase form. node-libsamplerate needs cmake and a
 * toolchain at install.
 */
import { InternalError, UsageError } from '../errors.js';

const TAPS_PER_PHASE = 64;
const CUTOFF_FRACTION_OF_NYQUIST = 0.92;
const KAISER_BETA = 8;
/** Largest L or M of a rational ratio (a 44.1 kHz -> 48 kHz table is L = 160: 10,240 taps). */
export const MAX_RATIONAL_FACTOR = 1000;

export interface Resampler {
  readonly inputRate: number;
  readonly outputRate: number;
  /** Resample the next chunk of the stream. Output length follows the ratio exactly over time. */
  process(input: Int16Array): Int16Array;
}

/** A resampler between two different rates (whole Hz). */
export function createResampler(inputRate: number, outputRate: number): Resampler {
  for (const rate of [inputRate, outputRate]) {
    if (!(Number.isSafeInteger(rate) && rate > 0)) throw new UsageError(`resampler: a sample rate is a whole number of Hz, got ${rate}`);
  }
  if (inputRate === outputRate) throw new InternalError(`resampler: ${inputRate} Hz -> ${outputRate} Hz is no conversion`);
  if (inputRate > outputRate && Number.isInteger(inputRate / outputRate)) {
    return new Decimator(inputRate, outputRate);
  }
  if (outputRate > inputRate && Number.isInteger(outputRate / inputRate)) {
    return new Interpolator(inputRate, outputRate);
  }
  const divisor = gcd(inputRate, outputRate);
  const up = outputRate / divisor;
  const down = inputRate / divisor;
  if (Math.max(up, down) > MAX_RATIONAL_FACTOR) {
    throw new UsageError(`cannot resample ${inputRate} Hz to ${outputRate} Hz: the ratio ${up}/${down} is too fine`, {
      suggestions: [`convert the audio to a common rate first, e.g. \`sox in.wav -r ${outputRate} out.wav\``],
    });
  }
  return new RationalResampler(inputRate, outputRate, up, down);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Low-pass for a `factor`:1 rate change, designed at the higher rate, DC gain 1. */
function lowpassTaps(factor: number, length = factor * TAPS_PER_PHASE): Float64Array {
  const cutoff = (CUTOFF_FRACTION_OF_NYQUIST * 0.5) / factor; // cycles per high-rate sample
  const centre = (length - 1) / 2;
  const taps = new Float64Array(length);
  let sum = 0;
  for (let n = 0; n < length; n++) {
    const t = n - centre;
    const sinc = t === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * t) / (Math.PI * t);
    taps[n] = sinc * kaiser(n, length, KAISER_BETA);
    sum += taps[n];
  }
  for (let n = 0; n < length; n++) taps[n] /= sum;
  return taps;
}

function kaiser(n: number, length: number, beta: number): number {
  const r = (2 * n) / (length - 1) - 1;
  return besselI0(beta * Math.sqrt(1 - r * r)) / besselI0(beta);
}

/** Modified Bessel function of the first kind, order 0 (power series). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const halfX = x / 2;
  for (let k = 1; term > 1e-12 * sum; k++) {
    term *= (halfX / k) * (halfX / k);
    sum += term;
  }
  return sum;
}

/** Filter, then keep every factor-th sample. */
class Decimator implements Resampler {
  private readonly factor: number;
  private readonly taps: Float64Array;
  /** The last taps.length - 1 input samples. */
  private history: Float64Array;
  /** Input samples to pass over before the next output sample. */
  private skip = 0;

  constructor(
    readonly inputRate: number,
    readonly outputRate: number,
  ) {
    this.factor = inputRate / outputRate;
    this.taps = lowpassTaps(this.factor);
    this.history = new Float64Array(this.taps.length - 1);
  }

  process(input: Int16Array): Int16Array {
    const taps = this.taps;
    const historyLength = taps.length - 1;
    const work = withHistory(this.history, input);
    const outputCount = input.length > this.skip ? Math.ceil((input.length - this.skip) / this.factor) : 0;
    const out = new Int16Array(outputCount);
    for (let o = 0, newest = historyLength + this.skip; o < outputCount; o++, newest += this.factor) {
      let acc = 0;
      for (let k = 0; k < taps.length; k++) acc += taps[k] * work[newest - k];
      out[o] = toInt16(acc);
    }
    this.skip += outputCount * this.factor - input.length;
    this.history = work.slice(work.length - historyLength);
    return out;
  }
}

/** Insert factor - 1 zeros between samples and filter, computed per polyphase branch. */
class Interpolator implements Resampler {
  private readonly factor: number;
  /** phases[p][k] = factor * h[p + k * factor]: the branch producing output p of each input. */
  private readonly phases: Float64Array[];
  /** The last TAPS_PER_PHASE - 1 input samples. */
  private history = new Float64Array(TAPS_PER_PHASE - 1);

  constructor(
    readonly inputRate: number,
    readonly outputRate: number,
  ) {
    this.factor = outputRate / inputRate;
    const taps = lowpassTaps(this.factor);
    this.phases = Array.from({ length: this.factor }, (_, p) =>
      Float64Array.from({ length: TAPS_PER_PHASE }, (_, k) => this.factor * taps[p + k * this.factor]),
    );
  }

  process(input: Int16Array): Int16Array {
    const historyLength = TAPS_PER_PHASE - 1;
    const work = withHistory(this.history, input);
    const out = new Int16Array(input.length * this.factor);
    for (let i = 0; i < input.length; i++) {
      const newest = historyLength + i;
      for (let p = 0; p < this.factor; p++) {
        const branch = this.phases[p];
        let acc = 0;
        for (let k = 0; k < TAPS_PER_PHASE; k++) acc += branch[k] * work[newest - k];
        out[i * this.factor + p] = toInt16(acc);
      }
    }
    this.history = work.slice(work.length - historyLength);
    return out;
  }
}

/**
 * Rational ratio up/down: conceptually insert up - 1 zeros between input samples, filter at
 * input x up, keep every down-th sample; computed per output sample with the polyphase branch
 * its position (a multiple of `down` on the virtual grid) falls on.
 */
class RationalResampler implements Resampler {
  /** branches[p][k] = up * h[p + k * up]: the taps that meet input samples at phase p. */
  private readonly branches: Float64Array[];
  private readonly tapsPerBranch: number;
  /** The last tapsPerBranch - 1 input samples. */
  private history: Float64Array;
  /** Virtual-grid position of the next output sample, relative to the next input sample's. */
  private position = 0;

  constructor(
    readonly inputRate: number,
    readonly outputRate: number,
    private readonly up: number,
    private readonly down: number,
  ) {
    this.tapsPerBranch = Math.ceil((TAPS_PER_PHASE * Math.max(up, down)) / up);
    // The filter's delay, (length - 1) / 2 virtual samples, is a whole number of output
    // samples when length = 2 m down + 1: the output is the input delayed by m samples, with
    // no fractional shift (what analysis by sample alignment needs). Zeros pad the table.
    const length = 2 * Math.floor((this.tapsPerBranch * up - 1) / (2 * down)) * down + 1;
    const taps = lowpassTaps(Math.max(up, down), length);
    this.branches = Array.from({ length: up }, (_, p) =>
      Float64Array.from({ length: this.tapsPerBranch }, (_, k) => up * (taps[p + k * up] ?? 0)),
    );
    this.history = new Float64Array(this.tapsPerBranch - 1);
  }

  process(input: Int16Array): Int16Array {
    const { up, down, tapsPerBranch } = this;
    const historyLength = tapsPerBranch - 1;
    const work = withHistory(this.history, input);
    const end = input.length * up;
    const outputCount = this.position < end ? Math.ceil((end - this.position) / down) : 0;
    const out = new Int16Array(outputCount);
    let position = this.position;
    for (let o = 0; o < outputCount; o++, position += down) {
      const newest = historyLength + Math.floor(position / up);
      const branch = this.branches[position % up];
      let acc = 0;
      for (let k = 0; k < tapsPerBranch; k++) acc += branch[k] * work[newest - k];
      out[o] = toInt16(acc);
    }
    this.position = position - end;
    this.history = work.slice(work.length - historyLength);
    return out;
  }
}

function withHistory(history: Float64Array, input: Int16Array): Float64Array {
  const work = new Float64Array(history.length + input.length);
  work.set(history);
  work.set(input, history.length);
  return work;
}

function toInt16(x: number): number {
  return Math.max(-32768, Math.min(32767, Math.round(x)));
}

/**
 * Test-signal generators for echo tests and codec checks. Everything here is mono, signed
 * 16-bit at the pipeline rate (48 kHz) and fully deterministic.
 */
import { InternalError } from '../errors.js';
import { PIPELINE_SAMPLE_RATE } from './codec-types.js';

const FULL_SCALE = 32767;

/** Frequency range of the test signal's glide. */
const GLIDE_LOW_HZ = 400;
const GLIDE_HIGH_HZ = 2000;
/**
 * The glide is a triangle in log frequency (low -> high -> low) whose sweep rate itself
 * wanders slowly between ~0.6 and ~1.6 sweeps per second. A constant rate would make the
 * signal resemble itself one period later; a smooth (sinusoidal) glide would dwell at its
 * turning points, where consecutive frames look alike. This track does neither.
 */
const GLIDE_SWEEPS_PER_S = 1 / 0.91;
const GLIDE_WANDER_SWEEPS = 0.3;
const GLIDE_WANDER_PERIOD_S = 3.71;
/** Amplitude envelope: centre ± depth (fractions of full scale) at an incommensurate rate. */
const ENVELOPE_CENTRE = 0.35;
const ENVELOPE_DEPTH = 0.15;
const ENVELOPE_HZ = 2.3;

/** Number of samples at the pipeline rate in `durationMs` (rounded to the nearest sample). */
export function samplesForMs(durationMs: number): number {
  return Math.round((PIPELINE_SAMPLE_RATE * durationMs) / 1000);
}

/**
 * A sine tone. `amplitude` is the peak as a fraction of full scale (0..1, default 0.5).
 */
export function tone(freqHz: number, durationMs: number, amplitude = 0.5): Int16Array {
  const out = new Int16Array(samplesForMs(durationMs));
  const step = (2 * Math.PI * freqHz) / PIPELINE_SAMPLE_RATE;
  for (let i = 0; i < out.length; i++) {
    out[i] = toInt16(amplitude * Math.sin(step * i));
  }
  return out;
}

/**
 * The echo-test signal: a tone gliding 400 Hz -> 2 kHz -> 400 Hz at a slowly varying rate,
 * under a gentle 2.3 Hz amplitude envelope (0.2..0.5 of full scale).
 *
 * Unlike a periodic sine, consecutive 20 ms frames are never alike and the signal does not
 * resemble a shifted copy of itself, so cross-correlation finds one unambiguous alignment
 * and a shift by whole frames is detectable.
 */
export function testSignal(durationMs: number): Int16Array {
  const out = new Int16Array(samplesForMs(durationMs));
  let phase = 0;
  for (let i = 0; i < out.length; i++) {
    const t = i / PIPELINE_SAMPLE_RATE;
    const envelope = ENVELOPE_CENTRE + ENVELOPE_DEPTH * Math.sin(2 * Math.PI * ENVELOPE_HZ * t);
    out[i] = toInt16(envelope * Math.sin(phase));
    phase += (2 * Math.PI * glideFrequencyHz(t)) / PIPELINE_SAMPLE_RATE;
  }
  return out;
}

/** Instantaneous frequency of the test signal at time `t` seconds. */
function glideFrequencyHz(t: number): number {
  const sweeps = t * GLIDE_SWEEPS_PER_S + GLIDE_WANDER_SWEEPS * Math.sin((2 * Math.PI * t) / GLIDE_WANDER_PERIOD_S);
  const position = sweeps - Math.floor(sweeps);
  const triangle = position < 0.5 ? 2 * position : 2 - 2 * position;
  return GLIDE_LOW_HZ * (GLIDE_HIGH_HZ / GLIDE_LOW_HZ) ** triangle;
}

/**
 * Cut `pcm` into frames of `frameSamples`. Whole frames are views into `pcm` (no copy); a
 * trailing partial frame is copied and zero-padded to full length.
 */
export function splitFrames(pcm: Int16Array, frameSamples: number): Int16Array[] {
  if (!Number.isInteger(frameSamples) || frameSamples <= 0) {
    throw new InternalError(`splitFrames: frameSamples must be a positive integer, got ${frameSamples}`);
  }
  const frames: Int16Array[] = [];
  for (let start = 0; start < pcm.length; start += frameSamples) {
    const end = start + frameSamples;
    if (end <= pcm.length) {
      frames.push(pcm.subarray(start, end));
    } else {
      const last = new Int16Array(frameSamples);
      last.set(pcm.subarray(start));
      frames.push(last);
    }
  }
  return frames;
}

/** A fraction of full scale (-1..1) as a clamped 16-bit sample. */
function toInt16(x: number): number {
  return Math.max(-32768, Math.min(FULL_SCALE, Math.round(x * FULL_SCALE)));
}

/**
 * Generated test signals for the DSP tests (48 kHz mono, deterministic, no recordings).
 *
 * `syntheticVoice` is speech-like enough for a vocoder and for RNNoise: a glottal pulse
 * train (pitch declining over the utterance, with vibrato, 1% jitter and 5% shimmer),
 * tilted -6 dB/octave, through three formant resonators that glide between six vowels, in
 * 220 ms syllables: four syllables, then a 440 ms pause.
 */
import { Prng } from '../../core/media/prng.js';
import { samplesForMs } from '../../core/media/tone.js';

const SAMPLE_RATE = 48_000;
const FULL_SCALE = 32768;
const SYLLABLE_SAMPLES = samplesForMs(220);
/** Syllable slots per phrase; the last PAUSE_SLOTS of them are silent. */
const PHRASE_SLOTS = 6;
const PAUSE_SLOTS = 2;
/** Formant frequencies (F1, F2, F3) of /a/, /i/, /e/, /u/, /æ/, /o/-like vowels, Hz. */
const VOWELS: ReadonlyArray<readonly [number, number, number]> = [
  [730, 1090, 2440],
  [270, 2290, 3010],
  [570, 840, 2410],
  [300, 870, 2240],
  [660, 1720, 2410],
  [440, 1020, 2240],
];
const FORMANT_BANDWIDTHS_HZ = [80, 120, 160];
const FORMANT_GAINS = [1, 0.7, 0.35];
/** Fraction of a syllable after which its formants glide to the next vowel's. */
const GLIDE_START = 0.6;

export interface VoiceOptions {
  /** RMS level of the whole signal, dBFS (default -21). */
  levelDb?: number;
  /** Starting pitch, Hz (default 130). */
  f0Hz?: number;
  seed?: number;
}

/** A resonator y[n] = g x[n] - a1 y[n-1] - a2 y[n-2] whose centre and bandwidth may vary per sample. */
class Resonator {
  private y1 = 0;
  private y2 = 0;

  step(x: number, frequencyHz: number, bandwidthHz: number): number {
    const r = Math.exp((-Math.PI * bandwidthHz) / SAMPLE_RATE);
    const a1 = -2 * r * Math.cos((2 * Math.PI * frequencyHz) / SAMPLE_RATE);
    const a2 = r * r;
    const y = (1 + a1 + a2) * x - a1 * this.y1 - a2 * this.y2;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

export function syntheticVoice(durationMs: number, options: VoiceOptions = {}): Int16Array {
  const { levelDb = -21, f0Hz = 130, seed = 1 } = options;
  const random = new Prng(seed);
  const formants = FORMANT_GAINS.map(() => new Resonator());
  const out = new Float64Array(samplesForMs(durationMs));
  let nextPulse = 0;
  let glottal = 0;
  for (let i = 0; i < out.length; i++) {
    const t = i / SAMPLE_RATE;
    let excitation = 0;
    if (i >= nextPulse) {
      const f0 = f0Hz * (1 - 0.04 * t + 0.08 * Math.sin(2 * Math.PI * 1.3 * t)) * (1 + 0.01 * random.normal());
      nextPulse = i + SAMPLE_RATE / f0;
      excitation = 1 + 0.05 * random.normal();
    }
    glottal = 0.97 * glottal + excitation;
    const position = i / SYLLABLE_SAMPLES;
    const syllable = Math.floor(position);
    const within = position - syllable;
    const glide = Math.min(1, Math.max(0, (within - GLIDE_START) / (1 - GLIDE_START)));
    const [from, to] = [VOWELS[syllable % VOWELS.length], VOWELS[(syllable + 1) % VOWELS.length]];
    let voiced = 0;
    formants.forEach((resonator, k) => {
      const frequency = from[k] + (to[k] - from[k]) * glide;
      voiced += FORMANT_GAINS[k] * resonator.step(glottal, frequency, FORMANT_BANDWIDTHS_HZ[k]);
    });
    const envelope = isPauseSyllable(syllable) ? 0 : Math.sin(Math.PI * within) ** 0.6;
    out[i] = envelope * (voiced + 0.02 * random.normal());
  }
  return scaleToLevel(out, levelDb);
}

/** Sample ranges [start, end) where syntheticVoice() is silent. */
export function voicePauses(durationMs: number): Array<[number, number]> {
  const total = samplesForMs(durationMs);
  const pauses: Array<[number, number]> = [];
  const phraseSamples = PHRASE_SLOTS * SYLLABLE_SAMPLES;
  for (let phrase = 0; phrase < total; phrase += phraseSamples) {
    const start = phrase + (PHRASE_SLOTS - PAUSE_SLOTS) * SYLLABLE_SAMPLES;
    if (start < total) pauses.push([start, Math.min(total, phrase + phraseSamples)]);
  }
  return pauses;
}

function isPauseSyllable(syllable: number): boolean {
  return syllable % PHRASE_SLOTS >= PHRASE_SLOTS - PAUSE_SLOTS;
}

/** Gaussian white noise at an RMS level in dBFS. */
export function whiteNoise(samples: number, levelDb: number, seed = 1): Int16Array {
  const random = new Prng(seed);
  const sd = FULL_SCALE * 10 ** (levelDb / 20);
  return Int16Array.from({ length: samples }, () => clamp(random.normal(0, sd)));
}

/** White noise through a one-pole low-pass: a rumbly, strongly non-white background. */
export function lowpassNoise(samples: number, levelDb: number, cutoffHz: number, seed = 1): Int16Array {
  const random = new Prng(seed);
  const pole = Math.exp((-2 * Math.PI * cutoffHz) / SAMPLE_RATE);
  let state = 0;
  const out = Float64Array.from({ length: samples }, () => (state = pole * state + (1 - pole) * random.normal()));
  return scaleToLevel(out, levelDb);
}

/** Sample-wise sum, clamped to 16 bits. */
export function mix(a: Int16Array, b: Int16Array): Int16Array {
  return Int16Array.from({ length: Math.min(a.length, b.length) }, (_, i) => clamp(a[i] + b[i]));
}

/** Mean power in dBFS (0 dBFS = full-scale square wave), -Infinity for silence. */
export function dbfs(samples: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return 10 * Math.log10(sum / samples.length / (FULL_SCALE * FULL_SCALE));
}

function scaleToLevel(signal: Float64Array, targetDb: number): Int16Array {
  const gain = 10 ** ((targetDb - dbfs(signal)) / 20);
  return Int16Array.from(signal, (x) => clamp(x * gain));
}

function clamp(x: number): number {
  return Math.max(-32768, Math.min(32767, Math.round(x)));
}

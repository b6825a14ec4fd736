/**
 * Speech-like test material, generated: voiced "syllables" (a glottal pulse train with a
 * wandering pitch, shaped by three formant resonators that move from syllable to syllable),
 * unvoiced fricative bursts, and pauses between words. It has what matters to a VoIP pipeline:
 * speech-band spectrum and pitch, syllabic amplitude modulation, and silences for VAD. It is
 * deterministic for a seed. (Real recorded speech can be passed to `wzp sweep --input`.)
 */
import { Prng } from './prng.js';
import { PIPELINE_SAMPLE_RATE } from './codec-types.js';

/** Vowel formant sets (F1, F2, F3 in Hz), roughly /a e i o u/ of an adult voice. */
const VOWELS: readonly [number, number, number][] = [
  [730, 1090, 2440],
  [530, 1840, 2480],
  [270, 2290, 3010],
  [570, 840, 2410],
  [300, 870, 2240],
];

/** A two-pole resonator (formant filter) at frequency f with bandwidth bw. */
class Resonator {
  private y1 = 0;
  private y2 = 0;
  private a1 = 0;
  private a2 = 0;
  private gain = 0;
  tune(f: number, bw: number): void {
    const r = Math.exp((-Math.PI * bw) / PIPELINE_SAMPLE_RATE);
    this.a1 = 2 * r * Math.cos((2 * Math.PI * f) / PIPELINE_SAMPLE_RATE);
    this.a2 = -r * r;
    this.gain = 1 - r;
  }
  step(x: number): number {
    const y = this.gain * x + this.a1 * this.y1 + this.a2 * this.y2;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

export function speechLike(durationMs: number, seed = 1): Int16Array {
  const rng = new Prng(seed);
  const total = Math.round((durationMs * PIPELINE_SAMPLE_RATE) / 1000);
  const out = new Float64Array(total);
  const formants = [new Resonator(), new Resonator(), new Resonator()];
  let i = 0;
  let phase = 0;
  while (i < total) {
    // A word: 1-4 syllables, then a pause.
    const syllables = 1 + Math.floor(rng.next() * 4);
    for (let s = 0; s < syllables && i < total; s++) {
      const len = Math.round(PIPELINE_SAMPLE_RATE * (0.12 + rng.next() * 0.16));
      const vowel = VOWELS[Math.floor(rng.next() * VOWELS.length)];
      formants.forEach((f, n) => f.tune(vowel[n] * (0.9 + rng.next() * 0.2), 60 + n * 40));
      const pitch0 = 100 + rng.next() * 120;
      const fricative = rng.next() < 0.3;
      for (let n = 0; n < len && i < total; n++, i++) {
        const t = n / len;
        const envelope = Math.sin(Math.PI * t) ** 0.6;
        const pitch = pitch0 * (1 + 0.08 * Math.sin(2 * Math.PI * 3 * t));
        phase += pitch / PIPELINE_SAMPLE_RATE;
        let excitation = 0;
        if (phase >= 1) {
          phase -= 1;
          excitation = 1;
        }
        if (fricative && t < 0.25) excitation = (rng.next() - 0.5) * 0.6; // an /s/-like onset
        let y = 0;
        for (const f of formants) y += f.step(excitation);
        out[i] = y * envelope;
      }
    }
    i += Math.round(PIPELINE_SAMPLE_RATE * (0.08 + rng.next() * 0.3)); // pause between words
  }
  // Normalise to a speech-like level: peak at about -3 dBFS.
  let peak = 0;
  for (const v of out) peak = Math.max(peak, Math.abs(v));
  const scale = peak > 0 ? (0.7 * 32767) / peak : 0;
  return Int16Array.from(out, (v) => Math.round(v * scale));
}

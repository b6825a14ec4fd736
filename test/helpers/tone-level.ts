/** Measuring a tone in decoded audio, for the call tests. */

/**
 * Amplitude of a tone at `f` Hz in the last `seconds` of 48 kHz `pcm` (a single-bin DFT), in
 * sample units: a full-scale-amplitude A sine reads ~A.
 */
export function toneLevel(pcm: Int16Array, f: number, seconds = 2): number {
  const n = Math.min(pcm.length, 48000 * seconds);
  const start = pcm.length - n;
  let re = 0;
  let im = 0;
  const w = (2 * Math.PI * f) / 48000;
  for (let i = 0; i < n; i++) {
    re += pcm[start + i] * Math.cos(w * i);
    im += pcm[start + i] * Math.sin(w * i);
  }
  return (2 * Math.sqrt(re * re + im * im)) / Math.max(1, n);
}

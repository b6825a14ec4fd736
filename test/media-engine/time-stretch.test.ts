/**
 * Sub-frame time stretching: a frame shortened or lengthened by a cross-fade at a lag where
 * the signal repeats stays continuous and keeps its level; audio with no such lag at speaking
 * level is left alone (unless forced); quiet audio is cut freely.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rms } from '../../core/media/analysis.js';
import { Prng } from '../../core/media/prng.js';
import { compressAudio, expandAudio, maxStretchSamples, MIN_STRETCH_SAMPLES } from '../../core/media/time-stretch.js';

const N = 960;

/** A voiced-like frame: harmonics of `f0` (non-integer period in samples), amplitude ~8000. */
function voiced(f0: number, start = 0, length = N): Int16Array {
  return Int16Array.from({ length }, (_, i) => {
    const t = (start + i) / 48000;
    return Math.round(5000 * Math.sin(2 * Math.PI * f0 * t) + 2500 * Math.sin(2 * Math.PI * 2 * f0 * t + 0.3) + 1200 * Math.sin(2 * Math.PI * 3 * f0 * t + 1));
  });
}

function noise(level: number, seed: number, length = N): Int16Array {
  const prng = new Prng(seed);
  return Int16Array.from({ length }, () => Math.round((prng.next() - 0.5) * 2 * level * Math.sqrt(3)));
}

/** Largest step between neighbouring samples. */
function maxStep(pcm: Int16Array): number {
  let m = 0;
  for (let i = 1; i < pcm.length; i++) m = Math.max(m, Math.abs(pcm[i] - pcm[i - 1]));
  return m;
}

describe('time stretch', () => {
  for (const f0 of [110, 173.3, 440]) {
    it(`compresses a ${f0} Hz voiced frame by a whole number of its periods, without a jump`, () => {
      const frame = voiced(f0);
      const { pcm, changedSamples } = compressAudio(frame, 480);
      const removed = -changedSamples;
      assert.ok(removed >= MIN_STRETCH_SAMPLES && removed <= 480, `removed ${removed}`);
      assert.equal(pcm.length, N - removed);
      const period = 48000 / f0;
      const periods = removed / period;
      assert.ok(Math.abs(periods - Math.round(periods)) < 0.1, `${removed} samples is ${periods.toFixed(2)} periods`);
      // Continuous: no step larger than the signal's own steepest one (plus rounding).
      assert.ok(maxStep(pcm) <= maxStep(frame) * 1.05 + 2, `step ${maxStep(pcm)} vs ${maxStep(frame)}`);
      assert.ok(Math.abs(rms(pcm) / rms(frame) - 1) < 0.05, 'level kept');
      // Joined to the next frame of the same signal, still continuous.
      const joined = Int16Array.from([...pcm, ...voiced(f0, N, 100)]);
      assert.ok(maxStep(joined) <= maxStep(frame) * 1.05 + 2);
    });

    it(`expands a ${f0} Hz voiced frame by at least what is asked, without a jump`, () => {
      const frame = voiced(f0);
      const { pcm, changedSamples } = expandAudio(frame, 200, maxStretchSamples(N));
      assert.ok(changedSamples >= 200 && changedSamples <= maxStretchSamples(N), `added ${changedSamples}`);
      assert.equal(pcm.length, N + changedSamples);
      assert.ok(maxStep(pcm) <= maxStep(frame) * 1.05 + 2, `step ${maxStep(pcm)} vs ${maxStep(frame)}`);
      assert.ok(Math.abs(rms(pcm) / rms(frame) - 1) < 0.05, 'level kept');
      const joined = Int16Array.from([...pcm, ...voiced(f0, N, 100)]);
      assert.ok(maxStep(joined) <= maxStep(frame) * 1.05 + 2);
    });
  }

  it('leaves loud noise alone (nothing repeats), unless an expansion is forced', () => {
    const frame = noise(3000, 1);
    assert.deepEqual(compressAudio(frame, 480), { pcm: frame, changedSamples: 0 });
    assert.equal(expandAudio(frame, 100, 400).changedSamples, 0);
    const forced = expandAudio(frame, 100, 400, true);
    assert.ok(forced.changedSamples >= 100 && forced.pcm.length === N + forced.changedSamples);
  });

  it('cuts quiet audio by as much as allowed', () => {
    const frame = noise(20, 2);
    const { pcm, changedSamples } = compressAudio(frame, 300);
    assert.equal(changedSamples, -300);
    assert.equal(pcm.length, N - 300);
  });

  it('does nothing when less than the shortest stretch is allowed or the frame is too short', () => {
    const frame = voiced(440);
    assert.equal(compressAudio(frame, MIN_STRETCH_SAMPLES - 1).changedSamples, 0);
    assert.equal(compressAudio(voiced(440, 0, 300), 200).changedSamples, 0);
    assert.equal(maxStretchSamples(300), 0);
  });
});

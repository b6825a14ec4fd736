import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { splitFrames, testSignal, tone } from '../../core/media/tone.js';

function correlation(a: Int16Array, b: Int16Array): number {
  let dot = 0;
  let ea = 0;
  let eb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    ea += a[i] * a[i];
    eb += b[i] * b[i];
  }
  return dot / Math.sqrt(ea * eb);
}

describe('tone', () => {
  test('has 48 samples per ms and the requested peak', () => {
    const t = tone(1000, 20, 0.25);
    assert.equal(t.length, 960);
    assert.equal(Math.max(...t), Math.round(0.25 * 32767));
    assert.equal(t[0], 0);
    assert.equal(t[12], Math.round(0.25 * 32767)); // quarter period of 1 kHz
  });
});

describe('testSignal', () => {
  const signal = testSignal(5000);

  test('is 5 s long, deterministic and stays within half of full scale', () => {
    assert.equal(signal.length, 240_000);
    assert.deepEqual(testSignal(5000), signal);
    const peak = signal.reduce((max, s) => Math.max(max, Math.abs(s)), 0);
    assert.ok(peak <= 16_384 && peak > 16_000, `peak ${peak}`);
  });

  test('does not resemble itself shifted by whole 20 ms frames', () => {
    for (let frames = 1; frames <= 100; frames++) {
      const lag = frames * 960;
      const c = correlation(signal.subarray(0, signal.length - lag), signal.subarray(lag));
      assert.ok(Math.abs(c) < 0.1, `correlation ${c.toFixed(3)} at a shift of ${frames} frames`);
    }
  });

  test('consecutive frames are never alike', () => {
    const frames = splitFrames(signal, 960);
    for (let i = 0; i + 1 < frames.length; i++) {
      const c = correlation(frames[i], frames[i + 1]);
      assert.ok(c < 0.9, `frames ${i} and ${i + 1}: correlation ${c.toFixed(3)}`);
    }
  });
});

describe('splitFrames', () => {
  test('returns views for whole frames and zero-pads the tail', () => {
    const pcm = Int16Array.from({ length: 25 }, (_, i) => i + 1);
    const frames = splitFrames(pcm, 10);
    assert.equal(frames.length, 3);
    assert.equal(frames[0].buffer, pcm.buffer);
    assert.deepEqual([...frames[1]], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert.deepEqual([...frames[2]], [21, 22, 23, 24, 25, 0, 0, 0, 0, 0]);
    assert.deepEqual(splitFrames(new Int16Array(0), 10), []);
  });

  test('rejects a frame size that is not a positive integer', () => {
    assert.throws(() => splitFrames(new Int16Array(4), 0), { name: 'InternalError' });
    assert.throws(() => splitFrames(new Int16Array(4), 1.5), { name: 'InternalError' });
  });
});

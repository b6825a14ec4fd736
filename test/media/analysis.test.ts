import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  MAX_SNR_DB,
  Rfc3550JitterEstimator,
  alignAndSnr,
  percentile,
  rms,
  segmentalSnr,
  summarize,
} from '../../core/media/analysis.js';
import { Prng } from '../../core/media/prng.js';
import { testSignal, tone } from '../../core/media/tone.js';

const MAX_LAG = 2400; // 50 ms at 48 kHz

/** `signal` delayed by `lag` samples (negative: advanced), same length, zero-filled. */
function shifted(signal: Int16Array, lag: number): Int16Array {
  const out = new Int16Array(signal.length);
  if (lag >= 0) out.set(signal.subarray(0, signal.length - lag), lag);
  else out.set(signal.subarray(-lag));
  return out;
}

/** Deterministic uniform noise with the given RMS. */
function noise(length: number, rmsValue: number): Int16Array {
  const random = new Prng(7);
  const peak = rmsValue * Math.sqrt(3);
  return Int16Array.from({ length }, () => Math.round(random.uniform(-peak, peak)));
}

describe('alignAndSnr', () => {
  const reference = testSignal(5000);

  test('identical signals: lag 0 and the SNR ceiling', () => {
    const result = alignAndSnr(reference, reference.slice(), { maxLagSamples: MAX_LAG });
    assert.equal(result.lagSamples, 0);
    assert.equal(result.snrDb, MAX_SNR_DB);
    assert.ok(result.correlation > 0.9999);
  });

  test('silence received against a signal gives <= 0 dB', () => {
    const result = alignAndSnr(reference, new Int16Array(reference.length), { maxLagSamples: MAX_LAG });
    assert.ok(result.snrDb <= 0, `snr ${result.snrDb}`);
  });

  test('nothing received gives a very low SNR', () => {
    assert.ok(alignAndSnr(reference, new Int16Array(0), { maxLagSamples: MAX_LAG }).snrDb <= -50);
  });

  test('finds the lag of a delayed copy and measures SNR over the overlap', () => {
    const result = alignAndSnr(reference, shifted(reference, 1234), { maxLagSamples: MAX_LAG });
    assert.equal(result.lagSamples, 1234);
    assert.equal(result.snrDb, MAX_SNR_DB);
  });

  test('finds any lag within range, in either direction', () => {
    const second = testSignal(1000);
    fc.assert(
      fc.property(fc.integer({ min: -MAX_LAG, max: MAX_LAG }), (lag) => {
        assert.equal(alignAndSnr(second, shifted(second, lag), { maxLagSamples: MAX_LAG }).lagSamples, lag);
      }),
      { numRuns: 30 },
    );
  });

  test('a copy shifted by a whole frame is not mistaken for aligned at lag 0', () => {
    const late = shifted(reference, 960);
    assert.equal(alignAndSnr(reference, late, { maxLagSamples: MAX_LAG }).lagSamples, 960);
    const forcedToZero = alignAndSnr(reference, late, { maxLagSamples: 0 });
    assert.equal(forcedToZero.lagSamples, 0);
    assert.ok(forcedToZero.snrDb < 1, `unaligned snr ${forcedToZero.snrDb}`);
    assert.ok(Math.abs(forcedToZero.correlation) < 0.1, `unaligned correlation ${forcedToZero.correlation}`);
  });

  test('measures added noise at the right SNR, through a delay', () => {
    const noiseAt20Db = noise(reference.length, rms(reference) / 10);
    const delayed = shifted(Int16Array.from(reference, (s, i) => s + noiseAt20Db[i]), 300);
    const result = alignAndSnr(reference, delayed, { maxLagSamples: MAX_LAG });
    assert.equal(result.lagSamples, 300);
    assert.ok(Math.abs(result.snrDb - 20) < 0.3, `snr ${result.snrDb}`);
  });

  test('aligns 5 s with a 50 ms lag range quickly', () => {
    const late = shifted(reference, 777);
    const start = performance.now();
    alignAndSnr(reference, late, { maxLagSamples: MAX_LAG });
    assert.ok(performance.now() - start < 1000);
  });
});

describe('segmentalSnr', () => {
  test('clamps identical segments at 35 dB and skips silent reference segments', () => {
    const signal = testSignal(200);
    assert.equal(segmentalSnr(signal, signal), 35);
    const withSilence = new Int16Array(2 * signal.length);
    withSilence.set(signal);
    assert.equal(segmentalSnr(withSilence, withSilence), 35);
  });

  test('is NaN when the reference is silent throughout', () => {
    assert.ok(Number.isNaN(segmentalSnr(new Int16Array(4800), testSignal(100))));
  });

  test('scores silence received at 0 dB and floors worse segments at -10 dB', () => {
    const signal = testSignal(200);
    assert.equal(segmentalSnr(signal, new Int16Array(signal.length)), 0);
    assert.equal(segmentalSnr(tone(500, 200, 0.1), tone(1000, 200, 0.9)), -10);
  });
});

describe('statistics', () => {
  const oneToHundred = Array.from({ length: 100 }, (_, i) => i + 1);

  test('percentile interpolates between ranks', () => {
    assert.equal(percentile(oneToHundred, 0), 1);
    assert.equal(percentile(oneToHundred, 50), 50.5);
    assert.ok(Math.abs(percentile(oneToHundred, 95) - 95.05) < 1e-9);
    assert.equal(percentile(oneToHundred, 100), 100);
    assert.equal(percentile([42], 95), 42);
    assert.equal(percentile([3, 1, 2], 50), 2);
  });

  test('percentile rejects p outside 0..100 and is NaN for no values', () => {
    assert.throws(() => percentile([1], 101), { name: 'InternalError' });
    assert.ok(Number.isNaN(percentile([], 50)));
  });

  test('summarize', () => {
    assert.deepEqual(summarize(oneToHundred.slice().reverse()), { count: 100, mean: 50.5, p50: 50.5, p95: 95.05, max: 100 });
    const empty = summarize([]);
    assert.equal(empty.count, 0);
    assert.ok(Number.isNaN(empty.p95) && Number.isNaN(empty.mean));
  });

  test('rms', () => {
    assert.equal(rms([]), 0);
    assert.equal(rms([3, -3, 3, -3]), 3);
  });
});

describe('Rfc3550JitterEstimator', () => {
  test('constant network delay gives zero jitter', () => {
    const jitter = new Rfc3550JitterEstimator(48_000);
    for (let i = 0; i < 100; i++) jitter.update(1000 + 37 + 20 * i, 960 * i);
    assert.equal(jitter.jitterMs, 0);
  });

  test('alternating delays converge as J += (|D| - J) / 16', () => {
    const jitter = new Rfc3550JitterEstimator(48_000);
    for (let i = 0; i < 50; i++) {
      const delayMs = i % 2 === 0 ? 10 : 30; // |D| = 20 ms for every packet after the first
      const estimate = jitter.update(20 * i + delayMs, 960 * i);
      const expected = 20 * (1 - (15 / 16) ** i);
      assert.ok(Math.abs(estimate - expected) < 1e-9, `packet ${i}: ${estimate} vs ${expected}`);
    }
    assert.ok(jitter.jitterMs > 19 && jitter.jitterMs < 20);
  });

  test('handles 32-bit timestamp wrap-around', () => {
    const jitter = new Rfc3550JitterEstimator(48_000);
    const start = 2 ** 32 - 3 * 960;
    for (let i = 0; i < 10; i++) jitter.update(20 * i, (start + 960 * i) % 2 ** 32);
    assert.equal(jitter.jitterMs, 0);
  });

  test('converts media timestamps with the clock rate', () => {
    const jitter = new Rfc3550JitterEstimator(8_000);
    jitter.update(0, 0);
    jitter.update(40 + 16, 320); // 320 ticks at 8 kHz = 40 ms, arrived 16 ms late
    assert.equal(jitter.jitterMs, 1);
  });
});

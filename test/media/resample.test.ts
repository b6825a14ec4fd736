import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alignAndSnr, rms } from '../../core/media/analysis.js';
import { createResampler, type Resampler } from '../../core/media/resample.js';
import { splitFrames, tone } from '../../core/media/tone.js';

/** Run `signal` through `resampler` in 20 ms frames, as a codec would. */
function inFrames(resampler: Resampler, signal: Int16Array, frameSamples: number): Int16Array {
  const parts = splitFrames(signal, frameSamples).map((frame) => resampler.process(frame));
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function roundTrip(lowRate: number, signal: Int16Array): Int16Array {
  const low = inFrames(createResampler(48_000, lowRate), signal, 960);
  return inFrames(createResampler(lowRate, 48_000), low, (lowRate / 1000) * 20);
}

/** RMS ignoring the first `skip` samples (filter start-up). */
function steadyRms(x: Int16Array, skip: number): number {
  return rms(x.subarray(skip));
}

describe('resampler', () => {
  test('a 1 kHz tone survives 48k -> 16k -> 48k with SNR > 30 dB', () => {
    const signal = tone(1000, 1000);
    const result = alignAndSnr(signal, roundTrip(16_000, signal), { maxLagSamples: 480 });
    assert.ok(result.snrDb > 30, `snr ${result.snrDb}`);
  });

  test('a 1 kHz tone survives 48k -> 8k -> 48k with SNR > 30 dB', () => {
    const signal = tone(1000, 1000);
    const result = alignAndSnr(signal, roundTrip(8_000, signal), { maxLagSamples: 960 });
    assert.ok(result.snrDb > 30, `snr ${result.snrDb}`);
  });

  test('the 48k -> 8k path removes a 7 kHz tone instead of aliasing it to 1 kHz', () => {
    const signal = tone(7000, 1000);
    const low = inFrames(createResampler(48_000, 8_000), signal, 960);
    const attenuationDb = 20 * Math.log10(steadyRms(low, 160) / rms(signal));
    assert.ok(attenuationDb < -60, `7 kHz attenuated by only ${-attenuationDb.toFixed(1)} dB`);
  });

  test('the 48k -> 16k path removes a 12 kHz tone and passes 3 kHz', () => {
    const high = inFrames(createResampler(48_000, 16_000), tone(12_000, 500), 960);
    assert.ok(20 * Math.log10(steadyRms(high, 320) / rms(tone(12_000, 500))) < -60);
    const passband = inFrames(createResampler(48_000, 16_000), tone(3000, 500), 960);
    assert.ok(Math.abs(20 * Math.log10(steadyRms(passband, 320) / rms(tone(3000, 500)))) < 0.1);
  });

  test('the 8k -> 48k path suppresses images of a 1 kHz tone', () => {
    const low = inFrames(createResampler(48_000, 8_000), tone(1000, 1000), 960);
    const high = inFrames(createResampler(8_000, 48_000), low, 160);
    // Images of 1 kHz at 8 kHz sit at 7, 9, 15, 17, ... kHz: whatever is not the 1 kHz tone is error.
    const result = alignAndSnr(tone(1000, 1000), high, { maxLagSamples: 960 });
    assert.ok(result.snrDb > 40, `snr ${result.snrDb}`);
  });

  test('frame boundaries are seamless: chunked output equals one-shot output', () => {
    const signal = tone(1234, 200);
    for (const [from, to] of [
      [48_000, 16_000],
      [48_000, 8_000],
      [16_000, 48_000],
      [8_000, 48_000],
      [44_100, 48_000],
      [48_000, 44_100],
      [22_050, 48_000],
      [48_000, 32_000],
    ]) {
      const whole = createResampler(from, to).process(signal);
      const chunked = createResampler(from, to);
      const parts: number[] = [];
      for (let start = 0; start < signal.length; start += 7) parts.push(...chunked.process(signal.subarray(start, start + 7)));
      assert.deepEqual(Int16Array.from(parts), whole, `${from} -> ${to}`);
    }
  });

  test('output lengths follow the ratio', () => {
    assert.equal(createResampler(48_000, 16_000).process(new Int16Array(960)).length, 320);
    assert.equal(createResampler(48_000, 8_000).process(new Int16Array(960)).length, 160);
    assert.equal(createResampler(16_000, 48_000).process(new Int16Array(320)).length, 960);
    assert.equal(createResampler(8_000, 48_000).process(new Int16Array(160)).length, 960);
  });

  test('44.1 kHz and 22.05 kHz material comes out at 48 kHz as the same tone (SNR > 40 dB)', () => {
    for (const rate of [44_100, 22_050, 11_025]) {
      const input = toneAt(rate, 1000, 1000);
      const out = inFrames(createResampler(rate, 48_000), input, 147);
      assert.equal(out.length, 48_000, `${rate} Hz: one second in, one second out`);
      const result = alignAndSnr(tone(1000, 1000), out, { maxLagSamples: 480 });
      assert.ok(result.snrDb > 40, `${rate} Hz: snr ${result.snrDb}`);
    }
  });

  test('48k -> 44.1k keeps a 1 kHz tone (SNR > 40 dB) and removes a 23 kHz tone', () => {
    const down = inFrames(createResampler(48_000, 44_100), tone(1000, 1000), 960);
    assert.equal(down.length, 44_100);
    const result = alignAndSnr(toneAt(44_100, 1000, 1000), down, { maxLagSamples: 441 });
    assert.ok(result.snrDb > 40, `snr ${result.snrDb}`);
    const ultrasonic = inFrames(createResampler(48_000, 44_100), tone(23_000, 500), 960);
    const attenuationDb = 20 * Math.log10(steadyRms(ultrasonic, 882) / rms(tone(23_000, 500)));
    assert.ok(attenuationDb < -60, `23 kHz attenuated by only ${-attenuationDb.toFixed(1)} dB (it would alias to 21.1 kHz)`);
  });

  test('rational ratios: output lengths follow the ratio, also chunk by chunk', () => {
    for (const [from, to] of [
      [44_100, 48_000],
      [48_000, 44_100],
      [22_050, 48_000],
    ]) {
      assert.equal(createResampler(from, to).process(new Int16Array(from / 10)).length, to / 10, `${from} -> ${to}`);
    }
    const r = createResampler(44_100, 48_000);
    let total = 0;
    for (let i = 0; i < 100; i++) total += r.process(new Int16Array(441)).length;
    assert.equal(total, 48_000);
  });

  test('a ratio too fine for a filter table, or no conversion at all, is refused', () => {
    assert.throws(() => createResampler(44_101, 48_000), { name: 'UsageError', message: /44101 Hz to 48000 Hz/ });
    assert.throws(() => createResampler(0, 48_000), { name: 'UsageError' });
    assert.throws(() => createResampler(48_000, 48_000), { name: 'InternalError' });
  });
});

/** A `hz` tone sampled at `rate`, at tone()'s default amplitude (half of full scale). */
function toneAt(rate: number, hz: number, ms: number): Int16Array {
  const out = new Int16Array(Math.round((rate * ms) / 1000));
  for (let n = 0; n < out.length; n++) out[n] = Math.round(0.5 * 32767 * Math.sin((2 * Math.PI * hz * n) / rate));
  return out;
}

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { alignAndSnr } from '../../core/media/analysis.js';
import { NoiseSuppressor } from '../../core/media/noise-suppression.js';
import { splitFrames } from '../../core/media/tone.js';
import { dbfs, mix, syntheticVoice, voicePauses, whiteNoise } from './signals.js';

const FRAME = 960;
/** RNNoise's delay, measured: 20 ms (its 10 ms frames plus its 10 ms look-ahead). */
const DELAY_SAMPLES = 960;
const DURATION_MS = 4000;

const availability = await NoiseSuppressor.availability();
const unavailable = availability.available ? false : `RNNoise does not load here: ${availability.reason}`;

async function suppress(signal: Int16Array): Promise<{ output: Int16Array; vad: number[] }> {
  const suppressor = await NoiseSuppressor.create();
  try {
    const output = new Int16Array(signal.length);
    const vad: number[] = [];
    splitFrames(signal, FRAME).forEach((frame, i) => {
      output.set(suppressor.process(frame), i * FRAME);
      vad.push(suppressor.vadProbability);
    });
    return { output, vad };
  } finally {
    suppressor.close();
  }
}

describe('noise suppression (RNNoise)', { skip: unavailable }, () => {
  test('a frame comes back with its length; halves and longer multiples of 10 ms work too', async () => {
    const suppressor = await NoiseSuppressor.create();
    for (const length of [960, 480, 1920]) assert.equal(suppressor.process(whiteNoise(length, -40)).length, length);
    suppressor.close();
  });

  test('silence stays exactly silent', async () => {
    const { output } = await suppress(new Int16Array(48_000));
    assert.deepEqual(output, new Int16Array(48_000));
  });

  test('white noise alone is suppressed by more than 25 dB', async () => {
    const noise = whiteNoise(96_000, -30, 5);
    const { output } = await suppress(noise);
    const settled = output.subarray(24_000); // after RNNoise's first 0.5 s of adaptation
    assert.ok(dbfs(settled) < -55, `noise went from -30 to ${dbfs(settled).toFixed(1)} dBFS`);
  });

  for (const noiseDb of [-21, -15]) {
    test(`a voice in white noise (${noiseDb} dBFS): SNR against the clean voice rises by > 4 dB, pauses go quiet`, async () => {
      const voice = syntheticVoice(DURATION_MS, { levelDb: -21 });
      const noisy = mix(voice, whiteNoise(voice.length, noiseDb, 9));
      const { output, vad } = await suppress(noisy);
      const snrBefore = alignAndSnr(voice, noisy, { maxLagSamples: 0 }).snrDb;
      const { snrDb: snrAfter, lagSamples } = alignAndSnr(voice, output, { maxLagSamples: 2 * DELAY_SAMPLES });
      assert.ok(Math.abs(lagSamples - DELAY_SAMPLES) <= 2, `delay ${lagSamples} samples`);
      assert.ok(snrAfter > snrBefore + 4, `SNR ${snrBefore.toFixed(1)} dB -> ${snrAfter.toFixed(1)} dB`);
      for (const [start, end] of voicePauses(DURATION_MS)) {
        const pause = output.subarray(start + DELAY_SAMPLES + 2400, end + DELAY_SAMPLES); // from 50 ms into the pause
        assert.ok(dbfs(pause) < noiseDb - 25, `pause at ${start}: ${dbfs(pause).toFixed(1)} dBFS`);
      }
      assert.ok(vad.every((p) => p >= 0 && p <= 1));
      assert.ok(vad.reduce((s, p) => s + p, 0) / vad.length > 0.5, 'RNNoise hears a voice');
    });
  }

  test('a clean voice keeps its level within 2 dB', async () => {
    const voice = syntheticVoice(DURATION_MS);
    const { output } = await suppress(voice);
    const change = dbfs(output) - dbfs(voice);
    assert.ok(Math.abs(change) < 2, `level changed by ${change.toFixed(2)} dB`);
  });

  test('suppressors are independent: each has its own RNNoise state', async () => {
    const voice = syntheticVoice(500, { seed: 4 });
    const [a, b] = await Promise.all([suppress(voice), suppress(voice)]);
    assert.deepEqual(a.output, b.output);
  });

  test('bad frame lengths and use after close() are InternalErrors; close() twice is safe', async () => {
    const suppressor = await NoiseSuppressor.create();
    assert.equal(suppressor.vadProbability, 0);
    for (const length of [0, 479, 500, 959]) {
      assert.throws(() => suppressor.process(new Int16Array(length)), { name: 'InternalError' }, `${length} samples`);
    }
    suppressor.close();
    suppressor.close();
    assert.throws(() => suppressor.process(new Int16Array(FRAME)), { name: 'InternalError' });
  });

  test('loading RNNoise leaves no globals behind', async () => {
    await NoiseSuppressor.create().then((s) => s.close());
    assert.equal('WorkerGlobalScope' in globalThis, false);
    assert.equal(Object.getOwnPropertyDescriptor(globalThis, 'asm'), undefined);
  });

  describe('cost (diagnostic)', () => {
    let suppressor: NoiseSuppressor;
    before(async () => {
      suppressor = await NoiseSuppressor.create();
    });
    after(() => suppressor.close());

    test('µs per 20 ms frame', (t) => {
      const frames = splitFrames(mix(syntheticVoice(2000), whiteNoise(96_000, -30, 3)), FRAME);
      for (const frame of frames.slice(0, 20)) suppressor.process(frame); // warm-up
      const start = process.hrtime.bigint();
      for (const frame of frames) suppressor.process(frame);
      const us = Number(process.hrtime.bigint() - start) / 1000 / frames.length;
      t.diagnostic(`RNNoise (wasm) per 20 ms frame: ${us.toFixed(0)} µs`);
    });
  });
});

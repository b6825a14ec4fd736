import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { codecComplianceChecks } from '../../core/compliance/codec.js';
import type { Codec } from '../../core/media/codec-types.js';
import { splitFrames, testSignal } from '../../core/media/tone.js';
import codecsHook, { codec2Codec } from '../../src/plugins/codec-codec2/index.js';
import { dbfs, syntheticVoice, voicePauses } from './signals.js';

const availability = codec2Codec.availability();
const unavailable = availability.available ? false : `libcodec2 is not installed here: ${availability.reason}`;

/** 5 ms at 48 kHz. */
const ENVELOPE_STEP_SAMPLES = 240;

function roundTrip(codec: Codec, signal: Int16Array): Int16Array {
  const decoded = new Int16Array(Math.ceil(signal.length / codec.frameSamples) * codec.frameSamples);
  splitFrames(signal, codec.frameSamples).forEach((frame, i) => decoded.set(codec.decode(codec.encode(frame)), i * codec.frameSamples));
  return decoded;
}

function withCodec(frameMs: number, body: (codec: Codec) => void): void {
  const codec = codec2Codec.create({ frameMs });
  try {
    body(codec);
  } finally {
    codec.close();
  }
}

/** 5 ms level envelope, dBFS, floored at -90. */
function envelope(signal: Int16Array): number[] {
  return splitFrames(signal, ENVELOPE_STEP_SAMPLES).map((frame) => Math.max(-90, dbfs(frame)));
}

/**
 * The delay (in 5 ms steps, up to 80 ms) at which the decoded level envelope best matches the
 * original's, and the correlation there. A vocoder's waveform does not line up; its envelope does.
 */
function envelopeAlignment(original: Int16Array, decoded: Int16Array): { lagMs: number; r: number } {
  const [a, b] = [envelope(original), envelope(decoded)];
  let best = { lagMs: 0, r: -1 };
  for (let lag = 0; lag <= 16; lag++) {
    const length = Math.min(a.length, b.length - lag);
    const r = correlation(a.slice(0, length), b.slice(lag, lag + length));
    if (r > best.r) best = { lagMs: lag * 5, r };
  }
  return best;
}

function correlation(a: readonly number[], b: readonly number[]): number {
  const mean = (x: readonly number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const [ma, mb] = [mean(a), mean(b)];
  let ab = 0;
  let aa = 0;
  let bb = 0;
  a.forEach((_, i) => {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  });
  return ab / Math.sqrt(aa * bb);
}

describe('codec compliance: codec2', () => {
  for (const check of codecComplianceChecks(codec2Codec)) {
    test(check.name, { skip: check.requiresAvailability && unavailable }, () => check.run());
  }
});

describe('codec2 plugin', { skip: unavailable }, () => {
  test('the plugin package declares the wzp:codecs hook, which contributes codec2', async () => {
    const manifest = JSON.parse(await readFile(new URL('../../src/plugins/codec-codec2/package.json', import.meta.url), 'utf8'));
    assert.equal(manifest.name, 'wzp-plugin-codec-codec2');
    assert.equal(manifest.type, 'module');
    assert.equal(manifest.oclif.hooks['wzp:codecs'], './index.js');
    assert.deepEqual(await codecsHook(), [codec2Codec]);
    assert.equal(codec2Codec.codecId, 3);
    assert.equal(codec2Codec.nominalBitrate, 1200);
    assert.equal(codec2Codec.minRoundTripSnrDb, undefined, 'a vocoder makes no waveform promise');
  });

  test('1200 bit/s: 6 bytes per 40 ms, two codec2 frames per 80 ms payload', () => {
    withCodec(40, (codec) => assert.equal(codec.encode(testSignal(40)).length, 6));
    withCodec(80, (codec) => assert.equal(codec.encode(testSignal(80)).length, 12));
  });

  for (const frameMs of [40, 80]) {
    test(`${frameMs} ms: a voice-like signal keeps its level, syllable envelope and pauses`, () => {
      const voice = syntheticVoice(4000);
      withCodec(frameMs, (codec) => {
        const decoded = roundTrip(codec, voice);
        const levelChange = dbfs(decoded) - dbfs(voice);
        assert.ok(Math.abs(levelChange) < 2, `level changed by ${levelChange.toFixed(2)} dB`);
        const { lagMs, r } = envelopeAlignment(voice, decoded);
        assert.ok(r > 0.9, `envelope correlation ${r.toFixed(3)} at ${lagMs} ms`);
        assert.ok(lagMs >= 10 && lagMs <= 60, `codec delay ${lagMs} ms`);
        for (const [start, end] of voicePauses(4000)) {
          const pause = decoded.subarray(start + 2400, end); // skip 50 ms of decay into the pause
          assert.ok(dbfs(pause) < dbfs(voice) - 30, `pause at ${start}: ${dbfs(pause).toFixed(1)} dBFS`);
        }
      });
    });
  }

  test('voice level is kept from loud to quiet speech', () => {
    for (const levelDb of [-15, -30, -45]) {
      const voice = syntheticVoice(2000, { levelDb, f0Hz: 200, seed: 3 });
      withCodec(40, (codec) => {
        const change = dbfs(roundTrip(codec, voice)) - levelDb;
        assert.ok(Math.abs(change) < 2, `${levelDb} dBFS: level changed by ${change.toFixed(2)} dB`);
      });
    }
  });

  test('conceal(): silence before any decode, then a fade of the last frame to silence within 80 ms', () => {
    withCodec(40, (codec) => {
      const conceal = () => {
        assert.ok(codec.conceal);
        return codec.conceal();
      };
      assert.deepEqual(conceal(), new Int16Array(1920));
      let last: Int16Array = new Int16Array(0);
      for (const frame of splitFrames(syntheticVoice(600), 1920)) last = codec.decode(codec.encode(frame));
      const levels = [conceal(), conceal(), conceal(), conceal()].map((frame) => dbfs(frame));
      assert.ok(levels[0] > dbfs(last) - 10, `first concealed frame ${levels[0].toFixed(1)} dBFS vs ${dbfs(last).toFixed(1)}`);
      assert.ok(levels[1] < levels[0] - 3, `fading: ${levels.map((l) => l.toFixed(1)).join(', ')}`);
      assert.ok(levels[3] < -80, `silent after the fade: ${levels[3].toFixed(1)} dBFS`);
      const resumed = codec.decode(codec.encode(syntheticVoice(40)));
      assert.equal(resumed.length, 1920);
    });
  });

  test('a payload of the wrong length is a DecodeError', () => {
    withCodec(40, (codec) => {
      for (const length of [0, 5, 7, 12]) {
        assert.throws(() => codec.decode(new Uint8Array(length)), { name: 'DecodeError', reason: 'wrong-length' });
      }
    });
    withCodec(80, (codec) => assert.throws(() => codec.decode(new Uint8Array(6)), { name: 'DecodeError' }));
  });

  test('unsupported frame durations and use after close() are PluginErrors', () => {
    assert.throws(() => codec2Codec.create({ frameMs: 20 }), { name: 'PluginError' });
    const codec = codec2Codec.create({ frameMs: 40 });
    codec.close();
    assert.throws(() => codec.encode(new Int16Array(1920)), { name: 'PluginError' });
    assert.throws(() => codec.decode(new Uint8Array(6)), { name: 'PluginError' });
  });

  test('encode and decode cost (diagnostic)', (t) => {
    const frames = splitFrames(syntheticVoice(4000), 1920);
    withCodec(40, (codec) => {
      const payloads = frames.map((frame) => codec.encode(frame)); // warm-up
      const encodeStart = process.hrtime.bigint();
      for (const frame of frames) codec.encode(frame);
      const encodeUs = Number(process.hrtime.bigint() - encodeStart) / 1000 / frames.length;
      const decodeStart = process.hrtime.bigint();
      for (const payload of payloads) codec.decode(payload);
      const decodeUs = Number(process.hrtime.bigint() - decodeStart) / 1000 / frames.length;
      t.diagnostic(`codec2 per 40 ms frame (incl. resampling): encode ${encodeUs.toFixed(0)} µs, decode ${decodeUs.toFixed(0)} µs`);
    });
  });
});

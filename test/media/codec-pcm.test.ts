import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alignAndSnr } from '../../core/media/analysis.js';
import { splitFrames, tone } from '../../core/media/tone.js';
import codecsHook, { pcm16Codec } from '../../src/plugins/codec-pcm/index.js';

describe('pcm16 codec plugin', () => {
  test('the hook contributes pcm16: codec id 0, 256 kbit/s', async () => {
    assert.deepEqual(await codecsHook(), [pcm16Codec]);
    assert.equal(pcm16Codec.codecId, 0);
    assert.equal(pcm16Codec.nominalBitrate, 256_000);
  });

  test('payloads are 16 kHz samples: 640 bytes per 20 ms, 320 per 10 ms', () => {
    assert.equal(pcm16Codec.create({ frameMs: 20 }).encode(new Int16Array(960)).length, 640);
    assert.equal(pcm16Codec.create({ frameMs: 10 }).encode(new Int16Array(480)).length, 320);
  });

  test('samples are big-endian on the wire', () => {
    const codec = pcm16Codec.create({ frameMs: 20 });
    const dc = new Int16Array(960).fill(0x1234);
    let payload: Uint8Array = new Uint8Array(0);
    for (let i = 0; i < 3; i++) payload = codec.encode(dc); // let the filter settle
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    for (let i = 0; i < 320; i++) assert.ok(Math.abs(view.getInt16(2 * i, false) - 0x1234) <= 1);
    assert.equal(payload[0], 0x12);
  });

  test('decodes big-endian payloads from another implementation', () => {
    const codec = pcm16Codec.create({ frameMs: 20 });
    const payload = new Uint8Array(640);
    const view = new DataView(payload.buffer);
    for (let i = 0; i < 320; i++) view.setInt16(2 * i, -1000, false);
    let decoded: Int16Array = new Int16Array(0);
    for (let i = 0; i < 3; i++) decoded = codec.decode(payload);
    assert.equal(decoded.length, 960);
    for (const sample of decoded) assert.ok(Math.abs(sample + 1000) <= 1);
  });

  test('a 1 kHz tone round-trips with SNR > 60 dB', () => {
    const codec = pcm16Codec.create({ frameMs: 20 });
    const signal = tone(1000, 1000);
    const decoded = new Int16Array(signal.length);
    splitFrames(signal, 960).forEach((frame, i) => decoded.set(codec.decode(codec.encode(frame)), i * 960));
    const { snrDb } = alignAndSnr(signal, decoded, { maxLagSamples: 480 });
    assert.ok(snrDb > 60, `snr ${snrDb}`);
  });

  test('a payload of the wrong length is a DecodeError', () => {
    const codec = pcm16Codec.create({ frameMs: 20 });
    for (const length of [0, 639, 641, 320, 1280]) {
      assert.throws(() => codec.decode(new Uint8Array(length)), { name: 'DecodeError', reason: 'wrong-length' });
    }
  });

  test('refuses unsupported frame durations', () => {
    assert.throws(() => pcm16Codec.create({ frameMs: 40 }), { name: 'PluginError' });
  });
});

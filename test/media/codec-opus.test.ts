import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alignAndSnr, rms } from '../../core/media/analysis.js';
import type { Codec } from '../../core/media/codec-types.js';
import { splitFrames, testSignal } from '../../core/media/tone.js';
import codecsHook, { opusCodec } from '../../src/plugins/codec-opus/index.js';

/** The codec's conceal(), which the opus codec must provide. */
function concealOf(codec: Codec): () => Int16Array {
  return () => {
    assert.ok(codec.conceal, 'opus provides conceal()');
    return codec.conceal();
  };
}

function roundTrip(codec: Codec, signal: Int16Array): { decoded: Int16Array; meanPayloadBytes: number } {
  const frames = splitFrames(signal, codec.frameSamples);
  const decoded = new Int16Array(frames.length * codec.frameSamples);
  let bytes = 0;
  frames.forEach((frame, i) => {
    const payload = codec.encode(frame);
    bytes += payload.length;
    decoded.set(codec.decode(payload), i * codec.frameSamples);
  });
  return { decoded, meanPayloadBytes: bytes / frames.length };
}

describe('opus codec plugin', () => {
  test('the hook contributes the opus factory, available here', async () => {
    assert.deepEqual(await codecsHook(), [opusCodec]);
    assert.deepEqual(opusCodec.availability(), { available: true });
    assert.equal(opusCodec.codecId, 1);
    assert.equal(opusCodec.nominalBitrate, 24_000);
  });

  for (const [bitrate, minSnrDb, bytesRange] of [
    [24_000, 15, [50, 80]],
    [6_000, 8, [12, 30]],
  ] as const) {
    test(`${bitrate / 1000} kbit/s: round trip keeps the level and ${minSnrDb} dB SNR at about the bitrate`, () => {
      const codec = opusCodec.create({ frameMs: 20, bitrate });
      const signal = testSignal(3000);
      const { decoded, meanPayloadBytes } = roundTrip(codec, signal);
      const { snrDb } = alignAndSnr(signal, decoded, { maxLagSamples: 2400 });
      assert.ok(snrDb >= minSnrDb, `snr ${snrDb}`);
      assert.ok(Math.abs(20 * Math.log10(rms(decoded) / rms(signal))) < 1);
      assert.ok(meanPayloadBytes >= bytesRange[0] && meanPayloadBytes <= bytesRange[1], `${meanPayloadBytes} bytes/frame`);
      codec.close();
    });
  }

  test('encode() returns a plain Uint8Array, not a Buffer (whose slice() would share memory)', () => {
    const codec = opusCodec.create({ frameMs: 20 });
    const payload = codec.encode(testSignal(20));
    assert.equal(Object.getPrototypeOf(payload), Uint8Array.prototype);
    codec.close();
  });

  test('conceal() runs libopus PLC: it continues the signal and fades out', () => {
    const codec = opusCodec.create({ frameMs: 20 });
    let last: Int16Array = new Int16Array(0);
    for (const frame of splitFrames(testSignal(500), codec.frameSamples)) last = codec.decode(codec.encode(frame));
    const conceal = concealOf(codec);
    const concealed = Array.from({ length: 5 }, () => rms(conceal()));
    assert.ok(concealed[0] > 0.3 * rms(last), `first concealed frame rms ${concealed[0]} vs ${rms(last)}`);
    assert.ok(concealed[4] < concealed[0] / 4, `concealment fades: ${concealed.join(', ')}`);
    codec.close();
  });

  test('conceal() before anything was decoded is silence', () => {
    const codec = opusCodec.create({ frameMs: 40 });
    assert.deepEqual(concealOf(codec)(), new Int16Array(1920));
    codec.close();
  });

  test('a valid packet of another frame duration is a DecodeError', () => {
    const sender = opusCodec.create({ frameMs: 40 });
    const receiver = opusCodec.create({ frameMs: 20 });
    const payload = sender.encode(testSignal(40));
    assert.throws(() => receiver.decode(payload), { name: 'DecodeError', reason: 'wrong-duration' });
    sender.close();
    receiver.close();
  });

  test('a corrupt packet is a DecodeError, not the binding TypeError', () => {
    const codec = opusCodec.create({ frameMs: 20 });
    // TOC: CELT 10 ms, code 1 (two equal-sized frames), then 3 bytes that cannot split in two.
    assert.throws(() => codec.decode(Uint8Array.of(0xf1, 0x00, 0x00, 0x00)), { name: 'DecodeError', reason: 'corrupt' });
    codec.close();
  });

  test('refuses unsupported frame durations and bitrates, and use after close()', () => {
    assert.throws(() => opusCodec.create({ frameMs: 10 }), { name: 'PluginError' });
    assert.throws(() => opusCodec.create({ frameMs: 20, bitrate: 5_000 }), { name: 'PluginError' });
    const codec = opusCodec.create({ frameMs: 20 });
    codec.close();
    assert.throws(() => codec.encode(new Int16Array(960)), { name: 'PluginError' });
  });
});

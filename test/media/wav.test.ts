/**
 * The WAV reader as `wzp call --file` and `wzp sweep --input` use it: the sample formats
 * people actually have (16/24-bit PCM, float, telephony G.711), any channel count, and a file
 * source at 44.1 kHz that plays at the pipeline's 48 kHz.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FileSource } from '../../core/audio/sources.js';
import { alignAndSnr } from '../../core/media/analysis.js';
import { tone } from '../../core/media/tone.js';
import { decodeWav, encodeWav } from '../../core/media/wav.js';
import { stereoTone24, wavBytes } from '../helpers/wav-bytes.js';

const everyByte = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('WAV reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wzp-wav-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('16-bit PCM round-trips exactly', () => {
    const samples = tone(440, 100);
    const wav = decodeWav(encodeWav(samples, 48_000));
    assert.equal(wav.sampleRate, 48_000);
    assert.deepEqual(wav.samples, samples);
  });

  test('24-bit stereo is mixed to mono 16-bit; float 32 reads as the same samples', () => {
    const frames = [
      [0x7fffff, 0x7fffff],
      [-0x800000, -0x800000],
      [0x400000, -0x400000],
    ];
    const pcm24 = new Uint8Array(frames.length * 6);
    frames.flat().forEach((s, i) => [0, 8, 16].forEach((shift, b) => (pcm24[i * 3 + b] = (s >> shift) & 0xff)));
    assert.deepEqual([...decodeWav(wavBytes(1, 2, 44_100, 24, pcm24)).samples], [32767, -32768, 0]);
    const float = new Float32Array([0.5, -0.25, 0]);
    assert.deepEqual([...decodeWav(wavBytes(3, 1, 8_000, 32, new Uint8Array(float.buffer))).samples], [16384, -8192, 0]);
  });

  test('G.711 mu-law decodes per the standard: all 256 codes, symmetric, end points', () => {
    const s = decodeWav(wavBytes(7, 1, 8_000, 8, everyByte)).samples;
    assert.equal(s[0x00], -32124);
    assert.equal(s[0x80], 32124);
    assert.equal(s[0xff], 0);
    assert.equal(s[0x7f], 0);
    for (let code = 0; code < 128; code++) assert.equal(s[code] + s[code | 0x80], 0, `code ${code} mirrors code ${code | 0x80}`);
    for (let code = 0x81; code < 0x100; code++) assert.ok(s[code] < s[code - 1], `mu-law is monotonic at ${code}`);
  });

  test('G.711 A-law decodes per the standard: all 256 codes, symmetric, end points', () => {
    const s = decodeWav(wavBytes(6, 1, 8_000, 8, everyByte)).samples;
    assert.equal(s[0xd5], 8);
    assert.equal(s[0x55], -8);
    assert.equal(s[0xaa], 32256);
    assert.equal(s[0x2a], -32256);
    for (let code = 0; code < 128; code++) assert.equal(s[code] + s[code | 0x80], 0, `code ${code} mirrors code ${code | 0x80}`);
    const positive = [...s.subarray(128)].sort((a, b) => a - b);
    assert.equal(new Set(positive).size, 128, 'every positive code is a distinct level');
  });

  test('an unsupported format is named, with what is supported and how to convert', () => {
    assert.throws(() => decodeWav(wavBytes(0x11, 1, 8_000, 4, new Uint8Array(16))), {
      name: 'DecodeError',
      message: /IMA ADPCM with 4 bits.*PCM 8\/16\/24\/32-bit.*sox/,
    });
    assert.throws(() => decodeWav(new Uint8Array(10)), { name: 'DecodeError', message: /not a RIFF\/WAVE file/ });
  });

  test('a 44.1 kHz stereo file plays at 48 kHz: the same tone, the same duration, then ended', () => {
    const path = join(dir, 'cd.wav');
    writeFileSync(path, stereoTone24(44_100, 1000, 1));
    const source = new FileSource(path);
    assert.equal(source.durationMs, 1000);
    const frames: Int16Array[] = [];
    while (!source.ended && frames.length < 100) frames.push(source.read(960));
    assert.equal(frames.length, 50, '1 s of 20 ms frames');
    const played = new Int16Array(48_000);
    frames.forEach((f, i) => played.set(f, i * 960));
    const result = alignAndSnr(tone(1000, 1000), played, { maxLagSamples: 480 });
    assert.ok(result.snrDb > 40, `snr ${result.snrDb}`);
  });
});

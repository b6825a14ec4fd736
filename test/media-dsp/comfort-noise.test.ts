import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ComfortNoiseGenerator,
  NoiseAnalyzer,
  SID_BANDS,
  decodeSid,
  encodeSid,
  type SidDescription,
} from '../../core/media/comfort-noise.js';
import { splitFrames } from '../../core/media/tone.js';
import { dbfs, lowpassNoise, whiteNoise } from './signals.js';

const FRAME = 960;

function describeNoise(noise: Int16Array): SidDescription {
  const analyzer = new NoiseAnalyzer();
  for (const frame of splitFrames(noise, FRAME)) analyzer.analyze(frame);
  return analyzer.describe();
}

function generate(generator: ComfortNoiseGenerator, frames: number): Int16Array {
  const out = new Int16Array(frames * FRAME);
  for (let f = 0; f < frames; f++) out.set(generator.generate(FRAME), f * FRAME);
  return out;
}

function playSid(sid: SidDescription, seconds: number, seed = 1): Int16Array {
  const generator = new ComfortNoiseGenerator(seed);
  generator.update(sid);
  return generate(generator, seconds * 50);
}

describe('SID encoding', () => {
  test('golden bytes: level only, and level with band shares', () => {
    assert.deepEqual(encodeSid({ levelDb: -42 }), Uint8Array.of(42));
    const sid = { levelDb: -30, bandLevelsDb: [-9, -9, -7, -7, -8, -7] };
    const bytes = Uint8Array.of(30, 9, 9, 7, 7, 8, 7);
    assert.deepEqual(encodeSid(sid), bytes);
    assert.deepEqual(decodeSid(bytes), sid);
    assert.deepEqual(decodeSid(Uint8Array.of(127)), { levelDb: -127 });
    assert.deepEqual(decodeSid(Uint8Array.of(0)), { levelDb: 0 });
  });

  test('values are rounded to whole dB and clamped to 0..-127', () => {
    assert.deepEqual(encodeSid({ levelDb: -42.4 }), Uint8Array.of(42));
    assert.deepEqual(encodeSid({ levelDb: -42.6 }), Uint8Array.of(43));
    assert.deepEqual(encodeSid({ levelDb: 3 }), Uint8Array.of(0));
    assert.deepEqual(encodeSid({ levelDb: -200 }), Uint8Array.of(127));
    assert.deepEqual(encodeSid({ levelDb: Number.NEGATIVE_INFINITY }), Uint8Array.of(127));
    assert.deepEqual(encodeSid({ levelDb: -20, bandLevelsDb: [0.4, -1, -2, -3, -4, -1000] }), Uint8Array.of(20, 0, 1, 2, 3, 4, 127));
  });

  test('a NaN level or a wrong band count is a bug (InternalError)', () => {
    assert.throws(() => encodeSid({ levelDb: Number.NaN }), { name: 'InternalError' });
    assert.throws(() => encodeSid({ levelDb: -30, bandLevelsDb: [-1, -2] }), { name: 'InternalError' });
  });

  test('malformed SIDs are DecodeErrors with a reason', () => {
    const cases: Array<[Uint8Array, string]> = [
      [new Uint8Array(0), 'truncated'],
      [Uint8Array.of(30, 1), 'wrong-length'],
      [new Uint8Array(6), 'wrong-length'],
      [new Uint8Array(8), 'wrong-length'],
      [Uint8Array.of(0x80), 'reserved-bit'],
      [Uint8Array.of(30, 1, 2, 3, 0xff, 5, 6), 'reserved-bit'],
    ];
    for (const [bytes, reason] of cases) {
      assert.throws(() => decodeSid(bytes), { name: 'DecodeError', format: 'sid', reason }, `${bytes.length} bytes`);
    }
  });
});

describe('noise analyzer', () => {
  test('measures the level of white noise, and a white band shape', () => {
    for (const level of [-60, -40, -20]) {
      const sid = describeNoise(whiteNoise(48_000, level, 1));
      assert.ok(Math.abs(sid.levelDb - level) < 0.5, `${sid.levelDb} for ${level} dBFS`);
      assert.equal(sid.bandLevelsDb?.length, SID_BANDS);
    }
  });

  test('sees a low-pass background as a falling spectrum', () => {
    const bands = describeNoise(lowpassNoise(48_000, -40, 300, 2)).bandLevelsDb ?? [];
    for (let b = 1; b < bands.length; b++) assert.ok(bands[b] < bands[b - 1], `bands ${bands.map((x) => x.toFixed(1))}`);
  });

  test('describes silence before any frame, and digital silence, as inaudible', () => {
    assert.deepEqual(new NoiseAnalyzer().describe(), { levelDb: -127 });
    assert.ok(describeNoise(new Int16Array(FRAME * 10)).levelDb <= -100);
  });
});

describe('comfort noise generator', () => {
  test('is silent until the first SID', () => {
    assert.deepEqual(new ComfortNoiseGenerator().generate(FRAME), new Int16Array(FRAME));
  });

  test('a level-only SID gives white noise at that level (within 0.5 dB)', () => {
    for (const level of [-70, -50, -30, -15]) {
      const noise = playSid(decodeSid(encodeSid({ levelDb: level })), 2);
      assert.ok(Math.abs(dbfs(noise) - level) < 0.5, `${dbfs(noise).toFixed(2)} dBFS for a ${level} dBFS SID`);
      const bands = describeNoise(noise).bandLevelsDb ?? [];
      const white = describeNoise(whiteNoise(96_000, level, 3)).bandLevelsDb ?? [];
      bands.forEach((band, b) => assert.ok(Math.abs(band - white[b]) < 1.5, `band ${b}: ${band} vs white ${white[b]}`));
    }
  });

  test('end to end: background -> analyzer -> SID bytes -> generator matches level (1.5 dB) and shape (4 dB)', () => {
    const backgrounds = [
      ['white', whiteNoise(96_000, -45, 4)],
      ['low-pass 300 Hz', lowpassNoise(96_000, -45, 300, 5)],
      ['low-pass 2 kHz', lowpassNoise(96_000, -30, 2000, 6)],
    ] as const;
    for (const [name, background] of backgrounds) {
      const sent = describeNoise(background);
      const bytes = encodeSid(sent);
      assert.equal(bytes.length, 7);
      const played = playSid(decodeSid(bytes), 2, 7);
      const heard = describeNoise(played);
      const levelError = dbfs(played) - dbfs(background);
      assert.ok(Math.abs(levelError) < 1.5, `${name}: level off by ${levelError.toFixed(2)} dB`);
      (heard.bandLevelsDb ?? []).forEach((band, b) => {
        const sentBand = sent.bandLevelsDb?.[b] ?? Number.NaN;
        assert.ok(Math.abs(band - sentBand) < 4, `${name}: band ${b} ${band.toFixed(1)} dB vs ${sentBand.toFixed(1)} dB sent`);
      });
    }
  });

  test('a new SID ramps in over one frame: no step, full level from the next frame', () => {
    const generator = new ComfortNoiseGenerator(8);
    generator.update({ levelDb: -60 });
    generate(generator, 10);
    generator.update({ levelDb: -30 });
    const ramp = generator.generate(FRAME);
    const firstQuarter = dbfs(ramp.subarray(0, FRAME / 4));
    const lastQuarter = dbfs(ramp.subarray((3 * FRAME) / 4));
    assert.ok(firstQuarter < lastQuarter - 6, `ramp ${firstQuarter.toFixed(1)} -> ${lastQuarter.toFixed(1)} dBFS`);
    assert.ok(Math.abs(dbfs(generate(generator, 50)) + 30) < 0.5);
  });

  test('reproducible: the same seed gives the same noise, another seed other noise', () => {
    const sid = { levelDb: -40 };
    assert.deepEqual(playSid(sid, 1, 42), playSid(sid, 1, 42));
    assert.notDeepEqual(playSid(sid, 1, 42), playSid(sid, 1, 43));
  });

  test('rejects a NaN level and bad sample counts', () => {
    const generator = new ComfortNoiseGenerator();
    assert.throws(() => generator.update({ levelDb: Number.NaN }), { name: 'InternalError' });
    assert.throws(() => generator.generate(-1), { name: 'InternalError' });
    assert.throws(() => generator.generate(1.5), { name: 'InternalError' });
    assert.equal(generator.generate(0).length, 0);
  });
});

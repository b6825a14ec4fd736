import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CODEC_IMPAIRMENTS,
  burstRatio,
  delayImpairment,
  effectiveEquipmentImpairment,
  impairmentFor,
  mos,
  mosFromR,
  rFactor,
  type CodecImpairmentName,
} from '../../core/media/emodel.js';

const near = (actual: number, expected: number, tolerance: number) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} is not ${expected} +- ${tolerance}`);

describe('E-model (G.107)', () => {
  it('gives R = 93.2 and MOS 4.41 at the default parameters', () => {
    const input = { delayMs: 0, lossPct: 0, codec: 'g711' } as const;
    near(rFactor(input), 93.2, 1e-9);
    near(mos(input), 4.41, 0.005);
  });

  it('maps R to MOS per Annex B', () => {
    near(mosFromR(50), 2.575, 1e-9); // 1 + 1.75 - 0.175
    near(mosFromR(80), 4.024, 1e-9); // 1 + 2.8 + 80*20*20*7e-6
    assert.equal(mosFromR(-5), 1);
    assert.equal(mosFromR(0), 1);
    assert.equal(mosFromR(3), 1, 'floored where the cubic dips below 1');
    assert.equal(mosFromR(100), 4.5);
    assert.equal(mosFromR(120), 4.5);
  });

  it('computes Idd from the G.107 formula', () => {
    assert.equal(delayImpairment(0), 0);
    assert.equal(delayImpairment(100), 0);
    // X = 1: 25 * (2^(1/6) - 3 * (1 + 3^-6)^(1/6) + 2)
    near(delayImpairment(200), 3.0444, 1e-4);
    // X = 2: 25 * (65^(1/6) - 3 * (1 + (2/3)^6)^(1/6) + 2)
    near(delayImpairment(400), 24.0701, 1e-4);
    near(rFactor({ delayMs: 400, lossPct: 0, codec: 'g711' }), 93.2 - 24.0701, 1e-4);
  });

  it('computes Ie,eff from Ie, Bpl, loss and BurstR', () => {
    assert.equal(effectiveEquipmentImpairment(0, 25.1, 0), 0);
    near(effectiveEquipmentImpairment(0, 25.1, 2), (95 * 2) / (2 + 25.1), 1e-12);
    near(effectiveEquipmentImpairment(11, 19, 5, 2), 11 + (84 * 5) / (5 / 2 + 19), 1e-12);
    assert.ok(effectiveEquipmentImpairment(0, 4.3, 5, 2) > effectiveEquipmentImpairment(0, 4.3, 5, 1), 'bursts hurt more');
    near(burstRatio(20, 2), 1 / (1 / 20 + 1 / 2), 1e-12);
    assert.equal(burstRatio(Number.POSITIVE_INFINITY, 1), 1);
  });

  it('is non-increasing in delay and in loss for every codec', () => {
    const codecArb = fc.constantFrom(...(Object.keys(CODEC_IMPAIRMENTS) as CodecImpairmentName[]));
    fc.assert(
      fc.property(
        codecArb,
        fc.double({ min: 0, max: 1000, noNaN: true }),
        fc.double({ min: 0, max: 1000, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        (codec, d1, d2, l1, l2, burstR) => {
          const [dLow, dHigh] = d1 <= d2 ? [d1, d2] : [d2, d1];
          const [lLow, lHigh] = l1 <= l2 ? [l1, l2] : [l2, l1];
          const r = (delayMs: number, lossPct: number) => rFactor({ delayMs, lossPct, burstR, codec });
          assert.ok(r(dHigh, lLow) <= r(dLow, lLow) + 1e-9);
          assert.ok(r(dLow, lHigh) <= r(dLow, lLow) + 1e-9);
          assert.ok(mosFromR(r(dHigh, lHigh)) <= mosFromR(r(dLow, lLow)) + 1e-9);
        },
      ),
      { seed: 107 },
    );
  });

  it('ranks the tier codecs as expected on a clean path', () => {
    const clean = (codec: CodecImpairmentName) => mos({ delayMs: 150, lossPct: 0, codec });
    assert.ok(clean('opus-24k') > clean('opus-6k'));
    assert.ok(clean('opus-6k') > clean('codec2-1200'));
    assert.equal(impairmentFor('opus', 6000), CODEC_IMPAIRMENTS['opus-6k']);
    assert.equal(impairmentFor('codec2', 1200), CODEC_IMPAIRMENTS['codec2-1200']);
    assert.equal(impairmentFor('opus', 12_000), undefined);
    near(rFactor({ delayMs: 0, lossPct: 0, codec: { ie: 11, bpl: 19 } }), 82.2, 1e-9);
  });

  it('rejects out-of-range input with a UsageError', () => {
    assert.throws(() => rFactor({ delayMs: -1, lossPct: 0, codec: 'g711' }), { name: 'UsageError' });
    assert.throws(() => rFactor({ delayMs: 0, lossPct: 120, codec: 'g711' }), { name: 'UsageError' });
    assert.throws(() => rFactor({ delayMs: 0, lossPct: 1, burstR: 0.5, codec: 'g711' }), { name: 'UsageError' });
    assert.throws(() => rFactor({ delayMs: 0, lossPct: 1, codec: 'speex' as CodecImpairmentName }), { name: 'UsageError' });
  });
});

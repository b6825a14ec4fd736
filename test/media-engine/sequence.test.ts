import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { U16_MODULUS, unwrapU16, wrappedDelta } from '../../core/media/sequence.js';

test('unwrapU16: forward across the wrap, late packets from before it, and far references', () => {
  assert.equal(unwrapU16(5, 65_530), 65_541, 'wrapped forward');
  assert.equal(unwrapU16(65_530, 65_541), 65_530, 'late, from before the wrap');
  assert.equal(unwrapU16(3, 3 * U16_MODULUS + 10), 3 * U16_MODULUS + 3);
  assert.equal(unwrapU16(0, 0), 0);
  assert.equal(unwrapU16(32_767, 0), 32_767, 'just under half ahead');
  assert.equal(unwrapU16(32_768, 0), -32_768, 'half the ring away counts as behind');
});

test('unwrapU16 recovers any counter within half the ring of its reference', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: -32_768, max: 32_767 }), (reference, offset) => {
      const value = reference + offset;
      fc.pre(value >= 0);
      return unwrapU16(value % U16_MODULUS, reference) === value;
    }),
  );
});

test('wrappedDelta is in [-modulus/2, modulus/2) for u32 timestamps too', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (a, b) => {
      const d = wrappedDelta(a, b, 2 ** 32);
      return d >= -(2 ** 31) && d < 2 ** 31 && (((b + d) % 2 ** 32) + 2 ** 32) % 2 ** 32 === a;
    }),
  );
});

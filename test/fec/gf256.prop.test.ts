import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { gfInv, gfInvertMatrix, gfMul, gfMulAddInto, gfRankInPlace } from '../../core/media/fec/gf256.js';

const byte = fc.integer({ min: 0, max: 255 });

function matMul(a: readonly Uint8Array[], b: readonly Uint8Array[]): Uint8Array[] {
  return a.map((row) => {
    const out = new Uint8Array(b[0].length);
    row.forEach((c, i) => gfMulAddInto(out, b[i], c));
    return out;
  });
}

function rank(rows: readonly Uint8Array[]): number {
  const cols = rows[0]?.length ?? 0;
  const flat = new Uint8Array(rows.length * cols);
  rows.forEach((row, i) => flat.set(row, i * cols));
  return gfRankInPlace(flat, rows.length, cols);
}

const squareMatrix = fc
  .integer({ min: 1, max: 8 })
  .chain((n) => fc.array(fc.uint8Array({ minLength: n, maxLength: n }), { minLength: n, maxLength: n }));

test('GF(256) reduces by x^8+x^4+x^3+x^2+1: 2 * 0x80 = 0x1d', () => {
  assert.equal(gfMul(2, 0x80), 0x1d);
  assert.equal(gfMul(1, 0xab), 0xab);
  assert.equal(gfMul(0, 0xab), 0);
});

test('every non-zero element has an inverse', () => {
  for (let a = 1; a < 256; a++) assert.equal(gfMul(a, gfInv(a)), 1, `inverse of ${a}`);
});

test('multiplication is commutative, associative and distributes over XOR', () => {
  fc.assert(
    fc.property(byte, byte, byte, (a, b, c) => {
      assert.equal(gfMul(a, b), gfMul(b, a));
      assert.equal(gfMul(gfMul(a, b), c), gfMul(a, gfMul(b, c)));
      assert.equal(gfMul(a, b ^ c), gfMul(a, b) ^ gfMul(a, c));
    }),
  );
});

test('gfMulAddInto adds c * src byte by byte', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), byte, (src, c) => {
      const dst = Uint8Array.from(src, (x) => x ^ 0x5a);
      const expected = dst.map((d, i) => d ^ gfMul(c, src[i]));
      gfMulAddInto(dst, src, c);
      assert.deepEqual(dst, expected);
    }),
  );
});

test('an inverse times its matrix is the identity; singular matrices have rank < n', () => {
  fc.assert(
    fc.property(squareMatrix, (m) => {
      const inv = gfInvertMatrix(m);
      if (inv === undefined) {
        assert.ok(rank(m) < m.length);
        return;
      }
      const identity = m.map((_, i) => Uint8Array.from(m, (__, j) => (i === j ? 1 : 0)));
      assert.deepEqual(matMul(inv, m), identity);
      assert.deepEqual(matMul(m, inv), identity);
    }),
  );
});

test('rank: a repeated row or a zero column lowers it', () => {
  const a = [Uint8Array.of(1, 2, 3), Uint8Array.of(4, 5, 6), Uint8Array.of(7, 8, 10)];
  const full = rank(a);
  assert.equal(rank([a[0], a[1], a[0]]), Math.min(full, 2));
  assert.equal(rank([Uint8Array.of(0, 1), Uint8Array.of(0, 2)]), 1);
  assert.equal(rank([]), 0);
});

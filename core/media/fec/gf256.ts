/**
 * Arithmetic in GF(2^8) with the primitive polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d),
 * generator 2: the field used by Reed-Solomon erasure codes. Addition is XOR.
 * A full 256x256 multiplication table (64 KiB) makes the inner loop one lookup per byte.
 */

import { InternalError } from '../../errors.js';

const PRIMITIVE_POLY = 0x11d;

/** GF_EXP[i] = 2^i, doubled in length so GF_EXP[a + b] needs no modulo. */
const GF_EXP = new Uint8Array(512);
/** GF_LOG[x] = i with 2^i = x, for x != 0. */
const GF_LOG = new Uint8Array(256);
/** GF_MUL[(a << 8) | b] = a * b. */
const GF_MUL = new Uint8Array(256 * 256);

function buildTables(): void {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= PRIMITIVE_POLY;
  }
  for (let i = 255; i < 512; i++) GF_EXP[i] = GF_EXP[i - 255];
  for (let a = 1; a < 256; a++) {
    for (let b = 1; b < 256; b++) GF_MUL[(a << 8) | b] = GF_EXP[GF_LOG[a] + GF_LOG[b]];
  }
}
buildTables();

export function gfMul(a: number, b: number): number {
  return GF_MUL[(a << 8) | b];
}

/** The multiplicative inverse of a non-zero element. */
export function gfInv(a: number): number {
  if (a === 0) throw new InternalError('GF(256): zero has no inverse');
  return GF_EXP[255 - GF_LOG[a]];
}

/** dst[i] ^= c * src[i] for every i < src.length (dst at least as long as src). */
export function gfMulAddInto(dst: Uint8Array, src: Uint8Array, c: number): void {
  if (c === 0) return;
  if (c === 1) {
    for (let i = 0; i < src.length; i++) dst[i] ^= src[i];
    return;
  }
  const row = c << 8;
  for (let i = 0; i < src.length; i++) dst[i] ^= GF_MUL[row | src[i]];
}

/**
 * The inverse of an n x n matrix given as rows, by Gauss-Jordan elimination, or undefined
 * if it is singular. The input is not modified.
 */
export function gfInvertMatrix(rows: readonly Uint8Array[]): Uint8Array[] | undefined {
  const n = rows.length;
  const a = rows.map((row) => Uint8Array.from(row));
  const inv = rows.map((_, i) => {
    const unit = new Uint8Array(n);
    unit[i] = 1;
    return unit;
  });
  for (let col = 0; col < n; col++) {
    const pivot = a.findIndex((row, r) => r >= col && row[col] !== 0);
    if (pivot < 0) return undefined;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    [inv[col], inv[pivot]] = [inv[pivot], inv[col]];
    const scale = gfInv(a[col][col]);
    scaleRow(a[col], scale);
    scaleRow(inv[col], scale);
    for (let r = 0; r < n; r++) {
      const factor = a[r][col];
      if (r === col || factor === 0) continue;
      gfMulAddInto(a[r], a[col], factor);
      gfMulAddInto(inv[r], inv[col], factor);
    }
  }
  return inv;
}

/**
 * The rank of a rows x cols matrix stored row by row in `m`, which is reduced in place
 * (row echelon form). Allocation-free: it runs once per loss pattern when RaptorQ's
 * guarantee is verified.
 */
export function gfRankInPlace(m: Uint8Array, rows: number, cols: number): number {
  let rank = 0;
  for (let col = 0; col < cols && rank < rows; col++) {
    let pivot = rank;
    while (pivot < rows && m[pivot * cols + col] === 0) pivot++;
    if (pivot === rows) continue;
    if (pivot !== rank) swapRows(m, cols, pivot, rank);
    const inverse = gfInv(m[rank * cols + col]);
    for (let r = rank + 1; r < rows; r++) {
      const lead = m[r * cols + col];
      if (lead === 0) continue;
      const base = GF_MUL[(lead << 8) | inverse] << 8;
      for (let c = col; c < cols; c++) m[r * cols + c] ^= GF_MUL[base | m[rank * cols + c]];
    }
    rank++;
  }
  return rank;
}

function swapRows(m: Uint8Array, cols: number, a: number, b: number): void {
  for (let c = 0; c < cols; c++) {
    const t = m[a * cols + c];
    m[a * cols + c] = m[b * cols + c];
    m[b * cols + c] = t;
  }
}

function scaleRow(row: Uint8Array, c: number): void {
  const base = c << 8;
  for (let i = 0; i < row.length; i++) row[i] = GF_MUL[base | row[i]];
}

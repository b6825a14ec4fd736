/**
 * FEC scheme "rs" (scheme id 3): systematic Reed-Solomon erasure code over GF(256).
 *
 * The generator is [I; C] with C a Cauchy matrix: C[j][i] = 1 / (x_j + y_i) with source
 * points y_i = i (0..63) and repair points x_j = 128 + j (128..191). Every square submatrix
 * of a Cauchy matrix is invertible, so the code is MDS: any k of the k+r packets of a block
 * recover it, whichever they are (guaranteedRecoverable = r). A block of fewer frames uses
 * the first k columns, so short blocks need no other matrix.
 *
 * Hand-written rather than taken from npm: the npm erasure-code packages are a native addon
 * (@ronomon/reed-solomon: needs an approved install script and a compiler), wasm builds with
 * async set-up and a copy across the wasm boundary per call
 * (@digitaldefiance/reed-solomon-erasure.wasm), or blockchain data-availability codecs
 * (@bnb-chain/reed-solomon), each with well under 2,000 downloads a month. Our blocks are
 * at most 64 symbols of a few hundred bytes; a Cauchy code over a 64 KiB multiplication
 * table is a hundred lines of plain TypeScript and decodes a block in microseconds.
 */
import {
  bareRepairSymbolSize,
  blockCodec,
  checkFramesToEncode,
  collectBlock,
  FEC_MAX_K,
  FEC_MAX_R,
  gfInv,
  gfInvertMatrix,
  gfMulAddInto,
  InternalError,
  mulAddSymbolInto,
  presentRepairs,
  readSymbol,
  symbolSizeFor,
  validateFecParams,
  type CollectedBlock,
  type FecCodec,
  type FecPacket,
  type FecParams,
  type FecSchemeFactory,
} from '../../../core/plugin.js';

const NAME = 'rs';
const FORMAT = 'fec-rs';
const REPAIR_POINT_BASE = 128;

/** CAUCHY[j * FEC_MAX_K + i]: coefficient of source symbol i in repair symbol j. */
const CAUCHY = new Uint8Array(FEC_MAX_R * FEC_MAX_K);
for (let j = 0; j < FEC_MAX_R; j++) {
  for (let i = 0; i < FEC_MAX_K; i++) CAUCHY[j * FEC_MAX_K + i] = gfInv((REPAIR_POINT_BASE + j) ^ i);
}

function coefficient(j: number, i: number): number {
  return CAUCHY[j * FEC_MAX_K + i];
}

function encodeBlock(params: FecParams, frames: readonly Uint8Array[]): FecPacket[] {
  checkFramesToEncode(NAME, params, frames);
  const size = symbolSizeFor(frames);
  return Array.from({ length: params.r }, (_, j) => {
    const repair = new Uint8Array(size);
    frames.forEach((frame, i) => mulAddSymbolInto(repair, frame, coefficient(j, i)));
    return { index: frames.length + j, repair: true, data: repair };
  });
}

/**
 * Solve for the lost source symbols from as many repair symbols as there are lost frames:
 * subtract the known frames' share from each repair, then apply the inverse of the square
 * Cauchy submatrix (rows: repairs used, columns: lost frames).
 */
function solveLost(block: CollectedBlock, repairs: { j: number; data: Uint8Array }[]): Uint8Array[] {
  const residuals = repairs.map(({ j, data }) => {
    const residual = data.slice();
    block.sources.forEach((frame, i) => {
      if (frame !== undefined) mulAddSymbolInto(residual, frame, coefficient(j, i));
    });
    return residual;
  });
  const submatrix = repairs.map(({ j }) => Uint8Array.from(block.lost, (i) => coefficient(j, i)));
  const inverse = gfInvertMatrix(submatrix);
  if (inverse === undefined) throw new InternalError('rs: Cauchy submatrix is singular');
  return inverse.map((row) => {
    const symbol = new Uint8Array(residuals[0].length);
    row.forEach((c, q) => gfMulAddInto(symbol, residuals[q], c));
    return symbol;
  });
}

function decodeBlock(params: FecParams, received: readonly FecPacket[], k: number): (Uint8Array | undefined)[] {
  const block = collectBlock(FORMAT, params, received, k);
  const repairs = presentRepairs(block);
  if (block.lost.length === 0 || repairs.length === 0) return block.sources;
  bareRepairSymbolSize(FORMAT, params, block);
  if (repairs.length < block.lost.length) return block.sources;
  const symbols = solveLost(block, repairs.slice(0, block.lost.length));
  const frames = block.sources.slice();
  block.lost.forEach((i, t) => {
    frames[i] = readSymbol(FORMAT, symbols[t]);
  });
  return frames;
}

function create(params: FecParams): FecCodec {
  return blockCodec(NAME, params, encodeBlock, decodeBlock);
}

export const rsFecScheme: FecSchemeFactory = {
  name: NAME,
  version: '0.1.0',
  schemeId: 3,
  description: 'Systematic Reed-Solomon (Cauchy, GF(256)): any k of the k+r packets of a block recover it',
  guaranteedRecoverable(params) {
    validateFecParams(NAME, params);
    return params.r;
  },
  availability: () => ({ available: true }),
  create,
};

/** The `wzp:fec` hook: contributes the "rs" scheme. */
export default async function fecRsHook(): Promise<FecSchemeFactory[]> {
  return [rsFecScheme];
}

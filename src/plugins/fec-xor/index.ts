/**
 * FEC scheme "xor" (scheme id 2): XOR parity over strided groups of a block.
 *
 * A block of k frames with r repair packets has G = min(r, k) parity groups; source frame i
 * belongs to group i mod G and repair packet j carries the XOR of the symbols of group
 * j mod G (symbols: length-prefixed, zero-padded frames, core/media/fec/symbols.ts).
 *
 * - r < k: group g holds frames g, g+G, g+2G, ... and one parity. Consecutive frames fall in
 *   different groups, so a burst of up to G consecutive lost frames is repaired when their
 *   parities arrive. Guaranteed: one lost packet per group.
 * - r >= k: every group is one frame plus floor(r/k) or ceil(r/k) copies of it (repetition).
 *   Guaranteed: as many lost packets per group as the group has copies.
 *
 * So the promise for any block is max(1, floor(r/k)) lost packets (0 when r = 0); two losses
 * in one group of a single parity stay lost.
 */
import {
  bareRepairSymbolSize,
  blockCodec,
  checkFramesToEncode,
  collectBlock,
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

const NAME = 'xor';
const FORMAT = 'fec-xor';

function groupCount(k: number, r: number): number {
  return Math.min(k, r);
}

function encodeBlock(params: FecParams, frames: readonly Uint8Array[]): FecPacket[] {
  checkFramesToEncode(NAME, params, frames);
  const k = frames.length;
  const groups = groupCount(k, params.r);
  if (groups === 0) return [];
  const size = symbolSizeFor(frames);
  const parities = Array.from({ length: groups }, () => new Uint8Array(size));
  frames.forEach((frame, i) => mulAddSymbolInto(parities[i % groups], frame, 1));
  return Array.from({ length: params.r }, (_, j) => ({ index: k + j, repair: true, data: parities[j % groups].slice() }));
}

/** The frame at `lostIndex`: its group's parity XOR the other frames of the group. */
function recoverFromParity(block: CollectedBlock, groups: number, lostIndex: number, parity: Uint8Array): Uint8Array {
  const acc = parity.slice();
  for (let i = lostIndex % groups; i < block.sources.length; i += groups) {
    const frame = block.sources[i];
    if (frame !== undefined) mulAddSymbolInto(acc, frame, 1);
  }
  return readSymbol(FORMAT, acc);
}

function decodeBlock(params: FecParams, received: readonly FecPacket[], k: number): (Uint8Array | undefined)[] {
  const block = collectBlock(FORMAT, params, received, k);
  const repairs = presentRepairs(block);
  if (block.lost.length === 0 || repairs.length === 0) return block.sources;
  bareRepairSymbolSize(FORMAT, params, block);
  const groups = groupCount(k, params.r);
  const lostPerGroup = new Array<number>(groups).fill(0);
  for (const i of block.lost) lostPerGroup[i % groups]++;
  const frames = block.sources.slice();
  for (const i of block.lost) {
    const group = i % groups;
    const parity = repairs.find(({ j }) => j % groups === group);
    if (lostPerGroup[group] === 1 && parity !== undefined) {
      frames[i] = recoverFromParity(block, groups, i, parity.data);
    }
  }
  return frames;
}

function create(params: FecParams): FecCodec {
  return blockCodec(NAME, params, encodeBlock, decodeBlock);
}

export const xorFecScheme: FecSchemeFactory = {
  name: NAME,
  version: '0.1.0',
  schemeId: 2,
  description: 'XOR parity over strided groups: repairs one lost packet per parity group (repetition when r >= k)',
  guaranteedRecoverable(params) {
    validateFecParams(NAME, params);
    return params.r === 0 ? 0 : Math.max(1, Math.floor(params.r / params.k));
  },
  availability: () => ({ available: true }),
  create,
};

/** The `wzp:fec` hook: contributes the "xor" scheme. */
export default async function fecXorHook(): Promise<FecSchemeFactory[]> {
  return [xorFecScheme];
}

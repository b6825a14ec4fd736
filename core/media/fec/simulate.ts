/**
 * Monte-Carlo simulation of the FEC pipeline under packet loss: frames -> scheme encoder ->
 * interleaver -> loss model -> block assembler -> scheme decoder, counting delivered frames
 * and checking every delivered byte. Seeded (core/media/prng.ts), so a run is
 * reproducible; used by the tests and for the recovery rates in docs/fec.md.
 */
import { InternalError } from '../../errors.js';
import type { Prng } from '../prng.js';
import type { FecDecoder, FecParams, FecSchemeFactory } from '../fec-types.js';
import {
  FecBlockAssembler,
  FecInterleaver,
  type DecodedFecBlock,
  type FecBlockPacket,
} from './interleaver.js';

/** Decides, packet by packet in send order, which packets the network loses. */
export interface LossModel {
  readonly description: string;
  lose(): boolean;
}

/** Independent loss with the given probability. */
export function randomLoss(probability: number, prng: Prng): LossModel {
  return { description: `${(probability * 100).toFixed(1)}% random loss`, lose: () => prng.chance(probability) };
}

export interface GilbertElliottOptions {
  /** Mean run of packets in the good state (1 / P(good -> burst)). */
  meanGoodPackets: number;
  /** Mean run of packets in the burst state (1 / P(burst -> good)). */
  meanBurstPackets: number;
  /** Loss probability in the good state (default 0). */
  lossInGood?: number;
  /** Loss probability in the burst state (default 1). */
  lossInBurst?: number;
}

/**
 * Two-state Gilbert-Elliott bursty loss. The burst state holds a share
 * meanBurstPackets / (meanGoodPackets + meanBurstPackets) of the packets; the mean loss is
 * that share times lossInBurst plus the rest times lossInGood (good 20 / burst 2: 9.1%).
 */
export function gilbertElliottLoss(options: GilbertElliottOptions, prng: Prng): LossModel {
  const { meanGoodPackets, meanBurstPackets, lossInGood = 0, lossInBurst = 1 } = options;
  let inBurst = false;
  return {
    description: `Gilbert-Elliott bursts (good ${meanGoodPackets} / burst ${meanBurstPackets} packets)`,
    lose() {
      inBurst = inBurst ? !prng.chance(1 / meanBurstPackets) : prng.chance(1 / meanGoodPackets);
      return prng.chance(inBurst ? lossInBurst : lossInGood);
    },
  };
}

export interface FecSimulationOptions {
  scheme: FecSchemeFactory;
  params: FecParams;
  /** Interleaving depth (1 = none). */
  depth: number;
  /** Number of blocks to send (blocks * k frames; a last partial group is flushed as short blocks). */
  blocks: number;
  /** Frame sizes, drawn uniformly from min..max bytes (max <= params.maxFrameBytes). */
  frameBytes: { min: number; max: number };
  loss: LossModel;
  /** Draws frame sizes and contents. */
  prng: Prng;
}

export interface FecSimulationResult {
  framesSent: number;
  /** Frames handed on with the right bytes, received or recovered. */
  framesDelivered: number;
  /** Of those, frames whose own packet was lost and FEC recovered. */
  framesRecovered: number;
  /** Frames handed on with wrong bytes: must be 0. */
  framesWrong: number;
  packetsSent: number;
  packetsLost: number;
  /** Payload bytes of the source packets sent (the frames). */
  sourceBytes: number;
  /** Payload bytes of the repair packets sent: repairBytes / sourceBytes is the FEC overhead. */
  repairBytes: number;
  /** framesDelivered / framesSent. */
  deliveredRatio: number;
}

function randomFrame(options: FecSimulationOptions): Uint8Array {
  const { min, max } = options.frameBytes;
  const length = min + Math.floor(options.prng.next() * (max - min + 1));
  return Uint8Array.from({ length }, () => options.prng.nextU32() & 0xff);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A decoder per block geometry, created on first use, as a receiver keeps them. */
function cachedDecoders(scheme: FecSchemeFactory, maxFrameBytes: number): (k: number, r: number) => FecDecoder {
  const decoders = new Map<string, FecDecoder>();
  return (k, r) => {
    const key = `${k}/${r}`;
    let decoder = decoders.get(key);
    if (decoder === undefined) {
      decoder = scheme.create({ k, r, maxFrameBytes }).decoder;
      decoders.set(key, decoder);
    }
    return decoder;
  };
}

function emptyResult(): FecSimulationResult {
  return {
    framesSent: 0,
    framesDelivered: 0,
    framesRecovered: 0,
    framesWrong: 0,
    packetsSent: 0,
    packetsLost: 0,
    sourceBytes: 0,
    repairBytes: 0,
    deliveredRatio: 0,
  };
}

/** Run the whole pipeline over `options.blocks` blocks and count what arrives. */
export function simulateFecDelivery(options: FecSimulationOptions): FecSimulationResult {
  const { scheme, params, depth } = options;
  const { encoder } = scheme.create(params);
  const assembler = new FecBlockAssembler({ window: depth, decoderFor: cachedDecoders(scheme, params.maxFrameBytes) });
  const interleaver = new FecInterleaver({ encoder, k: params.k, r: params.r, depth });
  const sent = new Map<number, { frames: Uint8Array[]; lostSources: Set<number> }>();
  const result = emptyResult();

  const account = (decoded: DecodedFecBlock[]): void => {
    for (const { blockId, frames } of decoded) {
      const original = sent.get(blockId);
      if (original === undefined) throw new InternalError(`simulation: block ${blockId} handed on twice`);
      sent.delete(blockId);
      frames.forEach((frame, i) => {
        if (frame === undefined) return;
        if (!sameBytes(frame, original.frames[i])) result.framesWrong++;
        else {
          result.framesDelivered++;
          if (original.lostSources.has(i)) result.framesRecovered++;
        }
      });
    }
  };
  const recordSource = ({ blockId, packet }: FecBlockPacket): void => {
    let block = sent.get(blockId);
    if (block === undefined) sent.set(blockId, (block = { frames: [], lostSources: new Set() }));
    block.frames[packet.index] = packet.data;
    result.framesSent++;
    result.sourceBytes += packet.data.length;
  };
  const transmit = (packets: readonly FecBlockPacket[]): void => {
    for (const p of packets) {
      result.packetsSent++;
      if (p.packet.repair) result.repairBytes += p.packet.data.length;
      else recordSource(p);
      if (options.loss.lose()) {
        result.packetsLost++;
        if (!p.packet.repair) sent.get(p.blockId)?.lostSources.add(p.packet.index);
      } else {
        account(assembler.push(p));
      }
    }
  };

  for (let n = 0; n < options.blocks * params.k; n++) transmit(interleaver.push(randomFrame(options)));
  transmit(interleaver.flush());
  account(assembler.flush());
  result.deliveredRatio = result.framesDelivered / result.framesSent;
  return result;
}

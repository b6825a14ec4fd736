/**
 * Monte-Carlo recovery over the whole pipeline (encoder, interleaver, loss, assembler,
 * decoder) with seeded randomness: the orderings and tier targets in docs/fec.md.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  gilbertElliottLoss,
  randomLoss,
  simulateFecDelivery,
  type FecSimulationResult,
  type LossModel,
} from '../../core/media/fec/simulate.js';
import type { FecSchemeFactory } from '../../core/media/fec-types.js';
import { Prng } from '../../core/media/prng.js';
import { loadBuiltinFecSchemes } from './schemes.js';

const schemes = await loadBuiltinFecSchemes();

interface Run {
  k: number;
  r: number;
  depth: number;
  blocks: number;
  frameBytes: { min: number; max: number };
  loss: (seed: number) => LossModel;
}

function simulate(scheme: FecSchemeFactory, run: Run, seed = 1): FecSimulationResult {
  const result = simulateFecDelivery({
    scheme,
    params: { k: run.k, r: run.r, maxFrameBytes: 160 },
    depth: run.depth,
    blocks: run.blocks,
    frameBytes: run.frameBytes,
    loss: run.loss(seed),
    prng: new Prng(seed + 1000),
  });
  assert.equal(result.framesWrong, 0, `${scheme.name} delivered wrong bytes`);
  return result;
}

const bursts = (seed: number) => gilbertElliottLoss({ meanGoodPackets: 20, meanBurstPackets: 2 }, new Prng(seed));
const random = (p: number) => (seed: number) => randomLoss(p, new Prng(seed));

describe('loss models', () => {
  test('Gilbert-Elliott good 20 / burst 2 loses 2/22 of packets, in bursts of 2 on average', () => {
    const model = bursts(3);
    let lost = 0;
    let bursts_ = 0;
    let previous = false;
    const n = 200_000;
    for (let i = 0; i < n; i++) {
      const l = model.lose();
      if (l) lost++;
      if (l && !previous) bursts_++;
      previous = l;
    }
    assert.ok(Math.abs(lost / n - 2 / 22) < 0.005, `mean loss ${lost / n}`);
    assert.ok(Math.abs(lost / bursts_ - 2) < 0.1, `mean burst ${lost / bursts_}`);
  });

  test('without FEC exactly the frames that arrive are delivered', () => {
    const run: Run = { k: 5, r: 0, depth: 1, blocks: 400, frameBytes: { min: 1, max: 60 }, loss: random(0.3) };
    const result = simulate(schemes.none, run);
    assert.equal(result.framesDelivered, result.framesSent - result.packetsLost);
    assert.equal(result.framesRecovered, 0);
  });
});

describe('at equal overhead under bursts, with interleaving, the MDS-like schemes beat XOR parity', () => {
  // 60-byte frames: repair payloads are 62 (xor, rs) and 66 (raptorq) bytes, so R = 5 costs
  // the same bandwidth in each scheme. Gilbert-Elliott good 20 / burst 2, depth 2.
  const run: Run = { k: 5, r: 5, depth: 2, blocks: 1500, frameBytes: { min: 60, max: 60 }, loss: bursts };

  for (const seed of [1, 2]) {
    test(`seed ${seed}: rs and raptorq deliver more frames than xor`, (t) => {
      const xor = simulate(schemes.xor, run, seed);
      const rs = simulate(schemes.rs, run, seed);
      const raptorq = simulate(schemes.raptorq, run, seed);
      assert.equal(rs.packetsLost, xor.packetsLost, 'same losses for every scheme');
      assert.ok(raptorq.repairBytes <= 1.1 * xor.repairBytes && rs.repairBytes === xor.repairBytes, 'equal overhead');
      const lostFrames = (r: FecSimulationResult) => r.framesSent - r.framesDelivered;
      t.diagnostic(`frames lost of ${xor.framesSent}: xor ${lostFrames(xor)}, rs ${lostFrames(rs)}, raptorq ${lostFrames(raptorq)}`);
      assert.ok(lostFrames(rs) < lostFrames(xor), `rs lost ${lostFrames(rs)}, xor ${lostFrames(xor)}`);
      assert.ok(lostFrames(raptorq) < lostFrames(xor), `raptorq lost ${lostFrames(raptorq)}, xor ${lostFrames(xor)}`);
    });
  }
});

describe('suggested tier defaults (rs) meet the delivery targets', () => {
  const targets: [string, Run, number][] = [
    ['GOOD K=5 R=3 D=1, 10% random loss', { k: 5, r: 3, depth: 1, blocks: 6000, frameBytes: { min: 50, max: 70 }, loss: random(0.1) }, 0.995],
    ['DEGRADED K=5 R=7 D=2, 25% random loss', { k: 5, r: 7, depth: 2, blocks: 6000, frameBytes: { min: 14, max: 20 }, loss: random(0.25) }, 0.995],
    ['DEGRADED K=5 R=7 D=2, bursts 20/2', { k: 5, r: 7, depth: 2, blocks: 6000, frameBytes: { min: 14, max: 20 }, loss: bursts }, 0.995],
    ['CATASTROPHIC K=5 R=15 D=2, 50% random loss', { k: 5, r: 15, depth: 2, blocks: 6000, frameBytes: { min: 6, max: 6 }, loss: random(0.5) }, 0.99],
    ['CATASTROPHIC K=5 R=15 D=2, bursts 20/2', { k: 5, r: 15, depth: 2, blocks: 6000, frameBytes: { min: 6, max: 6 }, loss: bursts }, 0.99],
  ];
  for (const [name, run, target] of targets) {
    test(`${name}: >= ${target * 100}% delivered`, (t) => {
      const { deliveredRatio } = simulate(schemes.rs, run);
      t.diagnostic(`delivered ${(deliveredRatio * 100).toFixed(2)}%`);
      assert.ok(deliveredRatio >= target, `delivered ${(deliveredRatio * 100).toFixed(2)}%`);
    });
  }
});

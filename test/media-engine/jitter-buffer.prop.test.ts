import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { JitterBuffer, type MediaFrame } from '../../core/media/jitter-buffer.js';
import { FRAME_MS, frame, run } from './jitter-sim.js';

/** One frame's fate on the network: lost, or delivered after `delayMs`, possibly twice. */
const fateArb = fc.record({
  lost: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
  delayMs: fc.integer({ min: 0, max: 600 }),
  duplicateAfterMs: fc.oneof(
    { weight: 9, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 150 }) },
  ),
});

const scenarioArb = fc.record({
  seqBase: fc.integer({ min: 0, max: 0xffff }),
  tsBase: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  fates: fc.array(fateArb, { minLength: 1, maxLength: 250 }),
});

describe('JitterBuffer properties', () => {
  it('plays each frame at most once, in order, and accounts for every frame delivered', () => {
    fc.assert(
      fc.property(scenarioArb, ({ seqBase, tsBase, fates }) => {
        const frames: MediaFrame[] = [];
        let copies = 0;
        fates.forEach((fate, n) => {
          if (fate.lost) return;
          const original = frame(n, n * FRAME_MS + fate.delayMs, { seq: seqBase, ts: tsBase });
          frames.push(original);
          if (fate.duplicateAfterMs !== null) {
            frames.push({ ...original, arrivalMs: original.arrivalMs + fate.duplicateAfterMs });
            copies++;
          }
        });
        const jb = new JitterBuffer();
        const lastArrivalMs = Math.max(0, ...frames.map((f) => f.arrivalMs));
        const pulls = run(jb, frames, 3, { endMs: lastArrivalMs + 3000 });

        const consumed: number[] = [];
        let outputs = 0;
        for (const { result } of pulls) {
          if (result.kind === 'frame') {
            if (result.removed !== undefined) consumed.push(result.removed.seq);
            consumed.push(result.seq);
          }
          if (result.kind !== 'empty') outputs++;
        }
        const indices = consumed.map((seq) => (seq - seqBase + 0x1_0000) % 0x1_0000);
        for (let i = 1; i < indices.length; i++) assert.ok(indices[i] > indices[i - 1], 'strictly increasing');

        const stats = jb.stats();
        const unique = frames.length - copies;
        assert.equal(stats.packetsDuplicated, copies);
        assert.equal(consumed.length + stats.packetsDiscarded, unique, 'every frame played, removed or discarded');
        assert.equal(stats.totalSamplesReceived, outputs * 960);
        assert.ok(stats.expandRate >= 0 && stats.expandRate <= 1);
      }),
      { numRuns: 200, seed: 20_240_601 },
    );
  });
});

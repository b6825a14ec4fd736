import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeFecBlock, FecBlockAssembler, FecInterleaver, type FecBlockPacket } from '../../core/media/fec/interleaver.js';
import { rsFecScheme } from '../../src/plugins/fec-rs/index.js';

test('a burst of B lost packets hits each block of a full interleave group at most ceil(B/D) times', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 0, max: 10 }),
      fc.nat(),
      fc.integer({ min: 1, max: 60 }),
      (depth, k, r, start, burst) => {
        const { encoder } = rsFecScheme.create({ k, r, maxFrameBytes: 1 });
        const il = new FecInterleaver({ encoder, k, r, depth });
        const sent: FecBlockPacket[] = [];
        for (let n = 0; n < 3 * depth * k; n++) sent.push(...il.push(Uint8Array.of(n)));
        const first = start % sent.length;
        const hits = new Map<number, number>();
        for (const p of sent.slice(first, first + burst)) hits.set(p.blockId, (hits.get(p.blockId) ?? 0) + 1);
        for (const count of hits.values()) assert.ok(count <= Math.ceil(burst / depth));
      },
    ),
  );
});

test('the assembler hands every block on exactly once, with only true frames, whatever arrives in any order', () => {
  const params = { k: 4, r: 2, maxFrameBytes: 16 };
  const { encoder, decoder } = rsFecScheme.create(params);
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.uint8Array({ maxLength: 16 }), { minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
      fc.func(fc.boolean()),
      fc.infiniteStream(fc.nat()),
      (blocks, lose, order) => {
        const sent = blocks.flatMap((frames, blockId) =>
          encodeFecBlock(encoder, frames).map((packet) => ({ blockId, k: 4, r: 2, packet })),
        );
        const keys = [...order.take(sent.length)];
        const arrived = sent
          .map((p, i) => ({ p, key: keys[i] }))
          .filter(({ p }) => !lose(p.blockId, p.packet.index))
          .sort((a, b) => a.key - b.key)
          .map(({ p }) => p);
        const assembler = new FecBlockAssembler({ window: 8, decoderFor: () => decoder });
        const out = [...arrived.flatMap((p) => assembler.push(p)), ...assembler.flush()];
        const ids = out.map((b) => b.blockId);
        assert.equal(new Set(ids).size, ids.length, 'a block handed on twice');
        for (const { blockId, frames } of out) {
          frames.forEach((f, i) => f === undefined || assert.deepEqual(f, blocks[blockId][i]));
          const received = arrived.filter((p) => p.blockId === blockId).length;
          if (received >= 4) assert.ok(frames.every((f) => f !== undefined), 'k packets of an MDS block recover it');
        }
      },
    ),
    { numRuns: 150 },
  );
});

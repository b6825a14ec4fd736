/** Properties of the socket demultiplexer's registration and dispatch (no sockets). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Demux, QUIC_CLASS, type FirstByteRange } from '../../core/transport/demux.js';

const rangeArb: fc.Arbitrary<FirstByteRange> = fc
  .tuple(fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 12 }))
  .map(([lo, width]) => [lo, Math.min(0xff, lo + width)] as const);
const classesArb = fc.array(fc.array(rangeArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 12 });

describe('Demux properties', () => {
  it('whatever classes are tried, the accepted ones own disjoint bytes, never QUIC\'s, and each packet goes to exactly its owner', async () => {
    await fc.assert(
      fc.asyncProperty(classesArb, fc.array(fc.uint8Array({ minLength: 1, maxLength: 4 }), { maxLength: 60 }), async (declared, packets) => {
        const quic: number[] = [];
        const demux = new Demux(
          () => undefined,
          (d) => {
            quic.push(d[0]);
            return Promise.resolve();
          },
        );
        const got = new Map<string, number[]>();
        const owner = new Map<number, string>();
        declared.forEach((ranges, i) => {
          const name = `c${i}`;
          const bytes = ranges.flatMap(([lo, hi]) => Array.from({ length: hi - lo + 1 }, (_, k) => lo + k));
          const acceptable = new Set(bytes).size === bytes.length && bytes.every((b) => (b & 0x40) === 0 && !owner.has(b));
          try {
            demux.register({ name, firstBytes: ranges, handle: (d) => got.set(name, [...(got.get(name) ?? []), d[0]]) });
          } catch (e) {
            assert.equal((e as Error).name, 'InternalError');
            assert.ok(!acceptable, `${name} ${JSON.stringify(ranges)} was refused although free`);
            return;
          }
          assert.ok(acceptable, `${name} ${JSON.stringify(ranges)} was accepted although it overlaps`);
          for (const b of bytes) owner.set(b, name);
        });
        let unclaimed = 0;
        for (const p of packets) {
          await demux.receive(Buffer.from(p), { address: '127.0.0.1', port: 1 });
          const b = p[0];
          if ((b & 0x40) !== 0) assert.equal(demux.ownerOf(b), QUIC_CLASS);
          else if (!owner.has(b)) unclaimed++;
          else assert.equal(demux.ownerOf(b), owner.get(b));
        }
        assert.deepEqual(quic, packets.filter((p) => (p[0] & 0x40) !== 0).map((p) => p[0]));
        for (const [name, firsts] of got) assert.ok(firsts.every((b) => owner.get(b) === name));
        const delivered = [...got.values()].reduce((n, v) => n + v.length, 0);
        assert.equal(delivered + quic.length + unclaimed, packets.length);
        assert.equal(demux.stats.unclaimed, unclaimed);
      }),
      { numRuns: 300 },
    );
  });
});

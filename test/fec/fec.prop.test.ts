/** Properties of the built-in schemes over random blocks and random losses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeFecBlock } from '../../core/media/fec/interleaver.js';
import type { FecPacket, FecSchemeFactory } from '../../core/media/fec-types.js';
import { loadBuiltinFecSchemes } from './schemes.js';

const schemes = await loadBuiltinFecSchemes();
const MAX_FRAME = 96;

interface Case {
  frames: Uint8Array[];
  r: number;
  lost: Set<number>;
}

/** A block of 1..kMax frames of 0..96 bytes, r repair packets, and a set of lost packet indexes. */
function blockCase(kMax: number, rMax: number, rMin = 0): fc.Arbitrary<Case> {
  return fc
    .record({
      frames: fc.array(fc.uint8Array({ maxLength: MAX_FRAME }), { minLength: 1, maxLength: kMax }),
      r: fc.integer({ min: rMin, max: rMax }),
    })
    .chain(({ frames, r }) =>
      fc
        .uniqueArray(fc.nat({ max: frames.length + r - 1 }), { maxLength: frames.length + r })
        .map((lost) => ({ frames, r, lost: new Set(lost) })),
    );
}

function run(scheme: FecSchemeFactory, c: Case, k = c.frames.length) {
  const params = { k, r: c.r, maxFrameBytes: MAX_FRAME };
  const packets = encodeFecBlock(scheme.create(params).encoder, c.frames);
  const kept = packets.filter((p) => !c.lost.has(p.index));
  return { kept, out: scheme.create(params).decoder.decode(kept, c.frames.length) };
}

function assertTruthful(c: Case, kept: FecPacket[], out: (Uint8Array | undefined)[]): void {
  assert.equal(out.length, c.frames.length);
  out.forEach((f, i) => f === undefined || assert.deepEqual(f, c.frames[i]));
  for (const p of kept) if (!p.repair) assert.deepEqual(out[p.index], c.frames[p.index]);
}

test('rs: any loss of at most r packets is repaired exactly (MDS)', () => {
  fc.assert(
    fc.property(blockCase(16, 12), (c) => {
      fc.pre(c.lost.size <= c.r);
      assert.deepEqual(run(schemes.rs, c).out, c.frames);
    }),
    { numRuns: 300 },
  );
});

test('rs: any k packets that arrive rebuild the block, short blocks included', () => {
  fc.assert(
    fc.property(blockCase(16, 12), fc.integer({ min: 0, max: 8 }), (c, extraK) => {
      const k = c.frames.length;
      const received = k + c.r - c.lost.size;
      const { out } = run(schemes.rs, c, k + extraK);
      if (received >= k) assert.deepEqual(out, c.frames);
    }),
    { numRuns: 300 },
  );
});

test('xor: one lost packet per parity group is always repaired', () => {
  fc.assert(
    fc.property(blockCase(16, 12, 1), (c) => {
      const k = c.frames.length;
      const groups = Math.min(k, c.r);
      const perGroup = new Map<number, number>();
      for (const i of c.lost) {
        const g = i < k ? i % groups : (i - k) % groups;
        perGroup.set(g, (perGroup.get(g) ?? 0) + 1);
      }
      fc.pre([...perGroup.values()].every((n) => n <= 1));
      assert.deepEqual(run(schemes.xor, c).out, c.frames);
    }),
    { numRuns: 300 },
  );
});

test('raptorq: any loss within its verified guarantee is repaired exactly', () => {
  fc.assert(
    fc.property(blockCase(8, 6), (c) => {
      const promised = schemes.raptorq.guaranteedRecoverable({ k: c.frames.length, r: c.r, maxFrameBytes: MAX_FRAME });
      fc.pre(c.lost.size <= promised);
      assert.deepEqual(run(schemes.raptorq, c).out, c.frames);
    }),
    { numRuns: 200 },
  );
});

for (const name of ['xor', 'rs', 'raptorq'] as const) {
  test(`${name}: whatever is lost, every returned frame is true and every received frame is returned`, () => {
    fc.assert(
      fc.property(blockCase(10, 10), (c) => {
        const { kept, out } = run(schemes[name], c);
        assertTruthful(c, kept, out);
      }),
      { numRuns: 200 },
    );
  });

  test(`${name}: random packets yield DecodeError or a well-formed answer, never another error`, () => {
    const packet = fc.record({
      index: fc.oneof(fc.integer({ min: -2, max: 20 }), fc.double()),
      repair: fc.boolean(),
      data: fc.uint8Array({ maxLength: 200 }),
    });
    const { decoder } = schemes[name].create({ k: 5, r: 4, maxFrameBytes: MAX_FRAME });
    fc.assert(
      fc.property(fc.array(packet, { maxLength: 10 }), fc.integer({ min: -1, max: 7 }), (packets, k) => {
        try {
          const out = decoder.decode(packets, k);
          assert.equal(out.length, k);
        } catch (err) {
          assert.equal((err as Error).name, 'DecodeError', String(err));
        }
      }),
      { numRuns: 300 },
    );
  });
}

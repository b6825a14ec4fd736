import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_DATAGRAM_BYTES, TRUNK_MARKER } from '../../core/wire/datagram.js';
import { MAX_TRUNK_PACKETS, TrunkBatcher, decodeTrunk, encodeTrunk } from '../../core/wire/trunk.js';
import { decodeOrReject, toHex } from './helpers.js';

/** A packet the trunk can carry: not empty, not itself a trunk frame. */
function packetArb(maxLength: number): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ minLength: 1, maxLength }).filter((packet) => packet[0] !== TRUNK_MARKER);
}

/** Bytes likely to be a trunk frame: marker, a small count, then anything. */
const trunkLikeBytes = fc
  .tuple(fc.integer({ min: 0, max: 6 }), fc.uint8Array({ maxLength: 60 }))
  .map(([count, rest]) => Uint8Array.of(TRUNK_MARKER, count, ...rest));

/** The packets a datagram carries: a trunk frame's entries, or the datagram itself. */
function unpack(datagram: Uint8Array): Uint8Array[] {
  return datagram[0] === TRUNK_MARKER ? decodeTrunk(datagram) : [datagram];
}

describe('trunk properties', () => {
  it('decodeTrunk(encodeTrunk(packets)) gives the packets back', () => {
    fc.assert(
      fc.property(fc.array(packetArb(40), { minLength: 1, maxLength: 30 }), (packets) => {
        assert.deepStrictEqual(decodeTrunk(encodeTrunk(packets)), packets);
      }),
    );
  });

  it('encodeTrunk(decodeTrunk(bytes)) gives back the bytes exactly', () => {
    fc.assert(
      fc.property(trunkLikeBytes, (bytes) => {
        const packets = decodeOrReject(() => decodeTrunk(bytes));
        if (packets !== undefined) assert.equal(toHex(encodeTrunk(packets)), toHex(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes give a DecodeError or a valid decode, never another exception', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1400 }), trunkLikeBytes), (bytes) => {
        decodeOrReject(() => decodeTrunk(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('TrunkBatcher delivers every packet, in order, in datagrams that fit and could not be merged', () => {
    const scenario = fc.integer({ min: 5, max: MAX_DATAGRAM_BYTES }).chain((maxBytes) =>
      fc.record(
        {
          maxBytes: fc.constant(maxBytes),
          maxPackets: fc.integer({ min: 2, max: MAX_TRUNK_PACKETS }),
          packets: fc.array(packetArb(Math.min(maxBytes, 300)), { maxLength: 200 }),
        },
        { noNullPrototype: true },
      ),
    );
    fc.assert(
      fc.property(scenario, ({ maxBytes, maxPackets, packets }) => {
        const batcher = new TrunkBatcher({ maxBytes, maxPackets });
        const datagrams = [...packets.map((packet) => batcher.add(packet)), batcher.flush()].filter((d) => d !== undefined);
        const batches = datagrams.map(unpack);
        assert.deepStrictEqual(batches.flat(), packets);
        for (const datagram of datagrams) assert.ok(datagram.length <= maxBytes);
        for (const [i, batch] of batches.slice(0, -1).entries()) {
          const merged = [...batch, batches[i + 1][0]];
          const fits = merged.length <= maxPackets && 2 + merged.reduce((sum, p) => sum + 2 + p.length, 0) <= maxBytes;
          assert.ok(!fits, `batch ${i} was sent although the next packet fitted`);
        }
      }),
      { numRuns: 300 },
    );
  });
});

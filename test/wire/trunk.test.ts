import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { MAX_TRUNK_PACKETS, TrunkBatcher, decodeTrunk, encodeTrunk, trunkLength } from '../../core/wire/trunk.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

const MINI = '92 35 05 04 d5';
const FULL = '14 02 1234 00000960 08 01 0005 03 05 02';

const GOLDEN: [string, string, string[]][] = [
  ['one packet', 'c0 01 | 0001 14', ['14']],
  ['a mini and a full media packet', `c0 02 | 0007 ${MINI} aabb | 000f ${FULL}`, [`${MINI} aabb`, FULL]],
];

const INVALID: [string, string, string][] = [
  ['empty', '', 'truncated'],
  ['marker only', 'c0', 'truncated'],
  ['a wrong marker', 'c1 01 0001 14', 'bad-marker'],
  ['a media packet', `${FULL}`, 'bad-marker'],
  ['count 0', 'c0 00', 'bad-field'],
  ['count 129', 'c0 81 0001 14', 'bad-field'],
  ['a cut length', 'c0 01 00', 'truncated'],
  ['a cut entry', 'c0 01 0003 1402', 'truncated'],
  ['a missing entry', 'c0 02 0001 14', 'truncated'],
  ['an empty entry', 'c0 01 0000', 'bad-field'],
  ['a nested trunk', 'c0 01 0004 c0 01 0000', 'bad-field'],
  ['bytes after the last entry', 'c0 01 0001 14 00', 'trailing-bytes'],
];

describe('trunk: golden bytes', () => {
  for (const [name, bytes, packets] of GOLDEN) {
    it(`encodes and decodes ${name}`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodeTrunk(packets.map(hex))), toHex(wire));
      assert.deepStrictEqual(decodeTrunk(atOffset(wire)).map(toHex), packets.map((p) => toHex(hex(p))));
    });
  }

  for (const [name, bytes, reason] of INVALID) {
    it(`rejects ${name} with '${reason}'`, () => {
      assertDecodeError(() => decodeTrunk(atOffset(hex(bytes))), reason, 'trunk');
    });
  }

  it("rejects a datagram over the limit as 'too-large'", () => {
    const oversized = new Uint8Array(MAX_DATAGRAM_BYTES + 1);
    oversized.set(hex(`c0 01 ${(MAX_DATAGRAM_BYTES - 3).toString(16).padStart(4, '0')}`));
    assertDecodeError(() => decodeTrunk(oversized), 'too-large', 'trunk');
  });

  it('returns views into the datagram', () => {
    const wire = hex('c0 01 0001 14');
    assert.equal(decodeTrunk(wire)[0].buffer, wire.buffer);
  });
});

describe('encodeTrunk: limits', () => {
  const one = hex('14');
  const cases: [string, () => unknown][] = [
    ['no packets', () => encodeTrunk([])],
    ['129 packets', () => encodeTrunk(Array(MAX_TRUNK_PACKETS + 1).fill(one))],
    ['an empty packet', () => encodeTrunk([one, new Uint8Array(0)])],
    ['a nested trunk', () => encodeTrunk([hex('c0 01 0001 14')])],
    ['more than maxBytes', () => encodeTrunk([one, one], 7)],
    ['a maxBytes over the datagram limit', () => encodeTrunk([one], MAX_DATAGRAM_BYTES + 1)],
  ];
  for (const [name, run] of cases) {
    it(`refuses ${name} with InternalError`, () => assert.throws(run, { name: 'InternalError' }));
  }

  it('fills a datagram exactly', () => {
    const packets = [new Uint8Array(600).fill(0x14), new Uint8Array(MAX_DATAGRAM_BYTES - 2 - 4 - 600).fill(0x92)];
    assert.equal(trunkLength(packets.map((p) => p.length)), MAX_DATAGRAM_BYTES);
    assert.deepStrictEqual(decodeTrunk(encodeTrunk(packets)), packets);
  });

  it('holds 128 packets', () => {
    const packets = Array.from({ length: MAX_TRUNK_PACKETS }, (_, i) => Uint8Array.of(0x80 | (i & 0x3f), i));
    assert.deepStrictEqual(decodeTrunk(encodeTrunk(packets)), packets);
  });
});

describe('TrunkBatcher', () => {
  const packet = (size: number, fill = 0x92) => new Uint8Array(size).fill(fill);

  it('batches packets until flushed', () => {
    const batcher = new TrunkBatcher();
    const packets = [packet(5), packet(20, 0x14), packet(7)];
    for (const p of packets) assert.equal(batcher.add(p), undefined);
    assert.equal(batcher.queued, 3);
    assert.deepStrictEqual(decodeTrunk(batcher.flush()!), packets);
    assert.equal(batcher.queued, 0);
    assert.equal(batcher.flush(), undefined);
  });

  it('sends a lone packet bare', () => {
    const batcher = new TrunkBatcher();
    const p = packet(5);
    batcher.add(p);
    assert.equal(batcher.flush(), p);
  });

  it('hands back the batch when the next packet would not fit', () => {
    const batcher = new TrunkBatcher({ maxBytes: 24 });
    assert.equal(batcher.add(packet(8, 1)), undefined); // 2 + 10 = 12 bytes
    assert.equal(batcher.add(packet(8, 2)), undefined); // 22 bytes
    const ready = batcher.add(packet(1, 3)); // 25 bytes would not fit
    assert.deepStrictEqual(decodeTrunk(ready!), [packet(8, 1), packet(8, 2)]);
    assert.deepStrictEqual(batcher.flush(), packet(1, 3));
  });

  it('sends a packet too big to share a datagram on its own', () => {
    const batcher = new TrunkBatcher({ maxBytes: 20 });
    assert.equal(batcher.add(packet(3, 1)), undefined);
    assert.deepStrictEqual(batcher.add(packet(20, 2)), packet(3, 1));
    assert.deepStrictEqual(batcher.add(packet(3, 3)), packet(20, 2));
  });

  it('hands back the batch at maxPackets', () => {
    const batcher = new TrunkBatcher({ maxPackets: 2 });
    batcher.add(packet(1, 1));
    batcher.add(packet(1, 2));
    assert.deepStrictEqual(decodeTrunk(batcher.add(packet(1, 3))!), [packet(1, 1), packet(1, 2)]);
    assert.equal(batcher.queued, 1);
  });

  it('refuses packets it could never send', () => {
    const batcher = new TrunkBatcher({ maxBytes: 20 });
    for (const bad of [new Uint8Array(0), packet(21), hex('c0 01 0001 14')]) {
      assert.throws(() => batcher.add(bad), { name: 'InternalError' });
    }
    assert.equal(batcher.queued, 0);
  });

  it('checks its options', () => {
    for (const options of [{ maxBytes: MAX_DATAGRAM_BYTES + 1 }, { maxBytes: 4 }, { maxPackets: 1 }, { maxPackets: 129 }]) {
      assert.throws(() => new TrunkBatcher(options), { name: 'InternalError' }, JSON.stringify(options));
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { MAX_TAGGED_DATAGRAM_BYTES, decodeRoomDatagram, encodeRoomDatagram } from '../../core/wire/room-source.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

const GOLDEN: [string, string, number, string][] = [
  ['source 1 (prefix 0, member 1), a mini-header packet', '0000 0001 | 92 35 05 04 d5', 1, '92 35 05 04 d5'],
  ['prefix 0xa1b2, member 0x1234, one byte', 'a1b2 1234 | 14', 0xa1b2_1234, '14'],
  ['the highest source id', 'ffff ffff | c0 01 0001 14', 0xffff_ffff, 'c0 01 0001 14'],
];

describe('room source-id tag: golden bytes', () => {
  for (const [name, bytes, sourceId, datagram] of GOLDEN) {
    it(`encodes and decodes ${name}`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodeRoomDatagram(sourceId, hex(datagram))), toHex(wire));
      const decoded = decodeRoomDatagram(atOffset(wire));
      assert.equal(decoded.sourceId, sourceId);
      assert.equal(toHex(decoded.datagram), toHex(hex(datagram)));
    });
  }

  it('decodes the datagram as a view into the tagged bytes', () => {
    const wire = hex('0000 0001 14 15');
    assert.equal(decodeRoomDatagram(wire).datagram.buffer, wire.buffer);
  });

  const INVALID: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'truncated'],
    ['one byte', hex('00'), 'truncated'],
    ['a part of a tag', hex('0000 01'), 'truncated'],
    ['a tag without a datagram', hex('0000 0001'), 'truncated'],
    ['source id 0', hex('0000 0000 14'), 'bad-field'],
    ['over the limit', new Uint8Array(MAX_TAGGED_DATAGRAM_BYTES + 1).fill(1), 'too-large'],
  ];
  for (const [name, bytes, reason] of INVALID) {
    it(`rejects ${name} with '${reason}'`, () => assertDecodeError(() => decodeRoomDatagram(atOffset(bytes)), reason, 'room-source'));
  }

  it('takes the largest tagged datagram', () => {
    const datagram = new Uint8Array(MAX_DATAGRAM_BYTES).fill(0x92);
    assert.deepStrictEqual(decodeRoomDatagram(encodeRoomDatagram(7, datagram)), { sourceId: 7, datagram });
  });

  it("the relay's untagRoomDatagram is the decoder, with undefined for what it refuses", () => {
    assert.deepStrictEqual(untagRoomDatagram(hex('8001 0102 14')), { sourceId: 0x8001_0102, datagram: hex('14') });
    for (const [, bytes] of INVALID) assert.equal(untagRoomDatagram(bytes), undefined);
  });
});

describe('encodeRoomDatagram: caller bugs are InternalErrors', () => {
  const cases: [string, () => unknown][] = [
    ['source id 0', () => encodeRoomDatagram(0, hex('14'))],
    ['source id 2^32', () => encodeRoomDatagram(0x1_0000_0000, hex('14'))],
    ['a negative source id', () => encodeRoomDatagram(-1, hex('14'))],
    ['a fractional source id', () => encodeRoomDatagram(1.5, hex('14'))],
    ['an empty datagram', () => encodeRoomDatagram(1, new Uint8Array(0))],
    ['an oversized datagram', () => encodeRoomDatagram(1, new Uint8Array(MAX_DATAGRAM_BYTES + 1))],
  ];
  for (const [name, run] of cases) it(`refuses ${name}`, () => assert.throws(run, { name: 'InternalError' }));
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { decodeRoomDatagram, encodeRoomDatagram } from '../../core/wire/room-source.js';
import { decodeOrReject, toHex } from './helpers.js';

const sourceIdArb = fc.integer({ min: 1, max: 0xffff_ffff });
const datagramArb = fc.uint8Array({ minLength: 1, maxLength: MAX_DATAGRAM_BYTES });

describe('room source-id tag properties', () => {
  it('decode(encode(id, d)) gives id and d back, and every truncation is a DecodeError', () => {
    fc.assert(
      fc.property(sourceIdArb, datagramArb, (sourceId, datagram) => {
        const wire = encodeRoomDatagram(sourceId, datagram);
        assert.deepStrictEqual(decodeRoomDatagram(wire), { sourceId, datagram });
        for (const n of [0, 1, 2, 3, 4]) assert.throws(() => decodeRoomDatagram(wire.subarray(0, n)), { name: 'DecodeError', reason: 'truncated' });
      }),
      { numRuns: 500 },
    );
  });

  it('encode(decode(bytes)) gives back the bytes exactly; random bytes never throw anything but a DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), (bytes) => {
        const decoded = decodeOrReject(() => decodeRoomDatagram(bytes));
        if (decoded !== undefined) assert.equal(toHex(encodeRoomDatagram(decoded.sourceId, decoded.datagram)), toHex(bytes));
      }),
      { numRuns: 3000 },
    );
  });
});

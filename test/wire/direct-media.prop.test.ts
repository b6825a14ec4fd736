import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { DIRECT_MEDIA_TAG_BYTES, decodeDirectMedia, encodeDirectMedia, isDirectMedia } from '../../core/wire/direct-media.js';
import { decodeRoomDatagram } from '../../core/wire/room-source.js';
import { decodeOrReject, toHex } from './helpers.js';

const tagArb = fc.uint8Array({ minLength: DIRECT_MEDIA_TAG_BYTES, maxLength: DIRECT_MEDIA_TAG_BYTES });
const sourceIdArb = fc.integer({ min: 1, max: 0xffff_ffff });
const datagramArb = fc.uint8Array({ minLength: 1, maxLength: MAX_DATAGRAM_BYTES });

describe('direct media properties', () => {
  it('decode(encode(tag, id, d)) gives them back, and every truncation is a DecodeError', () => {
    fc.assert(
      fc.property(tagArb, sourceIdArb, datagramArb, (tag, sourceId, datagram) => {
        const wire = encodeDirectMedia(tag, sourceId, datagram);
        assert.ok(isDirectMedia(wire));
        const d = decodeDirectMedia(wire);
        assert.equal(toHex(d.tag), toHex(tag));
        assert.deepStrictEqual(decodeRoomDatagram(d.tagged), { sourceId, datagram });
        for (const n of [0, 1, 9, 11]) assert.throws(() => decodeDirectMedia(wire.subarray(0, n)), { name: 'DecodeError' });
      }),
      { numRuns: 500 },
    );
  });

  it('encode(decode(bytes)) gives back the bytes exactly; random bytes never throw anything but a DecodeError; isDirectMedia agrees with decode on the marker and size', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), fc.boolean(), (raw, marked) => {
        const bytes = marked && raw.length > 0 ? Uint8Array.from([0x31, ...raw.subarray(1)]) : raw;
        const decoded = decodeOrReject(() => decodeDirectMedia(bytes));
        if (decoded !== undefined) {
          const { sourceId, datagram } = decodeRoomDatagram(decoded.tagged);
          assert.equal(toHex(encodeDirectMedia(decoded.tag, sourceId, datagram)), toHex(bytes));
          assert.ok(isDirectMedia(bytes));
        }
      }),
      { numRuns: 3000 },
    );
  });
});

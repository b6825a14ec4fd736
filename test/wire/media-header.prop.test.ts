import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { datagramKind } from '../../core/wire/datagram.js';
import { decodeMediaHeader, decodeMediaPacket, encodeMediaHeader, encodeMediaPacket } from '../../core/wire/media-header.js';
import { mediaHeaderArb } from './arbitraries.js';
import { decodeOrReject, toHex } from './helpers.js';

/** Bytes likely to be a version-1 header: a first byte 0x10-0x1B, then anything. */
const headerLikeBytes = fc
  .tuple(fc.integer({ min: 0x10, max: 0x1b }), fc.uint8Array({ maxLength: 300 }))
  .map(([first, rest]) => Uint8Array.of(first, ...rest));

describe('media header properties', () => {
  it('decode(encode(header)) deep-equals header', () => {
    fc.assert(
      fc.property(mediaHeaderArb, (header) => {
        const bytes = encodeMediaHeader(header);
        assert.deepStrictEqual(decodeMediaHeader(bytes), { header, headerLength: bytes.length });
      }),
    );
  });

  it('encode(decode(bytes)) gives back the header bytes exactly', () => {
    fc.assert(
      fc.property(headerLikeBytes, (bytes) => {
        const decoded = decodeOrReject(() => decodeMediaHeader(bytes));
        if (decoded === undefined) return;
        assert.equal(toHex(encodeMediaHeader(decoded.header)), toHex(bytes.subarray(0, decoded.headerLength)));
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips packets', () => {
    fc.assert(
      fc.property(mediaHeaderArb, fc.uint8Array({ maxLength: 1000 }), (header, payload) => {
        assert.deepStrictEqual(decodeMediaPacket(encodeMediaPacket(header, payload)), { header, payload });
      }),
    );
  });

  it('random bytes give a DecodeError or a valid decode, never another exception', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1400 }), headerLikeBytes), (bytes) => {
        decodeOrReject(() => datagramKind(bytes));
        decodeOrReject(() => decodeMediaHeader(bytes));
        decodeOrReject(() => decodeMediaPacket(bytes));
      }),
      { numRuns: 3000 },
    );
  });
});

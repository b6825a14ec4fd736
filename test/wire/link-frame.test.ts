/**
 * The relay link media frame (core/wire/link-frame.ts): golden bytes, every malformed form
 * as its typed error, byte-exact re-encoding, and random bytes give only DecodeError.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { InternalError } from '../../core/errors.js';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { decodeLinkFrame, encodeLinkFrame, LINK_FRAME_MARKER, MAX_LINK_FRAME_ENTRIES, MAX_LINK_HOPS, type LinkEntry } from '../../core/wire/link-frame.js';
import { assertDecodeError, atOffset, decodeOrReject, hex, toHex } from './helpers.js';

const GOLDEN = hex('f1 02 | 0000 0001 10 0002 aabb | a1b2 ffff 01 0001 cc');
const GOLDEN_ENTRIES: LinkEntry[] = [
  { sourceId: 1, hops: 16, datagram: hex('aabb') },
  { sourceId: 0xa1b2_ffff, hops: 1, datagram: hex('cc') },
];

function plain(entries: LinkEntry[]) {
  return entries.map((e) => ({ sourceId: e.sourceId, hops: e.hops, datagram: toHex(e.datagram) }));
}

describe('link frame', () => {
  it('encodes and decodes the golden frame byte for byte', () => {
    assert.equal(toHex(encodeLinkFrame(GOLDEN_ENTRIES)), toHex(GOLDEN));
    assert.deepEqual(plain(decodeLinkFrame(GOLDEN)), plain(GOLDEN_ENTRIES));
    assert.deepEqual(plain(decodeLinkFrame(atOffset(GOLDEN))), plain(GOLDEN_ENTRIES));
  });

  it('refuses every malformed frame with its reason', () => {
    assertDecodeError(() => decodeLinkFrame(hex('f1')), 'truncated', 'link-frame');
    assertDecodeError(() => decodeLinkFrame(hex('c0 01 0000 0001 10 0001 aa')), 'bad-marker');
    assertDecodeError(() => decodeLinkFrame(hex('f1 00')), 'bad-field');
    assertDecodeError(() => decodeLinkFrame(hex('f1 41')), 'bad-field');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0000 10 0001 aa')), 'bad-field');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0001 00 0001 aa')), 'bad-field');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0001 11 0001 aa')), 'bad-field');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0001 10 0000')), 'bad-field');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0001 10 00')), 'truncated');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0001 10 0002 aa')), 'truncated');
    assertDecodeError(() => decodeLinkFrame(hex('f1 02 0000 0001 10 0001 aa')), 'truncated');
    assertDecodeError(() => decodeLinkFrame(hex('f1 01 0000 0001 10 0001 aa bb')), 'trailing-bytes');
    assertDecodeError(() => decodeLinkFrame(new Uint8Array(MAX_DATAGRAM_BYTES + 1).fill(LINK_FRAME_MARKER, 0, 1)), 'too-large');
  });

  it('refuses to encode what it could not decode', () => {
    assert.throws(() => encodeLinkFrame([]), InternalError);
    assert.throws(() => encodeLinkFrame([{ sourceId: 0, hops: 1, datagram: hex('aa') }]), InternalError);
    assert.throws(() => encodeLinkFrame([{ sourceId: 1, hops: MAX_LINK_HOPS + 1, datagram: hex('aa') }]), InternalError);
    assert.throws(() => encodeLinkFrame([{ sourceId: 1, hops: 1, datagram: new Uint8Array(0) }]), InternalError);
    assert.throws(() => encodeLinkFrame([{ sourceId: 1, hops: 1, datagram: new Uint8Array(MAX_DATAGRAM_BYTES) }]), InternalError);
    assert.throws(() => encodeLinkFrame(Array.from({ length: MAX_LINK_FRAME_ENTRIES + 1 }, () => ({ sourceId: 1, hops: 1, datagram: hex('aa') }))), InternalError);
  });

  it('round trips any entries that fit, and re-encodes any decodable bytes exactly', () => {
    const entry = fc.record({
      sourceId: fc.integer({ min: 1, max: 0xffff_ffff }),
      hops: fc.integer({ min: 1, max: MAX_LINK_HOPS }),
      datagram: fc.uint8Array({ minLength: 1, maxLength: 60 }),
    });
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 16 }), (entries) => {
        assert.deepEqual(plain(decodeLinkFrame(encodeLinkFrame(entries))), plain(entries));
      }),
    );
    const frameLike = fc.tuple(fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 40 })).map(([n, rest]) => Uint8Array.of(LINK_FRAME_MARKER, n, ...rest));
    fc.assert(
      fc.property(fc.oneof(frameLike, fc.uint8Array({ maxLength: 80 })), (bytes) => {
        const entries = decodeOrReject(() => decodeLinkFrame(bytes));
        if (entries !== undefined) assert.equal(toHex(encodeLinkFrame(entries)), toHex(bytes));
      }),
      { numRuns: 3000 },
    );
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DIRECT_MEDIA_TAG_LABELS, directMediaTags } from '../../core/crypto/call-keys.js';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { MAX_DIRECT_MEDIA_BYTES, decodeDirectMedia, encodeDirectMedia, encodeDirectMediaHeader, isDirectMedia } from '../../core/wire/direct-media.js';
import { decodeRoomDatagram } from '../../core/wire/room-source.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

const TAG = hex('a1 b2 c3 d4 e5 f6 07 18');

const GOLDEN: [string, string, number, string][] = [
  ['source 1, a mini-header packet', '31 | a1b2c3d4e5f60718 | 0000 0001 | 92 35 05 04 d5', 1, '92 35 05 04 d5'],
  ['prefix 0xa1b2, member 7', '31 | a1b2c3d4e5f60718 | a1b2 0007 | 14', 0xa1b2_0007, '14'],
  ['the highest source id, one byte', '31 | a1b2c3d4e5f60718 | ffff ffff | 14', 0xffff_ffff, '14'],
];

describe('direct media: golden bytes', () => {
  for (const [name, bytes, sourceId, datagram] of GOLDEN) {
    it(`encodes and decodes ${name}`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodeDirectMedia(TAG, sourceId, hex(datagram))), toHex(wire));
      assert.equal(toHex(encodeDirectMediaHeader(TAG, sourceId)), toHex(wire.subarray(0, 13)));
      const decoded = decodeDirectMedia(atOffset(wire));
      assert.equal(toHex(decoded.tag), toHex(TAG));
      // What follows the tag is the relay's forwarded form: source id, then the datagram.
      const forwarded = decodeRoomDatagram(decoded.tagged);
      assert.equal(forwarded.sourceId, sourceId);
      assert.equal(toHex(forwarded.datagram), toHex(hex(datagram)));
      assert.ok(isDirectMedia(wire));
    });
  }

  it('decodes views into the packet (no copy)', () => {
    const wire = hex('31 a1b2c3d4e5f60718 0000 0001 14 15');
    const d = decodeDirectMedia(wire);
    assert.equal(d.tagged.buffer, wire.buffer);
    assert.equal(d.tagged.byteOffset, 9);
  });

  const INVALID: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'bad-marker'],
    ['a path check marker', hex('30 a1b2c3d4e5f60718 0000 0001 14'), 'bad-marker'],
    ['a header without a datagram', hex('31 a1b2c3d4e5f60718 0000 0001'), 'truncated'],
    ['a cut source id', hex('31 a1b2c3d4e5f60718 0000 01'), 'truncated'],
    ['a cut tag', hex('31 a1b2c3'), 'truncated'],
    ['source id 0', hex('31 a1b2c3d4e5f60718 0000 0000 14'), 'bad-field'],
    ['over the limit', Uint8Array.from({ length: MAX_DIRECT_MEDIA_BYTES + 1 }, (_, i) => (i === 0 ? 0x31 : 1)), 'too-large'],
  ];
  for (const [name, bytes, reason] of INVALID) {
    it(`rejects ${name} with '${reason}'`, () => {
      assertDecodeError(() => decodeDirectMedia(atOffset(bytes)), reason, 'direct-media');
      // The demultiplexer's test looks at marker and size only; the source id is the decoder's.
      assert.equal(isDirectMedia(bytes), reason === 'bad-field');
    });
  }

  it('refuses to build a bad packet (a bug, not a network condition)', () => {
    assert.throws(() => encodeDirectMediaHeader(new Uint8Array(7), 1), { name: 'InternalError' });
    assert.throws(() => encodeDirectMediaHeader(TAG, 0), { name: 'InternalError' });
    assert.throws(() => encodeDirectMediaHeader(TAG, 0x1_0000_0000), { name: 'InternalError' });
    assert.throws(() => encodeDirectMedia(TAG, 1, new Uint8Array(0)), { name: 'InternalError' });
    assert.throws(() => encodeDirectMedia(TAG, 1, new Uint8Array(MAX_DATAGRAM_BYTES + 1)), { name: 'InternalError' });
  });

  it('each direction has its own tag, derived from the call key (golden)', () => {
    const key = new Uint8Array(32).fill(7);
    const tags = directMediaTags(key);
    assert.notEqual(toHex(tags.caller), toHex(tags.callee));
    assert.equal(tags.caller.length, 8);
    assert.deepEqual(Object.values(DIRECT_MEDIA_TAG_LABELS), ['wzp-direct-media-caller-v1', 'wzp-direct-media-callee-v1']);
    // A change here is a wire change: peers of different versions would drop each other's media.
    assert.equal(toHex(tags.caller), GOLDEN_TAGS.caller);
    assert.equal(toHex(tags.callee), GOLDEN_TAGS.callee);
  });
});

/** Computed with openssl: printf 'wzp-direct-media-caller-v1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0707...07 (32 bytes), first 8 bytes. */
const GOLDEN_TAGS = { caller: '22e519bfc7ec8d82', callee: '18eff3df3eee5870' };

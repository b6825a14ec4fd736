import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import {
  MAX_MEDIA_TO_CLIENT_DATAGRAM,
  MAX_MEDIA_TO_RELAY_DATAGRAM,
  MEDIA_PATH_ACK,
  MEDIA_PATH_MEDIA,
  MEDIA_TO_CLIENT_HEADER_BYTES,
  MEDIA_TO_RELAY_HEADER_BYTES,
  decodeToClient,
  decodeToRelay,
  encodeRoomMediaToClient,
  encodeToClient,
  encodeToRelay,
  mediaToRelayDatagram,
  type MediaPathToClient,
  type MediaPathToRelay,
} from '../../core/wire/media-path.js';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { MAX_SOURCE_ID, MIN_SOURCE_ID, encodeRoomDatagram } from '../../core/wire/room-source.js';
import { decodeOrReject, toHex } from './helpers.js';

const tokenArb = fc.uint8Array({ minLength: 8, maxLength: 8 });

const toRelayArb: fc.Arbitrary<MediaPathToRelay> = fc.oneof(
  fc.record({ type: fc.constantFrom('probe' as const, 'confirm' as const), token: tokenArb }, { noNullPrototype: true }),
  fc.record(
    { type: fc.constant('media' as const), token: tokenArb, datagram: fc.uint8Array({ minLength: 1, maxLength: MAX_MEDIA_TO_RELAY_DATAGRAM }) },
    { noNullPrototype: true },
  ),
);

const toClientArb: fc.Arbitrary<MediaPathToClient> = fc.oneof(
  fc.record({ type: fc.constant('ack' as const), token: tokenArb }, { noNullPrototype: true }),
  fc.record({ type: fc.constant('media' as const), datagram: fc.uint8Array({ minLength: 1, maxLength: MAX_MEDIA_TO_CLIENT_DATAGRAM }) }, { noNullPrototype: true }),
);

/** Bytes that start like a media path packet. */
const pathLikeBytes = fc
  .tuple(fc.integer({ min: 0x20, max: 0x25 }), fc.uint8Array({ maxLength: 20 }))
  .map(([first, rest]) => Uint8Array.of(first, ...rest));

describe('media path properties', () => {
  // The datagram is the rest of the UDP payload (no length field: UDP keeps packets whole, and
  // the datagram is authenticated end to end), so a media packet cut after its first datagram
  // byte is a shorter media packet; every other cut is a DecodeError.
  it('decodeToRelay(encodeToRelay(p)) gives p back; a cut into the header is a DecodeError', () => {
    fc.assert(
      fc.property(toRelayArb, (packet) => {
        const wire = encodeToRelay(packet);
        assert.deepStrictEqual(decodeToRelay(wire), packet);
        for (let n = 0; n < wire.length; n++) {
          if (packet.type === 'media' && n > MEDIA_TO_RELAY_HEADER_BYTES) {
            assert.deepStrictEqual(decodeToRelay(wire.subarray(0, n)), { ...packet, datagram: packet.datagram.subarray(0, n - MEDIA_TO_RELAY_HEADER_BYTES) });
          } else {
            assert.throws(() => decodeToRelay(wire.subarray(0, n)), { name: 'DecodeError', reason: 'truncated' }, `cut to ${n}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('decodeToClient(encodeToClient(p)) gives p back; a cut into the header is a DecodeError', () => {
    fc.assert(
      fc.property(toClientArb, (packet) => {
        const wire = encodeToClient(packet);
        assert.deepStrictEqual(decodeToClient(wire), packet);
        for (let n = 0; n < wire.length; n++) {
          if (packet.type === 'media' && n > MEDIA_TO_CLIENT_HEADER_BYTES) {
            assert.deepStrictEqual(decodeToClient(wire.subarray(0, n)), { type: 'media', datagram: packet.datagram.subarray(0, n - MEDIA_TO_CLIENT_HEADER_BYTES) });
          } else {
            assert.throws(() => decodeToClient(wire.subarray(0, n)), { name: 'DecodeError', reason: 'truncated' }, `cut to ${n}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('encode(decode(bytes)) gives back the bytes exactly, in both directions', () => {
    fc.assert(
      fc.property(pathLikeBytes, (bytes) => {
        const up = decodeOrReject(() => decodeToRelay(bytes));
        if (up !== undefined) assert.equal(toHex(encodeToRelay(up)), toHex(bytes));
        const down = decodeOrReject(() => decodeToClient(bytes));
        if (down !== undefined) assert.equal(toHex(encodeToClient(down)), toHex(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes give a DecodeError or a valid decode, never another exception', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1400 }), pathLikeBytes), (bytes) => {
        decodeOrReject(() => decodeToRelay(bytes));
        decodeOrReject(() => decodeToClient(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('only media decodes in both directions (an ack only to a client, probe and confirm only to the relay)', () => {
    fc.assert(
      fc.property(pathLikeBytes, (bytes) => {
        const up = decodeOrReject(() => decodeToRelay(bytes));
        const down = decodeOrReject(() => decodeToClient(bytes));
        if (up && down) assert.equal(bytes[0], MEDIA_PATH_MEDIA);
        if (down?.type === 'ack') assert.equal(bytes[0], MEDIA_PATH_ACK);
        if (up && up.type !== 'media') assert.equal(down, undefined);
      }),
      { numRuns: 2000 },
    );
  });

  it('a decode error is always a DecodeError with format media-path', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 30 }), (bytes) => {
        for (const decode of [decodeToRelay, decodeToClient]) {
          try {
            decode(bytes);
          } catch (e) {
            assert.ok(e instanceof DecodeError);
            assert.equal(e.format, 'media-path');
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the relay\'s fan-out and receive helpers agree with the codec', () => {
  it('encodeRoomMediaToClient: the path packet is encodeToClient of the tagged datagram, and `tagged` is encodeRoomDatagram', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_SOURCE_ID, max: MAX_SOURCE_ID }), fc.uint8Array({ minLength: 1, maxLength: MAX_DATAGRAM_BYTES }), (sourceId, datagram) => {
        const { packet, tagged } = encodeRoomMediaToClient(sourceId, datagram);
        const expected = encodeRoomDatagram(sourceId, datagram);
        assert.equal(toHex(tagged), toHex(expected));
        assert.equal(toHex(packet), toHex(encodeToClient({ type: 'media', datagram: expected })));
        // One buffer: the tagged datagram is a view of the packet past its first byte.
        assert.equal(tagged.buffer, packet.buffer);
        assert.equal(tagged.byteOffset, packet.byteOffset + MEDIA_TO_CLIENT_HEADER_BYTES);
      }),
    );
  });

  it('encodeRoomMediaToClient refuses what encodeRoomDatagram refuses', () => {
    for (const [sourceId, length] of [[0, 1], [0x1_0000_0000, 1], [1.5, 1], [1, 0], [1, MAX_DATAGRAM_BYTES + 1]]) {
      assert.throws(() => encodeRoomMediaToClient(sourceId, new Uint8Array(length)), { name: 'InternalError' });
    }
  });

  it('mediaToRelayDatagram takes exactly the media packets decodeToRelay accepts, with the same datagram', () => {
    fc.assert(
      fc.property(fc.oneof(toRelayArb.map((p) => encodeToRelay(p)), pathLikeBytes, fc.uint8Array({ maxLength: MEDIA_TO_RELAY_HEADER_BYTES + MAX_MEDIA_TO_RELAY_DATAGRAM + 2 })), (bytes) => {
        const buf = Buffer.from(bytes);
        const fast = mediaToRelayDatagram(buf);
        let decoded: MediaPathToRelay | undefined;
        try {
          decoded = decodeToRelay(buf);
        } catch (err) {
          assert.ok(err instanceof DecodeError);
        }
        if (decoded?.type === 'media') assert.equal(toHex(fast ?? new Uint8Array()), toHex(decoded.datagram));
        else assert.equal(fast, undefined);
      }),
    );
  });

  it('mediaToRelayDatagram: the size limits at their edges', () => {
    const media = (n: number): Buffer => Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), Buffer.alloc(8, 7), Buffer.alloc(n, 1)]);
    assert.equal(mediaToRelayDatagram(media(0)), undefined);
    assert.equal(mediaToRelayDatagram(media(1))?.length, 1);
    assert.equal(mediaToRelayDatagram(media(MAX_MEDIA_TO_RELAY_DATAGRAM))?.length, MAX_MEDIA_TO_RELAY_DATAGRAM);
    assert.equal(mediaToRelayDatagram(media(MAX_MEDIA_TO_RELAY_DATAGRAM + 1)), undefined);
  });
});

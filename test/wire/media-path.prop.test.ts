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
  encodeToClient,
  encodeToRelay,
  type MediaPathToClient,
  type MediaPathToRelay,
} from '../../core/wire/media-path.js';
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

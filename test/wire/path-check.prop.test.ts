import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import { bytesToIp, ipToBytes, isIPv4Mapped } from '../../core/wire/ip-address.js';
import { PATH_CHECK_MARKER, decodePathCheck, encodePathCheck, isPathCheck, type PathCheck } from '../../core/wire/path-check.js';
import { decodeOrReject, toHex } from './helpers.js';

const keyArb = fc.uint8Array({ minLength: 16, maxLength: 64 });
/** IPv6 sources as a socket reports them: any 16 bytes but IPv4-mapped ones, in RFC 5952 form. */
const ipv6Arb = fc
  .uint8Array({ minLength: 16, maxLength: 16 })
  .filter((b) => !isIPv4Mapped(b))
  .map((b) => bytesToIp(b) as string);
const observedArb = fc.record({ address: fc.oneof(fc.ipV4(), ipv6Arb), port: fc.integer({ min: 1, max: 65535 }) }, { noNullPrototype: true });

const fieldsArb = {
  transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  callId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  controlling: fc.boolean(),
  tieBreaker: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  priority: fc.integer({ min: 0, max: 0xffff_ffff }),
};

export const pathCheckArb: fc.Arbitrary<PathCheck> = fc.oneof(
  fc
    .record({ type: fc.constant('request' as const), ...fieldsArb, nominate: fc.boolean() }, { noNullPrototype: true })
    .map((m) => ({ ...m, nominate: m.nominate && m.controlling })),
  fc.record({ type: fc.constant('response' as const), ...fieldsArb, observed: observedArb }, { noNullPrototype: true }),
);

/** Bytes likely to pass the structural checks: the marker, version 1, a type, flags and a family, then anything. */
const checkLikeBytes = fc
  .tuple(fc.constantFrom(0x11, 0x12, 0x13, 0x21), fc.constantFrom(0, 0x40, 0x80, 0xc0, 1), fc.constantFrom(0, 4, 6, 5), fc.uint8Array({ minLength: 50, maxLength: 80 }))
  .map(([vt, flags, family, rest]) => Uint8Array.of(PATH_CHECK_MARKER, vt, flags, family, ...rest));

describe('path check properties', () => {
  it('decode(encode(msg, key), key) gives msg back', () => {
    fc.assert(
      fc.property(pathCheckArb, keyArb, (msg, key) => {
        const wire = encodePathCheck(msg, key);
        assert.ok(isPathCheck(wire));
        assert.ok(wire.length <= 78);
        assert.deepStrictEqual(decodePathCheck(wire, key), msg);
      }),
      { numRuns: 2000 },
    );
  });

  it('encode(decode(bytes)) gives back the bytes exactly', () => {
    fc.assert(
      fc.property(pathCheckArb, keyArb, (msg, key) => {
        const wire = encodePathCheck(msg, key);
        assert.equal(toHex(encodePathCheck(decodePathCheck(wire, key), key)), toHex(wire));
      }),
      { numRuns: 1000 },
    );
  });

  it('every truncation is a DecodeError', () => {
    fc.assert(
      fc.property(pathCheckArb, keyArb, (msg, key) => {
        const wire = encodePathCheck(msg, key);
        for (let n = 0; n < wire.length; n++) {
          assert.throws(
            () => decodePathCheck(wire.subarray(0, n), key),
            (e: unknown) => e instanceof DecodeError && (e.reason === 'truncated' || e.reason === 'bad-tag'),
            `cut to ${n} bytes`,
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it('any changed bit, or another key, makes it a DecodeError: nobody without the key fakes a check', () => {
    fc.assert(
      fc.property(pathCheckArb, keyArb, fc.nat(), fc.integer({ min: 0, max: 7 }), (msg, key, at, bit) => {
        const wire = encodePathCheck(msg, key);
        const flipped = wire.slice();
        flipped[at % wire.length] ^= 1 << bit;
        assert.throws(() => decodePathCheck(flipped, key), DecodeError);
        const other = key.slice();
        other[at % key.length] ^= 1 << bit;
        assert.throws(() => decodePathCheck(wire, other), { name: 'DecodeError', reason: 'bad-tag' });
      }),
      { numRuns: 2000 },
    );
  });

  it('random bytes give a DecodeError, never another exception', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), checkLikeBytes), keyArb, (bytes, key) => {
        assert.equal(decodeOrReject(() => decodePathCheck(bytes, key)), undefined, 'random bytes verified');
        isPathCheck(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  it('IP addresses: text -> bytes -> text is the canonical form, for every family', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (text) => {
        const ip = ipToBytes(text);
        assert.ok(ip, text);
        const canonical = bytesToIp(ip.bytes) as string;
        assert.deepStrictEqual(ipToBytes(canonical), ip);
        assert.equal(bytesToIp((ipToBytes(canonical) as { bytes: Uint8Array }).bytes), canonical);
      }),
      { numRuns: 3000 },
    );
  });
});

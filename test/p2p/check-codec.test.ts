import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import { PATH_CHECK_MAX_BYTES, type PathCheckMessage, simplePathCheckCodec as codec } from '../../core/p2p/check-codec.js';
import { assertDecodeError, hex, toHex } from '../portmap/helpers.js';

const KEY = new Uint8Array(32).fill(7);
const TX = Uint8Array.from({ length: 12 }, (_, i) => i + 1);
const CALL = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

const GOLDEN = {
  // magic 7a63, version 01, flags 06 (controlling + nominate), tx, call id, priority 5affffff,
  // observed family 00, port 0000, tag.
  nominateRequest: '7a63 01 06 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 5affffff 00 0000 f53bf70eaa4b732b7ac4172412f771f4',
  responseV4: '7a63 01 01 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 00000001 04 9c40 cb00710a 3aa2d8fa0f4544890a535c4a07389a4b',
  responseV6: '7a63 01 01 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 00000001 06 01bb 20010db8000000000000000000000001 5cb7736966378ec3e6b058d169b2465b',
};

const nominate: PathCheckMessage = { kind: 'request', transactionId: TX, callId: CALL, role: 'controlling', nominate: true, priority: 0x5affffff };
const responseV4: PathCheckMessage = {
  kind: 'response',
  transactionId: TX,
  callId: CALL,
  role: 'controlled',
  nominate: false,
  priority: 1,
  observed: { address: '203.0.113.10', port: 40000 },
};
const responseV6: PathCheckMessage = { ...responseV4, observed: { address: '2001:db8::1', port: 443 } };

function plain(message: PathCheckMessage) {
  return { ...message, transactionId: toHex(message.transactionId), callId: toHex(message.callId) };
}

describe('path-check codec (test codec for PathChecker)', () => {
  it('encodes golden bytes and decodes them back to the same message', () => {
    for (const [message, golden] of [
      [nominate, GOLDEN.nominateRequest],
      [responseV4, GOLDEN.responseV4],
      [responseV6, GOLDEN.responseV6],
    ] as const) {
      const bytes = codec.encode(message, KEY);
      assert.equal(toHex(bytes), toHex(hex(golden)));
      assert.deepEqual(plain(codec.decode(hex(golden), KEY)), plain(message));
    }
  });

  it('the tag is HMAC-SHA256 over everything before it, truncated to 16 bytes', () => {
    const bytes = hex(GOLDEN.responseV6);
    const tag = createHmac('sha256', KEY).update(bytes.subarray(0, bytes.length - 16)).digest().subarray(0, 16);
    assert.equal(toHex(bytes.subarray(bytes.length - 16)), toHex(tag));
  });

  it('answers stay within 1.3x of the request (no amplification)', () => {
    assert.equal(hex(GOLDEN.nominateRequest).length, 55);
    assert.ok(hex(GOLDEN.responseV6).length <= 1.3 * 55);
  });

  it('refuses truncated, oversized, foreign, tampered and inconsistent bytes with one typed error', () => {
    const request = hex(GOLDEN.nominateRequest);
    assertDecodeError(() => codec.decode(request.subarray(0, 54), KEY), 'truncated', 'path-check');
    assertDecodeError(() => codec.decode(new Uint8Array(PATH_CHECK_MAX_BYTES + 1), KEY), 'too-large', 'path-check');
    const mutate = (golden: string, index: number, value: number) => {
      const bytes = hex(golden);
      bytes[index] = value;
      return bytes;
    };
    assertDecodeError(() => codec.decode(mutate(GOLDEN.nominateRequest, 0, 0x21), KEY), 'bad-magic', 'path-check');
    assertDecodeError(() => codec.decode(mutate(GOLDEN.nominateRequest, 2, 2), KEY), 'bad-version', 'path-check');
    assertDecodeError(() => codec.decode(mutate(GOLDEN.nominateRequest, 3, 0x0e), KEY), 'bad-flags', 'path-check');
    assertDecodeError(() => codec.decode(mutate(GOLDEN.nominateRequest, 36, 5), KEY), 'bad-family', 'path-check');
    assertDecodeError(() => codec.decode(mutate(GOLDEN.nominateRequest, 36, 4), KEY), 'bad-length', 'path-check');
    assertDecodeError(() => codec.decode(mutate(GOLDEN.nominateRequest, 20, 0), KEY), 'bad-tag', 'path-check');
    assertDecodeError(() => codec.decode(request, new Uint8Array(32)), 'bad-tag', 'path-check');
    assertDecodeError(() => codec.decode(request, new Uint8Array(16)), 'bad-key', 'path-check');
    // Authentic but inconsistent: a controlled side that nominates, a request with an address.
    const forged = (message: Record<string, unknown>) => {
      const body = hex(message.body as string);
      const tag = createHmac('sha256', KEY).update(body).digest().subarray(0, 16);
      return Uint8Array.from([...body, ...tag]);
    };
    assertDecodeError(() => codec.decode(forged({ body: '7a63 01 04 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 00000001 00 0000' }), KEY), 'bad-flags', 'path-check');
    assertDecodeError(
      () => codec.decode(forged({ body: '7a63 01 02 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 00000001 04 0001 01020304' }), KEY),
      'bad-observed',
      'path-check',
    );
    assertDecodeError(() => codec.decode(forged({ body: '7a63 01 03 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 00000001 00 0000' }), KEY), 'bad-observed', 'path-check');
    assertDecodeError(() => codec.decode(forged({ body: '7a63 01 02 0102030405060708090a0b0c a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 00000001 00 0001' }), KEY), 'bad-observed', 'path-check');
  });

  it('refuses to encode what it would refuse to decode', () => {
    assert.throws(() => codec.encode({ ...responseV4, nominate: true }, KEY), { name: 'UsageError' });
    assert.throws(() => codec.encode({ ...nominate, role: 'controlled' }, KEY), { name: 'UsageError' });
    assert.throws(() => codec.encode({ ...nominate, observed: { address: '1.2.3.4', port: 1 } }, KEY), { name: 'UsageError' });
    assert.throws(() => codec.encode({ ...nominate, transactionId: new Uint8Array(11) }, KEY), { name: 'UsageError' });
    assert.throws(() => codec.encode({ ...nominate, priority: 2 ** 32 }, KEY), { name: 'UsageError' });
    assert.throws(() => codec.encode({ ...responseV4, observed: { address: 'example.org', port: 1 } }, KEY), { name: 'UsageError' });
    assert.throws(() => codec.encode(nominate, new Uint8Array(31)), { name: 'UsageError' });
  });

  it('round-trips any valid message (property)', () => {
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((parts) => parts.join('.'));
    const ipv6 = fc.ipV6().map((address) => new URL(`http://[${address}]/`).hostname.slice(1, -1));
    const message = fc.record({
      kind: fc.constantFrom('request' as const, 'response' as const),
      transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
      callId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      controlling: fc.boolean(),
      nominate: fc.boolean(),
      priority: fc.nat(0xffffffff),
      observed: fc.record({ address: fc.oneof(ipv4, ipv6), port: fc.nat(0xffff) }),
    });
    fc.assert(
      fc.property(message, fc.uint8Array({ minLength: 32, maxLength: 32 }), (m, key) => {
        const role = m.controlling ? 'controlling' : 'controlled';
        const input: PathCheckMessage =
          m.kind === 'request'
            ? { kind: 'request', transactionId: m.transactionId, callId: m.callId, role, nominate: m.nominate && m.controlling, priority: m.priority }
            : { kind: 'response', transactionId: m.transactionId, callId: m.callId, role, nominate: false, priority: m.priority, observed: { address: m.observed.address, port: m.observed.port } };
        const bytes = codec.encode(input, key);
        assert.deepEqual(plain(codec.decode(bytes, key)), plain(input));
        assert.equal(toHex(codec.encode(codec.decode(bytes, key), key)), toHex(bytes));
      }),
    );
  });

  it('random bytes only ever produce DecodeError (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        try {
          codec.decode(bytes, KEY);
          assert.fail('random bytes decoded');
        } catch (error) {
          assert.ok(error instanceof DecodeError, String(error));
        }
      }),
    );
    // Valid layouts with any bit flipped: still only DecodeError.
    fc.assert(
      fc.property(fc.constantFrom(...Object.values(GOLDEN)), fc.nat(), fc.integer({ min: 1, max: 255 }), (golden, at, flip) => {
        const bytes = hex(golden);
        bytes[at % bytes.length] ^= flip;
        assert.throws(() => codec.decode(bytes, KEY), DecodeError);
      }),
    );
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MAX_PATH_CHECK_BYTES,
  PATH_CHECK_REQUEST_BYTES,
  PATH_CHECK_RESPONSE_V4_BYTES,
  PATH_CHECK_RESPONSE_V6_BYTES,
  decodePathCheck,
  encodePathCheck,
  isPathCheck,
  pathCheckCallId,
  type PathCheck,
} from '../../core/wire/path-check.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

// The tags below were computed with openssl (`openssl dgst -sha256 -mac HMAC -macopt hexkey:KEY`
// over the bytes before the tag, first 16 bytes of the result), not with the code under test.
const KEY = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
const TXID = '0102030405060708090a0b0c';
const CALL = 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf';

const REQUEST = `30 11 c0 00 | ${TXID} | ${CALL} | 0123456789abcdef | 6effffff | d880721dae45a203af16c8bffe1840f9`;
const RESPONSE_V4 = `30 12 80 04 | ${TXID} | ${CALL} | fedcba9876543210 | 6effffff | d431 cb007105 | 2b0c1b0b7ce91718170e394bc106b414`;
const RESPONSE_V6 = `30 12 00 06 | ${TXID} | ${CALL} | fedcba9876543210 | 6effffff | 1f90 20010db8000000000000000000000001 | 0df932300ad80d4b56557973d17b64a4`;
/** Correctly tagged, but observed port 0 / an IPv4-mapped IPv6 address: refused after the tag. */
const RESPONSE_PORT_0 = `30 12 80 04 | ${TXID} | ${CALL} | fedcba9876543210 | 6effffff | 0000 cb007105 | e8693dd6b546c47416d9f3c6aabb0759`;
const RESPONSE_MAPPED = `30 12 00 06 | ${TXID} | ${CALL} | fedcba9876543210 | 6effffff | 1f90 00000000000000000000ffffcb007105 | 78d584ebe7994a5bdb592290c8bb0388`;

const base = { transactionId: hex(TXID), callId: hex(CALL), priority: 0x6effffff };
const GOLDEN: [string, string, PathCheck][] = [
  ['a nominating request from the controlling agent', REQUEST, { type: 'request', ...base, controlling: true, nominate: true, tieBreaker: 0x0123456789abcdefn }],
  [
    'a response from the controlling agent with an IPv4 source',
    RESPONSE_V4,
    { type: 'response', ...base, controlling: true, tieBreaker: 0xfedcba9876543210n, observed: { address: '203.0.113.5', port: 54321 } },
  ],
  [
    'a response from the controlled agent with an IPv6 source',
    RESPONSE_V6,
    { type: 'response', ...base, controlling: false, tieBreaker: 0xfedcba9876543210n, observed: { address: '2001:db8::1', port: 8080 } },
  ],
];

/** Replace the byte at `at` of a fixture (the tag then no longer matters: structure is checked first). */
function patch(fixture: string, at: number, byte: number): Uint8Array {
  const bytes = hex(fixture);
  bytes[at] = byte;
  return bytes;
}

describe('path check: golden bytes', () => {
  for (const [name, bytes, msg] of GOLDEN) {
    it(`encodes and decodes ${name}`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodePathCheck(msg, KEY)), toHex(wire));
      assert.deepStrictEqual(decodePathCheck(atOffset(wire), KEY), msg);
      assert.ok(isPathCheck(wire));
      assert.equal(toHex(pathCheckCallId(wire)), CALL);
    });
  }

  it('has the documented sizes', () => {
    assert.deepEqual(GOLDEN.map(([, b]) => hex(b).length), [PATH_CHECK_REQUEST_BYTES, PATH_CHECK_RESPONSE_V4_BYTES, PATH_CHECK_RESPONSE_V6_BYTES]);
    assert.deepEqual([PATH_CHECK_REQUEST_BYTES, PATH_CHECK_RESPONSE_V4_BYTES, PATH_CHECK_RESPONSE_V6_BYTES], [60, 66, 78]);
  });

  it('sends an IPv4-mapped or zoned source as the plain address', () => {
    const [, v4bytes, v4] = GOLDEN[1];
    const mapped = { ...v4, observed: { address: '::FFFF:203.0.113.5', port: 54321 } } as PathCheck;
    assert.equal(toHex(encodePathCheck(mapped, KEY)), toHex(hex(v4bytes)));
    const [, v6bytes, v6] = GOLDEN[2];
    const zoned = { ...v6, observed: { address: '2001:0db8:0:0::0:1%eth0', port: 8080 } } as PathCheck;
    assert.equal(toHex(encodePathCheck(zoned, KEY)), toHex(hex(v6bytes)));
  });

  it('decodes ids as copies, not views of a buffer that may be reused', () => {
    const wire = hex(REQUEST);
    const msg = decodePathCheck(wire, KEY);
    wire.fill(0);
    assert.equal(toHex(msg.transactionId), TXID);
    assert.equal(toHex(msg.callId), CALL);
  });

  const INVALID: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'truncated'],
    ['a request without its last byte', hex(REQUEST).subarray(0, 59), 'truncated'],
    ['an IPv6 response cut to a request\'s size', hex(RESPONSE_V6).subarray(0, 60), 'truncated'],
    ['an IPv6 response cut after the IPv4 size', hex(RESPONSE_V6).subarray(0, 66), 'truncated'],
    ['79 bytes', Uint8Array.of(...hex(RESPONSE_V6), 0), 'too-large'],
    ['a request with a byte after the tag', Uint8Array.of(...hex(REQUEST), 0), 'trailing-bytes'],
    ['an IPv4 response with a byte after the tag', Uint8Array.of(...hex(RESPONSE_V4), 0), 'trailing-bytes'],
    ['another marker (0x31)', patch(REQUEST, 0, 0x31), 'bad-marker'],
    ['a STUN first byte', patch(REQUEST, 0, 0x00), 'bad-marker'],
    ['version 2', patch(REQUEST, 1, 0x21), 'bad-version'],
    ['version 0', patch(REQUEST, 1, 0x01), 'bad-version'],
    ['type 0', patch(REQUEST, 1, 0x10), 'bad-type'],
    ['type 3', patch(REQUEST, 1, 0x13), 'bad-type'],
    ['a reserved flag bit', patch(REQUEST, 2, 0xc1), 'bad-field'],
    ['nominate from the controlled agent', patch(REQUEST, 2, 0x40), 'bad-field'],
    ['a nominating response', patch(RESPONSE_V4, 2, 0xc0), 'bad-field'],
    ['a request with an address family', patch(REQUEST, 3, 0x04), 'bad-field'],
    ['a response without an address family', patch(RESPONSE_V4, 3, 0x00), 'bad-field'],
    ['a response with address family 5', patch(RESPONSE_V4, 3, 0x05), 'bad-field'],
    ['a flipped transaction id bit', patch(REQUEST, 4, 0x03), 'bad-tag'],
    ['a changed priority', patch(REQUEST, 43, 0xfe), 'bad-tag'],
    ['a changed observed port', patch(RESPONSE_V4, 45, 0x32), 'bad-tag'],
    ['a changed observed address', patch(RESPONSE_V6, 63, 0x02), 'bad-tag'],
    ['a nominate flag cleared', patch(REQUEST, 2, 0x80), 'bad-tag'],
    ['a flipped tag bit', patch(REQUEST, 59, 0xf8), 'bad-tag'],
    ['observed port 0 (tagged)', hex(RESPONSE_PORT_0), 'bad-field'],
    ['an IPv4-mapped IPv6 source (tagged)', hex(RESPONSE_MAPPED), 'bad-field'],
  ];
  for (const [name, bytes, reason] of INVALID) {
    it(`rejects ${name} with '${reason}'`, () => {
      assertDecodeError(() => decodePathCheck(atOffset(bytes), KEY), reason, 'path-check');
    });
  }

  it("rejects a check tagged with another call's key as 'bad-tag'", () => {
    const other = KEY.slice();
    other[31] ^= 1;
    for (const [, bytes] of GOLDEN) assertDecodeError(() => decodePathCheck(hex(bytes), other), 'bad-tag', 'path-check');
  });
});

describe('isPathCheck and pathCheckCallId', () => {
  const cases: [string, Uint8Array, boolean][] = [
    ['a request', hex(REQUEST), true],
    ['a response', hex(RESPONSE_V6), true],
    ['a forged-looking check of the right size (the tag is not checked here)', patch(REQUEST, 59, 0), true],
    ['59 bytes', hex(REQUEST).subarray(0, 59), false],
    ['79 bytes', new Uint8Array(MAX_PATH_CHECK_BYTES + 1).fill(0x30).map((b, i) => (i === 1 ? 0x11 : b)), false],
    ['another version', patch(REQUEST, 1, 0x21), false],
    ['a STUN binding request', hex('0001 0000 2112a442 000000000000000000000000'), false],
    ['a media path probe', hex('21 0102030405060708'), false],
    ['a QUIC short header', new Uint8Array(60).fill(0x40), false],
    ['nothing', new Uint8Array(0), false],
  ];
  for (const [name, bytes, expected] of cases) {
    it(`${expected ? 'accepts' : 'refuses'} ${name}`, () => assert.equal(isPathCheck(bytes), expected));
  }

  it('pathCheckCallId refuses what cannot be a check with a DecodeError', () => {
    assertDecodeError(() => pathCheckCallId(hex(REQUEST).subarray(0, 40)), 'truncated', 'path-check');
    assertDecodeError(() => pathCheckCallId(patch(REQUEST, 0, 0x21)), 'bad-marker', 'path-check');
  });
});

describe('encodePathCheck: caller bugs are InternalErrors', () => {
  const [, , request] = GOLDEN[0];
  const [, , response] = GOLDEN[1];
  const cases: [string, () => unknown][] = [
    ['a 15-byte key', () => encodePathCheck(request, KEY.subarray(0, 15))],
    ['an 11-byte transaction id', () => encodePathCheck({ ...request, transactionId: new Uint8Array(11) }, KEY)],
    ['a 17-byte call id', () => encodePathCheck({ ...request, callId: new Uint8Array(17) }, KEY)],
    ['a negative tie-breaker', () => encodePathCheck({ ...request, tieBreaker: -1n }, KEY)],
    ['a 65-bit tie-breaker', () => encodePathCheck({ ...request, tieBreaker: 1n << 64n }, KEY)],
    ['a priority over u32', () => encodePathCheck({ ...request, priority: 2 ** 32 }, KEY)],
    ['a fractional priority', () => encodePathCheck({ ...request, priority: 1.5 }, KEY)],
    ['a nominating controlled agent', () => encodePathCheck({ ...request, controlling: false }, KEY)],
    ['a host name as the observed address', () => encodePathCheck({ ...response, observed: { address: 'relay.example', port: 1 } } as PathCheck, KEY)],
    ['observed port 0', () => encodePathCheck({ ...response, observed: { address: '192.0.2.1', port: 0 } } as PathCheck, KEY)],
    ['observed port 65536', () => encodePathCheck({ ...response, observed: { address: '192.0.2.1', port: 65536 } } as PathCheck, KEY)],
  ];
  for (const [name, run] of cases) {
    it(`refuses ${name}`, () => assert.throws(run, { name: 'InternalError' }));
  }

  it('decodePathCheck refuses a short key as a caller bug too', () => {
    assert.throws(() => decodePathCheck(hex(REQUEST), KEY.subarray(0, 8)), { name: 'InternalError' });
  });
});

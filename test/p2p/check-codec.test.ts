/**
 * The agent's codec is an adapter over the wire format (core/wire/path-check.ts): its bytes
 * are the wire module's bytes, role maps to the C flag, and what a PathChecker sends is a
 * path check to the socket's demultiplexer (isPathCheck, routed to the `path-check` class).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import { type PathCheckMessage, fromWirePathCheck, toWirePathCheck, wirePathCheckCodec as codec } from '../../core/p2p/check-codec.js';
import { PathChecker } from '../../core/p2p/checks.js';
import { Demux, pathCheckClass, type UdpSource } from '../../core/transport/demux.js';
import {
  OFFSET_PATH_CHECK_FLAGS,
  PATH_CHECK_FLAG_CONTROLLING,
  PATH_CHECK_FLAG_NOMINATE,
  PATH_CHECK_MARKER,
  decodePathCheck,
  encodePathCheck,
  isPathCheck,
} from '../../core/wire/path-check.js';
import { assertDecodeError, hex, toHex } from '../wire/helpers.js';
import { FakeClock, callSecrets, candidate } from './helpers.js';

// Golden bytes of test/wire/path-check.test.ts (tags computed with openssl, not with the code).
const KEY = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
const TXID = '0102030405060708090a0b0c';
const CALL = 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf';
const REQUEST = `30 11 c0 00 | ${TXID} | ${CALL} | 0123456789abcdef | 6effffff | d880721dae45a203af16c8bffe1840f9`;
const RESPONSE_V6 = `30 12 00 06 | ${TXID} | ${CALL} | fedcba9876543210 | 6effffff | 1f90 20010db8000000000000000000000001 | 0df932300ad80d4b56557973d17b64a4`;

const base = { transactionId: hex(TXID), callId: hex(CALL), priority: 0x6effffff };
const GOLDEN: [string, string, PathCheckMessage][] = [
  ['a nominating request from the controlling agent', REQUEST, { kind: 'request', ...base, role: 'controlling', tieBreaker: 0x0123456789abcdefn, nominate: true }],
  [
    'a response from the controlled agent with an IPv6 source',
    RESPONSE_V6,
    { kind: 'response', ...base, role: 'controlled', tieBreaker: 0xfedcba9876543210n, observed: { address: '2001:db8::1', port: 8080 } },
  ],
];

function plain(message: PathCheckMessage) {
  return { ...message, transactionId: toHex(message.transactionId), callId: toHex(message.callId) };
}

const FROM: UdpSource = { address: '198.51.100.9', port: 7000 };

/** A Demux with only the path-check class (no socket: nothing is sent). */
function demuxFixture() {
  const routed: Buffer[] = [];
  const quic: Buffer[] = [];
  const demux = new Demux(
    () => undefined,
    (data) => {
      quic.push(data);
      return Promise.resolve();
    },
  );
  demux.register(pathCheckClass((data) => routed.push(data)));
  return { demux, routed, quic };
}

describe('wirePathCheckCodec: an adapter over core/wire/path-check.ts', () => {
  for (const [name, bytes, message] of GOLDEN) {
    it(`produces and takes the wire format's golden bytes: ${name}`, () => {
      assert.equal(toHex(codec.encode(message, KEY)), toHex(hex(bytes)));
      assert.deepStrictEqual(plain(codec.decode(hex(bytes), KEY)), plain(message));
    });
  }

  it('maps role to the controlling flag and nominate to the nominate flag', () => {
    const [, , request] = GOLDEN[0];
    assert.equal(request.kind, 'request');
    const flags = (message: PathCheckMessage) => codec.encode(message, KEY)[OFFSET_PATH_CHECK_FLAGS];
    assert.equal(flags(request), PATH_CHECK_FLAG_CONTROLLING | PATH_CHECK_FLAG_NOMINATE);
    assert.equal(flags({ ...request, nominate: false }), PATH_CHECK_FLAG_CONTROLLING);
    assert.equal(flags({ ...request, role: 'controlled', nominate: false }), 0);
    assert.equal(decodePathCheck(codec.encode({ ...request, role: 'controlled', nominate: false }, KEY), KEY).controlling, false);
    // The wire format refuses a nominating controlled agent; the adapter does not hide it.
    assert.throws(() => codec.encode({ ...request, role: 'controlled' }, KEY), { name: 'InternalError' });
  });

  it('decode errors are the wire module\'s: the old stand-in layout (magic 0x7a63) is not a path check', () => {
    const stale = hex(REQUEST);
    stale[0] = 0x7a;
    stale[1] = 0x63;
    assertDecodeError(() => codec.decode(stale, KEY), 'bad-marker', 'path-check');
    assertDecodeError(() => codec.decode(hex(REQUEST), randomBytes(32)), 'bad-tag', 'path-check');
    assertDecodeError(() => codec.decode(hex(REQUEST).subarray(0, 59), KEY), 'truncated', 'path-check');
  });

  it('round-trips any valid message through the real wire bytes, both ways (property)', () => {
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((parts) => parts.join('.'));
    const ipv6 = fc
      .ipV6()
      .map((address) => new URL(`http://[${address}]/`).hostname.slice(1, -1))
      // An IPv4-mapped address goes on the wire as family 4 (the wire module's rule, tested there).
      .filter((address) => !address.startsWith('::ffff:'));
    const fields = {
      transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
      callId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      role: fc.constantFrom('controlling' as const, 'controlled' as const),
      tieBreaker: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      priority: fc.nat(0xffffffff),
    };
    const message: fc.Arbitrary<PathCheckMessage> = fc.oneof(
      fc.record({ kind: fc.constant('request' as const), ...fields, nominate: fc.boolean() }).map((m) => ({ ...m, nominate: m.nominate && m.role === 'controlling' })),
      fc.record({ kind: fc.constant('response' as const), ...fields, observed: fc
          .record({ address: fc.oneof(ipv4, ipv6), port: fc.integer({ min: 1, max: 0xffff }) })
          // fc.record's objects have a null prototype; deepStrictEqual compares prototypes.
          .map(({ address, port }) => ({ address, port })),
      }),
    );
    fc.assert(
      fc.property(message, fc.uint8Array({ minLength: 16, maxLength: 64 }), (m, key) => {
        const bytes = codec.encode(m, key);
        // The adapter's bytes are exactly the wire module's for the mapped message...
        assert.equal(toHex(bytes), toHex(encodePathCheck(toWirePathCheck(m), key)));
        assert.ok(isPathCheck(bytes));
        // ...the wire module reads them back as the same check...
        assert.deepStrictEqual(plain(fromWirePathCheck(decodePathCheck(bytes, key))), plain(m));
        // ...and the adapter reads them back too.
        assert.deepStrictEqual(plain(codec.decode(bytes, key)), plain(m));
      }),
    );
  });

  it('random and bit-flipped bytes only ever produce DecodeError (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        assert.throws(() => codec.decode(bytes, KEY), DecodeError);
      }),
    );
    fc.assert(
      fc.property(fc.constantFrom(REQUEST, RESPONSE_V6), fc.nat(), fc.integer({ min: 1, max: 255 }), (golden, at, flip) => {
        const bytes = hex(golden);
        bytes[at % bytes.length] ^= flip;
        assert.throws(() => codec.decode(bytes, KEY), DecodeError);
      }),
    );
  });
});

describe('PathChecker speaks the wire format', () => {
  function agent(role: 'controlling' | 'controlled', secrets: { key: Uint8Array; callId: Uint8Array }, remote?: { address: string; port: number }) {
    const clock = new FakeClock();
    const sent: { bytes: Uint8Array; to: string }[] = [];
    const checker = new PathChecker({
      role,
      ...secrets,
      localCandidates: [candidate('host', { address: '203.0.113.5', port: 5000 })],
      ...(remote ? { remoteCandidates: [candidate('host', remote)] } : {}),
      send: (bytes, address, port) => sent.push({ bytes, to: `${address}:${port}` }),
      timers: clock,
    });
    return { clock, checker, sent };
  }

  it("a controlling agent's check is a path check: isPathCheck, routed by a Demux to the class, carrying its role and tie-breaker", () => {
    const secrets = callSecrets();
    const { clock, checker, sent } = agent('controlling', secrets, FROM);
    checker.start();
    clock.advance(200);
    assert.ok(sent.length >= 2, `sent ${sent.length}`);
    const { demux, routed, quic } = demuxFixture();
    for (const { bytes, to } of sent) {
      assert.equal(to, `${FROM.address}:${FROM.port}`);
      assert.equal(bytes[0], PATH_CHECK_MARKER);
      assert.ok(isPathCheck(bytes));
      void demux.receive(Buffer.from(bytes), FROM);
      const check = decodePathCheck(bytes, secrets.key);
      assert.equal(check.type, 'request');
      assert.equal(check.controlling, true);
      assert.equal(check.tieBreaker, checker.tieBreaker, 'one tie-breaker per agent, in every check');
      assert.equal(toHex(check.callId), toHex(secrets.callId));
    }
    assert.equal(routed.length, sent.length);
    assert.equal(quic.length, 0);
    assert.equal(demux.stats.classes['path-check'].packets, sent.length);
    assert.equal(demux.stats.unclaimed, 0);
    checker.close();
  });

  it("a controlled agent's answer is a wire response: routed, its own role and tie-breaker, the request's priority and source", () => {
    const secrets = callSecrets();
    const requester = agent('controlling', secrets, FROM);
    requester.checker.start();
    requester.clock.advance(0);
    const request = requester.sent[0].bytes;
    const responder = agent('controlled', secrets);
    responder.checker.start();
    assert.equal(responder.checker.receive(request, FROM), true);
    const answer = responder.sent.find(({ bytes }) => decodePathCheck(bytes, secrets.key).type === 'response');
    assert.ok(answer !== undefined);
    assert.equal(answer.to, `${FROM.address}:${FROM.port}`);
    const { demux, routed } = demuxFixture();
    void demux.receive(Buffer.from(answer.bytes), FROM);
    assert.equal(routed.length, 1);
    const sentRequest = decodePathCheck(request, secrets.key);
    const response = decodePathCheck(answer.bytes, secrets.key);
    assert.equal(response.type, 'response');
    assert.equal(response.controlling, false);
    assert.equal(response.tieBreaker, responder.checker.tieBreaker);
    assert.equal(toHex(response.transactionId), toHex(sentRequest.transactionId));
    assert.equal(response.priority, sentRequest.priority);
    assert.deepEqual(response.observed, FROM);
    requester.checker.close();
    responder.checker.close();
  });

  it('each agent draws its own 64-bit tie-breaker', () => {
    const secrets = callSecrets();
    const tieBreakers = new Set(Array.from({ length: 8 }, () => agent('controlled', secrets).checker.tieBreaker));
    assert.equal(tieBreakers.size, 8);
    for (const value of tieBreakers) assert.ok(value >= 0n && value < 1n << 64n);
  });
});

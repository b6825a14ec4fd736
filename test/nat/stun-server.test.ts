/**
 * The relay's STUN server (core/nat/stun-server.ts): golden answers computed independently
 * (the expected bytes below were written with Python's struct and zlib.crc32, not with this
 * code), the 3x budget for every request size, truncated and random input, and the server on
 * loopback sockets (RFC 5780 discovery against it, the per-source rate limit).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { discoverNatBehaviour } from '../../core/nat/behaviour.js';
import {
  DEFAULT_STUN_SERVER_LIMITS,
  STUN_MAX_AMPLIFICATION,
  StunServer,
  type StunDecision,
  type StunResponder,
  answerStunRequest,
} from '../../core/nat/stun-server.js';
import {
  STUN_MAX_MESSAGE_BYTES,
  StunAttribute,
  StunClient,
  decodeStunMessage,
  encodeBindingRequest,
  encodeStunMessage,
  readStunMessage,
} from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const TX = hex('000102030405060708090a0b');
const CLIENT = { address: '192.0.2.1', port: 54321 };
const PLAIN: StunResponder = { local: { address: '203.0.113.1', port: 3478 } };
const RFC5780: StunResponder = { local: { address: '203.0.113.1', port: 3478 }, other: { address: '203.0.113.2', port: 3479 } };

/** Binding Request with FINGERPRINT only (28 bytes). */
const REQUEST = hex('0001 0008 2112a442 000102030405060708090a0b 8028 0004 5b0ff6fc');
/** Binding Request, CHANGE-REQUEST change IP + port, FINGERPRINT (36 bytes). */
const REQUEST_CHANGE = hex('0001 0010 2112a442 000102030405060708090a0b 0003 0004 00000006 8028 0004 dbc88c4a');
/** Binding Request with no attribute at all (20 bytes: the smallest there is). */
const REQUEST_BARE = hex('0001 0000 2112a442 000102030405060708090a0b');

function answer(decision: StunDecision): Extract<StunDecision, { kind: 'answer' }> {
  assert.equal(decision.kind, 'answer', JSON.stringify(decision));
  return decision as Extract<StunDecision, { kind: 'answer' }>;
}

function dropReason(decision: StunDecision): string {
  assert.equal(decision.kind, 'drop', `expected a drop, got an answer of ${decision.kind === 'answer' ? decision.answer.length : 0} bytes`);
  return (decision as Extract<StunDecision, { kind: 'drop' }>).reason;
}

describe('STUN server: answers byte for byte', () => {
  it('plain (one address): XOR-MAPPED-ADDRESS, MAPPED-ADDRESS and FINGERPRINT, from where it came', () => {
    const a = answer(answerStunRequest(REQUEST, CLIENT, PLAIN));
    assert.deepEqual(
      a.answer,
      hex(`0101 0020 2112a442 000102030405060708090a0b
           0020 0008 0001f523 e112a643
           0001 0008 0001d431 c0000201
           8028 0004 8bd81b25`),
    );
    assert.deepEqual(a.origin, PLAIN.local);
    assert.deepEqual(a.to, CLIENT);
    assert.equal(a.error, undefined);
    assert.deepEqual(decodeStunMessage(a.answer).mappedAddress, CLIENT, 'our own client decodes it');
  });

  it('RFC 5780, change IP and port: OTHER-ADDRESS, RESPONSE-ORIGIN, sent from the other address', () => {
    const a = answer(answerStunRequest(REQUEST_CHANGE, CLIENT, RFC5780));
    assert.deepEqual(
      a.answer,
      hex(`0101 0038 2112a442 000102030405060708090a0b
           0020 0008 0001f523 e112a643
           802c 0008 00010d97 cb007102
           802b 0008 00010d97 cb007102
           0001 0008 0001d431 c0000201
           8028 0004 2c0695b0`),
    );
    assert.deepEqual(a.origin, { address: '203.0.113.2', port: 3479 });
  });

  it('RFC 5780 §6.1 table: change IP answers from (Ca, Dp), change port from (Da, Cp)', () => {
    const ip = answer(answerStunRequest(encodeBindingRequest({ transactionId: TX, changeIp: true }), CLIENT, RFC5780));
    assert.deepEqual(ip.origin, { address: '203.0.113.2', port: 3478 });
    const port = answer(answerStunRequest(encodeBindingRequest({ transactionId: TX, changePort: true }), CLIENT, RFC5780));
    assert.deepEqual(port.origin, { address: '203.0.113.1', port: 3479 });
    assert.deepEqual(decodeStunMessage(port.answer).responseOrigin, port.origin);
  });

  it('the smallest request (20 bytes) gets at most 60: MAPPED-ADDRESS and FINGERPRINT are left out', () => {
    const a = answer(answerStunRequest(REQUEST_BARE, CLIENT, RFC5780));
    assert.deepEqual(
      a.answer,
      hex(`0101 0024 2112a442 000102030405060708090a0b
           0020 0008 0001f523 e112a643
           802c 0008 00010d97 cb007102
           802b 0008 00010d96 cb007101`),
    );
    assert.equal(a.answer.length, 56);
  });

  it('IPv6: a 20-byte request gets XOR-MAPPED-ADDRESS only (44 bytes), OTHER-ADDRESS would pass 60', () => {
    const v6: StunResponder = { local: { address: '2001:db8::1', port: 3478 }, other: { address: '2001:db8::2', port: 3479 } };
    const from = { address: '2001:db8:0:1::5', port: 40000 };
    const bare = answer(answerStunRequest(REQUEST_BARE, from, v6));
    assert.equal(bare.answer.length, 44);
    assert.deepEqual(decodeStunMessage(bare.answer).mappedAddress, from);
    const withFingerprint = answer(answerStunRequest(REQUEST, from, v6));
    const decoded = decodeStunMessage(withFingerprint.answer);
    assert.deepEqual(decoded.otherAddress, v6.other, '28 bytes allow 84: OTHER-ADDRESS fits');
    assert.equal(decoded.responseOrigin, undefined, 'RESPONSE-ORIGIN would not');
  });

  it('an IPv4-mapped IPv6 source is reported as the IPv4 address it is', () => {
    const a = answer(answerStunRequest(REQUEST, { address: '::ffff:192.0.2.1', port: 54321 }, PLAIN));
    assert.deepEqual(decodeStunMessage(a.answer).mappedAddress, CLIENT);
    assert.deepEqual(a.to, { address: '::ffff:192.0.2.1', port: 54321 });
  });

  it('CHANGE-REQUEST without a second address: 420 with UNKNOWN-ATTRIBUTES (RFC 5780 §6.1)', () => {
    const a = answer(answerStunRequest(REQUEST_CHANGE, CLIENT, PLAIN));
    assert.deepEqual(
      a.answer,
      hex(`0111 002c 2112a442 000102030405060708090a0b
           0009 0015 00000414 556e6b6e6f776e20417474726962757465 000000
           000a 0002 0003 0000
           8028 0004 879f2e8d`),
    );
    assert.equal(a.error, 420);
    assert.deepEqual(decodeStunMessage(a.answer).error, { code: 420, reason: 'Unknown Attribute' });
  });

  it('unknown comprehension-required attributes draw 420; unknown optional ones are ignored', () => {
    const required = encodeStunMessage(0x0001, TX, [{ type: 0x7777, value: new Uint8Array(4) }], { fingerprint: true });
    assert.equal(answer(answerStunRequest(required, CLIENT, PLAIN)).error, 420);
    const optional = encodeStunMessage(0x0001, TX, [{ type: 0x8777, value: new Uint8Array(4) }], { fingerprint: true });
    assert.equal(answer(answerStunRequest(optional, CLIENT, PLAIN)).error, undefined);
    const ice = encodeStunMessage(0x0001, TX, [{ type: StunAttribute.USERNAME, value: Buffer.from('a:b') }, { type: StunAttribute.MESSAGE_INTEGRITY, value: new Uint8Array(20) }]);
    assert.equal(answer(answerStunRequest(ice, CLIENT, PLAIN)).error, undefined, 'credentials are understood, and not used');
  });

  it('RESPONSE-PORT sends the answer to that port of the source IP; with PADDING it is a 400', () => {
    const a = answer(answerStunRequest(encodeBindingRequest({ transactionId: TX, responsePort: 4242 }), CLIENT, RFC5780));
    assert.deepEqual(a.to, { address: CLIENT.address, port: 4242 });
    assert.deepEqual(decodeStunMessage(a.answer).mappedAddress, CLIENT, 'the mapping reported is the one the request came from');
    const padded = encodeStunMessage(
      0x0001,
      TX,
      [
        { type: StunAttribute.RESPONSE_PORT, value: hex('10920000').subarray(0, 2) },
        { type: StunAttribute.PADDING, value: new Uint8Array(40) },
      ],
      { fingerprint: true },
    );
    assert.equal(answer(answerStunRequest(padded, CLIENT, RFC5780)).error, 400);
    const portZero = encodeStunMessage(0x0001, TX, [{ type: StunAttribute.RESPONSE_PORT, value: new Uint8Array(2) }]);
    assert.equal(answer(answerStunRequest(portZero, CLIENT, RFC5780)).error, 400);
  });

  it('drops what it must not answer, with the reason', () => {
    assert.equal(dropReason(answerStunRequest(hex('0011 0000 2112a442 000102030405060708090a0b'), CLIENT, PLAIN)), 'not-request', 'an indication');
    assert.equal(dropReason(answerStunRequest(hex('0101 0000 2112a442 000102030405060708090a0b'), CLIENT, PLAIN)), 'not-request', 'a response (two servers must not answer each other)');
    assert.equal(dropReason(answerStunRequest(hex('0003 0000 2112a442 000102030405060708090a0b'), CLIENT, PLAIN)), 'unsupported-method', 'a TURN Allocate');
    const badFingerprint = Buffer.from(REQUEST);
    badFingerprint[27] ^= 1;
    assert.equal(dropReason(answerStunRequest(badFingerprint, CLIENT, PLAIN)), 'malformed');
    assert.equal(dropReason(answerStunRequest(Buffer.alloc(STUN_MAX_MESSAGE_BYTES + 4), CLIENT, PLAIN)), 'oversized');
    const huge = encodeStunMessage(0x0001, TX, [{ type: StunAttribute.PADDING, value: new Uint8Array(STUN_MAX_MESSAGE_BYTES) }]);
    assert.equal(dropReason(answerStunRequest(huge, CLIENT, PLAIN)), 'oversized');
    const many = encodeStunMessage(
      0x0001,
      TX,
      Array.from({ length: 40 }, () => ({ type: 0x8777, value: new Uint8Array(0) })),
    );
    assert.equal(dropReason(answerStunRequest(many, CLIENT, PLAIN)), 'malformed', 'more attributes than the bound');
  });

  it('every truncation of a request is dropped as malformed, never answered', () => {
    for (const request of [REQUEST, REQUEST_CHANGE]) {
      for (let n = 0; n < request.length; n++) assert.equal(dropReason(answerStunRequest(request.subarray(0, n), CLIENT, RFC5780)), 'malformed', `${n} bytes`);
    }
  });
});

describe('STUN server: properties', () => {
  const responder = fc.constantFrom(PLAIN, RFC5780, { local: { address: '2001:db8::1', port: 3478 }, other: { address: '2001:db8::2', port: 3479 } });
  const source = fc.oneof(
    fc.record({ address: fc.ipV4(), port: fc.integer({ min: 1, max: 65535 }) }),
    fc.record({ address: fc.ipV6(), port: fc.integer({ min: 1, max: 65535 }) }),
  );

  it('random bytes: never throws; anything answered is at most 3x', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 1600 }), source, responder, (bytes, from, r) => {
        const d = answerStunRequest(bytes, from, r);
        if (d.kind === 'answer') assert.ok(d.answer.length <= STUN_MAX_AMPLIFICATION * bytes.length);
      }),
      { numRuns: 2000 },
    );
  });

  it('random Binding requests (any attributes): at most 3x, and a success names the source', () => {
    const attribute = fc.record({
      type: fc.oneof(fc.constantFrom(0x0003, 0x0006, 0x0008, 0x0026, 0x0027, 0x8022, 0x8777, 0x7777), fc.integer({ min: 0, max: 0xffff })),
      value: fc.uint8Array({ maxLength: 64 }),
    });
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.array(attribute, { maxLength: 8 }), fc.boolean(), source, responder, (tx, attributes, fingerprint, from, r) => {
        const request = encodeStunMessage(0x0001, tx, attributes.filter((a) => a.type !== StunAttribute.FINGERPRINT), { fingerprint });
        const d = answerStunRequest(request, from, r);
        if (d.kind !== 'answer') return;
        assert.ok(d.answer.length <= STUN_MAX_AMPLIFICATION * request.length, `${d.answer.length} for ${request.length}`);
        assert.equal(d.to.address, from.address, 'only ever to the source address');
        const parsed = readStunMessage(d.answer);
        assert.deepEqual(Buffer.from(parsed.transactionId), Buffer.from(tx));
        if (d.error === undefined) {
          const mapped = decodeStunMessage(d.answer).mappedAddress;
          assert.equal(mapped?.port, from.port);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('STUN server on loopback sockets', () => {
  async function primarySocket(): Promise<dgram.Socket> {
    return openUdpSocket('udp4', '127.0.0.1');
  }

  it('RFC 5780 discovery against it: no NAT, endpoint-independent mapping and filtering', async () => {
    const primary = await primarySocket();
    const server = await StunServer.start({ primary: { socket: primary, address: { address: '127.0.0.1', port: primary.address().port } }, alternate: { address: '127.0.0.2' } });
    primary.on('message', (packet, rinfo) => server.handle(packet, rinfo));
    const client = await openUdpSocket('udp4', '127.0.0.1');
    try {
      assert.equal(server.endpoints.length, 4);
      const b = await discoverNatBehaviour(client, server.endpoints[0]);
      assert.equal(b.natDetected, false);
      assert.equal(b.mapping, 'endpoint-independent');
      assert.equal(b.filtering, 'endpoint-independent');
      assert.deepEqual(b.otherAddress, server.otherAddress);
      assert.ok(server.stats.answered >= 5, JSON.stringify(server.stats));
      assert.ok(server.stats.answerBytes <= STUN_MAX_AMPLIFICATION * server.stats.answeredRequestBytes);
    } finally {
      await server.close();
      await closeUdpSocket(client);
      await closeUdpSocket(primary);
    }
  });

  it('rate-limits answers per source, and answers nothing from its own addresses', async () => {
    const primary = await primarySocket();
    const server = await StunServer.start({ primary: { socket: primary, address: { address: '127.0.0.1', port: primary.address().port } } });
    primary.on('message', (packet, rinfo) => server.handle(packet, rinfo));
    const client = await openUdpSocket('udp4', '127.0.0.1');
    let received = 0;
    client.on('message', () => received++);
    try {
      const burst = 3 * DEFAULT_STUN_SERVER_LIMITS.answersPerSourcePerSecond;
      for (let i = 0; i < burst; i++) client.send(encodeBindingRequest({ transactionId: TX }), primary.address().port, '127.0.0.1');
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(received <= 2 * DEFAULT_STUN_SERVER_LIMITS.answersPerSourcePerSecond, `${received} answers to ${burst} requests`);
      assert.ok(server.stats.dropped['rate-limited'] > 0, JSON.stringify(server.stats));
      server.handle(REQUEST, { address: '127.0.0.1', port: primary.address().port });
      assert.equal(server.stats.dropped['own-address'], 1);
      server.handle(REQUEST, { address: '0.0.0.0', port: 5 });
      server.handle(REQUEST, { address: '127.0.0.1', port: 0 });
      assert.equal(server.stats.dropped['bad-source'], 2);
    } finally {
      await server.close();
      await closeUdpSocket(client);
      await closeUdpSocket(primary);
    }
  });

  it('refuses RFC 5780 on a wildcard primary, or with an alternate that is not a second address', async () => {
    const primary = await openUdpSocket('udp4');
    try {
      const at = (address: string) => ({ socket: primary, address: { address, port: primary.address().port } });
      await assert.rejects(StunServer.start({ primary: at('0.0.0.0'), alternate: { address: '127.0.0.2' } }), { name: 'UsageError' });
      await assert.rejects(StunServer.start({ primary: at('127.0.0.1'), alternate: { address: '127.0.0.1' } }), { name: 'UsageError' });
      await assert.rejects(StunServer.start({ primary: at('127.0.0.1'), alternate: { address: '::1' } }), { name: 'UsageError' });
      await assert.rejects(StunServer.start({ primary: at('127.0.0.1'), alternate: { address: '192.0.2.77' } }), { name: 'NetworkError' });
    } finally {
      await closeUdpSocket(primary);
    }
  });

  it('a StunClient gets its address from it', async () => {
    const primary = await primarySocket();
    const server = await StunServer.start({ primary: { socket: primary, address: { address: '127.0.0.1', port: primary.address().port } } });
    primary.on('message', (packet, rinfo) => server.handle(packet, rinfo));
    const socket = await openUdpSocket('udp4', '127.0.0.1');
    const client = new StunClient(socket);
    try {
      const result = await client.binding({ address: '127.0.0.1', port: primary.address().port });
      assert.deepEqual(result.mappedAddress, { address: '127.0.0.1', port: socket.address().port });
      assert.equal(result.otherAddress, undefined, 'one address: no RFC 5780');
    } finally {
      client.close();
      await server.close();
      await closeUdpSocket(socket);
      await closeUdpSocket(primary);
    }
  });
});

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import {
  type NatProgressEvent,
  STUN_MAX_MESSAGE_BYTES,
  StunClient,
  decodeStunMessage,
  encodeBindingRequest,
  isStunPacket,
} from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { type FakeStunServer, startFakeStunServer } from './fake-stun-server.js';

const TX = Buffer.from('000102030405060708090a0b', 'hex');
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Binding Request, CHANGE-REQUEST (change IP + port), RESPONSE-PORT 4242, FINGERPRINT. */
const GOLDEN_REQUEST = hex(`
  0001 0018 2112a442 000102030405060708090a0b
  0003 0004 00000006
  0027 0002 1092 0000
  8028 0004 d5e4018a`);

/** Binding success: XOR-MAPPED-ADDRESS 203.0.113.100:52795, RESPONSE-ORIGIN 203.0.113.1:3478,
 *  OTHER-ADDRESS 203.0.113.2:3479 (as coturn sends them). */
const GOLDEN_SUCCESS = hex(`
  0101 0024 2112a442 000102030405060708090a0b
  0020 0008 0001 ef29 ea12d526
  802b 0008 0001 0d96 cb007101
  802c 0008 0001 0d97 cb007102`);

/** Binding error response 420 Unknown Attribute. */
const GOLDEN_ERROR = hex(`
  0111 001c 2112a442 000102030405060708090a0b
  0009 0015 00000414 556e6b6e6f776e20417474726962757465 000000`);

function decodeReason(packet: Uint8Array): string {
  try {
    decodeStunMessage(packet);
  } catch (err) {
    assert.ok(err instanceof DecodeError, `expected DecodeError, got ${String(err)}`);
    return err.reason;
  }
  return 'decoded';
}

describe('STUN wire format', () => {
  it('encodes a Binding Request byte for byte', () => {
    assert.deepEqual(encodeBindingRequest({ transactionId: TX, changeIp: true, changePort: true, responsePort: 4242 }), GOLDEN_REQUEST);
  });

  it('decodes a success response with the RFC 5780 attributes', () => {
    assert.deepEqual(decodeStunMessage(GOLDEN_SUCCESS), {
      cls: 'success',
      method: 1,
      transactionId: TX.toString('hex'),
      mappedAddress: { address: '203.0.113.100', port: 52795 },
      otherAddress: { address: '203.0.113.2', port: 3479 },
      responseOrigin: { address: '203.0.113.1', port: 3478 },
      error: undefined,
    });
  });

  it('decodes an error response and our own request', () => {
    const error = decodeStunMessage(GOLDEN_ERROR);
    assert.equal(error.cls, 'error');
    assert.deepEqual(error.error, { code: 420, reason: 'Unknown Attribute' });
    const request = decodeStunMessage(GOLDEN_REQUEST);
    assert.equal(request.cls, 'request');
    assert.equal(request.transactionId, TX.toString('hex'));
  });

  it('recognises STUN and rejects QUIC, truncated and inconsistent datagrams', () => {
    assert.equal(isStunPacket(GOLDEN_REQUEST), true);
    assert.equal(isStunPacket(GOLDEN_SUCCESS.subarray(0, 19)), false);
    assert.equal(isStunPacket(Buffer.concat([GOLDEN_SUCCESS, Buffer.alloc(4)])), false, 'length field must match');
    const quic = Buffer.from(GOLDEN_SUCCESS);
    quic[0] |= 0x40;
    assert.equal(isStunPacket(quic), false);
    const badCookie = Buffer.from(GOLDEN_SUCCESS);
    badCookie[4] = 0;
    assert.equal(isStunPacket(badCookie), false);
  });

  it('reports each malformation with a typed reason', () => {
    assert.equal(decodeReason(GOLDEN_SUCCESS.subarray(0, 10)), 'truncated');
    assert.equal(decodeReason(Buffer.alloc(STUN_MAX_MESSAGE_BYTES + 4)), 'too-large');
    assert.equal(decodeReason(Buffer.concat([GOLDEN_SUCCESS, Buffer.alloc(4)])), 'not-stun');
    const badAttribute = Buffer.from(GOLDEN_SUCCESS);
    badAttribute.writeUInt16BE(0x0030, 22); // XOR-MAPPED-ADDRESS claims 48 bytes
    assert.equal(decodeReason(badAttribute), 'malformed-attributes');
    const noMapped = hex('0101 0000 2112a442 000102030405060708090a0b');
    assert.equal(decodeReason(noMapped), 'missing-mapped-address');
  });

  it('random bytes only ever produce a DecodeError', () => {
    const stunLike = fc.uint8Array({ minLength: 0, maxLength: 200 }).map((body) => {
      const length = body.length - (body.length % 4);
      const header = hex(`0101 ${length.toString(16).padStart(4, '0')} 2112a442 000102030405060708090a0b`);
      return Buffer.concat([header, body.subarray(0, length)]);
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 100 }), stunLike), (bytes) => {
        assert.ok(['decoded', 'truncated', 'not-stun', 'malformed-attributes', 'missing-mapped-address'].includes(decodeReason(bytes)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('StunClient on loopback', () => {
  let server: FakeStunServer;
  let socket: dgram.Socket;

  before(async () => {
    server = await startFakeStunServer();
  });
  after(() => server.close());
  // A fresh socket per test: late answers to an earlier test's requests must not reach it.
  beforeEach(async () => {
    socket = await openUdpSocket('udp4', '127.0.0.1');
  });
  afterEach(() => closeUdpSocket(socket));

  it('gets the mapped address, measures the RTT and reports progress', async () => {
    server.behaviour = {};
    const events: NatProgressEvent[] = [];
    const client = new StunClient(socket, { onProgress: (e) => events.push(e) });
    try {
      const result = await client.binding(server.primary, { label: 'test' });
      assert.deepEqual(result.mappedAddress, { address: '127.0.0.1', port: socket.address().port });
      assert.deepEqual(result.otherAddress, server.other);
      assert.deepEqual(result.responseOrigin, server.primary);
      assert.equal(result.attempts, 1);
      assert.ok(result.rttMs !== undefined && result.rttMs >= 0);
      assert.equal(client.rttMs, result.rttMs);
      assert.equal(client.rtoMs, Math.max(50, 3 * result.rttMs), 'RTO = max(50 ms, 3 × RTT)');
      assert.deepEqual(
        events.map((e) => [e.type, e.probe]),
        [
          ['nat:probe-sent', 'test'],
          ['nat:probe-answered', 'test'],
        ],
      );
    } finally {
      client.close();
    }
  });

  it('retransmits with a doubling RTO and does not sample an ambiguous RTT', async () => {
    const requestsBefore = server.requests.length;
    server.behaviour = { dropFirst: requestsBefore + 2 };
    const client = new StunClient(socket, { initialRtoMs: 20 });
    try {
      const started = performance.now();
      const result = await client.binding(server.primary);
      const elapsed = performance.now() - started;
      assert.equal(result.attempts, 3);
      assert.equal(result.rttMs, undefined);
      assert.ok(elapsed >= 55 && elapsed < 500, `answered after the 3rd send at ~60 ms, took ${elapsed}`);
      assert.equal(server.requests.length - requestsBefore, 3);
    } finally {
      client.close();
    }
  });

  it('gives up at the deadline with NetworkError, and silence is an outcome for probe()', async () => {
    server.behaviour = { silent: true };
    const client = new StunClient(socket, { initialRtoMs: 10 });
    try {
      const started = performance.now();
      await assert.rejects(client.binding(server.primary, { maxAttempts: 3 }), { name: 'NetworkError' });
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= 65 && elapsed < 400, `deadline is 10 × (2^3 − 1) = 70 ms, took ${elapsed}`);
      const outcome = await client.probe(server.primary, { timeoutMs: 30 });
      assert.equal(outcome.answered, false);
    } finally {
      client.close();
    }
  });

  it('aborts through the signal and on close()', async () => {
    server.behaviour = { silent: true };
    const client = new StunClient(socket);
    const controller = new AbortController();
    const aborted = client.probe(server.primary, { signal: controller.signal });
    setTimeout(() => controller.abort(), 10);
    await assert.rejects(aborted, { name: 'AbortError' });
    const closed = client.probe(server.primary);
    client.close();
    await assert.rejects(closed, { name: 'AbortError' });
    await assert.rejects(client.probe(server.primary), { name: 'AbortError' });
  });

  it('drops and counts a malformed answer, then accepts the valid one', async () => {
    server.behaviour = { corruptFirst: true };
    const client = new StunClient(socket);
    try {
      const result = await client.binding(server.primary);
      assert.equal(result.mappedAddress.port, socket.address().port);
      assert.equal(client.stats.malformed, 1);
      assert.equal(client.stats.matched, 1);
    } finally {
      client.close();
    }
  });

  it('turns an error response into ProtocolError', async () => {
    server.behaviour = { errorCode: 420 };
    const client = new StunClient(socket);
    try {
      await assert.rejects(client.binding(server.primary), (err: Error) => err.name === 'ProtocolError' && / 420 /.test(err.message));
    } finally {
      client.close();
    }
  });

  it('shares the socket: other listeners see all traffic, close() leaves the socket open', async () => {
    server.behaviour = {};
    const seen: Buffer[] = [];
    const other = (packet: Buffer) => seen.push(packet);
    socket.on('message', other);
    const client = new StunClient(socket);
    try {
      await client.binding(server.primary);
      const peer = await openUdpSocket('udp4', '127.0.0.1');
      peer.send(Buffer.from('not stun, e.g. QUIC'), socket.address().port, '127.0.0.1');
      await new Promise((resolve) => setTimeout(resolve, 50));
      await closeUdpSocket(peer);
      assert.equal(seen.length, 2, 'the STUN answer and the other datagram');
      assert.equal(client.stats.stunPackets, 1, 'the non-STUN datagram is not STUN');
    } finally {
      client.close();
      socket.off('message', other);
    }
    assert.equal(socket.listenerCount('message'), 0);
    assert.doesNotThrow(() => socket.address(), 'socket still open');
    socket.send(Buffer.from('still usable'), server.primary.port, server.primary.address);
  });

  it('can be fed by the socket owner instead of listening', async () => {
    server.behaviour = {};
    const client = new StunClient(socket, { listen: false });
    const consumed: boolean[] = [];
    const feed = (packet: Buffer, rinfo: dgram.RemoteInfo) => consumed.push(client.handlePacket(packet, rinfo));
    socket.on('message', feed);
    try {
      await client.binding(server.primary);
      assert.equal(client.handlePacket(Buffer.from('other traffic'), server.primary), false);
      assert.equal(client.handlePacket(GOLDEN_SUCCESS, server.primary), false, 'no pending transaction');
      assert.equal(client.stats.unmatched, 1);
      assert.deepEqual(consumed, [true]);
    } finally {
      client.close();
      socket.off('message', feed);
    }
  });

  it('rejects bad endpoints with UsageError', async () => {
    const client = new StunClient(socket);
    try {
      await assert.rejects(client.probe({ address: 'stun.example.com', port: 3478 }), { name: 'UsageError' });
      await assert.rejects(client.probe({ address: '127.0.0.1', port: 0 }), { name: 'UsageError' });
    } finally {
      client.close();
    }
  });
});

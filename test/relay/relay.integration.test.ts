/**
 * The relay over real QUIC on loopback: bad input of every kind is dropped and counted, and
 * the relay keeps serving.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay, type RelayEvent } from '../../core/relay/relay.js';
import { connectQuic, expectFingerprint } from '../../core/transport/quic.js';
import { request } from '../../core/transport/signal-stream.js';
import { encodeSignal } from '../../core/wire/signal.js';
import { waitFor } from '../helpers/wait.js';

async function rawExchange(session: { connection: import('@matrixai/quic').QUICConnection }, bytes: Uint8Array): Promise<Uint8Array[]> {
  const stream = session.connection.newStream('bidi');
  const writer = stream.writable.getWriter();
  await writer.write(bytes);
  await writer.close();
  const chunks: Uint8Array[] = [];
  const reader = stream.readable.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
  } catch {
    // the relay may abort a stream it cannot parse
  }
  return chunks;
}

function jsonFrame(obj: unknown): Uint8Array {
  const body = new TextEncoder().encode(typeof obj === 'string' ? obj : JSON.stringify(obj));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

describe('relay', () => {
  let relay: Relay;
  let fingerprint: string;
  const events: RelayEvent[] = [];

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({
      listen: { host: '127.0.0.1', port: 0 },
      tls,
      fingerprint,
      onEvent: (e) => events.push(e),
    });
  });
  after(() => relay.stop());

  test('answers hello, ping and reflect', async () => {
    const s = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    try {
      assert.equal(s.relayFingerprint, fingerprint);
      const rtt = await s.ping();
      assert.ok(rtt >= 0 && rtt < 1000);
      const observed = await s.reflect();
      assert.equal(observed, `127.0.0.1:${s.localAddress.port}`);
    } finally {
      await s.close();
    }
  });

  test('refuses a client that expects another fingerprint', async () => {
    const other = await deriveTlsCertificate(generateIdentity().seed);
    await assert.rejects(
      RelaySession.open({ relay: relay.address, verify: expectFingerprint(other.fingerprint, 'relay') }),
      { name: 'FingerprintMismatchError' },
    );
  });

  test('unknown, malformed and oversized signals are dropped and counted; the relay keeps serving', async () => {
    const c = await connectQuic({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    try {
      const before = { ...relay.metrics };
      // An unknown message type (a newer client): ignored, no reply, not fatal.
      const unknown = await rawExchange(c, jsonFrame({ type: 'teleport', to: 'mars' }));
      assert.deepEqual(unknown, []);
      // Malformed JSON, then a valid ping in the same stream: the ping is still answered.
      const mixed = await rawExchange(
        c,
        new Uint8Array([...jsonFrame('{not json'), ...encodeSignal({ type: 'ping', nonce: 7 })]),
      );
      assert.ok(mixed.length > 0, 'the ping after a malformed frame is answered');
      // A known type with ill-typed fields.
      await rawExchange(c, jsonFrame({ type: 'ping', nonce: 'seven' }));
      // A frame that declares 1 GiB: the stream is aborted.
      const huge = new Uint8Array(8);
      new DataView(huge.buffer).setUint32(0, 1 << 30);
      await rawExchange(c, huge);
      // Garbage datagrams from a connection that never joined a media mode.
      for (let i = 0; i < 5; i++) c.datagrams.send(new Uint8Array([0xde, 0xad, i]));

      const pong = await request(c.connection, { type: 'ping', nonce: 42 });
      assert.deepEqual(pong, { type: 'pong', nonce: 42 });

      await waitFor(() => relay.metrics.datagramsUnexpected - before.datagramsUnexpected === 5);
      assert.equal(relay.metrics.signalsUnknown - before.signalsUnknown, 1);
      assert.ok(relay.metrics.signalsMalformed - before.signalsMalformed >= 2);
      // The 1 GiB declaration is over the relay's request limit: refused and counted as such.
      assert.equal(relay.metrics.refused['signal-too-large'] - before.refused['signal-too-large'], 1);
      assert.ok(events.some((e) => e.type === 'relay:signal-dropped' && e.detail === 'teleport'));
    } finally {
      await c.close();
    }
  });

  test('echo mode sends each datagram back to its sender only', async () => {
    const a = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    const b = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    try {
      await a.joinEcho();
      await b.joinEcho();
      const gotA: number[] = [];
      const gotB: number[] = [];
      a.datagrams.onDatagram((d) => gotA.push(d[0]));
      b.datagrams.onDatagram((d) => gotB.push(d[0]));
      for (let i = 0; i < 20; i++) {
        a.datagrams.send(new Uint8Array([i, 1, 2, 3]));
        b.datagrams.send(new Uint8Array([100 + i, 1, 2, 3]));
      }
      await waitFor(() => gotA.length === 20 && gotB.length === 20);
      assert.deepEqual([...gotA].sort((x, y) => x - y), [...Array(20).keys()]);
      assert.ok(gotB.every((x) => x >= 100));
      // Oversized datagrams are refused locally, not sent.
      assert.equal(a.datagrams.send(new Uint8Array(5000)), false);
      assert.equal(a.datagrams.stats().droppedTooLarge, 1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a client that disappears is cleaned up', async () => {
    // Every earlier test closed its connections; let the relay see all of them go first.
    await waitFor(() => relay.metrics.connectionsOpen === 0);
    const s = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    await waitFor(() => relay.metrics.connectionsOpen === 1);
    await s.close();
    await waitFor(() => relay.metrics.connectionsOpen === 0);
  });
});

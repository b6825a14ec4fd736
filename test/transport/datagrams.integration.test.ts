/**
 * Real QUIC over loopback: the datagram channel's send path, delayed ACKs and its own
 * connection timer (core/transport/datagrams.ts) must keep every promise of the library's
 * path: every datagram delivered, ACKs that keep the peer's loss detection quiet, a close
 * that both sides see.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { events as quicEvents, type QUICConnection } from '@matrixai/quic';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { delay } from '../../core/time.js';
import { ACK_DELAY_MS, type DatagramChannel } from '../../core/transport/datagrams.js';
import { connectQuic, startQuicServer, type ClientConnection, type RunningQuicServer } from '../../core/transport/quic.js';

interface NativeStats {
  sent: number;
  recv: number;
  lost: number;
}
const nativeStats = (c: QUICConnection): NativeStats => (c as unknown as { conn: { stats(): NativeStats } }).conn.stats();

describe('QUIC datagram channel (loopback)', () => {
  let server: RunningQuicServer;
  const accepted: Array<{ connection: QUICConnection; datagrams: DatagramChannel }> = [];

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    server = await startQuicServer({
      tls,
      listen: { host: '127.0.0.1', port: 0 },
      onConnection: (connection, datagrams) => {
        accepted.push({ connection, datagrams });
      },
    });
  });
  after(async () => {
    await server.stop();
  });

  async function connect(): Promise<{ client: ClientConnection; far: { connection: QUICConnection; datagrams: DatagramChannel } }> {
    const before = accepted.length;
    const client = await connectQuic({ relay: server.address, verify: () => undefined });
    for (let i = 0; i < 100 && accepted.length === before; i++) await delay(5);
    return { client, far: accepted[accepted.length - 1] };
  }

  /** Send `count` datagrams every 20 ms from each side in `senders`; returns what each side received. */
  async function exchange(
    a: DatagramChannel,
    b: DatagramChannel,
    count: number,
    senders: { a: boolean; b: boolean },
  ): Promise<{ atA: number[]; atB: number[] }> {
    const atA: number[] = [];
    const atB: number[] = [];
    a.onDatagram((d) => atA.push(new DataView(d.buffer, d.byteOffset).getUint32(0)));
    b.onDatagram((d) => atB.push(new DataView(d.buffer, d.byteOffset).getUint32(0)));
    for (let i = 0; i < count; i++) {
      const d = new Uint8Array(100);
      new DataView(d.buffer).setUint32(0, i);
      if (senders.a) assert.ok(a.send(d), `a's datagram ${i} queued`);
      if (senders.b) assert.ok(b.send(d.slice()), `b's datagram ${i} queued`);
      await delay(20);
    }
    await delay(100);
    return { atA, atB };
  }

  test('a two-way media flow delivers everything and its ACKs ride on the media', async () => {
    const { client, far } = await connect();
    try {
      const sent0 = nativeStats(client.connection).sent;
      const farSent0 = nativeStats(far.connection).sent;
      const { atA, atB } = await exchange(client.datagrams, far.datagrams, 60, { a: true, b: true });
      assert.deepEqual(atB, Array.from({ length: 60 }, (_, i) => i));
      assert.deepEqual(atA, Array.from({ length: 60 }, (_, i) => i));
      // About one QUIC packet per datagram, not two (datagram + ACK-only): the first 8 and
      // one in 16 are acknowledged at once (for the RTT estimate), plus keep-alives and
      // timing slips on a busy machine.
      const clientPackets = nativeStats(client.connection).sent - sent0;
      const serverPackets = nativeStats(far.connection).sent - farSent0;
      assert.ok(clientPackets <= 60 * 1.4, `client sent ${clientPackets} packets for 60 datagrams`);
      assert.ok(serverPackets <= 60 * 1.4, `server sent ${serverPackets} packets for 60 datagrams`);
      assert.equal(nativeStats(client.connection).lost, 0);
      assert.equal(nativeStats(far.connection).lost, 0);
      // quiche subtracts the reported ACK delay from RTT samples; at worst (a sub-millisecond
      // path, RFC 9002's "below min_rtt" rule) a sample carries one ACK delay, never more.
      const rtt = client.datagrams.pathStats()?.rttMs;
      assert.ok(rtt !== undefined && rtt <= ACK_DELAY_MS, `smoothed RTT ${rtt} ms on loopback`);
    } finally {
      await client.close();
    }
  });

  test('a receive-only side still acknowledges (every second packet), and nothing is lost', async () => {
    const { client, far } = await connect();
    try {
      const sent0 = nativeStats(client.connection).sent;
      const { atA } = await exchange(client.datagrams, far.datagrams, 50, { a: false, b: true });
      assert.deepEqual(atA, Array.from({ length: 50 }, (_, i) => i));
      const acks = nativeStats(client.connection).sent - sent0;
      assert.ok(acks >= 20 && acks <= 40, `client sent ${acks} ACK packets for 50 datagrams`);
      // Without ACKs the sender would declare its packets lost and probe.
      assert.equal(nativeStats(far.connection).lost, 0);
    } finally {
      await client.close();
    }
  });

  test('forged packets with a live connection ID and the peer address are dropped; the connection carries on', async () => {
    const { client, far } = await connect();
    try {
      await exchange(client.datagrams, far.datagrams, 5, { a: true, b: true });
      // Whoever can send from the client's address and knows the connection ID (an on-path
      // attacker) can only produce packets that fail authentication: the direct receive path
      // must drop them like the library does.
      const internals = client.connection as unknown as { socket: { socket: import('node:dgram').Socket }; connectionIdPeer: Uint8Array };
      const udp = internals.socket.socket;
      const dcid = Buffer.from(internals.connectionIdPeer);
      for (let i = 0; i < 50; i++) {
        const junk = Buffer.concat([Buffer.from([0x40 | (i & 0x3f)]), dcid, Buffer.alloc(20 + i, i)]);
        udp.send(junk, server.address.port, server.address.host);
      }
      await delay(50);
      const { atA, atB } = await exchange(client.datagrams, far.datagrams, 20, { a: true, b: true });
      assert.equal(atA.length, 20);
      assert.equal(atB.length, 20);
    } finally {
      await client.close();
    }
  });

  test('a close reaches the other side promptly once the connection runs on its own timer', async () => {
    const { client, far } = await connect();
    await exchange(client.datagrams, far.datagrams, 5, { a: true, b: true });
    let farClosed = false;
    const stopped = new Promise<void>((resolve) =>
      far.connection.addEventListener(quicEvents.EventQUICConnectionStopped.name, () => {
        farClosed = true;
        resolve();
      }),
    );
    const t0 = performance.now();
    await client.close();
    await Promise.race([stopped, delay(3000)]);
    assert.ok(farClosed, 'the server side saw the close');
    assert.ok(performance.now() - t0 < 3000);
    await client.closed;
  });
});

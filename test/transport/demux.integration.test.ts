/**
 * One UDP socket per client, over real QUIC on loopback: the socket that carries a client's
 * QUIC connection to the relay also carries the UDP media path, a STUN binding to the relay's
 * STUN server and direct-path checks with a peer, all at once, each class through the
 * socket's demultiplexer (core/transport/demux.ts), and the relay (over QUIC and over STUN)
 * and the peer (in its check response) all observe the same source port. Loopback only.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { StunClient } from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { Relay } from '../../core/relay/relay.js';
import { pathCheckClass, stunClass, type UdpSource } from '../../core/transport/demux.js';
import { connectQuic, expectFingerprint, openSocket, rawUdpSocket, socketDemux } from '../../core/transport/quic.js';
import { decodePathCheck, encodePathCheck, type PathCheck, type PathCheckResponse } from '../../core/wire/path-check.js';
import { waitFor } from '../helpers/wait.js';

const KEY = randomBytes(32);
const CALL_ID = randomBytes(16);

function request(controlling: boolean): PathCheck {
  return { type: 'request', transactionId: randomBytes(12), callId: CALL_ID, controlling, nominate: false, tieBreaker: 42n, priority: 0x6effffff };
}

function answer(req: PathCheck, from: UdpSource, controlling: boolean): Uint8Array {
  return encodePathCheck({ ...req, type: 'response', controlling, observed: { address: from.address, port: from.port } } as PathCheck, KEY);
}

describe('one UDP socket per client', () => {
  let relay: Relay;
  let fingerprint: string;
  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint });
  });
  after(() => relay.stop());

  test("the relay connection's socket carries QUIC, the media path, STUN and path checks at once, from one source port", async () => {
    const session = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    const peer: Socket = await openUdpSocket('udp4', '127.0.0.1');
    try {
      const localPort = session.localAddress.port;
      const demux = session.demux;
      assert.ok(demux.has('media-path'), "the connection's own socket registered the media path");

      // A STUN client on the same socket, fed by the demux.
      const stun = new StunClient(rawUdpSocket(session.socket), { listen: false });
      const offStun = demux.register(stunClass((data, from) => stun.handlePacket(data, from)));

      // The checking side on the same socket: answers requests, resolves on a response to ours.
      const ours = request(true);
      let gotResponse!: (r: PathCheckResponse) => void;
      const response = new Promise<PathCheckResponse>((resolve) => (gotResponse = resolve));
      const offChecks = demux.register(
        pathCheckClass((data, from) => {
          const msg = decodePathCheck(data, KEY);
          if (msg.type === 'request') demux.send(answer(msg, from, true), { host: from.address, port: from.port });
          else if (Buffer.from(msg.transactionId).equals(Buffer.from(ours.transactionId))) gotResponse(msg);
        }),
      );

      // The peer: a plain UDP socket that answers checks and checks back.
      const peerResponses: PathCheckResponse[] = [];
      peer.on('message', (data, rinfo) => {
        const msg = decodePathCheck(data, KEY);
        if (msg.type === 'request') peer.send(answer(msg, rinfo, false), rinfo.port, rinfo.address);
        else peerResponses.push(msg);
      });
      const toPeer = { host: '127.0.0.1', port: peer.address().port };

      // Media on the UDP media path (echo), to have every class busy at the same time.
      const echoed: Uint8Array[] = [];
      session.datagrams.onDatagram((d) => echoed.push(d));
      await session.joinEcho({ timeoutMs: 3000 });
      await waitFor(() => session.mediaPathStats().path === 'udp');

      const [reflected, binding, checked] = await Promise.all([
        session.reflect({ timeoutMs: 3000 }),
        stun.binding({ address: '127.0.0.1', port: relay.address.port }, { timeoutMs: 3000 }),
        (async () => {
          assert.equal(demux.send(encodePathCheck(ours, KEY), toPeer), true);
          return response;
        })(),
        (async () => {
          peer.send(encodePathCheck(request(false), KEY), localPort, '127.0.0.1');
          await waitFor(() => peerResponses.length === 1);
        })(),
        (async () => {
          for (let i = 0; i < 10; i++) session.datagrams.send(Uint8Array.of(0x14, i));
          await waitFor(() => echoed.length === 10);
        })(),
      ]);

      // One source port, whoever looks: the relay over QUIC, the relay's STUN, the peer.
      assert.equal(reflected, `127.0.0.1:${localPort}`);
      assert.deepEqual(binding.mappedAddress, { address: '127.0.0.1', port: localPort });
      assert.deepEqual(checked.observed, { address: '127.0.0.1', port: localPort });
      assert.deepEqual(peerResponses[0].observed, { address: '127.0.0.1', port: peer.address().port });
      assert.equal(peerResponses[0].controlling, true);
      assert.ok(session.mediaPathStats().receivedOnPath >= 10, 'the echo came back on the media path');

      const s = demux.stats;
      assert.ok(s.classes.quic.packets > 0);
      assert.ok(s.classes['media-path'].packets >= 11, JSON.stringify(s.classes['media-path'])); // ack + echoes
      assert.equal(s.classes.stun.packets, 1);
      assert.equal(s.classes['path-check'].packets, 2);
      assert.equal(s.classes['path-check'].errors, 0);

      // QUIC still works after all that, and the classes come off cleanly.
      await session.ping({ timeoutMs: 3000 });
      offStun();
      offChecks();
      assert.equal(demux.has('stun'), false);
      assert.equal(demux.ownerOf(0x30), undefined);
      stun.close();
    } finally {
      await closeUdpSocket(peer);
      await session.close();
    }
  });

  test('the relay drops path checks (they are between peers) and counts them; it answers none', async () => {
    const attacker = await openUdpSocket('udp4', '127.0.0.1');
    try {
      const replies: Buffer[] = [];
      attacker.on('message', (m) => replies.push(m));
      const before = relay.metrics.udpPathRejected;
      const classes = relay.socketClasses;
      assert.ok(classes);
      const check = encodePathCheck(request(true), KEY);
      for (let i = 0; i < 5; i++) attacker.send(check, relay.address.port, '127.0.0.1');
      // A 0x30 packet that is not a check (wrong size) is unclaimed: dropped and counted too.
      attacker.send(Buffer.of(0x30, 0x11, 0), relay.address.port, '127.0.0.1');
      await waitFor(() => relay.metrics.udpPathRejected - before === 6);
      const after = relay.socketClasses;
      assert.ok(after);
      assert.equal(after.classes['path-check'].packets - classes.classes['path-check'].packets, 5);
      assert.equal(after.unclaimed - classes.unclaimed, 1);
      const session = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
      await session.ping({ timeoutMs: 3000 });
      await session.close();
      assert.deepEqual(replies, []);
    } finally {
      await closeUdpSocket(attacker);
    }
  });

  test("a connection on a shared socket uses the socket's demultiplexer and leaves its classes to the owner", async () => {
    const socket = await openSocket({ host: '127.0.0.1', port: 0 });
    try {
      const client = await connectQuic({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay'), socket });
      try {
        assert.equal(client.demux, socketDemux(socket));
        assert.equal(client.socket, socket);
        assert.equal(client.raw, undefined);
        assert.equal(client.demux.has('media-path'), false);
        assert.ok(client.demux.stats.classes.quic.packets > 0, 'the handshake came through the demux');
      } finally {
        await client.close();
      }
    } finally {
      await socket.stop({ force: true });
    }
  });
});

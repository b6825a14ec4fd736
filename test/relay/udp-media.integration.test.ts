/**
 * The UDP media path over real QUIC and UDP on loopback: members that join a room move their
 * media out of QUIC datagrams once the relay answers their probe, the relay forwards it on
 * the path, and nothing that does not come from a member's own validated address with its
 * token gets into a room. A relay without the path, or a middlebox that passes only QUIC,
 * leaves media in QUIC datagrams, and calls work the same.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay } from '../../core/relay/relay.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { QUIC_DEFAULTS, expectFingerprint, type HostPort } from '../../core/transport/quic.js';
import type { MediaPathSwitch } from '../../core/transport/media-transport.js';
import { MEDIA_PATH_MEDIA, MEDIA_PATH_PROBE, PROBE_RETRY_MS, UdpMediaPathTransport } from '../../core/transport/udp-media.js';
import type { KnownSignal } from '../../core/transport/signal-stream.js';
import { sleep, waitFor } from '../helpers/wait.js';

const ROOM = 'd'.repeat(32);

interface Member {
  session: RelaySession;
  media: { from: number; bytes: number[] }[];
}

let tls: Awaited<ReturnType<typeof deriveTlsCertificate>>;
before(async () => {
  tls = await deriveTlsCertificate(generateIdentity().seed);
});

async function startRelay(udpMedia = true): Promise<Relay> {
  return Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, udpMedia });
}

async function member(relay: HostPort, open: RelaySession[], mediaPath: 'auto' | 'quic' = 'auto'): Promise<Member> {
  const session = await RelaySession.open({ relay, verify: expectFingerprint(tls.fingerprint, 'relay'), mediaPath });
  open.push(session);
  const m: Member = { session, media: [] };
  session.datagrams.onDatagram((d) => {
    const t = untagRoomDatagram(d);
    if (t) m.media.push({ from: t.sourceId, bytes: [...t.datagram] });
  });
  return m;
}

async function udpSocket(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  return s;
}

describe('UDP media path', () => {
  let relay: Relay;
  const open: RelaySession[] = [];
  before(async () => {
    relay = await startRelay();
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    await relay.stop();
  });

  test('members move their media to the path once the relay answers, and the relay forwards it there', async () => {
    const [alice, bob, carol] = [await member(relay.address, open), await member(relay.address, open), await member(relay.address, open)];
    const a = await alice.session.joinRoom(ROOM, { alias: 'alice' });
    const b = await bob.session.joinRoom(ROOM, { alias: 'bob' });
    await carol.session.joinRoom(ROOM, { alias: 'carol' });
    await waitFor(() => [alice, bob, carol].every((m) => m.session.mediaPathStats().path === 'udp'));
    // A receive-only member (carol sends nothing) gets its media on the path too, once its
    // confirm is in: wait for the relay to have taken all three.
    const before = { ...relay.metrics };
    for (let i = 0; i < 20; i++) alice.session.datagrams.send(new Uint8Array([1, i]));
    bob.session.datagrams.send(new Uint8Array([2, 0]));
    await waitFor(() => bob.media.length === 20 && carol.media.length === 21 && alice.media.length === 1);
    assert.deepEqual(
      bob.media.map((m) => m.bytes[1]),
      [...Array(20).keys()],
    );
    assert.ok(bob.media.every((m) => m.from === a.sourceId));
    assert.deepEqual(alice.media, [{ from: b.sourceId, bytes: [2, 0] }], 'nobody hears their own media');
    assert.equal(relay.metrics.datagramsOnUdpPath - before.datagramsOnUdpPath, 21, 'all of it came on the path');
    assert.equal(relay.metrics.datagramsReceived - before.datagramsReceived, 21);
    assert.equal(relay.metrics.datagramsForwarded - before.datagramsForwarded, 42);
    assert.equal(alice.session.mediaPathStats().sentOnPath, 20);
    assert.equal(carol.session.mediaPathStats().receivedOnPath, 21, 'the receive-only member gets it on the path');
    assert.equal(carol.session.mediaPathStats().sentOnPath, 0);
    // The QUIC channel carried none of it.
    assert.equal(alice.session.datagrams.stats().sent, 20);
    assert.equal(alice.session.datagrams.stats().droppedTooLarge, 0);
    // Too large for either path: refused locally, as in QUIC.
    assert.equal(alice.session.datagrams.send(new Uint8Array(5000)), false);
    assert.equal(alice.session.datagrams.stats().droppedTooLarge, 1);

    // After leaving, the member's path token is dead: its packets go nowhere.
    await bob.session.leave();
    await waitFor(() => bob.session.mediaPathStats().path === 'quic');
    const carolBefore = carol.media.length;
    alice.session.datagrams.send(new Uint8Array([1, 99]));
    await waitFor(() => carol.media.length === carolBefore + 1);
    await sleep(50);
    assert.equal(bob.media.length, 20, 'a member who left receives nothing more');
  });

  test('path packets without a live token, from another address than the member\'s, or malformed are dropped and counted; none reach the room', async () => {
    const [alice, bob] = [await member(relay.address, open), await member(relay.address, open)];
    await alice.session.joinRoom('e'.repeat(32), { alias: 'alice' });
    await bob.session.joinRoom('e'.repeat(32), { alias: 'bob' });
    await waitFor(() => alice.session.mediaPathStats().path === 'udp' && bob.session.mediaPathStats().path === 'udp');
    // The attacker knows alice's token (the strongest case: it was on the wire) but sends
    // from its own address.
    const token = tokenOf(alice.session);
    const attacker = await udpSocket();
    try {
      const acks: Buffer[] = [];
      attacker.on('message', (msg) => acks.push(msg));
      const rejected0 = relay.metrics.udpPathRejected;
      const received0 = relay.metrics.datagramsReceived;
      const packets = [
        Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), token, Buffer.from('forged media')]),
        Buffer.concat([Buffer.of(MEDIA_PATH_PROBE), token]),
        Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), Buffer.alloc(8, 7), Buffer.from('unknown token')]),
        Buffer.of(MEDIA_PATH_MEDIA, 1, 2),
        Buffer.of(0x3f, 1, 2, 3),
      ];
      for (const p of packets) attacker.send(p, relay.address.port, '127.0.0.1');
      await waitFor(() => relay.metrics.udpPathRejected - rejected0 === packets.length);
      await sleep(100);
      assert.equal(relay.metrics.datagramsReceived, received0);
      assert.deepEqual(bob.media, []);
      assert.deepEqual(acks, [], 'the relay answers no one but the member at its own address');
    } finally {
      attacker.close();
    }
    // The relay still serves the room.
    alice.session.datagrams.send(new Uint8Array([5]));
    await waitFor(() => bob.media.length === 1);
  });

  test('with all media on the path for longer than the relay\'s idle timeout, QUIC keep-alives hold the members in the room', async () => {
    const [alice, bob] = [await member(relay.address, open), await member(relay.address, open)];
    const pushes: KnownSignal[] = [];
    bob.session.onPush((m) => pushes.push(m));
    await alice.session.joinRoom('8'.repeat(32));
    await bob.session.joinRoom('8'.repeat(32));
    await waitFor(() => alice.session.mediaPathStats().path === 'udp' && bob.session.mediaPathStats().path === 'udp');
    const seconds = QUIC_DEFAULTS.relayMaxIdleTimeoutMs / 1000 + 2;
    const start = performance.now();
    for (let i = 0; i < seconds * 50; i++) {
      alice.session.datagrams.send(new Uint8Array([i & 0xff]));
      const wait = start + (i + 1) * 20 - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await waitFor(() => bob.media.length === seconds * 50);
    assert.equal(bob.session.mediaPathStats().receivedOnPath, seconds * 50);
    assert.deepEqual(pushes.filter((p) => p.type === 'room-update' && p.left !== undefined), [], 'nobody left');
    // Still a member: more media still arrives.
    alice.session.datagrams.send(new Uint8Array([1]));
    await waitFor(() => bob.media.length === seconds * 50 + 1);
  });

  test('a relay without the path gives no token: media stays in QUIC datagrams and flows', async () => {
    const plain = await startRelay(false);
    const local: RelaySession[] = [];
    try {
      const [alice, bob] = [await member(plain.address, local), await member(plain.address, local)];
      await alice.session.joinRoom(ROOM);
      await bob.session.joinRoom(ROOM);
      await sleep(200);
      for (let i = 0; i < 5; i++) alice.session.datagrams.send(new Uint8Array([i]));
      await waitFor(() => bob.media.length === 5);
      assert.equal(alice.session.mediaPathStats().path, 'quic');
      assert.equal(alice.session.mediaPathStats().probesSent, 0);
      assert.equal(plain.metrics.datagramsOnUdpPath, 0);
      assert.equal(plain.metrics.datagramsReceived, 5);
    } finally {
      await Promise.all(local.map((s) => s.close()));
      await plain.stop();
    }
  });

  test('a client that asks for QUIC only gets no token and keeps its media in QUIC', async () => {
    const [alice, bob] = [await member(relay.address, open, 'quic'), await member(relay.address, open)];
    const pushes: KnownSignal[] = [];
    alice.session.onPush((m) => pushes.push(m));
    await alice.session.joinRoom('f'.repeat(32));
    await bob.session.joinRoom('f'.repeat(32));
    await waitFor(() => bob.session.mediaPathStats().path === 'udp');
    const onPath0 = relay.metrics.datagramsOnUdpPath;
    for (let i = 0; i < 5; i++) alice.session.datagrams.send(new Uint8Array([i]));
    bob.session.datagrams.send(new Uint8Array([9]));
    await waitFor(() => bob.media.length === 5 && alice.media.length === 1);
    assert.equal(alice.session.mediaPathStats().probesSent, 0);
    assert.equal(relay.metrics.datagramsOnUdpPath - onPath0, 1, 'only bob\'s came on the path');
  });

  test('behind a middlebox that passes only QUIC, probes go unanswered and media stays in QUIC datagrams; slow probes find the path once it opens', async () => {
    const box = await quicOnlyForwarder(relay.address);
    try {
      const alice = await member({ host: '127.0.0.1', port: box.port }, open);
      const bob = await member(relay.address, open);
      await alice.session.joinRoom('9'.repeat(32));
      await bob.session.joinRoom('9'.repeat(32));
      // Media flows while probing and after giving up.
      for (let i = 0; i < 3; i++) alice.session.datagrams.send(new Uint8Array([i]));
      await waitFor(() => bob.media.length === 3);
      await waitFor(() => alice.session.mediaPathStats().probesSent === 5, 4000);
      await sleep(500);
      assert.equal(alice.session.mediaPathStats().path, 'quic');
      assert.ok(box.dropped >= 5, `the middlebox dropped the probes (${box.dropped})`);
      alice.session.datagrams.send(new Uint8Array([3]));
      bob.session.datagrams.send(new Uint8Array([4]));
      await waitFor(() => bob.media.length === 4 && alice.media.length === 1);
      // The middlebox relents (or the loss that ate the probes stops): the next slow probe
      // gets through, and media moves to the path.
      box.passAll = true;
      await waitFor(() => alice.session.mediaPathStats().path === 'udp', PROBE_RETRY_MS + 2000);
      const onPath0 = relay.metrics.datagramsOnUdpPath;
      alice.session.datagrams.send(new Uint8Array([5]));
      await waitFor(() => bob.media.length === 5);
      assert.equal(relay.metrics.datagramsOnUdpPath - onPath0, 1);
    } finally {
      box.close();
    }
  });
});

/** The token a session probes with (read off its own probe, as an on-path observer would). */
function tokenOf(session: RelaySession): Buffer {
  const path = (session.mediaTransport as MediaPathSwitch).paths.find((p): p is UdpMediaPathTransport => p instanceof UdpMediaPathTransport);
  const token = path?.token;
  assert.ok(token, 'session has a path token');
  return Buffer.from(token);
}

/** A UDP forwarder that passes QUIC packets (fixed bit set) and drops everything else. */
async function quicOnlyForwarder(target: HostPort): Promise<{ port: number; dropped: number; passAll: boolean; close(): void }> {
  const front = await udpSocket();
  const back = await udpSocket();
  let client: { address: string; port: number } | undefined;
  const box = {
    port: front.address().port,
    dropped: 0,
    /** Pass everything from now on. */
    passAll: false,
    close() {
      front.close();
      back.close();
    },
  };
  const passes = (msg: Buffer): boolean => box.passAll || (msg.length > 0 && (msg[0] & 0x40) !== 0);
  front.on('message', (msg, rinfo) => {
    client = { address: rinfo.address, port: rinfo.port };
    if (passes(msg)) back.send(msg, target.port, target.host);
    else box.dropped++;
  });
  back.on('message', (msg) => {
    if (!client) return;
    if (passes(msg)) front.send(msg, client.port, client.address);
    else box.dropped++;
  });
  return box;
}

/**
 * The relay's media plane thread (core/relay/media-plane.ts) over real QUIC and UDP on
 * loopback: rooms whose members are all on the UDP media path are forwarded by the thread,
 * other rooms by the main thread as before, a room moves between the two as members come and
 * go, hostile packets steered to the thread are dropped and counted there, a member's media
 * cap holds there too, and with the thread stopped mid-call the main thread forwards the
 * rest. IPv6 as IPv4.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { PLAN_REFRESH_MS } from '../../core/relay/media-plane.js';
import { Relay, type RelayOptions } from '../../core/relay/relay.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { expectFingerprint, type HostPort } from '../../core/transport/quic.js';
import { MEDIA_PATH_MEDIA } from '../../core/transport/udp-media.js';
import type { UdpMediaPathTransport } from '../../core/transport/udp-media.js';
import type { MediaPathSwitch } from '../../core/transport/media-transport.js';
import { sleep, waitFor } from '../helpers/wait.js';

interface Member {
  session: RelaySession;
  media: { from: number; bytes: number[] }[];
}

let tls: Awaited<ReturnType<typeof deriveTlsCertificate>>;
before(async () => {
  tls = await deriveTlsCertificate(generateIdentity().seed);
});

function startRelay(host = '127.0.0.1', extra: Partial<RelayOptions> = {}): Promise<Relay> {
  return Relay.start({ listen: { host, port: 0 }, tls, fingerprint: tls.fingerprint, ...extra });
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

/** The member's current path token (it is on the wire in every media packet it sends). */
function tokenOf(session: RelaySession): Buffer {
  const sw = session.mediaTransport as MediaPathSwitch;
  const udp = sw.paths.find((p) => p.kind === 'relay-udp') as UdpMediaPathTransport | undefined;
  const token = udp?.token;
  assert.ok(token, 'the member has a path token');
  return Buffer.from(token);
}

async function udpSocket(type: 'udp4' | 'udp6' = 'udp4', host = '127.0.0.1'): Promise<Socket> {
  const s = createSocket(type);
  await new Promise<void>((resolve) => s.bind(0, host, () => resolve()));
  return s;
}

/** Send `n` numbered datagrams from `from` (first byte `tag`), paced so no cap is reached. */
async function sendNumbered(from: Member, tag: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    from.session.datagrams.send(new Uint8Array([tag, i]));
    if (i % 10 === 9) await sleep(5);
  }
}

/** The datagrams `m` received whose first byte is `tag` (a test's own, not the warm-up's). */
function tagged(m: Member, tag: number): { from: number; bytes: number[] }[] {
  return m.media.filter((x) => x.bytes[0] === tag);
}

function onPath(...members: Member[]): () => boolean {
  return () => members.every((m) => m.session.mediaPathStats().path === 'udp');
}

/**
 * A NAT on loopback whose mapping can be rebound: the client talks to `port`, the NAT talks to
 * the relay from an upstream socket, and rebind() swaps that socket for one on a new port (the
 * member's QUIC and path packets come from a new address from then on).
 */
async function rebindingNat(target: HostPort): Promise<{ port: number; upstreamPort(): number; rebind(): Promise<void>; close(): void }> {
  const front = await udpSocket();
  let client: { address: string; port: number } | undefined;
  const upstream = (): Socket => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1');
    s.on('message', (msg) => {
      if (client) front.send(msg, client.port, client.address);
    });
    return s;
  };
  let up = upstream();
  await new Promise<void>((resolve) => up.once('listening', () => resolve()));
  front.on('message', (msg, rinfo) => {
    client = { address: rinfo.address, port: rinfo.port };
    up.send(msg, target.port, target.host);
  });
  return {
    port: front.address().port,
    upstreamPort: () => up.address().port,
    async rebind() {
      const next = upstream();
      await new Promise<void>((resolve) => next.once('listening', () => resolve()));
      const old = up;
      up = next;
      old.close();
    },
    close() {
      front.close();
      up.close();
    },
  };
}

/** Alice and Bob in `room`, reaching the relay at `aliceVia` and `bobVia`, with Alice's media forwarded by the plane. */
async function planePair(relay: Relay, room: string, open: RelaySession[], aliceVia: HostPort, bobVia: HostPort): Promise<[Member, Member]> {
  const [alice, bob] = [await member(aliceVia, open), await member(bobVia, open)];
  await alice.session.joinRoom(room, { alias: 'alice' });
  await bob.session.joinRoom(room, { alias: 'bob' });
  await waitFor(onPath(alice, bob));
  await waitFor(() => {
    alice.session.datagrams.send(new Uint8Array([0, 0]));
    return relay.metrics.mediaPlane.packets > 0 && bob.media.length > 0;
  });
  return [alice, bob];
}

/** Two members in `room`, both on the UDP path. */
async function pairOnPath(relay: Relay, room: string, open: RelaySession[]): Promise<[Member, Member]> {
  const [alice, bob] = [await member(relay.address, open), await member(relay.address, open)];
  await alice.session.joinRoom(room, { alias: 'alice' });
  await bob.session.joinRoom(room, { alias: 'bob' });
  await waitFor(onPath(alice, bob));
  return [alice, bob];
}

describe('relay media plane', { skip: process.platform !== 'linux' ? 'the media plane runs on Linux only' : false }, () => {
  let relay: Relay;
  const open: RelaySession[] = [];
  before(async () => {
    relay = await startRelay();
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    await relay.stop();
  });

  test('a room whose members are all on the UDP path is forwarded by the plane thread, in order, under the sender\'s source id', async () => {
    assert.equal(relay.metrics.mediaPlane.state, 'running');
    const room = 'a1'.repeat(16);
    const [alice, bob, carol] = [await member(relay.address, open), await member(relay.address, open), await member(relay.address, open)];
    const a = await alice.session.joinRoom(room, { alias: 'alice' });
    await bob.session.joinRoom(room, { alias: 'bob' });
    await carol.session.joinRoom(room, { alias: 'carol' });
    await waitFor(onPath(alice, bob, carol));
    // Carol sends nothing: her route is confirmed by her confirm; then the room is the plane's.
    await waitFor(() => {
      alice.session.datagrams.send(new Uint8Array([0, 0]));
      return relay.metrics.mediaPlane.packets > 0;
    });
    await waitFor(() => bob.media.length > 0 && carol.media.length > 0);
    await sleep(50); // the warm-up's last packets
    const before = relay.metrics;
    await sendNumbered(alice, 1, 100);
    await waitFor(() => tagged(bob, 1).length === 100 && tagged(carol, 1).length === 100);
    for (const m of [bob, carol]) {
      assert.deepEqual(
        tagged(m, 1).map((x) => x.bytes[1]),
        [...Array(100).keys()],
      );
      assert.ok(m.media.every((x) => x.from === a.sourceId));
    }
    const after = relay.metrics;
    assert.equal(after.mediaPlane.packets - before.mediaPlane.packets, 100, 'all 100 through the plane');
    assert.equal(after.mediaPlane.handedOver - before.mediaPlane.handedOver, 0);
    assert.equal(after.datagramsOnUdpPath - before.datagramsOnUdpPath, 100);
    assert.equal(after.datagramsForwarded - before.datagramsForwarded, 200);
    assert.equal(alice.media.length, 0, 'nobody hears their own media');
    // The plane's forwards are in the Prometheus series too.
    const text = await relay.metricsRegistry.prometheusText();
    assert.match(text, /wzp_relay_media_plane_up 1/);
    const forwarded = /wzp_relay_media_plane_packets_total\{result="forwarded"\} (\d+)/.exec(text);
    assert.ok(forwarded && Number(forwarded[1]) >= 100, text);
  });

  test('a room with a QUIC-only member is forwarded by the main thread (the plane hands its packets over); once that member leaves, the plane takes the room', async () => {
    const room = 'b2'.repeat(16);
    const [alice, bob] = [await member(relay.address, open), await member(relay.address, open)];
    const carol = await member(relay.address, open, 'quic');
    await alice.session.joinRoom(room, { alias: 'alice' });
    await bob.session.joinRoom(room, { alias: 'bob' });
    await carol.session.joinRoom(room, { alias: 'carol' });
    await waitFor(onPath(alice, bob));
    await sleep(300); // the plan after the joins has reached the plane
    const before = relay.metrics;
    await sendNumbered(alice, 2, 50);
    await waitFor(() => tagged(bob, 2).length === 50 && tagged(carol, 2).length === 50);
    let now = relay.metrics;
    assert.equal(now.mediaPlane.packets - before.mediaPlane.packets, 0, 'the plane forwarded none of it');
    assert.equal(now.mediaPlane.handedOver - before.mediaPlane.handedOver, 50);
    assert.equal(now.datagramsForwarded - before.datagramsForwarded, 100);
    assert.equal(carol.session.mediaPathStats().path, 'quic');

    await carol.session.leave();
    await waitFor(() => {
      alice.session.datagrams.send(new Uint8Array([3, 0]));
      return relay.metrics.mediaPlane.packets > now.mediaPlane.packets;
    });
    await sleep(50);
    now = relay.metrics;
    await sendNumbered(alice, 4, 50);
    await waitFor(() => tagged(bob, 4).length === 50);
    assert.equal(relay.metrics.mediaPlane.packets - now.mediaPlane.packets, 50, 'the room is the plane\'s now');
  });

  test('a member whose NAT rebinds mid-call (new source port for QUIC and media) goes on being heard: the main thread takes its packets from the new address and the plane takes them back once the plan has it', async () => {
    const room = 'e5'.repeat(16);
    const nat = await rebindingNat(relay.address);
    try {
      const [alice, bob] = await planePair(relay, room, open, { host: '127.0.0.1', port: nat.port }, relay.address);
      const oldPort = nat.upstreamPort();
      await nat.rebind();
      assert.notEqual(nat.upstreamPort(), oldPort);
      const before = relay.metrics;
      // Media every 20 ms, as a call sends it, until the plane forwards alice's again: her QUIC
      // keep-alive (every 3 s) moves the connection to the new address first.
      let i = 0;
      const start = performance.now();
      let heardAt: number | undefined;
      for (;;) {
        alice.session.datagrams.send(new Uint8Array([5, i++ & 0xff]));
        await sleep(20);
        const now = relay.metrics;
        if (heardAt === undefined && tagged(bob, 5).length > 0) heardAt = performance.now();
        if (now.mediaPlane.handedOver > before.mediaPlane.handedOver && heardAt !== undefined) {
          // Handed over since the move and heard: the plane has it again once a packet after the replan goes through it.
          const mark = now.mediaPlane.packets;
          alice.session.datagrams.send(new Uint8Array([5, i++ & 0xff]));
          await sleep(20);
          if (relay.metrics.mediaPlane.packets > mark) break;
        }
        assert.ok(performance.now() - start < 8000, `not back on the plane 8 s after the rebinding: ${JSON.stringify(relay.metrics.mediaPlane)}, heard ${tagged(bob, 5).length}`);
      }
      // The packets from the new address asked for the new plan: the plane had the member back
      // well before the periodic refresh would have given it.
      assert.ok(performance.now() - heardAt! < PLAN_REFRESH_MS / 2, `${Math.round(performance.now() - heardAt!)} ms on the main thread after the move`);
      // From here on the plane forwards all of it, none handed over.
      await sleep(50);
      const steady = relay.metrics;
      const heard = tagged(bob, 6).length;
      await sendNumbered(alice, 6, 50);
      await waitFor(() => tagged(bob, 6).length === heard + 50);
      assert.equal(relay.metrics.mediaPlane.packets - steady.mediaPlane.packets, 50);
      assert.equal(relay.metrics.mediaPlane.handedOver - steady.mediaPlane.handedOver, 0);
    } finally {
      nat.close();
    }
  });

  test('a receive-only member whose NAT rebinds gets the room\'s media at its new address once its QUIC connection has moved there', async () => {
    const room = 'f6'.repeat(16);
    const nat = await rebindingNat(relay.address);
    try {
      const [alice, bob] = await planePair(relay, room, open, relay.address, { host: '127.0.0.1', port: nat.port });
      await nat.rebind();
      // Bob sends no media: a signalling round trip moves his QUIC connection to the new address.
      await bob.session.ping();
      const moved = performance.now();
      let i = 0;
      while (tagged(bob, 7).length === 0) {
        alice.session.datagrams.send(new Uint8Array([7, i++ & 0xff]));
        await sleep(20);
        assert.ok(performance.now() - moved < 5000, 'bob hears nothing at his new address');
      }
      // The main thread saw the move (it compares addresses every MOVED_CHECK_MS) and told the
      // plane, well before the full refresh.
      assert.ok(performance.now() - moved < PLAN_REFRESH_MS / 2, `${Math.round(performance.now() - moved)} ms until bob heard the room at his new address`);
      const steady = relay.metrics;
      const heard = tagged(bob, 8).length;
      await sendNumbered(alice, 8, 50);
      await waitFor(() => tagged(bob, 8).length === heard + 50);
      assert.equal(relay.metrics.mediaPlane.packets - steady.mediaPlane.packets, 50, 'the plane forwards to his new address');
    } finally {
      nat.close();
    }
  });

  test('hostile packets steered to the plane (unknown token, too short, oversized, forged source with a real token) are dropped and counted; none reach the room', async () => {
    const room = 'c3'.repeat(16);
    const [alice, bob] = await pairOnPath(relay, room, open);
    const token = tokenOf(alice.session);
    const attacker = await udpSocket();
    try {
      const heard: Buffer[] = [];
      attacker.on('message', (m) => heard.push(m));
      const rejected0 = relay.metrics.udpPathRejected;
      const received0 = relay.metrics.datagramsReceived;
      const packets = [
        Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), Buffer.alloc(8, 9), Buffer.from('unknown token')]),
        Buffer.of(MEDIA_PATH_MEDIA),
        Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), token]),
        Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), token, Buffer.alloc(3000, 1)]),
        Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), token, Buffer.from('forged: not from alice')]),
      ];
      for (const p of packets) attacker.send(p, relay.address.port, '127.0.0.1');
      await waitFor(() => relay.metrics.udpPathRejected - rejected0 === packets.length);
      await sleep(100);
      assert.equal(relay.metrics.datagramsReceived, received0);
      assert.deepEqual(bob.media, []);
      assert.deepEqual(heard, []);
    } finally {
      attacker.close();
    }
    alice.session.datagrams.send(new Uint8Array([5]));
    await waitFor(() => tagged(bob, 5).length === 1);
  });

  test('stopped mid-call, the plane leaves the socket to the main thread, which forwards the rest; started again, it takes the room back', async () => {
    const room = 'd4'.repeat(16);
    const [alice, bob] = await pairOnPath(relay, room, open);
    await waitFor(() => {
      alice.session.datagrams.send(new Uint8Array([0]));
      return relay.mediaPlaneRunning && relay.metrics.mediaPlane.packets > 0 && bob.media.length > 0;
    });
    await sleep(50);
    await relay.setMediaPlane(false);
    assert.equal(relay.metrics.mediaPlane.state, 'off');
    const before = relay.metrics;
    await sendNumbered(alice, 6, 40);
    await waitFor(() => tagged(bob, 6).length === 40);
    const now = relay.metrics;
    assert.equal(now.mediaPlane.packets, before.mediaPlane.packets, 'counters kept, nothing more through a stopped plane');
    assert.equal(now.datagramsForwarded - before.datagramsForwarded, 40);
    await relay.setMediaPlane(true);
    assert.equal(relay.metrics.mediaPlane.state, 'running');
    await waitFor(() => {
      alice.session.datagrams.send(new Uint8Array([7]));
      return relay.metrics.mediaPlane.packets > now.mediaPlane.packets;
    });
  });
});

describe('relay media plane: caps, IPv6, off', { skip: process.platform !== 'linux' ? 'the media plane runs on Linux only' : false }, () => {
  const open: RelaySession[] = [];
  const relays: Relay[] = [];
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    await Promise.all(relays.map((r) => r.stop()));
  });

  test('a member over its media cap is refused by the plane (counted as media-rate) and the others are not', async () => {
    const relay = await startRelay('127.0.0.1', { limits: { memberPacketsPerSecond: 50 } });
    relays.push(relay);
    const room = 'e5'.repeat(16);
    const [alice, bob] = await pairOnPath(relay, room, open);
    await waitFor(() => {
      alice.session.datagrams.send(new Uint8Array([0]));
      return relay.metrics.mediaPlane.packets > 0;
    });
    await sleep(1100); // the bucket refills
    const before = relay.metrics;
    // 200 at once: the burst is 50 (one second's worth).
    for (let i = 0; i < 200; i++) alice.session.datagrams.send(new Uint8Array([8, i]));
    await waitFor(() => relay.metrics.refused['media-rate'] - before.refused['media-rate'] >= 140);
    await sleep(100);
    const now = relay.metrics;
    const forwarded = now.mediaPlane.packets - before.mediaPlane.packets;
    assert.ok(forwarded >= 45 && forwarded <= 60, `${forwarded} forwarded of 200 over a cap of 50/s`);
    assert.equal(forwarded + now.refused['media-rate'] - before.refused['media-rate'], 200);
    assert.equal(tagged(bob, 8).length, forwarded);
    // Bob is not capped by Alice's flood.
    bob.session.datagrams.send(new Uint8Array([9]));
    await waitFor(() => tagged(alice, 9).length === 1);
  });

  test('over IPv6 the plane forwards as over IPv4', async () => {
    const relay = await startRelay('::1');
    relays.push(relay);
    assert.equal(relay.metrics.mediaPlane.state, 'running');
    const room = 'f6'.repeat(16);
    const [alice, bob] = await pairOnPath(relay, room, open);
    await waitFor(() => {
      alice.session.datagrams.send(new Uint8Array([0]));
      return relay.metrics.mediaPlane.packets > 0;
    });
    await waitFor(() => bob.media.length > 0);
    await sleep(50);
    const before = relay.metrics.mediaPlane.packets;
    await sendNumbered(alice, 10, 30);
    await waitFor(() => tagged(bob, 10).length === 30);
    assert.equal(relay.metrics.mediaPlane.packets - before, 30);
    // An IPv6 attacker with no token gets nothing through and nothing back.
    const attacker = await udpSocket('udp6', '::1');
    try {
      const rejected0 = relay.metrics.udpPathRejected;
      attacker.send(Buffer.concat([Buffer.of(MEDIA_PATH_MEDIA), Buffer.alloc(8, 1), Buffer.from('x')]), relay.address.port, '::1');
      await waitFor(() => relay.metrics.udpPathRejected === rejected0 + 1);
    } finally {
      attacker.close();
    }
  });

  test('with the plane off (mediaPlane: false) the main thread forwards everything', async () => {
    const relay = await startRelay('127.0.0.1', { mediaPlane: false });
    relays.push(relay);
    assert.equal(relay.metrics.mediaPlane.state, 'off');
    const room = '07'.repeat(16);
    const [alice, bob] = await pairOnPath(relay, room, open);
    await sendNumbered(alice, 11, 20);
    await waitFor(() => tagged(bob, 11).length === 20);
    assert.equal(relay.metrics.mediaPlane.packets, 0);
    assert.equal(relay.metrics.datagramsOnUdpPath >= 20, true);
  });
});

/**
 * Relay links in one process (core/federation/): two relays that both dial each other
 * converge on one link; a link hello that claims a trusted relay's fingerprint without its
 * key, a wrong version or no hello gets no link; malformed link frames and membership entries
 * from a linked relay are dropped and counted while the relay keeps serving; and a real
 * end-to-end encrypted group call (sender keys wrapped member to member) across three
 * relays in a chain: each member plays the other two, decrypts everything, and never
 * appears as its own participant.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { runCall, type CallReport } from '../../core/client/call.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { deriveTlsCertificate, type TlsCertificate } from '../../core/crypto/tls-cert.js';
import { LINK_LIMITS, LINK_PROTOCOL_VERSION } from '../../core/federation/federation.js';
import { linkCredentials, signLinkProof } from '../../core/federation/proof.js';
import { createRegistries, type Registries } from '../../core/registry.js';
import { Relay } from '../../core/relay/relay.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { connectQuic, expectFingerprint, type ClientConnection } from '../../core/transport/quic.js';
import { request, serveSignals, type KnownSignal } from '../../core/transport/signal-stream.js';
import { encodeLinkFrame, LINK_FRAME_MARKER } from '../../core/wire/link-frame.js';
import { sleep, waitFor } from '../helpers/wait.js';

const ROOM = hashRoomName('links-test');
/** The relays here get source-id prefixes 1, 2, ...; a hand-made peer says it has this one. */
const OTHER_PREFIX = 0xfff0;

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
const PLUGINS = fileURLToPath(new URL('../../src/plugins/', import.meta.url));

async function registries(): Promise<Registries> {
  const r = createRegistries();
  for (const p of ['codec-opus', 'codec-pcm', 'codec-codec2', 'fec-none', 'fec-rs', 'fec-xor']) {
    const hook = (await import(join(PLUGINS, p, 'index.js'))).default as () => Promise<unknown[]>;
    for (const f of await hook()) (p.startsWith('codec') ? r.codecs : r.fec).register(f as never, p);
  }
  return r;
}

describe('relay links', () => {
  const relays: Relay[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const c of closers) await c().catch(() => undefined);
    for (const r of relays) await r.stop();
  });

  let prefixes = 0;
  async function relay(tls: TlsCertificate, federation?: { peers: Relay[]; peerTls: TlsCertificate[]; trusted: string[] }, port = 0): Promise<Relay> {
    const r = await Relay.start({
      listen: { host: '127.0.0.1', port },
      tls,
      fingerprint: tls.fingerprint,
      sourcePrefix: ++prefixes,
      ...(federation
        ? {
            federation: {
              peers: federation.peers.map((p, i) => ({ address: p.address, fingerprint: federation.peerTls[i].fingerprint })),
              trusted: federation.trusted,
              globalRooms: [ROOM],
            },
          }
        : {}),
    });
    relays.push(r);
    return r;
  }

  const newTls = async () => deriveTlsCertificate(generateIdentity().seed);

  /** Open a raw QUIC connection to `r` as a would-be relay. */
  async function dialRaw(r: Relay): Promise<ClientConnection> {
    const c = await connectQuic({ relay: r.address, verify: expectFingerprint(r.fingerprint, 'relay') });
    closers.push(() => c.close());
    return c;
  }

  test('two relays that dial each other converge on one link, the one the lower fingerprint dialled', async () => {
    const [ta, tb] = [await newTls(), await newTls()];
    const [pa, pb] = [await freePort(), await freePort()];
    const at = (port: number) => ({ address: { host: '127.0.0.1', port } }) as Relay;
    // Each lists the other in its peers: both dial at once.
    const [a, b] = await Promise.all([relay(ta, { peers: [at(pb)], peerTls: [tb], trusted: [] }, pa), relay(tb, { peers: [at(pa)], peerTls: [ta], trusted: [] }, pb)]);
    await waitFor(() => a.metrics.federation?.linksUp === 1 && b.metrics.federation?.linksUp === 1, 10_000);
    await sleep(2000);
    assert.equal(b.metrics.federation?.linksUp, 1, 'b has one link');
    const linkB = b.metrics.federation?.links.find((l) => l.peer === ta.fingerprint);
    assert.equal(linkB?.direction, ta.fingerprint < tb.fingerprint ? 'in' : 'out');
    const linkA = a.metrics.federation?.links.find((l) => l.peer === tb.fingerprint);
    assert.ok(linkA?.up, 'a has a link to tb');
    assert.equal(a.metrics.federation?.linksUp, 1, 'a has one link');
    const lowerDialled = ta.fingerprint < tb.fingerprint ? 'out' : 'in';
    assert.equal(linkA.direction, lowerDialled, 'the link kept is the one the lower fingerprint dialled');
  });

  test('a peer that is not up yet is dialled again with back-off (first retry after 0.25-0.5 s, one log line), and linked once it starts', async () => {
    const [ta, tb] = [await newTls(), await newTls()];
    const pb = await freePort();
    const events: { type: string; retryMs?: number }[] = [];
    const a = await Relay.start({
      listen: { host: '127.0.0.1', port: 0 },
      tls: ta,
      fingerprint: ta.fingerprint,
      federation: { peers: [{ address: { host: '127.0.0.1', port: pb }, fingerprint: tb.fingerprint }], trusted: [], globalRooms: [ROOM] },
      onEvent: (e) => events.push(e),
    });
    relays.push(a);
    await waitFor(() => events.some((e) => e.type === 'federation:dial-failed'), 15_000);
    const first = events.find((e) => e.type === 'federation:dial-failed');
    assert.ok(first?.retryMs !== undefined && first.retryMs >= 250 && first.retryMs <= 500, `first retry in ${first?.retryMs} ms`);
    const b = await relay(tb, { peers: [], peerTls: [], trusted: [ta.fingerprint] }, pb);
    await waitFor(() => a.metrics.federation?.linksUp === 1 && b.metrics.federation?.linksUp === 1, 30_000);
    assert.equal(events.filter((e) => e.type === 'federation:dial-failed').length, 1, 'the same failure logged once');
  });

  test('a hello claiming a trusted fingerprint without its key, a wrong version, or no hello gets no link', async () => {
    const [ta, trustedTls, impostorTls] = [await newTls(), await newTls(), await newTls()];
    const a = await relay(ta, { peers: [], peerTls: [], trusted: [trustedTls.fingerprint] });
    const aPrefix = prefixes;
    const c = await dialRaw(a);
    // The trusted relay's certificate is public; its key is not.
    const hello = await request(c.connection, { type: 'link-hello', version: LINK_PROTOCOL_VERSION, fingerprint: trustedTls.fingerprint, certificate: Buffer.from(trustedTls.certDer).toString('base64'), sourcePrefix: OTHER_PREFIX });
    assert.equal(hello.type, 'link-challenge');
    assert.ok(hello.type === 'link-challenge');
    const forged = signLinkProof({ ...linkCredentials(impostorTls), fingerprint: trustedTls.fingerprint }, hello.nonce, a.fingerprint);
    const answer = await request(c.connection, { type: 'link-auth', signature: forged });
    assert.deepEqual(answer.type === 'error' ? answer.code : answer.type, 'link-proof');
    // A certificate that does not hash to the claimed fingerprint.
    const c2 = await dialRaw(a);
    const h2 = await request(c2.connection, { type: 'link-hello', version: LINK_PROTOCOL_VERSION, fingerprint: trustedTls.fingerprint, certificate: Buffer.from(impostorTls.certDer).toString('base64'), sourcePrefix: OTHER_PREFIX });
    assert.ok(h2.type === 'link-challenge');
    const a2 = await request(c2.connection, { type: 'link-auth', signature: signLinkProof(linkCredentials(impostorTls), h2.nonce, a.fingerprint) });
    assert.ok(a2.type === 'error' && a2.code === 'link-proof' && /fingerprint/.test(a2.message), JSON.stringify(a2));
    // Another version, a proof without a hello, the relay's own fingerprint.
    const v = await request(c2.connection, { type: 'link-hello', version: LINK_PROTOCOL_VERSION + 1, fingerprint: trustedTls.fingerprint, certificate: 'AAAA', sourcePrefix: OTHER_PREFIX });
    assert.ok(v.type === 'error' && v.code === 'link-version');
    const c3 = await dialRaw(a);
    const noHello = await request(c3.connection, { type: 'link-auth', signature: forged });
    assert.ok(noHello.type === 'error' && noHello.code === 'link-no-hello');
    const self = await request(c3.connection, { type: 'link-hello', version: LINK_PROTOCOL_VERSION, fingerprint: ta.fingerprint, certificate: Buffer.from(ta.certDer).toString('base64'), sourcePrefix: OTHER_PREFIX });
    assert.ok(self.type === 'error' && self.code === 'link-self');
    // A relay that numbers its members with this relay's source-id prefix (ids would collide).
    const c5 = await dialRaw(a);
    const samePrefix = await request(c5.connection, {
      type: 'link-hello',
      version: LINK_PROTOCOL_VERSION,
      fingerprint: trustedTls.fingerprint,
      certificate: Buffer.from(trustedTls.certDer).toString('base64'),
      sourcePrefix: aPrefix,
    });
    assert.ok(samePrefix.type === 'error' && samePrefix.code === 'link-source-prefix' && /source_id_prefix/.test(samePrefix.message), JSON.stringify(samePrefix));
    assert.equal(a.metrics.federation?.linksUp, 0);
    assert.ok((a.metrics.federation?.refused ?? 0) >= 6);
    // A relay without federation refuses link hellos outright.
    const plain = await relay(await newTls());
    const c4 = await dialRaw(plain);
    const none = await request(c4.connection, { type: 'link-hello', version: LINK_PROTOCOL_VERSION, fingerprint: trustedTls.fingerprint, certificate: 'AAAA', sourcePrefix: OTHER_PREFIX });
    assert.ok(none.type === 'error' && none.code === 'link-not-trusted');
  });

  test('malformed link frames and membership entries are dropped and counted; the relay keeps serving', async () => {
    const [ta, tf] = [await newTls(), await newTls()];
    const a = await relay(ta, { peers: [], peerTls: [], trusted: [tf.fingerprint] });
    // A fake peer relay that does the handshake by hand, then misbehaves.
    const c = await dialRaw(a);
    const pushes: KnownSignal[] = [];
    serveSignals(c.connection, { handle: (m) => (pushes.push(m), []) });
    const hello = await request(c.connection, { type: 'link-hello', version: LINK_PROTOCOL_VERSION, fingerprint: tf.fingerprint, certificate: Buffer.from(tf.certDer).toString('base64'), sourcePrefix: OTHER_PREFIX });
    assert.ok(hello.type === 'link-challenge');
    const ready = await request(c.connection, { type: 'link-auth', signature: signLinkProof(linkCredentials(tf), hello.nonce, a.fingerprint) });
    assert.equal(ready.type, 'link-ready');
    await waitFor(() => a.metrics.federation?.linksUp === 1);

    // A local member on A.
    const s = await RelaySession.open({ relay: a.address, verify: expectFingerprint(a.fingerprint, 'relay') });
    closers.push(() => s.close());
    const got: number[][] = [];
    s.datagrams.onDatagram((d) => {
      const t = untagRoomDatagram(d);
      if (t) got.push([t.sourceId, ...t.datagram]);
    });
    const joined = await s.joinRoom(ROOM, {});
    // A's snapshot / change: the fake relay learns A's member.
    await waitFor(() => pushes.some((p) => p.type === 'link-update' && p.entries.some((e) => e.sid === joined.sourceId)));

    const mid = '0123456789abcdef';
    const bad = [
      { mid: 'xyz', room: ROOM, sid: 5, hops: 1, via: false, fingerprint: '' },
      { mid, room: ROOM, sid: 0, hops: 1, via: false, fingerprint: '' },
      { mid, room: ROOM, sid: 5, hops: 99, via: false, fingerprint: '' },
      { mid, room: ROOM, sid: 5, hops: 1, via: 'yes', fingerprint: '' },
      { mid, room: ROOM, sid: 5, hops: 1, via: false, fingerprint: 'nope' },
      { mid, room: ROOM, sid: 5, hops: 1, via: false, fingerprint: '', announcement: { big: 'x'.repeat(2000) } },
    ];
    await request(c.connection, { type: 'link-update', entries: bad }).catch(() => undefined);
    await request(c.connection, { type: 'link-update', entries: [{ mid, room: 'f'.repeat(32), sid: 5, hops: 1, via: false, fingerprint: '' }] }).catch(() => undefined);
    // One good remote member, numbered by the fake relay (its prefix, member 7).
    const sid = OTHER_PREFIX * 0x1_0000 + 7;
    await request(c.connection, { type: 'link-update', entries: [{ mid, room: ROOM, sid, hops: 1, via: false, fingerprint: '' }] }).catch(() => undefined);
    await waitFor(() => (a.metrics.federation?.remoteMembers ?? 0) === 1);
    // Source ids are one per member across the federation; ones that would collide are not taken:
    // another member with that id, one with A's own prefix (a relay beyond that shares it), and
    // the good member announced again under another id.
    await request(c.connection, {
      type: 'link-update',
      entries: [
        { mid: 'aaaaaaaaaaaaaaaa', room: ROOM, sid, hops: 1, via: false, fingerprint: '' },
        { mid: 'bbbbbbbbbbbbbbbb', room: ROOM, sid: joined.sourceId, hops: 1, via: false, fingerprint: '' },
        { mid: 'cccccccccccccccc', room: ROOM, sid: Math.floor(joined.sourceId / 0x1_0000) * 0x1_0000 + 0xfffe, hops: 1, via: false, fingerprint: '' },
        { mid, room: ROOM, sid: sid + 1, hops: 1, via: false, fingerprint: '' },
      ],
    }).catch(() => undefined);
    await waitFor(() => (a.metrics.federation?.links.find((l) => l.peer === tf.fingerprint)?.drops['source-id-collision'] ?? 0) === 3);
    assert.equal(a.metrics.federation?.remoteMembers, 1, 'no colliding member admitted');

    c.datagrams.send(Uint8Array.of(0x00, 0x01, 0x02)); // not a link frame
    c.datagrams.send(Uint8Array.of(LINK_FRAME_MARKER, 1, 0, 0, 0, 7, 1, 0, 9, 1)); // truncated entry
    c.datagrams.send(encodeLinkFrame([{ sourceId: 999, hops: 1, datagram: Uint8Array.of(1) }])); // never announced
    c.datagrams.send(encodeLinkFrame([{ sourceId: sid, hops: 2, datagram: Uint8Array.of(0xaa, 0xbb) }])); // good
    await waitFor(() => got.length === 1, 5000);
    const drops = () => a.metrics.federation?.links.find((l) => l.peer === tf.fingerprint)?.drops;
    await waitFor(() => (drops()?.['malformed-frame'] ?? 0) === 2 && (drops()?.['unknown-source'] ?? 0) === 1);
    const d = drops();
    assert.ok(d);
    assert.equal(d['malformed-update'], 7, 'each bad entry counted');
    assert.equal(d['room-not-global'], 1);
    assert.deepEqual(got[0].slice(1), [0xaa, 0xbb], 'the good datagram reached the local member');
    assert.equal(got[0][0], sid, 'under the id its own relay gave it');
    // The metrics export the link's counters.
    const text = await a.metricsRegistry.prometheusText();
    const short = tf.fingerprint.split(':').slice(0, 4).join(':');
    assert.match(text, new RegExp(`wzp_relay_federation_drops_total\\{peer="${short}",reason="malformed-frame"\\} 2`));
    assert.match(text, new RegExp(`wzp_relay_federation_link_up\\{peer="${short}"\\} 1`));
    assert.match(text, /wzp_relay_federation_members\{where="remote"\} 1/);
    // The link's member bound: entries past LINK_LIMITS.membersPerLink are dropped and counted.
    const limit = LINK_LIMITS.membersPerLink;
    for (let sent = 1; sent < limit + 64; sent += 64) {
      const entries = Array.from({ length: 64 }, (_, i) => ({ mid: (0x1000 + sent + i).toString(16).padStart(16, '0'), room: ROOM, sid: 100 + sent + i, hops: 1, via: false, fingerprint: '' }));
      await request(c.connection, { type: 'link-update', entries }).catch(() => undefined);
    }
    await waitFor(() => (drops()?.['member-limit'] ?? 0) > 0);
    assert.equal(a.metrics.federation?.links.find((l) => l.peer === tf.fingerprint)?.members, limit, 'the link holds its bound, no more');
    assert.ok((drops()?.['room-full'] ?? 0) > 0, 'the room does not grow past its size');
    // Still serving: the member pings, and the link dropping makes the remote member leave.
    assert.ok((await s.ping()) >= 0);
    await c.close();
    await waitFor(() => a.metrics.federation?.remoteMembers === 0 && a.metrics.federation?.linksUp === 0, 10_000);
  });

  test('live changes (a reload): a new peer is dialled, a room that becomes global is announced, one that stops is withdrawn, a dropped peer is unlinked', async () => {
    const [ta, tb] = [await newTls(), await newTls()];
    const b = await relay(tb, { peers: [], peerTls: [], trusted: [ta.fingerprint] });
    const a = await relay(ta);
    const join = async (r: Relay) => {
      const s = await RelaySession.open({ relay: r.address, verify: expectFingerprint(r.fingerprint, 'relay') });
      closers.push(() => s.close());
      const pushes: KnownSignal[] = [];
      s.onPush((p) => pushes.push(p));
      const j = await s.joinRoom(ROOM, {});
      return { s, pushes, roster: () => (pushes.filter((p) => p.type === 'room-update').at(-1) as { participants: unknown[] } | undefined)?.participants.length ?? j.participants.length };
    };
    const [ma, mb] = [await join(a), await join(b)];
    assert.equal(mb.roster(), 1);
    // A had no federation: the first non-empty settings start it; its member already in the room is announced.
    a.setFederation({ peers: [{ address: b.address, fingerprint: tb.fingerprint }], trusted: [], globalRooms: [ROOM] });
    await waitFor(() => a.metrics.federation?.linksUp === 1, 10_000);
    await waitFor(() => mb.roster() === 2 && ma.roster() === 2, 5000);
    // The room stops being global on A: each side sees the other's member leave; the link stays.
    a.setFederation({ peers: [{ address: b.address, fingerprint: tb.fingerprint }], trusted: [], globalRooms: [] });
    await waitFor(() => mb.roster() === 1 && ma.roster() === 1, 5000);
    assert.equal(a.metrics.federation?.linksUp, 1);
    // Global again, then B leaves A's peers: the link closes, and stays closed.
    a.setFederation({ peers: [{ address: b.address, fingerprint: tb.fingerprint }], trusted: [], globalRooms: [ROOM] });
    await waitFor(() => mb.roster() === 2, 5000);
    a.setFederation({ peers: [], trusted: [], globalRooms: [ROOM] });
    await waitFor(() => a.metrics.federation?.linksUp === 0 && mb.roster() === 1, 10_000);
    await sleep(1500);
    assert.equal(a.metrics.federation?.linksUp, 0, 'not dialled again');
    assert.equal(b.metrics.federation?.linksUp, 0);
  });

  test('a full mesh of four relays: every datagram once, and a leave is final (no count to infinity over the other routes)', async () => {
    const tls = [await newTls(), await newTls(), await newTls(), await newTls()];
    const mesh: Relay[] = [];
    for (let i = 0; i < 4; i++) mesh.push(await relay(tls[i], { peers: mesh.slice(), peerTls: tls.slice(0, i), trusted: tls.map((t) => t.fingerprint) }));
    await waitFor(() => mesh.every((r) => r.metrics.federation?.linksUp === 3), 10_000);
    const members: { s: RelaySession; roster: number; got: string[] }[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await RelaySession.open({ relay: mesh[i].address, verify: expectFingerprint(mesh[i].fingerprint, 'relay') });
      closers.push(() => s.close());
      const m = { s, roster: 0, got: [] as string[] };
      s.onPush((p) => {
        if (p.type === 'room-update') m.roster = p.participants.length;
      });
      s.datagrams.onDatagram((d) => {
        const t = untagRoomDatagram(d);
        if (t) m.got.push(`${t.datagram[0]}/${t.datagram[1]}`);
      });
      await s.joinRoom(ROOM, {});
      members.push(m);
    }
    await waitFor(() => members.every((m) => m.roster === 4), 10_000);
    await sleep(300);
    for (let k = 0; k < 20; k++) {
      members.forEach((m, i) => m.s.datagrams.send(Uint8Array.of(i, k)));
      await sleep(5);
    }
    await waitFor(() => members.every((m) => m.got.length >= 60), 5000);
    await sleep(200);
    members.forEach((m, i) => {
      assert.equal(m.got.length, 60, `member ${i}: ${m.got.length} datagrams`);
      assert.equal(new Set(m.got).size, 60, `member ${i}: no duplicates`);
    });
    const sent = () => mesh.reduce((n, r) => n + (r.metrics.federation?.links.reduce((k, l) => k + l.messagesOut, 0) ?? 0), 0);
    const before = sent();
    await members[0].s.leave();
    await waitFor(() => members.slice(1).every((m) => m.roster === 3), 5000);
    await sleep(1000);
    assert.ok(members.slice(1).every((m) => m.roster === 3), 'the member that left is not brought back over another route');
    assert.deepEqual(mesh.map((r) => r.metrics.federation?.remoteMembers), [3, 2, 2, 2]);
    // Its final withdrawal is flooded once per link (12 directed links), not counted to infinity.
    assert.ok(sent() - before <= 12, `${sent() - before} link messages after one leave`);
  });

  test('an end-to-end encrypted group call across a chain of three relays', async () => {
    const tls = [await newTls(), await newTls(), await newTls()];
    const ra = await relay(tls[0], { peers: [], peerTls: [], trusted: [tls[1].fingerprint] });
    const rc = await relay(tls[2], { peers: [], peerTls: [], trusted: [tls[1].fingerprint] });
    const rb = await relay(tls[1], { peers: [ra, rc], peerTls: [tls[0], tls[2]], trusted: [] });
    await waitFor(() => rb.metrics.federation?.linksUp === 2, 10_000);
    const reg = await registries();
    const at = [ra, rb, rc];
    const ids = [generateIdentity(), generateIdentity(), generateIdentity()];
    const freqs = [440, 660, 880];
    const calls: Promise<CallReport>[] = [];
    for (let i = 0; i < 3; i++) {
      const session = await RelaySession.open({ relay: at[i].address, verify: expectFingerprint(at[i].fingerprint, 'relay') });
      closers.push(() => session.close());
      let phase = 0;
      calls.push(
        runCall({
          session,
          identity: ids[i],
          room: 'links-test',
          alias: `m${i}`,
          codecs: reg.codecs,
          fec: reg.fec,
          adaptive: false,
          durationMs: 4000,
          source: {
            ended: false,
            read(n: number): Int16Array {
              const out = Int16Array.from({ length: n }, (_, k) => Math.round(6000 * Math.sin((2 * Math.PI * freqs[i] * (phase + k)) / 48000)));
              phase += n;
              return out;
            },
          },
        }),
      );
      await sleep(200);
    }
    const reports = await Promise.all(calls);
    reports.forEach((r, i) => {
      const others = r.participants.map((p) => p.fingerprint).sort();
      assert.deepEqual(others, ids.filter((_, j) => j !== i).map((x) => x.fingerprint).sort(), `member ${i} has the other two as participants, not itself`);
      for (const p of r.participants) {
        assert.ok(p.framesPlayed > 50, `member ${i} played ${p.framesPlayed} frames of ${p.alias}`);
        // A few datagrams that came before their sender's key are dropped at the start: the
        // same 5-6 as with all three members on one relay (measured), not more.
        assert.ok(p.decryptRejected <= 10 && p.decryptRejected < p.framesPlayed / 10, `member ${i}: ${p.decryptRejected} datagrams of ${p.alias} failed to decrypt`);
      }
    });
  });
});

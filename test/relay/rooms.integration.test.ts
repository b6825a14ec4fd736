/**
 * SFU rooms over real QUIC on loopback: joins and leaves are announced at once, media is
 * forwarded to every other member with the sender's source id, rooms are isolated, room
 * signalling reaches the addressed member only, and an announcement given with a join is
 * delivered with the join notice and in later joiners' answers.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { RoomKeyring } from '../../core/crypto/sender-keys.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay } from '../../core/relay/relay.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import type { KnownSignal } from '../../core/transport/signal-stream.js';
import { sleep, waitFor } from '../helpers/wait.js';

const ROOM_A = 'a'.repeat(32);
const ROOM_B = 'b'.repeat(32);

interface Member {
  session: RelaySession;
  pushes: KnownSignal[];
  media: { from: number; bytes: number[] }[];
}

/** A well-formed identity fingerprint (the relay checks the form, members check the key). */
function fakeFingerprint(seed: string): string {
  const hex = createHash('sha256').update(seed).digest('hex');
  return hex.match(/.{4}/g)!.join(':');
}

describe('relay rooms', () => {
  let relay: Relay;
  let fingerprint: string;
  const open: RelaySession[] = [];

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint });
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    await relay.stop();
  });

  async function member(): Promise<Member> {
    const session = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    open.push(session);
    const m: Member = { session, pushes: [], media: [] };
    session.onPush((msg) => m.pushes.push(msg));
    session.datagrams.onDatagram((d) => {
      const t = untagRoomDatagram(d);
      if (t) m.media.push({ from: t.sourceId, bytes: [...t.datagram] });
    });
    return m;
  }

  test('three members: roster, fan-out to the others only, leave announced at once', async () => {
    const [alice, bob, carol] = [await member(), await member(), await member()];
    const a = await alice.session.joinRoom(ROOM_A, { alias: 'alice', fingerprint: fakeFingerprint('a') });
    const b = await bob.session.joinRoom(ROOM_A, { alias: 'bob', fingerprint: fakeFingerprint('b') });
    const c = await carol.session.joinRoom(ROOM_A, { alias: 'carol', fingerprint: fakeFingerprint('c') });
    // The roster names members by fingerprint; aliases travel signed in announcements, so
    // the relay repeats none.
    assert.deepEqual(
      c.participants.map((p) => p.fingerprint).sort(),
      [fakeFingerprint('a'), fakeFingerprint('b'), fakeFingerprint('c')].sort(),
    );
    assert.ok(c.participants.every((p) => p.alias === ''));
    await waitFor(() => alice.pushes.some((p) => p.type === 'room-update' && p.joined === c.sourceId));
    const update = alice.pushes.find((p) => p.type === 'room-update' && p.joined === c.sourceId);
    assert.ok(update && update.type === 'room-update');
    assert.deepEqual(update.participants.find((p) => p.sourceId === c.sourceId), {
      sourceId: c.sourceId,
      alias: '',
      fingerprint: fakeFingerprint('c'),
    });

    for (let i = 0; i < 10; i++) alice.session.datagrams.send(new Uint8Array([1, i]));
    bob.session.datagrams.send(new Uint8Array([2, 0]));
    await waitFor(() => bob.media.length === 10 && carol.media.length === 11 && alice.media.length === 1);
    assert.ok(bob.media.every((m) => m.from === a.sourceId && m.bytes[0] === 1));
    assert.ok(carol.media.filter((m) => m.from === a.sourceId).length === 10);
    assert.deepEqual(alice.media, [{ from: b.sourceId, bytes: [2, 0] }], 'nobody hears their own media');

    await bob.session.leave();
    // Each member's notice travels on its own stream: wait for both (one may come a little later).
    await waitFor(() => alice.pushes.some((p) => p.type === 'room-update' && p.left === b.sourceId));
    await waitFor(() => carol.pushes.some((p) => p.type === 'room-update' && p.left === b.sourceId));
    alice.session.datagrams.send(new Uint8Array([1, 99]));
    await waitFor(() => carol.media.length === 12);
    await sleep(50);
    assert.equal(bob.media.length, 10, 'a member who left receives nothing more');
  });

  test('rooms are isolated and a closed connection counts as a leave', async () => {
    const [x, y, z] = [await member(), await member(), await member()];
    const jx = await x.session.joinRoom(ROOM_B, { alias: 'x' });
    await y.session.joinRoom(ROOM_B, { alias: 'y' });
    await z.session.joinRoom('c'.repeat(32), { alias: 'z' });
    x.session.datagrams.send(new Uint8Array([7]));
    await waitFor(() => y.media.length === 1);
    await sleep(50);
    assert.equal(z.media.length, 0);

    await x.session.close();
    await waitFor(() => y.pushes.some((p) => p.type === 'room-update' && p.left === jx.sourceId));
  });

  test('room signalling reaches the addressed member, or all others', async () => {
    const [p, q, r] = [await member(), await member(), await member()];
    const room = 'd'.repeat(32);
    await p.session.joinRoom(room);
    const jq = await q.session.joinRoom(room);
    await r.session.joinRoom(room);
    await p.session.roomSignal({ kind: 'wrapped-key', n: 1 }, jq.sourceId);
    await p.session.roomSignal({ kind: 'announce' });
    await waitFor(() => q.pushes.filter((m) => m.type === 'relayed').length === 2);
    await waitFor(() => r.pushes.filter((m) => m.type === 'relayed').length === 1);
    const toR = r.pushes.find((m) => m.type === 'relayed');
    assert.ok(toR && toR.type === 'relayed');
    assert.deepEqual(toR.payload, { kind: 'announce' });
  });

  test('an announcement given with the join reaches the members with the join notice, and later joiners in their answer', async () => {
    const room = 'e'.repeat(32);
    const [p, q, r, s] = [await member(), await member(), await member(), await member()];
    const announcementOf = (who: string) => ({ fingerprint: fakeFingerprint(who), x25519PublicKey: `key-${who}`, signature: `sig-${who}` });
    const jp = await p.session.joinRoom(room, { fingerprint: fakeFingerprint('p'), announcement: announcementOf('p') });
    assert.deepEqual(jp.announcements, [], 'a relay that keeps announcements says so, even with none to give');
    const jq = await q.session.joinRoom(room, { fingerprint: fakeFingerprint('q'), announcement: announcementOf('q') });
    assert.deepEqual(jq.announcements, [{ sourceId: jp.sourceId, announcement: announcementOf('p') }]);
    await waitFor(() => p.pushes.some((m) => m.type === 'room-update' && m.joined === jq.sourceId));
    const notice = p.pushes.find((m) => m.type === 'room-update' && m.joined === jq.sourceId);
    assert.ok(notice && notice.type === 'room-update');
    assert.deepEqual(notice.announcement, announcementOf('q'));
    // A member that joins without one (an older client) is announced without one.
    const jr = await r.session.joinRoom(room, { fingerprint: fakeFingerprint('r') });
    assert.deepEqual(
      jr.announcements?.map((e) => e.sourceId).sort(),
      [jp.sourceId, jq.sourceId].sort(),
    );
    await waitFor(() => p.pushes.some((m) => m.type === 'room-update' && m.joined === jr.sourceId));
    const plain = p.pushes.find((m) => m.type === 'room-update' && m.joined === jr.sourceId);
    assert.ok(plain && plain.type === 'room-update' && plain.announcement === undefined);
    // Who left takes its announcement along.
    await q.session.leave();
    await waitFor(() => p.pushes.some((m) => m.type === 'room-update' && m.left === jq.sourceId));
    const js = await s.session.joinRoom(room, { fingerprint: fakeFingerprint('s') });
    assert.deepEqual(js.announcements, [{ sourceId: jp.sourceId, announcement: announcementOf('p') }]);
  });

  test('a member back as a new session that signs `replaces` takes its old slot\'s place at once; an unsigned claim takes nothing', async () => {
    const room = '7'.repeat(32);
    const id = generateIdentity();
    const admissionKey = new Uint8Array(32); // the relay checks signatures only, not admission proofs
    const first = new RoomKeyring(id, room, { admissionKey });
    const [old, observer, back, evil] = [await member(), await member(), await member(), await member()];
    const jo = await old.session.joinRoom(room, { alias: 'x', fingerprint: id.fingerprint, announcement: { ...first.localAnnouncement() } });
    const jobs = await observer.session.joinRoom(room, { alias: 'obs', fingerprint: fakeFingerprint('obs') });
    // Another identity naming that session, and a tampered copy of a genuine claim: no one is replaced.
    const mallory = new RoomKeyring(generateIdentity(), room, { admissionKey, replaces: first.session });
    const forged = { ...new RoomKeyring(id, room, { admissionKey }).localAnnouncement(), replaces: first.session };
    for (const announcement of [mallory.localAnnouncement(), forged]) {
      const j = await evil.session.joinRoom(room, { alias: 'evil', fingerprint: announcement.fingerprint, announcement: { ...announcement } });
      await waitFor(() => observer.pushes.some((m) => m.type === 'room-update' && m.joined === j.sourceId));
      const update = observer.pushes.find((m) => m.type === 'room-update' && m.joined === j.sourceId);
      assert.ok(update && update.type === 'room-update' && update.left === undefined, JSON.stringify(update));
      await evil.session.leave();
      await waitFor(() => observer.pushes.some((m) => m.type === 'room-update' && m.left === j.sourceId));
    }
    // The genuine one: one update, the new slot in and the old one out.
    const again = new RoomKeyring(id, room, { admissionKey, replaces: first.session });
    const jb = await back.session.joinRoom(room, { alias: 'x', fingerprint: id.fingerprint, announcement: { ...again.localAnnouncement() } });
    assert.deepEqual(jb.participants.map((p) => p.sourceId).sort(), [jobs.sourceId, jb.sourceId].sort());
    await waitFor(() => observer.pushes.some((m) => m.type === 'room-update' && m.joined === jb.sourceId));
    const update = observer.pushes.find((m) => m.type === 'room-update' && m.joined === jb.sourceId);
    assert.ok(update && update.type === 'room-update' && update.left === jo.sourceId, JSON.stringify(update));
    // The old slot gets no more media, and what it sends reaches no one.
    observer.session.datagrams.send(Uint8Array.of(1, 2, 3));
    old.session.datagrams.send(Uint8Array.of(9, 9));
    await waitFor(() => back.media.some((m) => m.from === jobs.sourceId));
    await sleep(100);
    assert.deepEqual(old.media, []);
    assert.ok(!observer.media.some((m) => m.from === jo.sourceId));
  });

  test('bad joins are refused with a reason', async () => {
    const m = await member();
    await assert.rejects(m.session.joinRoom('f'.repeat(32), { fingerprint: 'fp-not-a-fingerprint' }), { name: 'ProtocolError', message: /bad-fingerprint/ });
    await assert.rejects(m.session.joinRoom('not-a-hash'), { name: 'ProtocolError', message: /bad-room/ });
    await assert.rejects(
      m.session.joinRoom('f'.repeat(32), { announcement: { fingerprint: 'x'.repeat(900) } }),
      { name: 'ProtocolError', message: /bad-announcement/ },
    );
    await assert.rejects(m.session.roomSignal({ a: 1 }), { name: 'ProtocolError', message: /not-in-room/ });
  });
});

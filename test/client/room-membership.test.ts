/**
 * RoomMembership without any network: announcements, wrapped keys and room updates are fed
 * as objects, as the relay would push them; what it sends goes to a list.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { deriveRoomKeys } from '../../core/crypto/room-name.js';
import { RoomKeyring, type WrappedKeyMessage } from '../../core/crypto/sender-keys.js';
import { MAX_ROOM_PARTICIPANTS } from '../../core/relay/rooms.js';
import {
  MAX_DEPARTED_REPORTED,
  MAX_EARLY_ROSTERS,
  MAX_REFUSED_REPORTED,
  ROTATION_INTERVAL_MS,
  RoomMembership,
  type Member,
  type MembershipEvent,
  type RoomMembershipOptions,
} from '../../core/client/room-membership.js';
import { ManualClock, settle } from './manual-clock.js';

const ROOM = 'membership-unit';

interface Sent {
  payload: Record<string, unknown>;
  to: number | undefined;
}

/** A membership with everything it says and sends recorded. */
function setup(opts: Partial<RoomMembershipOptions> = {}) {
  const identity = generateIdentity();
  const clock = new ManualClock();
  const sent: Sent[] = [];
  const events: MembershipEvent[] = [];
  const admitted: Member[] = [];
  const retired: Member[] = [];
  const keysArrived: Member[] = [];
  const heard = new Set<Member>();
  const m = new RoomMembership({
    identity,
    room: ROOM,
    alias: 'me',
    clock,
    send: async (payload, to) => {
      sent.push({ payload, to });
    },
    emit: (e) => events.push(e),
    hooks: {
      admitted: (member) => admitted.push(member),
      retired: (member) => retired.push(member),
      keyArrived: (member) => keysArrived.push(member),
      heard: (member) => heard.has(member),
    },
    ...opts,
  });
  return { m, identity, clock, sent, events, admitted, retired, keysArrived, heard };
}

/** Another member of the room (or of one that merely has the same id: `name` and `secret` give the admission key). */
function peer(alias: string, opts: { identity?: Identity; name?: string; secret?: string } = {}) {
  const identity = opts.identity ?? generateIdentity();
  const { roomId } = deriveRoomKeys(ROOM);
  const { admissionKey } = deriveRoomKeys(opts.name ?? ROOM, opts.secret);
  const keyring = new RoomKeyring(identity, roomId, { admissionKey, alias });
  return { identity, keyring, announcement: { ...keyring.localAnnouncement() } as Record<string, unknown> };
}

function rosterEntry(sourceId: number, p: { identity: Identity }, alias = ''): { sourceId: number; alias: string; fingerprint: string } {
  return { sourceId, alias, fingerprint: p.identity.fingerprint };
}

const roomId = deriveRoomKeys(ROOM).roomId;

function joinNotice(sourceId: number, p: { identity: Identity; announcement: Record<string, unknown> }) {
  return { type: 'room-update' as const, room: roomId, participants: [rosterEntry(sourceId, p)], joined: sourceId, announcement: p.announcement };
}

function keysTo(sent: Sent[], to: number): number {
  return sent.filter((s) => s.payload.kind === 'key' && s.to === to).length;
}

describe('room membership (no network)', () => {
  test('admits the members that came with the join answer, sends each our key and announces us once', async () => {
    const { m, sent, events, admitted } = setup();
    const bob = peer('bob');
    const carol = peer('carol');
    m.joined({
      sourceId: 1,
      participants: [{ sourceId: 1, alias: 'me', fingerprint: '' }, rosterEntry(2, bob), rosterEntry(3, carol)],
      announcements: [
        { sourceId: 2, announcement: bob.announcement },
        { sourceId: 3, announcement: carol.announcement },
      ],
    });
    await settle();
    assert.equal(m.sourceId, 1);
    assert.deepEqual([...m.members.keys()].sort(), [2, 3]);
    assert.deepEqual(admitted.map((a) => a.alias).sort(), ['bob', 'carol']);
    assert.deepEqual(
      events.map((e) => e.type),
      ['call:member-joined', 'call:member-joined'],
    );
    assert.ok(events.every((e) => e.type === 'call:member-joined' && e.trust === 'new'));
    // One rotation for both, a key wrapped for each, and one announcement to all.
    assert.equal(m.keyRotations, 1);
    assert.equal(keysTo(sent, 2), 1);
    assert.equal(keysTo(sent, 3), 1);
    assert.equal(sent.filter((s) => s.payload.kind === 'announce' && s.to === undefined).length, 1);
    // The key sent to bob opens with bob's keyring: it is ours, for his session.
    const toBob = sent.find((s) => s.payload.kind === 'key' && s.to === 2)!.payload.message as WrappedKeyMessage;
    bob.keyring.addMember(m.localAnnouncement());
    assert.equal(bob.keyring.receiveWrappedKey(toBob).from, m.localAnnouncement().fingerprint);
  });

  test('refuses a member that cannot prove it knows the room name, says so once, and counts its dropped media', async () => {
    const { m, events, admitted } = setup();
    m.joined({ sourceId: 1, participants: [] });
    // Same room id (the relay's view), another name: no valid proof.
    const ghost = peer('ghost', { name: 'not-the-name' });
    m.onPush(joinNotice(5, ghost));
    m.onPush({ type: 'relayed', room: roomId, from: 5, payload: { kind: 'announce', announcement: ghost.announcement } });
    await settle();
    assert.equal(admitted.length, 0);
    const refusedEvents = events.filter((e) => e.type === 'call:member-refused');
    assert.equal(refusedEvents.length, 1, 'said once');
    const { listed, notListed } = m.refused();
    assert.equal(notListed, 0);
    assert.equal(listed.length, 1);
    assert.equal(listed[0].reason, 'unproven');
    assert.equal(listed[0].fingerprint, ghost.identity.fingerprint);
    assert.equal(listed[0].times, 2);
    assert.equal(m.mediaFrom(5), undefined);
    assert.equal(m.mediaFrom(5), undefined);
    assert.equal(m.refused().listed[0].packetsDropped, 2);
    // A slot nobody was refused on is just unknown.
    assert.equal(m.mediaFrom(77), undefined);
    assert.equal(m.refused().listed[0].packetsDropped, 2);
  });

  test('with an allow list only the listed are admitted (trust "allowed"); the others are refused as not-allowed', async () => {
    const bob = peer('bob');
    const mallory = peer('mallory');
    const { m, events } = setup({ allow: [bob.identity.fingerprint] });
    m.joined({ sourceId: 1, participants: [rosterEntry(2, bob), rosterEntry(3, mallory)], announcements: [{ sourceId: 2, announcement: bob.announcement }, { sourceId: 3, announcement: mallory.announcement }] });
    await settle();
    assert.deepEqual([...m.members.keys()], [2]);
    assert.equal(m.members.get(2)!.trust, 'allowed');
    assert.deepEqual(m.refused().listed.map((r) => [r.reason, r.fingerprint]), [['not-allowed', mallory.identity.fingerprint]]);
    assert.ok(events.some((e) => e.type === 'call:member-refused' && /--allow/.test(e.message)));
  });

  test('known members are "known" (with first meeting), and a look-alike alias is warned about once', async () => {
    const bob = peer('bob');
    const other = generateIdentity();
    let meetings = 0;
    const { m, events } = setup({
      members: {
        meet: (fingerprint, alias) => {
          meetings++;
          return {
            known: fingerprint === bob.identity.fingerprint,
            firstSeen: '2026-01-01T00:00:00.000Z',
            sameAlias: [{ fingerprint: other.fingerprint, alias, firstSeen: '2025-01-01T00:00:00.000Z', lastSeen: '2025-06-01T00:00:00.000Z' }],
          };
        },
      },
    });
    m.joined({ sourceId: 1, participants: [], announcements: [{ sourceId: 2, announcement: bob.announcement }] });
    await settle();
    assert.equal(meetings, 1);
    const joined = events.find((e) => e.type === 'call:member-joined');
    assert.deepEqual(joined, { type: 'call:member-joined', alias: 'bob', fingerprint: bob.identity.fingerprint, trust: 'known', firstSeen: '2026-01-01T00:00:00.000Z' });
    assert.equal(events.filter((e) => e.type === 'call:warning' && /not the same identity/.test(e.message)).length, 1);
  });

  test('an announcement that names another identity than the roster, or replays another slot\'s session, is refused', async () => {
    const { m } = setup();
    const bob = peer('bob');
    const carol = peer('carol');
    m.joined({ sourceId: 1, participants: [rosterEntry(2, bob), rosterEntry(3, carol)], announcements: [{ sourceId: 2, announcement: bob.announcement }] });
    // Slot 3 joined as carol but announces bob's session: the roster says otherwise.
    m.onPush({ type: 'relayed', room: roomId, from: 3, payload: { kind: 'announce', announcement: bob.announcement } });
    // Slot 4 (no roster entry) replays bob's session.
    m.onPush({ type: 'relayed', room: roomId, from: 4, payload: { kind: 'announce', announcement: bob.announcement } });
    // Not an announcement at all.
    m.onPush({ type: 'relayed', room: roomId, from: 6, payload: { kind: 'announce', announcement: { fingerprint: 42 } } });
    await settle();
    assert.deepEqual([...m.members.keys()], [2]);
    assert.deepEqual(
      m.refused().listed.map((r) => [r.reason, r.sourceId]),
      [
        ['roster-mismatch', 3],
        ['duplicate-session', 4],
        ['malformed', 6],
      ],
    );
  });

  test('rotations are paced: the first change rotates at once, changes within ROTATION_INTERVAL_MS are taken together at its end', async () => {
    const { m, clock, sent } = setup();
    m.joined({ sourceId: 1, participants: [] });
    await settle();
    // Our first key of the session (for nobody yet)...
    assert.equal(m.keyRotations, 1);
    const peers = Array.from({ length: 6 }, (_, i) => peer(`p${i}`));
    // ...does not hold back the first member to join us, however soon it comes (in a 1:1 call
    // the caller joins a few ms after the callee).
    clock.advance(10);
    m.onPush(joinNotice(8, peer('first')));
    await settle();
    assert.equal(m.keyRotations, 2);
    assert.ok(!m.rotationPending);
    assert.equal(keysTo(sent, 8), 1);
    // Within the interval since that key: the next newcomer waits for its end.
    m.onPush(joinNotice(9, peer('early')));
    await settle();
    assert.equal(m.keyRotations, 2);
    assert.ok(m.rotationPending);
    clock.advance(ROTATION_INTERVAL_MS);
    await settle();
    assert.equal(m.keyRotations, 3);
    assert.equal(keysTo(sent, 9), 1);
    // The first newcomer after a quiet interval: a rotation at once.
    clock.advance(ROTATION_INTERVAL_MS);
    m.onPush(joinNotice(10, peers[0]));
    await settle();
    assert.equal(m.keyRotations, 4);
    assert.equal(keysTo(sent, 10), 1);
    // Five more within the interval, and one of them leaves again: nothing yet...
    clock.advance(10);
    for (let i = 1; i < 6; i++) m.onPush(joinNotice(10 + i, peers[i]));
    m.onPush({ type: 'room-update', room: roomId, participants: [], left: 13 });
    await settle();
    assert.equal(m.keyRotations, 4);
    assert.ok(m.rotationPending);
    assert.equal(m.members.size, 7);
    // ...then one rotation for all of it, when the interval ends, with a key for each current member.
    clock.advance(ROTATION_INTERVAL_MS - 11);
    await settle();
    assert.equal(m.keyRotations, 4, 'not before the interval is over');
    clock.advance(1);
    await settle();
    assert.equal(m.keyRotations, 5);
    assert.ok(!m.rotationPending);
    for (const id of [10, 11, 12, 14, 15]) assert.equal(keysTo(sent, id), id === 10 ? 2 : 1, `keys to ${id}`);
    assert.equal(keysTo(sent, 13), 0, 'the member that left within the interval never gets a key');
    // A quiet interval later, the next change rotates at once again.
    clock.advance(ROTATION_INTERVAL_MS);
    m.onPush({ type: 'room-update', room: roomId, participants: [], left: 15 });
    await settle();
    assert.equal(m.keyRotations, 6);
    // After stop() nothing rotates any more.
    m.onPush({ type: 'room-update', room: roomId, participants: [], left: 14 });
    m.stop();
    clock.advance(ROTATION_INTERVAL_MS * 4);
    await settle();
    assert.equal(m.keyRotations, 6);
    assert.equal(clock.pending, 0);
  });

  test('a wrapped key that overtakes its sender\'s announcement waits for it; keys from unknown senders are bounded', async () => {
    const { m, events, keysArrived } = setup();
    m.joined({ sourceId: 1, participants: [] });
    const bob = peer('bob');
    bob.keyring.addMember(m.localAnnouncement());
    const [toMe] = bob.keyring.rotate();
    // The key first, then the announcement.
    m.onPush({ type: 'relayed', room: roomId, from: 2, payload: { kind: 'key', message: toMe } });
    assert.equal(m.sizes().pendingKeys, 1);
    m.onPush(joinNotice(2, bob));
    await settle();
    const member = m.members.get(2)!;
    assert.deepEqual(keysArrived, [member]);
    assert.ok(m.decryptorFor(member), 'bob\'s key is in');
    assert.equal(m.sizes().pendingKeys, 0);
    // A flood of keys from senders nobody announced: at most one per possible member is kept.
    for (let i = 0; i < MAX_ROOM_PARTICIPANTS + 20; i++) {
      const stranger = peer(`s${i}`);
      stranger.keyring.addMember(m.localAnnouncement());
      const [k] = stranger.keyring.rotate();
      m.onPush({ type: 'relayed', room: roomId, from: 100 + i, payload: { kind: 'key', message: k } });
    }
    assert.equal(m.sizes().pendingKeys, MAX_ROOM_PARTICIPANTS);
    assert.equal(events.filter((e) => e.type === 'call:warning' && /no announcement from that sender/.test(e.message)).length, 20);
    // Garbage instead of a key: a warning, nothing else.
    m.onPush({ type: 'relayed', room: roomId, from: 3, payload: { kind: 'key', message: 'garbage' } });
    assert.ok(events.some((e) => e.type === 'call:warning' && /dropped a key-exchange message from member 3/.test(e.message)));
  });

  test('everything kept about others is bounded: departed, refused, updates before the join answer', async () => {
    const { m, events, heard } = setup();
    // Room updates before our join answer are kept (bounded) and taken after it.
    const early = peer('early');
    for (let i = 0; i < MAX_EARLY_ROSTERS + 50; i++) m.onPush({ type: 'room-update', room: roomId, participants: [rosterEntry(2, early)] });
    assert.equal(m.sizes().earlyRosters, MAX_EARLY_ROSTERS);
    m.joined({ sourceId: 1, participants: [] });
    assert.equal(m.sizes().earlyRosters, 0);
    // Members that join and leave: MAX_DEPARTED_REPORTED listed, the rest counted; those we
    // heard from are kept in preference to silent ones.
    const total = MAX_DEPARTED_REPORTED + 10;
    let heardOne: Member | undefined;
    for (let i = 0; i < total; i++) {
      const p = peer(`churn${i}`);
      const id = 1000 + i;
      m.onPush(joinNotice(id, p));
      const member = m.members.get(id)!;
      if (i === total - 1) {
        heard.add(member);
        heardOne = member;
      }
      m.onPush({ type: 'room-update', room: roomId, participants: [], left: id });
    }
    const departed = m.departed();
    assert.equal(departed.listed.length, MAX_DEPARTED_REPORTED);
    assert.equal(departed.notListed, 10);
    assert.ok(departed.listed.includes(heardOne!), 'the member we heard from is listed');
    assert.ok(departed.listed.every((d) => d.left));
    assert.equal(m.members.size, 0);
    // Refusals: MAX_REFUSED_REPORTED members listed, the rest counted, one warning about that.
    for (let i = 0; i < MAX_REFUSED_REPORTED + 6; i++) {
      const ghost = peer(`ghost${i}`, { name: 'wrong' });
      m.onPush(joinNotice(5000 + i, ghost));
    }
    const refused = m.refused();
    assert.equal(refused.listed.length, MAX_REFUSED_REPORTED);
    assert.equal(refused.notListed, 6);
    assert.equal(events.filter((e) => e.type === 'call:warning' && /more than 64 members refused/.test(e.message)).length, 1);
    assert.equal(events.filter((e) => e.type === 'call:member-refused').length, MAX_REFUSED_REPORTED);
    const sizes = m.sizes();
    assert.ok(sizes.refusedSlots <= 256 && sizes.roster <= 4 * MAX_ROOM_PARTICIPANTS, JSON.stringify(sizes));
  });

  test('after a lost link everyone is retired; the next session replaces ours, and our old session announced back is ignored', async () => {
    const { m, retired, events } = setup();
    const bob = peer('bob');
    m.joined({ sourceId: 1, participants: [rosterEntry(2, bob)], announcements: [{ sourceId: 2, announcement: bob.announcement }] });
    const oldAnnouncement = { ...m.localAnnouncement() } as Record<string, unknown>;
    const oldSession = m.session;
    m.linkLost();
    assert.equal(m.sourceId, 0);
    assert.equal(m.members.size, 0);
    assert.equal(retired.length, 1);
    assert.notEqual(m.session, oldSession);
    assert.equal(m.localAnnouncement().replaces, oldSession);
    // Re-joined: bob is met again (a new slot); our own old session, still in the room, is not a member.
    m.joined({ sourceId: 7, participants: [rosterEntry(8, bob)], announcements: [{ sourceId: 8, announcement: bob.announcement }, { sourceId: 1, announcement: oldAnnouncement }] });
    await settle();
    assert.deepEqual([...m.members.keys()], [8]);
    assert.equal(m.refused().listed.length, 0);
    // Bob is met again on the new session (our new keyring has never seen him).
    assert.equal(events.filter((e) => e.type === 'call:member-joined').length, 2);
    assert.equal(m.departed().listed.length, 1);
  });

  test('a member back with a new session replaces its old one: reconnected, not joined again', async () => {
    const { m, events, retired } = setup();
    const id = generateIdentity();
    const before = peer('bob', { identity: id });
    m.joined({ sourceId: 1, participants: [], announcements: [{ sourceId: 2, announcement: before.announcement }] });
    const { admissionKey } = deriveRoomKeys(ROOM);
    const after = new RoomKeyring(id, roomId, { admissionKey, alias: 'bob', replaces: before.keyring.session });
    m.onPush({ type: 'room-update', room: roomId, participants: [{ sourceId: 3, alias: 'bob', fingerprint: id.fingerprint }], joined: 3, announcement: { ...after.localAnnouncement() } });
    await settle();
    assert.deepEqual([...m.members.keys()], [3]);
    assert.equal(retired.length, 1);
    assert.equal(retired[0].sourceId, 2);
    assert.deepEqual(
      events.map((e) => e.type),
      ['call:member-joined', 'call:member-reconnected'],
    );
    // The replaced session may not come back.
    m.onPush({ type: 'relayed', room: roomId, from: 2, payload: { kind: 'announce', announcement: before.announcement } });
    assert.deepEqual(m.refused().listed.map((r) => r.reason), ['stale-announcement']);
  });

  test('a send that fails is a warning, not an unhandled rejection', async () => {
    const { m, events } = setup({
      send: () => Promise.reject(new Error('stream reset')),
    });
    const bob = peer('bob');
    m.joined({ sourceId: 1, participants: [], announcements: [{ sourceId: 2, announcement: bob.announcement }] });
    await settle();
    assert.equal(events.filter((e) => e.type === 'call:warning' && /room signal not delivered: stream reset/.test(e.message)).length, 2);
  });
});

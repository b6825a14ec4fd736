/**
 * Room ACLs (core/relay/access.ts) on an in-process relay over real loopback QUIC: a listed
 * identity joins (its client proves its identity when the relay asks), a non-listed one is
 * refused with a clear error and counted, and a client that claims a listed fingerprint
 * without its key (in the join, or in a hand-made proof with a wrong signature) is refused.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { registrationTranscript, signRegistration } from '../../core/crypto/call-signal.js';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { deriveRoomKeys, hashRoomName } from '../../core/crypto/room-name.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { ExitCode } from '../../core/errors.js';
import { parseAclFlag, resolveRoomAcls, type RoomAcl } from '../../core/relay/access.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import { request } from '../../core/transport/signal-stream.js';

const relays: Relay[] = [];
const sessions: RelaySession[] = [];
after(async () => {
  await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
  await Promise.all(relays.map((r) => r.stop()));
});

async function startRelay(roomAcls: RoomAcl[]): Promise<{ relay: Relay; fingerprint: string }> {
  const tls = await deriveTlsCertificate(generateIdentity().seed);
  const relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, stun: false, roomAcls });
  relays.push(relay);
  return { relay, fingerprint: tls.fingerprint };
}

async function connect(r: { relay: Relay; fingerprint: string }): Promise<RelaySession> {
  const session = await RelaySession.open({ relay: r.relay.address, verify: expectFingerprint(r.fingerprint, 'relay') });
  sessions.push(session);
  return session;
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: number }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: number };
  }
  assert.fail('expected a rejection');
}

/** The raw answer to a join on `s`'s connection (no client logic in between). */
function rawJoin(s: RelaySession, room: string, fingerprint?: string) {
  return request((s as unknown as { client: { connection: Parameters<typeof request>[0] } }).client.connection, {
    type: 'join',
    mode: 'room',
    room,
    ...(fingerprint === undefined ? {} : { fingerprint }),
  });
}

describe('room ACLs on a relay', () => {
  const ana: Identity = generateIdentity();
  const bob: Identity = generateIdentity();
  const eve: Identity = generateIdentity();
  const room = hashRoomName('team');
  const open = hashRoomName('lobby');

  test('a listed identity joins (proving its identity when asked); another member joins too; an open room needs no proof', async () => {
    const r = await startRelay([{ name: 'team', allow: [ana.fingerprint, bob.fingerprint] }]);
    const a = await connect(r);
    const joined = await a.joinRoom(room, { identity: ana, fingerprint: ana.fingerprint, roomName: 'team' });
    assert.equal(joined.participants.length, 1);
    const b = await connect(r);
    const both = await b.joinRoom(room, { identity: bob, roomName: 'team' });
    assert.equal(both.participants.length, 2);
    const c = await connect(r);
    await c.joinRoom(open, { identity: eve });
    assert.equal(r.relay.metrics.presence.registrationsTotal, 2); // only the two proofs
    assert.equal(r.relay.metrics.presence.registrationsOpen, 0); // proofs take no calls
    assert.equal(r.relay.metrics.refused.acl, 0);
  });

  test('a non-listed identity is refused: a clear error (RoomRestrictedError, exit 16), counted as acl', async () => {
    const r = await startRelay([{ name: 'team', allow: [ana.fingerprint] }]);
    const e = await connect(r);
    const err = await rejection(e.joinRoom(room, { identity: eve, roomName: 'team' }));
    assert.equal(err.name, 'RoomRestrictedError');
    assert.equal(err.code, ExitCode.ACCESS_DENIED);
    assert.equal(err.message, `room team is restricted on relay ${e.label}; your identity ${eve.fingerprint} is not on its list`);
    assert.equal(r.relay.metrics.refused.acl, 1);
    assert.equal(r.relay.metrics.roomsOpen, 0);
  });

  test('claiming a listed fingerprint without its key is refused: in the join, and with a proof signed by another key', async () => {
    const r = await startRelay([{ name: 'team', allow: [ana.fingerprint] }]);
    const e = await connect(r);
    // 1. The join claims ana's fingerprint: the relay wants a proof.
    const claim = await rawJoin(e, room, ana.fingerprint);
    assert.equal(claim.type === 'error' && claim.code, 'identity-required');
    // 2. A proof of ana's fingerprint and key, signed by eve's key.
    const challenge = await e.ask({ type: 'register-challenge' });
    assert.equal(challenge.type, 'challenge');
    const nonce = challenge.type === 'challenge' ? challenge.nonce : '';
    const forged = {
      ...signRegistration(ana, r.fingerprint, nonce),
      signature: Buffer.from(eve.sign(registrationTranscript(r.fingerprint, nonce, ana.publicKey))).toString('base64'),
      receiveCalls: false,
    };
    const forgedErr = await rejection(e.ask(forged));
    assert.match(forgedErr.message, /signature does not verify/);
    // 3. Eve's key, claiming ana's fingerprint.
    const c2 = await e.ask({ type: 'register-challenge' });
    const n2 = c2.type === 'challenge' ? c2.nonce : '';
    const mismatched = { ...signRegistration(eve, r.fingerprint, n2), fingerprint: ana.fingerprint, receiveCalls: false };
    const mismatchErr = await rejection(e.ask(mismatched));
    assert.match(mismatchErr.message, /fingerprint is not the hash of the identity key/);
    // Still not proved: the join is still refused.
    const again = await rawJoin(e, room, ana.fingerprint);
    assert.equal(again.type === 'error' && again.code, 'identity-required');
    // 4. A replay of ana's own proof made on another connection (its nonce) does not work here.
    const a = await connect(r);
    const ca = await a.ask({ type: 'register-challenge' });
    const anaProof = { ...signRegistration(ana, r.fingerprint, ca.type === 'challenge' ? ca.nonce : ''), receiveCalls: false };
    await e.ask({ type: 'register-challenge' });
    const replayErr = await rejection(e.ask(anaProof));
    assert.match(replayErr.message, /nonce is not the one this connection was given/);
    assert.equal(r.relay.metrics.refused['registration-invalid'], 3);
    assert.equal(r.relay.metrics.roomsOpen, 0);
    // Eve, proving her own identity, is refused as not listed.
    await rejection(e.joinRoom(room, { identity: eve }));
    assert.equal(r.relay.metrics.refused.acl, 1);
  });

  test('a room with a secret is restricted by id; ACLs change live (members already in stay until they leave)', async () => {
    const { roomId } = deriveRoomKeys('vault', 'hunter2-long-secret');
    const r = await startRelay([{ id: roomId.toUpperCase(), allow: [ana.fingerprint] }]);
    assert.deepEqual(r.relay.access.restrictedRooms, [roomId]);
    const e = await connect(r);
    await rejection(e.joinRoom(roomId, { identity: eve }));
    const a = await connect(r);
    await a.joinRoom(roomId, { identity: ana });
    // Live: eve is added and ana removed; ana stays in the room, eve may join now.
    r.relay.setAccess({ roomAcls: [{ id: roomId, allow: [eve.fingerprint] }] });
    const joined = await e.joinRoom(roomId, { identity: eve });
    assert.equal(joined.participants.length, 2);
    // Ana's next join (a reconnect) is refused.
    const a2 = await connect(r);
    await rejection(a2.joinRoom(roomId, { identity: ana }));
    // [] lifts every restriction.
    r.relay.setAccess({ roomAcls: [] });
    await a2.joinRoom(roomId, { identity: ana });
    assert.equal(r.relay.metrics.refused.acl, 2);
  });
});

describe('room ACL settings', () => {
  const fp = generateIdentity().fingerprint;
  test('names are hashed as clients hash them; ids are kept; fingerprints canonical', () => {
    const t = resolveRoomAcls([{ name: 'team', allow: [fp.toUpperCase()] }, { id: 'AB'.repeat(16), allow: [fp.replaceAll(':', '')] }]);
    assert.deepEqual([...t.keys()], [hashRoomName('team'), 'ab'.repeat(16)]);
    assert.deepEqual([...t.get(hashRoomName('team'))!], [fp]);
    assert.deepEqual([...t.get('ab'.repeat(16))!], [fp]);
  });

  test('bad entries are refused with the entry named', () => {
    assert.throws(() => resolveRoomAcls([{ name: 'a', id: '0'.repeat(32), allow: [fp] }]), /exactly one of name and id/);
    assert.throws(() => resolveRoomAcls([{ allow: [fp] }]), /exactly one of name and id/);
    assert.throws(() => resolveRoomAcls([{ id: 'xyz', allow: [fp] }]), /32 hex digits/);
    assert.throws(() => resolveRoomAcls([{ name: 'a', allow: [] }]), /room "a": allow must list at least one/);
    assert.throws(() => resolveRoomAcls([{ name: 'a', allow: ['nope'] }]), /room "a": "nope" is not a fingerprint/);
    assert.throws(() => resolveRoomAcls([{ name: '', allow: [fp] }]), /room ""/);
    assert.throws(() => resolveRoomAcls([{ name: 'a', allow: [fp] }, { id: hashRoomName('a'), allow: [fp] }]), /listed twice/);
  });

  test('--acl ROOM=FP,FP', () => {
    assert.deepEqual(parseAclFlag(`team=${fp},${fp}`), { name: 'team', allow: [fp, fp] });
    assert.deepEqual(parseAclFlag(`id:${'0'.repeat(32)}=${fp}`), { id: '0'.repeat(32), allow: [fp] });
    assert.throws(() => parseAclFlag('team'), /not ROOM=FINGERPRINT/);
    assert.throws(() => parseAclFlag('team='), /not ROOM=FINGERPRINT/);
  });
});

/**
 * A 1:1 call's first sender keys (RoomKeyringOptions.seeded): both sides derive them from the
 * call secret, so each opens the other's first packets without a wrapped key, and nobody
 * else (another member, a later session of the peer) ever gets them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveCallKeys, deriveCallSecret, generateEphemeralKey } from '../../core/crypto/call-keys.js';
import { newCallId } from '../../core/crypto/call-signal.js';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { MediaEncryptor } from '../../core/crypto/media-crypto.js';
import { deriveRoomKeys } from '../../core/crypto/room-name.js';
import { RoomKeyring } from '../../core/crypto/sender-keys.js';
import { mediaHeader } from './room-harness.js';

const ROOM = 'seeded-room-id';
const ADMISSION_KEY = deriveRoomKeys('seeded room').admissionKey;

/** Caller and callee keyrings seeded from one call secret, as runDirectMedia makes them. */
function call(): { caller: RoomKeyring; callee: RoomKeyring; callerId: Identity; calleeId: Identity; keys: ReturnType<typeof deriveCallKeys> } {
  const callerId = generateIdentity();
  const calleeId = generateIdentity();
  const a = generateEphemeralKey();
  const b = generateEphemeralKey();
  const context = { callId: newCallId(), callerFingerprint: callerId.fingerprint, calleeFingerprint: calleeId.fingerprint, callerEphemeralKey: a.publicKey, calleeEphemeralKey: b.publicKey };
  const keys = deriveCallKeys(deriveCallSecret(a.privateKey, b.publicKey, context));
  const calleeKeys = deriveCallKeys(deriveCallSecret(b.privateKey, a.publicKey, context));
  const caller = new RoomKeyring(callerId, ROOM, {
    admissionKey: ADMISSION_KEY,
    seeded: { own: keys.firstSenderKeys.caller, peer: calleeId.fingerprint, peerKey: keys.firstSenderKeys.callee },
  });
  const callee = new RoomKeyring(calleeId, ROOM, {
    admissionKey: ADMISSION_KEY,
    seeded: { own: calleeKeys.firstSenderKeys.callee, peer: callerId.fingerprint, peerKey: calleeKeys.firstSenderKeys.caller },
  });
  return { caller, callee, callerId, calleeId, keys };
}

function sealFrom(k: RoomKeyring, seq: number, text: string): { header: Uint8Array; sealed: Uint8Array; payload: Uint8Array } {
  const header = mediaHeader(seq);
  const payload = new TextEncoder().encode(text);
  return { header, sealed: k.encryptor().seal(header, payload), payload };
}

test('seeded caller and callee open each other\'s first packets on admission: no wrapped key, no rotation', () => {
  const { caller, callee } = call();
  assert.equal(caller.needsRotation, false);
  assert.equal(caller.encryptor().epoch, 0);
  const early = sealFrom(caller, 1, 'hello before the callee admitted us');
  const admitted = callee.addMember(caller.localAnnouncement());
  assert.equal(admitted.seeded, true);
  assert.equal(caller.addMember(callee.localAnnouncement()).seeded, true);
  // Admitting the seeded peer is no membership change: nothing to wrap, nothing to send.
  assert.equal(caller.needsRotation, false);
  assert.equal(callee.needsRotation, false);
  assert.deepEqual(callee.decryptorFor(caller.session)!.open(early.header, early.sealed), early.payload);
  const back = sealFrom(callee, 1, 'and back');
  assert.deepEqual(caller.decryptorFor(callee.session)!.open(back.header, back.sealed), back.payload);
});

test('a third member makes the seeded sender rotate to a random key, wrapped for everyone', () => {
  const { caller, callee, calleeId } = call();
  caller.addMember(callee.localAnnouncement());
  callee.addMember(caller.localAnnouncement());
  const third = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY });
  assert.equal(caller.addMember(third.localAnnouncement()).seeded, undefined);
  third.addMember(caller.localAnnouncement());
  assert.equal(caller.needsRotation, true);
  const messages = caller.rotate();
  assert.equal(caller.encryptor().epoch, 1);
  assert.deepEqual(messages.map((m) => m.to).sort(), [calleeId.fingerprint, third.fingerprint].sort());
  for (const m of messages) (m.to === calleeId.fingerprint ? callee : third).receiveWrappedKey(JSON.parse(JSON.stringify(m)));
  const p = sealFrom(caller, 2, 'epoch 1');
  assert.deepEqual(callee.decryptorFor(caller.session)!.open(p.header, p.sealed), p.payload);
  assert.deepEqual(third.decryptorFor(caller.session)!.open(p.header, p.sealed), p.payload);
  // The third member never had epoch 0: what was sealed with the seeded key stays closed to it.
});

test('only the named peer gets the seeded key, and only its first session', () => {
  const { caller, callee, calleeId } = call();
  const early = sealFrom(caller, 1, 'first');
  // Someone else admitted first (another identity that knows the room name) gets no key.
  const other = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY });
  other.addMember(caller.localAnnouncement());
  assert.throws(() => other.decryptorFor(caller.session)!.open(early.header, early.sealed), { name: 'DecryptError' });
  assert.equal(caller.addMember(other.localAnnouncement()).seeded, undefined);
  // The peer still gets its seeded key when it comes.
  assert.equal(caller.addMember(callee.localAnnouncement()).seeded, true);
  // A second session of the peer's identity (it re-joined) is an ordinary member: it waits for a rotation.
  const again = new RoomKeyring(calleeId, ROOM, { admissionKey: ADMISSION_KEY, replaces: callee.session });
  const second = caller.addMember(again.localAnnouncement());
  assert.equal(second.seeded, undefined);
  again.addMember(caller.localAnnouncement());
  assert.throws(() => again.decryptorFor(caller.session)!.open(early.header, early.sealed), { name: 'DecryptError' });
  assert.equal(caller.needsRotation, true);
});

test('rotations after a seeded start go on from epoch 1; another member keeps epochs of its own', () => {
  const { caller, callee } = call();
  callee.addMember(caller.localAnnouncement());
  caller.addMember(callee.localAnnouncement());
  const plain = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY });
  plain.addMember(caller.localAnnouncement());
  caller.addMember(plain.localAnnouncement());
  const wrapped = plain.rotate().find((m) => m.to === caller.fingerprint)!;
  assert.equal(wrapped.epoch, 0);
  caller.receiveWrappedKey(wrapped); // another member's epoch 0: fine
  const next = callee.rotate().find((m) => m.to === caller.fingerprint)!;
  assert.equal(next.epoch, 1);
  caller.receiveWrappedKey(next);
  const p = sealFrom(callee, 5, 'epoch 1 of the callee');
  assert.deepEqual(caller.decryptorFor(callee.session)!.open(p.header, p.sealed), p.payload);
});

test('a seeded key is only a first key: start() refuses a second key, another epoch, or our own identity as the peer', () => {
  const e = new MediaEncryptor({ roomId: ROOM, senderFingerprint: 'x' });
  e.start({ epoch: 0, key: new Uint8Array(32).fill(7) });
  assert.throws(() => e.start({ epoch: 0, key: new Uint8Array(32) }), { name: 'InternalError' });
  const fresh = new MediaEncryptor({ roomId: ROOM, senderFingerprint: 'x' });
  assert.throws(() => fresh.start({ epoch: 1, key: new Uint8Array(32) }), { name: 'InternalError' });
  const rotated = new MediaEncryptor({ roomId: ROOM, senderFingerprint: 'x' });
  rotated.rotate();
  assert.throws(() => rotated.start({ epoch: 0, key: new Uint8Array(32) }), { name: 'InternalError' });
  const me = generateIdentity();
  assert.throws(() => new RoomKeyring(me, ROOM, { admissionKey: ADMISSION_KEY, seeded: { own: new Uint8Array(32), peer: me.fingerprint, peerKey: new Uint8Array(32) } }), { name: 'InternalError' });
  assert.throws(() => new RoomKeyring(me, ROOM, { admissionKey: ADMISSION_KEY, seeded: { own: new Uint8Array(32), peer: 'someone', peerKey: new Uint8Array(16) } }), { name: 'InternalError' });
});

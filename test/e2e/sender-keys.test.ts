import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { MediaEncryptor, labelledFields } from '../../core/crypto/media-crypto.js';
import { deriveRoomKeys } from '../../core/crypto/room-name.js';
import {
  RoomKeyring,
  createAnnouncement,
  WRAPPED_KEY_BYTES,
  WRAP_SIGNATURE_LABEL,
  type MemberAnnouncement,
  type WrappedKeyMessage,
} from '../../core/crypto/sender-keys.js';
import { SimulatedRoom, containsBytes, mediaHeader, relayAttack, transcriptBytes, type SealedPacket } from './room-harness.js';

const ROOM = 'e2e-room-id';
const ADMISSION_KEY = deriveRoomKeys('e2e room').admissionKey;

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function fromB64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** An announcement for `x25519PublicKey`, correctly signed by `identity` and proven for `roomId`. */
function signedAnnouncement(identity: Identity, x25519PublicKey: Uint8Array, roomId = ROOM): MemberAnnouncement {
  return createAnnouncement(identity, roomId, ADMISSION_KEY, x25519PublicKey);
}

function rawX25519PublicKey(): Uint8Array {
  const spki = generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(12));
}

/** Two members who have exchanged announcements (neither has rotated yet). */
function twoMembers(): { alice: RoomKeyring; bob: RoomKeyring; bobId: Identity } {
  const aliceId = generateIdentity();
  const bobId = generateIdentity();
  const alice = new RoomKeyring(aliceId, ROOM, { admissionKey: ADMISSION_KEY });
  const bob = new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY });
  alice.addMember(bob.localAnnouncement());
  bob.addMember(alice.localAnnouncement());
  return { alice, bob, bobId };
}

function everyoneOpensEveryone(room: SimulatedRoom, members: RoomKeyring[]): void {
  for (const sender of members) {
    const { packet, payload } = room.send(sender.session);
    for (const receiver of members) {
      if (receiver !== sender) assert.deepEqual(room.open(receiver, packet), payload, `${receiver.fingerprint} opens ${sender.fingerprint}`);
    }
  }
}

test('three members: everyone decrypts everyone, over JSON-only signalling', () => {
  const room = new SimulatedRoom();
  const alice = room.join();
  const bob = room.join();
  const carol = room.join();
  const members = [alice, bob, carol];
  for (const member of members) assert.equal(member.members.length, 2);
  for (let round = 0; round < 5; round++) everyoneOpensEveryone(room, members);
  assert.ok(members.every((member) => !member.needsRotation));
});

test('the relay transcript opens nothing: every 32-byte value in it, as a key or through the derivations, fails', () => {
  const room = new SimulatedRoom();
  const alice = room.join();
  const bob = room.join();
  everyoneOpensEveryone(room, [alice, bob]);
  const carol = room.join();
  everyoneOpensEveryone(room, [alice, bob, carol]);
  room.leave(carol.session);
  everyoneOpensEveryone(room, [alice, bob]);
  const attack = relayAttack(room.transcript, room.roomId);
  assert.ok(attack.candidates > 1000, `${attack.candidates} candidates tried`);
  assert.equal(attack.packetsOpened, 0);
  assert.equal(attack.keysUnwrapped, 0);

  // No 8-byte run of any payload appears anywhere the relay looked.
  const seen = transcriptBytes(room.transcript);
  for (const plaintext of room.plaintexts) {
    for (let i = 0; i + 8 <= plaintext.length; i++) {
      const run = plaintext.subarray(i, i + 8);
      assert.ok(!seen.some((bytes) => containsBytes(bytes, run)), 'plaintext bytes in the relay transcript');
    }
  }
});

test('control: the same attack does open packets once a sender key leaks into the transcript', () => {
  const encryptor = new MediaEncryptor({ roomId: ROOM, senderFingerprint: 'leaky' });
  const senderKey = encryptor.rotate();
  const header = mediaHeader(1);
  const packet: SealedPacket = { from: 'leaky', fingerprint: 'leaky', epoch: senderKey.epoch, header, sealed: encryptor.seal(header, new Uint8Array(60)) };
  const transcript = { signalling: [JSON.stringify({ note: b64(Buffer.concat([randomBytes(5), senderKey.key])) })], packets: [packet] };
  assert.equal(relayAttack(transcript, ROOM).packetsOpened, 1);
});

test('a member who left cannot open media sealed after the rotation, even given every message', () => {
  const room = new SimulatedRoom();
  const alice = room.join();
  const bob = room.join();
  const carol = room.join();
  const before = room.send(alice.session).packet;
  assert.equal(room.open(carol, before).length, 60);

  const leaver = room.leave(carol.session);
  const after = [room.send(alice.session).packet, room.send(bob.session).packet];
  for (const packet of after) {
    assert.throws(() => room.open(leaver, packet), { name: 'DecryptError', reason: 'unknown-epoch' });
  }
  // The relay hands the leaver the new wrapped keys: addressed to others, they are refused...
  const fresh = room.transcript.signalling.map((json) => JSON.parse(json) as Record<string, unknown>).filter((m) => 'wrapped' in m).slice(-2);
  for (const message of fresh) assert.throws(() => leaver.receiveWrappedKey(message), { name: 'KeyExchangeError', reason: 'wrong-recipient' });
  // ...and readdressed to the leaver, their signatures break.
  for (const message of fresh) {
    const readdressed = { ...message, to: leaver.fingerprint, toSession: leaver.session };
    assert.throws(() => leaver.receiveWrappedKey(readdressed), { name: 'KeyExchangeError', reason: 'bad-signature' });
  }
  for (const packet of after) assert.throws(() => room.open(leaver, packet), { name: 'DecryptError' });
});

test('a member who joins later cannot open media sealed before it joined', () => {
  const room = new SimulatedRoom();
  const alice = room.join();
  const bob = room.join();
  const earlier = [room.send(alice.session).packet, room.send(bob.session).packet];
  const dave = room.join();
  for (const packet of earlier) assert.throws(() => room.open(dave, packet), { name: 'DecryptError', reason: 'unknown-epoch' });
  // The senders rotated when dave joined: the epoch dave holds is not the one those packets use.
  assert.equal(dave.decryptorFor(alice.session)?.latestEpoch, earlier[0].epoch + 1);
  everyoneOpensEveryone(room, [alice, bob, dave]);
});

test('one identity in a room twice (two devices): each session is a member; one leaving cannot read on, the other can', () => {
  const room = new SimulatedRoom();
  const sharedId = generateIdentity();
  const alice = room.join();
  const laptop = room.join(sharedId);
  const phone = room.join(sharedId);
  assert.equal(laptop.fingerprint, phone.fingerprint);
  assert.notEqual(laptop.session, phone.session);
  assert.deepEqual(
    alice.members.map((m) => m.fingerprint),
    [sharedId.fingerprint, sharedId.fingerprint],
  );
  assert.deepEqual(laptop.members.map((m) => m.session), [alice.session, phone.session]);
  everyoneOpensEveryone(room, [alice, laptop, phone]);

  // A wrapped key for the phone, delivered to the laptop: same fingerprint, other session.
  const [aliceToPhone] = alice.rotate().filter((m) => m.toSession === phone.session);
  assert.throws(() => laptop.receiveWrappedKey(aliceToPhone), { name: 'KeyExchangeError', reason: 'wrong-recipient' });
  phone.receiveWrappedKey(aliceToPhone);

  const gone = room.leave(laptop.session);
  const after = [room.send(alice.session).packet, room.send(phone.session).packet];
  for (const packet of after) assert.throws(() => room.open(gone, packet), { name: 'DecryptError' });
  everyoneOpensEveryone(room, [alice, phone]);
});

test('only the local session\'s own announcement is "self"; another session of the local identity is admitted', () => {
  const id = generateIdentity();
  const laptop = new RoomKeyring(id, ROOM, { admissionKey: ADMISSION_KEY });
  const phone = new RoomKeyring(id, ROOM, { admissionKey: ADMISSION_KEY });
  assert.throws(() => laptop.addMember(laptop.localAnnouncement()), { name: 'KeyExchangeError', reason: 'self' });
  assert.deepEqual(laptop.addMember(phone.localAnnouncement()), { fingerprint: id.fingerprint, session: phone.session });
  phone.addMember(laptop.localAnnouncement());
  const [key] = laptop.rotate();
  assert.deepEqual(phone.receiveWrappedKey(key), { from: id.fingerprint, fromSession: laptop.session, epoch: 0 });
});

test('a member back as a new session that replaces its old one: the old session is dropped at once, and only its own', () => {
  const aliceId = generateIdentity();
  const bobId = generateIdentity();
  const alice = new RoomKeyring(aliceId, ROOM, { admissionKey: ADMISSION_KEY });
  const bob = new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY });
  const carol = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY });
  for (const k of [bob, carol]) alice.addMember(k.localAnnouncement());
  // bob lost the relay and came back: its new announcement names its old session, signed.
  const bobAgain = new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY, replaces: bob.session });
  assert.equal(bobAgain.localAnnouncement().replaces, bob.session);
  alice.rotate();
  assert.deepEqual(alice.addMember(bobAgain.localAnnouncement()), { fingerprint: bobId.fingerprint, session: bobAgain.session, replaced: bob.session });
  assert.deepEqual(alice.members.map((m) => m.session), [carol.session, bobAgain.session]);
  assert.equal(alice.decryptorFor(bob.session), undefined);
  assert.ok(alice.needsRotation, 'the replaced session must not get later keys');
  assert.ok(alice.rotate().every((m) => m.toSession !== bob.session));
  assert.throws(() => alice.addMember(bob.localAnnouncement()), { name: 'KeyExchangeError', reason: 'stale-announcement' });

  // Naming another identity's session evicts nobody; altering `replaces` breaks the signature.
  const mallory = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY, replaces: carol.session });
  assert.equal(alice.addMember(mallory.localAnnouncement()).replaced, undefined);
  assert.ok(alice.decryptorFor(carol.session));
  const moved = { ...new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY, replaces: bobAgain.session }).localAnnouncement(), replaces: carol.session };
  assert.throws(() => alice.addMember(moved), { name: 'KeyExchangeError', reason: 'bad-signature' });
  const { replaces: _dropped, ...stripped } = new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY, replaces: bobAgain.session }).localAnnouncement();
  assert.throws(() => alice.addMember(stripped), { name: 'KeyExchangeError', reason: 'bad-signature' });
  assert.ok(alice.decryptorFor(bobAgain.session));
});

test('membership changes set needsRotation; rotate() clears it', () => {
  const { alice, bob } = twoMembers();
  assert.ok(alice.needsRotation);
  const messages = alice.rotate();
  assert.equal(messages.length, 1);
  assert.ok(!alice.needsRotation);
  assert.deepEqual(alice.addMember(bob.localAnnouncement()), { fingerprint: bob.fingerprint, session: bob.session }, 'repeating an announcement in force is a no-op');
  assert.ok(!alice.needsRotation);
  const carol = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY });
  alice.addMember(carol.localAnnouncement());
  assert.ok(alice.needsRotation);
  assert.equal(alice.rotate().length, 2);
  assert.ok(alice.removeMember(carol.session));
  assert.ok(!alice.removeMember(carol.session));
  assert.ok(alice.needsRotation);
  assert.deepEqual(alice.rotate().map((m) => [m.to, m.toSession]), [[bob.fingerprint, bob.session]]);
  assert.equal(alice.encryptor().epoch, 2);
});

test('a key exhausted by its packet limit requires rotation', () => {
  const { alice } = twoMembers();
  const limited = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY, maxPacketsPerKey: 2 });
  limited.addMember(alice.localAnnouncement());
  limited.rotate();
  limited.encryptor().seal(mediaHeader(0), new Uint8Array(1));
  assert.ok(!limited.needsRotation);
  limited.encryptor().seal(mediaHeader(1), new Uint8Array(1));
  assert.ok(limited.needsRotation);
});

test('messages are plain JSON with the documented fields', () => {
  const { alice, bob } = twoMembers();
  const announcement = alice.localAnnouncement();
  assert.deepEqual(Object.keys(announcement), ['fingerprint', 'identityPublicKey', 'x25519PublicKey', 'signature', 'proof']);
  assert.equal(fromB64(announcement.x25519PublicKey).length, 32);
  const [message] = alice.rotate();
  assert.deepEqual(Object.keys(message), ['from', 'to', 'fromSession', 'toSession', 'epoch', 'wrapped', 'signature']);
  assert.deepEqual(
    { from: message.from, to: message.to, fromSession: message.fromSession, toSession: message.toSession, epoch: message.epoch },
    { from: alice.fingerprint, to: bob.fingerprint, fromSession: alice.localAnnouncement().x25519PublicKey, toSession: bob.session, epoch: 0 },
  );
  assert.equal(fromB64(message.wrapped).length, WRAPPED_KEY_BYTES);
  assert.deepEqual(bob.receiveWrappedKey(JSON.parse(JSON.stringify(message))), { from: alice.fingerprint, fromSession: alice.session, epoch: 0 });
});

test('forged announcements are rejected', () => {
  const { alice, bobId } = twoMembers();
  const mallory = generateIdentity();
  const genuine = new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY }).localAnnouncement();
  const cases: [string, unknown, string][] = [
    ['relay swaps in its own X25519 key', { ...genuine, x25519PublicKey: b64(rawX25519PublicKey()) }, 'bad-signature'],
    ['signed by another identity', { ...signedAnnouncement(mallory, rawX25519PublicKey()), fingerprint: bobId.fingerprint }, 'fingerprint-mismatch'],
    ['identity key swapped, fingerprint kept', { ...genuine, identityPublicKey: b64(mallory.publicKey) }, 'fingerprint-mismatch'],
    ['identity key and fingerprint swapped', { ...genuine, identityPublicKey: b64(mallory.publicKey), fingerprint: mallory.fingerprint }, 'bad-signature'],
    ['signed for another room', signedAnnouncement(bobId, rawX25519PublicKey(), 'another-room'), 'bad-signature'],
    ['signature bit flipped', { ...genuine, signature: b64(flip(fromB64(genuine.signature))) }, 'bad-signature'],
    ['own announcement echoed back', alice.localAnnouncement(), 'self'],
  ];
  for (const [what, announcement, reason] of cases) {
    assert.throws(() => alice.addMember(announcement), { name: 'KeyExchangeError', reason }, what);
  }
  assert.deepEqual(alice.members.map((m) => m.fingerprint), [bobId.fingerprint]);
});

test('a low-order X25519 key, even properly signed, is rejected', () => {
  const { alice } = twoMembers();
  const mallory = generateIdentity();
  for (const point of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
    assert.throws(() => alice.addMember(signedAnnouncement(mallory, point)), { name: 'KeyExchangeError', reason: 'bad-key' });
  }
});

test('wrapped keys from non-members, forged senders, or tampered are rejected', () => {
  const { alice, bob, bobId } = twoMembers();
  const [toBob] = alice.rotate();
  const outsider = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: ADMISSION_KEY });
  outsider.addMember(bob.localAnnouncement());
  const [fromOutsider] = outsider.rotate();
  assert.throws(() => bob.receiveWrappedKey(fromOutsider), { name: 'KeyExchangeError', reason: 'unknown-sender' });
  const claimsAlice = { ...fromOutsider, from: alice.fingerprint, fromSession: alice.session };
  assert.throws(() => bob.receiveWrappedKey(claimsAlice), { name: 'KeyExchangeError', reason: 'bad-signature' });
  // A session of one member with another member's fingerprint is no member at all.
  assert.throws(() => bob.receiveWrappedKey({ ...toBob, from: fromOutsider.from }), { name: 'KeyExchangeError', reason: 'unknown-sender' });
  const tampered: [string, WrappedKeyMessage][] = [
    ['wrapped bit flipped', { ...toBob, wrapped: b64(flip(fromB64(toBob.wrapped))) }],
    ['epoch changed', { ...toBob, epoch: 7 }],
    ['signature from a member over another message', { ...toBob, signature: fromOutsider.signature }],
  ];
  for (const [what, message] of tampered) {
    assert.throws(() => bob.receiveWrappedKey(message), { name: 'KeyExchangeError', reason: 'bad-signature' }, what);
  }
  // A member signs a wrap whose ciphertext is not a key wrapped for bob.
  const bobX25519 = fromB64(bob.localAnnouncement().x25519PublicKey);
  const aliceX25519 = fromB64(alice.localAnnouncement().x25519PublicKey);
  const garbage = new Uint8Array(randomBytes(WRAPPED_KEY_BYTES));
  const transcript = labelledFields(WRAP_SIGNATURE_LABEL, [ROOM, bob.fingerprint, alice.fingerprint, 5, bobX25519, aliceX25519, garbage]);
  const signedGarbage = {
    from: bob.fingerprint,
    to: alice.fingerprint,
    fromSession: bob.session,
    toSession: alice.session,
    epoch: 5,
    wrapped: b64(garbage),
    signature: b64(bobId.sign(transcript)),
  };
  assert.throws(() => alice.receiveWrappedKey(signedGarbage), { name: 'KeyExchangeError', reason: 'unwrap-failed' });
  // None of that disturbed the genuine message.
  assert.deepEqual(bob.receiveWrappedKey(toBob), { from: alice.fingerprint, fromSession: alice.session, epoch: 0 });
});

test('a replayed wrapped key (same or older epoch) is refused: it would reopen a replay window', () => {
  const { alice, bob } = twoMembers();
  const [epoch0] = alice.rotate();
  bob.receiveWrappedKey(epoch0);
  assert.throws(() => bob.receiveWrappedKey(epoch0), { name: 'KeyExchangeError', reason: 'stale-epoch' });
  const [epoch1] = alice.rotate();
  bob.receiveWrappedKey(epoch1);
  assert.throws(() => bob.receiveWrappedKey(epoch0), { name: 'KeyExchangeError', reason: 'stale-epoch' });
});

test('a replayed announcement of a member who left or re-joined is refused, and so are its old keys', () => {
  const { alice, bob, bobId } = twoMembers();
  const oldAnnouncement = bob.localAnnouncement();
  bob.rotate();
  const [oldWrap] = bob.rotate();
  alice.removeMember(bob.session);
  assert.throws(() => alice.addMember(oldAnnouncement), { name: 'KeyExchangeError', reason: 'stale-announcement' });

  const rejoined = new RoomKeyring(bobId, ROOM, { admissionKey: ADMISSION_KEY });
  rejoined.addMember(alice.localAnnouncement());
  alice.addMember(rejoined.localAnnouncement());
  assert.throws(() => alice.addMember(oldAnnouncement), { name: 'KeyExchangeError', reason: 'stale-announcement' });
  // bob's old wrapped key names his old session, which is no member any more; moved onto the
  // new session, it does not verify (the signature binds the old X25519 key).
  assert.throws(() => alice.receiveWrappedKey(oldWrap), { name: 'KeyExchangeError', reason: 'unknown-sender' });
  assert.throws(() => alice.receiveWrappedKey({ ...oldWrap, fromSession: rejoined.session }), { name: 'KeyExchangeError', reason: 'bad-signature' });
  const [fresh] = rejoined.rotate();
  assert.deepEqual(alice.receiveWrappedKey(fresh), { from: bobId.fingerprint, fromSession: rejoined.session, epoch: 0 });
});

test('malformed untrusted input is a DecodeError; nothing else ever escapes', () => {
  const { alice, bob } = twoMembers();
  const announcement = bob.localAnnouncement();
  const [wrap] = bob.rotate();
  const malformed = [null, 42, 'text', [], {}, { ...announcement, fingerprint: announcement.fingerprint.toUpperCase() }];
  for (const value of malformed) {
    assert.throws(() => alice.addMember(value), { name: 'DecodeError' });
    assert.throws(() => alice.receiveWrappedKey(value), { name: 'DecodeError' });
  }
  const badFields: [keyof MemberAnnouncement | keyof WrappedKeyMessage, unknown][] = [
    ['identityPublicKey', b64(new Uint8Array(31))],
    ['signature', `${announcement.signature.slice(0, -2)}=`],
    ['x25519PublicKey', announcement.x25519PublicKey.replace(/.$/, '!')],
  ];
  for (const [field, value] of badFields) assert.throws(() => alice.addMember({ ...announcement, [field]: value }), { name: 'DecodeError', reason: 'bad-field' }, field);
  for (const epoch of [-1, 1.5, 2 ** 32, '0', null]) {
    assert.throws(() => alice.receiveWrappedKey({ ...wrap, epoch }), { name: 'DecodeError', reason: 'bad-field' });
  }
  const allowed = new Set(['DecodeError', 'KeyExchangeError']);
  const mutated = (base: Record<string, unknown>) =>
    fc.tuple(fc.constantFrom(...Object.keys(base)), fc.jsonValue()).map(([field, value]) => ({ ...base, [field]: value }));
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), mutated({ ...announcement }), mutated({ ...wrap })), (value) => {
      for (const call of [() => alice.addMember(value), () => alice.receiveWrappedKey(value)]) {
        try {
          call();
        } catch (err) {
          assert.ok(allowed.has((err as Error).name), `${(err as Error).name}: ${(err as Error).message}`);
        }
      }
    }),
    { numRuns: 500 },
  );
});

function flip(bytes: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[copy.length - 1] ^= 1;
  return copy;
}

/**
 * Room admission: the keys derived from a room's name (and secret), announcement v2 with its
 * admission proof, alias rules, the keyring's refusals and its bounds.
 */
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, hkdfSync } from 'node:crypto';
import { test } from 'node:test';
import { generateIdentity, Identity } from '../../core/crypto/identity.js';
import { labelledFields } from '../../core/crypto/media-crypto.js';
import { deriveRoomKeys, hashRoomName, validateRoomSecret } from '../../core/crypto/room-name.js';
import {
  ADMISSION_PROOF_LABEL,
  ANNOUNCEMENT_SIGNATURE_LABEL,
  LEGACY_ANNOUNCEMENT_SIGNATURE_LABEL,
  MAX_ALIAS_BYTES,
  MAX_ALIAS_CODE_POINTS,
  MAX_ANNOUNCEMENT_JSON_BYTES,
  MAX_RETIRED_SESSIONS,
  RoomKeyring,
  aliasProblem,
  createAnnouncement,
  parseMemberAnnouncement,
  verifyAnnouncement,
  type MemberAnnouncement,
} from '../../core/crypto/sender-keys.js';

const NAME = 'general';
const { roomId: ROOM, admissionKey: KEY } = deriveRoomKeys(NAME);

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
const fromB64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

function rawX25519PublicKey(): Uint8Array {
  const spki = generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(12));
}

function keyring(identity = generateIdentity(), options: Partial<ConstructorParameters<typeof RoomKeyring>[2]> = {}): RoomKeyring {
  return new RoomKeyring(identity, ROOM, { admissionKey: KEY, ...options });
}

/** An announcement `identity` signs (v2) over `fields`, carrying `proof` as given. */
function signedWith(identity: Identity, fields: { x25519: Uint8Array; alias?: string; replaces?: Uint8Array }, proof: string | undefined): MemberAnnouncement {
  const transcript = labelledFields(ANNOUNCEMENT_SIGNATURE_LABEL, [ROOM, identity.publicKey, fields.x25519, fields.replaces ?? new Uint8Array(0), fields.alias ?? '']);
  return {
    fingerprint: identity.fingerprint,
    identityPublicKey: b64(identity.publicKey),
    x25519PublicKey: b64(fields.x25519),
    ...(fields.alias === undefined ? {} : { alias: fields.alias }),
    ...(fields.replaces === undefined ? {} : { replaces: b64(fields.replaces) }),
    signature: b64(identity.sign(transcript)),
    ...(proof === undefined ? {} : { proof }),
  };
}

// ---------------------------------------------------------------------------------------------
// Derivations

test('room keys: golden values, and the spec recomputed from node:crypto', () => {
  const plain = deriveRoomKeys('general');
  assert.equal(plain.roomId, '6931b6ac8ccd58df781a4572645fb508', 'without a secret the room id is the v1 hash');
  assert.equal(plain.roomId, hashRoomName('general'));
  assert.equal(hex(plain.admissionKey), 'e8258ff5860504faaa4fe428f5756c80920c991ca2d23bf50cabe9e99527c452');
  const secret = deriveRoomKeys('general', 'correct horse battery staple');
  assert.equal(secret.roomId, 'fb751c1dd0ace9a97710d55e67878aee');
  assert.equal(hex(secret.admissionKey), '7beebbb6d97c06fcdb04cced561c93f385420de9f6ce7c0892dbbef93fb76276');
  const accents = deriveRoomKeys('caf\u00e9', 's\u00e9same');
  assert.equal(accents.roomId, '196e65b131c693159d8af624b412ed9b');
  assert.equal(hex(accents.admissionKey), '56c6de48cb8d7ede698b67f14ad210198247768b93e3628c4bfbfae5724f1ce6');

  // The documented derivation, step by step.
  const hkdf = (ikm: string, salt: string, info: Uint8Array | string, length: number) => new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  const roomId = hex(hkdf('general', 'correct horse battery staple', 'wzp-room-id-v1', 16));
  assert.equal(roomId, secret.roomId);
  assert.deepEqual(secret.admissionKey, hkdf('general', 'correct horse battery staple', labelledFields('wzp-room-admission-v1', [roomId]), 32));
  assert.deepEqual(plain.admissionKey, hkdf('general', '', labelledFields('wzp-room-admission-v1', [plain.roomId]), 32));
});

test('room keys: name and secret are NFC-normalised; each changes both the id and the key', () => {
  assert.deepEqual(deriveRoomKeys('cafe\u0301', 'se\u0301same'), deriveRoomKeys('caf\u00e9', 's\u00e9same'));
  const variants = [deriveRoomKeys('general'), deriveRoomKeys('general', 'a'), deriveRoomKeys('general', 'b'), deriveRoomKeys('General', 'a')];
  assert.equal(new Set(variants.map((k) => k.roomId)).size, variants.length);
  assert.equal(new Set(variants.map((k) => hex(k.admissionKey))).size, variants.length);
  // The admission key is not the id, nor anything the relay can compute from the id alone.
  assert.ok(!hex(variants[0].admissionKey).includes(variants[0].roomId));
  for (const k of variants) assert.match(k.roomId, /^[0-9a-f]{32}$/);
});

test('room keys: an empty or invalid name or secret is a UsageError that does not repeat the secret', () => {
  assert.throws(() => deriveRoomKeys(''), { name: 'UsageError' });
  assert.throws(() => deriveRoomKeys('room\ud800'), { name: 'UsageError' });
  assert.throws(() => deriveRoomKeys('room', ''), { name: 'UsageError', message: /room secret cannot be empty/ });
  assert.throws(() => deriveRoomKeys('room', 'hunter2\udc00'), (err: Error) => err.name === 'UsageError' && !err.message.includes('hunter2'));
  assert.throws(() => validateRoomSecret(''), { name: 'UsageError' });
  assert.doesNotThrow(() => validateRoomSecret('pass \u{1f600}'));
});

// ---------------------------------------------------------------------------------------------
// Announcement v2 and the proof

test('announcement v2: golden signature and proof for a fixed identity and session key', () => {
  const id = new Identity(new Uint8Array(32).fill(1));
  const x25519 = new Uint8Array(32).fill(0x42);
  const replaces = new Uint8Array(32).fill(0x33);
  const a = createAnnouncement(id, ROOM, KEY, x25519, { alias: 'alice', replaces: b64(replaces) });
  assert.deepEqual(a, {
    fingerprint: '1a07:d70f:26e9:401b:3857:f7e7:d548:7478:b8db:a26b:f107:2a62:c2a1:14ee:81ea:ec8d',
    identityPublicKey: '3yezdP8lLVOU3+mPISWA7B0erBYKOSwPsbDB08TV2ms=',
    x25519PublicKey: 'QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=',
    alias: 'alice',
    replaces: 'MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=',
    signature: 'xl6GcWT+GeM1B/2OBWBaXfcKw9TMTqdxFYkiuNPG8Nu8b5L3Q5RAHJ+iKAjnyCJ9TYNdV+8gsKYR0o7/eRSIBw==',
    proof: '9QsfoPOvnTQjDT+mIOuvGTSOQ/coiKwZa85UHX+P0DI=',
  });
  // The documented transcripts.
  const fields = [ROOM, id.publicKey, x25519, replaces, 'alice'];
  assert.equal(a.proof, b64(createHmac('sha256', KEY).update(labelledFields(ADMISSION_PROOF_LABEL, fields)).digest()));
  assert.ok(Identity.verify(id.publicKey, labelledFields(ANNOUNCEMENT_SIGNATURE_LABEL, fields), fromB64(a.signature)));
  assert.equal(ADMISSION_PROOF_LABEL, 'wzp-room-admit-v1');
  assert.equal(ANNOUNCEMENT_SIGNATURE_LABEL, 'wzp-room-announce-v2');
  // Without alias and replaces, both are empty fields (always five).
  const bare = createAnnouncement(id, ROOM, KEY, x25519);
  assert.deepEqual(Object.keys(bare), ['fingerprint', 'identityPublicKey', 'x25519PublicKey', 'signature', 'proof']);
  const bareFields = [ROOM, id.publicKey, x25519, new Uint8Array(0), ''];
  assert.equal(bare.proof, b64(createHmac('sha256', KEY).update(labelledFields(ADMISSION_PROOF_LABEL, bareFields)).digest()));
});

test('a member proven with the room name is admitted, with its signed alias', () => {
  const alice = keyring(generateIdentity(), { alias: 'alice' });
  const bob = keyring(generateIdentity(), { alias: 'Bøb 🎧' });
  const admitted = alice.addMember(JSON.parse(JSON.stringify(bob.localAnnouncement())));
  assert.deepEqual(admitted, { fingerprint: bob.fingerprint, session: bob.session, alias: 'Bøb 🎧' });
  assert.ok(alice.needsRotation);
  const [wrapped] = alice.rotate();
  bob.addMember(alice.localAnnouncement());
  assert.equal(bob.receiveWrappedKey(wrapped).epoch, 0);
});

test('who does not know the name (or secret) is refused as unproven, and nothing changes', () => {
  const alice = keyring();
  alice.rotate();
  const ghostId = generateIdentity();
  const cases: [string, Uint8Array][] = [
    // The relay knows the room id exactly, but not the name: any key it can make is wrong.
    ['admission key from another name', deriveRoomKeys('general2').admissionKey],
    ['the room id (twice) as the key', new Uint8Array(Buffer.from(ROOM + ROOM, 'hex'))],
    ['all-zero key', new Uint8Array(32)],
  ];
  for (const [what, admissionKey] of cases) {
    const ghost = new RoomKeyring(ghostId, ROOM, { admissionKey, alias: 'alice' });
    assert.throws(() => alice.addMember(ghost.localAnnouncement()), { name: 'KeyExchangeError', reason: 'unproven' }, what);
  }
  // A room with a secret: the right name with a wrong secret (or none) is no proof either.
  const secretRoom = deriveRoomKeys(NAME, 's3cret');
  const member = new RoomKeyring(generateIdentity(), secretRoom.roomId, { admissionKey: secretRoom.admissionKey });
  for (const [what, wrong] of [['wrong secret', deriveRoomKeys(NAME, 's3cret!')], ['no secret', deriveRoomKeys(NAME)]] as const) {
    const outsider = new RoomKeyring(generateIdentity(), secretRoom.roomId, { admissionKey: wrong.admissionKey });
    assert.throws(() => member.addMember(outsider.localAnnouncement()), { name: 'KeyExchangeError', reason: 'unproven' }, what);
  }
  assert.deepEqual(alice.members, []);
  assert.ok(!alice.needsRotation, 'a refusal is no membership change');
});

test('the proof binds identity, session key, alias and replaces: a copied proof proves nothing', () => {
  const alice = keyring();
  const bobId = generateIdentity();
  const bobX25519 = rawX25519PublicKey();
  const genuine = createAnnouncement(bobId, ROOM, KEY, bobX25519, { alias: 'bob', replaces: b64(rawX25519PublicKey()) });
  const replaces = fromB64(genuine.replaces!);
  // Each is signed by its identity (a valid v2 signature) but carries bob's proof.
  const ghostId = generateIdentity();
  const copies: [string, MemberAnnouncement][] = [
    ['ghost identity and session, bob\'s alias and proof', signedWith(ghostId, { x25519: rawX25519PublicKey(), alias: 'bob', replaces }, genuine.proof)],
    ['bob\'s session key under the ghost identity', signedWith(ghostId, { x25519: bobX25519, alias: 'bob', replaces }, genuine.proof)],
    ['bob re-signing another session key', signedWith(bobId, { x25519: rawX25519PublicKey(), alias: 'bob', replaces }, genuine.proof)],
    ['bob re-signing another alias', signedWith(bobId, { x25519: bobX25519, alias: 'bobby', replaces }, genuine.proof)],
    ['bob re-signing without replaces', signedWith(bobId, { x25519: bobX25519, alias: 'bob' }, genuine.proof)],
    ['bob re-signing another replaces', signedWith(bobId, { x25519: bobX25519, alias: 'bob', replaces: rawX25519PublicKey() }, genuine.proof)],
    ['no proof at all', signedWith(bobId, { x25519: bobX25519, alias: 'bob', replaces }, undefined)],
  ];
  for (const [what, announcement] of copies) {
    assert.doesNotThrow(() => verifyAnnouncement(ROOM, announcement), `${what}: the signature itself is valid`);
    assert.throws(() => alice.addMember(announcement), { name: 'KeyExchangeError', reason: 'unproven' }, what);
  }
  // Altered by someone who cannot sign as bob (the relay): the signature breaks first.
  const altered: [string, MemberAnnouncement][] = [
    ['alias', { ...genuine, alias: 'alice' }],
    ['alias removed', (({ alias: _a, ...rest }) => rest)(genuine)],
    ['replaces', { ...genuine, replaces: b64(rawX25519PublicKey()) }],
    ['session key', { ...genuine, x25519PublicKey: b64(rawX25519PublicKey()) }],
  ];
  for (const [what, announcement] of altered) {
    assert.throws(() => alice.addMember(announcement), { name: 'KeyExchangeError', reason: 'bad-signature' }, what);
  }
  assert.equal(alice.addMember(genuine).fingerprint, bobId.fingerprint);
});

test('a v1 announcement (an older client) verifies but is never admitted: unproven', () => {
  const alice = keyring();
  const oldId = generateIdentity();
  const x25519 = rawX25519PublicKey();
  const v1 = {
    fingerprint: oldId.fingerprint,
    identityPublicKey: b64(oldId.publicKey),
    x25519PublicKey: b64(x25519),
    signature: b64(oldId.sign(labelledFields(LEGACY_ANNOUNCEMENT_SIGNATURE_LABEL, [ROOM, oldId.publicKey, x25519]))),
  };
  // The relay still acts on v1 signatures (a signed `replaces`): verifyAnnouncement accepts it.
  assert.deepEqual(verifyAnnouncement(ROOM, v1), v1);
  assert.throws(() => alice.addMember(v1), { name: 'KeyExchangeError', reason: 'unproven', message: /no proof/ });
  // A forged v1 signature is still a bad signature, and v1 with an alias or proof is not v1.
  assert.throws(() => alice.addMember({ ...v1, signature: b64(new Uint8Array(64)) }), { name: 'KeyExchangeError', reason: 'bad-signature' });
  assert.throws(() => verifyAnnouncement(ROOM, { ...v1, alias: 'old' }), { name: 'KeyExchangeError', reason: 'bad-signature' });
  assert.throws(() => verifyAnnouncement(ROOM, { ...v1, proof: b64(new Uint8Array(32)) }), { name: 'KeyExchangeError', reason: 'bad-signature' });
});

test('an allow list admits only the identities on it (and our own), after the proof', () => {
  const meId = generateIdentity();
  const friend = keyring();
  const stranger = keyring();
  const me = keyring(meId, { allow: [friend.fingerprint] });
  assert.equal(me.addMember(friend.localAnnouncement()).fingerprint, friend.fingerprint);
  assert.throws(() => me.addMember(stranger.localAnnouncement()), { name: 'KeyExchangeError', reason: 'not-allowed' });
  assert.equal(me.addMember(keyring(meId).localAnnouncement()).fingerprint, meId.fingerprint, 'another device of ours');
  // Unproven beats not-allowed: the reason says what is wrong first.
  const ghost = new RoomKeyring(generateIdentity(), ROOM, { admissionKey: new Uint8Array(32) });
  assert.throws(() => me.addMember(ghost.localAnnouncement()), { name: 'KeyExchangeError', reason: 'unproven' });
  assert.deepEqual(me.members.map((m) => m.fingerprint), [friend.fingerprint, meId.fingerprint]);
  // checkAnnouncement decides the same without admitting.
  assert.throws(() => me.checkAnnouncement(stranger.localAnnouncement()), { name: 'KeyExchangeError', reason: 'not-allowed' });
});

test('a keyring needs the 32-byte admission key', () => {
  for (const admissionKey of [undefined, new Uint8Array(16), new Uint8Array(33)]) {
    assert.throws(() => new RoomKeyring(generateIdentity(), ROOM, { admissionKey } as never), { name: 'InternalError' });
  }
});

// ---------------------------------------------------------------------------------------------
// Aliases and sizes

test('aliases: up to 64 code points and 128 UTF-8 bytes, no control, format or separator characters', () => {
  const good = ['alice', 'Zoë', 'ärztin 🩺', '小明', 'a'.repeat(MAX_ALIAS_CODE_POINTS), 'é'.repeat(64), '🎧'.repeat(32), '"\\'.repeat(32), 'a b'];
  for (const alias of good) assert.equal(aliasProblem(alias), undefined, alias);
  const bad: [string, string][] = [
    ['', 'empty'],
    ['a'.repeat(MAX_ALIAS_CODE_POINTS + 1), '65 code points'],
    ['中'.repeat(43), '129 bytes'],
    ['🎧'.repeat(32) + 'a', '129 bytes'],
    ['bell\u0007', 'Cc'],
    ['tab\there', 'Cc'],
    ['new\nline', 'Cc'],
    ['\u202eecila', 'Cf: right-to-left override'],
    ['al\u200dice', 'Cf: zero-width joiner'],
    ['ali\u00adce', 'Cf: soft hyphen'],
    ['line\u2028sep', 'Zl'],
    ['para\u2029sep', 'Zp'],
    ['lone\ud800', 'lone surrogate'],
  ];
  for (const [alias, why] of bad) {
    assert.ok(aliasProblem(alias), why);
    // (An empty alias option means none: see below.)
    if (alias !== '') assert.throws(() => keyring(generateIdentity(), { alias }), { name: 'UsageError' }, why);
    // From the network: a malformed announcement.
    const genuine = keyring(generateIdentity(), { alias: 'ok' }).localAnnouncement();
    assert.throws(() => parseMemberAnnouncement({ ...genuine, alias }), { name: 'DecodeError', reason: 'bad-field' }, why);
  }
  assert.equal(Buffer.byteLength('🎧'.repeat(32)), MAX_ALIAS_BYTES);
  // An empty alias option means none (the field is left out).
  assert.equal('alias' in keyring(generateIdentity(), { alias: '' }).localAnnouncement(), false);
});

test(`the largest announcement, any valid alias and replaces, is at most ${MAX_ANNOUNCEMENT_JSON_BYTES} bytes of JSON`, () => {
  const id = generateIdentity();
  const replaces = b64(rawX25519PublicKey());
  let largest = 0;
  let worst = '';
  // JSON escapes '"' and '\' as two bytes (the controls that take six are refused), and a
  // character can take four UTF-8 bytes: mix quotes with 4-byte characters up to both limits.
  for (let quotes = 0; quotes <= MAX_ALIAS_CODE_POINTS; quotes++) {
    const wide = Math.min(MAX_ALIAS_CODE_POINTS - quotes, Math.floor((MAX_ALIAS_BYTES - quotes) / 4));
    const rest = Math.min(MAX_ALIAS_CODE_POINTS - quotes - wide, MAX_ALIAS_BYTES - quotes - 4 * wide);
    const alias = '"'.repeat(quotes) + '🎧'.repeat(wide) + '\\'.repeat(Math.max(0, rest));
    assert.equal(aliasProblem(alias), undefined, alias);
    const bytes = Buffer.byteLength(JSON.stringify(keyring(id, { alias, replaces }).localAnnouncement()));
    if (bytes > largest) [largest, worst] = [bytes, alias];
  }
  const quotes = Buffer.byteLength(JSON.stringify(keyring(id, { alias: '"'.repeat(64), replaces }).localAnnouncement()));
  assert.ok(quotes <= largest);
  assert.ok(largest <= MAX_ANNOUNCEMENT_JSON_BYTES, `${largest} bytes with alias ${worst}`);
  assert.equal(MAX_ANNOUNCEMENT_JSON_BYTES, 768);
  // And a typical one (short alias, no replaces) is well within the relay's old 512 bytes.
  assert.ok(Buffer.byteLength(JSON.stringify(keyring(id, { alias: id.shortFingerprint }).localAnnouncement())) < 512);
});

// ---------------------------------------------------------------------------------------------
// Bounds

test(`retired sessions: the newest ${MAX_RETIRED_SESSIONS} are remembered, older ones forgotten`, () => {
  const alice = keyring();
  const id = generateIdentity();
  const announcements: MemberAnnouncement[] = [];
  for (let i = 0; i <= MAX_RETIRED_SESSIONS; i++) {
    const announcement = createAnnouncement(id, ROOM, KEY, rawX25519PublicKey());
    alice.addMember(announcement);
    alice.removeMember(announcement.x25519PublicKey);
    announcements.push(announcement);
  }
  assert.throws(() => alice.addMember(announcements[1]), { name: 'KeyExchangeError', reason: 'stale-announcement' });
  assert.throws(() => alice.addMember(announcements.at(-1)), { name: 'KeyExchangeError', reason: 'stale-announcement' });
  // The oldest of 4097 fell out of the set: the bound documented in docs/e2e-encryption.md.
  assert.equal(alice.addMember(announcements[0]).session, announcements[0].x25519PublicKey);
});

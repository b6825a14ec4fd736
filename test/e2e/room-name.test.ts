import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ROOM_HASH_BYTES, hashRoomName } from '../../core/crypto/room-name.js';

test('golden vectors: first 16 bytes of SHA-256("wzp-room-v1:" || UTF-8 name), hex', () => {
  // printf 'wzp-room-v1:general' | sha256sum
  assert.equal(hashRoomName('general'), '6931b6ac8ccd58df781a4572645fb508');
  // printf 'wzp-room-v1:caf\xc3\xa9' | sha256sum
  assert.equal(hashRoomName('caf\u00e9'), '391e6299557b2319ff68beeb0b224de2');
});

test('the hash is deterministic and 32 lowercase hex digits', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1, unit: 'grapheme' }), (name) => {
      const hash = hashRoomName(name);
      assert.equal(hash, hashRoomName(name));
      assert.match(hash, new RegExp(`^[0-9a-f]{${ROOM_HASH_BYTES * 2}}$`));
    }),
  );
});

test('canonically equivalent spellings (NFC vs NFD) reach the same room', () => {
  assert.equal(hashRoomName('cafe\u0301'), hashRoomName('caf\u00e9'));
});

test('different names give different hashes; case and spaces matter', () => {
  const names = ['general', 'General', 'general ', ' general', 'genera1', 'wzp-room-v1:general'];
  assert.equal(new Set(names.map(hashRoomName)).size, names.length);
  fc.assert(
    fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (a, b) => {
      fc.pre(a.normalize('NFC') !== b.normalize('NFC') && !/\p{Cs}/u.test(a + b));
      assert.notEqual(hashRoomName(a), hashRoomName(b));
    }),
  );
});

test('an empty name or one with a lone surrogate is a UsageError', () => {
  assert.throws(() => hashRoomName(''), { name: 'UsageError' });
  assert.throws(() => hashRoomName('room\ud800'), { name: 'UsageError' });
  assert.throws(() => hashRoomName('\udfffroom'), { name: 'UsageError' });
  assert.match(hashRoomName('room \u{1f600}'), /^[0-9a-f]{32}$/); // a proper surrogate pair is fine
});

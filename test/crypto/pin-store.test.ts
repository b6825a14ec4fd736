import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PinStore, normaliseRelayAddress } from '../../core/transport/pin-store.js';

const FP_A = 'aaaa:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';
const FP_B = 'bbbb:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';
const RELAY = 'Relay.Example.COM:4433';
const RELAY_KEY = 'relay.example.com:4433';

function pinPath(): string {
  return join(mkdtempSync(join(tmpdir(), 'wzp-pins-')), 'known-relays.json');
}

/** A clock that advances one minute per reading. */
function steppingClock(): () => Date {
  let minutes = 0;
  return () => new Date(Date.UTC(2025, 0, 1, 12, minutes++));
}

type ErrorWithSuggestions = Error & { suggestions: string[] };

test('relay addresses are normalised', () => {
  assert.equal(normaliseRelayAddress(' Relay.Example.COM:04433 '), RELAY_KEY);
  assert.equal(normaliseRelayAddress('[2001:DB8:0:0::1]:4433'), '[2001:db8::1]:4433');
  assert.equal(normaliseRelayAddress('[::ffff:127.0.0.1]:1'), '[::ffff:7f00:1]:1');
  assert.equal(normaliseRelayAddress('10.0.0.1:4433'), '10.0.0.1:4433');
  for (const bad of ['relay.example.com', '2001:db8::1:4433', '[relay]:4433', 'host:0', 'host:65536', 'host:port', ':4433']) {
    assert.throws(() => normaliseRelayAddress(bad), { name: 'UsageError' }, bad);
  }
});

test('first contact pins, later contacts match and update lastSeen', async () => {
  const store = await PinStore.open(pinPath(), { now: steppingClock() });
  assert.equal(store.lookup(RELAY), undefined);
  assert.equal(store.check(RELAY, FP_A), 'pinned-new');
  assert.deepEqual(store.lookup(RELAY_KEY), {
    fingerprint: FP_A,
    firstSeen: '2025-01-01T12:00:00.000Z',
    lastSeen: '2025-01-01T12:00:00.000Z',
  });
  assert.equal(store.check(RELAY_KEY, FP_A.replaceAll(':', '').toUpperCase()), 'match');
  assert.equal(store.lookup(RELAY)?.lastSeen, '2025-01-01T12:01:00.000Z');
  assert.equal(store.lookup(RELAY)?.firstSeen, '2025-01-01T12:00:00.000Z');
});

test('a changed fingerprint is refused with both fingerprints and recovery steps', async () => {
  const store = await PinStore.open(pinPath());
  store.check(RELAY, FP_A);
  assert.throws(() => store.check(RELAY, FP_B), (err: ErrorWithSuggestions) => {
    assert.equal(err.name, 'FingerprintMismatchError');
    assert.match(err.message, new RegExp(`expected: +${FP_A}`));
    assert.match(err.message, new RegExp(`presented: +${FP_B}`));
    assert.ok(err.suggestions.some((s) => s.includes(`wzp pins forget ${RELAY_KEY}`)));
    assert.ok(err.suggestions.some((s) => s.includes(`--relay-fingerprint ${FP_B}`)));
    return true;
  });
  assert.equal(store.lookup(RELAY)?.fingerprint, FP_A, 'the pin is unchanged');
});

test('an explicit fingerprint wins over the stored pin', async () => {
  const store = await PinStore.open(pinPath());
  assert.throws(() => store.check(RELAY, FP_A, { explicit: FP_B }), { name: 'FingerprintMismatchError' });
  assert.equal(store.lookup(RELAY), undefined, 'nothing pinned after a failed explicit check');

  assert.equal(store.check(RELAY, FP_A, { explicit: FP_A }), 'pinned-new');
  assert.equal(store.check(RELAY, FP_A, { explicit: FP_A }), 'match');
  // The relay legitimately changed and the user verified the new fingerprint out of band.
  assert.equal(store.check(RELAY, FP_B, { explicit: FP_B }), 'pinned-new');
  assert.equal(store.lookup(RELAY)?.fingerprint, FP_B);
  assert.throws(() => store.check(RELAY, FP_A, { explicit: FP_A.replace('aaaa', 'ffff') }), {
    name: 'FingerprintMismatchError',
  });
  assert.throws(() => store.check(RELAY, FP_A, { explicit: 'abcd' }), { name: 'UsageError' });
});

test('forget removes a pin so the next contact pins afresh', async () => {
  const store = await PinStore.open(pinPath());
  store.check(RELAY, FP_A);
  assert.equal(store.forget(RELAY_KEY), true);
  assert.equal(store.forget(RELAY_KEY), false);
  assert.equal(store.check(RELAY, FP_B), 'pinned-new');
});

test('pins persist across reopen in a 0600 file', async () => {
  const path = pinPath();
  const store = await PinStore.open(path, { now: steppingClock() });
  store.check(RELAY, FP_A);
  store.check('[2001:db8::1]:4433', FP_B);
  await store.save();
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).version, 1);

  const reopened = await PinStore.open(path);
  assert.deepEqual(reopened.list(), store.list());
  assert.deepEqual(
    reopened.list().map((p) => p.relay),
    ['[2001:db8::1]:4433', RELAY_KEY],
  );
  assert.throws(() => reopened.check(RELAY, FP_B), { name: 'FingerprintMismatchError' });

  reopened.forget(RELAY);
  await reopened.save();
  assert.deepEqual((await PinStore.open(path)).list().map((p) => p.relay), ['[2001:db8::1]:4433']);
});

test('a corrupt pin file is a ConfigError naming it, never a silent reset', async () => {
  const entry = { fingerprint: FP_A, firstSeen: '2025-01-01T00:00:00Z', lastSeen: '2025-01-01T00:00:00Z' };
  const cases: Array<[string, RegExp]> = [
    ['{"version":1,', /not valid JSON/],
    ['{"version":7,"relays":{}}', /unsupported version 7/],
    ['{"version":1}', /no "relays"/],
    [JSON.stringify({ version: 1, relays: { 'no-port': entry } }), /bad entry for "no-port"/],
    [JSON.stringify({ version: 1, relays: { [RELAY_KEY]: { ...entry, fingerprint: 'abc' } } }), /hex digits/],
    [JSON.stringify({ version: 1, relays: { [RELAY_KEY]: { ...entry, lastSeen: 'yesterday' } } }), /"lastSeen"/],
  ];
  for (const [content, expected] of cases) {
    const path = pinPath();
    writeFileSync(path, content);
    await assert.rejects(PinStore.open(path), (err: ErrorWithSuggestions) => {
      assert.equal(err.name, 'ConfigError');
      assert.ok(err.message.includes(path), err.message);
      assert.match(err.message, expected);
      assert.ok(err.suggestions.length > 0);
      return true;
    });
    assert.equal(readFileSync(path, 'utf8'), content, 'the file is left alone');
  }
});

test("save() keeps pins another process recorded since this store was opened, and writes nothing if nothing changed", async () => {
  const path = pinPath();
  const mine = await PinStore.open(path, { now: steppingClock() });
  const theirs = await PinStore.open(path);
  theirs.check('other.example.com:4433', FP_B);
  await theirs.save();
  mine.check(RELAY, FP_A);
  await mine.save();
  const both = (await PinStore.open(path)).list().map((p) => p.relay);
  assert.deepEqual(both, ['other.example.com:4433', RELAY_KEY]);

  // A match updates lastSeen on disk; forgetting removes only that pin.
  const later = await PinStore.open(path, { now: () => new Date(Date.UTC(2026, 0, 1)) });
  assert.equal(later.check(RELAY, FP_A), 'match');
  await later.save();
  assert.equal((await PinStore.open(path)).lookup(RELAY)?.lastSeen, '2026-01-01T00:00:00.000Z');
  theirs.forget('other.example.com:4433');
  await theirs.save();
  assert.deepEqual((await PinStore.open(path)).list().map((p) => p.relay), [RELAY_KEY]);

  const idle = await PinStore.open(pinPath());
  await idle.save();
  assert.equal(existsSync(idle.path), false, 'an unchanged empty store writes no file');
});

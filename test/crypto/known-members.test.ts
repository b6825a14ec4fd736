import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { KnownMembers, MAX_KNOWN_MEMBERS } from '../../core/crypto/known-members.js';

const FP_A = 'aaaa:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';
const FP_B = 'bbbb:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';
const FP_C = 'cccc:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';

function membersPath(): string {
  return join(mkdtempSync(join(tmpdir(), 'wzp-members-')), 'config', 'known-members.json');
}

/** A clock that advances one minute per reading. */
function steppingClock(): () => Date {
  let minutes = 0;
  return () => new Date(Date.UTC(2025, 0, 1, 12, minutes++));
}

test('a first meeting is new and pinned; met again in a later process, known, with lastSeen and alias updated', async () => {
  const path = membersPath();
  const first = await KnownMembers.open(path, { now: steppingClock() });
  const meeting = first.meet(FP_A, 'alice');
  assert.deepEqual(meeting, { known: false, firstSeen: '2025-01-01T12:00:00.000Z', sameAlias: [] });
  // Met again in the same process (a reconnection): still not known from an earlier call.
  assert.equal(first.meet(FP_A, 'alice').known, false);
  await first.save();
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dirname(path)), ['known-members.json'], 'written atomically: no temporary file left');
  const doc = JSON.parse(readFileSync(path, 'utf8'));
  assert.deepEqual(doc, {
    version: 1,
    members: { [FP_A]: { alias: 'alice', firstSeen: '2025-01-01T12:00:00.000Z', lastSeen: '2025-01-01T12:01:00.000Z' } },
  });

  const later = await KnownMembers.open(path, { now: () => new Date(Date.UTC(2025, 5, 1)) });
  const again = later.meet(FP_A, 'Alice R.');
  assert.deepEqual(again, { known: true, firstSeen: '2025-01-01T12:00:00.000Z', sameAlias: [] });
  assert.deepEqual(later.lookup(FP_A.toUpperCase().replaceAll(':', '')), { alias: 'Alice R.', firstSeen: '2025-01-01T12:00:00.000Z', lastSeen: '2025-06-01T00:00:00.000Z' });
  assert.equal(later.meet(FP_B, 'bob').known, false);
});

test('an alias already pinned for another fingerprint is reported, compared case- and width-insensitively', async () => {
  const store = KnownMembers.inMemory({ now: steppingClock() });
  store.meet(FP_A, 'Alice');
  store.meet(FP_B, 'bob');
  const impostor = store.meet(FP_C, 'ａｌｉｃｅ ');
  assert.deepEqual(impostor.sameAlias, [{ fingerprint: FP_A, alias: 'Alice', firstSeen: '2025-01-01T12:00:00.000Z', lastSeen: '2025-01-01T12:00:00.000Z' }]);
  // Its own earlier alias is no look-alike; an empty alias matches nobody.
  assert.deepEqual(store.meet(FP_A, 'alice').sameAlias.map((m) => m.fingerprint), [FP_C]);
  assert.deepEqual(store.meet(FP_B, '').sameAlias, []);
  assert.deepEqual(store.meet(FP_C, 'carol').sameAlias, []);
  assert.deepEqual(store.meet(FP_A, 'carol').sameAlias.map((m) => m.fingerprint), [FP_C]);
});

test(`at most ${MAX_KNOWN_MEMBERS} members are kept: the least recently seen go first, also across a reload`, async () => {
  const path = membersPath();
  const store = await KnownMembers.open(path, { now: steppingClock() });
  const fp = (i: number) => i.toString(16).padStart(64, '0').match(/.{4}/g)!.join(':');
  for (let i = 0; i < MAX_KNOWN_MEMBERS; i++) store.meet(fp(i), `m${i}`);
  store.meet(fp(0), 'm0'); // seen again: now the most recent
  store.meet(fp(MAX_KNOWN_MEMBERS), 'newest');
  assert.equal(store.list().length, MAX_KNOWN_MEMBERS);
  assert.ok(store.lookup(fp(0)));
  assert.equal(store.lookup(fp(1)), undefined, 'the least recently seen was dropped');
  assert.deepEqual(store.meet(fp(MAX_KNOWN_MEMBERS + 1), 'm1').sameAlias, [], 'a dropped member leaves no alias behind');
  await store.save();
  const reloaded = await KnownMembers.open(path, { now: steppingClock() });
  reloaded.meet(fp(MAX_KNOWN_MEMBERS + 2), 'x');
  assert.equal(reloaded.lookup(fp(2)), undefined, 'the order by lastSeen survived the reload');
  assert.ok(reloaded.lookup(fp(0)));
});

test('a corrupt or unreadable file is a ConfigError naming it; a missing one is an empty store', async () => {
  const path = membersPath();
  assert.deepEqual((await KnownMembers.open(path)).list(), []);
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const cases: [string, string | object][] = [
    ['not valid JSON', '{"version":1,'],
    ['unsupported version', { version: 2, members: {} }],
    ['no "members" object', { version: 1 }],
    ['bad entry', { version: 1, members: { 'not-a-fingerprint': { alias: 'x', firstSeen: '2025-01-01T00:00:00Z', lastSeen: '2025-01-01T00:00:00Z' } } }],
    ['bad entry', { version: 1, members: { [FP_A]: { alias: 7, firstSeen: '2025-01-01T00:00:00Z', lastSeen: '2025-01-01T00:00:00Z' } } }],
    ['bad entry', { version: 1, members: { [FP_A]: { alias: 'a', firstSeen: 'yesterday', lastSeen: '2025-01-01T00:00:00Z' } } }],
  ];
  for (const [detail, content] of cases) {
    const file = join(dir, 'known-members.json');
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    await assert.rejects(KnownMembers.open(file), (err: Error & { suggestions: string[] }) => {
      assert.equal(err.name, 'ConfigError');
      assert.ok(err.message.includes(file) && err.message.includes(detail), err.message);
      assert.ok(err.suggestions.some((s) => s.includes('move it aside')));
      return true;
    });
  }
  await assert.rejects(KnownMembers.open(dir), { name: 'ConfigError', message: /cannot read known members file/ });
});

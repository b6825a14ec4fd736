import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAllowList, resolveRoomSecret } from '../../src/services/room-admission.js';

const FP_A = 'aaaa:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';
const FP_B = 'bbbb:0000:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee';

const dir = mkdtempSync(join(tmpdir(), 'wzp-admission-'));
function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

test('room secret: the flag, else the first line of the file (trimmed), else WZP_ROOM_SECRET; none at all is none', async () => {
  const env = { WZP_ROOM_SECRET: 'from-env' };
  assert.equal(await resolveRoomSecret({ secret: ' as typed ', env }), ' as typed ');
  assert.equal(await resolveRoomSecret({ secretFile: file('secret', '  s3cret  \r\nsecond line\n'), env }), 's3cret');
  assert.equal(await resolveRoomSecret({ env }), 'from-env');
  assert.equal(await resolveRoomSecret({ env: {} }), undefined);
});

test('room secret: unreadable file is a ConfigError, an empty one or an empty secret a UsageError, never repeating the secret', async () => {
  await assert.rejects(resolveRoomSecret({ secretFile: join(dir, 'missing'), env: {} }), { name: 'ConfigError', message: /cannot read the room secret file .*missing/ });
  await assert.rejects(resolveRoomSecret({ secretFile: dir, env: {} }), { name: 'ConfigError' });
  await assert.rejects(resolveRoomSecret({ secretFile: file('empty', '\n\nlater line'), env: {} }), { name: 'UsageError', message: /is empty: the secret is its first line/ });
  await assert.rejects(resolveRoomSecret({ secret: '', env: {} }), { name: 'UsageError', message: /--room-secret: a room secret cannot be empty/ });
  await assert.rejects(resolveRoomSecret({ env: { WZP_ROOM_SECRET: '' } }), { name: 'UsageError', message: /WZP_ROOM_SECRET/ });
  await assert.rejects(resolveRoomSecret({ secret: 'hunter2\ud800', env: {} }), (err: Error) => err.name === 'UsageError' && !err.message.includes('hunter2'));
});

test('--allow: any accepted fingerprint spelling, and @FILE with one per line and # comments', async () => {
  assert.equal(await resolveAllowList(undefined), undefined);
  assert.equal(await resolveAllowList([]), undefined);
  const list = file('team.txt', `# the team\n${FP_A}   # alice\n\n  ${FP_B.toUpperCase().replaceAll(':', '')}\n`);
  assert.deepEqual(await resolveAllowList([FP_A.replaceAll(':', '-'), `@${list}`]), [FP_A, FP_B]);
});

test('--allow: a bad value is a UsageError naming it (and its file and line); an unreadable or empty file is refused', async () => {
  await assert.rejects(resolveAllowList([FP_A, 'b8db:ec0b:ab3b:daf1']), (err: Error) => {
    assert.equal(err.name, 'UsageError');
    assert.match(err.message, /--allow b8db:ec0b:ab3b:daf1: fingerprint "b8db:ec0b:ab3b:daf1" has 16 hex digits/);
    return true;
  });
  await assert.rejects(resolveAllowList(['alice']), { name: 'UsageError', message: /--allow alice: fingerprint "alice" contains characters other than hex/ });
  const bad = file('bad.txt', `${FP_A}\nnot-a-fingerprint\n`);
  await assert.rejects(resolveAllowList([`@${bad}`]), { name: 'UsageError', message: new RegExp(`--allow @${bad} line 2: fingerprint "not-a-fingerprint"`) });
  await assert.rejects(resolveAllowList([`@${join(dir, 'nope.txt')}`]), { name: 'ConfigError', message: /cannot read the allow list/ });
  await assert.rejects(resolveAllowList([`@${file('comments.txt', '# nobody yet\n')}`]), { name: 'UsageError', message: /names no fingerprint/ });
});

/**
 * `wzp relay --config FILE` as a real process: a missing file is written as the example with
 * this relay's real address and fingerprint; a relay started from a file uses its limits;
 * SIGHUP applies an edited [limits] at once and logs it; a broken file on SIGHUP is logged
 * and the running config kept; flags given on the command line win over the file; a bad key
 * at startup is a usage error (exit 2) naming the key and its line.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { readRelayConfig } from '../../src/services/relay-config.js';
import { makeHome, parseJsonDocument, runCli, spawnCli, type CliHome, type RunningCli } from '../helpers/cli.js';

const LISTENING = /listening on (\S+) fingerprint (\S+)/;

interface Started {
  cli: RunningCli;
  address: string;
  fingerprint: string;
}

async function startRelay(args: string[], home: CliHome): Promise<Started> {
  const cli = spawnCli(['relay', ...args], home);
  await cli.when(LISTENING);
  const m = LISTENING.exec(cli.stderr()) as RegExpExecArray;
  return { cli, address: m[1], fingerprint: m[2] };
}

/** Sessions to a relay, closed together. */
function clients(relay: Started) {
  const open: RelaySession[] = [];
  return {
    async join(room: string, alias: string): Promise<void> {
      const s = await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(relay.fingerprint, 'relay') });
      open.push(s);
      await s.joinRoom(room, { alias });
    },
    close: () => Promise.all(open.map((s) => s.close().catch(() => undefined))),
  };
}

/** Count the matches of `pattern` (global) in text. */
const count = (text: string, pattern: RegExp) => (text.match(pattern) ?? []).length;

describe('wzp relay --config', () => {
  let home: CliHome;
  const running: RunningCli[] = [];
  before(() => {
    home = makeHome('wzp-relay-config-');
  });
  after(() => {
    for (const r of running) r.kill('SIGKILL');
    home.cleanup();
  });

  test('a missing file is written as the example, with the real address and fingerprint, and the relay serves', async () => {
    const path = join(home.dir, 'new.toml');
    const relay = await startRelay(['-c', path, '--listen', '127.0.0.1:0'], home);
    running.push(relay.cli);
    await relay.cli.when(/created relay config/);
    const text = readFileSync(path, 'utf8');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.match(text, new RegExp(`^listen = "${relay.address}"$`, 'm'), 'the address the relay listens on (port 0 resolved)');
    assert.match(text, new RegExp(`^# {3}fingerprint = "${relay.fingerprint}"$`, 'm'), 'the fingerprint in the peer snippet');
    assert.match(text, new RegExp(`^identity = "${join(home.env.WZP_CONFIG_DIR as string, 'relay-identity.json')}"$`, 'm'));
    const parsed = await readRelayConfig(path);
    assert.equal(parsed?.config.listen, relay.address);
    const s = await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(relay.fingerprint, 'relay') });
    try {
      assert.ok((await s.ping()) >= 0);
    } finally {
      await s.close();
    }
    relay.cli.kill('SIGTERM');
    const done = await relay.cli.done;
    assert.equal(done.code, 0, done.stderr);

    // Started again from the file it wrote: same address, same identity.
    const again = await startRelay(['-c', path], home);
    running.push(again.cli);
    assert.equal(again.address, relay.address);
    assert.equal(again.fingerprint, relay.fingerprint);
    assert.doesNotMatch(again.cli.stderr(), /created relay (config|identity)/);
    again.cli.kill('SIGTERM');
    assert.equal((await again.cli.done).code, 0);
  });

  test('limits from the file; SIGHUP applies an edit live; a broken file is refused and the running config kept', async () => {
    const path = join(home.dir, 'limits.toml');
    const file = (size: number | string, extra = '') => `listen = "127.0.0.1:0"\n\n[limits]\nmax_room_size = ${size}\n${extra}`;
    writeFileSync(path, file(2));
    const relay = await startRelay(['--config', path], home);
    running.push(relay.cli);
    const room = hashRoomName('config-room');
    const members = clients(relay);
    try {
      await members.join(room, 'a');
      await members.join(room, 'b');
      await assert.rejects(members.join(room, 'c'), /room is full \(2 members\)/, 'max_room_size = 2 from the file');

      writeFileSync(path, file(3, 'max_joins_per_minute = 40\n'));
      relay.cli.kill('SIGHUP');
      await relay.cli.when(/relay:reload \S+limits\.toml: 2 changes, 2 applied/);
      const log = relay.cli.stderr();
      assert.match(log, /relay:reload limits\.max_room_size: 2 -> 3\n/);
      assert.match(log, /relay:reload limits\.max_joins_per_minute: \(default 30\) -> 40\n/);
      await members.join(room, 'c');

      // A syntax error, then a bad value: each logged with its line, nothing applied.
      writeFileSync(path, file('= 4'));
      relay.cli.kill('SIGHUP');
      await relay.cli.when(/relay:reload-failed \S+limits\.toml:4:\d+: invalid TOML.*keeping the running config/);
      writeFileSync(path, file(100));
      relay.cli.kill('SIGHUP');
      await relay.cli.when(/relay:reload-failed \S+limits\.toml:4: limits\.max_room_size: must be a whole number from 1 to 64, not 100.*keeping the running config/);
      await assert.rejects(members.join(room, 'd'), /room is full \(3 members\)/, 'still 3: the broken files changed nothing');

      // A key that needs a restart is named, not applied; the live one next to it is.
      writeFileSync(path, `listen = "127.0.0.1:1"\n\n[limits]\nmax_room_size = 4\nmax_joins_per_minute = 40\n`);
      relay.cli.kill('SIGHUP');
      await relay.cli.when(/relay:reload changed in the file but need a restart: listen\n/);
      await relay.cli.when(/relay:reload limits\.max_room_size: 3 -> 4\n/);
      await members.join(room, 'd');
      assert.equal(count(relay.cli.stderr(), /relay:reload limits\.max_room_size/g), 2, 'one line per change');

      // stats is live: load lines start at the new interval.
      assert.doesNotMatch(relay.cli.stderr(), /relay:stats/);
      writeFileSync(path, `listen = "127.0.0.1:1"\nstats = 1\n\n[limits]\nmax_room_size = 4\nmax_joins_per_minute = 40\n`);
      relay.cli.kill('SIGHUP');
      await relay.cli.when(/relay:reload stats: \(default\) -> 1\n/);
      await relay.cli.when(/relay:stats \{"intervalMs"/);
      assert.ok(relay.cli.stderr().split('\n').every((l) => !/relay:reload/.test(l) || l.length < 400), 'reload lines stay one line each');
    } finally {
      await members.close();
    }
    relay.cli.kill('SIGTERM');
    const done = await relay.cli.done;
    assert.equal(done.code, 0, done.stderr);
  });

  test('flags given on the command line override the file, on start and on reload', async () => {
    const path = join(home.dir, 'override.toml');
    writeFileSync(path, '[limits]\nmax_room_size = 5\n');
    const relay = await startRelay(['-c', path, '--listen', '127.0.0.1:0', '--max-room-size', '2'], home);
    running.push(relay.cli);
    const room = hashRoomName('override-room');
    const members = clients(relay);
    try {
      await members.join(room, 'a');
      await members.join(room, 'b');
      await assert.rejects(members.join(room, 'c'), /room is full \(2 members\)/, '--max-room-size 2 wins over the file\'s 5');
      writeFileSync(path, '[limits]\nmax_room_size = 6\n');
      relay.cli.kill('SIGHUP');
      await relay.cli.when(/relay:reload limits\.max_room_size: 5 -> 6 in the file, but --max-room-size 2 on the command line overrides it/);
      await assert.rejects(members.join(room, 'c'), /room is full \(2 members\)/);
    } finally {
      await members.close();
    }
    relay.cli.kill('SIGTERM');
    assert.equal((await relay.cli.done).code, 0);
  });

  test('a bad key at startup: usage error (exit 2) naming the key and its line; the file is left alone', async () => {
    const path = join(home.dir, 'bad.toml');
    const text = 'listen = "127.0.0.1:0"\n[limits]\nmax_room_sise = 3\n';
    writeFileSync(path, text);
    const r = await runCli(['relay', '-c', path], home);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`Error: ${path.replaceAll('.', '\\.')}:3: limits\\.max_room_sise: unknown key in \\[limits\\]`));
    assert.match(r.stderr, /Try this: did you mean limits\.max_room_size\?/);
    assert.doesNotMatch(r.stderr, /listening on/);
    assert.equal(readFileSync(path, 'utf8'), text);
    const j = parseJsonDocument(await runCli(['relay', '-c', path, '--json'], home));
    assert.equal(j.status, 2);
    assert.equal(j.name, 'UsageError');
  });

  test('without --config, SIGHUP is logged and the relay keeps running', async () => {
    const relay = await startRelay(['--listen', '127.0.0.1:0'], home);
    running.push(relay.cli);
    relay.cli.kill('SIGHUP');
    await relay.cli.when(/relay:reload-failed no config file to reload/);
    const s = await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(relay.fingerprint, 'relay') });
    try {
      assert.ok((await s.ping()) >= 0);
    } finally {
      await s.close();
    }
    relay.cli.kill('SIGTERM');
    assert.equal((await relay.cli.done).code, 0);
  });
});

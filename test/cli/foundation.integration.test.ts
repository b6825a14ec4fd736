/**
 * The foundation, end to end through bin/run.js: every command is a separate process, as a
 * user runs it. Traffic stays on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

/**
 * Opus at 24 kbit/s on the test signal measures ~20 dB here; a path that drops, shifts or
 * mis-decodes frames lands far below (see test/client/echo.test.ts for those broken paths).
 */
const OPUS_MIN_SNR_DB = 12;

describe('echo-test with the embedded relay', () => {
  let home: CliHome;
  before(() => (home = makeHome()));
  after(() => home.cleanup());

  test('reports 0% loss and a high SNR as one JSON document', async () => {
    const r = await runCli(['echo-test', '--json', '--duration', '2'], home);
    const doc = parseJsonDocument(r);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(doc.status, 0);
    const res = doc.result as Record<string, any>;
    assert.equal(res.packetsSent, 100);
    assert.equal(res.packetsReceived, 100);
    assert.equal(res.lossPct, 0);
    assert.ok(res.snrDb >= OPUS_MIN_SNR_DB, `SNR ${res.snrDb} dB`);
    assert.equal(res.codec.name, 'opus');
    assert.equal(res.codec.plugin, 'wzp-plugin-codec-opus');
    assert.equal(res.relay.embedded, true);
    assert.match(res.relay.fingerprint, /^([0-9a-f]{4}:){15}[0-9a-f]{4}$/);
    for (const k of ['p50', 'p95', 'max']) assert.ok(res.rttMs[k] >= 0 && res.rttMs[k] < 1000, `rtt ${k}`);
    assert.ok(res.jitterMs >= 0);
    assert.deepEqual(doc.warnings, []);
  });

  test('human output without --json', async () => {
    const r = await runCli(['echo-test', '--duration', '1', '--codec', 'pcm16'], home);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /loss 0%/);
    assert.match(r.stdout, /SNR \d+/);
  });

  test('an unknown codec is a plugin error (exit 8) naming what is registered', async () => {
    const r = await runCli(['echo-test', '--json', '--codec', 'nope'], home);
    const doc = parseJsonDocument(r);
    assert.equal(r.code, 8);
    assert.equal(doc.name, 'PluginError');
    assert.match(String((doc.suggestions as string[])[0]), /opus/);
  });
});

describe('a relay in its own process', () => {
  let relayHome: CliHome;
  let clientHome: CliHome;
  let relay: RunningRelay;
  let identityFile: string;

  before(async () => {
    relayHome = makeHome('wzp-relay-');
    clientHome = makeHome('wzp-client-');
    identityFile = join(relayHome.dir, 'relay-identity.json');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--identity', identityFile], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome.cleanup();
    clientHome.cleanup();
  });

  test('keeps its identity in a private file', () => {
    assert.equal(statSync(identityFile).mode & 0o777, 0o600);
  });

  test('serves echo-test from another process and pins the relay on first use', async () => {
    const r = await runCli(['echo-test', relay.address, '--json', '--duration', '2'], clientHome);
    const doc = parseJsonDocument(r);
    assert.equal(r.code, 0, r.stderr);
    const res = doc.result as Record<string, any>;
    assert.equal(res.lossPct, 0);
    assert.ok(res.snrDb >= OPUS_MIN_SNR_DB, `SNR ${res.snrDb}`);
    assert.equal(res.relay.fingerprint, relay.fingerprint);
    assert.equal(res.relay.trust, 'pinned-new');
    const pins = JSON.parse(readFileSync(join(clientHome.dir, 'config', 'known-relays.json'), 'utf8'));
    assert.equal(pins.relays[relay.address].fingerprint, relay.fingerprint);
  });

  test('serves reflect: the observed address is our own socket', async () => {
    const r = await runCli(['reflect', relay.address, '--json'], clientHome);
    const doc = parseJsonDocument(r);
    assert.equal(r.code, 0, r.stderr);
    const res = doc.result as Record<string, any>;
    assert.match(res.observedAddress, /^127\.0\.0\.1:\d+$/);
    assert.equal(res.observedAddress.split(':')[1], res.localAddress.split(':')[1]);
  });

  test('keeps its fingerprint across a restart; a new identity is refused by a pinned client', async () => {
    const originalFingerprint = relay.fingerprint;
    const stopped = await relay.stop('SIGTERM');
    assert.equal(stopped.code, 0, stopped.stderr);

    const port = relay.address.split(':')[1];
    relay = await startRelayProcess(['--listen', `127.0.0.1:${port}`, '--identity', identityFile], relayHome);
    assert.equal(relay.fingerprint, originalFingerprint, 'same identity file, same certificate fingerprint');
    const again = await runCli(['reflect', relay.address, '--json'], clientHome);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((parseJsonDocument(again).result as any).fingerprint, originalFingerprint);
    await relay.stop('SIGTERM');

    relay = await startRelayProcess(
      ['--listen', `127.0.0.1:${port}`, '--identity', join(relayHome.dir, 'other-identity.json')],
      relayHome,
    );
    assert.notEqual(relay.fingerprint, originalFingerprint);
    const refused = await runCli(['reflect', relay.address, '--json'], clientHome);
    const doc = parseJsonDocument(refused);
    assert.equal(refused.code, 6, refused.stderr);
    assert.equal(doc.name, 'FingerprintMismatchError');
    assert.ok((doc.suggestions as string[]).some((s) => s.includes('wzp pins forget')));

    // An explicit pin for the new identity is accepted and replaces the stored one.
    const explicit = await runCli(['reflect', relay.address, '--json', '--relay-fingerprint', relay.fingerprint], clientHome);
    assert.equal(explicit.code, 0, explicit.stderr);
    const now = await runCli(['reflect', relay.address, '--json'], clientHome);
    assert.equal(now.code, 0, now.stderr);
  });

  test('SIGTERM stops the relay cleanly with a JSON summary', async () => {
    const r2home = makeHome('wzp-relay2-');
    try {
      const r2 = await startRelayProcess(['--listen', '127.0.0.1:0', '--json'], r2home);
      const echo = await runCli(['echo-test', r2.address, '--json', '--duration', '1'], clientHome);
      assert.equal(echo.code, 0, echo.stderr);
      const done = await r2.stop('SIGTERM');
      assert.equal(done.code, 0, done.stderr);
      const doc = parseJsonDocument(done);
      const m = (doc.result as any).metrics;
      assert.equal(m.connectionsTotal >= 1, true);
      assert.equal(m.datagramsEchoed, 50);
      assert.equal((doc.result as any).fingerprint, r2.fingerprint);
    } finally {
      r2home.cleanup();
    }
  });

  test('--stats prints load lines while a room talks; the summary counts what was forwarded', async () => {
    const r3home = makeHome('wzp-relay3-');
    const a = makeHome('wzp-stats-a-');
    const b = makeHome('wzp-stats-b-');
    try {
      const r3 = await startRelayProcess(['--listen', '127.0.0.1:0', '--stats', '1'], r3home);
      const callArgs = (hz: number) => ['call', r3.address, '--room', 'stats', '--tone', String(hz), '--duration', '3', '--no-playback', '--relay-fingerprint', r3.fingerprint];
      const calls = await Promise.all([runCli(callArgs(440), a), runCli(callArgs(700), b)]);
      for (const c of calls) assert.equal(c.code, 0, c.stderr);
      const done = await r3.stop('SIGTERM');
      assert.equal(done.code, 0, done.stderr);
      const stats = done.stderr
        .split('\n')
        .map((line) => /^\S+Z relay:stats (\{.*\})$/.exec(line)?.[1])
        .filter((json): json is string => json !== undefined)
        .map((json) => JSON.parse(json) as { roomsOpen: number; connectionsOpen: number; forwardedPerSecond: number; onUdpPathPerSecond: number });
      // Two members at 50 frames/s, GOOD's FEC adding 3 repairs per 4: ~87 packets/s each way.
      const busy = stats.filter((s) => s.roomsOpen === 1 && s.connectionsOpen === 2);
      assert.ok(busy.some((s) => s.forwardedPerSecond > 140 && s.forwardedPerSecond < 220), done.stderr);
      // The members' media came on the UDP media path (both ways: the same count as forwarded).
      assert.ok(busy.some((s) => s.onUdpPathPerSecond > 140 && s.onUdpPathPerSecond < 220), done.stderr);
      const forwarded = Number(/(\d+) forwarded in rooms/.exec(done.stdout)?.[1]);
      assert.ok(forwarded > 2 * 2.5 * 80, done.stdout);
      const onPath = Number(/\((\d+) on the UDP media path\)/.exec(done.stdout)?.[1]);
      assert.ok(onPath > 2 * 2.5 * 80, done.stdout);
    } finally {
      for (const h of [r3home, a, b]) h.cleanup();
    }
  });

  test('an unreachable relay is a network error (exit 4)', async () => {
    const r = await runCli(['reflect', '127.0.0.1:9', '--json', '--timeout', '0.8'], clientHome);
    const doc = parseJsonDocument(r);
    assert.equal(r.code, 4, r.stderr);
    assert.equal(doc.name, 'NetworkError');
  });
});

describe('plugins', () => {
  let home: CliHome;
  let work: string;
  before(() => {
    home = makeHome('wzp-plugins-');
    work = mkdtempSync(join(tmpdir(), 'wzp-plugin-src-'));
    for (const name of ['wzp-plugin-example', 'wzp-plugin-broken', 'wzp-plugin-duplicate']) {
      cpSync(join(FIXTURES, name), join(work, name), { recursive: true });
    }
  });
  after(() => {
    home.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  test('built-in plugins register their codecs through the hook path', async () => {
    const r = await runCli(['extensions', '--json', '--kind', 'codec'], home);
    assert.equal(r.code, 0, r.stderr);
    const rows = (parseJsonDocument(r).result as any).extensions as any[];
    const byName = Object.fromEntries(rows.map((e) => [e.name, e]));
    assert.equal(byName.opus.plugin, 'wzp-plugin-codec-opus');
    assert.equal(byName.pcm16.plugin, 'wzp-plugin-codec-pcm');
    assert.equal(byName.opus.available, true);
  });

  test('a linked third-party plugin adds a codec that echo-test can use', async () => {
    const link = await runCli(['plugins', 'link', join(work, 'wzp-plugin-example'), '--no-install'], home);
    assert.equal(link.code, 0, link.stderr);
    const list = await runCli(['plugins', '--json'], home);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /wzp-plugin-example/);

    const ext = await runCli(['extensions', '--json'], home);
    const rows = (parseJsonDocument(ext).result as any).extensions as any[];
    const mulaw = rows.find((e) => e.name === 'mulaw');
    assert.ok(mulaw, ext.stdout);
    assert.equal(mulaw.plugin, 'wzp-plugin-example');

    const echo = await runCli(['echo-test', '--codec', 'mulaw', '--duration', '1', '--json'], home);
    const doc = parseJsonDocument(echo);
    assert.equal(echo.code, 0, echo.stderr);
    const res = doc.result as any;
    assert.equal(res.codec.name, 'mulaw');
    assert.equal(res.codec.plugin, 'wzp-plugin-example');
    assert.equal(res.lossPct, 0);
    assert.ok(res.snrDb >= 20, `mulaw SNR ${res.snrDb}`);
  });

  test('a broken plugin and a duplicate name produce warnings naming the plugin, not a crash', async () => {
    for (const name of ['wzp-plugin-broken', 'wzp-plugin-duplicate']) {
      const link = await runCli(['plugins', 'link', join(work, name), '--no-install'], home);
      assert.equal(link.code, 0, link.stderr);
    }
    const r = await runCli(['extensions', '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    const doc = parseJsonDocument(r);
    const warnings = doc.warnings as string[];
    assert.ok(warnings.some((w) => w.includes('wzp-plugin-broken') && w.includes('libfoo')), warnings.join('\n'));
    assert.ok(
      warnings.some((w) => w.includes('wzp-plugin-duplicate') && w.includes('wzp-plugin-codec-opus')),
      warnings.join('\n'),
    );
    const opus = ((doc.result as any).extensions as any[]).find((e) => e.name === 'opus');
    assert.equal(opus.plugin, 'wzp-plugin-codec-opus', 'the first registration stays');

    const human = await runCli(['extensions'], home);
    assert.equal(human.code, 0);
    assert.match(human.stderr, /Warning: .*wzp-plugin-broken/);
    const echo = await runCli(['echo-test', '--duration', '1', '--json'], home);
    assert.equal(echo.code, 0, echo.stderr);
  });
});

describe('every command speaks --json', () => {
  let home: CliHome;
  before(() => (home = makeHome('wzp-json-')));
  after(() => home.cleanup());

  test('identity, pins, extensions and errors each print one JSON document', async () => {
    const created = await runCli(['identity', '--json'], home);
    const c = parseJsonDocument(created);
    assert.equal(created.code, 0, created.stderr);
    assert.equal((c.result as any).created, true);
    assert.equal((c.result as any).mnemonic, undefined, 'the words are not shown unless asked');
    const shown = parseJsonDocument(await runCli(['identity', '--json'], home));
    assert.equal((shown.result as any).created, false);
    assert.equal((shown.result as any).fingerprint, (c.result as any).fingerprint);
    assert.equal((shown.result as any).tlsFingerprint, (c.result as any).tlsFingerprint);
    const path = (c.result as any).path as string;
    assert.equal(statSync(path).mode & 0o777, 0o600);

    const cases: [string[], number][] = [
      [['pins', 'list', '--json'], 0],
      [['pins', 'forget', '127.0.0.1:4433', '--json'], 0],
      [['extensions', '--json'], 0],
      [['echo-test', '--json', '--no-such-flag'], 2],
      [['reflect', 'not-an-address', '--json'], 2],
      [['identity', '--json', '--no-create', '--identity', join(home.dir, 'missing.json')], 3],
    ];
    for (const [args, code] of cases) {
      const r = await runCli(args, home);
      const doc = parseJsonDocument(r);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
      assert.equal(doc.status, code, args.join(' '));
      if (code !== 0) {
        assert.equal(typeof doc.name, 'string');
        assert.equal(typeof doc.message, 'string');
        assert.ok(Array.isArray(doc.suggestions));
      } else {
        assert.ok(Array.isArray(doc.warnings));
      }
    }
  });
});

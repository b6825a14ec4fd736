/**
 * Files written at the end of the work (a call report, a recording, a sweep chart) are checked
 * before the work starts, and reports are replaced atomically.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';

describe('output paths', () => {
  let home: CliHome;
  let silent: Socket;
  let silentPort: number;
  before(async () => {
    home = makeHome('wzp-outputs-');
    silent = createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', () => resolve()));
    silentPort = silent.address().port;
  });
  after(() => {
    silent.close();
    home.cleanup();
  });

  test('sweep --plot into a missing directory fails before sweeping, naming the path', async () => {
    const started = performance.now();
    // A sweep of this size takes well over a minute: the check must come first.
    const r = await runCli(['sweep', '--duration', '120', '--plot', '/nonexistent/x.svg', '--json'], home);
    const elapsed = performance.now() - started;
    const doc = parseJsonDocument(r) as unknown as { status: number; name: string; message: string };
    assert.equal(r.code, 3, r.stderr);
    assert.equal(doc.name, 'ConfigError');
    assert.match(doc.message, /\/nonexistent\/x\.svg: directory \/nonexistent does not exist/);
    assert.ok(elapsed < 15_000, `took ${elapsed} ms`);
  });

  test('call --report, call --record and record FILE into a missing directory fail before connecting', async () => {
    // The relay address answers nothing: connecting first would take 5 s and exit 4.
    const relay = `127.0.0.1:${silentPort}`;
    for (const [args, path] of [
      [['call', relay, '--room', 'r', '--report', '/nonexistent/report.json'], '/nonexistent/report.json'],
      [['call', relay, '--room', 'r', '--record', '/nonexistent/heard.wav'], '/nonexistent/heard.wav'],
      [['record', relay, '/nonexistent/meeting.wav', '--room', 'r'], '/nonexistent/meeting.wav'],
    ] as const) {
      const started = performance.now();
      const r = await runCli([...args, '--json'], home);
      const elapsed = performance.now() - started;
      const doc = parseJsonDocument(r) as unknown as { name: string; message: string };
      assert.equal(r.code, 3, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
      assert.equal(doc.name, 'ConfigError');
      assert.ok(doc.message.includes(path), doc.message);
      assert.ok(elapsed < 4000, `${args[0]} took ${elapsed} ms`);
    }
  });

  test('record from a relay that never answers leaves no WAV file behind', async () => {
    const wav = join(home.dir, 'never.wav');
    const r = await runCli(['record', `127.0.0.1:${silentPort}`, wav, '--room', 'r', '--timeout', '1', '--json'], home);
    const doc = parseJsonDocument(r) as unknown as { name: string; message: string };
    assert.equal(r.code, 4, r.stderr);
    assert.equal(doc.name, 'NetworkError');
    assert.match(doc.message, /did not answer within 1000 ms/);
    assert.equal(existsSync(wav), false, 'no recording');
  });
});

describe('call --report is written atomically', () => {
  let relayHome: CliHome;
  let home: CliHome;
  let relay: RunningRelay;
  before(async () => {
    relayHome = makeHome('wzp-report-relay-');
    home = makeHome('wzp-report-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome.cleanup();
    home.cleanup();
  });

  test('the report replaces the old file whole: a reader of the old one still reads the old one', async () => {
    const path = join(home.dir, 'report.json');
    const old = `${JSON.stringify({ old: true })}\n`;
    writeFileSync(path, old);
    const reader = openSync(path, 'r');
    try {
      const r = await runCli(['call', relay.address, '--room', 'atomic', '--tone', '440', '--duration', '1', '--no-playback', '--report', path, '--json'], home);
      assert.equal(r.code, 0, r.stderr);
      const written = JSON.parse(readFileSync(path, 'utf8')) as { schemaVersion?: number; meta: { schemaVersion: number }; relay: { trust: string } };
      assert.deepEqual(written, (parseJsonDocument(r) as unknown as { result: unknown }).result);
      // One schemaVersion, in meta (the report's own copy is gone), and how the relay was trusted.
      assert.equal(written.schemaVersion, undefined);
      assert.equal(written.meta.schemaVersion, 3);
      assert.equal(written.relay.trust, 'pinned-new');
      // Written in place, the old file would now hold the new report (or part of it).
      const buffer = Buffer.alloc(4096);
      const n = readSync(reader, buffer, 0, buffer.length, 0);
      assert.equal(buffer.subarray(0, n).toString('utf8'), old);
      assert.deepEqual(readdirSync(home.dir).filter((f) => f.startsWith('report.json')), ['report.json'], 'no temporary file left');
    } finally {
      closeSync(reader);
    }
  });
});

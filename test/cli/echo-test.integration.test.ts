/**
 * echo-test as a CI job and a user at a terminal use it: a failed --min-snr check keeps the
 * numbers, Ctrl-C keeps what was measured, and trusting a relay on first use is said once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';

interface EchoResult {
  packetsSent: number;
  packetsReceived: number;
  lossPct: number;
  snrDb: number;
  durationMs: number;
  interrupted?: boolean;
  relay: { trust: string; address: string; fingerprint: string };
}

/** Start `wzp ...args`, send SIGINT once `ready(stderr)` holds (and `afterMs` more), return the outcome. */
function interruptCli(args: string[], home: CliHome, ready: (stderr: string) => boolean, afterMs: number): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const started = Date.now();
    const poll = setInterval(() => {
      if (!sent && (ready(stderr) || Date.now() - started > 15_000)) {
        sent = true;
        setTimeout(() => child.kill('SIGINT'), afterMs);
      }
    }, 50);
    const limit = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(poll);
      clearTimeout(limit);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('echo-test --min-snr', () => {
  let home: CliHome;
  before(() => (home = makeHome('wzp-min-snr-')));
  after(() => home.cleanup());

  test('with --json, a failed check is exit 1 with the measurements in the error document', async () => {
    const r = await runCli(['echo-test', '--duration', '1', '--min-snr', '200', '--json'], home);
    const doc = parseJsonDocument(r) as unknown as { status: number; name: string; message: string; result?: EchoResult & { meta: object } };
    assert.equal(r.code, 1, r.stderr);
    assert.equal(doc.status, 1);
    assert.equal(doc.name, 'CheckFailedError');
    assert.match(doc.message, /below --min-snr 200 dB/);
    assert.ok(doc.result, 'the measurements are in the document');
    assert.ok(doc.result.packetsReceived > 0);
    assert.ok(Number.isFinite(doc.result.snrDb) && doc.result.snrDb > 12, String(doc.result.snrDb));
    assert.ok(doc.result.meta, 'with the report metadata');
  });

  test('without --json, the measurements are printed, then the error', async () => {
    const r = await runCli(['echo-test', '--duration', '1', '--min-snr', '200'], home);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^packets +sent \d+, received \d+/m);
    assert.match(r.stdout, /^audio +SNR [\d.]+ dB/m);
    assert.match(r.stderr, /Error: decoded echo SNR [\d.]+ dB is below --min-snr 200 dB/);
  });

  test('a check that passes exits 0', async () => {
    const r = await runCli(['echo-test', '--duration', '1', '--min-snr', '12', '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(parseJsonDocument(r).status, 0);
  });
});

describe('echo-test interrupted with Ctrl-C', () => {
  let home: CliHome;
  before(() => (home = makeHome('wzp-echo-int-')));
  after(() => home.cleanup());

  test('with --json: status 130 and what was measured so far, marked interrupted', async () => {
    // No progress lines with --json: interrupt a few seconds in (the embedded relay starts in ~1 s).
    const r = await interruptCli(['echo-test', '--duration', '30', '--json'], home, () => true, 3500);
    const doc = parseJsonDocument(r) as unknown as { status: number; result: EchoResult };
    assert.equal(r.code, 130, r.stderr);
    assert.equal(doc.status, 130);
    assert.equal(doc.result.interrupted, true);
    assert.ok(doc.result.packetsReceived > 20, JSON.stringify(doc.result));
    assert.ok(doc.result.durationMs > 500 && doc.result.durationMs < 30_000, String(doc.result.durationMs));
    // Frames still on their way when Ctrl-C came are not counted as lost.
    assert.ok(doc.result.lossPct < 5, String(doc.result.lossPct));
    assert.ok(doc.result.snrDb > 12, String(doc.result.snrDb));
  });

  test('without --json: the summary is printed and says it was interrupted, exit 130', async () => {
    const r = await interruptCli(['echo-test', '--duration', '30'], home, (stderr) => /echo-test via/.test(stderr), 1500);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stdout, /^packets +sent \d+, received \d+/m);
    assert.match(r.stdout, /^interrupted: these figures cover the first [\d.]+ s sent/m);
  });
});

describe('trusting a relay on first use', () => {
  let relayHome: CliHome;
  let relay: RunningRelay;
  before(async () => {
    relayHome = makeHome('wzp-tofu-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome.cleanup();
  });

  test('the first connection says the relay was permanently added, later ones do not; lastSeen moves on', async () => {
    const home = makeHome('wzp-tofu-');
    try {
      const first = await runCli(['echo-test', relay.address, '--duration', '1'], home);
      assert.equal(first.code, 0, first.stderr);
      const added = new RegExp(`permanently added relay ${relay.address.replace(/\./g, '\\.')} to the known relays`);
      assert.match(first.stderr, added);
      assert.ok(first.stderr.includes(`fingerprint ${relay.fingerprint}`), first.stderr);
      const pins = () => JSON.parse(readFileSync(join(home.env.WZP_CONFIG_DIR!, 'known-relays.json'), 'utf8')).relays[relay.address];
      const pinned = pins();
      assert.equal(pinned.firstSeen, pinned.lastSeen);

      const second = await runCli(['echo-test', relay.address, '--duration', '1'], home);
      assert.equal(second.code, 0, second.stderr);
      assert.doesNotMatch(second.stderr, /permanently added/);
      const seen = pins();
      assert.equal(seen.firstSeen, pinned.firstSeen);
      assert.ok(seen.lastSeen > pinned.lastSeen, `lastSeen ${seen.lastSeen} after ${pinned.lastSeen}`);
    } finally {
      home.cleanup();
    }
  });

  test('with --json the notice stays off stderr: the document says relay.trust "pinned-new"', async () => {
    const home = makeHome('wzp-tofu-json-');
    try {
      const r = await runCli(['echo-test', relay.address, '--duration', '1', '--json'], home);
      const doc = parseJsonDocument(r) as unknown as { result: EchoResult; warnings: string[] };
      assert.equal(r.code, 0, r.stderr);
      assert.equal(doc.result.relay.trust, 'pinned-new');
      assert.doesNotMatch(r.stderr, /permanently added/);
      assert.deepEqual(doc.warnings, []);
    } finally {
      home.cleanup();
    }
  });
});

/**
 * Ctrl-C while measuring: `reflect`, `netcheck` and `predict-ports` print (with --json: emit)
 * what they measured so far, marked `interrupted: true`, and exit 130. Each test runs the real
 * CLI against fake STUN servers on loopback, one of which never answers, and sends SIGINT once
 * the servers show that the measurement is under way.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import type { PredictPortsReport } from '../../src/services/predict-ports.js';
import type { ReflectReport } from '../../src/services/reflect.js';
import { BIN, type CliHome, type CliResult, makeHome, parseJsonDocument } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { type FakeStunServer, startFakeStunServer } from '../nat/fake-stun-server.js';
import { loadSchema, validate } from './helpers.js';

/** Runs `wzp ...args`, sends one SIGINT once `ready()` holds (bounded), and waits for the exit. */
async function interrupted(args: string[], home: CliHome, ready: () => boolean): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    await waitFor(() => ready() || child.exitCode !== null, 20_000);
    assert.equal(child.exitCode, null, `exited before the interrupt: ${stdout}\n${stderr}`);
    child.kill('SIGINT');
    const code = await exited;
    return { code, stdout, stderr };
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

describe('Ctrl-C keeps what was measured', () => {
  let stun: FakeStunServer;
  let silent: FakeStunServer;
  let home: CliHome;
  before(async () => {
    stun = await startFakeStunServer();
    silent = await startFakeStunServer({ silent: true });
    home = makeHome('wzp-interrupt-');
  });
  after(async () => {
    await Promise.all([stun.close(), silent.close()]);
    home.cleanup();
  });

  /** Until one of the silent server's request has arrived (so the answering one's too). */
  const waiting = () => {
    const n = silent.requests.length;
    return () => silent.requests.length > n;
  };

  it('reflect --json: the answers already received, status 130', async () => {
    const args = ['reflect', '--json', '--stun', `127.0.0.1:${stun.primary.port},127.0.0.2:${silent.primary.port}`, '--timeout', '20'];
    const r = await interrupted(args, home, waiting());
    assert.equal(r.code, 130, r.stderr);
    const doc = parseJsonDocument(r);
    assert.equal(doc.status, 130);
    const report = doc.result as ReflectReport;
    assert.equal(report.interrupted, true);
    assert.match(report.observations[0].observedAddress ?? '', /^127\.0\.0\.1:\d+$/, 'the answer received before Ctrl-C');
    assert.equal(report.observations[1].observedAddress, undefined);
    assert.equal(report.observedAddress, report.observations[0].observedAddress);
  });

  it('reflect (human): prints the answers and says it was interrupted, exit 130', async () => {
    const args = ['reflect', '--stun', `127.0.0.1:${stun.primary.port},127.0.0.2:${silent.primary.port}`, '--timeout', '20'];
    const r = await interrupted(args, home, waiting());
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stdout, /^127\.0\.0\.1:\d+$/m);
    assert.match(r.stdout, /interrupted/);
  });

  it('predict-ports --json: the endpoints probed so far, status 130', async () => {
    // The RFC 5780 server's four endpoints answer; then the silent one is waited for.
    const args = ['predict-ports', '--json', '--stun', `127.0.0.1:${stun.primary.port},127.0.0.2:${silent.primary.port}`, '--timeout', '20'];
    const r = await interrupted(args, home, waiting());
    assert.equal(r.code, 130, r.stderr);
    const doc = parseJsonDocument(r);
    assert.equal(doc.status, 130);
    const report = doc.result as PredictPortsReport;
    assert.equal(report.interrupted, true);
    assert.equal(report.observations.length, 4);
    assert.equal(report.kind, 'port-preserving');
  });

  it('netcheck --json: the checks that finished, the rest failed or skipped, status 130', async () => {
    // --binding-lifetime keeps the behaviour check busy for seconds after its first answers.
    const args = ['netcheck', '--json', '--no-port-mapping', '--stun', `127.0.0.1:${stun.primary.port}`, '--binding-lifetime', '30', '--timeout', '5'];
    const before = stun.requests.length;
    const r = await interrupted(args, home, () => stun.requests.length >= before + 15);
    assert.equal(r.code, 130, r.stderr);
    const doc = parseJsonDocument(r);
    assert.equal(doc.status, 130);
    const report = doc.result as NetcheckReport;
    assert.deepEqual(validate(report, loadSchema('netcheck-report.schema.json')), []);
    assert.equal(report.interrupted, true);
    assert.match(report.ipv4.reflexiveAddress ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(report.allocation.kind, 'port-preserving');
    assert.equal(report.behaviour.status, 'ok', 'mapping and filtering were measured before Ctrl-C');
    assert.equal(report.behaviour.mapping, 'endpoint-independent');
    assert.ok(report.behaviour.bindingLifetime, 'the lifetime test says what it had');
    assert.ok(report.verdict.reasons.some((reason) => /interrupted/.test(reason)));
  });

  it('netcheck (human): prints the report and says it was interrupted, exit 130', async () => {
    const args = ['netcheck', '--no-port-mapping', '--stun', `127.0.0.1:${stun.primary.port}`, '--binding-lifetime', '30'];
    const before = stun.requests.length;
    const r = await interrupted(args, home, () => stun.requests.length >= before + 15);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stdout, /^verdict/m);
    assert.match(r.stdout, /interrupted after \d+ ms/);
  });
});

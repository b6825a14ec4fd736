/**
 * `wzp direct-test` between two CLI processes through a `wzp relay` process on loopback: the
 * waiting side and the offering side both end with a report and a "direct" verdict (on one
 * machine the pair is the loopback host pair); a test and a call never pass for each other
 * (`wzp listen` declines a test, `--wait` declines a call); usage errors before any relay.
 * The NAT-lab case (a direct path found by nat-sequential) is in test/lab/hard-nat.lab.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeHome, parseJsonDocument, runCli, spawnCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';

type Doc = { status: number; name?: string; message?: string; result?: any };
const doc = (r: CliResult) => parseJsonDocument(r) as Doc;

describe('wzp direct-test through a relay process', () => {
  let relayHome: CliHome;
  let relay: RunningRelay;
  const homes: CliHome[] = [];
  const pin = () => ['--relay-fingerprint', relay.fingerprint];

  async function person(): Promise<{ home: CliHome; fp: string }> {
    const home = makeHome('wzp-dtest-');
    homes.push(home);
    const r = await runCli(['identity', '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    return { home, fp: (doc(r).result as { fingerprint: string }).fingerprint };
  }

  before(async () => {
    relayHome = makeHome('wzp-dtest-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome?.cleanup();
    for (const h of homes) h.cleanup();
  });

  test('--wait and --to: both sides find the pair, confirm it, and say "direct" with what they tried', async () => {
    const [ana, bo] = [await person(), await person()];
    const waiter = spawnCli(['direct-test', relay.address, '--wait', '--accept-from', ana.fp, ...pin(), '--json'], bo.home);
    await waiter.when(/wzp direct-test: registered as/);
    const tester = await runCli(['direct-test', relay.address, '--to', bo.fp, ...pin(), '--json'], ana.home);
    assert.equal(tester.code, 0, tester.stderr);
    const w = await waiter.done;
    assert.equal(w.code, 0, w.stderr);
    for (const [side, r, peer] of [['tester', doc(tester).result, bo.fp], ['waiter', doc(w).result, ana.fp]] as const) {
      assert.equal(r.verdict.kind, 'direct', `${side}: ${JSON.stringify(r.verdict)}`);
      assert.match(r.verdict.summary, /direct calls work between these two networks/);
      assert.equal(r.peer, peer);
      assert.equal(r.endedBy === 'confirmed' || r.endedBy === 'peer-hangup', true, `${side} ended by ${r.endedBy}`);
      assert.equal(r.selected.remoteAddress.startsWith('127.0.0.1:'), true);
      assert.ok(r.timeToDirectMs < 5000, `${side}: direct after ${r.timeToDirectMs} ms`);
      assert.ok(r.direct.pairs.some((p: { state: string }) => p.state === 'succeeded'));
      assert.equal(r.meta.schemaVersion, 1);
    }
    assert.equal(doc(tester).result.role, 'caller');
    assert.equal(doc(w).result.role, 'callee');
  });

  test('a test is not a call: wzp listen declines a test, and --wait declines a call', async () => {
    const [ana, bo] = [await person(), await person()];
    const listener = spawnCli(['listen', relay.address, '--accept-from', ana.fp, '--once', ...pin(), '--json'], bo.home);
    await listener.when(/wzp listen: registered as/);
    const t = await runCli(['direct-test', relay.address, '--to', bo.fp, ...pin(), '--json'], ana.home);
    assert.equal(t.code, 12, t.stderr);
    assert.equal(doc(t).name, 'CallDeclinedError');
    const l = await listener.done;
    assert.equal(l.code, 0, l.stderr);
    assert.equal(doc(l).result.calls[0].outcome, 'declined');

    const waiter = spawnCli(['direct-test', relay.address, '--wait', '--wait-for', '20', ...pin(), '--json'], bo.home);
    await waiter.when(/wzp direct-test: registered as/);
    const c = await runCli(['call', relay.address, '--to', bo.fp, '--duration', '1', '--no-playback', ...pin(), '--json'], ana.home);
    assert.equal(c.code, 12, c.stderr);
    assert.equal(doc(c).name, 'CallDeclinedError');
    // The waiter still waits for a test after turning the call away; Ctrl-C ends it (130).
    waiter.kill('SIGINT');
    const wr = await waiter.done;
    assert.equal(wr.code, 130, wr.stderr);
    assert.equal(doc(wr).name, 'AbortError');
  });

  test('Ctrl-C during a test keeps what it measured: the verdict and pairs are printed, exit 130', async () => {
    const [ana, bo] = [await person(), await person()];
    const waiter = spawnCli(['direct-test', relay.address, '--wait', '--accept-from', ana.fp, ...pin(), '--json'], bo.home);
    await waiter.when(/wzp direct-test: registered as/);
    // Human output: the progress line says when the pair is up (confirmation takes 2 s more).
    const tester = spawnCli(['direct-test', relay.address, '--to', bo.fp, ...pin()], ana.home);
    await tester.when(/confirming\.\.\./);
    tester.kill('SIGINT');
    const t = await tester.done;
    assert.equal(t.code, 130, t.stderr);
    assert.match(t.stdout, /^verdict +direct calls work between these two networks/m);
    assert.match(t.stdout, /^pairs +host -> host 127\.0\.0\.1:\d+ succeeded/m);
    assert.match(t.stdout, /\(we offered the test; hangup/);
    // The other side learns at once that the test ended.
    const w = await waiter.done;
    assert.equal(w.code, 0, w.stderr);
    assert.equal(doc(w).result.endedBy, 'peer-hangup');
  });

  test('usage: --to or --wait is needed, not both; --accept-from only with --wait; nothing is dialled', async () => {
    const home = makeHome('wzp-dtest-usage-');
    homes.push(home);
    const fp = '00'.repeat(32).replace(/(.{4})(?!$)/g, '$1:');
    for (const args of [[], ['--to', fp, '--wait'], ['--to', fp, '--accept-from', fp], ['--wait', '--test-for', '0.5']]) {
      const r = await runCli(['direct-test', '127.0.0.1:9', ...args, '--json'], home);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(doc(r).status, 2);
    }
  });
});

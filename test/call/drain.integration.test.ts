/**
 * Draining a relay and moving calls between relays, every party a separate process started
 * through bin/run.js (docs/relay-operations.md, "Draining and moving clients"):
 * - SIGTERM drains: new joins and registrations are refused (`draining`, exit 10), the members
 *   there keep talking, and the relay exits 0 once they leave, or at --drain-timeout with them
 *   still there; a second SIGTERM stops it at once.
 * - Members given two relays (A,B) move to B when A drains (at its notice) or is killed (lost),
 *   and hear each other again there.
 * Loopback only.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { decodeWav } from '../../core/media/wav.js';
import { toneLevel } from '../helpers/tone-level.js';
import { makeHome, parseJsonDocument, runCli, spawnCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';

const homes: CliHome[] = [];
const relays: RunningRelay[] = [];
function home(prefix = 'wzp-drain-'): CliHome {
  const h = makeHome(prefix);
  homes.push(h);
  return h;
}
async function relay(args: string[] = []): Promise<RunningRelay> {
  const r = await startRelayProcess(['--listen', '127.0.0.1:0', '--json', ...args], home('wzp-drain-relay-'));
  relays.push(r);
  return r;
}
after(async () => {
  for (const r of relays) await r.stop('SIGKILL');
  for (const h of homes) h.cleanup();
});

/** The relay's exit: its code, how long after `since` it came, and its JSON summary. */
async function relayExit(r: RunningRelay, since: number): Promise<{ result: CliResult; afterMs: number; report: any }> {
  const result = await r.stop('SIGCONT'); // a no-op signal: just wait for the exit
  const afterMs = Date.now() - since;
  const doc = parseJsonDocument(result);
  return { result, afterMs, report: doc.result };
}

/** Resolves when the relay writes a line matching `pattern` on stderr from now on. */
function stderrLine(r: RunningRelay, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} from the relay in ${timeoutMs} ms: ${text}`)), timeoutMs);
    r.child.stderr?.on('data', (d) => {
      text += d;
      if (pattern.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** A member of a room with a tone, recording what it hears; its report written to a file. */
function member(relayArg: string, room: string, hz: number, seconds: number, extra: string[] = []) {
  const h = home();
  const wav = join(h.dir, `heard-${hz}.wav`);
  const reportPath = join(h.dir, 'report.json');
  const run = spawnCli(
    ['call', relayArg, '--room', room, '--tone', String(hz), '--duration', String(seconds), '--alias', `tone${hz}`, '--record', wav, '--no-playback', '--report', reportPath, ...extra],
    h,
  );
  return {
    hz,
    wav,
    run,
    async report(): Promise<{ code: number | null; report: any; stderr: string }> {
      const r = await run.done;
      return { code: r.code, report: r.code === 0 ? JSON.parse(readFileSync(reportPath, 'utf8')) : undefined, stderr: r.stderr };
    },
  };
}

/**
 * The level of `hz` over the last `seconds` of a recording, and of the recorder's own tone:
 * the median of half-second blocks. toneLevel() is phase-coherent over its window, so one
 * time-stretch of the jitter buffer (a few samples inserted or dropped under load) in a 4 s
 * window could cancel half of a tone that was heard throughout; each block is coherent on its
 * own, and the median says whether the tone went on for most of the window.
 */
function heardAtEnd(wav: string, hz: number, own: number, seconds: number): { level: number; own: number } {
  const pcm = decodeWav(readFileSync(wav)).samples;
  const block = 24_000;
  const blocks = Math.floor(Math.min(pcm.length, 48_000 * seconds) / block);
  const median = (f: number): number => {
    const levels = Array.from({ length: blocks }, (_, i) => toneLevel(pcm.subarray(0, pcm.length - i * block), f, block / 48_000)).sort((x, y) => x - y);
    return levels[Math.floor(levels.length / 2)] ?? 0;
  };
  return { level: median(hz), own: median(own) };
}

describe('relay drain (SIGTERM)', () => {
  test('new joins and registrations are refused as draining, the members go on talking, the relay exits 0 when they leave', async () => {
    const r = await relay(['--drain-timeout', '30']);
    const fp = ['--relay-fingerprint', r.fingerprint];
    const a = member(r.address, 'drain-room', 440, 10, fp);
    const b = member(r.address, 'drain-room', 700, 10, fp);
    await a.run.when(/tone700 joined/);
    await b.run.when(/tone440 joined/);
    await new Promise((res) => setTimeout(res, 1000));
    const termAt = Date.now();
    r.child.kill('SIGTERM');
    // A newcomer is refused with a clear reason and exit code 10.
    await new Promise((res) => setTimeout(res, 300));
    const late = await runCli(['call', r.address, '--room', 'drain-room', '--tone', '900', '--duration', '3', '--no-playback', '--json', ...fp], home(), 30_000);
    assert.equal(late.code, 10, late.stdout + late.stderr);
    const lateDoc = parseJsonDocument(late) as any;
    assert.equal(lateDoc.name, 'RelayDrainingError');
    assert.match(lateDoc.message, /is draining/);
    // So is a registration (wzp listen).
    const listener = await runCli(['listen', r.address, '--once', '--json', ...fp], home(), 30_000);
    assert.equal(listener.code, 10, listener.stdout + listener.stderr);
    assert.match((parseJsonDocument(listener) as any).message, /is draining/);
    // The members were told and stay (they have no other relay), and keep hearing each other.
    for (const m of [a, b]) {
      const { code, report, stderr } = await m.report();
      assert.equal(code, 0, stderr);
      assert.equal(report.endedBy, 'duration');
      assert.deepEqual(report.reconnects, []);
      assert.match(stderr, /is draining \(stopping within 30 s\); this call has no other relay/);
      const other = m.hz === 440 ? 700 : 440;
      // The last 4 s are all after the SIGTERM (~3 s into a 10 s call).
      const heard = heardAtEnd(m.wav, other, m.hz, 4);
      assert.ok(heard.level > 1000 && heard.level > 20 * heard.own, `${m.hz} hears ${other} Hz after the drain began: ${JSON.stringify(heard)}`);
      const p = report.participants.find((x: any) => x.alias === `tone${other}`);
      assert.ok(p.framesReceived > 350, `frames received over the call: ${p.framesReceived}`);
    }
    const exit = await relayExit(r, termAt);
    assert.equal(exit.result.code, 0, exit.result.stderr);
    assert.match(exit.result.stderr, /wzp relay draining: refusing new sessions, 2 in progress/);
    assert.equal(exit.report.drain.endedBy, 'empty');
    assert.equal(exit.report.drain.sessionsAtStart, 2);
    assert.equal(exit.report.drain.sessionsLeft, 0);
    assert.ok(exit.report.metrics.refused.draining >= 2, JSON.stringify(exit.report.metrics.refused));
    // It stopped once they left (their calls ended ~7 s after the SIGTERM), not at the 30 s timeout.
    assert.ok(exit.afterMs < 15_000, `exited ${exit.afterMs} ms after SIGTERM`);
  });

  test('the drain timeout stops the relay with members still there', async () => {
    const r = await relay(['--drain-timeout', '2']);
    const fp = ['--relay-fingerprint', r.fingerprint, '--reconnect', '0'];
    const a = member(r.address, 'timeout-room', 440, 30, fp);
    const b = member(r.address, 'timeout-room', 700, 30, fp);
    await a.run.when(/tone700 joined/);
    const termAt = Date.now();
    r.child.kill('SIGTERM');
    const exit = await relayExit(r, termAt);
    assert.equal(exit.result.code, 0, exit.result.stderr);
    assert.equal(exit.report.drain.endedBy, 'timeout');
    assert.equal(exit.report.drain.sessionsLeft, 2);
    assert.ok(exit.afterMs >= 1900 && exit.afterMs < 8000, `exited ${exit.afterMs} ms after SIGTERM`);
    // Without --reconnect the members end as relay-lost.
    for (const m of [a, b]) {
      const { code, report, stderr } = await m.report();
      assert.equal(code, 0, stderr);
      assert.equal(report.endedBy, 'relay-lost');
    }
  });

  test('a registered listener is told; with no call in progress the relay stops at once', async () => {
    const r = await relay(['--drain-timeout', '30']);
    const l = spawnCli(['listen', r.address, '--relay-fingerprint', r.fingerprint], home());
    await l.when(/wzp listen: registered as/);
    const termAt = Date.now();
    r.child.kill('SIGTERM');
    await l.when(/is draining \(stopping within 30 s\): it passes on no new calls/, 10_000);
    const exit = await relayExit(r, termAt);
    assert.equal(exit.result.code, 0, exit.result.stderr);
    // A registration is no session to wait for.
    assert.equal(exit.report.drain.endedBy, 'empty');
    assert.equal(exit.report.drain.sessionsAtStart, 0);
    assert.ok(exit.afterMs < 3000, `exited ${exit.afterMs} ms after SIGTERM`);
    l.kill('SIGINT');
    await l.done;
  });

  test('a second SIGTERM stops a draining relay at once, with its summary', async () => {
    const r = await relay(['--drain-timeout', '120']);
    const a = member(r.address, 'twice-room', 440, 30, ['--relay-fingerprint', r.fingerprint, '--reconnect', '0']);
    await a.run.when(/joined room/);
    const termAt = Date.now();
    const draining = stderrLine(r, /wzp relay draining/);
    r.child.kill('SIGTERM');
    await draining;
    const secondAt = Date.now();
    r.child.kill('SIGTERM');
    const exit = await relayExit(r, secondAt);
    assert.equal(exit.result.code, 0, exit.result.stderr);
    assert.match(exit.result.stderr, /wzp relay draining/);
    assert.equal(exit.report.drain.endedBy, 'stopped');
    assert.equal(exit.report.drain.sessionsLeft, 1);
    assert.ok(exit.afterMs < 3000, `exited ${exit.afterMs} ms after the second SIGTERM`);
    assert.ok(Date.now() - termAt < 10_000);
    const { code, report } = await a.report();
    assert.equal(code, 0);
    assert.equal(report.endedBy, 'relay-lost');
  });
});

describe('calls given two relays move between them', () => {
  test('a call whose first relay is already draining starts by moving to the next', async () => {
    const relayA = await relay(['--drain-timeout', '20']);
    const relayB = await relay();
    // Someone stays on A, so that it drains instead of stopping at once.
    const stayer = member(relayA.address, 'late-room', 300, 12, ['--relay-fingerprint', relayA.fingerprint, '--reconnect', '0']);
    await stayer.run.when(/joined room/);
    const draining = stderrLine(relayA, /wzp relay draining/);
    relayA.child.kill('SIGTERM');
    await draining;
    const m = member(`${relayA.address},${relayB.address}`, 'late-room', 440, 4, ['--relay-fingerprint', `${relayA.fingerprint},${relayB.fingerprint}`]);
    const { code, report, stderr } = await m.report();
    assert.equal(code, 0, stderr);
    assert.match(stderr, /is draining .*moving to the next relay/);
    assert.equal(report.relay.address, relayA.address);
    assert.deepEqual(report.reconnects.map((c: any) => [c.reason, c.relay]), [['drain', relayB.address]]);
    assert.equal(report.endedBy, 'duration');
    await stayer.run.done;
  });

  test('when every relay is gone the call ends as relay-lost within --reconnect, saying so', async () => {
    const relayA = await relay();
    const relayB = await relay();
    const m = member(`${relayA.address},${relayB.address}`, 'gone-room', 440, 60, ['--relay-fingerprint', `${relayA.fingerprint},${relayB.fingerprint}`, '--reconnect', '9']);
    await m.run.when(/joined room/);
    const killedAt = Date.now();
    await Promise.all([relayA.stop('SIGKILL'), relayB.stop('SIGKILL')]);
    const { code, report, stderr } = await m.report();
    const endedAfter = Date.now() - killedAt;
    assert.equal(code, 0, stderr);
    assert.equal(report.endedBy, 'relay-lost');
    assert.match(stderr, /gave up getting back to a relay: \d attempts in 9\.\d s, the last: /);
    // Attempts alternate between the two (each waits up to 4 s for an answer) and back off: a handful, not a spin.
    const attempts = [...stderr.matchAll(/reconnect attempt \d+ \((\S+)\) failed/g)].map((x) => x[1]);
    assert.deepEqual(attempts.slice(0, 2), [relayB.address, relayA.address], stderr);
    assert.ok(attempts.length >= 2 && attempts.length <= 6, stderr);
    // ~4.5 s to notice the silence, 9 s of attempts.
    assert.ok(endedAfter < 20_000, `ended ${endedAfter} ms after the relays died`);
  });

  test('a list of relays that all fail at the start is one clear error naming each', async () => {
    const a = await relay();
    const b = await relay();
    await Promise.all([a.stop('SIGKILL'), b.stop('SIGKILL')]);
    const t0 = Date.now();
    const r = await runCli(['call', `${a.address},${b.address}`, '--room', 'none', '--tone', '440', '--duration', '2', '--timeout', '1', '--json'], home(), 30_000);
    const doc = parseJsonDocument(r) as any;
    assert.notEqual(r.code, 0);
    assert.equal(doc.status, r.code);
    assert.match(doc.message, new RegExp(`no relay of ${a.address}, ${b.address} could be used: ${a.address}: .*; ${b.address}: `));
    assert.ok(Date.now() - t0 < 10_000);
  });

  for (const how of ['drain', 'lost'] as const) {
    test(`A ${how === 'drain' ? 'drains (SIGTERM)' : 'is killed (SIGKILL)'}: both members move to B and hear each other there`, async () => {
      const relayA = await relay(['--drain-timeout', '20']);
      const relayB = await relay();
      const list = `${relayA.address},${relayB.address}`;
      const fp = ['--relay-fingerprint', `${relayA.fingerprint},${relayB.fingerprint}`];
      const seconds = how === 'drain' ? 10 : 15;
      const a = member(list, `move-${how}`, 440, seconds, fp);
      const b = member(list, `move-${how}`, 700, seconds, fp);
      await a.run.when(/tone700 joined/);
      await b.run.when(/tone440 joined/);
      await new Promise((res) => setTimeout(res, 1000));
      const at = Date.now();
      relayA.child.kill(how === 'drain' ? 'SIGTERM' : 'SIGKILL');
      // Both are on B again: each sees the other join there.
      await Promise.all([a.run.when(new RegExp(`on relay ${relayB.address.replace(/\./g, '\\.')}`), 15_000), b.run.when(new RegExp(`on relay ${relayB.address.replace(/\./g, '\\.')}`), 15_000)]);
      const movedAfter = Date.now() - at;
      // A drain notice moves them at once; a killed relay is noticed within ~4.5 s of silence.
      assert.ok(movedAfter < (how === 'drain' ? 4000 : 10_000), `moved ${movedAfter} ms after A went`);
      if (how === 'drain') {
        const exit = await relayExit(relayA, at);
        assert.equal(exit.result.code, 0, exit.result.stderr);
        assert.equal(exit.report.drain.endedBy, 'empty', 'A stopped once both had left for B');
        assert.ok(exit.afterMs < 8000, `A exited ${exit.afterMs} ms after SIGTERM`);
      }
      for (const m of [a, b]) {
        const { code, report, stderr } = await m.report();
        assert.equal(code, 0, stderr);
        assert.equal(report.endedBy, 'duration');
        assert.deepEqual(report.relays, [relayA.address, relayB.address]);
        assert.equal(report.relay.address, relayA.address, 'started on A');
        assert.equal(report.reconnects.length, 1, JSON.stringify(report.reconnects));
        const [move] = report.reconnects;
        assert.equal(move.reason, how);
        assert.equal(move.relay, relayB.address);
        assert.ok(move.outageMs < (how === 'drain' ? 3000 : 8000), JSON.stringify(move));
        const other = m.hz === 440 ? 700 : 440;
        // Frames from the other member after the move: its session on B is a second entry.
        const sessions = report.participants.filter((p: any) => p.alias === `tone${other}`);
        assert.ok(sessions.length >= 2, JSON.stringify(report.participants.map((p: any) => [p.alias, p.left, p.framesReceived])));
        // Heard on A before the move, and on B after it (one entry per room session).
        const frames = sessions.map((x: any) => x.framesReceived);
        assert.ok(frames.every((n: number) => n > 0) && Math.max(...frames) > 200, `frames from ${other} Hz in each session: ${JSON.stringify(frames)}`);
        const heard = heardAtEnd(m.wav, other, m.hz, 3);
        assert.ok(heard.level > 1000 && heard.level > 20 * heard.own, `${m.hz} hears ${other} Hz on B: ${JSON.stringify(heard)}`);
      }
    });
  }
});

/**
 * 1:1 calls by identity (`wzp call RELAY --to FP`, `wzp listen RELAY`), every party a real
 * CLI process and the relay a `wzp relay` process on loopback: audio both ways through the
 * relay at once, and each outcome with its exit code and JSON document (declined, busy,
 * offline, no answer, hang-up from either side, Ctrl-C on either side, --accept-from turning
 * others away, a relay limit on registrations).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PresenceClient } from '../../core/client/presence.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { decodeWav } from '../../core/media/wav.js';
import { expectFingerprint, parseDialTarget } from '../../core/transport/quic.js';
import { BIN, makeHome, parseJsonDocument, runCli, spawnCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';
import { toneLevel } from '../helpers/tone-level.js';

type Doc = { status: number; name?: string; message?: string; result?: any };

function doc(r: CliResult): Doc {
  return parseJsonDocument(r) as Doc;
}

describe('1:1 calls by identity through a relay process', () => {
  let relayHome: CliHome;
  let relay: RunningRelay;
  const homes: CliHome[] = [];
  const pin = () => ['--relay-fingerprint', relay.fingerprint];

  /** A client home with an identity; returns it with its fingerprint. */
  async function person(): Promise<{ home: CliHome; fp: string }> {
    const home = makeHome('wzp-direct-');
    homes.push(home);
    const r = await runCli(['identity', '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    return { home, fp: (doc(r).result as { fingerprint: string }).fingerprint };
  }

  before(async () => {
    relayHome = makeHome('wzp-direct-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome?.cleanup();
    for (const h of homes) h.cleanup();
  });

  test('listen --accept-from + call --to: answered at once, each hears the other through the relay, the callee ends with success when the caller hangs up', async () => {
    const [ana, bo] = [await person(), await person()];
    const boWav = join(bo.home.dir, 'heard.wav');
    const anaWav = join(ana.home.dir, 'heard.wav');
    const listener = spawnCli(['listen', relay.address, '--accept-from', ana.fp, '--tone', '700', '--once', '--record', boWav, ...pin(), '--json'], bo.home);
    await listener.when(/wzp listen: registered as/);
    const caller = await runCli(['call', relay.address, '--to', bo.fp, '--tone', '440', '--duration', '4', '--record', anaWav, '--no-playback', ...pin(), '--json'], ana.home);
    assert.equal(caller.code, 0, caller.stderr);
    const c = doc(caller).result;
    assert.equal(c.endedBy, 'duration');
    assert.equal(c.direct.role, 'caller');
    assert.equal(c.direct.peer, bo.fp);
    assert.equal(c.direct.peerKnown, false);
    assert.equal(c.direct.relayCandidate.address, '127.0.0.1', 'cross-wired: what the relay saw of the callee');
    // On a loopback relay both ends are on this machine: each announces its loopback socket only.
    assert.deepEqual(
      c.direct.peerCandidates.map((x: { type: string; address: string }) => `${x.type} ${x.address}`),
      ['host 127.0.0.1'],
    );
    // The media started on the relay and moved to the direct path.
    assert.equal(c.path.attempted, true);
    assert.equal(c.path.final, 'direct', JSON.stringify(c.path.timeline));
    assert.deepEqual(
      c.path.timeline.map((t: { event: string; path: string }) => `${t.event} ${t.path}`).slice(0, 1),
      ['answered relay'],
    );
    assert.ok(c.path.timeToDirectMs !== undefined && c.path.timeToDirectMs < 3000, `direct after ${c.path.timeToDirectMs} ms`);
    // The switch's gap was measured (its window closed inside the 4 s call), and it is part of
    // what the whole call concealed.
    const up = c.path.timeline.find((t: { event: string; path: string }) => t.event === 'switch' && t.path === 'direct');
    assert.equal(typeof up.concealedFrames, 'number', JSON.stringify(up));
    assert.ok(up.concealedFrames <= c.participants[0].concealedFrames, JSON.stringify(up));
    assert.equal(c.path.direct.selected.types, 'host -> host');
    assert.ok(c.firstAudioMs !== undefined && c.firstAudioMs < 2000, `first audio ${c.firstAudioMs} ms after joining`);
    assert.equal(c.participants.length, 1);
    assert.equal(c.participants[0].fingerprint, bo.fp);
    assert.equal(c.participants[0].trust, 'allowed');
    assert.ok(Object.values(c.direct.signalsDropped).every((n) => n === 0), JSON.stringify(c.direct.signalsDropped));
    // A loopback relay: neither side measures or sends a NAT profile (no NAT between them).
    assert.deepEqual(c.path.nat, { remoteStatus: 'absent' });
    const l = await listener.done;
    assert.equal(l.code, 0, l.stderr);
    const ld = doc(l).result;
    assert.equal(ld.endedBy, 'once');
    assert.equal(ld.calls.length, 1);
    assert.equal(ld.calls[0].outcome, 'answered');
    assert.equal(ld.calls[0].caller, ana.fp);
    assert.equal(ld.call.endedBy, 'peer-hangup');
    assert.equal(ld.call.direct.callId, c.direct.callId);
    // Both first keys came from the call secret: the caller wrapped no key (the callee rotated
    // once when the caller left, a key for nobody), and every packet opened from the first (the
    // peer was sent full headers on its admission, without a key rotation).
    assert.equal(c.keyRotations, 0);
    assert.ok(ld.call.keyRotations <= 1, `callee rotated ${ld.call.keyRotations} times`);
    for (const r of [c, ld.call]) {
      assert.equal(r.participants[0].malformed, 0);
      assert.equal(r.participants[0].decryptRejected, 0);
    }
    // Each heard the other's tone, not its own.
    for (const [wav, hears, own] of [[anaWav, 700, 440], [boWav, 440, 700]] as const) {
      const heard = decodeWav(readFileSync(wav)).samples;
      const level = toneLevel(heard, hears);
      assert.ok(level > 1000, `${wav}: ${hears} Hz at ${level.toFixed(0)}`);
      assert.ok(level > 20 * toneLevel(heard, own), `${wav}: own tone ${toneLevel(heard, own).toFixed(0)}`);
    }
    // The room's name (half of what admits to it) is not in either report.
    assert.equal(c.room, undefined);
    assert.equal(ld.call.room, undefined);
  });

  test('a listener without a terminal and without --accept-from declines (exit 12); --accept-from turns others away (exit 12)', async () => {
    const [ana, bo, cy] = [await person(), await person(), await person()];
    // --no-hard-nat is a 1:1 call's flag on both commands (a room call refuses it: the CLI contract).
    const plain = spawnCli(['listen', relay.address, '--once', '--no-hard-nat', ...pin(), '--json'], bo.home);
    await plain.when(/registered as/);
    const r1 = await runCli(['call', relay.address, '--to', bo.fp, '--no-hard-nat', ...pin(), '--json'], ana.home);
    assert.equal(r1.code, 12, r1.stderr);
    assert.equal(doc(r1).name, 'CallDeclinedError');
    const l1 = await plain.done;
    assert.equal(l1.code, 0, l1.stderr);
    assert.equal(doc(l1).result.calls[0].outcome, 'declined');

    const picky = spawnCli(['listen', relay.address, '--accept-from', cy.fp, ...pin(), '--json'], bo.home);
    await picky.when(/registered as/);
    const r2 = await runCli(['call', relay.address, '--to', bo.fp, ...pin()], ana.home);
    assert.equal(r2.code, 12);
    assert.match(r2.stderr, /Error: .* declined the call/);
    picky.kill('SIGINT');
    const l2 = await picky.done;
    assert.equal(l2.code, 0, l2.stderr);
    const d2 = doc(l2).result;
    assert.equal(d2.endedBy, 'interrupted');
    assert.deepEqual(d2.calls.map((x: { caller: string; outcome: string }) => [x.caller, x.outcome]), [[ana.fp, 'declined']]);
  });

  test('offline (exit 11), and no answer within --ring-timeout (exit 14)', async () => {
    const ana = await person();
    const nobody = generateIdentity().fingerprint;
    const r1 = await runCli(['call', relay.address, '--to', nobody, ...pin(), '--json'], ana.home);
    assert.equal(r1.code, 11, r1.stderr);
    assert.equal(doc(r1).name, 'CalleeOfflineError');
    // A callee that is registered but never answers: rings forever.
    const silent = generateIdentity();
    const session = await RelaySession.open({ relay: parseDialTarget(relay.address), verify: expectFingerprint(relay.fingerprint, 'relay') });
    try {
      const presence = await PresenceClient.register(session, silent);
      const offers: string[] = [];
      const hangups: string[] = [];
      presence.onOffer((o) => {
        offers.push(o.from);
        presence.track(o.callId, (m) => hangups.push(m.type));
      });
      const t0 = Date.now();
      const r2 = await runCli(['call', relay.address, '--to', silent.fingerprint, '--ring-timeout', '1.5', ...pin(), '--json'], ana.home);
      assert.equal(r2.code, 14, r2.stderr);
      const d2 = doc(r2);
      assert.equal(d2.name, 'NoAnswerError');
      assert.match(String(d2.message), /did not answer within 2 s|did not answer within 1 s/);
      assert.ok(Date.now() - t0 >= 1500);
      assert.deepEqual(offers, [ana.fp]);
      // The caller hung up on giving up: the callee stops ringing.
      assert.deepEqual(hangups, ['hangup']);
    } finally {
      await session.close();
    }
  });

  test('busy: a call to someone in a call is told busy (exit 13)', async () => {
    const [ana, bo, cy] = [await person(), await person(), await person()];
    const listener = spawnCli(['listen', relay.address, '--accept-from', ana.fp, '--accept-from', cy.fp, '--tone', '700', ...pin(), '--json'], bo.home);
    await listener.when(/registered as/);
    const first = spawnCli(['call', relay.address, '--to', bo.fp, '--tone', '440', '--duration', '6', '--no-playback', ...pin(), '--json'], ana.home);
    await listener.when(/wzp listen: answered/);
    const r = await runCli(['call', relay.address, '--to', bo.fp, ...pin(), '--json'], cy.home);
    assert.equal(r.code, 13, r.stderr);
    assert.equal(doc(r).name, 'CalleeBusyError');
    const f = await first.done;
    assert.equal(f.code, 0, f.stderr);
    listener.kill('SIGINT');
    const l = await listener.done;
    assert.equal(l.code, 0, l.stderr);
    const outcomes = doc(l).result.calls.map((x: { caller: string; outcome: string }) => [x.caller, x.outcome]);
    assert.deepEqual(outcomes.sort(), [[ana.fp, 'answered'], [cy.fp, 'busy']].sort());
  });

  test('hang-up from the callee (--duration), and Ctrl-C on either side: the other side ends with success', async () => {
    const [ana, bo] = [await person(), await person()];
    // The callee hangs up after 2 s; the caller would talk on.
    const l1 = spawnCli(['listen', relay.address, '--accept-from', ana.fp, '--duration', '2', '--once', ...pin(), '--json'], bo.home);
    await l1.when(/registered as/);
    const c1 = await runCli(['call', relay.address, '--to', bo.fp, '--no-playback', ...pin(), '--json'], ana.home);
    assert.equal(c1.code, 0, c1.stderr);
    assert.equal(doc(c1).result.endedBy, 'peer-hangup');
    const r1 = await l1.done;
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(doc(r1).result.call.endedBy, 'duration');

    // Ctrl-C on the caller.
    const l2 = spawnCli(['listen', relay.address, '--accept-from', ana.fp, '--once', ...pin(), '--json'], bo.home);
    await l2.when(/registered as/);
    const c2 = spawnCli(['call', relay.address, '--to', bo.fp, '--no-playback', ...pin(), '--json'], ana.home);
    await l2.when(/wzp listen: answered/);
    await new Promise((r) => setTimeout(r, 1500));
    c2.kill('SIGINT');
    const [rc2, rl2] = await Promise.all([c2.done, l2.done]);
    assert.equal(rc2.code, 0, rc2.stderr);
    assert.equal(doc(rc2).result.endedBy, 'hangup');
    assert.equal(rl2.code, 0, rl2.stderr);
    assert.equal(doc(rl2).result.call.endedBy, 'peer-hangup');

    // Ctrl-C on the listener, mid-call: it hangs up, then stops.
    const l3 = spawnCli(['listen', relay.address, '--accept-from', ana.fp, ...pin(), '--json'], bo.home);
    await l3.when(/registered as/);
    const c3 = spawnCli(['call', relay.address, '--to', bo.fp, '--no-playback', ...pin(), '--json'], ana.home);
    await l3.when(/wzp listen: answered/);
    await new Promise((r) => setTimeout(r, 1500));
    l3.kill('SIGINT');
    const [rc3, rl3] = await Promise.all([c3.done, l3.done]);
    assert.equal(rc3.code, 0, rc3.stderr);
    assert.equal(doc(rc3).result.endedBy, 'peer-hangup');
    assert.equal(rl3.code, 0, rl3.stderr);
    const d3 = doc(rl3).result;
    assert.equal(d3.endedBy, 'interrupted');
    assert.equal(d3.calls[0].endedBy, 'hangup');
  });

  test('on a terminal, a call rings with the caller shown: y answers, n declines', async () => {
    const [ana, bo] = [await person(), await person()];
    // `script` gives the listener a pseudo-terminal; what we write to its stdin is typed there.
    const command = 'exec ' + [process.execPath, BIN, 'listen', relay.address, '--tone', '700', ...pin()].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], { env: bo.home.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    child.stdout.on('data', (d) => (screen += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const seen = async (pattern: RegExp, count = 1) => {
      const until = Date.now() + 20_000;
      while ((screen.match(new RegExp(pattern.source, 'g')) ?? []).length < count) {
        if (Date.now() > until) throw new Error(`no ${pattern} on the terminal:\n${screen}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await seen(/registered as/);
      const first = runCli(['call', relay.address, '--to', bo.fp, '--duration', '2', '--no-playback', ...pin(), '--json'], ana.home);
      await seen(/answer\? \[y\/n\]/);
      assert.match(screen, new RegExp(`incoming call from ${ana.fp}`));
      assert.match(screen, /new: never met/);
      child.stdin.write('y');
      const r1 = await first;
      assert.equal(r1.code, 0, r1.stderr);
      assert.equal(doc(r1).result.endedBy, 'duration');
      await seen(/ended \(peer-hangup\)/);
      const second = runCli(['call', relay.address, '--to', bo.fp, ...pin(), '--json'], ana.home);
      await seen(/answer\? \[y\/n\]/, 2);
      // Met in the first call now: shown as known.
      assert.match(screen.slice(screen.lastIndexOf('incoming call')), /known/);
      child.stdin.write('n');
      const r2 = await second;
      assert.equal(r2.code, 12, r2.stderr);
      assert.equal(doc(r2).name, 'CallDeclinedError');
      // Ctrl-C typed on the terminal stops listening, with the summary.
      await new Promise((r) => setTimeout(r, 300));
      child.stdin.write('\x03');
      assert.equal(await exited, 0, screen);
      assert.match(screen, /: answered, /);
      assert.match(screen, /: declined/);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a relay over its registration limit refuses a listener (exit 10) with its reason', async () => {
    const limitedHome = makeHome('wzp-direct-relay2-');
    homes.push(limitedHome);
    const limited = await startRelayProcess(['--listen', '127.0.0.1:0', '--max-registrations-per-ip', '1'], limitedHome);
    try {
      const [ana, bo] = [await person(), await person()];
      const first = spawnCli(['listen', limited.address, '--relay-fingerprint', limited.fingerprint, '--json'], ana.home);
      await first.when(/registered as/);
      const second = await runCli(['listen', limited.address, '--relay-fingerprint', limited.fingerprint, '--json'], bo.home);
      assert.equal(second.code, 10, second.stderr);
      const d = doc(second);
      assert.equal(d.name, 'RefusedError');
      assert.match(String(d.message), /too many identities registered from 127\.0\.0\.1 \(this relay allows 1\)/);
      first.kill('SIGINT');
      assert.equal((await first.done).code, 0);
      const summary = await limited.stop('SIGINT');
      assert.match(summary.stdout + summary.stderr, /1 source-registrations/);
    } finally {
      await limited.stop('SIGKILL');
    }
  });
});

/**
 * Calls through a relay, every party a separate process started through bin/run.js:
 * group calls (each hears the others' tones, not its own), recordings that survive Ctrl-C and
 * a killed relay, hang-up seen by the others at once. Loopback only.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeWav } from '../../core/media/wav.js';
import { toneLevel } from '../helpers/tone-level.js';
import { stereoTone24 } from '../helpers/wav-bytes.js';
import { BIN, makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';

function spawnCli(args: string[], home: CliHome): { done: Promise<CliResult>; kill(sig: NodeJS.Signals): void; stderr: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { done, kill: (sig) => child.kill(sig), stderr: () => stderr };
}

/** A UDP port nothing is bound to at the moment (for a relay that must come back on the same one). */
async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('calls through a relay process', () => {
  let relayHome: CliHome;
  let relay: RunningRelay;
  const homes: CliHome[] = [];
  const home = () => {
    const h = makeHome('wzp-caller-');
    homes.push(h);
    return h;
  };

  before(async () => {
    relayHome = makeHome('wzp-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome.cleanup();
    for (const h of homes) h.cleanup();
  });

  test('group call: three members each hear the two other tones and not their own; two of them are one identity', async () => {
    const tones = [440, 700, 1100];
    // The first two share a config directory, so one identity (created by whichever starts
    // first) joins twice, as the same 24 words on a laptop and a phone would: two sessions,
    // each a member of its own. The third keeps its media in QUIC datagrams (--media-path
    // quic) while the others take the UDP media path: the relay forwards between the two.
    const shared = home();
    const parties = tones.map((hz, i) => {
      const h = i < 2 ? shared : home();
      const wav = join(h.dir, `heard-${hz}.wav`);
      const run = runCli(
        ['call', relay.address, '--room', 'group-test', '--tone', String(hz), '--duration', '7', '--alias', `tone${hz}`,
          '--record', wav, '--no-playback', '--relay-fingerprint', relay.fingerprint, '--json', ...(i === 2 ? ['--media-path', 'quic'] : [])],
        h,
        60_000,
      );
      return { hz, wav, run, i };
    });
    const results = await Promise.all(parties.map((p) => p.run));
    const reports = results.map((r) => {
      assert.equal(r.code, 0, r.stderr);
      const doc = parseJsonDocument(r);
      assert.ok(!(doc.warnings as string[]).some((w) => /refused|dropped a key-exchange/.test(w)), JSON.stringify(doc.warnings));
      return doc.result as any;
    });
    assert.equal(reports[0].fingerprint, reports[1].fingerprint, 'the first two calls share one identity');
    assert.notEqual(reports[0].fingerprint, reports[2].fingerprint);
    assert.deepEqual(reports.map((r) => r.relay.mediaPath), ['udp', 'udp', 'quic']);
    for (const [i] of results.entries()) {
      const report = reports[i];
      assert.equal(report.participants.length, 2, JSON.stringify(report.participants));
      for (const p of report.participants) {
        assert.ok(p.framesPlayed > 100, `${parties[i].hz} heard ${p.alias}: ${p.framesPlayed} frames`);
        // First meetings are new (pinned now); another session of one's own identity is known.
        assert.equal(p.trust, p.fingerprint === report.fingerprint ? 'known' : 'new', JSON.stringify(p));
        assert.equal(p.verified, p.trust === 'known');
        assert.ok(tones.some((t) => t !== parties[i].hz && p.alias === `tone${t}`), `${p.alias}: the alias signed into its announcement`);
      }
      const heard = decodeWav(readFileSync(parties[i].wav)).samples;
      const own = toneLevel(heard, parties[i].hz);
      for (const other of tones.filter((t) => t !== parties[i].hz)) {
        const level = toneLevel(heard, other);
        assert.ok(level > 1000, `${parties[i].hz} should hear ${other} Hz (level ${level.toFixed(0)})`);
        assert.ok(level > 20 * own, `${parties[i].hz}: ${other} Hz at ${level.toFixed(0)} vs own tone at ${own.toFixed(0)}`);
      }
    }
  });

  test('--file: a 44.1 kHz stereo 24-bit WAV is heard by the others at 48 kHz, and the call ends with the file', async () => {
    const listener = home();
    const sender = home();
    const heardWav = join(listener.dir, 'heard.wav');
    const fileWav = join(sender.dir, 'cd.wav');
    writeFileSync(fileWav, stereoTone24(44_100, 700, 3));
    const l = spawnCli(['call', relay.address, '--room', 'file-test', '--tone', '300', '--duration', '7', '--record', heardWav,
      '--no-playback', '--relay-fingerprint', relay.fingerprint, '--json'], listener);
    await new Promise((r) => setTimeout(r, 1000));
    const s = await runCli(['call', relay.address, '--room', 'file-test', '--file', fileWav, '--no-playback',
      '--relay-fingerprint', relay.fingerprint, '--json'], sender, 60_000);
    assert.equal(s.code, 0, s.stderr);
    const report = parseJsonDocument(s).result as any;
    assert.equal(report.endedBy, 'source-ended');
    assert.ok(Math.abs(report.sent.frames - 150) <= 2, `3 s of file is ~150 frames, sent ${report.sent.frames}`);
    const rl = await l.done;
    assert.equal(rl.code, 0, rl.stderr);
    const heard = decodeWav(readFileSync(heardWav)).samples;
    // The loudest 1 s window of 700 Hz: the file's tone at its level, not shifted by a wrong rate.
    let best = 0;
    let bestShifted = 0;
    for (let start = 0; start + 48_000 <= heard.length; start += 12_000) {
      const window = heard.subarray(start, start + 48_000);
      best = Math.max(best, toneLevel(window, 700, 1));
      // Where the tone lands if the rate is mixed up: 44.1 kHz samples played as 48 kHz
      // (700 x 48/44.1 = 762 Hz), or converted the wrong way (700 x 44.1/48 = 643 Hz).
      bestShifted = Math.max(bestShifted, toneLevel(window, 762, 1), toneLevel(window, 643, 1));
    }
    assert.ok(best > 5000, `700 Hz level ${best.toFixed(0)}`);
    assert.ok(best > 20 * bestShifted, `700 Hz ${best.toFixed(0)} vs 762/643 Hz (a rate mix-up) ${bestShifted.toFixed(0)}`);
  });

  test('hang-up: Ctrl-C ends a call cleanly, the other sees the leave at once, the recording is valid', async () => {
    const alice = home();
    const bob = home();
    const aliceWav = join(alice.dir, 'alice.wav');
    const a = spawnCli(['call', relay.address, '--room', 'hangup', '--tone', '500', '--record', aliceWav, '--no-playback',
      '--relay-fingerprint', relay.fingerprint, '--json'], alice);
    await new Promise((r) => setTimeout(r, 1500));
    const b = spawnCli(['call', relay.address, '--room', 'hangup', '--tone', '900', '--duration', '20', '--no-playback',
      '--relay-fingerprint', relay.fingerprint, '--json', '--alias', 'bob'], bob);
    await new Promise((r) => setTimeout(r, 4000));
    const hungUpAt = Date.now();
    a.kill('SIGINT');
    const ra = await a.done;
    assert.equal(ra.code, 0, ra.stderr);
    const reportA = parseJsonDocument(ra).result as any;
    assert.equal(reportA.endedBy, 'hangup');
    const wav = decodeWav(readFileSync(aliceWav));
    assert.ok(wav.samples.length / 48000 > 3, `recording holds ${wav.samples.length / 48000} s`);
    assert.ok(toneLevel(wav.samples, 900, 1) > 1000, 'alice recorded bob');
    // Bob sees alice leave right away: stop him and read his report.
    await new Promise((r) => setTimeout(r, 1000));
    b.kill('SIGINT');
    const rb = await b.done;
    const reportB = parseJsonDocument(rb).result as any;
    const aliceSeen = reportB.participants.find((p: any) => p.fingerprint === reportA.fingerprint);
    assert.ok(aliceSeen, JSON.stringify(reportB.participants));
    assert.equal(aliceSeen.left, true, 'bob saw alice leave within a second of her Ctrl-C');
    assert.ok(Date.now() - hungUpAt < 10_000);
  });

  test('a call survives losing its relay: killed and restarted, both members get back and hear each other again', async () => {
    const relayHome2 = home();
    const identity = join(relayHome2.dir, 'relay-identity.json');
    const port = await freeUdpPort();
    const relayArgs = ['--listen', `127.0.0.1:${port}`, '--identity', identity];
    let ownRelay = await startRelayProcess(relayArgs, relayHome2);
    const tones = [440, 700];
    const parties = tones.map((hz) => {
      const h = home();
      const wav = join(h.dir, `heard-${hz}.wav`);
      const run = runCli(['call', ownRelay.address, '--room', 'survive', '--tone', String(hz), '--duration', '14', '--record', wav,
        '--no-playback', '--relay-fingerprint', ownRelay.fingerprint, '--json'], h, 60_000);
      return { hz, wav, run };
    });
    await new Promise((r) => setTimeout(r, 3000));
    await ownRelay.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 1000));
    ownRelay = await startRelayProcess(relayArgs, relayHome2);
    try {
      const results = await Promise.all(parties.map((p) => p.run));
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, r.stderr);
        const report = parseJsonDocument(r).result as any;
        assert.equal(report.endedBy, 'duration');
        assert.equal(report.reconnects.length, 1, JSON.stringify(report.reconnects));
        // Killed ~3 s in; noticed within STALL_MS + PROBE_TIMEOUT_MS (4.5 s) of the last packet,
        // when the new relay is already up: back at the first attempt or so.
        const [lost] = report.reconnects;
        assert.ok(lost.atMs > 2500 && lost.atMs < 9000 && lost.outageMs < 5000 && lost.attempts <= 2, JSON.stringify(lost));
        // The member from before the loss, and the same member met again after it.
        assert.equal(report.participants.filter((p: any) => p.left).length >= 1, true, JSON.stringify(report.participants));
        const heard = decodeWav(readFileSync(parties[i].wav)).samples;
        const other = tones[1 - i];
        // The last 3 s are well after the reconnection (lost at ~7 s at the latest, of 14).
        const level = toneLevel(heard, other, 3);
        assert.ok(level > 1000, `${tones[i]} hears ${other} Hz again after the relay came back (level ${level.toFixed(0)})`);
        assert.ok(level > 20 * toneLevel(heard, tones[i], 3));
      }
    } finally {
      await ownRelay.stop('SIGKILL');
    }
  });

  test('a relay that comes back with another certificate is not trusted: the call ends at the first attempt', async () => {
    const relayHome2 = home();
    const port = await freeUdpPort();
    let ownRelay = await startRelayProcess(['--listen', `127.0.0.1:${port}`, '--identity', join(relayHome2.dir, 'first.json')], relayHome2);
    const caller = runCli(['call', ownRelay.address, '--room', 'impostor', '--tone', '500', '--duration', '25', '--no-playback',
      '--relay-fingerprint', ownRelay.fingerprint, '--json'], home(), 60_000);
    await new Promise((r) => setTimeout(r, 2000));
    await ownRelay.stop('SIGKILL');
    ownRelay = await startRelayProcess(['--listen', `127.0.0.1:${port}`, '--identity', join(relayHome2.dir, 'second.json')], relayHome2);
    try {
      const r = await caller;
      assert.equal(r.code, 0, r.stderr);
      const doc = parseJsonDocument(r);
      const report = doc.result as any;
      assert.equal(report.endedBy, 'relay-lost');
      assert.ok(report.durationMs < 12_000, `ended after ${report.durationMs} ms, not after 30 s of attempts`);
      const warnings = doc.warnings as string[];
      assert.equal(warnings.filter((w) => /reconnect attempt/.test(w)).length, 1, JSON.stringify(warnings));
      assert.match(warnings.join('\n'), new RegExp(`presented certificate ${ownRelay.fingerprint}`));
    } finally {
      await ownRelay.stop('SIGKILL');
    }
  });

  test('a member that vanishes (its process killed) is seen leaving within the relay idle timeout', async () => {
    const common = ['--room', 'vanish', '--no-playback', '--relay-fingerprint', relay.fingerprint];
    const listener = spawnCli(['call', relay.address, '--tone', '300', '--duration', '20', ...common], home());
    await waitFor(() => /joined room/.test(listener.stderr()), 10_000, 'the listener to join');
    const doomed = spawnCli(['call', relay.address, '--tone', '500', '--alias', 'doomed', '--duration', '20', ...common], home());
    await waitFor(() => /doomed joined/.test(listener.stderr()), 10_000, 'the doomed member to join');
    await new Promise((r) => setTimeout(r, 500));
    doomed.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => /doomed left/.test(listener.stderr()), 15_000, 'the leave');
    const seenAfter = Date.now() - killedAt;
    // The relay's idle timeout (8 s) after the last packet, not the client default of 15 s.
    assert.ok(seenAfter < 11_000, `seen leaving ${seenAfter} ms after the kill`);
    listener.kill('SIGINT');
    assert.equal((await listener.done).code, 0);
    await doomed.done;
  });

  test('record: a receive-only member writes a valid WAV, also when the relay is killed', async () => {
    const talker = home();
    const recorder = home();
    const ownRelayHome = home();
    const ownRelay = await startRelayProcess(['--listen', '127.0.0.1:0'], ownRelayHome);
    const out = join(recorder.dir, 'meeting.wav');
    const rec = spawnCli(['record', ownRelay.address, out, '--room', 'meeting', '--reconnect', '2', '--relay-fingerprint', ownRelay.fingerprint, '--json'], recorder);
    await new Promise((r) => setTimeout(r, 1000));
    const talk = spawnCli(['call', ownRelay.address, '--room', 'meeting', '--tone', '660', '--duration', '30', '--no-playback',
      '--relay-fingerprint', ownRelay.fingerprint], talker);
    await waitFor(() => {
      try {
        return decodeWav(readFileSync(out)).samples.length > 48000 * 3;
      } catch {
        return false;
      }
    }, 20_000, 'three seconds of recording');
    await ownRelay.stop('SIGKILL');
    // Even with the relay gone mid-call the file on disk is a valid WAV holding the tone.
    const midway = decodeWav(readFileSync(out));
    assert.ok(toneLevel(midway.samples, 660, 1) > 1000, 'the recording holds the talker');
    // The recorder notices, tries to get back for 2 s, and ends by itself.
    talk.kill('SIGINT');
    const r = await rec.done;
    await talk.done;
    assert.equal(r.code, 0, r.stderr);
    const final = decodeWav(readFileSync(out));
    assert.ok(final.samples.length >= midway.samples.length);
    const doc = parseJsonDocument(r);
    const report = doc.result as any;
    assert.equal(report.endedBy, 'relay-lost');
    // What went wrong on the way is in the document a support team gets.
    assert.ok((doc.warnings as string[]).some((w) => /reconnect attempt 1 failed/.test(w)), JSON.stringify(doc.warnings));
    assert.deepEqual(report.reconnects, []);
    assert.equal(report.recording.path, out);
    assert.ok(report.recording.durationMs >= 3000);
  });
});

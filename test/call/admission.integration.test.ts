/**
 * Room admission, end to end: `wzp call` and `wzp record` processes through a relay process
 * admit only members who prove they know the room's name (and secret), and with --allow only
 * the identities listed; members are pinned on first meeting; a ghost that knows only the room
 * hash (what the relay sees) gets nothing; join/leave churn cannot break a call. Loopback only.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { deriveRoomKeys, hashRoomName } from '../../core/crypto/room-name.js';
import { RoomKeyring } from '../../core/crypto/sender-keys.js';
import { decodeWav } from '../../core/media/wav.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { toneLevel } from '../helpers/tone-level.js';
import { BIN, makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';
import { Ghost } from '../hostile/ghost.js';

function spawnCli(args: string[], home: CliHome, env: NodeJS.ProcessEnv = {}): { done: Promise<CliResult> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...home.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { done };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface CallDoc {
  result: any;
  warnings: string[];
}

function callDoc(r: CliResult): CallDoc {
  assert.equal(r.code, 0, r.stderr);
  const doc = parseJsonDocument(r);
  return { result: doc.result, warnings: doc.warnings as string[] };
}

function heard(wav: string): Int16Array {
  return decodeWav(readFileSync(wav)).samples;
}

describe('room admission through a relay process', () => {
  let relayHome: CliHome;
  let relay: RunningRelay;
  const homes: CliHome[] = [];
  const home = () => {
    const h = makeHome('wzp-admission-');
    homes.push(h);
    return h;
  };
  /** Creates the identity in `h` and returns its fingerprint. */
  const identityOf = async (h: CliHome): Promise<string> => {
    const r = await runCli(['identity', '--json'], h);
    assert.equal(r.code, 0, r.stderr);
    return (parseJsonDocument(r).result as { fingerprint: string }).fingerprint;
  };
  const callArgs = (room: string, hz: number, seconds: number, wav: string, ...more: string[]) => [
    'call', relay.address, '--room', room, '--tone', String(hz), '--duration', String(seconds), '--record', wav, '--no-playback',
    '--relay-fingerprint', relay.fingerprint, ...more,
  ];

  before(async () => {
    relayHome = makeHome('wzp-admission-relay-');
    // The relay's join limits are lifted: clients must withstand churn at whatever rate a
    // relay lets through (a hostile relay lets through anything); test/hostile/ checks the
    // limits themselves.
    relay = await startRelayProcess(
      ['--listen', '127.0.0.1:0', '--join-burst', '100000', '--max-joins-per-minute', '1000000', '--source-join-burst', '100000', '--max-source-joins-per-minute', '1000000'],
      relayHome,
    );
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome.cleanup();
    for (const h of homes) h.cleanup();
  });

  test('a ghost that knows only the room hash joins a live call: no key, no packet opened, refused by both as unproven', async () => {
    const room = 'ghost-test';
    const [alice, bob] = [home(), home()];
    const [aliceWav, bobWav] = [join(alice.dir, 'heard.wav'), join(bob.dir, 'heard.wav')];
    const a = spawnCli([...callArgs(room, 440, 8, aliceWav, '--alias', 'alice', '--json')], alice);
    const b = spawnCli([...callArgs(room, 700, 8, bobWav, '--alias', 'bob', '--json')], bob);
    await sleep(2000);
    // The relay's view: the room hash. The ghost copies alice's alias.
    const ghost = new Ghost(hashRoomName(room), 'alice');
    try {
      await ghost.join({ relay: parseHostPort(relay.address), fingerprint: relay.fingerprint }, 'alice');
      await sleep(1500);
      ghost.sendJunk(50);
      // Announced again (as when others join): still one warning each.
      await ghost.session!.roomSignal({ kind: 'announce', announcement: ghost.announcement });
      await sleep(2000);
    } finally {
      await ghost.close();
    }
    const [ra, rb] = [callDoc(await a.done), callDoc(await b.done)];
    // It was in the room: media reached it, and the members' keys went to each other.
    assert.ok(ghost.datagrams > 100, `the ghost received ${ghost.datagrams} media datagrams`);
    assert.equal(ghost.opened, 0, `the ghost opened ${ghost.opened} media packets`);
    assert.equal(ghost.keysForMe, 0, 'no wrapped key was addressed to the ghost');
    assert.equal(ghost.keysUnwrapped, 0);
    for (const [doc, other, wav, own, theirs] of [
      [ra, 'bob', aliceWav, 440, 700],
      [rb, 'alice', bobWav, 700, 440],
    ] as const) {
      const r = doc.result;
      const refused = r.refused.filter((x: any) => x.fingerprint === ghost.identity.fingerprint);
      assert.equal(refused.length, 1, JSON.stringify(r.refused));
      assert.equal(refused[0].reason, 'unproven');
      assert.equal(refused[0].alias, 'alice', 'the alias it claimed');
      assert.ok(refused[0].times >= 2, `refused ${refused[0].times} times`);
      assert.ok(refused[0].packetsDropped > 0, `its media dropped: ${refused[0].packetsDropped}`);
      assert.equal(doc.warnings.filter((w) => w.includes(ghost.identity.fingerprint)).length, 1, doc.warnings.join('\n'));
      assert.ok(!r.participants.some((p: any) => p.fingerprint === ghost.identity.fingerprint));
      assert.deepEqual(r.participants.map((p: any) => p.alias), [other]);
      assert.ok(r.participants[0].framesPlayed > 200, JSON.stringify(r.participants[0]));
      const pcm = heard(wav);
      const level = toneLevel(pcm, theirs);
      assert.ok(level > 1000 && level > 20 * toneLevel(pcm, own), `${own} Hz caller hears ${theirs} Hz at ${level.toFixed(0)}`);
    }
  });

  test('--allow: a member who knows the name but is not listed is refused by call and record alike; the allowed hear each other', async () => {
    const room = 'allow-test';
    const [alice, bob, carol, rec] = [home(), home(), home(), home()];
    const [fpA, fpB, fpC, fpR] = await Promise.all([identityOf(alice), identityOf(bob), identityOf(carol), identityOf(rec)]);
    const bobList = join(bob.dir, 'team.txt');
    writeFileSync(bobList, `# the team\n${fpA.replaceAll(':', '').toUpperCase()}  # alice\n\n${fpR} # the recorder\n`);
    const wavs = [alice, bob, carol].map((h) => join(h.dir, 'heard.wav'));
    const recWav = join(rec.dir, 'room.wav');
    const calls = [
      spawnCli(callArgs(room, 440, 7, wavs[0], '--alias', 'alice', '--allow', fpB, '--allow', fpR, '--json'), alice),
      spawnCli(callArgs(room, 700, 7, wavs[1], '--alias', 'bob', '--allow', `@${bobList}`, '--json'), bob),
      spawnCli(callArgs(room, 1100, 7, wavs[2], '--alias', 'carol', '--json'), carol),
      spawnCli(['record', relay.address, '--room', room, recWav, '--duration', '7', '--allow', fpA, '--allow', fpB,
        '--relay-fingerprint', relay.fingerprint, '--json'], rec),
    ];
    const [ra, rb, rc, rr] = await Promise.all(calls.map(async (c) => callDoc(await c.done)));
    for (const [doc, self, wav, hz, otherHz, otherFp] of [
      [ra, fpA, wavs[0], 440, 700, fpB],
      [rb, fpB, wavs[1], 700, 440, fpA],
    ] as const) {
      const r = doc.result;
      assert.equal(r.fingerprint, self);
      assert.deepEqual(r.admission.allow, [otherFp, fpR]);
      assert.deepEqual(r.participants.map((p: any) => [p.fingerprint, p.trust, p.verified]).sort(), [[otherFp, 'allowed', true], [fpR, 'allowed', true]].sort());
      assert.ok(!r.participants.some((p: any) => p.fingerprint === fpC));
      assert.deepEqual(r.refused.filter((x: any) => x.fingerprint === fpC).map((x: any) => [x.reason, x.alias]), [['not-allowed', 'carol']]);
      assert.equal(doc.warnings.filter((w) => w.includes(fpC) && /not on the --allow list/.test(w)).length, 1, doc.warnings.join('\n'));
      const pcm = heard(wav);
      assert.ok(toneLevel(pcm, otherHz) > 1000, `${hz} Hz hears ${otherHz} Hz: ${toneLevel(pcm, otherHz).toFixed(0)}`);
      assert.ok(toneLevel(pcm, 1100) < 100, `${hz} Hz does not hear carol: ${toneLevel(pcm, 1100).toFixed(0)}`);
    }
    // The recorder admits alice and bob (and lists carol as refused); it is no one's to admit.
    const rec2 = rr.result;
    assert.deepEqual(rec2.refused.map((x: any) => [x.fingerprint, x.reason]), [[fpC, 'not-allowed']]);
    assert.deepEqual(rec2.participants.map((p: any) => [p.fingerprint, p.trust]).sort(), [[fpA, 'allowed'], [fpB, 'allowed']].sort());
    // Seconds 2-5, while everyone was in the room.
    const recorded = heard(recWav).subarray(2 * 48000, 5 * 48000);
    const levels = [440, 700, 1100].map((hz) => Math.round(toneLevel(recorded, hz, 3)));
    assert.ok(levels[0] > 1000 && levels[1] > 1000, `the recording has alice and bob: ${levels}`);
    assert.ok(levels[2] < 100, `and not carol: ${levels}`);
    // Carol admitted them (she has no list) but got no key from either: she heard nothing.
    const carolSaw = rc.result.participants.filter((p: any) => p.fingerprint === fpA || p.fingerprint === fpB);
    assert.ok(carolSaw.length >= 2 && carolSaw.every((p: any) => p.framesPlayed === 0), JSON.stringify(carolSaw));
    const carolHeard = heard(wavs[2]);
    assert.ok(toneLevel(carolHeard, 440) < 100 && toneLevel(carolHeard, 700) < 100, 'carol heard no one');
  });

  test('members are pinned on first meeting (new, "permanently added"), known in the next call; a copied alias is warned about naming both', async () => {
    const room = 'pin-test';
    const [alice, bob, mallory] = [home(), home(), home()];
    const [fpA, fpB, fpM] = await Promise.all([identityOf(alice), identityOf(bob), identityOf(mallory)]);
    const wav = (h: CliHome, n: number) => join(h.dir, `heard-${n}.wav`);
    // First call: alice in human mode, bob in JSON.
    const first = [
      spawnCli(callArgs(room, 440, 4, wav(alice, 1), '--alias', 'alice'), alice),
      spawnCli(callArgs(room, 700, 4, wav(bob, 1), '--alias', 'bob', '--json'), bob),
    ];
    const [humanA, jsonB] = await Promise.all(first.map((c) => c.done));
    assert.equal(humanA.code, 0, humanA.stderr);
    assert.match(humanA.stderr, new RegExp(`bob joined \\(new: first meeting\\)\\n  fingerprint ${fpB}\\n  permanently added ${fpB} to the known members`));
    assert.equal(humanA.stderr.split('permanently added').length, 2, 'said once');
    assert.match(humanA.stdout, new RegExp(`  bob \\[new\\] ${fpB}`));
    const firstB = callDoc(jsonB).result;
    assert.deepEqual(firstB.participants.map((p: any) => [p.fingerprint, p.trust, p.verified]), [[fpA, 'new', false]]);
    const pinned = JSON.parse(readFileSync(join(alice.env.WZP_CONFIG_DIR!, 'known-members.json'), 'utf8'));
    assert.deepEqual(Object.keys(pinned.members), [fpB]);
    assert.equal(pinned.members[fpB].alias, 'bob');

    // Second call: they know each other.
    const second = [
      spawnCli(callArgs(room, 440, 4, wav(alice, 2), '--alias', 'alice', '--json'), alice),
      spawnCli(callArgs(room, 700, 4, wav(bob, 2), '--alias', 'bob', '--json'), bob),
    ];
    const [secondA, secondB] = await Promise.all(second.map(async (c) => callDoc(await c.done).result));
    assert.deepEqual(secondA.participants.map((p: any) => [p.fingerprint, p.trust, p.verified]), [[fpB, 'known', true]]);
    assert.deepEqual(secondB.participants.map((p: any) => [p.fingerprint, p.trust, p.verified]), [[fpA, 'known', true]]);

    // Third: mallory, who knows the name, calls herself bob.
    const third = [
      spawnCli(callArgs(room, 440, 4, wav(alice, 3), '--alias', 'alice', '--json'), alice),
      spawnCli(callArgs(room, 900, 4, wav(mallory, 3), '--alias', 'Bob', '--json'), mallory),
    ];
    const [thirdA] = await Promise.all(third.map(async (c) => callDoc(await c.done)));
    assert.deepEqual(thirdA.result.participants.map((p: any) => [p.fingerprint, p.alias, p.trust]), [[fpM, 'Bob', 'new']]);
    const lookalike = thirdA.warnings.filter((w) => w.includes(fpM) && w.includes(fpB));
    assert.equal(lookalike.length, 1, thirdA.warnings.join('\n'));
    assert.match(lookalike[0], /calls itself "Bob", as does the member you know as/);
  });

  test('a room secret (flag, file or WZP_ROOM_SECRET) gives another room id; members meet only with the same secret; the secret is in no report', async () => {
    const room = 'secret-test';
    const secret = 'correct horse battery staple';
    const [alice, bob, eve] = [home(), home(), home()];
    const secretFile = join(bob.dir, 'secret.txt');
    writeFileSync(secretFile, `${secret}\n`);
    const calls = [
      spawnCli(callArgs(room, 440, 5, join(alice.dir, 'h.wav'), '--room-secret', secret, '--json'), alice),
      spawnCli(callArgs(room, 700, 5, join(bob.dir, 'h.wav'), '--room-secret-file', secretFile, '--json'), bob),
      spawnCli(callArgs(room, 900, 5, join(eve.dir, 'h.wav'), '--json'), eve, { WZP_ROOM_SECRET: 'another secret' }),
    ];
    const results = await Promise.all(calls.map((c) => c.done));
    const [ra, rb, re] = results.map((r) => callDoc(r).result);
    for (const r of results) assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'the secret appears nowhere');
    assert.equal(ra.meta.flags['room-secret'], '(redacted)');
    const expected = deriveRoomKeys(room, secret).roomId;
    assert.equal(ra.roomId, expected);
    assert.equal(rb.roomId, expected);
    assert.notEqual(expected, hashRoomName(room));
    assert.equal(re.roomId, deriveRoomKeys(room, 'another secret').roomId);
    assert.deepEqual([ra.admission, re.admission], [{ roomSecret: true }, { roomSecret: true }]);
    assert.deepEqual(ra.participants.map((p: any) => p.fingerprint), [rb.fingerprint]);
    assert.deepEqual(re.participants, [], 'another secret is another room');
    assert.ok(toneLevel(heard(join(alice.dir, 'h.wav')), 700) > 1000);
  });

  test('bad admission flags are refused before anything starts, naming the value', async () => {
    const h = home();
    const base = ['call', relay.address, '--room', 'x', '--duration', '1', '--no-playback', '--relay-fingerprint', relay.fingerprint, '--json'];
    const cases: [string[], number, string, RegExp][] = [
      [['--allow', 'b8db:ec0b:ab3b:daf1'], 2, 'UsageError', /--allow b8db:ec0b:ab3b:daf1: fingerprint "b8db:ec0b:ab3b:daf1" has 16 hex digits/],
      [['--allow', `@${join(h.dir, 'missing.txt')}`], 3, 'ConfigError', /cannot read the allow list/],
      [['--room-secret-file', join(h.dir, 'missing.txt')], 3, 'ConfigError', /cannot read the room secret file/],
      [['--room-secret', ''], 2, 'UsageError', /room secret cannot be empty/],
      [['--alias', 'evil\u202eecila'], 2, 'UsageError', /--alias: an alias cannot contain control, format or separator characters \(U\+202E\)/],
    ];
    writeFileSync(join(h.dir, 'empty.txt'), '\n');
    cases.push([['--room-secret-file', join(h.dir, 'empty.txt')], 2, 'UsageError', /is empty/]);
    for (const [extra, status, name, message] of cases) {
      const r = await runCli([...base, ...extra], h);
      const doc = parseJsonDocument(r) as any;
      assert.deepEqual([r.code, doc.status, doc.name], [status, status, name], `${extra.join(' ')}: ${r.stdout}`);
      assert.match(doc.message, message);
    }
    const r = await runCli(['record', relay.address, 'out.wav', '--room', 'x', '--allow', 'nope', '--json'], h);
    assert.equal(r.code, 2);
    assert.match((parseJsonDocument(r) as any).message, /--allow nope/);
  });

  test('join/leave churn at twice the rate that broke unpaced calls, by a member who knows the name and by a ghost, cannot break a call', async () => {
    const room = 'churn-test';
    const [alice, bob] = [home(), home()];
    const [aliceWav, bobWav] = [join(alice.dir, 'heard.wav'), join(bob.dir, 'heard.wav')];
    const a = spawnCli(callArgs(room, 440, 12, aliceWav, '--alias', 'alice', '--json'), alice);
    const b = spawnCli(callArgs(room, 700, 12, bobWav, '--alias', 'bob', '--json'), bob);
    await sleep(2500);
    const { roomId, admissionKey } = deriveRoomKeys(room);
    const insiderId = generateIdentity();
    const ghostId = generateIdentity();
    const notTheName = deriveRoomKeys(roomId).admissionKey;
    const counts = { insider: 0, ghost: 0 };
    const CHURN_MS = 6000;
    // Each loop joins (a new session, as a member that really re-joins: a new keyring) and
    // leaves, up to CYCLE_RATE cycles a second: twice the rate at which rotating on every change
    // broke the call (~11/s, below), and no more. Churning as fast as the relay answers
    // measured this machine's CPU more than the call: the three loops in this process starved
    // the two call processes (one CI run: 9% concealed where quiet runs conceal 1-3%).
    const CYCLE_RATE = 12;
    const churn = async (who: 'insider' | 'ghost', id: Identity, key: Uint8Array, until: number) => {
      const session = await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(relay.fingerprint, 'relay') });
      try {
        while (performance.now() < until) {
          const started = performance.now();
          const keyring = new RoomKeyring(id, roomId, { admissionKey: key, alias: who });
          await session.joinRoom(roomId, { alias: who, fingerprint: id.fingerprint, announcement: { ...keyring.localAnnouncement() } });
          await session.leave();
          counts[who]++;
          await sleep(Math.max(0, 1000 / CYCLE_RATE - (performance.now() - started)));
        }
      } finally {
        await session.close();
      }
    };
    const until = performance.now() + CHURN_MS;
    await Promise.all([
      ...[0, 1].map(() => churn('insider', insiderId, admissionKey, until)),
      churn('ghost', ghostId, notTheName, until),
    ]);
    const [ra, rb] = [callDoc(await a.done), callDoc(await b.done)];
    const rate = (n: number) => (n * 1000) / CHURN_MS;
    console.log(`# join+leave cycles per second: insider ${rate(counts.insider)}, ghost ${rate(counts.ghost)}`);
    // Two insider loops at up to 12 cycles a second each (unthrottled, the 2-vCPU development VM
    // reaches 30-35 a second when quiet and ~18 when loaded). Rotating on every change (no
    // pacing) broke the call already at ~11 (a fifth of the frames concealed): below 10 this
    // test would prove nothing.
    assert.ok(rate(counts.insider) >= 10 && rate(counts.ghost) >= 5, `join+leave per second: insider ${rate(counts.insider)}, ghost ${rate(counts.ghost)}`);
    for (const [doc, other, wav, own, theirs] of [
      [ra, 'bob', aliceWav, 440, 700],
      [rb, 'alice', bobWav, 700, 440],
    ] as const) {
      const r = doc.result;
      // Paced rotations: about one per 250 ms at most, not one per change.
      const bound = Math.ceil(r.durationMs / 250) + 4;
      assert.ok(r.keyRotations <= bound, `${r.keyRotations} rotations in ${r.durationMs} ms (bound ${bound}) for ${counts.insider} admissions`);
      // Bounded report: the insider's sessions beyond the first 64 departed are counted.
      assert.ok(r.participants.length <= 65 && r.participantsNotListed > 0, `${r.participants.length} listed, ${r.participantsNotListed} not`);
      assert.ok(r.participants.length + r.participantsNotListed >= counts.insider * 0.8, 'the insider was admitted each time');
      const ghostRefusals = r.refused.filter((x: any) => x.fingerprint === ghostId.fingerprint);
      assert.deepEqual(ghostRefusals.map((x: any) => x.reason), ['unproven']);
      assert.ok(ghostRefusals[0].times >= counts.ghost * 0.8, `${ghostRefusals[0].times} refusals of ${counts.ghost} joins`);
      assert.equal(doc.warnings.filter((w) => w.includes(ghostId.fingerprint)).length, 1);
      assert.ok(doc.warnings.length < 20, doc.warnings.slice(0, 20).join('\n'));
      // The call held: the other member's tone all along, with little concealment.
      const peer = r.participants.find((p: any) => p.alias === other);
      assert.ok(peer, JSON.stringify({ n: r.participants.length, not: r.participantsNotListed, refused: r.refused, w: doc.warnings, first: r.participants.slice(0, 2).map((p: any) => [p.alias, p.sourceId, p.left]) }));
      const played = peer.framesPlayed + peer.concealedFrames;
      // Seconds 3-9 (the churn ran from 2.5 s to 8.5 s), in 100 ms windows: the other's tone in
      // nearly all of them. (Short windows: time-stretching by the jitter buffer shifts the
      // tone's phase, which a long single-bin DFT would read as a lower level.)
      const pcm = heard(wav);
      const windows = Array.from({ length: 60 }, (_, i) => toneLevel(pcm.subarray((3 + i / 10) * 48000, (3 + (i + 1) / 10) * 48000), theirs, 0.1));
      const audible = windows.filter((level) => level > 1000).length;
      console.log(`# ${own} Hz hears ${other}: played ${peer.framesPlayed}, concealed ${peer.concealedFrames}, rejected ${peer.decryptRejected}, MOS ${peer.mos}, ${r.keyRotations} rotations, audible in ${audible} of 60 windows`);
      // Paced: 1.4-7% concealed over 8 runs on the loaded 2-core VM (2026-12-06); unpaced, 7-20%
      // (and the rotation bound above fails). The bound is the call holding, not the pacing.
      assert.ok(peer.concealedFrames / played < 0.08, `${other}: ${peer.concealedFrames} of ${played} frames concealed, ${peer.decryptRejected} rejected`);
      assert.ok(peer.mos > 3, `${other}: MOS ${peer.mos}`);
      assert.ok(audible >= 54, `${own} Hz hears ${theirs} Hz in ${audible} of 60 windows of 100 ms: ${windows.map((l) => Math.round(l))}`);
    }
  });
});

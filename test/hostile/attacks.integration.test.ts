/**
 * The relay review's attacks, one after another, against a real relay process while a
 * 2-party `wzp call` goes on through it: after each, the relay is still up and has refused
 * and counted what went over its limits; at the end, both members heard each other for the
 * whole call, and the relay's log (it runs with -v) stayed short however much was dropped.
 * Attackers come from other loopback addresses (127.0.0.2-6) than the callers (127.0.0.1).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import { sleep } from '../helpers/wait.js';
import { churn, connectionFlood, junkFlood, mediaJunk, partialFrames, rosterOverflow, signalFlood, squat, type Target } from './attacks.js';
import { Ghost } from './ghost.js';
import { heardFraction, startHostileRelay, startTwoPartyCall, type HostileRelay, type TwoPartyCall } from './harness.js';

const CALL_ROOM = 'under-attack';
const CALL_SECONDS = 48;

describe('a relay under attack, with a call in progress', () => {
  let r: HostileRelay;
  let call: TwoPartyCall;
  let target: Target;
  const roomId = hashRoomName(CALL_ROOM);
  let rssBefore = 0;
  let ghost: Ghost | undefined;

  before(async () => {
    r = await startHostileRelay(['-v']);
    target = { relay: { host: r.host, port: r.port }, fingerprint: r.relay.fingerprint };
    call = startTwoPartyCall(r.relay, CALL_ROOM, CALL_SECONDS);
    await sleep(2500);
    rssBefore = r.rssKb();
  });
  after(() => {
    call?.cleanup();
    r?.cleanup();
  });

  test('500 connections and a room on each from one address: the address gets its 64, the rest are refused with the reason', async () => {
    const flood = await connectionFlood(target, 100, { joinRooms: true });
    try {
      assert.ok(flood.accepted <= 64, `${flood.accepted} connections accepted from one address`);
      assert.ok(flood.accepted >= 50, `${flood.accepted} accepted: the limit is 64, not lower`);
      assert.ok(flood.refused.some((e) => /RefusedError: .*too many connections from 127\.0\.0\.2/.test(e)), flood.refused.slice(0, 3).join('\n'));
      assert.ok(flood.refused.length >= 36, `${flood.refused.length} refused`);
    } finally {
      await flood.close();
    }
    assert.ok(r.alive());
  });

  test('a ghost that knows only the room hash (as the relay does) joins the call: no key, nothing opened', async () => {
    ghost = new Ghost(roomId, 'tone440');
    try {
      await ghost.join(target, 'tone440');
      await sleep(2500);
      ghost.sendJunk(50);
      await sleep(500);
    } finally {
      await ghost.close();
    }
    assert.ok(ghost.datagrams > 50, `the ghost received ${ghost.datagrams} datagrams of the call`);
    assert.equal(ghost.keysForMe, 0, 'no wrapped key was addressed to the ghost');
    assert.equal(ghost.opened, 0, 'the ghost opened no media packet');
  });

  test('room squatting: one address gets at most 16 seats in the call\'s room; a caller from elsewhere still gets in', async () => {
    const squatters = await squat(target, roomId, 30, '127.0.0.10');
    try {
      assert.equal(squatters.accepted, 16, `${squatters.accepted} seats; ${squatters.refused.slice(0, 3).join('\n')}`);
      assert.ok(squatters.refused.every((e) => /RefusedError: .*too many members of this room from 127\.0\.0\.10/.test(e)), squatters.refused[0]);
      const late = await RelaySession.open({ relay: target.relay, verify: expectFingerprint(target.fingerprint, 'relay') });
      try {
        const joined = await late.joinRoom(roomId, { alias: 'latecomer' });
        assert.ok(joined.participants.length >= 19, `${joined.participants.length} in the room`);
      } finally {
        await late.close();
      }
    } finally {
      await squatters.close();
    }
  });

  test('roster overflow: joins with the largest announcements and control-character aliases are all answered', async () => {
    const overflow = await rosterOverflow(target, hashRoomName('overflow'), 70, ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7']);
    try {
      assert.equal(overflow.unanswered, 0, `every join was answered: ${overflow.refused.filter((e) => e.startsWith('NetworkError')).join(' / ')}`);
      assert.equal(overflow.accepted, 64, `${overflow.accepted} admitted; ${overflow.refused.slice(0, 2).join(' / ')}`);
      assert.ok(overflow.refused.every((e) => /room-full/.test(e)), overflow.refused[0]);
    } finally {
      await overflow.close();
    }
  });

  test('join/leave churn in the call\'s room is rate-limited', async () => {
    const c = await churn(target, roomId, 4000, 4, '127.0.0.8');
    await c.close();
    // Each of the 4 connections: a burst of 10, then one join every 2 s.
    assert.ok(c.cycles <= 4 * 13, `${c.cycles} join/leave cycles in 4 s`);
    assert.ok(c.refusedJoins > 0, 'joins over the limit were refused');
  });

  test('unfinished signal frames: bounded per connection, and the relay\'s memory with them', async (t) => {
    const before = r.rssKb();
    const p = await partialFrames(target, { connections: 8, streams: 100, frameBytes: 8000, holdMs: 2000, localHost: '127.0.0.9' });
    const during = r.rssKb();
    await p.close();
    t.diagnostic(`RSS ${before} -> ${during} kB holding ${p.streamsOpened} streams, ${p.bytesWritten} bytes written`);
    // The review: 8 x 100 streams of unfinished 64 KiB frames took 225 MB.
    assert.ok(during - before < 40_000, `RSS grew ${((during - before) / 1024).toFixed(1)} MB holding partial frames`);
    assert.ok(p.streamsOpened <= 8 * 100);
    const big = await partialFrames(target, { connections: 1, streams: 4, frameBytes: 64 * 1024, holdMs: 300, localHost: '127.0.0.9' });
    await big.close();
  });

  test('room-signal floods: oversized ones refused, and a member\'s signalling bytes capped', async () => {
    const huge = await signalFlood(target, roomId, { bytes: 60_000, perSecond: 20, ms: 1000 });
    await huge.close();
    assert.equal(huge.sent, 0, 'no 60 KB room signal was passed on');
    const fast = await signalFlood(target, roomId, { bytes: 4000, perSecond: 55, ms: 3000 });
    await fast.close();
    assert.ok(fast.refused > 0, `${fast.sent} sent, none refused`);
    assert.ok(fast.sent * 4000 <= 32 * 1024 * (4 + 3) + 8000, `${fast.sent} signals of 4 kB passed in 3 s`);
  });

  test('a member flooding junk media is capped before the fan-out', async () => {
    const junk = await mediaJunk(target, roomId, { size: 1306, perSecond: 5000, ms: 3000 });
    await junk.close();
    assert.ok(junk.onPath, 'the flooder had the UDP media path');
    assert.ok(junk.sent > 5000, `${junk.sent} junk packets sent`);
    assert.ok(r.alive());
  });

  test('a junk UDP flood at 10,000 packets/s', async () => {
    const sent = await junkFlood(r.port, r.host, () => Buffer.from(Array.from({ length: 40 }, () => (Math.random() * 256) | 0)), { perSecond: 10_000, ms: 3000 });
    assert.ok(sent > 20_000);
    assert.ok(r.alive());
  });

  test('the call heard its peer throughout; the relay is up, counted every refusal, and its log stayed short', async (t) => {
    const reports = await call.finish();
    for (const [i, report] of reports.entries()) {
      const peer = report.participants.find((p: { alias: string }) => p.alias === `tone${i === 0 ? 700 : 440}`);
      assert.ok(peer, JSON.stringify(report.participants.map((p: { alias: string }) => p.alias)));
      assert.ok(peer.lossPct < 5, `party ${i}: ${peer.lossPct}% loss`);
      assert.ok(peer.framesPlayed > (CALL_SECONDS - 3) * 45, `party ${i}: ${peer.framesPlayed} frames played`);
      // The ghost was refused by both members as unproven (and the squatters, who announced nothing, never admitted).
      assert.ok(
        report.refused.some((x: { fingerprint: string; reason: string }) => x.fingerprint === ghost?.identity.fingerprint && x.reason === 'unproven'),
        JSON.stringify(report.refused),
      );
      assert.ok(report.participants.every((p: { alias: string }) => p.alias === peer.alias), 'the peer was the only member admitted');
    }
    const heard440 = heardFraction(call.parties[1].wav, 440);
    const heard700 = heardFraction(call.parties[0].wav, 700);
    t.diagnostic(`loss ${reports.map((rep) => rep.participants.map((p: { lossPct: number; mos: number }) => `${p.lossPct}% MOS ${p.mos}`).join(' ')).join(' | ')}; heard ${heard700.toFixed(2)} ${heard440.toFixed(2)}`);
    assert.ok(heard440 >= 0.95 && heard700 >= 0.95, `seconds with the peer's tone: ${heard700.toFixed(2)}, ${heard440.toFixed(2)}`);
    assert.ok(r.alive());
    const rssAfter = r.rssKb();
    const { result, metrics } = await r.stop();
    assert.ok(metrics, result.stderr.slice(-2000));
    for (const reason of ['source-connections', 'room-source-limit', 'room-full', 'join-rate', 'signal-too-large', 'signal-bytes', 'media-rate', 'short-unknown']) {
      assert.ok(metrics.refused[reason] > 0, `${reason} counted: ${JSON.stringify(metrics.refused)}`);
    }
    const dropLines = result.stderr.split('\n').filter((l) => /relay:(refused|signal-dropped)/.test(l));
    const refusedTotal = Object.values(metrics.refused as Record<string, number>).reduce((a, b) => a + b, 0);
    t.diagnostic(`RSS ${rssBefore} -> ${rssAfter} kB; ${refusedTotal} refusals ${JSON.stringify(metrics.refused)}; ${dropLines.length} log lines`);
    assert.ok(refusedTotal > 20_000, `${refusedTotal} refusals`);
    assert.ok(dropLines.length < 600, `${dropLines.length} log lines for ${refusedTotal} refusals`);
    assert.ok(dropLines.some((l) => /"suppressed":\d+/.test(l)), 'the log says how much it left out');
  });
});

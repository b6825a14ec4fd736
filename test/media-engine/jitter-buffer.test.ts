import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JitterBuffer } from '../../core/media/jitter-buffer.js';
import { Prng } from '../../core/media/prng.js';
import { FRAME_MS, frame, kinds, playedSeqs, range, run, runClocked, stream } from './jitter-sim.js';

const BASE_DELAY_MS = 50;
/** Pulls start off the arrival grid so arrival and playout phases differ. */
const PULL_PHASE_MS = 7;

describe('JitterBuffer', () => {
  it('plays every frame of an in-order stream at constant delay, with the target at its minimum', () => {
    const jb = new JitterBuffer();
    const frames = stream(500, () => BASE_DELAY_MS);
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: 499 });

    assert.deepEqual(playedSeqs(pulls), range(0, 500));
    const stats = jb.stats();
    assert.equal(stats.targetDelayMs, 20);
    assert.equal(stats.concealedSamples, 0);
    assert.equal(stats.insertedSamplesForDeceleration, 0);
    assert.equal(stats.removedSamplesForAcceleration, 0);
    assert.equal(stats.packetsDiscarded, 0);
    assert.equal(stats.jitterBufferEmittedCount, 500 * 960);
    const meanWaitMs = (stats.jitterBufferDelay / stats.jitterBufferEmittedCount) * 1000;
    assert.ok(meanWaitMs >= 20 && meanWaitMs < 40, `mean wait ${meanWaitMs} ms`);
    assert.ok(Math.abs(stats.jitterBufferTargetDelay / stats.jitterBufferEmittedCount - 0.02) < 1e-9);
  });

  it('plays reordered frames in sequence order', () => {
    const jb = new JitterBuffer({ minDelayMs: 60 });
    // Every 10th frame arrives just after its successor.
    const frames = stream(300, (n) => BASE_DELAY_MS + (n % 10 === 3 ? FRAME_MS + 1 : 0));
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: 299 });

    assert.deepEqual(playedSeqs(pulls), range(0, 300));
    assert.equal(jb.stats().concealmentEvents, 0);
    assert.equal(jb.stats().packetsDiscarded, 0);
  });

  it('drops and counts duplicates, whether still buffered or already played', () => {
    const jb = new JitterBuffer();
    const frames = stream(200, () => BASE_DELAY_MS);
    const copies = frames.filter((_, n) => n % 7 === 0).map((f) => ({ ...f, arrivalMs: f.arrivalMs + 5 }));
    const replayed = { ...frames[10], arrivalMs: 2000 }; // long after frame 10 was played
    const pulls = run(jb, [...frames, ...copies, replayed], PULL_PHASE_MS, { playedSeq: 199 });

    assert.deepEqual(playedSeqs(pulls), range(0, 200));
    assert.equal(jb.stats().packetsDuplicated, copies.length + 1);
    assert.equal(jb.stats().packetsDiscarded, 0);
  });

  it('discards and counts a frame that arrives after its playout time', () => {
    const jb = new JitterBuffer();
    const frames = stream(200, (n) => BASE_DELAY_MS + (n === 100 ? 500 : 0));
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: 199 });

    const played = playedSeqs(pulls);
    assert.ok(!played.includes(100));
    assert.deepEqual(played, range(0, 200).filter((n) => n !== 100));
    assert.equal(jb.stats().packetsDiscarded, 1);
    assert.equal(jb.stats().concealmentEvents, 1);
  });

  it('conceals a gap and counts it as one concealment event', () => {
    const jb = new JitterBuffer();
    const frames = stream(300, () => BASE_DELAY_MS).filter((_, n) => n < 200 || n > 202);
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: 299 });

    assert.deepEqual(playedSeqs(pulls), range(0, 300).filter((n) => n < 200 || n > 202));
    const concealed = kinds(pulls, 'conceal');
    assert.equal(concealed.length, 3);
    // The first missing frames find the buffer empty (frame 203 is not there yet), the last one a gap.
    assert.deepEqual(
      concealed.map((p) => (p.result.kind === 'conceal' ? p.result.cause : '')),
      ['underrun', 'underrun', 'gap'],
    );
    const stats = jb.stats();
    assert.equal(stats.concealedSamples, 3 * 960);
    assert.equal(stats.concealmentEvents, 1);
    assert.equal(stats.totalSamplesReceived, 300 * 960);
    assert.equal(stats.expandRate, 3 / 300);
  });

  it('raises the target delay under jitter and lowers it after the jitter stops', () => {
    const rng = new Prng(7);
    const jb = new JitterBuffer();
    // 0-10 s calm, 10-20 s uniform 0-100 ms extra delay, 20-30 s calm.
    const frames = stream(1500, (n) => BASE_DELAY_MS + (n >= 500 && n < 1000 ? rng.uniform(0, 100) : 0));
    const targetAt = new Map<number, number>();
    const delayAt = new Map<number, number>();
    run(jb, frames, PULL_PHASE_MS, { playedSeq: 1499 }, ({ atMs }) => {
      const second = Math.floor(atMs / 1000);
      targetAt.set(second, jb.stats().targetDelayMs);
      delayAt.set(second, jb.stats().currentDelayMs);
    });

    assert.equal(targetAt.get(9), 20);
    // P95 of a uniform 0-100 ms spread plus the 2 ms margin; which ~100 arrivals the window
    // holds moves it by several ms.
    const jitteryTarget = targetAt.get(19) as number;
    assert.ok(jitteryTarget >= 80 && jitteryTarget <= 105, `target under jitter ${jitteryTarget}`);
    assert.ok((delayAt.get(19) as number) >= jitteryTarget, 'the playout delay follows the target up');
    assert.equal(targetAt.get(29), 20);
    assert.ok((delayAt.get(29) as number) < 20 + 50, `the playout delay comes back down: ${delayAt.get(29)}`);
    const stats = jb.stats();
    assert.ok(stats.insertedSamplesForDeceleration > 0);
    assert.ok(stats.removedSamplesForAcceleration > 0);
    assert.ok(stats.packetsDiscarded < 25, `late frames under jitter: ${stats.packetsDiscarded}`);
  });

  it('accelerates with the removed frame handed to the caller when the path gets faster', () => {
    const jb = new JitterBuffer();
    // The path delay drops from 250 ms to 50 ms at frame 200 (frames 190-199 are overtaken).
    const frames = stream(600, (n) => (n < 200 ? 250 : 50));
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: 599 });

    const accelerated = pulls.filter((p) => p.result.kind === 'frame' && p.result.removed !== undefined);
    assert.ok(accelerated.length > 0);
    const stats = jb.stats();
    assert.equal(stats.removedSamplesForAcceleration, accelerated.length * 960);
    const played = playedSeqs(pulls);
    const removed = accelerated.map((p) => (p.result.kind === 'frame' ? (p.result.removed?.seq as number) : -1));
    assert.deepEqual([...played, ...removed].sort((a, b) => a - b), range(0, 600), 'every frame is played or removed once');
    assert.ok(stats.currentDelayMs <= stats.targetDelayMs + 40, `delay ${stats.currentDelayMs} vs target ${stats.targetDelayMs}`);
  });

  it('follows sequence numbers and timestamps through wraparound', () => {
    const jb = new JitterBuffer();
    const base = { seq: 65_500, ts: 2 ** 32 - 50 * 960 };
    const frames = stream(200, () => BASE_DELAY_MS, base);
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: (65_500 + 199) % 0x1_0000 });

    assert.deepEqual(playedSeqs(pulls), range(65_500, 200, 0x1_0000));
    assert.equal(jb.stats().concealedSamples, 0);
    assert.equal(jb.stats().streamResets, 0);
  });

  it('resets on a confirmed stream restart and plays the new stream', () => {
    const jb = new JitterBuffer();
    const first = stream(100, () => BASE_DELAY_MS);
    const restartAtMs = 100 * FRAME_MS;
    const second = stream(100, () => BASE_DELAY_MS, { seq: 30_000, ts: 123_456_789 }).map((f) => ({
      ...f,
      arrivalMs: f.arrivalMs + restartAtMs,
    }));
    const outcomes: string[] = [];
    const pulls = run(jb, first, PULL_PHASE_MS, { endMs: restartAtMs });
    for (const f of second.slice(0, 3)) outcomes.push(jb.insert(f));
    const later = run(jb, second.slice(3), restartAtMs + PULL_PHASE_MS, { playedSeq: 30_099 });

    assert.deepEqual(outcomes, ['held', 'reset', 'buffered']);
    assert.equal(jb.stats().streamResets, 1);
    assert.deepEqual(playedSeqs(pulls), range(0, 96));
    assert.deepEqual(playedSeqs(later), range(30_000, 100));
  });

  it('discards a lone far-off packet without resetting', () => {
    const jb = new JitterBuffer();
    const frames = stream(100, () => BASE_DELAY_MS);
    run(jb, frames.slice(0, 50), PULL_PHASE_MS, { endMs: 50 * FRAME_MS });
    assert.equal(jb.insert({ ...frame(20_000, 50 * FRAME_MS) }), 'held');
    const pulls = run(jb, frames.slice(50), 50 * FRAME_MS + PULL_PHASE_MS, { playedSeq: 99 });

    assert.equal(jb.stats().streamResets, 0);
    assert.equal(jb.stats().packetsDiscarded, 1);
    assert.ok(playedSeqs(pulls).includes(99));
  });

  it('stops concealing after maxConcealMs and resumes after rebuffering', () => {
    const jb = new JitterBuffer({ maxConcealMs: 200 });
    // 2 s outage: frames 100-199 never arrive.
    const frames = stream(300, () => BASE_DELAY_MS).filter((_, n) => n < 100 || n >= 200);
    const pulls = run(jb, frames, PULL_PHASE_MS, { playedSeq: 299 });

    assert.equal(jb.stats().concealedSamples, 10 * 960);
    assert.ok(kinds(pulls, 'empty').length > 50);
    assert.deepEqual(playedSeqs(pulls), [...range(0, 100), ...range(200, 100)]);
  });

  it('returns empty before the first frame and rejects malformed input', () => {
    const jb = new JitterBuffer();
    assert.deepEqual(jb.pull(0), { kind: 'empty', durationMs: 20 });
    assert.throws(() => jb.insert({ ...frame(0, 0), seq: 70_000 }), { name: 'InternalError' });
    assert.throws(() => jb.insert({ ...frame(0, 0), durationMs: 0 }), { name: 'InternalError' });
    assert.throws(() => new JitterBuffer({ minDelayMs: 500, maxDelayMs: 400 }), { name: 'UsageError' });
  });
});

describe('JitterBuffer on an output clock (pull with a playout position)', () => {
  const CALL = { minDelayMs: 0, marginMs: 2, accelerateThresholdMs: 10 };
  /** The first 10 frames 40 ms late (a start-up stall, as measured in loopback calls), then steady with up to 1 ms of jitter. */
  const startBurst = (count: number) => stream(count, (n) => BASE_DELAY_MS + (n < 10 ? 40 : 0) + ((n * 7) % 3) * 0.5);

  for (const phaseMs of [0, 2.5, 5, 7.5, 9.9]) {
    it(`settles within one 10 ms period above its target by sub-frame compression (clock phase ${phaseMs} ms)`, () => {
      const jb = new JitterBuffer(CALL);
      const seen: { at: number; kind: string; delay: number; target: number }[] = [];
      const pulls = runClocked(jb, startBurst(300), phaseMs, 10, 299 * FRAME_MS + BASE_DELAY_MS + 15, (p) => {
        const s = jb.stats();
        seen.push({ at: p.atMs, kind: p.result.kind, delay: s.currentDelayMs, target: s.targetDelayMs });
      });
      const settled = seen.filter((x) => x.at > 1500 && x.at < 300 * FRAME_MS);
      assert.ok(settled.length > 150);
      for (const x of settled) {
        assert.equal(x.kind, 'frame', `${x.kind} at ${x.at} ms`);
        // Headroom stays at or above the target less its margin; what the clock's phase adds is under a period.
        assert.ok(x.delay >= x.target - 2 && x.delay < x.target + 10 + 1, `delay ${x.delay} vs target ${x.target} at ${x.at} ms`);
      }
      const frames = pulls.filter((p) => p.result.kind === 'frame');
      assert.ok(frames.some((p) => p.result.kind === 'frame' && p.result.compressMs !== undefined), 'sub-frame compression was asked for');
      const consumed = frames.flatMap(({ result }) => (result.kind === 'frame' ? [result.seq, ...(result.removed ? [result.removed.seq] : [])] : []));
      assert.deepEqual(consumed.sort((a, b) => a - b), range(0, 300), 'every frame played or removed once');
      const stats = jb.stats();
      assert.equal(stats.packetsDiscarded, 0);
      assert.equal(stats.concealedSamples, 0);
      // The counters follow the audio actually output.
      const outputSamples = pulls.filter((p) => p.result.kind !== 'empty').reduce((sum, p) => sum + Math.round(p.outputMs * 48), 0);
      assert.equal(stats.totalSamplesReceived, outputSamples);
    });
  }

  it('asks for a sub-frame expansion, not a whole frame, when the headroom falls a little short', () => {
    const jb = new JitterBuffer(CALL);
    // From frame 150 every 10th frame comes 4 ms late; the clock pulls 2.5 ms after arrivals,
    // so those frames miss their pull until the target covers them.
    const frames = stream(300, (n) => BASE_DELAY_MS + (n >= 150 && n % 10 === 0 ? 4 : 0));
    const pulls = runClocked(jb, frames, 2.5, 10, 299 * FRAME_MS + BASE_DELAY_MS + 15);
    const expanded = pulls.filter((p) => p.result.kind === 'frame' && p.result.expandMs !== undefined);
    assert.ok(expanded.length >= 1, 'expansion asked for');
    for (const p of expanded) assert.ok(p.result.kind === 'frame' && (p.result.expandMs as number) <= 10, 'at most a period');
    assert.deepEqual(kinds(pulls, 'decelerate').filter((p) => p.atMs > 500), [], 'no whole-frame deceleration');
    assert.ok(jb.stats().insertedSamplesForDeceleration > 0);
  });

  it('holds its clock on an underrun below the floor, so a slower path costs a few frames, not a second', () => {
    const jb = new JitterBuffer(CALL);
    // The path slows by 3 ms at frame 150, with pulls 2.5 ms after the usual arrivals.
    const frames = stream(300, (n) => BASE_DELAY_MS + (n >= 150 ? 3 : 0));
    const pulls = runClocked(jb, frames, 2.5, 10, 299 * FRAME_MS + BASE_DELAY_MS + 15);
    const stats = jb.stats();
    assert.ok(stats.concealedSamples <= 5 * 960, `concealed ${stats.concealedSamples / 960} frames`);
    assert.deepEqual(playedSeqs(pulls).filter((n) => n >= 160), range(160, 140));
  });

  it('never asks a frame-by-frame caller to stretch', () => {
    const jb = new JitterBuffer(CALL);
    const pulls = run(jb, startBurst(200), PULL_PHASE_MS, { playedSeq: 199 });
    for (const { result } of pulls) {
      assert.ok(result.kind !== 'frame' || (result.compressMs === undefined && result.expandMs === undefined));
    }
  });

  it('forgets a start-up burst once it falls out of the window (half the stream age, at least 0.5 s)', () => {
    const jb = new JitterBuffer(CALL);
    const frames = stream(200, (n) => BASE_DELAY_MS + (n < 10 ? 60 - 6 * n : 0));
    const targetAt = new Map<number, number>();
    runClocked(jb, frames, 3, 10, 200 * FRAME_MS, ({ atMs }) => targetAt.set(Math.floor(atMs / 100) * 100, jb.stats().targetDelayMs));
    assert.ok((targetAt.get(300) as number) > 30, `target during the burst ${targetAt.get(300)}`);
    // By 1.3 s the window (650 ms) no longer holds the burst (arrivals before ~0.3 s).
    assert.ok((targetAt.get(1300) as number) < 5, `target at 1.3 s ${targetAt.get(1300)}`);
  });

  it('rejects a bad playout position or stretch count', () => {
    const jb = new JitterBuffer();
    assert.throws(() => jb.pull(0, { queuedMs: -1, periodMs: 10 }), { name: 'InternalError' });
    assert.throws(() => jb.pull(0, { queuedMs: 0, periodMs: Number.NaN }), { name: 'InternalError' });
    assert.throws(() => jb.recordTimeStretch(1.5), { name: 'InternalError' });
    assert.throws(() => new JitterBuffer({ marginMs: -1 }), { name: 'UsageError' });
  });

  describe('start-up floor (startFloorMs)', () => {
    // A call's options: no fixed floor, P99, on a 10 ms clock (run to the last frame, ~1.33 s).
    // Every frame after the first comes 8 ms later than the first one's pace: the path is
    // slower after the first packet, which nothing measured yet can tell.
    const opts = { minDelayMs: 0, marginMs: 2, percentile: 0.99, accelerateThresholdMs: 10 };
    const frames = [frame(0, 100), frame(1, 128), ...range(2, 60).map((n) => frame(n, 100 + n * FRAME_MS + 8))];
    const firstPlayed = (pulls: ReturnType<typeof runClocked>) => pulls.find((p) => p.result.kind === 'frame')?.atMs;

    it('plays the first frame as soon as without it, and stretches it instead of concealing the late second one', () => {
      const without = runClocked(new JitterBuffer(opts), frames, 95, 10, 1300);
      const withFloor = runClocked(new JitterBuffer({ ...opts, startFloorMs: 10 }), frames, 95, 10, 1300);
      assert.equal(firstPlayed(withFloor), firstPlayed(without));
      assert.ok(kinds(without, 'conceal').length >= 1, 'the late second frame is concealed without the floor');
      assert.equal(kinds(withFloor, 'conceal').length, 0);
      assert.equal(kinds(withFloor, 'decelerate').length, 0);
      assert.ok(withFloor.some((p) => p.result.kind === 'frame' && p.result.expandMs !== undefined), 'a frame was stretched');
    });

    it('holds only for startFloorForMs: the delay then falls back to what was measured', () => {
      const jb = new JitterBuffer({ ...opts, startFloorMs: 10, startFloorForMs: 300 });
      const pulls = runClocked(jb, frames, 95, 10, 1300);
      const late = pulls.filter((p) => p.atMs > 900 && p.result.kind === 'frame');
      assert.ok(late.length > 0);
      assert.ok(jb.stats().targetDelayMs < 10, `target ${jb.stats().targetDelayMs} ms after the start-up floor ended`);
    });

    it('rejects a floor outside 0..maxDelayMs', () => {
      assert.throws(() => new JitterBuffer({ startFloorMs: -1 }), { name: 'UsageError' });
      assert.throws(() => new JitterBuffer({ startFloorMs: 500, maxDelayMs: 400 }), { name: 'UsageError' });
      assert.throws(() => new JitterBuffer({ startFloorForMs: Number.NaN }), { name: 'UsageError' });
    });
  });
});

/**
 * Adaptive jitter buffer, after WebRTC's NetEq: frame granularity, plus sub-frame time
 * stretching when the caller can do it.
 *
 * Frames go in with `insert()` as they arrive (any order); the playout side calls `pull()`
 * for the next frame's worth of output. Two ways to drive it:
 * - frame by frame: pull, play what comes back, pull again when it has played;
 * - from an audio clock of period P (a device callback, a 10 ms mixing tick) with a FIFO of
 *   decoded audio: pull whenever less than P is queued, telling the buffer how much is
 *   queued (`pull(nowMs, {queuedMs, periodMs})`). The buffer then also asks for sub-frame
 *   time compression or expansion (`compressMs` / `expandMs` on a frame) and the caller
 *   reports what it removed or added (`recordTimeStretch`).
 * Everything is driven by the caller's clock (`arrivalMs`, `nowMs`), so the buffer runs
 * the same in real time and in a simulated-time sweep.
 *
 * Playout clock. While playing, the buffer keeps `nextTs`, the media timestamp (48 kHz
 * samples) that the next output starts at. Each output advances it by its duration, except
 * a deceleration (a frame of stretched audio inserted without consuming a packet) and an
 * acceleration (a frame removed, so two frames' worth of media is consumed in one period).
 * A frame is late, and is discarded, when its timestamp is behind `nextTs` by more than half
 * a frame or its sequence number is at or below the last one consumed.
 *
 * Delay estimate. For every arriving packet, transit = arrivalMs - timestamp/48 (its delay
 * up to an unknown clock offset). Over a sliding window of `windowMs` of arrivals, the
 * relative delay of a packet is its transit minus the smallest transit in the window (its
 * delay relative to the fastest packet). The target delay is the `percentile` (97th) of the
 * relative delays plus `marginMs` (timer and scheduling jitter), clamped to
 * [minDelayMs, maxDelayMs]; the floor is the same without the margin. The window grows with
 * the stream (half its age, from 500 ms) so that start-up stalls are soon forgotten. The headroom at a pull is how far the playout clock trails the
 * fastest packet at that moment: nowMs - (nextTs/48 + minTransit). A packet with relative
 * delay d is in the buffer at its pull exactly when d <= headroom, so holding the headroom
 * at or above the target plays 97 % of packets. (The target used to be P95 plus one frame:
 * with 20 ms frames that held every frame ~20 ms longer than it needed. P97 without the
 * frame conceals about as much as that did under FEC-repaired loss, at 10% random loss
 * 3.0% vs 3.2% in a simulated call, and a third of the delay on a clean path; P95 conceals
 * 5.2%: see docs/media-engine.md.) The current
 * delay (stats) is the headroom plus the queued audio: when the frame actually starts.
 *
 * Tracking the target. At each pull with the next frame in hand: headroom below the floor,
 * expand the frame by what lifts the headroom a period (if half a frame does it, for callers
 * with a playout position) or decelerate (a frame of stretched audio). Otherwise the spare
 * delay is what could go
 * without the headroom falling below target: with an output period P, the headroom only
 * moves in steps of P (the pulls sit on the caller's clock), so spare = queued audio +
 * P * floor((headroom - target - 1 ms) / P); pulled frame by frame, spare = headroom -
 * target - 1 ms. A spare above max(accelerateThresholdMs, one frame) removes a whole frame
 * (the caller may decode it to keep codec state); a smaller one, for callers that said how
 * much they queue, becomes a `compressMs` request on the frame (sub-frame acceleration).
 * With a 10 ms period the delay then settles in [target, target + 10 ms) instead of drifting
 * anywhere in a 20 ms dead band.
 *
 * Gaps and stops. A missing frame at the playout point is concealed (the clock moves on;
 * but on an empty buffer with the headroom below the floor the clock holds, since the frame
 * is probably just late: the path got slower).
 * After `maxConcealMs` of uninterrupted concealment the stream is considered stopped: the
 * buffer returns `empty` and buffers up to the target delay again before resuming at the
 * oldest frame it holds.
 *
 * Sequence numbers are u16 and timestamps u32, both unwrapped to unbounded counters. A
 * packet far outside the expected sequence (RFC 3550 A.1 bounds: more than MAX_DROPOUT
 * ahead or MAX_MISORDER behind) or far from the stream's transit (timestamp jump of more
 * than `discontinuityMs`) is held on probation; if the next packet continues it (next
 * sequence number) the stream restarted and the buffer resets; otherwise the held packet
 * was a straggler and is discarded.
 *
 * Statistics follow RTCInboundRtpStreamStats (W3C webrtc-stats); see JitterBufferStats.
 */
import { InternalError, UsageError } from '../errors.js';
import { PIPELINE_SAMPLE_RATE } from './codec-types.js';
import { U16_MODULUS as SEQ_MODULUS, U32_MODULUS as TS_MODULUS, unwrapU16, wrappedDelta } from './sequence.js';

const SAMPLES_PER_MS = PIPELINE_SAMPLE_RATE / 1000;
/** RFC 3550 A.1: a forward sequence jump up to this is a (long) loss, beyond it a restart candidate. */
export const MAX_DROPOUT = 3000;
/** RFC 3550 A.1: a backward step up to this is a late or duplicate packet, beyond it a restart candidate. */
export const MAX_MISORDER = 100;
/** Sequence numbers remembered for duplicate detection; must exceed MAX_MISORDER + maxPackets. */
const RECEIVED_HISTORY = 1024;
/** Spare delay below this is not worth a time-compression request, ms. */
const MIN_COMPRESS_MS = 1;
/** At most this fraction of a frame is asked to be compressed away (or added) at once. */
const MAX_COMPRESS_FRACTION = 0.5;
/**
 * The headroom must exceed the target by this before delay counts as spare, ms: a pull that
 * fires a little late sees more headroom than the clock has, and without this slack would
 * give it away and decelerate at the next on-time pull.
 */
const COMPRESS_HYSTERESIS_MS = 1;
/** Shortest statistics window, at the start of a stream, ms (25 frames of 20 ms). */
const START_WINDOW_MS = 500;

export interface JitterBufferOptions {
  /** Lower clamp of the target delay, ms. Default 20. */
  minDelayMs?: number;
  /** Added to the delay percentile for timer and scheduling jitter, ms. Default 2. */
  marginMs?: number;
  /** Upper clamp of the target delay, ms. Default 400. */
  maxDelayMs?: number;
  /** Sliding window of arrivals the delay statistics cover, ms. Default 2000. */
  windowMs?: number;
  /**
   * Floor of the delay while the stream is younger than startFloorForMs, ms. Default 0 (none).
   * Playout still starts as soon as the measured target allows (the first frame is not held
   * back); the floor only makes the first frames play time-stretched until the delay reaches
   * it, so that the next frame, whose lateness nothing has measured yet, has that much slack.
   */
  startFloorMs?: number;
  /** How long startFloorMs holds from the stream's first arrival, ms. Default 1000. */
  startFloorForMs?: number;
  /** Fraction of packets the target delay aims to play on time. Default 0.97. */
  percentile?: number;
  /** Remove a whole frame only when the spare delay exceeds this (and a frame), ms. Default 30. */
  accelerateThresholdMs?: number;
  /** Uninterrupted concealment after which the stream counts as stopped, ms. Default 1000. */
  maxConcealMs?: number;
  /** Frame duration assumed before the first frame is played, ms. Default 20. */
  defaultFrameMs?: number;
  /** Most frames held at once; further arrivals are discarded. Default 256. */
  maxPackets?: number;
  /** A transit change beyond this marks a timestamp discontinuity (restart candidate), ms. Default 3000. */
  discontinuityMs?: number;
}

/**
 * Where the caller's output stands at a pull, for callers that play from an audio clock with
 * a FIFO of decoded audio.
 */
export interface PlayoutPosition {
  /** Decoded audio queued ahead of this pull's output, ms: the frame starts playing at nowMs + queuedMs. */
  queuedMs: number;
  /** The output clock's period, ms: the caller pulls on that clock whenever less than a period is queued. 0: it pulls exactly when the previous output ends. */
  periodMs: number;
}

/** One encoded frame as it arrives from the network (after FEC recovery). */
export interface MediaFrame {
  /** u16, wrapping. */
  seq: number;
  /** u32 media timestamp in 48 kHz samples, wrapping. */
  timestamp: number;
  /** When the frame reached the buffer, ms on the caller's clock. */
  arrivalMs: number;
  /** Frame duration, ms (a whole number of 48 kHz samples). */
  durationMs: number;
  payload: Uint8Array;
}

/** What insert() did with a frame. */
export type InsertOutcome =
  /** Stored for playout. */
  | 'buffered'
  /** Already received: dropped (packetsDuplicated). */
  | 'duplicate'
  /** Its playout time has passed: dropped (packetsDiscarded). */
  | 'late'
  /** The buffer is full: dropped (packetsDiscarded). */
  | 'overflow'
  /** Discontinuous with the stream: held until the next packet shows whether the stream restarted. */
  | 'held'
  /** The stream restarted: the buffer was reset and this frame (and the held one) buffered. */
  | 'reset';

/** A frame taken out of the buffer. */
export interface FrameRef {
  seq: number;
  timestamp: number;
  payload: Uint8Array;
}

export type PullResult =
  /**
   * Decode and play `payload` for `durationMs`. When `removed` is set, the buffer
   * accelerated: `removed` preceded this frame and was dropped (its samples are counted in
   * removedSamplesForAcceleration); decode it to keep decoder state, or compress both
   * frames into one period. When `compressMs` is set (only for pulls given a PlayoutPosition),
   * the delay has that much to spare: shorten this frame's audio by up to `compressMs`
   * (sub-frame acceleration, e.g. core/media/time-stretch.ts) and report the samples removed
   * with recordTimeStretch(). When `expandMs` is set (likewise), the headroom is a little
   * short: lengthen this frame's audio by at least `expandMs` (preemptive expansion: the
   * next pull then comes a period later) and report the samples added.
   */
  | ({ kind: 'frame'; durationMs: number; removed?: FrameRef; compressMs?: number; expandMs?: number } & FrameRef)
  /**
   * No frame for this period: play `durationMs` of concealment (codec PLC). `gap`: a later
   * frame is buffered (this one is lost or overtaken); `underrun`: the buffer is empty.
   */
  | { kind: 'conceal'; durationMs: number; cause: 'gap' | 'underrun' }
  /** Play `durationMs` of stretched audio without consuming a frame (delay grows by a frame). */
  | { kind: 'decelerate'; durationMs: number }
  /** Nothing to play (not started, or the stream stopped): play silence or comfort noise. */
  | { kind: 'empty'; durationMs: number };

/** Cumulative counters named and defined as in RTCInboundRtpStreamStats, plus current values. */
export interface JitterBufferStats {
  /** Sum over emitted samples of the time each waited in the buffer, s. */
  jitterBufferDelay: number;
  /** Samples emitted from received frames (the divisor of the three sums). */
  jitterBufferEmittedCount: number;
  /** Sum over emitted samples of the target delay at emission, s. */
  jitterBufferTargetDelay: number;
  /** Sum over emitted samples of the target before the minDelayMs clamp, s. */
  jitterBufferMinimumDelay: number;
  /** Samples output: decoded (after time stretching), concealed and inserted for deceleration. */
  totalSamplesReceived: number;
  concealedSamples: number;
  /** Runs of concealment (a concealed sample after a non-concealed one). */
  concealmentEvents: number;
  /** Samples of deceleration periods plus samples inserted by time stretching. */
  insertedSamplesForDeceleration: number;
  /** Samples of frames removed by acceleration plus samples removed by time compression. */
  removedSamplesForAcceleration: number;
  /** Frames dropped for arriving after their playout time, or when the buffer was full. */
  packetsDiscarded: number;
  packetsDuplicated: number;
  /** Fraction of output samples that were concealment (NetEq's expand rate), 0..1. */
  expandRate: number;
  /**
   * How far the playout clock trails the fastest packet, ms, when the last pulled output
   * starts playing (pull time + queued audio); 0 when not playing.
   */
  currentDelayMs: number;
  targetDelayMs: number;
  /** Stream restarts detected (the buffer was reset). */
  streamResets: number;
}

type Counters = Omit<JitterBufferStats, 'expandRate' | 'currentDelayMs' | 'targetDelayMs'>;

interface BufferedFrame {
  frame: MediaFrame;
  extSeq: number;
  extTs: number;
  samples: number;
}

/** Where a frame falls in the current stream. */
interface Position {
  extSeq: number;
  extTs: number;
  transitMs: number;
}

interface StreamState {
  highestSeq: number;
  /** Unwrapped timestamp of the highest-sequence frame: the reference for unwrapping. */
  referenceTs: number;
  lastTransitMs: number;
}

/** Transit samples over a sliding window of arrival time. */
class DelayWindow {
  private entries: Array<{ arrivalMs: number; transitMs: number }> = [];
  private scratch = new Float64Array(128);

  add(arrivalMs: number, transitMs: number): void {
    this.entries.push({ arrivalMs, transitMs });
  }

  /** Forget samples that arrived before `cutoffMs`. */
  purge(cutoffMs: number): void {
    let drop = 0;
    while (drop < this.entries.length && this.entries[drop].arrivalMs < cutoffMs) drop++;
    if (drop > 0) this.entries.splice(0, drop);
  }

  get isEmpty(): boolean {
    return this.entries.length === 0;
  }

  /** Smallest transit and the `p`-quantile (nearest rank) of transit relative to it. */
  summarize(p: number): { minTransitMs: number; relativeDelayMs: number } {
    // This runs for every inserted frame: a linear minimum and a quickselect on a scratch
    // copy (O(n)) instead of sorting the window.
    const n = this.entries.length;
    if (this.scratch.length < n) this.scratch = new Float64Array(Math.max(n, this.scratch.length * 2));
    const values = this.scratch;
    let min = Infinity;
    for (let i = 0; i < n; i++) {
      const t = this.entries[i].transitMs;
      values[i] = t;
      if (t < min) min = t;
    }
    const rank = Math.max(1, Math.ceil(p * n));
    return { minTransitMs: min, relativeDelayMs: quickselect(values, n, rank - 1) - min };
  }

  clear(): void {
    this.entries = [];
  }
}

/** The k-th smallest (0-based) of the first n values (reorders them): Hoare's quickselect. */
function quickselect(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

export class JitterBuffer {
  private readonly minDelayMs: number;
  private readonly startFloorMs: number;
  private readonly startFloorForMs: number;
  private readonly marginMs: number;
  private readonly maxDelayMs: number;
  private readonly windowMs: number;
  private readonly percentile: number;
  private readonly accelerateThresholdMs: number;
  private readonly maxConcealMs: number;
  private readonly maxPackets: number;
  private readonly discontinuityMs: number;

  /** Frames waiting for playout, in sequence order. */
  private buffer: BufferedFrame[] = [];
  private stream: StreamState | undefined;
  /** The playout clock; undefined while (re)buffering. */
  private nextTs: number | undefined;
  /** Highest unwrapped sequence number played, removed or discarded at playout. */
  private lastConsumedSeq: number | undefined;
  /** Ring of recently received unwrapped sequence numbers, indexed by seq mod size. */
  private readonly received = new Float64Array(RECEIVED_HISTORY).fill(Number.NaN);
  /** A discontinuous frame waiting for its successor to confirm a restart. */
  private held: MediaFrame | undefined;
  private readonly delays = new DelayWindow();
  private minTransitMs: number | undefined;
  private targetMs: number;
  /** The target as measured, without the start-up floor: what playout starts at. */
  private startTargetMs: number;
  /** The target without the margin (clamped alike): below it, decelerate. */
  private floorMs: number;
  private minimumMs: number;
  /** Arrival time of the stream's first frame (since the last restart). */
  private streamStartMs: number | undefined;
  /** Duration of the last frame played: the length of concealment and the "one frame" of the target. */
  private frameMs: number;
  private concealRunMs = 0;
  private concealing = false;
  private lastDelayMs = 0;
  private readonly counters: Counters = {
    jitterBufferDelay: 0,
    jitterBufferEmittedCount: 0,
    jitterBufferTargetDelay: 0,
    jitterBufferMinimumDelay: 0,
    totalSamplesReceived: 0,
    concealedSamples: 0,
    concealmentEvents: 0,
    insertedSamplesForDeceleration: 0,
    removedSamplesForAcceleration: 0,
    packetsDiscarded: 0,
    packetsDuplicated: 0,
    streamResets: 0,
  };

  constructor(options: JitterBufferOptions = {}) {
    this.minDelayMs = options.minDelayMs ?? 20;
    this.startFloorMs = options.startFloorMs ?? 0;
    this.startFloorForMs = options.startFloorForMs ?? 1000;
    this.marginMs = options.marginMs ?? 2;
    this.maxDelayMs = options.maxDelayMs ?? 400;
    this.windowMs = options.windowMs ?? 2000;
    this.percentile = options.percentile ?? 0.97;
    this.accelerateThresholdMs = options.accelerateThresholdMs ?? 30;
    this.maxConcealMs = options.maxConcealMs ?? 1000;
    this.frameMs = options.defaultFrameMs ?? 20;
    this.maxPackets = options.maxPackets ?? 256;
    this.discontinuityMs = options.discontinuityMs ?? 3000;
    this.validateOptions();
    this.minimumMs = Math.min(this.marginMs, this.maxDelayMs);
    this.targetMs = this.clampTarget(this.marginMs);
    this.startTargetMs = this.targetMs;
    this.floorMs = this.clampTarget(0);
  }

  /** Offer one arriving frame. Never throws for network-controlled values inside their ranges. */
  insert(frame: MediaFrame): InsertOutcome {
    validateFrame(frame);
    if (this.stream === undefined) return this.accept(frame, this.startStream(frame));
    const position = this.locate(frame, this.stream);
    if (this.isDiscontinuous(position, this.stream)) return this.onDiscontinuity(frame);
    if (this.held !== undefined) this.discardHeld();
    return this.accept(frame, position);
  }

  /**
   * Take the next output. `nowMs` is the time of the pull; `playout` (for callers with an
   * output clock and a FIFO) says how much decoded audio is queued ahead of it and the
   * clock's period. Without it the output starts at `nowMs`.
   */
  pull(nowMs: number, playout?: PlayoutPosition): PullResult {
    if (!Number.isFinite(nowMs)) throw new InternalError(`jitter buffer: nowMs must be finite, got ${nowMs}`);
    const queuedMs = playout?.queuedMs ?? 0;
    const periodMs = playout?.periodMs ?? 0;
    if (!(queuedMs >= 0 && Number.isFinite(queuedMs) && periodMs >= 0 && Number.isFinite(periodMs))) {
      throw new InternalError(`jitter buffer: queuedMs and periodMs must be finite and >= 0, got ${queuedMs} and ${periodMs}`);
    }
    const playAtMs = nowMs + queuedMs;
    this.refreshTarget(nowMs);
    if (this.nextTs === undefined && !this.startPlayout(nowMs)) return this.idle();
    const nextTs = this.nextTs as number;
    this.discardStaleFrames(nextTs);
    const headroomMs = this.delayAt(nowMs, nextTs);
    this.lastDelayMs = headroomMs + queuedMs;
    const head = this.buffer[0];
    // An empty buffer while the headroom is below its floor: the path got slower than the
    // delay allows, and the frame due is probably on its way. Moving the clock past it would
    // make it late too, and the next one, for as long as the shortfall lasts (a path 3 ms
    // slower concealed every frame until the 1 s stop in the tests). Hold the clock instead,
    // as NetEq expands while it waits.
    if (head === undefined) return this.conceal('underrun', headroomMs < this.floorMs);
    if (head.extTs > nextTs + head.samples / 2) return this.conceal('gap');
    if (headroomMs < this.floorMs) {
      const expandMs = playout === undefined ? undefined : this.expansionFor(headroomMs, queuedMs, periodMs, head.frame.durationMs);
      return expandMs === undefined ? this.decelerate(head) : this.play(playAtMs, undefined, undefined, expandMs);
    }
    const spareMs = this.spareDelay(headroomMs, queuedMs, periodMs);
    if (spareMs > Math.max(this.accelerateThresholdMs, head.frame.durationMs) && this.isContiguous(head, this.buffer[1])) {
      return this.accelerate(playAtMs);
    }
    const compressMs =
      playout !== undefined && spareMs >= MIN_COMPRESS_MS ? Math.min(spareMs, head.frame.durationMs * MAX_COMPRESS_FRACTION) : undefined;
    return this.play(playAtMs, undefined, compressMs);
  }

  /**
   * Count a delay the stream would have needed although no frame arrived with it: the frame
   * with media `timestamp` would have become playable at `availableAtMs`. FEC uses it: a
   * block is recovered when enough of its packets are in, at the same moment whichever of
   * its frames was lost, so a recovery also shows the delay the block's first frame (its
   * worst position) would have needed. Fed at once, the target covers that after the first
   * loss, instead of learning one position of the block per concealed frame. Ignored before
   * the stream starts and when it is far from the stream's transit (a stale block).
   */
  observeDelay(timestamp: number, availableAtMs: number): void {
    const stream = this.stream;
    if (stream === undefined || !Number.isFinite(availableAtMs)) return;
    const extTs = stream.referenceTs + wrappedDelta(timestamp, stream.referenceTs, TS_MODULUS);
    const transitMs = availableAtMs - extTs / SAMPLES_PER_MS;
    if (Math.abs(transitMs - stream.lastTransitMs) > this.discontinuityMs) return;
    this.delays.add(availableAtMs, transitMs);
  }

  /**
   * The caller time-stretched the last frame: `samples` added (> 0) or removed (< 0). Counted
   * in insertedSamplesForDeceleration / removedSamplesForAcceleration and in the output
   * (totalSamplesReceived). The delay itself follows from the caller's next pull.
   */
  recordTimeStretch(samples: number): void {
    if (!Number.isInteger(samples)) throw new InternalError(`jitter buffer: time stretch must be whole samples, got ${samples}`);
    const c = this.counters;
    if (samples < 0) c.removedSamplesForAcceleration -= samples;
    else c.insertedSamplesForDeceleration += samples;
    c.totalSamplesReceived += samples;
  }

  stats(): JitterBufferStats {
    const c = this.counters;
    return {
      ...c,
      expandRate: c.totalSamplesReceived === 0 ? 0 : c.concealedSamples / c.totalSamplesReceived,
      currentDelayMs: this.nextTs === undefined ? 0 : this.lastDelayMs,
      targetDelayMs: this.targetMs,
    };
  }

  // --- insertion ---

  private startStream(frame: MediaFrame): Position {
    const transitMs = frame.arrivalMs - frame.timestamp / SAMPLES_PER_MS;
    this.streamStartMs = frame.arrivalMs;
    this.stream = { highestSeq: frame.seq, referenceTs: frame.timestamp, lastTransitMs: transitMs };
    return { extSeq: frame.seq, extTs: frame.timestamp, transitMs };
  }

  private locate(frame: MediaFrame, stream: StreamState): Position {
    const extSeq = unwrapU16(frame.seq, stream.highestSeq);
    const extTs = stream.referenceTs + wrappedDelta(frame.timestamp, stream.referenceTs, TS_MODULUS);
    return { extSeq, extTs, transitMs: frame.arrivalMs - extTs / SAMPLES_PER_MS };
  }

  private isDiscontinuous(position: Position, stream: StreamState): boolean {
    const seqStep = position.extSeq - stream.highestSeq;
    return (
      seqStep > MAX_DROPOUT ||
      seqStep < -MAX_MISORDER ||
      Math.abs(position.transitMs - stream.lastTransitMs) > this.discontinuityMs
    );
  }

  private onDiscontinuity(frame: MediaFrame): InsertOutcome {
    const held = this.held;
    if (held !== undefined && frame.seq === held.seq) {
      this.counters.packetsDuplicated++;
      return 'duplicate';
    }
    if (held !== undefined && frame.seq === (held.seq + 1) % SEQ_MODULUS) {
      this.restart();
      this.accept(held, this.startStream(held));
      this.accept(frame, this.locate(frame, this.stream as StreamState));
      return 'reset';
    }
    if (held !== undefined) this.discardHeld();
    this.held = frame;
    return 'held';
  }

  private discardHeld(): void {
    this.held = undefined;
    this.counters.packetsDiscarded++;
  }

  private restart(): void {
    this.held = undefined;
    this.buffer = [];
    this.nextTs = undefined;
    this.lastConsumedSeq = undefined;
    this.received.fill(Number.NaN);
    this.delays.clear();
    this.minTransitMs = undefined;
    this.concealRunMs = 0;
    this.concealing = false;
    this.counters.streamResets++;
  }

  private accept(frame: MediaFrame, position: Position): InsertOutcome {
    const slot = ringSlot(position.extSeq);
    if (this.received[slot] === position.extSeq) {
      this.counters.packetsDuplicated++;
      return 'duplicate';
    }
    this.received[slot] = position.extSeq;
    this.recordArrival(frame, position);
    const samples = frame.durationMs * SAMPLES_PER_MS;
    if (this.isLate(position, samples)) {
      this.counters.packetsDiscarded++;
      return 'late';
    }
    if (this.buffer.length >= this.maxPackets) {
      this.counters.packetsDiscarded++;
      return 'overflow';
    }
    this.insertSorted({ frame, extSeq: position.extSeq, extTs: position.extTs, samples });
    return 'buffered';
  }

  /** Feed the delay statistics (late frames included: they show the delay that was needed). */
  private recordArrival(frame: MediaFrame, position: Position): void {
    const stream = this.stream as StreamState;
    this.delays.add(frame.arrivalMs, position.transitMs);
    stream.lastTransitMs = position.transitMs;
    if (position.extSeq > stream.highestSeq) {
      stream.highestSeq = position.extSeq;
      stream.referenceTs = position.extTs;
    }
  }

  private isLate(position: Position, samples: number): boolean {
    if (this.lastConsumedSeq !== undefined && position.extSeq <= this.lastConsumedSeq) return true;
    return this.nextTs !== undefined && position.extTs < this.nextTs - samples / 2;
  }

  private insertSorted(entry: BufferedFrame): void {
    let i = this.buffer.length;
    while (i > 0 && this.buffer[i - 1].extSeq > entry.extSeq) i--;
    this.buffer.splice(i, 0, entry);
  }

  // --- delay estimate ---

  private refreshTarget(nowMs: number): void {
    this.delays.purge(nowMs - this.statisticsWindow(nowMs));
    if (this.delays.isEmpty) return; // no recent arrivals: keep the last estimate
    const { minTransitMs, relativeDelayMs } = this.delays.summarize(this.percentile);
    const estimateMs = relativeDelayMs + this.marginMs;
    const young = this.streamStartMs !== undefined && nowMs - this.streamStartMs < this.startFloorForMs;
    const startFloorMs = young ? this.startFloorMs : 0;
    this.minTransitMs = minTransitMs;
    this.minimumMs = Math.min(estimateMs, this.maxDelayMs);
    this.startTargetMs = this.clampTarget(estimateMs);
    this.targetMs = this.clampTarget(Math.max(estimateMs, startFloorMs + this.marginMs));
    this.floorMs = this.clampTarget(Math.max(relativeDelayMs, startFloorMs));
  }

  /**
   * The window grows with the stream: half its age, from START_WINDOW_MS up to windowMs. The
   * first packets of a stream are the least representative (connection warm-up, key
   * exchange, the process's own start-up stalls): in a loopback call they arrived up to
   * ~60 ms late and, with a full 2 s window, held the target there for 2 s. NetEq forgets
   * its start the same way (a forgetting factor that starts low).
   */
  private statisticsWindow(nowMs: number): number {
    if (this.streamStartMs === undefined) return this.windowMs;
    return Math.min(this.windowMs, Math.max(START_WINDOW_MS, (nowMs - this.streamStartMs) / 2));
  }

  private clampTarget(ms: number): number {
    return Math.min(this.maxDelayMs, Math.max(this.minDelayMs, ms));
  }

  /** How far the playout point `ts` trails the fastest packet at `nowMs`. */
  private delayAt(nowMs: number, ts: number): number {
    return nowMs - (ts / SAMPLES_PER_MS + (this.minTransitMs ?? 0));
  }

  /**
   * Delay that can go without the headroom at later pulls falling below target. Queued audio
   * can always be shortened (the next pull stays on the same clock tick); beyond it, each
   * period removed moves the pulls one tick earlier, i.e. the headroom down by a period.
   */
  private spareDelay(headroomMs: number, queuedMs: number, periodMs: number): number {
    const aboveMs = headroomMs - this.targetMs - COMPRESS_HYSTERESIS_MS;
    if (aboveMs <= 0) return queuedMs;
    return queuedMs + (periodMs > 0 ? periodMs * Math.floor(aboveMs / periodMs) : aboveMs);
  }

  // --- playout ---

  /**
   * Start (or resume) playing once the oldest frame has waited the target delay. (Starting at
   * the floor instead, with no wait at all while the window holds one arrival, let the next
   * frame, 0.5 ms later than the first, miss its pull in the tests.)
   */
  private startPlayout(nowMs: number): boolean {
    const head = this.buffer[0];
    if (head === undefined || this.delayAt(nowMs, head.extTs) < this.startTargetMs) return false;
    this.nextTs = head.extTs;
    return true;
  }

  private discardStaleFrames(nextTs: number): void {
    while (this.buffer.length > 0 && this.buffer[0].extTs < nextTs - this.buffer[0].samples / 2) {
      this.takeHead();
      this.counters.packetsDiscarded++;
    }
  }

  private isContiguous(head: BufferedFrame, following: BufferedFrame | undefined): boolean {
    return following !== undefined && Math.abs(following.extTs - (head.extTs + head.samples)) <= following.samples / 2;
  }

  /** Take the oldest frame out of the buffer and mark its sequence number consumed. */
  private takeHead(): BufferedFrame {
    const head = this.buffer.shift() as BufferedFrame;
    this.lastConsumedSeq = head.extSeq;
    return head;
  }

  /** Drop the oldest frame and play the next one in the same period. */
  private accelerate(playAtMs: number): PullResult {
    const removed = this.takeHead();
    this.counters.removedSamplesForAcceleration += removed.samples;
    return this.play(playAtMs, frameRef(removed.frame));
  }

  /**
   * Lengthening the next frame that raises the headroom to the floor, if a fraction of the
   * frame does it: on an output clock, the queued audio plus the expansion must reach a
   * period (the next pull then comes a tick later: headroom + one period); pulled frame by
   * frame, the shortfall itself. A bigger shortfall takes a whole-frame deceleration.
   */
  private expansionFor(headroomMs: number, queuedMs: number, periodMs: number, frameMs: number): number | undefined {
    const shortMs = this.floorMs - headroomMs;
    const expandMs = periodMs > 0 ? (shortMs <= periodMs ? periodMs - queuedMs : Infinity) : shortMs;
    return expandMs <= frameMs * MAX_COMPRESS_FRACTION ? Math.max(expandMs, MIN_COMPRESS_MS) : undefined;
  }

  /** Emit the head frame; it starts playing at `playAtMs` (its wait counts until then). */
  private play(playAtMs: number, removed?: FrameRef, compressMs?: number, expandMs?: number): PullResult {
    const entry = this.takeHead();
    const c = this.counters;
    this.nextTs = entry.extTs + entry.samples;
    this.frameMs = entry.frame.durationMs;
    this.endConcealment();
    c.jitterBufferDelay += ((playAtMs - entry.frame.arrivalMs) / 1000) * entry.samples;
    c.jitterBufferTargetDelay += (this.targetMs / 1000) * entry.samples;
    c.jitterBufferMinimumDelay += (this.minimumMs / 1000) * entry.samples;
    c.jitterBufferEmittedCount += entry.samples;
    c.totalSamplesReceived += entry.samples;
    const played = {
      kind: 'frame' as const,
      durationMs: entry.frame.durationMs,
      ...frameRef(entry.frame),
      ...(removed === undefined ? {} : { removed }),
      ...(compressMs === undefined ? {} : { compressMs }),
      ...(expandMs === undefined ? {} : { expandMs }),
    };
    return played;
  }

  private decelerate(head: BufferedFrame): PullResult {
    this.endConcealment();
    this.counters.insertedSamplesForDeceleration += head.samples;
    this.counters.totalSamplesReceived += head.samples;
    return { kind: 'decelerate', durationMs: head.frame.durationMs };
  }

  /**
   * Play concealment for the frame due. Normally the clock moves past it (it is lost or will
   * be too late). With `hold` the clock stays: the frame is awaited, and the delay grows by
   * what was concealed.
   */
  private conceal(cause: 'gap' | 'underrun', hold = false): PullResult {
    if (this.concealRunMs + this.frameMs > this.maxConcealMs) return this.stopPlayout();
    const samples = this.frameMs * SAMPLES_PER_MS;
    if (!this.concealing) this.counters.concealmentEvents++;
    this.concealing = true;
    this.concealRunMs += this.frameMs;
    this.counters.concealedSamples += samples;
    this.counters.totalSamplesReceived += samples;
    if (!hold) this.nextTs = (this.nextTs as number) + samples;
    return { kind: 'conceal', durationMs: this.frameMs, cause };
  }

  private endConcealment(): void {
    this.concealing = false;
    this.concealRunMs = 0;
  }

  /** The stream stopped: rebuffer, then resume at the oldest frame held. */
  private stopPlayout(): PullResult {
    this.nextTs = undefined;
    this.endConcealment();
    return this.idle();
  }

  private idle(): PullResult {
    return { kind: 'empty', durationMs: this.frameMs };
  }

  private validateOptions(): void {
    const positive: Array<[string, number]> = [
      ['maxDelayMs', this.maxDelayMs],
      ['windowMs', this.windowMs],
      ['maxConcealMs', this.maxConcealMs],
      ['defaultFrameMs', this.frameMs],
      ['discontinuityMs', this.discontinuityMs],
    ];
    for (const [name, value] of positive) {
      if (!(Number.isFinite(value) && value > 0)) throw new UsageError(`jitter buffer: ${name} must be > 0, got ${value}`);
    }
    if (!(this.marginMs >= 0 && Number.isFinite(this.marginMs))) {
      throw new UsageError(`jitter buffer: marginMs must be >= 0, got ${this.marginMs}`);
    }
    if (!(this.minDelayMs >= 0 && this.minDelayMs <= this.maxDelayMs)) {
      throw new UsageError(`jitter buffer: need 0 <= minDelayMs <= maxDelayMs, got ${this.minDelayMs} and ${this.maxDelayMs}`);
    }
    if (!(this.startFloorMs >= 0 && this.startFloorMs <= this.maxDelayMs)) {
      throw new UsageError(`jitter buffer: need 0 <= startFloorMs <= maxDelayMs, got ${this.startFloorMs} and ${this.maxDelayMs}`);
    }
    if (!(this.startFloorForMs >= 0 && Number.isFinite(this.startFloorForMs))) {
      throw new UsageError(`jitter buffer: startFloorForMs must be >= 0, got ${this.startFloorForMs}`);
    }
    if (!(this.percentile > 0 && this.percentile <= 1)) {
      throw new UsageError(`jitter buffer: percentile must be within (0, 1], got ${this.percentile}`);
    }
    if (!(this.accelerateThresholdMs >= 0)) {
      throw new UsageError(`jitter buffer: accelerateThresholdMs must be >= 0, got ${this.accelerateThresholdMs}`);
    }
    if (!(Number.isInteger(this.maxPackets) && this.maxPackets >= 1 && this.maxPackets <= RECEIVED_HISTORY - MAX_MISORDER)) {
      throw new UsageError(`jitter buffer: maxPackets must be an integer within 1-${RECEIVED_HISTORY - MAX_MISORDER}, got ${this.maxPackets}`);
    }
  }
}

function ringSlot(extSeq: number): number {
  return ((extSeq % RECEIVED_HISTORY) + RECEIVED_HISTORY) % RECEIVED_HISTORY;
}

function frameRef(frame: MediaFrame): FrameRef {
  return { seq: frame.seq, timestamp: frame.timestamp, payload: frame.payload };
}

function validateFrame(frame: MediaFrame): void {
  const problem = frameProblem(frame);
  if (problem !== undefined) throw new InternalError(`jitter buffer: ${problem}`);
}

function frameProblem(frame: MediaFrame): string | undefined {
  if (!Number.isInteger(frame.seq) || frame.seq < 0 || frame.seq >= SEQ_MODULUS) return `seq ${frame.seq} is not a u16`;
  if (!Number.isInteger(frame.timestamp) || frame.timestamp < 0 || frame.timestamp >= TS_MODULUS) {
    return `timestamp ${frame.timestamp} is not a u32`;
  }
  if (!Number.isFinite(frame.arrivalMs)) return `arrivalMs ${frame.arrivalMs} is not finite`;
  if (!(frame.durationMs > 0) || !Number.isInteger(frame.durationMs * SAMPLES_PER_MS)) {
    return `durationMs ${frame.durationMs} is not a positive whole number of 48 kHz samples`;
  }
  if (!(frame.payload instanceof Uint8Array)) return 'payload is not a Uint8Array';
  return undefined;
}

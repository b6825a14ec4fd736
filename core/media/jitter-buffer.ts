/**
 * Adaptive jitter buffer, after WebRTC's NetEq, at frame granularity.
 *
 * Frames go in with `insert()` as they arrive (any order); the playout side calls `pull()`
 * once per output period and plays what it gets back for `durationMs`, then pulls again.
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
 * delay relative to the fastest packet). The target delay is the `percentile` (95th) of the
 * relative delays plus one frame, clamped to [minDelayMs, maxDelayMs]. The current delay
 * is how far the playout clock trails the fastest packet: nowMs - (nextTs/48 + minTransit).
 * A packet with relative delay d is on time exactly when d <= current delay, so holding the
 * current delay at the target plays 95 % of packets.
 *
 * Tracking the target. At each pull with the next frame in hand: below target, decelerate;
 * above target by more than max(accelerateThresholdMs, one frame), accelerate by removing a
 * frame (the caller may decode the removed frame to keep codec state, or time-compress the
 * two frames into one period). The dead band of at least a frame keeps one step from
 * overshooting into the opposite correction.
 *
 * Gaps and stops. A missing frame at the playout point is concealed (the clock moves on).
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

const SAMPLES_PER_MS = PIPELINE_SAMPLE_RATE / 1000;
const SEQ_MODULUS = 0x1_0000;
const TS_MODULUS = 0x1_0000_0000;
/** RFC 3550 A.1: a forward sequence jump up to this is a (long) loss, beyond it a restart candidate. */
export const MAX_DROPOUT = 3000;
/** RFC 3550 A.1: a backward step up to this is a late or duplicate packet, beyond it a restart candidate. */
export const MAX_MISORDER = 100;
/** Sequence numbers remembered for duplicate detection; must exceed MAX_MISORDER + maxPackets. */
const RECEIVED_HISTORY = 1024;

export interface JitterBufferOptions {
  /** Lower clamp of the target delay, ms. Default 20. */
  minDelayMs?: number;
  /** Upper clamp of the target delay, ms. Default 400. */
  maxDelayMs?: number;
  /** Sliding window of arrivals the delay statistics cover, ms. Default 2000. */
  windowMs?: number;
  /** Fraction of packets the target delay aims to play on time. Default 0.95. */
  percentile?: number;
  /** Accelerate only when current delay exceeds target by more than this (and by a frame), ms. Default 30. */
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
   * frames into one period.
   */
  | ({ kind: 'frame'; durationMs: number; removed?: FrameRef } & FrameRef)
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
  /** Samples output: decoded, concealed and inserted for deceleration. */
  totalSamplesReceived: number;
  concealedSamples: number;
  /** Runs of concealment (a concealed sample after a non-concealed one). */
  concealmentEvents: number;
  insertedSamplesForDeceleration: number;
  removedSamplesForAcceleration: number;
  /** Frames dropped for arriving after their playout time, or when the buffer was full. */
  packetsDiscarded: number;
  packetsDuplicated: number;
  /** Fraction of output samples that were concealment (NetEq's expand rate), 0..1. */
  expandRate: number;
  /** How far the playout clock trails the fastest packet, ms, at the last pull (0 when not playing). */
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

/** Signed distance from `reference` to `value` on a ring of `modulus`, in [-modulus/2, modulus/2). */
function wrappedDelta(value: number, reference: number, modulus: number): number {
  const half = modulus / 2;
  return ((((value - reference) % modulus) + modulus + half) % modulus) - half;
}

export class JitterBuffer {
  private readonly minDelayMs: number;
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
  private minimumMs: number;
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
    this.maxDelayMs = options.maxDelayMs ?? 400;
    this.windowMs = options.windowMs ?? 2000;
    this.percentile = options.percentile ?? 0.95;
    this.accelerateThresholdMs = options.accelerateThresholdMs ?? 30;
    this.maxConcealMs = options.maxConcealMs ?? 1000;
    this.frameMs = options.defaultFrameMs ?? 20;
    this.maxPackets = options.maxPackets ?? 256;
    this.discontinuityMs = options.discontinuityMs ?? 3000;
    this.validateOptions();
    this.minimumMs = Math.min(this.frameMs, this.maxDelayMs);
    this.targetMs = this.clampTarget(this.frameMs);
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

  /** Take the output for the period starting at `nowMs`. */
  pull(nowMs: number): PullResult {
    if (!Number.isFinite(nowMs)) throw new InternalError(`jitter buffer: nowMs must be finite, got ${nowMs}`);
    this.refreshTarget(nowMs);
    if (this.nextTs === undefined && !this.startPlayout(nowMs)) return this.idle();
    const nextTs = this.nextTs as number;
    this.discardStaleFrames(nextTs);
    this.lastDelayMs = this.delayAt(nowMs, nextTs);
    const head = this.buffer[0];
    if (head === undefined) return this.conceal('underrun');
    if (head.extTs > nextTs + head.samples / 2) return this.conceal('gap');
    const excessMs = this.lastDelayMs - this.targetMs;
    if (excessMs < 0) return this.decelerate(head);
    if (excessMs > Math.max(this.accelerateThresholdMs, head.frame.durationMs) && this.isContiguous(head, this.buffer[1])) {
      return this.accelerate(nowMs);
    }
    return this.play(nowMs);
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
    this.stream = { highestSeq: frame.seq, referenceTs: frame.timestamp, lastTransitMs: transitMs };
    return { extSeq: frame.seq, extTs: frame.timestamp, transitMs };
  }

  private locate(frame: MediaFrame, stream: StreamState): Position {
    const extSeq = stream.highestSeq + wrappedDelta(frame.seq, stream.highestSeq, SEQ_MODULUS);
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
    this.delays.purge(nowMs - this.windowMs);
    if (this.delays.isEmpty) return; // no recent arrivals: keep the last estimate
    const { minTransitMs, relativeDelayMs } = this.delays.summarize(this.percentile);
    const estimateMs = relativeDelayMs + this.frameMs;
    this.minTransitMs = minTransitMs;
    this.minimumMs = Math.min(estimateMs, this.maxDelayMs);
    this.targetMs = this.clampTarget(estimateMs);
  }

  private clampTarget(ms: number): number {
    return Math.min(this.maxDelayMs, Math.max(this.minDelayMs, ms));
  }

  /** How far the playout point `ts` trails the fastest packet at `nowMs`. */
  private delayAt(nowMs: number, ts: number): number {
    return nowMs - (ts / SAMPLES_PER_MS + (this.minTransitMs ?? 0));
  }

  // --- playout ---

  /** Start (or resume) playing once the oldest frame has waited the target delay. */
  private startPlayout(nowMs: number): boolean {
    const head = this.buffer[0];
    if (head === undefined || this.delayAt(nowMs, head.extTs) < this.targetMs) return false;
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
  private accelerate(nowMs: number): PullResult {
    const removed = this.takeHead();
    this.counters.removedSamplesForAcceleration += removed.samples;
    return this.play(nowMs, frameRef(removed.frame));
  }

  private play(nowMs: number, removed?: FrameRef): PullResult {
    const entry = this.takeHead();
    const c = this.counters;
    this.nextTs = entry.extTs + entry.samples;
    this.frameMs = entry.frame.durationMs;
    this.endConcealment();
    c.jitterBufferDelay += ((nowMs - entry.frame.arrivalMs) / 1000) * entry.samples;
    c.jitterBufferTargetDelay += (this.targetMs / 1000) * entry.samples;
    c.jitterBufferMinimumDelay += (this.minimumMs / 1000) * entry.samples;
    c.jitterBufferEmittedCount += entry.samples;
    c.totalSamplesReceived += entry.samples;
    const played = { kind: 'frame' as const, durationMs: entry.frame.durationMs, ...frameRef(entry.frame) };
    return removed === undefined ? played : { ...played, removed };
  }

  private decelerate(head: BufferedFrame): PullResult {
    this.endConcealment();
    this.counters.insertedSamplesForDeceleration += head.samples;
    this.counters.totalSamplesReceived += head.samples;
    return { kind: 'decelerate', durationMs: head.frame.durationMs };
  }

  private conceal(cause: 'gap' | 'underrun'): PullResult {
    if (this.concealRunMs + this.frameMs > this.maxConcealMs) return this.stopPlayout();
    const samples = this.frameMs * SAMPLES_PER_MS;
    if (!this.concealing) this.counters.concealmentEvents++;
    this.concealing = true;
    this.concealRunMs += this.frameMs;
    this.counters.concealedSamples += samples;
    this.counters.totalSamplesReceived += samples;
    this.nextTs = (this.nextTs as number) + samples;
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
    if (!(this.minDelayMs >= 0 && this.minDelayMs <= this.maxDelayMs)) {
      throw new UsageError(`jitter buffer: need 0 <= minDelayMs <= maxDelayMs, got ${this.minDelayMs} and ${this.maxDelayMs}`);
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

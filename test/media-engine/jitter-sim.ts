/**
 * Simulated-time driver for jitter buffer tests: frames arrive at given times, the playout
 * side pulls at the start of each output period and advances by the returned duration.
 */
import type { JitterBuffer, MediaFrame, PullResult } from '../../core/media/jitter-buffer.js';

export const FRAME_MS = 20;
const SAMPLES_PER_FRAME = 960;
const TS_MODULUS = 2 ** 32;

/** Frame `n` of a stream of 20 ms frames (sequence and timestamp wrap as on the wire). */
export function frame(n: number, arrivalMs: number, base: { seq?: number; ts?: number } = {}): MediaFrame {
  return {
    seq: ((base.seq ?? 0) + n) % 0x1_0000,
    timestamp: ((base.ts ?? 0) + n * SAMPLES_PER_FRAME) % TS_MODULUS,
    arrivalMs,
    durationMs: FRAME_MS,
    payload: Uint8Array.of(n & 0xff),
  };
}

/** Frames 0..count-1 sent every 20 ms from t = 0, each arriving after `delayOf(n)` ms. */
export function stream(count: number, delayOf: (n: number) => number, base: { seq?: number; ts?: number } = {}): MediaFrame[] {
  return Array.from({ length: count }, (_, n) => frame(n, n * FRAME_MS + delayOf(n), base));
}

export interface Pulled {
  atMs: number;
  result: PullResult;
}

/** Run until a time, or until frame `playedSeq` is played or removed (leaving the end-of-stream underrun out). */
export type Until = { endMs: number } | { playedSeq: number };

/**
 * Drive the buffer from `startMs`: every frame that has arrived by a pull time is inserted
 * first (in arrival order), then the pull happens; the next pull is one output later.
 */
export function run(
  jb: JitterBuffer,
  frames: readonly MediaFrame[],
  startMs: number,
  until: Until,
  onPull?: (pulled: Pulled) => void,
): Pulled[] {
  const pending = [...frames].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const endMs = 'endMs' in until ? until.endMs : Math.max(...frames.map((f) => f.arrivalMs)) + 10_000;
  const out: Pulled[] = [];
  let next = 0;
  for (let t = startMs; t < endMs; ) {
    while (next < pending.length && pending[next].arrivalMs <= t) jb.insert(pending[next++]);
    const pulled = { atMs: t, result: jb.pull(t) };
    out.push(pulled);
    onPull?.(pulled);
    if ('playedSeq' in until && consumes(pulled.result, until.playedSeq)) return out;
    t += pulled.result.durationMs;
  }
  if ('playedSeq' in until) throw new Error(`frame ${until.playedSeq} was never played`);
  return out;
}

function consumes(result: PullResult, seq: number): boolean {
  return result.kind === 'frame' && (result.seq === seq || result.removed?.seq === seq);
}

/** Sequence numbers of the frames played, in playout order. */
export function playedSeqs(pulls: readonly Pulled[]): number[] {
  return pulls.flatMap(({ result }) => (result.kind === 'frame' ? [result.seq] : []));
}

export function kinds(pulls: readonly Pulled[], kind: PullResult['kind']): Pulled[] {
  return pulls.filter((p) => p.result.kind === kind);
}

export function range(from: number, count: number, modulus = Number.POSITIVE_INFINITY): number[] {
  return Array.from({ length: count }, (_, i) => (from + i) % modulus);
}

export interface ClockedPull extends Pulled {
  /** Audio queued ahead of this pull, ms. */
  queuedMs: number;
  /** Output length this pull produced after stretching, ms. */
  outputMs: number;
}

/**
 * Drive the buffer the way a call does: an output clock of `periodMs` with a FIFO of decoded
 * audio. At each tick, frames that have arrived are inserted, then the buffer is pulled
 * (with the queued audio and the period) until at least a period is queued. The caller
 * honours stretch requests exactly (`compressMs` removed, `expandMs` added) and reports them;
 * `empty` fills the rest of the period with silence.
 */
export function runClocked(
  jb: JitterBuffer,
  frames: readonly MediaFrame[],
  startMs: number,
  periodMs: number,
  endMs: number,
  onPull?: (pulled: ClockedPull) => void,
): ClockedPull[] {
  const pending = [...frames].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const out: ClockedPull[] = [];
  let next = 0;
  let queuedMs = 0;
  for (let t = startMs; t < endMs; t += periodMs) {
    while (next < pending.length && pending[next].arrivalMs <= t) jb.insert(pending[next++]);
    while (queuedMs < periodMs - 1e-9) {
      const result = jb.pull(t, { queuedMs, periodMs });
      let outputMs = result.kind === 'empty' ? periodMs - queuedMs : result.durationMs;
      if (result.kind === 'frame' && result.compressMs !== undefined) {
        const removed = Math.floor(result.compressMs * 48);
        jb.recordTimeStretch(-removed);
        outputMs -= removed / 48;
      }
      if (result.kind === 'frame' && result.expandMs !== undefined) {
        const added = Math.ceil(result.expandMs * 48);
        jb.recordTimeStretch(added);
        outputMs += added / 48;
      }
      const pulled = { atMs: t, result, queuedMs, outputMs };
      out.push(pulled);
      onPull?.(pulled);
      queuedMs += outputMs;
      if (result.kind === 'empty') break;
    }
    queuedMs -= periodMs;
  }
  return out;
}

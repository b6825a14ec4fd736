/**
 * Playout: one MediaReceiver per remote sender (decryption, FEC, jitter buffer, decoding),
 * and every output period their audio mixed into one frame for the sink (speaker,
 * recording). Also what the receivers tell about each stream: when the first remote frame
 * played, who is talking, loss, jitter and the reports the senders attach.
 *
 * Streams are keyed by an object of the caller's (a room member, or the peer of a direct
 * call); a stream that ended keeps its counters for the report for as long as its key is
 * kept (a WeakMap: the caller's bound on departed members bounds this too).
 */
import { mix, saturate } from '../audio/sources.js';
import { DecryptError } from '../crypto/media-crypto.js';
import { rms } from '../media/analysis.js';
import { frameSamplesFor, PIPELINE_SAMPLE_RATE, type CodecFactory } from '../media/codec-types.js';
import type { FecSchemeFactory } from '../media/fec-types.js';
import { CALL_JITTER_OPTIONS, CALL_OUTPUT_PERIOD_MS, MediaReceiver } from '../media/pipeline.js';
import type { Registry } from '../registry.js';
import type { QualityReport } from '../wire/media-header.js';

/** The output (mixing) period. */
export const PLAYOUT_PERIOD_MS = CALL_OUTPUT_PERIOD_MS;
/** Samples in one output period. */
export const PLAYOUT_PERIOD_SAMPLES = frameSamplesFor(PLAYOUT_PERIOD_MS);
/** Output RMS above which a sender counts as talking (about -40 dBFS). */
export const TALKING_RMS = 330;

/** One remote sender's stream. */
export interface PlayoutStream {
  readonly receiver: MediaReceiver;
  /** RMS of its last output period. */
  lastRms: number;
  /** Network loss in its last report window, %. */
  lossPct: number;
  /** A frame of it has been played. */
  everPlayed: boolean;
  /** The stream ended (closed): its counters stay readable. */
  ended: boolean;
}

export interface PlayoutOptions<K extends object> {
  codecs: Registry<CodecFactory>;
  fec: Registry<FecSchemeFactory>;
  /** Open (decrypt) a datagram's sealed payload from `key`'s sender; throw to drop it. */
  open(key: K, header: Uint8Array, sealed: Uint8Array): Uint8Array;
  /** The mixed output, one period at a time. */
  sink?: { write(pcm: Int16Array): void };
  /** The first remote frame starts playing at `at` (performance.now() ms). */
  onFirstAudio?(at: number): void;
}

export class Playout<K extends object> {
  readonly #opts: PlayoutOptions<K>;
  readonly #live = new Map<K, PlayoutStream>();
  /** Every stream, live or ended, while its key is kept. */
  readonly #all = new WeakMap<K, PlayoutStream>();
  #firstAudioAt: number | undefined;

  constructor(opts: PlayoutOptions<K>) {
    this.#opts = opts;
  }

  /** When the first remote frame started playing (performance.now() ms), if one has. */
  get firstAudioAt(): number | undefined {
    return this.#firstAudioAt;
  }

  /** The streams playing now, by key. */
  get live(): ReadonlyMap<K, PlayoutStream> {
    return this.#live;
  }

  /** A new sender: its stream starts empty. */
  add(key: K): PlayoutStream {
    this.end(key);
    const stream: PlayoutStream = {
      receiver: new MediaReceiver({
        open: (h, sealed) => this.#opts.open(key, h, sealed),
        // A new epoch's packets can overtake its wrapped key (datagrams vs. signalling).
        isKeyPending: (err) => err instanceof DecryptError && err.reason === 'unknown-epoch',
        codecById: (id) => this.#opts.codecs.byId(id)?.factory,
        fecById: (id) => this.#opts.fec.byId(id)?.factory,
        jitter: CALL_JITTER_OPTIONS,
      }),
      lastRms: 0,
      lossPct: 0,
      everPlayed: false,
      ended: false,
    };
    this.#live.set(key, stream);
    this.#all.set(key, stream);
    return stream;
  }

  /** The sender is gone: its stream stops (its counters stay for the report). */
  end(key: K): void {
    const stream = this.#live.get(key);
    if (!stream) return;
    this.#live.delete(key);
    stream.ended = true;
    stream.receiver.close();
  }

  /** The stream of `key`, live or ended. */
  streamOf(key: K): PlayoutStream | undefined {
    return this.#all.get(key);
  }

  /** Frames concealed so far, all live streams together. */
  concealedFrames(): number {
    let n = 0;
    for (const s of this.#live.values()) n += s.receiver.stats.concealedFrames;
    return n;
  }

  /** Whether anything arrived from `key`'s sender. */
  heard(key: K): boolean {
    return (this.#all.get(key)?.receiver.stats.packets ?? 0) > 0;
  }

  /** A datagram from `key`'s sender (ignored if it has no live stream). */
  receive(key: K, datagram: Uint8Array, now: number = performance.now()): void {
    this.#live.get(key)?.receiver.receive(datagram, now);
  }

  /** A key for `key`'s sender arrived: datagrams held for it can be opened now. */
  keyArrived(key: K, now: number = performance.now()): void {
    this.#live.get(key)?.receiver.retryHeld(now);
  }

  /** One output period: every live stream's audio, mixed, to the sink. */
  mix(now: number): Int16Array {
    const mixed = new Int32Array(PLAYOUT_PERIOD_SAMPLES);
    for (const s of this.#live.values()) {
      const { pcm: out, frameStartOffset } = s.receiver.read(now, PLAYOUT_PERIOD_SAMPLES);
      if (frameStartOffset !== undefined && !s.everPlayed) {
        s.everPlayed = true;
        if (this.#firstAudioAt === undefined) {
          // The frame starts playing after the audio queued ahead of it in this period.
          this.#firstAudioAt = now + (frameStartOffset * 1000) / PIPELINE_SAMPLE_RATE;
          this.#opts.onFirstAudio?.(this.#firstAudioAt);
        }
      }
      s.lastRms = rms(out);
      mix(mixed, out);
    }
    const pcm = saturate(mixed);
    this.#opts.sink?.write(pcm);
    return pcm;
  }

  /**
   * The report window is over: each live stream's loss is taken. Returns the worst loss (%)
   * and arrival jitter (ms) among them, to tell the senders.
   */
  takeReportWindow(): { worstLossPct: number; worstJitterMs: number } {
    let worstLossPct = 0;
    let worstJitterMs = 0;
    for (const s of this.#live.values()) {
      const loss = s.receiver.takeLossWindow();
      if (loss !== undefined) s.lossPct = loss * 100;
      worstLossPct = Math.max(worstLossPct, s.lossPct);
      worstJitterMs = Math.max(worstJitterMs, s.receiver.arrivalJitterMs);
    }
    return { worstLossPct, worstJitterMs };
  }

  /** The quality reports the live senders attached last. */
  senderReports(): QualityReport[] {
    return [...this.#live.values()].map((s) => s.receiver.lastReport).filter((x): x is QualityReport => !!x);
  }

  /** The deepest jitter buffer among the live streams, ms. */
  jitterBufferMs(): number {
    let max = 0;
    for (const s of this.#live.values()) max = Math.max(max, s.receiver.jitterStats().currentDelayMs);
    return max;
  }

  /** Every stream stops. */
  close(): void {
    for (const key of [...this.#live.keys()]) this.end(key);
  }
}

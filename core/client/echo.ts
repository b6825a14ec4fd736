/**
 * The echo test: send a known signal through a relay in echo mode with the real media
 * pipeline (codec, FEC, media headers, jitter buffer), play back what returns in real time,
 * and compare it with what was sent.
 *
 * Round trips are measured per source packet by sequence number. For the SNR, every frame
 * that came back (received or recovered by FEC) is decoded in sequence order by a separate
 * decoder and placed where its sequence number says, so neither the jitter buffer's
 * time-stretching nor playout concealment (which changes a codec's state) blurs the
 * comparison; it is aligned with the source by a small search for codec delay only (shorter
 * than a frame: a path that puts audio a frame off its sequence number cannot score well).
 * MOS comes from the E-model with the measured delay and the concealment playout needed.
 *
 * What comes back plays out exactly as a call plays a remote stream (core/client/call.ts):
 * MediaReceiver.read() on a CALL_OUTPUT_PERIOD_MS clock with CALL_JITTER_OPTIONS, so the
 * jitter-buffer delay, concealment and MOS reported are the ones a call on this path gets.
 */
import { delay } from '../time.js';
import { alignAndSnr, Rfc3550JitterEstimator, summarize } from '../media/analysis.js';
import { frameSamplesFor, PIPELINE_SAMPLE_RATE } from '../media/codec-types.js';
import { impairmentFor, mos as eModelMos } from '../media/emodel.js';
import { CALL_JITTER_OPTIONS, CALL_OUTPUT_PERIOD_MS, MediaReceiver, MediaSender, type StreamSettings } from '../media/pipeline.js';
import { testSignal } from '../media/tone.js';
import type { DatagramChannel } from '../transport/datagrams.js';

export interface EchoTestOptions {
  datagrams: DatagramChannel;
  settings: StreamSettings;
  durationMs: number;
  /** Source audio (48 kHz mono); defaults to the built-in test signal. */
  source?: Int16Array;
  /** A live source instead (the microphone): read one 20 ms frame per tick. */
  live?: { read(samples: number): Int16Array };
  /** Where the played-back echo goes as it plays (a speaker). */
  playback?(pcm: Int16Array): void;
  /** How long to keep playing after sending stops, for the last echoes. */
  drainMs?: number;
  signal?: AbortSignal;
  onProgress?(p: { type: 'echo:progress'; sent: number; received: number; total: number; lastRttMs?: number }): void;
}

export interface EchoTestMeasurement {
  packetsSent: number;
  packetsReceived: number;
  /** Source frames that came back (received or recovered by FEC). */
  framesReturned: number;
  framesRecovered: number;
  /** Datagrams that were not valid media packets (dropped and counted). */
  malformed: number;
  /** Datagrams the local send queue refused (congestion/too large). */
  sendDropped: number;
  /** Source packets that did not come back, %. */
  lossPct: number;
  rttMs: { p50: number; p95: number; max: number; mean: number };
  /** RFC 3550 interarrival jitter of the echoed stream, ms. */
  jitterMs: number;
  /** Mean jitter-buffer delay of played frames, ms. */
  jitterBufferMs: number;
  concealedPct: number;
  /** SNR of the played-back echo against the source after time alignment, dB. */
  snrDb: number;
  segmentalSnrDb: number;
  /** Alignment lag found (codec delay), ms. */
  alignmentLagMs: number;
  /** E-model MOS for a one-way path of half the round trip plus jitter buffer and frame. */
  mos: number;
  /** Average datagram payload bitrate, bits/s (headers, payloads, repair packets). */
  payloadBitrate: number;
  frameMs: number;
  durationMs: number;
  /**
   * Ctrl-C (the signal) stopped the test early: everything above is what was measured until
   * then, over the frames sent up to IN_FLIGHT_MS before it (later ones were still on their way).
   */
  interrupted?: true;
}

/**
 * On interruption, frames sent this recently (or within two of the longest round trips seen,
 * if longer) may still be on their way back: they are left out of the figures rather than
 * counted as lost.
 */
export const IN_FLIGHT_MS = 200;

/** Longest echo test: sequence numbers index frames directly. */
export const MAX_ECHO_FRAMES = 0x10000;
/**
 * Largest codec + resampler delay the alignment search allows for (15 ms; Opus is 6.5 ms).
 * Deliberately shorter than a frame: a path that puts audio a whole frame off its sequence
 * number is broken and must not be "aligned" back into a good score.
 */
const MAX_CODEC_DELAY_SAMPLES = (PIPELINE_SAMPLE_RATE * 15) / 1000;
const TICK_MS = CALL_OUTPUT_PERIOD_MS;
const TICK_SAMPLES = frameSamplesFor(TICK_MS);

export async function runEchoTest(opts: EchoTestOptions): Promise<EchoTestMeasurement> {
  const { settings } = opts;
  const frameSamples = frameSamplesFor(settings.frameMs);
  const total = Math.floor((opts.durationMs / settings.frameMs));
  const source = opts.source ?? testSignal(total * settings.frameMs);
  const sendTimes = new Float64Array(Math.min(total, MAX_ECHO_FRAMES)).fill(Number.NaN);
  const rtts: number[] = [];
  const jitter = new Rfc3550JitterEstimator(PIPELINE_SAMPLE_RATE);
  const seen = new Set<number>();
  const returned: (Uint8Array | undefined)[] = new Array(Math.min(total, MAX_ECHO_FRAMES));
  let lastRtt: number | undefined;
  const sender = new MediaSender(settings);
  const receiver = new MediaReceiver({
    codecById: (id) => (id === settings.codec.codecId ? settings.codec : undefined),
    fecById: (id) => (id === settings.fec.schemeId ? settings.fec : undefined),
    jitter: CALL_JITTER_OPTIONS,
    onFrame: (seq, payload) => {
      if (seq < returned.length) returned[seq] = payload;
    },
    onHeader: (h, arrivalMs) => {
      if (h.fec.repair || h.sequence >= sendTimes.length || seen.has(h.sequence)) return;
      const sent = sendTimes[h.sequence];
      if (Number.isNaN(sent)) return;
      seen.add(h.sequence);
      lastRtt = arrivalMs - sent;
      rtts.push(lastRtt);
      jitter.update(arrivalMs, h.timestamp);
    },
  });
  let sendDropped = 0;
  opts.datagrams.onDatagram((d) => receiver.receive(d, performance.now()));
  const send = (packets: Uint8Array[]) => {
    for (const p of packets) if (!opts.datagrams.send(p)) sendDropped++;
  };

  let playedSamples = 0;
  let started = false;
  const start = performance.now();
  const drainMs = opts.drainMs ?? 1000;
  let frameIndex = 0;
  let tick = 0;
  let interruptedAt: number | undefined;
  try {
    for (;;) {
      // Ctrl-C: stop and report what was measured so far, as ping and iperf3 do.
      if (opts.signal?.aborted) {
        interruptedAt = performance.now();
        break;
      }
      const now = performance.now();
      // Send every frame due by this tick's nominal time, not by `now`: Node's timers work in
      // whole milliseconds and may wake a fraction of one before the tick, and comparing
      // against `now` then sent that frame a whole tick (10 ms) late: jitter the test made
      // itself, which the playout (targeting P99 of it) then measured.
      while (frameIndex < total && frameIndex * settings.frameMs <= tick * TICK_MS) {
        const frame = opts.live ? opts.live.read(frameSamples) : source.subarray(frameIndex * frameSamples, (frameIndex + 1) * frameSamples);
        const padded = frame.length === frameSamples ? frame : padTo(frame, frameSamples);
        if (frameIndex < sendTimes.length) sendTimes[frameIndex] = performance.now();
        send(sender.sendFrame(padded));
        frameIndex++;
        if (frameIndex === total) send(sender.flush());
        opts.onProgress?.({ type: 'echo:progress', sent: frameIndex, received: seen.size, total, lastRttMs: lastRtt });
      }
      // Play out what came back: one output period per tick, as a call does. Playback starts
      // with the first real frame: what the buffer plays while filling up is not the echo.
      const { pcm, frameStartOffset } = receiver.read(now, TICK_SAMPLES);
      if (!started && frameStartOffset !== undefined) started = true;
      const played = started && playedSamples === 0 ? pcm.subarray(frameStartOffset) : pcm;
      if (started && playedSamples < total * frameSamples) {
        playedSamples += played.length;
        opts.playback?.(played);
      }
      const sendingDone = frameIndex >= total;
      const allBack = seen.size >= Math.min(total, sendTimes.length) && playedSamples >= total * frameSamples;
      if (sendingDone && (allBack || now - (start + total * settings.frameMs) > drainMs)) break;
      tick++;
      const wait = start + tick * TICK_MS - performance.now();
      if (wait > 1) await delay(wait, opts.signal).catch(() => undefined);
    }
  } finally {
    opts.datagrams.onDatagram(() => undefined);
    sender.close();
    receiver.close();
  }

  // The frames the figures cover: all of them, or on interruption those that had time to return.
  let counted = Math.min(total, sendTimes.length);
  if (interruptedAt !== undefined) {
    const maxRtt = rtts.reduce((m, x) => Math.max(m, x), 0);
    const cutoff = interruptedAt - Math.max(IN_FLIGHT_MS, 2 * maxRtt);
    counted = 0;
    while (counted < Math.min(frameIndex, sendTimes.length) && sendTimes[counted] <= cutoff) counted++;
  }
  let returnedCounted = 0;
  for (const seq of seen) if (seq < counted) returnedCounted++;
  const reference = opts.live ? undefined : source.subarray(0, counted * frameSamples);
  const decoded = reference ? decodeInOrder(settings, returned.slice(0, counted), frameSamples) : new Int16Array(0);
  const alignment = reference ? alignAndSnr(reference, decoded, { maxLagSamples: MAX_CODEC_DELAY_SAMPLES }) : undefined;
  const rtt = rtts.length > 0 ? summarize(rtts) : { p50: Number.NaN, p95: Number.NaN, max: Number.NaN, mean: Number.NaN };
  const js = receiver.jitterStats();
  const jbMs = js.jitterBufferEmittedCount > 0 ? (js.jitterBufferDelay / js.jitterBufferEmittedCount) * 1000 : 0;
  const rs = receiver.stats;
  const playedFrames = rs.framesPlayed + rs.concealedFrames;
  const concealedPct = playedFrames ? (rs.concealedFrames / playedFrames) * 100 : 100;
  const impairment = impairmentFor(settings.codec.name, settings.bitrate ?? settings.codec.nominalBitrate) ?? { ie: 0, bpl: 10 };
  const mouthToEar = (Number.isFinite(rtt.p50) ? rtt.p50 / 2 : 0) + jbMs + settings.frameMs;
  const sentMs = Math.max(1, (interruptedAt === undefined ? total : frameIndex) * settings.frameMs);
  return {
    packetsSent: sender.stats.sourcePackets + sender.stats.repairPackets - sendDropped,
    packetsReceived: rs.packets,
    framesReturned: Math.min(frameIndex, rs.framesReceived + rs.framesRecovered),
    framesRecovered: rs.framesRecovered,
    malformed: rs.malformed,
    sendDropped,
    lossPct: counted === 0 ? 0 : round(((counted - returnedCounted) / counted) * 100, 2),
    rttMs: { p50: round(rtt.p50, 2), p95: round(rtt.p95, 2), max: round(rtt.max, 2), mean: round(rtt.mean, 2) },
    jitterMs: round(jitter.jitterMs, 3),
    jitterBufferMs: round(jbMs, 1),
    concealedPct: round(concealedPct, 2),
    snrDb: alignment ? round(alignment.snrDb, 2) : Number.NaN,
    segmentalSnrDb: alignment ? round(alignment.segmentalSnrDb, 2) : Number.NaN,
    alignmentLagMs: alignment ? round((alignment.lagSamples / PIPELINE_SAMPLE_RATE) * 1000, 3) : Number.NaN,
    mos: round(eModelMos({ delayMs: mouthToEar, lossPct: concealedPct, codec: impairment }), 2),
    payloadBitrate: Math.round((sender.stats.bytes * 8 * 1000) / sentMs),
    frameMs: settings.frameMs,
    durationMs: counted * settings.frameMs,
    ...(interruptedAt === undefined ? {} : { interrupted: true as const }),
  };
}

/** Decode what came back in sequence order with a fresh decoder; missing frames stay silent. */
function decodeInOrder(settings: StreamSettings, payloads: (Uint8Array | undefined)[], frameSamples: number): Int16Array {
  const decoder = settings.codec.create({ frameMs: settings.frameMs, bitrate: settings.bitrate });
  const out = new Int16Array(payloads.length * frameSamples);
  try {
    payloads.forEach((p, i) => {
      if (!p) return;
      try {
        out.set(decoder.decode(p).subarray(0, frameSamples), i * frameSamples);
      } catch {
        // A frame the codec rejects counts as lost audio.
      }
    });
  } finally {
    decoder.close();
  }
  return out;
}

function padTo(frame: Int16Array, n: number): Int16Array {
  const out = new Int16Array(n);
  out.set(frame.subarray(0, n));
  return out;
}

function round(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}


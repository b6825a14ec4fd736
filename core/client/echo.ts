/**
 * The echo test: send a known signal as paced media frames through a relay in echo mode,
 * receive what comes back, decode it and compare it with what was sent.
 *
 * Every frame carries a media header with its sequence number and timestamp, so the
 * received audio is rebuilt by position (lost frames become concealment or silence) and then
 * compared with the source after a small alignment search for codec delay. A path that drops,
 * reorders, misplaces or mis-decodes frames cannot reach a high SNR.
 */
import { AbortError, DecodeError } from '../errors.js';
import { alignAndSnr, Rfc3550JitterEstimator, summarize } from '../media/analysis.js';
import { frameSamplesFor, PIPELINE_SAMPLE_RATE, type Codec, type CodecFactory } from '../media/codec-types.js';
import { splitFrames, testSignal } from '../media/tone.js';
import type { DatagramChannel } from '../transport/datagrams.js';
import {
  decodeMediaPacket,
  encodeMediaPacket,
  MEDIA_HEADER_VERSION,
  QualityTier,
  type FecInfo,
  type MediaHeader,
} from '../wire/media-header.js';

export interface EchoTestOptions {
  datagrams: DatagramChannel;
  codec: CodecFactory;
  durationMs: number;
  frameMs: number;
  bitrate?: number;
  /** Source audio (48 kHz mono); defaults to the built-in test signal. */
  source?: Int16Array;
  /** How long to wait for the last echoes after sending stops. */
  drainMs?: number;
  signal?: AbortSignal;
  onProgress?(p: { type: 'echo:progress'; sent: number; received: number; total: number; lastRttMs?: number }): void;
}

export interface EchoTestMeasurement {
  packetsSent: number;
  packetsReceived: number;
  /** Echoes that arrived twice (counted once). */
  duplicates: number;
  /** Datagrams that were not valid media packets of this test (dropped and counted). */
  malformed: number;
  /** Datagrams the local send queue refused (congestion/too large). */
  sendDropped: number;
  lossPct: number;
  rttMs: { p50: number; p95: number; max: number; mean: number };
  /** RFC 3550 interarrival jitter of the echoed stream, ms. */
  jitterMs: number;
  /** SNR of the decoded echo against the source after time alignment, dB. */
  snrDb: number;
  segmentalSnrDb: number;
  /** Alignment lag found (codec delay), ms. */
  alignmentLagMs: number;
  /** Average bytes per second on the wire (headers + payloads, excluding QUIC overhead). */
  payloadBitrate: number;
  frameMs: number;
  durationMs: number;
}

const HEADER_TIMESTAMP_MASK = 0xffffffff;
const SEQUENCE_MASK = 0xffff;
/** The echo test measures the raw path: no FEC (scheme 0 = none, one source per block). */
const NO_FEC: FecInfo = { schemeId: 0, block: 0, symbol: 0, repair: false, k: 1, r: 0 };

export async function runEchoTest(opts: EchoTestOptions): Promise<EchoTestMeasurement> {
  const frameSamples = frameSamplesFor(opts.frameMs);
  const source = opts.source ?? testSignal(opts.durationMs);
  const frames = splitFrames(source, frameSamples);
  const total = frames.length;
  const encoder = opts.codec.create({ frameMs: opts.frameMs, bitrate: opts.bitrate });
  const decoder = opts.codec.create({ frameMs: opts.frameMs, bitrate: opts.bitrate });
  try {
    const sendTimes = new Float64Array(total).fill(Number.NaN);
    const rtts: number[] = [];
    const payloads: (Uint8Array | undefined)[] = new Array(total);
    const jitter = new Rfc3550JitterEstimator(PIPELINE_SAMPLE_RATE);
    let received = 0;
    let duplicates = 0;
    let malformed = 0;
    let sendDropped = 0;
    let bytesSent = 0;
    let lastRtt: number | undefined;

    opts.datagrams.onDatagram((datagram) => {
      const now = performance.now();
      let header: MediaHeader;
      let payload: Uint8Array;
      try {
        ({ header, payload } = decodeMediaPacket(datagram));
      } catch (err) {
        if (err instanceof DecodeError) {
          malformed++;
          return;
        }
        throw err;
      }
      const index = header.sequence; // < 65536 frames: see the duration limit below
      if (index >= total || header.codecId !== opts.codec.codecId || Number.isNaN(sendTimes[index])) {
        malformed++;
        return;
      }
      if (payloads[index] !== undefined) {
        duplicates++;
        return;
      }
      payloads[index] = payload.slice();
      received++;
      lastRtt = now - sendTimes[index];
      rtts.push(lastRtt);
      jitter.update(now, index * frameSamples);
    });

    const start = performance.now();
    for (let i = 0; i < total; i++) {
      if (opts.signal?.aborted) throw new AbortError('echo test aborted');
      const due = start + i * opts.frameMs;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait, opts.signal);
      const packet = encodeMediaPacket(
        {
          version: MEDIA_HEADER_VERSION,
          codecId: opts.codec.codecId,
          tier: QualityTier.GOOD,
          sequence: i & SEQUENCE_MASK,
          timestamp: (i * frameSamples) & HEADER_TIMESTAMP_MASK,
          frameSamples,
          fec: NO_FEC,
          extensions: [],
        },
        encoder.encode(frames[i]),
      );
      sendTimes[i] = performance.now();
      if (opts.datagrams.send(packet)) bytesSent += packet.byteLength;
      else sendDropped++;
      opts.onProgress?.({ type: 'echo:progress', sent: i + 1, received, total, lastRttMs: lastRtt });
    }
    await drain(() => received + sendDropped >= total, opts.drainMs ?? 1000, opts.signal);
    opts.datagrams.onDatagram(() => undefined);

    const decoded = rebuild(decoder, payloads, frameSamples);
    const alignment = alignAndSnr(source, decoded, { maxLagSamples: MAX_CODEC_DELAY_SAMPLES });
    const rtt = rtts.length > 0 ? summarize(rtts) : { p50: Number.NaN, p95: Number.NaN, max: Number.NaN, mean: Number.NaN };
    return {
      packetsSent: total - sendDropped,
      packetsReceived: received,
      duplicates,
      malformed,
      sendDropped,
      lossPct: total === 0 ? 0 : round(((total - received) / total) * 100, 2),
      rttMs: { p50: round(rtt.p50, 2), p95: round(rtt.p95, 2), max: round(rtt.max, 2), mean: round(rtt.mean, 2) },
      jitterMs: round(jitter.jitterMs, 3),
      snrDb: round(alignment.snrDb, 2),
      segmentalSnrDb: round(alignment.segmentalSnrDb, 2),
      alignmentLagMs: round((alignment.lagSamples / PIPELINE_SAMPLE_RATE) * 1000, 3),
      payloadBitrate: Math.round((bytesSent * 8 * 1000) / Math.max(1, total * opts.frameMs)),
      frameMs: opts.frameMs,
      durationMs: total * opts.frameMs,
    };
  } finally {
    encoder.close();
    decoder.close();
  }
}

/**
 * Largest codec + resampler delay the alignment search allows for (15 ms; Opus is 6.5 ms).
 * Deliberately shorter than a frame: a path that puts audio a whole frame off its sequence
 * number is broken, and must not be "aligned" back into a good score.
 */
const MAX_CODEC_DELAY_SAMPLES = (PIPELINE_SAMPLE_RATE * 15) / 1000;

/** Longest echo test, in frames: sequence numbers index frames directly. */
export const MAX_ECHO_FRAMES = SEQUENCE_MASK + 1;

/** Decode in sequence order (codec state depends on it); conceal what never arrived. */
function rebuild(decoder: Codec, payloads: (Uint8Array | undefined)[], frameSamples: number): Int16Array {
  const out = new Int16Array(payloads.length * frameSamples);
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i];
    let pcm: Int16Array | undefined;
    if (p !== undefined) {
      try {
        pcm = decoder.decode(p);
      } catch {
        pcm = undefined; // a frame the codec rejects counts as lost audio
      }
    } else if (decoder.conceal) {
      pcm = decoder.conceal();
    }
    if (pcm) out.set(pcm.subarray(0, frameSamples), i * frameSamples);
  }
  return out;
}

function round(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new AbortError('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Wait until `done()` or `maxMs` passes (polling every 10 ms). */
async function drain(done: () => boolean, maxMs: number, signal?: AbortSignal): Promise<void> {
  const until = performance.now() + maxMs;
  while (!done() && performance.now() < until) await sleep(10, signal);
}

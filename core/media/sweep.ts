/**
 * One sweep scenario: the full client pipeline (encode -> FEC -> packetize -> emulated network
 * -> jitter buffer -> FEC decode -> decode) run in simulated time, and scored.
 *
 * Time is simulated, so a 10 s scenario takes as long as its computation and the same seed
 * always gives the same figures. The network is core/net/impairment.ts.
 */
import { alignAndSnr } from './analysis.js';
import { PIPELINE_SAMPLE_RATE, type CodecFactory } from './codec-types.js';
import { burstRatio, impairmentFor, mos, rFactor } from './emodel.js';
import type { FecSchemeFactory } from './fec-types.js';
import { CALL_JITTER_OPTIONS, CALL_OUTPUT_PERIOD_MS, MediaReceiver, MediaSender, type StreamSettings } from './pipeline.js';
import { splitFrames } from './tone.js';
import { ImpairmentEmulator, type LossModel } from '../net/impairment.js';
import type { QualityTier } from '../wire/media-header.js';

/** UDP/IPv4 (28) + QUIC short header, DATAGRAM frame and AEAD tag (~30) per datagram. */
export const WIRE_OVERHEAD_BYTES = 58;

export interface SweepScenario {
  tierName: string;
  tier: QualityTier;
  codec: CodecFactory;
  bitrate?: number;
  frameMs: number;
  fec: FecSchemeFactory;
  k: number;
  r: number;
  depth: number;
  loss: LossModel;
  /** Label of the loss model for tables ('10%', 'wifi', ...). */
  lossLabel: string;
  /** Base one-way network delay, ms. */
  delayMs: number;
  /** Jitter (standard deviation of a normal distribution), ms. */
  jitterMs: number;
  seed: number;
  /** Send comfort-noise descriptions for silent frames (VAD). */
  vad?: boolean;
  /** Clean frames before encoding (a fresh suppressor per scenario). */
  noiseSuppressor?: { process(frame: Int16Array): Int16Array };
}

export interface SweepResult {
  tier: string;
  codec: string;
  fec: string;
  k: number;
  r: number;
  depth: number;
  loss: string;
  /** Packet loss the network actually applied, %. */
  networkLossPct: number;
  jitterMs: number;
  frames: number;
  /** Frames the VAD judged silent (sent as comfort-noise descriptions), %. */
  silentPct: number;
  /** Frames received or recovered by FEC, before concealment, %. */
  deliveredPct: number;
  /** Frames recovered by FEC, % of all frames. */
  recoveredPct: number;
  /** Played periods that were concealment, % of frames. */
  concealedPct: number;
  /** Mean time a recovered frame waited beyond its normal arrival, ms (FEC delay). */
  fecDelayMs: number;
  /** Mean jitter-buffer delay of played frames, ms. */
  jitterBufferMs: number;
  /** Mouth-to-ear estimate: network + jitter buffer + frame, ms. */
  mouthToEarMs: number;
  mos: number;
  rFactor: number;
  snrDb: number;
  segmentalSnrDb: number;
  /** Average bitrate on the wire including UDP/IP/QUIC overhead, kbit/s. */
  wireKbps: number;
  /** Datagram payload bitrate, kbit/s. */
  payloadKbps: number;
}

export function runScenario(s: SweepScenario, source: Int16Array): SweepResult {
  const settings: StreamSettings = {
    tier: s.tier,
    codec: s.codec,
    frameMs: s.frameMs,
    bitrate: s.bitrate,
    fec: s.fec,
    k: s.k,
    r: s.r,
    depth: s.depth,
  };
  const sender = new MediaSender(settings, { vad: s.vad, noiseSuppressor: s.noiseSuppressor });
  const sendTimes = new Map<number, number>();
  const recoveryWaits: number[] = [];
  const receiver = new MediaReceiver({
    codecById: (id) => (id === s.codec.codecId ? s.codec : undefined),
    fecById: (id) => (id === s.fec.schemeId ? s.fec : undefined),
    // Played out as a call plays a remote stream (core/client/call.ts): its jitter options,
    // read() on its 10 ms clock, so the scores are what a call would hear.
    jitter: CALL_JITTER_OPTIONS,
    onRecovered: (e) => {
      const sent = sendTimes.get(e.seq);
      if (sent !== undefined) recoveryWaits.push(e.atMs - (sent + s.delayMs));
    },
  });
  const net = new ImpairmentEmulator({
    seed: s.seed,
    loss: s.loss,
    delayMs: s.delayMs,
    jitter: s.jitterMs > 0 ? { distribution: 'normal', ms: s.jitterMs } : undefined,
  });
  const frameSamples = (PIPELINE_SAMPLE_RATE * s.frameMs) / 1000;
  const frames = splitFrames(source, frameSamples);
  // Deliveries in time order (sorted insert: at most a few hundred packets are in flight).
  const inFlight: { at: number; packet: Uint8Array }[] = [];
  let packetsSent = 0;
  const schedule = (packets: Uint8Array[], t: number) => {
    for (const p of packets) {
      packetsSent++;
      for (const d of net.process(p, t)) insertSorted(inFlight, { at: d.deliverAtMs, packet: d.packet });
    }
  };
  const output: Int16Array[] = [];
  let outputSamples = 0;
  const targetSamples = frames.length * frameSamples;
  const periodSamples = (PIPELINE_SAMPLE_RATE * CALL_OUTPUT_PERIOD_MS) / 1000;
  let playing = false;
  let playoutClock = 0;
  let nextSend = 0;
  let frameIndex = 0;
  // Play until as much audio came out as went in (playout starts with the first frame), or
  // give up 2 s after the last frame was sent (everything later counts as lost).
  const endMs = frames.length * s.frameMs + 2000;
  while (outputSamples < targetSamples && playoutClock < endMs) {
    // Send every frame due before the next playout instant.
    while (frameIndex < frames.length && nextSend <= playoutClock) {
      sendTimes.set(frameIndex % 0x10000, nextSend);
      schedule(sender.sendFrame(frames[frameIndex]), nextSend);
      frameIndex++;
      nextSend = frameIndex * s.frameMs;
      if (frameIndex === frames.length) schedule(sender.flush(), nextSend);
    }
    while (inFlight.length > 0 && inFlight[0].at <= playoutClock) {
      const d = inFlight.shift()!;
      receiver.receive(d.packet, d.at);
    }
    const { pcm, frameStartOffset } = receiver.read(playoutClock, periodSamples);
    // The output starts with the first frame (what came before it is the silence of a
    // stream not yet started).
    if (!playing && frameStartOffset !== undefined) playing = true;
    const played = playing && output.length === 0 ? pcm.subarray(frameStartOffset) : pcm;
    if (playing) {
      output.push(played);
      outputSamples += played.length;
    }
    playoutClock += CALL_OUTPUT_PERIOD_MS;
  }
  const decoded = concat(output);
  const js = receiver.jitterStats();
  const delivered = receiver.stats.framesReceived + receiver.stats.framesRecovered;
  const deliveredPct = pct(Math.min(delivered, frames.length), frames.length);
  // Whatever of the stream never came out counts as concealed too.
  const missingFrames = Math.max(0, Math.round((targetSamples - outputSamples) / frameSamples));
  const concealedPct = pct(receiver.stats.concealedFrames + missingFrames, frames.length);
  const jbMs = js.jitterBufferEmittedCount > 0 ? (js.jitterBufferDelay / js.jitterBufferEmittedCount) * 1000 : 0;
  const mouthToEarMs = s.delayMs + jbMs + s.frameMs;
  const impairment = impairmentFor(s.codec.name, s.bitrate ?? s.codec.nominalBitrate);
  const burst = s.loss.kind === 'gilbert-elliott' ? burstRatio(s.loss.meanGoodPackets, s.loss.meanBurstPackets) : 1;
  const eInput = { delayMs: mouthToEarMs, lossPct: concealedPct, burstR: burst, codec: impairment ?? { ie: 0, bpl: 10 } };
  // Playout starts with the first frame, so only codec delay and time-stretching move the
  // alignment: a 100 ms search covers it.
  const alignment = alignAndSnr(source, decoded, { maxLagSamples: PIPELINE_SAMPLE_RATE / 10 });
  const durationS = (frames.length * s.frameMs) / 1000;
  const counters = net.counters;
  sender.close();
  receiver.close();
  return {
    tier: s.tierName,
    codec: s.codec.name,
    fec: s.fec.name,
    k: s.k,
    r: s.r,
    depth: s.depth,
    loss: s.lossLabel,
    networkLossPct: round(pct(counters.packetsLost, counters.packetsIn), 2),
    jitterMs: s.jitterMs,
    frames: frames.length,
    silentPct: round(pct(sender.stats.silentFrames, frames.length), 1),
    deliveredPct: round(deliveredPct, 2),
    recoveredPct: round(pct(receiver.stats.framesRecovered, frames.length), 2),
    concealedPct: round(concealedPct, 2),
    fecDelayMs: round(mean(recoveryWaits), 1),
    jitterBufferMs: round(jbMs, 1),
    mouthToEarMs: round(mouthToEarMs, 1),
    mos: round(mos(eInput), 2),
    rFactor: round(rFactor(eInput), 1),
    snrDb: round(alignment.snrDb, 1),
    segmentalSnrDb: round(alignment.segmentalSnrDb, 1),
    wireKbps: round(((sender.stats.bytes + packetsSent * WIRE_OVERHEAD_BYTES) * 8) / durationS / 1000, 1),
    payloadKbps: round((sender.stats.bytes * 8) / durationS / 1000, 1),
  };
}

function insertSorted(q: { at: number; packet: Uint8Array }[], item: { at: number; packet: Uint8Array }): void {
  let lo = 0;
  let hi = q.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (q[mid].at <= item.at) lo = mid + 1;
    else hi = mid;
  }
  q.splice(lo, 0, item);
}

function concat(chunks: Int16Array[]): Int16Array {
  const out = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

const pct = (a: number, b: number) => (b === 0 ? 0 : (a / b) * 100);
const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
function round(x: number, d: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/**
 * The media pipeline of one stream, both ends:
 *
 *   MediaSender:   PCM frame -> codec -> FEC block (with interleaving) -> media header
 *                  (full or mini) -> datagram payloads
 *   MediaReceiver: datagram -> header -> (decrypt; held while its key is on its way) ->
 *                  FEC block assembly/recovery -> jitter buffer -> codec decode or
 *                  concealment -> time stretching -> PCM (frame by frame with pull(), or
 *                  fixed periods from an output clock with read())
 *
 * The same classes run over the emulated network in `wzp sweep` and over real QUIC in calls.
 *
 * FEC layout. Frames are spread over D interleaved blocks of K frames (a "group" of D*K
 * frames): frame p of a group goes to block p mod D at index floor(p / D). Source frames are
 * sent at once (the codes are systematic: no loss, no FEC delay); when the group is complete,
 * the R repair packets of each block follow, interleaved. A burst of B consecutive lost frames
 * then costs each block at most ceil(B / D) frames. A repair packet carries, in its header,
 * the sequence number and timestamp of its block's first frame and (extension
 * FEC_LAYOUT_EXTENSION) the stride D, so the receiver can place the frames it recovers,
 * and, when the block holds comfort-noise frames (below), which ones
 * (FEC_COMFORT_NOISE_EXTENSION), so a recovered SID plays as comfort noise instead of going
 * to the codec's decoder.
 * Recovered frames enter the jitter buffer when recovered: it sees them as late arrivals and
 * its target delay grows to cover recovery only when loss makes that worthwhile. Each
 * recovery also tells it what a loss of the block's first frame would have needed.
 *
 * Optional stages on the sending side, each switchable: noise suppression (RNNoise) before
 * the codec, and voice activity detection: frames the VAD calls silence are not encoded but
 * described by a 1-7 byte SID (core/media/comfort-noise.ts) sent with codec id
 * COMFORT_NOISE_CODEC_ID; the receiver plays matching comfort noise for them.
 */
import { DecodeError, InternalError } from '../errors.js';
import { frameSamplesFor, PIPELINE_SAMPLE_RATE, type Codec, type CodecFactory } from './codec-types.js';
import { FecBlockAssembler, type DecodedFecBlock } from './fec/interleaver.js';
import { FEC_MAX_FRAME_BYTES, type FecCodec, type FecDecoder, type FecSchemeFactory } from './fec-types.js';
import { Rfc3550JitterEstimator } from './analysis.js';
import { ComfortNoiseGenerator, decodeSid, encodeSid, NoiseAnalyzer } from './comfort-noise.js';
import { VoiceActivityDetector } from './vad.js';
import { JitterBuffer, type JitterBufferOptions, type JitterBufferStats, type PlayoutPosition, type PullResult } from './jitter-buffer.js';
import { compressAudio, expandAudio, maxStretchSamples } from './time-stretch.js';
import { U16_MODULUS, unwrapU16 } from './sequence.js';
import { datagramKind } from '../wire/datagram.js';
import {
  encodeMediaHeader,
  MEDIA_HEADER_VERSION,
  type MediaHeader,
  type QualityReport,
  type QualityTier,
} from '../wire/media-header.js';
import { MiniHeaderDecoder, MiniHeaderEncoder } from '../wire/mini-header.js';

/** Codec id of comfort-noise (SID) frames (reserved in the built-in range; no codec uses it). */
export const COMFORT_NOISE_CODEC_ID = 13;

/** Header extension id carried by repair packets: one byte, the interleaving stride D. */
export const FEC_LAYOUT_EXTENSION = 1;
/**
 * Header extension of a repair packet whose block holds comfort-noise frames: a bit per
 * source symbol, ceil(k / 8) bytes, bit j (byte j >> 3, least significant bit first) set when
 * symbol j is a SID. Absent when the block has none (speech costs nothing).
 */
export const FEC_COMFORT_NOISE_EXTENSION = 2;

const SEQ_MOD = U16_MODULUS;
const TS_MOD = 0x1_0000_0000;
/**
 * A FEC recovery counts as a loss once a frame it recovered has had no source packet for this
 * long (a late source packet makes it jitter, not loss). Within the 200 ms or so before the next
 * loss at 10% loss, and well past the reordering of a path with 5 ms of jitter.
 */
const RECOVERY_CONFIRM_MS = 60;
/** Unconfirmed recoveries remembered at most (one per block; 64 blocks is over a second). */
const MAX_PENDING_RECOVERIES = 64;

export interface StreamSettings {
  tier: QualityTier;
  codec: CodecFactory;
  frameMs: number;
  bitrate?: number;
  fec: FecSchemeFactory;
  /** Source frames per block. */
  k: number;
  /** Repair packets per block (0 = no FEC). */
  r: number;
  /** Interleaving depth D (blocks per group). */
  depth: number;
}

export interface SenderOptions {
  /** Use mini headers in steady state (default true). */
  miniHeaders?: boolean;
  /** Encrypt each payload with the header bytes as associated data. */
  seal?: (header: Uint8Array, payload: Uint8Array) => Uint8Array;
  /**
   * The epoch of the key `seal` uses now. A new key starts a new mini-header context (full
   * headers first): a receiver that was given only the new key (a member who just joined)
   * could not open the packets that set up the old context.
   */
  keyEpoch?: () => number | undefined;
  /** Detect silence and send comfort-noise descriptions instead of codec frames. */
  vad?: boolean;
  /** Clean each frame before encoding (e.g. core/media/noise-suppression.ts). */
  noiseSuppressor?: { process(frame: Int16Array): Int16Array };
}

export interface SenderStats {
  frames: number;
  /** Frames the VAD judged silent and sent as comfort-noise descriptions. */
  silentFrames: number;
  sourcePackets: number;
  repairPackets: number;
  /** Datagram payload bytes produced (headers + codec payloads + repair data). */
  bytes: number;
  fullHeaders: number;
  miniHeaders: number;
}

export class MediaSender {
  readonly stats: SenderStats = { frames: 0, silentFrames: 0, sourcePackets: 0, repairPackets: 0, bytes: 0, fullHeaders: 0, miniHeaders: 0 };
  private readonly vad: VoiceActivityDetector | undefined;
  private readonly noise = new NoiseAnalyzer();
  private readonly noiseSuppressor: SenderOptions['noiseSuppressor'];
  private settings!: StreamSettings;
  private codec!: Codec;
  private fec!: FecCodec;
  private frameSamples = 0;
  private readonly mini: MiniHeaderEncoder | undefined;
  private seq = 0;
  private timestamp = 0;
  private blockCounter = 0;
  /** The group being filled: per block, its frames and its first frame's seq/timestamp. */
  private group: { frames: Uint8Array[]; comfortNoise: number[]; baseSeq: number; baseTs: number }[] = [];
  private groupPosition = 0;
  private pendingReport: QualityReport | undefined;

  private readonly seal: ((header: Uint8Array, payload: Uint8Array) => Uint8Array) | undefined;
  private readonly keyEpoch: (() => number | undefined) | undefined;
  /** The key epoch the mini-header context was set up under. */
  private contextEpoch: number | undefined;

  /**
   * `seal` encrypts each payload end to end with the header bytes as associated data (calls
   * through a relay); without it payloads travel as they are (echo test, sweep).
   */
  constructor(settings: StreamSettings, opts: SenderOptions = {}) {
    this.mini = opts.miniHeaders === false ? undefined : new MiniHeaderEncoder();
    this.seal = opts.seal;
    this.keyEpoch = opts.keyEpoch;
    this.vad = opts.vad ? new VoiceActivityDetector() : undefined;
    this.noiseSuppressor = opts.noiseSuppressor;
    this.configure(settings);
  }

  get current(): StreamSettings {
    return this.settings;
  }

  /** Switch codec / FEC / tier. The partial group is closed first (its repairs are returned). */
  reconfigure(settings: StreamSettings): Uint8Array[] {
    const out = this.flush();
    this.codec.close();
    this.configure(settings);
    return out;
  }

  private configure(settings: StreamSettings): void {
    if (!settings.codec.frameDurationsMs.includes(settings.frameMs)) {
      throw new InternalError(`codec ${settings.codec.name} does not support ${settings.frameMs} ms frames`);
    }
    this.settings = settings;
    this.frameSamples = frameSamplesFor(settings.frameMs);
    this.codec = settings.codec.create({ frameMs: settings.frameMs, bitrate: settings.bitrate });
    this.fec = settings.fec.create({ k: settings.k, r: settings.r, maxFrameBytes: FEC_MAX_FRAME_BYTES });
    this.group = [];
    this.groupPosition = 0;
  }

  /**
   * Send full headers again from the next packet: a receiver that just joined has no
   * mini-header context and would drop mini headers until the next periodic full header.
   */
  resync(): void {
    this.mini?.reset();
  }

  /** Attach a receiver report to the next packet. */
  attachReport(report: QualityReport): void {
    this.pendingReport = report;
  }

  /** Encode one frame of PCM (exactly frameSamples); returns the datagram payloads to send now. */
  sendFrame(input: Int16Array): Uint8Array[] {
    const { k, depth } = this.settings;
    const pcm = this.noiseSuppressor ? this.noiseSuppressor.process(input) : input;
    const silent = this.vad !== undefined && this.isSilent(pcm);
    let payload: Uint8Array;
    if (silent) {
      this.noise.analyze(pcm);
      payload = encodeSid(this.noise.describe());
      this.stats.silentFrames++;
    } else {
      payload = this.codec.encode(pcm);
    }
    const blockInGroup = this.groupPosition % depth;
    const index = Math.floor(this.groupPosition / depth);
    if (this.groupPosition === 0) this.group = Array.from({ length: depth }, () => ({ frames: [], comfortNoise: [], baseSeq: 0, baseTs: 0 }));
    const block = this.group[blockInGroup];
    if (index === 0) {
      block.baseSeq = this.seq;
      block.baseTs = this.timestamp;
    }
    if (silent) block.comfortNoise.push(block.frames.length);
    block.frames.push(payload);
    const header = this.header({
      sequence: this.seq,
      timestamp: this.timestamp,
      block: this.blockCounter + blockInGroup,
      symbol: index,
      repair: false,
      k,
      codecId: silent ? COMFORT_NOISE_CODEC_ID : undefined,
    });
    const out = [this.packetize(header, payload)];
    this.stats.frames++;
    this.stats.sourcePackets++;
    this.seq = (this.seq + 1) % SEQ_MOD;
    this.timestamp = (this.timestamp + this.frameSamples) % TS_MOD;
    this.groupPosition++;
    if (this.groupPosition === k * depth) out.push(...this.closeGroup());
    return out;
  }

  /** The VAD runs on 20 ms pieces; a frame is silent when every piece is. */
  private isSilent(pcm: Int16Array): boolean {
    const step = this.vad!.frameSamples;
    let speech = false;
    for (let o = 0; o + step <= pcm.length; o += step) speech = this.vad!.process(pcm.subarray(o, o + step)).speech || speech;
    return !speech;
  }

  /** Close the partial group (end of stream or reconfiguration): repairs for what it holds. */
  flush(): Uint8Array[] {
    return this.groupPosition === 0 ? [] : this.closeGroup();
  }

  private closeGroup(): Uint8Array[] {
    const { r, depth } = this.settings;
    const repairsPerBlock = this.group.map((b, i) => {
      if (r === 0 || b.frames.length === 0) return [];
      const k = b.frames.length;
      // A partial block (stream end, tier change) is coded with its actual frame count.
      const fec = k === this.settings.k ? this.fec : this.settings.fec.create({ k, r, maxFrameBytes: FEC_MAX_FRAME_BYTES });
      return fec.encoder.encode(b.frames).map((p) =>
        this.packetize(
          this.header({
            sequence: b.baseSeq,
            timestamp: b.baseTs,
            block: this.blockCounter + i,
            symbol: p.index,
            repair: true,
            k,
            stride: depth,
            comfortNoise: comfortNoiseMask(b.comfortNoise, k),
          }),
          p.data,
        ),
      );
    });
    this.blockCounter += depth;
    this.group = [];
    this.groupPosition = 0;
    const out: Uint8Array[] = [];
    const rows = Math.max(0, ...repairsPerBlock.map((x) => x.length));
    for (let j = 0; j < rows; j++) for (const block of repairsPerBlock) if (j < block.length) out.push(block[j]);
    this.stats.repairPackets += out.length;
    return out;
  }

  private header(f: {
    sequence: number;
    timestamp: number;
    block: number;
    symbol: number;
    repair: boolean;
    k: number;
    stride?: number;
    comfortNoise?: Uint8Array;
    codecId?: number;
  }): MediaHeader {
    const report = this.pendingReport;
    this.pendingReport = undefined;
    return {
      version: MEDIA_HEADER_VERSION,
      codecId: f.codecId ?? this.settings.codec.codecId,
      tier: this.settings.tier,
      sequence: f.sequence,
      timestamp: f.timestamp,
      frameSamples: this.frameSamples,
      fec: {
        schemeId: this.settings.fec.schemeId,
        block: f.block % SEQ_MOD,
        symbol: f.symbol,
        repair: f.repair,
        k: f.k,
        r: this.settings.r,
      },
      ...(report ? { report } : {}),
      extensions: [
        ...(f.stride === undefined ? [] : [{ id: FEC_LAYOUT_EXTENSION, data: Uint8Array.of(f.stride) }]),
        ...(f.comfortNoise === undefined ? [] : [{ id: FEC_COMFORT_NOISE_EXTENSION, data: f.comfortNoise }]),
      ],
    };
  }

  private packetize(header: MediaHeader, payload: Uint8Array): Uint8Array {
    // Repair packets (with their layout extension) always travel with a full header, outside
    // the mini-header context; source packets use mini headers in steady state.
    if (this.mini && this.keyEpoch) {
      const epoch = this.keyEpoch();
      if (epoch !== this.contextEpoch) {
        this.contextEpoch = epoch;
        this.mini.reset();
      }
    }
    const headerBytes = this.mini && !header.fec.repair ? this.mini.encodeHeader(header) : encodeMediaHeader(header);
    const body = this.seal ? this.seal(headerBytes, payload) : payload;
    const packet = new Uint8Array(headerBytes.byteLength + body.byteLength);
    packet.set(headerBytes, 0);
    packet.set(body, headerBytes.byteLength);
    if (datagramKind(packet) === 'mini') this.stats.miniHeaders++;
    else this.stats.fullHeaders++;
    this.stats.bytes += packet.byteLength;
    return packet;
  }

  close(): void {
    this.codec.close();
  }
}

/** FEC_COMFORT_NOISE_EXTENSION's mask for a block of `k` symbols; undefined when none is a SID. */
function comfortNoiseMask(symbols: readonly number[], k: number): Uint8Array | undefined {
  if (symbols.length === 0) return undefined;
  const mask = new Uint8Array(Math.ceil(k / 8));
  for (const j of symbols) mask[j >> 3] |= 1 << (j & 7);
  return mask;
}

/**
 * How a call plays out a remote stream (core/client/call.ts), for anything that wants to
 * model it (e.g. a sweep): a 10 ms output clock reading MediaReceiver.read(), and these jitter
 * buffer options.
 * - 10 ms: with 20 ms frames on a 20 ms clock the headroom at a pull can only take values
 *   phase + 20k, so a frame waits up to 20 ms for its tick whatever the target; a 10 ms
 *   clock halves that (NetEq is pulled every 10 ms for the same reason). Mouth-to-ear on
 *   loopback through a relay (bench): median 64-69 ms before (20 ms clock, old target),
 *   30-36 ms now, max 36-41 ms; details in docs/media-engine.md.
 * - minDelayMs 0: the target is the measured P99 of relative delay plus the 2 ms margin
 *   (~5-7 ms on loopback); a fixed floor of a frame only added delay.
 * - percentile 0.99: FEC-repaired frames arrive late, and a lower percentile leaves more of
 *   them outside the target, where they are concealed although FEC delivered them. Scored by
 *   `wzp sweep` (which plays out exactly like this), P99 beats P97 in every lossy case
 *   tried, at 40 and at 150 ms one-way delay: GOOD under 10 % loss MOS 4.13 vs 3.87, under
 *   "congested" bursts 3.91 vs 3.06, for 10-20 ms more buffer delay under loss and none on
 *   a clean path (table in docs/media-engine.md).
 * - accelerateThresholdMs 10: with sub-frame compression the fine work is done without
 *   dropping frames; whole frames go only when a frame or more is spare.
 * - startFloorMs 10 for the first second: playout starts with the first frame (first audio
 *   as early as before), but with nothing measured yet the target is ~2 ms, and the second
 *   frame, due 20 ms later on a 10 ms tick grid, missed its pull in a third of the NAT lab's
 *   calls (a concealed frame or two in the call's first 50 ms, counted in the direct-call
 *   bench's upgrade gap when the switch came early). The first frame is now stretched by up
 *   to half a frame instead, which gives the next ones a period of slack; after the first
 *   second the measured target takes over and the extra ~10 ms is compressed away.
 */
export const CALL_OUTPUT_PERIOD_MS = 10;
export const CALL_JITTER_OPTIONS: Readonly<JitterBufferOptions> = Object.freeze({
  percentile: 0.99,
  minDelayMs: 0,
  startFloorMs: CALL_OUTPUT_PERIOD_MS,
  startFloorForMs: 1000,
  marginMs: 2,
  maxDelayMs: 400,
  accelerateThresholdMs: 10,
});

export interface ReceiverStats {
  packets: number;
  sourcePackets: number;
  repairPackets: number;
  /** Datagrams that could not be decoded (bad header, unknown codec/scheme): dropped. */
  malformed: number;
  /** Datagrams whose payload failed decryption (tampered, replayed, unknown key): dropped. */
  rejected: number;
  /** Datagrams held because their key had not arrived yet (opened by retryHeld(), or rejected when they expire). */
  held: number;
  /** Distinct frames that arrived as source packets. */
  framesReceived: number;
  /** Frames recovered by FEC (never received as source packets). */
  framesRecovered: number;
  /** Recovered frames that arrived too late for playout. */
  recoveredTooLate: number;
  /** Frames decoded and played / concealed periods. */
  framesPlayed: number;
  concealedFrames: number;
  decodeErrors: number;
}

export interface RecoveryEvent {
  seq: number;
  atMs: number;
}

export interface ReceiverOptions {
  /**
   * Decrypt a payload (end-to-end encryption) given the header bytes as associated data.
   * Throwing drops the packet (counted in `rejected`).
   */
  open?(header: Uint8Array, sealed: Uint8Array): Uint8Array;
  /**
   * True for an open() failure that a key arriving later cures (the sender's new key is
   * still on its way: datagrams overtake the signalling that carries it). Such datagrams are
   * held (at most MAX_HELD_DATAGRAMS, for HELD_DATAGRAM_MS) and opened by retryHeld().
   */
  isKeyPending?(error: unknown): boolean;
  codecById(id: number): CodecFactory | undefined;
  fecById(id: number): FecSchemeFactory | undefined;
  jitter?: JitterBufferOptions;
  /** Called for every frame FEC recovered (used by sweep to measure FEC delay). */
  onRecovered?(e: RecoveryEvent): void;
  /** Called for every valid packet's header (after decryption), e.g. to measure round trips. */
  onHeader?(header: MediaHeader, arrivalMs: number): void;
  /** Called for every frame payload received or recovered by FEC (before the jitter buffer). */
  onFrame?(seq: number, payload: Uint8Array): void;
}

/**
 * Datagrams held for a key at most: ~0.5 s of a GOOD stream (50 frames/s plus 3 repairs per 4
 * frames). The wait is one signalling trip (~10-20 ms on loopback), so this is generous.
 */
const MAX_HELD_DATAGRAMS = 48;
/**
 * Mini-header datagrams kept, authenticated, while the stream has no context yet (a late
 * joiner: the sender sends mini headers until it learns of us, and its full header is on its
 * way): ~0.15 s of a GOOD stream.
 */
const MAX_CONTEXTLESS = 8;
/** A held datagram older than this when its key comes is rejected: its frame is long due. */
const HELD_DATAGRAM_MS = 1000;

interface HeldDatagram {
  /** The whole datagram, as it came (a copy). */
  datagram: Uint8Array;
  split: { headerLength: number; full?: MediaHeader };
  arrivalMs: number;
}

interface BlockLayout {
  codecId: number;
  /** FEC_COMFORT_NOISE_EXTENSION's mask, when the block has comfort-noise frames. */
  comfortNoise: Uint8Array | undefined;
  baseSeq: number;
  baseTs: number;
  stride: number;
  frameSamples: number;
  received: Set<number>;
}

export interface PlayoutChunk {
  pcm: Int16Array;
  kind: PullResult['kind'];
  /** For a played frame: its sequence number. */
  seq?: number;
  /** A frame the buffer skipped to catch up (decoded to keep codec state, not played). */
  skipped?: { seq: number; pcm: Int16Array };
  /** Samples the frame's audio was shortened (< 0) or lengthened (> 0) by time stretching; absent when neither. */
  stretchedSamples?: number;
}

/** One period of output from MediaReceiver.read(). */
export interface PlayoutRead {
  /** Exactly the samples asked for. */
  pcm: Int16Array;
  /** Offset in `pcm` where the audio of the first received frame starting in it begins, if one does. */
  frameStartOffset?: number;
}

export class MediaReceiver {
  readonly stats: ReceiverStats = {
    packets: 0,
    sourcePackets: 0,
    repairPackets: 0,
    malformed: 0,
    rejected: 0,
    held: 0,
    framesReceived: 0,
    framesRecovered: 0,
    recoveredTooLate: 0,
    framesPlayed: 0,
    concealedFrames: 0,
    decodeErrors: 0,
  };
  /** The most recent quality report the far end sent. */
  lastReport: QualityReport | undefined;
  /** Tier of the latest packet. */
  lastTier: QualityTier | undefined;
  readonly jitter: JitterBuffer;
  private readonly mini = new MiniHeaderDecoder();
  private readonly assemblers = new Map<number, FecBlockAssembler>();
  private readonly fecDecoders = new Map<string, FecDecoder>();
  private readonly layouts = new Map<number, BlockLayout>();
  private newestBlock = -1;
  private decoder: { key: string; codec: Codec; factory: CodecFactory } | undefined;
  /** Codec id and frame size of each buffered frame, by sequence number. */
  private readonly frameInfo = new Map<number, { codecId: number; frameSamples: number }>();

  constructor(private readonly opts: ReceiverOptions) {
    this.jitter = new JitterBuffer(opts.jitter);
  }

  /**
   * Take one datagram as it came from the network. Bad input is dropped and counted.
   *
   * With `open`, a packet is authenticated before its header is trusted: a full header
   * becomes the mini-header context, and a mini header is expanded against the contexts,
   * only once its packet opened. A forged packet (which the relay or a member could inject)
   * is rejected without changing anything here.
   */
  receive(datagram: Uint8Array, arrivalMs: number): void {
    this.stats.packets++;
    let split: { headerLength: number; full?: MediaHeader };
    try {
      split = this.mini.splitPacket(datagram);
    } catch (err) {
      if (err instanceof DecodeError) {
        this.stats.malformed++;
        return;
      }
      throw err;
    }
    let payload = datagram.subarray(split.headerLength);
    if (this.opts.open) {
      try {
        payload = this.opts.open(datagram.subarray(0, split.headerLength), payload);
      } catch (err) {
        if (this.opts.isKeyPending?.(err)) this.hold({ datagram: datagram.slice(), split, arrivalMs });
        else this.stats.rejected++;
        return;
      }
    }
    const header = this.trustedHeader(datagram, split, { payload, arrivalMs });
    if (header) this.accept(header, payload, arrivalMs);
    if (split.full && this.hasContext && this.contextless.length > 0) this.expandContextless();
  }

  /**
   * The header of an authenticated (or unsealed) datagram; undefined if it does not expand. A
   * mini header before the stream's first context is kept (with its opened `early` payload)
   * for that context, not counted as malformed: see expandContextless.
   */
  private trustedHeader(datagram: Uint8Array, split: { full?: MediaHeader }, early?: { payload: Uint8Array; arrivalMs: number }): MediaHeader | undefined {
    if (split.full) {
      // Repair packets carry their block's first frame's fields: never a context.
      if (!split.full.fec.repair) {
        this.mini.remember(split.full);
        this.hasContext = true;
      }
      return split.full;
    }
    try {
      return this.mini.expandMini(datagram);
    } catch (err) {
      if (err instanceof DecodeError) {
        if (err.reason === 'no-context' && early && !this.hasContext && this.contextless.length < MAX_CONTEXTLESS) {
          this.contextless.push({ datagram: datagram.slice(), payload: early.payload.slice(), arrivalMs: early.arrivalMs });
          return undefined;
        }
        this.stats.malformed++;
        return undefined;
      }
      throw err;
    }
  }

  /** Whether a full header ever gave this stream a mini-header context. */
  private hasContext = false;
  /** Authenticated mini-header datagrams that came before the stream's first context. */
  private readonly contextless: { datagram: Uint8Array; payload: Uint8Array; arrivalMs: number }[] = [];

  /**
   * The stream's first context came: the mini headers that came before it (a sender that had
   * not met us yet, still sending mini headers) are expanded against it now, and enter the
   * pipeline as of their arrival; one that does not expand counts as malformed.
   */
  private expandContextless(): void {
    for (const c of this.contextless.splice(0)) {
      const header = this.trustedHeader(c.datagram, {});
      if (header) this.accept(header, c.payload, c.arrivalMs);
    }
  }

  /**
   * Open the datagrams held for a missing key (call when a key arrived). They enter the
   * pipeline now: a frame counts as arriving when it could first be read. One held too long
   * is not played, but once it opens its header still serves as a context for the others.
   */
  retryHeld(nowMs: number): void {
    const open = this.opts.open;
    const held = this.held.splice(0);
    if (!open) return;
    for (const h of held) {
      let payload: Uint8Array;
      try {
        payload = open(h.datagram.subarray(0, h.split.headerLength), h.datagram.subarray(h.split.headerLength));
      } catch (err) {
        if (this.opts.isKeyPending?.(err) && nowMs - h.arrivalMs <= HELD_DATAGRAM_MS) this.held.push(h);
        else this.stats.rejected++;
        continue;
      }
      const header = this.trustedHeader(h.datagram, h.split, { payload, arrivalMs: nowMs });
      if (nowMs - h.arrivalMs > HELD_DATAGRAM_MS) this.stats.rejected++;
      else if (header) this.accept(header, payload, nowMs);
    }
    if (this.hasContext && this.contextless.length > 0) this.expandContextless();
  }

  private readonly held: HeldDatagram[] = [];

  private hold(h: HeldDatagram): void {
    this.stats.held++;
    this.held.push(h);
    if (this.held.length > MAX_HELD_DATAGRAMS) {
      this.held.shift();
      this.stats.rejected++;
    }
  }

  /** A decrypted (or plain) datagram: check codec and scheme, then FEC and the jitter buffer. */
  private accept(header: MediaHeader, payload: Uint8Array, arrivalMs: number): void {
    const codec = header.codecId === COMFORT_NOISE_CODEC_ID || this.opts.codecById(header.codecId) !== undefined;
    const scheme = this.opts.fecById(header.fec.schemeId);
    if (!codec || !scheme) {
      this.stats.malformed++;
      return;
    }
    if (header.report) this.lastReport = header.report;
    this.lastTier = header.tier;
    this.opts.onHeader?.(header, arrivalMs);
    const blockId = this.unwrapBlock(header.fec.block);
    if (header.fec.repair) this.onRepair(header, payload, blockId, scheme, arrivalMs);
    else this.onSource(header, payload, blockId, scheme, arrivalMs);
  }

  private onSource(h: MediaHeader, view: Uint8Array, blockId: number, scheme: FecSchemeFactory, arrivalMs: number): void {
    this.stats.sourcePackets++;
    this.trackArrival(h, arrivalMs);
    // One copy, shared by the jitter buffer and the FEC assembler (neither modifies it): the
    // caller's datagram buffer is not ours to keep.
    const payload = view.slice();
    const outcome = this.jitter.insert({
      seq: h.sequence,
      timestamp: h.timestamp,
      arrivalMs,
      durationMs: (h.frameSamples * 1000) / PIPELINE_SAMPLE_RATE,
      payload,
    });
    if (outcome !== 'duplicate') {
      this.stats.framesReceived++;
      this.frameInfo.set(h.sequence, { codecId: h.codecId, frameSamples: h.frameSamples });
      this.opts.onFrame?.(h.sequence, payload);
    }
    if (this.pendingRecoveries.length > 0) this.settleRecoveries(h.sequence, arrivalMs);
    const layout = this.layout(blockId);
    layout.received.add(h.fec.symbol);
    if (h.fec.r > 0) this.feedAssembler(h, payload, blockId, scheme, arrivalMs);
  }

  /** Network-level view of the source stream: highest sequence and RFC 3550 jitter. */
  private extHighestSeq = -1;
  private readonly arrivalJitter = new Rfc3550JitterEstimator(PIPELINE_SAMPLE_RATE);
  private lossWindow = { highest: -1, received: 0 };

  private trackArrival(h: MediaHeader, arrivalMs: number): void {
    if (this.extHighestSeq < 0) {
      this.extHighestSeq = h.sequence;
      this.lossWindow.highest = h.sequence - 1;
    } else {
      const ext = unwrapU16(h.sequence, this.extHighestSeq);
      if (ext > this.extHighestSeq) this.extHighestSeq = ext;
    }
    this.lossWindow.received++;
    this.arrivalJitter.update(arrivalMs, h.timestamp);
  }

  /** RFC 3550 interarrival jitter of the source packets, ms. */
  get arrivalJitterMs(): number {
    return this.arrivalJitter.jitterMs;
  }

  /**
   * Source-packet loss on the network (before FEC) since the previous call, 0..1, or
   * undefined if nothing new was expected. Receivers report it back to the sender.
   */
  takeLossWindow(): number | undefined {
    const expected = this.extHighestSeq - this.lossWindow.highest;
    const received = this.lossWindow.received;
    this.lossWindow = { highest: this.extHighestSeq, received: 0 };
    if (expected <= 0) return undefined;
    return Math.min(1, Math.max(0, 1 - received / expected));
  }

  private onRepair(h: MediaHeader, view: Uint8Array, blockId: number, scheme: FecSchemeFactory, arrivalMs: number): void {
    const payload = view.slice();
    this.stats.repairPackets++;
    const stride = h.extensions.find((e) => e.id === FEC_LAYOUT_EXTENSION)?.data[0];
    const comfortNoise = h.extensions.find((e) => e.id === FEC_COMFORT_NOISE_EXTENSION)?.data;
    if (stride === undefined || stride === 0 || (comfortNoise !== undefined && comfortNoise.length !== Math.ceil(h.fec.k / 8))) {
      this.stats.malformed++;
      return;
    }
    const layout = this.layout(blockId);
    layout.baseSeq = h.sequence;
    layout.baseTs = h.timestamp;
    layout.stride = stride;
    layout.frameSamples = h.frameSamples;
    layout.codecId = h.codecId;
    layout.comfortNoise = comfortNoise;
    this.feedAssembler(h, payload, blockId, scheme, arrivalMs);
  }

  private feedAssembler(h: MediaHeader, payload: Uint8Array, blockId: number, scheme: FecSchemeFactory, arrivalMs: number): void {
    let assembler = this.assemblers.get(scheme.schemeId);
    if (!assembler) {
      assembler = new FecBlockAssembler({ decoderFor: (k, r) => this.fecDecoder(scheme, k, r), window: 8 });
      this.assemblers.set(scheme.schemeId, assembler);
    }
    let blocks: DecodedFecBlock[];
    try {
      blocks = assembler.push({
        blockId,
        k: h.fec.k,
        r: h.fec.r,
        packet: { index: h.fec.symbol, repair: h.fec.repair, data: payload },
      });
    } catch (err) {
      if (err instanceof Error && err.name === 'DecodeError') {
        this.stats.malformed++;
        return;
      }
      throw err;
    }
    for (const b of blocks) this.onBlock(b, arrivalMs);
  }

  private fecDecoder(scheme: FecSchemeFactory, k: number, r: number): FecDecoder {
    const key = `${scheme.schemeId}/${k}/${r}`;
    let d = this.fecDecoders.get(key);
    if (!d) {
      d = scheme.create({ k, r, maxFrameBytes: FEC_MAX_FRAME_BYTES }).decoder;
      this.fecDecoders.set(key, d);
    }
    return d;
  }

  private onBlock(block: DecodedFecBlock, nowMs: number): void {
    const layout = this.layouts.get(block.blockId);
    if (!layout || layout.stride === 0) return;
    const recovered: number[] = [];
    block.frames.forEach((frame, j) => {
      if (frame === undefined || layout.received.has(j)) return;
      const seq = (layout.baseSeq + j * layout.stride) % SEQ_MOD;
      const timestamp = (layout.baseTs + j * layout.stride * layout.frameSamples) % TS_MOD;
      const outcome = this.jitter.insert({
        seq,
        timestamp,
        arrivalMs: nowMs,
        durationMs: (layout.frameSamples * 1000) / PIPELINE_SAMPLE_RATE,
        payload: frame,
      });
      if (outcome === 'duplicate') return;
      this.stats.framesRecovered++;
      this.opts.onFrame?.(seq, frame);
      if (outcome === 'late') this.stats.recoveredTooLate++;
      const sid = layout.comfortNoise !== undefined && ((layout.comfortNoise[j >> 3] >> (j & 7)) & 1) === 1;
      this.frameInfo.set(seq, { codecId: sid ? COMFORT_NOISE_CODEC_ID : layout.codecId, frameSamples: layout.frameSamples });
      this.opts.onRecovered?.({ seq, atMs: nowMs });
      recovered.push(seq);
    });
    // Had the block's first frame been the one lost, it would have been recovered now too:
    // once the loss is confirmed (settleRecoveries), the jitter buffer learns the block's
    // worst-position delay from this recovery (JitterBuffer.observeDelay).
    if (recovered.length > 0 && layout.received.has(0)) {
      this.pendingRecoveries.push({ seqs: recovered, timestamp: layout.baseTs, atMs: nowMs });
      if (this.pendingRecoveries.length > MAX_PENDING_RECOVERIES) this.pendingRecoveries.shift();
    }
    this.layouts.delete(block.blockId);
  }

  /**
   * FEC also "recovers" a frame whose source packet is only late (jitter reordered it behind
   * the block's repairs): that is no loss, and the delay a lost first frame would have
   * needed says nothing about this path. A recovery counts if, RECOVERY_CONFIRM_MS after it,
   * a frame it recovered still has not arrived as a source packet (checked as packets arrive).
   */
  private readonly pendingRecoveries: { seqs: number[]; timestamp: number; atMs: number }[] = [];

  private settleRecoveries(arrivedSeq: number, nowMs: number): void {
    let keep = 0;
    for (const p of this.pendingRecoveries) {
      const i = p.seqs.indexOf(arrivedSeq);
      if (i >= 0) p.seqs.splice(i, 1);
      if (p.seqs.length === 0) continue; // every frame it recovered arrived after all
      if (nowMs - p.atMs >= RECOVERY_CONFIRM_MS) {
        this.jitter.observeDelay(p.timestamp, p.atMs);
        continue;
      }
      this.pendingRecoveries[keep++] = p;
    }
    this.pendingRecoveries.length = keep;
  }

  private layout(blockId: number): BlockLayout {
    let l = this.layouts.get(blockId);
    if (!l) {
      l = { codecId: 0, comfortNoise: undefined, baseSeq: 0, baseTs: 0, stride: 0, frameSamples: 0, received: new Set() };
      this.layouts.set(blockId, l);
      // Keep layouts bounded: blocks far behind the newest can no longer be completed.
      for (const id of this.layouts.keys()) if (id < blockId - 64) this.layouts.delete(id);
    }
    return l;
  }

  private unwrapBlock(block16: number): number {
    if (this.newestBlock < 0) {
      this.newestBlock = block16;
      return block16;
    }
    const id = unwrapU16(block16, this.newestBlock);
    if (id > this.newestBlock) this.newestBlock = id;
    return id;
  }

  /** Decoded audio waiting to be played by read(), oldest first. */
  private readonly queue: Int16Array[] = [];
  private queuedSamples = 0;

  /**
   * The next `samples` of output, for a caller on an audio clock of that period (a mixing
   * tick, a device callback): frames are pulled from the jitter buffer as the queue runs
   * low, with the queued audio and the period passed on so the buffer counts the time a
   * frame waits in the queue and can settle its delay by sub-frame time compression.
   */
  read(nowMs: number, samples: number): PlayoutRead {
    if (!(Number.isInteger(samples) && samples > 0)) throw new InternalError(`read: samples must be a positive integer, got ${samples}`);
    const periodMs = (samples * 1000) / PIPELINE_SAMPLE_RATE;
    let frameStartOffset: number | undefined;
    while (this.queuedSamples < samples) {
      const queuedMs = (this.queuedSamples * 1000) / PIPELINE_SAMPLE_RATE;
      const chunk = this.pull(nowMs, { queuedMs, periodMs });
      if (chunk.kind === 'empty') {
        // Not playing: silence for this period only, so the next period pulls again at once
        // (queuing the buffer's whole idle frame would delay the start by up to a frame).
        this.enqueue(new Int16Array(samples - this.queuedSamples));
        break;
      }
      if (chunk.kind === 'frame' && frameStartOffset === undefined) frameStartOffset = this.queuedSamples;
      this.enqueue(chunk.pcm);
    }
    return { pcm: this.dequeue(samples), ...(frameStartOffset === undefined ? {} : { frameStartOffset }) };
  }

  /** Decoded audio queued by read() and not yet returned, ms. */
  get queuedMs(): number {
    return (this.queuedSamples * 1000) / PIPELINE_SAMPLE_RATE;
  }

  private enqueue(pcm: Int16Array): void {
    if (pcm.length === 0) return;
    this.queue.push(pcm);
    this.queuedSamples += pcm.length;
  }

  private dequeue(n: number): Int16Array {
    const out = new Int16Array(n);
    let filled = 0;
    while (filled < n && this.queue.length > 0) {
      const head = this.queue[0];
      const take = Math.min(n - filled, head.length);
      out.set(head.subarray(0, take), filled);
      filled += take;
      if (take === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(take);
    }
    this.queuedSamples -= filled;
    return out;
  }

  /**
   * Produce the next chunk of playout audio: call when the previous chunk has played, or, on
   * an audio clock with a FIFO, pass `playout` (queued audio and the clock's period; see
   * JitterBuffer.pull). With `playout`, a frame may come back time-compressed (shorter than
   * its duration) when the buffer has delay to spare.
   */
  pull(nowMs: number, playout?: PlayoutPosition): PlayoutChunk {
    const r = this.jitter.pull(nowMs, playout);
    const samples = Math.round((r.durationMs * PIPELINE_SAMPLE_RATE) / 1000);
    switch (r.kind) {
      case 'frame': {
        const skippedPcm = r.removed ? this.decode(r.removed.seq, r.removed.payload, samples) : undefined;
        const skipped = r.removed && skippedPcm ? { seq: r.removed.seq, pcm: skippedPcm } : undefined;
        let pcm = this.decode(r.seq, r.payload, samples);
        this.frameInfo.delete(r.seq);
        if (pcm) {
          this.stats.framesPlayed++;
          let stretchedSamples = 0;
          if (r.compressMs !== undefined || r.expandMs !== undefined) {
            const toSamples = (ms: number) => (ms * PIPELINE_SAMPLE_RATE) / 1000;
            const stretched =
              r.expandMs !== undefined
                ? // Forced: a poorer splice beats the whole frame of concealment that would follow.
                  expandAudio(pcm, toSamples(r.expandMs), maxStretchSamples(pcm.length), true)
                : compressAudio(pcm, toSamples(r.compressMs as number));
            if (stretched.changedSamples !== 0) {
              pcm = stretched.pcm;
              stretchedSamples = stretched.changedSamples;
              this.jitter.recordTimeStretch(stretchedSamples);
            }
          }
          return {
            pcm,
            kind: 'frame',
            seq: r.seq,
            ...(skipped ? { skipped } : {}),
            ...(stretchedSamples !== 0 ? { stretchedSamples } : {}),
          };
        }
        this.stats.concealedFrames++;
        return { pcm: this.conceal(samples), kind: 'conceal' };
      }
      case 'conceal':
      case 'decelerate':
        this.stats.concealedFrames += r.kind === 'conceal' ? 1 : 0;
        return { pcm: this.conceal(samples), kind: r.kind };
      case 'empty':
        return { pcm: new Int16Array(samples), kind: 'empty' };
    }
  }

  private readonly comfortNoise = new ComfortNoiseGenerator();

  private decode(seq: number, payload: Uint8Array, samples: number): Int16Array | undefined {
    const info = this.frameInfo.get(seq);
    this.frameInfo.delete(seq);
    if (info?.codecId === COMFORT_NOISE_CODEC_ID) {
      try {
        this.comfortNoise.update(decodeSid(payload));
      } catch {
        this.stats.decodeErrors++;
        return undefined;
      }
      return this.comfortNoise.generate(info.frameSamples);
    }
    const factory = info ? this.opts.codecById(info.codecId) : this.decoder?.factory;
    if (!factory) return undefined;
    const frameSamples = info?.frameSamples ?? samples;
    const key = `${factory.codecId}/${frameSamples}`;
    if (!this.decoder || this.decoder.key !== key) {
      this.decoder?.codec.close();
      this.decoder = { key, factory, codec: factory.create({ frameMs: (frameSamples * 1000) / PIPELINE_SAMPLE_RATE }) };
    }
    try {
      return this.decoder.codec.decode(payload);
    } catch {
      this.stats.decodeErrors++;
      return undefined;
    }
  }

  private conceal(samples: number): Int16Array {
    const c = this.decoder?.codec;
    if (c?.conceal && c.frameSamples === samples) return c.conceal();
    return new Int16Array(samples);
  }

  jitterStats(): JitterBufferStats {
    return this.jitter.stats();
  }

  close(): void {
    this.decoder?.codec.close();
  }
}

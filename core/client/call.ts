/**
 * A call: membership of an SFU room on a relay, with end-to-end encrypted media. The Call
 * composes four units, each with its own tests:
 *
 * - RoomMembership (room-membership.ts): the roster, admission of members from their signed
 *   and proven announcements, our keyring and the pacing of sender-key rotations, and the
 *   bounded record of members who left or were refused. No network: it is fed the join
 *   answer and the relay's pushes.
 * - LinkSupervisor (link-supervisor.ts): the stall watchdog, the round trip of the relay leg
 *   on the media's path, and getting back to a lost relay with back-off (with `reconnect`:
 *   the call re-joins as a new room session; the others rotate, as for any join).
 * - Playout (playout.ts): a MediaReceiver per remote member (decryption, FEC, jitter buffer,
 *   decoding) and the mix of their audio every output period into the sink.
 * - The session's MediaTransport (core/transport/media-transport.ts): the UDP media path to
 *   the relay once confirmed, QUIC datagrams until then.
 *
 * What stays here is the media engine's clock and the sending side: a 10 ms clock takes audio
 * from the source; the MediaSender encodes it in frames of the current quality tier (20 ms
 * for GOOD: a frame goes out every other tick) with its codec and FEC, and seals each payload
 * with our sender key, the header bytes as associated data. Every second each member reports
 * what it receives (loss, jitter, its relay RTT) in its media headers, and our
 * QualityController moves our tier with hysteresis. A member's round trip is our leg plus
 * the leg it reports. While the relay is lost the clock keeps running: the source is
 * consumed and the sink gets silence, so recordings keep time. The call's report (CallReport)
 * and events (CallEvent) gather what the units say.
 *
 * The join: the relay sees only an id derived from the room name (and secret); our
 * announcement goes inside the join request, the relay hands it to the members with the join
 * notice and returns theirs in the join answer, so the members' wrapped keys are the only
 * round trip before the first audio. Datagrams sealed with a key still on its way are held
 * until it arrives.
 */
import { delay } from '../time.js';
import { AbortError, InternalError, ProtocolError, RelayDrainingError, errorMessage } from '../errors.js';
import type { FrameSink, FrameSource } from '../audio/sources.js';
import type { Identity } from '../crypto/identity.js';
import type { SeededKeys } from '../crypto/sender-keys.js';
import { frameSamplesFor, PIPELINE_SAMPLE_RATE, type CodecFactory } from '../media/codec-types.js';
import { impairmentFor, mos as eModelMos } from '../media/emodel.js';
import type { FecSchemeFactory } from '../media/fec-types.js';
import type { JitterBufferStats } from '../media/jitter-buffer.js';
import { MediaSender, type StreamSettings } from '../media/pipeline.js';
import { QualityController, TIERS, type TierChange, type TierName } from '../media/quality.js';
import { tierStreamSettings } from '../media/stream-settings.js';
import { untagRoomDatagram } from '../relay/rooms.js';
import { EarlyDatagrams } from './early-media.js';
import { isMiniHeader } from '../wire/datagram.js';
import { decodeMediaHeader } from '../wire/media-header.js';
import type { Registry } from '../registry.js';
import { quantizeQualityReport } from '../wire/media-header.js';
import type { RoomCallSession } from './call-session.js';
import { DEFAULT_RECONNECT_FOR_MS, LinkSupervisor, PROBE_TIMEOUT_MS, RTT_PING_INTERVAL_MS, STALL_MS, type LinkLossCause } from './link-supervisor.js';
import { PLAYOUT_PERIOD_MS, PLAYOUT_PERIOD_SAMPLES, Playout, TALKING_RMS } from './playout.js';
import {
  MAX_DEPARTED_REPORTED,
  MAX_REFUSED_REPORTED,
  ROTATION_INTERVAL_MS,
  RoomMembership,
  type Member,
  type MemberDirectory,
  type MembershipEvent,
  type MemberTrust,
  type RefusalReason,
  type RefusedMember,
} from './room-membership.js';

export type { MemberDirectory, MemberTrust, RefusalReason, RefusedMember, RoomCallSession };
export { DEFAULT_RECONNECT_FOR_MS, MAX_DEPARTED_REPORTED, MAX_REFUSED_REPORTED, PROBE_TIMEOUT_MS, ROTATION_INTERVAL_MS, RTT_PING_INTERVAL_MS, STALL_MS };

/** The mixing and send clock. */
export const TICK_MS = PLAYOUT_PERIOD_MS;
const TICK_SAMPLES = PLAYOUT_PERIOD_SAMPLES;
/** How often receivers report what they see, and the status line refreshes. */
const REPORT_INTERVAL_MS = 1000;
/** How long a room signal may take to go out. */
const ROOM_SIGNAL_TIMEOUT_MS = 2000;

export interface CallOptions {
  /** The link to the relay (a RelaySession; a test may wrap one). */
  session: RoomCallSession;
  identity: Identity;
  room: string;
  alias: string;
  codecs: Registry<CodecFactory>;
  fec: Registry<FecSchemeFactory>;
  source: FrameSource;
  sink?: FrameSink;
  tier?: TierName;
  /** Move between tiers from receiver reports (default true). */
  adaptive?: boolean;
  /** Do not send media (a recorder). */
  receiveOnly?: boolean;
  /**
   * Strengthens the room name: the room id and admission key are derived from both
   * (deriveRoomKeys), so a relay cannot find the room's name from its id by guessing.
   */
  roomSecret?: string;
  /** Admit only these identities (canonical fingerprints) and our own; absent: every member who proves it knows the name. */
  allow?: readonly string[];
  /** A 1:1 call's first sender keys, derived by both sides from the call secret (RoomKeyringOptions.seeded). */
  seededKeys?: SeededKeys;
  /**
   * Join the room at once, but start the media (the clock: sending, playing, the status) only
   * when this resolves; if it rejects, leave the room and end with its error. A 1:1 caller
   * joins while the call rings (docs/direct-calls.md): members and their first datagrams are
   * taken meanwhile, so the audio starts on the answer without a join in the way.
   */
  startGate?: Promise<unknown>;
  /** Who we have met before (known-members.json): members are `known` or `new`. Without it everyone is `new`. */
  members?: MemberDirectory;
  /** Voice activity detection: silence goes as comfort-noise descriptions. */
  vad?: boolean;
  /** Clean the source before encoding (RNNoise). */
  noiseSuppressor?: { process(frame: Int16Array): Int16Array; close(): void };
  durationMs?: number;
  /** End the call when a finite source (a file) has been sent. */
  endWithSource?: boolean;
  signal?: AbortSignal;
  onEvent?(e: CallEvent): void;
  /** Told once, at the start, how to read the call's live counters (e.g. to time a path switch's audio gap). */
  observe?(view: CallView): void;
  /**
   * Open a new session after the link was lost (`cause` lost) or its relay drains (`drain`):
   * to the same relay (same certificate), or the next of the call's relays
   * (core/client/relay-rotation.ts). Without it, losing the relay ends the call (`relay-lost`).
   */
  reconnect?(signal: AbortSignal, cause: LinkLossCause): Promise<RoomCallSession>;
  /**
   * The call has other relays to go to: on a relay's drain notice (or a drain refusal of our
   * first join) it moves at once (reconnect with cause `drain`). Without it a drain notice
   * is only reported: the call stays until the relay stops, then gets back as to a lost one.
   */
  moveOnDrain?: boolean;
  /** The relay the last reconnect attempt went to, for its warning (with several relays). */
  reconnectTarget?(): string | undefined;
  /** How long to keep trying to get back to the relay (default DEFAULT_RECONNECT_FOR_MS). */
  reconnectForMs?: number;
}

export type CallEvent =
  | { type: 'call:joined'; room: string; sourceId: number; participants: number }
  /** member-joined, member-left, member-reconnected, member-refused, and warnings. */
  | MembershipEvent
  | { type: 'call:tier-changed'; from: TierName; to: TierName; reason: string }
  | { type: 'call:first-audio'; atMs: number }
  | { type: 'call:status'; status: CallStatus }
  | { type: 'call:warning'; message: string }
  | { type: 'call:relay-lost'; reason: string; reconnecting: boolean }
  /** The relay sent its drain notice: it stops within deadlineMs; `moving`: we leave for another relay now. */
  | { type: 'call:relay-draining'; relay?: string; deadlineMs: number; moving: boolean }
  /** Back in the room (`relay`: where; `reason`: why we had left, lost or drain). */
  | { type: 'call:reconnected'; outageMs: number; attempts: number; participants: number; reason: LinkLossCause; relay?: string };

/** Live counters of a running call. */
export interface CallView {
  /** Frames concealed so far (every member's stream together). */
  concealedFrames(): number;
}

export interface CallStatus {
  tier: TierName;
  /**
   * Round trip to the farthest member through the relay: our leg plus the leg it reports, ms
   * (undefined until a member's report and our first measurement are in).
   */
  rttMs: number | undefined;
  /** Our leg: the round trip to the relay on the media's path, ms (median of the latest samples). */
  relayRttMs: number | undefined;
  /** Worst network loss among the streams we receive, %. */
  lossPct: number;
  jitterBufferMs: number;
  mos: number | undefined;
  talking: string[];
  members: number;
  /** 'reconnecting' while the relay is lost and being re-opened. */
  link: 'up' | 'reconnecting';
  /**
   * 1:1 calls (core/client/direct-call.ts): the path our media takes, and on the direct path
   * the selected pair's candidate types (`host -> srflx`) and round trip.
   */
  path?: { kind: 'relay' } | { kind: 'direct'; pair: string; rttMs?: number };
}

export interface ParticipantReport {
  /** As signed into its announcement (empty: it gave none). */
  alias: string;
  fingerprint: string;
  sourceId: number;
  /** `trust` is `allowed` or `known`: the identity is one you named or met before. */
  verified: boolean;
  trust: MemberTrust;
  /** The member left before the call ended. */
  left: boolean;
  packetsReceived: number;
  lossPct: number;
  framesReceived: number;
  framesRecovered: number;
  framesPlayed: number;
  concealedFrames: number;
  decryptRejected: number;
  malformed: number;
  jitterBuffer: JitterBufferStats;
  lastTier: TierName | undefined;
  /** Round trip to this member through the relay when last measured (each second): our leg plus the leg it reported, ms. */
  rttMs: number | undefined;
  mos: number | undefined;
}

export interface CallReport {
  room: string;
  roomId: string;
  alias: string;
  fingerprint: string;
  sourceId: number;
  durationMs: number;
  setupMs: number;
  /** From the start of the call to the first remote audio frame played. */
  firstAudioMs: number | undefined;
  /** From the start of this process (command start) to the first remote frame played. */
  firstAudioSinceStartMs: number | undefined;
  tier: TierName;
  tierChanges: { atMs: number; from: TierName; to: TierName; reason: string }[];
  sent: { frames: number; packets: number; bytes: number };
  participants: ParticipantReport[];
  /** Members who left beyond the MAX_DEPARTED_REPORTED listed in `participants`. */
  participantsNotListed: number;
  /** Announcements refused admission, one entry per member and reason (at most MAX_REFUSED_REPORTED). */
  refused: RefusedMember[];
  /** Refused announcements beyond the listed members (each counted). */
  refusedNotListed: number;
  /** How the room admits members: whether a secret strengthens the name, and the allow list. */
  admission: { roomSecret: boolean; allow?: string[] };
  /** Times our sender key rotated (membership changes are taken together: ROTATION_INTERVAL_MS). */
  keyRotations: number;
  /**
   * Each time the relay was lost or drained and the call got back: when (ms into the call),
   * the gap, after how many attempts, why (lost or drain), and the relay it landed on.
   */
  reconnects: { atMs: number; outageMs: number; attempts: number; reason: LinkLossCause; relay?: string }[];
  /** Round trips to the relay on the media's path, one a second (RTT_PING_INTERVAL_MS): absent if none was measured. */
  relayRttMs?: { p50: number; p95: number; max: number; mean: number; samples: number };
  endedBy: 'duration' | 'source-ended' | 'hangup' | 'relay-lost';
  /**
   * The path our media went to the relay on at the end: the UDP media path, or QUIC
   * datagrams (core/transport/udp-media.ts).
   */
  mediaPath: 'udp' | 'quic';
}

export async function runCall(opts: CallOptions): Promise<CallReport> {
  const call = new Call(opts);
  return call.run();
}

class Call {
  private readonly membership: RoomMembership;
  private readonly playout: Playout<Member>;
  private readonly supervisor: LinkSupervisor<RoomCallSession>;
  /** Round trip to each member through the relay at the last report tick (our leg plus its reported leg), ms. */
  private readonly memberRtts = new WeakMap<Member, number>();
  private mediaPath: CallReport['mediaPath'] = 'quic';
  private readonly controller: QualityController;
  private readonly tierChanges: CallReport['tierChanges'] = [];
  private tier: TierName;
  private sender: MediaSender | undefined;
  private started = 0;
  private firstAudioMs: number | undefined;
  /** performance.now() counts from process start (Node's timeOrigin). */
  private firstAudioAt: number | undefined;
  private sendBuffer = new Int16Array(0);
  /** Packets the media transport refused with an error (not a drop). */
  private sendErrors = 0;
  /** Datagrams from slots whose member is not admitted yet (they overtake its announcement). */
  private readonly early = new EarlyDatagrams();
  /** Our first frame is out (the first tick reads a whole frame: see sendTick). */
  private sentFirstFrame = false;

  constructor(private readonly opts: CallOptions) {
    this.membership = new RoomMembership({
      identity: opts.identity,
      room: opts.room,
      alias: opts.alias,
      ...(opts.roomSecret === undefined ? {} : { roomSecret: opts.roomSecret }),
      ...(opts.allow === undefined ? {} : { allow: opts.allow }),
      ...(opts.members === undefined ? {} : { members: opts.members }),
      ...(opts.seededKeys === undefined ? {} : { seeded: opts.seededKeys }),
      send: (payload, to) => this.supervisor.session.roomSignal(payload, to, { timeoutMs: ROOM_SIGNAL_TIMEOUT_MS }),
      emit: (e) => this.emit(e),
      hooks: {
        // A newcomer has no header context for our stream yet: the sender sets one up again
        // with the key rotation that admits it (keyEpoch below), the first packets it can open;
        // a seeded peer (a 1:1 call's first keys) comes without a rotation, so resync here too.
        admitted: (m) => {
          this.sender?.resync();
          this.playout.add(m);
          // Its datagrams that came before its announcement can be opened now: from its first
          // context, a full header of a source packet (mini headers before it have no context
          // here, the sender had not met us yet: they are dropped as before admission).
          const now = performance.now();
          for (const d of this.early.take(m.sourceId, now, startsContext)) this.playout.receive(m, d, now);
        },
        retired: (m) => this.playout.end(m),
        keyArrived: (m) => this.playout.keyArrived(m),
        heard: (m) => this.playout.heard(m),
      },
    });
    this.playout = new Playout<Member>({
      codecs: opts.codecs,
      fec: opts.fec,
      open: (m, h, sealed) => {
        const d = this.membership.decryptorFor(m);
        if (!d) throw new ProtocolError('no key for this member yet');
        return d.open(h, sealed);
      },
      ...(opts.sink ? { sink: opts.sink } : {}),
      onFirstAudio: (at) => {
        this.firstAudioMs = at - this.started;
        this.firstAudioAt = at;
        this.emit({ type: 'call:first-audio', atMs: this.firstAudioMs });
      },
    });
    this.supervisor = new LinkSupervisor<RoomCallSession>({
      session: opts.session,
      ...(opts.reconnect === undefined ? {} : { reconnect: (signal, cause) => opts.reconnect!(signal, cause) }),
      ...(opts.reconnectForMs === undefined ? {} : { reconnectForMs: opts.reconnectForMs }),
      ...(opts.reconnectTarget === undefined ? {} : { reconnectTarget: opts.reconnectTarget }),
      rejoin: (session) => this.join(session),
      onLost: (reason, reconnecting) => {
        this.emit({ type: 'call:relay-lost', reason, reconnecting });
        // Everyone we had is gone with the link; whoever is still there is met again on re-joining.
        if (reconnecting) this.membership.linkLost();
        this.early.clear();
      },
      onReconnected: (e) => {
        // The others meet a new member: our header context starts afresh for them.
        this.sender?.resync();
        this.emit({ type: 'call:reconnected', ...e });
      },
      onWarning: (message) => this.emit({ type: 'call:warning', message }),
      onGaveUp: ({ attempts, forMs, lastError }) =>
        this.emit({
          type: 'call:warning',
          message: `gave up getting back to ${opts.moveOnDrain ? 'a relay' : 'the relay'}: ${attempts} attempt${attempts === 1 ? '' : 's'} in ${(forMs / 1000).toFixed(1)} s, the last: ${lastError}`,
        }),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    this.tier = opts.tier ?? 'GOOD';
    this.controller = new QualityController({ initialTier: this.tier });
    this.controller.onTierChange((c) => this.onTierChange(c));
  }

  private emit(e: CallEvent): void {
    this.opts.onEvent?.(e);
  }

  async run(): Promise<CallReport> {
    const t0 = performance.now();
    this.opts.observe?.({ concealedFrames: () => this.playout.concealedFrames() });
    let participants: number | undefined;
    try {
      const joining = this.join(this.opts.session, () => {
        this.started = performance.now();
        this.supervisor.started(this.started);
      });
      // The encoder (~4 ms with Opus) is made while the join request is on its way, once it
      // has left (it is written in microtasks: work done at once would hold it back), and
      // before the answer, so that this process is then free for the members' keys and first
      // packets.
      joining.catch(() => undefined); // awaited below; a refusal meanwhile is not unhandled
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (!this.opts.receiveOnly) {
        try {
          this.sender = new MediaSender(this.settingsFor(this.tier), {
            seal: (h, p) => this.membership.encryptor().seal(h, p),
            keyEpoch: () => this.membership.encryptor().epoch,
            vad: this.opts.vad,
            noiseSuppressor: this.opts.noiseSuppressor,
          });
        } catch (err) {
          // No call after all: out of the room again if the join got in.
          if (await joining.then(() => true, () => false)) await this.opts.session.leave({ timeoutMs: 1000 }).catch(() => undefined);
          throw err;
        }
      }
      participants = await joining;
    } catch (err) {
      if (err instanceof RelayDrainingError && this.opts.moveOnDrain && this.opts.reconnect) {
        // Our first relay is draining: the call starts by moving to the next one.
        this.started = performance.now();
        this.supervisor.started(this.started);
        this.emit({ type: 'call:warning', message: `${errorMessage(err)}; moving to the next relay` });
        this.supervisor.lost(`${relayName(this.opts.session)} is draining`, 'drain');
      } else {
        await this.abandon();
        throw err;
      }
    }
    this.supervisor.watch(this.opts.session);
    const setupMs = this.started - t0;

    let endedBy: CallReport['endedBy'] = 'hangup';
    try {
      if (this.opts.startGate) {
        await untilAborted(this.opts.startGate, this.opts.signal);
        // The call starts now (its duration, first audio and tier changes count from here),
        // not when we joined while it rang.
        this.started = performance.now();
        this.supervisor.started(this.started);
      }
      if (participants !== undefined) this.emit({ type: 'call:joined', room: this.opts.room, sourceId: this.membership.sourceId, participants });
      endedBy = await this.clock();
    } finally {
      this.supervisor.stop();
      this.membership.stop();
      const session = this.supervisor.session;
      this.mediaPath = session.mediaPathStats().path;
      // Hang up at once so the others see the leave immediately, whatever happened.
      if (this.supervisor.link === 'up') await session.leave({ timeoutMs: 1000 }).catch(() => undefined);
      session.mediaTransport.onDatagram(() => undefined);
      if (session !== this.opts.session) await session.close().catch(() => undefined);
      this.sender?.close();
      this.opts.noiseSuppressor?.close();
      this.playout.close();
      await this.opts.sink?.close();
      await this.opts.source.close?.();
    }
    return this.report(setupMs, endedBy);
  }

  /** The call never started: what it was given to run is released as at a hang-up. */
  private async abandon(): Promise<void> {
    this.supervisor.stop();
    this.membership.stop();
    this.sender?.close();
    this.opts.noiseSuppressor?.close();
    await this.opts.sink?.close();
    await this.opts.source.close?.();
  }

  /**
   * The relay of `session` drains: with other relays, leave it now for the next (the others in
   * the room, told too, move as well and meet us there); otherwise say so and stay.
   */
  private onDrainNotice(session: RoomCallSession, deadlineMs: number): void {
    if (!this.supervisor.isCurrent(session) || this.supervisor.link !== 'up') return;
    const moving = this.opts.moveOnDrain === true && this.opts.reconnect !== undefined;
    this.emit({ type: 'call:relay-draining', ...(session.label === undefined ? {} : { relay: session.label }), deadlineMs, moving });
    if (moving) this.supervisor.lost(`${relayName(session)} is draining`, 'drain');
  }

  /**
   * Join the room on `session` as a new room session: membership admits the members whose
   * announcements came with the answer, sends them our key and announces us. `onAnswer` runs
   * as soon as the answer is in. Returns how many were in the room.
   */
  private async join(session: RoomCallSession, onAnswer?: () => void): Promise<number> {
    // Pushes and datagrams from a session we have moved away from are not ours to handle.
    session.onPush((msg) => {
      if (!this.supervisor.isCurrent(session)) return;
      this.supervisor.heard(session);
      if (msg.type === 'draining') this.onDrainNotice(session, msg.deadlineMs);
      else this.membership.onPush(msg);
    });
    session.mediaTransport.onDatagram((d) => {
      if (!this.supervisor.isCurrent(session)) return;
      this.supervisor.heard(session);
      this.onDatagram(d);
    });
    const joined = await session.joinRoom(this.membership.roomId, {
      alias: this.opts.alias,
      fingerprint: this.opts.identity.fingerprint,
      announcement: { ...this.membership.localAnnouncement() },
      identity: this.opts.identity,
      roomName: this.opts.room,
      signal: this.supervisor.signal,
    });
    onAnswer?.();
    this.supervisor.heard(session);
    this.membership.joined(joined);
    return joined.participants.length;
  }

  /** Round trip to a member through the relay: our leg plus the leg it reported. */
  private memberRtt(m: Member, leg: number | undefined): number | undefined {
    const report = this.playout.streamOf(m)?.receiver.lastReport;
    return leg === undefined || report === undefined ? undefined : leg + report.rttMs;
  }

  /** The 10 ms clock: send, mix, report. Drift-corrected; ends on abort, duration or source end. */
  private async clock(): Promise<CallReport['endedBy']> {
    const start = performance.now();
    let tick = 0;
    let lastReport = start;
    for (;;) {
      if (this.opts.signal?.aborted) return 'hangup';
      if (this.supervisor.gaveUp) return 'relay-lost';
      const now = performance.now();
      this.supervisor.tick(now);
      if (this.opts.durationMs !== undefined && now - start >= this.opts.durationMs) return 'duration';
      if (this.opts.endWithSource && this.opts.source.ended && this.sendBuffer.length === 0) return 'source-ended';
      this.sendTick();
      this.playout.mix(now);
      if (now - lastReport >= REPORT_INTERVAL_MS) {
        lastReport = now;
        this.reportTick(now);
      }
      tick++;
      const wait = start + tick * TICK_MS - performance.now();
      await delay(Math.max(0, wait), this.opts.signal).catch(() => undefined);
      // The tick's work runs after the I/O that is ready: after a stall (a busy process) the
      // datagrams that came meanwhile are taken before the mix looks for them, instead of
      // the timer running first and concealing frames that are already here.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Our media out on the current link (dropped while the link is down). */
  private sendPacket(packet: Uint8Array): void {
    if (this.supervisor.link !== 'up') return;
    try {
      this.supervisor.session.mediaTransport.send(packet);
    } catch (err) {
      // A packet the path cannot carry (MediaPayloadTooLargeError) is lost, not the call (said once).
      if (this.sendErrors++ === 0) this.emit({ type: 'call:warning', message: `media packet not sent: ${errorMessage(err)}` });
    }
  }

  private sendTick(): void {
    if (!this.sender) return;
    const frameSamples = frameSamplesFor(this.sender.current.frameMs);
    // The first tick reads a whole frame, so the first frame goes out now rather than a tick
    // later (its first 10 ms alone make no frame); the source is read that much ahead from
    // then on (a live source's shortfall reads as silence).
    const want = this.sentFirstFrame ? TICK_SAMPLES : Math.max(TICK_SAMPLES, frameSamples - this.sendBuffer.length);
    const frame = this.opts.source.read(want);
    if (this.supervisor.link !== 'up') {
      // No relay to send to: the source keeps its real-time pace, what it said is lost.
      this.sendBuffer = new Int16Array(0);
      return;
    }
    const buffered = new Int16Array(this.sendBuffer.length + frame.length);
    buffered.set(this.sendBuffer);
    buffered.set(frame, this.sendBuffer.length);
    let offset = 0;
    while (buffered.length - offset >= frameSamples) {
      for (const packet of this.sender.sendFrame(buffered.subarray(offset, offset + frameSamples))) this.sendPacket(packet);
      offset += frameSamples;
      this.sentFirstFrame = true;
    }
    this.sendBuffer = buffered.slice(offset);
  }

  private reportTick(now: number): void {
    const legRtt = this.supervisor.relayRtt();
    const { worstLossPct: worstLoss, worstJitterMs: worstJitter } = this.playout.takeReportWindow();
    // Tell the senders what we receive: attached to our next media packet.
    this.sender?.attachReport(quantizeQualityReport({ lossRatio: worstLoss / 100, rttMs: legRtt ?? 0, jitterMs: worstJitter }));
    // And adapt what we send to what they report.
    const reports = this.playout.senderReports();
    if (this.opts.adaptive !== false && this.sender && reports.length > 0) {
      const lossPct = Math.max(...reports.map((r) => (r.fractionLost / 256) * 100));
      const rttMs = Math.max(...reports.map((r) => r.rttMs)) + (legRtt ?? 0);
      const jitterMs = Math.max(...reports.map((r) => r.jitterMs));
      this.controller.report({ lossPct, rttMs, jitterMs, nowMs: now });
    }
    this.emit({ type: 'call:status', status: this.status(legRtt, worstLoss) });
  }

  private status(legRtt: number | undefined, lossPct: number): CallStatus {
    const members = [...this.membership.members.values()];
    const jitterBufferMs = this.playout.jitterBufferMs();
    for (const m of members) {
      const rtt = this.memberRtt(m, legRtt);
      if (rtt !== undefined) this.memberRtts.set(m, rtt);
    }
    const rtts = members.map((m) => this.memberRtts.get(m)).filter((x): x is number => x !== undefined);
    const rttMs = rtts.length ? Math.max(...rtts) : undefined;
    // One way is half the round trip; before a member reports its leg, ours stands for both.
    const oneWayMs = rttMs === undefined ? (legRtt ?? 0) : rttMs / 2;
    return {
      tier: this.tier,
      rttMs: roundMs(rttMs),
      relayRttMs: roundMs(legRtt),
      lossPct: Math.round(lossPct * 10) / 10,
      jitterBufferMs: Math.round(jitterBufferMs),
      mos: members.length ? this.mosEstimate(lossPct, oneWayMs + jitterBufferMs) : undefined,
      talking: members.filter((m) => (this.playout.streamOf(m)?.lastRms ?? 0) > TALKING_RMS).map((m) => m.alias || m.fingerprint.slice(0, 9)),
      members: members.length + 1,
      link: this.supervisor.link,
    };
  }

  private mosEstimate(lossPct: number, delayMs: number): number {
    const settings = this.sender?.current ?? this.settingsFor(this.tier);
    const impairment = impairmentFor(settings.codec.name, settings.bitrate ?? settings.codec.nominalBitrate) ?? { ie: 0, bpl: 10 };
    const m = eModelMos({ delayMs: delayMs + settings.frameMs, lossPct, codec: impairment });
    return Math.round(m * 100) / 100;
  }

  private onTierChange(c: TierChange): void {
    const { from, to } = c;
    this.tier = to;
    this.tierChanges.push({ atMs: Math.round(performance.now() - this.started), from, to, reason: c.reason });
    this.emit({ type: 'call:tier-changed', from, to, reason: c.reason });
    if (this.sender) {
      for (const p of this.sender.reconfigure(this.settingsFor(to))) this.sendPacket(p);
    }
  }

  private settingsFor(tierName: TierName): StreamSettings {
    return tierStreamSettings(tierName, { codecs: this.opts.codecs, fec: this.opts.fec });
  }

  private onDatagram(d: Uint8Array): void {
    const tagged = untagRoomDatagram(d);
    if (!tagged) return;
    // Not admitted (yet, or ever): no key for it yet (a refused member's datagram is counted).
    const m = this.membership.mediaFrom(tagged.sourceId);
    if (m) this.playout.receive(m, tagged.datagram, performance.now());
    // Its announcement may still be on its way: kept for a moment (a refused slot's expire).
    else this.early.hold(tagged.sourceId, tagged.datagram.slice(), performance.now());
  }

  private report(setupMs: number, endedBy: CallReport['endedBy']): CallReport {
    const stats = this.sender?.stats;
    const departed = this.membership.departed();
    const refused = this.membership.refused();
    const rtt = this.supervisor.rttSummary();
    const allow = this.membership.allow;
    return {
      room: this.opts.room,
      roomId: this.membership.roomId,
      alias: this.opts.alias,
      fingerprint: this.opts.identity.fingerprint,
      sourceId: this.membership.sourceId,
      durationMs: Math.round(performance.now() - this.started),
      setupMs: Math.round(setupMs),
      firstAudioMs: this.firstAudioMs === undefined ? undefined : Math.round(this.firstAudioMs),
      firstAudioSinceStartMs: this.firstAudioAt === undefined ? undefined : Math.round(this.firstAudioAt),
      tier: this.tier,
      tierChanges: this.tierChanges,
      sent: { frames: stats?.frames ?? 0, packets: (stats?.sourcePackets ?? 0) + (stats?.repairPackets ?? 0), bytes: stats?.bytes ?? 0 },
      participants: [...departed.listed, ...this.membership.members.values()].map((m) => this.participantReport(m)),
      participantsNotListed: departed.notListed,
      refused: refused.listed,
      refusedNotListed: refused.notListed,
      admission: { roomSecret: this.opts.roomSecret !== undefined, ...(allow === undefined ? {} : { allow: [...allow] }) },
      keyRotations: this.membership.keyRotations,
      reconnects: [...this.supervisor.reconnects],
      ...(rtt ? { relayRttMs: rtt } : {}),
      endedBy,
      mediaPath: this.mediaPath,
    };
  }

  private participantReport(m: Member): ParticipantReport {
    const stream = this.playout.streamOf(m);
    if (!stream) throw new InternalError(`member ${m.sourceId} has no stream`);
    const r = stream.receiver;
    const s = r.stats;
    const jb = r.jitterStats();
    const played = s.framesPlayed + s.concealedFrames;
    const concealPct = played ? (s.concealedFrames / played) * 100 : 0;
    return {
      alias: m.alias,
      fingerprint: m.fingerprint,
      sourceId: m.sourceId,
      verified: m.trust !== 'new',
      trust: m.trust,
      left: m.left,
      packetsReceived: s.packets,
      lossPct: Math.round(stream.lossPct * 10) / 10,
      framesReceived: s.framesReceived,
      framesRecovered: s.framesRecovered,
      framesPlayed: s.framesPlayed,
      concealedFrames: s.concealedFrames,
      decryptRejected: s.rejected,
      malformed: s.malformed,
      jitterBuffer: jb,
      lastTier: r.lastTier === undefined ? undefined : nameOf(r.lastTier),
      rttMs: roundMs(this.memberRtts.get(m)),
      mos: played ? this.mosEstimate(concealPct, jb.currentDelayMs) : undefined,
    };
  }
}

/** Whether a media datagram's header can start a receiver's mini-header context: a full header, not a repair packet's. */
function startsContext(datagram: Uint8Array): boolean {
  if (datagram.length === 0 || isMiniHeader(datagram[0])) return false;
  try {
    return !decodeMediaHeader(datagram).header.fec.repair;
  } catch {
    return false; // malformed: the receiver would count it so anyway
  }
}

/** `gate`, or an AbortError as soon as `signal` aborts. */
async function untilAborted(gate: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) {
    await gate;
    return;
  }
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new AbortError('the call was cancelled before it started'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([gate, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/** "relay HOST:PORT", or "the relay" for a link without a label. */
function relayName(session: RoomCallSession): string {
  return session.label === undefined ? 'the relay' : `relay ${session.label}`;
}

/** Milliseconds to 0.1 ms. */
function roundMs(ms: number | undefined): number | undefined {
  return ms === undefined || !Number.isFinite(ms) ? undefined : Math.round(ms * 10) / 10;
}

function nameOf(tier: number): TierName {
  return TIERS[tier]?.name ?? 'GOOD';
}

export { PIPELINE_SAMPLE_RATE };

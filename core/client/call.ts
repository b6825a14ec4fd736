/**
 * A call: membership of an SFU room on a relay, with end-to-end encrypted media.
 *
 * - Joining: the relay sees only an id derived from the room name (and secret); the name also
 *   gives the admission key (core/crypto/room-name.ts). Each member has a signed announcement
 *   of its session key and alias, with a proof made with the admission key: members admit
 *   only those who prove they know the name (and, with `allow`, only the identities listed),
 *   so the relay, which knows only the id, cannot join with an identity of its own. Each
 *   admitted member is shown with its trust (`allowed`, `known` from an earlier call, or
 *   `new`). On membership changes every sender rotates to a new sender key, wrapped for each
 *   current member (core/crypto/sender-keys.ts), at most once per ROTATION_INTERVAL_MS: a
 *   member that joins and leaves in a loop costs one rotation per interval, not one each.
 *   The announcement goes inside the join request: the relay hands it to the members with
 *   the join notice and returns theirs in the join answer, so the members' wrapped keys are
 *   the only round trip before the first audio. (It is also broadcast as a room signal, for
 *   relays that predate this.) Datagrams sealed with a key still on its way are held until
 *   it arrives. Everything kept about other members is bounded (departed, refused, pending
 *   keys, retired session keys), so join/leave churn cannot grow it.
 * - Sending: a 10 ms clock takes audio from the source; the MediaSender encodes it in frames
 *   of the current quality tier (20 ms for GOOD: a frame goes out every other tick) with its
 *   codec and FEC, and seals each payload with the sender key, the header bytes as
 *   associated data.
 * - Receiving: datagrams arrive tagged with the sender's source id; each remote member has a
 *   MediaReceiver (decryption, FEC, jitter buffer, decoding); every 10 ms their output is
 *   mixed into the sink (speaker, recording). The short period is for latency: see
 *   CALL_OUTPUT_PERIOD_MS in core/media/pipeline.ts.
 * - Quality: every second each member reports what it receives (loss, jitter, its relay RTT)
 *   in its media headers; every sender's QualityController moves its tier with hysteresis.
 * - Round trip: the relay leg is timed every RTT_PING_INTERVAL_MS on the path media takes
 *   (RelaySession.mediaRtt: a probe the relay answers at once on the UDP media path, QUIC's
 *   smoothed RTT while media is in QUIC datagrams), as the median of the last RTT_WINDOW.
 *   QUIC's RTT alone went stale once media took the UDP path, and a ping on a signalling
 *   stream measures the stream machinery (~15 ms on loopback during a call). A member's round
 *   trip is our leg plus the leg it reports in its media headers.
 * - Losing the relay: with `reconnect`, a link that closes, or a relay that answers nothing
 *   (no datagram, no push, and then no pong) for STALL_MS + PROBE_TIMEOUT_MS, is re-opened
 *   with back-off for up to `reconnectForMs`, and the call re-joins as a new room session
 *   (a new session key: the others rotate, as for any join). The clock keeps running
 *   meanwhile: the source is consumed and the sinks get silence, so recordings keep time.
 */
import { delay } from '../time.js';
import { AbortError, DecodeError, FingerprintMismatchError, ProtocolError, errorMessage } from '../errors.js';
import type { FrameSink, FrameSource } from '../audio/sources.js';
import { mix, saturate } from '../audio/sources.js';
import type { Identity } from '../crypto/identity.js';
import { deriveRoomKeys } from '../crypto/room-name.js';
import { DecryptError } from '../crypto/media-crypto.js';
import type { Meeting } from '../crypto/known-members.js';
import { KeyExchangeError, MAX_ALIAS_CODE_POINTS, parseMemberAnnouncement, RoomKeyring, type WrappedKeyMessage } from '../crypto/sender-keys.js';
import { rms, summarize } from '../media/analysis.js';
import { frameSamplesFor, PIPELINE_SAMPLE_RATE, type CodecFactory } from '../media/codec-types.js';
import { impairmentFor, mos as eModelMos } from '../media/emodel.js';
import type { FecSchemeFactory } from '../media/fec-types.js';
import type { JitterBufferStats } from '../media/jitter-buffer.js';
import { CALL_JITTER_OPTIONS, CALL_OUTPUT_PERIOD_MS, MediaReceiver, MediaSender, type StreamSettings } from '../media/pipeline.js';
import { QualityController, TIERS, type TierChange, type TierName } from '../media/quality.js';
import { tierStreamSettings } from '../media/stream-settings.js';
import { MAX_ROOM_PARTICIPANTS, untagRoomDatagram } from '../relay/rooms.js';
import type { Registry } from '../registry.js';
import type { KnownSignal } from '../transport/signal-stream.js';
import { quantizeQualityReport, type QualityReport } from '../wire/media-header.js';
import type { RoomParticipant } from '../wire/signal.js';
import type { RelaySession } from './relay-session.js';

/** The mixing and send clock. */
export const TICK_MS = CALL_OUTPUT_PERIOD_MS;
const TICK_SAMPLES = frameSamplesFor(TICK_MS);
/** How often receivers report what they see, and the status line refreshes. */
const REPORT_INTERVAL_MS = 1000;
/** Output RMS above which a member counts as talking (about -40 dBFS). */
const TALKING_RMS = 330;
/** Nothing heard from the relay for this long: ask it for a pong. */
export const STALL_MS = 2500;
/** A pong that takes longer than this means the relay is lost. */
export const PROBE_TIMEOUT_MS = 2000;
/** How often the relay leg's round trip is timed (RelaySession.mediaRtt). */
export const RTT_PING_INTERVAL_MS = 1000;
/** The relay leg's round trip is the median of this many latest samples. */
const RTT_WINDOW = 5;
/** Round trips kept for the report's percentiles (a day of samples); more are only counted in max. */
const MAX_RTT_SAMPLES = 86_400;
/** Default for how long to keep trying to get back to a lost relay. */
export const DEFAULT_RECONNECT_FOR_MS = 30_000;
/** One connection attempt's limit, and the back-off between failed attempts. */
const RECONNECT_ATTEMPT_MS = 4000;
const RECONNECT_BACKOFF_MS = [250, 500, 1000, 2000];
/**
 * Our sender key rotates at most once per this interval. The first membership change after a
 * quiet interval rotates at once (a newcomer's first audio waits for nothing more); changes
 * within the interval are taken together at its end. So this is also the bound on how long a
 * member that left can still read what we send (docs/e2e-encryption.md), and a member joining
 * and leaving 50 times a second costs 4 rotations a second instead of 100.
 */
export const ROTATION_INTERVAL_MS = 250;
/** Members who left kept in the report; the rest are counted (participantsNotListed). */
export const MAX_DEPARTED_REPORTED = 64;
/** Refused members listed in the report; the rest are counted (refusedNotListed). */
export const MAX_REFUSED_REPORTED = 64;
/** Pairs of look-alike aliases warned about (one warning each). */
const MAX_ALIAS_WARNINGS = 64;
/** Relay slots remembered as refused (to count the media they send, which is dropped). */
const MAX_REFUSED_SLOTS = 256;

export interface CallOptions {
  session: RelaySession;
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
  /**
   * Open a new session to the same relay (same certificate) after the link was lost. Without
   * it, losing the relay ends the call (`relay-lost`).
   */
  reconnect?(signal: AbortSignal): Promise<RelaySession>;
  /** How long to keep trying to get back to the relay (default DEFAULT_RECONNECT_FOR_MS). */
  reconnectForMs?: number;
}

/**
 * How far we trust an admitted member's identity: `allowed` (on the allow list), `known` (met
 * in an earlier call: pinned, trust on first use; our own identity too), `new` (first meeting,
 * pinned now). Every admitted member proved it knows the room's name.
 */
export type MemberTrust = 'allowed' | 'known' | 'new';

/** The store of members met before (core/crypto/known-members.ts KnownMembers). */
export interface MemberDirectory {
  meet(fingerprint: string, alias: string): Meeting;
}

/** Why an announcement was refused: a KeyExchangeError reason, or one of the call's own checks. */
export type RefusalReason =
  | 'unproven'
  | 'not-allowed'
  | 'bad-signature'
  | 'fingerprint-mismatch'
  | 'stale-announcement'
  | 'bad-key'
  /** Not a well-formed announcement. */
  | 'malformed'
  /** The announcement's fingerprint is not the one the member joined with (relay roster). */
  | 'roster-mismatch'
  /** The session of another member, announced under a second relay slot (a replay). */
  | 'duplicate-session';

/** A member (as it claimed to be) that was refused admission: it got no key, its media is dropped. */
export interface RefusedMember {
  /** As announced (authenticated for 'unproven', 'not-allowed', 'stale-announcement' and 'bad-key'). */
  fingerprint: string;
  /** The alias it claimed (its announcement's, else the relay's roster). */
  alias: string;
  reason: RefusalReason;
  /** Its relay slot when first refused. */
  sourceId: number;
  /** Announcements refused for it (repeats are not warned about again). */
  times: number;
  /** Media datagrams from its slots dropped. */
  packetsDropped: number;
}

export type CallEvent =
  | { type: 'call:joined'; room: string; sourceId: number; participants: number }
  | { type: 'call:member-joined'; alias: string; fingerprint: string; trust: MemberTrust; firstSeen?: string }
  | { type: 'call:member-left'; alias: string; fingerprint: string }
  /** A member came back after losing the relay: its new session replaced its old one. */
  | { type: 'call:member-reconnected'; alias: string; fingerprint: string; trust: MemberTrust }
  /** An announcement refused admission (said once per member and reason). */
  | { type: 'call:member-refused'; refused: RefusedMember; message: string }
  | { type: 'call:tier-changed'; from: TierName; to: TierName; reason: string }
  | { type: 'call:first-audio'; atMs: number }
  | { type: 'call:status'; status: CallStatus }
  | { type: 'call:warning'; message: string }
  | { type: 'call:relay-lost'; reason: string; reconnecting: boolean }
  | { type: 'call:reconnected'; outageMs: number; attempts: number; participants: number };

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
  /** Each time the relay was lost and got back: when (ms into the call), for how long, after how many attempts. */
  reconnects: { atMs: number; outageMs: number; attempts: number }[];
  /** Round trips to the relay on the media's path, one a second (RTT_PING_INTERVAL_MS): absent if none was measured. */
  relayRttMs?: { p50: number; p95: number; max: number; mean: number; samples: number };
  endedBy: 'duration' | 'source-ended' | 'hangup' | 'relay-lost';
  /**
   * The path our media went to the relay on at the end: the UDP media path, or QUIC
   * datagrams (core/transport/udp-media.ts).
   */
  mediaPath: 'udp' | 'quic';
}

interface Remote {
  sourceId: number;
  alias: string;
  fingerprint: string;
  /** Its room session in our keyring (X25519 public key, base64): one identity may have several. */
  session: string;
  trust: MemberTrust;
  receiver: MediaReceiver;
  lastRms: number;
  lossPct: number;
  /** Round trip to it through the relay at the last report tick (our leg plus its reported leg), ms. */
  rttMs: number | undefined;
  left: boolean;
  everPlayed: boolean;
}

export async function runCall(opts: CallOptions): Promise<CallReport> {
  const call = new Call(opts);
  return call.run();
}

/** A refusal the call itself decides (the keyring's are KeyExchangeErrors). */
class AdmissionRefused extends ProtocolError {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'AdmissionRefused';
  }
}

class Call {
  private readonly roomId: string;
  /** Secret: proofs of knowing the room's name are made and checked with it. */
  private readonly admissionKey: Uint8Array;
  private readonly allow: string[] | undefined;
  /** A new one for each room session (each re-join after a lost relay). */
  private keyring: RoomKeyring;
  /** The relay session in use: opts.session, then each one reconnect() opened. */
  private session: RelaySession;
  private link: 'up' | 'reconnecting' = 'up';
  /** Last datagram or push from the relay (performance.now()). */
  private lastHeardAt = 0;
  private mediaPath: CallReport['mediaPath'] = 'quic';
  private probing = false;
  /** A measurement of the relay leg is out. */
  private rttPinging = false;
  private lastRttPingAt = -Infinity;
  /** The latest RTT_WINDOW round trips (ms), newest last; cleared when the link is lost. */
  private readonly recentRtts: number[] = [];
  /** Every round trip measured (up to MAX_RTT_SAMPLES), for the report. */
  private readonly rttSamples: number[] = [];
  private maxRtt = 0;
  /** The call's clock has stopped: a reconnection in progress gives up. */
  private readonly ending = new AbortController();
  private lostAt = 0;
  /** Reconnection failed for good: the clock ends the call as relay-lost. */
  private gaveUp = false;
  private readonly reconnects: CallReport['reconnects'] = [];
  /** Our own earlier room sessions: until the relay notices they are gone, ignored. */
  private readonly ownPastSessions = new Set<string>();
  private readonly remotes = new Map<number, Remote>();
  /** Members who left during the call, kept for the report (MAX_DEPARTED_REPORTED: see retireRemote). */
  private readonly departed: Remote[] = [];
  private departedNotListed = 0;
  /** Refused members by `reason fingerprint` (the first MAX_REFUSED_REPORTED). */
  private readonly refused = new Map<string, RefusedMember>();
  private refusedNotListed = 0;
  /** Relay slots of refused members (the newest MAX_REFUSED_SLOTS): their media is dropped and counted. */
  private readonly refusedSlots = new Map<number, RefusedMember>();
  /** Look-alike alias pairs already warned about. */
  private readonly aliasWarnings = new Set<string>();
  private keyRotations = 0;
  private lastRotationAt = -Infinity;
  private rotationTimer: ReturnType<typeof setTimeout> | undefined;
  /** Key messages from members whose announcement has not arrived yet. */
  private readonly pendingKeys: WrappedKeyMessage[] = [];
  private readonly controller: QualityController;
  private readonly tierChanges: CallReport['tierChanges'] = [];
  private tier: TierName;
  private sender: MediaSender | undefined;
  private sourceId = 0;
  private started = 0;
  private firstAudioMs: number | undefined;
  /** performance.now() counts from process start (Node's timeOrigin). */
  private firstAudioAt: number | undefined;
  private sendBuffer = new Int16Array(0);
  private readonly roster = new Map<number, RoomParticipant>();
  /** Room updates pushed before our join answer came (see onPush). */
  private readonly earlyRosters: Extract<KnownSignal, { type: 'room-update' }>[] = [];

  constructor(private readonly opts: CallOptions) {
    ({ roomId: this.roomId, admissionKey: this.admissionKey } = deriveRoomKeys(opts.room, opts.roomSecret));
    this.allow = opts.allow === undefined ? undefined : [...new Set(opts.allow)];
    this.keyring = this.newKeyring();
    this.session = opts.session;
    this.tier = opts.tier ?? 'GOOD';
    this.controller = new QualityController({ initialTier: this.tier });
    this.controller.onTierChange((c) => this.onTierChange(c));
  }

  private emit(e: CallEvent): void {
    this.opts.onEvent?.(e);
  }

  /** A keyring for a new room session (the first, or after getting back to a lost relay). */
  private newKeyring(replaces?: string): RoomKeyring {
    return new RoomKeyring(this.opts.identity, this.roomId, {
      admissionKey: this.admissionKey,
      alias: this.opts.alias,
      ...(replaces === undefined ? {} : { replaces }),
      ...(this.allow === undefined ? {} : { allow: this.allow }),
    });
  }

  async run(): Promise<CallReport> {
    const t0 = performance.now();
    // The encoder is made before joining (~4 ms with Opus): after the join answer this process
    // should be free to take the members' keys and first packets as they come.
    if (!this.opts.receiveOnly) {
      this.sender = new MediaSender(this.settingsFor(this.tier), {
        seal: (h, p) => this.keyring.encryptor().seal(h, p),
        vad: this.opts.vad,
        noiseSuppressor: this.opts.noiseSuppressor,
      });
    }
    let participants: number;
    try {
      participants = await this.join(this.session, () => {
        this.started = performance.now();
      });
    } catch (err) {
      // The call never started: what it was given to run is released as at a hang-up.
      this.sender?.close();
      this.opts.noiseSuppressor?.close();
      await this.opts.sink?.close();
      await this.opts.source.close?.();
      throw err;
    }
    const setupMs = this.started - t0;
    this.emit({ type: 'call:joined', room: this.opts.room, sourceId: this.sourceId, participants });

    let endedBy: CallReport['endedBy'] = 'hangup';
    try {
      endedBy = await this.clock();
    } finally {
      this.ending.abort();
      clearTimeout(this.rotationTimer);
      this.mediaPath = this.session.mediaPathStats().path;
      // Hang up at once so the others see the leave immediately, whatever happened.
      const session = this.session;
      if (this.link === 'up') await session.leave({ timeoutMs: 1000 }).catch(() => undefined);
      session.datagrams.onDatagram(() => undefined);
      if (session !== this.opts.session) await session.close().catch(() => undefined);
      this.sender?.close();
      this.opts.noiseSuppressor?.close();
      for (const r of this.remotes.values()) r.receiver.close();
      await this.opts.sink?.close();
      await this.opts.source.close?.();
    }
    return this.report(setupMs, endedBy);
  }

  /**
   * Join the room on `session` as a new room session (the current keyring): admit the members
   * whose announcements came with the answer, send them our key, and announce ourselves.
   * `onAnswer` runs as soon as the answer is in. Returns how many were in the room.
   */
  private async join(session: RelaySession, onAnswer?: () => void): Promise<number> {
    // Pushes and datagrams from a session we have moved away from are not ours to handle.
    session.onPush((msg) => {
      if (session !== this.session) return;
      this.lastHeardAt = performance.now();
      this.onPush(msg);
    });
    session.datagrams.onDatagram((d) => {
      if (session !== this.session) return;
      this.lastHeardAt = performance.now();
      this.onDatagram(d);
    });
    const joined = await session.joinRoom(this.roomId, {
      alias: this.opts.alias,
      fingerprint: this.opts.identity.fingerprint,
      announcement: { ...this.keyring.localAnnouncement() },
      signal: AbortSignal.any([this.ending.signal, ...(this.opts.signal ? [this.opts.signal] : [])]),
    });
    onAnswer?.();
    this.lastHeardAt = performance.now();
    this.sourceId = joined.sourceId;
    for (const p of joined.participants) this.roster.set(p.sourceId, p);
    // The members' announcements came with the answer (from a relay that keeps them): admit
    // them all, then one sender key wrapped for everyone.
    for (const e of joined.announcements ?? []) this.tryAdmit(e.sourceId, e.announcement);
    for (const m of this.earlyRosters.splice(0)) this.onRoster(m.participants, m.joined, m.left, m.announcement);
    // Our first key for this session goes out now, whatever the rotation pace.
    void this.distributeKeys();
    // Our announcement as a room signal too: members whose client or relay predates
    // announcements in joins learn of us only this way (the others see a no-op repeat).
    void this.broadcast({ kind: 'announce', announcement: this.keyring.localAnnouncement() });
    void session.closed.then(() => {
      if (session === this.session) this.linkLost('the connection to the relay closed');
    });
    return joined.participants.length;
  }

  /** The relay is gone: end the call, or start getting back to it. */
  private linkLost(reason: string): void {
    if (this.link !== 'up' || this.ending.signal.aborted) return;
    const reconnecting = this.opts.reconnect !== undefined;
    this.emit({ type: 'call:relay-lost', reason, reconnecting });
    if (!reconnecting) {
      this.gaveUp = true;
      return;
    }
    this.link = 'reconnecting';
    this.lostAt = performance.now();
    // The next session's leg is timed afresh.
    this.recentRtts.length = 0;
    // The next session's keyring rotates when it joins.
    clearTimeout(this.rotationTimer);
    this.rotationTimer = undefined;
    void this.session.close().catch(() => undefined);
    // Everyone we had is gone with the link; whoever is still there is met again on re-joining.
    this.ownPastSessions.add(this.keyring.session);
    for (const r of [...this.remotes.values()]) this.retireRemote(r);
    this.roster.clear();
    this.earlyRosters.length = 0;
    this.pendingKeys.length = 0;
    this.sourceId = 0;
    // Signed into our new announcement: the others drop the old session at once, instead of
    // keeping it until the relay notices the dead connection.
    this.keyring = this.newKeyring(this.keyring.session);
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    const reconnect = this.opts.reconnect!;
    const deadline = this.lostAt + (this.opts.reconnectForMs ?? DEFAULT_RECONNECT_FOR_MS);
    const stop = AbortSignal.any([this.ending.signal, ...(this.opts.signal ? [this.opts.signal] : [])]);
    for (let attempt = 1; !stop.aborted; attempt++) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      let session: RelaySession | undefined;
      try {
        session = await reconnect(AbortSignal.any([stop, AbortSignal.timeout(Math.max(1, Math.floor(Math.min(left, RECONNECT_ATTEMPT_MS))))]));
        if (stop.aborted) {
          await session.close();
          return;
        }
        this.session = session;
        const participants = await this.join(session);
        const outageMs = Math.round(performance.now() - this.lostAt);
        this.reconnects.push({ atMs: Math.round(this.lostAt - this.started), outageMs, attempts: attempt });
        this.link = 'up';
        // The others meet a new member: our header context starts afresh for them.
        this.sender?.resync();
        this.emit({ type: 'call:reconnected', outageMs, attempts: attempt, participants });
        return;
      } catch (err) {
        // A session that connected but could not join is closed; it stays current (and
        // ignored: the link is down) until the next attempt replaces it.
        if (session !== undefined) await session.close().catch(() => undefined);
        if (stop.aborted) return;
        const wait = RECONNECT_BACKOFF_MS[Math.min(attempt - 1, RECONNECT_BACKOFF_MS.length - 1)];
        const why = err instanceof AbortError ? `no answer within ${Math.round(Math.min(RECONNECT_ATTEMPT_MS, left) / 100) / 10} s` : errorMessage(err);
        this.emit({ type: 'call:warning', message: `reconnect attempt ${attempt} failed: ${why}` });
        // Another certificate at the relay's address is not a network fault: trying again
        // cannot make it the relay we were talking to.
        if (err instanceof FingerprintMismatchError) break;
        await delay(Math.min(wait, Math.max(0, deadline - performance.now())), stop).catch(() => undefined);
      }
    }
    if (!stop.aborted) this.gaveUp = true;
  }

  /** Nothing from the relay for a while: a ping tells a quiet room from a dead relay. */
  private watchLink(now: number): void {
    if (this.link !== 'up' || this.probing || this.opts.reconnect === undefined || now - this.lastHeardAt < STALL_MS) return;
    this.probing = true;
    const session = this.session;
    session
      .ping({ timeoutMs: PROBE_TIMEOUT_MS })
      .then(
        () => {
          if (session === this.session) this.lastHeardAt = performance.now();
        },
        () => {
          if (session === this.session) this.linkLost(`the relay answered nothing for ${((STALL_MS + PROBE_TIMEOUT_MS) / 1000).toFixed(1)} s`);
        },
      )
      .finally(() => {
        this.probing = false;
      });
  }

  /**
   * Time the relay leg every RTT_PING_INTERVAL_MS (RelaySession.mediaRtt). A probe that gets no
   * answer is no sample; whether the relay is lost is watchLink's to judge.
   */
  private timeRelayLeg(now: number): void {
    if (this.link !== 'up' || this.rttPinging || now - this.lastRttPingAt < RTT_PING_INTERVAL_MS) return;
    this.rttPinging = true;
    this.lastRttPingAt = now;
    const session = this.session;
    session
      .mediaRtt(PROBE_TIMEOUT_MS)
      .then(
        (ms) => {
          if (ms === undefined || session !== this.session || this.link !== 'up') return;
          this.recentRtts.push(ms);
          if (this.recentRtts.length > RTT_WINDOW) this.recentRtts.shift();
          if (this.rttSamples.length < MAX_RTT_SAMPLES) this.rttSamples.push(ms);
          this.maxRtt = Math.max(this.maxRtt, ms);
        },
        () => undefined,
      )
      .finally(() => {
        this.rttPinging = false;
      });
  }

  /** Our leg's round trip now: the median of the latest samples, ms. */
  private relayRtt(): number | undefined {
    if (this.link !== 'up' || this.recentRtts.length === 0) return undefined;
    const sorted = [...this.recentRtts].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  /** Round trip to a member through the relay: our leg plus the leg it reported. */
  private memberRtt(r: Remote, leg: number | undefined): number | undefined {
    const report = r.receiver.lastReport;
    return leg === undefined || report === undefined ? undefined : leg + report.rttMs;
  }

  /** The 10 ms clock: send, mix, report. Drift-corrected; ends on abort, duration or source end. */
  private async clock(): Promise<CallReport['endedBy']> {
    const start = performance.now();
    let tick = 0;
    let lastReport = start;
    for (;;) {
      if (this.opts.signal?.aborted) return 'hangup';
      if (this.gaveUp) return 'relay-lost';
      const now = performance.now();
      this.watchLink(now);
      this.timeRelayLeg(now);
      if (this.opts.durationMs !== undefined && now - start >= this.opts.durationMs) return 'duration';
      if (this.opts.endWithSource && this.opts.source.ended && this.sendBuffer.length === 0) return 'source-ended';
      this.sendTick();
      this.mixTick(now);
      if (now - lastReport >= REPORT_INTERVAL_MS) {
        lastReport = now;
        this.reportTick(now);
      }
      tick++;
      const wait = start + tick * TICK_MS - performance.now();
      await delay(Math.max(0, wait), this.opts.signal).catch(() => undefined);
    }
  }

  private sendTick(): void {
    if (!this.sender) return;
    const frame = this.opts.source.read(TICK_SAMPLES);
    if (this.link !== 'up') {
      // No relay to send to: the source keeps its real-time pace, what it said is lost.
      this.sendBuffer = new Int16Array(0);
      return;
    }
    const buffered = new Int16Array(this.sendBuffer.length + frame.length);
    buffered.set(this.sendBuffer);
    buffered.set(frame, this.sendBuffer.length);
    const frameSamples = frameSamplesFor(this.sender.current.frameMs);
    let offset = 0;
    while (buffered.length - offset >= frameSamples) {
      for (const packet of this.sender.sendFrame(buffered.subarray(offset, offset + frameSamples))) {
        this.session.datagrams.send(packet);
      }
      offset += frameSamples;
    }
    this.sendBuffer = buffered.slice(offset);
  }

  private mixTick(now: number): void {
    const mixed = new Int32Array(TICK_SAMPLES);
    for (const r of this.remotes.values()) {
      const { pcm: out, frameStartOffset } = r.receiver.read(now, TICK_SAMPLES);
      if (frameStartOffset !== undefined && !r.everPlayed) {
        r.everPlayed = true;
        if (this.firstAudioMs === undefined) {
          // The frame starts playing after the audio queued ahead of it in this period.
          const at = now + (frameStartOffset * 1000) / PIPELINE_SAMPLE_RATE;
          this.firstAudioMs = at - this.started;
          this.firstAudioAt = at;
          this.emit({ type: 'call:first-audio', atMs: this.firstAudioMs });
        }
      }
      r.lastRms = rms(out);
      mix(mixed, out);
    }
    this.opts.sink?.write(saturate(mixed));
  }

  private reportTick(now: number): void {
    const legRtt = this.relayRtt();
    let worstLoss = 0;
    let worstJitter = 0;
    for (const r of this.remotes.values()) {
      const loss = r.receiver.takeLossWindow();
      if (loss !== undefined) r.lossPct = loss * 100;
      worstLoss = Math.max(worstLoss, r.lossPct);
      worstJitter = Math.max(worstJitter, r.receiver.arrivalJitterMs);
    }
    // Tell the senders what we receive: attached to our next media packet.
    this.sender?.attachReport(quantizeQualityReport({ lossRatio: worstLoss / 100, rttMs: legRtt ?? 0, jitterMs: worstJitter }));
    // And adapt what we send to what they report.
    const reports = [...this.remotes.values()].map((r) => r.receiver.lastReport).filter((x): x is QualityReport => !!x);
    if (this.opts.adaptive !== false && this.sender && reports.length > 0) {
      const lossPct = Math.max(...reports.map((r) => (r.fractionLost / 256) * 100));
      const rttMs = Math.max(...reports.map((r) => r.rttMs)) + (legRtt ?? 0);
      const jitterMs = Math.max(...reports.map((r) => r.jitterMs));
      this.controller.report({ lossPct, rttMs, jitterMs, nowMs: now });
    }
    this.emit({ type: 'call:status', status: this.status(legRtt, worstLoss) });
  }

  private status(legRtt: number | undefined, lossPct: number): CallStatus {
    const remotes = [...this.remotes.values()];
    const jb = remotes.map((r) => r.receiver.jitterStats().currentDelayMs);
    const jitterBufferMs = jb.length ? Math.max(...jb) : 0;
    for (const r of remotes) r.rttMs = this.memberRtt(r, legRtt) ?? r.rttMs;
    const rtts = remotes.map((r) => r.rttMs).filter((x): x is number => x !== undefined);
    const rttMs = rtts.length ? Math.max(...rtts) : undefined;
    // One way is half the round trip; before a member reports its leg, ours stands for both.
    const oneWayMs = rttMs === undefined ? (legRtt ?? 0) : rttMs / 2;
    return {
      tier: this.tier,
      rttMs: roundMs(rttMs),
      relayRttMs: roundMs(legRtt),
      lossPct: Math.round(lossPct * 10) / 10,
      jitterBufferMs: Math.round(jitterBufferMs),
      mos: remotes.length ? this.mosEstimate(lossPct, oneWayMs + jitterBufferMs) : undefined,
      talking: remotes.filter((r) => r.lastRms > TALKING_RMS).map((r) => r.alias || r.fingerprint.slice(0, 9)),
      members: remotes.length + 1,
      link: this.link,
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
      for (const p of this.sender.reconfigure(this.settingsFor(to))) if (this.link === 'up') this.session.datagrams.send(p);
    }
  }

  private settingsFor(tierName: TierName): StreamSettings {
    return tierStreamSettings(tierName, { codecs: this.opts.codecs, fec: this.opts.fec });
  }

  // ---- signalling -------------------------------------------------------------------------

  private onPush(msg: KnownSignal): void {
    if (msg.type === 'room-update' && msg.room === this.roomId) {
      // Before our join answer (pushes and answers travel on different streams) we cannot
      // tell our own join notice from someone else's: keep the update until then.
      if (this.sourceId === 0) this.earlyRosters.push(msg);
      else this.onRoster(msg.participants, msg.joined, msg.left, msg.announcement);
    } else if (msg.type === 'relayed' && msg.room === this.roomId) {
      this.onRelayed(msg.from, msg.payload);
    }
  }

  private onRoster(participants: RoomParticipant[], joined?: number, left?: number, announcement?: unknown): void {
    for (const p of participants) this.roster.set(p.sourceId, p);
    if (joined !== undefined && joined !== this.sourceId) {
      // The newcomer's announcement came with the notice: admit it and send our key soon.
      if (announcement !== undefined) {
        if (this.tryAdmit(joined, announcement)) this.scheduleRotation();
      } else {
        // Introduce ourselves to the newcomer. A relay that hands announcements on with the
        // notice has given it ours in its join answer already; older relays need this.
        void this.send({ kind: 'announce', announcement: this.keyring.localAnnouncement() }, joined);
      }
    }
    if (left !== undefined) {
      const r = this.remotes.get(left);
      this.roster.delete(left);
      if (r) {
        this.retireRemote(r);
        this.keyring.removeMember(r.session);
        this.emit({ type: 'call:member-left', alias: r.alias, fingerprint: r.fingerprint });
        // Whoever left must not read what we send from the next rotation on (at most
        // ROTATION_INTERVAL_MS from now).
        this.scheduleRotation();
      }
    }
  }

  /**
   * A member's stream is over (it left, or came back as a new session): kept for the report.
   * At most MAX_DEPARTED_REPORTED are listed; beyond that, sessions we heard nothing from
   * (a member joining and leaving in a loop) give way to those we heard, and are counted.
   */
  private retireRemote(r: Remote): void {
    r.left = true;
    this.remotes.delete(r.sourceId);
    r.receiver.close();
    if (this.departed.length < MAX_DEPARTED_REPORTED) {
      this.departed.push(r);
      return;
    }
    this.departedNotListed++;
    if (r.receiver.stats.packets === 0) return;
    const silent = this.departed.findIndex((d) => d.receiver.stats.packets === 0);
    if (silent >= 0) {
      this.departed.splice(silent, 1);
      this.departed.push(r);
    }
  }

  private onRelayed(from: number, payload: Record<string, unknown>): void {
    try {
      if (payload.kind === 'announce') this.onAnnounce(from, payload.announcement);
      else if (payload.kind === 'key') this.onKey(payload.message);
    } catch (err) {
      this.emit({ type: 'call:warning', message: `dropped a key-exchange message from member ${from}: ${errorMessage(err)}` });
    }
  }

  private onAnnounce(from: number, announcement: unknown): void {
    // Membership changed: a new sender key for everyone current, including the newcomer. (A
    // repeated announcement, e.g. the broadcast after the relay delivered it, changes nothing.)
    if (this.tryAdmit(from, announcement)) this.scheduleRotation();
  }

  /** admit(), with a refused announcement recorded (and said once) instead of thrown. */
  private tryAdmit(from: number, announcement: unknown): boolean {
    try {
      return this.admit(from, announcement);
    } catch (err) {
      this.refuse(from, announcement, err);
      return false;
    }
  }

  /**
   * Record a refused announcement: listed in the report (the first MAX_REFUSED_REPORTED
   * members) and said once per member and reason, however often it is repeated. Such a member
   * gets no key from us and its media is dropped.
   */
  private refuse(from: number, announcement: unknown, err: unknown): void {
    const reason = refusalReason(err);
    if (reason === 'self') return; // the relay's notice of our own join
    if (reason === undefined) {
      this.emit({ type: 'call:warning', message: `refused the announcement of member ${from}: ${errorMessage(err)}` });
      return;
    }
    const claimed = claimedIdentity(announcement, this.roster.get(from));
    const key = `${reason} ${claimed.fingerprint}`;
    const listed = this.refused.get(key);
    if (listed) {
      listed.times++;
      this.rememberRefusedSlot(from, listed);
      return;
    }
    if (this.refused.size >= MAX_REFUSED_REPORTED) {
      if (this.refusedNotListed++ === 0) {
        this.emit({ type: 'call:warning', message: `more than ${MAX_REFUSED_REPORTED} members refused: the others are counted in the report, not named` });
      }
      return;
    }
    const refused: RefusedMember = { ...claimed, reason, sourceId: from, times: 1, packetsDropped: 0 };
    this.refused.set(key, refused);
    this.rememberRefusedSlot(from, refused);
    const who = `${claimed.alias ? `"${claimed.alias}" ` : ''}${claimed.fingerprint || '(no fingerprint)'} (member ${from})`;
    // The keyring's own words add nothing for these two; for the others they say what failed.
    const detail = reason === 'unproven' || reason === 'not-allowed' ? '' : ` (${errorMessage(err)})`;
    this.emit({ type: 'call:member-refused', refused, message: `refused ${who}: ${REFUSAL_TEXT[reason]}${detail}; it gets no key and its media is dropped` });
  }

  private rememberRefusedSlot(from: number, refused: RefusedMember): void {
    if (this.remotes.has(from)) return; // an admitted member whose repeat was refused keeps its slot
    this.refusedSlots.delete(from);
    this.refusedSlots.set(from, refused);
    if (this.refusedSlots.size > MAX_REFUSED_SLOTS) this.refusedSlots.delete(this.refusedSlots.keys().next().value as number);
  }

  /**
   * Admit a member from its signed and proven announcement (checked against the fingerprint
   * it joined with before the keyring takes it); true when the membership changed and our
   * sender key must rotate.
   */
  private admit(from: number, announcement: unknown): boolean {
    const claimed = this.roster.get(from);
    const { fingerprint: announced, x25519PublicKey: session } = parseMemberAnnouncement(announcement);
    if (claimed && claimed.fingerprint && claimed.fingerprint !== announced) {
      throw new AdmissionRefused('roster-mismatch', `member ${from} announced ${announced} but joined as ${claimed.fingerprint}`);
    }
    // Our own session from before a reconnection, still in the room until the relay notices.
    if (this.ownPastSessions.has(session)) return false;
    for (const r of this.remotes.values()) {
      // One session is one member: the same announcement under a second relay slot is a replay.
      if (r.sourceId !== from && r.session === session) throw new AdmissionRefused('duplicate-session', `member ${from} announced the session of member ${r.sourceId}`);
    }
    const { fingerprint, replaced, alias = '' } = this.keyring.addMember(announcement);
    this.refusedSlots.delete(from);
    const previous = replaced === undefined ? undefined : [...this.remotes.values()].find((r) => r.session === replaced);
    if (previous) this.retireRemote(previous);
    const existing = this.remotes.get(from);
    if (!existing) {
      const { trust, firstSeen } = this.meet(fingerprint, alias);
      this.remotes.set(from, this.newRemote(from, alias, fingerprint, session, trust));
      // The newcomer has no header context for our stream yet.
      this.sender?.resync();
      this.emit(
        previous
          ? { type: 'call:member-reconnected', alias, fingerprint, trust }
          : { type: 'call:member-joined', alias, fingerprint, trust, ...(firstSeen === undefined ? {} : { firstSeen }) },
      );
    } else if (existing.session !== session) {
      // The same member with a new session key replaces its old session, which may not read on.
      this.keyring.removeMember(existing.session);
      existing.session = session;
    }
    // Keys that arrived before this announcement can be taken now.
    for (const m of this.pendingKeys.splice(0)) this.takeKey(m);
    return this.keyring.needsRotation;
  }

  /**
   * How far we trust an admitted member, and the meeting recorded in the known members (with
   * a warning, once per pair, when its alias is a known member's with another fingerprint).
   */
  private meet(fingerprint: string, alias: string): { trust: MemberTrust; firstSeen?: string } {
    const allowed = this.allow !== undefined; // the keyring admitted only the allowed
    if (fingerprint === this.opts.identity.fingerprint) return { trust: allowed ? 'allowed' : 'known' }; // our own words, another device
    const meeting = this.opts.members?.meet(fingerprint, alias);
    for (const other of meeting?.sameAlias ?? []) {
      const pair = `${fingerprint} ${other.fingerprint}`;
      if (this.aliasWarnings.has(pair) || this.aliasWarnings.size >= MAX_ALIAS_WARNINGS) continue;
      this.aliasWarnings.add(pair);
      this.emit({
        type: 'call:warning',
        message: `member ${fingerprint} calls itself "${alias}", as does the member you know as ${other.fingerprint} ("${other.alias}", last seen ${other.lastSeen}): not the same identity`,
      });
    }
    const trust: MemberTrust = allowed ? 'allowed' : meeting?.known ? 'known' : 'new';
    return { trust, ...(meeting ? { firstSeen: meeting.firstSeen } : {}) };
  }

  private onKey(message: unknown): void {
    try {
      const { fromSession } = this.keyring.receiveWrappedKey(message);
      // Datagrams sealed with this key that overtook it can be opened now.
      for (const r of this.remotes.values()) if (r.session === fromSession) r.receiver.retryHeld(performance.now());
    } catch (err) {
      if ((err as { reason?: string } | null)?.reason === 'unknown-sender') {
        const from = (message as { from?: unknown } | null)?.from;
        // From someone we refused: it will never be a sender of ours.
        if (typeof from === 'string' && [...this.refusedSlots.values()].some((r) => r.fingerprint === from)) return;
        // Kept for when its sender's announcement arrives; bounded, as anyone in the room can
        // send these (one per possible member is what a genuine overtaking needs).
        if (this.pendingKeys.push(message as WrappedKeyMessage) > MAX_ROOM_PARTICIPANTS) {
          const dropped = this.pendingKeys.shift();
          this.emit({ type: 'call:warning', message: `dropped a wrapped key from ${dropped?.from}: no announcement from that sender arrived` });
        }
        return;
      }
      throw err;
    }
  }

  /** onKey() for a key kept earlier: a failure is a warning, not the admission's. */
  private takeKey(message: WrappedKeyMessage): void {
    try {
      this.onKey(message);
    } catch (err) {
      this.emit({ type: 'call:warning', message: `dropped a wrapped key from ${message.from}: ${errorMessage(err)}` });
    }
  }

  /**
   * Rotate soon: at once if we have not rotated for ROTATION_INTERVAL_MS, else at the end of
   * that interval (one rotation for every change in it).
   */
  private scheduleRotation(): void {
    if (this.rotationTimer !== undefined) return; // the rotation pending covers this change too
    const wait = this.lastRotationAt + ROTATION_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      void this.distributeKeys();
      return;
    }
    this.rotationTimer = setTimeout(() => {
      this.rotationTimer = undefined;
      if (!this.ending.signal.aborted) void this.distributeKeys();
    }, Math.ceil(wait));
  }

  /** A new sender key wrapped for every current member, if the keyring needs one. */
  private async distributeKeys(): Promise<void> {
    if (!this.keyring.needsRotation) return;
    this.lastRotationAt = performance.now();
    this.keyRotations++;
    const messages = this.keyring.rotate();
    const sends: Promise<void>[] = [];
    for (const m of messages) {
      const target = [...this.remotes.values()].find((r) => r.session === m.toSession);
      if (target) sends.push(this.send({ kind: 'key', message: m }, target.sourceId));
    }
    await Promise.all(sends);
  }

  private newRemote(sourceId: number, alias: string, fingerprint: string, session: string, trust: MemberTrust): Remote {
    const remote: Remote = {
      sourceId,
      alias,
      fingerprint,
      session,
      trust,
      receiver: new MediaReceiver({
        open: (h, sealed) => {
          const d = this.keyring.decryptorFor(remote.session);
          if (!d) throw new ProtocolError('no key for this member yet');
          return d.open(h, sealed);
        },
        // A new epoch's packets can overtake its wrapped key (datagrams vs. signalling).
        isKeyPending: (err) => err instanceof DecryptError && err.reason === 'unknown-epoch',
        codecById: (id) => this.opts.codecs.byId(id)?.factory,
        fecById: (id) => this.opts.fec.byId(id)?.factory,
        jitter: CALL_JITTER_OPTIONS,
      }),
      lastRms: 0,
      lossPct: 0,
      rttMs: undefined,
      left: false,
      everPlayed: false,
    };
    return remote;
  }

  private onDatagram(d: Uint8Array): void {
    const tagged = untagRoomDatagram(d);
    if (!tagged) return;
    const r = this.remotes.get(tagged.sourceId);
    if (!r) {
      // Not admitted (yet, or ever): we have no key for it anyway.
      const refused = this.refusedSlots.get(tagged.sourceId);
      if (refused) refused.packetsDropped++;
      return;
    }
    r.receiver.receive(tagged.datagram, performance.now());
  }

  private async broadcast(payload: Record<string, unknown>): Promise<void> {
    await this.send(payload);
  }

  private async send(payload: Record<string, unknown>, to?: number): Promise<void> {
    try {
      await this.session.roomSignal(payload, to, { timeoutMs: 2000 });
    } catch (err) {
      this.emit({ type: 'call:warning', message: `room signal not delivered: ${errorMessage(err)}` });
    }
  }

  private report(setupMs: number, endedBy: CallReport['endedBy']): CallReport {
    const stats = this.sender?.stats;
    return {
      room: this.opts.room,
      roomId: this.roomId,
      alias: this.opts.alias,
      fingerprint: this.opts.identity.fingerprint,
      sourceId: this.sourceId,
      durationMs: Math.round(performance.now() - this.started),
      setupMs: Math.round(setupMs),
      firstAudioMs: this.firstAudioMs === undefined ? undefined : Math.round(this.firstAudioMs),
      firstAudioSinceStartMs: this.firstAudioAt === undefined ? undefined : Math.round(this.firstAudioAt),
      tier: this.tier,
      tierChanges: this.tierChanges,
      sent: { frames: stats?.frames ?? 0, packets: (stats?.sourcePackets ?? 0) + (stats?.repairPackets ?? 0), bytes: stats?.bytes ?? 0 },
      participants: [...this.departed, ...this.remotes.values()].map((r) => this.participantReport(r)),
      participantsNotListed: this.departedNotListed,
      refused: [...this.refused.values()].map((r) => ({ ...r })),
      refusedNotListed: this.refusedNotListed,
      admission: { roomSecret: this.opts.roomSecret !== undefined, ...(this.allow === undefined ? {} : { allow: [...this.allow] }) },
      keyRotations: this.keyRotations,
      reconnects: this.reconnects,
      ...(this.rttSamples.length ? { relayRttMs: this.rttSummary() } : {}),
      endedBy,
      mediaPath: this.mediaPath,
    };
  }

  private rttSummary(): NonNullable<CallReport['relayRttMs']> {
    const s = summarize(this.rttSamples);
    return { p50: roundMs(s.p50)!, p95: roundMs(s.p95)!, max: roundMs(this.maxRtt)!, mean: roundMs(s.mean)!, samples: this.rttSamples.length };
  }

  private participantReport(r: Remote): ParticipantReport {
    const s = r.receiver.stats;
    const jb = r.receiver.jitterStats();
    const played = s.framesPlayed + s.concealedFrames;
    const concealPct = played ? (s.concealedFrames / played) * 100 : 0;
    return {
      alias: r.alias,
      fingerprint: r.fingerprint,
      sourceId: r.sourceId,
      verified: r.trust !== 'new',
      trust: r.trust,
      left: r.left,
      packetsReceived: s.packets,
      lossPct: Math.round(r.lossPct * 10) / 10,
      framesReceived: s.framesReceived,
      framesRecovered: s.framesRecovered,
      framesPlayed: s.framesPlayed,
      concealedFrames: s.concealedFrames,
      decryptRejected: s.rejected,
      malformed: s.malformed,
      jitterBuffer: jb,
      lastTier: r.receiver.lastTier === undefined ? undefined : nameOf(r.receiver.lastTier),
      rttMs: roundMs(r.rttMs),
      mos: played ? this.mosEstimate(concealPct, jb.currentDelayMs) : undefined,
    };
  }
}

const REFUSAL_TEXT: Record<RefusalReason, string> = {
  unproven: 'it did not prove it knows the room name (the relay, someone who knows only the room id, or a client that predates room admission)',
  'not-allowed': 'it knows the room name but is not on the --allow list',
  'bad-signature': 'its announcement is not signed by its identity for this room',
  'fingerprint-mismatch': 'its fingerprint is not the hash of its identity key',
  'stale-announcement': 'a replay of a session that already left',
  'bad-key': 'its session key is unusable',
  malformed: 'not a well-formed announcement',
  'roster-mismatch': 'its announcement names another identity than the one it joined with',
  'duplicate-session': "a replay of another member's session",
};

/** The refusal reason for an error admit() threw; undefined for anything unexpected. */
function refusalReason(err: unknown): RefusalReason | 'self' | undefined {
  if (err instanceof AdmissionRefused) return err.reason;
  if (err instanceof KeyExchangeError) {
    const reason = err.reason;
    return reason === 'self' || reason in REFUSAL_TEXT ? (reason as RefusalReason | 'self') : undefined;
  }
  if (err instanceof DecodeError) return 'malformed';
  return undefined;
}

/** Who an (untrusted) announcement says it is, clipped: for the refused list and warnings. */
function claimedIdentity(announcement: unknown, rostered: RoomParticipant | undefined): { fingerprint: string; alias: string } {
  const record = typeof announcement === 'object' && announcement !== null ? (announcement as Record<string, unknown>) : {};
  const text = (value: unknown, max: number): string | undefined =>
    typeof value === 'string' ? [...value].slice(0, max).join('').replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu, '\uFFFD') : undefined;
  return {
    fingerprint: text(record.fingerprint, FINGERPRINT_TEXT_LENGTH) ?? text(rostered?.fingerprint, FINGERPRINT_TEXT_LENGTH) ?? '',
    alias: text(record.alias, MAX_ALIAS_CODE_POINTS) ?? text(rostered?.alias, MAX_ALIAS_CODE_POINTS) ?? '',
  };
}

/** `xxxx:xxxx:...`: 16 groups of 4 and 15 colons. */
const FINGERPRINT_TEXT_LENGTH = 79;

/** Milliseconds to 0.1 ms. */
function roundMs(ms: number | undefined): number | undefined {
  return ms === undefined || !Number.isFinite(ms) ? undefined : Math.round(ms * 10) / 10;
}

function nameOf(tier: number): TierName {
  return TIERS[tier]?.name ?? 'GOOD';
}



export { PIPELINE_SAMPLE_RATE };

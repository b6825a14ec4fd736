/**
 * `wzp call RELAY --to FINGERPRINT` and `wzp listen RELAY`: 1:1 calls by identity through a
 * relay (core/client/presence.ts, core/client/direct-call.ts, docs/direct-calls.md). Both
 * register on the relay as their identity; the caller offers, the listener rings on a TTY or
 * decides by --accept-from, and once answered the media flows through the relay in the call's
 * own room, run by the room-call engine.
 */
import { installedStrategies } from '../../core/p2p/hard-nat.js';
import { rmSync } from 'node:fs';
import { TeeSink, type FrameSink, type FrameSource } from '../../core/audio/sources.js';
import type { CallEvent, CallReport } from '../../core/client/call.js';
import {
  IncomingCall,
  MAX_RING_MS,
  placeCall,
  runDirectMedia,
  type AnsweredCall,
  type CallPathReport,
  type DirectMediaResult,
  type EstablishedCall,
  type RingingCall,
} from '../../core/client/direct-call.js';
import { gatherForCall, natProfileToSend, type GatheredForCall, type PortMappingInfo } from '../../core/client/call-candidates.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { primeTowards } from '../../core/p2p/direct-link.js';
import { PresenceClient, type PresenceDropReason, type PresenceEvent } from '../../core/client/presence.js';
import type { RelaySession } from '../../core/client/relay-session.js';
import { loadOrCreateIdentity, type Identity } from '../../core/crypto/identity.js';
import { KnownMembers } from '../../core/crypto/known-members.js';
import { InternalError, NetworkError, RefusedError, UsageError, errorMessage, isWzpError } from '../../core/errors.js';
import { PIPELINE_SAMPLE_RATE } from '../../core/media/codec-types.js';
import { NoiseSuppressor } from '../../core/media/noise-suppression.js';
import type { TierName } from '../../core/media/quality.js';
import { WavWriter } from '../../core/media/wav.js';
import type { Registries } from '../../core/registry.js';
import { parseDialTarget } from '../../core/transport/quic.js';
import type { Candidate } from '../../core/wire/candidate.js';
import { openSpeaker } from './audio-devices.js';
import { openSource, type CallRequest } from './call.js';
import { checkOutputFile, writeFileAtomic } from './output-files.js';
import { identityFile, knownMembersFile } from './paths.js';
import { checkHostPort, loadNatConfig, resolveEndpoints } from './nat-config.js';
import { checkGatewayFlag } from './portmap.js';
import { connectToRelay } from './relay-connect.js';
import type { ReportMeta } from './report-meta.js';

export const DIRECT_CALL_SCHEMA_VERSION = 1;
/** Calls a listener lists in its result; the rest are counted. */
export const MAX_LISTED_CALLS = 100;

/** What both commands need for the media of a call. */
/** What registering on the relay, gathering and signalling a 1:1 call need (calls and direct tests). */
export interface SignallingRequest {
  relay: string;
  configDir: string;
  identityPath?: string;
  relayFingerprint?: string;
  /** Access token for a relay that requires one (`--token` / WZP_TOKEN). */
  token?: string;
  timeoutMs?: number;
  alias?: string;
  /** Send no candidates, ask the relay not to pass on our address (docs/direct-calls.md). */
  relayOnly: boolean;
  /**
   * Ask the gateway (PCP, NAT-PMP, UPnP) for a port mapping for the call: a `mapped`
   * candidate, sent when it is made, deleted at hang-up (default true; never with relayOnly
   * or a loopback relay).
   */
  portMapping?: boolean;
  /** The gateway to ask (default: the default route's). */
  gateway?: string;
  /**
   * STUN servers (HOST:PORT) asked for the call socket's reflexive address beside the relay's
   * observation; default: netcheck.json's `stun` list (none configured: the relay's alone).
   */
  stun?: string[];
  /**
   * Consent to hard-NAT probing in our calls (default true; false: --no-hard-nat). Sent in our
   * NAT profile either way (the peer's report then says why no strategy ran); no profile at
   * all with relayOnly.
   */
  hardNat?: boolean;
  registries: Registries;
  signal: AbortSignal;
  /** A line of progress for a human (ringing, answered, ...). */
  onProgress?(line: string): void;
  onConnected?(c: { relay: string; fingerprint: string; trust: string }): void;
  meta(schemaVersion: number): ReportMeta;
}

export interface DirectMediaRequest extends SignallingRequest {
  mediaPath?: 'auto' | 'quic';
  tier: TierName;
  adaptive: boolean;
  source: CallRequest['source'];
  speaker?: { device?: string };
  record?: string;
  /** Each call's length at most. */
  durationMs?: number;
  vad?: boolean;
  noiseSuppression?: boolean;
  onEvent?(e: CallEvent): void;
}

export interface DirectCallRequest extends DirectMediaRequest {
  /** The callee's fingerprint (canonical). */
  to: string;
  ringTimeoutMs: number;
  reportPath?: string;
}

/** How the call was set up, beside the call report. */
export interface DirectCallInfo {
  callId: string;
  role: 'caller' | 'callee';
  /** The other party (verified: it signed the offer or answer). */
  peer: string;
  /** Whether we had met the peer before this call (known-members.json). */
  peerKnown: boolean;
  relayOnly: boolean;
  peerRelayOnly: boolean;
  /** The candidates we sent (none with --relay-only) and the ones the peer sent (signed). */
  candidates: Candidate[];
  peerCandidates: Candidate[];
  /** What the relay said it observed of the peer (unsigned: a hint). */
  relayCandidate?: Candidate;
  /** The port mapping made for the call (a `mapped` candidate sent as an update), and its deletion at hang-up. */
  portMapping: PortMappingInfo;
  /** Offer sent (or received) to answer, ms. */
  answerMs: number;
  /** Call signals dropped (unsigned, mis-bound, replayed, stale, for no call of ours). */
  signalsDropped: Record<PresenceDropReason, number>;
}

export interface DirectCallResult extends Omit<CallReport, 'mediaPath' | 'endedBy' | 'room' | 'roomId'> {
  meta: ReportMeta;
  direct: DirectCallInfo;
  /** Who ended it: we did (hangup, duration, source-ended, relay-lost) or the peer (peer-hangup, peer-left, peer-gone). */
  endedBy: DirectMediaResult['endedBy'];
  /** Relay or direct: the path timeline, candidates, checked pairs, round trips per path, time to direct. */
  path: CallPathReport;
  relay: { address: string; fingerprint: string; trust: string; mediaPath: 'udp' | 'quic' };
  recording?: { path: string; samples: number; durationMs: number };
}

/** The relay connection, identity, known members and registration both commands start with. */
export interface Registered {
  session: RelaySession;
  relay: { address: string; fingerprint: string; trust: string };
  identity: Identity;
  members: KnownMembers;
  presence: PresenceClient;
}

export async function registerOn(req: SignallingRequest, opts: { receiveCalls: boolean; onPresence?: (e: PresenceEvent) => void }): Promise<Registered> {
  const { session, fingerprint, trust } = await connectToRelay({
    relay: req.relay,
    configDir: req.configDir,
    relayFingerprint: req.relayFingerprint,
    token: req.token,
    alias: req.alias,
    timeoutMs: req.timeoutMs,
    signal: req.signal,
  });
  try {
    req.onConnected?.({ relay: session.label, fingerprint, trust });
    const { identity } = await loadOrCreateIdentity(req.identityPath ?? identityFile(req.configDir), { create: true });
    const members = await KnownMembers.open(knownMembersFile(req.configDir));
    const presence = await PresenceClient.register(session, identity, { signal: req.signal, timeoutMs: req.timeoutMs, onEvent: opts.onPresence, receiveCalls: opts.receiveCalls });
    return { session, relay: { address: session.label, fingerprint, trust }, identity, members, presence };
  } catch (err) {
    await session.close().catch(() => undefined);
    throw err;
  }
}

export function checkOutputs(req: DirectMediaRequest & { reportPath?: string }): void {
  if (req.relay.includes(',')) {
    // Moving along several relays (./relay-list.ts) is for room calls and recordings so far.
    throw new UsageError(`RELAY "${req.relay}": 1:1 calls (--to) and wzp listen take one relay`, {
      suggestions: ['give one HOST:PORT; several relays (RELAY1,RELAY2) work for room calls (--room) and wzp record'],
    });
  }
  parseDialTarget(req.relay);
  checkGatewayFlag(req.gateway);
  for (const server of req.stun ?? []) checkHostPort(server);
  if (req.reportPath) checkOutputFile(req.reportPath, 'the call report');
  if (req.record) checkOutputFile(req.record, 'the recording');
}

/** `wzp call RELAY --to FINGERPRINT`. */
export async function directCall(req: DirectCallRequest): Promise<DirectCallResult> {
  checkOutputs(req);
  // A caller proves its identity without taking its incoming calls: a `wzp listen` of the
  // same identity on this relay keeps them.
  const reg = await registerOn(req, { receiveCalls: false, onPresence: (e) => presenceProgress(e, req) });
  let gathered: GatheredForCall | undefined;
  let media: OpenedMedia | undefined;
  try {
    if (req.to === reg.identity.fingerprint) throw new UsageError('--to is your own fingerprint: a call needs someone else');
    const peerKnown = reg.members.lookup(req.to) !== undefined;
    gathered = await gatherFor(reg.session, req);
    // A tone or file is opened while it rings, so the media starts at once once answered.
    // Sound devices are opened on the answer (openDevices): a microphone opened now would
    // queue the ringing time's audio ahead of the call.
    media = await openMedia(req, { devicesLater: true });
    const offeredAt = performance.now();
    const info = { answerMs: 0, answeredAt: 0, peerKnown, gathered };
    let settle!: { resolve(a: { call: EstablishedCall; answeredAt: number }): void; reject(e: unknown): void };
    const answered = new Promise<{ call: EstablishedCall; answeredAt: number }>((resolve, reject) => (settle = { resolve, reject }));
    answered.catch(() => undefined); // the early media, if any, takes it
    /** The media started while it rings (the callee rang with its key, and our audio is open already). */
    let early: Promise<DirectCallResult> | undefined;
    let call: EstablishedCall;
    try {
      call = await placeCall(reg.presence, {
        to: req.to,
        relayOnly: req.relayOnly,
        candidates: gathered.wire,
        nat: natProfileToSend(gathered),
        ringTimeoutMs: req.ringTimeoutMs,
        signal: req.signal,
        onRinging: () => req.onProgress?.(`ringing ${req.to}...`),
        // The call's room is joined while it rings, so the audio starts on the answer without a
        // join round trip (its devices, if any, open on the answer).
        onRingingKeys: (ringing: RingingCall) => {
          if (!media || early) return;
          const opened = media;
          media = undefined; // runDirectMedia closes it from here on
          const answeredWithDevices = answered.then(async (a) => {
            await opened.openDevices();
            return a;
          });
          early = runMedia(req, reg, { ringing, answered: answeredWithDevices }, info, opened);
          early.catch(() => undefined); // awaited below
        },
      });
    } catch (err) {
      settle.reject(err);
      await early?.catch(() => undefined); // it leaves the room and closes its audio
      throw err;
    }
    info.answeredAt = performance.now();
    info.answerMs = Math.round(info.answeredAt - offeredAt);
    settle.resolve({ call, answeredAt: info.answeredAt });
    req.onProgress?.(`${req.to} answered after ${(info.answerMs / 1000).toFixed(1)} s; media through the relay`);
    const opened = media;
    media = undefined; // runDirectMedia closes it from here on
    const result = await (early ?? runMedia(req, reg, call, info, opened));
    if (req.reportPath) await writeFileAtomic(req.reportPath, `${JSON.stringify(result, null, 2)}\n`, 'the call report');
    return result;
  } finally {
    // Not answered (declined, busy, Ctrl-C while ringing, ...): the audio opened for it is closed.
    await media?.close();
    // The call's port mapping is deleted whatever happened (declined, Ctrl-C, an error).
    await gathered?.releaseMapping();
    await reg.members.save().catch(() => undefined);
    await reg.session.close().catch(() => undefined);
  }
}

/**
 * What runMedia reports besides the call. `gathered` is undefined while a callee that joined
 * the call's room early still gathers (it comes with the answer).
 */
interface MediaInfo {
  answerMs: number;
  answeredAt: number;
  peerKnown: boolean;
  gathered: GatheredForCall | undefined;
}

/** The direct path's options from what was gathered (none without a socket to share). */
function directOptions(req: DirectMediaRequest, gathered: GatheredForCall): AnsweredCall['direct'] {
  return gathered.direct ? { ...gathered.direct, strategies: installedStrategies(req.registries.natStrategies) } : undefined;
}

/** Open the audio, run the call's media through the relay, and build its result. */
async function runMedia(
  req: DirectMediaRequest,
  reg: Registered,
  callOrRinging: EstablishedCall | { ringing: RingingCall; answered: Promise<AnsweredCall> },
  info: MediaInfo,
  opened?: OpenedMedia,
): Promise<DirectCallResult> {
  const media = opened ?? (await openMedia(req));
  // Started on the answer: the devices open now (started while ringing: when it comes).
  if (!('ringing' in callOrRinging)) await media.openDevices().catch(async (err: unknown) => {
    await media.close();
    throw err;
  });
  const peer = 'ringing' in callOrRinging ? callOrRinging.ringing.peer : callOrRinging.peer;
  let outcome: DirectMediaResult;
  try {
    reg.session.useMediaPath(req.mediaPath ?? 'auto');
    outcome = await runDirectMedia(callOrRinging, {
      session: reg.session,
      identity: reg.identity,
      alias: req.alias ?? reg.identity.shortFingerprint,
      members: { meet: (fingerprint, alias) => reg.members.meet(fingerprint, alias) },
      codecs: req.registries.codecs,
      fec: req.registries.fec,
      source: media.source,
      sink: media.sink,
      tier: req.tier,
      adaptive: req.adaptive,
      receiveOnly: req.source.kind === 'none',
      vad: req.vad,
      noiseSuppressor: media.noiseSuppressor,
      durationMs: req.durationMs,
      endWithSource: req.source.kind === 'file',
      signal: req.signal,
      relayOnly: req.relayOnly,
      ...('ringing' in callOrRinging ? {} : { answeredAt: info.answeredAt }),
      ...(info.gathered?.natNotes ? { natNotes: info.gathered.natNotes } : {}),
      ...(info.gathered === undefined ? { directWithAnswer: true } : {}),
      ...(info.gathered && directOptions(req, info.gathered) ? { direct: directOptions(req, info.gathered) } : {}),
      // The room's derived name is half of what admits to it: it is not shown.
      onEvent: (e) => req.onEvent?.(directCallEvent(e, peer, info.peerKnown)),
    });
  } catch (err) {
    media.discardEmptyRecording();
    throw err;
  }
  // runDirectMedia returned: the call was answered (and so our candidates gathered).
  const call = 'ringing' in callOrRinging ? (await callOrRinging.answered).call : callOrRinging;
  const gathered = info.gathered;
  if (gathered === undefined) throw new InternalError('a call answered before its candidates were gathered');
  const { mediaPath, endedBy: _engineEnd, room: _room, roomId: _roomId, ...report } = outcome.report;
  return {
    meta: req.meta(DIRECT_CALL_SCHEMA_VERSION),
    ...report,
    direct: {
      callId: call.callId,
      role: call.role,
      peer: call.peer,
      peerKnown: info.peerKnown,
      relayOnly: req.relayOnly,
      peerRelayOnly: call.peerRelayOnly,
      candidates: gathered.wire,
      portMapping: await gathered.releaseMapping(),
      peerCandidates: call.peerCandidates,
      ...(call.relayCandidate ? { relayCandidate: call.relayCandidate } : {}),
      answerMs: info.answerMs,
      signalsDropped: { ...reg.presence.dropped },
    },
    endedBy: outcome.endedBy,
    path: outcome.path,
    relay: { ...reg.relay, mediaPath },
    ...media.recording(),
  };
}

/**
 * A room-call event as a 1:1 call shows it: the room's derived name is half of what admits to
 * it, so it is not shown; the peer is the one identity allowed in, so its trust is whether we
 * had met it before (a first meeting says so, and that it is pinned now).
 */
function directCallEvent(e: CallEvent, peer: string, peerKnown: boolean): CallEvent {
  if (e.type === 'call:joined') return { ...e, room: 'for this call' };
  if ((e.type === 'call:member-joined' || e.type === 'call:member-reconnected') && e.fingerprint === peer && e.trust === 'allowed') {
    return { ...e, trust: peerKnown ? 'known' : 'new' };
  }
  return e;
}

interface OpenedMedia {
  source: FrameSource;
  sink: FrameSink | undefined;
  noiseSuppressor: NoiseSuppressor | undefined;
  /** Open the sound devices left for later (openMedia's devicesLater); once, and nothing without any. */
  openDevices(): Promise<void>;
  recording(): { recording?: { path: string; samples: number; durationMs: number } };
  discardEmptyRecording(): void;
  /** Close everything unused (a call that was never answered); an empty recording is removed. */
  close(): Promise<void>;
}

/**
 * The source and sinks of one call (runDirectMedia closes them when the call ends). With
 * `devicesLater`, a microphone and a speaker are opened only by openDevices() (on the answer):
 * until then the source reads silence and the speaker takes nothing.
 */
async function openMedia(req: DirectMediaRequest, opts: { devicesLater?: boolean } = {}): Promise<OpenedMedia> {
  const lateMic = opts.devicesLater === true && req.source.kind === 'mic' ? new LateSource() : undefined;
  const source = lateMic ?? (await openSource(req.source));
  const sinks: FrameSink[] = [];
  const lateSpeaker = opts.devicesLater === true && req.speaker ? new LateSink() : undefined;
  let noiseSuppressor: NoiseSuppressor | undefined;
  let recorder: WavWriter | undefined;
  try {
    if (lateSpeaker) sinks.push(lateSpeaker);
    else if (req.speaker) sinks.push(await openSpeaker(req.speaker.device));
    if (req.noiseSuppression) noiseSuppressor = await NoiseSuppressor.create();
    if (req.record) {
      const w = new WavWriter(req.record, PIPELINE_SAMPLE_RATE);
      recorder = w;
      sinks.unshift({ write: (pcm) => w.append(pcm), close: () => w.close() });
    }
  } catch (err) {
    noiseSuppressor?.close();
    for (const s of sinks) await s.close();
    await source.close?.();
    throw err;
  }
  const discardEmptyRecording = () => {
    if (recorder && recorder.samplesWritten === 0) {
      recorder.close();
      rmSync(recorder.path, { force: true });
    }
  };
  let devices: Promise<void> | undefined;
  return {
    source,
    sink: sinks.length === 0 ? undefined : sinks.length === 1 ? sinks[0] : new TeeSink(sinks),
    noiseSuppressor,
    openDevices: () =>
      (devices ??= (async () => {
        if (lateMic && req.source.kind === 'mic') lateMic.set(await openSource(req.source));
        if (lateSpeaker && req.speaker) lateSpeaker.set(await openSpeaker(req.speaker.device));
      })()),
    recording: () =>
      recorder
        ? { recording: { path: recorder.path, samples: recorder.samplesWritten, durationMs: Math.round((recorder.samplesWritten / PIPELINE_SAMPLE_RATE) * 1000) } }
        : {},
    discardEmptyRecording,
    close: async () => {
      discardEmptyRecording();
      noiseSuppressor?.close();
      await devices?.catch(() => undefined); // a device still opening is closed once open
      for (const sink of sinks) await sink.close();
      await source.close?.();
    },
  };
}

/** A source that reads silence until its device is opened (set()). */
class LateSource implements FrameSource {
  #inner: FrameSource | undefined;
  #closed = false;

  set(inner: FrameSource): void {
    if (this.#closed) void inner.close?.();
    else this.#inner = inner;
  }

  get ended(): boolean {
    return this.#inner?.ended ?? false;
  }

  read(samples: number): Int16Array {
    return this.#inner?.read(samples) ?? new Int16Array(samples);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#inner?.close?.();
  }
}

/** A sink that takes nothing until its device is opened (set()). */
class LateSink implements FrameSink {
  #inner: FrameSink | undefined;
  #closed = false;

  set(inner: FrameSink): void {
    if (this.#closed) void inner.close();
    else this.#inner = inner;
  }

  write(pcm: Int16Array): void {
    this.#inner?.write(pcm);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#inner?.close();
  }
}

/** The STUN servers a call asks (`--stun`, else netcheck.json's `stun`), resolved: at most 4 servers. */
async function stunServersFor(req: SignallingRequest): Promise<Endpoint[]> {
  const servers = req.stun !== undefined ? req.stun : (await loadNatConfig(req.configDir).catch(() => undefined))?.config.stun ?? [];
  // One that does not resolve is said and skipped: the call goes on with the others' view.
  const unresolved = (s: string) => (err: unknown) => {
    req.onProgress?.(`STUN server ${s} not asked: ${errorMessage(err)}`);
    return [] as Endpoint[];
  };
  return (await Promise.all(servers.slice(0, 4).map((s) => resolveEndpoints(s).catch(unresolved(s))))).flat();
}

/** Our candidates for a call on the relay connection's socket (core/client/call-candidates.ts). */
export function gatherFor(session: RelaySession, req: SignallingRequest): Promise<GatheredForCall> {
  return gatherForCall(session, {
    relayOnly: req.relayOnly,
    relayHost: parseDialTarget(req.relay).host,
    portMapping: req.portMapping,
    gateway: req.gateway,
    stunServers: () => stunServersFor(req),
    hardNat: req.hardNat !== false,
    signal: req.signal,
  });
}

export function presenceProgress(e: PresenceEvent, req: SignallingRequest & { onEvent?(e: CallEvent): void }): void {
  if (e.type === 'presence:signal-dropped') req.onProgress?.(`dropped a ${e.signal} signal (${e.reason}: ${e.detail})`);
  if (e.type === 'presence:relay-draining') {
    // 1:1 calls and listeners do not move between relays yet (docs/relay-operations.md): say what it means.
    req.onEvent?.({
      type: 'call:warning',
      message: `relay ${req.relay} is draining (stopping within ${Math.round(e.deadlineMs / 1000)} s): it passes on no new calls; listen or call on another relay`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// wzp listen

export interface ListenRequest extends DirectMediaRequest {
  /** Accept calls from these identities (canonical fingerprints) without asking; reject the others. */
  acceptFrom?: string[];
  /** End after the first call that was answered or turned away. */
  once: boolean;
  /**
   * Ask a person (a TTY): show the caller and read y/n. Without it (and without acceptFrom)
   * every call is declined.
   */
  ask?(incoming: { caller: string; known: boolean; alias?: string; cancelled: Promise<unknown> }): Promise<boolean>;
  /** Told once registered (the command prints a parseable line). */
  onRegistered?(info: { fingerprint: string; relay: string }): void;
  /** Told when a call is answered, before its media starts (the command prints a parseable line). */
  onAnswered?(info: { caller: string; callId: string }): void;
}

export type ListenOutcome = 'answered' | 'declined' | 'busy' | 'missed' | 'failed';

export interface ListenCallEntry {
  callId: string;
  caller: string;
  /** ISO time the offer came. */
  at: string;
  outcome: ListenOutcome;
  /** For answered calls: who ended it, and how long it lasted. */
  endedBy?: DirectCallResult['endedBy'];
  durationMs?: number;
  /** For failed calls: why. */
  error?: { name: string; message: string };
}

export interface ListenResult {
  meta: ReportMeta;
  fingerprint: string;
  relay: { address: string; fingerprint: string; trust: string };
  /** Why listening ended: Ctrl-C / SIGTERM, or --once after its call. */
  endedBy: 'interrupted' | 'once';
  calls: ListenCallEntry[];
  callsNotListed: number;
  /** With --once, the call's full report (answered calls). */
  call?: DirectCallResult;
  signalsDropped: Record<PresenceDropReason, number>;
}

/** `wzp listen RELAY`: register, answer or turn away calls until stopped (or --once). */
export async function listen(req: ListenRequest): Promise<ListenResult> {
  checkOutputs(req);
  const reg = await registerOn(req, { receiveCalls: true, onPresence: (e) => presenceProgress(e, req) });
  const calls: ListenCallEntry[] = [];
  let callsNotListed = 0;
  let lastCall: DirectCallResult | undefined;
  const record = (entry: ListenCallEntry) => {
    if (calls.length < MAX_LISTED_CALLS) calls.push(entry);
    else callsNotListed++;
  };
  let busy = false;
  try {
    req.onRegistered?.({ fingerprint: reg.identity.fingerprint, relay: reg.relay.address });
    const endedBy = await new Promise<ListenResult['endedBy']>((resolve, reject) => {
      let current: Promise<void> | undefined;
      let finished = false;
      const finish = (how: () => void) => {
        if (finished) return;
        finished = true;
        // A call in progress ends with the same signal (Ctrl-C hangs it up); wait for its entry.
        void (current ?? Promise.resolve()).finally(how);
      };
      reg.presence.onOffer((offer) => {
        const incoming = new IncomingCall(reg.presence, offer);
        const at = new Date().toISOString();
        if (busy || finished) {
          record({ callId: offer.callId, caller: offer.from, at, outcome: 'busy' });
          req.onProgress?.(`${offer.from} called while ${finished ? 'stopping' : 'busy'}: told busy`);
          void incoming.reject('busy');
          return;
        }
        busy = true;
        current = handleOffer(req, reg, incoming, at)
          .then(
            ({ entry, result }) => {
              record(entry);
              if (result) lastCall = result;
              if (req.once) finish(() => resolve('once'));
            },
            (err: unknown) => {
              record({ callId: offer.callId, caller: offer.from, at, outcome: 'failed', error: errorFields(err) });
              if (req.once) finish(() => reject(err));
              else req.onProgress?.(`call from ${offer.from} failed: ${errorMessage(err)}`);
            },
          )
          .finally(() => {
            busy = false;
          });
      });
      const onAbort = () => finish(() => resolve('interrupted'));
      if (req.signal.aborted) onAbort();
      else req.signal.addEventListener('abort', onAbort, { once: true });
      void reg.presence.replaced.then(() =>
        finish(() =>
          reject(
            new RefusedError(`another session registered as ${reg.identity.fingerprint} on ${reg.relay.address}: this one no longer receives calls`, {
              suggestions: ['run one `wzp listen` per identity and relay'],
            }),
          ),
        ),
      );
      void reg.session.closed.then(() => finish(() => reject(new NetworkError(`lost the relay ${reg.relay.address}: no longer registered`))));
    });
    return {
      meta: req.meta(DIRECT_CALL_SCHEMA_VERSION),
      fingerprint: reg.identity.fingerprint,
      relay: reg.relay,
      endedBy,
      calls,
      callsNotListed,
      ...(req.once && lastCall ? { call: lastCall } : {}),
      signalsDropped: { ...reg.presence.dropped },
    };
  } finally {
    await reg.members.save().catch(() => undefined);
    await reg.session.close().catch(() => undefined);
  }
}

async function handleOffer(
  req: ListenRequest,
  reg: Registered,
  incoming: IncomingCall,
  at: string,
): Promise<{ entry: ListenCallEntry; result?: DirectCallResult }> {
  const receivedAt = performance.now();
  const caller = incoming.caller;
  const base = { callId: incoming.callId, caller, at };
  const pin = reg.members.lookup(caller);
  if (incoming.offer.purpose === 'direct-test') {
    // A direct-path test is not a call: only `wzp direct-test --wait` takes one.
    req.onProgress?.(`${caller} asked for a direct-path test: declined (they need you to run \`wzp direct-test RELAY --wait\`)`);
    await incoming.reject('declined');
    return { entry: { ...base, outcome: 'declined' } };
  }
  let accept: boolean;
  if (req.acceptFrom !== undefined) {
    accept = req.acceptFrom.includes(caller);
    req.onProgress?.(`call from ${caller}: ${accept ? 'accepted (--accept-from)' : 'declined (not in --accept-from)'}`);
  } else if (req.ask) {
    await incoming.ring().catch(() => undefined);
    // The caller hangs up, we are stopped (Ctrl-C), or nobody answers in time: stop ringing.
    const limit = abortOrTimeout(req.signal, MAX_RING_MS);
    const stopRinging = Promise.race([incoming.cancelled.then(() => 'cancelled' as const), limit.promise]);
    const answer = await Promise.race([
      req.ask({ caller, known: pin !== undefined, ...(pin?.alias ? { alias: pin.alias } : {}), cancelled: stopRinging }).then((yes) => (yes ? 'yes' : 'no')),
      stopRinging,
    ]).finally(limit.cancel);
    if (answer === 'cancelled' || answer === 'timeout' || answer === 'aborted') {
      if (answer !== 'cancelled') await incoming.reject('declined');
      req.onProgress?.(`missed call from ${caller}`);
      return { entry: { ...base, outcome: 'missed' } };
    }
    accept = answer === 'yes';
  } else {
    accept = false;
    req.onProgress?.(`call from ${caller}: declined (no terminal to ask on, and no --accept-from)`);
  }
  if (!accept) {
    await incoming.reject('declined');
    return { entry: { ...base, outcome: 'declined' } };
  }
  // Ring (with our key for the call) before gathering, also when accepting without asking: the
  // caller joins the call's room while we gather, and the audio starts on our answer.
  if (req.acceptFrom !== undefined) void incoming.ring().catch(() => undefined);
  const ringing = incoming.ringingCall();
  if (ringing) return answerWhileJoining(req, reg, incoming, ringing, { base, pin, receivedAt, caller });
  // A bad offer key: accept reports it.
  const gathered = await gatherFor(reg.session, req);
  try {
    return await answerAndRun(req, reg, incoming, gathered, { base, pin, receivedAt, caller });
  } finally {
    await gathered.releaseMapping();
  }
}

/**
 * Join the call's room while our candidates are gathered (we rang with our key, so its keys
 * are known), then answer: the caller, in the room since our ringing, starts its audio on the
 * answer, and it reaches us without waiting for a join round trip after it (that wait made the
 * caller's first ~40 ms of audio arrive before we were in the room to take it).
 */
async function answerWhileJoining(
  req: ListenRequest,
  reg: Registered,
  incoming: IncomingCall,
  ringing: RingingCall,
  o: { base: { callId: string; caller: string; at: string }; pin: ReturnType<KnownMembers['lookup']>; receivedAt: number; caller: string },
): Promise<{ entry: ListenCallEntry; result?: DirectCallResult }> {
  const { base, pin, receivedAt, caller } = o;
  const media = await openMedia(req, { devicesLater: true }).catch(async (err: unknown) => {
    // No audio to answer with (a file that cannot be read, ...): the caller stops ringing.
    await incoming.reject('declined');
    throw err;
  });
  const info: MediaInfo = { answerMs: 0, answeredAt: 0, peerKnown: pin !== undefined, gathered: undefined };
  let settle!: { resolve(a: AnsweredCall): void; reject(e: unknown): void };
  const answered = new Promise<AnsweredCall>((resolve, reject) => (settle = { resolve, reject }));
  answered.catch(() => undefined); // the media takes it
  // The sound devices open on the answer: a microphone opened now would queue audio ahead of the call.
  const withDevices = answered.then(async (a) => {
    await media.openDevices();
    return a;
  });
  const running = runMedia(req, reg, { ringing, answered: withDevices }, info, media);
  running.catch(() => undefined); // awaited below
  let gathered: GatheredForCall | undefined;
  try {
    try {
      gathered = await gatherFor(reg.session, req);
      info.gathered = gathered;
      // The media starts at once, on the room joined already.
      const { call, answeredAt } = await answer(req, incoming, gathered);
      info.answeredAt = answeredAt;
      info.answerMs = Math.round(performance.now() - receivedAt);
      settle.resolve({ call, answeredAt, direct: directOptions(req, gathered), ...(gathered.natNotes ? { natNotes: gathered.natNotes } : {}) });
      req.onAnswered?.({ caller, callId: call.callId });
    } catch (err) {
      settle.reject(err);
      await running.catch(() => undefined); // it leaves the room and closes the audio
      throw err;
    }
    const result = await running;
    req.onProgress?.(`call with ${caller} ended (${result.endedBy}) after ${(result.durationMs / 1000).toFixed(1)} s`);
    return { entry: { ...base, outcome: 'answered', endedBy: result.endedBy, durationMs: result.durationMs }, result };
  } finally {
    await gathered?.releaseMapping();
  }
}

async function answerAndRun(
  req: ListenRequest,
  reg: Registered,
  incoming: IncomingCall,
  gathered: GatheredForCall,
  o: { base: { callId: string; caller: string; at: string }; pin: ReturnType<KnownMembers['lookup']>; receivedAt: number; caller: string },
): Promise<{ entry: ListenCallEntry; result?: DirectCallResult }> {
  const { base, pin, receivedAt, caller } = o;
  // The media starts at once: the caller's join and ours then overlap.
  const { call, answeredAt } = await answer(req, incoming, gathered);
  const answerMs = Math.round(performance.now() - receivedAt);
  req.onAnswered?.({ caller, callId: call.callId });
  const result = await runMedia(req, reg, call, { answerMs, answeredAt, peerKnown: pin !== undefined, gathered });
  req.onProgress?.(`call with ${caller} ended (${result.endedBy}) after ${(result.durationMs / 1000).toFixed(1)} s`);
  return { entry: { ...base, outcome: 'answered', endedBy: result.endedBy, durationMs: result.durationMs }, result };
}

/**
 * Send our answer with what we gathered, and return the call as soon as it is sent (a caller
 * gone meanwhile ends it). Our NAT is primed toward the caller just before (primeTowards),
 * so that its checks, which start on the answer, find the way open. `answeredAt`: when the
 * answer left (performance.now()).
 */
async function answer(req: ListenRequest, incoming: IncomingCall, gathered: GatheredForCall): Promise<{ call: EstablishedCall; answeredAt: number }> {
  const offer = incoming.offer;
  let answeredAt = performance.now();
  const call = await incoming.accept({
    relayOnly: req.relayOnly,
    candidates: gathered.wire,
    nat: natProfileToSend(gathered),
    waitForRoute: false,
    beforeAnswer: ({ callId, keys }) => {
      answeredAt = performance.now();
      const d = gathered.direct;
      if (!d || offer.relayOnly === true || d.primeTtl === undefined) return;
      primeTowards({ demux: d.demux, socketType: d.socketType, checkKey: keys.checkKey, callId, candidates: [...offer.candidates, ...(offer.relayCandidate ? [offer.relayCandidate] : [])], ttl: d.primeTtl });
    },
  });
  return { call, answeredAt };
}

/** Resolves when `signal` aborts or `ms` pass, whichever first; cancel() frees both. */
function abortOrTimeout(signal: AbortSignal, ms: number): { promise: Promise<'aborted' | 'timeout'>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const promise = new Promise<'aborted' | 'timeout'>((resolve) => {
    if (signal.aborted) return resolve('aborted');
    timer = setTimeout(() => resolve('timeout'), ms);
    onAbort = () => resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
    },
  };
}

function errorFields(err: unknown): { name: string; message: string } {
  return isWzpError(err) || err instanceof Error ? { name: err.name, message: err.message } : { name: 'Error', message: errorMessage(err) };
}

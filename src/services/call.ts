/**
 * `wzp call` and `wzp record`: join a room on a relay with an identity, wire the audio source
 * and sinks, run the call until hang-up, and return the call report. Members met are pinned
 * in known-members.json (trust on first use, core/crypto/known-members.ts).
 */
import { rmSync } from 'node:fs';
import { FileSource, SilenceSource, TeeSink, ToneSource, type FrameSink, type FrameSource } from '../../core/audio/sources.js';
import { runCall, type CallEvent, type CallReport } from '../../core/client/call.js';
import { loadOrCreateIdentity } from '../../core/crypto/identity.js';
import { KnownMembers } from '../../core/crypto/known-members.js';
import { UsageError, errorMessage } from '../../core/errors.js';
import { PIPELINE_SAMPLE_RATE } from '../../core/media/codec-types.js';
import { NoiseSuppressor } from '../../core/media/noise-suppression.js';
import type { TierName } from '../../core/media/quality.js';
import { WavWriter } from '../../core/media/wav.js';
import type { Registries } from '../../core/registry.js';
import { identityFile, knownMembersFile } from './paths.js';
import type { ReportMeta } from './report-meta.js';
import { callMoves, connectFirstRelay, parseRelayList, relayFingerprints, relayRotation } from './relay-list.js';
import { openMic, openSpeaker } from './audio-devices.js';
import { checkOutputFile, writeFileAtomic } from './output-files.js';

export { listAudioDevices } from './audio-devices.js';

export interface CallRequest {
  /** HOST:PORT, or several comma-separated: the call moves along them (./relay-list.ts). */
  relay: string;
  room: string;
  configDir: string;
  identityPath?: string;
  /** One fingerprint, or one per relay of the list (comma-separated; an empty entry: by its pin). */
  relayFingerprint?: string;
  /** Access token for a relay that requires one (`--token` / WZP_TOKEN). */
  token?: string;
  /** How long to wait for the relay when connecting, ms (default 5 s). */
  timeoutMs?: number;
  /** Media on the UDP media path when the relay offers it, or always in QUIC datagrams. */
  mediaPath?: 'auto' | 'quic';
  alias?: string;
  /** Strengthens the room name (services/room-admission.ts resolveRoomSecret). */
  roomSecret?: string;
  /** Admit only these identities (canonical fingerprints) and our own. */
  allow?: string[];
  tier: TierName;
  adaptive: boolean;
  /** Audio source: a tone frequency, a WAV file, the microphone, or nothing (receive only). */
  source: { kind: 'tone'; hz: number } | { kind: 'file'; path: string } | { kind: 'mic'; device?: string } | { kind: 'none' };
  /** Play what we hear on a speaker (with --mic). */
  speaker?: { device?: string };
  record?: string;
  durationMs?: number;
  /** After losing the relay, keep trying to get back for this long (0: the call ends). */
  reconnectForMs?: number;
  vad?: boolean;
  noiseSuppression?: boolean;
  reportPath?: string;
  registries: Registries;
  signal: AbortSignal;
  onEvent?(e: CallEvent): void;
  /** The relay is connected and trusted (`trust`: `pinned-new` when pinned on first use now). */
  onConnected?(c: { relay: string; fingerprint: string; trust: string }): void;
  /** Report facts (version, host, flags) to embed in the report. */
  meta(schemaVersion: number): ReportMeta;
}

export interface CallResult extends Omit<CallReport, 'mediaPath'> {
  /**
   * Process start (Node's performance time origin) to the moment the call starts joining
   * the room: the client's start-up, identity and relay connection. With firstAudioMs and
   * setupMs it splits firstAudioSinceStartMs.
   */
  joinSentSinceStartMs: number;
  meta: ReportMeta;
  /**
   * mediaPath: the path our media went on at the end (docs/transport.md); trust: how the relay
   * was trusted (`pinned-new`, `match`, `explicit`).
   */
  relay: { address: string; fingerprint: string; trust: string; mediaPath: 'udp' | 'quic' };
  /**
   * The relays the call was given (RELAY1,RELAY2...), in order: `relay` is the one it
   * started on, `reconnects` each move (reason drain or lost, and the relay it landed on).
   */
  relays: string[];
  recording?: { path: string; samples: number; durationMs: number };
}

export const CALL_REPORT_SCHEMA_VERSION = 3;

export async function call(req: CallRequest): Promise<CallResult> {
  // What the command line names is checked before anything starts: the relay's address, and
  // the files written at the end (a typo must not cost a whole call).
  const relays = parseRelayList(req.relay);
  const fingerprints = relayFingerprints(req.relayFingerprint, relays);
  if (req.reportPath) checkOutputFile(req.reportPath, 'the call report');
  if (req.record) checkOutputFile(req.record, 'the recording');
  // The relay connection is mostly waiting on the network (a QUIC handshake with a Retry
  // round trip, then the hello): start it first and load the identity and open the audio
  // source and sinks meanwhile. Errors keep their order: set-up errors first (the connection
  // attempt is then aborted, or closed if it was up), connection errors after.
  const setupFailed = new AbortController();
  const connecting = connectFirstRelay({
    relays,
    fingerprints,
    configDir: req.configDir,
    token: req.token,
    alias: req.alias,
    timeoutMs: req.timeoutMs,
    signal: AbortSignal.any([req.signal, setupFailed.signal]),
    onWarning: (message) => req.onEvent?.({ type: 'call:warning', message }),
  });
  connecting.catch(() => undefined); // awaited below; until then its rejection is not unhandled
  const abandonConnection = async () => {
    setupFailed.abort(new Error('call set-up failed'));
    await connecting.then(({ session }) => session.close(), () => undefined).catch(() => undefined);
  };
  let identity: Awaited<ReturnType<typeof loadOrCreateIdentity>>['identity'];
  let source: FrameSource;
  let members: KnownMembers;
  try {
    ({ identity } = await loadOrCreateIdentity(req.identityPath ?? identityFile(req.configDir), { create: true }));
    members = await KnownMembers.open(knownMembersFile(req.configDir));
    source = await openSource(req.source);
  } catch (err) {
    await abandonConnection();
    throw err;
  }
  const sinks: FrameSink[] = [];
  let noiseSuppressor: NoiseSuppressor | undefined;
  try {
    if (req.speaker) sinks.push(await openSpeaker(req.speaker.device));
    if (req.noiseSuppression) noiseSuppressor = await NoiseSuppressor.create();
  } catch (err) {
    await abandonConnection();
    for (const s of sinks) await s.close();
    await source.close?.();
    throw err;
  }
  const { session, fingerprint, trust, index } = await connecting.catch(async (err) => {
    noiseSuppressor?.close();
    for (const s of sinks) await s.close();
    await source.close?.();
    throw err;
  });
  req.onConnected?.({ relay: session.label, fingerprint, trust });
  // The recording starts once the relay answered: a relay that never does leaves no file.
  let recorder: WavWriter | undefined;
  try {
    if (req.record) {
      recorder = new WavWriter(req.record, PIPELINE_SAMPLE_RATE);
      const w = recorder;
      sinks.unshift({ write: (pcm) => w.append(pcm), close: () => w.close() });
    }
  } catch (err) {
    noiseSuppressor?.close();
    for (const s of sinks) await s.close();
    await source.close?.();
    await session.close();
    throw err;
  }
  const sink = sinks.length === 0 ? undefined : sinks.length === 1 ? sinks[0] : new TeeSink(sinks);
  const joinSentSinceStartMs = Math.round(performance.now());
  const mediaPath = req.mediaPath ?? 'auto';
  session.useMediaPath(mediaPath);
  // Meetings are written soon after they happen (a killed process keeps them), at most once
  // a second, and at the end.
  let saveTimer: ReturnType<typeof setTimeout> | undefined;
  const savePins = async () => {
    clearTimeout(saveTimer);
    saveTimer = undefined;
    await members.save().catch((err) => req.onEvent?.({ type: 'call:warning', message: errorMessage(err) }));
  };
  const directory = {
    meet(fingerprint: string, alias: string) {
      const meeting = members.meet(fingerprint, alias);
      saveTimer ??= setTimeout(() => void savePins(), PIN_SAVE_DELAY_MS);
      return meeting;
    },
  };
  try {
    const { mediaPath: pathTaken, ...report } = await runCall({
      session,
      identity,
      room: req.room,
      alias: req.alias ?? identity.shortFingerprint,
      roomSecret: req.roomSecret,
      allow: req.allow,
      members: directory,
      codecs: req.registries.codecs,
      fec: req.registries.fec,
      source,
      sink,
      tier: req.tier,
      adaptive: req.adaptive,
      receiveOnly: req.source.kind === 'none',
      vad: req.vad,
      noiseSuppressor,
      durationMs: req.durationMs,
      endWithSource: req.source.kind === 'file',
      signal: req.signal,
      onEvent: req.onEvent,
      // Back to the same relay, which must present the certificate it presented the first
      // time; or, given several, on to the next (./relay-list.ts).
      ...(req.reconnectForMs === 0
        ? {}
        : callMoves(relayRotation({ relays, fingerprints, current: index, currentFingerprint: fingerprint, configDir: req.configDir, alias: req.alias, token: req.token, mediaPath }))),
      reconnectForMs: req.reconnectForMs,
    });
    const result: CallResult = {
      meta: req.meta(CALL_REPORT_SCHEMA_VERSION),
      ...report,
      joinSentSinceStartMs,
      relay: { address: session.label, fingerprint, trust, mediaPath: pathTaken },
      relays,
      ...(recorder
        ? {
            recording: {
              path: recorder.path,
              samples: recorder.samplesWritten,
              durationMs: Math.round((recorder.samplesWritten / PIPELINE_SAMPLE_RATE) * 1000),
            },
          }
        : {}),
    };
    if (req.reportPath) await writeFileAtomic(req.reportPath, `${JSON.stringify(result, null, 2)}\n`, 'the call report');
    return result;
  } catch (err) {
    // A call that failed before it heard anything (the join refused, the relay gone) leaves
    // no empty recording behind.
    if (recorder && recorder.samplesWritten === 0) {
      recorder.close();
      rmSync(recorder.path, { force: true });
    }
    throw err;
  } finally {
    await savePins();
    await session.close();
  }
}

/** How soon after a meeting the known members are written. */
const PIN_SAVE_DELAY_MS = 1000;

export async function openSource(spec: CallRequest['source']): Promise<FrameSource> {
  switch (spec.kind) {
    case 'tone':
      if (!(spec.hz > 0 && spec.hz < PIPELINE_SAMPLE_RATE / 2)) throw new UsageError(`--tone ${spec.hz}: a frequency is 1-23999 Hz`);
      return new ToneSource(spec.hz);
    case 'file':
      return new FileSource(spec.path);
    case 'none':
      return new SilenceSource();
    case 'mic':
      return openMic(spec.device);
  }
}

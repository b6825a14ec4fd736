import * as Args from '@oclif/core/args';
import * as Flags from '@oclif/core/flags';
import type { TierName } from '../../core/media/quality.js';
import { aliasProblem } from '../../core/crypto/sender-keys.js';
import { UsageError } from '../../core/errors.js';
import { mediaPathFlag, roomAdmissionFlags, WzpCommand, type WzpFlags } from '../base-command.js';
import { audioFromFlags, directPathFlags, secondsFlag, timeoutFlag, timeoutMs, tokenFlag } from '../connect-flags.js';
import { call, listAudioDevices, type CallResult } from '../services/call.js';
import { directCall, type DirectCallResult } from '../services/direct-call.js';
import { directCallSummary } from '../services/direct-call-text.js';
import { callEventRenderer, membersSummary, reconnectLines, type CallEventOutput } from '../services/call-events.js';
import { pinFile } from '../services/paths.js';
import { readFingerprintArg, resolveAllowList, resolveRoomSecret } from '../services/room-admission.js';
import { mediaPathText, relayPinnedLine } from '../services/relay-connect.js';

type Result = CallResult | DirectCallResult | Awaited<ReturnType<typeof listAudioDevices>>;

type CallFlags = WzpFlags<typeof Call>;

export default class Call extends WzpCommand<Result> {
  static override summary = 'Join a room on a relay and talk: end-to-end encrypted, FEC-protected, adaptive.';
  static override description = `Sources: --tone HZ (default 440 Hz), --file in.wav (any rate/channels), or --mic. Sinks: the speaker with --mic (unless --no-playback), and --record out.wav. Ctrl-C hangs up cleanly: the others see you leave at once and the recording is complete. A lost relay (closed, or silent for ~4.5 s) is reconnected to and the room re-joined, for up to --reconnect seconds. RELAY may be several, comma-separated (relay1:4433,relay2:4433): the call starts on the first that answers, and when its relay drains (shuts down) or is lost it moves to the next, round robin, and re-joins the room there, where the other members, moving too, meet it again (docs/relay-operations.md); each relay is pinned on its own, and --relay-fingerprint takes one fingerprint per relay in the same order. A call report (per participant: packets, loss, concealment, jitter buffer, tier changes, MOS) is printed at the end (--json) or written with --report.

Only members who prove they know the room name (and --room-secret, if the room has one) are admitted: the relay, which sees only the room id, cannot join. Each member is shown with its full fingerprint and its trust: allowed (--allow), known (met in an earlier call; pinned in known-members.json) or new (first meeting: compare the fingerprint with them). With --allow, everyone else is refused. A guessable room name needs a --room-secret: the relay could guess the name from the room id.

With --to FINGERPRINT instead of --room, a 1:1 call to a person by identity: both of you register on the relay as your identities (signed challenges), the callee runs \`wzp listen RELAY\`, and the offer, answer and hang-up are signed end to end. Once answered, the media flows through the relay in a room only the two of you can derive (an X25519 exchange in the signed offer and answer), with the callee as the only identity admitted. Outcomes: the callee hung up or you did (exit 0), callee offline (11), declined (12), busy in another call (13), no answer within --ring-timeout (14), the callee did not prove its identity in the call (5). --relay-only sends no address candidates and asks the relay not to pass on yours (docs/direct-calls.md). Each side measures its NAT on the call's socket and sends the profile, signed, with its consent to hard-NAT probing; --no-hard-nat withdraws that consent.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --room team --mic',
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --room test --tone 440 --duration 10 --record heard.wav --json',
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --room test --file speech.wav --no-playback',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --room team --room-secret-file ~/.team-secret --allow @team.txt --mic',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --to 1a2b:3c4d:...:7e8f --mic',
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --to @ana.fp --tone 440 --ring-timeout 20 --relay-only --json',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --to @ana.fp --mic --no-hard-nat',
    '<%= config.bin %> <%= command.id %> relay1.example.com:4433,relay2.example.com:4433 --room team --mic',
    '<%= config.bin %> <%= command.id %> --list-devices',
  ];
  static override args = { relay: Args.string({ description: 'Relay HOST:PORT, or several comma-separated (room calls move along them when one drains or is lost).' }) };
  static override flags = {
    room: Flags.string({ summary: 'Room name: the relay sees only an id derived from it, and members admit only those who prove they know it.' }),
    to: Flags.string({
      summary: 'Call this identity (its full fingerprint, or @FILE holding it) 1:1 through the relay instead of joining a room; it must be running `wzp listen` there.',
      exclusive: ['room', 'room-secret', 'room-secret-file', 'allow'],
    }),
    'ring-timeout': secondsFlag({ summary: 'With --to: give up after this many seconds without an answer (exit 14).', default: 30, min: 1, max: 120, name: 'ring-timeout' }),
    'relay-only': Flags.boolean({ summary: 'With --to: send no address candidates and ask the relay not to pass on your address; the call stays relayed.' }),
    ...directPathFlags,
    tone: Flags.integer({ summary: 'Send a sine tone of this frequency (Hz).', exclusive: ['file', 'mic'] }),
    file: Flags.file({ summary: 'Send this WAV file.', exclusive: ['tone', 'mic'] }),
    mic: Flags.boolean({ summary: 'Send the microphone and play what you hear on the speaker.', exclusive: ['tone', 'file'] }),
    'list-devices': Flags.boolean({ summary: 'List audio devices and exit.' }),
    'input-device': Flags.string({ summary: 'Input device (id or part of its name).' }),
    'output-device': Flags.string({ summary: 'Output device (id or part of its name).' }),
    playback: Flags.boolean({ summary: 'Play what you hear (default with --mic).', allowNo: true }),
    record: Flags.string({ summary: 'Record what you hear to this WAV file.' }),
    duration: Flags.integer({ summary: 'Hang up after this many seconds.', min: 1 }),
    reconnect: Flags.integer({ summary: 'After losing the relay, keep trying to get back for this many seconds (0: end the call).', min: 0, default: 30 }),
    alias: Flags.string({ summary: 'Name shown to the others (signed: up to 64 characters, no control characters).' }),
    ...roomAdmissionFlags,
    tier: Flags.string({ summary: 'Starting quality tier.', options: ['GOOD', 'DEGRADED', 'CATASTROPHIC'], default: 'GOOD' }),
    adaptive: Flags.boolean({ summary: 'Move between tiers as the network changes.', default: true, allowNo: true }),
    vad: Flags.boolean({ summary: 'Voice activity detection: send comfort-noise descriptions instead of silence.' }),
    'noise-suppression': Flags.boolean({ summary: 'Remove background noise (RNNoise) before encoding.' }),
    identity: Flags.file({ summary: 'Identity file to use instead of the one in the config dir.' }),
    'relay-fingerprint': Flags.string({ summary: 'Trust only this relay certificate fingerprint (with several relays: one per relay, comma-separated, in the same order).' }),
    token: tokenFlag,
    'media-path': mediaPathFlag,
    report: Flags.string({ summary: 'Also write the JSON call report to this file (checked before the call starts, written atomically at the end).' }),
    timeout: timeoutFlag,
  };

  public async run(): Promise<Result> {
    const { args, flags } = await this.parse(Call);
    if (flags['list-devices']) return listAudioDevices();
    if (!args.relay) this.error('RELAY is required', { exit: 2 });
    if (flags.to !== undefined) return this.directCall(args.relay, flags);
    if (flags['relay-only']) throw new UsageError('--relay-only is for 1:1 calls (--to): a room call always goes through the relay');
    if (!flags['hard-nat']) throw new UsageError('--no-hard-nat is for 1:1 calls (--to): a room call always goes through the relay');
    if (!flags.room) this.error('--room (a room call) or --to (a 1:1 call) is required', { exit: 2 });
    const { source, speaker } = audioFromFlags(flags);
    const aliasTrouble = flags.alias === undefined ? undefined : aliasProblem(flags.alias);
    if (aliasTrouble) throw new UsageError(`--alias: ${aliasTrouble}`);
    const roomSecret = await resolveRoomSecret({ secret: flags['room-secret'], secretFile: flags['room-secret-file'] });
    const allow = await resolveAllowList(flags.allow);
    const result = await call({
      relay: args.relay,
      room: flags.room,
      configDir: this.configDir(flags),
      identityPath: flags.identity,
      relayFingerprint: flags['relay-fingerprint'],
      token: flags.token,
      timeoutMs: timeoutMs(flags.timeout),
      mediaPath: flags['media-path'],
      alias: flags.alias,
      roomSecret,
      allow,
      tier: flags.tier as TierName,
      adaptive: flags.adaptive,
      source,
      speaker,
      record: flags.record,
      durationMs: flags.duration === undefined ? undefined : flags.duration * 1000,
      reconnectForMs: flags.reconnect * 1000,
      vad: flags.vad,
      noiseSuppression: flags['noise-suppression'],
      reportPath: flags.report,
      registries: this.registries,
      signal: this.abortSignal,
      onEvent: callEventRenderer(this.eventOutput()),
      onConnected: (c) => {
        const pinned = relayPinnedLine(c, pinFile(this.configDir(flags)));
        if (pinned) this.progress(pinned);
      },
      meta: (schemaVersion) => this.reportMeta(schemaVersion, flags, args),
    });
    return result;
  }

  private async directCall(relay: string, f: CallFlags): Promise<DirectCallResult> {
    const to = await readFingerprintArg(f.to!, '--to');
    const aliasTrouble = f.alias === undefined ? undefined : aliasProblem(f.alias);
    if (aliasTrouble) throw new UsageError(`--alias: ${aliasTrouble}`);
    return directCall({
      relay,
      to,
      ringTimeoutMs: timeoutMs(f['ring-timeout']),
      relayOnly: f['relay-only'],
      portMapping: f['port-mapping'],
      gateway: f.gateway,
      stun: f.stun,
      hardNat: f['hard-nat'],
      configDir: this.configDir(f),
      identityPath: f.identity,
      relayFingerprint: f['relay-fingerprint'],
      token: f.token,
      timeoutMs: timeoutMs(f.timeout),
      mediaPath: f['media-path'],
      alias: f.alias,
      tier: f.tier as TierName,
      adaptive: f.adaptive,
      ...audioFromFlags(f),
      record: f.record,
      durationMs: f.duration === undefined ? undefined : f.duration * 1000,
      vad: f.vad,
      noiseSuppression: f['noise-suppression'],
      reportPath: f.report,
      registries: this.registries,
      signal: this.abortSignal,
      onEvent: callEventRenderer(this.eventOutput()),
      onProgress: (line) => this.progress(line),
      onConnected: (c) => {
        const pinned = relayPinnedLine(c, pinFile(this.configDir(f)));
        if (pinned) this.progress(pinned);
      },
      meta: (schemaVersion) => this.reportMeta(schemaVersion, f, { relay }),
    });
  }

  /** Where the call's events are shown (services/call-events.ts). */
  protected eventOutput(): CallEventOutput {
    return {
      progress: (line) => this.progress(line),
      warn: (message) => this.warn(message),
      interactive: this.interactive,
      rewriteLine: (text) => process.stderr.write(`\r\x1b[K${text}`),
    };
  }

  protected renderHuman(r: Result): string {
    if ('direct' in r) return `${this.interactive ? '\n' : ''}${directCallSummary(r)}`;
    if ('devices' in r) {
      if (r.devices.length === 0) {
        return [
          'no audio devices found',
          '  PortAudio sees no sound card and no sound server: is PulseAudio, PipeWire or JACK running for this user?',
          '  On a headless machine, scripts/virtual-audio.sh (in the wzp repository) makes a virtual microphone and speaker.',
          '  Without audio devices, --tone and --file still send and --record still receives.',
        ].join('\n');
      }
      return r.devices
        .map((d) => {
          const defaults = [d.isDefaultInput ? 'default input' : '', d.isDefaultOutput ? 'default output' : ''].filter(Boolean).join(', ');
          return `${String(d.id).padStart(3)}  ${d.name}  (in ${d.maxInputChannels}, out ${d.maxOutputChannels}, ${d.hostApi})${defaults ? `  ${defaults}` : ''}`;
        })
        .join('\n');
    }
    const lines = [
      `${this.interactive ? '\n' : ''}call in room ${r.room} ended (${r.endedBy}) after ${(r.durationMs / 1000).toFixed(1)} s, tier ${r.tier}, setup ${r.setupMs} ms`,
      `sent ${r.sent.frames} frames in ${r.sent.packets} packets, ${mediaPathText(r.relay.mediaPath)}`,
    ];
    lines.push(
      ...membersSummary(
        r,
        (p) => `received ${p.packetsReceived} packets, loss ${p.lossPct}%, recovered ${p.framesRecovered}, concealed ${p.concealedFrames}, MOS ${p.mos ?? '-'}`,
      ),
    );
    for (const t of r.tierChanges) lines.push(`  at ${(t.atMs / 1000).toFixed(1)} s: ${t.from} -> ${t.to} (${t.reason})`);
    lines.push(...reconnectLines(r));
    if (r.recording) lines.push(`recorded ${(r.recording.durationMs / 1000).toFixed(1)} s to ${r.recording.path}`);
    return lines.join('\n');
  }
}

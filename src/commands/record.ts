import * as Args from '@oclif/core/args';
import * as Flags from '@oclif/core/flags';
import { aliasProblem } from '../../core/crypto/sender-keys.js';
import { UsageError } from '../../core/errors.js';
import { mediaPathFlag, roomAdmissionFlags, WzpCommand } from '../base-command.js';
import { timeoutFlag, timeoutMs, tokenFlag } from '../connect-flags.js';
import { call, type CallResult } from '../services/call.js';
import { callEventRenderer, membersSummary, reconnectLines } from '../services/call-events.js';
import { pinFile } from '../services/paths.js';
import { relayPinnedLine } from '../services/relay-connect.js';
import { resolveAllowList, resolveRoomSecret } from '../services/room-admission.js';

export default class Record extends WzpCommand<CallResult> {
  static override summary = 'Join a room as a listener and record what is said to a WAV file.';
  static override description =
    'A receive-only member: it mixes everyone it hears into one 48 kHz mono WAV. The file is valid at every moment, so Ctrl-C, a killed relay or a killed process still leave a playable recording. Given several relays (comma-separated) it moves to the next when its relay drains or is lost, as `wzp call` does. Admission works as for `wzp call`: only members who prove they know the room name (and --room-secret) are heard, and with --allow only those listed; each is shown with its fingerprint and trust.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --room team meeting.wav',
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --room team --room-secret-file ~/.team-secret --allow @team.txt meeting.wav',
    '<%= config.bin %> <%= command.id %> relay1.example.com:4433,relay2.example.com:4433 --room team meeting.wav',
  ];
  static override args = {
    relay: Args.string({ description: 'Relay HOST:PORT, or several comma-separated (the recorder moves along them when one drains or is lost).', required: true }),
    file: Args.string({ description: 'WAV file to write.', required: true }),
  };
  static override flags = {
    room: Flags.string({ summary: 'Room name: the relay sees only an id derived from it, and members admit only those who prove they know it.', required: true }),
    duration: Flags.integer({ summary: 'Stop after this many seconds.', min: 1 }),
    reconnect: Flags.integer({ summary: 'After losing the relay, keep trying to get back for this many seconds (0: end the call).', min: 0, default: 30 }),
    alias: Flags.string({ summary: 'Name shown to the others (signed: up to 64 characters, no control characters).', default: 'recorder' }),
    ...roomAdmissionFlags,
    identity: Flags.file({ summary: 'Identity file to use instead of the one in the config dir.' }),
    'relay-fingerprint': Flags.string({ summary: 'Trust only this relay certificate fingerprint (with several relays: one per relay, comma-separated, in the same order).' }),
    token: tokenFlag,
    'media-path': mediaPathFlag,
    timeout: timeoutFlag,
  };

  public async run(): Promise<CallResult> {
    const { args, flags } = await this.parse(Record);
    const aliasTrouble = aliasProblem(flags.alias);
    if (aliasTrouble) throw new UsageError(`--alias: ${aliasTrouble}`);
    const roomSecret = await resolveRoomSecret({ secret: flags['room-secret'], secretFile: flags['room-secret-file'] });
    const allow = await resolveAllowList(flags.allow);
    return call({
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
      tier: 'GOOD',
      adaptive: false,
      source: { kind: 'none' },
      record: args.file,
      durationMs: flags.duration === undefined ? undefined : flags.duration * 1000,
      reconnectForMs: flags.reconnect * 1000,
      registries: this.registries,
      signal: this.abortSignal,
      meta: (schemaVersion) => this.reportMeta(schemaVersion, flags, args),
      onEvent: callEventRenderer({
        progress: (line) => this.progress(line),
        warn: (message) => this.warn(message),
        interactive: this.interactive,
        rewriteLine: (text) => process.stderr.write(`\r\x1b[K${text}`),
      }),
      onConnected: (c) => {
        const pinned = relayPinnedLine(c, pinFile(this.configDir(flags)));
        if (pinned) this.progress(pinned);
      },
    });
  }

  protected renderHuman(r: CallResult): string {
    const back = r.reconnects.length ? `, back on the relay ${r.reconnects.length} time(s) after losing it` : '';
    // A member met again after a reconnection is a second entry in the report, not a second member.
    const members = new Set(r.participants.map((p) => `${p.fingerprint} ${p.alias}`)).size;
    return [
      `${this.interactive ? '\n' : ''}recorded ${((r.recording?.durationMs ?? 0) / 1000).toFixed(1)} s from ${members} member(s) to ${r.recording?.path} (${r.endedBy}${back})`,
      ...membersSummary(r),
      ...reconnectLines(r),
    ].join('\n');
  }
}

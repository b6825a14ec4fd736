import * as Args from '@oclif/core/args';
import * as Flags from '@oclif/core/flags';
import type { TierName } from '../../core/media/quality.js';
import { aliasProblem } from '../../core/crypto/sender-keys.js';
import { UsageError } from '../../core/errors.js';
import { mediaPathFlag, WzpCommand } from '../base-command.js';
import { audioFromFlags, directPathFlags, timeoutFlag, timeoutMs, tokenFlag } from '../connect-flags.js';
import { callEventRenderer } from '../services/call-events.js';
import { listen, type ListenResult } from '../services/direct-call.js';
import { listenSummary } from '../services/direct-call-text.js';
import { pinFile } from '../services/paths.js';
import { relayPinnedLine } from '../services/relay-connect.js';
import { resolveAllowList } from '../services/room-admission.js';

export default class Listen extends WzpCommand<ListenResult> {
  static override summary = 'Wait for 1:1 calls on a relay, as your identity: ring, answer, talk.';
  static override description = `Registers on the relay as your identity (you sign the relay's challenge with your identity key: nobody else can register your fingerprint and take your calls) and waits for \`wzp call RELAY --to YOUR-FINGERPRINT\`.

An incoming call rings on a terminal: the caller's full fingerprint is shown with whether you have met it before, and y answers, n declines. With --accept-from, calls from those identities are answered at once and all others declined; without a terminal and without --accept-from, every call is declined. A call that comes while you are in one is told busy. Every call signal is signed end to end; anything unsigned, altered, replayed or stale is dropped and counted.

Once answered, the media flows through the relay at once, end-to-end encrypted, in a room only you and the caller can derive. Ctrl-C hangs a call up (the caller ends with success) and stops listening; without --once, listening goes on after each call. --relay-only answers without revealing your addresses: no candidates are sent, and the relay is asked not to pass on the address it sees (docs/direct-calls.md). Each answer carries your NAT's profile as measured on the call's socket, signed, with your consent to hard-NAT probing; --no-hard-nat withdraws that consent.

Parseable lines go to stderr even with --json: "wzp listen: registered as FINGERPRINT on RELAY" once calls can come, and "wzp listen: answered FINGERPRINT; ..." for each answered call. The result lists every call (answered, declined, busy, missed, failed); with --once, the call's full report.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --mic',
    '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --accept-from 1a2b:3c4d:...:7e8f --tone 700 --once --json',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --accept-from @friends.txt --mic --relay-only',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --accept-from @friends.txt --mic --no-hard-nat',
  ];
  static override args = { relay: Args.string({ description: 'Relay HOST:PORT.', required: true }) };
  static override flags = {
    'accept-from': Flags.string({
      summary: 'Answer calls from this identity at once (its full fingerprint; repeatable), or @FILE with one per line (# comments); every other call is declined.',
      multiple: true,
      multipleNonGreedy: true,
    }),
    once: Flags.boolean({ summary: 'Stop after the first call (answered, declined or missed).' }),
    'relay-only': Flags.boolean({ summary: 'Answer without revealing your addresses: no candidates sent, the relay asked not to pass yours on.' }),
    ...directPathFlags,
    tone: Flags.integer({ summary: 'Send a sine tone of this frequency (Hz) in calls.', exclusive: ['file', 'mic'] }),
    file: Flags.file({ summary: 'Send this WAV file in calls.', exclusive: ['tone', 'mic'] }),
    mic: Flags.boolean({ summary: 'Send the microphone and play what you hear on the speaker.', exclusive: ['tone', 'file'] }),
    'input-device': Flags.string({ summary: 'Input device (id or part of its name).' }),
    'output-device': Flags.string({ summary: 'Output device (id or part of its name).' }),
    playback: Flags.boolean({ summary: 'Play what you hear (default with --mic).', allowNo: true }),
    record: Flags.string({ summary: 'Record what you hear to this WAV file (needs --once).', dependsOn: ['once'] }),
    duration: Flags.integer({ summary: 'Hang each call up after this many seconds.', min: 1 }),
    alias: Flags.string({ summary: 'Name shown to the caller (signed: up to 64 characters, no control characters).' }),
    tier: Flags.string({ summary: 'Starting quality tier.', options: ['GOOD', 'DEGRADED', 'CATASTROPHIC'], default: 'GOOD' }),
    adaptive: Flags.boolean({ summary: 'Move between tiers as the network changes.', default: true, allowNo: true }),
    identity: Flags.file({ summary: 'Identity file to use instead of the one in the config dir.' }),
    'relay-fingerprint': Flags.string({ summary: 'Trust only this relay certificate fingerprint.' }),
    token: tokenFlag,
    'media-path': mediaPathFlag,
    timeout: timeoutFlag,
  };

  public async run(): Promise<ListenResult> {
    const { args, flags } = await this.parse(Listen);
    const aliasTrouble = flags.alias === undefined ? undefined : aliasProblem(flags.alias);
    if (aliasTrouble) throw new UsageError(`--alias: ${aliasTrouble}`);
    const acceptFrom = await resolveAllowList(flags['accept-from'], '--accept-from');
    const canAsk = acceptFrom === undefined && process.stdin.isTTY === true;
    return listen({
      relay: args.relay,
      acceptFrom,
      once: flags.once,
      relayOnly: flags['relay-only'],
      portMapping: flags['port-mapping'],
      gateway: flags.gateway,
      stun: flags.stun,
      hardNat: flags['hard-nat'],
      configDir: this.configDir(flags),
      identityPath: flags.identity,
      relayFingerprint: flags['relay-fingerprint'],
      token: flags.token,
      timeoutMs: timeoutMs(flags.timeout),
      mediaPath: flags['media-path'],
      alias: flags.alias,
      tier: flags.tier as TierName,
      adaptive: flags.adaptive,
      ...audioFromFlags(flags),
      record: flags.record,
      durationMs: flags.duration === undefined ? undefined : flags.duration * 1000,
      registries: this.registries,
      signal: this.abortSignal,
      ...(canAsk ? { ask: (incoming: Parameters<typeof askOnTerminal>[0]) => askOnTerminal(incoming) } : {}),
      onEvent: callEventRenderer({
        progress: (line) => this.progress(line),
        warn: (message) => this.warn(message),
        interactive: this.interactive,
        rewriteLine: (text) => process.stderr.write(`\r\x1b[K${text}`),
      }),
      onProgress: (line) => this.progress(line),
      onConnected: (c) => {
        const pinned = relayPinnedLine(c, pinFile(this.configDir(flags)));
        if (pinned) this.progress(pinned);
      },
      onRegistered: ({ fingerprint, relay }) => {
        // One parseable line on stderr, even with --json, so scripts know calls can come now.
        process.stderr.write(`wzp listen: registered as ${fingerprint} on ${relay}\n`);
      },
      onAnswered: ({ caller }) => process.stderr.write(`wzp listen: answered ${caller}; media through the relay\n`),
      meta: (schemaVersion) => this.reportMeta(schemaVersion, flags, args),
    });
  }

  protected renderHuman(r: ListenResult): string {
    return listenSummary(r);
  }
}

/**
 * Ring on the terminal: show the caller and read one key, y answers and n (or Esc) declines;
 * Ctrl-C declines and stops listening, as it would outside raw mode.
 */
function askOnTerminal(incoming: { caller: string; known: boolean; alias?: string; cancelled: Promise<unknown> }): Promise<boolean> {
  const who = incoming.known ? `known${incoming.alias ? ` as "${incoming.alias}"` : ''}: met in an earlier call` : 'new: never met; compare the fingerprint with them';
  process.stderr.write(`\x07incoming call from ${incoming.caller}\n  (${who})\n  answer? [y/n] `);
  const stdin = process.stdin;
  return new Promise((resolve) => {
    const wasRaw = stdin.isRaw;
    const done = (answer: boolean, line: string) => {
      stdin.off('data', onData);
      stdin.setRawMode(wasRaw);
      stdin.pause();
      process.stderr.write(`${line}\n`);
      resolve(answer);
    };
    const onData = (data: Buffer) => {
      const key = data.toString('utf8');
      if (key === 'y' || key === 'Y') done(true, 'y');
      else if (key === 'n' || key === 'N' || key === '\x1b') done(false, 'n');
      else if (key === '\x03') {
        done(false, '^C');
        process.kill(process.pid, 'SIGINT');
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
    void incoming.cancelled.then(() => {
      if (stdin.listeners('data').includes(onData)) done(false, '(the caller hung up)');
    });
  });
}

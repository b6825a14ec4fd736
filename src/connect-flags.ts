/**
 * Flags shared by several commands beside the ones base-command.ts defines: `--timeout` in
 * seconds everywhere (echo-test, call, record for connecting; reflect, predict-ports and
 * netcheck for their probes).
 */
import * as Flags from '@oclif/core/flags';
import { UsageError } from '../core/errors.js';
import { QUIC_DEFAULTS } from '../core/transport/quic.js';
import { MAX_CONNECT_TIMEOUT_S, parseTimeoutSeconds, TOKEN_ENV } from './services/relay-connect.js';

/**
 * A `--timeout SECONDS` flag (every wzp command's timeout is in seconds, fractions allowed).
 * The value stays in seconds (as the user gave it, and as reports list the flags): commands
 * pass `timeoutMs(flags.timeout)` on.
 */
export function secondsFlag(opts: { summary: string; default: number; min?: number; max?: number; name?: string }) {
  const min = opts.min ?? 0;
  const max = opts.max ?? MAX_CONNECT_TIMEOUT_S;
  return Flags.custom<number>({
    summary: opts.summary,
    helpValue: 'SECONDS',
    default: opts.default,
    parse: async (input: string) => {
      const ms = parseTimeoutSeconds(input);
      const seconds = ms === undefined ? undefined : ms / 1000;
      if (seconds === undefined || seconds < min || seconds > max) {
        throw new UsageError(`--${opts.name ?? 'timeout'} ${input}: give a number of seconds${min > 0 ? ` from ${min}` : ' above 0'} up to ${max}`);
      }
      return seconds;
    },
  })();
}

/** `--timeout SECONDS`: how long to wait for the relay's handshake and hello. */
export const timeoutFlag = secondsFlag({
  summary: `Seconds to wait for the relay to answer when connecting (fractions allowed, up to ${MAX_CONNECT_TIMEOUT_S}).`,
  default: QUIC_DEFAULTS.connectTimeoutMs / 1000,
});

/**
 * `--token TOKEN` (env WZP_TOKEN): the access token for a relay that requires one (`wzp relay
 * --auth-url`); sent in the hello, never written to a report or a log.
 */
export const tokenFlag = Flags.string({
  summary: 'Access token for a relay that requires one (wzp relay --auth-url); default: the WZP_TOKEN environment variable.',
  helpValue: 'TOKEN',
  env: TOKEN_ENV,
});

/** `--timeout`'s seconds as the milliseconds the connection takes. */
export function timeoutMs(seconds: number): number {
  return Math.max(1, Math.round(seconds * 1000));
}

/** The flags that choose what a call sends and whether it plays what it hears (call, listen). */
export interface AudioFlags {
  mic?: boolean;
  file?: string;
  tone?: number;
  playback?: boolean;
  'input-device'?: string;
  'output-device'?: string;
}

/** What a call sends (microphone, WAV file, or a tone, 440 Hz by default) and where it plays. */
export function audioFromFlags(f: AudioFlags): {
  source: { kind: 'mic'; device?: string } | { kind: 'file'; path: string } | { kind: 'tone'; hz: number };
  speaker: { device?: string } | undefined;
} {
  const source = f.mic
    ? ({ kind: 'mic', device: f['input-device'] } as const)
    : f.file
      ? ({ kind: 'file', path: f.file } as const)
      : ({ kind: 'tone', hz: f.tone ?? 440 } as const);
  return { source, speaker: (f.playback ?? f.mic) ? { device: f['output-device'] } : undefined };
}

/**
 * The direct path's candidates for 1:1 calls (`wzp call --to`, `wzp listen`): the port mapping
 * is on by default, as in netcheck (`--no-port-mapping` keeps the gateway out of it,
 * `--gateway` names it); `--stun` adds STUN servers' view of the call's socket.
 */
export const directPathFlags = {
  stun: Flags.string({
    summary: "For a 1:1 call, also ask these STUN servers (HOST:PORT, repeatable or comma-separated) for the call socket's public address; default: netcheck.json's.",
    multiple: true,
    delimiter: ',',
  }),
  'port-mapping': Flags.boolean({
    summary: 'For a 1:1 call, ask the gateway (PCP, NAT-PMP, UPnP) to map the call\'s port while the call lasts, as one more way in for the direct path; the mapping is deleted at hang-up.',
    default: true,
    allowNo: true,
  }),
  gateway: Flags.string({ summary: "The gateway's IPv4 address for the port mapping (default: the default route's)." }),
  'hard-nat': Flags.boolean({
    summary:
      "For a 1:1 call, consent to hard-NAT probing (port prediction, many probes toward the peer's announced addresses) when plain checks cannot get through; --no-hard-nat says no in the NAT profile sent to the peer (docs/direct-calls.md).",
    default: true,
    allowNo: true,
  }),
};

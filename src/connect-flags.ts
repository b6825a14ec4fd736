/**
 * Flags shared by the commands that connect to a relay (echo-test, call, record), beside the
 * ones base-command.ts defines.
 */
import * as Flags from '@oclif/core/flags';
import { UsageError } from '../core/errors.js';
import { QUIC_DEFAULTS } from '../core/transport/quic.js';
import { MAX_CONNECT_TIMEOUT_S, parseTimeoutSeconds } from './services/relay-connect.js';

/**
 * `--timeout SECONDS`: how long to wait for the relay's handshake and hello. The value stays in
 * seconds (as the user gave it, and as reports list the flags): commands pass
 * `timeoutMs(flags.timeout)` on.
 */
export const timeoutFlag = Flags.custom<number>({
  summary: `Seconds to wait for the relay to answer when connecting (fractions allowed, up to ${MAX_CONNECT_TIMEOUT_S}).`,
  helpValue: 'SECONDS',
  default: QUIC_DEFAULTS.connectTimeoutMs / 1000,
  parse: async (input: string) => {
    const ms = parseTimeoutSeconds(input);
    if (ms === undefined) throw new UsageError(`--timeout ${input}: give a number of seconds above 0 and at most ${MAX_CONNECT_TIMEOUT_S}`);
    return ms / 1000;
  },
})();

/** `--timeout`'s seconds as the milliseconds the connection takes. */
export function timeoutMs(seconds: number): number {
  return Math.max(1, Math.round(seconds * 1000));
}

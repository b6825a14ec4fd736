/**
 * Flags shared by the commands that connect to a relay (echo-test, call, record), beside the
 * ones base-command.ts defines.
 */
import * as Flags from '@oclif/core/flags';
import { UsageError } from '../core/errors.js';
import { QUIC_DEFAULTS } from '../core/transport/quic.js';
import { MAX_CONNECT_TIMEOUT_S, parseTimeoutSeconds } from './services/relay-connect.js';

/**
 * `--timeout SECONDS`: how long to wait for the relay's handshake and hello. The value is in
 * milliseconds once parsed; the default is the transport's (5 s).
 */
export const timeoutFlag = Flags.custom<number>({
  summary: `Seconds to wait for the relay to answer when connecting (fractions allowed, up to ${MAX_CONNECT_TIMEOUT_S}).`,
  helpValue: 'SECONDS',
  default: QUIC_DEFAULTS.connectTimeoutMs,
  defaultHelp: async () => String(QUIC_DEFAULTS.connectTimeoutMs / 1000),
  parse: async (input: string) => {
    const ms = parseTimeoutSeconds(input);
    if (ms === undefined) throw new UsageError(`--timeout ${input}: give a number of seconds above 0 and at most ${MAX_CONNECT_TIMEOUT_S}`);
    return ms;
  },
})();

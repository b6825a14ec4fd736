/**
 * Connect to a relay the way every client command does: parse the address, verify the
 * relay's certificate against the pin store (trust on first use, or an explicit
 * `--relay-fingerprint`), say hello, and record a new pin only after the session is up.
 */
import type { QUICSocket } from '@matrixai/quic';
import { RelaySession } from '../../core/client/relay-session.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { formatHostPort, parseHostPort } from '../../core/transport/quic.js';
import { PinStore, type PinCheckResult } from '../../core/transport/pin-store.js';
import { pinFile } from './paths.js';

export interface RelayConnectOptions {
  /** `HOST:PORT` as the user typed it. */
  relay: string;
  configDir: string;
  /** Explicit pin (`--relay-fingerprint`); overrides and replaces a stored pin. */
  relayFingerprint?: string;
  alias?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Dial from this socket (one UDP port for signalling, reflection and dialling). */
  socket?: QUICSocket;
  /**
   * A pin store shared by concurrent connections (one file, one writer): checked here but
   * not saved; the caller saves it once if any connection returned `pinned-new` or `explicit`.
   */
  pins?: PinStore;
}

export interface RelayConnection {
  session: RelaySession;
  /** How the relay was trusted: a new TOFU pin, an existing pin, or an explicit one. */
  trust: PinCheckResult | 'explicit';
  fingerprint: string;
}

export async function connectToRelay(opts: RelayConnectOptions): Promise<RelayConnection> {
  const address = parseHostPort(opts.relay);
  const key = formatHostPort(address);
  const explicit = opts.relayFingerprint === undefined ? undefined : parseFingerprint(opts.relayFingerprint);
  const pins = opts.pins ?? (await PinStore.open(pinFile(opts.configDir)));
  let trust: PinCheckResult | undefined;
  const session = await RelaySession.open({
    relay: address,
    alias: opts.alias,
    socket: opts.socket,
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    verify: (presented) => {
      trust = pins.check(key, presented, { explicit });
    },
  });
  if (opts.pins === undefined && (trust === 'pinned-new' || explicit !== undefined)) await pins.save();
  return {
    session,
    trust: explicit !== undefined ? 'explicit' : (trust ?? 'match'),
    fingerprint: parseFingerprint(session.relayFingerprint),
  };
}

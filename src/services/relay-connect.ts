/**
 * Connect to a relay the way every client command does: parse the address, verify the
 * relay's certificate against the pin store (trust on first use, or an explicit
 * `--relay-fingerprint`), say hello, and record a new pin only after the session is up.
 */
import type { QUICSocket } from '@matrixai/quic';
import { RelaySession } from '../../core/client/relay-session.js';
import { AbortError } from '../../core/errors.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { formatHostPort, parseDialTarget, QUIC_DEFAULTS } from '../../core/transport/quic.js';
import { PinStore, type PinCheckResult } from '../../core/transport/pin-store.js';
import { pinFile } from './paths.js';

export interface RelayConnectOptions {
  /** `HOST:PORT` as the user typed it. */
  relay: string;
  configDir: string;
  /** Explicit pin (`--relay-fingerprint`); overrides and replaces a stored pin. */
  relayFingerprint?: string;
  alias?: string;
  /** Access token for a relay that requires one (`--token` / WZP_TOKEN), sent in the hello. */
  token?: string;
  /** How long to wait for the relay's handshake and hello (default QUIC_DEFAULTS.connectTimeoutMs). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Dial from this socket (one UDP port for signalling, reflection and dialling). */
  socket?: QUICSocket;
  /**
   * A pin store shared by concurrent connections (one file, one writer): checked here but
   * not saved; the caller saves it once (after every connection: a pin that matched has a new
   * `lastSeen`).
   */
  pins?: PinStore;
}

export interface RelayConnection {
  session: RelaySession;
  /** How the relay was trusted: a new TOFU pin, an existing pin, or an explicit one. */
  trust: PinCheckResult | 'explicit';
  fingerprint: string;
}

/** A verified session, with the pin decision (and the pin's lastSeen) not yet saved. */
interface OpenedRelay {
  connection: RelayConnection;
  pins: PinStore;
}

async function openRelay(opts: RelayConnectOptions): Promise<OpenedRelay> {
  const address = parseDialTarget(opts.relay);
  const key = formatHostPort(address);
  const explicit = opts.relayFingerprint === undefined ? undefined : parseFingerprint(opts.relayFingerprint);
  const pins = opts.pins ?? (await PinStore.open(pinFile(opts.configDir)));
  let trust: PinCheckResult | undefined;
  const session = await RelaySession.open({
    relay: address,
    alias: opts.alias,
    token: opts.token,
    socket: opts.socket,
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    verify: (presented) => {
      trust = pins.check(key, presented, { explicit });
    },
  });
  return {
    connection: {
      session,
      trust: explicit !== undefined ? 'explicit' : (trust ?? 'match'),
      fingerprint: parseFingerprint(session.relayFingerprint),
    },
    pins,
  };
}

/**
 * Connect and verify the relay. With its own pin store (no `pins` given) the store is saved
 * every time: a new pin, an explicit one, or the `lastSeen` of the pin that matched
 * (docs/identity.md).
 */
export async function connectToRelay(opts: RelayConnectOptions): Promise<RelayConnection> {
  const early = opts.socket === undefined && opts.pins === undefined ? takeSpeculation(opts) : undefined;
  const opened = early ? await abortable(early, opts.signal) : await openRelay(opts);
  if (opts.pins === undefined) {
    try {
      await opened.pins.save();
    } catch (err) {
      // Only lastSeen was at stake for a pin that matched: not worth failing the connection.
      if (opened.connection.trust !== 'match') {
        await opened.connection.session.close().catch(() => undefined);
        throw err;
      }
    }
  }
  return opened.connection;
}

/**
 * The line that says a relay was pinned on first use (trust on first use is never silent, as
 * ssh says "Permanently added ... to the list of known hosts"); undefined for the other trusts.
 */
export function relayPinnedLine(c: { relay: string; fingerprint: string; trust: string }, pinFilePath?: string): string | undefined {
  if (c.trust !== 'pinned-new') return undefined;
  return `permanently added relay ${c.relay} to the known relays${pinFilePath ? ` (${pinFilePath})` : ''}\n  fingerprint ${c.fingerprint}: compare it with the one its operator gives you; a different one next time is refused`;
}

// --- speculative connection -------------------------------------------------------------
//
// `wzp call` and `wzp record` are timed from process start to the first frame played
// (target 300 ms), and most of a relay connection is waiting: a QUIC handshake with a Retry
// round trip, then the hello, while the relay does the work on its own core. So the CLI
// starts that connection as soon as oclif's config is loaded (src/cli.ts), from the
// command line as oclif will parse it, and the command's own connectToRelay() takes it over
// when it asks for exactly the same relay, pin, alias and config directory. The check is the
// same code with the same inputs (the pin store is only written by the taker). A connection
// nobody took is closed before the process exits. Measured: process start -> join sent
// ~40 ms earlier.

/** What the speculation needs to know of a command's flags (oclif's manifest entries). */
export interface FlagSpec {
  type: 'boolean' | 'option';
  char?: string;
  allowNo?: boolean;
  default?: unknown;
}

const SPECULATE_FOR = new Set(['call', 'record']);
let speculation: { key: string; opened: Promise<OpenedRelay>; abort: AbortController } | undefined;

function speculationKey(o: { relay: string; configDir: string; relayFingerprint?: string; alias?: string; token?: string; timeoutMs?: number }): string {
  // In memory only (the token is never written anywhere).
  return JSON.stringify([o.relay, o.configDir, o.relayFingerprint ?? null, o.alias ?? null, o.token ?? null, o.timeoutMs ?? QUIC_DEFAULTS.connectTimeoutMs]);
}

/**
 * Read a command line the way oclif will (long and short flags, `--flag=value`, `--no-flag`,
 * `--`), using the command's flag specs: its positional arguments and option values.
 * Undefined when anything is not understood (the speculation is then skipped).
 */
export function scanCommandLine(
  argv: string[],
  flags: Record<string, FlagSpec>,
): { positionals: string[]; options: Map<string, string> } | undefined {
  const positionals: string[] = [];
  const options = new Map<string, string>();
  const byChar = new Map(Object.entries(flags).flatMap(([name, f]) => (f.char ? [[f.char, name] as const] : [])));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      if (!(name in flags) && name.startsWith('no-') && flags[name.slice(3)]?.allowNo && inline === undefined) continue;
    } else {
      if (arg.length !== 2) return undefined;
      name = byChar.get(arg[1]);
    }
    const spec = name === undefined ? undefined : flags[name];
    if (name === undefined || spec === undefined) return undefined;
    if (spec.type === 'boolean') {
      if (inline !== undefined) return undefined;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) return undefined;
    options.set(name, value);
  }
  return { positionals, options };
}

/** Start connecting for `wzp <commandId> <argv>` if it is a command that will (see above). */
export function speculate(commandId: string | undefined, argv: string[], flags: Record<string, FlagSpec> | undefined, configDir: string): void {
  if (commandId === undefined || !SPECULATE_FOR.has(commandId) || flags === undefined || speculation) return;
  if (argv.some((a) => a === '--help' || a === '-h')) return;
  const line = scanCommandLine(argv, flags);
  const relay = line?.positionals[0];
  if (!line || relay === undefined) return;
  const optionOrDefault = (name: string): string | undefined => {
    const d = flags[name]?.default;
    return line.options.get(name) ?? (typeof d === 'string' ? d : undefined);
  };
  // --timeout SECONDS (its default is the transport's, as without it).
  const timeoutText = flags.timeout === undefined ? undefined : line.options.get('timeout');
  const timeoutMs = timeoutText === undefined ? undefined : parseTimeoutSeconds(timeoutText);
  if (timeoutText !== undefined && timeoutMs === undefined) return; // the command reports the bad value
  const opts: RelayConnectOptions = {
    relay,
    configDir,
    relayFingerprint: optionOrDefault('relay-fingerprint'),
    alias: optionOrDefault('alias'),
    // As the --token flag reads it: the flag, else its environment variable.
    token: flags.token === undefined ? undefined : (line.options.get('token') ?? process.env[TOKEN_ENV]),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  };
  try {
    parseDialTarget(relay);
    if (opts.relayFingerprint !== undefined) parseFingerprint(opts.relayFingerprint);
  } catch {
    return; // the command reports the bad value itself
  }
  const abort = new AbortController();
  const opened = openRelay({ ...opts, signal: abort.signal });
  opened.catch(() => undefined); // whoever takes it sees the error; otherwise it is dropped
  speculation = { key: speculationKey(opts), opened, abort };
}

function takeSpeculation(opts: RelayConnectOptions): Promise<OpenedRelay> | undefined {
  if (speculation === undefined || speculation.key !== speculationKey(opts)) return undefined;
  const { opened, abort } = speculation;
  speculation = undefined;
  // From now on the taker's signal cancels the attempt, as it would its own.
  if (opts.signal?.aborted) abort.abort(opts.signal.reason);
  else opts.signal?.addEventListener('abort', () => abort.abort(opts.signal?.reason), { once: true });
  return opened;
}

/** Close a speculative connection nobody took (the command failed early, or did not connect). */
export async function discardSpeculation(): Promise<void> {
  const left = speculation;
  speculation = undefined;
  if (!left) return;
  left.abort.abort(new AbortError('nobody took the speculative relay connection'));
  await left.opened.then((o) => o.connection.session.close(), () => undefined).catch(() => undefined);
}

/** Wait for a connection started elsewhere, but give up (and close it) when `signal` aborts. */
function abortable(opened: Promise<OpenedRelay>, signal: AbortSignal | undefined): Promise<OpenedRelay> {
  if (!signal) return opened;
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(new AbortError('connect aborted'));
      void opened.then((o) => o.connection.session.close(), () => undefined);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    opened.then(
      (o) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) return;
        resolve(o);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** The environment variable the `--token` flag falls back to. */
export const TOKEN_ENV = 'WZP_TOKEN';

/** Longest `--timeout` a command that connects takes, in seconds. */
export const MAX_CONNECT_TIMEOUT_S = 300;

/**
 * `--timeout SECONDS` (the commands that connect to a relay): a positive number of seconds,
 * fractions allowed, as milliseconds; undefined when it is not one.
 */
export function parseTimeoutSeconds(text: string): number | undefined {
  const seconds = /^\s*\d*\.?\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!(seconds > 0 && seconds <= MAX_CONNECT_TIMEOUT_S)) return undefined;
  return Math.max(1, Math.round(seconds * 1000));
}

/** How a human summary names the path media took (docs/transport.md). */
export function mediaPathText(path: 'udp' | 'quic'): string {
  return path === 'udp' ? 'media on the UDP media path' : 'media in QUIC datagrams';
}

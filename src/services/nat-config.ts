/**
 * Which STUN servers and relays the NAT commands (netcheck, reflect, predict-ports) talk to.
 *
 * wzp has NO built-in servers: they come from `--stun` / `--relay` flags or from
 * `<configDir>/netcheck.json`, and flags win. With neither, the commands fail with a
 * UsageError saying how to configure them; nothing is ever sent to a server the user did not
 * name.
 *
 * ```json
 * {
 *   "stun": ["stun.example.net:3478", "198.51.100.7:3478"],
 *   "relays": [{ "address": "relay.example.net:4433", "fingerprint": "a1b2:c3d4:..." }]
 * }
 * ```
 * A relay's `fingerprint` is an explicit pin (as `--relay-fingerprint`); without it the relay
 * is trusted on first use like everywhere else in wzp.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { hasErrorCode } from '../../core/crypto/identity.js';
import { ConfigError, NetworkError, UsageError, errorMessage } from '../../core/errors.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { formatHostPort, parseHostPort } from '../../core/transport/quic.js';

export const NAT_CONFIG_FILE = 'netcheck.json';

/** Bound on a host-name lookup: getaddrinfo itself cannot be cancelled. */
const DNS_TIMEOUT_MS = 2_000;

export interface RelayConfig {
  /** `HOST:PORT`. */
  address: string;
  /** Explicit certificate pin; overrides the pin store. */
  fingerprint?: string;
}

export interface NatConfig {
  stun: string[];
  relays: RelayConfig[];
}

export interface LoadedNatConfig {
  path: string;
  /** False when the file does not exist (an empty configuration). */
  exists: boolean;
  config: NatConfig;
}

export type ServerSource = 'flags' | 'config' | 'none';

export interface SelectedServers {
  stun: string[];
  relays: RelayConfig[];
  source: { stun: ServerSource; relays: ServerSource };
  configFile: string;
}

export function natConfigFile(configDir: string): string {
  return join(configDir, NAT_CONFIG_FILE);
}

export async function loadNatConfig(configDir: string): Promise<LoadedNatConfig> {
  const path = natConfigFile(configDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return { path, exists: false, config: { stun: [], relays: [] } };
    throw new ConfigError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  return { path, exists: true, config: parseNatConfig(text, path) };
}

const SHAPE_HINT = `expected {"stun": ["HOST:PORT", ...], "relays": [{"address": "HOST:PORT", "fingerprint"?: "..."}]}`;

/** Parses and validates the file's text; every problem is a ConfigError naming the file. */
export function parseNatConfig(text: string, path: string): NatConfig {
  const bad = (what: string, cause?: unknown) => new ConfigError(`${path}: ${what}`, { cause, suggestions: [SHAPE_HINT] });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON (${errorMessage(err)})`, err);
  }
  if (!isRecord(doc)) throw bad('the top level is not an object');
  const unknown = Object.keys(doc).filter((key) => key !== 'stun' && key !== 'relays');
  if (unknown.length > 0) throw bad(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}`);
  const stun = doc.stun ?? [];
  if (!Array.isArray(stun) || !stun.every((s): s is string => typeof s === 'string')) throw bad('"stun" is not an array of "HOST:PORT" strings');
  const relaysValue = doc.relays ?? [];
  if (!Array.isArray(relaysValue)) throw bad('"relays" is not an array');
  const relays = relaysValue.map((entry, i): RelayConfig => {
    if (!isRecord(entry) || typeof entry.address !== 'string') throw bad(`relays[${i}] is not an object with an "address" string`);
    const extra = Object.keys(entry).filter((key) => key !== 'address' && key !== 'fingerprint');
    if (extra.length > 0) throw bad(`relays[${i}] has unknown key "${extra[0]}"`);
    if (entry.fingerprint === undefined) return { address: entry.address };
    if (typeof entry.fingerprint !== 'string') throw bad(`relays[${i}].fingerprint is not a string`);
    try {
      return { address: entry.address, fingerprint: parseFingerprint(entry.fingerprint) };
    } catch (err) {
      throw bad(`relays[${i}].fingerprint: ${errorMessage(err)}`, err);
    }
  });
  for (const address of [...stun, ...relays.map((r) => r.address)]) {
    try {
      checkHostPort(address);
    } catch (err) {
      throw bad(errorMessage(err), err);
    }
  }
  return { stun, relays };
}

/**
 * Flags win over the file. By default per kind: `--stun` replaces the file's STUN servers,
 * `--relay` its relays. With `allOrNothing`, servers given on the command line of either kind
 * replace the whole file (`wzp reflect RELAY` asks exactly what it was given). A relay given
 * on the command line keeps the fingerprint the file pins for the same address.
 */
export function selectServers(
  flags: { stun?: string[]; relay?: string[] },
  loaded: LoadedNatConfig,
  options: { allOrNothing?: boolean } = {},
): SelectedServers {
  const fromFlags = (list: string[] | undefined) => (list ?? []).map((s) => s.trim()).filter(Boolean);
  const stunFlags = fromFlags(flags.stun);
  const relayFlags = fromFlags(flags.relay);
  const anyFlags = stunFlags.length + relayFlags.length > 0;
  const useFile = (flagged: string[]) => flagged.length === 0 && !(options.allOrNothing && anyFlags);
  const pinned = new Map(loaded.config.relays.map((r) => [canonical(r.address), r.fingerprint]));
  const relays = useFile(relayFlags)
    ? loaded.config.relays
    : relayFlags.map((address) => {
        const fingerprint = pinned.get(canonical(address));
        return fingerprint === undefined ? { address } : { address, fingerprint };
      });
  const stun = useFile(stunFlags) ? loaded.config.stun : stunFlags;
  for (const address of [...stun, ...relays.map((r) => r.address)]) checkHostPort(address);
  const source = (flagged: string[], configured: unknown[]): ServerSource =>
    flagged.length > 0 ? 'flags' : useFile(flagged) && configured.length > 0 ? 'config' : 'none';
  return {
    stun: dedupe(stun),
    relays: dedupeBy(relays, (r) => canonical(r.address)),
    source: { stun: source(stunFlags, loaded.config.stun), relays: source(relayFlags, loaded.config.relays) },
    configFile: loaded.path,
  };
}

/**
 * The error for "nothing to talk to", with the ways to fix it. `usage` says how to name
 * servers on this command's line.
 */
export function noServersError(what: string, configFile: string, needs: 'stun' | 'any', usage: string): UsageError {
  const example = needs === 'stun' ? '{"stun": ["203.0.113.1:3478"]}' : '{"stun": ["203.0.113.1:3478"], "relays": [{"address": "relay.example.net:4433"}]}';
  return new UsageError(`${what}: no ${needs === 'stun' ? 'STUN servers' : 'STUN servers or relays'} configured (wzp has no built-in public servers)`, {
    suggestions: [
      usage,
      `or write ${configFile}: ${example}`,
      'a wzp relay you run (`wzp relay`: it answers STUN on its port) and any STUN server you trust will do; RFC 5780 servers (a relay started with --stun-alternate, or coturn with two addresses) give the full NAT behaviour and port allocation',
    ],
  });
}

/** `HOST:PORT` with a port in 1..65535 (parseHostPort also accepts port 0 and bare ports). */
export function checkHostPort(text: string): void {
  if (!/:\d+$/.test(text.trim())) throw new UsageError(`"${text}" is not HOST:PORT`, { suggestions: ['e.g. 203.0.113.1:3478 or [2001:db8::1]:3478'] });
  const { port } = parseHostPort(text);
  if (port < 1) throw new UsageError(`"${text}" has port 0; ports are 1-65535`);
}

/**
 * Resolves `HOST:PORT` to IP endpoints: an IP literal as is, a name through the system
 * resolver (every address, IPv4 first), bounded by DNS_TIMEOUT_MS.
 */
export async function resolveEndpoints(text: string): Promise<Endpoint[]> {
  checkHostPort(text);
  const { host, port } = parseHostPort(text);
  if (isIP(host) !== 0) return [{ address: host, port }];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NetworkError(`looking up ${host} took longer than ${DNS_TIMEOUT_MS} ms`)), DNS_TIMEOUT_MS);
  });
  try {
    const found = await Promise.race([lookup(host, { all: true, verbatim: true }), timeout]);
    const sorted = [...found].sort((a, b) => a.family - b.family);
    return sorted.map((a) => ({ address: a.address, port }));
  } catch (err) {
    if (err instanceof NetworkError) throw err;
    throw new NetworkError(`cannot resolve ${host}: ${errorMessage(err)}`, {
      cause: err,
      suggestions: ['check the name, or give an IP address'],
    });
  } finally {
    clearTimeout(timer);
  }
}

function canonical(address: string): string {
  return formatHostPort(parseHostPort(address)).toLowerCase();
}

function dedupe(list: readonly string[]): string[] {
  return dedupeBy(list, canonical);
}

function dedupeBy<T>(list: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return list.filter((item) => {
    const k = key(item);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

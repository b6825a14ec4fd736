/**
 * The relay's config file (`wzp relay --config FILE`; docs/relay-operations.md, "Config
 * file"): a TOML document (parsed by smol-toml) with
 *
 *   listen, identity, udp_media, media_plane, stun_alternate, stats, metrics, debug_tap,
 *   drain_timeout, source_id_prefix
 *   [limits]    one key per limit flag of `wzp relay`, in snake_case and the flag's units
 *   [auth]      url, fail_open, cache_seconds
 *   [[rooms]]   name or id (32 hex digits), allow = [fingerprint, ...]
 *   [[peers]]   address (HOST:PORT), fingerprint: relays this one dials (docs/federation.md)
 *   [[trusted]] fingerprint: relays this one accepts links from
 *   [[global_rooms]] name or id: rooms shared with the federation
 *
 * This module checks a document against that schema (every unknown key and bad value is a
 * UsageError naming the key and its line), writes the commented example a relay creates when
 * its config file does not exist, and lists what changed between two configs (a reload).
 * Which limits exist is the caller's: the CLI passes its limit flags (src/services/relay-config.ts),
 * so the file and the flags cannot drift apart.
 */
import { DEFAULT_AUTH_CACHE_SECONDS } from './auth.js';
import { parse, TomlError } from 'smol-toml';
import { ConfigError, UsageError } from '../errors.js';
import { parseHostPort } from '../transport/quic.js';
import { DEFAULT_RELAY_LIMITS, type RelayLimits } from './limits.js';
import { MAX_ROOM_PARTICIPANTS, sourcePrefixOf } from './rooms.js';

/** A config file larger than this is refused unread (it is a few KiB even with many rooms). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Rooms with an access list, and fingerprints in one list: bounds on what a file can make the relay hold. */
export const MAX_CONFIG_ROOMS = 10_000;
export const MAX_ROOM_ALLOW = 1_000;
/** Peer and trusted relays, and global rooms, a file may list. */
export const MAX_CONFIG_PEERS = 256;
export const MAX_CONFIG_GLOBAL_ROOMS = 1_024;
/** Longest string value (a path, a URL, a room name). */
const MAX_STRING_CHARS = 4096;

/** A limit as the file spells it: `key` (snake_case of the flag) sets `limit`, in units of `scale` (1024: KiB). */
export interface ConfigLimitKey {
  key: string;
  limit: keyof RelayLimits;
  scale: number;
  summary: string;
}

export interface RoomAcl {
  /** A room by its name (a room without a secret: its id is the name's hash) ... */
  name?: string;
  /** ... or by its 32-hex-digit room id (lowercase). */
  id?: string;
  /** Fingerprints (lowercase) of the identities that may join it. */
  allow: string[];
}

/** A relay to dial ([[peers]]): its address and its certificate fingerprint (lowercase). */
export interface PeerRelayConfig {
  address: string;
  fingerprint: string;
}

/** A global room ([[global_rooms]]): by name, or by id for a room with a secret. */
export interface GlobalRoomConfig {
  name?: string;
  id?: string;
}

export interface RelayAuthConfig {
  url: string;
  failOpen: boolean;
  cacheSeconds: number;
}

/** What a config file sets; a key left out is undefined (its default, or a flag, applies). */
export interface RelayConfig {
  listen?: string;
  /** As written: a relative path is relative to the config file's directory (the caller resolves it). */
  identity?: string;
  udpMedia?: boolean;
  mediaPlane?: boolean;
  stunAlternate?: string;
  statsSeconds?: number;
  metrics?: string;
  debugTap?: string;
  drainTimeoutSeconds?: number;
  /** The high 16 bits of this relay's members' source ids (docs/federation.md); default: from the fingerprint. */
  sourceIdPrefix?: number;
  /** The limits [limits] sets, in the relay's units (bytes where the key says KiB or MiB). */
  limits: Partial<RelayLimits>;
  auth?: RelayAuthConfig;
  rooms: RoomAcl[];
  /** Relay federation (docs/federation.md); absent when the file lists none. */
  peers?: PeerRelayConfig[];
  trusted?: string[];
  globalRooms?: GlobalRoomConfig[];
}

export interface ParsedRelayConfig {
  config: RelayConfig;
  /** The line (1-based) of a key path such as `limits.max_room_size` or `rooms[1].allow`, if found. */
  lineOf(path: string): number | undefined;
}

/** Defaults the example documents for keys whose default lives elsewhere (kept here, in one place). */
/** The auth check's own default (core/relay/auth.ts). */
export const AUTH_CACHE_SECONDS_DEFAULT = DEFAULT_AUTH_CACHE_SECONDS;
export const DRAIN_TIMEOUT_SECONDS_DEFAULT = 30;
const MAX_DRAIN_TIMEOUT_SECONDS = 3600;

const FINGERPRINT_RE = /^[0-9a-f]{4}(?::[0-9a-f]{4}){15}$/;
const ROOM_ID_RE = /^[0-9a-f]{32}$/;
const TOP_KEYS = ['listen', 'identity', 'udp_media', 'media_plane', 'stun_alternate', 'stats', 'metrics', 'debug_tap', 'drain_timeout', 'source_id_prefix', 'limits', 'auth', 'rooms', 'peers', 'trusted', 'global_rooms'] as const;
const PEER_KEYS = ['address', 'fingerprint'] as const;
const TRUSTED_KEYS = ['fingerprint'] as const;
const GLOBAL_ROOM_KEYS = ['name', 'id'] as const;
const AUTH_KEYS = ['url', 'fail_open', 'cache_seconds'] as const;
const ROOM_KEYS = ['name', 'id', 'allow'] as const;

/** `FILE:LINE: KEY: problem` (or `FILE: KEY: problem` when the key's line is unknown). */
function configError(file: string, line: number | undefined, key: string, problem: string, suggestions: string[] = []): UsageError {
  return new UsageError(`${file}${line === undefined ? '' : `:${line}`}: ${key}: ${problem}`, { suggestions });
}

/**
 * Parse and check a relay config document. `file` names it in errors. Throws ConfigError
 * for TOML syntax, with the line and column smol-toml found; UsageError for a key the schema
 * does not know or a bad value, with the key's path and line.
 */
export function parseRelayConfig(text: string, opts: { file: string; limitKeys: readonly ConfigLimitKey[] }): ParsedRelayConfig {
  const { file } = opts;
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) throw new UsageError(`${file}: larger than ${MAX_CONFIG_BYTES} bytes: not a relay config`);
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = err.message.replace(/^Invalid TOML document: /, '').split('\n')[0];
      // Not TOML at all is a corrupt file (ConfigError, exit 3, as for every other file wzp
      // reads); a TOML document with a bad key or value is a usage error (exit 2).
      throw new ConfigError(`${file}:${err.line}:${err.column}: invalid TOML: ${reason}\n${err.codeblock.trimEnd()}`, {
        suggestions: ['TOML: key = value, strings in double quotes, [table] headers (https://toml.io)'],
      });
    }
    throw err;
  }
  const lineOf = keyLocator(text);
  const fail = (path: string, problem: string, suggestions?: string[]): never => {
    throw configError(file, lineOf(path), path, problem, suggestions);
  };
  const config: RelayConfig = { limits: {}, rooms: [] };

  checkKeys(doc, '', TOP_KEYS, fail);
  config.listen = optionalString(doc, 'listen', fail);
  if (config.listen !== undefined) {
    try {
      parseHostPort(config.listen, '0.0.0.0');
    } catch (err) {
      fail('listen', `${(err as Error).message} (e.g. "0.0.0.0:4433" or "[::]:4433")`);
    }
  }
  config.identity = optionalString(doc, 'identity', fail);
  if (doc.udp_media !== undefined) {
    if (typeof doc.udp_media !== 'boolean') fail('udp_media', `must be true or false, not ${describe(doc.udp_media)}`);
    config.udpMedia = doc.udp_media as boolean;
  }
  if (doc.media_plane !== undefined) {
    if (typeof doc.media_plane !== 'boolean') fail('media_plane', `must be true or false, not ${describe(doc.media_plane)}`);
    config.mediaPlane = doc.media_plane as boolean;
  }
  config.stunAlternate = optionalString(doc, 'stun_alternate', fail);
  config.statsSeconds = optionalInteger(doc, 'stats', 1, 86_400, 'seconds', fail);
  config.metrics = optionalString(doc, 'metrics', fail);
  if (config.metrics !== undefined) {
    try {
      const hp = parseHostPort(config.metrics, '127.0.0.1');
      if (hp.port === 0) throw new Error('port 0');
    } catch {
      fail('metrics', `"${config.metrics}" is not HOST:PORT (e.g. "127.0.0.1:9464")`);
    }
  }
  config.debugTap = optionalString(doc, 'debug_tap', fail);
  if (doc.drain_timeout !== undefined) {
    const v = doc.drain_timeout;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_DRAIN_TIMEOUT_SECONDS) {
      fail('drain_timeout', `must be a number of seconds from 0 to ${MAX_DRAIN_TIMEOUT_SECONDS}, not ${describe(v)}`);
    }
    config.drainTimeoutSeconds = v as number;
  }
  const sourceIdPrefix = optionalInteger(doc, 'source_id_prefix', 0, 0xffff, '', fail);
  if (sourceIdPrefix !== undefined) config.sourceIdPrefix = sourceIdPrefix;

  if (doc.limits !== undefined) {
    const limits = table(doc.limits, 'limits', fail);
    const byKey = new Map(opts.limitKeys.map((k) => [k.key, k]));
    checkKeys(limits, 'limits', [...byKey.keys()], fail);
    for (const key of Object.keys(limits)) {
      const spec = byKey.get(key) as ConfigLimitKey;
      const max = spec.limit === 'roomSize' ? MAX_ROOM_PARTICIPANTS : Math.floor(Number.MAX_SAFE_INTEGER / spec.scale);
      const n = optionalInteger(limits, key, 1, max, unitOf(spec), fail, 'limits');
      if (n !== undefined) config.limits[spec.limit] = n * spec.scale;
    }
  }

  if (doc.auth !== undefined) {
    const auth = table(doc.auth, 'auth', fail);
    checkKeys(auth, 'auth', AUTH_KEYS, fail);
    const url = optionalString(auth, 'url', fail, 'auth');
    if (url === undefined) fail('auth', 'needs url = "https://..." (the service the relay asks)');
    let parsed: URL | undefined;
    try {
      parsed = new URL(url as string);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) fail('auth.url', `"${redactUrl(url as string)}" is not an http:// or https:// URL`);
    let failOpen = false;
    if (auth.fail_open !== undefined) {
      if (typeof auth.fail_open !== 'boolean') fail('auth.fail_open', `must be true or false, not ${describe(auth.fail_open)}`);
      failOpen = auth.fail_open as boolean;
    }
    const cacheSeconds = optionalInteger(auth, 'cache_seconds', 0, 86_400, 'seconds', fail, 'auth') ?? AUTH_CACHE_SECONDS_DEFAULT;
    config.auth = { url: url as string, failOpen, cacheSeconds };
  }

  if (doc.rooms !== undefined) {
    if (!Array.isArray(doc.rooms)) fail('rooms', 'must be [[rooms]] tables (each with name or id, and allow)');
    const rooms = doc.rooms as unknown[];
    if (rooms.length > MAX_CONFIG_ROOMS) fail('rooms', `at most ${MAX_CONFIG_ROOMS} rooms, not ${rooms.length}`);
    const seen = new Set<string>();
    rooms.forEach((entry, i) => {
      const at = `rooms[${i}]`;
      const room = table(entry, at, fail);
      checkKeys(room, at, ROOM_KEYS, fail);
      const name = optionalString(room, 'name', fail, at);
      let id = optionalString(room, 'id', fail, at);
      if ((name === undefined) === (id === undefined)) fail(at, 'needs exactly one of name = "..." or id = "<32 hex digits>"');
      if (id !== undefined) {
        id = id.toLowerCase();
        if (!ROOM_ID_RE.test(id)) fail(`${at}.id`, `"${id}" is not a room id (32 hex digits)`);
      }
      const label = name !== undefined ? `name "${name}"` : `id ${id}`;
      if (seen.has(label)) fail(at, `a second [[rooms]] entry for ${label}: give each room one entry`);
      seen.add(label);
      if (room.allow === undefined) fail(at, 'needs allow = ["fingerprint", ...] (the identities that may join)');
      if (!Array.isArray(room.allow)) fail(`${at}.allow`, `must be a list of fingerprints, not ${describe(room.allow)}`);
      const list = room.allow as unknown[];
      if (list.length > MAX_ROOM_ALLOW) fail(`${at}.allow`, `at most ${MAX_ROOM_ALLOW} fingerprints, not ${list.length}`);
      const allow = list.map((fp, j) => {
        const normal = typeof fp === 'string' ? fp.trim().toLowerCase() : undefined;
        if (normal === undefined || !FINGERPRINT_RE.test(normal)) {
          fail(`${at}.allow[${j}]`, `${describe(fp)} is not a fingerprint (16 groups of 4 hex digits: xxxx:xxxx:...; "wzp identity show" prints it)`);
        }
        return normal as string;
      });
      config.rooms.push({ ...(name !== undefined ? { name } : { id }), allow });
    });
  }
  const tables = (key: string, max: number, what: string): Record<string, unknown>[] => {
    const v = doc[key];
    if (!Array.isArray(v)) fail(key, `must be [[${key}]] tables (${what})`);
    const list = v as unknown[];
    if (list.length > max) fail(key, `at most ${max} entries, not ${list.length}`);
    return list.map((entry, i) => table(entry, `${key}[${i}]`, fail));
  };
  const fingerprintAt = (t: Record<string, unknown>, at: string): string => {
    const v = t.fingerprint;
    if (v === undefined) fail(at, 'needs fingerprint = "xxxx:xxxx:..." (the relay\'s certificate fingerprint: its "listening on" line and config header show it)');
    const normal = typeof v === 'string' ? v.trim().toLowerCase() : undefined;
    if (normal === undefined || !FINGERPRINT_RE.test(normal)) fail(`${at}.fingerprint`, `${describe(v)} is not a fingerprint (16 groups of 4 hex digits: xxxx:xxxx:...)`);
    return normal as string;
  };
  if (doc.peers !== undefined) {
    const seen = new Set<string>();
    config.peers = tables('peers', MAX_CONFIG_PEERS, 'each with address and fingerprint').map((peer, i) => {
      const at = `peers[${i}]`;
      checkKeys(peer, at, PEER_KEYS, fail);
      const address = optionalString(peer, 'address', fail, at);
      if (address === undefined) fail(at, 'needs address = "HOST:PORT" (where the other relay listens)');
      let port = 0;
      try {
        port = parseHostPort(address as string, '').port;
        if (parseHostPort(address as string, '').host === '') throw new Error('no host');
      } catch {
        fail(`${at}.address`, `"${address}" is not HOST:PORT (e.g. "relay2.example.org:4433" or "[2001:db8::2]:4433")`);
      }
      if (port === 0) fail(`${at}.address`, `"${address}" has port 0: give the port the other relay listens on`);
      const fingerprint = fingerprintAt(peer, at);
      if (seen.has(fingerprint)) fail(at, `a second [[peers]] entry for ${fingerprint}: give each relay one entry`);
      seen.add(fingerprint);
      return { address: address as string, fingerprint };
    });
  }
  if (doc.trusted !== undefined) {
    const seen = new Set<string>();
    config.trusted = tables('trusted', MAX_CONFIG_PEERS, 'each with fingerprint').map((t, i) => {
      const at = `trusted[${i}]`;
      checkKeys(t, at, TRUSTED_KEYS, fail);
      const fingerprint = fingerprintAt(t, at);
      if (seen.has(fingerprint)) fail(at, `a second [[trusted]] entry for ${fingerprint}`);
      seen.add(fingerprint);
      return fingerprint;
    });
  }
  if (doc.global_rooms !== undefined) {
    const seen = new Set<string>();
    config.globalRooms = tables('global_rooms', MAX_CONFIG_GLOBAL_ROOMS, 'each with name or id').map((room, i) => {
      const at = `global_rooms[${i}]`;
      checkKeys(room, at, GLOBAL_ROOM_KEYS, fail);
      const name = optionalString(room, 'name', fail, at);
      let id = optionalString(room, 'id', fail, at);
      if ((name === undefined) === (id === undefined)) fail(at, 'needs exactly one of name = "..." or id = "<32 hex digits>"');
      if (id !== undefined) {
        id = id.toLowerCase();
        if (!ROOM_ID_RE.test(id)) fail(`${at}.id`, `"${id}" is not a room id (32 hex digits)`);
      }
      const label = name !== undefined ? `name "${name}"` : `id ${id}`;
      if (seen.has(label)) fail(at, `a second [[global_rooms]] entry for ${label}`);
      seen.add(label);
      return name !== undefined ? { name } : { id };
    });
  }
  // Keys the file leaves out are absent, not undefined (a reader can list what the file sets).
  for (const [key, value] of Object.entries(config)) if (value === undefined) delete (config as unknown as Record<string, unknown>)[key];
  return { config, lineOf };
}

function unitOf(spec: ConfigLimitKey): string {
  if (spec.scale === 1024) return 'KiB';
  if (spec.scale === 1024 * 1024) return 'MiB';
  return '';
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}...` : v);
  if (Array.isArray(v)) return 'a list';
  if (v !== null && typeof v === 'object') return v.constructor?.name === 'TomlDate' ? 'a date' : 'a table';
  return String(v);
}

type Fail = (path: string, problem: string, suggestions?: string[]) => never;

function join(prefix: string, key: string): string {
  return prefix === '' ? key : `${prefix}.${key}`;
}

function checkKeys(t: Record<string, unknown>, prefix: string, known: readonly string[], fail: Fail): void {
  for (const key of Object.keys(t)) {
    if (known.includes(key)) continue;
    const near = closest(key, known);
    fail(join(prefix, key), `unknown key${prefix === '' ? '' : ` in [${prefix.replace(/\[\d+\]$/, '')}]`}`, [
      near ? `did you mean ${join(prefix, near)}?` : `known keys: ${known.join(', ')}`,
    ]);
  }
}

function table(v: unknown, path: string, fail: Fail): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v.constructor?.name === 'TomlDate') fail(path, `must be a table ([${path}]), not ${describe(v)}`);
  return v as Record<string, unknown>;
}

function optionalString(t: Record<string, unknown>, key: string, fail: Fail, prefix = ''): string | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  const path = join(prefix, key);
  if (typeof v !== 'string') fail(path, `must be a string in double quotes, not ${describe(v)}`);
  const s = v as string;
  if (s.trim() === '') fail(path, 'is empty');
  if (s.length > MAX_STRING_CHARS) fail(path, `longer than ${MAX_STRING_CHARS} characters`);
  return s;
}

function optionalInteger(t: Record<string, unknown>, key: string, min: number, max: number, unit: string, fail: Fail, prefix = ''): number | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(join(prefix, key), `must be a whole number${unit ? ` of ${unit}` : ''} from ${min} to ${max}, not ${describe(v)}`);
  }
  return v as number;
}

/** The known key nearest to a mistyped one (edit distance at most 3), for "did you mean". */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const k of known) {
    const d = editDistance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
}

/**
 * Where each key is, by a line scan of the source. Hand-written because smol-toml reports
 * positions only for syntax errors, not for the values it returns, and a schema error that
 * names no line leaves the operator searching the file. The scan follows table headers
 * (`[limits]`, `[[rooms]]` counted as rooms[0], rooms[1], ...) and `key =` / `a.b =` lines;
 * it does not parse values, so a key-like line inside a multi-line string could be taken for
 * a key (only error messages use this: at worst a line number is off). A path not found falls
 * back to its parent (`rooms[1].allow[3]` -> the line holding that value if it is on a line
 * of its own, else `rooms[1].allow`, then `rooms[1]`).
 */
function keyLocator(text: string): (path: string) => number | undefined {
  const lines = text.split(/\r?\n/);
  const where = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  let table = '';
  const bare = (k: string) => k.trim().replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    let m = /^\[\[\s*([^\]]+?)\s*\]\]/.exec(line);
    if (m) {
      const name = m[1].split('.').map(bare).join('.');
      const index = arrayCounts.get(name) ?? 0;
      arrayCounts.set(name, index + 1);
      table = `${name}[${index}]`;
      if (!where.has(name)) where.set(name, n);
      where.set(table, n);
      return;
    }
    m = /^\[\s*([^\]]+?)\s*\]/.exec(line);
    if (m) {
      table = m[1].split('.').map(bare).join('.');
      if (!where.has(table)) where.set(table, n);
      return;
    }
    m = /^((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=/.exec(line);
    if (m) {
      const parts = m[1].split('.').map(bare);
      // Each prefix of a dotted key (`limits.max_room_size = 2` defines `limits` too).
      for (let k = 1; k <= parts.length; k++) {
        const path = join(table, parts.slice(0, k).join('.'));
        if (!where.has(path)) where.set(path, n);
      }
    }
  });
  return (path: string) => {
    let p = path;
    for (;;) {
      const line = where.get(p);
      if (line !== undefined) return line;
      const element = /^(.*)\[(\d+)\]$/.exec(p);
      if (element && where.has(element[1])) {
        // An element of a multi-line list: the n-th value line after the key, if each is on its own line.
        const start = where.get(element[1]) as number;
        const index = Number(element[2]);
        let seen = 0;
        for (let i = start; i < lines.length && i < start + MAX_ROOM_ALLOW + 1; i++) {
          const l = lines[i].trim();
          if (l.startsWith(']')) break;
          if (l === '' || l.startsWith('#')) continue;
          if (seen++ === index) return i + 1;
        }
        return start;
      }
      const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
      if (cut <= 0) return undefined;
      p = p.slice(0, cut);
    }
  };
}

/** A URL for logs: no user, password, query or fragment (an auth URL may carry a token). */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '(not a URL)';
  }
  const secret = u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '';
  return `${u.protocol}//${u.host}${u.pathname}${secret ? ' (user, query and fragment hidden)' : ''}`;
}

/** One key that differs between two configs (values as text, secrets hidden). */
export interface ConfigChange {
  key: string;
  from: string;
  to: string;
  /** Applied while running (`stats`, [limits], [auth], [[rooms]] and the federation lists); the others need a restart. */
  live: boolean;
}

/** The keys a reload cannot apply: the relay reads them when it starts. */
export const RESTART_KEYS = ['listen', 'identity', 'udp_media', 'stun_alternate', 'metrics', 'debug_tap', 'drain_timeout', 'source_id_prefix'] as const;

/** What changed from `before` to `after`, one entry per key (rooms by their name or id). */
export function diffRelayConfigs(before: RelayConfig, after: RelayConfig, limitKeys: readonly ConfigLimitKey[]): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const show = (v: unknown) => (v === undefined ? '(default)' : typeof v === 'string' ? JSON.stringify(v) : String(v));
  const top: [string, unknown, unknown][] = [
    ['listen', before.listen, after.listen],
    ['identity', before.identity, after.identity],
    ['udp_media', before.udpMedia, after.udpMedia],
    ['media_plane', before.mediaPlane, after.mediaPlane],
    ['stun_alternate', before.stunAlternate, after.stunAlternate],
    ['stats', before.statsSeconds, after.statsSeconds],
    ['metrics', before.metrics, after.metrics],
    ['debug_tap', before.debugTap, after.debugTap],
    ['drain_timeout', before.drainTimeoutSeconds, after.drainTimeoutSeconds],
    ['source_id_prefix', before.sourceIdPrefix, after.sourceIdPrefix],
  ];
  for (const [key, a, b] of top) if (a !== b) changes.push({ key, from: show(a), to: show(b), live: !(RESTART_KEYS as readonly string[]).includes(key) });
  // Federation lists: applied live (Relay.setFederation).
  const lists: [string, string[], string[], string][] = [
    ['peers', (before.peers ?? []).map((p) => `${p.address}=${p.fingerprint}`), (after.peers ?? []).map((p) => `${p.address}=${p.fingerprint}`), 'relay'],
    ['trusted', before.trusted ?? [], after.trusted ?? [], 'fingerprint'],
    ['global_rooms', (before.globalRooms ?? []).map((r) => r.name ?? `id:${r.id}`), (after.globalRooms ?? []).map((r) => r.name ?? `id:${r.id}`), 'room'],
  ];
  for (const [key, a, b, noun] of lists) {
    const was = new Set(a);
    const now = new Set(b);
    const added = b.filter((x) => !was.has(x)).length;
    const removed = a.filter((x) => !now.has(x)).length;
    if (added || removed) changes.push({ key, from: `${a.length} ${noun}${a.length === 1 ? '' : 's'}`, to: `${b.length} ${noun}${b.length === 1 ? '' : 's'} (${added} added, ${removed} removed)`, live: true });
  }
  for (const spec of limitKeys) {
    const a = before.limits[spec.limit];
    const b = after.limits[spec.limit];
    if (a === b) continue;
    const value = (v: number | undefined) => (v === undefined ? `(default ${DEFAULT_RELAY_LIMITS[spec.limit] / spec.scale})` : String(v / spec.scale));
    changes.push({ key: `limits.${spec.key}`, from: value(a), to: value(b), live: true });
  }
  const ba = before.auth;
  const aa = after.auth;
  if ((ba === undefined) !== (aa === undefined)) {
    changes.push({ key: 'auth', from: ba ? redactUrl(ba.url) : '(off)', to: aa ? redactUrl(aa.url) : '(off)', live: true });
  } else if (ba && aa) {
    if (ba.url !== aa.url) {
      const from = redactUrl(ba.url);
      let to = redactUrl(aa.url);
      if (to === from) to += ' (a hidden part changed)';
      changes.push({ key: 'auth.url', from, to, live: true });
    }
    if (ba.failOpen !== aa.failOpen) changes.push({ key: 'auth.fail_open', from: String(ba.failOpen), to: String(aa.failOpen), live: true });
    if (ba.cacheSeconds !== aa.cacheSeconds) changes.push({ key: 'auth.cache_seconds', from: String(ba.cacheSeconds), to: String(aa.cacheSeconds), live: true });
  }
  const label = (r: RoomAcl) => (r.name !== undefined ? `rooms[name=${JSON.stringify(r.name)}]` : `rooms[id=${r.id}]`);
  const beforeRooms = new Map(before.rooms.map((r) => [label(r), r]));
  const afterRooms = new Map(after.rooms.map((r) => [label(r), r]));
  const count = (n: number) => `${n} fingerprint${n === 1 ? '' : 's'}`;
  for (const [key, r] of beforeRooms) if (!afterRooms.has(key)) changes.push({ key, from: `allow ${count(r.allow.length)}`, to: '(no access list: anyone may join)', live: true });
  for (const [key, r] of afterRooms) {
    const old = beforeRooms.get(key);
    if (!old) {
      changes.push({ key, from: '(no access list: anyone may join)', to: `allow ${count(r.allow.length)}`, live: true });
      continue;
    }
    const was = new Set(old.allow);
    const now = new Set(r.allow);
    const added = r.allow.filter((f) => !was.has(f)).length;
    const removed = old.allow.filter((f) => !now.has(f)).length;
    if (added || removed) changes.push({ key: `${key}.allow`, from: count(old.allow.length), to: `${count(r.allow.length)} (${added} added, ${removed} removed)`, live: true });
  }
  return changes;
}

/** What the example is written for: this relay's own address, identity file and fingerprint. */
export interface ConfigExampleFacts {
  listen: string;
  identity: string;
  fingerprint: string;
  limitKeys: readonly ConfigLimitKey[];
}

/**
 * The commented example a relay writes when its config file does not exist: every key with
 * its default and unit, `listen` and `identity` set to what this relay runs with (so the file
 * starts the same relay again), everything else commented out. It parses as it is.
 */
export function relayConfigExample(facts: ConfigExampleFacts): string {
  const q = (s: string) => JSON.stringify(s);
  const limitLines = facts.limitKeys.flatMap((spec) => {
    const unit = unitOf(spec);
    const def = DEFAULT_RELAY_LIMITS[spec.limit] / spec.scale;
    return [`# ${spec.summary.replace(/^\.\.\./, '... ')}${unit ? ` (${unit})` : ''} Default: ${def}.`, `# ${spec.key} = ${def}`, ''];
  });
  return [
    '# wzp relay configuration (TOML: https://toml.io). docs/relay-operations.md explains each key.',
    '#',
    '# A key left out or commented out keeps its default (shown); a flag on the command line',
    '# overrides this file. Send the relay SIGHUP (kill -HUP <pid>) to reload it: stats,',
    '# [limits], [auth], [[rooms]], [[peers]], [[trusted]] and [[global_rooms]] change at once',
    '# (the relay logs each change); the other keys need a restart. A file with an error is',
    '# refused whole and the relay keeps its running config.',
    '#',
    `# This relay listens on ${facts.listen}`,
    `# Its certificate fingerprint (clients pin it): ${facts.fingerprint}`,
    '#',
    "# To link another relay to this one (relay federation: docs/federation.md), paste this",
    "# into that relay's config (with an address of this host that relay can reach, if the",
    '# address below is 0.0.0.0 or [::]), and list that relay here under [[peers]] or [[trusted]]:',
    '#',
    '#   [[peers]]',
    `#   address = ${q(facts.listen)}`,
    `#   fingerprint = ${q(facts.fingerprint)}`,
    '',
    '# UDP address to listen on, HOST:PORT ([::]:4433 for IPv6). Default: "0.0.0.0:4433".',
    `listen = ${q(facts.listen)}`,
    '',
    '# The relay identity file (created if missing). Its seed gives the certificate fingerprint,',
    '# so keep it: a new one makes every client that pinned this relay refuse it. A relative',
    '# path is relative to this file. Default: relay-identity.json in the config dir.',
    `identity = ${q(facts.identity)}`,
    '',
    '# Offer members the UDP media path (media outside QUIC, still end-to-end encrypted).',
    '# Default: true.',
    '# udp_media = true',
    '',
    '# Forward room media on the UDP media path in a thread of its own, packets read and sent in',
    '# batches (64-bit Linux; elsewhere the main thread forwards everything). Default: true.',
    '# media_plane = true',
    '',
    "# A second address of this host, IP or IP:PORT (port default: the relay's + 1), for RFC 5780",
    '# STUN: with it "wzp netcheck --relay" learns the NAT\'s behaviour from this relay alone.',
    '# Needs listen on one address. Default: none (plain STUN on the relay\'s port).',
    '# stun_alternate = "203.0.113.2"',
    '',
    '# Every this many seconds, log connections, rooms and datagrams per second to stderr.',
    '# Seconds (1-86400). Default: off.',
    '# stats = 60',
    '',
    '# Serve Prometheus metrics over HTTP on this HOST:PORT (keep it off the public internet).',
    '# Default: off.',
    '# metrics = "127.0.0.1:9464"',
    '',
    '# The debug tap (docs/relay-operations.md) on one room: its name, its 32-hex-digit id, or',
    '# "*" for every room. Default: off.',
    '# debug_tap = "*"',
    '',
    '# On SIGTERM, stop taking new members and wait this many seconds for calls to end before',
    `# closing them. Seconds. Default: ${DRAIN_TIMEOUT_SECONDS_DEFAULT}.`,
    `# drain_timeout = ${DRAIN_TIMEOUT_SECONDS_DEFAULT}`,
    '',
    "# The high 16 bits of the source ids this relay gives its room members (0-65535). Relays",
    '# of a federation must each have their own: two with one refuse to link, and a relay drops',
    "# a member numbered like another (docs/federation.md). Default: this relay's, below.",
    `# source_id_prefix = ${sourcePrefixOf(facts.fingerprint)}`,
    '',
    '# What one client may make the relay do or hold (docs/relay-limits.md). Whole numbers.',
    '[limits]',
    '',
    ...limitLines,
    '# Ask an HTTP(S) service whether to admit a client (docs/relay-operations.md). A URL may',
    '# carry a token in its query: the relay never logs the query.',
    '# [auth]',
    '# url = "https://auth.example.org/wzp/admit?token=..."',
    '# Admit clients when the service cannot be reached. Default: false (refuse them).',
    '# fail_open = false',
    `# Seconds an answer is reused for the same identity (0: ask every time). Default: ${AUTH_CACHE_SECONDS_DEFAULT}.`,
    `# cache_seconds = ${AUTH_CACHE_SECONDS_DEFAULT}`,
    '',
    '# Rooms only some identities may join: one [[rooms]] per room, by name (a room without a',
    '# room secret) or by its 32-hex-digit id, with the fingerprints it admits ("wzp identity',
    '# show" prints yours). Rooms not listed are open to anyone. Default: none.',
    '# [[rooms]]',
    '# name = "team"',
    '# allow = [',
    '#   "0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef",',
    '# ]',
    '',
    '# Relay federation (docs/federation.md): links to other relays, and rooms shared over them.',
    '# SIGHUP applies changes to these lists (links to relays no longer listed close). Default: none.',
    '#',
    '# Relays this one dials: where each listens and its certificate fingerprint (its config',
    '# header prints the snippet to paste). It accepts links from them too.',
    '# [[peers]]',
    '# address = "relay2.example.org:4433"',
    '# fingerprint = "0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef"',
    '#',
    '# Relays this one accepts links from without dialling them (they list this one in [[peers]]).',
    '# [[trusted]]',
    '# fingerprint = "89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567"',
    '#',
    '# Rooms whose members on every relay of the federation are one room (by name, or id for a',
    '# room with a secret). Every relay that carries the room must list it, relays in between too.',
    '# [[global_rooms]]',
    '# name = "all-hands"',
    '',
  ].join('\n');
}

/**
 * `wzp relay --config FILE`: the relay's config file (core/relay/config.ts checks it) mapped
 * onto RelayRunOptions with the command line's flags over it, the example written when the
 * file does not exist, and the reload on SIGHUP (docs/relay-operations.md, "Config file").
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  diffRelayConfigs,
  MAX_CONFIG_BYTES,
  parseRelayConfig,
  relayConfigExample,
  type ConfigChange,
  type ConfigLimitKey,
  type GlobalRoomConfig,
  type PeerRelayConfig,
  type ParsedRelayConfig,
  type RelayConfig,
} from '../../core/relay/config.js';
import { ConfigError, errorMessage, InternalError, UsageError } from '../../core/errors.js';
import { DEFAULT_RELAY_LIMITS, type RelayLimits } from '../../core/relay/limits.js';
import type { Relay } from '../../core/relay/relay.js';
import { DEFAULT_AUTH_CACHE_SECONDS } from '../../core/relay/auth.js';
import { parseStunAlternate, RELAY_LIMIT_FLAGS, type RelayRunLive, type RelayRunOptions } from './relay.js';
import { resolveFederation, type FederationSettings } from './relay-federation.js';

/** The [limits] keys: each limit flag of `wzp relay` in snake_case, in the flag's units. */
export const CONFIG_LIMIT_KEYS: readonly ConfigLimitKey[] = RELAY_LIMIT_FLAGS.map((f) => ({
  key: f.flag.replaceAll('-', '_'),
  limit: f.limit,
  scale: f.scale,
  summary: f.summary,
}));

export const DEFAULT_RELAY_LISTEN = '0.0.0.0:4433';

/** What the command line gave explicitly (undefined: the flag was not given). */
export interface RelayFlagSettings {
  listen?: string;
  identity?: string;
  udpMedia?: boolean;
  mediaPlane?: boolean;
  stunAlternate?: string;
  statsSeconds?: number;
  limits: Partial<RelayLimits>;
  metrics?: string;
  debugTap?: string;
  drainTimeoutSeconds?: number;
  sourceIdPrefix?: number;
  /** --auth-url (and its --auth-fail-open, --auth-cache-seconds when given): replaces the file's [auth]. */
  auth?: { url: string; failOpen?: boolean; cacheSeconds?: number };
  /** --acl: replaces the file's [[rooms]]. */
  roomAcls?: NonNullable<RelayRunOptions['roomAcls']>;
  /** --peer, --trusted, --global-room: each replaces the file's list ([[peers]], [[trusted]], [[global_rooms]]). */
  peers?: PeerRelayConfig[];
  trusted?: string[];
  globalRooms?: GlobalRoomConfig[];
}

/** The options a config file and flags decide. */
export type RelaySettings = Pick<
  RelayRunOptions,
  'listen' | 'identityPath' | 'udpMedia' | 'mediaPlane' | 'limits' | 'stunAlternate' | 'statsIntervalMs' | 'metrics' | 'auth' | 'roomAcls' | 'drainTimeoutMs' | 'debugTap' | 'federation' | 'sourceIdPrefix'
>;

/**
 * Read and check a relay config file; undefined if it does not exist. A bad file throws a
 * UsageError naming the key and its line (core/relay/config.ts); an unreadable one a
 * ConfigError. `identity` comes back resolved against the file's directory.
 */
export async function readRelayConfig(path: string): Promise<ParsedRelayConfig | undefined> {
  let text: string;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new ConfigError(`${path} is not a file`);
    if (s.size > MAX_CONFIG_BYTES) throw new UsageError(`${path}: larger than ${MAX_CONFIG_BYTES} bytes: not a relay config`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof ConfigError || err instanceof UsageError) throw err;
    throw new ConfigError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const parsed = parseRelayConfig(text, { file: path, limitKeys: CONFIG_LIMIT_KEYS });
  const c = parsed.config;
  if (c.stunAlternate !== undefined) {
    try {
      parseStunAlternate(c.stunAlternate);
    } catch {
      throw new UsageError(`${path}:${parsed.lineOf('stun_alternate') ?? '?'}: stun_alternate: "${c.stunAlternate}" is not IP or IP:PORT`, {
        suggestions: ['a second address of this host, e.g. "203.0.113.2" or "203.0.113.2:3479" ("[2001:db8::2]:3479" for IPv6)'],
      });
    }
  }
  if (c.identity !== undefined) c.identity = resolve(dirname(path), c.identity);
  return parsed;
}

/** Flags over the file over the defaults. */
export function relaySettings(file: RelayConfig | undefined, flags: RelayFlagSettings, defaults: { identityPath: string }): RelaySettings {
  const f: RelayConfig = file ?? { limits: {}, rooms: [] };
  const statsSeconds = flags.statsSeconds ?? f.statsSeconds;
  const settings: RelaySettings = {
    listen: flags.listen ?? f.listen ?? DEFAULT_RELAY_LISTEN,
    identityPath: flags.identity ?? f.identity ?? defaults.identityPath,
    udpMedia: flags.udpMedia ?? f.udpMedia ?? true,
    mediaPlane: flags.mediaPlane ?? f.mediaPlane ?? true,
    limits: effectiveLimitOverrides(f, flags),
  };
  const stunAlternate = flags.stunAlternate ?? f.stunAlternate;
  if (stunAlternate !== undefined) settings.stunAlternate = stunAlternate;
  if (statsSeconds !== undefined) settings.statsIntervalMs = statsSeconds * 1000;
  const metrics = flags.metrics ?? f.metrics;
  if (metrics !== undefined) settings.metrics = metrics;
  const auth = effectiveAuth(f, flags);
  if (auth !== undefined) settings.auth = auth;
  const roomAcls = flags.roomAcls ?? f.rooms;
  if (roomAcls.length > 0) settings.roomAcls = roomAcls.map((r) => ({ ...r, allow: [...r.allow] }));
  const drainTimeoutSeconds = flags.drainTimeoutSeconds ?? f.drainTimeoutSeconds;
  if (drainTimeoutSeconds !== undefined) settings.drainTimeoutMs = Math.round(drainTimeoutSeconds * 1000);
  const sourceIdPrefix = flags.sourceIdPrefix ?? f.sourceIdPrefix;
  if (sourceIdPrefix !== undefined) settings.sourceIdPrefix = sourceIdPrefix;
  const debugTap = flags.debugTap ?? f.debugTap;
  if (debugTap !== undefined) settings.debugTap = debugTap;
  const federation = {
    peers: (flags.peers ?? f.peers ?? []).map((p) => ({ ...p })),
    trusted: [...(flags.trusted ?? f.trusted ?? [])],
    globalRooms: (flags.globalRooms ?? f.globalRooms ?? []).map((r) => ({ ...r })),
  };
  if (federation.peers.length > 0 || federation.trusted.length > 0 || federation.globalRooms.length > 0) settings.federation = federation;
  return settings;
}

/** The flags' auth over the file's: --auth-url replaces [auth]; its other flags default to the file's, then the defaults. */
function effectiveAuth(file: RelayConfig, flags: RelayFlagSettings): RelayRunOptions['auth'] {
  if (flags.auth === undefined) return file.auth === undefined ? undefined : { ...file.auth };
  return {
    url: flags.auth.url,
    failOpen: flags.auth.failOpen ?? file.auth?.failOpen ?? false,
    cacheSeconds: flags.auth.cacheSeconds ?? file.auth?.cacheSeconds ?? DEFAULT_AUTH_CACHE_SECONDS,
  };
}

function effectiveLimitOverrides(file: RelayConfig, flags: RelayFlagSettings): Partial<RelayLimits> {
  const out: Partial<RelayLimits> = { ...file.limits };
  for (const [name, value] of Object.entries(flags.limits) as [keyof RelayLimits, number | undefined][]) if (value !== undefined) out[name] = value;
  return out;
}

/** Before starting a relay that will write its example config: can it be created there? */
export async function checkConfigCreatable(path: string): Promise<void> {
  const dir = dirname(resolve(path));
  const s = await stat(dir).catch(() => undefined);
  if (!s?.isDirectory()) {
    throw new ConfigError(`cannot create ${path}: directory ${dir} does not exist`, { suggestions: [`mkdir -p ${dir}`] });
  }
}

/**
 * Write the commented example config (core/relay/config.ts) for this relay to `path`, mode
 * 0600, and return it parsed. Atomic, and never over an existing file: the text goes to a
 * temporary file in the same directory, flushed, which is then hard-linked to `path` (link,
 * unlike rename, fails if `path` exists: a file created meanwhile is kept) and removed. On a
 * file system without hard links it is renamed instead, after checking `path` is still free.
 */
export async function writeRelayConfigExample(path: string, facts: { listen: string; identity: string; fingerprint: string }): Promise<ParsedRelayConfig> {
  const text = relayConfigExample({ ...facts, limitKeys: CONFIG_LIMIT_KEYS });
  let parsed: ParsedRelayConfig;
  try {
    parsed = parseRelayConfig(text, { file: path, limitKeys: CONFIG_LIMIT_KEYS });
  } catch (err) {
    throw new InternalError(`the example relay config does not parse: ${errorMessage(err)}`, { cause: err });
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new ConfigError(`${path} appeared while the relay was starting: not overwritten`);
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
      if (await stat(path).catch(() => undefined)) throw new ConfigError(`${path} appeared while the relay was starting: not overwritten`);
      await rename(tmp, path);
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  return parsed;
}

/**
 * Hand the auth settings and room access lists to the running relay (`Relay.setAccess`,
 * core/relay/auth.ts and access.ts). Both fields are always given: `auth` undefined means no
 * auth, `roomAcls` empty means every room is open.
 */
export function applyAccess(relay: Relay, access: { auth?: RelayRunOptions['auth']; roomAcls: NonNullable<RelayRunOptions['roomAcls']> }): boolean {
  // No [auth] (any more): tokens are off. (Leaving `auth` out would keep the current setting.)
  relay.setAccess({ auth: access.auth ?? false, roomAcls: access.roomAcls });
  return true;
}

export interface ReloadOutcome {
  /** false: the file could not be read or had an error; the running config was kept. */
  ok: boolean;
  changes: ConfigChange[];
  error?: string;
}

export interface RelayConfigReloaderOptions {
  path: string;
  flags: RelayFlagSettings;
  /** The file's config the relay started with (empty if it wrote the example: see setBaseline). */
  baseline: RelayConfig;
  /** One line of the reload's log (the command timestamps it). */
  log(line: string): void;
}

/**
 * Reloads the config file on request (SIGHUP): what can change live is applied to the relay
 * (limits through Relay.setLimits, the stats interval through the run, auth and room access
 * lists through applyAccess), one log
 * line per changed key (old -> new, secrets hidden), one line naming the changed keys that
 * need a restart. A file that does not read or check is refused whole: the error is logged
 * and the running config stays. Requests during a reload are folded into one more reload.
 */
export class RelayConfigReloader {
  private relay?: Relay;
  private live?: RelayRunLive;
  private current: RelayConfig;
  private busy?: Promise<void>;
  private again = false;

  constructor(private readonly opts: RelayConfigReloaderOptions) {
    this.current = opts.baseline;
  }

  /** The config the relay runs with now (after writing the example, the example's). */
  setBaseline(config: RelayConfig): void {
    this.current = config;
  }

  attach(relay: Relay, live: RelayRunLive): void {
    this.relay = relay;
    this.live = live;
  }

  /** A SIGHUP: reload now, or once more after the reload in progress. */
  request(): void {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = (async () => {
      do {
        this.again = false;
        try {
          await this.reload();
        } catch (err) {
          // Nothing a reload does may end the relay (a signal handler's rejection would).
          this.opts.log(`relay:reload-failed ${errorMessage(err)}; the running config may be partly changed`);
        }
      } while (this.again);
      this.busy = undefined;
    })();
  }

  /** Resolves when no reload is in progress (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.busy) await this.busy;
  }

  async reload(): Promise<ReloadOutcome> {
    const { path, log } = this.opts;
    const relay = this.relay;
    if (!relay) {
      log(`relay:reload-failed the relay is still starting: ${path} not reloaded`);
      return { ok: false, changes: [], error: 'not running yet' };
    }
    let next: RelayConfig;
    try {
      const parsed = await readRelayConfig(path);
      if (!parsed) throw new ConfigError(`${path} does not exist`);
      next = parsed.config;
    } catch (err) {
      const message = errorMessage(err);
      log(`relay:reload-failed ${message.replaceAll('\n', ' | ')}; keeping the running config`);
      return { ok: false, changes: [], error: message };
    }
    const changes = diffRelayConfigs(this.current, next, CONFIG_LIMIT_KEYS);
    // The federation lists, checked before anything is applied (docs/federation.md).
    const federationChanged = changes.some((c) => FEDERATION_KEYS.includes(c.key));
    let federation: ReturnType<typeof resolveFederation> | undefined;
    if (federationChanged) {
      try {
        federation = resolveFederation(effectiveFederation(next, this.opts.flags));
      } catch (err) {
        const message = errorMessage(err);
        log(`relay:reload-failed ${path}: ${message}; keeping the running config`);
        return { ok: false, changes: [], error: message };
      }
    }
    try {
      relay.setLimits({ ...DEFAULT_RELAY_LIMITS, ...effectiveLimitOverrides(next, this.opts.flags) });
    } catch (err) {
      // The file's values were checked one by one; this is a combination the relay refuses.
      const message = errorMessage(err);
      log(`relay:reload-failed ${path}: ${message}; keeping the running config`);
      return { ok: false, changes: [], error: message };
    }
    const statsSeconds = this.opts.flags.statsSeconds ?? next.statsSeconds;
    if (changes.some((c) => c.key === 'stats')) this.live?.setStatsIntervalMs(statsSeconds === undefined ? undefined : statsSeconds * 1000);
    const accessChanged = changes.some((c) => c.key === 'auth' || c.key.startsWith('auth.') || c.key.startsWith('rooms['));
    const accessApplied = accessChanged
      ? applyAccess(relay, { auth: effectiveAuth(next, this.opts.flags), roomAcls: this.opts.flags.roomAcls ?? next.rooms })
      : true;
    if (federation) relay.setFederation(federation);
    if (changes.some((c) => c.key === 'media_plane')) await relay.setMediaPlane(this.opts.flags.mediaPlane ?? next.mediaPlane ?? true);
    const restart: string[] = [];
    for (const c of changes) {
      if (!c.live) {
        restart.push(c.key);
        continue;
      }
      const flag = overridingFlag(c.key, this.opts.flags);
      if (flag) log(`relay:reload ${c.key}: ${c.from} -> ${c.to} in the file, but ${flag} on the command line overrides it`);
      else if (!accessApplied && (c.key === 'auth' || c.key.startsWith('auth.') || c.key.startsWith('rooms['))) log(`relay:reload ${c.key}: ${c.from} -> ${c.to} not applied: this relay has no auth or room access control`);
      else log(`relay:reload ${c.key}: ${c.from} -> ${c.to}`);
    }
    if (restart.length > 0) log(`relay:reload changed in the file but need a restart: ${restart.join(', ')}`);
    log(`relay:reload ${path}: ${changes.length === 0 ? 'no changes' : `${changes.length} change${changes.length === 1 ? '' : 's'}, ${changes.length - restart.length} applied`}`);
    this.current = next;
    return { ok: true, changes };
  }
}

const FEDERATION_KEYS = ['peers', 'trusted', 'global_rooms'];

/** The federation lists in force: each flag's list over the file's. */
function effectiveFederation(file: RelayConfig, flags: RelayFlagSettings): FederationSettings {
  return {
    peers: flags.peers ?? file.peers ?? [],
    trusted: flags.trusted ?? file.trusted ?? [],
    globalRooms: flags.globalRooms ?? file.globalRooms ?? [],
  };
}

/** `--max-room-size 5` if a flag given on the command line decides this live key. */
function overridingFlag(key: string, flags: RelayFlagSettings): string | undefined {
  if (key === 'peers' && flags.peers !== undefined) return '--peer';
  if (key === 'trusted' && flags.trusted !== undefined) return '--trusted';
  if (key === 'global_rooms' && flags.globalRooms !== undefined) return '--global-room';
  if (key === 'stats') return flags.statsSeconds === undefined ? undefined : `--stats ${flags.statsSeconds}`;
  if (key === 'media_plane' && flags.mediaPlane !== undefined) return flags.mediaPlane ? '--media-plane' : '--no-media-plane';
  if ((key === 'auth' || key.startsWith('auth.')) && flags.auth !== undefined) return '--auth-url';
  if (key.startsWith('rooms[') && flags.roomAcls !== undefined) return '--acl';
  if (!key.startsWith('limits.')) return undefined;
  const spec = CONFIG_LIMIT_KEYS.find((k) => `limits.${k.key}` === key);
  const value = spec ? flags.limits[spec.limit] : undefined;
  if (!spec || value === undefined) return undefined;
  return `--${spec.key.replaceAll('_', '-')} ${value / spec.scale}`;
}

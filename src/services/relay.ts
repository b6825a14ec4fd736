/** `wzp relay`: run a relay until aborted, with a persistent identity. */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadOrCreateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay, type RelayEvent, type RelayMetrics } from '../../core/relay/relay.js';
import { parseDebugTapTarget } from '../../core/relay/debug-tap.js';
import type { RelayLimits } from '../../core/relay/limits.js';
import type { RoomAcl } from '../../core/relay/access.js';
import { isIP } from 'node:net';
import { UsageError } from '../../core/errors.js';
import { formatHostPort, parseHostPort } from '../../core/transport/quic.js';
import { parseMetricsListen, startMetricsServer, type RunningMetricsServer } from '../../core/relay/metrics-server.js';
import { drainRelay, resolveDrainTimeoutMs, type DrainReport } from './relay-drain.js';
import type { FederationEvent } from '../../core/federation/federation.js';
import { resolveFederation, type FederationSettings } from './relay-federation.js';

export interface RelayRunOptions {
  listen: string;
  identityPath: string;
  /** Offer clients the UDP media path (default true; core/transport/udp-media.ts). */
  udpMedia?: boolean;
  /** Forward room media in the media plane thread (default true; core/relay/media-plane.ts). */
  mediaPlane?: boolean;
  /** Limits other than the defaults (core/relay/limits.ts). */
  limits?: Partial<RelayLimits>;
  /**
   * `--stun-alternate IP[:PORT]`: a second address of this host (and port) for RFC 5780 STUN
   * (core/nat/stun-server.ts). Without it the relay answers plain Binding requests on its port.
   */
  stunAlternate?: string;
  /**
   * Require a token from every client, validated by POST to `url` (core/relay/auth.ts;
   * docs/relay-operations.md "Token auth"). `failOpen`: admit clients when the service is
   * unavailable. `cacheSeconds`: how long answers are kept (0: never).
   */
  auth?: { url: string; failOpen: boolean; cacheSeconds: number };
  /** Rooms restricted to listed identities (core/relay/access.ts; "Room ACLs"). */
  roomAcls?: RoomAcl[];
  /**
   * Relay federation (docs/federation.md; ./relay-federation.ts): relays to dial, relays to
   * accept links from, rooms shared with them. Absent or all empty: no federation.
   */
  federation?: FederationSettings;
  /** Link events (up, down, dial failures, refusals): always worth a log line, -v or not. */
  onFederationEvent?(event: FederationEvent): void;
  /** The media plane did not start or stopped working (core/relay/media-plane.ts): what onEvent would otherwise get. */
  onMediaPlane?(event: Extract<RelayEvent, { type: 'relay:media-plane' }>): void;
  /**
   * `--metrics HOST:PORT`: serve Prometheus metrics, /healthz and /readyz over HTTP there
   * (core/relay/metrics-server.ts; docs/relay-operations.md#metrics).
   */
  metrics?: string;
  /**
   * `--debug-tap ROOM|*`: log each media packet of that room (a name, hashed as clients hash
   * it, or a 32-hex room id) or of every room (`*`) through onTap, rate-limited
   * (core/relay/debug-tap.ts). Header metadata only: nothing is decrypted.
   */
  debugTap?: string;
  /** Where tap lines go (the CLI: stderr as `ISO-time relay:tap {json}`); needed with debugTap. */
  onTap?(fields: Record<string, unknown>): void;
  /** Stop at once (Ctrl-C, a second SIGTERM): the summary is still returned. */
  signal: AbortSignal;
  /**
   * Start draining (the first SIGTERM; ./relay-drain.ts): no new sessions, the drain notice to
   * every client, then stop once the rooms and calls are empty or after drainTimeoutMs.
   */
  drain?: AbortSignal;
  /** How long a draining relay waits for its sessions to end, ms (default 30 s; 0: stop right after the notice). */
  drainTimeoutMs?: number;
  /** The high 16 bits of this relay's members' source ids (default: from its fingerprint; core/relay/rooms.ts). */
  sourceIdPrefix?: number;
  /** Draining started (told before waiting). */
  onDraining?(info: { timeoutMs: number; sessions: number; connections: number }): void;
  /** Once listening. If it throws (or rejects), the relay stops and runRelay rethrows. */
  onStarted(info: { address: string; fingerprint: string; identityPath: string; identityCreated: boolean; stunEndpoints: string[]; metricsUrl?: string }): void | Promise<void>;
  /**
   * The running relay, once onStarted returned, and the run's own live settings: for live
   * changes (a config reload, src/services/relay-config.ts).
   */
  onRunning?(relay: Relay, live: RelayRunLive): void;
  onEvent?(event: RelayEvent): void;
  /** Call onStats this often (ms) while running; 0 or absent: never. */
  statsIntervalMs?: number;
  onStats?(stats: RelayStats): void;
}

/** What a running relay's run can change live (besides the Relay's own setters). */
export interface RelayRunLive {
  /** Call onStats this often from now on (ms); 0 or undefined: stop. Ignored once the relay stops. */
  setStatsIntervalMs(ms: number | undefined): void;
}

/** What a relay did over the last stats interval, and its state now. */
export interface RelayStats {
  intervalMs: number;
  connectionsOpen: number;
  roomsOpen: number;
  /** Room datagrams forwarded per second (one per receiving member). */
  forwardedPerSecond: number;
  echoedPerSecond: number;
  /** Of the media received per second, how much came on the UDP media path (the rest in QUIC). */
  onUdpPathPerSecond: number;
  /** Over the interval: not sent (queue full, too large, closed), purged as stale, malformed or unknown signals. */
  dropped: number;
  purged: number;
  signalsDropped: number;
  /** Over the interval: input refused or dropped by the QUIC gate or a limit (all reasons). */
  refused: number;
  /** The process's memory now, MiB: resident, and V8's heap (held, and live after the last collection). */
  memory: { rssMb: number; heapTotalMb: number; heapUsedMb: number };
}

/** The stats over the interval from `before` to `now` (two metrics snapshots). */
export function relayStats(before: RelayMetrics, now: RelayMetrics, intervalMs: number): RelayStats {
  const perSecond = (n: number) => Math.round((n * 1000) / Math.max(1, intervalMs));
  return {
    intervalMs: Math.round(intervalMs),
    connectionsOpen: now.connectionsOpen,
    roomsOpen: now.roomsOpen,
    forwardedPerSecond: perSecond(now.datagramsForwarded - before.datagramsForwarded),
    echoedPerSecond: perSecond(now.datagramsEchoed - before.datagramsEchoed),
    onUdpPathPerSecond: perSecond(now.datagramsOnUdpPath - before.datagramsOnUdpPath),
    dropped: now.datagramsDropped - before.datagramsDropped,
    purged: now.datagramsPurged - before.datagramsPurged,
    signalsDropped: now.signalsMalformed + now.signalsUnknown - before.signalsMalformed - before.signalsUnknown,
    refused: totalRefused(now) - totalRefused(before),
    memory: memoryNow(),
  };
}

function memoryNow(): RelayStats['memory'] {
  const m = process.memoryUsage();
  const mb = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return { rssMb: mb(m.rss), heapTotalMb: mb(m.heapTotal), heapUsedMb: mb(m.heapUsed) };
}

function totalRefused(m: RelayMetrics): number {
  let n = 0;
  for (const v of Object.values(m.refused)) n += v;
  return n;
}

export interface RelayRunReport {
  address: string;
  /** Where it answered STUN: its own address, and in RFC 5780 mode A:Q, B:P, B:Q. */
  stunEndpoints: string[];
  fingerprint: string;
  identityPath: string;
  uptimeMs: number;
  /** The limits in force (defaults and flags). */
  limits: RelayLimits;
  /** Where /metrics was served (`--metrics`), if it was. */
  metricsUrl?: string;
  metrics: RelayMetrics;
  /** Present when the relay drained before it stopped (SIGTERM). */
  drain?: DrainReport;
}

/**
 * The `wzp relay` flag for each limit: name, the limit it sets, and the unit conversion
 * (flags take whole KiB and MiB where the limit is in bytes). docs/relay-limits.md explains each.
 */
export const RELAY_LIMIT_FLAGS = [
  { flag: 'max-connections', limit: 'connections', scale: 1, summary: 'Connections open at once, in all (handshakes included).' },
  { flag: 'max-connections-per-ip', limit: 'connectionsPerSource', scale: 1, summary: 'Connections from one IPv4 address or IPv6 /64; more are closed with the reason.' },
  { flag: 'max-handshakes', limit: 'handshakes', scale: 1, summary: 'QUIC handshakes in progress, in all.' },
  { flag: 'max-handshakes-per-ip', limit: 'handshakesPerSource', scale: 1, summary: 'QUIC handshakes in progress from one address.' },
  { flag: 'max-retries-per-ip', limit: 'retriesPerSourcePerSecond', scale: 1, summary: 'Retry (address validation) packets per second to one address.' },
  { flag: 'max-retries', limit: 'retriesPerSecond', scale: 1, summary: 'Retry packets per second, in all.' },
  { flag: 'join-burst', limit: 'joinBurst', scale: 1, summary: 'Joins one connection may make at once...' },
  { flag: 'max-joins-per-minute', limit: 'joinsPerMinute', scale: 1, summary: '...and then per minute (each join, and the leave after it, makes every member rotate keys).' },
  { flag: 'source-join-burst', limit: 'sourceJoinBurst', scale: 1, summary: 'Joins all connections from one address may make at once...' },
  { flag: 'max-source-joins-per-minute', limit: 'sourceJoinsPerMinute', scale: 1, summary: '...and then per minute.' },
  { flag: 'signal-burst', limit: 'signalBurst', scale: 1, summary: 'Signalling requests one connection may make at once...' },
  { flag: 'max-signals-per-second', limit: 'signalsPerSecond', scale: 1, summary: '...and then per second.' },
  { flag: 'max-signal-kib-per-second', limit: 'signalBytesPerSecond', scale: 1024, summary: 'Signalling KiB one connection may send per second.' },
  { flag: 'max-room-size', limit: 'roomSize', scale: 1, summary: 'Members in one room (at most 64).' },
  { flag: 'max-room-members-per-ip', limit: 'roomMembersPerSource', scale: 1, summary: 'Members of one room from one address.' },
  { flag: 'max-member-kbps', limit: 'memberKbps', scale: 1, summary: 'Media one member may send to be forwarded, kbit/s.' },
  { flag: 'max-member-pps', limit: 'memberPacketsPerSecond', scale: 1, summary: 'Media packets one member may send to be forwarded, per second.' },
  { flag: 'signal-buffer-kib', limit: 'signalBufferBytes', scale: 1024, summary: 'KiB of unfinished signal frames one connection may hold.' },
  { flag: 'signal-buffer-total-mib', limit: 'signalBufferTotalBytes', scale: 1024 * 1024, summary: 'MiB of unfinished signal frames all connections together may hold.' },
  { flag: 'max-registrations', limit: 'registrations', scale: 1, summary: 'Identities registered (wzp listen, wzp call --to) at once, in all.' },
  { flag: 'max-registrations-per-ip', limit: 'registrationsPerSource', scale: 1, summary: 'Identities registered at once from one address.' },
  { flag: 'offer-burst', limit: 'offerBurst', scale: 1, summary: 'Call offers one connection may send at once...' },
  { flag: 'max-offers-per-minute', limit: 'offersPerMinute', scale: 1, summary: '...and then per minute.' },
  { flag: 'max-pending-calls-per-callee', limit: 'pendingCallsPerCallee', scale: 1, summary: 'Calls ringing one callee at once; more offers are refused.' },
  { flag: 'max-calls', limit: 'calls', scale: 1, summary: 'Calls (ringing or answered) tracked at once, in all.' },
] as const satisfies readonly { flag: string; limit: keyof RelayLimits; scale: number; summary: string }[];

/** The limits the flags set (flags left out keep the defaults). */
export function relayLimitOverrides(flags: Partial<Record<(typeof RELAY_LIMIT_FLAGS)[number]['flag'], number | undefined>>): Partial<RelayLimits> {
  const out: Partial<RelayLimits> = {};
  for (const f of RELAY_LIMIT_FLAGS) {
    const value = flags[f.flag];
    if (value !== undefined) out[f.limit] = value * f.scale;
  }
  return out;
}

/**
 * Keep V8's young generation at its starting size in a relay process. An attack is a burst
 * of short-lived garbage (a refused request, a handshake); V8 answers a burst by doubling the
 * young generation, up to 3 x 16 MiB here, and gives that memory back only when its memory
 * reducer runs, which an idle process may not do for a minute or more: a relay that had
 * refused 1,000 join requests sat at +45 MB RSS 30 s later. With no growth it stays within
 * ~20% (`npm run bench hostile`), at no measurable CPU cost: the same attack took the same
 * relay CPU (3.3 s both ways), and the forwarding benchmark is unchanged. This flag is one
 * V8 reads whenever it would grow the young generation, so setting it at run time works.
 */
function limitYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * What makes a check's worth of activity a burst (an attack, a crowd arriving or leaving):
 * connections opened or closed, or input refused. One connection weighs what 16 refusals do.
 */
const BURST_EVENTS = 256;
const CONNECTION_WEIGHT = 16;
const HEAP_CHECK_MS = 5_000;

/**
 * Give back what a burst left behind. What survives the young generation (handshakes, refused
 * requests, a filling room's roster updates: short-lived, but not short enough) ends up in
 * V8's old space, which V8 collects only when it grows past its limit or its memory reducer
 * runs: after a roster-overflow attack the relay held ~30 MB of dead objects for minutes,
 * with calls going on. So once a burst of connections and refusals has passed (the check
 * after one saw few), the relay runs a full collection, and again at the next check: the
 * second collects what the first one's finalizers released, native memory included. Each is
 * tens of milliseconds on such a heap, and only after bursts. Returns the stop function.
 */
function trimHeapAfterBursts(activity: () => number): () => void {
  let gc: (() => void) | undefined;
  try {
    v8.setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  } catch {
    return () => undefined;
  }
  const collect = gc;
  let last = activity();
  let burst = false;
  let collectionsDue = 0;
  const timer = setInterval(() => {
    const now = activity();
    const events = now - last;
    last = now;
    if (events >= BURST_EVENTS) {
      burst = true;
      return;
    }
    if (burst) {
      burst = false;
      collectionsDue = 2;
    }
    if (collectionsDue > 0) {
      collectionsDue--;
      collect();
      // After the second: hand the C allocator's freed pages (quiche's and BoringSSL's, of the
      // connections just gone) back to the system.
      if (collectionsDue === 0) void releaseNativeHeap();
    }
  }, HEAP_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * glibc's malloc_trim(0), through koffi (a dependency already): freed native memory otherwise
 * stays in the process's heap arenas (measured: ~20 MB after 70 connections came and went).
 * Not glibc, or no koffi: nothing happens.
 */
async function releaseNativeHeap(): Promise<void> {
  if (process.platform !== 'linux') return;
  try {
    const koffi = (await import('koffi')).default;
    const trim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as (pad: number) => number;
    trim(0);
  } catch {
    // musl or another libc: it keeps its own policy.
  }
}

export async function runRelay(opts: RelayRunOptions): Promise<RelayRunReport> {
  limitYoungGeneration();
  const drainTimeoutMs = resolveDrainTimeoutMs(opts.drainTimeoutMs);
  const listen = parseHostPort(opts.listen, '0.0.0.0');
  const alternate = opts.stunAlternate === undefined ? undefined : parseStunAlternate(opts.stunAlternate);
  // A bad --metrics value is a usage error before anything is created or bound.
  if (opts.metrics !== undefined) parseMetricsListen(opts.metrics);
  const tapTarget = opts.debugTap === undefined ? undefined : parseDebugTapTarget(opts.debugTap);
  // Bad federation entries are usage errors before anything is created or bound.
  const f = opts.federation;
  const federation = f && (f.peers.length > 0 || f.trusted.length > 0 || f.globalRooms.length > 0) ? resolveFederation(f) : undefined;
  const { identity, created } = await loadOrCreateIdentity(opts.identityPath, { create: true });
  const tls = await deriveTlsCertificate(identity.seed);
  const onEvent =
    opts.onFederationEvent === undefined && opts.onMediaPlane === undefined
      ? opts.onEvent
      : (e: RelayEvent) =>
          e.type.startsWith('federation:')
            ? opts.onFederationEvent?.(e as FederationEvent)
            : e.type === 'relay:media-plane' && opts.onMediaPlane
              ? opts.onMediaPlane(e)
              : opts.onEvent?.(e);
  const relay = await Relay.start({
    listen,
    tls,
    fingerprint: tls.fingerprint,
    ...(opts.sourceIdPrefix === undefined ? {} : { sourcePrefix: opts.sourceIdPrefix }),
    onEvent,
    ...(federation ? { federation } : {}),
    udpMedia: opts.udpMedia !== false,
    mediaPlane: opts.mediaPlane !== false,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.auth ? { auth: opts.auth } : {}),
    ...(opts.roomAcls?.length ? { roomAcls: opts.roomAcls } : {}),
    ...(tapTarget ? { debugTap: { target: tapTarget, write: opts.onTap ?? (() => undefined) } } : {}),
    stun: { alternate },
  });
  const stopTrimming = trimHeapAfterBursts(() => {
    const m = relay.metrics;
    const closed = m.connectionsTotal - m.connectionsOpen;
    return (m.connectionsTotal + closed) * CONNECTION_WEIGHT + totalRefused(m);
  });
  let metricsServer: RunningMetricsServer | undefined;
  if (opts.metrics !== undefined) {
    try {
      metricsServer = await serveRelayMetrics(relay, opts.metrics);
    } catch (err) {
      stopTrimming();
      await relay.stop();
      throw err;
    }
  }
  const started = performance.now();
  const address = formatHostPort(relay.address);
  const stunEndpoints = relay.stunEndpoints.map((e) => formatHostPort({ host: e.address, port: e.port }));
  try {
    await opts.onStarted({
      address,
      fingerprint: tls.fingerprint,
      identityPath: opts.identityPath,
      identityCreated: created,
      stunEndpoints,
      ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
    });
  } catch (err) {
    stopTrimming();
    await metricsServer?.close();
    await relay.stop();
    throw err;
  }
  let statsTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const { onStats } = opts;
  const setStatsIntervalMs = (ms: number | undefined): void => {
    if (statsTimer) clearInterval(statsTimer);
    statsTimer = undefined;
    if (stopped || !ms || !onStats) return;
    let last = relay.metrics;
    let lastAt = performance.now();
    statsTimer = setInterval(() => {
      const now = relay.metrics;
      const at = performance.now();
      onStats(relayStats(last, now, at - lastAt));
      last = now;
      lastAt = at;
    }, ms);
  };
  setStatsIntervalMs(opts.statsIntervalMs);
  opts.onRunning?.(relay, { setStatsIntervalMs });
  const how = await new Promise<'stop' | 'drain'>((resolve) => {
    if (opts.signal.aborted) return resolve('stop');
    if (opts.drain?.aborted) return resolve('drain');
    opts.signal.addEventListener('abort', () => resolve('stop'), { once: true });
    opts.drain?.addEventListener('abort', () => resolve('drain'), { once: true });
  });
  let drain: DrainReport | undefined;
  if (how === 'drain') {
    opts.onDraining?.({ timeoutMs: drainTimeoutMs, sessions: relay.sessionsInProgress, connections: relay.metrics.connectionsOpen });
    drain = await drainRelay(relay, { timeoutMs: drainTimeoutMs, stop: opts.signal, startedAt: started });
  }
  setStatsIntervalMs(undefined);
  stopped = true;
  stopTrimming();
  await relay.stop();
  await metricsServer?.close();
  return {
    address,
    stunEndpoints,
    fingerprint: tls.fingerprint,
    identityPath: opts.identityPath,
    uptimeMs: Math.round(performance.now() - started),
    limits: { ...relay.currentLimits },
    ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
    metrics: relay.metrics,
    ...(drain ? { drain } : {}),
  };
}

/**
 * The relay's metrics endpoint on `listen` (core/relay/metrics-server.ts): its registry's
 * exposition, heartbeats that read its stats and check it still serves (`address` throws once
 * stopped), and 503 on /readyz while it drains (the `draining` getter, where the relay has one).
 */
export function serveRelayMetrics(relay: Relay, listen: string, timing: { heartbeatMs?: number; staleAfterMs?: number } = {}): Promise<RunningMetricsServer> {
  const registry = relay.metricsRegistry.prometheus();
  return startMetricsServer({
    listen,
    metrics: () => registry.metrics(),
    contentType: registry.contentType,
    refresh: () => {
      void relay.metrics;
      void relay.address;
    },
    isDraining: () => (relay as { readonly draining?: boolean }).draining === true,
    ...timing,
  });
}

/** `IP` or `IP:PORT` (`[IPv6]:PORT`; a bare IPv6 address has no port). */
export function parseStunAlternate(text: string): { address: string; port?: number } {
  const t = text.trim();
  if (isIP(t) !== 0) return { address: t };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d+\.\d+\.\d+\.\d+)):(\d{1,5})$/.exec(t);
  const address = m?.[1] ?? m?.[2];
  const port = m ? Number(m[3]) : NaN;
  if (!address || isIP(address) === 0 || !(port >= 1 && port <= 65535)) {
    throw new UsageError(`--stun-alternate "${text}" is not IP or IP:PORT`, {
      suggestions: ['a second address of this host, e.g. --stun-alternate 203.0.113.2 or 203.0.113.2:3479 ([2001:db8::2]:3479 for IPv6)'],
    });
  }
  return { address, port };
}

/** `wzp relay`: run a relay until aborted, with a persistent identity. */
import { loadOrCreateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay, type RelayEvent, type RelayMetrics } from '../../core/relay/relay.js';
import { formatHostPort, parseHostPort } from '../../core/transport/quic.js';

export interface RelayRunOptions {
  listen: string;
  identityPath: string;
  /** Offer clients the UDP media path (default true; core/transport/udp-media.ts). */
  udpMedia?: boolean;
  signal: AbortSignal;
  onStarted(info: { address: string; fingerprint: string; identityPath: string; identityCreated: boolean }): void;
  onEvent?(event: RelayEvent): void;
  /** Call onStats this often (ms) while running; 0 or absent: never. */
  statsIntervalMs?: number;
  onStats?(stats: RelayStats): void;
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
  };
}

export interface RelayRunReport {
  address: string;
  fingerprint: string;
  identityPath: string;
  uptimeMs: number;
  metrics: RelayMetrics;
}

export async function runRelay(opts: RelayRunOptions): Promise<RelayRunReport> {
  const listen = parseHostPort(opts.listen, '0.0.0.0');
  const { identity, created } = await loadOrCreateIdentity(opts.identityPath, { create: true });
  const tls = await deriveTlsCertificate(identity.seed);
  const relay = await Relay.start({ listen, tls, fingerprint: tls.fingerprint, onEvent: opts.onEvent, udpMedia: opts.udpMedia !== false });
  const started = performance.now();
  const address = formatHostPort(relay.address);
  opts.onStarted({ address, fingerprint: tls.fingerprint, identityPath: opts.identityPath, identityCreated: created });
  let statsTimer: NodeJS.Timeout | undefined;
  const { statsIntervalMs, onStats } = opts;
  if (statsIntervalMs && onStats) {
    let last = { ...relay.metrics };
    let lastAt = performance.now();
    statsTimer = setInterval(() => {
      const now = { ...relay.metrics };
      const at = performance.now();
      onStats(relayStats(last, now, at - lastAt));
      last = now;
      lastAt = at;
    }, statsIntervalMs);
  }
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) resolve();
    else opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  if (statsTimer) clearInterval(statsTimer);
  await relay.stop();
  return {
    address,
    fingerprint: tls.fingerprint,
    identityPath: opts.identityPath,
    uptimeMs: Math.round(performance.now() - started),
    metrics: { ...relay.metrics },
  };
}

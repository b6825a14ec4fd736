/** `wzp relay`: run a relay until aborted, with a persistent identity. */
import { loadOrCreateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay, type RelayEvent, type RelayMetrics } from '../../core/relay/relay.js';
import { formatHostPort, parseHostPort } from '../../core/transport/quic.js';

export interface RelayRunOptions {
  listen: string;
  identityPath: string;
  signal: AbortSignal;
  onStarted(info: { address: string; fingerprint: string; identityPath: string; identityCreated: boolean }): void;
  onEvent?(event: RelayEvent): void;
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
  const relay = await Relay.start({ listen, tls, fingerprint: tls.fingerprint, onEvent: opts.onEvent });
  const started = performance.now();
  const address = formatHostPort(relay.address);
  opts.onStarted({ address, fingerprint: tls.fingerprint, identityPath: opts.identityPath, identityCreated: created });
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) resolve();
    else opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await relay.stop();
  return {
    address,
    fingerprint: tls.fingerprint,
    identityPath: opts.identityPath,
    uptimeMs: Math.round(performance.now() - started),
    metrics: { ...relay.metrics },
  };
}

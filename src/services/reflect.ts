/** `wzp reflect RELAY`: the client's address as the relay sees it. */
import { connectToRelay } from './relay-connect.js';

export interface ReflectReport {
  relay: string;
  fingerprint: string;
  /** The server-reflexive address `ip:port` (IPv6 in brackets). */
  observedAddress: string;
  /** Our local socket address. */
  localAddress: string;
  rttMs: number;
}

export async function reflect(opts: {
  relay: string;
  configDir: string;
  relayFingerprint?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}): Promise<ReflectReport> {
  const { session, fingerprint } = await connectToRelay(opts);
  try {
    const t0 = performance.now();
    const observedAddress = await session.reflect({ signal: opts.signal, timeoutMs: opts.timeoutMs });
    const rttMs = Math.round((performance.now() - t0) * 100) / 100;
    const local = session.localAddress;
    return {
      relay: session.label,
      fingerprint,
      observedAddress,
      localAddress: local.host.includes(':') ? `[${local.host}]:${local.port}` : `${local.host}:${local.port}`,
      rttMs,
    };
  } finally {
    await session.close();
  }
}

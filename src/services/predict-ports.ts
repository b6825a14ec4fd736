/**
 * `wzp predict-ports`: Binding requests one after another from ONE fresh socket to several
 * STUN endpoints (an RFC 5780 server contributes its four), how the NAT allocated the
 * external ports, and the next ones predicted (core/nat/netcheck.ts walkPortAllocation).
 * Relays count as STUN servers: they answer STUN on their port (core/nat/stun-server.ts),
 * and one started with --stun-alternate contributes its four endpoints.
 */
import { UsageError } from '../../core/errors.js';
import { type PortAllocationWalkSummary, walkPortAllocation } from '../../core/nat/netcheck.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { StunClient } from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { loadNatConfig, noServersError, resolveEndpoints, selectServers } from './nat-config.js';

/** Bound on the endpoints one run probes (4 per RFC 5780 server). */
export const MAX_PREDICT_ENDPOINTS = 16;

export interface PredictPortsRequest {
  stun?: string[];
  /** Relays, asked as STUN servers (no QUIC connection). */
  relays?: string[];
  configDir: string;
  count: number;
  probeTimeoutMs: number;
  signal?: AbortSignal;
}

export interface PredictPortsReport extends PortAllocationWalkSummary {
  /** The STUN servers, then the relays, as given. */
  servers: string[];
}

export async function predictPortsReport(req: PredictPortsRequest): Promise<PredictPortsReport> {
  const servers = selectServers({ stun: req.stun, relay: req.relays }, await loadNatConfig(req.configDir), { allOrNothing: true });
  const given = [...servers.stun, ...servers.relays.map((r) => r.address)];
  if (given.length === 0) throw noServersError('predict-ports', servers.configFile, 'any', 'pass --stun HOST:PORT or --relay HOST:PORT (repeatable, or comma-separated)');
  const resolved = await Promise.all(given.map(resolveEndpoints));
  const family = resolved.every((list) => list.some(isV4)) ? 'udp4' : resolved.every((list) => list.some((e) => !isV4(e))) ? 'udp6' : undefined;
  if (family === undefined) {
    throw new UsageError('the STUN servers mix IPv4-only and IPv6-only addresses, but one socket has one address family', {
      suggestions: ['give servers of one family'],
    });
  }
  const endpoints = resolved.map((list) => list.find((e) => isV4(e) === (family === 'udp4')) as Endpoint);
  const socket = await openUdpSocket(family);
  const client = new StunClient(socket);
  try {
    const walk = await walkPortAllocation(client, socket.address().port, endpoints, {
      count: req.count,
      maxEndpoints: MAX_PREDICT_ENDPOINTS,
      probeTimeoutMs: req.probeTimeoutMs,
      signal: req.signal,
    });
    return { servers: given, ...walk };
  } finally {
    client.close();
    await closeUdpSocket(socket);
  }
}

function isV4(endpoint: Endpoint): boolean {
  return !endpoint.address.includes(':');
}

/**
 * Our candidates for one 1:1 call, on the relay connection's own socket (docs/direct-calls.md,
 * "Candidates"): host candidates of our interfaces, the relay's observation of the socket,
 * what STUN servers see of it, and a port mapping made in the background (sent to the peer as
 * a candidate update when ready, deleted at hang-up). None with --relay-only; only the
 * loopback socket when the relay is on loopback (both ends are on this machine: nothing is
 * sent anywhere else). Front ends (the CLI, a browser bridge) give it what they resolved:
 * the STUN servers' addresses, the gateway.
 */
import { isIP } from 'node:net';
import { errorMessage } from '../errors.js';
import { PortMapper } from '../nat/portmap.js';
import { StunClient, type Endpoint } from '../nat/stun.js';
import { candidatePriority, createMappedCandidate, gatherCandidates, parseEndpoint, stunObservations, type Candidate as P2pCandidate } from '../p2p/candidates.js';
import { DEFAULT_PRIME_TTL, socketFamilies, toWireCandidate, type SocketType } from '../p2p/direct-link.js';
import { stunClass } from '../transport/demux.js';
import { socketUdp, unmapIPv4 } from '../transport/quic.js';
import { MAX_CANDIDATES, type Candidate } from '../wire/candidate.js';
import type { DirectPathOptions } from './direct-call.js';
import type { RelaySession } from './relay-session.js';

/** Our candidates for one call, as sent (wire) and as the direct path uses them. */
export interface GatheredForCall {
  wire: Candidate[];
  /** Absent with --relay-only: no direct path is tried. */
  direct?: DirectPathOptions;
  /**
   * Stop making or renewing the call's port mapping and delete it (idempotent; never throws;
   * bounded by the gateway's timeouts). Says what became of it.
   */
  releaseMapping(): Promise<PortMappingInfo>;
}

export type PortMappingInfo =
  | { status: 'off'; reason: 'relay-only' | 'loopback-relay' | 'disabled' }
  /** No protocol answered in time (or the gateway gave an unusable address). */
  | { status: 'failed'; error: string }
  | { status: 'mapped'; protocol: string; external: string; lifetimeS: number; deleted: boolean; deleteError?: string };

export interface CallCandidateOptions {
  /** Gather nothing and map nothing: no address of ours leaves the machine. */
  relayOnly?: boolean;
  /** The relay's host as dialled: a loopback relay means both ends are on this machine. */
  relayHost: string;
  /** Ask the gateway for a mapping of the call's port (default true). */
  portMapping?: boolean;
  /** The gateway to ask (default: the default route's). */
  gateway?: string;
  /** The STUN servers' addresses to ask from the call's socket (at most MAX_STUN_ADDRESSES). */
  stunServers?: () => Promise<readonly Endpoint[]>;
  /** Ctrl-C: stops the asking (and the mapping's making). */
  signal: AbortSignal;
}

/** How long a port mapping for a call may take before the call goes on without one. */
const PORT_MAPPING_WAIT_MS = 6_000;
/** How long asking the relay for our reflexive address may hold up an offer or answer. */
const REFLECT_TIMEOUT_MS = 1000;
/** How long the STUN servers may hold up an offer or answer. */
const STUN_TIMEOUT_MS = 1000;
/** STUN server addresses asked for one call at most. */
export const MAX_STUN_ADDRESSES = 8;

export async function gatherForCall(session: RelaySession, o: CallCandidateOptions): Promise<GatheredForCall> {
  const off = (reason: 'relay-only' | 'loopback-relay' | 'disabled') => () => Promise.resolve<PortMappingInfo>({ status: 'off', reason });
  if (o.relayOnly) return { wire: [], releaseMapping: off('relay-only') };
  const socketType = session.socket.type as SocketType;
  const port = session.localAddress.port;
  const families = socketFamilies(socketType);
  if (isLoopbackHost(o.relayHost)) {
    const address = o.relayHost.includes(':') ? '::1' : '127.0.0.1';
    const family = address === '::1' ? 'IPv6' : 'IPv4';
    const local: P2pCandidate[] = [{ type: 'host', address, port, family, priority: candidatePriority('host', family) }];
    return {
      wire: local.map(toWireCandidate),
      direct: { demux: session.demux, socketType, localCandidates: local, allowLoopback: true, primeTtl: DEFAULT_PRIME_TTL },
      releaseMapping: off('loopback-relay'),
    };
  }
  const mapping = o.portMapping === false || !families.includes('IPv4') ? undefined : startPortMapping(port, o);
  const [observed, stunned] = await Promise.all([
    session
      .reflect({ timeoutMs: REFLECT_TIMEOUT_MS, signal: o.signal })
      .then((text) => parseEndpoint(text))
      .catch(() => undefined),
    stunReflexive(session, o, families),
  ]);
  const { candidates } = gatherCandidates({ port, families, reflexive: [...(observed ? [observed] : []), ...stunned] });
  const local = candidates.slice(0, MAX_CANDIDATES);
  return {
    wire: local.map(toWireCandidate),
    direct: {
      demux: session.demux,
      socketType,
      localCandidates: local,
      hostOptions: { port },
      primeTtl: DEFAULT_PRIME_TTL,
      ...(mapping ? { laterCandidates: mapping.candidates } : {}),
    },
    releaseMapping: mapping ? mapping.release : off('disabled'),
  };
}

/**
 * Start asking the gateway for a mapping of the call's socket port (in the background: the
 * offer or answer does not wait; the candidate goes to the peer as an update when made).
 */
function startPortMapping(port: number, o: CallCandidateOptions): { candidates: Promise<readonly P2pCandidate[]>; release(): Promise<PortMappingInfo> } {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), PORT_MAPPING_WAIT_MS);
  timer.unref?.();
  const onAbort = () => stop.abort();
  o.signal.addEventListener('abort', onAbort, { once: true });
  const made = createMappedCandidate(new PortMapper(o.gateway ? { gateway: o.gateway } : {}), { port, signal: stop.signal, description: 'wzp call' }).then(
    (handle) => ({ handle }),
    (error: unknown) => ({ error: errorMessage(error) }),
  );
  void made.finally(() => {
    clearTimeout(timer);
    o.signal.removeEventListener('abort', onAbort);
  });
  let released: Promise<PortMappingInfo> | undefined;
  return {
    candidates: made.then((m) => ('handle' in m ? [m.handle.candidate] : [])),
    release: () =>
      (released ??= (async (): Promise<PortMappingInfo> => {
        stop.abort();
        const m = await made;
        if ('error' in m) return { status: 'failed', error: m.error };
        const { mapping } = m.handle;
        const outcome = await m.handle.release();
        return {
          status: 'mapped',
          protocol: mapping.protocol,
          external: `${mapping.externalAddress}:${mapping.externalPort}`,
          lifetimeS: mapping.lifetimeS,
          deleted: outcome.deleted,
          ...(outcome.deleted ? {} : { deleteError: outcome.error }),
        };
      })()),
  };
}

/**
 * The call socket's address as the STUN servers see it: a STUN client on the socket itself,
 * its answers taken from the socket's demultiplexer, so the mapping is the one the call uses.
 * Servers that fail or are of a family the socket cannot send to are skipped; none: nothing asked.
 */
async function stunReflexive(session: RelaySession, o: CallCandidateOptions, families: readonly string[]): Promise<Endpoint[]> {
  if (!o.stunServers) return [];
  const servers = await o.stunServers().catch(() => [] as Endpoint[]);
  if (servers.length === 0) return [];
  const udp = socketUdp(session.socket);
  if (!udp || session.demux.has('stun')) return [];
  const dualStack = session.socket.type === 'ipv4&ipv6';
  const usable = servers.slice(0, MAX_STUN_ADDRESSES).filter((e) => families.includes(isIP(e.address) === 6 ? 'IPv6' : 'IPv4'));
  if (usable.length === 0) return [];
  const client = new StunClient(udp, { listen: false });
  const unregister = session.demux.register(stunClass((data, from) => void client.handlePacket(data, { address: unmapIPv4(from.address), port: from.port })));
  const stop = AbortSignal.any([o.signal, AbortSignal.timeout(STUN_TIMEOUT_MS)]);
  try {
    const target = (e: Endpoint): Endpoint => (dualStack && isIP(e.address) === 4 ? { address: `::ffff:${e.address}`, port: e.port } : e);
    const { observations } = await stunObservations(
      { binding: (server, opts) => client.binding(target(server), opts) },
      usable,
      { signal: stop },
    ).catch(() => ({ observations: [] as Endpoint[] }));
    return observations.map((x) => ({ address: unmapIPv4(x.address), port: x.port }));
  } finally {
    unregister();
    client.close();
  }
}

function isLoopbackHost(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host === 'localhost';
}

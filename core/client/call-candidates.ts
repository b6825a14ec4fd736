/**
 * Our candidates for one 1:1 call, on the relay connection's own socket (docs/direct-calls.md,
 * "Candidates"): host candidates of our interfaces, the relay's observation of the socket,
 * what STUN servers see of it, and a port mapping made in the background (sent to the peer as
 * a candidate update when ready, deleted at hang-up). None with --relay-only; only the
 * loopback socket when the relay is on loopback (both ends are on this machine: nothing is
 * sent anywhere else). Front ends (the CLI, a browser bridge) give it what they resolved:
 * the STUN servers' addresses, the gateway.
 *
 * From the same answers, at no extra round trip, the call's NAT profile (core/nat/profile.ts):
 * what the relay and the STUN servers saw of this socket says how our NAT maps and allocates
 * ports, for the hard-NAT strategies; it goes to the peer, signed, in the offer or answer,
 * with our consent (none with --no-hard-nat). None with --relay-only (nothing about our
 * addresses leaves the machine) and none for a loopback relay (no NAT between the two ends,
 * and nothing was measured: the peer sees an absent profile, which means no consent).
 */
import { isIP } from 'node:net';
import { errorMessage } from '../errors.js';
import { PortMapper } from '../nat/portmap.js';
import { buildNatProfile, type StunTransaction } from '../nat/profile.js';
import type { NatProfile } from '../nat/strategy-types.js';
import { StunClient, formatEndpoint, type Endpoint } from '../nat/stun.js';
import { candidatePriority, createMappedCandidate, gatherCandidates, parseEndpoint, type Candidate as P2pCandidate } from '../p2p/candidates.js';
import { DEFAULT_PRIME_TTL, socketFamilies, toWireCandidate, type SocketType } from '../p2p/direct-link.js';
import { stunClass } from '../transport/demux.js';
import { socketUdp, unmapIPv4 } from '../transport/quic.js';
import { MAX_CANDIDATES, isWireAddress, isWirePort, type Candidate } from '../wire/candidate.js';
import { MAX_NAT_OBSERVED_AGO_MS, natProfileProblem } from '../wire/nat-profile.js';
import type { DirectPathOptions } from './direct-call.js';
import type { RelaySession } from './relay-session.js';

/** Our candidates for one call, as sent (wire) and as the direct path uses them. */
export interface GatheredForCall {
  wire: Candidate[];
  /** Absent with --relay-only: no direct path is tried. */
  direct?: DirectPathOptions;
  /**
   * Our NAT as measured on the call's socket (core/nat/profile.ts), with our consent; absent
   * with --relay-only and for a loopback relay. Its `allocation.observedAgoMs` counts to
   * `natMeasuredAt`: send natProfileToSend(gathered), which ages it to the moment of sending.
   */
  natProfile?: NatProfile;
  /** performance.now() when natProfile was made. */
  natMeasuredAt?: number;
  /** How natProfile was judged (why a field is unknown, what a judgement rests on): for the report. */
  natNotes?: string[];
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
  /**
   * Our consent to hard-NAT probing in this call, sent in our NAT profile (default true;
   * false with --no-hard-nat: the profile is still sent, for the peer's report, saying no).
   */
  hardNat?: boolean;
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
      .then((text) => {
        const mapped = parseEndpoint(text);
        return mapped && { mapped, at: performance.now() };
      })
      .catch(() => undefined),
    stunReflexive(session, o, families),
  ]);
  const answered = stunned.flatMap((t) => (t.mapped ? [t.mapped] : []));
  const { candidates } = gatherCandidates({ port, families, reflexive: [...(observed ? [observed.mapped] : []), ...answered] });
  const local = candidates.slice(0, MAX_CANDIDATES);
  const natMeasuredAt = performance.now();
  const relayServer = { address: unmapIPv4(session.relay.host), port: session.relay.port };
  const nat = buildNatProfile({
    localPort: port,
    ...(observed ? { relay: { server: relayServer, ...observed } } : {}),
    stun: stunned,
    consent: o.hardNat !== false,
    now: natMeasuredAt,
  });
  // Built only from validated answers, so always sendable; should that ever fail, the call goes
  // on without a profile (no consent) rather than fail when the offer or answer is encoded.
  const natProblem = natProfileProblem(nat.profile);
  return {
    wire: local.map(toWireCandidate),
    ...(natProblem === undefined ? { natProfile: nat.profile, natMeasuredAt } : {}),
    natNotes: natProblem === undefined ? nat.notes : [...nat.notes, `not sent: ${natProblem}`],
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
 * Our NAT profile as it goes out now: `natProfile` with its observations aged to this moment
 * (the time since gathering is part of how old they are when the peer reads them). Undefined
 * when there is none (--relay-only, a loopback relay).
 */
export function natProfileToSend(gathered: GatheredForCall, now = performance.now()): NatProfile | undefined {
  const p = gathered.natProfile;
  if (p === undefined) return undefined;
  const { observedAgoMs, ...allocation } = p.allocation;
  if (observedAgoMs === undefined) return p;
  const since = Math.max(0, Math.round(now - (gathered.natMeasuredAt ?? now)));
  // Older than the wire allows (never, in practice: the profile is made just before the offer
  // or answer): say the age is unknown rather than make it up.
  const aged = observedAgoMs + since;
  return { ...p, allocation: aged <= MAX_NAT_OBSERVED_AGO_MS ? { ...allocation, observedAgoMs: aged } : allocation };
}

/**
 * The call socket's address as the STUN servers see it: a STUN client on the socket itself,
 * its answers taken from the socket's demultiplexer, so the mapping is the one the call uses.
 * Servers of a family the socket cannot send to are skipped, and each endpoint is asked once;
 * none: nothing asked. Every transaction is returned, answered or not, in the order sent (the
 * NAT profile's port allocation reads that order).
 *
 * The requests go out in one burst, not one after another: StunClient.probe() sends its first
 * request before it returns, so they leave the socket in the list's order, and the NAT makes
 * their mappings in that order, all within one round trip. One after another would cost a
 * round trip per server on the way to the offer or answer. What a burst cannot promise (a
 * retransmitted or unanswered request's place in the order) buildNatProfile() leaves out.
 */
async function stunReflexive(session: RelaySession, o: CallCandidateOptions, families: readonly string[]): Promise<StunTransaction[]> {
  if (!o.stunServers) return [];
  const servers = await o.stunServers().catch(() => [] as Endpoint[]);
  if (servers.length === 0) return [];
  const udp = socketUdp(session.socket);
  if (!udp || session.demux.has('stun')) return [];
  const dualStack = session.socket.type === 'ipv4&ipv6';
  const unique = [...new Map(servers.map((e) => [formatEndpoint(e), e])).values()];
  const usable = unique.slice(0, MAX_STUN_ADDRESSES).filter((e) => families.includes(isIP(e.address) === 6 ? 'IPv6' : 'IPv4'));
  if (usable.length === 0) return [];
  const client = new StunClient(udp, { listen: false });
  const unregister = session.demux.register(stunClass((data, from) => void client.handlePacket(data, { address: unmapIPv4(from.address), port: from.port })));
  const stop = AbortSignal.any([o.signal, AbortSignal.timeout(STUN_TIMEOUT_MS)]);
  try {
    const target = (e: Endpoint): Endpoint => (dualStack && isIP(e.address) === 4 ? { address: `::ffff:${e.address}`, port: e.port } : e);
    // Started in order, each sending its first request synchronously (see above).
    const pending = usable.map((server) =>
      client.probe(target(server), { signal: stop }).then(
        (outcome): StunTransaction => {
          const answer = outcome.answered && outcome.message.cls === 'success' ? outcome.message.mappedAddress : undefined;
          const mapped = answer && { address: unmapIPv4(answer.address), port: answer.port };
          // A server's answer is input like any other: an address a candidate could not carry
          // (port 0, a zone id) counts as no answer.
          const usable = mapped !== undefined && isWireAddress(mapped.address) && isWirePort(mapped.port);
          return { server, attempts: outcome.attempts, at: performance.now(), ...(usable ? { mapped } : {}) };
        },
        // Out of time (the budget's abort), or the socket refused to send: unanswered.
        (): StunTransaction => ({ server, attempts: 0, at: performance.now() }),
      ),
    );
    return await Promise.all(pending);
  } finally {
    unregister();
    client.close();
  }
}

function isLoopbackHost(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host === 'localhost';
}

/**
 * netcheck: everything wzp can learn about this network in about a second, and a plain
 * verdict on whether direct calls will work.
 *
 * Checks, run concurrently where they cannot disturb each other:
 *
 * ```
 * t0 ──┬─ port-mapping probe (PCP, NAT-PMP, UPnP; gateway only) ─────────────────────┐
 *      ├─ IPv6 first contact: Binding to each IPv6 STUN server and relay (IPv6 socket)  │
 *      └─ IPv4 first contact: Binding to each IPv4 STUN server and relay, concurrently, │
 *         from the main socket (UDP works? reflexive address, OTHER-ADDRESS, RTT)      │
 *           └─ port allocation: one new mapping after another from a fresh socket      │
 *                └─┬─ behaviour (RFC 5780: mapping, filtering, hairpin), main socket    │
 *                  └─ relays: QUIC connect, reflect, 3 pings each, main socket ─────────┴─ verdict
 * ```
 *
 * Relays answer STUN on their QUIC port (core/nat/stun-server.ts), so each relay is also a
 * STUN server here: `--relay` alone gives the reflexive address, and a relay started with a
 * second address (RFC 5780) the mapping, filtering and port allocation too. Behaviour and
 * allocation run over IPv4 when an IPv4 server answered, else over IPv6.
 *
 * Port allocation runs alone because its answer is an ORDER: on a sequential NAT every new
 * mapping anywhere on this host takes the next port, so the behaviour probes or a relay
 * handshake opening mappings at the same time would show up as jitter or a wrong step.
 * Everything after it runs in parallel. The main sockets (one per address family) are
 * QUICSockets whose non-QUIC datagrams go to a StunClient, the one-socket arrangement a wzp
 * client uses for calls.
 *
 * Time boxes (NETCHECK_TIMING) come from measured RTTs where there is one: first contact
 * has none yet (RTO 250 ms, 3 sends, 1 s), allocation probes wait max(100 ms, 10 × RTT),
 * behaviour probes one answer window max(250 ms, 10 × RTT), relay pings max(200 ms,
 * 2 × handshake). A global deadline (default 3 s) aborts whatever is still running; such a
 * check is reported as failed, the others keep their results. The caller's signal (Ctrl-C)
 * does the same, and the result is then marked `interrupted`.
 */
import type dgram from 'node:dgram';
import type { QUICSocket } from '@matrixai/quic';
import type { RelaySession } from '../client/relay-session.js';
import { AbortError, NetworkError, UsageError, throwIfAborted } from '../errors.js';
import { formatHostPort, openSocket, parseHostPort, rawUdpSocket, socketDemux } from '../transport/quic.js';
import { stunClass } from '../transport/demux.js';
import { type FilteringBehaviour, type Hairpinning, type MappingBehaviour, discoverNatBehaviour } from './behaviour.js';
import { type PortAllocationKind, type PortObservation, classifyPortAllocation, predictPorts, rfc5780Endpoints } from './port-allocation.js';
import { type PortMapProtocol, PortMapper, type ProtocolProbe } from './portmap.js';
import { type AddressFamily, type ReflectMapping, type ReflectRelay, classifyByDestination } from './reflect.js';
import { type Endpoint, type NatProgressListener, StunClient, assertEndpoint, formatEndpoint, sameEndpoint } from './stun.js';
import type { NatProfile, NatStrategy } from './strategy-types.js';
import { closeUdpSocket, openUdpSocket, sourceAddressToward } from './udp.js';

export const NETCHECK_TIMING = {
  /** First contact with a STUN server: no RTT known yet. */
  firstContactRtoMs: 250,
  firstContactAttempts: 3,
  firstContactTimeoutMs: 1_000,
  /** Allocation probes wait max(minMs, rtts × RTT), at most maxMs. */
  allocationProbeMinMs: 100,
  allocationProbeRtts: 10,
  allocationProbeMaxMs: 1_000,
  /** Endpoints one allocation walk may probe (4 per RFC 5780 server). */
  allocationMaxEndpoints: 8,
  relayConnectTimeoutMs: 1_500,
  /** Relay requests after the handshake wait max(minMs, handshakes × handshake time). */
  relayRequestMinMs: 200,
  relayRequestHandshakes: 2,
  relayPings: 3,
  /** PCP / NAT-PMP: the gateway is one hop away. */
  portMapSchedule: { initialMs: 100, maxAttempts: 3 },
  /** SSDP silence after which UPnP counts as absent (`wzp portmap probe` waits 2.5 s). */
  upnpDiscoveryMs: 500,
  upnpHttpMs: 500,
  deadlineMs: 3_000,
} as const;

/** Ports predicted for the next mappings. */
const DEFAULT_PREDICT_COUNT = 3;

export type CheckStatus = 'ok' | 'failed' | 'skipped';
export type NetcheckCheckId = 'udp' | 'ipv4' | 'ipv6' | 'behaviour' | 'allocation' | 'port-mapping' | `relay:${string}`;

export type NetcheckEvent =
  | { type: 'netcheck:planned'; checks: readonly { id: NetcheckCheckId; title: string }[] }
  | { type: 'netcheck:check-done'; id: NetcheckCheckId; status: CheckStatus; detail: string };

export interface CheckError {
  name: string;
  message: string;
}

export interface StunServerCheck {
  server: string;
  /** Set when this is a relay's own STUN (the relay as given, `HOST:PORT`). */
  relay?: string;
  answered: boolean;
  /** Our address as this server saw it. */
  mappedAddress?: string;
  /** RFC 5780 OTHER-ADDRESS: the server can run the behaviour tests. */
  otherAddress?: string;
  rttMs?: number;
  error?: CheckError;
}

export interface FamilyCheck {
  status: CheckStatus;
  /** The public (server-reflexive) address: the first answering STUN server's, else the first relay's. */
  reflexiveAddress?: string;
  /** The main socket's own address (the route's source address toward the first server, and its port). */
  localAddress?: string;
  /** False when the servers saw `localAddress` itself: no NAT in between. */
  natDetected?: boolean;
  /**
   * The addresses every server (STUN and relays) saw for the main socket, one per server
   * address, compared as `wzp reflect` does.
   */
  acrossServers?: { mapping: ReflectMapping; reason: string };
  servers: StunServerCheck[];
  durationMs: number;
  reason?: string;
}

export interface UdpCheck {
  works: boolean;
  evidence: string;
}

export interface BehaviourCheck {
  status: CheckStatus;
  /** The address family the behaviour was measured over. */
  family?: AddressFamily;
  server?: string;
  mapping: MappingBehaviour;
  filtering: FilteringBehaviour;
  hairpinning: Hairpinning | 'unknown';
  natDetected?: boolean;
  mappedAddress?: string;
  localAddress?: string;
  rttMs?: number;
  answerWindowMs?: number;
  /** With bindingLifetimeMaxMs: how long an idle mapping lived. */
  bindingLifetime?: { measurable: boolean; aliveForAtLeastMs: number; expiredWithinMs?: number; notes: string[] };
  notes: string[];
  durationMs: number;
  reason?: string;
  error?: CheckError;
}

export interface AllocationCheck extends PortAllocationWalkSummary {
  status: CheckStatus;
  family?: AddressFamily;
  reason?: string;
  error?: CheckError;
}

export interface PortMappingCheck {
  status: CheckStatus;
  gateway?: string;
  externalAddress?: string;
  /** Protocols that answered, in preference order. */
  available: PortMapProtocol[];
  protocols?: Record<PortMapProtocol, ProtocolProbe>;
  durationMs: number;
  reason?: string;
  error?: CheckError;
}

export interface RelayCheck {
  relay: string;
  status: CheckStatus;
  /** The address the relay was reached at. */
  address?: string;
  fingerprint?: string;
  handshakeMs?: number;
  /** Our address as the relay saw it (QUIC reflect over the main socket). */
  observedAddress?: string;
  pingsMs: number[];
  pingsLost: number;
  medianMs?: number;
  durationMs: number;
  error?: CheckError;
}

export type VerdictKind = 'no-nat' | 'easy' | 'hard-predictable' | 'hard' | 'udp-blocked' | 'unknown';

export interface Verdict {
  kind: VerdictKind;
  summary: string;
  reasons: string[];
  /**
   * The hard-NAT strategies (NAT-strategy plugins) that do something for this network, with
   * what they do (NatStrategy.describeFor on the profile measured here); absent when none was
   * given to netcheck or the network is not measured.
   */
  strategies?: { name: string; does: string }[];
}

export interface NetcheckResult {
  udp: UdpCheck;
  ipv4: FamilyCheck;
  ipv6: FamilyCheck;
  behaviour: BehaviourCheck;
  allocation: AllocationCheck;
  portMapping: PortMappingCheck;
  relays: RelayCheck[];
  /** The relay with the lowest median ping. */
  preferredRelay?: { relay: string; medianMs: number };
  verdict: Verdict;
  durationMs: number;
  /** Ctrl-C (the caller's signal) stopped the checks: what had not finished is failed or skipped. */
  interrupted?: true;
}

/**
 * A relay to measure; the caller decides how it is trusted when it connects. `endpoint` is
 * its address (an IP literal): the relay is asked for STUN there and reached over the main
 * socket of that family. Without it (the name did not resolve) only `connect` is tried.
 */
export interface NetcheckRelay extends ReflectRelay {
  endpoint?: Endpoint;
}

export interface NetcheckOptions {
  /** STUN servers, IP literals of either family. */
  stun: readonly Endpoint[];
  relays: readonly NetcheckRelay[];
  /** Probe port mapping (optionally at this gateway), or not at all. */
  portMapping: { gateway?: string } | false;
  /** Next ports to predict (default 3). */
  predictCount?: number;
  /** Hard limit on the whole check (default NETCHECK_TIMING.deadlineMs). */
  deadlineMs?: number;
  /**
   * Opt-in: also measure how long the NAT keeps an idle UDP mapping (RFC 5780 §4.6), for at
   * most this long. It needs a server that honours RESPONSE-PORT; the deadline grows by it.
   */
  bindingLifetimeMaxMs?: number;
  /** The user's stop (Ctrl-C): the checks end and the result says `interrupted`. */
  signal?: AbortSignal;
  onProgress?: (event: NetcheckEvent) => void;
  /** The hard-NAT strategies installed: the verdict names those that apply to this network. */
  strategies?: readonly NatStrategy[];
}

type FamilyId = 'ipv4' | 'ipv6';

/** One address family's main socket: a QUICSocket shared by STUN and the relays. */
interface MainSocket {
  readonly family: AddressFamily;
  readonly quic: QUICSocket;
  readonly udp: dgram.Socket;
  readonly client: StunClient;
}

/** A STUN target of first contact: a STUN server, or a relay's own STUN. */
interface StunTarget {
  readonly endpoint: Endpoint;
  readonly relay?: string;
}

export async function runNetcheck(options: NetcheckOptions): Promise<NetcheckResult> {
  throwIfAborted(options.signal);
  options.stun.forEach(assertEndpoint);
  for (const relay of options.relays) if (relay.endpoint) assertEndpoint(relay.endpoint);
  const startedAt = performance.now();
  const deadlineMs = (options.deadlineMs ?? NETCHECK_TIMING.deadlineMs) + (options.bindingLifetimeMaxMs ?? 0);
  const signal = options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(deadlineMs)]) : AbortSignal.timeout(deadlineMs);
  const run = new Run(options, signal, deadlineMs, startedAt);
  const targets = { IPv4: stunTargets(options, 'IPv4'), IPv6: stunTargets(options, 'IPv6') };
  // A relay whose name did not resolve is still tried (and fails) over the IPv4 socket.
  const relaysOf = (family: AddressFamily) => options.relays.filter((r) => (r.endpoint ? familyOf(r.endpoint) : 'IPv4') === family);
  const needs = (family: AddressFamily) => targets[family].length > 0 || relaysOf(family).length > 0;
  run.emit({ type: 'netcheck:planned', checks: plannedChecks(options, needs('IPv4'), needs('IPv6')) });

  const sockets: MainSocket[] = [];
  try {
    // Started first and awaited last; handled at once so an early failure elsewhere cannot
    // leave it as an unhandled rejection.
    const portMapping = run.portMapping();
    portMapping.catch(() => undefined);
    const [ipv4, ipv6] = await Promise.all(
      (['IPv4', 'IPv6'] as const).map(async (family) => {
        const id: FamilyId = family === 'IPv4' ? 'ipv4' : 'ipv6';
        if (!needs(family)) return { check: run.notConfigured(family), main: undefined };
        let main: MainSocket;
        try {
          main = await openMainSocket(family);
        } catch (err) {
          return { check: run.noSocket(id, err), main: undefined };
        }
        sockets.push(main);
        return { check: await run.firstContact(id, main, targets[family], relaysOf(family).length > 0), main };
      }),
    );
    const primary = [ipv4, ipv6].find((f) => f.main && f.check.servers.some((s) => s.answered));
    const allocation = await run.allocation(primary?.main, primary?.check);
    const [behaviour, relays] = await Promise.all([
      run.behaviour(primary?.main, primary?.check),
      run.relays((relay) => (relay.endpoint && familyOf(relay.endpoint) === 'IPv6' ? ipv6.main : ipv4.main)),
    ]);
    return run.finish({ ipv4: ipv4.check, ipv6: ipv6.check, behaviour, allocation, portMapping: await portMapping, relays });
  } finally {
    for (const main of sockets) {
      main.client.close();
      await main.quic.stop({ force: true });
    }
  }
}

async function openMainSocket(family: AddressFamily): Promise<MainSocket> {
  const quic = await openSocket({ host: family === 'IPv6' ? '::' : '0.0.0.0', port: 0 });
  const udp = rawUdpSocket(quic);
  const client = new StunClient(udp, { listen: false });
  socketDemux(quic).register(stunClass((data, from) => client.handlePacket(data, from)));
  return { family, quic, udp, client };
}

/** STUN servers and relays' own STUN of one family, each address once (a STUN server listed first wins). */
function stunTargets(options: NetcheckOptions, family: AddressFamily): StunTarget[] {
  const all: StunTarget[] = [
    ...options.stun.map((endpoint) => ({ endpoint })),
    ...options.relays.flatMap((r) => (r.endpoint ? [{ endpoint: r.endpoint, relay: r.label }] : [])),
  ];
  return all.filter((t, i) => familyOf(t.endpoint) === family && all.findIndex((o) => sameEndpoint(o.endpoint, t.endpoint)) === i);
}

function familyOf(endpoint: Endpoint): AddressFamily {
  return endpoint.address.includes(':') ? 'IPv6' : 'IPv4';
}

function plannedChecks(options: NetcheckOptions, hasV4: boolean, hasV6: boolean): { id: NetcheckCheckId; title: string }[] {
  const checks: { id: NetcheckCheckId; title: string }[] = [
    { id: 'udp', title: 'UDP' },
    { id: 'ipv4', title: 'IPv4 address' },
    { id: 'ipv6', title: 'IPv6 address' },
    { id: 'behaviour', title: 'NAT mapping and filtering' },
    { id: 'allocation', title: 'Port allocation' },
    { id: 'port-mapping', title: 'Port mapping (PCP, NAT-PMP, UPnP)' },
    ...options.relays.map((r) => ({ id: `relay:${r.label}` as const, title: `Relay ${r.label}` })),
  ];
  return checks.filter((c) => (c.id !== 'ipv4' || hasV4) && (c.id !== 'ipv6' || hasV6));
}

/** One netcheck run: shared deadline, progress and the UDP evidence seen so far. */
class Run {
  private udpEvidence: string | undefined;
  /** Family checks whose outcome waits for the relays (no STUN answer, relays still to come). */
  private readonly deferred = new Set<FamilyId>();
  /** Server IPs asked over UDP (STUN and relays): one silent server is not "UDP blocked". */
  private readonly asked = new Set<string>();

  constructor(
    private readonly options: NetcheckOptions,
    private readonly signal: AbortSignal,
    private readonly deadlineMs: number,
    private readonly startedAt: number,
  ) {}

  emit(event: NetcheckEvent): void {
    try {
      this.options.onProgress?.(event);
    } catch {
      // A progress listener's bug must not break the check.
    }
  }

  private done(id: NetcheckCheckId, status: CheckStatus, detail: string): void {
    this.emit({ type: 'netcheck:check-done', id, status, detail });
  }

  private remainingMs(): number {
    return Math.max(0, Math.floor(this.deadlineMs - (performance.now() - this.startedAt)));
  }

  private get interrupted(): boolean {
    return this.options.signal?.aborted === true;
  }

  /** UDP works as soon as anything answers over UDP (STUN or QUIC). */
  private sawUdp(evidence: string): void {
    if (this.udpEvidence !== undefined) return;
    this.udpEvidence = evidence;
    this.done('udp', 'ok', `works (${evidence})`);
  }

  /** An error as report data: the deadline is named, so is the user's Ctrl-C. */
  private failure(err: unknown): CheckError {
    const e = err instanceof Error ? err : new Error(String(err));
    if (this.interrupted) return { name: 'AbortError', message: 'interrupted (Ctrl-C) before it finished' };
    if (this.signal.aborted && e.name === 'AbortError') return { name: 'TimeoutError', message: `not finished within the ${this.deadlineMs} ms deadline` };
    return { name: e.name, message: e.message };
  }

  async portMapping(): Promise<PortMappingCheck> {
    const t0 = performance.now();
    if (this.options.portMapping === false) {
      this.done('port-mapping', 'skipped', 'not requested');
      return { status: 'skipped', available: [], durationMs: 0, reason: 'not requested' };
    }
    const mapper = new PortMapper({
      gateway: this.options.portMapping.gateway,
      schedule: NETCHECK_TIMING.portMapSchedule,
      upnpDiscoveryTimeoutMs: NETCHECK_TIMING.upnpDiscoveryMs,
      upnpHttpTimeoutMs: NETCHECK_TIMING.upnpHttpMs,
    });
    try {
      const probe = await mapper.probe({ signal: this.signal });
      const available = (['pcp', 'natpmp', 'upnp'] as const).filter((p) => probe.protocols[p].available);
      const check: PortMappingCheck = {
        status: 'ok',
        gateway: probe.gateway,
        externalAddress: probe.externalAddress,
        available,
        protocols: probe.protocols,
        durationMs: elapsed(t0),
      };
      this.done('port-mapping', 'ok', available.length > 0 ? `${available.map(protocolName).join(', ')} at ${probe.gateway}` : `none answered at ${probe.gateway}`);
      return check;
    } catch (err) {
      const error = this.failure(err);
      this.done('port-mapping', 'failed', error.message);
      return { status: 'failed', available: [], durationMs: elapsed(t0), error };
    }
  }

  notConfigured(family: AddressFamily): FamilyCheck {
    return { status: 'skipped', servers: [], durationMs: 0, reason: `no ${family} STUN server or relay configured` };
  }

  noSocket(id: FamilyId, err: unknown): FamilyCheck {
    const error = this.failure(err);
    this.done(id, 'failed', error.message);
    return { status: 'failed', servers: [], durationMs: 0, reason: `no ${id === 'ipv4' ? 'IPv4' : 'IPv6'} socket: ${error.message}` };
  }

  /**
   * Concurrent Binding requests to every STUN target of one family, boxed for a first contact
   * (no RTT known yet). Without any answer, and with relays of this family still to be asked
   * over QUIC, the check's outcome waits for them (finish()).
   */
  async firstContact(id: FamilyId, main: MainSocket, targets: readonly StunTarget[], relaysPending: boolean): Promise<FamilyCheck> {
    const t0 = performance.now();
    const servers = await Promise.all(targets.map((target) => this.bind(main.client, target)));
    const first = targets[0]?.endpoint ?? this.options.relays.find((r) => r.endpoint)?.endpoint;
    let localAddress: string | undefined;
    if (first) {
      try {
        localAddress = formatEndpoint({ address: await sourceAddressToward(main.udp, first), port: main.udp.address().port });
      } catch {
        // No route toward the server: the first contact already says so.
      }
    }
    const answered = servers.filter((s) => s.answered);
    const check: FamilyCheck = {
      status: answered.length > 0 ? 'ok' : 'failed',
      reflexiveAddress: answered[0]?.mappedAddress,
      localAddress,
      servers,
      durationMs: elapsed(t0),
      reason:
        answered.length > 0
          ? undefined
          : targets.length === 0
            ? 'no server address to ask (relay names did not resolve)'
            : `none of ${targets.length} STUN server${targets.length === 1 ? '' : 's'} answered`,
    };
    if (answered.length > 0) this.done(id, 'ok', `${check.reflexiveAddress} (${answered.length} of ${servers.length} servers)`);
    else if (relaysPending && !this.interrupted) this.deferred.add(id);
    else this.done(id, 'failed', check.reason as string);
    return check;
  }

  private async bind(client: StunClient, target: StunTarget): Promise<StunServerCheck> {
    const server = formatEndpoint(target.endpoint);
    const base = { server, ...(target.relay === undefined ? {} : { relay: target.relay }) };
    if (this.interrupted) return { ...base, answered: false, error: this.failure(undefined) };
    this.asked.add(target.endpoint.address);
    try {
      const answer = await client.binding(target.endpoint, {
        signal: this.signal,
        label: 'first-contact',
        rtoMs: NETCHECK_TIMING.firstContactRtoMs,
        maxAttempts: NETCHECK_TIMING.firstContactAttempts,
        timeoutMs: Math.min(NETCHECK_TIMING.firstContactTimeoutMs, this.remainingMs()),
      });
      this.sawUdp(`${target.relay === undefined ? 'STUN' : 'relay STUN'} ${server} answered`);
      return {
        ...base,
        answered: true,
        mappedAddress: formatEndpoint(answer.mappedAddress),
        otherAddress: answer.otherAddress && formatEndpoint(answer.otherAddress),
        rttMs: round(answer.elapsedMs),
      };
    } catch (err) {
      return { ...base, answered: false, error: this.failure(err) };
    }
  }

  async allocation(main: MainSocket | undefined, family: FamilyCheck | undefined): Promise<AllocationCheck> {
    const t0 = performance.now();
    const skip = (reason: string): AllocationCheck => {
      this.done('allocation', 'skipped', reason);
      return { status: 'skipped', reason, ...emptyWalk(reason) };
    };
    if (this.interrupted) return skip('interrupted before it ran');
    if (!main || !family) return skip('no STUN server or relay answered STUN');
    const answered = family.servers.filter((s) => s.answered);
    const rfc5780 = answered.find((s) => s.otherAddress !== undefined);
    const start = rfc5780 ? [toEndpoint(rfc5780.server)] : answered.map((s) => toEndpoint(s.server));
    if (!rfc5780 && start.length < 3) {
      return skip('needs an RFC 5780 STUN server (OTHER-ADDRESS: e.g. a relay started with --stun-alternate) or 3 plain ones');
    }
    const rtt = main.client.rttMs ?? NETCHECK_TIMING.allocationProbeMinMs;
    const socket = await openUdpSocket(main.family === 'IPv6' ? 'udp6' : 'udp4');
    const client = new StunClient(socket, { initialRtoMs: Math.max(50, 3 * rtt) });
    try {
      const walk = await walkPortAllocation(client, socket.address().port, start, {
        count: this.options.predictCount ?? DEFAULT_PREDICT_COUNT,
        maxEndpoints: NETCHECK_TIMING.allocationMaxEndpoints,
        probeTimeoutMs: Math.min(NETCHECK_TIMING.allocationProbeMaxMs, Math.max(NETCHECK_TIMING.allocationProbeMinMs, NETCHECK_TIMING.allocationProbeRtts * rtt)),
        signal: this.signal,
      });
      if (walk.interrupted) {
        const error = this.failure(undefined);
        this.done('allocation', 'failed', error.message);
        return { status: 'failed', family: main.family, error, ...walk, durationMs: elapsed(t0) };
      }
      this.done('allocation', 'ok', describeAllocation(walk));
      return { status: 'ok', family: main.family, ...walk, durationMs: elapsed(t0) };
    } catch (err) {
      const error = this.failure(err);
      this.done('allocation', 'failed', error.message);
      return { status: 'failed', error, ...emptyWalk(error.message), durationMs: elapsed(t0) };
    } finally {
      client.close();
      await closeUdpSocket(socket);
    }
  }

  async behaviour(main: MainSocket | undefined, family: FamilyCheck | undefined): Promise<BehaviourCheck> {
    const t0 = performance.now();
    const unknown = { mapping: 'unknown', filtering: 'unknown', hairpinning: 'unknown', notes: [] } as const;
    const skip = (reason: string): BehaviourCheck => {
      this.done('behaviour', 'skipped', reason);
      return { status: 'skipped', ...unknown, notes: [], durationMs: 0, reason };
    };
    if (this.interrupted) return skip('interrupted before it ran');
    const rfc5780 = family?.servers.find((s) => s.answered && s.otherAddress !== undefined);
    if (!main || !family) return skip('no STUN server or relay answered STUN');
    if (!rfc5780) {
      const answered = family.servers.find((s) => s.answered);
      // (natDetected is settled only in finish(): compare here.)
      const noNat = family.natDetected === false || (answered?.mappedAddress !== undefined && answered.mappedAddress === family.localAddress);
      if (noNat) {
        // Every server saw this host's own address and port: nothing translates it, so the
        // mapping is the same toward every destination. Filtering still needs RFC 5780 (a host
        // or network firewall may filter without any NAT).
        const reason =
          'filtering not measured: no server supports RFC 5780 (none sent OTHER-ADDRESS); a relay started with --stun-alternate, or coturn with two -L, measures it';
        this.done('behaviour', 'ok', 'no NAT: mapping endpoint-independent (no translation), filtering unknown');
        return {
          status: 'ok',
          family: main.family,
          ...(answered ? { server: answered.server } : {}),
          mapping: 'endpoint-independent',
          filtering: 'unknown',
          hairpinning: 'unknown',
          natDetected: false,
          ...(answered?.mappedAddress !== undefined ? { mappedAddress: answered.mappedAddress } : {}),
          ...(family.localAddress !== undefined ? { localAddress: family.localAddress } : {}),
          notes: ["no NAT: the servers saw this host's own address and port, so every destination sees the same mapping"],
          durationMs: 0,
          reason,
        };
      }
      return skip('no server supports RFC 5780 (none sent OTHER-ADDRESS): configure one with two addresses, e.g. a relay started with --stun-alternate, or coturn with two -L');
    }
    try {
      const lifetimeMs = this.options.bindingLifetimeMaxMs;
      const b = await discoverNatBehaviour(main.udp, toEndpoint(rfc5780.server), {
        client: main.client,
        signal: this.signal,
        ...(lifetimeMs ? { bindingLifetime: { maxMs: lifetimeMs } } : {}),
      });
      this.done('behaviour', 'ok', `mapping ${b.mapping}, filtering ${b.filtering}, hairpinning ${b.hairpinning}`);
      return {
        status: 'ok',
        family: main.family,
        server: rfc5780.server,
        mapping: b.mapping,
        filtering: b.filtering,
        hairpinning: b.hairpinning,
        natDetected: b.natDetected,
        mappedAddress: formatEndpoint(b.mappedAddress),
        localAddress: formatEndpoint(b.localAddress),
        rttMs: round(b.rttMs),
        answerWindowMs: round(b.answerWindowMs),
        ...(b.bindingLifetime
          ? {
              bindingLifetime: {
                measurable: b.bindingLifetime.measurable,
                aliveForAtLeastMs: b.bindingLifetime.aliveForAtLeastMs,
                ...(b.bindingLifetime.expiredWithinMs === undefined ? {} : { expiredWithinMs: b.bindingLifetime.expiredWithinMs }),
                notes: [...b.bindingLifetime.notes],
              },
            }
          : {}),
        notes: [...b.notes],
        durationMs: elapsed(t0),
      };
    } catch (err) {
      const error = this.failure(err);
      this.done('behaviour', 'failed', error.message);
      return { status: 'failed', family: main.family, server: rfc5780.server, ...unknown, notes: [], durationMs: elapsed(t0), error };
    }
  }

  async relays(socketFor: (relay: NetcheckRelay) => MainSocket | undefined): Promise<RelayCheck[]> {
    return Promise.all(
      this.options.relays.map(async (relay): Promise<RelayCheck> => {
        const t0 = performance.now();
        const id = `relay:${relay.label}` as const;
        const main = socketFor(relay);
        const address = relay.endpoint && formatEndpoint(relay.endpoint);
        let session: RelaySession | undefined;
        try {
          if (this.interrupted) throw new AbortError('interrupted');
          if (!main) throw new NetworkError(`no ${relay.endpoint ? familyOf(relay.endpoint) : 'IPv4'} socket to reach it from`);
          if (relay.endpoint) this.asked.add(relay.endpoint.address);
          session = await relay.connect(main.quic, { timeoutMs: Math.min(NETCHECK_TIMING.relayConnectTimeoutMs, this.remainingMs()), signal: this.signal });
          this.sawUdp(`relay ${relay.label} answered over QUIC`);
          const box = { timeoutMs: Math.max(NETCHECK_TIMING.relayRequestMinMs, NETCHECK_TIMING.relayRequestHandshakes * session.handshakeMs), signal: this.signal };
          const observedAddress = formatHostPort(parseHostPort(await session.reflect(box)));
          const pingsMs: number[] = [];
          let pingsLost = 0;
          let lastError: unknown;
          for (let i = 0; i < NETCHECK_TIMING.relayPings && !this.signal.aborted; i++) {
            try {
              pingsMs.push(round(await session.ping(box)));
            } catch (err) {
              pingsLost++;
              lastError = err;
            }
          }
          const medianMs = median(pingsMs);
          const base = {
            relay: relay.label,
            ...(address ? { address } : {}),
            fingerprint: session.relayFingerprint,
            handshakeMs: round(session.handshakeMs),
            observedAddress,
            pingsMs,
            pingsLost,
          };
          if (medianMs === undefined) {
            // No ping ran at all only when the deadline (or Ctrl-C) came first.
            const error = this.failure(lastError ?? new AbortError('deadline passed before the first ping'));
            this.done(id, 'failed', `no ping answered: ${error.message}`);
            return { ...base, status: 'failed', durationMs: elapsed(t0), error };
          }
          this.done(id, 'ok', `${medianMs} ms median of ${pingsMs.length} pings${pingsLost ? `, ${pingsLost} lost` : ''}`);
          return { ...base, status: 'ok', medianMs, durationMs: elapsed(t0) };
        } catch (err) {
          const error = this.failure(err);
          this.done(id, 'failed', error.message);
          return { relay: relay.label, ...(address ? { address } : {}), status: 'failed', pingsMs: [], pingsLost: 0, durationMs: elapsed(t0), error };
        } finally {
          await session?.close();
        }
      }),
    );
  }

  finish(parts: Omit<NetcheckResult, 'udp' | 'preferredRelay' | 'verdict' | 'durationMs'>): NetcheckResult {
    const { behaviour, allocation, portMapping, relays } = parts;
    const ipv4 = this.settleFamily('ipv4', parts.ipv4, relays);
    const ipv6 = this.settleFamily('ipv6', parts.ipv6, relays);
    if (this.udpEvidence === undefined) this.done('udp', 'failed', 'nothing answered over UDP');
    const udp: UdpCheck = {
      works: this.udpEvidence !== undefined,
      evidence:
        this.udpEvidence ??
        (this.asked.size === 0 ? 'no server could be asked' : `no STUN server or relay answered over UDP (${this.asked.size} server address${this.asked.size === 1 ? '' : 'es'} asked)`),
    };
    const fastest = relays
      .filter((r): r is RelayCheck & { medianMs: number } => r.medianMs !== undefined)
      .sort((a, b) => a.medianMs - b.medianMs)[0];
    // The family behaviour was measured over, else the first that has an address.
    const main = behaviour.family === 'IPv6' ? ipv6 : behaviour.family === 'IPv4' ? ipv4 : ipv4.reflexiveAddress ? ipv4 : ipv6;
    const verdict = netcheckVerdict({
      udpWorks: udp.works,
      serversAsked: [...this.asked],
      interrupted: this.interrupted,
      natDetected: behaviour.natDetected ?? main.natDetected,
      mapping: behaviour.mapping,
      filtering: behaviour.filtering,
      hairpinning: behaviour.hairpinning,
      acrossServers: main.acrossServers?.mapping ?? 'unknown',
      allocation: allocation.kind,
      portMapping: portMapping.available,
      portMappingExternalAddress: portMapping.externalAddress,
      publicAddress: main.reflexiveAddress,
      relaysConfigured: relays.length,
      relaysAnswered: relays.filter((r) => r.status === 'ok').length,
    });
    if (this.options.strategies && (verdict.kind === 'easy' || verdict.kind === 'hard' || verdict.kind === 'hard-predictable' || verdict.kind === 'no-nat')) {
      verdict.strategies = strategiesForNetwork(this.options.strategies, netcheckProfile(behaviour, allocation, main));
    }
    return {
      udp,
      ipv4,
      ipv6,
      behaviour,
      allocation,
      portMapping,
      relays,
      preferredRelay: fastest && { relay: fastest.relay, medianMs: fastest.medianMs },
      verdict,
      durationMs: elapsed(this.startedAt),
      ...(this.interrupted ? { interrupted: true as const } : {}),
    };
  }

  /**
   * A family check with what the relays saw added: the reflexive address (when no STUN server
   * answered), whether there is a NAT, and the comparison across server addresses. Reports the
   * check's outcome if it waited for the relays, so the progress line and the report agree.
   */
  private settleFamily(id: FamilyId, check: FamilyCheck, relays: readonly RelayCheck[]): FamilyCheck {
    const family: AddressFamily = id === 'ipv4' ? 'IPv4' : 'IPv6';
    const seen = [
      ...check.servers.flatMap((s) => (s.mappedAddress ? [{ destination: toEndpoint(s.server), observed: toEndpoint(s.mappedAddress) }] : [])),
      ...relays.flatMap((r) =>
        r.observedAddress && r.address && familyOf(toEndpoint(r.address)) === family ? [{ destination: toEndpoint(r.address), observed: toEndpoint(r.observedAddress) }] : [],
      ),
    ];
    const fromRelay = relays.find((r) => r.observedAddress && (r.address ? familyOf(toEndpoint(r.address)) === family : family === 'IPv4'));
    const reflexiveAddress = check.reflexiveAddress ?? fromRelay?.observedAddress;
    const settled: FamilyCheck = { ...check };
    if (reflexiveAddress !== undefined) {
      settled.reflexiveAddress = reflexiveAddress;
      settled.status = 'ok';
      delete settled.reason;
      if (check.localAddress !== undefined) settled.natDetected = reflexiveAddress !== check.localAddress;
    }
    if (seen.length > 0) settled.acrossServers = classifyByDestination(seen);
    if (this.deferred.delete(id)) {
      if (settled.status === 'ok') this.done(id, 'ok', `${reflexiveAddress} (as relay ${fromRelay?.relay} saw it)`);
      else this.done(id, 'failed', settled.reason ?? 'no STUN server or relay answered');
    }
    return settled;
  }
}

// ---------------------------------------------------------------------------------------------
// Port allocation walk
// ---------------------------------------------------------------------------------------------

export interface PortAllocationWalkSummary {
  kind: PortAllocationKind;
  delta?: number;
  consistency: number;
  samples: number;
  /** Why the allocation was classified so (or why it could not be). */
  explanation: string;
  localPort?: number;
  /** In the order probed: which endpoint saw which external address. */
  observations: { server: string; mappedAddress: string }[];
  unanswered: string[];
  prediction: { ports: number[]; confidence: number };
  durationMs: number;
  /** The signal stopped the walk: the fields hold the answers it had. */
  interrupted?: true;
}

export interface WalkOptions {
  /** How many next ports to predict. */
  count: number;
  /** Bound on endpoints probed (expansion included). */
  maxEndpoints: number;
  /** Per-probe deadline. */
  probeTimeoutMs: number;
  signal?: AbortSignal;
  onProgress?: NatProgressListener;
}

/**
 * Binding requests one after another from one socket to distinct endpoints, so that an
 * address(-and-port)-dependent NAT opens a new mapping for each. A server that answers with
 * OTHER-ADDRESS adds its other three RFC 5780 endpoints right after itself. Then the external
 * ports are classified and the next `count` predicted (core/nat/port-allocation.ts).
 */
export async function walkPortAllocation(client: StunClient, localPort: number, servers: readonly Endpoint[], options: WalkOptions): Promise<PortAllocationWalkSummary> {
  servers.forEach(assertEndpoint);
  if (servers.length === 0) throw new UsageError('port allocation needs at least one STUN server');
  const startedAt = performance.now();
  const queue: Endpoint[] = [];
  const enqueue = (endpoint: Endpoint, at: number) => {
    if (queue.some((q) => sameEndpoint(q, endpoint))) return false;
    queue.splice(at, 0, endpoint);
    return true;
  };
  servers.forEach((s) => enqueue(s, queue.length));
  const observations: PortObservation[] = [];
  const unanswered: Endpoint[] = [];
  let interrupted = false;
  for (let i = 0; i < queue.length && i < options.maxEndpoints; i++) {
    const server = queue[i];
    let outcome;
    try {
      outcome = await client.probe(server, { signal: options.signal, onProgress: options.onProgress, label: `allocation-${i + 1}`, timeoutMs: options.probeTimeoutMs });
    } catch (err) {
      // Stopped: what was measured so far is the answer, marked as such.
      if (!options.signal?.aborted) throw err;
      interrupted = true;
      break;
    }
    if (!outcome.answered || outcome.message.cls !== 'success' || !outcome.message.mappedAddress) {
      unanswered.push(server);
      continue;
    }
    observations.push({ server, localPort, mapped: outcome.message.mappedAddress });
    const other = outcome.message.otherAddress;
    if (other) {
      let at = i + 1;
      for (const endpoint of rfc5780Endpoints(server, other).slice(1)) if (enqueue(endpoint, at)) at++;
    }
  }
  const prediction = predictPorts(observations, options.count);
  const allocation = classifyPortAllocation(observations);
  return {
    kind: allocation.kind,
    delta: allocation.delta,
    consistency: allocation.consistency,
    samples: allocation.samples,
    explanation: allocation.reason,
    localPort,
    observations: observations.map((o) => ({ server: formatEndpoint(o.server), mappedAddress: formatEndpoint(o.mapped) })),
    unanswered: unanswered.map(formatEndpoint),
    prediction: { ports: [...prediction.ports], confidence: prediction.confidence },
    durationMs: elapsed(startedAt),
    ...(interrupted ? { interrupted: true as const } : {}),
  };
}

/** One line for people: the class and what it means for the next mapping. */
export function describeAllocation(walk: Pick<PortAllocationWalkSummary, 'kind' | 'delta' | 'prediction'>): string {
  switch (walk.kind) {
    case 'sequential':
      return `sequential (step ${walk.delta}): next ${walk.prediction.ports.join(', ')} (confidence ${walk.prediction.confidence})`;
    case 'port-preserving':
      return 'port-preserving: a mapping keeps its local port';
    case 'fixed':
      return `fixed: one external port (${walk.prediction.ports[0]}) for every destination`;
    case 'random':
      return 'random: the next port cannot be predicted';
    case 'unknown':
      return 'unknown: too few answers';
  }
}

function emptyWalk(explanation: string): PortAllocationWalkSummary {
  return { kind: 'unknown', consistency: 0, samples: 0, explanation, observations: [], unanswered: [], prediction: { ports: [], confidence: 0 }, durationMs: 0 };
}

// ---------------------------------------------------------------------------------------------
// Verdict
// ---------------------------------------------------------------------------------------------

export interface VerdictInput {
  udpWorks: boolean;
  /** The server IP addresses asked over UDP (STUN servers and relays). */
  serversAsked?: readonly string[];
  /** Ctrl-C stopped the checks: the verdict rests on those that finished. */
  interrupted?: boolean;
  /** From RFC 5780 discovery; undefined when it did not run. */
  natDetected?: boolean;
  mapping: MappingBehaviour;
  filtering: FilteringBehaviour;
  hairpinning: Hairpinning | 'unknown';
  /** The addresses several servers saw for one socket, compared. */
  acrossServers: ReflectMapping;
  allocation: PortAllocationKind;
  /** Port-mapping protocols the gateway answers. */
  portMapping: readonly PortMapProtocol[];
  portMappingExternalAddress?: string;
  /** Our public address (`ip:port`) as STUN saw it. */
  publicAddress?: string;
  relaysConfigured: number;
  relaysAnswered: number;
}

export const VERDICT_SUMMARIES: Record<VerdictKind, string> = {
  'no-nat': 'no NAT — this host is reachable at its own address; direct calls will work',
  easy: 'easy NAT — direct calls will usually work',
  'hard-predictable': 'hard NAT, predictable — direct calls may work with port prediction',
  hard: 'hard NAT — calls will mostly be relayed',
  'udp-blocked': 'UDP blocked — wzp cannot make calls from this network',
  unknown: 'unknown — not enough answers to judge this NAT',
};

/**
 * The plain verdict, first rule that applies:
 * 1. nothing answered over UDP, and servers on two or more addresses were asked:
 *    `udp-blocked` (one silent server may just be down: `unknown`, as when the user stopped
 *    the check before anything answered);
 * 2. no NAT (the servers saw this host's own address and port): `no-nat`;
 * 3. the gateway maps ports (PCP, NAT-PMP or UPnP) and is the outermost NAT: `easy`;
 * 4. endpoint-independent mapping (RFC 5780, else every server address saw one address): `easy`;
 * 5. a mapping per destination with sequential or port-preserving allocation: `hard-predictable`;
 * 6. a mapping per destination otherwise (random, unknown): `hard`;
 * 7. else `unknown`.
 */
export function netcheckVerdict(input: VerdictInput): Verdict {
  const reasons: string[] = [];
  const verdict = (kind: VerdictKind): Verdict => {
    if (kind !== 'udp-blocked' && input.relaysConfigured > 0 && input.relaysAnswered === 0) {
      reasons.push('no relay answered: calls that need a relay will fail');
    }
    if (input.interrupted) reasons.push('interrupted (Ctrl-C): this verdict rests on the checks that finished');
    return { kind, summary: VERDICT_SUMMARIES[kind], reasons };
  };
  if (!input.udpWorks) {
    const asked = input.serversAsked ?? [];
    if (input.interrupted) {
      reasons.push('interrupted before any server answered');
      return verdict('unknown');
    }
    if (asked.length >= 2) {
      reasons.push(`no STUN server or relay answered over UDP (${asked.length} server addresses asked): a firewall blocks UDP, or every server is down`);
      return verdict('udp-blocked');
    }
    reasons.push(
      asked.length === 1
        ? `the only server address asked (${asked[0]}) did not answer: it may be down, or UDP may be blocked here; ask a second server to tell them apart`
        : 'no server could be asked (their names did not resolve)',
    );
    return verdict('unknown');
  }
  if (input.natDetected === false) {
    reasons.push('no NAT: the servers saw this host\'s own address and port, so peers reach it directly; only a firewall (the host\'s, or one in the network) filters what comes in');
    if (input.filtering === 'endpoint-independent') reasons.push('endpoint-independent filtering: nothing filters unsolicited UDP to this port');
    else if (input.filtering !== 'unknown') reasons.push(`${input.filtering} filtering by a firewall: peers need us to send first (hole punching works)`);
    return verdict('no-nat');
  }
  const publicIp = input.publicAddress && parseHostPort(input.publicAddress).host;
  const doubleNat = input.portMappingExternalAddress !== undefined && publicIp !== undefined && input.portMappingExternalAddress !== publicIp;
  if (input.portMapping.length > 0) {
    const names = input.portMapping.map(protocolName).join(', ');
    if (!doubleNat) {
      reasons.push(`the gateway maps ports on request (${names}): peers can reach a mapped port directly`);
      return verdict('easy');
    }
    reasons.push(
      `the gateway maps ports (${names}) but its external address ${input.portMappingExternalAddress} is not our public address ${publicIp}: another NAT sits in front (double NAT), so its mappings do not help`,
    );
  }
  const perDestination = input.mapping === 'address-dependent' || input.mapping === 'address-and-port-dependent';
  const independent = input.mapping === 'endpoint-independent' || (input.mapping === 'unknown' && input.acrossServers === 'endpoint-independent');
  if (independent) {
    reasons.push(
      input.mapping === 'endpoint-independent'
        ? 'endpoint-independent mapping: every peer sees the same public address and port'
        : 'every server address saw the same public address and port (mapping not measured: no RFC 5780 STUN server)',
    );
    if (input.filtering === 'endpoint-independent') reasons.push('endpoint-independent filtering: peers can send to us without hole punching');
    else if (input.filtering !== 'unknown') reasons.push(`${input.filtering} filtering: both sides send first (hole punching), which works with this mapping`);
    hairpinReason(input, reasons);
    return verdict('easy');
  }
  if (perDestination || input.acrossServers === 'symmetric' || input.acrossServers === 'multiple-addresses') {
    reasons.push(
      perDestination
        ? `${input.mapping} mapping: each peer sees a different port, so the port a peer learns from a server is not the one it must dial`
        : 'servers saw different public addresses for one socket: a new mapping per destination',
    );
    if (input.allocation === 'sequential' || input.allocation === 'port-preserving') {
      reasons.push(
        input.allocation === 'sequential'
          ? 'ports are allocated sequentially: the next port can be predicted'
          : 'the NAT keeps the local port: a peer can dial it',
      );
      hairpinReason(input, reasons);
      return verdict('hard-predictable');
    }
    reasons.push(
      input.allocation === 'random'
        ? 'ports are allocated at random: they cannot be predicted'
        : `port allocation is ${input.allocation}: no port to predict`,
    );
    if (input.portMapping.length === 0) reasons.push('no port-mapping protocol (PCP, NAT-PMP, UPnP) answered');
    return verdict('hard');
  }
  reasons.push(
    'the NAT mapping could not be measured: configure an RFC 5780 STUN server (two IP addresses: a relay started with --stun-alternate, or coturn with two -L) or more servers on different IPs',
  );
  return verdict('unknown');
}

/**
 * What netcheck measured, as the NatProfile a call would send (core/nat/strategy-types.ts):
 * the mapping (RFC 5780, else the comparison across server addresses), the filtering, the
 * port allocation walk, the public address.
 */
export function netcheckProfile(behaviour: BehaviourCheck, allocation: AllocationCheck, main: FamilyCheck): NatProfile {
  const across = main.acrossServers?.mapping;
  const mapping: MappingBehaviour =
    behaviour.mapping !== 'unknown' ? behaviour.mapping : across === 'endpoint-independent' ? 'endpoint-independent' : across === 'symmetric' ? 'address-and-port-dependent' : 'unknown';
  const ports = allocation.observations.map((o) => parseHostPort(o.mappedAddress).port).filter((p) => Number.isInteger(p) && p > 0);
  const reflexive = main.reflexiveAddress ? [toEndpoint(main.reflexiveAddress)] : [];
  return {
    mapping,
    filtering: behaviour.filtering,
    allocation: { kind: allocation.kind, ...(allocation.delta === undefined ? {} : { delta: allocation.delta }), recentPorts: ports.slice(-16) },
    reflexive,
    consent: true,
  };
}

/** Each strategy's line for this network; a strategy that throws says nothing (it is a plugin). */
export function strategiesForNetwork(strategies: readonly NatStrategy[], profile: NatProfile): { name: string; does: string }[] {
  const out: { name: string; does: string }[] = [];
  for (const s of strategies) {
    try {
      const does = s.describeFor(profile);
      if (typeof does === 'string' && does !== '') out.push({ name: s.name, does: does.slice(0, 300) });
    } catch {
      // A broken plugin does not break the verdict.
    }
  }
  return out;
}

function hairpinReason(input: VerdictInput, reasons: string[]): void {
  if (input.hairpinning === 'not-supported') reasons.push('no hairpinning: two clients behind this NAT reach each other through a relay or their LAN addresses');
}

function protocolName(protocol: PortMapProtocol): string {
  return { pcp: 'PCP', natpmp: 'NAT-PMP', upnp: 'UPnP' }[protocol];
}

function toEndpoint(text: string): Endpoint {
  const { host, port } = parseHostPort(text);
  return { address: host, port };
}

function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return round(sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2);
}

function elapsed(t0: number): number {
  return round(performance.now() - t0);
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

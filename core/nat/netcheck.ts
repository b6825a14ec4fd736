/**
 * netcheck: everything wzp can learn about this network in about a second, and a plain
 * verdict on whether direct calls will work.
 *
 * Checks, run concurrently where they cannot disturb each other:
 *
 * ```
 * t0 ──┬─ port-mapping probe (PCP, NAT-PMP, UPnP; gateway only) ─────────────────────┐
 *      ├─ IPv6: Binding to each IPv6 STUN server (own udp6 socket) ──────────────────┤
 *      └─ IPv4 first contact: Binding to each IPv4 STUN server, concurrently,          │
 *         from the main socket (UDP works? reflexive address, OTHER-ADDRESS, RTT)      │
 *           └─ port allocation: one new mapping after another from a fresh socket      │
 *                └─┬─ behaviour (RFC 5780: mapping, filtering, hairpin), main socket    │
 *                  └─ relays: QUIC connect, reflect, 3 pings each, main socket ─────────┴─ verdict
 * ```
 *
 * Port allocation runs alone because its answer is an ORDER: on a sequential NAT every new
 * mapping anywhere on this host takes the next port, so the behaviour probes or a relay
 * handshake opening mappings at the same time would show up as jitter or a wrong step.
 * Everything after it runs in parallel. The main socket is a QUICSocket whose non-QUIC
 * datagrams go to a StunClient, the one-socket arrangement a wzp client uses for calls.
 *
 * Time boxes (NETCHECK_TIMING) come from measured RTTs where there is one: first contact
 * has none yet (RTO 250 ms, 3 sends, 1 s), allocation probes wait max(100 ms, 10 × RTT),
 * behaviour probes one answer window max(250 ms, 10 × RTT), relay pings max(200 ms,
 * 2 × handshake). A global deadline (default 3 s) aborts whatever is still running; such a
 * check is reported as failed, the others keep their results.
 */
import type dgram from 'node:dgram';
import type { QUICSocket } from '@matrixai/quic';
import type { RelaySession } from '../client/relay-session.js';
import { AbortError, UsageError, throwIfAborted } from '../errors.js';
import { formatHostPort, openSocket, parseHostPort, rawUdpSocket } from '../transport/quic.js';
import { type FilteringBehaviour, type Hairpinning, type MappingBehaviour, discoverNatBehaviour } from './behaviour.js';
import { type PortAllocationKind, type PortObservation, classifyPortAllocation, predictPorts, rfc5780Endpoints } from './port-allocation.js';
import { type PortMapProtocol, PortMapper, type ProtocolProbe } from './portmap.js';
import { type ReflectMapping, type ReflectRelay, classifyReflections } from './reflect.js';
import { type Endpoint, type NatProgressListener, StunClient, assertEndpoint, formatEndpoint, sameEndpoint } from './stun.js';
import { closeUdpSocket, openUdpSocket } from './udp.js';

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
  /** The public (server-reflexive) address: the first configured server's answer. */
  reflexiveAddress?: string;
  /**
   * IPv4: the addresses every server (STUN first contact and relays) saw for the main
   * socket, compared as `wzp reflect` does.
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

export type VerdictKind = 'easy' | 'hard-predictable' | 'hard' | 'udp-blocked' | 'unknown';

export interface Verdict {
  kind: VerdictKind;
  summary: string;
  reasons: string[];
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
}

/** A relay to measure; the caller decides how it is trusted when it connects. */
export type NetcheckRelay = ReflectRelay;

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
  signal?: AbortSignal;
  onProgress?: (event: NetcheckEvent) => void;
}

export async function runNetcheck(options: NetcheckOptions): Promise<NetcheckResult> {
  throwIfAborted(options.signal);
  options.stun.forEach(assertEndpoint);
  const startedAt = performance.now();
  const deadlineMs = (options.deadlineMs ?? NETCHECK_TIMING.deadlineMs) + (options.bindingLifetimeMaxMs ?? 0);
  const signal = options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(deadlineMs)]) : AbortSignal.timeout(deadlineMs);
  const run = new Run(options, signal, deadlineMs, startedAt);
  const v4 = options.stun.filter((s) => !s.address.includes(':'));
  const v6 = options.stun.filter((s) => s.address.includes(':'));
  run.emit({ type: 'netcheck:planned', checks: plannedChecks(options, v4.length > 0, v6.length > 0) });

  let stun: StunClient | undefined;
  const socket = await openSocket({ host: '0.0.0.0', port: 0 }, { onNonQuic: (data, from) => stun?.handlePacket(data, from) });
  const udp = rawUdpSocket(socket);
  const client = new StunClient(udp, { listen: false });
  stun = client;
  try {
    // Started first and awaited last; handled at once so an early failure elsewhere cannot
    // leave them as unhandled rejections.
    const portMapping = run.portMapping();
    const ipv6 = run.ipv6(v6);
    portMapping.catch(() => undefined);
    ipv6.catch(() => undefined);
    const ipv4 = await run.firstContact(client, v4);
    const allocation = await run.allocation(ipv4, client.rttMs);
    const [behaviour, relays] = await Promise.all([run.behaviour(udp, client, v4, ipv4), run.relays(socket)]);
    const result = run.finish({ ipv4, ipv6: await ipv6, behaviour, allocation, portMapping: await portMapping, relays });
    throwIfAborted(options.signal);
    return result;
  } finally {
    client.close();
    await socket.stop({ force: true });
  }
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
  return checks.filter((c) => (c.id !== 'ipv4' && c.id !== 'behaviour' && c.id !== 'allocation') || hasV4).filter((c) => c.id !== 'ipv6' || hasV6);
}

/** One netcheck run: shared deadline, progress and the UDP evidence seen so far. */
class Run {
  private udpEvidence: string | undefined;

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

  /** UDP works as soon as anything answers over UDP (STUN or QUIC). */
  private sawUdp(evidence: string): void {
    if (this.udpEvidence !== undefined) return;
    this.udpEvidence = evidence;
    this.done('udp', 'ok', `works (${evidence})`);
  }

  /** An error as report data; the user's Ctrl-C is rethrown, the deadline is named. */
  private failure(err: unknown): CheckError {
    if (this.options.signal?.aborted) throw new AbortError('netcheck aborted', { cause: this.options.signal.reason });
    const e = err instanceof Error ? err : new Error(String(err));
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

  async ipv6(servers: readonly Endpoint[]): Promise<FamilyCheck> {
    if (servers.length === 0) return { status: 'skipped', servers: [], durationMs: 0, reason: 'no IPv6 STUN server configured' };
    const t0 = performance.now();
    let socket: dgram.Socket;
    try {
      socket = await openUdpSocket('udp6');
    } catch (err) {
      const error = this.failure(err);
      this.done('ipv6', 'failed', error.message);
      return { status: 'failed', servers: [], durationMs: elapsed(t0), reason: `no IPv6 socket: ${error.message}` };
    }
    const client = new StunClient(socket);
    try {
      const results = await this.bindAll(client, servers);
      return this.familyDone('ipv6', results, t0);
    } finally {
      client.close();
      await closeUdpSocket(socket);
    }
  }

  async firstContact(client: StunClient, servers: readonly Endpoint[]): Promise<FamilyCheck> {
    if (servers.length === 0) return { status: 'skipped', servers: [], durationMs: 0, reason: 'no IPv4 STUN server configured' };
    const t0 = performance.now();
    return this.familyDone('ipv4', await this.bindAll(client, servers), t0);
  }

  /** Concurrent Binding requests, boxed for a first contact (no RTT known yet). */
  private async bindAll(client: StunClient, servers: readonly Endpoint[]): Promise<StunServerCheck[]> {
    return Promise.all(
      servers.map(async (server): Promise<StunServerCheck> => {
        try {
          const answer = await client.binding(server, {
            signal: this.signal,
            label: 'first-contact',
            rtoMs: NETCHECK_TIMING.firstContactRtoMs,
            maxAttempts: NETCHECK_TIMING.firstContactAttempts,
            timeoutMs: Math.min(NETCHECK_TIMING.firstContactTimeoutMs, this.remainingMs()),
          });
          this.sawUdp(`STUN ${formatEndpoint(server)} answered`);
          return {
            server: formatEndpoint(server),
            answered: true,
            mappedAddress: formatEndpoint(answer.mappedAddress),
            otherAddress: answer.otherAddress && formatEndpoint(answer.otherAddress),
            rttMs: round(answer.elapsedMs),
          };
        } catch (err) {
          return { server: formatEndpoint(server), answered: false, error: this.failure(err) };
        }
      }),
    );
  }

  private familyDone(id: 'ipv4' | 'ipv6', servers: StunServerCheck[], t0: number): FamilyCheck {
    const first = servers.find((s) => s.answered);
    const check: FamilyCheck = {
      status: first ? 'ok' : 'failed',
      reflexiveAddress: first?.mappedAddress,
      servers,
      durationMs: elapsed(t0),
      reason: first ? undefined : `none of ${servers.length} STUN server${servers.length === 1 ? '' : 's'} answered`,
    };
    this.done(id, check.status, first ? `${first.mappedAddress} (${servers.filter((s) => s.answered).length} of ${servers.length} servers)` : (check.reason as string));
    return check;
  }

  async allocation(ipv4: FamilyCheck, rttMs: number | undefined): Promise<AllocationCheck> {
    const t0 = performance.now();
    const answered = ipv4.servers.filter((s) => s.answered);
    const skip = (reason: string): AllocationCheck => {
      if (ipv4.status !== 'skipped') this.done('allocation', 'skipped', reason);
      return { status: 'skipped', reason, ...emptyWalk(reason) };
    };
    if (answered.length === 0) return skip('no IPv4 STUN server answered');
    const rfc5780 = answered.find((s) => s.otherAddress !== undefined);
    const start = rfc5780 ? [toEndpoint(rfc5780.server)] : answered.map((s) => toEndpoint(s.server));
    if (!rfc5780 && start.length < 3) return skip('needs an RFC 5780 STUN server (OTHER-ADDRESS) or 3 plain ones');
    const rtt = rttMs ?? NETCHECK_TIMING.allocationProbeMinMs;
    const socket = await openUdpSocket('udp4');
    const client = new StunClient(socket, { initialRtoMs: Math.max(50, 3 * rtt) });
    try {
      const walk = await walkPortAllocation(client, socket.address().port, start, {
        count: this.options.predictCount ?? DEFAULT_PREDICT_COUNT,
        maxEndpoints: NETCHECK_TIMING.allocationMaxEndpoints,
        probeTimeoutMs: Math.min(NETCHECK_TIMING.allocationProbeMaxMs, Math.max(NETCHECK_TIMING.allocationProbeMinMs, NETCHECK_TIMING.allocationProbeRtts * rtt)),
        signal: this.signal,
      });
      this.done('allocation', 'ok', describeAllocation(walk));
      return { status: 'ok', ...walk, durationMs: elapsed(t0) };
    } catch (err) {
      const error = this.failure(err);
      this.done('allocation', 'failed', error.message);
      return { status: 'failed', error, ...emptyWalk(error.message), durationMs: elapsed(t0) };
    } finally {
      client.close();
      await closeUdpSocket(socket);
    }
  }

  async behaviour(udp: dgram.Socket, client: StunClient, v4: readonly Endpoint[], ipv4: FamilyCheck): Promise<BehaviourCheck> {
    const t0 = performance.now();
    const unknown = { mapping: 'unknown', filtering: 'unknown', hairpinning: 'unknown', notes: [] } as const;
    const rfc5780 = ipv4.servers.find((s) => s.answered && s.otherAddress !== undefined);
    if (!rfc5780) {
      const reason = v4.length === 0 ? 'no IPv4 STUN server configured' : ipv4.status === 'failed' ? 'no IPv4 STUN server answered' : 'no STUN server supports RFC 5780 (none sent OTHER-ADDRESS)';
      if (v4.length > 0) this.done('behaviour', 'skipped', reason);
      return { status: 'skipped', ...unknown, notes: [], durationMs: 0, reason };
    }
    try {
      const lifetimeMs = this.options.bindingLifetimeMaxMs;
      const b = await discoverNatBehaviour(udp, toEndpoint(rfc5780.server), {
        client,
        signal: this.signal,
        ...(lifetimeMs ? { bindingLifetime: { maxMs: lifetimeMs } } : {}),
      });
      this.done('behaviour', 'ok', `mapping ${b.mapping}, filtering ${b.filtering}, hairpinning ${b.hairpinning}`);
      return {
        status: 'ok',
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
      return { status: 'failed', server: rfc5780.server, ...unknown, notes: [], durationMs: elapsed(t0), error };
    }
  }

  async relays(socket: QUICSocket): Promise<RelayCheck[]> {
    return Promise.all(
      this.options.relays.map(async (relay): Promise<RelayCheck> => {
        const t0 = performance.now();
        const id = `relay:${relay.label}` as const;
        let session: RelaySession | undefined;
        try {
          session = await relay.connect(socket, { timeoutMs: Math.min(NETCHECK_TIMING.relayConnectTimeoutMs, this.remainingMs()), signal: this.signal });
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
          const base = { relay: relay.label, fingerprint: session.relayFingerprint, handshakeMs: round(session.handshakeMs), observedAddress, pingsMs, pingsLost };
          if (medianMs === undefined) {
            // No ping ran at all only when the deadline passed first.
            const error = this.failure(lastError ?? new AbortError('deadline passed before the first ping'));
            this.done(id, 'failed', `no ping answered: ${error.message}`);
            return { ...base, status: 'failed', durationMs: elapsed(t0), error };
          }
          this.done(id, 'ok', `${medianMs} ms median of ${pingsMs.length} pings${pingsLost ? `, ${pingsLost} lost` : ''}`);
          return { ...base, status: 'ok', medianMs, durationMs: elapsed(t0) };
        } catch (err) {
          const error = this.failure(err);
          this.done(id, 'failed', error.message);
          return { relay: relay.label, status: 'failed', pingsMs: [], pingsLost: 0, durationMs: elapsed(t0), error };
        } finally {
          await session?.close();
        }
      }),
    );
  }

  finish(parts: Omit<NetcheckResult, 'udp' | 'preferredRelay' | 'verdict' | 'durationMs'>): NetcheckResult {
    const { ipv4, ipv6, behaviour, allocation, portMapping, relays } = parts;
    if (this.udpEvidence === undefined) this.done('udp', 'failed', 'nothing answered over UDP');
    const udp: UdpCheck = { works: this.udpEvidence !== undefined, evidence: this.udpEvidence ?? 'no STUN server or relay answered over UDP' };
    const seen = [
      ...ipv4.servers.flatMap((s) => (s.mappedAddress ? [s.mappedAddress] : [])),
      ...relays.flatMap((r) => (r.observedAddress ? [r.observedAddress] : [])),
    ];
    const withAcross: FamilyCheck =
      seen.length === 0 ? ipv4 : { ...ipv4, reflexiveAddress: seen[0], acrossServers: classifyReflections(seen.map(toEndpoint)) };
    const fastest = relays
      .filter((r): r is RelayCheck & { medianMs: number } => r.medianMs !== undefined)
      .sort((a, b) => a.medianMs - b.medianMs)[0];
    return {
      udp,
      ipv4: withAcross,
      ipv6,
      behaviour,
      allocation,
      portMapping,
      relays,
      preferredRelay: fastest && { relay: fastest.relay, medianMs: fastest.medianMs },
      verdict: netcheckVerdict({
        udpWorks: udp.works,
        natDetected: behaviour.natDetected,
        mapping: behaviour.mapping,
        filtering: behaviour.filtering,
        hairpinning: behaviour.hairpinning,
        acrossServers: withAcross.acrossServers?.mapping ?? 'unknown',
        allocation: allocation.kind,
        portMapping: portMapping.available,
        portMappingExternalAddress: portMapping.externalAddress,
        publicAddress: withAcross.reflexiveAddress,
        relaysConfigured: relays.length,
        relaysAnswered: relays.filter((r) => r.status === 'ok').length,
      }),
      durationMs: elapsed(this.startedAt),
    };
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
  for (let i = 0; i < queue.length && i < options.maxEndpoints; i++) {
    const server = queue[i];
    const outcome = await client.probe(server, { signal: options.signal, onProgress: options.onProgress, label: `allocation-${i + 1}`, timeoutMs: options.probeTimeoutMs });
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
  easy: 'easy NAT — direct calls will usually work',
  'hard-predictable': 'hard NAT, predictable — direct calls may work with port prediction',
  hard: 'hard NAT — calls will mostly be relayed',
  'udp-blocked': 'UDP blocked — wzp cannot make calls from this network',
  unknown: 'unknown — not enough answers to judge this NAT',
};

/**
 * The plain verdict, first rule that applies:
 * 1. nothing answered over UDP: `udp-blocked`;
 * 2. the gateway maps ports (PCP, NAT-PMP or UPnP) and is the outermost NAT: `easy`;
 * 3. no NAT, or endpoint-independent mapping (RFC 5780, else every server saw one address): `easy`;
 * 4. a mapping per destination with sequential or port-preserving allocation: `hard-predictable`;
 * 5. a mapping per destination otherwise (random, unknown): `hard`;
 * 6. else `unknown`.
 */
export function netcheckVerdict(input: VerdictInput): Verdict {
  const reasons: string[] = [];
  const verdict = (kind: VerdictKind): Verdict => {
    if (kind !== 'udp-blocked' && input.relaysConfigured > 0 && input.relaysAnswered === 0) {
      reasons.push('no relay answered: calls that need a relay will fail');
    }
    return { kind, summary: VERDICT_SUMMARIES[kind], reasons };
  };
  if (!input.udpWorks) {
    reasons.push('no STUN server or relay answered over UDP: a firewall blocks UDP, or every server is down');
    return verdict('udp-blocked');
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
  if (input.natDetected === false) {
    reasons.push('no NAT: STUN saw our own local address');
    return verdict('easy');
  }
  const perDestination = input.mapping === 'address-dependent' || input.mapping === 'address-and-port-dependent';
  const independent = input.mapping === 'endpoint-independent' || (input.mapping === 'unknown' && input.acrossServers === 'endpoint-independent');
  if (independent) {
    reasons.push(
      input.mapping === 'endpoint-independent'
        ? 'endpoint-independent mapping: every peer sees the same public address and port'
        : 'every server saw the same public address and port (mapping not measured: no RFC 5780 STUN server)',
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
  reasons.push('the NAT mapping could not be measured: configure an RFC 5780 STUN server (two IP addresses, e.g. coturn with two -L) or more servers on different IPs');
  return verdict('unknown');
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

/**
 * Port allocation: how a NAT picks the external port of each new mapping, and a prediction
 * of the next ones (what a peer behind a symmetric NAT needs for hole punching).
 *
 * From ONE local socket, Binding Requests go one after another to distinct server endpoints,
 * so a NAT with address(-and-port)-dependent mapping must open a new mapping each time. The
 * sequence of external ports is then classified:
 *  - port-preserving: every external port equals the local port;
 *  - fixed: every destination saw the same external port, not the local one (one
 *    endpoint-independent mapping; the port to dial is that port);
 *  - sequential: consecutive new mappings differ by a constant small delta, tolerating one
 *    wraparound of the port pool and one jitter (another host's mapping in between);
 *  - random: anything else with enough samples;
 *  - unknown: fewer than MIN_ALLOCATION_SAMPLES answers (or distinct mappings).
 */
import type dgram from 'node:dgram';
import { UsageError } from '../errors.js';
import { type Endpoint, type NatProgressListener, StunClient, assertEndpoint, formatEndpoint } from './stun.js';

export const MIN_ALLOCATION_SAMPLES = 3;
/** Largest |delta| that counts as sequential allocation. */
export const MAX_SEQUENTIAL_DELTA = 32;
/** Largest same-direction step tolerated once as jitter (other hosts allocating in between). */
export const MAX_JITTER_DELTA = 256;
/** A step against the direction of allocation at least this large is the pool wrapping
 *  (sequential allocation never steps back otherwise; pools are larger than this). */
export const MIN_WRAP_SPAN = 64;
/** Where allocation continues after passing the top of the port range (Linux, most NATs). */
export const WRAP_FLOOR_PORT = 1024;
const MAX_PORT = 65535;

export interface PortObservation {
  readonly server: Endpoint;
  readonly localPort: number;
  readonly mapped: Endpoint;
}

export type PortAllocationKind = 'port-preserving' | 'fixed' | 'sequential' | 'random' | 'unknown';

export interface PortAllocation {
  readonly kind: PortAllocationKind;
  /** Port step between consecutive new mappings ('sequential' only). */
  readonly delta?: number;
  /** Fraction of steps that matched the pattern (1 for preserving/fixed, 0 for random/unknown). */
  readonly consistency: number;
  readonly samples: number;
  readonly reason: string;
}

export interface PortPrediction {
  readonly allocation: PortAllocation;
  /** Ports to try, most likely first: one port for preserving/fixed, K for sequential, none otherwise. */
  readonly ports: readonly number[];
  /** 0..1: how consistent the observed steps were. */
  readonly confidence: number;
}

export function classifyPortAllocation(observations: readonly PortObservation[]): PortAllocation {
  const samples = observations.length;
  if (samples < MIN_ALLOCATION_SAMPLES) {
    return { kind: 'unknown', consistency: 0, samples, reason: `${samples} answers, at least ${MIN_ALLOCATION_SAMPLES} needed` };
  }
  if (observations.every((o) => o.mapped.port === o.localPort)) {
    return { kind: 'port-preserving', consistency: 1, samples, reason: 'every external port equals the local port' };
  }
  const ports = distinctRuns(observations.map((o) => o.mapped.port));
  if (ports.length === 1) {
    return { kind: 'fixed', consistency: 1, samples, reason: `every destination saw external port ${ports[0]}` };
  }
  if (ports.length < MIN_ALLOCATION_SAMPLES) {
    return { kind: 'unknown', consistency: 0, samples, reason: `${ports.length} distinct mappings, at least ${MIN_ALLOCATION_SAMPLES} needed` };
  }
  return classifySteps(steps(ports), samples);
}

/** Consecutive equal ports are one reused mapping (e.g. address-dependent mapping, same IP). */
function distinctRuns(ports: readonly number[]): number[] {
  return ports.filter((port, i) => i === 0 || port !== ports[i - 1]);
}

function steps(ports: readonly number[]): number[] {
  return ports.slice(1).map((port, i) => port - ports[i]);
}

function classifySteps(deltas: readonly number[], samples: number): PortAllocation {
  const delta = dominantSmallStep(deltas);
  const random: PortAllocation = { kind: 'random', consistency: 0, samples, reason: `no consistent step in ${deltas.join(', ')}` };
  if (delta === undefined) return random;
  let matches = 0;
  let wraps = 0;
  let jitters = 0;
  for (const step of deltas) {
    if (step === delta) matches++;
    else if (Math.sign(step) === -Math.sign(delta) && Math.abs(step) >= MIN_WRAP_SPAN) wraps++;
    else if (Math.sign(step) === Math.sign(delta) && Math.abs(step) <= MAX_JITTER_DELTA) jitters++;
    else return random;
  }
  if (matches < 2 || wraps > 1 || jitters > 1) return random;
  return {
    kind: 'sequential',
    delta,
    consistency: matches / (matches + jitters),
    samples,
    reason: `step ${delta} in ${matches} of ${deltas.length} steps${wraps ? ', one wraparound' : ''}${jitters ? ', one jitter' : ''}`,
  };
}

/** The most frequent non-zero step with |step| ≤ MAX_SEQUENTIAL_DELTA (ties: smaller |step|). */
function dominantSmallStep(deltas: readonly number[]): number | undefined {
  const counts = new Map<number, number>();
  for (const step of deltas) {
    if (step !== 0 && Math.abs(step) <= MAX_SEQUENTIAL_DELTA) counts.set(step, (counts.get(step) ?? 0) + 1);
  }
  let best: number | undefined;
  for (const [step, count] of counts) {
    const bestCount = best === undefined ? 0 : (counts.get(best) ?? 0);
    if (count > bestCount || (count === bestCount && best !== undefined && Math.abs(step) < Math.abs(best))) best = step;
  }
  return best;
}

/** Moves `port` by `step` within WRAP_FLOOR_PORT..65535, wrapping at either end. */
export function advancePort(port: number, step: number): number {
  const span = MAX_PORT - WRAP_FLOOR_PORT + 1;
  const offset = (((port - WRAP_FLOOR_PORT + step) % span) + span) % span;
  return WRAP_FLOOR_PORT + offset;
}

/** The external ports the next `k` new mappings will most likely get. */
export function predictPorts(observations: readonly PortObservation[], k: number): PortPrediction {
  if (!Number.isInteger(k) || k < 1 || k > MAX_PORT) throw new UsageError(`cannot predict ${k} ports: k must be an integer in 1..${MAX_PORT}`);
  const allocation = classifyPortAllocation(observations);
  const last = observations.at(-1);
  switch (allocation.kind) {
    case 'port-preserving':
    case 'fixed':
      return { allocation, ports: last ? [last.mapped.port] : [], confidence: allocation.consistency };
    case 'sequential': {
      const delta = allocation.delta ?? 0;
      const start = last?.mapped.port ?? 0;
      const ports = Array.from({ length: k }, (_, i) => advancePort(start, delta * (i + 1)));
      return { allocation, ports, confidence: allocation.consistency };
    }
    case 'random':
    case 'unknown':
      return { allocation, ports: [], confidence: 0 };
  }
}

/** The four endpoints of an RFC 5780 server: (primary|alternate IP) × (primary|alternate port). */
export function rfc5780Endpoints(primary: Endpoint, other: Endpoint): Endpoint[] {
  return [
    primary,
    { address: primary.address, port: other.port },
    { address: other.address, port: primary.port },
    other,
  ];
}

export interface PortAllocationOptions {
  signal?: AbortSignal;
  onProgress?: NatProgressListener;
  /** A client already attached to (or fed by) the socket; otherwise one is made and closed. */
  client?: StunClient;
  /** Per-probe deadline (default: the client's retransmission schedule). */
  probeTimeoutMs?: number;
}

export interface PortAllocationReport {
  readonly localPort: number;
  readonly observations: readonly PortObservation[];
  readonly unanswered: readonly Endpoint[];
  readonly allocation: PortAllocation;
  readonly durationMs: number;
}

/**
 * Probes `servers` one after another from `socket` (order matters: it is the allocation
 * order). Unanswered servers are skipped and listed.
 */
export async function detectPortAllocation(socket: dgram.Socket, servers: readonly Endpoint[], options: PortAllocationOptions = {}): Promise<PortAllocationReport> {
  assertDistinctServers(servers);
  const startedAt = performance.now();
  const client = options.client ?? new StunClient(socket);
  const localPort = socket.address().port;
  const observations: PortObservation[] = [];
  const unanswered: Endpoint[] = [];
  try {
    for (const [i, server] of servers.entries()) {
      const outcome = await client.probe(server, {
        signal: options.signal,
        onProgress: options.onProgress,
        label: `allocation-${i + 1}`,
        timeoutMs: options.probeTimeoutMs,
      });
      if (outcome.answered && outcome.message.cls === 'success' && outcome.message.mappedAddress) {
        observations.push({ server, localPort, mapped: outcome.message.mappedAddress });
      } else {
        unanswered.push(server);
      }
    }
  } finally {
    if (!options.client) client.close();
  }
  return { localPort, observations, unanswered, allocation: classifyPortAllocation(observations), durationMs: performance.now() - startedAt };
}

function assertDistinctServers(servers: readonly Endpoint[]): void {
  servers.forEach(assertEndpoint);
  const keys = new Set(servers.map(formatEndpoint));
  if (servers.length < MIN_ALLOCATION_SAMPLES || keys.size !== servers.length) {
    throw new UsageError(`port allocation needs at least ${MIN_ALLOCATION_SAMPLES} distinct server endpoints, got ${keys.size}`, {
      suggestions: ['an RFC 5780 server offers four: rfc5780Endpoints(primary, otherAddress)'],
    });
  }
}

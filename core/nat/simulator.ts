/**
 * A NAT simulator: two hosts, each behind a NAT, a relay/STUN server with two IPs and two
 * ports, and a "wan" between them with a one-way latency and optional loss. Deterministic
 * (one seed), event-driven on a virtual clock: no sockets, no timers, no traffic, thousands
 * of simulated calls per second. It exists to hold hard-NAT strategies (core/nat/strategy-types.ts)
 * to the success rates they claim (core/compliance/nat-strategy.ts) and to try techniques
 * without a namespace lab.
 *
 * What is modelled (RFC 4787 terms):
 *  - mapping: endpoint-independent (one external port per internal endpoint),
 *    address-dependent (one per internal endpoint and remote IP), address-and-port-dependent
 *    (one per remote IP:port); a mapping lives until `mappingTimeoutMs` after its last
 *    outbound packet (inbound packets do not refresh it, RFC 4787 REQ-6 leaves that open);
 *  - filtering: endpoint-independent, address-dependent (the mapping has sent to that IP),
 *    address-and-port-dependent (to that IP:port); a packet to an external port without a live
 *    mapping, or filtered, is dropped and counted;
 *  - allocation of a new mapping's external port: port-preserving (the internal port; when it
 *    is taken, the next free port up, as Cisco PAT does, or a random free one), sequential
 *    (one NAT-wide counter stepping by `delta`, wrapping within the pool, skipping taken
 *    ports), random (uniform over the free ports of the pool). A port is taken while any live
 *    mapping holds it: no port overloading (a NAT that reuses one external port for several
 *    destinations looks endpoint-independent from outside and is configured as such);
 *  - background traffic: other hosts behind the same NAT open new flows as a Poisson process
 *    of `backgroundPerSecond`, each a new mapping: on a sequential NAT they take ports between
 *    ours (the "jitter" that breaks port prediction, FACTS.md: beyond ~35/s);
 *  - no hairpinning, one public IP per NAT, no Linux conntrack quirks (an early inbound packet
 *    leaves no state), no LAN latency.
 *
 * A call, as the real client runs it (simulateCall):
 *  1. each side's call socket talks to the relay (the server's primary endpoint) and measures
 *     its NatProfile as it would at call time (measureProfile below: the relay's view, RFC 5780
 *     mapping probes to the server's three other endpoints from the call socket, filtering
 *     probes with CHANGE-REQUEST from an auxiliary socket, allocation classified by the real
 *     classifier from the call socket's observed ports);
 *  2. the profiles cross through the relay (one relay hop each way after the slower side);
 *  3. the ordinary connectivity checks: each call socket sends `checks.packets` rounds to every
 *     reflexive endpoint the peer announced (on symmetric NATs these open new mappings, as in
 *     real life); any socket answers a check from itself to the check's source;
 *  4. each side's ProbePlan, executed as the checker's executor does (core/p2p/hard-nat.ts):
 *     `sockets` extra sockets opened at the plan's start (0: the call socket sends); the
 *     targets without duplicates; from `startAfterMs` on, a batch every PROBE_BATCH_MS sends
 *     what `ratePerSecond` has earned, round-robin (probeOrder), while inside `budget.ms` and
 *     until `budget.packets` are sent; the sockets listen until the strategy's time slot ends
 *     (the longer of the two halves' `budget.ms`, both sides alike) or the first probe is
 *     answered on either side, which ends both plans;
 *  5. every socket (call socket always, extra sockets while their plan runs) answers a probe
 *     from itself to the probe's source, as a connectivity-check response.
 * The plans run even when the plain checks got through (the checker would not start them
 * then): a plan's success is measured on its own, in the NAT state the checks left; the result
 * reports both.
 * Plans outside the limits they were given or their own budget, or aiming at an address the
 * peer did not announce, are refused (PluginError): the simulator is also the reference for
 * "a plan never exceeds its budget", and it checks its own counters against each plan.
 *
 * Randomness: one seed, split into independent streams (the wan's loss, each NAT, each host's
 * ports, each side's StrategyContext.random) so that changing one part of a scenario does not
 * reshuffle the others.
 */
import { InternalError, PluginError, UsageError } from '../errors.js';
import { Prng } from '../media/prng.js';
import { answerWindowMs, classifyFiltering, classifyMapping, type NatDependence } from './behaviour.js';
import { classifyPortAllocation, rfc5780Endpoints, type PortObservation } from './port-allocation.js';
import { MAX_PLAN_TARGETS, PROBE_BATCH_MS } from '../p2p/hard-nat.js';
import { DEFAULT_STRATEGY_LIMITS, type NatProfile, type NatStrategy, type ProbePlan, type StrategyContext, type StrategyLimits } from './strategy-types.js';
import type { Endpoint } from './stun.js';

export type SimSide = 'a' | 'b';
export type SimDependence = Exclude<NatDependence, 'unknown'>;
export type SimAllocation = 'port-preserving' | 'sequential' | 'random';

export interface SimNatConfig {
  mapping: SimDependence;
  filtering: SimDependence;
  allocation: SimAllocation;
  /** 'sequential': the step between consecutive new mappings, a non-zero integer (default 1). */
  delta?: number;
  /** 'port-preserving': where a taken port goes: the next free port up (default) or a random free one. */
  preserveFallback?: 'next' | 'random';
  /** Default: 203.0.113.10 for side a, 198.51.100.20 for side b. */
  publicIp?: string;
  /** External ports the NAT hands out (default 1024..65535). */
  portPool?: { min: number; max: number };
  /** New flows per second opened by other hosts behind this NAT (default 0). */
  backgroundPerSecond?: number;
  /** A mapping's lifetime after its last outbound packet (default 120 s, RFC 4787 REQ-5's floor). */
  mappingTimeoutMs?: number;
}

/** Bounds on what the simulator accepts (configs and the limits plans are given). */
export const SIM_BOUNDS = Object.freeze({
  maxLatencyMs: 10_000,
  maxBackgroundPerSecond: 10_000,
  maxDelta: 1024,
  minPoolPorts: 64,
  minMappingTimeoutMs: 1_000,
  maxCheckPackets: 64,
  maxCheckIntervalMs: 10_000,
  /** StrategyLimits beyond these are refused before any plan is asked for. */
  maxPackets: 65_536,
  maxSockets: 4_096,
  maxMs: 120_000,
  maxRatePerSecond: 10_000,
  /** Targets in one plan: the executor's MAX_PLAN_TARGETS (it cuts the rest). */
  maxTargets: MAX_PLAN_TARGETS,
  /** Events one simulation may process: a guard against a runaway, far above any bounded plan. */
  maxEvents: 5_000_000,
});

/** The simulated relay/STUN server: RFC 5780, two IPs × two ports; the relay is `primary`. */
export const SIM_SERVER: Readonly<{ primary: Endpoint; other: Endpoint }> = Object.freeze({
  primary: Object.freeze({ address: '192.0.2.1', port: 3478 }),
  other: Object.freeze({ address: '192.0.2.2', port: 3479 }),
});

const DEFAULT_PUBLIC_IP: Record<SimSide, string> = { a: '203.0.113.10', b: '198.51.100.20' };
const PRIVATE_IP: Record<SimSide, string> = { a: '192.168.1.10', b: '192.168.2.20' };
/** Where hosts' operating systems pick local ports (Linux's default ephemeral range). */
const EPHEMERAL = { min: 32_768, max: 60_999 } as const;
const DEFAULT_POOL = { min: 1024, max: 65_535 } as const;
const DEFAULT_MAPPING_TIMEOUT_MS = 120_000;
const DEFAULT_LATENCY_MS = 20;
const DEFAULT_CHECKS = { packets: 3, intervalMs: 50, skewMs: 0 } as const;
/** The relay connection exists before a call: its binding gets a long, patient deadline. */
const RELAY_BINDING_DEADLINE_MS = 3_000;
const MAX_TRANSACTION_ATTEMPTS = 4;
/** Independent random streams of one seed. */
const STREAM = { wanA: 1, natA: 2, natB: 3, hostA: 4, hostB: 5, randomA: 6, randomB: 7, wanB: 8, backgroundA: 9, backgroundB: 10 } as const;

const other = (side: SimSide): SimSide => (side === 'a' ? 'b' : 'a');
const key = (e: Endpoint): string => `${e.address}:${e.port}`;

// ---------------------------------------------------------------------------------------------
// Virtual clock
// ---------------------------------------------------------------------------------------------

/** A packet on the wire, kept in its arrival event (no closure per packet: most events are these). */
interface InFlight {
  from: Endpoint;
  to: Endpoint;
  payload: Payload;
}

interface SimEvent {
  at: number;
  seq: number;
  run: (() => void) | undefined;
  packet: InFlight | undefined;
}

/** A binary min-heap on (time, insertion order): equal times run first-in first-out, so runs reproduce. */
class EventQueue {
  private readonly heap: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  peekTime(): number {
    return this.heap[0]?.at ?? Infinity;
  }

  push(at: number, run: (() => void) | undefined, packet?: InFlight): void {
    const heap = this.heap;
    const event: SimEvent = { at, seq: this.seq++, run, packet };
    let i = heap.push(event) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = event;
  }

  pop(): SimEvent | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right], heap[left]) ? right : left;
      if (!before(heap[child], last)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

function before(x: SimEvent, y: SimEvent): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

// ---------------------------------------------------------------------------------------------
// The NAT
// ---------------------------------------------------------------------------------------------

interface ResolvedNatConfig {
  mapping: SimDependence;
  filtering: SimDependence;
  allocation: SimAllocation;
  delta: number;
  preserveFallback: 'next' | 'random';
  publicIp: string;
  portPool: { min: number; max: number };
  backgroundPerSecond: number;
  mappingTimeoutMs: number;
}

interface SimMapping {
  readonly key: string;
  readonly internal: Endpoint;
  readonly external: number;
  readonly background: boolean;
  lastOutboundAt: number;
  /** Remote IPs (address-dependent filtering) or IP:ports (address-and-port-dependent) sent to. */
  readonly permits: Set<string>;
}

export interface SimNatStats {
  /** New mappings for the simulated host's sockets. */
  mappings: number;
  /** New mappings of other hosts' flows (background traffic). */
  backgroundMappings: number;
  expired: number;
  droppedNoMapping: number;
  droppedFiltered: number;
  /** Inbound packets that passed the filter of another host's (background) mapping. */
  deliveredToOtherHosts: number;
  /** Outbound packets dropped because every port of the pool was taken. */
  droppedPoolExhausted: number;
  /** Packets to the NAT's own public IP from inside (no hairpinning). */
  droppedHairpin: number;
}

const DEPENDENCES: readonly SimDependence[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];
const ALLOCATIONS: readonly SimAllocation[] = ['port-preserving', 'sequential', 'random'];

function resolveNat(config: SimNatConfig, defaultPublicIp: string): ResolvedNatConfig {
  const fail = (what: string) => new UsageError(`NAT simulator: ${what}`);
  if (config === null || typeof config !== 'object') throw fail('a NAT config must be an object');
  if (!DEPENDENCES.includes(config.mapping)) throw fail(`mapping must be one of ${DEPENDENCES.join(', ')}`);
  if (!DEPENDENCES.includes(config.filtering)) throw fail(`filtering must be one of ${DEPENDENCES.join(', ')}`);
  if (!ALLOCATIONS.includes(config.allocation)) throw fail(`allocation must be one of ${ALLOCATIONS.join(', ')}`);
  const delta = config.delta ?? 1;
  if (!Number.isInteger(delta) || delta === 0 || Math.abs(delta) > SIM_BOUNDS.maxDelta) throw fail(`delta must be a non-zero integer within ±${SIM_BOUNDS.maxDelta}`);
  const pool = config.portPool ?? DEFAULT_POOL;
  if (!Number.isInteger(pool.min) || !Number.isInteger(pool.max) || pool.min < 1 || pool.max > 65_535 || pool.max - pool.min + 1 < SIM_BOUNDS.minPoolPorts) {
    throw fail(`portPool must be integers within 1..65535 spanning at least ${SIM_BOUNDS.minPoolPorts} ports`);
  }
  const background = config.backgroundPerSecond ?? 0;
  if (!Number.isFinite(background) || background < 0 || background > SIM_BOUNDS.maxBackgroundPerSecond) {
    throw fail(`backgroundPerSecond must be within 0..${SIM_BOUNDS.maxBackgroundPerSecond}`);
  }
  const timeout = config.mappingTimeoutMs ?? DEFAULT_MAPPING_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout < SIM_BOUNDS.minMappingTimeoutMs) throw fail(`mappingTimeoutMs must be at least ${SIM_BOUNDS.minMappingTimeoutMs}`);
  const fallback = config.preserveFallback ?? 'next';
  if (fallback !== 'next' && fallback !== 'random') throw fail("preserveFallback must be 'next' or 'random'");
  const publicIp = config.publicIp ?? defaultPublicIp;
  if (typeof publicIp !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(publicIp)) throw fail(`publicIp must be an IPv4 literal, got ${String(publicIp)}`);
  return {
    mapping: config.mapping,
    filtering: config.filtering,
    allocation: config.allocation,
    delta,
    preserveFallback: fallback,
    publicIp,
    portPool: { min: pool.min, max: pool.max },
    backgroundPerSecond: background,
    mappingTimeoutMs: timeout,
  };
}

/**
 * One NAT: its mapping table, filter and port allocator. The simulated world drives it; it is
 * exported so that tests can check RFC 4787 behaviours packet by packet.
 */
export class SimNat {
  readonly config: Readonly<ResolvedNatConfig>;
  readonly stats: SimNatStats = {
    mappings: 0,
    backgroundMappings: 0,
    expired: 0,
    droppedNoMapping: 0,
    droppedFiltered: 0,
    deliveredToOtherHosts: 0,
    droppedPoolExhausted: 0,
    droppedHairpin: 0,
  };
  private readonly byKey = new Map<string, SimMapping>();
  private readonly byPort = new Map<number, SimMapping>();
  private readonly poolSize: number;
  private nextSequential: number;
  private backgroundFlows = 0;

  constructor(config: SimNatConfig, private readonly rng: Prng, defaultPublicIp = DEFAULT_PUBLIC_IP.a) {
    this.config = resolveNat(config, defaultPublicIp);
    this.poolSize = this.config.portPool.max - this.config.portPool.min + 1;
    // Where the counter stands when the simulation starts: anywhere (the NAT has been up a while).
    this.nextSequential = this.config.portPool.min + Math.floor(rng.next() * this.poolSize);
  }

  get publicIp(): string {
    return this.config.publicIp;
  }

  /**
   * An outbound packet from `internal` to `remote` at `now`: the public source the remote
   * sees, creating or refreshing the mapping and opening the filter; undefined when dropped.
   */
  outbound(now: number, internal: Endpoint, remote: Endpoint, background = false): Endpoint | undefined {
    if (remote.address === this.publicIp) {
      this.stats.droppedHairpin++;
      return undefined;
    }
    const remoteKey = key(remote);
    const mappingKey = this.mappingKey(internal, remote, remoteKey);
    let mapping = this.live(this.byKey.get(mappingKey), now);
    if (mapping === undefined) {
      const port = this.allocate(internal.port, now);
      if (port === undefined) {
        this.stats.droppedPoolExhausted++;
        return undefined;
      }
      mapping = { key: mappingKey, internal, external: port, background, lastOutboundAt: now, permits: new Set() };
      this.byKey.set(mappingKey, mapping);
      this.byPort.set(port, mapping);
      if (background) this.stats.backgroundMappings++;
      else this.stats.mappings++;
    }
    mapping.lastOutboundAt = now;
    const permit = this.permitKey(remote, remoteKey);
    if (permit !== undefined) mapping.permits.add(permit);
    return { address: this.publicIp, port: mapping.external };
  }

  /**
   * An inbound packet from `remote` to this NAT's `externalPort`: the internal endpoint it is
   * forwarded to, or undefined (no live mapping, or filtered: counted).
   */
  inbound(now: number, remote: Endpoint, externalPort: number): { internal: Endpoint; background: boolean } | undefined {
    const mapping = this.live(this.byPort.get(externalPort), now);
    if (mapping === undefined) {
      this.stats.droppedNoMapping++;
      return undefined;
    }
    const permit = this.permitKey(remote);
    if (permit !== undefined && !mapping.permits.has(permit)) {
      this.stats.droppedFiltered++;
      return undefined;
    }
    if (mapping.background) this.stats.deliveredToOtherHosts++;
    return { internal: mapping.internal, background: mapping.background };
  }

  /** Another host behind this NAT opens a new flow (a new mapping, nothing else). */
  openBackgroundFlow(now: number): void {
    const n = this.backgroundFlows++;
    const internal = { address: `10.${64 + ((n >> 16) & 63)}.${(n >> 8) & 255}.${n & 255}`, port: this.ephemeralPort() };
    const remote = { address: `198.18.${Math.floor(this.rng.next() * 256)}.${1 + Math.floor(this.rng.next() * 254)}`, port: 1 + Math.floor(this.rng.next() * 65_535) };
    this.outbound(now, internal, remote, true);
  }

  /** The external port of the live mapping `internal` → `remote` would use, without creating one. */
  mappingFor(now: number, internal: Endpoint, remote: Endpoint): number | undefined {
    return this.live(this.byKey.get(this.mappingKey(internal, remote, key(remote))), now)?.external;
  }

  /** Live mappings (ours and other hosts'). */
  liveMappings(now: number): number {
    this.reap(now);
    return this.byPort.size;
  }

  private mappingKey(internal: Endpoint, remote: Endpoint, remoteKey: string): string {
    const from = key(internal);
    switch (this.config.mapping) {
      case 'endpoint-independent':
        return from;
      case 'address-dependent':
        return `${from}>${remote.address}`;
      case 'address-and-port-dependent':
        return `${from}>${remoteKey}`;
    }
  }

  private permitKey(remote: Endpoint, remoteKey = key(remote)): string | undefined {
    switch (this.config.filtering) {
      case 'endpoint-independent':
        return undefined;
      case 'address-dependent':
        return remote.address;
      case 'address-and-port-dependent':
        return remoteKey;
    }
  }

  private live(mapping: SimMapping | undefined, now: number): SimMapping | undefined {
    if (mapping === undefined) return undefined;
    if (now - mapping.lastOutboundAt < this.config.mappingTimeoutMs) return mapping;
    this.byKey.delete(mapping.key);
    this.byPort.delete(mapping.external);
    this.stats.expired++;
    return undefined;
  }

  private reap(now: number): void {
    for (const mapping of [...this.byPort.values()]) this.live(mapping, now);
  }

  private taken(port: number, now: number): boolean {
    return this.live(this.byPort.get(port), now) !== undefined;
  }

  private wrap(port: number): number {
    const { min } = this.config.portPool;
    return min + ((((port - min) % this.poolSize) + this.poolSize) % this.poolSize);
  }

  private allocate(wanted: number, now: number): number | undefined {
    if (this.byPort.size >= this.poolSize) {
      this.reap(now);
      if (this.byPort.size >= this.poolSize) return undefined;
    }
    switch (this.config.allocation) {
      case 'sequential':
        for (let i = 0; i < this.poolSize; i++) {
          const port = this.nextSequential;
          this.nextSequential = this.wrap(port + this.config.delta);
          if (!this.taken(port, now)) return port;
        }
        // A delta sharing a factor with the pool size cycles through part of it only.
        return undefined;
      case 'random':
        return this.randomFree(now);
      case 'port-preserving': {
        const { min, max } = this.config.portPool;
        if (wanted >= min && wanted <= max && !this.taken(wanted, now)) return wanted;
        if (this.config.preserveFallback === 'random') return this.randomFree(now);
        for (let i = 1; i <= this.poolSize; i++) {
          const port = this.wrap(wanted + i);
          if (!this.taken(port, now)) return port;
        }
        return undefined;
      }
    }
  }

  private randomFree(now: number): number | undefined {
    const { min } = this.config.portPool;
    for (let i = 0; i < 64; i++) {
      const port = min + Math.floor(this.rng.next() * this.poolSize);
      if (!this.taken(port, now)) return port;
    }
    const start = Math.floor(this.rng.next() * this.poolSize);
    for (let i = 0; i < this.poolSize; i++) {
      const port = min + ((start + i) % this.poolSize);
      if (!this.taken(port, now)) return port;
    }
    return undefined;
  }

  private ephemeralPort(): number {
    return EPHEMERAL.min + Math.floor(this.rng.next() * (EPHEMERAL.max - EPHEMERAL.min + 1));
  }
}

// ---------------------------------------------------------------------------------------------
// Hosts, packets, the world
// ---------------------------------------------------------------------------------------------

type Payload =
  | { kind: 'binding'; tx: number; changeIp: boolean; changePort: boolean }
  | { kind: 'binding-answer'; tx: number; mapped: Endpoint }
  | { kind: 'check' | 'check-answer' | 'probe' | 'probe-answer'; tx: number };

interface SimSocket {
  readonly side: SimSide;
  readonly port: number;
  /** Its private endpoint (one object per socket: the NAT sees it on every packet). */
  readonly internal: Endpoint;
  readonly kind: 'call' | 'aux' | 'extra';
  /** The extra socket's index in its plan (0-based); -1 otherwise. */
  readonly index: number;
  open: boolean;
}

class SimHost {
  readonly sockets = new Map<number, SimSocket>();
  readonly call: SimSocket;

  constructor(
    readonly side: SimSide,
    readonly privateIp: string,
    private readonly rng: Prng,
  ) {
    this.call = this.open('call');
  }

  open(kind: SimSocket['kind'], index = -1): SimSocket {
    const span = EPHEMERAL.max - EPHEMERAL.min + 1;
    let port = EPHEMERAL.min + Math.floor(this.rng.next() * span);
    for (let i = 0; this.sockets.has(port); i++) {
      if (i >= span) throw new InternalError('NAT simulator: a host ran out of local ports');
      port = port === EPHEMERAL.max ? EPHEMERAL.min : port + 1;
    }
    const socket: SimSocket = { side: this.side, port, internal: { address: this.privateIp, port }, kind, index, open: true };
    this.sockets.set(port, socket);
    return socket;
  }

  close(socket: SimSocket): void {
    socket.open = false;
    this.sockets.delete(socket.port);
  }
}

interface WorldConfig {
  a: SimNatConfig;
  b: SimNatConfig;
  latencyMs: number;
  lossRate: number;
}

interface BindingAnswer {
  mapped: Endpoint;
  from: Endpoint;
  atMs: number;
}

type PacketHandler = (socket: SimSocket, payload: Payload, from: Endpoint, to: Endpoint) => void;

export interface SimWanStats {
  /** Packets that entered the wan (after the sender's NAT). */
  packets: number;
  lost: number;
  /** Packets to an address nobody holds (e.g. a private address). */
  unroutable: number;
}

/** The two sides, their NATs, the server and the wan between them, on one virtual clock. */
class SimWorld {
  now = 0;
  readonly nats: Record<SimSide, SimNat>;
  readonly hosts: Record<SimSide, SimHost>;
  readonly wan: SimWanStats = { packets: 0, lost: 0, unroutable: 0 };
  readonly latencyMs: number;
  /** What hosts do with check and probe packets (set by the call; the default answers nothing). */
  handler: PacketHandler = () => undefined;
  private readonly queue = new EventQueue();
  private readonly lossRate: number;
  /**
   * Loss draws per side (packets its NAT sends, and the server's answers to it): the two sides'
   * profile measurements share nothing, so each side's profile depends only on its own NAT
   * config and the seed (simulateNatProfile with `side` reproduces it).
   */
  private readonly wanRng: Record<SimSide, Prng>;
  private readonly pending = new Map<number, (answer: BindingAnswer | undefined) => void>();
  private nextTx = 1;
  private events = 0;

  constructor(config: WorldConfig, seed: number) {
    this.latencyMs = config.latencyMs;
    this.lossRate = config.lossRate;
    this.wanRng = { a: Prng.derive(seed, STREAM.wanA), b: Prng.derive(seed, STREAM.wanB) };
    this.nats = {
      a: new SimNat(config.a, Prng.derive(seed, STREAM.natA), DEFAULT_PUBLIC_IP.a),
      b: new SimNat(config.b, Prng.derive(seed, STREAM.natB), DEFAULT_PUBLIC_IP.b),
    };
    if (this.nats.a.publicIp === this.nats.b.publicIp) throw new UsageError('NAT simulator: the two NATs need different public IPs');
    this.hosts = {
      a: new SimHost('a', PRIVATE_IP.a, Prng.derive(seed, STREAM.hostA)),
      b: new SimHost('b', PRIVATE_IP.b, Prng.derive(seed, STREAM.hostB)),
    };
    for (const side of ['a', 'b'] as const) this.startBackground(side, Prng.derive(seed, side === 'a' ? STREAM.backgroundA : STREAM.backgroundB));
  }

  at(time: number, run: () => void): void {
    if (!(time >= this.now)) throw new InternalError(`NAT simulator: an event at ${time} ms scheduled at ${this.now} ms`);
    this.queue.push(time, run);
  }

  /** Runs events up to `until` (inclusive) or until `stop()` says so after an event. */
  run(until: number, stop: () => boolean = () => false): void {
    while (this.queue.size > 0 && this.queue.peekTime() <= until && !stop()) {
      const event = this.queue.pop();
      if (event === undefined) break;
      this.now = event.at;
      if (++this.events > SIM_BOUNDS.maxEvents) throw new InternalError(`NAT simulator: more than ${SIM_BOUNDS.maxEvents} events in one simulation`);
      if (event.packet !== undefined) this.arrive(event.packet.from, event.packet.to, event.packet.payload);
      else event.run?.();
    }
    if (!stop() && until !== Infinity) this.now = Math.max(this.now, until);
  }

  /** A packet from a host's socket, through its NAT, into the wan. */
  send(socket: SimSocket, to: Endpoint, payload: Payload): void {
    if (!socket.open) return;
    const source = this.nats[socket.side].outbound(this.now, socket.internal, to);
    if (source !== undefined) this.transmit(source, to, payload, socket.side);
  }

  /** A binding request with retransmissions (RTO doubling) until an answer or `deadlineMs`. */
  transact(socket: SimSocket, to: Endpoint, change: { changeIp?: boolean; changePort?: boolean }, options: { rtoMs: number; deadlineMs: number }, done: (answer: BindingAnswer | undefined) => void): void {
    const tx = this.nextTx++;
    const startedAt = this.now;
    this.pending.set(tx, done);
    const payload: Payload = { kind: 'binding', tx, changeIp: change.changeIp === true, changePort: change.changePort === true };
    const attempt = (n: number) => {
      if (!this.pending.has(tx)) return;
      this.send(socket, to, payload);
      const next = startedAt + options.rtoMs * (2 ** (n + 1) - 1);
      if (n + 1 < MAX_TRANSACTION_ATTEMPTS && next < startedAt + options.deadlineMs) this.at(next, () => attempt(n + 1));
    };
    attempt(0);
    this.at(startedAt + options.deadlineMs, () => {
      if (!this.pending.delete(tx)) return;
      done(undefined);
    });
  }

  private transmit(source: Endpoint, to: Endpoint, payload: Payload, side: SimSide): void {
    this.wan.packets++;
    if (this.lossRate > 0 && this.wanRng[side].chance(this.lossRate)) {
      this.wan.lost++;
      return;
    }
    this.queue.push(this.now + this.latencyMs, undefined, { from: source, to, payload });
  }

  private arrive(from: Endpoint, to: Endpoint, payload: Payload): void {
    if (to.address === SIM_SERVER.primary.address || to.address === SIM_SERVER.other.address) {
      this.serve(from, to, payload);
      return;
    }
    const side = to.address === this.nats.a.publicIp ? 'a' : to.address === this.nats.b.publicIp ? 'b' : undefined;
    if (side === undefined) {
      this.wan.unroutable++;
      return;
    }
    const forwarded = this.nats[side].inbound(this.now, from, to.port);
    if (forwarded === undefined || forwarded.background) return;
    const socket = this.hosts[side].sockets.get(forwarded.internal.port);
    if (socket === undefined || !socket.open) return;
    if (payload.kind === 'binding-answer') {
      const done = this.pending.get(payload.tx);
      if (done === undefined) return;
      this.pending.delete(payload.tx);
      done({ mapped: payload.mapped, from, atMs: this.now });
      return;
    }
    this.handler(socket, payload, from, to);
  }

  /** The STUN server: answers a binding with the source it saw, from the origin CHANGE-REQUEST asks for. */
  private serve(from: Endpoint, to: Endpoint, payload: Payload): void {
    const isServerEndpoint = [SIM_SERVER.primary, SIM_SERVER.other].some((e) => e.address === to.address) && (to.port === SIM_SERVER.primary.port || to.port === SIM_SERVER.other.port);
    if (!isServerEndpoint || payload.kind !== 'binding') {
      this.wan.unroutable++;
      return;
    }
    const swapIp = (address: string) => (address === SIM_SERVER.primary.address ? SIM_SERVER.other.address : SIM_SERVER.primary.address);
    const swapPort = (port: number) => (port === SIM_SERVER.primary.port ? SIM_SERVER.other.port : SIM_SERVER.primary.port);
    const origin = { address: payload.changeIp ? swapIp(to.address) : to.address, port: payload.changePort ? swapPort(to.port) : to.port };
    const toSide = from.address === this.nats.b.publicIp ? 'b' : 'a';
    this.transmit(origin, from, { kind: 'binding-answer', tx: payload.tx, mapped: from }, toSide);
  }

  private startBackground(side: SimSide, rng: Prng): void {
    const rate = this.nats[side].config.backgroundPerSecond;
    if (rate <= 0) return;
    const meanGapMs = 1000 / rate;
    const next = () => {
      // Poisson arrivals: exponential gaps (1 - u is in (0, 1], so the log is finite).
      this.at(this.now - Math.log(1 - rng.next()) * meanGapMs, () => {
        this.nats[side].openBackgroundFlow(this.now);
        next();
      });
    };
    next();
  }
}

function resolveWorld(config: SimulationConfig): WorldConfig {
  if (config === null || typeof config !== 'object') throw new UsageError('NAT simulator: the config must be an object');
  const latencyMs = config.latencyMs ?? DEFAULT_LATENCY_MS;
  if (!Number.isFinite(latencyMs) || latencyMs < 0 || latencyMs > SIM_BOUNDS.maxLatencyMs) {
    throw new UsageError(`NAT simulator: latencyMs must be within 0..${SIM_BOUNDS.maxLatencyMs}`);
  }
  const lossRate = config.lossRate ?? 0;
  if (!Number.isFinite(lossRate) || lossRate < 0 || lossRate >= 1) throw new UsageError('NAT simulator: lossRate must be within [0, 1)');
  return { a: config.a, b: config.b, latencyMs, lossRate };
}

// ---------------------------------------------------------------------------------------------
// What a host measures of its own NAT at call time
// ---------------------------------------------------------------------------------------------

/** A NatProfile as a simulated host measured it, and how. */
export interface SimulatedProfile {
  profile: NatProfile;
  /** The call socket's local port (what a port-preserving NAT keeps). */
  localPort: number;
  /** The call socket's observations, in the order the mappings were made (the relay's first). */
  observations: PortObservation[];
  /** The real classifier's reason for the allocation kind (e.g. "step 1 in 2 of 3 steps, one jitter"). */
  allocationReason: string;
  /** Round trip to the relay, ms (undefined when the relay never answered). */
  rttMs?: number;
  startedAtMs: number;
  /** When the profile was complete (and sent to the peer). */
  finishedAtMs: number;
}

/**
 * Measures `side`'s NAT from its call socket, as the client does at call time, then calls
 * `done` (on the virtual clock): the relay's view of the call socket (the relay connection),
 * then Binding Requests from the call socket to the server's three other endpoints one after
 * another (each after the previous answer or its answer window: the RFC 5780 mapping test and
 * the allocation observations at once, as detectPortAllocation probes), then the RFC 5780
 * filtering test from an auxiliary socket. Filtering comes last because its socket's mapping
 * would otherwise land between the call socket's and look like another host's jitter; the
 * call socket's ports are the recentPorts a strategy extrapolates from.
 */
function measureProfile(world: SimWorld, side: SimSide, consent: boolean, done: (measured: SimulatedProfile) => void): void {
  const host = world.hosts[side];
  const call = host.call;
  const startedAtMs = world.now;
  const relay = SIM_SERVER.primary;
  const finish = (observations: PortObservation[], times: number[], classification: { mapping: NatDependence; filtering: NatDependence }, rttMs?: number) => {
    const allocation = classifyPortAllocation(observations);
    const ports = observations.map((o) => o.mapped.port).filter((port, i, all) => i === 0 || port !== all[i - 1]);
    const distinct: Endpoint[] = [];
    for (const o of [...observations].reverse()) if (!distinct.some((e) => key(e) === key(o.mapped))) distinct.push(o.mapped);
    const lastObservedAt = times.length > 0 ? Math.max(...times) : undefined;
    const profile: NatProfile = {
      mapping: classification.mapping,
      filtering: classification.filtering,
      allocation: {
        kind: allocation.kind,
        ...(allocation.delta !== undefined ? { delta: allocation.delta } : {}),
        recentPorts: ports.slice(-16),
        ...(lastObservedAt !== undefined ? { observedAgoMs: world.now - lastObservedAt } : {}),
      },
      reflexive: distinct.slice(0, 4),
      consent,
    };
    done({ profile, localPort: call.port, observations, allocationReason: allocation.reason, rttMs, startedAtMs, finishedAtMs: world.now });
  };

  world.transact(call, relay, {}, { rtoMs: 200, deadlineMs: RELAY_BINDING_DEADLINE_MS }, (first) => {
    if (first === undefined) {
      finish([], [], { mapping: 'unknown', filtering: 'unknown' });
      return;
    }
    const rttMs = first.atMs - startedAtMs;
    const windowMs = answerWindowMs(rttMs);
    const phase2 = { rtoMs: Math.min(3_000, Math.max(50, 3 * rttMs)), deadlineMs: windowMs };
    // rfc5780Endpoints order: primary, (primary IP, other port), (other IP, primary port), other.
    const targets = rfc5780Endpoints(relay, SIM_SERVER.other).slice(1);
    const answers: (BindingAnswer | undefined)[] = [];
    const filtering = () => {
      const aux = host.open('aux');
      const results: { changeIpAndPort?: BindingAnswer; changePort?: BindingAnswer } = {};
      let outstanding = 2;
      const settled = () => {
        if (--outstanding > 0) return;
        host.close(aux);
        const observations: PortObservation[] = [{ server: relay, localPort: call.port, mapped: first.mapped }];
        const times = [first.atMs];
        targets.forEach((server, i) => {
          const answer = answers[i];
          if (answer === undefined) return;
          observations.push({ server, localPort: call.port, mapped: answer.mapped });
          times.push(answer.atMs);
        });
        const mapping = classifyMapping(first.mapped, answers[1]?.mapped, answers[2]?.mapped);
        const result = (answer: BindingAnswer | undefined) => (answer === undefined ? 'blocked' : 'answered');
        finish(observations, times, { mapping, filtering: classifyFiltering(result(results.changeIpAndPort), result(results.changePort)) }, rttMs);
      };
      world.transact(aux, relay, { changeIp: true, changePort: true }, phase2, (answer) => {
        results.changeIpAndPort = answer;
        settled();
      });
      world.transact(aux, relay, { changePort: true }, phase2, (answer) => {
        results.changePort = answer;
        settled();
      });
    };
    // One after another, as detectPortAllocation does: other hosts' flows land between them.
    const next = (i: number) => {
      if (i === targets.length) {
        filtering();
        return;
      }
      world.transact(call, targets[i], {}, phase2, (answer) => {
        answers[i] = answer;
        next(i + 1);
      });
    };
    next(0);
  });
}

export interface SimulatedProfileOptions {
  seed: number;
  /** Which side of a simulated call the host is (default 'a'): with the same seed, the same profile as that side of simulateCall. */
  side?: SimSide;
  latencyMs?: number;
  lossRate?: number;
  consent?: boolean;
}

/**
 * The NatProfile a host behind `nat` would measure at call time (its NAT's background traffic
 * included, so a busy sequential NAT can show a jitter or look random). A side's measurement
 * depends only on its own NAT, the seed, latency and loss, so this equals what that side of
 * simulateCall / simulateProfiles measures with the same seed.
 */
export function simulateNatProfile(nat: SimNatConfig, options: SimulatedProfileOptions): SimulatedProfile {
  checkSeed(options.seed);
  const side = options.side ?? 'a';
  if (side !== 'a' && side !== 'b') throw new UsageError(`NAT simulator: side must be 'a' or 'b', got ${String(side)}`);
  // The world has two sides; the other one idles (another address, no background traffic).
  const ownIp = nat.publicIp ?? DEFAULT_PUBLIC_IP[side];
  const idleIp = ownIp === DEFAULT_PUBLIC_IP[other(side)] ? DEFAULT_PUBLIC_IP[side] : DEFAULT_PUBLIC_IP[other(side)];
  const idle: SimNatConfig = { ...nat, publicIp: idleIp, backgroundPerSecond: 0 };
  const sides = side === 'a' ? { a: nat, b: idle } : { a: idle, b: nat };
  const world = new SimWorld(resolveWorld({ ...sides, latencyMs: options.latencyMs, lossRate: options.lossRate }), options.seed);
  let measured: SimulatedProfile | undefined;
  measureProfile(world, side, options.consent ?? true, (m) => (measured = m));
  world.run(Infinity, () => measured !== undefined);
  if (measured === undefined) throw new InternalError('NAT simulator: the profile measurement never finished');
  return measured;
}

// ---------------------------------------------------------------------------------------------
// Plans: validation and execution order
// ---------------------------------------------------------------------------------------------

/**
 * The k-th probe of a plan (k from 0): sent from sending socket `k mod S` to target
 * `floor(k / S) mod T`, where S = max(1, plan.sockets) (0 sockets: the call socket sends).
 * Every sending socket thus gets its first probe out within the first S probes (a hard side's
 * mappings open as early as possible), each socket walks the targets in the plan's order (most
 * likely first), and the list repeats.
 */
export function probeOrder(k: number, sockets: number, targets: number): { socket: number; target: number } {
  if (!Number.isSafeInteger(k) || k < 0 || !Number.isSafeInteger(sockets) || sockets < 0 || !Number.isSafeInteger(targets) || targets < 1) {
    throw new UsageError(`probeOrder: needs integers k ≥ 0, sockets ≥ 0, targets ≥ 1 (got ${k}, ${sockets}, ${targets})`);
  }
  const senders = Math.max(1, sockets);
  return { socket: k % senders, target: Math.floor(k / senders) % targets };
}

/**
 * What is wrong with a plan, as messages (empty: fine): its shape, the limits it was given,
 * its own budget, its targets (only on `context.remoteAddresses`), its claim. Shared by the
 * simulator, which refuses such plans, and the compliance suite, which reports them.
 */
export function planViolations(plan: ProbePlan, context: Pick<StrategyContext, 'remoteAddresses'>, limits: StrategyLimits, strategyName?: string): string[] {
  const problems: string[] = [];
  if (plan === null || typeof plan !== 'object') return ['the plan is not an object'];
  const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
  const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (strategyName !== undefined && plan.strategy !== strategyName) problems.push(`plan.strategy is ${JSON.stringify(plan.strategy)}, not the strategy's name ${JSON.stringify(strategyName)}`);
  if (!isInt(plan.sockets) || plan.sockets < 0) problems.push(`sockets must be an integer ≥ 0, got ${String(plan.sockets)}`);
  else if (plan.sockets > limits.maxSockets) problems.push(`sockets ${plan.sockets} > the limit's maxSockets ${limits.maxSockets}`);
  const budget = plan.budget as ProbePlan['budget'] | undefined;
  if (budget === null || typeof budget !== 'object') {
    problems.push('budget must be {packets, ms}');
  } else {
    if (!isInt(budget.packets) || budget.packets < 0) problems.push(`budget.packets must be an integer ≥ 0, got ${String(budget.packets)}`);
    else if (budget.packets > limits.maxPackets) problems.push(`budget.packets ${budget.packets} > the limit's maxPackets ${limits.maxPackets}`);
    if (!isNum(budget.ms) || budget.ms < 0) problems.push(`budget.ms must be a finite number ≥ 0, got ${String(budget.ms)}`);
    else if (budget.ms > limits.maxMs) problems.push(`budget.ms ${budget.ms} > the limit's maxMs ${limits.maxMs}`);
  }
  if (!isNum(plan.startAfterMs) || plan.startAfterMs < 0) problems.push(`startAfterMs must be a finite number ≥ 0, got ${String(plan.startAfterMs)}`);
  else if (isNum(budget?.ms) && plan.startAfterMs > budget.ms) problems.push(`startAfterMs ${plan.startAfterMs} is beyond budget.ms ${budget.ms}`);
  if (!isNum(plan.ratePerSecond) || plan.ratePerSecond <= 0) problems.push(`ratePerSecond must be a finite number > 0, got ${String(plan.ratePerSecond)}`);
  else if (plan.ratePerSecond > limits.maxRatePerSecond) problems.push(`ratePerSecond ${plan.ratePerSecond} > the limit's maxRatePerSecond ${limits.maxRatePerSecond}`);
  if (!isNum(plan.expectedSuccess) || plan.expectedSuccess < 0 || plan.expectedSuccess > 1) problems.push(`expectedSuccess must be within [0, 1], got ${String(plan.expectedSuccess)}`);
  if (typeof plan.rationale !== 'string' || plan.rationale.trim().length === 0) problems.push('rationale must be a non-empty line');
  if (!Array.isArray(plan.targets)) {
    problems.push('targets must be an array of endpoints');
  } else if (plan.targets.length > SIM_BOUNDS.maxTargets) {
    problems.push(`${plan.targets.length} targets: the checker probes at most ${SIM_BOUNDS.maxTargets} (core/p2p/hard-nat.ts), the rest never`);
  } else {
    const allowed = new Set(context.remoteAddresses);
    const outside = new Set<string>();
    let malformed = 0;
    for (const target of plan.targets as unknown[]) {
      const t = target as Partial<Endpoint> | null;
      if (t === null || typeof t !== 'object' || typeof t.address !== 'string' || !isInt(t.port) || t.port < 1 || t.port > 65_535) malformed++;
      else if (!allowed.has(t.address)) outside.add(t.address);
    }
    if (malformed > 0) problems.push(`${malformed} target(s) are not {address, port} with a port in 1..65535`);
    if (outside.size > 0) problems.push(`targets outside the peer's announced addresses (${context.remoteAddresses.join(', ')}): ${[...outside].slice(0, 5).join(', ')}`);
  }
  return problems;
}

function checkLimits(limits: StrategyLimits): void {
  const ok = (v: number, max: number, positive: boolean) => Number.isFinite(v) && (positive ? v > 0 : v >= 0) && v <= max;
  if (
    limits === null ||
    typeof limits !== 'object' ||
    !ok(limits.maxPackets, SIM_BOUNDS.maxPackets, false) ||
    !ok(limits.maxSockets, SIM_BOUNDS.maxSockets, false) ||
    !ok(limits.maxMs, SIM_BOUNDS.maxMs, false) ||
    !ok(limits.maxRatePerSecond, SIM_BOUNDS.maxRatePerSecond, true)
  ) {
    throw new UsageError(
      `NAT simulator: limits must be within maxPackets ≤ ${SIM_BOUNDS.maxPackets}, maxSockets ≤ ${SIM_BOUNDS.maxSockets}, maxMs ≤ ${SIM_BOUNDS.maxMs}, 0 < maxRatePerSecond ≤ ${SIM_BOUNDS.maxRatePerSecond}`,
    );
  }
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed)) throw new UsageError(`NAT simulator: the seed must be a safe integer, got ${String(seed)}`);
}

// ---------------------------------------------------------------------------------------------
// A call
// ---------------------------------------------------------------------------------------------

export interface SimulationConfig {
  a: SimNatConfig;
  b: SimNatConfig;
  /** One-way latency of every wan hop (peer to peer, host to server), ms (default 20). */
  latencyMs?: number;
  /** Chance that a wan packet is lost, [0, 1) (default 0). */
  lossRate?: number;
  /** Each side's consent to hard-NAT probing (default true). */
  consent?: Partial<Record<SimSide, boolean>>;
  /**
   * The ordinary connectivity checks before any plan: `packets` rounds (default 3; 0: none),
   * `intervalMs` apart (default 50), side b starting `skewMs` after side a (default 0), each
   * round to every reflexive endpoint the peer announced.
   */
  checks?: { packets?: number; intervalMs?: number; skewMs?: number };
}

export interface SimulateCallOptions {
  seed: number;
  /** Both sides run this strategy: applicable() on both (they must agree), then plan() on each. */
  strategy?: NatStrategy;
  /** Or hand-made plans (tests): called for side a, then side b. */
  plans?: (side: SimSide, context: StrategyContext) => ProbePlan | undefined;
  /** The limits both plans are given and held to (default DEFAULT_STRATEGY_LIMITS). */
  limits?: StrategyLimits;
}

export interface SimSideStats {
  checksSent: number;
  probesSent: number;
  /** Answers this side's sockets sent to probes they received. */
  probeAnswersSent: number;
  /** Extra sockets the plan opened. */
  socketsOpened: number;
  /** When the last probe went out, ms after the plan's start. */
  lastProbeAtMs?: number;
  /** When the plan ended (the strategy's slot, or a success), ms after the plans' start. */
  planEndedAtMs?: number;
}

/** The pair a plan validated. */
export interface SimPair {
  /** The side whose probe was answered. */
  side: SimSide;
  /** The sending socket: 'call' or the extra socket's index. */
  socket: 'call' | number;
  /** That socket's local endpoint. */
  local: Endpoint;
  /** Its public endpoint (the mapping the peer answered to). */
  mapped: Endpoint;
  /** The peer's endpoint that answered. */
  remote: Endpoint;
}

export interface CallSimulation {
  seed: number;
  profiles: Record<SimSide, SimulatedProfile>;
  /** Each side's StrategyContext without its random() (what plans were made from). */
  contexts: Record<SimSide, Omit<StrategyContext, 'random'>>;
  /** With a strategy: whether both sides found it applicable (undefined without one). */
  applicable?: boolean;
  plans: Partial<Record<SimSide, ProbePlan>>;
  /** The ordinary checks: whether either side had a check answered, and when (ms after a's first check). */
  checks: { succeeded: boolean; atMs?: number; side?: SimSide };
  /** A probe of either plan was answered. */
  success: boolean;
  /** From the plans' start to the first answered probe. */
  msToSuccess?: number;
  pair?: SimPair;
  sides: Record<SimSide, SimSideStats>;
  nats: Record<SimSide, SimNatStats>;
  wan: SimWanStats;
  /** Virtual times, ms: profiles exchanged (checks start), plans start, simulation end. */
  timeline: { exchangedAtMs: number; plansStartAtMs: number; endedAtMs: number };
}

interface PlanRun {
  plan: ProbePlan;
  /** The plan's targets as the executor keeps them: duplicates dropped, first occurrence first. */
  targets: Endpoint[];
  senders: SimSocket[];
  extra: SimSocket[];
  running: boolean;
  /** Sending stops here (the plan's budget.ms). */
  sendUntil: number;
  /** The strategy's time slot ends here (sockets listen until then). */
  endsAt: number;
}

/** The targets without repeats, first occurrence first (numeric keys: plans list thousands). */
function withoutDuplicates(targets: readonly Endpoint[]): Endpoint[] {
  const addressIds = new Map<string, number>();
  const seen = new Set<number>();
  const out: Endpoint[] = [];
  for (const target of targets) {
    let id = addressIds.get(target.address);
    if (id === undefined) {
      id = addressIds.size;
      addressIds.set(target.address, id);
    }
    const k = id * 65_536 + target.port;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(target);
  }
  return out;
}

/** A side's announced addresses: its public (reflexive) IPs and its host candidate's private IP. */
function announcedAddresses(side: SimSide, profile: NatProfile): string[] {
  return [...new Set([...profile.reflexive.map((e) => e.address), PRIVATE_IP[side]])];
}

function measureBoth(world: SimWorld, config: SimulationConfig): Record<SimSide, SimulatedProfile> {
  const measured: Partial<Record<SimSide, SimulatedProfile>> = {};
  for (const side of ['a', 'b'] as const) measureProfile(world, side, config.consent?.[side] ?? true, (m) => (measured[side] = m));
  world.run(Infinity, () => measured.a !== undefined && measured.b !== undefined);
  if (measured.a === undefined || measured.b === undefined) throw new InternalError('NAT simulator: a profile measurement never finished');
  return { a: measured.a, b: measured.b };
}

/**
 * Each side's StrategyContext (without random()) from the two measured profiles: side a is the
 * caller (controlling); `remoteAddresses` are the peer's reflexive IPs and its host address.
 */
export function simulatedContexts(profiles: Record<SimSide, Pick<SimulatedProfile, 'profile'>>): Record<SimSide, Omit<StrategyContext, 'random'>> {
  const contextFor = (side: SimSide): Omit<StrategyContext, 'random'> => ({
    local: profiles[side].profile,
    remote: profiles[other(side)].profile,
    remoteAddresses: announcedAddresses(other(side), profiles[other(side)].profile),
    role: side === 'a' ? 'controlling' : 'controlled',
  });
  return { a: contextFor('a'), b: contextFor('b') };
}

/**
 * Both sides' profiles and contexts (side a is the caller, controlling) exactly as
 * simulateCall with the same config and seed sees them when the plans are made.
 */
export function simulateProfiles(config: SimulationConfig, seed: number): { profiles: Record<SimSide, SimulatedProfile>; contexts: Record<SimSide, Omit<StrategyContext, 'random'>> } {
  checkSeed(seed);
  const world = new SimWorld(resolveWorld(config), seed);
  const profiles = measureBoth(world, config);
  return { profiles, contexts: simulatedContexts(profiles) };
}

/** One simulated call: profiles, the ordinary checks, then each side's plan (module comment). */
export function simulateCall(config: SimulationConfig, options: SimulateCallOptions): CallSimulation {
  checkSeed(options.seed);
  const limits = options.limits ?? DEFAULT_STRATEGY_LIMITS;
  checkLimits(limits);
  if (options.strategy !== undefined && options.plans !== undefined) throw new UsageError('NAT simulator: give a strategy or plans, not both');
  const checkCfg = { ...DEFAULT_CHECKS, ...config.checks };
  if (!Number.isInteger(checkCfg.packets) || checkCfg.packets < 0 || checkCfg.packets > SIM_BOUNDS.maxCheckPackets) {
    throw new UsageError(`NAT simulator: checks.packets must be an integer within 0..${SIM_BOUNDS.maxCheckPackets}`);
  }
  for (const [name, value] of [['intervalMs', checkCfg.intervalMs], ['skewMs', checkCfg.skewMs]] as const) {
    if (!Number.isFinite(value) || value < 0 || value > SIM_BOUNDS.maxCheckIntervalMs) throw new UsageError(`NAT simulator: checks.${name} must be within 0..${SIM_BOUNDS.maxCheckIntervalMs}`);
  }
  const world = new SimWorld(resolveWorld(config), options.seed);
  const profiles = measureBoth(world, config);

  // The profiles cross through the relay: one relay hop (two wan hops) after the slower side.
  const exchangedAtMs = Math.max(profiles.a.finishedAtMs, profiles.b.finishedAtMs) + 2 * world.latencyMs;
  world.run(exchangedAtMs);
  const contexts = simulatedContexts(profiles);
  const randomOf = (side: SimSide) => {
    const rng = Prng.derive(options.seed, side === 'a' ? STREAM.randomA : STREAM.randomB);
    return () => rng.next();
  };
  const full: Record<SimSide, StrategyContext> = { a: { ...contexts.a, random: randomOf('a') }, b: { ...contexts.b, random: randomOf('b') } };

  let applicable: boolean | undefined;
  const plans: Partial<Record<SimSide, ProbePlan>> = {};
  const strategy = options.strategy;
  if (strategy !== undefined) {
    const onA = strategy.applicable(full.a);
    const onB = strategy.applicable(full.b);
    if (onA !== onB || typeof onA !== 'boolean') {
      throw new PluginError(`NAT strategy ${strategy.name}: applicable() said ${String(onA)} on side a and ${String(onB)} on side b of the same pair`);
    }
    applicable = onA;
    if (applicable) {
      for (const side of ['a', 'b'] as const) {
        const plan = strategy.plan(full[side], limits);
        if (plan !== undefined) plans[side] = plan;
      }
    }
  } else if (options.plans !== undefined) {
    for (const side of ['a', 'b'] as const) {
      const plan = options.plans(side, full[side]);
      if (plan !== undefined) plans[side] = plan;
    }
  }
  for (const side of ['a', 'b'] as const) {
    const plan = plans[side];
    if (plan === undefined) continue;
    const problems = planViolations(plan, contexts[side], limits, strategy?.name);
    if (problems.length > 0) throw new PluginError(`NAT simulator: side ${side}'s plan refused: ${problems.join('; ')}`);
  }

  const sides: Record<SimSide, SimSideStats> = {
    a: { checksSent: 0, probesSent: 0, probeAnswersSent: 0, socketsOpened: 0 },
    b: { checksSent: 0, probesSent: 0, probeAnswersSent: 0, socketsOpened: 0 },
  };
  const checks: CallSimulation['checks'] = { succeeded: false };
  const checkTx = new Set<number>();
  const runs: Partial<Record<SimSide, PlanRun>> = {};
  let pair: SimPair | undefined;
  let successAt: number | undefined;
  let nextTx = 1;

  const endPlan = (side: SimSide) => {
    const run = runs[side];
    if (run === undefined || !run.running) return;
    run.running = false;
    for (const socket of run.extra) world.hosts[side].close(socket);
    sides[side].planEndedAtMs = world.now - plansStartAtMs;
  };

  world.handler = (socket, payload, from, to) => {
    const side = socket.side;
    switch (payload.kind) {
      case 'check':
        world.send(socket, from, { kind: 'check-answer', tx: payload.tx });
        return;
      case 'check-answer':
        if (!checks.succeeded && checkTx.has(payload.tx)) Object.assign(checks, { succeeded: true, atMs: world.now - exchangedAtMs, side });
        return;
      case 'probe':
        world.send(socket, from, { kind: 'probe-answer', tx: payload.tx });
        sides[side].probeAnswersSent++;
        return;
      case 'probe-answer': {
        const run = runs[side];
        if (run === undefined || !run.running || !run.senders.includes(socket) || successAt !== undefined) return;
        successAt = world.now;
        pair = { side, socket: socket.kind === 'call' ? 'call' : socket.index, local: { address: world.hosts[side].privateIp, port: socket.port }, mapped: to, remote: from };
        endPlan('a');
        endPlan('b');
        return;
      }
      default:
        return;
    }
  };

  // The ordinary checks, from each call socket to every reflexive endpoint the peer announced.
  for (const side of ['a', 'b'] as const) {
    const targets = contexts[side].remote.reflexive;
    const startAt = exchangedAtMs + (side === 'b' ? checkCfg.skewMs : 0);
    for (let round = 0; round < checkCfg.packets; round++) {
      world.at(startAt + round * checkCfg.intervalMs, () => {
        for (const target of targets) {
          const tx = nextTx++;
          checkTx.add(tx);
          world.send(world.hosts[side].call, target, { kind: 'check', tx });
          sides[side].checksSent++;
        }
      });
    }
  }
  // Plans run after the checks had their round trip (the checker tries hard-NAT tricks last).
  const plansStartAtMs = exchangedAtMs + (checkCfg.packets > 0 ? checkCfg.skewMs + checkCfg.packets * checkCfg.intervalMs + 2 * world.latencyMs : 0);
  // Both sides give the strategy the same slot: the longer of the two halves' budget.ms.
  const slotMs = Math.min(limits.maxMs, Math.max(plans.a?.budget.ms ?? 0, plans.b?.budget.ms ?? 0));

  for (const side of ['a', 'b'] as const) {
    const plan = plans[side];
    if (plan === undefined) continue;
    const host = world.hosts[side];
    const targets = withoutDuplicates(plan.targets);
    const run: PlanRun = { plan, targets, senders: [], extra: [], running: true, sendUntil: plansStartAtMs + plan.budget.ms, endsAt: plansStartAtMs + slotMs };
    runs[side] = run;
    world.at(plansStartAtMs, () => {
      if (!run.running) return;
      for (let i = 0; i < plan.sockets; i++) run.extra.push(host.open('extra', i));
      sides[side].socketsOpened = run.extra.length;
      run.senders = plan.sockets > 0 ? run.extra : [host.call];
      // Paced as the executor does (core/p2p/hard-nat.ts): from startAfterMs, a batch every
      // PROBE_BATCH_MS sends what the rate has earned since (floor(elapsed × rate), none at
      // once), while the batch is inside budget.ms. One closure per plan.
      const firstAt = plansStartAtMs + plan.startAfterMs;
      let batch = 0;
      let k = 0;
      const send = () => {
        batch++;
        if (!run.running || world.now >= run.sendUntil) return;
        const due = Math.min(plan.budget.packets, Math.floor((batch * PROBE_BATCH_MS * plan.ratePerSecond) / 1000 + 1e-9));
        for (; k < due && run.running; k++) {
          const order = probeOrder(k, plan.sockets, targets.length);
          world.send(run.senders[order.socket], targets[order.target], { kind: 'probe', tx: nextTx++ });
          sides[side].probesSent++;
          sides[side].lastProbeAtMs = world.now - plansStartAtMs;
        }
        const nextAt = firstAt + (batch + 1) * PROBE_BATCH_MS;
        if (k < plan.budget.packets && nextAt < run.sendUntil) world.at(nextAt, send);
      };
      if (targets.length > 0 && plan.budget.packets > 0 && firstAt + PROBE_BATCH_MS < run.sendUntil) world.at(firstAt + PROBE_BATCH_MS, send);
    });
    world.at(run.endsAt, () => endPlan(side));
  }

  const planned = runs.a !== undefined || runs.b !== undefined;
  const endAt = Math.max(plansStartAtMs, runs.a?.endsAt ?? 0, runs.b?.endsAt ?? 0);
  world.run(endAt, () => successAt !== undefined || (!planned && checks.succeeded));
  for (const side of ['a', 'b'] as const) endPlan(side);

  // The simulator is the reference for "a plan never exceeds its budget": hold itself to it.
  for (const side of ['a', 'b'] as const) {
    const plan = plans[side];
    const stats = sides[side];
    if (plan === undefined) {
      if (stats.probesSent > 0 || stats.socketsOpened > 0) throw new InternalError(`NAT simulator: side ${side} probed without a plan`);
      continue;
    }
    const lateProbe = stats.lastProbeAtMs !== undefined && stats.lastProbeAtMs >= plan.budget.ms;
    if (stats.probesSent > plan.budget.packets || stats.socketsOpened > plan.sockets || stats.socketsOpened > limits.maxSockets || lateProbe) {
      throw new InternalError(`NAT simulator: side ${side} went over its plan's budget (${stats.probesSent} probes, ${stats.socketsOpened} sockets, last at ${stats.lastProbeAtMs} ms)`);
    }
  }

  return {
    seed: options.seed,
    profiles,
    contexts,
    applicable,
    plans,
    checks,
    success: successAt !== undefined,
    msToSuccess: successAt === undefined ? undefined : successAt - plansStartAtMs,
    pair,
    sides,
    nats: { a: { ...world.nats.a.stats }, b: { ...world.nats.b.stats } },
    wan: { ...world.wan },
    timeline: { exchangedAtMs, plansStartAtMs, endedAtMs: world.now },
  };
}

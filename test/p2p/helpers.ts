/**
 * Test doubles for the path checker: a fake clock and an in-memory "internet" with NATs that
 * map, filter and rewrite sources. Nothing here touches a real socket.
 */

import { randomBytes } from 'node:crypto';
import type { Candidate, Endpoint } from '../../core/p2p/candidates.js';
import { candidatePriority, endpointKey, familyOf } from '../../core/p2p/candidates.js';
import type { CheckTimers } from '../../core/p2p/checks.js';

// ---------------------------------------------------------------------------------------------
// Fake clock

interface FakeTimer {
  id: number;
  at: number;
  callback: () => void;
}

export class FakeClock implements CheckTimers {
  #now = 0;
  #nextId = 1;
  #timers: FakeTimer[] = [];

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const timer = { id: this.#nextId++, at: this.#now + Math.max(0, ms), callback };
    this.#timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((timer) => timer.id !== handle);
  }

  get pending(): number {
    return this.#timers.length;
  }

  /** Runs every timer due within `ms`, in time order (ties: creation order), then sets the clock. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (let guard = 0; guard < 1_000_000; guard++) {
      let next: FakeTimer | undefined;
      for (const timer of this.#timers) if (timer.at <= until && (next === undefined || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) next = timer;
      if (next === undefined) {
        this.#now = until;
        return;
      }
      this.#timers = this.#timers.filter((timer) => timer !== next);
      this.#now = next.at;
      next.callback();
    }
    throw new Error('fake clock: timer loop (a timer keeps re-arming at the same instant)');
  }

  /** Advances in steps until `done()` or `maxMs` passed; returns whether done. */
  runUntil(done: () => boolean, maxMs: number, stepMs = 5): boolean {
    const end = this.#now + maxMs;
    while (!done()) {
      if (this.#now >= end) return false;
      this.advance(Math.min(stepMs, end - this.#now));
    }
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: a small seeded PRNG for loss decisions. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// In-memory network with NATs

export type NatMapping = 'endpoint-independent' | 'symmetric';
export type NatFiltering = 'none' | 'address' | 'address-and-port';

export interface NatOptions {
  publicAddress: string;
  mapping?: NatMapping;
  filtering?: NatFiltering;
  /**
   * Linux conntrack behaviour: an unsolicited inbound packet leaves state that makes a later
   * outbound packet of the same flow take another external port (FACTS.md, NAT lab).
   */
  conntrack?: boolean;
  firstPort?: number;
}

export class FakeNat {
  readonly publicAddress: string;
  readonly mapping: NatMapping;
  readonly filtering: NatFiltering;
  readonly conntrack: boolean;
  #nextPort: number;
  /** inside key (EIM) or inside|remote (symmetric / re-mapped flows) -> external port. */
  readonly #ports = new Map<string, number>();
  readonly #owners = new Map<number, Endpoint>();
  /** `${port}|${remote ip}` and `${port}|${remote ip:port}` permits. */
  readonly #permits = new Set<string>();
  readonly #poisoned = new Set<string>();
  readonly log: string[] = [];

  constructor(options: NatOptions) {
    this.publicAddress = options.publicAddress;
    this.mapping = options.mapping ?? 'endpoint-independent';
    this.filtering = options.filtering ?? 'address-and-port';
    this.conntrack = options.conntrack ?? false;
    this.#nextPort = options.firstPort ?? 40000;
  }

  /** Outbound translation: the external port for inside -> remote (allocating as needed). */
  outbound(inside: Endpoint, remote: Endpoint): number {
    const insideKey = endpointKey(inside);
    const flowKey = `${insideKey}|${endpointKey(remote)}`;
    let port = this.#ports.get(flowKey) ?? (this.mapping === 'endpoint-independent' ? this.#ports.get(insideKey) : undefined);
    if (port === undefined || (this.conntrack && this.#poisoned.has(`${port}|${endpointKey(remote)}`) && !this.#ports.has(flowKey))) {
      const poisonedPort = port !== undefined;
      port = this.#nextPort++;
      this.#owners.set(port, inside);
      if (poisonedPort || this.mapping === 'symmetric') this.#ports.set(flowKey, port);
      else this.#ports.set(insideKey, port);
      if (poisonedPort) this.log.push(`conntrack clash: ${flowKey} moved to port ${port}`);
    }
    this.#permits.add(`${port}|${remote.address}`);
    this.#permits.add(`${port}|${endpointKey(remote)}`);
    return port;
  }

  /** Inbound: the inside endpoint for a packet from `remote` to our external `port`, if allowed. */
  inbound(remote: Endpoint, port: number): Endpoint | undefined {
    const inside = this.#owners.get(port);
    const allowed =
      inside !== undefined &&
      (this.filtering === 'none' ||
        (this.filtering === 'address' && this.#permits.has(`${port}|${remote.address}`)) ||
        (this.filtering === 'address-and-port' && this.#permits.has(`${port}|${endpointKey(remote)}`)));
    if (!allowed) {
      if (this.conntrack) this.#poisoned.add(`${port}|${endpointKey(remote)}`);
      return undefined;
    }
    return inside;
  }

  /** Forgets every mapping (a NAT reboot or a mapping timeout): the next packets get new ports. */
  rebind(): void {
    this.#ports.clear();
    this.#owners.clear();
    this.#permits.clear();
    this.#poisoned.clear();
  }

  /** The external port for `inside` under endpoint-independent mapping, allocating one (what a relay would observe). */
  reflexive(inside: Endpoint, observer: Endpoint): Endpoint {
    return { address: this.publicAddress, port: this.outbound(inside, observer) };
  }
}

export interface FakeHost {
  readonly name: string;
  readonly inside: Endpoint;
  readonly nat?: FakeNat;
  receive?: (bytes: Uint8Array, from: Endpoint) => void;
}

export interface NetworkOptions {
  clock: FakeClock;
  /** One-way delay (ms). */
  latencyMs?: number;
  /** Probability that any datagram is lost. */
  loss?: number;
  random?: () => number;
  /** Hops a datagram takes leaving through a NAT and entering another (TTL accounting). */
  hopsToPeerNat?: number;
}

export interface Delivery {
  at: number;
  from: string;
  to: string;
  ttl?: number;
  outcome: 'delivered' | 'lost' | 'filtered' | 'ttl-expired' | 'unroutable';
}

/**
 * Hosts either sit directly on the "internet" (no NAT) or behind a NAT; hosts behind the same
 * NAT share a LAN and reach each other's inside addresses. No hairpinning.
 */
export class FakeNetwork {
  readonly hosts: FakeHost[] = [];
  readonly deliveries: Delivery[] = [];
  readonly #clock: FakeClock;
  readonly #latency: number;
  readonly #loss: number;
  readonly #random: () => number;
  readonly #hopsToPeerNat: number;
  /** A filter tests set to drop chosen datagrams. */
  drop: (from: FakeHost, to: Endpoint, bytes: Uint8Array) => boolean = () => false;

  constructor(options: NetworkOptions) {
    this.#clock = options.clock;
    this.#latency = options.latencyMs ?? 10;
    this.#loss = options.loss ?? 0;
    this.#random = options.random ?? Math.random;
    this.#hopsToPeerNat = options.hopsToPeerNat ?? 3;
  }

  addHost(host: FakeHost): FakeHost {
    this.hosts.push(host);
    return host;
  }

  /** The sender function a PathChecker gets for `host`. */
  sender(host: FakeHost): (bytes: Uint8Array, address: string, port: number, ttl?: number) => void {
    return (bytes, address, port, ttl) => this.send(host, Uint8Array.from(bytes), { address, port }, ttl);
  }

  send(from: FakeHost, bytes: Uint8Array, to: Endpoint, ttl?: number): void {
    const record = (outcome: Delivery['outcome']) =>
      this.deliveries.push({ at: this.#clock.now(), from: from.name, to: endpointKey(to), ...(ttl === undefined ? {} : { ttl }), outcome });
    if (this.drop(from, to, bytes) || (this.#loss > 0 && this.#random() < this.#loss)) return void record('lost');
    // Same LAN (or both on the internet without NAT): direct.
    const local = this.hosts.find((host) => host !== from && host.nat === from.nat && endpointKey(host.inside) === endpointKey(to));
    if (local !== undefined) {
      record('delivered');
      return this.#deliver(local, bytes, from.inside);
    }
    // Leave through our NAT.
    let source = from.inside;
    if (from.nat !== undefined) {
      source = { address: from.nat.publicAddress, port: from.nat.outbound(from.inside, to) };
      if (ttl !== undefined && ttl < this.#hopsToPeerNat) return void record('ttl-expired');
      if (to.address === from.nat.publicAddress) return void record('unroutable'); // no hairpinning
    }
    const nat = this.hosts.map((host) => host.nat).find((candidate) => candidate !== undefined && candidate.publicAddress === to.address);
    if (nat !== undefined) {
      const inside = nat.inbound(source, to.port);
      const target = inside === undefined ? undefined : this.hosts.find((host) => host.nat === nat && endpointKey(host.inside) === endpointKey(inside));
      if (target === undefined) return void record('filtered');
      record('delivered');
      return this.#deliver(target, bytes, source);
    }
    const open = this.hosts.find((host) => host.nat === undefined && endpointKey(host.inside) === endpointKey(to));
    if (open === undefined) return void record('unroutable');
    record('delivered');
    this.#deliver(open, bytes, source);
  }

  #deliver(host: FakeHost, bytes: Uint8Array, from: Endpoint): void {
    this.#clock.setTimeout(() => host.receive?.(bytes, from), this.#latency);
  }
}

// ---------------------------------------------------------------------------------------------

export function candidate(type: Candidate['type'], endpoint: Endpoint, rank = 0): Candidate {
  const family = familyOf(endpoint.address) ?? 'IPv4';
  return { type, address: endpoint.address, port: endpoint.port, family, priority: candidatePriority(type, family, rank) };
}

export function callSecrets(): { key: Uint8Array; callId: Uint8Array } {
  return { key: randomBytes(32), callId: randomBytes(16) };
}

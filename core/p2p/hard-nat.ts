/**
 * The hard-NAT plan executor: runs the NAT-strategy plugins' plans (core/nat/strategy-types.ts)
 * for one direct call, after the cheap candidates had their chance, in the background while
 * the media flows through the relay.
 *
 * For each strategy in order: both sides must have consented (signed offer/answer) and the
 * strategy must find the pair applicable; its plan for our side is then cut to the limits
 * (sockets, packets, time, rate) and to targets on the peer's announced addresses (a plan can
 * aim nowhere else), and run:
 *  - side sockets: `plan.sockets` extra UDP sockets (0: the call's own socket sends). What
 *    arrives on one is a path check (handed to the checker, with a provisional route so the
 *    answer leaves through the socket it came in on) or direct media (the demultiplexer's
 *    classes); QUIC and STUN never are (core/transport/demux.ts, "Side sockets").
 *  - probes: after `startAfterMs`, each target in order from each sending socket, the list
 *    repeated, paced at the plan's rate (in 10 ms batches), as authenticated check requests
 *    (PathChecker.probe): an answer makes a succeeded pair, and a request back from the peer a
 *    peer-reflexive one, so the checks' nomination takes it from there.
 *  - the end: sending stops when the packet budget is spent; the plan (its sockets listening,
 *    since the peer's half may still be aiming at their mappings) ends when its time is up, or
 *    at once when any pair succeeds. Then every side socket is closed except one that an
 *    authenticated packet routed a succeeded pair through: it carries the direct path (and is
 *    closed with the link).
 * Both sides run the same strategies in the same order; a strategy takes the same time slot
 * on both (the longer of the two halves' budgets: the peer's is planned here too, with the
 * profiles swapped), so that the two halves of each technique overlap.
 */
import dgram, { type Socket as UdpSocket } from 'node:dgram';
import { errorMessage } from '../errors.js';
import { DEFAULT_STRATEGY_LIMITS, type NatProfile, type NatStrategy, type NatStrategyFactory, type ProbePlan, type StrategyContext, type StrategyLimits } from '../nat/strategy-types.js';
import { DEFAULT_TTL, type Demux } from '../transport/demux.js';
import { PATH_CHECK_MARKER } from '../wire/path-check.js';
import { canonicalAddress, endpointKey, familyOf, type CandidateFamily, type Endpoint } from './candidates.js';
import type { PathChecker } from './checks.js';

/** Targets one plan may list (beyond this they are cut: a plan is data from a plugin). */
export const MAX_PLAN_TARGETS = 4096;
/** The pacing batch: probes due are sent every this many ms. */
export const PROBE_BATCH_MS = 10;

export interface HardNatOptions {
  strategies: readonly NatStrategy[];
  local: NatProfile;
  remote: NatProfile;
  /** The IPs the peer announced in its signed candidates: the only places probes may go. */
  remoteAddresses: readonly string[];
  role: 'controlling' | 'controlled';
  checker: PathChecker;
  demux: Demux;
  /** Families the call's socket can send to. */
  families: readonly CandidateFamily[];
  limits?: Partial<StrategyLimits>;
  /** Randomness for the plans (default Math.random). */
  random?: () => number;
  /** The priming TTL for plans that only open our NAT (ProbePlan.openOnly); absent: they go with the default TTL. */
  primeTtl?: number;
  /** Opens and binds one side socket (default: node:dgram on an ephemeral port of the wildcard address). */
  openSocket?: (family: CandidateFamily) => Promise<UdpSocket>;
  onEvent?(e: HardNatEvent): void;
}

export type HardNatEvent =
  | { type: 'hard-nat:plan'; strategy: string; sockets: number; targets: number; rationale: string }
  | { type: 'hard-nat:end'; strategy: string; outcome: StrategyOutcome; packetsSent: number };

export type StrategyOutcome = 'succeeded' | 'time-up' | 'stopped' | 'no-plan' | 'error';

export interface StrategyAttemptReport {
  strategy: string;
  rationale: string;
  /** The plan as run (cut to the limits), or absent when our side had nothing to do. */
  plan?: { sockets: number; targets: number; startAfterMs: number; ratePerSecond: number; budget: { packets: number; ms: number }; expectedSuccess: number; openOnly: boolean; ttl?: number };
  /** What the cut took: targets not on the peer's addresses (or malformed, or beyond MAX_PLAN_TARGETS), and which limits applied. */
  refusedTargets: number;
  clamped: string[];
  /** Ms since run() started. */
  startedAtMs: number;
  endedAtMs?: number;
  /** The time slot both sides give this strategy, ms. */
  slotMs: number;
  packetsSent: number;
  socketsOpened: number;
  socketErrors: number;
  outcome: StrategyOutcome | 'running';
  error?: string;
}

export interface HardNatReport {
  consent: { local: boolean; remote: boolean };
  /** Strategies that did not apply to this pair of NATs. */
  notApplicable: string[];
  attempts: StrategyAttemptReport[];
  /** A side socket carries the direct path. */
  sideSocketInUse: boolean;
}

/** A plan as run: cut to the limits and to the peer's addresses. */
interface CutPlan {
  /** The TTL probes go with (openOnly plans, when the link primes); undefined: the default. */
  ttl?: number;
  sockets: number;
  targets: Endpoint[];
  family: CandidateFamily;
  startAfterMs: number;
  rate: number;
  packets: number;
  ms: number;
}

interface SideSocket {
  socket: UdpSocket;
  routes: Array<() => void>;
  closed: boolean;
}

export class HardNatRunner {
  readonly #o: HardNatOptions;
  readonly #limits: StrategyLimits;
  readonly #attempts: StrategyAttemptReport[] = [];
  readonly #notApplicable: string[] = [];
  readonly #sides: SideSocket[] = [];
  readonly #stop = new AbortController();
  #kept: SideSocket | undefined;
  #succeeded = false;
  #closed = false;
  #startedAt = 0;
  #unsubscribe: (() => void) | undefined;

  constructor(options: HardNatOptions) {
    this.#o = options;
    const l = { ...DEFAULT_STRATEGY_LIMITS, ...(options.limits ?? {}) };
    this.#limits = {
      maxPackets: clampInt(l.maxPackets, 0, 100_000),
      maxSockets: clampInt(l.maxSockets, 0, 1024),
      maxMs: clampInt(l.maxMs, 0, 60_000),
      maxRatePerSecond: clampInt(l.maxRatePerSecond, 1, 5000),
    };
  }

  /** Whether both sides consented to hard-NAT probing. */
  get consented(): boolean {
    return this.#o.local.consent === true && this.#o.remote.consent === true;
  }

  /** Runs the applicable strategies in order until one (or any check) finds a pair, stop(), or the last ends. */
  async run(): Promise<void> {
    if (this.#closed || this.#startedAt !== 0) return;
    this.#startedAt = performance.now();
    if (!this.consented) return;
    this.#unsubscribe = this.#o.checker.on((e) => {
      if (e.type === 'pair-succeeded' || e.type === 'nominated') this.#onSuccess(e.pair.remote);
    });
    const random = this.#o.random ?? Math.random;
    const context: StrategyContext = {
      local: this.#o.local,
      remote: this.#o.remote,
      remoteAddresses: [...this.#o.remoteAddresses],
      role: this.#o.role,
      random,
    };
    for (const strategy of this.#o.strategies) {
      if (this.#done) break;
      let applicable = false;
      try {
        applicable = strategy.applicable(context) === true;
      } catch {
        applicable = false;
      }
      if (!applicable) {
        this.#notApplicable.push(strategy.name);
        continue;
      }
      await this.#runStrategy(strategy, context);
    }
  }

  /** Stop probing and close every side socket but the one carrying the direct path. */
  stop(): void {
    this.#stop.abort();
  }

  /** Everything: the kept side socket too (the link closes). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    this.#unsubscribe?.();
    for (const side of this.#sides) this.#closeSide(side);
    if (this.#kept) this.#closeSide(this.#kept);
  }

  report(): HardNatReport {
    return {
      consent: { local: this.#o.local.consent === true, remote: this.#o.remote.consent === true },
      notApplicable: [...this.#notApplicable],
      attempts: this.#attempts.map((a) => ({ ...a, clamped: [...a.clamped] })),
      sideSocketInUse: this.#kept !== undefined && !this.#kept.closed,
    };
  }

  get #done(): boolean {
    return this.#closed || this.#succeeded || this.#stop.signal.aborted;
  }

  #onSuccess(remote: Endpoint): void {
    if (this.#succeeded) return;
    this.#succeeded = true;
    // The side socket an authenticated packet routed this pair through carries the direct path.
    const via = this.#o.demux.routeOf({ host: remote.address, port: remote.port });
    const kept = this.#sides.find((s) => s.socket === via);
    if (kept) {
      this.#kept = kept;
      this.#sides.splice(this.#sides.indexOf(kept), 1);
      // Only the winning route stays.
      const key = endpointKey(remote);
      kept.routes = kept.routes.filter((undo) => (undo as RouteUndo).key === key || (undo(), false));
    }
    for (const side of this.#sides) this.#closeSide(side);
    this.#sides.length = 0;
    this.#stop.abort();
  }

  async #runStrategy(strategy: NatStrategy, context: StrategyContext): Promise<void> {
    const attempt: StrategyAttemptReport = {
      strategy: strategy.name,
      rationale: '',
      refusedTargets: 0,
      clamped: [],
      startedAtMs: Math.round(performance.now() - this.#startedAt),
      slotMs: 0,
      packetsSent: 0,
      socketsOpened: 0,
      socketErrors: 0,
      outcome: 'running',
    };
    this.#attempts.push(attempt);
    let plan: ProbePlan | undefined;
    let peerPlan: ProbePlan | undefined;
    try {
      plan = strategy.plan(context, { ...this.#limits });
      // The peer's half, planned here with the profiles swapped: only its length is used.
      peerPlan = strategy.plan({ ...context, local: context.remote, remote: context.local, role: context.role === 'controlling' ? 'controlled' : 'controlling', random: Math.random }, { ...this.#limits });
    } catch (err) {
      this.#end(attempt, 'error', errorMessage(err));
      return;
    }
    const slotMs = Math.min(this.#limits.maxMs, Math.max(budgetMs(plan), budgetMs(peerPlan)));
    attempt.slotMs = slotMs;
    if (plan === undefined) {
      attempt.rationale = "our side has nothing to send: the peer's half does the work";
      await this.#wait(slotMs);
      this.#end(attempt, this.#succeeded ? 'succeeded' : this.#stop.signal.aborted ? 'stopped' : 'no-plan');
      return;
    }
    const cut = this.#cut(plan, attempt);
    attempt.rationale = String(plan.rationale ?? '').slice(0, 300);
    attempt.plan = {
      sockets: cut.sockets,
      targets: cut.targets.length,
      startAfterMs: cut.startAfterMs,
      ratePerSecond: cut.rate,
      budget: { packets: cut.packets, ms: cut.ms },
      expectedSuccess: Number.isFinite(plan.expectedSuccess) ? Math.min(1, Math.max(0, plan.expectedSuccess)) : 0,
      openOnly: cut.ttl !== undefined || plan.openOnly === true,
      ...(cut.ttl === undefined ? {} : { ttl: cut.ttl }),
    };
    this.#o.onEvent?.({ type: 'hard-nat:plan', strategy: strategy.name, sockets: cut.sockets, targets: cut.targets.length, rationale: attempt.rationale });
    const began = performance.now();
    const senders = cut.sockets > 0 ? await this.#openSides(cut.sockets, cut.family, attempt) : [undefined];
    await this.#wait(cut.startAfterMs - (performance.now() - began));
    if (cut.targets.length > 0 && senders.length > 0) await this.#probe(cut, senders, attempt, began);
    // The sockets listen out the slot: the peer's half may still be aiming at their mappings.
    await this.#wait(slotMs - (performance.now() - began));
    for (const side of this.#sides) this.#closeSide(side);
    this.#sides.length = 0;
    this.#end(attempt, this.#succeeded ? 'succeeded' : this.#stop.signal.aborted ? 'stopped' : 'time-up');
  }

  #end(attempt: StrategyAttemptReport, outcome: StrategyOutcome, error?: string): void {
    attempt.outcome = outcome;
    attempt.endedAtMs = Math.round(performance.now() - this.#startedAt);
    if (error !== undefined) attempt.error = error.slice(0, 300);
    this.#o.onEvent?.({ type: 'hard-nat:end', strategy: attempt.strategy, outcome, packetsSent: attempt.packetsSent });
  }

  /** The plan cut to the limits and to the peer's announced addresses. */
  #cut(plan: ProbePlan, attempt: StrategyAttemptReport): CutPlan {
    const allowed = new Set(this.#o.remoteAddresses.map((a) => canonicalAddress(a)).filter((a): a is string => a !== undefined));
    const families = new Set(this.#o.families);
    const seen = new Set<string>();
    const targets: Endpoint[] = [];
    const list = Array.isArray(plan.targets) ? plan.targets : [];
    for (const t of list.slice(0, MAX_PLAN_TARGETS * 2)) {
      const address = canonicalAddress((t as Partial<Endpoint> | null)?.address as string);
      const port = (t as Partial<Endpoint> | null)?.port;
      const family = address === undefined ? undefined : familyOf(address);
      if (address === undefined || family === undefined || !families.has(family) || !allowed.has(address) || !Number.isInteger(port) || (port as number) < 1 || (port as number) > 0xffff) {
        attempt.refusedTargets++;
        continue;
      }
      const endpoint = { address, port: port as number };
      const key = endpointKey(endpoint);
      if (seen.has(key)) continue;
      if (targets.length >= MAX_PLAN_TARGETS) {
        attempt.refusedTargets++;
        continue;
      }
      seen.add(key);
      targets.push(endpoint);
    }
    attempt.refusedTargets += Math.max(0, list.length - MAX_PLAN_TARGETS * 2);
    const limit = (name: string, value: unknown, max: number, min = 0): number => {
      const n = typeof value === 'number' && Number.isFinite(value) ? Math.floor(value) : min;
      if (n > max) attempt.clamped.push(name);
      return Math.min(max, Math.max(min, n));
    };
    const family = targets[0] ? (familyOf(targets[0].address) as CandidateFamily) : 'IPv4';
    const sockets = limit('sockets', plan.sockets, this.#limits.maxSockets);
    const ms = limit('budget.ms', plan.budget?.ms, this.#limits.maxMs);
    const ttl = plan.openOnly === true ? this.#o.primeTtl : undefined;
    return {
      ...(ttl === undefined ? {} : { ttl }),
      sockets,
      // Side sockets are of one family: targets of the other cannot be reached from them.
      targets: sockets > 0 ? targets.filter((t) => familyOf(t.address) === family) : targets,
      family,
      startAfterMs: limit('startAfterMs', plan.startAfterMs, ms),
      rate: limit('ratePerSecond', plan.ratePerSecond, this.#limits.maxRatePerSecond, 1),
      packets: limit('budget.packets', plan.budget?.packets, this.#limits.maxPackets),
      ms,
    };
  }

  async #openSides(count: number, family: CandidateFamily, attempt: StrategyAttemptReport): Promise<(SideSocket | undefined)[]> {
    const open = this.#o.openSocket ?? defaultOpenSocket;
    const opened: SideSocket[] = [];
    for (let i = 0; i < count && !this.#done; i++) {
      let socket: UdpSocket;
      try {
        socket = await open(family);
      } catch {
        attempt.socketErrors++;
        continue;
      }
      if (this.#done) {
        socket.close();
        break;
      }
      const side: SideSocket = { socket, routes: [], closed: false };
      socket.on('message', (data, rinfo) => this.#onSideMessage(side, data, { address: unmapped(rinfo.address), port: rinfo.port }));
      socket.on('error', () => {
        attempt.socketErrors++;
        this.#closeSide(side);
      });
      this.#sides.push(side);
      opened.push(side);
      attempt.socketsOpened++;
    }
    return opened;
  }

  #onSideMessage(side: SideSocket, data: Buffer, from: Endpoint): void {
    if (side.closed) return;
    if (data.length > 0 && data[0] === PATH_CHECK_MARKER) {
      // A provisional route, so the checker's answer (and its triggered check) leave through
      // the socket the peer reached; kept only when the check was authentic.
      const demux = this.#o.demux;
      const target = { host: from.address, port: from.port };
      const had = demux.routeOf(target);
      const undo = had === undefined ? routeUndo(demux, target, side.socket, endpointKey(from)) : undefined;
      const ok = this.#o.checker.receive(data, from);
      if (undo) {
        if (ok && !side.closed) side.routes.push(undo);
        else undo();
      }
      return;
    }
    this.#o.demux.receiveSide(data, from);
  }

  async #probe(cut: CutPlan, senders: readonly (SideSocket | undefined)[], attempt: StrategyAttemptReport, began: number): Promise<void> {
    const total = cut.targets.length * senders.length;
    let index = 0;
    let credit = 0;
    let last = performance.now();
    while (!this.#done && attempt.packetsSent < cut.packets && performance.now() - began < cut.ms) {
      const now = performance.now();
      credit = Math.min(credit + ((now - last) * cut.rate) / 1000, Math.max(1, (cut.rate * PROBE_BATCH_MS) / 1000) * 2);
      last = now;
      while (credit >= 1 && attempt.packetsSent < cut.packets && !this.#done) {
        credit--;
        const target = cut.targets[Math.floor(index / senders.length) % cut.targets.length];
        const side = senders[index % senders.length];
        index = (index + 1) % total;
        if (side?.closed) continue;
        const sent =
          side === undefined
            ? this.#o.checker.probe(target, cut.ttl === undefined ? undefined : (bytes, address, port) => void this.#o.demux.send(bytes, { host: address, port }, { ttl: cut.ttl }))
            : this.#o.checker.probe(target, (bytes, address, port) => sendFrom(side.socket, bytes, address, port, cut.ttl));
        if (sent) attempt.packetsSent++;
      }
      await this.#wait(PROBE_BATCH_MS);
    }
  }

  /** Resolves after `ms`, or at once when stopped. */
  #wait(ms: number): Promise<void> {
    if (ms <= 0 || this.#done) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.#stop.signal;
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }

  #closeSide(side: SideSocket): void {
    if (side.closed) return;
    side.closed = true;
    for (const undo of side.routes) undo();
    side.routes = [];
    try {
      side.socket.close();
    } catch {
      // already closed
    }
  }
}

/**
 * One instance of each available strategy of a registry (core/registry.ts), in its order (by
 * name). A factory that is unavailable here or throws is left out: a plugin's failure costs
 * only its own technique.
 */
export function installedStrategies(registry: { list(): readonly { factory: NatStrategyFactory }[] }): NatStrategy[] {
  const out: NatStrategy[] = [];
  for (const { factory } of registry.list()) {
    try {
      if (factory.availability().available) out.push(factory.create());
    } catch {
      // left out
    }
  }
  return out;
}

type RouteUndo = (() => void) & { key: string };

function routeUndo(demux: Demux, to: { host: string; port: number }, via: UdpSocket, key: string): RouteUndo {
  const undo = demux.route(to, via) as RouteUndo;
  undo.key = key;
  return undo;
}

/** One datagram from a side socket, with a TTL for this packet only (restored once it has left, as Demux.send does). */
function sendFrom(socket: UdpSocket, bytes: Uint8Array, address: string, port: number, ttl: number | undefined): void {
  if (ttl === undefined) {
    socket.send(bytes, port, address);
    return;
  }
  socket.setTTL(ttl);
  socket.send(bytes, port, address, () => {
    try {
      socket.setTTL(DEFAULT_TTL);
    } catch {
      // closed meanwhile
    }
  });
}

function budgetMs(plan: ProbePlan | undefined): number {
  const ms = plan?.budget?.ms;
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0;
}

function clampInt(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(max, Math.max(min, Math.floor(value))) : min;
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function defaultOpenSocket(family: CandidateFamily): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: family === 'IPv6' ? 'udp6' : 'udp4' });
    socket.once('error', reject);
    socket.bind(0, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/**
 * An impairment proxy for real UDP on loopback: clients talk to the proxy, the proxy talks to
 * the target (a relay), and every packet in each direction goes through an
 * ImpairmentEmulator (loss, bursts, delay, jitter, reordering, duplication). The impairment
 * can be changed while traffic flows, so tests can make a network go bad and recover.
 *
 * Loopback only by construction: it binds 127.0.0.1 and refuses non-loopback targets.
 */
import { createSocket, type Socket } from 'node:dgram';
import { UsageError } from '../errors.js';
import { ImpairmentEmulator, type ImpairmentOptions } from './impairment.js';

export interface ProxyImpairment {
  /** Client -> target. */
  up?: Omit<ImpairmentOptions, 'seed'>;
  /** Target -> client. */
  down?: Omit<ImpairmentOptions, 'seed'>;
}

export interface ProxyCounters {
  upIn: number;
  upOut: number;
  downIn: number;
  downOut: number;
}

interface Flow {
  client: { address: string; port: number };
  upstream: Socket;
  lastSeen: number;
}

/** Flows idle this long are closed. */
const FLOW_IDLE_MS = 60_000;
/** At most this many client flows. */
const MAX_FLOWS = 256;

export class UdpImpairmentProxy {
  readonly counters: ProxyCounters = { upIn: 0, upOut: 0, downIn: 0, downOut: 0 };
  private readonly flows = new Map<string, Flow>();
  private up: ImpairmentEmulator;
  private down: ImpairmentEmulator;
  private readonly start = performance.now();
  private readonly timers = new Set<NodeJS.Timeout>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private seed: number;

  private constructor(
    private readonly socket: Socket,
    private readonly target: { host: string; port: number },
    impairment: ProxyImpairment,
    seed: number,
  ) {
    this.seed = seed;
    this.up = new ImpairmentEmulator({ seed, ...impairment.up });
    this.down = new ImpairmentEmulator({ seed: seed + 1, ...impairment.down });
  }

  static async start(opts: { target: { host: string; port: number }; impairment?: ProxyImpairment; seed?: number }): Promise<UdpImpairmentProxy> {
    if (!/^127\.|^::1$|^localhost$/.test(opts.target.host)) {
      throw new UsageError(`the impairment proxy only forwards to loopback, not ${opts.target.host}`);
    }
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const proxy = new UdpImpairmentProxy(socket, opts.target, opts.impairment ?? {}, opts.seed ?? 1);
    socket.on('message', (msg, rinfo) => proxy.fromClient(msg, rinfo));
    socket.on('error', () => undefined);
    proxy.sweepTimer = setInterval(() => proxy.sweepIdle(), 5_000);
    proxy.sweepTimer.unref();
    return proxy;
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Change the impairment from now on (new emulators, fresh seeds). */
  setImpairment(impairment: ProxyImpairment): void {
    this.seed += 2;
    this.up = new ImpairmentEmulator({ seed: this.seed, ...impairment.up });
    this.down = new ImpairmentEmulator({ seed: this.seed + 1, ...impairment.down });
  }

  private now(): number {
    return performance.now() - this.start;
  }

  private fromClient(msg: Buffer, rinfo: { address: string; port: number }): void {
    this.counters.upIn++;
    const key = `${rinfo.address}:${rinfo.port}`;
    let flow = this.flows.get(key);
    if (!flow) {
      if (this.flows.size >= MAX_FLOWS) return;
      const upstream = createSocket('udp4');
      flow = { client: { address: rinfo.address, port: rinfo.port }, upstream, lastSeen: 0 };
      const f = flow;
      upstream.on('message', (reply) => this.fromTarget(f, reply));
      upstream.on('error', () => undefined);
      upstream.bind(0, '127.0.0.1');
      this.flows.set(key, flow);
    }
    flow.lastSeen = this.now();
    const f = flow;
    this.schedule(this.up, msg, () => {
      this.counters.upOut++;
      f.upstream.send(msg, this.target.port, this.target.host);
    });
  }

  private fromTarget(flow: Flow, msg: Buffer): void {
    this.counters.downIn++;
    this.schedule(this.down, msg, () => {
      this.counters.downOut++;
      this.socket.send(msg, flow.client.port, flow.client.address);
    });
  }

  private schedule(emulator: ImpairmentEmulator, msg: Buffer, deliver: () => void): void {
    const now = this.now();
    for (const d of emulator.process(msg, now)) {
      const wait = d.deliverAtMs - now;
      if (wait <= 0) {
        deliver();
        continue;
      }
      const t = setTimeout(() => {
        this.timers.delete(t);
        deliver();
      }, wait);
      this.timers.add(t);
    }
  }

  private sweepIdle(): void {
    const now = this.now();
    for (const [key, flow] of this.flows) {
      if (now - flow.lastSeen > FLOW_IDLE_MS) {
        flow.upstream.close();
        this.flows.delete(key);
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const flow of this.flows.values()) flow.upstream.close();
    this.flows.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}

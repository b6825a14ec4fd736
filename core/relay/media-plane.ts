/**
 * The relay's media plane: a thread of its own that forwards room media arriving on the UDP
 * media path (./media-plane-worker.ts), while the main thread keeps QUIC, signalling, rooms,
 * federation and everything else.
 *
 * Why (issue 18, docs/transport.md "The media plane"): on the main thread each forwarded
 * packet paid for Node's per-packet UDP receive and send and for caches that the QUIC
 * connections' timers had just evicted: 27-46 µs of CPU per packet against 15-20 µs for a plain
 * Node UDP forwarder. The plane receives and sends in batches through libc (recvmmsg and
 * sendmmsg via koffi) in a loop that does nothing else.
 *
 * How packets get there: core/net/udp-steering.ts puts a second socket on the relay's own
 * address and port and steers packets whose first byte is 0x24 (path media) to it; QUIC, STUN,
 * probes and confirms stay on the main thread's socket. Copies go out from the same address
 * and port as before.
 *
 * What the plane forwards: media of a route whose room the main thread marked as the plane's
 * (`RoutePlan.fast`: every member local and confirmed on the UDP path, not a room the
 * federation carries, not tapped). Everything else on the steered socket that has a live token
 * is handed back to the main thread as if its socket had received it (RelayMediaPath.handle).
 * The main thread recomputes the plan whenever rooms, routes, links or a member's address change
 * (the plane hands over a fast route's packet from another address: the main thread judges it
 * and replans, at most every MOVED_REPLAN_MS) and at least every PLAN_REFRESH_MS, and sends
 * only what changed.
 *
 * Limits: each route has the member's packet and byte buckets in the plane too, as on the main
 * thread; a member's media in QUIC datagrams is capped by the main thread's buckets, its media
 * on the path by the plane's.
 *
 * Failure: if the thread fails or cannot start, the steered socket is closed and every packet
 * reaches the main thread's socket again, where the media path is still registered: the relay
 * goes on as it did without the plane (said once in a `relay:media-plane` event).
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Socket as UdpSocket } from 'node:dgram';
import { encodeSockaddr, loadLibc, steerFirstByte, type SteeredSocket } from '../net/udp-steering.js';
import { MEDIA_PATH_MEDIA } from '../wire/media-path.js';
import { PLANE_COUNTER_SLOTS, PLANE_COUNTERS, type PlaneLimits, type PlaneMessage, type PlaneReport, type PlaneWorkerData } from './media-plane-protocol.js';

/**
 * How long the plane's receive call waits before it looks at its stop flag and reports, ms.
 * Routes need no wake-up of their own: they are read after every receive, before the packets
 * are looked at. Each idle wake-up costs the thread ~0.1 ms (koffi, the port, the clock): at
 * 50 ms that was 0.25% of a core for a relay with nothing to forward.
 */
export const PLANE_RECV_TIMEOUT_MS = 200;
/**
 * The main thread's plan is recomputed on every change it is told of (joins, leaves, tokens,
 * confirms, rooms the federation starts or stops carrying, a member's QUIC address that moved)
 * and, as a safety net, at least this often, ms. It used to be recomputed every 250 ms for
 * moved addresses: cold code over every route, 0.15% of a core for 50 members at rest; now
 * only the addresses are compared that often (MOVED_CHECK_MS).
 */
export const PLAN_REFRESH_MS = 2000;
/** A fast route's packets from a moved address replan at most this often (a forged source cannot make the main thread replan per packet), ms. */
export const MOVED_REPLAN_MS = 250;
/** How often the main thread compares its members' QUIC addresses with the plan's (a receive-only member's move shows nowhere else), ms. */
export const MOVED_CHECK_MS = 250;

export type PlaneCounters = { -readonly [K in keyof typeof PLANE_COUNTERS]: number };

/** What the main thread wants the plane to know of one route (a member with a path token). */
export interface RoutePlan {
  key: number;
  token: Uint8Array;
  /** The member's QUIC address now. */
  host: string;
  port: number;
  /** The room's number (0: no room the plane forwards). */
  room: number;
  sourceId: number;
  fast: boolean;
}

export interface MediaPlaneOptions {
  limits: PlaneLimits;
  /**
   * A packet the plane left to the main thread (RelayMediaPath.handle). `moved`: its route is
   * the plane's but it came from another address than the plan's (a member whose QUIC address
   * moved, or a forgery the main thread drops).
   */
  onSlow(data: Buffer, from: { address: string; port: number }, moved: boolean): void;
  /** A sampled forwarding time, ms. */
  onLatencyMs(ms: number): void;
  /** The plane stopped working (it is off from now on; the main thread forwards everything). */
  onFailed(message: string): void;
}

/** The worker's file: next to this module in dist/core, or there from the CLI bundle in dist/cli/src. */
function workerFile(): URL {
  const candidates = [new URL('./media-plane-worker.js', import.meta.url), new URL('../../core/relay/media-plane-worker.js', import.meta.url)];
  const found = candidates.find((u) => existsSync(fileURLToPath(u)));
  if (!found) throw new Error(`media plane: ${fileURLToPath(candidates[0])} not found`);
  return found;
}

/** Whether the plane was told `p` already (no string or copy per route). */
function samePlan(a: RoutePlan, p: RoutePlan): boolean {
  if (a.host !== p.host || a.port !== p.port || a.room !== p.room || a.sourceId !== p.sourceId || a.fast !== p.fast || a.token.length !== p.token.length) return false;
  for (let i = 0; i < p.token.length; i++) if (a.token[i] !== p.token[i]) return false;
  return true;
}

export class MediaPlane {
  readonly #steered: SteeredSocket;
  readonly #worker: Worker;
  readonly #port: MessagePort;
  readonly #counters: Float64Array;
  readonly #control: Int32Array;
  readonly #opts: MediaPlaneOptions;
  /** What the plane was last told, per route key. */
  readonly #sent = new Map<number, RoutePlan>();
  #state: 'running' | 'failed' | 'stopped' = 'running';
  #failure: string | undefined;
  readonly #exited: Promise<void>;
  /** Counters as last read (kept when the plane stops). */
  #last: PlaneCounters;

  private constructor(steered: SteeredSocket, opts: MediaPlaneOptions) {
    this.#steered = steered;
    this.#opts = opts;
    const counters = new SharedArrayBuffer(PLANE_COUNTER_SLOTS * 8);
    const control = new SharedArrayBuffer(12);
    this.#counters = new Float64Array(counters);
    this.#control = new Int32Array(control);
    this.#last = this.#read();
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    const workerData: PlaneWorkerData = { fd: steered.fd, counters, control, port: port2, limits: opts.limits };
    this.#worker = new Worker(workerFile(), { workerData, transferList: [port2], stdout: false, stderr: false });
    this.#worker.unref();
    this.#worker.on('message', (r: PlaneReport) => this.#onReport(r));
    this.#worker.on('error', (err) => this.#fail(err.message));
    this.#exited = new Promise((resolve) =>
      this.#worker.once('exit', () => {
        // Whatever ended the thread, its socket goes: every packet reaches the main thread's.
        this.#steered.close();
        if (this.#state === 'running') this.#fail('the media plane thread exited');
        resolve();
      }),
    );
  }

  /**
   * Start the plane on the relay's bound UDP socket. Throws (nothing changed that matters: the
   * socket keeps every packet) where it cannot run: not 64-bit Linux, no koffi, a kernel
   * without SO_ATTACH_REUSEPORT_CBPF.
   */
  static start(udp: UdpSocket, opts: MediaPlaneOptions): MediaPlane {
    loadLibc();
    const steered = steerFirstByte(udp, MEDIA_PATH_MEDIA, PLANE_RECV_TIMEOUT_MS);
    try {
      return new MediaPlane(steered, opts);
    } catch (err) {
      steered.close();
      throw err;
    }
  }

  get state(): 'running' | 'failed' | 'stopped' {
    return this.#state;
  }

  /** Why the plane stopped working, if it did. */
  get failure(): string | undefined {
    return this.#failure;
  }

  #read(): PlaneCounters {
    const c = this.#counters;
    const out = {} as PlaneCounters;
    for (const [name, slot] of Object.entries(PLANE_COUNTERS) as [keyof PlaneCounters, number][]) out[name] = c[slot];
    return out;
  }

  /** The plane's counters (their last values once it stopped). */
  counters(): PlaneCounters {
    if (this.#state === 'running') this.#last = this.#read();
    return this.#last;
  }

  #post(msg: PlaneMessage): void {
    this.#port.postMessage(msg);
    Atomics.add(this.#control, 1, 1);
  }

  /** Tell the plane about every route there is now (sends only what changed since the last plan). */
  plan(routes: Iterable<RoutePlan>): void {
    if (this.#state !== 'running') return;
    const c = loadLibc();
    const family = this.#steered.family;
    const seen = new Set<number>();
    for (const p of routes) {
      seen.add(p.key);
      const was = this.#sent.get(p.key);
      if (was !== undefined && samePlan(was, p)) continue;
      this.#sent.set(p.key, { ...p, token: Uint8Array.from(p.token) });
      // An address of the other family cannot match a packet here: the route stays, not fast,
      // and its packets go to the main thread (which compares as it always did).
      const addr = encodeSockaddr(c, family, p.host, p.port);
      this.#post({ t: 'route', key: p.key, token: Uint8Array.from(p.token), addr: addr ?? new Uint8Array(0), room: p.room, sourceId: p.sourceId, fast: p.fast && addr !== undefined });
    }
    for (const key of [...this.#sent.keys()]) {
      if (seen.has(key)) continue;
      this.#sent.delete(key);
      this.#post({ t: 'unroute', key });
    }
  }

  setLimits(limits: PlaneLimits): void {
    if (this.#state === 'running') this.#post({ t: 'limits', limits });
  }

  #onReport(r: PlaneReport): void {
    switch (r.t) {
      case 'slow':
        Atomics.sub(this.#control, 2, 1);
        this.#opts.onSlow(Buffer.from(r.data), { address: r.address, port: r.port }, r.moved);
        return;
      case 'latency':
        for (const ms of r.ms) this.#opts.onLatencyMs(ms);
        return;
      case 'failed':
        this.#fail(r.message);
        return;
      case 'stopped':
        return;
    }
  }

  #fail(message: string): void {
    if (this.#state !== 'running') return;
    this.#last = this.#read();
    this.#state = 'failed';
    this.#failure = message;
    Atomics.store(this.#control, 0, 1);
    this.#opts.onFailed(message);
    // The exit handler closes the socket; a thread stuck elsewhere is ended.
    void this.#worker.terminate().catch(() => undefined);
  }

  /** Stop the thread and close its socket (within about PLANE_RECV_TIMEOUT_MS). */
  async close(): Promise<void> {
    if (this.#state === 'running') {
      this.#last = this.#read();
      this.#state = 'stopped';
    }
    Atomics.store(this.#control, 0, 1);
    Atomics.notify(this.#control, 0);
    const timer = setTimeout(() => void this.#worker.terminate().catch(() => undefined), 1000);
    timer.unref();
    await this.#exited;
    clearTimeout(timer);
    this.#last = this.#read();
    this.#port.close();
  }

}

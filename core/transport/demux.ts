/**
 * One UDP socket, many packet classes: the demultiplexer in front of a QUICSocket.
 *
 * A wzp client has one UDP socket for everything: the relay's QUIC connection, STUN, the UDP
 * media path, connectivity checks and the direct path. So the mappings a NAT made for the
 * relay connection (the ones the relay observed and announces) are the ones hole punching
 * and the direct path use. The relay's socket carries QUIC, the media path and STUN the same
 * way. Every packet class registers here and is told apart by the packet's first byte:
 *
 * ```
 *   first byte   class          owner
 *   0x00-0x01    stun           core/nat (STUN messages: the first two bits are 0, RFC 5389 §6)
 *   0x21-0x24    media-path     core/wire/media-path.ts
 *   0x30         path-check     core/wire/path-check.ts
 *   0x31         direct-media   core/wire/direct-media.ts
 *   0x40-0x7F    quic           QUIC short and long headers: the fixed bit 0x40 is set
 *   0xC0-0xFF    quic           (RFC 9000 §17; the library, behind the QUIC gate on a relay)
 *   others       (unclaimed)    counted and dropped
 * ```
 *
 * Classes declare the first bytes they own as ranges, and registration refuses (InternalError:
 * a programming error) a class whose bytes overlap a registered class's or QUIC's; a class
 * may also test more than the first byte (`matches`, e.g. a size or a magic number), and a
 * packet it does not match is unclaimed. QUIC is what the classes leave: every packet with
 * the fixed bit set goes to the QUIC handler (./datagrams.ts's direct receive path, then the
 * gate ./quic-gate.ts on a relay, then the library), exactly as before this module.
 *
 * Handlers run synchronously on the socket's receive path. One that throws is counted
 * (`errors`) and reported to `onHandlerError` at most a few times a second; the packet is
 * gone and the socket keeps serving.
 *
 * Sending: `send()` puts raw UDP on the same socket (STUN requests, checks, media path
 * packets), hardened as the relay's media sends are: a non-unicast destination or port 0 is
 * refused, a send queue already MAX_SOCKET_SEND_QUEUE deep drops the packet, and a send the
 * kernel refuses is counted, never thrown nor an 'error' event.
 *
 * Side sockets (hard-NAT strategies, core/p2p/hard-nat.ts): a technique may open more local
 * sockets than the one (the birthday technique opens hundreds, each its own NAT mapping).
 * What arrives on one is handed to `receiveSide()`: the registered classes only, never QUIC
 * or STUN (the relay connection lives on the main socket; a QUIC packet on a side socket is
 * noise). Once a side socket proves to reach a peer endpoint, `route()` sends everything for
 * that endpoint through it (checks, keepalives, direct media), so the rest of the client
 * keeps thinking in one socket.
 */
import type { Socket as UdpSocket } from 'node:dgram';
import { InternalError } from '../errors.js';
import { LogLimiter } from '../net/rate-limit.js';
import { MEDIA_PATH_FIRST_BYTES } from '../wire/media-path.js';
import { DIRECT_MEDIA_FIRST_BYTES, isDirectMedia } from '../wire/direct-media.js';
import { PATH_CHECK_FIRST_BYTES, isPathCheck } from '../wire/path-check.js';
import { isUnicastSource } from './quic-gate.js';

/** Where a packet came from, as node:dgram reports it. */
export interface UdpSource {
  address: string;
  port: number;
}

/** An inclusive range of first bytes, [lowest, highest], within 0x00-0xFF. */
export type FirstByteRange = readonly [number, number];

export interface PacketClass {
  /** Unique on the socket; names the class in counters and logs. */
  readonly name: string;
  /** The first bytes the class owns: disjoint from every other class's and from QUIC's. */
  readonly firstBytes: readonly FirstByteRange[];
  /**
   * Optional finer test once the first byte matched (size, magic number); a packet it rejects
   * is unclaimed. Must not throw (a throw counts as the class's error).
   */
  matches?(data: Uint8Array): boolean;
  /** Takes one packet; runs synchronously on the receive path. */
  handle(data: Buffer, from: UdpSource): void;
}

export interface PacketClassStats {
  /** Packets handed to the handler. */
  packets: number;
  bytes: number;
  /** Packets whose handler (or `matches`) threw. */
  errors: number;
}

export interface DemuxStats {
  /** Per class, registered now or earlier ('quic' included: packets handed to QUIC). */
  classes: Record<string, PacketClassStats>;
  /** Packets no class took (no class owns the first byte, `matches` said no, or empty). */
  unclaimed: number;
  unclaimedBytes: number;
  /** Raw sends put on the socket. */
  sent: number;
  /** Raw sends refused before the socket: a destination that is not unicast, or port 0. */
  sendRefused: number;
  /** Raw sends dropped: the socket's send queue was full, or the socket closed. */
  sendDropped: number;
  /** Raw sends the kernel refused. */
  sendErrors: number;
  /** Side-socket routes refused over MAX_ROUTES. */
  routesRefused: number;
}

export interface DemuxOptions {
  /** A handler threw; called at most a few times a second (`suppressed`: calls skipped since). */
  onHandlerError?(className: string, error: unknown, from: UdpSource, suppressed: number): void;
}

/** The name QUIC's share of the first bytes is registered under. */
export const QUIC_CLASS = 'quic';
/** QUIC's first bytes: every byte with the fixed bit 0x40 set (RFC 9000 §17.2, §17.3). */
export const QUIC_FIRST_BYTES: readonly FirstByteRange[] = [
  [0x40, 0x7f],
  [0xc0, 0xff],
];
/** STUN's first bytes as wzp uses them (message types 0x0001, 0x0101, 0x0111: RFC 5389 §6). */
export const STUN_FIRST_BYTES: readonly FirstByteRange[] = [[0x00, 0x01]];

/**
 * Datagrams waiting in a socket's send queue (libuv's: the kernel buffer is full) beyond which
 * raw sends are dropped instead of queued: stale audio and checks are worthless.
 */
export const MAX_SOCKET_SEND_QUEUE = 512;

/** The TTL (IPv6: unicast hop limit) a socket sends with when no low TTL is asked for (Linux's default). */
export const DEFAULT_TTL = 64;

/** Peer endpoints routed through side sockets at once (a call has one peer; a few of its addresses). */
export const MAX_ROUTES = 64;

type QuicHandler = (data: Buffer, from: UdpSource) => Promise<void>;

interface Owner {
  cls: PacketClass;
  counters: PacketClassStats;
}

const resolved = Promise.resolve();

function ignore(): void {}

export class Demux {
  /** The class owning each first byte, with its counters (undefined: unclaimed; QUIC's bytes go to `quic`). */
  private readonly byFirstByte: (Owner | undefined)[] = new Array<Owner | undefined>(256).fill(undefined);
  private readonly quicBytes = new Uint8Array(256);
  private readonly registered = new Map<string, PacketClass>();
  private readonly counters = new Map<string, PacketClassStats>();
  private readonly quicStats: PacketClassStats = { packets: 0, bytes: 0, errors: 0 };
  private readonly totals = { unclaimed: 0, unclaimedBytes: 0, sent: 0, sendRefused: 0, sendDropped: 0, sendErrors: 0, routesRefused: 0 };
  private readonly errorLog = new LogLimiter(1, 5);
  /** Endpoints whose packets leave through a side socket (key: unmapped address and port). */
  private readonly routes = new Map<string, UdpSocket>();

  /**
   * @param udp the socket's node:dgram socket, for sends (a function: a QUICSocket creates it in start()).
   * @param quic where QUIC packets go (the library's handler, with the direct path and gate in front).
   */
  constructor(
    private readonly udp: () => UdpSocket | undefined,
    private readonly quic: QuicHandler,
    private readonly opts: DemuxOptions = {},
  ) {
    for (const range of QUIC_FIRST_BYTES) for (let b = range[0]; b <= range[1]; b++) this.quicBytes[b] = 1;
    this.counters.set(QUIC_CLASS, this.quicStats);
  }

  /**
   * Register a packet class; returns the function that unregisters it. Throws InternalError
   * for a malformed class, a name in use or first bytes another class (or QUIC) owns.
   */
  register(cls: PacketClass): () => void {
    if (typeof cls.name !== 'string' || cls.name === '' || cls.name === QUIC_CLASS) throw new InternalError(`packet class name "${String(cls.name)}" is not allowed`);
    if (this.registered.has(cls.name)) throw new InternalError(`packet class "${cls.name}" is already registered on this socket`);
    if (cls.firstBytes.length === 0) throw new InternalError(`packet class "${cls.name}" declares no first bytes`);
    const bytes: number[] = [];
    for (const [lo, hi] of cls.firstBytes) {
      if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > 0xff || lo > hi) {
        throw new InternalError(`packet class "${cls.name}": first-byte range [${lo}, ${hi}] is not within 0x00-0xFF`);
      }
      for (let b = lo; b <= hi; b++) {
        if (this.quicBytes[b]) throw new InternalError(`packet class "${cls.name}" claims first byte ${hex(b)}, which is QUIC's (fixed bit 0x40 set)`);
        const owner = this.byFirstByte[b];
        if (owner) throw new InternalError(`packet class "${cls.name}" claims first byte ${hex(b)}, which "${owner.cls.name}" owns`);
        if (bytes.includes(b)) throw new InternalError(`packet class "${cls.name}" declares first byte ${hex(b)} twice`);
        bytes.push(b);
      }
    }
    let counters = this.counters.get(cls.name);
    if (!counters) {
      counters = { packets: 0, bytes: 0, errors: 0 };
      this.counters.set(cls.name, counters);
    }
    const owner: Owner = { cls, counters };
    for (const b of bytes) this.byFirstByte[b] = owner;
    this.registered.set(cls.name, cls);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const b of bytes) if (this.byFirstByte[b] === owner) this.byFirstByte[b] = undefined;
      if (this.registered.get(cls.name) === cls) this.registered.delete(cls.name);
    };
  }

  /** Whether a class of this name is registered now. */
  has(name: string): boolean {
    return this.registered.has(name);
  }

  /** The class that would take a packet starting with `firstByte` now ('quic', a class name, or undefined). */
  ownerOf(firstByte: number): string | undefined {
    if (this.quicBytes[firstByte & 0xff]) return QUIC_CLASS;
    return this.byFirstByte[firstByte & 0xff]?.cls.name;
  }

  /** A snapshot of the counters. */
  get stats(): DemuxStats {
    const classes: Record<string, PacketClassStats> = {};
    for (const [name, s] of this.counters) classes[name] = { ...s };
    return { classes, ...this.totals };
  }

  /**
   * The socket's 'message' handler. Not async: a promise per media packet is measurable on a
   * relay. QUIC packets return the QUIC handler's promise, as the library's own handler does.
   */
  readonly receive = (data: Buffer, from: UdpSource): Promise<void> => {
    if (this.sampleArrivals !== 0) {
      // xorshift32: a sample that no periodic pattern of packet kinds can alias with.
      let x = this.sampleState;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.sampleState = x;
      if ((x & (this.sampleArrivals - 1)) === 0) {
        this.arrivedAt = performance.now();
        const done = this.dispatch(data, from);
        this.arrivedAt = 0;
        return done;
      }
    }
    return this.dispatch(data, from);
  };

  /**
   * Stamp the arrival of about one packet in this many (a power of two; 0, the default:
   * none). The relay's forwarding latency uses it (core/relay/metrics.ts).
   */
  sampleArrivals = 0;
  private sampleState = 0x2545f491;
  /**
   * When the packet being handled now reached the socket (performance.now()), if it was
   * sampled, while its handlers run in the same turn; 0 otherwise (work the QUIC library
   * defers to a later turn sees 0).
   */
  arrivedAt = 0;

  private dispatch(data: Buffer, from: UdpSource): Promise<void> {
    if (data.length === 0) return this.unclaimed(data);
    const first = data[0];
    if (this.quicBytes[first]) {
      this.quicStats.packets++;
      this.quicStats.bytes += data.length;
      return this.quic(data, from);
    }
    const owner = this.byFirstByte[first];
    if (owner === undefined) return this.unclaimed(data);
    const { cls, counters } = owner;
    try {
      if (cls.matches && !cls.matches(data)) return this.unclaimed(data);
      counters.packets++;
      counters.bytes += data.length;
      cls.handle(data, from);
    } catch (err) {
      counters.errors++;
      this.reportError(cls.name, err, from);
    }
    return resolved;
  }

  /**
   * A packet that arrived on a side socket (see the top of this file): dispatched to the
   * registered classes like one of the main socket's, except QUIC and STUN, which are only
   * ever the main socket's (counted as unclaimed).
   */
  readonly receiveSide = (data: Buffer, from: UdpSource): void => {
    if (data.length === 0 || this.quicBytes[data[0]] || this.byFirstByte[data[0]]?.cls.name === 'stun') {
      void this.unclaimed(data);
      return;
    }
    void this.receive(data, from);
  };

  /**
   * Send what goes to `to` through `via` (a side socket that reaches it) instead of the main
   * socket, until the returned function is called (or another route replaces this one).
   */
  route(to: { host: string; port: number }, via: UdpSocket): () => void {
    const key = routeKey(to.host, to.port);
    // Bounded: a peer that answers from many source ports must not grow the table (refused
    // routes are counted; their packets keep leaving through the main socket).
    if (!this.routes.has(key) && this.routes.size >= MAX_ROUTES) {
      this.totals.routesRefused++;
      return () => undefined;
    }
    this.routes.set(key, via);
    return () => {
      if (this.routes.get(key) === via) this.routes.delete(key);
    };
  }

  /** The side socket packets to `to` leave through, if any. */
  routeOf(to: { host: string; port: number }): UdpSocket | undefined {
    return this.routes.size === 0 ? undefined : this.routes.get(routeKey(to.host, to.port));
  }

  private unclaimed(data: Buffer): Promise<void> {
    this.totals.unclaimed++;
    this.totals.unclaimedBytes += data.length;
    return resolved;
  }

  private reportError(name: string, err: unknown, from: UdpSource): void {
    if (!this.opts.onHandlerError || !this.errorLog.take()) return;
    try {
      this.opts.onHandlerError(name, err, { address: from.address, port: from.port }, this.errorLog.suppressed());
    } catch {
      // A logger that fails must not take the socket down either.
    }
  }

  /**
   * Send one raw UDP packet (its parts concatenated) from this socket to an IP address (no
   * names: nothing here resolves). Returns false when it was refused or dropped (counted: see
   * DemuxStats); a kernel refusal after the fact is only counted (`sendErrors`). Never throws
   * for a network condition.
   */
  send(parts: Uint8Array | readonly Uint8Array[], to: { host: string; port: number }, opts: { ttl?: number } = {}): boolean {
    if (!Number.isInteger(to.port) || !isUnicastSource(to.host, to.port) || to.port > 0xffff) {
      this.totals.sendRefused++;
      return false;
    }
    const side = this.routes.size === 0 ? undefined : this.routes.get(routeKey(to.host, to.port));
    // A side socket is of the peer's family only (udp4 for IPv4): it gets the plain address.
    if (side) to = { host: unmapped(to.host), port: to.port };
    const udp = side ?? this.udp();
    if (!udp) {
      this.totals.sendDropped++;
      return false;
    }
    try {
      if (udp.getSendQueueCount() > MAX_SOCKET_SEND_QUEUE) {
        this.totals.sendDropped++;
        return false;
      }
      if (opts.ttl !== undefined) {
        // node:dgram has no per-packet TTL: set the socket's, and put the default back once
        // this packet has left (in the send callback: dgram resolves even an IP literal
        // asynchronously, so a TTL restored now would be back before the packet went out).
        // Packets other code sends in that turn leave with the low TTL too (QUIC retransmits).
        udp.setTTL(opts.ttl);
        udp.send(parts as Uint8Array, to.port, to.host, (err) => {
          try {
            udp.setTTL(DEFAULT_TTL);
          } catch {
            // closed meanwhile
          }
          this.onSent(err);
        });
      } else {
        udp.send(parts as Uint8Array, to.port, to.host, this.onSent);
      }
      this.totals.sent++;
      return true;
    } catch {
      // The socket is closed or closing (ERR_SOCKET_DGRAM_NOT_RUNNING), or the address is
      // of the wrong family for it.
      this.totals.sendDropped++;
      return false;
    }
  }

  /** With a callback, a send the kernel refuses is reported here, never as a socket 'error' event. */
  private readonly onSent = (err: Error | null): void => {
    if (err) this.totals.sendErrors++;
  };
}

function unmapped(host: string): string {
  return host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
}

function routeKey(host: string, port: number): string {
  return `${unmapped(host)}|${port}`;
}

function hex(b: number): string {
  return `0x${b.toString(16).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// The classes wzp registers, with their declared first bytes
// ---------------------------------------------------------------------------------------------

/** STUN (first byte 0x00/0x01); the handler parses and counts malformed messages itself. */
export function stunClass(handle: (data: Buffer, from: UdpSource) => void): PacketClass {
  return { name: 'stun', firstBytes: STUN_FIRST_BYTES, handle };
}

/** The UDP media path (0x21-0x24: core/wire/media-path.ts). */
export function mediaPathClass(handle: (data: Buffer, from: UdpSource) => void): PacketClass {
  return { name: 'media-path', firstBytes: [MEDIA_PATH_FIRST_BYTES], handle };
}

/** Direct media (0x31 and the size of a packet: isDirectMedia(), core/wire/direct-media.ts). */
export function directMediaClass(handle: (data: Buffer, from: UdpSource) => void): PacketClass {
  return { name: 'direct-media', firstBytes: [DIRECT_MEDIA_FIRST_BYTES], matches: isDirectMedia, handle };
}

/**
 * Direct-path connectivity checks (0x30 and the size of one: isPathCheck(), core/wire/path-check.ts).
 * Without a handler (a relay) they are taken, counted in the class's `packets`, and dropped.
 */
export function pathCheckClass(handle: (data: Buffer, from: UdpSource) => void = ignore): PacketClass {
  return { name: 'path-check', firstBytes: [PATH_CHECK_FIRST_BYTES], matches: isPathCheck, handle };
}

/**
 * The relay's front door: every UDP datagram that is not for an established connection's
 * fast path passes here before @matrixai/quic sees it.
 *
 * Why a gate of our own: the library (2.0.9) mishandles hostile input that a public server
 * meets every day, and nothing in its API lets us configure it away:
 * - A QUIC v1 0-RTT long header for an unknown connection reaches `QUICServer`'s accept code,
 *   which reads the Initial-only `header.token` (null): an unhandled TypeError ended the
 *   process (one 55-byte packet, forgeable source).
 * - It answers an Initial of any size with a Retry (an 8-byte one drew 145 bytes, 18x) and
 *   has no Retry rate limit: a reflection amplifier toward any forged source. RFC 9000
 *   §14.1: a server drops Initials in datagrams under 1200 bytes; §8.1: before an address is
 *   validated a server sends at most 3x what it received from it.
 * - Its socket handler rethrows any header-parse error it does not expect, and its send path
 *   turns some kernel send errors into a thrown "internal" error: both end the process.
 *
 * So the gate lets through only what the library handles correctly and we want served:
 *
 * | datagram                                           | gate                               |
 * | -------------------------------------------------- | ---------------------------------- |
 * | any, from port 0 or a non-unicast source address   | dropped ('bad-source')             |
 * | short header, connection ID of a live connection   | passed                             |
 * | short header, unknown connection ID                | dropped ('short-unknown')          |
 * | long header, connection ID of a live connection    | passed (handshake, retransmits)    |
 * | long header < 7 bytes or DCID over 20 bytes        | dropped ('runt')                   |
 * | version 0 (a Version Negotiation packet)           | dropped ('version-negotiation')    |
 * | unknown version, datagram < 1200 bytes             | dropped ('unknown-version')        |
 * | unknown version, >= 1200 bytes                     | passed (the library answers with a |
 * |                                                    | ~50-byte Version Negotiation),     |
 * |                                                    | rate-limited ('retry-rate')        |
 * | v1 0-RTT / Handshake / Retry, unknown connection   | dropped ('zero-rtt-unknown',       |
 * |                                                    | 'handshake-unknown', 'retry')      |
 * | v1 Initial in a datagram < 1200 bytes              | dropped ('small-initial')          |
 * | v1 Initial without token                           | passed (Retry, ~150-250 bytes),    |
 * |                                                    | rate-limited per source and in all |
 * | v1 Initial with token (a handshake)                | passed unless the source or the    |
 * |                                                    | server has too many handshakes in  |
 * |                                                    | progress ('handshake-limit') or    |
 * |                                                    | the server too many connections    |
 * |                                                    | ('connection-limit')               |
 *
 * Every reply to an unvalidated address is therefore smaller than the >= 1200-byte datagram
 * that drew it. A source is an IPv4 address or an IPv6 /64 (one subscriber's prefix).
 *
 * Errors: the library's handling of one datagram that throws or rejects is counted
 * ('error') and reported to `onError` (the relay logs it, rate-limited); the socket keeps
 * serving. Only that per-datagram call is guarded, so a bug anywhere else still surfaces.
 */
import type { Socket as UdpSocket } from 'node:dgram';
import { KeyedWindowLimiter } from '../net/rate-limit.js';

/** Smallest datagram a client Initial may arrive in (RFC 9000 §14.1). */
export const MIN_INITIAL_DATAGRAM = 1200;
/** The only QUIC version served. */
export const QUIC_V1 = 0x0000_0001;
/** Connection IDs the library issues are this long (quiche MAX_CONN_ID_LEN). */
const CONN_ID_LENGTH = 20;
const MAX_CONN_ID_LENGTH = 20;

export interface QuicGateLimits {
  /** Retry and Version Negotiation packets per second to one source. */
  retriesPerSourcePerSecond: number;
  /** The same, to all sources together: bounds what a spoofed flood can make us send. */
  retriesPerSecond: number;
  /** Handshakes in progress from one source. */
  handshakesPerSource: number;
  /** Handshakes in progress in all. */
  handshakes: number;
  /** Connections (open ones, handshakes included) in all. */
  connections: number;
}

export const DEFAULT_GATE_LIMITS: QuicGateLimits = {
  retriesPerSourcePerSecond: 20,
  retriesPerSecond: 2_000,
  handshakesPerSource: 8,
  handshakes: 256,
  connections: 4_096,
};

export type GateDropReason =
  | 'bad-source'
  | 'runt'
  | 'short-unknown'
  | 'version-negotiation'
  | 'unknown-version'
  | 'zero-rtt-unknown'
  | 'handshake-unknown'
  | 'retry'
  | 'small-initial'
  | 'retry-rate'
  | 'handshake-limit'
  | 'connection-limit';

export const GATE_DROP_REASONS: readonly GateDropReason[] = [
  'bad-source',
  'runt',
  'short-unknown',
  'version-negotiation',
  'unknown-version',
  'zero-rtt-unknown',
  'handshake-unknown',
  'retry',
  'small-initial',
  'retry-rate',
  'handshake-limit',
  'connection-limit',
];

export interface QuicGateStats {
  /** Datagrams handed to the library. */
  passed: number;
  /** Of those, Initials without token (each answered with a Retry). */
  retries: number;
  /** Handshakes started (Initials with a token for a new connection). */
  handshakes: number;
  /** Of those, in progress now (the rest ended: a connection, or a failure). */
  inProgress: number;
  /** Datagrams dropped, by reason. */
  dropped: Record<GateDropReason, number>;
  /** The library's handling of one datagram threw or rejected (the socket kept serving). */
  errors: number;
}

export interface QuicGateOptions {
  limits?: Partial<QuicGateLimits>;
  /** Open connections in all now (handshakes not included). */
  connectionCount?(): number;
  /** The library failed on one datagram (an exception it did not handle). */
  onError?(error: unknown, from: { address: string; port: number }): void;
  /** A datagram was dropped (for logs, which must rate-limit themselves). */
  onDrop?(reason: GateDropReason, from: { address: string; port: number }): void;
}

type Handler = (data: Buffer, rinfo: { address: string; port: number }) => Promise<void>;

/** What the gate needs of the library's socket: its live connection IDs. */
export interface ConnectionIdLookup {
  /** Whether `hexId` (lowercase hex of the connection ID) is a live connection's. */
  has(hexId: string): boolean;
}

const resolved = Promise.resolve();

/**
 * The source an address counts toward: the IPv4 address, or the /64 of an IPv6 address
 * (IPv4-mapped IPv6 counts as the IPv4 address).
 */
export function sourceKey(address: string): string {
  if (!address.includes(':')) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(address: string): string[] {
  const zone = address.indexOf('%');
  const a = zone < 0 ? address : address.slice(0, zone);
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  if (tail === undefined) return h.map((g) => g.toLowerCase());
  const t = tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail counts as two groups; it is never in the /64 we keep.
  const tailGroups = t.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  return [...h, ...new Array<string>(Math.max(0, 8 - h.length - tailGroups)).fill('0'), ...t].map((g) => g.toLowerCase());
}

/**
 * Whether a datagram's source can be a real peer: not port 0, not an unspecified, broadcast,
 * multicast or reserved (240/4) address. Packets from those are forged or broken, and
 * answering them makes the kernel refuse the send (which the library treats as fatal).
 */
export function isUnicastSource(address: string, port: number): boolean {
  if (port === 0) return false;
  if (!address.includes(':')) return isUnicastIPv4(address);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isUnicastIPv4(mapped[1]);
  if (address === '::') return false;
  return !/^ff/i.test(address);
}

function isUnicastIPv4(address: string): boolean {
  const first = Number(address.slice(0, address.indexOf('.')));
  return first !== 0 && first < 224;
}

/**
 * Wrap the library's socket handler `next` with the gate. Returns the gated handler and its
 * live counters.
 */
export function quicGate(
  next: Handler,
  ids: ConnectionIdLookup,
  opts: QuicGateOptions = {},
): { handler: Handler; stats: QuicGateStats; setLimits(limits: Partial<QuicGateLimits>): void } {
  const limits = { ...DEFAULT_GATE_LIMITS, ...opts.limits };
  const stats: QuicGateStats = {
    passed: 0,
    retries: 0,
    handshakes: 0,
    inProgress: 0,
    dropped: Object.fromEntries(GATE_DROP_REASONS.map((r) => [r, 0])) as Record<GateDropReason, number>,
    errors: 0,
  };
  let retryLimiter = new KeyedWindowLimiter(limits.retriesPerSourcePerSecond, limits.retriesPerSecond);
  const handshakesBySource = new Map<string, number>();
  let handshakesInProgress = 0;

  const drop = (reason: GateDropReason, rinfo: { address: string; port: number }): Promise<void> => {
    stats.dropped[reason]++;
    opts.onDrop?.(reason, rinfo);
    return resolved;
  };
  const fail = (err: unknown, rinfo: { address: string; port: number }): void => {
    stats.errors++;
    try {
      opts.onError?.(err, rinfo);
    } catch {
      // A logger that fails must not take the socket down either.
    }
  };
  /** Hand one datagram to the library; its failure is this datagram's, not the socket's. */
  const pass = (data: Buffer, rinfo: { address: string; port: number }): Promise<void> => {
    stats.passed++;
    let p: Promise<void>;
    try {
      p = next(data, rinfo);
    } catch (err) {
      fail(err, rinfo);
      return resolved;
    }
    return p.catch((err: unknown) => fail(err, rinfo));
  };

  const handler: Handler = (data, rinfo) => {
    if (!isUnicastSource(rinfo.address, rinfo.port)) return drop('bad-source', rinfo);
    if (data.length === 0) return drop('runt', rinfo);
    const first = data[0];
    if ((first & 0x80) === 0) {
      // Short header: only for a live connection (the library would parse it natively and
      // look it up, then drop it: this is the same decision, cheaply).
      if (data.length < 1 + CONN_ID_LENGTH || !ids.has(data.toString('hex', 1, 1 + CONN_ID_LENGTH))) return drop('short-unknown', rinfo);
      return pass(data, rinfo);
    }
    // Long header: first byte, version (4), DCID length (1), DCID, SCID length (1), SCID, ...
    if (data.length < 7) return drop('runt', rinfo);
    const dcidLength = data[5];
    if (dcidLength > MAX_CONN_ID_LENGTH || data.length < 6 + dcidLength + 1) return drop('runt', rinfo);
    if (dcidLength === CONN_ID_LENGTH && ids.has(data.toString('hex', 6, 6 + dcidLength))) return pass(data, rinfo);
    const version = data.readUInt32BE(1);
    if (version === 0) return drop('version-negotiation', rinfo);
    const source = sourceKey(rinfo.address);
    const now = performance.now();
    if (version !== QUIC_V1) {
      if (data.length < MIN_INITIAL_DATAGRAM) return drop('unknown-version', rinfo);
      if (!retryLimiter.allow(source, now)) return drop('retry-rate', rinfo);
      return pass(data, rinfo);
    }
    const type = (first >> 4) & 0x03;
    if (type === 1) return drop('zero-rtt-unknown', rinfo);
    if (type === 2) return drop('handshake-unknown', rinfo);
    if (type === 3) return drop('retry', rinfo);
    if (data.length < MIN_INITIAL_DATAGRAM) return drop('small-initial', rinfo);
    const tokenLength = initialTokenLength(data, dcidLength);
    if (tokenLength === undefined) return drop('runt', rinfo);
    if (tokenLength === 0) {
      if (!retryLimiter.allow(source, now)) return drop('retry-rate', rinfo);
      stats.retries++;
      return pass(data, rinfo);
    }
    // A handshake for a new connection (its token is checked by the library: a forged one
    // is dropped there, after one HMAC).
    const fromSource = handshakesBySource.get(source) ?? 0;
    if (fromSource >= limits.handshakesPerSource || handshakesInProgress >= limits.handshakes) return drop('handshake-limit', rinfo);
    if (handshakesInProgress + (opts.connectionCount?.() ?? 0) >= limits.connections) return drop('connection-limit', rinfo);
    handshakesBySource.set(source, fromSource + 1);
    handshakesInProgress++;
    stats.handshakes++;
    stats.inProgress = handshakesInProgress;
    // The library's promise for this datagram settles when the handshake does (it awaits the
    // new connection's start, bounded by the server's handshake timeout).
    return pass(data, rinfo).finally(() => {
      handshakesInProgress--;
      stats.inProgress = handshakesInProgress;
      const n = (handshakesBySource.get(source) ?? 1) - 1;
      if (n <= 0) handshakesBySource.delete(source);
      else handshakesBySource.set(source, n);
    });
  };
  /**
   * New limits from the next datagram on (a relay's config reload). Handshakes already in
   * progress are not cut short by a lower limit; the Retry rate starts a fresh window.
   */
  const setLimits = (next: Partial<QuicGateLimits>): void => {
    for (const [name, value] of Object.entries(next) as [keyof QuicGateLimits, number | undefined][]) {
      if (value !== undefined && name in DEFAULT_GATE_LIMITS) limits[name] = value;
    }
    retryLimiter = new KeyedWindowLimiter(limits.retriesPerSourcePerSecond, limits.retriesPerSecond);
  };
  return { handler, stats, setLimits };
}

/**
 * The token length of a v1 Initial (after first byte, version, DCID and SCID: a
 * variable-length integer, RFC 9000 §16), or undefined if the datagram ends first.
 */
function initialTokenLength(data: Buffer, dcidLength: number): number | undefined {
  let at = 6 + dcidLength;
  const scidLength = data[at];
  if (scidLength > MAX_CONN_ID_LENGTH) return undefined;
  at += 1 + scidLength;
  if (at >= data.length) return undefined;
  const lengthBytes = 1 << (data[at] >> 6);
  if (at + lengthBytes > data.length) return undefined;
  let value = data[at] & 0x3f;
  for (let i = 1; i < lengthBytes; i++) value = value * 256 + data[at + i];
  return value;
}

/**
 * Make a server socket's sends never fail: @matrixai/quic turns a send the kernel refuses
 * with an errno it does not expect (EACCES, EPERM, ENOBUFS...) into an "internal" server
 * error that it throws from an event handler, which ends the process. A refused UDP send is
 * a lost packet, which QUIC's loss recovery and idle timeout handle; it is counted instead.
 * Call after the QUICSocket started (it sets the send function in start()).
 */
export function hardenSocketSends(socket: object, udp: UdpSocket, onSendError: (err: Error) => void): void {
  const s = socket as { socketSend?: (...params: unknown[]) => Promise<unknown> };
  s.socketSend = (...params: unknown[]) =>
    new Promise<void>((resolve) => {
      try {
        (udp.send as (...p: unknown[]) => void)(...params, (err: Error | null) => {
          if (err) onSendError(err);
          resolve();
        });
      } catch (err) {
        onSendError(err as Error);
        resolve();
      }
    });
}

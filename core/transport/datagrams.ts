/**
 * QUIC DATAGRAM frames (RFC 9221) on top of @matrixai/quic.
 *
 * @matrixai/quic 2.0.9 exposes streams only (upstream MatrixAI/js-quic#35), but the quiche
 * connection underneath supports datagrams. This module is the ONE place that reaches into
 * the library's internals to use them; the package version is pinned exactly in
 * package.json for that reason. Everything else in wzp talks to `DatagramChannel`.
 *
 * What it relies on (checked against 2.0.9's dist/QUICConnection.js):
 * - `connection.conn` is the native quiche connection with `dgramSend`, `dgramRecvVec`,
 *   `dgramMaxWritableLen`, `isReadable`, `stats`, `pathStats`.
 * - `connection.processStreams()` runs after every received UDP packet once the peer is
 *   verified; we drain received datagrams there.
 * - `connection.recvLock.withF(fn)` serialises recv+send pairs; `connection.send()` flushes
 *   quiche's send queue to the socket.
 * - `connection.streamMap` holds the live QUICStream objects.
 *
 * Two per-packet costs of the stock library are removed here (measured, see
 * docs/dependencies.md: ~450 µs -> ~110 µs per echoed datagram):
 * 1. `recvLock` is an @matrixai/async-locks Lock whose `withF` builds a Timer, an
 *    AbortController and an Error for every packet. A plain promise-chain mutex gives the
 *    same mutual exclusion.
 * 2. `processStreams()` iterates quiche's readable() and writable() stream sets for every
 *    packet. We skip that scan when no stream has readable data and no stream exists that
 *    could be waiting for capacity, and otherwise at most every STREAM_SCAN_INTERVAL_MS
 *    unless data is readable.
 *
 * Once a connection is established and its peer verified, four more costs go. Relay CPU per
 * forwarded datagram (25 1:1 calls at 50 packets/s each way, loopback): ~170 µs -> ~95 µs.
 * What remains is mostly quiche itself through N-API (hrtime-measured in the relay: ~13 µs
 * per conn.recv, ~14 µs per flush of conn.send) and the two UDP syscalls with Node's send
 * path (~18 µs per packet for a plain Node forwarder, the benchmark's ceiling):
 * 3. Delayed ACKs (RFC 9000 §13.2.1). quiche 0.18 puts an ACK frame in whatever it sends
 *    next, and the library flushes after every received packet, so every media datagram
 *    cost an ACK-only packet in the other direction: twice the packets and syscalls of the
 *    media itself. We skip that post-receive flush and let the ACK ride on the next packet
 *    we send anyway (in a call, the next media datagram to that peer, within one frame), or
 *    flush after ACK_EVERY received packets, or after ACK_DELAY_MS: below the 25 ms
 *    max_ack_delay quiche advertises, so the peer's loss detection and RTT are unaffected
 *    (quiche reports the ACK delay it actually applied).
 * 4. The send path: the library dispatches an event per outgoing packet, which reaches the
 *    socket through two async handlers; we write quiche's packets to the UDP socket directly.
 * 5. The connection timer: the library re-creates or resets a promise-based Timer after
 *    every flush. We take it over with a plain setTimeout, doing what the library's handler
 *    does (onTimeout, send, resolve `closedP` and report an idle timeout once closed). It
 *    is re-armed only when quiche wants an earlier wake-up; a timer that fires before
 *    quiche's (moved) deadline just re-arms, since on_timeout() would do nothing.
 * 6. The receive path: QUICSocket parses every header natively, builds a connection-ID
 *    object and goes through two async functions and the receive lock per packet. Sockets
 *    opened by openSocket() route short-header packets for verified connections straight
 *    to conn.recv() (directReceiveHandler); a new remote address (migration), a long
 *    header or a receive already in the library's hands takes the library's path.
 * 7. Stream work off the receive path. A packet on the direct path is decrypted and its
 *    datagrams delivered at once; the stream work it brings (the library's scan of the
 *    connection's streams, the reads, the answers, the ACK) is queued, and the queue serves
 *    it after the socket is read (StreamWorkQueue): up to ~1 ms of it per event-loop turn,
 *    none while the last turn read a near-full batch (up to 20 ms, then ~5 ms). A relay reads media and
 *    every connection's streams from one UDP socket: the hostile bench's burst of unfinished
 *    signal frames (8 connections x 16 streams x 8 KB, ~1 MB at once) used to be served
 *    packet by packet for ~1.2 s on 2 busy cores while the call's media waited behind it in
 *    the socket's receive queue (docs/transport.md). Stream data not yet read stays in
 *    quiche, within the flow-control windows, so an unread burst also holds its sender back.
 * 8. Sends that stream events ask for (a read that frees flow-control credit, a reply, a
 *    reset) are coalesced: one flush per connection per event-loop turn, not one packet per
 *    event. 64 signal streams timing out together sent two packets each.
 * Before the peer is verified, while closing or draining, the library's own paths run
 * unchanged (handshake, TLS verification, error events).
 */
import type { Socket as UdpSocket } from 'node:dgram';
import type { QUICConnection } from '@matrixai/quic';
import { errors as quicErrors, events as quicEvents } from '@matrixai/quic';

/** Largest datagram payload we ever try to send (quiche default max UDP payload 1350 - 44). */
export const MAX_DATAGRAM_PAYLOAD = 1306;
/** With streams open but nothing readable, rescan writable streams at most this often. */
const STREAM_SCAN_INTERVAL_MS = 5;
/**
 * Packets read in one event-loop turn that mean the socket is busy (libuv reads at most 32
 * per turn): queued stream work then waits for the next turn (point 7), at most
 * STREAM_WORK_MAX_WAIT_MS.
 */
const SOCKET_BUSY_PACKETS = 24;
const STREAM_WORK_MAX_WAIT_MS = 20;
/** Stream work started in one turn until this much time has gone (at least one connection's). */
const STREAM_WORK_TURN_MS = 1;
/**
 * After waiting for a busy socket, this much: under sustained load (a room of 64 taking
 * roster pushes) 1 ms per 20 ms starved signalling (joins unanswered after 3 s); 5 ms in 25
 * still keeps media ahead of a burst.
 */
const STREAM_WORK_BUSY_TURN_MS = 5;
/** Longest an ACK waits for a packet to ride on (quiche advertises max_ack_delay 25 ms). */
export const ACK_DELAY_MS = 22;
/** Acknowledge at once after this many received packets (RFC 9000 §13.2.2 suggests two). */
export const ACK_EVERY = 2;
/**
 * Received datagram packets acknowledged at once after the switch to the direct path, and
 * then one in IMMEDIATE_ACK_EVERY. quiche subtracts a reported ACK delay from an RTT sample
 * only if the rest is at least min_rtt (RFC 9002 §5.3), and min_rtt is the all-time
 * minimum of raw samples. The handshake's samples went through the library's slower path;
 * without fast immediate samples, delayed ones on a sub-millisecond path looked "below
 * min_rtt", were taken whole, and the smoothed RTT on loopback read ~21 ms instead of ~1.
 */
const IMMEDIATE_ACKS = 8;
const IMMEDIATE_ACK_EVERY = 16;

export interface DatagramStats {
  sent: number;
  received: number;
  /** Dropped locally because quiche's send queue was full (congestion). */
  droppedQueueFull: number;
  /** Dropped locally because the payload exceeded the path's max datagram size. */
  droppedTooLarge: number;
  /** Dropped because the connection was closed or the peer did not negotiate datagrams. */
  droppedClosed: number;
  /** Purged from the send queue as stale under congestion (see purgeIfQueued). */
  purgedStale: number;
}

export interface PathStatsSnapshot {
  /** Smoothed RTT in ms, from quiche's path stats (whole milliseconds in 2.0.9). */
  rttMs: number;
  /** RTT variance in ms. */
  rttVarMs: number;
  /** Congestion window in bytes. */
  cwnd: number;
  /** Packets quiche declared lost on this connection. */
  lost: number;
  /** Packets sent on this connection. */
  sentPackets: number;
  /** Path MTU estimate in bytes. */
  pmtu: number;
}

export interface DatagramChannel {
  /**
   * Queue one datagram. Returns false (and counts why) when it was dropped: media is
   * lossy by design, so a full queue drops the newest packet rather than blocking.
   */
  send(payload: Uint8Array): boolean;
  /** Set the handler for received datagrams (called synchronously on the receive path). */
  onDatagram(handler: (payload: Uint8Array) => void): void;
  /** Largest payload sendable now, or null if the peer did not enable datagrams. */
  maxPayload(): number | null;
  /**
   * If at least `maxQueued` datagrams were still waiting after the last flush (congestion
   * control is holding them back: the path is congested), purge the queue: for real-time
   * media the queued ones are stale, and the newest should go next. Returns how many.
   */
  purgeIfQueued(maxQueued: number): number;
  stats(): DatagramStats;
  pathStats(): PathStatsSnapshot | undefined;
}

/** The internals of QUICConnection we touch; typed here so the coupling is explicit. */
interface NativeConn {
  recv(data: Uint8Array, info: RecvInfo): void;
  send(out: Uint8Array): [number, { to: { host: string; port: number } }] | null;
  timeout(): number | null;
  onTimeout(): void;
  dgramSend(data: Uint8Array): void | null;
  dgramRecvVec(): Uint8Array | null;
  dgramMaxWritableLen(): number | null;
  dgramSendQueueLen(): number;
  dgramPurgeOutgoing(predicate: (d: Uint8Array) => boolean): void;
  isReadable(): boolean;
  isClosed(): boolean;
  isDraining(): boolean;
  isTimedOut(): boolean;
  localError(): unknown;
  stats(): { lost: number; sent: number };
  pathStats(): Iterable<{ rtt: number; rttvar: number; cwnd: number; pmtu: number }>;
}
interface RecvInfo {
  to: { host: string; port: number };
  from: { host: string; port: number };
}
interface ConnectionInternals {
  conn: NativeConn;
  streamMap: Map<unknown, unknown>;
  recvLock: { withF(fn: () => Promise<void>): Promise<void> };
  processStreams(): void;
  send(): Promise<void>;
  setConnTimeoutTimer(): void;
  connTimeoutTimer?: { status: string | null; cancel(): void };
  resolveClosedP(): void;
  closedP?: Promise<void>;
  dispatchEvent(event: Event): boolean;
  /** True once the handshake is done and the peer passed verification. */
  secureEstablished: boolean;
  config: { maxSendUdpPayloadSize: number };
  /** The QUICSocket: its `socket` is the node:dgram socket, host/port the bound address. */
  socket: { socket: UdpSocket; host: string; port: number };
  connectionId: Uint8Array;
  _remoteHost: string;
  _remotePort: number;
}

/** A mutex as a promise chain: same exclusion as Lock.withF without per-call timers. */
class ChainLock {
  private tail: Promise<void> = Promise.resolve();
  /** Holders running or waiting: the direct receive path stays out while any exist. */
  pending = 0;
  withF(fn: () => Promise<void>): Promise<void> {
    this.pending++;
    const run = this.tail.then(fn).finally(() => {
      this.pending--;
    });
    // The chain must survive a failed holder; the caller still sees the rejection.
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/**
 * Connections with stream work waiting (point 7): served in order, a turn's worth at a time
 * (STREAM_WORK_TURN_MS, at least one connection), so that between them the socket is read
 * again and media goes on.
 */
class StreamWorkQueue {
  private readonly jobs: (() => void)[] = [];
  private scheduled = false;
  /** QUIC packets read from the socket since the last turn (directReceiveHandler counts). */
  packetsRead = 0;
  /** When the queue last ran a job, or started waiting (performance.now() ms). */
  private lastRun = 0;
  add(job: () => void): void {
    this.jobs.push(job);
    if (!this.scheduled) {
      this.scheduled = true;
      this.lastRun = performance.now();
      setImmediate(this.runOne);
    }
  }
  private readonly runOne = (): void => {
    const busy = this.packetsRead >= SOCKET_BUSY_PACKETS;
    this.packetsRead = 0;
    const now = performance.now();
    // A full read of the socket last turn: more is probably waiting (media among it). Read
    // on first, unless the stream work has already waited its longest.
    if (busy && now - this.lastRun < STREAM_WORK_MAX_WAIT_MS) {
      setImmediate(this.runOne);
      return;
    }
    this.lastRun = now;
    const until = now + (busy ? STREAM_WORK_BUSY_TURN_MS : STREAM_WORK_TURN_MS);
    try {
      do {
        const job = this.jobs.shift();
        try {
          job?.();
        } catch {
          // The library reports a stream's failure as an event on it before it throws.
        }
      } while (this.jobs.length > 0 && performance.now() < until);
    } finally {
      // Queued from inside an immediate, the next one runs in the next turn, after a poll.
      if (this.jobs.length > 0) setImmediate(this.runOne);
      else this.scheduled = false;
    }
  };
}
const streamWork = new StreamWorkQueue();

const attached = new WeakMap<object, DatagramChannel>();
const resolved = Promise.resolve();

function ignoreSendError(): void {}

/**
 * Connections that take the direct receive path, per UDP socket, by the connection ID their
 * peer addresses them with (the DCID of short-header packets).
 */
const directRoutes = new WeakMap<UdpSocket, Map<string, (data: Buffer, from: { address: string; port: number }) => boolean>>();
/** The library's connection IDs are quiche.MAX_CONN_ID_LEN (20) bytes. */
const CONN_ID_LENGTH = 20;

/**
 * Give short-header QUIC packets for established, verified connections a direct path:
 * QUICSocket's handler parses the header natively, builds a connection-ID object, and goes
 * through two async functions and the receive lock for every packet. Anything else (long
 * headers, unknown IDs, a connection mid-handshake or migrating) takes the library's path.
 * Call before the QUICSocket starts, with the handler it will register.
 */
export function directReceiveHandler<H extends (data: Buffer, rinfo: { address: string; port: number }) => Promise<void>>(
  udpOf: () => UdpSocket | undefined,
  next: H,
): (data: Buffer, rinfo: { address: string; port: number }) => Promise<void> {
  let routes: Map<string, (data: Buffer, from: { address: string; port: number }) => boolean> | undefined;
  return (data, rinfo) => {
    streamWork.packetsRead++;
    // Short header: form bit 0, fixed bit 1.
    if (data.length > CONN_ID_LENGTH && (data[0] & 0xc0) === 0x40) {
      if (routes === undefined) {
        const udp = udpOf();
        routes = udp ? directRoutes.get(udp) : undefined;
      }
      const route = routes?.get(data.toString('latin1', 1, 1 + CONN_ID_LENGTH));
      if (route !== undefined && route(data, rinfo)) return resolved;
    }
    return next(data, rinfo);
  };
}

/**
 * Enable datagrams on a connection (client or server side). Idempotent: a second call
 * returns the same channel. Call it as soon as the connection exists; datagrams that
 * arrived earlier wait in quiche's receive queue and are delivered on the next packet.
 */
export function attachDatagrams(connection: QUICConnection): DatagramChannel {
  const existing = attached.get(connection);
  if (existing) return existing;
  const c = connection as unknown as ConnectionInternals;
  const stats: DatagramStats = {
    sent: 0,
    received: 0,
    droppedQueueFull: 0,
    droppedTooLarge: 0,
    droppedClosed: 0,
    purgedStale: 0,
  };
  let handler: (payload: Uint8Array) => void = () => undefined;
  let flushScheduled = false;
  let lastStreamScan = 0;

  const lock = new ChainLock();
  c.recvLock = lock;

  /** Datagrams taken out of quiche by the last drain(). */
  let drained = 0;
  const drain = (): void => {
    let d: Uint8Array | null;
    drained = 0;
    while ((d = c.conn.dgramRecvVec()) !== null) {
      stats.received++;
      drained++;
      try {
        handler(d);
      } catch {
        // A handler bug must not break the QUIC receive path; handlers count their own errors.
      }
    }
  };

  /** Deliver datagrams, then let the library serve streams; true if stream data was readable. */
  const originalProcessStreams = c.processStreams.bind(connection);
  /** Set by the direct receive path: readable stream data is queued (point 7), not served now. */
  let deferStreams = false;
  /** This connection's stream work is in the queue. */
  let streamWorkQueued = false;
  const runStreamWork = (): void => {
    streamWorkQueued = false;
    if (closedSeen) return;
    // As after a received packet with stream data: serve the streams, then send (ACK now).
    c.processStreams();
    postReceive = 'stream';
    void c.send();
  };
  const scanStreams = (): boolean => {
    drain();
    // quiche's is_readable() also counts queued datagrams: ask only once they are drained.
    if (c.conn.isReadable()) {
      if (deferStreams) {
        streamWorkQueued = true;
        streamWork.add(runStreamWork);
        return true;
      }
      lastStreamScan = performance.now();
      originalProcessStreams();
      return true;
    }
    if (c.streamMap.size === 0) {
      // No stream object exists: only a new peer stream could need the scan, and a new peer
      // stream always arrives with data, which makes the connection readable.
      return false;
    }
    const now = performance.now();
    if (now - lastStreamScan >= STREAM_SCAN_INTERVAL_MS) {
      lastStreamScan = now;
      originalProcessStreams();
    }
    return false;
  };

  /** What the packet just received carried, while its post-receive send() is pending. */
  let postReceive: 'stream' | 'datagram' | 'other' | undefined;
  c.processStreams = function processStreamsWithDatagrams(): void {
    // Stream data is acknowledged (and answered with flow-control credit) at once; only
    // packets that carried nothing for a stream may wait for their ACK to ride along.
    const streamData = scanStreams();
    // The library's recv() calls send() right after this returns (synchronously, nothing
    // runs in between): mark that call as the post-receive flush, which we may delay.
    postReceive = streamData ? 'stream' : drained > 0 ? 'datagram' : 'other';
  };

  // --- once verified: delayed ACKs, direct writes, our own timer (header, points 3-5) ---
  const originalSend = c.send.bind(connection);
  let direct = false;
  let receivedSinceFlush = 0;
  /** When flushPackets last wrote a packet (performance.now()). */
  let lastWriteAt = 0;
  /** Received packets that carried datagrams, on the direct path. */
  let datagramPackets = 0;
  /** When the pending ACK must go out (performance.now() ms), 0 when none is pending. */
  let ackDueAt = 0;
  let ackTimer: NodeJS.Timeout | undefined;
  let connTimer: NodeJS.Timeout | undefined;
  /** A coalesced flush (point 8) is scheduled. */
  let flushQueued = false;
  /** When connTimer fires (performance.now() ms). */
  let connTimerAt = 0;
  let closedResolved = false;
  /** The library resolved closedP: the connection is gone. */
  let closedSeen = false;
  void c.closedP?.then(() => {
    closedSeen = true;
  });

  const onAckTimer = (): void => {
    ackTimer = undefined;
    if (ackDueAt === 0 || c.conn.isClosed()) return;
    const rest = ackDueAt - performance.now();
    if (rest > 1) armAckTimer(rest);
    else flushPackets();
  };
  const armAckTimer = (ms: number): void => {
    ackTimer = setTimeout(onAckTimer, ms);
    ackTimer.unref();
  };

  /** The connection is closed for good: what the library's timer handler does then. */
  const closed = (): void => {
    if (closedResolved) return;
    closedResolved = true;
    if (connTimer !== undefined) clearTimeout(connTimer);
    if (ackTimer !== undefined) clearTimeout(ackTimer);
    connTimer = ackTimer = undefined;
    c.resolveClosedP();
    if (c.conn.isTimedOut()) {
      c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail: new quicErrors.ErrorQUICConnectionIdleTimeout() }));
    }
  };

  const onConnTimer = (): void => {
    connTimer = undefined;
    const left = c.conn.timeout();
    if (left !== null && left > 0) {
      // Fired before quiche's (moved) deadline: nothing is due yet.
      armConnTimer();
      return;
    }
    c.conn.onTimeout();
    if (c.conn.isClosed()) {
      closed();
      return;
    }
    // Loss-detection probes, keep-alives, or the close itself: send what quiche has now.
    sendNow();
    armConnTimer();
  };

  /** Make sure a timer fires no later than quiche's next deadline (earlier is harmless). */
  const armConnTimer = (): void => {
    const left = c.conn.timeout();
    if (left === null) {
      if (connTimer !== undefined) clearTimeout(connTimer);
      connTimer = undefined;
      if (c.conn.isClosed()) closed();
      return;
    }
    const at = performance.now() + left + 1;
    if (connTimer !== undefined && connTimerAt <= at) return;
    if (connTimer !== undefined) clearTimeout(connTimer);
    connTimerAt = at;
    connTimer = setTimeout(onConnTimer, left + 1);
  };

  /** Take over from the library once the peer is verified and its timer is not running. */
  const goDirect = (): boolean => {
    const timer = c.connTimeoutTimer;
    if (timer !== undefined && timer.status === 'settling') return false;
    timer?.cancel();
    delete c.connTimeoutTimer;
    c.setConnTimeoutTimer = armConnTimer;
    direct = true;
    armConnTimer();
    const udp = c.socket.socket;
    let routes = directRoutes.get(udp);
    if (routes === undefined) directRoutes.set(udp, (routes = new Map()));
    const key = Buffer.from(c.connectionId).toString('latin1');
    routes.set(key, receiveDirect);
    void c.closedP?.then(() => routes?.delete(key));
    return true;
  };

  /** Write everything quiche has to send straight to the UDP socket. */
  const flushPackets = (): number => {
    const udp = c.socket.socket;
    const size = c.config.maxSendUdpPayloadSize;
    let written = 0;
    for (;;) {
      const packet = Buffer.allocUnsafe(size);
      const result = c.conn.send(packet);
      if (result === null) break;
      const [length, info] = result;
      // A failed write is a lost packet: QUIC's loss recovery and idle timeout handle it.
      udp.send(packet, 0, length, info.to.port, info.to.host, ignoreSendError);
      written++;
    }
    if (written > 0) lastWriteAt = performance.now();
    receivedSinceFlush = 0;
    ackDueAt = 0;
    armConnTimer();
    return written;
  };

  const flushQueuedSend = (): void => {
    flushQueued = false;
    sendNow();
  };
  /** The next send() is ours (a timer, a coalesced flush): not to be coalesced again. */
  let sendingNow = false;
  const sendNow = (): void => {
    postReceive = undefined;
    sendingNow = true;
    void c.send().catch(() => undefined);
  };

  c.send = function sendDirect(): Promise<void> {
    const afterReceive = postReceive;
    postReceive = undefined;
    const now = sendingNow;
    sendingNow = false;
    if (!now && afterReceive === undefined && direct && c.secureEstablished && !c.conn.isDraining() && !c.conn.isClosed()) {
      // A stream event asks (point 8): flush once this turn, whatever else asks meanwhile.
      if (!flushQueued) {
        flushQueued = true;
        setImmediate(flushQueuedSend);
      }
      return resolved;
    }
    // A peer's close (draining) goes through the library, which reports it.
    if (!c.secureEstablished || c.conn.isDraining()) return originalSend();
    if (!direct && !goDirect()) return originalSend();
    // A packet with neither stream data nor datagrams (a keep-alive PING, most often) on a
    // connection we have not written to for ACK_DELAY_MS: nothing is on its way for the ACK
    // to ride on, so it goes now rather than from a timer (on a relay, a timer and a wake-up
    // per member and keep-alive interval: most of what idle members cost it).
    let ackNow = afterReceive === 'stream' || (afterReceive === 'other' && performance.now() - lastWriteAt > ACK_DELAY_MS);
    if (afterReceive === 'datagram') {
      receivedSinceFlush++;
      datagramPackets++;
      ackNow = receivedSinceFlush >= ACK_EVERY || datagramPackets <= IMMEDIATE_ACKS || datagramPackets % IMMEDIATE_ACK_EVERY === 0;
    }
    if (afterReceive !== undefined && !ackNow) {
      // Delay the ACK (point 3): it rides on the next packet we send, or goes when due.
      if (ackDueAt === 0) {
        ackDueAt = performance.now() + ACK_DELAY_MS;
        if (ackTimer === undefined) armAckTimer(ACK_DELAY_MS);
      }
      // No timer update: a received packet only moves quiche's deadlines later (idle,
      // probe), except a loss-time deadline after an ACK, and that waits at most until the
      // ACK flush, within ACK_DELAY_MS.
      return resolved;
    }
    if (c.conn.isClosed()) return originalSend();
    try {
      flushPackets();
    } catch {
      // quiche refused to build a packet: let the library's path report it as it does.
      return originalSend();
    }
    return resolved;
  };

  let recvInfo: RecvInfo | undefined;
  /** The direct receive path (point 6); false sends the packet down the library's path. */
  const receiveDirect = (data: Buffer, from: { address: string; port: number }): boolean => {
    // (A draining or closed connection needs no check here: quiche ignores the packet, and
    // the send() that follows hands the connection back to the library.)
    if (lock.pending > 0) return false;
    // A new remote address is a migration: the library tracks it.
    if (from.port !== c._remotePort || from.address !== c._remoteHost) return false;
    if (recvInfo === undefined || recvInfo.from.port !== from.port || recvInfo.from.host !== from.address) {
      recvInfo = { to: { host: c.socket.host, port: c.socket.port }, from: { host: from.address, port: from.port } };
    }
    try {
      c.conn.recv(data, recvInfo);
    } catch (err) {
      // As the library's recv(): quiche closed the connection with a local error (it
      // drains now), or something broke inside quiche.
      const localError = c.conn.localError();
      const detail =
        localError == null
          ? new quicErrors.ErrorQUICConnectionInternal('Failed connection recv due with unknown error', { cause: err })
          : new quicErrors.ErrorQUICConnectionLocal('Failed connection due to local error', { cause: err, data: localError as never });
      c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail }));
      return true;
    }
    if (streamWorkQueued) {
      // Its stream work (and ACK) waits in the queue already: only datagrams go now.
      drain();
      return true;
    }
    deferStreams = true;
    try {
      c.processStreams();
    } finally {
      deferStreams = false;
    }
    if (streamWorkQueued) {
      postReceive = undefined;
      return true;
    }
    void c.send();
    return true;
  };

  // Datagrams still queued right after a flush: what congestion control held back. This,
  // not the momentary queue length (a burst queued in one tick), is the congestion signal.
  let backlogAfterFlush = 0;
  const measureBacklog = (): void => {
    try {
      backlogAfterFlush = c.conn.dgramSendQueueLen();
    } catch {
      backlogAfterFlush = 0;
    }
  };
  /** Datagrams queued since the last flush, and packets that flush wrote. */
  let queuedSinceFlush = 0;
  let flushes = 0;
  const flush = (): void => {
    flushScheduled = false;
    if (direct && !c.conn.isDraining() && !c.conn.isClosed()) {
      try {
        const queued = queuedSinceFlush;
        queuedSinceFlush = 0;
        const written = flushPackets();
        // Each written packet carries at least one queued datagram unless congestion control
        // held them back (then quiche writes ACK-only packets, or none): ask quiche for the
        // backlog only then, and now and again in case small datagrams shared packets.
        if (written < queued || backlogAfterFlush > 0 || ++flushes % 16 === 0) measureBacklog();
        return;
      } catch {
        // Fall through: the library's send path reports what went wrong.
      }
    }
    c.send().then(measureBacklog, () => {
      // Send errors surface as connection error events on the QUICConnection itself.
    });
  };

  const channel: DatagramChannel = {
    send(payload) {
      // One native call on the hot path: quiche's dgram_send itself refuses a payload that
      // is too large or a peer without datagrams; why is asked only when it refused.
      if (closedSeen) {
        stats.droppedClosed++;
        return false;
      }
      let queued: void | null;
      try {
        queued = c.conn.dgramSend(payload);
      } catch {
        let max: number | null = null;
        try {
          max = c.conn.isClosed() ? null : c.conn.dgramMaxWritableLen();
        } catch {
          // closed underneath us
        }
        if (max !== null && payload.byteLength > max) stats.droppedTooLarge++;
        else stats.droppedClosed++;
        return false;
      }
      if (queued === null) {
        stats.droppedQueueFull++;
        return false;
      }
      stats.sent++;
      queuedSinceFlush++;
      // Coalesce several sends in one tick into one flush of quiche's send queue.
      if (!flushScheduled) {
        flushScheduled = true;
        queueMicrotask(flush);
      }
      return true;
    },
    onDatagram(h) {
      handler = h;
      drain();
    },
    purgeIfQueued(maxQueued) {
      if (backlogAfterFlush < maxQueued) return 0;
      let queued: number;
      try {
        queued = c.conn.dgramSendQueueLen();
        c.conn.dgramPurgeOutgoing(() => true);
      } catch {
        return 0;
      }
      backlogAfterFlush = 0;
      stats.purgedStale += queued;
      return queued;
    },
    maxPayload() {
      try {
        return c.conn.dgramMaxWritableLen();
      } catch {
        return null;
      }
    },
    stats() {
      return { ...stats };
    },
    pathStats() {
      try {
        const s = c.conn.stats();
        for (const p of c.conn.pathStats()) {
          return {
            rttMs: p.rtt,
            rttVarMs: p.rttvar,
            cwnd: p.cwnd,
            lost: s.lost,
            sentPackets: s.sent,
            pmtu: p.pmtu,
          };
        }
      } catch {
        // Closed connection: no stats.
      }
      return undefined;
    },
  };
  attached.set(connection, channel);
  return channel;
}

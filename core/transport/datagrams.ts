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
 * Two per-packet costs of the stock library are removed here (measured in FACTS.md:
 * ~450 µs -> ~110 µs per echoed datagram):
 * 1. `recvLock` is an @matrixai/async-locks Lock whose `withF` builds a Timer, an
 *    AbortController and an Error for every packet. A plain promise-chain mutex gives the
 *    same mutual exclusion.
 * 2. `processStreams()` iterates quiche's readable() and writable() stream sets for every
 *    packet. We skip that scan when no stream has readable data and no stream exists that
 *    could be waiting for capacity, and otherwise at most every STREAM_SCAN_INTERVAL_MS
 *    unless data is readable.
 */
import type { QUICConnection } from '@matrixai/quic';

/** Largest datagram payload we ever try to send (quiche default max UDP payload 1350 - 44). */
export const MAX_DATAGRAM_PAYLOAD = 1306;
/** With streams open but nothing readable, rescan writable streams at most this often. */
const STREAM_SCAN_INTERVAL_MS = 5;

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
  dgramSend(data: Uint8Array): void | null;
  dgramRecvVec(): Uint8Array | null;
  dgramMaxWritableLen(): number | null;
  dgramSendQueueLen(): number;
  dgramPurgeOutgoing(predicate: (d: Uint8Array) => boolean): void;
  isReadable(): boolean;
  isClosed(): boolean;
  stats(): { lost: number; sent: number };
  pathStats(): Iterable<{ rtt: number; rttvar: number; cwnd: number; pmtu: number }>;
}
interface ConnectionInternals {
  conn: NativeConn;
  streamMap: Map<unknown, unknown>;
  recvLock: { withF(fn: () => Promise<void>): Promise<void> };
  processStreams(): void;
  send(): Promise<void>;
}

/** A mutex as a promise chain: same exclusion as Lock.withF without per-call timers. */
class ChainLock {
  private tail: Promise<void> = Promise.resolve();
  withF(fn: () => Promise<void>): Promise<void> {
    const run = this.tail.then(fn);
    // The chain must survive a failed holder; the caller still sees the rejection.
    this.tail = run.catch(() => undefined);
    return run;
  }
}

const attached = new WeakMap<object, DatagramChannel>();

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

  c.recvLock = new ChainLock();

  const drain = (): void => {
    let d: Uint8Array | null;
    while ((d = c.conn.dgramRecvVec()) !== null) {
      stats.received++;
      try {
        handler(d);
      } catch {
        // A handler bug must not break the QUIC receive path; handlers count their own errors.
      }
    }
  };

  const originalProcessStreams = c.processStreams.bind(connection);
  c.processStreams = function processStreamsWithDatagrams(): void {
    drain();
    if (c.conn.isReadable()) {
      lastStreamScan = performance.now();
      originalProcessStreams();
      return;
    }
    if (c.streamMap.size === 0) {
      // No stream object exists: only a new peer stream could need the scan, and a new peer
      // stream always arrives with data, which makes the connection readable.
      return;
    }
    const now = performance.now();
    if (now - lastStreamScan >= STREAM_SCAN_INTERVAL_MS) {
      lastStreamScan = now;
      originalProcessStreams();
    }
  };

  // Datagrams still queued right after a flush: what congestion control held back. This,
  // not the momentary queue length (a burst queued in one tick), is the congestion signal.
  let backlogAfterFlush = 0;
  const flush = (): void => {
    flushScheduled = false;
    c.send().then(
      () => {
        try {
          backlogAfterFlush = c.conn.dgramSendQueueLen();
        } catch {
          backlogAfterFlush = 0;
        }
      },
      () => {
        // Send errors surface as connection error events on the QUICConnection itself.
      },
    );
  };

  const channel: DatagramChannel = {
    send(payload) {
      if (c.conn.isClosed()) {
        stats.droppedClosed++;
        return false;
      }
      const max = c.conn.dgramMaxWritableLen();
      if (max === null) {
        stats.droppedClosed++;
        return false;
      }
      if (payload.byteLength > max) {
        stats.droppedTooLarge++;
        return false;
      }
      let queued: void | null;
      try {
        queued = c.conn.dgramSend(payload);
      } catch {
        stats.droppedClosed++;
        return false;
      }
      if (queued === null) {
        stats.droppedQueueFull++;
        return false;
      }
      stats.sent++;
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

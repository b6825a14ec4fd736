/**
 * The one interface media goes through: a MediaTransport carries sealed media datagrams
 * between us and the other end (the relay, or a peer), whatever the path.
 *
 * Implementations: QUIC DATAGRAM frames on the relay's connection (`relay-quic`, below), the
 * UDP media path to the relay (`relay-udp`, core/transport/udp-media.ts), and a direct path
 * to a peer (`direct`, to come). A MediaPathSwitch (below) is itself a MediaTransport: it
 * sends on the most preferred path that is open and receives from all of them, which is how
 * media moves between paths without a gap (relay QUIC -> relay UDP today; relay <-> direct
 * for direct calls). What a switch needs of each path is in the interface: its kind and
 * label, whether it is open, when it last received, its round trip if known, its own
 * counters, and close.
 *
 * Every implementation passes the compliance suite in core/compliance/media-transport.ts.
 *
 * Semantics, for all of them:
 * - send() is lossy: a datagram the path cannot take now (congested, not open yet, closed) is
 *   dropped, counted, and send() returns false. A payload larger than maxPayload() is a bug of
 *   the caller's: send() throws MediaPayloadTooLargeError (and counts it), and the transport
 *   keeps working.
 * - onDatagram() sets the one receive handler (a later call replaces it). It runs
 *   synchronously on the receive path; an exception in it is swallowed (handlers count their
 *   own errors), never breaking the transport.
 * - close() is idempotent; afterwards nothing is delivered and every send returns false.
 *   Closing a transport does not close what it rides on (the relay's QUIC connection is its
 *   session's): it stops this transport's use of it.
 */
import { ExitCode, WzpError } from '../errors.js';
import type { DatagramChannel } from './datagrams.js';

/** Which path a transport is: the relay's QUIC datagrams, the UDP media path, or direct to a peer. */
export type MediaTransportKind = 'relay-quic' | 'relay-udp' | 'direct';

/**
 * `connecting`: not carrying media yet (a path being proven); `open`: carries media;
 * `closed`: for good.
 */
export type MediaTransportState = 'connecting' | 'open' | 'closed';

export interface MediaTransportStats {
  /** Datagrams handed to the path, and their payload bytes. */
  sent: number;
  bytesSent: number;
  /** Datagrams delivered to the handler, and their payload bytes. */
  received: number;
  bytesReceived: number;
  /** Sends refused as larger than maxPayload() (each one threw MediaPayloadTooLargeError). */
  droppedTooLarge: number;
  /** Sends dropped because the path was congested (its queue was full). */
  droppedQueueFull: number;
  /** Sends dropped because the transport was closed or not open yet. */
  droppedClosed: number;
}

export interface MediaTransport {
  readonly kind: MediaTransportKind;
  /** Says where the path goes (e.g. the relay's HOST:PORT), for status lines and reports. */
  readonly label: string;
  readonly state: MediaTransportState;
  /** The largest payload send() takes now (0 when it takes none: closed, or not negotiated). */
  maxPayload(): number;
  /**
   * Send one datagram. False: dropped (counted in stats). Throws MediaPayloadTooLargeError
   * when `payload` is larger than maxPayload().
   */
  send(payload: Uint8Array): boolean;
  /** The receive handler (replaces the previous one). */
  onDatagram(handler: (payload: Uint8Array) => void): void;
  /** When the last datagram arrived (performance.now() ms), undefined before the first. */
  lastReceivedAt(): number | undefined;
  /** The path's round trip as last known, ms (undefined: not known). */
  rttMs(): number | undefined;
  stats(): MediaTransportStats;
  /** Stop: idempotent; nothing is delivered afterwards. */
  close(): void;
}

/** A datagram larger than the transport's maxPayload(): a bug of the sender's, not a network fault. */
export class MediaPayloadTooLargeError extends WzpError {
  constructor(
    readonly size: number,
    readonly maxPayload: number,
    kind: string,
  ) {
    super(`a ${size}-byte datagram does not fit the ${kind} path (at most ${maxPayload} bytes)`, ExitCode.INTERNAL);
    this.name = 'MediaPayloadTooLargeError';
  }
}

export function emptyMediaTransportStats(): MediaTransportStats {
  return { sent: 0, bytesSent: 0, received: 0, bytesReceived: 0, droppedTooLarge: 0, droppedQueueFull: 0, droppedClosed: 0 };
}

/**
 * The relay's QUIC connection's DATAGRAM frames (core/transport/datagrams.ts). Open as long
 * as the connection takes datagrams.
 */
export class QuicDatagramTransport implements MediaTransport {
  readonly kind = 'relay-quic' as const;
  #closed = false;
  #handler: (payload: Uint8Array) => void = () => undefined;
  #lastReceivedAt: number | undefined;
  readonly #stats = emptyMediaTransportStats();
  /** Sends refused here, before the channel saw them (the channel counts its own). */
  readonly #refused = { tooLarge: 0, closed: 0 };

  constructor(
    private readonly channel: DatagramChannel,
    readonly label: string,
  ) {
    channel.onDatagram((d) => this.#deliver(d));
  }

  get state(): MediaTransportState {
    return this.#closed ? 'closed' : this.maxPayload() > 0 ? 'open' : 'connecting';
  }

  maxPayload(): number {
    if (this.#closed) return 0;
    return this.channel.maxPayload() ?? 0;
  }

  send(payload: Uint8Array): boolean {
    const max = this.#closed ? null : this.channel.maxPayload();
    if (max === null) {
      // Closed (here, or underneath us), or a peer without datagrams.
      this.#stats.droppedClosed++;
      this.#refused.closed++;
      return false;
    }
    if (payload.byteLength > max) {
      this.#stats.droppedTooLarge++;
      this.#refused.tooLarge++;
      throw new MediaPayloadTooLargeError(payload.byteLength, max, this.kind);
    }
    const before = this.channel.stats();
    if (!this.channel.send(payload)) {
      const after = this.channel.stats();
      if (after.droppedQueueFull > before.droppedQueueFull) this.#stats.droppedQueueFull++;
      else if (after.droppedTooLarge > before.droppedTooLarge) this.#stats.droppedTooLarge++;
      else this.#stats.droppedClosed++;
      return false;
    }
    this.#stats.sent++;
    this.#stats.bytesSent += payload.byteLength;
    return true;
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#handler = handler;
  }

  #deliver(d: Uint8Array): void {
    if (this.#closed) return;
    this.#stats.received++;
    this.#stats.bytesReceived += d.byteLength;
    this.#lastReceivedAt = performance.now();
    try {
      this.#handler(d);
    } catch {
      // Handlers count their own errors; the receive path keeps going.
    }
  }

  lastReceivedAt(): number | undefined {
    return this.#lastReceivedAt;
  }

  /** QUIC's smoothed RTT of the connection. */
  rttMs(): number | undefined {
    return this.#closed ? undefined : this.channel.pathStats()?.rttMs;
  }

  stats(): MediaTransportStats {
    return { ...this.#stats };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = () => undefined;
  }

  /** @internal Sends refused before they reached the channel (for a DatagramChannel view's counters). */
  refusedBeforeSend(): { tooLarge: number; closed: number } {
    return { ...this.#refused };
  }

  /** @internal For the relay session's DatagramChannel view: purge stale queued datagrams. */
  purgeIfQueued(maxQueued: number): number {
    return this.#closed ? 0 : this.channel.purgeIfQueued(maxQueued);
  }
}

/**
 * Several paths as one transport: sends go on the most preferred open path (the order given),
 * datagrams are taken from all of them (so nothing is lost while the two ends switch at
 * slightly different moments; the media layer's sequence numbers and replay window drop
 * duplicates). `kind`, `label` and `rttMs` are the active path's.
 */
export class MediaPathSwitch implements MediaTransport {
  #closed = false;
  #handler: (payload: Uint8Array) => void = () => undefined;
  #paths: readonly MediaTransport[];
  readonly #closedStats = emptyMediaTransportStats();
  #onSwitch: ((from: MediaTransport | undefined, to: MediaTransport | undefined) => void) | undefined;
  #lastActive: MediaTransport | undefined;

  /** `paths`: most preferred first (at least one). */
  constructor(paths: readonly MediaTransport[]) {
    if (paths.length === 0) throw new RangeError('a path switch needs at least one path');
    this.#paths = [...paths];
    for (const p of this.#paths) p.onDatagram((d) => this.#deliver(d));
  }

  /** Every path, most preferred first. */
  get paths(): readonly MediaTransport[] {
    return this.#paths;
  }

  /**
   * Add a path, preferred to all the others (a 1:1 call's direct path, made once the call is
   * answered, after its media started on the relay). Ignored once closed.
   */
  prepend(path: MediaTransport): void {
    if (this.#closed || this.#paths.includes(path)) return;
    this.#paths = [path, ...this.#paths];
    path.onDatagram((d) => this.#deliver(d));
  }

  /** The path sends go on now (undefined when none is open). */
  get active(): MediaTransport | undefined {
    if (this.#closed) return undefined;
    const active = this.#paths.find((p) => p.state === 'open');
    if (active !== this.#lastActive) {
      const from = this.#lastActive;
      this.#lastActive = active;
      this.#onSwitch?.(from, active);
    }
    return active;
  }

  /** Told when sends move to another path (checked at each send and when asked). */
  onSwitch(listener: (from: MediaTransport | undefined, to: MediaTransport | undefined) => void): void {
    this.#onSwitch = listener;
  }

  get kind(): MediaTransportKind {
    return (this.active ?? this.#paths[this.#paths.length - 1]).kind;
  }

  get label(): string {
    return (this.active ?? this.#paths[this.#paths.length - 1]).label;
  }

  get state(): MediaTransportState {
    if (this.#closed) return 'closed';
    if (this.#paths.some((p) => p.state === 'open')) return 'open';
    return this.#paths.every((p) => p.state === 'closed') ? 'closed' : 'connecting';
  }

  maxPayload(): number {
    return this.active?.maxPayload() ?? 0;
  }

  send(payload: Uint8Array): boolean {
    if (this.#closed) {
      this.#closedStats.droppedClosed++;
      return false;
    }
    // No path open: the least preferred one still says why it drops the datagram (counted there).
    return (this.active ?? this.#paths[this.#paths.length - 1]).send(payload);
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#handler = handler;
  }

  #deliver(d: Uint8Array): void {
    if (this.#closed) return;
    this.#handler(d); // the path catches what a handler throws
  }

  lastReceivedAt(): number | undefined {
    let last: number | undefined;
    for (const p of this.#paths) {
      const at = p.lastReceivedAt();
      if (at !== undefined && (last === undefined || at > last)) last = at;
    }
    return last;
  }

  rttMs(): number | undefined {
    return this.active?.rttMs();
  }

  /** All paths' counters together (each path's own: `paths[i].stats()`). */
  stats(): MediaTransportStats {
    const total = { ...this.#closedStats };
    for (const p of this.#paths) {
      const s = p.stats();
      for (const k of Object.keys(total) as (keyof MediaTransportStats)[]) total[k] += s[k];
    }
    return total;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = () => undefined;
    for (const p of this.#paths) p.close();
  }
}

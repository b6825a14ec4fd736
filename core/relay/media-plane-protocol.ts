/**
 * What the relay's main thread and its media plane thread (./media-plane.ts,
 * ./media-plane-worker.ts) say to each other. Kept apart so the thread loads nothing else.
 */
import type { MessagePort } from 'node:worker_threads';

/** A member's media caps, as the main thread's buckets (core/relay/limits.ts). */
export interface PlaneLimits {
  packetsPerSecond: number;
  bytesPerSecond: number;
}

export interface PlaneWorkerData {
  /** The steered socket (core/net/udp-steering.ts). */
  fd: number;
  /** Float64Array over it: the thread's counters, indexed by PLANE_COUNTERS. */
  counters: SharedArrayBuffer;
  /** Int32Array over it: [0] stop (non-zero: stop), [1] message generation (bumped per message sent), [2] packets handed to the main thread and not yet handled. */
  control: SharedArrayBuffer;
  /** Where route and limit messages come. */
  port: MessagePort;
  limits: PlaneLimits;
}

/** Main thread -> plane thread. */
export type PlaneMessage =
  | {
      t: 'route';
      /** The token's first 30 bits (core/transport/udp-media.ts tokenKey). */
      key: number;
      token: Uint8Array;
      /** The member's QUIC address as a sockaddr: its packets must come from it, copies go to it. */
      addr: Uint8Array;
      /** The room's number (0: in no room the plane forwards). */
      room: number;
      sourceId: number;
      /** Whether the plane forwards this member's media (else it hands it to the main thread). */
      fast: boolean;
    }
  | { t: 'unroute'; key: number }
  | { t: 'limits'; limits: PlaneLimits };

/** Plane thread -> main thread. */
export type PlaneReport =
  /** A media packet for the main thread's path (core/transport/udp-media.ts RelayMediaPath.handle). */
  | {
      t: 'slow';
      data: ArrayBuffer;
      address: string;
      port: number;
      /** The route is the plane's but the packet came from another address (the member's may have moved: the main thread replans). */
      moved: boolean;
    }
  /** Forwarding times of sampled packets, ms (for the relay's latency histogram). */
  | { t: 'latency'; ms: number[] }
  | { t: 'stopped' }
  | { t: 'failed'; message: string };

/** Slots of the shared counter array. */
export const PLANE_COUNTERS = {
  /** Media packets forwarded from (accepted), and their datagram bytes. */
  received: 0,
  bytesReceived: 1,
  /** Copies sent to members, and their bytes (source id + datagram). */
  forwarded: 2,
  bytesForwarded: 3,
  /** Copies the kernel did not take. */
  sendDropped: 4,
  /** Packets with no live token, or a bad length. */
  rejected: 5,
  /** Packets over the member's media caps. */
  mediaRate: 6,
  /** Packets handed to the main thread. */
  handedOver: 7,
  /** recvmmsg calls that returned packets. */
  batches: 8,
} as const;
export const PLANE_COUNTER_SLOTS = 9;
/**
 * Packets handed to the main thread and not yet handled, at most: past it the plane drops
 * (counted as rejected) instead of queueing messages without bound, e.g. under a flood with a
 * real token from a forged address.
 */
export const MAX_HANDED_OVER_IN_FLIGHT = 1024;

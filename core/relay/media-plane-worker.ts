/**
 * The relay's media plane thread (./media-plane.ts starts it): forwards the UDP media path's
 * media packets (first byte 0x24) of rooms whose members all receive on the path, in batches
 * of up to BATCH packets per recvmmsg and one sendmmsg per batch, with no event loop.
 *
 * Per packet, in place in the receive buffer: length and truncation checked, the route found
 * by the token's first 30 bits and the whole token compared, the source address compared with
 * the member's QUIC address, the member's packet and byte buckets, then the packet is rewritten
 * as it goes out (`0x24 | source id | datagram`, over the token's last 4 bytes) and one send is
 * queued per other member of the room, all pointing at the same bytes. What this thread does
 * not decide is handed to the main thread as it came (`slow`): a route whose room is not
 * forwarded here (a QUIC-only member, a global room, the debug tap, echo), and a packet from
 * another address than the member's (the main thread knows whether it migrated). Packets with
 * no live token or a bad length are dropped and counted here.
 *
 * The main thread owns every decision about rooms and routes and sends them as messages; this
 * thread reads them (receiveMessageOnPort) between batches when the shared generation counter
 * says there are some, and at least every RECV_TIMEOUT_MS (the socket's receive timeout).
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { TokenBucket } from '../net/rate-limit.js';
import { decodeSockaddr, IOVEC_BYTES, loadLibc, MMSGHDR_BYTES, MSG_DONTWAIT, MSG_TRUNC, MSG_WAITFORONE, SOCKADDR_BYTES } from '../net/udp-steering.js';
import { MAX_MEDIA_TO_RELAY_DATAGRAM, MEDIA_PATH_MEDIA, MEDIA_TO_RELAY_HEADER_BYTES, MEDIA_TOKEN_BYTES, OFFSET_MEDIA_PATH_TOKEN } from '../wire/media-path.js';
import { MAX_HANDED_OVER_IN_FLIGHT, PLANE_COUNTERS, type PlaneMessage, type PlaneReport, type PlaneWorkerData } from './media-plane-protocol.js';

/** Packets read per recvmmsg. */
const BATCH = 64;
/** Receive slot: larger than any packet the path accepts, so a longer one shows as truncated. */
const SLOT = 2048;
/** Copies queued per sendmmsg (a batch with more is sent in several calls). */
const SEND_VEC = 1024;
/** Routes whose addresses live in native memory at once (more are handed to the main thread). */
const MAX_ROUTES = 8192;
/** One room datagram in this many has its forwarding time measured (as the main thread's path). */
const SAMPLE_EVERY = 8;
/** Latency samples held between reports (more in a second are not kept). */
const MAX_SAMPLES = 4096;
const REPORT_EVERY_MS = 1000;
/**
 * Receive coalescing, as a NIC's interrupt moderation: when packets come this close together
 * (the last batch ended less than BUSY_GAP_MS before this one began), the thread waits
 * COALESCE_MS after a batch that did not fill the vector before it reads again, so one wake-up
 * takes the packets that came meanwhile instead of each packet waking the thread. A call or
 * two (packets 10-20 ms apart) never waits; a busy relay adds at most COALESCE_MS to a packet.
 * Measured (25 1:1 calls at 50 packets/s, all members on the path): 1.7 packets per receive
 * without it (each costing a wake-up, the thread's largest cost), see docs/transport.md.
 */
const BUSY_GAP_MS = 1;
const COALESCE_MS = 0.25;
const EAGAIN = 11;
const EINTR = 4;

interface Route {
  key: number;
  token: Uint8Array;
  /** Index of the route's sockaddr slot in native memory (-1: none free; the route is not fast). */
  slot: number;
  addrLen: number;
  /** The route's address as compared with a packet's source (the sockaddr's bytes). */
  addr: Uint8Array;
  room: number;
  sourceId: number;
  fast: boolean;
  packets: TokenBucket;
  bytes: TokenBucket;
}

const data = workerData as PlaneWorkerData;
const libc = loadLibc();
const { koffi } = libc;
const counters = new Float64Array(data.counters);
const control = new Int32Array(data.control);
const port = data.port as MessagePort;

/** A block of native memory, its address as a Number (exact: user addresses are < 2^53) and views. */
function block(bytes: number): { ptr: unknown; at: number; u8: Uint8Array; dv: DataView } {
  const ptr = koffi.alloc('uint8_t', bytes);
  const u8 = new Uint8Array(koffi.view(ptr, bytes));
  u8.fill(0);
  return { ptr, at: Number(koffi.address(ptr)), u8, dv: new DataView(u8.buffer) };
}

/** Write a 64-bit pointer without BigInt. */
function setPtr(dv: DataView, offset: number, address: number): void {
  dv.setUint32(offset, address % 0x1_0000_0000, true);
  dv.setUint32(offset + 4, Math.floor(address / 0x1_0000_0000), true);
}

const rvec = block(BATCH * MMSGHDR_BYTES);
const riov = block(BATCH * IOVEC_BYTES);
const rname = block(BATCH * SOCKADDR_BYTES);
const rdata = block(BATCH * SLOT);
const svec = block(SEND_VEC * MMSGHDR_BYTES);
const siov = block(BATCH * IOVEC_BYTES);
const addrs = block(MAX_ROUTES * SOCKADDR_BYTES);
for (let i = 0; i < BATCH; i++) {
  setPtr(rvec.dv, i * MMSGHDR_BYTES, rname.at + i * SOCKADDR_BYTES);
  rvec.dv.setUint32(i * MMSGHDR_BYTES + 8, SOCKADDR_BYTES, true);
  setPtr(rvec.dv, i * MMSGHDR_BYTES + 16, riov.at + i * IOVEC_BYTES);
  rvec.dv.setUint32(i * MMSGHDR_BYTES + 24, 1, true);
  setPtr(riov.dv, i * IOVEC_BYTES, rdata.at + i * SLOT);
  riov.dv.setUint32(i * IOVEC_BYTES + 8, SLOT, true);
}

const routes = new Map<number, Route>();
/** The fast routes of each room (room number -> members), for the fan-out. */
const rooms = new Map<number, Route[]>();
const freeSlots: number[] = [];
for (let i = MAX_ROUTES - 1; i >= 0; i--) freeSlots.push(i);
let limits = data.limits;
let generation = 0;

function tokenKey(buf: Uint8Array, at: number): number {
  return (buf[at] << 22) | (buf[at + 1] << 14) | (buf[at + 2] << 6) | (buf[at + 3] >>> 2);
}

function roomAdd(r: Route): void {
  if (!r.fast || r.room === 0) return;
  const members = rooms.get(r.room);
  if (members) members.push(r);
  else rooms.set(r.room, [r]);
}

function roomRemove(r: Route): void {
  const members = rooms.get(r.room);
  if (!members) return;
  const i = members.indexOf(r);
  if (i >= 0) members.splice(i, 1);
  if (members.length === 0) rooms.delete(r.room);
}

function dropRoute(key: number): void {
  const r = routes.get(key);
  if (!r) return;
  roomRemove(r);
  routes.delete(key);
  if (r.slot >= 0) freeSlots.push(r.slot);
}

function apply(msg: PlaneMessage): void {
  switch (msg.t) {
    case 'route': {
      const old = routes.get(msg.key);
      // Out of native address slots, the route is known but not fast: the main thread forwards it.
      const slot = old?.slot ?? freeSlots.pop() ?? -1;
      if (old) roomRemove(old);
      const now = performance.now();
      const r: Route = old ?? {
        key: msg.key,
        token: msg.token,
        slot,
        addrLen: 0,
        addr: new Uint8Array(0),
        room: 0,
        sourceId: 0,
        fast: false,
        packets: new TokenBucket(limits.packetsPerSecond, limits.packetsPerSecond, now),
        bytes: new TokenBucket(limits.bytesPerSecond, limits.bytesPerSecond, now),
      };
      r.token = msg.token;
      r.addr = msg.addr;
      r.addrLen = msg.addr.byteLength;
      if (slot >= 0) {
        addrs.u8.fill(0, slot * SOCKADDR_BYTES, (slot + 1) * SOCKADDR_BYTES);
        addrs.u8.set(msg.addr, slot * SOCKADDR_BYTES);
      }
      r.room = msg.room;
      r.sourceId = msg.sourceId;
      r.fast = msg.fast && slot >= 0 && r.addrLen > 0;
      routes.set(msg.key, r);
      roomAdd(r);
      return;
    }
    case 'unroute':
      dropRoute(msg.key);
      return;
    case 'limits':
      limits = msg.limits;
      for (const r of routes.values()) {
        r.packets.reconfigure(limits.packetsPerSecond, limits.packetsPerSecond);
        r.bytes.reconfigure(limits.bytesPerSecond, limits.bytesPerSecond);
      }
      return;
  }
}

/** Also read the port this often whatever the generation says (a message posted just after it was read). */
const DRAIN_EVERY_MS = 100;
let lastDrain = 0;

function drainMessages(now: number): void {
  const g = Atomics.load(control, 1);
  if (g === generation && now - lastDrain < DRAIN_EVERY_MS) return;
  generation = g;
  lastDrain = now;
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) apply(m.message as PlaneMessage);
}

// Counters live in locals and are copied to the shared array once per batch.
let received = 0;
let bytesReceived = 0;
let forwarded = 0;
let bytesForwarded = 0;
let sendDropped = 0;
let rejected = 0;
let mediaRate = 0;
let handedOver = 0;
let batches = 0;
function publish(): void {
  counters[PLANE_COUNTERS.received] = received;
  counters[PLANE_COUNTERS.bytesReceived] = bytesReceived;
  counters[PLANE_COUNTERS.forwarded] = forwarded;
  counters[PLANE_COUNTERS.bytesForwarded] = bytesForwarded;
  counters[PLANE_COUNTERS.sendDropped] = sendDropped;
  counters[PLANE_COUNTERS.rejected] = rejected;
  counters[PLANE_COUNTERS.mediaRate] = mediaRate;
  counters[PLANE_COUNTERS.handedOver] = handedOver;
  counters[PLANE_COUNTERS.batches] = batches;
}

let samples: number[] = [];
let sampleCounter = 0;
let lastReport = performance.now();

function sameSource(r: Route, i: number): boolean {
  const at = i * SOCKADDR_BYTES;
  const nameLen = rvec.dv.getUint32(i * MMSGHDR_BYTES + 8, true);
  if (nameLen !== r.addrLen) return false;
  const a = r.addr;
  const u8 = rname.u8;
  // Family and port (bytes 0-3), then the address: 4-7 (IPv4) or 8-23 (IPv6).
  let diff = (u8[at] ^ a[0]) | (u8[at + 1] ^ a[1]) | (u8[at + 2] ^ a[2]) | (u8[at + 3] ^ a[3]);
  if (r.addrLen === 16) for (let k = 4; k < 8; k++) diff |= u8[at + k] ^ a[k];
  else for (let k = 8; k < 24; k++) diff |= u8[at + k] ^ a[k];
  return diff === 0;
}

/** Give packet `i` to the main thread as it came; `moved`: a fast route's packet from another address. */
function handOver(i: number, len: number, moved: boolean): void {
  if (Atomics.load(control, 2) >= MAX_HANDED_OVER_IN_FLIGHT) {
    // The main thread is that far behind: drop rather than queue without bound.
    rejected++;
    return;
  }
  handedOver++;
  const from = decodeSockaddr(libc, rname.u8.subarray(i * SOCKADDR_BYTES, (i + 1) * SOCKADDR_BYTES));
  if (!from) {
    rejected++;
    return;
  }
  const copy = rdata.u8.slice(i * SLOT, i * SLOT + len);
  const report: PlaneReport = { t: 'slow', data: copy.buffer, address: from.address, port: from.port, moved };
  Atomics.add(control, 2, 1);
  parentPort?.postMessage(report, [copy.buffer]);
}

function loop(): void {
  const fd = data.fd;
  let lastBatchEnd = -Infinity;
  let busy = false;
  for (;;) {
    if (Atomics.load(control, 0) !== 0) return;
    // Woken by the stop flag's notify too (MediaPlane.close).
    if (busy) Atomics.wait(control, 0, 0, COALESCE_MS);
    drainMessages(performance.now());
    const n = libc.recvmmsg(fd, rvec.ptr, BATCH, MSG_WAITFORONE, null);
    const t0 = performance.now();
    busy = n > 0 && n < BATCH && t0 - lastBatchEnd < BUSY_GAP_MS;
    // Routes the main thread sent while this thread waited apply to what just came in.
    drainMessages(t0);
    if (n < 0) {
      const errno = koffi.errno();
      if (errno !== EAGAIN && errno !== EINTR) throw new Error(`recvmmsg failed (errno ${errno})`);
    }
    if (n > 0) {
      batches++;
      let queued = 0;
      let sampled = 0;
      for (let i = 0; i < n; i++) {
        const h = i * MMSGHDR_BYTES;
        const len = rvec.dv.getUint32(h + 56, true);
        const flags = rvec.dv.getInt32(h + 48, true);
        const at = i * SLOT;
        const u8 = rdata.u8;
        if ((flags & MSG_TRUNC) !== 0 || len <= MEDIA_TO_RELAY_HEADER_BYTES || len > MEDIA_TO_RELAY_HEADER_BYTES + MAX_MEDIA_TO_RELAY_DATAGRAM || u8[at] !== MEDIA_PATH_MEDIA) {
          rejected++;
          continue;
        }
        const r = routes.get(tokenKey(u8, at + OFFSET_MEDIA_PATH_TOKEN));
        let diff = r === undefined ? 1 : 0;
        if (r !== undefined) for (let k = 0; k < MEDIA_TOKEN_BYTES; k++) diff |= u8[at + OFFSET_MEDIA_PATH_TOKEN + k] ^ r.token[k];
        if (r === undefined || diff !== 0) {
          rejected++;
          continue;
        }
        if (!r.fast || !sameSource(r, i)) {
          // The main thread decides: a migrated member, or a room it forwards itself.
          handOver(i, len, r.fast);
          continue;
        }
        const datagramBytes = len - MEDIA_TO_RELAY_HEADER_BYTES;
        if (!r.packets.take(t0) || !r.bytes.take(t0, datagramBytes)) {
          mediaRate++;
          continue;
        }
        received++;
        bytesReceived += datagramBytes;
        const members = rooms.get(r.room);
        if (members === undefined || members.length < 2) continue;
        // Out: 0x24 | source id (u32) | datagram, written over the token's last 4 bytes.
        const out = at + MEDIA_TO_RELAY_HEADER_BYTES - 5;
        u8[out] = MEDIA_PATH_MEDIA;
        const sid = r.sourceId;
        u8[out + 1] = sid >>> 24;
        u8[out + 2] = (sid >>> 16) & 0xff;
        u8[out + 3] = (sid >>> 8) & 0xff;
        u8[out + 4] = sid & 0xff;
        const outLen = len - (MEDIA_TO_RELAY_HEADER_BYTES - 5);
        setPtr(siov.dv, i * IOVEC_BYTES, rdata.at + out);
        siov.dv.setUint32(i * IOVEC_BYTES + 8, outLen, true);
        siov.dv.setUint32(i * IOVEC_BYTES + 12, 0, true);
        for (let k = 0; k < members.length; k++) {
          const m = members[k];
          if (m === r) continue;
          if (queued === SEND_VEC) queued = flush(fd, queued);
          const s = queued * MMSGHDR_BYTES;
          setPtr(svec.dv, s, addrs.at + m.slot * SOCKADDR_BYTES);
          svec.dv.setUint32(s + 8, m.addrLen, true);
          setPtr(svec.dv, s + 16, siov.at + i * IOVEC_BYTES);
          svec.dv.setUint32(s + 24, 1, true); // msg_iovlen (the entry may have been moved over by a partial send)
          queued++;
          forwarded++;
          bytesForwarded += outLen - 1;
        }
        if ((++sampleCounter & (SAMPLE_EVERY - 1)) === 0) sampled++;
      }
      // Counted before the sends, so a receiver that got a packet sees it counted.
      publish();
      if (queued > 0) flush(fd, queued);
      if (sampled > 0 && samples.length < MAX_SAMPLES) {
        const ms = performance.now() - t0;
        for (let k = 0; k < sampled; k++) samples.push(ms);
      }
      // Every receive slot's name length back to its size for the next recvmmsg.
      for (let i = 0; i < n; i++) rvec.dv.setUint32(i * MMSGHDR_BYTES + 8, SOCKADDR_BYTES, true);
      lastBatchEnd = performance.now();
    }
    if (t0 - lastReport >= REPORT_EVERY_MS) {
      lastReport = t0;
      publish();
      if (samples.length > 0) {
        const report: PlaneReport = { t: 'latency', ms: samples };
        parentPort?.postMessage(report);
        samples = [];
      }
    }
  }
}

/** Send `queued` copies; what the kernel does not take now is dropped and counted. Returns 0. */
function flush(fd: number, queued: number): number {
  let left = queued;
  while (left > 0) {
    const sent = libc.sendmmsg(fd, svec.ptr, left, MSG_DONTWAIT);
    let skip = sent;
    if (sent < 0) {
      // The first entry failed: the send buffer is full (then so is it for the rest: all
      // dropped, as the main thread drops over its send queue) or its address was refused.
      skip = koffi.errno() === EAGAIN ? left : 1;
      sendDropped += skip;
      forwarded -= skip;
    }
    left -= skip;
    if (left > 0) svec.u8.copyWithin(0, skip * MMSGHDR_BYTES, (skip + left) * MMSGHDR_BYTES);
  }
  return 0;
}

try {
  loop();
  publish();
  const done: PlaneReport = { t: 'stopped' };
  parentPort?.postMessage(done);
} catch (err) {
  publish();
  const failed: PlaneReport = { t: 'failed', message: err instanceof Error ? err.message : String(err) };
  parentPort?.postMessage(failed);
}

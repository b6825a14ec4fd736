/**
 * Steering one class of a UDP port's packets to a socket of its own (Linux), and the few libc
 * calls a thread needs to serve that socket in batches.
 *
 * Why: the relay's media packets on the UDP media path are most of what it receives, and
 * through Node's `dgram` each costs a libuv wake-up, an `rinfo` object, a Buffer, a send
 * request and a syscall each way, on the same event loop as every QUIC connection's timers
 * (docs/transport.md, "Where the extra 15 µs go"). Node 20's `dgram` can neither share a port
 * with another socket (`reusePort` came in Node 22.12) nor read or write several packets per
 * syscall, and no maintained package does either, so this file calls libc through koffi (a
 * dependency already) instead of compiling an addon.
 *
 * How: the port's existing `dgram` socket joins an SO_REUSEPORT group with a second socket
 * bound to the same address, and a classic BPF program attached to the group
 * (SO_ATTACH_REUSEPORT_CBPF) picks the socket by the packet's first byte: `firstByte` goes to
 * the second socket, everything else (QUIC, STUN, the path's probes) to the `dgram` socket as
 * before. Both send from the same address and port, so a NAT in front of a client sees one
 * 5-tuple. Setting SO_REUSEPORT on a socket that is already bound is allowed, and the kernel
 * makes the group when the second socket binds (net/core/sock_reuseport.c); the first socket
 * is index 0 of the group, the second index 1, which is what the program returns.
 *
 * If the second socket closes, the group is the `dgram` socket alone and the program's index 1
 * is out of range, which the kernel answers by its hash over the group: every packet goes to
 * the `dgram` socket again.
 */
import type { Socket as UdpSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { createRequire } from 'node:module';
import { InternalError } from '../errors.js';

type Koffi = typeof import('koffi');

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEPORT = 15;
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;
const SO_SNDBUF = 7;
const SO_ATTACH_REUSEPORT_CBPF = 51;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
/** recvmmsg: return once at least one packet is in (then whatever else is queued). */
export const MSG_WAITFORONE = 0x10000;
/** sendmmsg: never block on a full send buffer (the rest of the batch is dropped and counted). */
export const MSG_DONTWAIT = 0x40;
/** A datagram larger than the buffer given (msg_flags). */
export const MSG_TRUNC = 0x20;
/** sizeof(struct sockaddr_in6): room for either family's address. */
export const SOCKADDR_BYTES = 28;
/** sizeof(struct mmsghdr) on 64-bit Linux: struct msghdr (56) + msg_len (4) + padding. */
export const MMSGHDR_BYTES = 64;
/** sizeof(struct iovec) on 64-bit Linux. */
export const IOVEC_BYTES = 16;

/** The libc functions used here, bound once per thread. */
export interface Libc {
  koffi: Koffi;
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, length: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, length: [number]): number;
  bind(fd: number, addr: Uint8Array, length: number): number;
  close(fd: number): number;
  recvmmsg(fd: number, vec: unknown, vlen: number, flags: number, timeout: null): number;
  sendmmsg(fd: number, vec: unknown, vlen: number, flags: number): number;
  inetPton(af: number, src: string, dst: Buffer): number;
  inetNtop(af: number, src: Buffer, dst: Buffer, size: number): string | null;
}

let libc: Libc | undefined;

/** libc through koffi, or an error saying why not (not Linux, no koffi, no glibc). */
export function loadLibc(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux' || process.arch !== 'x64' && process.arch !== 'arm64') {
    throw new InternalError(`packet steering needs 64-bit Linux (this is ${process.platform}/${process.arch})`);
  }
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  const fn = <T>(decl: string): T => lib.func(decl) as unknown as T;
  libc = {
    koffi,
    socket: fn('int socket(int domain, int type, int protocol)'),
    setsockopt: fn('int setsockopt(int fd, int level, int name, const void *value, uint32_t length)'),
    getsockopt: fn('int getsockopt(int fd, int level, int name, void *value, _Inout_ uint32_t *length)'),
    bind: fn('int bind(int fd, const void *addr, uint32_t length)'),
    close: fn('int close(int fd)'),
    recvmmsg: fn('int recvmmsg(int fd, void *vec, unsigned int vlen, int flags, void *timeout)'),
    sendmmsg: fn('int sendmmsg(int fd, void *vec, unsigned int vlen, int flags)'),
    inetPton: fn('int inet_pton(int af, const char *src, void *dst)'),
    inetNtop: fn('const char *inet_ntop(int af, const void *src, void *dst, uint32_t size)'),
  };
  return libc;
}

function check(what: string, rc: number, c: Libc): void {
  if (rc < 0) throw new InternalError(`${what} failed (errno ${c.koffi.errno()})`);
}

function setInt(c: Libc, fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  check(what, c.setsockopt(fd, level, name, v, 4), c);
}

function getInt(c: Libc, fd: number, level: number, name: number, what: string): number {
  const v = Buffer.alloc(4);
  check(what, c.getsockopt(fd, level, name, v, [4]), c);
  return v.readInt32LE();
}

/** The file descriptor under a bound node:dgram socket (Node 20 keeps it on its internal handle). */
export function dgramFd(udp: UdpSocket): number {
  const state = Object.getOwnPropertySymbols(udp).find((s) => s.description === 'state symbol');
  const fd = state === undefined ? undefined : (udp as unknown as Record<symbol, { handle?: { fd?: number } }>)[state]?.handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new InternalError('no file descriptor on this dgram socket (not bound, or another Node version)');
  return fd;
}

/** The address family of a bound dgram socket. */
function familyOf(udp: UdpSocket): 4 | 6 {
  return udp.address().family === 'IPv6' ? 6 : 4;
}

/**
 * `struct sockaddr_in` / `sockaddr_in6` for host:port on a socket of `family` (an IPv4 host on
 * an IPv6 socket becomes its v4-mapped address, as the kernel reports such peers); undefined if
 * the host is not an address of that family.
 */
export function encodeSockaddr(c: Libc, family: 4 | 6, host: string, port: number): Uint8Array | undefined {
  const out = new Uint8Array(SOCKADDR_BYTES);
  const view = new DataView(out.buffer);
  const raw = Buffer.alloc(16);
  if (family === 4) {
    if (!isIPv4(host) || c.inetPton(AF_INET, host, raw) !== 1) return undefined;
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, port, false);
    out.set(raw.subarray(0, 4), 4);
    return out.slice(0, 16);
  }
  const text = isIPv4(host) ? `::ffff:${host}` : host.split('%')[0];
  if (c.inetPton(AF_INET6, text, raw) !== 1) return undefined;
  view.setUint16(0, AF_INET6, true);
  view.setUint16(2, port, false);
  out.set(raw, 8);
  return out;
}

/** The host text of a sockaddr as node:dgram writes it in `rinfo.address`, and its port. */
export function decodeSockaddr(c: Libc, addr: Uint8Array): { address: string; port: number } | undefined {
  const view = new DataView(addr.buffer, addr.byteOffset, addr.byteLength);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  const scratch = Buffer.alloc(64);
  const text =
    family === AF_INET ? c.inetNtop(AF_INET, Buffer.from(addr.subarray(4, 8)), scratch, scratch.length) : family === AF_INET6 ? c.inetNtop(AF_INET6, Buffer.from(addr.subarray(8, 24)), scratch, scratch.length) : null;
  return text === null ? undefined : { address: text, port };
}

/**
 * The classic BPF program for the group: packets whose first UDP payload byte is `firstByte`
 * to socket 1, the rest to socket 0. (For SO_ATTACH_REUSEPORT_CBPF the kernel runs it with the
 * UDP header pulled, so absolute offset 0 is the payload's first byte; an empty payload fails
 * the load and the program returns 0.)
 */
export function steeringProgram(firstByte: number): Uint8Array {
  const BPF_LD_B_ABS = 0x30;
  const BPF_JMP_JEQ_K = 0x15;
  const BPF_RET_K = 0x06;
  const insns: [number, number, number, number][] = [
    [BPF_LD_B_ABS, 0, 0, 0],
    [BPF_JMP_JEQ_K, 0, 1, firstByte],
    [BPF_RET_K, 0, 0, 1],
    [BPF_RET_K, 0, 0, 0],
  ];
  const out = new Uint8Array(insns.length * 8);
  const view = new DataView(out.buffer);
  insns.forEach(([code, jt, jf, k], i) => {
    view.setUint16(i * 8, code, true);
    out[i * 8 + 2] = jt;
    out[i * 8 + 3] = jf;
    view.setUint32(i * 8 + 4, k, true);
  });
  return out;
}

export interface SteeredSocket {
  /** The new socket: packets whose first byte is `firstByte` arrive here, not on the dgram socket. */
  fd: number;
  family: 4 | 6;
  /** Close the new socket: every packet goes to the dgram socket again. Idempotent. */
  close(): void;
}

/**
 * Give `udp` (bound) a sibling socket on the same address that receives the packets whose
 * first byte is `firstByte`. The sibling is blocking with a receive timeout of `recvTimeoutMs`
 * (a thread that serves it wakes that often to look at its messages); its buffers are as large
 * as the dgram socket's. Throws (with nothing changed but SO_REUSEPORT on `udp`) if any step
 * fails.
 */
export function steerFirstByte(udp: UdpSocket, firstByte: number, recvTimeoutMs: number): SteeredSocket {
  const c = loadLibc();
  const fd0 = dgramFd(udp);
  const family = familyOf(udp);
  const local = udp.address();
  const addr = encodeSockaddr(c, family, local.address, local.port);
  if (!addr) throw new InternalError(`cannot encode the socket's address ${local.address}`);
  setInt(c, fd0, SOL_SOCKET, SO_REUSEPORT, 1, 'SO_REUSEPORT on the relay socket');
  const fd = c.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  check('socket()', fd, c);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    c.close(fd);
  };
  try {
    setInt(c, fd, SOL_SOCKET, SO_REUSEPORT, 1, 'SO_REUSEPORT');
    if (family === 6) setInt(c, fd, IPPROTO_IPV6, IPV6_V6ONLY, getInt(c, fd0, IPPROTO_IPV6, IPV6_V6ONLY, 'IPV6_V6ONLY of the relay socket'), 'IPV6_V6ONLY');
    // The kernel reports twice what was set: set half of what the dgram socket has.
    setInt(c, fd, SOL_SOCKET, SO_RCVBUF, getInt(c, fd0, SOL_SOCKET, SO_RCVBUF, 'SO_RCVBUF') >> 1, 'SO_RCVBUF');
    setInt(c, fd, SOL_SOCKET, SO_SNDBUF, getInt(c, fd0, SOL_SOCKET, SO_SNDBUF, 'SO_SNDBUF') >> 1, 'SO_SNDBUF');
    const tv = new Uint8Array(16);
    const tvView = new DataView(tv.buffer);
    tvView.setBigInt64(0, BigInt(Math.floor(recvTimeoutMs / 1000)), true);
    tvView.setBigInt64(8, BigInt((recvTimeoutMs % 1000) * 1000), true);
    check('SO_RCVTIMEO', c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16), c);
    check(`bind() to ${local.address}:${local.port}`, c.bind(fd, addr, addr.byteLength), c);
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; }: the program in
    // native memory, which the kernel copies at attach.
    const program = steeringProgram(firstByte);
    const native = c.koffi.alloc('uint8_t', program.length);
    try {
      new Uint8Array(c.koffi.view(native, program.length)).set(program);
      const fprog = new Uint8Array(16);
      const fv = new DataView(fprog.buffer);
      fv.setUint16(0, program.length / 8, true);
      fv.setBigUint64(8, BigInt(c.koffi.address(native)), true);
      check('SO_ATTACH_REUSEPORT_CBPF', c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog, 16), c);
    } finally {
      c.koffi.free(native);
    }
  } catch (err) {
    close();
    throw err;
  }
  return { fd, family, close };
}

/**
 * Hostile datagrams for the relay: QUIC long headers of every version and type, truncated
 * anywhere, and the other packet kinds an attacker can send to a relay's port without a
 * connection. Used by the hostile tests and the `hostile` benchmark. Sent to loopback only.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';

/** QUIC versions worth throwing: Version Negotiation (0), v1, v2, a draft, a GREASE-pattern one. */
export const QUIC_VERSIONS = [0x0000_0000, 0x0000_0001, 0x6b33_43cf, 0xff00_001d, 0x1a2a_3a4a] as const;
/** v1 long-header packet types: Initial, 0-RTT, Handshake, Retry. */
export const LONG_TYPES = [0, 1, 2, 3] as const;
export const LONG_TYPE_NAMES = ['initial', '0-rtt', 'handshake', 'retry'] as const;

export interface LongHeaderSpec {
  version: number;
  type: number;
  dcid?: Uint8Array;
  scid?: Uint8Array;
  /** Initial only: the token (empty: a first Initial, which a server answers with a Retry). */
  token?: Uint8Array;
  /** Pad the datagram to this many bytes (at least the header). */
  size: number;
}

function varint(n: number): Buffer {
  if (n < 64) return Buffer.of(n);
  if (n < 16384) return Buffer.of(0x40 | (n >> 8), n & 0xff);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((0x80 << 24) | n);
  return b;
}

/**
 * A QUIC long-header datagram: first byte (form, fixed bit, type, 2-byte packet number),
 * version, DCID, SCID, the Initial's token, a length and random "protected" bytes. The
 * content is garbage to any server (no keys), which is the point: only the header matters to
 * the code under attack.
 */
export function longHeaderPacket(spec: LongHeaderSpec): Buffer {
  const dcid = spec.dcid ?? randomBytes(8);
  const scid = spec.scid ?? randomBytes(8);
  const first = 0xc0 | ((spec.type & 0x03) << 4) | 0x01;
  const parts: Buffer[] = [Buffer.of(first), Buffer.alloc(4), Buffer.of(dcid.length), Buffer.from(dcid), Buffer.of(scid.length), Buffer.from(scid)];
  parts[1].writeUInt32BE(spec.version >>> 0);
  if (spec.type === 0 && spec.version === 1) {
    const token = spec.token ?? new Uint8Array(0);
    parts.push(varint(token.length), Buffer.from(token));
  }
  const headerLength = parts.reduce((n, p) => n + p.length, 0);
  // The Length field, always in its 2-byte form, then the "packet number and payload".
  const rest = Math.min(16383, Math.max(4, spec.size - headerLength - 2));
  parts.push(Buffer.of(0x40 | (rest >> 8), rest & 0xff));
  parts.push(randomBytes(Math.max(0, spec.size - headerLength - 2)));
  return Buffer.concat(parts).subarray(0, Math.max(spec.size, headerLength));
}

/** The 55-byte 0-RTT packet for an unknown connection that crashed @matrixai/quic 2.0.9's server. */
export function zeroRttPacket(): Buffer {
  return longHeaderPacket({ version: 1, type: 1, dcid: randomBytes(20), scid: randomBytes(20), size: 55 });
}

/**
 * Every version x long-header type, each truncated at every length up to 64 bytes and at
 * lengths up to 1300 in steps, in full-size (1200-byte) form.
 */
export function* longHeaderMatrix(): Generator<{ version: number; type: number; length: number; packet: Buffer }> {
  const lengths = [...Array.from({ length: 64 }, (_, i) => i + 1), 100, 200, 400, 800, 1199, 1200, 1250, 1300];
  for (const version of QUIC_VERSIONS) {
    for (const type of LONG_TYPES) {
      const full = longHeaderPacket({ version, type, dcid: randomBytes(20), scid: randomBytes(20), size: 1300 });
      for (const length of lengths) yield { version, type, length, packet: full.subarray(0, length) };
    }
  }
}

/** A datagram kind an attacker can send without a connection, and how to make one. */
export interface PacketKind {
  name: string;
  make(): Buffer;
}

/** The kinds whose reply/request ratio the amplification test and the bench measure. */
export const UNVALIDATED_KINDS: readonly PacketKind[] = [
  { name: 'v1 Initial, 8 bytes', make: () => longHeaderPacket({ version: 1, type: 0, size: 8 }).subarray(0, 8) },
  { name: 'v1 Initial, 48 bytes', make: () => longHeaderPacket({ version: 1, type: 0, size: 48 }) },
  { name: 'v1 Initial, 1200 bytes, no token', make: () => longHeaderPacket({ version: 1, type: 0, dcid: randomBytes(16), size: 1200 }) },
  { name: 'v1 Initial, 1200 bytes, forged token', make: () => longHeaderPacket({ version: 1, type: 0, dcid: randomBytes(20), token: randomBytes(60), size: 1200 }) },
  { name: 'v1 0-RTT, 55 bytes', make: zeroRttPacket },
  { name: 'v1 0-RTT, 1200 bytes', make: () => longHeaderPacket({ version: 1, type: 1, dcid: randomBytes(20), size: 1200 }) },
  { name: 'v1 Handshake', make: () => longHeaderPacket({ version: 1, type: 2, dcid: randomBytes(20), size: 200 }) },
  { name: 'v1 Retry', make: () => longHeaderPacket({ version: 1, type: 3, dcid: randomBytes(20), size: 200 }) },
  { name: 'Version Negotiation', make: () => longHeaderPacket({ version: 0, type: 0, size: 100 }) },
  { name: 'unknown version, 100 bytes', make: () => longHeaderPacket({ version: 0x1a2a3a4a, type: 0, size: 100 }) },
  { name: 'unknown version, 1200 bytes', make: () => longHeaderPacket({ version: 0x1a2a3a4a, type: 0, size: 1200 }) },
  { name: 'short header, unknown connection', make: () => Buffer.concat([Buffer.of(0x41), randomBytes(60)]) },
  { name: 'media path probe, unknown token', make: () => Buffer.concat([Buffer.of(0x21), randomBytes(8)]) },
  { name: 'STUN binding request', make: stunBindingRequest },
  { name: 'random bytes, 64', make: () => randomBytes(64) },
];

/** An RFC 5389 Binding Request (20-byte header, no attributes). */
export function stunBindingRequest(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt16BE(0, 2);
  b.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(b, 8);
  return b;
}

/** A UDP socket on loopback that counts what comes back to it. */
export async function probeSocket(host = '127.0.0.1'): Promise<{ socket: Socket; received: () => { packets: number; bytes: number }; close(): Promise<void> }> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  let packets = 0;
  let bytes = 0;
  socket.on('message', (m) => {
    packets++;
    bytes += m.length;
  });
  await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
  return {
    socket,
    received: () => ({ packets, bytes }),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** Send datagrams to `port`, at most `perMs` per millisecond (bounded, paced, loopback). */
export async function sendAll(socket: Socket, port: number, host: string, packets: Iterable<Uint8Array>, perMs = 5): Promise<number> {
  let sent = 0;
  let batch = 0;
  for (const p of packets) {
    socket.send(p, port, host);
    sent++;
    if (++batch >= perMs) {
      batch = 0;
      await new Promise((r) => setImmediate(r));
    }
  }
  await new Promise((r) => setTimeout(r, 20));
  return sent;
}

/**
 * QUIC endpoints for wzp: a server (the relay) and clients, with datagrams enabled, sane
 * timeouts, relay pinning by certificate fingerprint, and error mapping to the WzpError
 * family. Built on @matrixai/quic (quiche); datagram support lives in ./datagrams.ts.
 */
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { QUICClient, QUICServer, QUICSocket, events as quicEvents } from '@matrixai/quic';
import type { QUICConnection } from '@matrixai/quic';
import { CryptoError } from '@matrixai/quic/native/types.js';
import Logger, { LogLevel } from '@matrixai/logger';
// Not from tls-cert.ts: that pulls in the X.509 library (~140 ms to load) only relays need.
import { fingerprintsEqual, sha256Fingerprint } from '../crypto/fingerprint.js';
import { AbortError, FingerprintMismatchError, HandshakeError, InternalError, NetworkError, UsageError, errorMessage } from '../errors.js';
import { attachDatagrams, directReceiveHandler, type DatagramChannel } from './datagrams.js';
import type { RawPath } from './udp-media.js';

export interface TlsMaterial {
  keyPem: string;
  certPem: string;
}

export interface HostPort {
  host: string;
  port: number;
}

/** Application protocol negotiated in TLS ALPN. */
export const WZP_ALPN = 'wzp/1';

/** Transport defaults. Idle timeout must be set: @matrixai/quic's default (0) never expires. */
export const QUIC_DEFAULTS = {
  maxIdleTimeoutMs: 15_000,
  /**
   * A relay's idle timeout (the connection's is the lower of the two ends'). Clients send a
   * keep-alive every keepAliveIntervalMs, and calls get back to a lost relay by themselves
   * (core/client/call.ts), so a relay gains nothing by waiting long for a silent client, and
   * the room sees a vanished member (crashed, unplugged) leave after this instead of 15 s.
   */
  relayMaxIdleTimeoutMs: 8_000,
  keepAliveIntervalMs: 3_000,
  connectTimeoutMs: 5_000,
  /** Datagram receive/send queue lengths handed to quiche. */
  datagramQueue: 1_024,
  /** UDP receive buffer; FACTS.md: the default overflows under load on 2 cores. */
  recvBufferBytes: 4 * 1024 * 1024,
} as const;

const quietLogger = (): Logger => new Logger('wzp-quic', LogLevel.SILENT);

/** Parse `host:port`, `[v6]:port`; a bare port means 127.0.0.1. */
export function parseHostPort(text: string, defaultHost = '127.0.0.1'): HostPort {
  const t = text.trim();
  let host: string;
  let portText: string;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(t);
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else if (/^\d+$/.test(t)) {
    host = defaultHost;
    portText = t;
  } else {
    const i = t.lastIndexOf(':');
    if (i <= 0 || t.indexOf(':') !== i) {
      throw new UsageError(`"${text}" is not HOST:PORT`, { suggestions: ['e.g. 127.0.0.1:4433 or [::1]:4433'] });
    }
    host = t.slice(0, i);
    portText = t.slice(i + 1);
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535 || portText === '') {
    throw new UsageError(`"${text}" has an invalid port`, { suggestions: ['ports are 0-65535'] });
  }
  return { host, port };
}

/** `host:port` with IPv6 in brackets; IPv4-mapped IPv6 shown as plain IPv4. */
export function formatHostPort(hp: HostPort): string {
  const host = unmapIPv4(hp.host);
  return host.includes(':') ? `[${host}]:${hp.port}` : `${host}:${hp.port}`;
}

export function unmapIPv4(host: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return m ? m[1] : host;
}

function serverCrypto() {
  const key = randomFillSync(new Uint8Array(32));
  return {
    key: key.buffer,
    ops: {
      async sign(k: ArrayBuffer, data: ArrayBuffer): Promise<ArrayBuffer> {
        const d = createHmac('sha256', Buffer.from(k)).update(Buffer.from(data)).digest();
        return d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength);
      },
      async verify(k: ArrayBuffer, data: ArrayBuffer, sig: ArrayBuffer): Promise<boolean> {
        const d = createHmac('sha256', Buffer.from(k)).update(Buffer.from(data)).digest();
        const s = Buffer.from(sig);
        return s.length === d.length && timingSafeEqual(d, s);
      },
    },
  };
}

const clientCrypto = {
  ops: {
    async randomBytes(data: ArrayBuffer): Promise<void> {
      randomFillSync(new Uint8Array(data));
    },
  },
};

function commonConfig() {
  return {
    maxIdleTimeout: QUIC_DEFAULTS.maxIdleTimeoutMs,
    keepAliveIntervalTime: QUIC_DEFAULTS.keepAliveIntervalMs,
    enableDgram: [true, QUIC_DEFAULTS.datagramQueue, QUIC_DEFAULTS.datagramQueue] as [boolean, number, number],
    applicationProtos: [WZP_ALPN],
  };
}

export interface SocketOptions {
  /**
   * Receives the UDP packets that are not QUIC (first byte with the fixed bit 0x40 clear:
   * STUN, whose first two bits are 0, and anything else). Without it they are dropped.
   * This is what lets one socket carry QUIC signalling, STUN reflection and hole punching.
   */
  onNonQuic?(data: Buffer, from: { address: string; port: number }): void;
}

/** The node:dgram socket inside a QUICSocket, for raw sends on the shared port (STUN, punching). */
export function rawUdpSocket(socket: QUICSocket): import('node:dgram').Socket {
  const udp = (socket as unknown as { socket?: import('node:dgram').Socket }).socket;
  if (!udp) throw new InternalError('QUICSocket has no UDP socket (not started?)');
  return udp;
}

/** Open a UDP socket that a server and clients can share (one port that accepts and dials). */
export async function openSocket(bind: HostPort, opts: SocketOptions = {}): Promise<QUICSocket> {
  const socket = new QUICSocket({ logger: quietLogger() });
  routeDirect(socket);
  if (opts.onNonQuic) splitNonQuic(socket, opts.onNonQuic);
  try {
    await socket.start({ host: bind.host, port: bind.port });
  } catch (err) {
    throw new NetworkError(`cannot bind UDP ${formatHostPort(bind)}: ${errorMessage(err)}`, {
      cause: err,
      suggestions: ['is another process using that port? pick another with --listen'],
    });
  }
  raiseRecvBuffer(socket);
  return socket;
}

/**
 * Route non-QUIC packets to `handler` before QUIC sees them. QUICSocket registers its
 * `handleSocketMessage` field as the dgram 'message' listener in start() and removes that
 * field's value in stop(), so replacing the field is enough before start(), and on a socket
 * that already started the listener is swapped too (checked against @matrixai/quic 2.0.9).
 */
function splitNonQuic(socket: QUICSocket, handler: NonNullable<SocketOptions['onNonQuic']>): void {
  const s = socket as unknown as {
    handleSocketMessage: (data: Buffer, rinfo: { address: string; port: number }) => Promise<void>;
    socket?: import('node:dgram').Socket;
  };
  const quic = s.handleSocketMessage;
  // Not async: a promise per media packet is measurable on a relay.
  const split = (data: Buffer, rinfo: { address: string; port: number }): Promise<void> => {
    if (data.length > 0 && (data[0] & 0x40) === 0) {
      try {
        handler(data, rinfo);
      } catch {
        // A handler bug must not break the socket; the handler counts its own errors.
      }
      return resolvedPromise;
    }
    return quic(data, rinfo);
  };
  const udp = s.socket;
  if (udp && udp.listeners('message').includes(quic)) {
    udp.off('message', quic);
    udp.on('message', split);
  }
  s.handleSocketMessage = split;
}
const resolvedPromise = Promise.resolve();

/**
 * Let established connections on this socket receive without the library's per-packet path
 * (see core/transport/datagrams.ts). QUICSocket registers its `handleSocketMessage` field as
 * the 'message' listener in start() and removes that field's value in stop(), so on a socket
 * that already started the listener is swapped too.
 */
function routeDirect(socket: QUICSocket): void {
  const s = socket as unknown as {
    handleSocketMessage: (data: Buffer, rinfo: { address: string; port: number }) => Promise<void>;
    socket?: import('node:dgram').Socket;
  };
  const library = s.handleSocketMessage;
  const routed = directReceiveHandler(() => s.socket, library);
  const udp = s.socket;
  if (udp && udp.listeners('message').includes(library)) {
    udp.off('message', library);
    udp.on('message', routed);
  }
  s.handleSocketMessage = routed;
}

function raiseRecvBuffer(socket: QUICSocket): void {
  const udp = (socket as unknown as { socket?: { setRecvBufferSize(n: number): void } }).socket;
  try {
    udp?.setRecvBufferSize(QUIC_DEFAULTS.recvBufferBytes);
  } catch {
    // The kernel may cap it (net.core.rmem_max); the default still works at low load.
  }
}

export interface QuicServerOptions {
  tls: TlsMaterial;
  /** Bind address (ignored when `socket` is given). */
  listen?: HostPort;
  socket?: QUICSocket;
  /** Non-QUIC packets on the server's own socket (not used with `socket`). */
  onNonQuic?: SocketOptions['onNonQuic'];
  onConnection(connection: QUICConnection, datagrams: DatagramChannel): void;
}

export interface RunningQuicServer {
  readonly address: HostPort;
  readonly socket: QUICSocket;
  stop(): Promise<void>;
}

export async function startQuicServer(opts: QuicServerOptions): Promise<RunningQuicServer> {
  const ownSocket = opts.socket === undefined;
  const socket =
    opts.socket ?? (await openSocket(opts.listen ?? { host: '127.0.0.1', port: 0 }, opts.onNonQuic ? { onNonQuic: opts.onNonQuic } : {}));
  const server = new QUICServer({
    crypto: serverCrypto(),
    config: {
      ...commonConfig(),
      maxIdleTimeout: QUIC_DEFAULTS.relayMaxIdleTimeoutMs,
      key: opts.tls.keyPem,
      cert: opts.tls.certPem,
      verifyPeer: false,
    },
    socket,
    logger: quietLogger(),
  });
  server.addEventListener(quicEvents.EventQUICServerConnection.name, (ev: Event) => {
    const connection = (ev as quicEvents.EventQUICServerConnection).detail;
    opts.onConnection(connection, attachDatagrams(connection));
  });
  // A broken peer must never take the server down: connection errors are per connection.
  server.addEventListener(quicEvents.EventQUICServerError.name, () => undefined);
  await server.start();
  return {
    address: { host: unmapIPv4(socket.host), port: socket.port },
    socket,
    async stop() {
      await server.stop({ force: true, isApp: true, errorCode: 0 });
      if (ownSocket) await socket.stop({ force: true });
    },
  };
}

export interface ConnectOptions {
  relay: HostPort;
  /**
   * Decide whether the presented certificate is acceptable, given its fingerprint
   * (SHA-256 of the DER certificate, `xxxx:xxxx:...`).
   * Return normally to accept; throw (e.g. FingerprintMismatchError) to refuse: the
   * handshake is aborted with bad_certificate and the error is rethrown from connect().
   */
  verify(certFingerprint: string): void;
  /** Share an existing socket (one UDP port for signalling, reflection and dialling). */
  socket?: QUICSocket;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ClientConnection {
  readonly connection: QUICConnection;
  readonly datagrams: DatagramChannel;
  /** Fingerprint of the certificate the peer presented. */
  readonly peerFingerprint: string;
  /** Local address of the UDP socket. */
  readonly localAddress: HostPort;
  /** Resolves when the connection has closed, for whatever reason (peer gone, idle timeout). */
  readonly closed: Promise<void>;
  /**
   * Plain UDP on the connection's own socket and 5-tuple, for the media path
   * (./udp-media.ts); absent when the socket is shared (its owner handles non-QUIC packets).
   */
  readonly raw?: RawPath;
  close(): Promise<void>;
}

export async function connectQuic(opts: ConnectOptions): Promise<ClientConnection> {
  const timeoutMs = opts.timeoutMs ?? QUIC_DEFAULTS.connectTimeoutMs;
  if (opts.signal?.aborted) throw new AbortError('connect aborted');
  let presented: string | undefined;
  let refusal: unknown;
  const config = {
    ...commonConfig(),
    verifyPeer: true,
    verifyCallback: async (certs: Uint8Array[]) => {
      if (certs.length === 0) {
        refusal = new HandshakeError('the relay presented no certificate');
        return CryptoError.BadCertificate;
      }
      presented = sha256Fingerprint(certs[0]);
      try {
        opts.verify(presented);
        return undefined;
      } catch (err) {
        refusal = err;
        return CryptoError.BadCertificate;
      }
    },
  };
  const target = formatHostPort(opts.relay);
  const pending = QUICClient.createQUICClient(
    {
      host: opts.relay.host,
      port: opts.relay.port,
      crypto: clientCrypto,
      config,
      logger: quietLogger(),
      ...(opts.socket ? { socket: opts.socket } : { localHost: opts.relay.host.includes(':') ? '::' : '0.0.0.0' }),
    },
    { timer: timeoutMs },
  );
  const onAbort = () => pending.cancel(new AbortError('connect aborted'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let client: QUICClient;
  try {
    client = await pending;
  } catch (err) {
    if (refusal) throw refusal;
    if (opts.signal?.aborted) throw new AbortError('connect aborted', { cause: err });
    throw mapConnectError(err, target, timeoutMs);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (refusal) {
    await client.destroy({ force: true }).catch(() => undefined);
    throw refusal;
  }
  const connection = client.connection;
  const datagrams = attachDatagrams(connection);
  const socket = (client as unknown as { socket: QUICSocket }).socket;
  let raw: RawPath | undefined;
  if (!opts.socket) {
    raiseRecvBuffer(socket);
    routeDirect(socket);
    raw = rawPathOf(socket, connection);
  }
  return {
    ...(raw ? { raw } : {}),
    connection,
    datagrams,
    peerFingerprint: presented ?? '',
    localAddress: { host: unmapIPv4(socket.host), port: socket.port },
    closed: connection.closedP.then(
      () => undefined,
      () => undefined,
    ),
    async close() {
      await client.destroy({ isApp: true, errorCode: 0, force: true }).catch(() => undefined);
    },
  };
}

function ignoreRawSendError(): void {}

/** The connection's own socket as a RawPath: sends to the relay, non-QUIC packets to one handler. */
function rawPathOf(socket: QUICSocket, connection: QUICConnection): RawPath {
  const udp = rawUdpSocket(socket);
  let handler: (data: Buffer, from: { address: string; port: number }) => void = () => undefined;
  splitNonQuic(socket, (data, from) => handler(data, from));
  return {
    send(parts) {
      // With a callback, a send the kernel refuses is reported there, never as a socket
      // 'error' event; media is lossy, so it is simply gone (as in QUIC's own sends).
      udp.send(parts as Uint8Array[], connection.remotePort, connection.remoteHost, ignoreRawSendError);
    },
    onPacket(h) {
      handler = h;
    },
    relay: () => ({ host: connection.remoteHost, port: connection.remotePort }),
  };
}

function mapConnectError(err: unknown, target: string, timeoutMs: number): Error {
  const e = err as Error & { name?: string; data?: unknown };
  const name = e?.constructor?.name ?? e?.name ?? '';
  if (/Timeout|Timer/i.test(name) || /timed out/i.test(e?.message ?? '')) {
    return new NetworkError(`relay ${target} did not answer within ${timeoutMs} ms`, {
      cause: err,
      suggestions: ['check the address and that `wzp relay` is running there', 'UDP may be blocked on this network'],
    });
  }
  if (/TLS|Crypto/i.test(name)) {
    return new HandshakeError(`TLS handshake with ${target} failed: ${e.message}`, { cause: err });
  }
  if (/Peer|Local|Closed|Stopped/i.test(name)) {
    return new HandshakeError(`connection to ${target} was refused during the handshake: ${e.message}`, { cause: err });
  }
  return new NetworkError(`cannot connect to ${target}: ${e?.message ?? String(err)}`, { cause: err });
}

/**
 * A verifier for connectQuic that accepts exactly one certificate fingerprint: used for the
 * embedded loopback relay, whose fingerprint we know. Relays reached over the network go
 * through the PinStore instead.
 */
export function expectFingerprint(expected: string, relay: string): (presented: string) => void {
  return (presented) => {
    if (!fingerprintsEqual(presented, expected)) {
      throw new FingerprintMismatchError(`relay ${relay} presented certificate ${presented}, expected ${expected}`, {
        suggestions: ['the relay may have a new identity, or someone is intercepting the connection'],
      });
    }
  };
}

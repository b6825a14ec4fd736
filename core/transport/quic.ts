/**
 * QUIC endpoints for wzp: a server (the relay) and clients, with datagrams enabled, sane
 * timeouts, relay pinning by certificate fingerprint, and error mapping to the WzpError
 * family. Built on @matrixai/quic (quiche); datagram support lives in ./datagrams.ts.
 */
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { QUICClient, QUICServer, QUICSocket, errors as quicErrors, events as quicEvents } from '@matrixai/quic';
import type { QUICConnection } from '@matrixai/quic';
import { CryptoError } from '@matrixai/quic/native/types.js';
import Logger, { LogLevel } from '@matrixai/logger';
// Not from tls-cert.ts: that pulls in the X.509 library (~140 ms to load) only relays need.
import { fingerprintsEqual, sha256Fingerprint } from '../crypto/fingerprint.js';
import { AbortError, FingerprintMismatchError, HandshakeError, InternalError, NetworkError, UsageError, errorMessage } from '../errors.js';
import { attachDatagrams, directReceiveHandler, type DatagramChannel } from './datagrams.js';
import { Demux, mediaPathClass, type DemuxOptions } from './demux.js';
import { hardenSocketSends, quicGate, type QuicGateLimits, type QuicGateOptions, type QuicGateStats } from './quic-gate.js';
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
  /** UDP receive buffer; the default overflows under load on 2 cores (docs/dependencies.md). */
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

/**
 * Parse a target to dial (`host:port`, `[v6]:port`): as parseHostPort, but the port must be
 * 1-65535. Port 0 is fine for an address to listen on (the system picks one) but nothing can
 * be reached there: without this check it got as far as the UDP send, which threw
 * ERR_SOCKET_BAD_PORT from inside the QUIC library.
 */
export function parseDialTarget(text: string): HostPort {
  const target = parseHostPort(text);
  checkDialTarget(target, text);
  return target;
}

/** Throws a UsageError naming the target if its port cannot be dialled (0). */
export function checkDialTarget(target: HostPort, text = formatHostPort(target)): void {
  if (!(Number.isInteger(target.port) && target.port >= 1 && target.port <= 65535)) {
    throw new UsageError(`"${text}" has port ${target.port}, which cannot be dialled: a target's port is 1-65535`, {
      suggestions: ["give the relay's port, e.g. 127.0.0.1:4433 (port 0 only makes sense for an address to listen on)"],
    });
  }
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

/** How long a Retry token stays valid (RFC 9000 §8.1.3: tokens should expire). */
export const RETRY_TOKEN_LIFETIME_S = 10;
const TOKEN_TIME_BYTES = 4;
const HMAC_BYTES = 32;

/**
 * The server's Retry-token and connection-ID key. @matrixai/quic signs its Retry tokens
 * (the client's address and original connection ID) with `sign` and checks them with
 * `verify`, but puts no time in them: a token would be good forever. Ours append the time
 * (u32 seconds) to the HMAC input and output, and `verify` refuses a token older than
 * RETRY_TOKEN_LIFETIME_S. (The library also derives new connection IDs from `sign`: those
 * take the first 20 bytes, the HMAC, so they stay unpredictable.)
 */
function serverCrypto() {
  const key = randomFillSync(new Uint8Array(32));
  const mac = (k: ArrayBuffer, data: ArrayBuffer, time: Buffer): Buffer =>
    createHmac('sha256', Buffer.from(k)).update(Buffer.from(data)).update(time).digest();
  return {
    key: key.buffer,
    ops: {
      async sign(k: ArrayBuffer, data: ArrayBuffer): Promise<ArrayBuffer> {
        const time = Buffer.alloc(TOKEN_TIME_BYTES);
        time.writeUInt32BE(Math.floor(Date.now() / 1000) >>> 0);
        const d = Buffer.concat([mac(k, data, time), time]);
        return d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength);
      },
      async verify(k: ArrayBuffer, data: ArrayBuffer, sig: ArrayBuffer): Promise<boolean> {
        const s = Buffer.from(sig);
        if (s.length !== HMAC_BYTES + TOKEN_TIME_BYTES) return false;
        const time = s.subarray(HMAC_BYTES);
        const age = Math.floor(Date.now() / 1000) - time.readUInt32BE(0);
        if (age < -1 || age > RETRY_TOKEN_LIFETIME_S) return false;
        return timingSafeEqual(mac(k, data, time), s.subarray(0, HMAC_BYTES));
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
   * Put the QUIC gate (./quic-gate.ts) in front of the library: for sockets that accept
   * connections from anyone (a relay). Its sends are hardened too: a send the kernel refuses
   * is counted in `sendErrors`, never fatal.
   */
  gate?: QuicGateOptions;
  /**
   * A packet class's handler threw (rate-limited: ./demux.ts). Every socket opened here has a
   * demultiplexer in front of QUIC: socketDemux(socket) to register packet classes (STUN, the
   * media path, connectivity checks) on it.
   */
  onHandlerError?: DemuxOptions['onHandlerError'];
}

/** What a gated socket has refused and passed (see ./quic-gate.ts). */
export interface SocketGateStats extends QuicGateStats {
  /** UDP sends the kernel refused (each a lost packet). */
  sendErrors: number;
}

const gateStats = new WeakMap<QUICSocket, SocketGateStats>();
const gateLimitSetters = new WeakMap<QUICSocket, (limits: Partial<QuicGateLimits>) => void>();

/** The gate's counters of a socket opened with `gate`, live (undefined for other sockets). */
export function socketGateStats(socket: QUICSocket): SocketGateStats | undefined {
  return gateStats.get(socket);
}

/** Change the gate's limits of a socket opened with `gate`, live (false: the socket has no gate). */
export function setSocketGateLimits(socket: QUICSocket, limits: Partial<QuicGateLimits>): boolean {
  const set = gateLimitSetters.get(socket);
  set?.(limits);
  return set !== undefined;
}

/** The node:dgram socket inside a QUICSocket, for raw sends on the shared port (STUN, punching). */
export function rawUdpSocket(socket: QUICSocket): import('node:dgram').Socket {
  const udp = (socket as unknown as { socket?: import('node:dgram').Socket }).socket;
  if (!udp) throw new InternalError('QUICSocket has no UDP socket (not started?)');
  return udp;
}

/**
 * Open a UDP socket that a server and clients can share (one port that accepts and dials),
 * with a demultiplexer in front of QUIC (socketDemux()).
 */
export async function openSocket(bind: HostPort, opts: SocketOptions = {}): Promise<QUICSocket> {
  const socket = new QUICSocket({ logger: quietLogger() });
  let gated: SocketGateStats | undefined;
  if (opts.gate) gated = installGate(socket, opts.gate);
  routeDirect(socket);
  installDemux(socket, opts.onHandlerError ? { onHandlerError: opts.onHandlerError } : {});
  try {
    await socket.start({ host: bind.host, port: bind.port });
  } catch (err) {
    throw new NetworkError(`cannot bind UDP ${formatHostPort(bind)}: ${errorMessage(err)}`, {
      cause: err,
      suggestions: ['is another process using that port? pick another with --listen'],
    });
  }
  raiseRecvBuffer(socket);
  if (gated) {
    const stats = gated;
    hardenSocketSends(socket, rawUdpSocket(socket), () => {
      stats.sendErrors++;
    });
  }
  return socket;
}

/** Wrap the library's socket handler with the gate (before start(), innermost). */
function installGate(socket: QUICSocket, opts: QuicGateOptions): SocketGateStats {
  const s = socket as unknown as {
    handleSocketMessage: (data: Buffer, rinfo: { address: string; port: number }) => Promise<void>;
    connectionMap: { serverConnections: Map<string, unknown>; clientConnections: Map<string, unknown> };
  };
  const map = s.connectionMap;
  const ids = { has: (hex: string) => map.serverConnections.has(hex) || map.clientConnections.has(hex) };
  const { handler, stats, setLimits } = quicGate(s.handleSocketMessage, ids, opts);
  s.handleSocketMessage = handler;
  gateLimitSetters.set(socket, setLimits);
  const withSends: SocketGateStats = Object.assign(stats, { sendErrors: 0 });
  gateStats.set(socket, withSends);
  return withSends;
}

const demuxes = new WeakMap<QUICSocket, Demux>();

/**
 * The node:dgram socket under a QUICSocket (undefined before start() or after stop()): for
 * clients that send from it directly, e.g. a STUN client on a call's socket (its answers come
 * back through the socket's demultiplexer). Reads the library's field (@matrixai/quic 2.0.9).
 */
export function socketUdp(socket: QUICSocket): import('node:dgram').Socket | undefined {
  return (socket as unknown as { socket?: import('node:dgram').Socket }).socket;
}

/**
 * The socket's demultiplexer (./demux.ts): register packet classes on it, and send raw UDP
 * from it. Sockets from openSocket() and connectQuic() have one; a QUICSocket made elsewhere
 * gets one here (the first caller's).
 */
export function socketDemux(socket: QUICSocket): Demux {
  return demuxes.get(socket) ?? installDemux(socket, {});
}

/**
 * Put the demultiplexer in front of the socket's handler: QUIC packets (fixed bit set) go on
 * to it, the rest to the registered classes. QUICSocket registers its `handleSocketMessage`
 * field as the dgram 'message' listener in start() and removes that field's value in stop(),
 * so replacing the field is enough before start(), and on a socket that already started the
 * listener is swapped too (checked against @matrixai/quic 2.0.9). Install it last: it must
 * be the outermost handler.
 */
function installDemux(socket: QUICSocket, opts: DemuxOptions): Demux {
  const s = socket as unknown as {
    handleSocketMessage: (data: Buffer, rinfo: { address: string; port: number }) => Promise<void>;
    socket?: import('node:dgram').Socket;
  };
  const quic = s.handleSocketMessage;
  const demux = new Demux(() => s.socket, quic, opts);
  const udp = s.socket;
  if (udp && udp.listeners('message').includes(quic)) {
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- removes the library's own listener
    udp.off('message', quic);
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- the library's own listener shape: QUICSocket registers its async handleSocketMessage the same way (a rejection from it is not caught here; only the relay's gate catches them)
    udp.on('message', demux.receive);
  }
  s.handleSocketMessage = demux.receive;
  demuxes.set(socket, demux);
  return demux;
}

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
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- removes the library's own listener
    udp.off('message', library);
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- the library's own listener shape, as in installDemux above
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
  /** A packet class's handler threw, on the server's own socket (not used with `socket`). */
  onHandlerError?: SocketOptions['onHandlerError'];
  /**
   * Put the QUIC gate in front of the server's own socket (not used with `socket`):
   * ./quic-gate.ts. A server that accepts from anyone should.
   */
  gate?: QuicGateOptions;
  onConnection(connection: QUICConnection, datagrams: DatagramChannel): void;
}

export interface RunningQuicServer {
  readonly address: HostPort;
  readonly socket: QUICSocket;
  /** The socket's demultiplexer: packet classes other than QUIC register here (STUN, media path). */
  readonly demux: Demux;
  /** The gate's counters, live (when started with `gate`). */
  readonly gate?: SocketGateStats;
  stop(): Promise<void>;
}

/**
 * What one client may make a server hold for it, at the transport level: streams open at
 * once and unread bytes, per stream and in all. wzp's requests to a relay are small (a join
 * with its announcement is under 2 KiB, a room signal at most 4 KiB), so these are far
 * above what a client needs and far below the library's defaults (100 streams, 1 MiB per
 * stream, 10 MiB per connection), which let one connection park megabytes in the relay.
 */
export const SERVER_FLOW_LIMITS = {
  maxStreamsBidi: 16,
  maxStreamDataBytes: 16 * 1024,
  maxDataBytes: 128 * 1024,
  /** A handshake not finished in this long is abandoned (the library's default: never). */
  handshakeTimeoutMs: 5_000,
} as const;

export async function startQuicServer(opts: QuicServerOptions): Promise<RunningQuicServer> {
  const ownSocket = opts.socket === undefined;
  const socket =
    opts.socket ??
    (await openSocket(opts.listen ?? { host: '127.0.0.1', port: 0 }, {
      ...(opts.onHandlerError ? { onHandlerError: opts.onHandlerError } : {}),
      ...(opts.gate ? { gate: opts.gate } : {}),
    }));
  const server = new QUICServer({
    crypto: serverCrypto(),
    config: {
      ...commonConfig(),
      maxIdleTimeout: QUIC_DEFAULTS.relayMaxIdleTimeoutMs,
      // No keep-alive PINGs of the relay's own: every client sends one each
      // keepAliveIntervalMs (its NAT mapping and the connection's idle timer are kept by
      // those and the relay's ACKs of them), so the relay's were redundant, and with both ends
      // pinging a connection at rest cost the relay four QUIC packets per interval instead
      // of two: 2.5% -> 1.4% of a core for 50 silent connections without them (~4 µs per
      // forwarded packet in the forwarding bench: docs/transport.md#what-it-costs). A dead
      // client is still noticed by the idle timeout, as before.
      keepAliveIntervalTime: undefined,
      key: opts.tls.keyPem,
      cert: opts.tls.certPem,
      verifyPeer: false,
      // No 0-RTT: nothing a client sends a relay is safe to replay, and its early-data path
      // is where the library broke (./quic-gate.ts).
      enableEarlyData: false,
      initialMaxStreamsBidi: SERVER_FLOW_LIMITS.maxStreamsBidi,
      initialMaxStreamsUni: 0,
      initialMaxStreamDataBidiRemote: SERVER_FLOW_LIMITS.maxStreamDataBytes,
      initialMaxStreamDataBidiLocal: SERVER_FLOW_LIMITS.maxStreamDataBytes,
      initialMaxStreamDataUni: 0,
      initialMaxData: SERVER_FLOW_LIMITS.maxDataBytes,
      maxStreamWindow: SERVER_FLOW_LIMITS.maxStreamDataBytes,
      maxConnectionWindow: SERVER_FLOW_LIMITS.maxDataBytes,
    },
    socket,
    minIdleTimeout: SERVER_FLOW_LIMITS.handshakeTimeoutMs,
    logger: quietLogger(),
  });
  server.addEventListener(quicEvents.EventQUICServerConnection.name, (ev: Event) => {
    const connection = (ev as quicEvents.EventQUICServerConnection).detail;
    opts.onConnection(connection, attachDatagrams(connection));
  });
  // A broken peer must never take the server down: connection errors are per connection.
  server.addEventListener(quicEvents.EventQUICServerError.name, () => undefined);
  await server.start();
  const gate = socketGateStats(socket);
  return {
    address: { host: unmapIPv4(socket.host), port: socket.port },
    socket,
    demux: socketDemux(socket),
    ...(gate ? { gate } : {}),
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
  /** How the peer closed the connection, once it did (application close code and reason). */
  peerClose(): { isApp: boolean; code: number; reason: string } | undefined;
  /**
   * Plain UDP on the connection's own socket and 5-tuple, for the media path
   * (./udp-media.ts; registered as the socket's 'media-path' class); absent when the socket is
   * shared (its owner decides what the socket's classes are).
   */
  readonly raw?: RawPath;
  /**
   * The UDP socket the connection runs on: its own, or the one given in ConnectOptions.
   * The direct path dials and accepts on it too, so its NAT mappings are the ones the relay
   * observed.
   */
  readonly socket: QUICSocket;
  /**
   * The socket's demultiplexer: STUN, connectivity checks and anything else that must use the
   * relay connection's socket register a packet class here, and send with `demux.send()`.
   */
  readonly demux: Demux;
  close(): Promise<void>;
}

export async function connectQuic(opts: ConnectOptions): Promise<ClientConnection> {
  const timeoutMs = opts.timeoutMs ?? QUIC_DEFAULTS.connectTimeoutMs;
  checkDialTarget(opts.relay);
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
  let peerClose: { isApp: boolean; code: number; reason: string } | undefined;
  connection.addEventListener(quicEvents.EventQUICConnectionError.name, (ev: Event) => {
    const detail = (ev as quicEvents.EventQUICConnectionError).detail as { data?: { isApp?: boolean; errorCode?: number; reason?: Uint8Array } };
    if (detail instanceof quicErrors.ErrorQUICConnectionPeer && detail.data) {
      const { isApp = false, errorCode = 0, reason } = detail.data;
      peerClose = { isApp, code: errorCode, reason: reason ? Buffer.from(reason).toString('utf8') : '' };
    }
  });
  const datagrams = attachDatagrams(connection);
  const socket = (client as unknown as { socket: QUICSocket }).socket;
  let raw: RawPath | undefined;
  let demux: Demux;
  if (!opts.socket) {
    raiseRecvBuffer(socket);
    routeDirect(socket);
    demux = installDemux(socket, {});
    raw = rawPathOf(demux, connection);
  } else {
    demux = socketDemux(socket);
  }
  return {
    ...(raw ? { raw } : {}),
    socket,
    demux,
    connection,
    datagrams,
    peerFingerprint: presented ?? '',
    localAddress: { host: unmapIPv4(socket.host), port: socket.port },
    closed: connection.closedP.then(
      () => undefined,
      () => undefined,
    ),
    peerClose: () => peerClose,
    async close() {
      await client.destroy({ isApp: true, errorCode: 0, force: true }).catch(() => undefined);
    },
  };
}

/** The connection's own socket as a RawPath: sends to the relay, media path packets to one handler. */
function rawPathOf(demux: Demux, connection: QUICConnection): RawPath {
  let handler: (data: Buffer, from: { address: string; port: number }) => void = () => undefined;
  demux.register(mediaPathClass((data, from) => handler(data, from)));
  return {
    send(parts) {
      // Hardened (./demux.ts): a send the kernel refuses is counted there, never a socket
      // 'error' event; media is lossy, so it is simply gone (as in QUIC's own sends).
      demux.send(parts, { host: connection.remoteHost, port: connection.remotePort });
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
  if (err instanceof quicErrors.ErrorQUICHostInvalid) {
    // The library's name lookup failed (it keeps neither the resolver's error nor a message).
    const host = target.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    return new NetworkError(`cannot connect to ${target}: the name ${host} does not resolve to an address`, {
      cause: err,
      suggestions: ['check the spelling of the relay name, or give its IP address', 'check that DNS works on this machine'],
    });
  }
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
  const reason = errorMessage(err) || (e?.constructor as { description?: string } | undefined)?.description || name || 'no reason given';
  return new NetworkError(`cannot connect to ${target}: ${reason}`, { cause: err });
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

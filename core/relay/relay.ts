/**
 * The wzp relay: a QUIC server that answers signalling (hello, ping, reflect, join) and
 * handles media datagrams per connection mode: `echo` (a client's datagrams are sent back
 * to it) or `room` (an SFU: forwarded, still end-to-end encrypted, to the other members of
 * the room; see ./rooms.ts).
 *
 * The relay never trusts input: every malformed signal or unexpected datagram is dropped
 * and counted in `metrics`, never thrown.
 */
import type { QUICConnection } from '@matrixai/quic';
import { events as quicEvents } from '@matrixai/quic';
import { errorMessage } from '../errors.js';
import { LogLimiter, TokenBucket } from '../net/rate-limit.js';
import type { DatagramChannel } from '../transport/datagrams.js';
import { sourceKey, type GateDropReason } from '../transport/quic-gate.js';
import { formatHostPort, startQuicServer, type HostPort, type RunningQuicServer, type SocketGateStats, type TlsMaterial } from '../transport/quic.js';
import { pushFrame, serveSignals, SignalMemoryBudget, type KnownSignal, type SignalDropReason } from '../transport/signal-stream.js';
import { RoomManager, SOURCE_ID_BYTES, type RoomMember } from './rooms.js';
import { Presence, type PresencePeer, type PresenceStats } from './presence.js';
import { encodeSignal, isCallSignal, MAX_ANNOUNCEMENT_BYTES, MAX_REQUEST_PAYLOAD_BYTES, MAX_ROOM_SIGNAL_BYTES, RELAY_CLOSE_REFUSED } from '../wire/signal.js';
import { verifyAnnouncement, type MemberAnnouncement } from '../crypto/sender-keys.js';
import { RelayMediaPath, RelayRoute } from '../transport/udp-media.js';
import { DebugTap, type DebugTapOptions } from './debug-tap.js';
import { mediaPathClass, pathCheckClass, stunClass, type Demux, type DemuxStats } from '../transport/demux.js';
import { rawUdpSocket } from '../transport/quic.js';
import { REFUSAL_REASONS, resolveRelayLimits, type RefusalReason, type RelayLimits } from './limits.js';
import { STUN_DROP_REASONS, StunServer, type StunDropReason, type StunServerLimits } from '../nat/stun-server.js';
import type { Endpoint } from '../nat/stun.js';

export const RELAY_PROTOCOL_VERSION = 1;


export interface RelayOptions {
  listen: HostPort;
  tls: TlsMaterial;
  /** Certificate fingerprint announced in hello-ack (clients verify it in TLS anyway). */
  fingerprint: string;
  /**
   * Offer members the UDP media path (core/transport/udp-media.ts; default true). Off, all
   * media stays in QUIC datagrams.
   */
  udpMedia?: boolean;
  /** What one client may make the relay do or hold (./limits.ts); unset ones keep their defaults. */
  limits?: Partial<RelayLimits>;
  /**
   * Answer STUN Binding requests on the relay's port (core/nat/stun-server.ts; default on).
   * With `alternate` (a second address of this host, and optionally a second port) it is an
   * RFC 5780 server on four addresses.
   */
  stun?: false | { alternate?: { address: string; port?: number }; limits?: Partial<StunServerLimits> };
  /**
   * Log every media packet of a room (or all rooms) with its header metadata, rate-limited
   * (./debug-tap.ts). Off (absent), it costs one check per media packet.
   */
  debugTap?: DebugTapOptions;
  /**
   * Namespaced events for logs: 'relay:connection-open', 'relay:refused', ... Events about
   * dropped or refused input are rate-limited (an attacker must not be able to turn each
   * packet into a log line): `suppressed` says how many of them were not reported before it.
   */
  onEvent?(event: RelayEvent): void;
}

export type RelayEvent =
  | { type: 'relay:connection-open'; peer: string }
  | { type: 'relay:connection-closed'; peer: string; reason: string }
  | { type: 'relay:join'; peer: string; mode: string; room?: string; sourceId?: number }
  | { type: 'relay:leave'; peer: string; room: string; sourceId: number }
  /** A connection registered as an identity (presence), replacing an older registration or not. */
  | { type: 'relay:registered'; peer: string; fingerprint: string; replaced: boolean }
  | { type: 'relay:signal-dropped'; peer: string; reason: string; detail: string; suppressed?: number }
  | { type: 'relay:refused'; peer: string; reason: RefusalReason; detail: string; suppressed?: number }
  /** Handling one datagram failed inside the QUIC library; the relay kept serving. */
  | { type: 'relay:socket-error'; peer: string; error: string; suppressed?: number };

export interface RelayMetrics {
  connectionsOpen: number;
  connectionsTotal: number;
  signalsReceived: number;
  signalsMalformed: number;
  signalsUnknown: number;
  datagramsReceived: number;
  datagramsEchoed: number;
  /** Datagrams from a connection that has not joined a media mode. */
  datagramsUnexpected: number;
  /** Datagrams we could not send (queue full, too large, closed). */
  datagramsDropped: number;
  /** Room datagrams forwarded to members (one per receiving member). */
  datagramsForwarded: number;
  /** Stale queued datagrams purged for congested members. */
  datagramsPurged: number;
  /** Of datagramsReceived, those that came on the UDP media path (the rest in QUIC). */
  datagramsOnUdpPath: number;
  /**
   * UDP packets refused that were not QUIC: media path packets with an unknown token, not
   * from the member's address or malformed, direct-path checks (peers', never the relay's),
   * and anything no packet class takes (core/transport/demux.ts).
   */
  udpPathRejected: number;
  roomsOpen: number;
  /** Input refused or dropped by a limit or the QUIC gate, by reason (./limits.ts). */
  refused: Record<RefusalReason, number>;
  /** Datagrams whose handling failed inside the QUIC library (the relay kept serving). */
  socketErrors: number;
  /** UDP sends the kernel refused (each a lost packet). */
  sendErrors: number;
  /** QUIC handshakes started (Initials with a valid-looking token for a new connection). */
  handshakesStarted: number;
  /** Retry packets sent (each to an Initial of at least 1200 bytes). */
  retriesSent: number;
  /** STUN packets received on the relay's port (and, in RFC 5780 mode, its other STUN addresses). */
  stunRequests: number;
  /** STUN Binding answers sent: successes, and errors (400, 420) to requests the server refuses. */
  stunAnswered: number;
  stunErrors: number;
  /** STUN packets dropped unanswered, by reason (core/nat/stun-server.ts). */
  stunDropped: Record<StunDropReason, number>;
  /** Registrations and call signalling (./presence.ts). */
  presence: PresenceStats;
}

const ROOM_ID_RE = /^[0-9a-f]{32}$/;
const FINGERPRINT_RE = /^[0-9a-f]{4}(?::[0-9a-f]{4}){15}$/;

type Mode = 'none' | 'echo' | 'room';

interface Peer {
  readonly connection: QUICConnection;
  /** QUIC datagrams, or the UDP media path once the member confirmed it. */
  readonly datagrams: RelayRoute;
  readonly label: string;
  /** The source address it counts toward (IPv4 address or IPv6 /64). */
  readonly source: string;
  mode: Mode;
  room?: { id: string; sourceId: number };
  readonly joins: TokenBucket;
  readonly signals: TokenBucket;
  readonly signalBytes: TokenBucket;
  readonly mediaPackets: TokenBucket;
  readonly mediaBytes: TokenBucket;
  /** This connection as presence sees it (registration and call signalling). */
  readonly presence: PresencePeer;
}

/** Counters the hot paths increment; `metrics` assembles them with the gate's and rooms'. */
interface Counters {
  connectionsOpen: number;
  connectionsTotal: number;
  signalsReceived: number;
  signalsMalformed: number;
  signalsUnknown: number;
  datagramsReceived: number;
  datagramsEchoed: number;
  datagramsUnexpected: number;
  echoDropped: number;
  datagramsOnUdpPath: number;
  /** Non-QUIC packets that are not media path packets either (or the path is off). */
  strayUdp: number;
  refused: Record<RefusalReason, number>;
}

/** Signal-stream drops that are refusals of a limit, and the reason they count under. */
const SIGNAL_REFUSALS: Partial<Record<SignalDropReason, RefusalReason>> = {
  'too-large': 'signal-too-large',
  'too-many-streams': 'signal-streams',
  memory: 'signal-memory',
  timeout: 'signal-timeout',
};

const EMPTY_STUN_DROPS = Object.fromEntries(STUN_DROP_REASONS.map((r) => [r, 0])) as Record<StunDropReason, number>;

export class Relay {
  private readonly counters: Counters = {
    connectionsOpen: 0,
    connectionsTotal: 0,
    signalsReceived: 0,
    signalsMalformed: 0,
    signalsUnknown: 0,
    datagramsReceived: 0,
    datagramsEchoed: 0,
    datagramsUnexpected: 0,
    echoDropped: 0,
    datagramsOnUdpPath: 0,
    strayUdp: 0,
    refused: Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>,
  };
  private readonly peers = new Set<Peer>();
  private readonly connectionsBySource = new Map<string, number>();
  /** Join/leave budget of each source with open connections (dropped with its last connection). */
  private readonly joinsBySource = new Map<string, TokenBucket>();
  private readonly rooms = new RoomManager();
  private server?: RunningQuicServer;
  /** The gate's counters (kept after stop() for the exit summary). */
  private gate?: SocketGateStats;
  /** The socket's demultiplexer (its counters kept after stop(), as the gate's). */
  private demux?: Demux;
  private readonly mediaPath: RelayMediaPath;
  private readonly limits: RelayLimits;
  private readonly signalBudget: SignalMemoryBudget;
  /** Reports of dropped input, and of library failures, each rate-limited on its own. */
  private readonly dropLog = new LogLimiter(5, 20);
  private readonly errorLog = new LogLimiter(1, 5);
  private stun?: StunServer;
  private readonly presence: Presence;
  /** The debug tap, if on (./debug-tap.ts). */
  private readonly tap: DebugTap | undefined;

  private constructor(private readonly opts: RelayOptions) {
    this.limits = resolveRelayLimits(opts.limits);
    this.tap = opts.debugTap ? new DebugTap(opts.debugTap) : undefined;
    this.presence = new Presence({
      limits: this.limits,
      relayFingerprint: opts.fingerprint,
      refuse: (peer, reason, detail) => this.refuse(peer.label, reason, detail),
      onRegistered: (peer, fingerprint, replaced) => this.emit({ type: 'relay:registered', peer: peer.label, fingerprint, replaced }),
    });
    this.signalBudget = new SignalMemoryBudget(this.limits.signalBufferTotalBytes);
    this.mediaPath = new RelayMediaPath(() => {
      if (!this.server) throw new Error('relay not started');
      return rawUdpSocket(this.server.socket);
    });
  }

  static async start(opts: RelayOptions): Promise<Relay> {
    const relay = new Relay(opts);
    relay.server = await startQuicServer({
      tls: opts.tls,
      listen: opts.listen,
      onHandlerError: (cls, err, from) => relay.onSocketError(new Error(`${cls} handler: ${errorMessage(err)}`), from),
      onConnection: (connection, datagrams) => relay.accept(connection, datagrams),
      gate: {
        limits: relay.limits,
        connectionCount: () => relay.peers.size,
        onError: (err, from) => relay.onSocketError(err, from),
        ...(opts.onEvent ? { onDrop: (reason: GateDropReason, from: { address: string; port: number }) => relay.onGateDrop(reason, from) } : {}),
      },
    });
    relay.gate = relay.server.gate;
    relay.registerPacketClasses();
    if (opts.stun !== false) {
      try {
        relay.stun = await StunServer.start({
          primary: { socket: rawUdpSocket(relay.server.socket), address: { address: relay.server.address.host, port: relay.server.address.port } },
          alternate: opts.stun?.alternate,
          limits: opts.stun?.limits,
        });
      } catch (err) {
        await relay.stop();
        throw err;
      }
    }
    return relay;
  }

  /** A snapshot of the relay's counters. */
  get metrics(): RelayMetrics {
    const c = this.counters;
    const rooms = this.rooms.stats;
    const gate = this.gate;
    const refused = { ...c.refused };
    if (gate) for (const [reason, n] of Object.entries(gate.dropped) as [GateDropReason, number][]) refused[reason] += n;
    return {
      connectionsOpen: c.connectionsOpen,
      connectionsTotal: c.connectionsTotal,
      signalsReceived: c.signalsReceived,
      signalsMalformed: c.signalsMalformed,
      signalsUnknown: c.signalsUnknown,
      datagramsReceived: c.datagramsReceived,
      datagramsEchoed: c.datagramsEchoed,
      datagramsUnexpected: c.datagramsUnexpected,
      datagramsDropped: rooms.dropped + c.echoDropped,
      datagramsForwarded: rooms.forwarded,
      datagramsPurged: rooms.purged,
      datagramsOnUdpPath: c.datagramsOnUdpPath,
      udpPathRejected: this.mediaPath.stats.rejected + c.strayUdp + this.droppedByDemux(),
      roomsOpen: this.rooms.roomCount,
      refused,
      socketErrors: gate?.errors ?? 0,
      sendErrors: gate?.sendErrors ?? 0,
      handshakesStarted: gate?.handshakes ?? 0,
      retriesSent: gate?.retries ?? 0,
      stunRequests: this.stun?.stats.received ?? 0,
      stunAnswered: this.stun?.stats.answered ?? 0,
      stunErrors: this.stun?.stats.errors ?? 0,
      stunDropped: { ...(this.stun?.stats.dropped ?? EMPTY_STUN_DROPS) },
      presence: this.presence.stats,
    };
  }

  /** The limits in force. */
  get currentLimits(): Readonly<RelayLimits> {
    return this.limits;
  }

  /** Every address that answers STUN (the relay's own first; four in RFC 5780 mode). */
  get stunEndpoints(): Endpoint[] {
    return this.stun?.endpoints ?? [];
  }

  /** The counters of the relay socket's packet classes, QUIC included (core/transport/demux.ts). */
  get socketClasses(): DemuxStats | undefined {
    return this.demux?.stats;
  }

  /** Non-QUIC packets the socket's demultiplexer dropped: unclaimed ones, and path checks. */
  private droppedByDemux(): number {
    const stats = this.demux?.stats;
    if (!stats) return 0;
    return stats.unclaimed + (stats.classes['path-check']?.packets ?? 0);
  }

  /**
   * The relay socket's packet classes besides QUIC (core/transport/demux.ts): the UDP media
   * path, STUN (once its server runs) and direct-path checks, which are between call peers and
   * never for the relay: taken, counted and dropped. Anything else is unclaimed, also dropped.
   */
  private registerPacketClasses(): void {
    const demux = this.server?.demux;
    if (!demux) throw new Error('relay not started');
    this.demux = demux;
    if (this.opts.udpMedia !== false) demux.register(mediaPathClass((data, from) => this.mediaPath.handle(data, from)));
    // Registered before the STUN server is up (it binds its other sockets first): until then its packets are stray.
    if (this.opts.stun !== false) demux.register(stunClass((data, from) => (this.stun ? this.stun.handle(data, from) : this.counters.strayUdp++)));
    demux.register(pathCheckClass());
  }

  get address(): HostPort {
    if (!this.server) throw new Error('relay not started');
    return this.server.address;
  }

  get fingerprint(): string {
    return this.opts.fingerprint;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await this.stun?.close();
    await server?.stop();
    this.peers.clear();
    this.presence.clear();
    this.connectionsBySource.clear();
    this.joinsBySource.clear();
  }

  private emit(event: RelayEvent): void {
    this.opts.onEvent?.(event);
  }

  /** Count a refusal, and report it if the log budget allows. */
  private refuse(peer: string, reason: RefusalReason, detail: string): void {
    this.counters.refused[reason]++;
    this.reportDrop(() => ({ type: 'relay:refused', peer, reason, detail }));
  }

  /** Report one piece of dropped input, rate-limited; `make` runs only if it is reported. */
  private reportDrop(make: () => Extract<RelayEvent, { type: 'relay:refused' | 'relay:signal-dropped' }>): void {
    if (!this.opts.onEvent || !this.dropLog.take()) return;
    const suppressed = this.dropLog.suppressed();
    this.emit({ ...make(), ...(suppressed > 0 ? { suppressed } : {}) });
  }

  private onGateDrop(reason: GateDropReason, from: { address: string; port: number }): void {
    this.reportDrop(() => ({ type: 'relay:refused', peer: formatHostPort({ host: from.address, port: from.port }), reason, detail: 'at the QUIC gate' }));
  }

  private onSocketError(err: unknown, from: { address: string; port: number }): void {
    if (!this.opts.onEvent || !this.errorLog.take()) return;
    const suppressed = this.errorLog.suppressed();
    const detail = err instanceof Error ? `${err.name}: ${err.message}` : errorMessage(err);
    this.emit({ type: 'relay:socket-error', peer: formatHostPort({ host: from.address, port: from.port }), error: detail, ...(suppressed > 0 ? { suppressed } : {}) });
  }

  private accept(connection: QUICConnection, datagrams: DatagramChannel): void {
    const label = formatHostPort({ host: connection.remoteHost, port: connection.remotePort });
    const source = sourceKey(connection.remoteHost);
    const fromSource = this.connectionsBySource.get(source) ?? 0;
    if (fromSource >= this.limits.connectionsPerSource) {
      // Closed at once, with the reason in words: the client shows it (exit code 10).
      const reason = `too many connections from ${source} (this relay allows ${this.limits.connectionsPerSource})`;
      this.refuse(label, 'source-connections', reason);
      void connection.stop({ isApp: true, errorCode: RELAY_CLOSE_REFUSED, reason: Buffer.from(reason), force: true }).catch(() => undefined);
      return;
    }
    this.connectionsBySource.set(source, fromSource + 1);
    const now = performance.now();
    const l = this.limits;
    if (!this.joinsBySource.has(source)) this.joinsBySource.set(source, new TokenBucket(l.sourceJoinsPerMinute / 60, l.sourceJoinBurst, now));
    const peer: Peer = {
      connection,
      datagrams: this.mediaPath.route(datagrams, {
        remote: () => ({ host: connection.remoteHost, port: connection.remotePort }),
        onMedia: (payload) => {
          this.counters.datagramsOnUdpPath++;
          this.onDatagram(peer, payload, 'udp');
        },
      }),
      label,
      source,
      mode: 'none',
      joins: new TokenBucket(l.joinsPerMinute / 60, l.joinBurst, now),
      signals: new TokenBucket(l.signalsPerSecond, l.signalBurst, now),
      signalBytes: new TokenBucket(l.signalBytesPerSecond, 4 * l.signalBytesPerSecond, now),
      mediaPackets: new TokenBucket(l.memberPacketsPerSecond, l.memberPacketsPerSecond, now),
      mediaBytes: new TokenBucket((l.memberKbps * 1000) / 8, (l.memberKbps * 1000) / 8, now),
      presence: {
        label,
        source,
        observed: () => ({ address: connection.remoteHost, port: connection.remotePort }),
        push: (frame) => void pushFrame(connection, frame),
      },
    };
    this.peers.add(peer);
    this.counters.connectionsOpen++;
    this.counters.connectionsTotal++;
    this.emit({ type: 'relay:connection-open', peer: peer.label });

    datagrams.onDatagram((payload) => this.onDatagram(peer, payload, 'quic'));
    serveSignals(
      connection,
      {
        handle: (msg, size) => this.onSignal(peer, msg, size),
        onDropped: (reason, detail) => {
          const refusal = SIGNAL_REFUSALS[reason];
          if (refusal !== undefined) {
            this.refuse(peer.label, refusal, detail);
            return;
          }
          if (reason === 'unknown-type') this.counters.signalsUnknown++;
          else this.counters.signalsMalformed++;
          this.reportDrop(() => ({ type: 'relay:signal-dropped', peer: peer.label, reason, detail }));
        },
      },
      {
        maxPayloadBytes: MAX_REQUEST_PAYLOAD_BYTES,
        maxConcurrentStreams: 16,
        maxBufferedBytes: l.signalBufferBytes,
        budget: this.signalBudget,
        readTimeoutMs: 5_000,
      },
    );
    connection.addEventListener(
      quicEvents.EventQUICConnectionStopped.name,
      () => {
        if (this.peers.delete(peer)) {
          this.leaveRoom(peer);
          this.presence.disconnect(peer.presence);
          peer.datagrams.disable();
          this.counters.connectionsOpen--;
          const n = (this.connectionsBySource.get(source) ?? 1) - 1;
          if (n <= 0) {
            this.connectionsBySource.delete(source);
            this.joinsBySource.delete(source);
          } else this.connectionsBySource.set(source, n);
          this.emit({ type: 'relay:connection-closed', peer: peer.label, reason: 'closed' });
        }
      },
      { once: true },
    );
  }

  private refusal(peer: Peer, reason: RefusalReason, code: string, message: string): KnownSignal[] {
    this.refuse(peer.label, reason, message);
    return [{ type: 'error', code, message }];
  }

  private onSignal(peer: Peer, msg: KnownSignal, payloadBytes: number): KnownSignal[] {
    this.counters.signalsReceived++;
    const now = performance.now();
    if (!peer.signals.take(now)) {
      return this.refusal(peer, 'signal-rate', 'rate-limited', `more than ${this.limits.signalsPerSecond} requests a second`);
    }
    if (!peer.signalBytes.take(now, payloadBytes)) {
      return this.refusal(peer, 'signal-bytes', 'rate-limited', `more than ${this.limits.signalBytesPerSecond} bytes of requests a second`);
    }
    switch (msg.type) {
      case 'hello':
        return [{ type: 'hello-ack', version: RELAY_PROTOCOL_VERSION, relayFingerprint: this.opts.fingerprint }];
      case 'ping':
        return [{ type: 'pong', nonce: msg.nonce }];
      case 'reflect':
        return [
          {
            type: 'reflect-response',
            observedAddress: formatHostPort({ host: peer.connection.remoteHost, port: peer.connection.remotePort }),
          },
        ];
      case 'join':
        if (!this.takeJoin(peer, now)) return this.joinRateRefusal(peer);
        this.leaveRoom(peer);
        peer.datagrams.disable();
        if (msg.mode === 'echo') {
          peer.mode = 'echo';
          this.emit({ type: 'relay:join', peer: peer.label, mode: 'echo' });
          return [{ type: 'joined', mode: 'echo', ...this.offerPath(peer, msg) }];
        }
        peer.mode = 'none';
        return [this.joinRoom(peer, msg)];
      case 'leave':
        // Never refused: leaving only frees what the member held (joins are what is limited).
        this.leaveRoom(peer);
        peer.mode = 'none';
        peer.datagrams.disable();
        return [];
      case 'room-signal':
        if (!peer.room) return [{ type: 'error', code: 'not-in-room', message: 'join a room first' }];
        if (payloadBytes > MAX_ROOM_SIGNAL_BYTES) {
          return this.refusal(peer, 'room-signal-too-large', 'too-large', `a room signal is at most ${MAX_ROOM_SIGNAL_BYTES} bytes`);
        }
        this.rooms.relaySignal(peer.room.id, peer.room.sourceId, msg.to, msg.payload);
        return [];
      case 'register-challenge':
        return [this.presence.challenge(peer.presence)];
      case 'register':
        return [this.presence.register(peer.presence, msg)];
      default:
        if (isCallSignal(msg)) return [this.presence.route(peer.presence, msg)];
        // A known message that a relay does not accept from clients (e.g. pong): ignore.
        this.counters.signalsUnknown++;
        this.reportDrop(() => ({ type: 'relay:signal-dropped', peer: peer.label, reason: 'unexpected-type', detail: msg.type }));
        return [];
    }
  }

  /** One join or leave from this connection's budget and its source's. */
  private takeJoin(peer: Peer, now: number): boolean {
    return peer.joins.take(now) && (this.joinsBySource.get(peer.source)?.take(now) ?? true);
  }

  private joinRateRefusal(peer: Peer): KnownSignal[] {
    return this.refusal(peer, 'join-rate', 'rate-limited', `more than ${this.limits.joinBurst} joins at once, or ${this.limits.joinsPerMinute} a minute (from this address: ${this.limits.sourceJoinBurst}, ${this.limits.sourceJoinsPerMinute} a minute)`);
  }

  private joinRoom(peer: Peer, msg: Extract<KnownSignal, { type: 'join' }>): KnownSignal {
    if (msg.room === undefined || !ROOM_ID_RE.test(msg.room)) {
      this.refuse(peer.label, 'bad-room', 'not a room id');
      return { type: 'error', code: 'bad-room', message: 'room must be the 32-hex-digit hash of the room name' };
    }
    if (msg.announcement !== undefined && Buffer.byteLength(JSON.stringify(msg.announcement)) > MAX_ANNOUNCEMENT_BYTES) {
      // Bounded so that a full room's announcements fit in one `joined` answer.
      this.refuse(peer.label, 'bad-announcement', 'announcement too large');
      return { type: 'error', code: 'bad-announcement', message: `an announcement is at most ${MAX_ANNOUNCEMENT_BYTES} bytes of JSON` };
    }
    if (msg.fingerprint !== undefined && msg.fingerprint !== '' && !FINGERPRINT_RE.test(msg.fingerprint)) {
      this.refuse(peer.label, 'bad-fingerprint', 'not a fingerprint');
      return { type: 'error', code: 'bad-fingerprint', message: 'fingerprint must be 16 groups of 4 lowercase hex digits' };
    }
    const member: RoomMember = {
      sourceId: this.rooms.allocateSourceId(),
      source: peer.source,
      // Aliases travel signed inside announcements (docs/e2e-encryption.md): the relay neither
      // keeps nor repeats the unauthenticated one a join may carry.
      alias: '',
      fingerprint: msg.fingerprint ?? '',
      datagrams: peer.datagrams,
      ...(msg.announcement === undefined ? {} : { announcement: msg.announcement }),
      push: (frame) => void pushFrame(peer.connection, frame),
    };
    const replacedPeer = this.replacedBy(msg.room, msg.announcement);
    const plan = this.rooms.planJoin(msg.room, member, replacedPeer?.room?.sourceId, {
      roomSize: this.limits.roomSize,
      membersPerSource: this.limits.roomMembersPerSource,
    });
    if ('refused' in plan) {
      const why = plan.refused === 'room-full' ? `the room is full (${this.limits.roomSize} members)` : `too many members of this room from ${peer.source}`;
      this.refuse(peer.label, plan.refused, why);
      return { type: 'error', code: 'room-full', message: why };
    }
    // Admit only once the answer is built and known to fit one signal: a joiner that could
    // not be answered must not stay in the room as an invisible member.
    const reply: KnownSignal = {
      type: 'joined',
      mode: 'room',
      room: msg.room,
      sourceId: member.sourceId,
      participants: plan.participants,
      announcements: plan.announcements,
      ...this.offerPath(peer, msg),
    };
    try {
      encodeSignal(reply);
    } catch {
      peer.datagrams.disable();
      this.refuse(peer.label, 'roster-full', 'the answer would not fit one signal');
      return { type: 'error', code: 'room-full', message: 'the room\'s roster is full' };
    }
    this.rooms.commitJoin(msg.room, member, plan.replaced);
    if (replacedPeer?.room && plan.replaced !== undefined) {
      // Its connection is dead or dying; it no longer speaks for anyone in the room.
      replacedPeer.datagrams.disable();
      this.emit({ type: 'relay:leave', peer: replacedPeer.label, room: replacedPeer.room.id, sourceId: replacedPeer.room.sourceId });
      replacedPeer.room = undefined;
      replacedPeer.mode = 'none';
    }
    peer.mode = 'room';
    peer.room = { id: msg.room, sourceId: member.sourceId };
    this.emit({ type: 'relay:join', peer: peer.label, mode: 'room', room: msg.room, sourceId: member.sourceId });
    return reply;
  }

  /** A fresh UDP media path token for a member that asked for the path, if we offer it. */
  private offerPath(peer: Peer, msg: Extract<KnownSignal, { type: 'join' }>): { mediaToken?: string } {
    peer.datagrams.disable();
    if (msg.udpMedia !== true || this.opts.udpMedia === false) return {};
    return { mediaToken: peer.datagrams.enable() };
  }

  /**
   * The member a joining one replaces: its announcement, signed by its identity for this room,
   * names (`replaces`) the session of a member of the same identity still in the room, which
   * is that member back after losing its connection. Anything that does not verify replaces
   * no one (the join itself goes ahead: announcements are otherwise opaque to the relay).
   */
  private replacedBy(roomId: string, announcement: Record<string, unknown> | undefined): Peer | undefined {
    if (announcement?.replaces === undefined) return undefined;
    let verified: MemberAnnouncement;
    try {
      verified = verifyAnnouncement(roomId, announcement);
    } catch {
      return undefined;
    }
    if (verified.replaces === undefined) return undefined;
    const old = this.rooms.memberWithSession(roomId, verified.replaces, verified.fingerprint);
    if (old === undefined) return undefined;
    for (const peer of this.peers) if (peer.room?.id === roomId && peer.room.sourceId === old.sourceId) return peer;
    return undefined;
  }

  private leaveRoom(peer: Peer): void {
    if (!peer.room) return;
    const { id, sourceId } = peer.room;
    peer.room = undefined;
    this.rooms.leave(id, sourceId);
    this.emit({ type: 'relay:leave', peer: peer.label, room: id, sourceId });
  }

  /** Tell the debug tap about a member's packet and the copies forwarded (only called with the tap on). */
  private tapPacket(room: { id: string; sourceId: number }, payload: Uint8Array, path: 'udp' | 'quic', sent: number, refused?: string): void {
    const tap = this.tap;
    if (tap === undefined || !tap.matches(room.id)) return;
    const members = this.rooms.room(room.id)?.members;
    const others = members ? Math.max(0, members.size - 1) : 0;
    tap.packetIn({ roomId: room.id, sourceId: room.sourceId, path, datagram: payload, fanout: sent, dropped: refused === undefined ? others - sent : 0, ...(refused === undefined ? {} : { refused }) });
    if (refused !== undefined || !members || sent === 0) return;
    for (const [to, member] of members) {
      if (to === room.sourceId) continue;
      const onPath = member.datagrams instanceof RelayRoute && member.datagrams.confirmed;
      tap.packetOut({ roomId: room.id, sourceId: room.sourceId, to, path: onPath ? 'udp' : 'quic', size: payload.byteLength + SOURCE_ID_BYTES, datagram: payload });
    }
  }

  /** A media datagram from a peer, on the UDP media path or in QUIC (`path`): the relay's hot path. */
  private onDatagram(peer: Peer, payload: Uint8Array, path: 'udp' | 'quic'): void {
    this.counters.datagramsReceived++;
    if (peer.mode === 'none') {
      this.counters.datagramsUnexpected++;
      return;
    }
    // One member's media is capped before it is fanned out (both media paths come here).
    const now = performance.now();
    if (!peer.mediaPackets.take(now) || !peer.mediaBytes.take(now, payload.byteLength)) {
      this.counters.refused['media-rate']++;
      if (this.opts.onEvent) this.reportDrop(() => ({ type: 'relay:refused', peer: peer.label, reason: 'media-rate', detail: 'over the member media cap' }));
      if (this.tap !== undefined && peer.room) this.tapPacket(peer.room, payload, path, 0, 'media-rate');
      return;
    }
    if (peer.mode === 'room' && peer.room) {
      const sent = this.rooms.forward(peer.room.id, peer.room.sourceId, payload);
      // The debug tap (./debug-tap.ts): off, this check is all it costs.
      if (this.tap !== undefined) this.tapPacket(peer.room, payload, path, sent);
      return;
    }
    if (peer.mode === 'echo') {
      if (peer.datagrams.send(payload)) this.counters.datagramsEchoed++;
      else this.counters.echoDropped++;
      return;
    }
    this.counters.datagramsUnexpected++;
  }
}

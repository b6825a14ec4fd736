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
import { RoomManager, SOURCE_ID_BYTES, sourcePrefixOf, type RoomMember } from './rooms.js';
import { Presence, type PresencePeer } from './presence.js';
import { encodeSignal, isCallSignal, MAX_ANNOUNCEMENT_BYTES, MAX_REQUEST_PAYLOAD_BYTES, MAX_ROOM_SIGNAL_BYTES, RELAY_CLOSE_REFUSED } from '../wire/signal.js';
import { verifyAnnouncement, type MemberAnnouncement } from '../crypto/sender-keys.js';
import { RelayMediaPath, RelayRoute, tokenKey } from '../transport/udp-media.js';
import { MediaPlane, MOVED_CHECK_MS, MOVED_REPLAN_MS, PLAN_REFRESH_MS, type PlaneCounters, type RoutePlan } from './media-plane.js';
import { DebugTap, type DebugTapOptions } from './debug-tap.js';
import { mediaPathClass, pathCheckClass, stunClass, type Demux, type DemuxStats } from '../transport/demux.js';
import { rawUdpSocket, setSocketGateLimits } from '../transport/quic.js';
import { resolveRelayLimits, type RefusalReason, type RelayLimits } from './limits.js';
import { LATENCY_SAMPLE_EVERY, RelayMetricsRegistry, type RelayMetrics } from './metrics.js';
import { StunServer, type StunServerLimits } from '../nat/stun-server.js';
import type { Endpoint } from '../nat/stun.js';
import { AuthValidator, tokenProblem, type AuthSettings } from './auth.js';
import { resolveRoomAcls, type RoomAcl, type RoomAclTable } from './access.js';
import { Federation, type FederationEvent, type FederationPeer } from '../federation/federation.js';
import type { Link } from '../federation/link.js';
import { linkCredentials } from '../federation/proof.js';

/** The client protocol (hello/hello-ack): 2 since source ids are 32-bit (core/wire/room-source.ts). */
export const RELAY_PROTOCOL_VERSION = 2;


export interface RelayOptions {
  listen: HostPort;
  tls: TlsMaterial;
  /** Certificate fingerprint announced in hello-ack (clients verify it in TLS anyway). */
  fingerprint: string;
  /**
   * The high 16 bits of the source ids this relay gives its room members (0-65535;
   * core/wire/room-source.ts). Default: sourcePrefixOf(fingerprint). Relays of a federation
   * need different ones (docs/federation.md).
   */
  sourcePrefix?: number;
  /**
   * Offer members the UDP media path (core/transport/udp-media.ts; default true). Off, all
   * media stays in QUIC datagrams.
   */
  udpMedia?: boolean;
  /**
   * Forward room media on the UDP media path in a thread of its own (./media-plane.ts; default
   * true, where it can run: 64-bit Linux). Off, or where it cannot start, the main thread
   * forwards everything.
   */
  mediaPlane?: boolean;
  /** What one client may make the relay do or hold (./limits.ts); unset ones keep their defaults. */
  limits?: Partial<RelayLimits>;
  /**
   * Answer STUN Binding requests on the relay's port (core/nat/stun-server.ts; default on).
   * With `alternate` (a second address of this host, and optionally a second port) it is an
   * RFC 5780 server on four addresses.
   */
  stun?: false | { alternate?: { address: string; port?: number }; limits?: Partial<StunServerLimits> };
  /** Require a token every client has an auth service validate (./auth.ts); unset: no tokens. */
  auth?: AuthSettings;
  /** Rooms restricted to listed identities (./access.ts). */
  roomAcls?: RoomAcl[];
  /**
   * Log every media packet of a room (or all rooms) with its header metadata, rate-limited
   * (./debug-tap.ts). Off (absent), it costs one check per media packet.
   */
  debugTap?: DebugTapOptions;
  /**
   * Relay federation (docs/federation.md, core/federation/): relays to dial, fingerprints to
   * accept links from, and the ids (hashes) of the rooms shared with them. Absent: none.
   */
  federation?: { peers: FederationPeer[]; trusted: string[]; globalRooms: string[] };
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
  /**
   * A connection's token was accepted (`via` the service, the cache, or fail-open when the
   * service was unavailable); fingerprint and alias are what the service said, if anything.
   */
  | { type: 'relay:authenticated'; peer: string; via: 'service' | 'cache' | 'fail-open'; fingerprint?: string; alias?: string; detail?: string }
  | { type: 'relay:signal-dropped'; peer: string; reason: string; detail: string; suppressed?: number }
  | { type: 'relay:refused'; peer: string; reason: RefusalReason; detail: string; suppressed?: number }
  /** Handling one datagram failed inside the QUIC library; the relay kept serving. */
  | { type: 'relay:socket-error'; peer: string; error: string; suppressed?: number }
  /** The media plane thread (./media-plane.ts) did not start (`off`) or stopped working (`failed`): the main thread forwards all media. */
  | { type: 'relay:media-plane'; state: 'off' | 'failed'; detail: string }
  /** Draining started (startDrain): every connection was sent the drain notice. */
  | { type: 'relay:draining'; deadlineMs: number; connections: number; sessions: number }
  /** Relay links (core/federation/federation.ts). */
  | FederationEvent;

/** The relay's counters as one document (`Relay.metrics`; ./metrics.ts owns them). */
export type { RelayMetrics } from './metrics.js';

const ROOM_ID_RE = /^[0-9a-f]{32}$/;
const FINGERPRINT_RE = /^[0-9a-f]{4}(?::[0-9a-f]{4}){15}$/;

type Mode = 'none' | 'echo' | 'room';

/** Token checks one connection may ask for (each hello with a token is one). */
const MAX_TOKEN_ATTEMPTS = 3;

/** Where a connection stands with the relay's token auth. */
interface PeerAuth {
  state: 'none' | 'checking' | 'ok' | 'refused';
  attempts: number;
  /** Why its token was refused (repeated to what it asks for next). */
  refusal?: { code: string; message: string };
}

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
  readonly auth: PeerAuth;
  /** The connection's own QUIC datagrams (a relay link sends its frames there, never on the UDP path). */
  readonly quic: DatagramChannel;
  /** Set once the connection proved it is a peer relay (core/federation/): a relay link. */
  link?: Link;
}

/** Signal-stream drops that are refusals of a limit, and the reason they count under. */
const SIGNAL_REFUSALS: Partial<Record<SignalDropReason, RefusalReason>> = {
  'too-large': 'signal-too-large',
  'too-many-streams': 'signal-streams',
  memory: 'signal-memory',
  timeout: 'signal-timeout',
};

export class Relay {
  /** Every counter of this relay, and its Prometheus export (./metrics.ts). */
  private readonly counters = new RelayMetricsRegistry();
  private readonly peers = new Set<Peer>();
  private readonly connectionsBySource = new Map<string, number>();
  /** Join/leave budget of each source with open connections (dropped with its last connection). */
  private readonly joinsBySource = new Map<string, TokenBucket>();
  private readonly rooms: RoomManager;
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
  /** The token checker (kept when auth is turned off, for its counters). */
  private authValidator?: AuthValidator;
  private authEnabled = false;
  private roomAcls: RoomAclTable;
  /** When draining started (performance.now()); undefined while the relay takes new sessions. */
  private drainingSince: number | undefined;

  /** The debug tap, if on (./debug-tap.ts). */
  private readonly tap: DebugTap | undefined;
  /** Links to other relays and global rooms, if configured (core/federation/). */
  private federation?: Federation;
  /** The media plane thread, while it runs (./media-plane.ts). */
  private plane?: MediaPlane;
  /** What media plane threads stopped by setMediaPlane() counted (metrics stay monotonic). */
  private readonly retiredPlanes: PlaneCounters = { received: 0, bytesReceived: 0, forwarded: 0, bytesForwarded: 0, sendDropped: 0, rejected: 0, mediaRate: 0, handedOver: 0, batches: 0 };
  private planTimer?: NodeJS.Timeout;
  private planQueued = false;
  /** Each route's QUIC address as the plane was last told it. */
  private readonly plannedAddress = new Map<RelayRoute, { host: string; port: number }>();
  /** When a moved address last asked for a replan (performance.now()). */
  private movedReplanAt = -Infinity;
  /** Small numbers for the rooms the media plane forwards (stable while a room lives). */
  private readonly roomNumbers = new Map<string, number>();
  private nextRoomNumber = 1;

  private constructor(private readonly opts: RelayOptions) {
    this.rooms = new RoomManager(this.counters.rooms, opts.sourcePrefix ?? sourcePrefixOf(opts.fingerprint));
    this.limits = resolveRelayLimits(opts.limits);
    this.tap = opts.debugTap ? new DebugTap(opts.debugTap) : undefined;
    this.roomAcls = resolveRoomAcls(opts.roomAcls);
    if (opts.auth) {
      this.authValidator = new AuthValidator(opts.auth);
      this.authEnabled = true;
    }
    this.presence = new Presence({
      limits: this.limits,
      relayFingerprint: opts.fingerprint,
      refuse: (peer, reason, detail) => this.refuse(peer.label, reason, detail),
      onRegistered: (peer, fingerprint, replaced) => this.emit({ type: 'relay:registered', peer: peer.label, fingerprint, replaced }),
      // Callees on other relays of the federation (core/federation/calls.ts).
      remote: () => this.federation?.calls,
    });
    this.signalBudget = new SignalMemoryBudget(this.limits.signalBufferTotalBytes);
    this.mediaPath = new RelayMediaPath(() => {
      if (!this.server) throw new Error('relay not started');
      return rawUdpSocket(this.server.socket);
    }, this.counters.mediaPath);
    this.rooms.onChange = () => this.replan();
    this.mediaPath.onRouteChange = () => this.replan();
    this.counters.attach({
      plane: () => this.planeMetrics(),
      gate: () => this.gate,
      stun: () => this.stun?.stats,
      demuxDropped: () => this.droppedByDemux(),
      roomsOpen: () => this.rooms.roomCount,
      roomMembers: () => this.rooms.memberCount,
      presence: () => this.presence.stats,
      auth: () => this.authValidator?.stats,
      federation: () => this.federation?.stats,
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
    if (opts.udpMedia !== false && opts.mediaPlane !== false) relay.startMediaPlane();
    if (opts.federation) {
      relay.federation = new Federation({
        credentials: linkCredentials(opts.tls),
        ...opts.federation,
        rooms: relay.rooms,
        presence: relay.presence,
        callRoomAllowed: (room: string) => !relay.roomAcls.has(room),
        draining: () => relay.draining,
        onCarriedChange: () => relay.replan(),
        ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
      });
      relay.federation.start();
    }
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
    return this.counters.snapshot();
  }

  /** The owner of the relay's counters and its Prometheus registry. */
  get metricsRegistry(): RelayMetricsRegistry {
    return this.counters;
  }

  /**
   * Change token auth and room ACLs while running (SIGHUP). `auth`: new settings, or false to
   * stop requiring tokens; `roomAcls`: the whole new list ([] lifts every restriction). Both are
   * checked before either applies (a bad one changes nothing: UsageError). They apply to what
   * connections ask from then on: connections already admitted stay admitted, and members
   * already in a room stay until they leave (a member no longer allowed is refused when it
   * joins again, a reconnect included).
   */
  setAccess(access: { auth?: AuthSettings | false; roomAcls?: RoomAcl[] }): void {
    const acls = access.roomAcls === undefined ? undefined : resolveRoomAcls(access.roomAcls);
    if (access.auth !== undefined && access.auth !== false) {
      if (this.authValidator) this.authValidator.update(access.auth);
      else this.authValidator = new AuthValidator(access.auth);
      this.authEnabled = true;
    } else if (access.auth === false) {
      this.authEnabled = false;
    }
    if (acls !== undefined) this.roomAcls = acls;
  }

  /**
   * Change the federation while running (SIGHUP): peers to dial, relays to accept, global
   * rooms (core/federation/federation.ts `update`). All empty with no federation yet: nothing
   * to do; the first non-empty one starts it.
   */
  setFederation(next: { peers: FederationPeer[]; trusted: string[]; globalRooms: string[] }): void {
    if (this.federation) {
      this.federation.update(next);
      return;
    }
    if (next.peers.length === 0 && next.trusted.length === 0 && next.globalRooms.length === 0) return;
    this.federation = new Federation({
      credentials: linkCredentials(this.opts.tls),
      peers: [],
      trusted: [],
      globalRooms: [],
      rooms: this.rooms,
      presence: this.presence,
      callRoomAllowed: (room: string) => !this.roomAcls.has(room),
      draining: () => this.draining,
      onCarriedChange: () => this.replan(),
      ...(this.opts.onEvent ? { onEvent: this.opts.onEvent } : {}),
    });
    this.federation.start();
    this.federation.update(next);
  }

  /** Token auth in force (undefined: none) and the restricted rooms' ids. */
  get access(): { auth?: Readonly<AuthSettings>; restrictedRooms: string[] } {
    return {
      ...(this.authEnabled && this.authValidator ? { auth: { ...this.authValidator.current } } : {}),
      restrictedRooms: [...this.roomAcls.keys()],
    };
  }

  /** The limits in force. */
  get currentLimits(): Readonly<RelayLimits> {
    return this.limits;
  }

  /**
   * Change limits while running (`wzp relay` reloading its config file on SIGHUP); the ones
   * left out keep their values. All are checked first (resolveRelayLimits: a bad one throws a
   * UsageError and nothing changes). Returns the names of the limits whose value changed.
   *
   * Every limit applies from now on, to open connections too: the per-connection and
   * per-address token buckets (joins, signals, signal bytes, member media, call offers) take
   * the new rate and burst and keep the tokens they hold, capped at the new burst; the gate's
   * connection, handshake and Retry limits apply to the next datagram; counts (connections or
   * members per address, room size, registrations, calls, the signal memory budget) are
   * compared with the new value at the next request. A lower limit closes nothing that is
   * already open: a room over a lowered size keeps its members, an address over a lowered
   * connection limit keeps its connections, and only new ones are refused. One exception:
   * signalBufferBytes (unfinished signal frames per connection) is handed to a connection's
   * signal reader when it opens, so it applies to new connections only.
   */
  setLimits(partial: Partial<RelayLimits>): (keyof RelayLimits)[] {
    const merged: Partial<RelayLimits> = { ...this.limits };
    for (const [name, value] of Object.entries(partial) as [keyof RelayLimits, number | undefined][]) if (value !== undefined) merged[name] = value;
    const next = resolveRelayLimits(merged);
    const changed = (Object.keys(next) as (keyof RelayLimits)[]).filter((k) => next[k] !== this.limits[k]);
    if (changed.length === 0) return changed;
    // In place: Presence holds this same object and reads it where each limit is used.
    Object.assign(this.limits, next);
    const l = this.limits;
    this.signalBudget.limit = l.signalBufferTotalBytes;
    for (const peer of this.peers) {
      peer.joins.reconfigure(l.joinsPerMinute / 60, l.joinBurst);
      peer.signals.reconfigure(l.signalsPerSecond, l.signalBurst);
      peer.signalBytes.reconfigure(l.signalBytesPerSecond, 4 * l.signalBytesPerSecond);
      peer.mediaPackets.reconfigure(l.memberPacketsPerSecond, l.memberPacketsPerSecond);
      peer.mediaBytes.reconfigure((l.memberKbps * 1000) / 8, (l.memberKbps * 1000) / 8);
    }
    for (const bucket of this.joinsBySource.values()) bucket.reconfigure(l.sourceJoinsPerMinute / 60, l.sourceJoinBurst);
    this.presence.limitsChanged();
    this.plane?.setLimits(this.planeLimits());
    if (this.server) setSocketGateLimits(this.server.socket, l);
    return changed;
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
    demux.sampleArrivals = LATENCY_SAMPLE_EVERY;
    if (this.opts.udpMedia !== false) demux.register(mediaPathClass((data, from) => this.mediaPath.handle(data, from)));
    // Registered before the STUN server is up (it binds its other sockets first): until then its packets are stray.
    if (this.opts.stun !== false) demux.register(stunClass((data, from) => (this.stun ? this.stun.handle(data, from) : this.counters.strayUdp++)));
    demux.register(pathCheckClass());
  }

  /**
   * The relay is draining (startDrain): it refuses new joins, registrations and call offers
   * (reason `draining`) and lets the sessions it has go on. `/readyz` reads it.
   */
  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  /**
   * What a draining relay waits for: connections in a room or an echo test, and 1:1 calls it
   * tracks (ringing or answered). A connection that is only registered (a listener) holds
   * nothing: it was told to move and may go with the relay.
   */
  get sessionsInProgress(): number {
    let n = this.presence.stats.callsOpen;
    for (const peer of this.peers) if (peer.mode !== 'none') n++;
    return n;
  }

  /**
   * Stop taking new sessions: from now on joins, registrations and call offers are refused
   * with `draining`, and every connected client is sent the drain notice (a `draining` push
   * with `deadlineMs`, when the relay will stop at the latest) so that one that knows
   * another relay moves there now. The sessions in progress go on. Once only; the caller
   * (src/services/relay-drain.ts) decides when to stop.
   */
  startDrain(deadlineMs: number): void {
    if (this.drainingSince !== undefined) return;
    this.drainingSince = performance.now();
    const deadline = Math.max(0, Math.min(0xffff_ffff, Math.round(deadlineMs)));
    const frame = encodeSignal({ type: 'draining', deadlineMs: deadline });
    // Not to relay links: their members leave through them as they go.
    for (const peer of this.peers) if (!peer.link) void pushFrame(peer.connection, frame);
    this.emit({ type: 'relay:draining', deadlineMs: deadline, connections: this.peers.size, sessions: this.sessionsInProgress });
  }

  /** Refuse what starts a new session while draining (a join, a registration, a call offer). */
  private drainRefusal(peer: Peer, what: string): KnownSignal[] {
    return this.refusal(peer, 'draining', 'draining', `relay is draining (shutting down): no new ${what}; use another relay`);
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
    clearInterval(this.planTimer);
    await this.plane?.close();
    this.authValidator?.close();
    await this.federation?.stop();
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
    this.counters.refuse(reason);
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
    this.counters.handshakesOk++;
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
          this.counters.udpReceived++;
          this.counters.udpBytesReceived += payload.byteLength;
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
        room: () => peer.room?.id,
      },
      auth: { state: 'none', attempts: 0 },
      quic: datagrams,
    };
    this.peers.add(peer);
    this.counters.connectionsOpen++;
    this.counters.connectionsTotal++;
    this.emit({ type: 'relay:connection-open', peer: peer.label });

    datagrams.onDatagram((payload) => {
      if (peer.link) {
        this.federation?.onLinkDatagram(peer.link, payload);
        return;
      }
      this.counters.quicReceived++;
      this.counters.quicBytesReceived += payload.byteLength;
      this.onDatagram(peer, payload, 'quic');
    });
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
          if (peer.link) this.federation?.linkClosed(peer.link, 'connection closed');
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

  private onSignal(peer: Peer, msg: KnownSignal, payloadBytes: number): KnownSignal[] | Promise<KnownSignal[]> {
    // A relay link's messages (membership, room signals) are the federation's, with its own bounds.
    if (peer.link) return this.federation ? this.federation.onLinkSignal(peer.link, msg) : [];
    this.counters.signalsReceived++;
    const now = performance.now();
    if (!peer.signals.take(now)) {
      return this.refusal(peer, 'signal-rate', 'rate-limited', `more than ${this.limits.signalsPerSecond} requests a second`);
    }
    if (!peer.signalBytes.take(now, payloadBytes)) {
      return this.refusal(peer, 'signal-bytes', 'rate-limited', `more than ${this.limits.signalBytesPerSecond} bytes of requests a second`);
    }
    // Before a token is accepted, a connection may say hello, ping, reflect and leave: nothing
    // that holds anything on the relay or reaches anyone else.
    if (msg.type === 'join' || msg.type === 'room-signal' || msg.type === 'register-challenge' || msg.type === 'register' || isCallSignal(msg)) {
      const denied = this.accessDenied(peer);
      if (denied) return denied;
    }
    switch (msg.type) {
      case 'hello':
        return this.hello(peer, msg);
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
        if (this.draining) return this.drainRefusal(peer, 'joins');
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
        this.federation?.roomSignal(peer.room.id, peer.room.sourceId, msg.to, msg.payload);
        return [];
      case 'register-challenge':
        if (this.draining) return this.drainRefusal(peer, 'registrations');
        return [this.presence.challenge(peer.presence)];
      case 'register':
        if (this.draining) return this.drainRefusal(peer, 'registrations');
        return [this.presence.register(peer.presence, msg)];
      case 'link-hello':
        if (!this.federation) return this.refusal(peer, 'link', 'link-not-trusted', 'this relay has no federation configured');
        if (peer.mode !== 'none') return this.refusal(peer, 'link', 'link-busy', 'a connection in a room or echo test cannot become a relay link');
        return this.federation.acceptHello(peer, msg, peer.label);
      case 'link-auth': {
        if (!this.federation) return this.refusal(peer, 'link', 'link-not-trusted', 'this relay has no federation configured');
        if (peer.mode !== 'none') return this.refusal(peer, 'link', 'link-busy', 'a connection in a room or echo test cannot become a relay link');
        const { replies, link } = this.federation.acceptAuth(peer, msg, peer.connection, peer.quic, peer.label);
        if (link) {
          // From now on its datagrams and signals go to the federation, not to rooms or presence.
          this.leaveRoom(peer);
          this.presence.disconnect(peer.presence);
          peer.datagrams.disable();
          peer.link = link;
        }
        return replies;
      }
      default:
        // A call in progress goes on (its answer, hang-up, candidates); a new one is refused.
        if (msg.type === 'offer' && this.draining) return this.drainRefusal(peer, 'calls');
        if (isCallSignal(msg)) {
          // An offer to a callee on another relay is answered once the federation found it (or not).
          const reply = this.presence.route(peer.presence, msg);
          return reply instanceof Promise ? reply.then((r) => [r]) : [reply];
        }
        // A known message that a relay does not accept from clients (e.g. pong): ignore.
        this.counters.signalsUnknown++;
        this.reportDrop(() => ({ type: 'relay:signal-dropped', peer: peer.label, reason: 'unexpected-type', detail: msg.type }));
        return [];
    }
  }

  /**
   * Answer a hello. Without auth, or without a token, at once (a connection without a token
   * may still ping and reflect: it is refused what needs one). With a token, once the auth
   * service (or the cache) has answered: a refused token is an error answer.
   */
  private async hello(peer: Peer, msg: Extract<KnownSignal, { type: 'hello' }>): Promise<KnownSignal[]> {
    if (msg.version !== RELAY_PROTOCOL_VERSION) {
      // Another version frames media differently (2: 32-bit source ids): refuse it plainly.
      this.refuse(peer.label, 'protocol-version', `client protocol ${msg.version}`);
      return [{ type: 'error', code: 'protocol-version', message: `this relay speaks wzp protocol ${RELAY_PROTOCOL_VERSION}, the client ${msg.version}: run the same wzp release on both` }];
    }
    const ack: KnownSignal[] = [{ type: 'hello-ack', version: RELAY_PROTOCOL_VERSION, relayFingerprint: this.opts.fingerprint }];
    const validator = this.authValidator;
    if (!this.authEnabled || !validator || msg.token === undefined || peer.auth.state === 'ok') return ack;
    const problem = tokenProblem(msg.token);
    if (problem !== undefined) return this.authRefusal(peer, 'token-rejected', `token rejected: ${problem}`);
    if (peer.auth.state === 'checking') return this.refusal(peer, 'auth', 'rate-limited', 'one token check at a time');
    if (peer.auth.attempts >= MAX_TOKEN_ATTEMPTS) return this.refusal(peer, 'auth', 'rate-limited', `at most ${MAX_TOKEN_ATTEMPTS} token checks per connection`);
    peer.auth.attempts++;
    peer.auth.state = 'checking';
    const verdict = await validator.check(msg.token);
    if (!this.peers.has(peer)) return [];
    switch (verdict.result) {
      case 'ok':
        this.admit(peer, verdict.cached ? 'cache' : 'service', { fingerprint: verdict.fingerprint, alias: verdict.alias });
        return ack;
      case 'refused':
        return this.authRefusal(peer, 'token-rejected', 'token rejected by the auth service');
      case 'error':
        if (validator.current.failOpen) {
          this.admit(peer, 'fail-open', { detail: verdict.detail });
          return ack;
        }
        return this.authRefusal(peer, 'auth-unavailable', 'auth service unavailable', verdict.detail);
      case 'busy':
        peer.auth.state = 'none';
        return this.refusal(peer, 'auth', 'auth-unavailable', 'auth service busy: too many token checks at once, try again');
    }
  }

  private admit(peer: Peer, via: 'service' | 'cache' | 'fail-open', info: { fingerprint?: string; alias?: string; detail?: string }): void {
    peer.auth.state = 'ok';
    peer.auth.refusal = undefined;
    const extra = Object.fromEntries(Object.entries(info).filter(([, v]) => v !== undefined));
    this.emit({ type: 'relay:authenticated', peer: peer.label, via, ...extra });
  }

  private authRefusal(peer: Peer, code: string, message: string, detail = message): KnownSignal[] {
    peer.auth.state = 'refused';
    peer.auth.refusal = { code, message };
    this.refuse(peer.label, 'auth', detail);
    return [{ type: 'error', code, message }];
  }

  /** The refusal for a connection that may not do this yet (auth on, no accepted token), if any. */
  private accessDenied(peer: Peer): KnownSignal[] | undefined {
    if (!this.authEnabled || peer.auth.state === 'ok') return undefined;
    const r = peer.auth.refusal ?? { code: 'token-required', message: 'token required' };
    return this.refusal(peer, 'auth', r.code, r.message);
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
    const allowed = this.roomAcls.get(msg.room);
    if (allowed !== undefined) {
      // The identity this connection proved (a signed challenge), never the one the join claims.
      const proved = this.presence.fingerprintOf(peer.presence);
      if (proved === undefined) {
        return { type: 'error', code: 'identity-required', message: 'this room is restricted on this relay: prove your identity (register-challenge, register) and join again' };
      }
      if (!allowed.has(proved)) {
        this.refuse(peer.label, 'acl', `room ${msg.room}: ${proved} is not on its list`);
        return { type: 'error', code: 'room-restricted', message: `this room is restricted on this relay; your identity ${proved} is not on its list` };
      }
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
    if (plan.replaced !== undefined) this.federation?.localLeft(msg.room, plan.replaced);
    this.federation?.localJoined(msg.room, member);
    // A party of a call with someone on another relay joining its room: carried to that relay.
    this.federation?.calls?.localJoined(peer.presence, msg.room);
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
    this.federation?.localLeft(id, sourceId);
    this.emit({ type: 'relay:leave', peer: peer.label, room: id, sourceId });
  }

  /**
   * Turn the media plane thread on or off while running (`wzp relay` reloading `media_plane`).
   * Off, the main thread forwards all media from the next packet on; on again, a new thread
   * takes the rooms it can at once. Without the UDP media path it stays off.
   */
  async setMediaPlane(on: boolean): Promise<void> {
    if (on && (this.plane?.state === 'running' || this.opts.udpMedia === false || !this.server)) return;
    const plane = this.plane;
    clearInterval(this.planTimer);
    if (plane) {
      await plane.close();
      const last = plane.counters();
      for (const k of Object.keys(last) as (keyof PlaneCounters)[]) this.retiredPlanes[k] += last[k];
      if (this.plane === plane) this.plane = undefined;
    }
    if (!on) return;
    this.startMediaPlane();
    this.planMedia();
  }

  /** The media plane's state and counters, those of threads stopped before included. */
  private planeMetrics(): { state: 'running' | 'failed' | 'stopped' | 'off'; counters: PlaneCounters } {
    const now = this.plane?.counters();
    const counters = { ...this.retiredPlanes };
    if (now) for (const k of Object.keys(counters) as (keyof PlaneCounters)[]) counters[k] += now[k];
    return { state: this.plane?.state ?? 'off', counters };
  }

  /** Whether the media plane thread forwards room media now. */
  get mediaPlaneRunning(): boolean {
    return this.plane?.state === 'running';
  }

  /** Start the media plane thread on the relay's socket; where it cannot run, say why once and go on without it. */
  private startMediaPlane(): void {
    if (!this.server) return;
    try {
      this.plane = MediaPlane.start(rawUdpSocket(this.server.socket), {
        limits: this.planeLimits(),
        onSlow: (data, from, moved) => {
          this.mediaPath.handle(data, from);
          // A member whose QUIC address moved is the plane's again once the plan has it.
          if (moved && performance.now() - this.movedReplanAt >= MOVED_REPLAN_MS) {
            this.movedReplanAt = performance.now();
            this.replan();
          }
        },
        onLatencyMs: (ms) => this.counters.observeForwardingMs(ms),
        onFailed: (detail) => {
          clearInterval(this.planTimer);
          this.emit({ type: 'relay:media-plane', state: 'failed', detail });
        },
      });
    } catch (err) {
      this.emit({ type: 'relay:media-plane', state: 'off', detail: errorMessage(err) });
      return;
    }
    let ticks = 0;
    this.planTimer = setInterval(() => {
      // Every MOVED_CHECK_MS whether a member's QUIC address moved (a receive-only member
      // sends nothing that would tell the plane); all of the plan every PLAN_REFRESH_MS.
      if (++ticks % Math.round(PLAN_REFRESH_MS / MOVED_CHECK_MS) === 0 || this.addressMoved()) this.planMedia();
    }, MOVED_CHECK_MS);
    this.planTimer.unref();
  }

  /** The media plane's per-member caps: the same as the main thread's (./limits.ts). */
  private planeLimits(): { packetsPerSecond: number; bytesPerSecond: number } {
    return { packetsPerSecond: this.limits.memberPacketsPerSecond, bytesPerSecond: (this.limits.memberKbps * 1000) / 8 };
  }

  /** Rooms or routes changed: tell the media plane once this turn's changes are done. */
  private replan(): void {
    if (this.plane === undefined || this.planQueued) return;
    this.planQueued = true;
    setImmediate(() => {
      this.planQueued = false;
      this.planMedia();
    });
  }

  /** Whether a member with a path token is at another QUIC address than the plane was last told. */
  private addressMoved(): boolean {
    for (const peer of this.peers) {
      const route = peer.datagrams;
      if (route.token === undefined) continue;
      const planned = this.plannedAddress.get(route);
      const now = route.peer.remote();
      if (planned === undefined || planned.host !== now.host || planned.port !== now.port) return true;
    }
    return false;
  }

  /**
   * Tell the media plane every route and which of them it forwards: a member's media goes
   * through the plane when it is in a room, confirmed on the UDP path, and so is every other
   * member of its room, all of them on this relay, the room not carried over relay links and
   * not tapped. Anything else (a QUIC-only member, a global or call room of the federation,
   * the debug tap, echo) the plane hands to the main thread.
   */
  private planMedia(): void {
    const plane = this.plane;
    if (plane === undefined || plane.state !== 'running') return;
    this.plannedAddress.clear();
    const fastRooms = new Map<string, boolean>();
    const fast = (roomId: string): boolean => {
      let ok = fastRooms.get(roomId);
      if (ok !== undefined) return ok;
      ok = this.tap?.matches(roomId) !== true && this.federation?.carries(roomId) !== true;
      const members = this.rooms.room(roomId)?.members;
      if (!members) ok = false;
      else for (const m of members.values()) if (m.remote === true || !(m.datagrams instanceof RelayRoute) || !m.datagrams.confirmed) ok = false;
      fastRooms.set(roomId, ok);
      return ok;
    };
    const plans: RoutePlan[] = [];
    for (const peer of this.peers) {
      const route = peer.datagrams;
      const token = route.token;
      if (token === undefined) continue;
      const remote = route.peer.remote();
      this.plannedAddress.set(route, remote);
      const room = peer.mode === 'room' ? peer.room : undefined;
      const isFast = room !== undefined && route.confirmed && fast(room.id);
      let number = 0;
      if (isFast) {
        number = this.roomNumbers.get(room.id) ?? this.nextRoomNumber++;
        this.roomNumbers.set(room.id, number);
      }
      plans.push({ key: tokenKey(token, 0), token, host: remote.host, port: remote.port, room: number, sourceId: room?.sourceId ?? 0, fast: isFast });
    }
    for (const id of this.roomNumbers.keys()) if (!fastRooms.get(id)) this.roomNumbers.delete(id);
    plane.plan(plans);
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
    if (peer.mode === 'none') {
      this.counters.datagramsUnexpected++;
      return;
    }
    // One member's media is capped before it is fanned out (both media paths come here).
    const now = performance.now();
    if (!peer.mediaPackets.take(now) || !peer.mediaBytes.take(now, payload.byteLength)) {
      this.counters.refuse('media-rate');
      if (this.opts.onEvent) this.reportDrop(() => ({ type: 'relay:refused', peer: peer.label, reason: 'media-rate', detail: 'over the member media cap' }));
      if (this.tap !== undefined && peer.room) this.tapPacket(peer.room, payload, path, 0, 'media-rate');
      return;
    }
    if (peer.mode === 'room' && peer.room) {
      // The arrival stamp of the packet being handled now, if the socket sampled it (./metrics.ts).
      const arrived = this.demux?.arrivedAt ?? 0;
      const sent = this.rooms.forward(peer.room.id, peer.room.sourceId, payload);
      this.federation?.fromLocal(peer.room.sourceId, payload);
      if (arrived > 0) this.counters.observeForwardingMs(performance.now() - arrived);
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

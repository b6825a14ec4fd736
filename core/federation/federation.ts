/**
 * Relay federation (docs/federation.md): links to peer relays, global rooms across them, and
 * media and room signals forwarded over the links exactly once, in any topology.
 *
 * Links. A relay dials each of its [[peers]] (address + fingerprint: the QUIC handshake pins
 * the fingerprint) and accepts links from relays it trusts ([[trusted]] fingerprints, and its
 * [[peers]]' too), which prove their identity in the link hello (./proof.ts). A relay listed
 * as its own peer is skipped. A dropped link is dialled again with jittered exponential
 * back-off (LINK_BACKOFF). At most one link per pair of relays: when two come up (both
 * dialled each other), both relays keep the one the lower fingerprint dialled.
 *
 * Membership. Every member of a global room has an id unique in the federation (`mid`, 64
 * random bits chosen by its relay). Relays announce members over links as distance vectors:
 * (room, mid, its source id, hops, via). A relay picks for each remote
 * member the link it heard it on with the fewest hops (ties: the lower peer fingerprint) as
 * its route, and tells that link `via: true` (poisoned reverse: "I reach it through you"),
 * the others `via: false`. An announcement with `via: true` is never used as a route, and
 * one of MAX_LINK_HOPS hops or more is unreachable, so a withdrawn member cannot loop
 * (bounded count to infinity on longer cycles). A member this relay reaches is in its room
 * as a member (core/relay/rooms.ts `remote`), under its own source id: local clients see
 * remote members join and leave like local ones. A link that drops takes with
 * it everything learned over it; the members it carried leave (or move to another route).
 *
 * Source ids. Unique in the federation: a member's own relay gives it one (its 16-bit
 * source-id prefix, then a member number: core/wire/room-source.ts), and every relay puts it
 * in its room, forwards its media and names it in link frames under that id. Relays with one
 * prefix cannot link (the link hello carries it); a member whose id another member holds
 * here (two relays not linked to each other share a prefix), or that has this relay's own
 * prefix, is not admitted ('source-id-collision', reported with the remedy: another
 * `source_id_prefix` in one relay's config).
 *
 * Forwarding (reverse-path tree per sender). A datagram of member M is forwarded to a link L
 * only if L's peer routes M through this relay (it told us `via: true`) and some member of
 * the room is routed over L; one arriving over a link is taken only from the link that is
 * this relay's route to M (else dropped 'not-on-route'), delivered to the local members and
 * forwarded the same way, never back to the link it came from, with one hop less. Each relay
 * has one route per member, so every relay gets each datagram once: chains, triangles and
 * meshes alike. Broadcast room signals follow the same tree; addressed ones follow the
 * target's route.
 */
import { randomBytes } from 'node:crypto';
import { events as quicEvents } from '@matrixai/quic';
import type { QUICConnection } from '@matrixai/quic';
import { DecodeError, errorMessage } from '../errors.js';
import { LogLimiter } from '../net/rate-limit.js';
import type { DatagramChannel } from '../transport/datagrams.js';
import { connectQuic, expectFingerprint, formatHostPort, type HostPort } from '../transport/quic.js';
import { request, serveSignals, type KnownSignal } from '../transport/signal-stream.js';
import { decodeLinkFrame, MAX_LINK_HOPS } from '../wire/link-frame.js';
import { MAX_SOURCE_ID, MIN_SOURCE_ID, sourceIdPrefix } from '../wire/room-source.js';
import { FINGERPRINT_PATTERN, MAX_ANNOUNCEMENT_BYTES, MAX_REQUEST_PAYLOAD_BYTES, MAX_ROOM_SIGNAL_BYTES, type LinkSignalMessage } from '../wire/signal.js';
import { MAX_ROOM_PARTICIPANTS, type RoomManager, type RoomMember } from '../relay/rooms.js';
import { emptyLinkCounters, Link, LINK_LIMITS, type LinkCounters, type LinkDropReason } from './link.js';
import { linkProofProblem, signLinkProof, type LinkCredentials } from './proof.js';
import { FederatedCalls, type FederatedCallsStats } from './calls.js';
import type { Presence } from '../relay/presence.js';

export { LINK_DROP_REASONS, LINK_LIMITS, type LinkCounters, type LinkDropReason } from './link.js';

/**
 * The link protocol's version (in the link hello: a relay refuses another version). 2: 32-bit
 * source ids, the same on every relay (link frames, link-update `sid`, the hello's `sourcePrefix`).
 */
export const LINK_PROTOCOL_VERSION = 2;
/** Reconnect back-off: the first retry after ~initialMs, doubling to maxMs, each jittered to 50-100%. */
export const LINK_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const;
/** How long a member that left is remembered (its late announcements ignored), and how many at most. */
const TOMBSTONE_MS = 60_000;
/** How long a stopping relay waits for its final withdrawals to be handled. */
const STOP_FLUSH_MS = 1_000;
const MAX_TOMBSTONES = 65_536;
/** QUIC application close code of a link closed on purpose (duplicate, refused, failed). */
export const LINK_CLOSE_CODE = 0x5746;

const ROOM_ID_RE = /^[0-9a-f]{32}$/;
const MID_RE = /^[0-9a-f]{16}$/;

export interface FederationPeer {
  address: HostPort;
  fingerprint: string;
}

export interface FederationOptions {
  /** This relay's certificate fingerprint, certificate and key (./proof.ts). */
  credentials: LinkCredentials;
  /** Relays to dial ([[peers]]). */
  peers: FederationPeer[];
  /** Fingerprints of relays to accept links from ([[trusted]]; [[peers]] are accepted too). */
  trusted: string[];
  /** Room ids (hashes) of the global rooms ([[global_rooms]]). */
  globalRooms: string[];
  rooms: RoomManager;
  /** Cross-relay direct calls (./calls.ts): this relay's presence, and whether a call's room may be carried. */
  presence?: Presence;
  callRoomAllowed?(room: string): boolean;
  /** The relay is draining: offers arriving over links are not delivered (./calls.ts). */
  draining?(): boolean;
  /** The set of rooms carried over links changed (the relay's media plane replans: core/relay/media-plane.ts). */
  onCarriedChange?(): void;
  onEvent?(event: FederationEvent): void;
}

export type FederationEvent =
  | { type: 'federation:link-up'; peer: string; direction: 'in' | 'out' }
  | { type: 'federation:link-down'; peer: string; reason: string }
  | { type: 'federation:dial-failed'; peer: string; address: string; error: string; retryMs: number }
  | { type: 'federation:self-peer'; address: string; fingerprint: string }
  | { type: 'federation:refused'; peer: string; reason: string; suppressed?: number }
  | { type: 'federation:source-id-collision'; peer: string; sourceId: number; detail: string; suppressed?: number };

export interface FederationStats {
  /** Per peer relay known from the config (and any that linked in), in config order. */
  links: LinkCounters[];
  /** Links up now. */
  linksUp: number;
  /** Members of global rooms on this relay, and those it reaches on others. */
  localMembers: number;
  remoteMembers: number;
  /** Link hellos refused (not trusted, bad proof, wrong version, self, duplicate). */
  refused: number;
  /** Cross-relay calls (./calls.ts). */
  calls?: FederatedCallsStats;
}

interface Route {
  sid: number;
  hops: number;
  via: boolean;
}

/** A member of a global room as this relay knows it. */
interface FedMember {
  readonly mid: string;
  readonly room: string;
  readonly local: boolean;
  fingerprint: string;
  announcement?: Record<string, unknown>;
  /** Its source id, the same on every relay (its own relay chose it). */
  readonly sid: number;
  /** Its source id while it is a member of this relay's room (a local member always; a remote one while reachable and admitted). */
  localId: number | undefined;
  /** The link this relay reaches it over (remote members), and in how many hops. */
  best: Link | undefined;
  hops: number;
  readonly routes: Map<Link, Route>;
  /** Links whose peer reaches this member through this relay (they told us `via: true`). */
  readonly downstream: Set<Link>;
}

/** A handshake in progress on an inbound connection (the relay's own per-connection object is the key). */
interface InboundHello {
  claimed: string;
  certificate: string;
  nonce: string;
}

/** A datagram channel that sends nothing: remote members' media goes over links, not to them. */
const NO_CHANNEL: RoomMember['datagrams'] = {
  send: () => false,
  onDatagram: () => undefined,
  maxPayload: () => null,
  purgeIfQueued: () => 0,
  stats: () => ({ sent: 0, received: 0, dropped: 0, droppedTooLarge: 0, purged: 0 }) as unknown as ReturnType<RoomMember['datagrams']['stats']>,
  pathStats: () => undefined,
} as unknown as RoomMember['datagrams'];

export class Federation {
  private readonly self: string;
  private allowed = new Set<string>();
  private globalRooms = new Set<string>();
  private readonly links = new Map<string, Link>();
  private readonly counters = new Map<string, LinkCounters>();
  private readonly members = new Map<string, FedMember>();
  private readonly byLocal = new Map<number, FedMember>();
  /** Local members per global room: a datagram from a link is handed to the room only if it has some. */
  private readonly localCount = new Map<string, number>();
  private readonly inbound = new WeakMap<object, InboundHello>();
  private readonly downWaiters = new Map<string, (() => void)[]>();
  private readonly stopper = new AbortController();
  private readonly refuseLog = new LogLimiter(2, 10);
  private readonly collisionLog = new LogLimiter(1, 5);
  private refusedCount = 0;
  /** The peers being dialled, each with its own loop (stopped when it leaves the config). */
  private readonly dialers = new Map<string, { peer: FederationPeer; stop: AbortController }>();
  private started = false;
  /** Whether the self-peer entry was reported (once per relay run). */
  private selfReported = false;

  /** Cross-relay direct calls (./calls.ts), with a presence to serve. */
  readonly calls: FederatedCalls | undefined;
  /** Call rooms carried for cross-relay calls: room -> call id -> the links it goes over (./calls.ts). */
  private readonly callRooms = new Map<string, Map<string, Link[]>>();

  constructor(private readonly opts: FederationOptions) {
    this.calls = opts.presence
      ? new FederatedCalls({
          presence: opts.presence,
          links: () => this.links.values(),
          carryCallRoom: (callId, room, links) => this.carryCallRoom(callId, room, links),
          callRoomAllowed: (room) => opts.callRoomAllowed?.(room) ?? true,
          draining: () => opts.draining?.() ?? false,
          roomInUse: (room) => [...(opts.rooms.room(room)?.members.values() ?? [])].some((m) => m.remote !== true),
          reannounce: (room, link) => {
            for (const m of this.members.values()) {
              if (m.room !== room) continue;
              link.told.delete(m.mid);
              this.advertiseOn(m, link);
            }
          },
        })
      : undefined;
    this.self = opts.credentials.fingerprint;
    this.configure(opts);
  }

  /** Start dialling the peers (each in its own loop until stop(), or until it leaves the config). */
  start(): void {
    this.started = true;
    for (const d of this.dialers.values()) void this.dialLoop(d.peer, AbortSignal.any([this.stopper.signal, d.stop.signal]));
  }

  /**
   * Change the peers, trusted relays and global rooms while running (a config reload). A peer
   * that left (or whose address changed) is no longer dialled; a link to a relay no longer in
   * [[peers]] or [[trusted]] is closed (what it carried leaves); a new peer is dialled. A room
   * that stops being global is withdrawn from the links and its remote members leave; one
   * that becomes global is announced with the members it has here.
   */
  update(next: { peers: FederationPeer[]; trusted: string[]; globalRooms: string[] }): void {
    this.configure(next);
  }

  private configure(next: { peers: FederationPeer[]; trusted: string[]; globalRooms: string[] }): void {
    const peers: FederationPeer[] = [];
    for (const p of next.peers) {
      if (p.fingerprint === this.self) {
        // Logged once: a config pasted into every relay of a federation names each one too.
        if (!this.selfReported) this.emit({ type: 'federation:self-peer', address: formatHostPort(p.address), fingerprint: p.fingerprint });
        this.selfReported = true;
        continue;
      }
      if (!peers.some((q) => q.fingerprint === p.fingerprint)) peers.push(p);
    }
    const byFp = new Map(peers.map((p) => [p.fingerprint, p]));
    for (const [fp, d] of [...this.dialers]) {
      const n = byFp.get(fp);
      if (n === undefined || formatHostPort(n.address) !== formatHostPort(d.peer.address)) {
        d.stop.abort();
        this.dialers.delete(fp);
      }
    }
    this.allowed = new Set([...next.trusted.filter((fp) => fp !== this.self), ...byFp.keys()]);
    for (const fp of this.allowed) this.countersOf(fp);
    for (const link of [...this.links.values()]) if (!this.allowed.has(link.peer)) this.closeLink(link, 'no longer in [[peers]] or [[trusted]]');
    for (const p of peers) {
      if (this.dialers.has(p.fingerprint)) continue;
      const d = { peer: p, stop: new AbortController() };
      this.dialers.set(p.fingerprint, d);
      if (this.started) void this.dialLoop(p, AbortSignal.any([this.stopper.signal, d.stop.signal]));
    }
    const rooms = new Set(next.globalRooms);
    for (const room of this.globalRooms) if (!rooms.has(room)) this.dropRoom(room);
    const added = [...rooms].filter((r) => !this.globalRooms.has(r));
    const changed = added.length > 0 || rooms.size !== this.globalRooms.size;
    this.globalRooms = rooms;
    if (changed) this.opts.onCarriedChange?.();
    for (const room of added) {
      for (const member of this.opts.rooms.room(room)?.members.values() ?? []) if (member.remote !== true) this.localJoined(room, member);
    }
  }

  /** A room is no longer global: withdraw its members from the links, and its remote members leave here. */
  private dropRoom(room: string): void {
    for (const m of [...this.members.values()]) {
      if (m.room !== room) continue;
      if (m.local) {
        if (m.localId !== undefined) this.byLocal.delete(m.localId);
        m.localId = undefined;
        adjust(this.localCount, room, -1);
      } else {
        if (m.best) adjust(m.best.roomRoutes, room, -1);
        m.best = undefined;
        this.removeHere(m);
        for (const [link, r] of m.routes) if (link.rx.get(r.sid) === m) link.rx.delete(r.sid);
        m.routes.clear();
      }
      m.downstream.clear();
      this.advertise(m);
      this.members.delete(m.mid);
    }
  }

  /** Whether members of `roomId` go over links: a global room, or a call's room. */
  carries(roomId: string): boolean {
    return this.globalRooms.has(roomId) || this.callRooms.has(roomId);
  }

  /** Whether `roomId` goes over `link`: a global room goes over every link, a call's room over its call's links. */
  private carriesOn(roomId: string, link: Link): boolean {
    if (this.globalRooms.has(roomId)) return true;
    for (const links of this.callRooms.get(roomId)?.values() ?? []) if (links.includes(link)) return true;
    return false;
  }

  /**
   * Carry a call's room over `links` (from ./calls.ts, when a party joined it), or stop
   * (`room` undefined: the call ended). Bounded by the calls per link. A room that is global
   * already is left as it is.
   */
  private carryCallRoom(callId: string, room: string | undefined, links: Link[]): void {
    if (room === undefined) {
      for (const [r, calls] of this.callRooms) {
        if (!calls.delete(callId) || calls.size > 0) continue;
        this.callRooms.delete(r);
        if (!this.globalRooms.has(r)) this.dropRoom(r);
        this.opts.onCarriedChange?.();
      }
      return;
    }
    if (this.globalRooms.has(room)) return;
    const fresh = !this.callRooms.has(room);
    let calls = this.callRooms.get(room);
    if (!calls) this.callRooms.set(room, (calls = new Map()));
    calls.set(callId, links);
    if (fresh) this.opts.onCarriedChange?.();
    if (fresh) {
      for (const member of this.opts.rooms.room(room)?.members.values() ?? []) if (member.remote !== true) this.localJoined(room, member);
    } else {
      for (const m of this.members.values()) if (m.room === room) for (const link of links) this.advertiseOn(m, link);
    }
  }

  /** Whether `roomId` is a global room here (cheap: the relay asks per join). */
  isGlobal(roomId: string): boolean {
    return this.globalRooms.has(roomId);
  }

  get stats(): FederationStats {
    let local = 0;
    let remote = 0;
    for (const m of this.members.values()) {
      if (m.local) local++;
      else if (m.localId !== undefined) remote++;
    }
    for (const [fp, c] of this.counters) {
      const link = this.links.get(fp);
      c.up = link !== undefined;
      if (link) c.direction = link.direction;
      c.members = link ? link.rx.size : 0;
    }
    return {
      links: [...this.counters.values()],
      linksUp: this.links.size,
      localMembers: local,
      remoteMembers: remote,
      refused: this.refusedCount,
      ...(this.calls ? { calls: this.calls.stats } : {}),
    };
  }

  /**
   * Stop: this relay's members leave the other relays' rooms at once (final withdrawals,
   * given up to STOP_FLUSH_MS to be handled), rather than when the links time out and
   * by counting to infinity over the routes that remain; then the links close.
   */
  async stop(): Promise<void> {
    this.stopper.abort();
    this.calls?.stop();
    const local = [...this.members.values()].filter((m) => m.local);
    if (local.length > 0 && this.links.size > 0) {
      for (const m of local) {
        for (const link of this.links.values()) link.sendEntry({ mid: m.mid, gone: true, final: true });
      }
      await Promise.race([Promise.all([...this.links.values()].map((l) => l.idle())), new Promise((r) => setTimeout(r, STOP_FLUSH_MS))]);
    }
    for (const link of [...this.links.values()]) this.closeLink(link, 'relay stopping');
    for (const waiters of this.downWaiters.values()) for (const w of waiters) w();
    this.downWaiters.clear();
  }

  // --- links: dialling ---------------------------------------------------------------

  private async dialLoop(peer: FederationPeer, signal: AbortSignal): Promise<void> {
    const address = formatHostPort(peer.address);
    let attempt = 0;
    let lastError = '';
    while (!signal.aborted) {
      if (this.links.has(peer.fingerprint)) {
        // Linked (possibly dialled by the peer): wait for it to drop.
        await this.linkDown(peer.fingerprint, signal);
        attempt = 0;
        if (signal.aborted) return;
        await sleep(jitter(LINK_BACKOFF.initialMs), signal);
        continue;
      }
      try {
        const link = await this.dial(peer, signal);
        if (link) {
          attempt = 0;
          lastError = '';
          continue;
        }
      } catch (err) {
        if (signal.aborted) return;
        const base = Math.min(LINK_BACKOFF.maxMs, LINK_BACKOFF.initialMs * 2 ** attempt);
        attempt = Math.min(attempt + 1, 16);
        const wait = jitter(base);
        const error = errorMessage(err);
        // Logged when it changes (a peer down for a day is one line, not thousands).
        if (error !== lastError) this.emit({ type: 'federation:dial-failed', peer: peer.fingerprint, address, error, retryMs: Math.round(wait) });
        lastError = error;
        await sleep(wait, signal);
      }
    }
  }

  /** Resolves when the link to `fp` is down (or `signal` aborts). */
  private linkDown(fp: string, signal: AbortSignal): Promise<void> {
    if (!this.links.has(fp) || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.downWaiters.get(fp) ?? [];
      list.push(resolve);
      this.downWaiters.set(fp, list);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  /** Dial one peer and bring the link up; undefined if a link to it came up meanwhile. */
  private async dial(peer: FederationPeer, signal: AbortSignal): Promise<Link | undefined> {
    const address = formatHostPort(peer.address);
    const client = await connectQuic({ relay: peer.address, verify: expectFingerprint(peer.fingerprint, address), signal });
    let link: Link | undefined;
    let ready!: () => void;
    const readyP = new Promise<void>((r) => (ready = r));
    serveSignals(
      client.connection,
      {
        handle: async (msg) => {
          await readyP;
          return link && !link.closed ? this.onLinkSignal(link, msg) : [];
        },
        onDropped: () => {
          if (link) link.counters.drops['unexpected-signal']++;
        },
      },
      { maxPayloadBytes: MAX_REQUEST_PAYLOAD_BYTES, maxConcurrentStreams: 16, readTimeoutMs: LINK_LIMITS.messageTimeoutMs },
    );
    client.datagrams.onDatagram((d) => {
      if (link && !link.closed) this.onLinkDatagram(link, d);
    });
    try {
      const challenge = await request(client.connection, {
        type: 'link-hello',
        version: LINK_PROTOCOL_VERSION,
        fingerprint: this.self,
        certificate: Buffer.from(this.opts.credentials.certDer).toString('base64'),
        sourcePrefix: this.opts.rooms.sourcePrefix,
      });
      if (challenge.type === 'error') throw new Error(`${address} refused the link: ${challenge.code}: ${challenge.message}`);
      if (challenge.type !== 'link-challenge') throw new Error(`${address} answered the link hello with ${challenge.type} (not a wzp relay with federation?)`);
      if (challenge.version !== LINK_PROTOCOL_VERSION) throw new Error(`${address} speaks link protocol version ${challenge.version}, this relay ${LINK_PROTOCOL_VERSION}`);
      if (challenge.fingerprint !== peer.fingerprint) throw new Error(`${address} names itself ${challenge.fingerprint}, expected ${peer.fingerprint}`);
      if (challenge.sourcePrefix === this.opts.rooms.sourcePrefix) throw new Error(samePrefix(challenge.sourcePrefix));
      const answer = await request(client.connection, { type: 'link-auth', signature: signLinkProof(this.opts.credentials, challenge.nonce, peer.fingerprint) });
      if (answer.type === 'error') throw new Error(`${address} refused the link: ${answer.code}: ${answer.message}`);
      if (answer.type !== 'link-ready') throw new Error(`${address} answered the link proof with ${answer.type}`);
    } catch (err) {
      await client.close();
      throw err;
    }
    if (signal.aborted) {
      await client.close();
      return undefined;
    }
    link = new Link(peer.fingerprint, this.self, 'out', client.connection, client.datagrams, this.countersOf(peer.fingerprint), (l, reason) => this.closeLink(l, reason));
    const registered = this.register(link);
    ready();
    const closed = link;
    void client.closed.then(() => this.linkClosed(closed, 'connection closed'));
    if (!registered) {
      closed.close(LINK_CLOSE_CODE, 'duplicate link');
      return undefined;
    }
    return link;
  }

  // --- links: accepting (the relay hands these over from its signalling) ---------------

  /** A `link-hello` on an inbound connection (`conn` identifies it). */
  acceptHello(conn: object, msg: Extract<KnownSignal, { type: 'link-hello' }>, label: string): KnownSignal[] {
    if (msg.version !== LINK_PROTOCOL_VERSION) return this.refuseLink(label, 'link-version', `this relay speaks link protocol version ${LINK_PROTOCOL_VERSION}, not ${msg.version}`);
    if (msg.fingerprint === this.self) return this.refuseLink(label, 'link-self', 'a relay cannot link to itself');
    if (!this.allowed.has(msg.fingerprint)) return this.refuseLink(label, 'link-not-trusted', `${msg.fingerprint} is not in this relay's [[peers]] or [[trusted]]`);
    if (msg.sourcePrefix === this.opts.rooms.sourcePrefix) return this.refuseLink(label, 'link-source-prefix', samePrefix(msg.sourcePrefix));
    const nonce = randomBytes(32).toString('hex');
    this.inbound.set(conn, { claimed: msg.fingerprint, certificate: msg.certificate, nonce });
    return [{ type: 'link-challenge', version: LINK_PROTOCOL_VERSION, fingerprint: this.self, nonce, sourcePrefix: this.opts.rooms.sourcePrefix }];
  }

  /**
   * A `link-auth` on an inbound connection: with a good proof the link is up and returned
   * (the relay then hands the connection's datagrams and signals to it).
   */
  acceptAuth(
    conn: object,
    msg: Extract<KnownSignal, { type: 'link-auth' }>,
    connection: QUICConnection,
    datagrams: DatagramChannel,
    label: string,
  ): { replies: KnownSignal[]; link?: Link } {
    const hello = this.inbound.get(conn);
    if (!hello) return { replies: this.refuseLink(label, 'link-no-hello', 'send link-hello first') };
    this.inbound.delete(conn);
    // Checked again: a reload may have removed it since its hello.
    if (!this.allowed.has(hello.claimed)) return { replies: this.refuseLink(label, 'link-not-trusted', `${hello.claimed} is not in this relay's [[peers]] or [[trusted]]`) };
    const problem = linkProofProblem({ certificateBase64: hello.certificate, claimed: hello.claimed, nonceHex: hello.nonce, acceptor: this.self, signatureBase64: msg.signature });
    if (problem !== undefined) return { replies: this.refuseLink(label, 'link-proof', `link proof refused: ${problem}`) };
    const link = new Link(hello.claimed, hello.claimed, 'in', connection, datagrams, this.countersOf(hello.claimed), (l, reason) => this.closeLink(l, reason));
    if (!this.register(link)) {
      link.closed = true;
      return { replies: this.refuseLink(label, 'link-duplicate', 'a link between these relays is up already') };
    }
    return { replies: [{ type: 'link-ready', fingerprint: this.self }], link };
  }

  private refuseLink(label: string, code: string, message: string): KnownSignal[] {
    this.refusedCount++;
    if (this.refuseLog.take()) {
      const suppressed = this.refuseLog.suppressed();
      this.emit({ type: 'federation:refused', peer: label, reason: `${code}: ${message}`, ...(suppressed > 0 ? { suppressed } : {}) });
    }
    return [{ type: 'error', code, message }];
  }

  private countersOf(fp: string): LinkCounters {
    let c = this.counters.get(fp);
    if (!c) {
      c = emptyLinkCounters(fp);
      this.counters.set(fp, c);
    }
    return c;
  }

  /** Make `link` the link to its peer, unless one dialled by the lower fingerprint is up already. */
  private register(link: Link): boolean {
    const existing = this.links.get(link.peer);
    if (existing && !existing.closed) {
      if (existing.dialler <= link.dialler) return false;
      this.closeLink(existing, 'replaced by the link the lower fingerprint dialled');
    }
    this.links.set(link.peer, link);
    link.counters.ups++;
    this.emit({ type: 'federation:link-up', peer: link.peer, direction: link.direction });
    // The snapshot: every member this relay reaches, as changes from nothing.
    for (const m of this.members.values()) this.advertiseOn(m, link);
    return true;
  }

  /** The connection of a link closed (either side, or it timed out). */
  linkClosed(link: Link, reason: string): void {
    this.closeLink(link, reason);
  }

  private closeLink(link: Link, reason: string): void {
    link.close(LINK_CLOSE_CODE, reason.slice(0, 100));
    if (this.links.get(link.peer) !== link) return;
    this.links.delete(link.peer);
    link.counters.downs++;
    this.emit({ type: 'federation:link-down', peer: link.peer, reason });
    this.forget(link);
    this.calls?.linkDown(link);
    const waiters = this.downWaiters.get(link.peer) ?? [];
    this.downWaiters.delete(link.peer);
    for (const w of waiters) w();
  }

  /** Everything learned over `link` is gone: its members leave or move to another route. */
  private forget(link: Link): void {
    const affected: FedMember[] = [];
    for (const m of this.members.values()) {
      const had = m.routes.delete(link);
      const down = m.downstream.delete(link);
      if (had || down) affected.push(m);
    }
    link.rx.clear();
    link.told.clear();
    link.roomRoutes.clear();
    for (const m of affected) this.recompute(m);
  }

  // --- membership ----------------------------------------------------------------------

  /** A local member joined a room (the relay calls this for every join; other rooms are ignored). */
  localJoined(roomId: string, member: Pick<RoomMember, 'sourceId' | 'fingerprint' | 'announcement'>): void {
    if (!this.carries(roomId)) return;
    const m: FedMember = {
      mid: randomBytes(8).toString('hex'),
      room: roomId,
      local: true,
      fingerprint: member.fingerprint,
      ...(member.announcement === undefined ? {} : { announcement: member.announcement }),
      sid: member.sourceId,
      localId: member.sourceId,
      best: undefined,
      hops: 0,
      routes: new Map(),
      downstream: new Set(),
    };
    this.members.set(m.mid, m);
    this.byLocal.set(member.sourceId, m);
    adjust(this.localCount, roomId, +1);
    this.advertise(m);
  }

  /** A local member left (or was replaced). */
  localLeft(roomId: string, sourceId: number): void {
    if (!this.carries(roomId)) return;
    const m = this.byLocal.get(sourceId);
    if (!m || !m.local) return;
    this.byLocal.delete(sourceId);
    m.localId = undefined;
    this.members.delete(m.mid);
    adjust(this.localCount, roomId, -1);
    // Final: the member is gone for good (its id is never used again), so every relay may
    // forget it at once instead of trying other routes to it (see onFinal).
    this.tombstone(m.mid);
    for (const link of this.links.values()) {
      link.told.delete(m.mid);
      link.sendEntry({ mid: m.mid, gone: true, final: true });
    }
  }

  /**
   * Members that left for good, remembered for TOMBSTONE_MS (bounded): a final withdrawal is
   * flooded once to every link, and later announcements of that member are ignored.
   *
   * Why: without it, a member's leave would be learned as a plain withdrawal, and relays
   * that had other (longer) routes to it would try those, announcing it to each other with
   * growing hop counts until MAX_LINK_HOPS (distance vectors' count to infinity): measured
   * 1.3 s until a leave was seen everywhere in a full mesh of five relays. A relay's own
   * failure is still learned that way (bounded by MAX_LINK_HOPS).
   */
  private readonly tombstones = new Map<string, number>();

  private tombstone(mid: string): void {
    const now = performance.now();
    for (const [old, at] of this.tombstones) {
      if (now - at < TOMBSTONE_MS && this.tombstones.size < MAX_TOMBSTONES) break;
      this.tombstones.delete(old);
    }
    this.tombstones.set(mid, now);
  }

  private isTombstoned(mid: string): boolean {
    const at = this.tombstones.get(mid);
    return at !== undefined && performance.now() - at < TOMBSTONE_MS;
  }

  /** A member's final withdrawal, from `from`: forget it everywhere here, and pass it on once. */
  private onFinal(from: Link, mid: string): void {
    if (this.isTombstoned(mid)) return;
    this.tombstone(mid);
    const m = this.members.get(mid);
    if (m && !m.local) {
      if (m.best) adjust(m.best.roomRoutes, m.room, -1);
      m.best = undefined;
      this.removeHere(m);
      for (const [link, r] of m.routes) if (link.rx.get(r.sid) === m) link.rx.delete(r.sid);
      m.routes.clear();
      m.downstream.clear();
      this.members.delete(mid);
    }
    for (const link of this.links.values()) {
      link.told.delete(mid);
      if (link !== from) link.sendEntry({ mid, gone: true, final: true });
    }
  }

  private reachable(m: FedMember): boolean {
    return m.localId !== undefined && (m.local || m.best !== undefined);
  }

  private advertise(m: FedMember): void {
    for (const link of this.links.values()) this.advertiseOn(m, link);
  }

  /** Tell `link` what changed about `m` since it was last told. */
  private advertiseOn(m: FedMember, link: Link): void {
    if (link.closed) return;
    const hops = m.hops + 1;
    const told = link.told.get(m.mid);
    if (!this.reachable(m) || hops >= MAX_LINK_HOPS || !this.carriesOn(m.room, link)) {
      if (told !== undefined) {
        link.told.delete(m.mid);
        link.sendEntry({ mid: m.mid, gone: true });
      }
      return;
    }
    const via = link === m.best;
    const key = `${hops}/${via}`;
    if (told === key) return;
    link.told.set(m.mid, key);
    link.sendEntry({
      room: m.room,
      mid: m.mid,
      sid: m.sid,
      hops,
      via,
      fingerprint: m.fingerprint,
      ...(m.announcement === undefined ? {} : { announcement: m.announcement }),
    });
  }

  /** Choose a remote member's route again, admit or remove it here, and tell the links. */
  private recompute(m: FedMember): void {
    if (m.local) return;
    let best: Link | undefined;
    let hops = Infinity;
    for (const [link, r] of m.routes) {
      if (r.via || r.hops >= MAX_LINK_HOPS || link.closed) continue;
      if (r.hops < hops || (r.hops === hops && best !== undefined && link.peer < best.peer)) {
        best = link;
        hops = r.hops;
      }
    }
    if (best !== undefined && m.localId === undefined && !this.admit(m, best)) best = undefined;
    if (best !== m.best) {
      if (m.best) adjust(m.best.roomRoutes, m.room, -1);
      if (best) adjust(best.roomRoutes, m.room, +1);
      m.best = best;
    }
    m.hops = best === undefined ? 0 : hops;
    if (best === undefined && m.localId !== undefined) this.removeHere(m);
    this.advertise(m);
    if (m.localId === undefined && m.routes.size === 0 && m.downstream.size === 0) this.members.delete(m.mid);
  }

  /** Put a remote member in this relay's room (its local members see it join). */
  private admit(m: FedMember, via: Link): boolean {
    const room = this.opts.rooms.room(m.room);
    if ((room?.members.size ?? 0) >= MAX_ROOM_PARTICIPANTS) {
      via.counters.drops['room-full']++;
      return false;
    }
    const id = m.sid;
    if (this.opts.rooms.inUse(id)) {
      this.collision(via, id, 'another member of this relay has it');
      return false;
    }
    this.opts.rooms.commitJoin(
      m.room,
      {
        sourceId: id,
        source: `relay ${via.peer}`,
        alias: '',
        fingerprint: m.fingerprint,
        datagrams: NO_CHANNEL,
        ...(m.announcement === undefined ? {} : { announcement: m.announcement }),
        push: () => undefined,
        remote: true,
      },
      undefined,
    );
    m.localId = id;
    this.byLocal.set(id, m);
    return true;
  }

  private removeHere(m: FedMember): void {
    const id = m.localId;
    if (id === undefined) return;
    m.localId = undefined;
    this.byLocal.delete(id);
    this.opts.rooms.leave(m.room, id);
  }

  // --- what links send ---------------------------------------------------------------

  /** A signalling message on a link (either side): link-update or link-signal. */
  onLinkSignal(link: Link, msg: KnownSignal): KnownSignal[] {
    link.counters.messagesIn++;
    if (msg.type === 'link-update') {
      for (const entry of msg.entries) {
        // Cross-relay calls' entries have a `kind` (./calls.ts); membership entries do not.
        if (entry.kind === undefined) this.onEntry(link, entry);
        else if (this.calls) this.calls.onEntry(link, entry);
        else link.counters.drops['malformed-call']++;
      }
      return [];
    }
    if (msg.type === 'link-signal') {
      if (link.roomSignals.take(performance.now())) this.onRoomSignal(link, msg);
      else link.counters.drops['signal-rate']++;
      return [];
    }
    link.counters.drops['unexpected-signal']++;
    return [];
  }

  private onEntry(link: Link, e: Record<string, unknown>): void {
    const drop = (reason: LinkDropReason) => void link.counters.drops[reason]++;
    if (typeof e.mid !== 'string' || !MID_RE.test(e.mid)) return drop('malformed-update');
    const mid = e.mid;
    if (e.final !== undefined && (e.final !== true || e.gone !== true)) return drop('malformed-update');
    if (e.final === true) return this.onFinal(link, mid);
    if (this.isTombstoned(mid)) return;
    if (e.gone === true) {
      const m = this.members.get(mid);
      if (!m) return;
      const r = m.routes.get(link);
      if (r && link.rx.get(r.sid) === m) link.rx.delete(r.sid);
      const had = m.routes.delete(link);
      const down = m.downstream.delete(link);
      if (had || down) this.recompute(m);
      return;
    }
    const { room, sid, hops, via, fingerprint, announcement } = e;
    if (typeof room !== 'string' || !ROOM_ID_RE.test(room)) return drop('malformed-update');
    if (!Number.isInteger(sid) || (sid as number) < MIN_SOURCE_ID || (sid as number) > MAX_SOURCE_ID) return drop('malformed-update');
    if (!Number.isInteger(hops) || (hops as number) < 1 || (hops as number) > MAX_LINK_HOPS) return drop('malformed-update');
    if (typeof via !== 'boolean') return drop('malformed-update');
    if (typeof fingerprint !== 'string' || (fingerprint !== '' && !FINGERPRINT_PATTERN.test(fingerprint))) return drop('malformed-update');
    if (announcement !== undefined && (typeof announcement !== 'object' || announcement === null || Array.isArray(announcement))) return drop('malformed-update');
    if (announcement !== undefined && Buffer.byteLength(JSON.stringify(announcement)) > MAX_ANNOUNCEMENT_BYTES) return drop('malformed-update');
    if (!this.carriesOn(room, link)) return drop('room-not-global');
    let m = this.members.get(mid);
    // A member's room and source id are its for good: an entry that changes them does not check.
    if (m && (m.room !== room || m.sid !== sid)) return drop('malformed-update');
    if (m?.local) {
      // One of ours, announced back: only whether that peer reaches it through us matters.
      if (via) m.downstream.add(link);
      else m.downstream.delete(link);
      return;
    }
    if (!m && sourceIdPrefix(sid as number) === this.opts.rooms.sourcePrefix) {
      // Another relay numbers its members with this relay's prefix (not a neighbour: the hello checks those).
      this.collision(link, sid as number, "it has this relay's own prefix");
      return;
    }
    const holder = link.rx.get(sid as number) as FedMember | undefined;
    if (holder !== undefined && holder !== m) {
      // Two members under one id over one link (relays behind it share a prefix): the one
      // announced first keeps it; the other is not taken (link messages come in order, so a
      // member that left was withdrawn before its id could come back).
      this.collision(link, sid as number, `members ${holder.mid} and ${mid} were both announced with it`);
      return;
    }
    const r: Route = { sid: sid as number, hops: hops as number, via };
    const prev = m?.routes.get(link);
    if (!prev && link.rx.size >= LINK_LIMITS.membersPerLink && link.rx.get(r.sid) === undefined) return drop('member-limit');
    if (!m) {
      m = {
        mid,
        room,
        local: false,
        fingerprint,
        ...(announcement === undefined ? {} : { announcement: announcement as Record<string, unknown> }),
        sid: sid as number,
        localId: undefined,
        best: undefined,
        hops: 0,
        routes: new Map(),
        downstream: new Set(),
      };
      this.members.set(mid, m);
    }
    m.routes.set(link, r);
    link.rx.set(r.sid, m);
    if (via) m.downstream.add(link);
    else m.downstream.delete(link);
    this.recompute(m);
  }

  // --- media -----------------------------------------------------------------------------

  /** A local member's datagram (after the relay forwarded it to the local members). */
  fromLocal(sourceId: number, datagram: Uint8Array): void {
    if (this.links.size === 0) return;
    const m = this.byLocal.get(sourceId);
    if (m === undefined || !m.local || m.downstream.size === 0) return;
    for (const link of m.downstream) if ((link.roomRoutes.get(m.room) ?? 0) > 0) link.sendMedia(sourceId, MAX_LINK_HOPS, datagram);
  }

  /** A link datagram: a link frame of member datagrams. */
  onLinkDatagram(link: Link, payload: Uint8Array): void {
    const c = link.counters;
    c.framesIn++;
    c.bytesIn += payload.byteLength;
    let entries;
    try {
      entries = decodeLinkFrame(payload);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      c.drops['malformed-frame']++;
      return;
    }
    for (const e of entries) {
      c.datagramsIn++;
      const m = link.rx.get(e.sourceId) as FedMember | undefined;
      if (m === undefined) {
        c.drops['unknown-source']++;
        continue;
      }
      const id = m.localId;
      if (m.best !== link || id === undefined) {
        c.drops['not-on-route']++;
        continue;
      }
      if (this.localCount.has(m.room)) this.opts.rooms.forward(m.room, id, e.datagram);
      for (const next of m.downstream) {
        if (next === link || (next.roomRoutes.get(m.room) ?? 0) === 0) continue;
        if (e.hops <= 1) {
          c.drops['hop-limit']++;
          continue;
        }
        next.sendMedia(id, e.hops - 1, e.datagram);
      }
    }
  }

  // --- room signals ----------------------------------------------------------------------

  /** A local member's room signal (after the relay delivered it to the local members). */
  roomSignal(roomId: string, from: number, to: number | undefined, payload: Record<string, unknown>): void {
    if (this.links.size === 0 || !this.carries(roomId)) return;
    const s = this.byLocal.get(from);
    if (!s || !s.local) return;
    if (to !== undefined) {
      const t = this.byLocal.get(to);
      if (!t || t.local || !t.best) return;
      t.best.sendSignal({ type: 'link-signal', room: roomId, from: s.mid, to: t.mid, hops: MAX_LINK_HOPS, payload });
      return;
    }
    for (const link of s.downstream) {
      if ((link.roomRoutes.get(roomId) ?? 0) > 0) link.sendSignal({ type: 'link-signal', room: roomId, from: s.mid, hops: MAX_LINK_HOPS, payload });
    }
  }

  private onRoomSignal(link: Link, msg: LinkSignalMessage): void {
    const drop = (reason: LinkDropReason) => void link.counters.drops[reason]++;
    if (!this.carriesOn(msg.room, link) || msg.hops < 1 || msg.hops > MAX_LINK_HOPS) return drop('malformed-signal');
    if (Buffer.byteLength(JSON.stringify(msg.payload)) > MAX_ROOM_SIGNAL_BYTES) return drop('malformed-signal');
    const s = this.members.get(msg.from);
    if (!s || s.room !== msg.room || s.localId === undefined) return drop('unknown-member');
    if (msg.to !== undefined) {
      const t = this.members.get(msg.to);
      if (!t || t.room !== msg.room || t.localId === undefined) return drop('unknown-member');
      if (t.local) {
        this.opts.rooms.relaySignal(msg.room, s.localId, t.localId, msg.payload);
        return;
      }
      if (!t.best || t.best === link) return drop('not-on-route');
      if (msg.hops <= 1) return drop('hop-limit');
      t.best.sendSignal({ ...msg, hops: msg.hops - 1 });
      return;
    }
    if (s.best !== link) return drop('not-on-route');
    this.opts.rooms.relaySignal(msg.room, s.localId, undefined, msg.payload);
    for (const next of s.downstream) {
      if (next === link || (next.roomRoutes.get(msg.room) ?? 0) === 0) continue;
      if (msg.hops <= 1) return drop('hop-limit');
      next.sendSignal({ ...msg, hops: msg.hops - 1 });
    }
  }

  /** A member not admitted (or displaced) for its source id: counted, and reported rate-limited. */
  private collision(link: Link, sourceId: number, why: string): void {
    link.counters.drops['source-id-collision']++;
    if (!this.collisionLog.take()) return;
    const suppressed = this.collisionLog.suppressed();
    const prefix = sourceIdPrefix(sourceId);
    this.emit({
      type: 'federation:source-id-collision',
      peer: link.peer,
      sourceId,
      detail: `source id ${sourceId} (prefix ${prefix}): ${why}; two relays of the federation number members with prefix ${prefix}: set another source_id_prefix in one's config`,
      ...(suppressed > 0 ? { suppressed } : {}),
    });
  }

  private emit(event: FederationEvent): void {
    this.opts.onEvent?.(event);
  }
}

function adjust(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

function samePrefix(prefix: number): string {
  return `both relays number their members with source-id prefix ${prefix}: set another source_id_prefix in one relay's config`;
}

/** 50-100% of `ms`: relays that lost each other at once do not all redial in step. */
function jitter(ms: number): number {
  return ms * (0.5 + Math.random() * 0.5);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A link's connection as the relay sees it close (for the accepting side). */
export function onConnectionStopped(connection: QUICConnection, handler: () => void): void {
  connection.addEventListener(quicEvents.EventQUICConnectionStopped.name, handler, { once: true });
}

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
import type { DatagramChannel } from '../transport/datagrams.js';
import { formatHostPort, startQuicServer, type HostPort, type RunningQuicServer, type TlsMaterial } from '../transport/quic.js';
import { push, serveSignals, type KnownSignal } from '../transport/signal-stream.js';
import { RoomManager, type RoomMember } from './rooms.js';
import { MAX_ANNOUNCEMENT_BYTES } from '../wire/signal.js';
import { verifyAnnouncement, type MemberAnnouncement } from '../crypto/sender-keys.js';
import { isMediaPathPacket, RelayMediaPath, type RelayRoute } from '../transport/udp-media.js';
import { rawUdpSocket } from '../transport/quic.js';

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
  /** Namespaced events for logs: 'relay:connection', 'relay:signal-dropped', ... */
  onEvent?(event: RelayEvent): void;
}

export type RelayEvent =
  | { type: 'relay:connection-open'; peer: string }
  | { type: 'relay:connection-closed'; peer: string; reason: string }
  | { type: 'relay:join'; peer: string; mode: string; room?: string; sourceId?: number }
  | { type: 'relay:leave'; peer: string; room: string; sourceId: number }
  | { type: 'relay:signal-dropped'; peer: string; reason: string; detail: string };

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
   * from the member's address or malformed, and anything else.
   */
  udpPathRejected: number;
  roomsOpen: number;
}

/** Longest alias the relay accepts and announces. */
const MAX_ALIAS = 64;
const ROOM_ID_RE = /^[0-9a-f]{32}$/;

type Mode = 'none' | 'echo' | 'room';

interface Peer {
  readonly connection: QUICConnection;
  /** QUIC datagrams, or the UDP media path once the member confirmed it. */
  readonly datagrams: RelayRoute;
  readonly label: string;
  mode: Mode;
  room?: { id: string; sourceId: number };
}

export class Relay {
  readonly metrics: RelayMetrics = {
    connectionsOpen: 0,
    connectionsTotal: 0,
    signalsReceived: 0,
    signalsMalformed: 0,
    signalsUnknown: 0,
    datagramsReceived: 0,
    datagramsEchoed: 0,
    datagramsUnexpected: 0,
    datagramsDropped: 0,
    datagramsForwarded: 0,
    datagramsPurged: 0,
    datagramsOnUdpPath: 0,
    udpPathRejected: 0,
    roomsOpen: 0,
  };
  private readonly peers = new Set<Peer>();
  private readonly rooms = new RoomManager();
  private echoDropped = 0;
  /** Non-QUIC packets that are not media path packets either (or the path is off). */
  private strayUdp = 0;
  private server?: RunningQuicServer;
  private readonly mediaPath: RelayMediaPath;

  private constructor(private readonly opts: RelayOptions) {
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
      onNonQuic: (data, from) => relay.onNonQuic(data, from),
      onConnection: (connection, datagrams) => relay.accept(connection, datagrams),
    });
    return relay;
  }

  private onNonQuic(data: Buffer, from: { address: string; port: number }): void {
    if (this.opts.udpMedia !== false && isMediaPathPacket(data)) {
      this.mediaPath.handle(data, from);
    } else {
      this.strayUdp++;
    }
    this.metrics.udpPathRejected = this.mediaPath.stats.rejected + this.strayUdp;
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
    await server?.stop();
    this.peers.clear();
  }

  private emit(event: RelayEvent): void {
    this.opts.onEvent?.(event);
  }

  private accept(connection: QUICConnection, datagrams: DatagramChannel): void {
    const peer: Peer = {
      connection,
      datagrams: this.mediaPath.route(datagrams, {
        remote: () => ({ host: connection.remoteHost, port: connection.remotePort }),
        onMedia: (payload) => {
          this.metrics.datagramsOnUdpPath++;
          this.onDatagram(peer, payload);
        },
      }),
      label: formatHostPort({ host: connection.remoteHost, port: connection.remotePort }),
      mode: 'none',
    };
    this.peers.add(peer);
    this.metrics.connectionsOpen++;
    this.metrics.connectionsTotal++;
    this.emit({ type: 'relay:connection-open', peer: peer.label });

    datagrams.onDatagram((payload) => this.onDatagram(peer, payload));
    serveSignals(connection, {
      handle: (msg) => this.onSignal(peer, msg),
      onDropped: (reason, detail) => {
        if (reason === 'unknown-type') this.metrics.signalsUnknown++;
        else this.metrics.signalsMalformed++;
        this.emit({ type: 'relay:signal-dropped', peer: peer.label, reason, detail });
      },
    });
    connection.addEventListener(
      quicEvents.EventQUICConnectionStopped.name,
      () => {
        if (this.peers.delete(peer)) {
          this.leaveRoom(peer);
          peer.datagrams.disable();
          this.metrics.connectionsOpen--;
          this.emit({ type: 'relay:connection-closed', peer: peer.label, reason: 'closed' });
        }
      },
      { once: true },
    );
  }

  private onSignal(peer: Peer, msg: KnownSignal): KnownSignal[] {
    this.metrics.signalsReceived++;
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
        this.leaveRoom(peer);
        peer.datagrams.disable();
        if (msg.mode === 'echo') {
          peer.mode = 'echo';
          this.emit({ type: 'relay:join', peer: peer.label, mode: 'echo' });
          return [{ type: 'joined', mode: 'echo', ...this.offerPath(peer, msg) }];
        }
        return [this.joinRoom(peer, msg)];
      case 'leave':
        this.leaveRoom(peer);
        peer.mode = 'none';
        peer.datagrams.disable();
        return [];
      case 'room-signal':
        if (!peer.room) return [{ type: 'error', code: 'not-in-room', message: 'join a room first' }];
        this.rooms.relaySignal(peer.room.id, peer.room.sourceId, msg.to, msg.payload);
        return [];
      default:
        // A known message that a relay does not accept from clients (e.g. pong): ignore.
        this.metrics.signalsUnknown++;
        this.emit({ type: 'relay:signal-dropped', peer: peer.label, reason: 'unexpected-type', detail: msg.type });
        return [];
    }
  }

  private joinRoom(peer: Peer, msg: Extract<KnownSignal, { type: 'join' }>): KnownSignal {
    if (msg.room === undefined || !ROOM_ID_RE.test(msg.room)) {
      return { type: 'error', code: 'bad-room', message: 'room must be the 32-hex-digit hash of the room name' };
    }
    if (msg.announcement !== undefined && Buffer.byteLength(JSON.stringify(msg.announcement)) > MAX_ANNOUNCEMENT_BYTES) {
      // Bounded so that a full room's announcements fit in one `joined` answer.
      return { type: 'error', code: 'bad-announcement', message: `an announcement is at most ${MAX_ANNOUNCEMENT_BYTES} bytes of JSON` };
    }
    const member: RoomMember = {
      sourceId: this.rooms.allocateSourceId(),
      alias: (msg.alias ?? '').slice(0, MAX_ALIAS),
      fingerprint: (msg.fingerprint ?? '').slice(0, MAX_ALIAS * 2),
      datagrams: peer.datagrams,
      ...(msg.announcement === undefined ? {} : { announcement: msg.announcement }),
      push: (message) => void push(peer.connection, message as KnownSignal),
    };
    const replaced = this.replacedBy(msg.room, msg.announcement);
    const room = this.rooms.join(msg.room, member, replaced?.room?.sourceId);
    if (!room) return { type: 'error', code: 'room-full', message: 'the room is full' };
    if (replaced?.room) {
      // Its connection is dead or dying; it no longer speaks for anyone in the room.
      replaced.datagrams.disable();
      this.emit({ type: 'relay:leave', peer: replaced.label, room: replaced.room.id, sourceId: replaced.room.sourceId });
      replaced.room = undefined;
      replaced.mode = 'none';
    }
    peer.mode = 'room';
    peer.room = { id: msg.room, sourceId: member.sourceId };
    this.metrics.roomsOpen = this.rooms.roomCount;
    this.emit({ type: 'relay:join', peer: peer.label, mode: 'room', room: msg.room, sourceId: member.sourceId });
    return {
      type: 'joined',
      mode: 'room',
      room: msg.room,
      sourceId: member.sourceId,
      participants: room.roster(),
      announcements: room.announcements(member.sourceId),
      ...this.offerPath(peer, msg),
    };
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
    this.metrics.roomsOpen = this.rooms.roomCount;
    this.emit({ type: 'relay:leave', peer: peer.label, room: id, sourceId });
  }

  private onDatagram(peer: Peer, payload: Uint8Array): void {
    this.metrics.datagramsReceived++;
    if (peer.mode === 'room' && peer.room) {
      this.rooms.forward(peer.room.id, peer.room.sourceId, payload);
      this.metrics.datagramsForwarded = this.rooms.stats.forwarded;
      this.metrics.datagramsPurged = this.rooms.stats.purged;
      this.metrics.datagramsDropped = this.rooms.stats.dropped + this.echoDropped;
      return;
    }
    if (peer.mode === 'echo') {
      if (peer.datagrams.send(payload)) this.metrics.datagramsEchoed++;
      else {
        this.echoDropped++;
        this.metrics.datagramsDropped++;
      }
      return;
    }
    this.metrics.datagramsUnexpected++;
  }
}

/**
 * The UDP media path: room and echo media between a client and the relay as plain UDP
 * packets on the same 5-tuple as their QUIC connection, instead of QUIC DATAGRAM frames.
 *
 * Why: media is already end-to-end encrypted and authenticated per packet by its sender
 * (core/crypto/media-crypto.ts). Carrying it in QUIC encrypts it a second time on every hop,
 * and through quiche's N-API binding that second layer is most of a relay's cost: the relay
 * spent ~74 µs of CPU per forwarded packet against ~14 µs for a plain Node UDP forwarder
 * (`npm run bench`, calls). On this path it forwards a packet with one table lookup and one
 * send. QUIC stays for everything that needs it: the handshake that authenticates the relay,
 * signalling, key exchange, keep-alives, RTT, and media until the path is confirmed.
 *
 * Packets (core/wire/media-path.ts, its diagram and codec; first byte with QUIC's fixed bit
 * 0x40 clear, and not STUN's 0x00/0x01: the socket's demultiplexer, ./demux.ts, hands them to
 * the 'media-path' class by the first byte):
 *
 * ```
 * probe    client -> relay   0x21 | token (8)            "is this path open?"
 * ack      relay -> client   0x22 | token (8)            "it is, both ways"
 * confirm  client -> relay   0x23 | token (8)            "your ack arrived: send me media here"
 * media    client -> relay   0x24 | token (8) | datagram
 * media    relay -> client   0x24 | datagram (room media: source id u16 | sender's datagram)
 * ```
 *
 * The token is 8 random bytes the relay hands a member in its `joined` answer, over the
 * authenticated QUIC connection. The relay accepts a path packet only if its token is a live
 * member's AND it comes from that member's QUIC connection's current address (the source of
 * its latest authenticated QUIC packet, so it follows migration). So a blind attacker must
 * guess 64 bits and spoof the member's address to inject into a room, and nobody off the
 * path can point the relay's answers or media at a third party: everything it sends on this
 * path goes to members' QUIC addresses, and an ack is no larger than its probe. Downstream media carries no token: every
 * packet is authenticated end to end by the receiver, which also drops anything not from the
 * relay's address.
 *
 * Switching is per direction and only after proof: the client sends media on the path after
 * the relay's ack came back (the path works both ways), the relay after the client's confirm
 * or its first media packet on the path. Until then, and for as long as probes go unanswered
 * (a relay without the path, a middlebox that passes only QUIC), media stays in QUIC
 * datagrams. Nothing is lost in the switch: receivers take media from both at once.
 *
 * What the path gives up, knowingly: an on-path observer sees the media headers (sequence,
 * timestamp, tier, key epoch; payloads stay sealed), as with SRTP; and QUIC's congestion
 * controller no longer paces media. Media is a small constant rate that the tier adaptation
 * already steers by the receivers' loss reports (docs/media-engine.md), as RTP does, and the
 * relay drops instead of queueing when its socket's send queue backs up.
 */
import { randomBytes } from 'node:crypto';
import type { Socket as UdpSocket } from 'node:dgram';
import { DecodeError, InternalError } from '../errors.js';
import {
  MEDIA_TOKEN_BYTES,
  MEDIA_TO_CLIENT_HEADER,
  decodeToClient,
  decodeToRelay,
  encodeAck,
  encodeConfirm,
  encodeProbe,
  mediaToRelayDatagram,
  mediaToRelayHeader,
  OFFSET_MEDIA_PATH_TOKEN,
} from '../wire/media-path.js';
import { MAX_DATAGRAM_PAYLOAD, type DatagramChannel, type DatagramStats, type PathStatsSnapshot } from './datagrams.js';
import {
  emptyMediaTransportStats,
  MediaPathSwitch,
  MediaPayloadTooLargeError,
  QuicDatagramTransport,
  type MediaTransport,
  type MediaTransportState,
  type MediaTransportStats,
} from './media-transport.js';
import { MAX_SOCKET_SEND_QUEUE } from './demux.js';

export {
  MEDIA_PATH_ACK,
  MEDIA_PATH_CONFIRM,
  MEDIA_PATH_MEDIA,
  MEDIA_PATH_PROBE,
  MEDIA_TOKEN_BYTES,
  isMediaPathPacket,
} from '../wire/media-path.js';
export { MAX_SOCKET_SEND_QUEUE } from './demux.js';
/** When probes go out after a join (ms after it). */
export const PROBE_SCHEDULE_MS = [0, 100, 300, 700, 1500] as const;
/**
 * Unanswered by then, media stays in QUIC datagrams and a probe goes out this often (9 bytes):
 * a lossy network that ate the first ones still gets the path, a middlebox that blocks it
 * costs nothing.
 */
export const PROBE_RETRY_MS = 10_000;

/** The client's UDP socket as the media path needs it: sends to the relay, packets from anyone. */
export interface RawPath {
  /** Send one UDP packet (the buffers concatenated) to the relay's address. */
  send(parts: readonly Uint8Array[]): void;
  /** Receive the media path packets (first byte 0x21-0x24) that reach the socket. */
  onPacket(handler: (data: Buffer, from: { address: string; port: number }) => void): void;
  /** The relay's address as the QUIC connection sees it now. */
  relay(): { host: string; port: number };
}

export interface MediaPathStats {
  /** Which path our media goes out on now. */
  path: 'udp' | 'quic';
  probesSent: number;
  /** Media packets sent and received on the UDP path (the rest went through QUIC). */
  sentOnPath: number;
  receivedOnPath: number;
  /** Path packets dropped: malformed, from another address than the relay's, unknown type. */
  rejected: number;
}

/**
 * The client's end of the UDP media path as a MediaTransport (`relay-udp`): probes with the
 * token of a join, opens when the relay's ack comes back (the path works both ways), then
 * carries media to the relay. Not open (before start(), while probing, after stop()), it
 * takes no media: a MediaPathSwitch sends on QUIC datagrams meanwhile. It receives media
 * from the relay's address only.
 */
export class UdpMediaPathTransport implements MediaTransport {
  readonly kind = 'relay-udp' as const;
  #handler: (payload: Uint8Array) => void = () => undefined;
  #header?: Uint8Array;
  #token?: Buffer;
  #state: 'idle' | 'probing' | 'open' | 'closed' = 'idle';
  #timers: NodeJS.Timeout[] = [];
  #lastProbeAt: number | undefined;
  #rttMs: number | undefined;
  #lastReceivedAt: number | undefined;
  readonly #stats = emptyMediaTransportStats();
  /** Path packets: probes sent, and packets dropped (malformed, not from the relay, unknown type). */
  readonly counters = { probesSent: 0, rejected: 0 };

  constructor(
    private readonly raw: RawPath,
    readonly label: string,
  ) {
    raw.onPacket((data, from) => this.#onPacket(data, from));
  }

  get state(): MediaTransportState {
    return this.#state === 'open' ? 'open' : this.#state === 'closed' ? 'closed' : 'connecting';
  }

  /** The current join's path token (a copy; it is on the wire in every packet we send), if started. */
  get token(): Uint8Array | undefined {
    return this.#token && Uint8Array.from(this.#token);
  }

  /** Start probing with the token from the relay's `joined` (hex); opens when the relay answers. */
  start(tokenHex: string): void {
    this.stop();
    if (this.#state === 'closed' || !/^[0-9a-f]{16}$/.test(tokenHex)) return;
    const token = Buffer.from(tokenHex, 'hex');
    this.#token = token;
    this.#header = mediaToRelayHeader(token);
    this.#state = 'probing';
    const probe = encodeProbe(token);
    const sendProbe = (): void => {
      if (this.#state !== 'probing' || this.#token !== token) return;
      this.counters.probesSent++;
      this.#lastProbeAt = performance.now();
      this.#rawSend([probe]);
    };
    for (const at of PROBE_SCHEDULE_MS) this.#timers.push(setTimeout(sendProbe, at).unref());
    const last = PROBE_SCHEDULE_MS[PROBE_SCHEDULE_MS.length - 1];
    this.#timers.push(
      setTimeout(() => {
        if (this.#state === 'probing' && this.#token === token) this.#timers.push(setInterval(sendProbe, PROBE_RETRY_MS).unref());
      }, last).unref(),
    );
  }

  /** Not carrying media any more (leaving a room, a new join); start() again with a new token. */
  stop(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
    if (this.#state !== 'closed') this.#state = 'idle';
    this.#token = undefined;
    this.#header = undefined;
  }

  #rawSend(parts: readonly Uint8Array[]): void {
    try {
      this.raw.send(parts);
    } catch {
      // The socket is closing: the connection's own close ends the call.
    }
  }

  #onPacket(data: Buffer, from: { address: string; port: number }): void {
    if (this.#state === 'closed') return;
    const relay = this.raw.relay();
    if (from.address !== relay.host || from.port !== relay.port) {
      this.counters.rejected++;
      return;
    }
    let packet;
    try {
      packet = decodeToClient(data);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.counters.rejected++;
      return;
    }
    if (packet.type === 'media') {
      this.#stats.received++;
      this.#stats.bytesReceived += packet.datagram.length;
      this.#lastReceivedAt = performance.now();
      try {
        this.#handler(packet.datagram);
      } catch {
        // Handlers count their own errors; the socket must keep receiving.
      }
      return;
    }
    if (!this.#token || !this.#token.equals(packet.token)) {
      this.counters.rejected++;
      return;
    }
    if (this.#state === 'probing') {
      this.#state = 'open';
      if (this.#lastProbeAt !== undefined) this.#rttMs = performance.now() - this.#lastProbeAt;
      for (const t of this.#timers) clearTimeout(t);
      this.#timers = [];
      const confirm = encodeConfirm(this.#token);
      this.#rawSend([confirm]);
      // Once more: a receive-only member sends no media that would also tell the relay.
      const token = this.#token;
      this.#timers.push(
        setTimeout(() => {
          if (this.#token === token) this.#rawSend([confirm]);
        }, 200).unref(),
      );
    }
  }

  maxPayload(): number {
    return this.#state === 'open' ? MAX_DATAGRAM_PAYLOAD : 0;
  }

  send(payload: Uint8Array): boolean {
    if (this.#state !== 'open' || !this.#header) {
      this.#stats.droppedClosed++;
      return false;
    }
    if (payload.byteLength > MAX_DATAGRAM_PAYLOAD) {
      this.#stats.droppedTooLarge++;
      throw new MediaPayloadTooLargeError(payload.byteLength, MAX_DATAGRAM_PAYLOAD, this.kind);
    }
    this.#rawSend([this.#header, payload]);
    this.#stats.sent++;
    this.#stats.bytesSent += payload.byteLength;
    return true;
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#handler = handler;
  }

  lastReceivedAt(): number | undefined {
    return this.#lastReceivedAt;
  }

  /** From the probe that opened the path to the relay's ack (a later, finer measure: RelaySession.mediaRtt). */
  rttMs(): number | undefined {
    return this.#state === 'closed' ? undefined : this.#rttMs;
  }

  stats(): MediaTransportStats {
    return { ...this.#stats };
  }

  close(): void {
    if (this.#state === 'closed') return;
    this.stop();
    this.#state = 'closed';
    this.#handler = () => undefined;
  }
}

/**
 * A client's media with the relay: QUIC datagrams until the UDP path is confirmed, then the
 * path; received from both throughout. `transport` is that as a MediaTransport (a
 * MediaPathSwitch of the UDP path, then QUIC); the channel itself is the same media as a
 * DatagramChannel (for the echo test and the relay's own tests). Both views share one
 * receive handler: the latest onDatagram() of either.
 */
export class ClientMediaChannel implements DatagramChannel {
  readonly quicTransport: QuicDatagramTransport;
  readonly udpTransport: UdpMediaPathTransport | undefined;
  readonly transport: MediaPathSwitch;

  constructor(
    private readonly quic: DatagramChannel,
    raw: RawPath | undefined,
    label = 'relay',
  ) {
    this.quicTransport = new QuicDatagramTransport(quic, label);
    this.udpTransport = raw && new UdpMediaPathTransport(raw, label);
    this.transport = new MediaPathSwitch(this.udpTransport ? [this.udpTransport, this.quicTransport] : [this.quicTransport]);
  }

  /** Whether to ask for the path at all (the user may keep media in QUIC). */
  enabled = true;

  /** Whether to ask for the path: enabled, and this connection owns its UDP socket. */
  get capable(): boolean {
    return this.enabled && this.udpTransport !== undefined;
  }

  /** Start probing with the token from the relay's `joined`; media switches when it answers. */
  start(tokenHex: string): void {
    this.stop();
    if (this.capable) this.udpTransport?.start(tokenHex);
  }

  /** Back to QUIC datagrams only (leaving a room, a new join). */
  stop(): void {
    this.udpTransport?.stop();
  }

  get path(): 'udp' | 'quic' {
    return this.udpTransport?.state === 'open' ? 'udp' : 'quic';
  }

  mediaPathStats(): MediaPathStats {
    const u = this.udpTransport;
    return {
      path: this.path,
      probesSent: u?.counters.probesSent ?? 0,
      sentOnPath: u?.stats().sent ?? 0,
      receivedOnPath: u?.stats().received ?? 0,
      rejected: u?.counters.rejected ?? 0,
    };
  }

  send(payload: Uint8Array): boolean {
    try {
      // One size limit on both paths (too large: refused and counted).
      return this.transport.send(payload);
    } catch (err) {
      if (err instanceof MediaPayloadTooLargeError) return false;
      throw err;
    }
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.transport.onDatagram(handler);
  }

  maxPayload(): number | null {
    return this.quic.maxPayload();
  }

  purgeIfQueued(maxQueued: number): number {
    return this.path === 'udp' ? 0 : this.quicTransport.purgeIfQueued(maxQueued);
  }

  /** The connection's datagram counters, with the UDP path's media and both views' refusals. */
  stats(): DatagramStats {
    const s = this.quic.stats();
    const q = this.quicTransport.refusedBeforeSend();
    const u = this.udpTransport?.stats();
    return {
      ...s,
      sent: s.sent + (u?.sent ?? 0),
      received: s.received + (u?.received ?? 0),
      droppedTooLarge: s.droppedTooLarge + q.tooLarge + (u?.droppedTooLarge ?? 0),
      droppedClosed: s.droppedClosed + q.closed,
    };
  }

  pathStats(): PathStatsSnapshot | undefined {
    return this.quic.pathStats();
  }
}

/** What the relay knows of one connection for the path. */
export interface RelayPathPeer {
  /** The connection's current remote address (its latest authenticated QUIC packet's source). */
  remote(): { host: string; port: number };
  /** A media datagram arrived on the path from this peer. */
  onMedia(payload: Uint8Array): void;
}

export interface RelayMediaPathStats {
  /** Media datagrams received on the path (also counted in the relay's datagramsReceived). */
  received: number;
  /** Datagrams sent to members on the path. */
  sent: number;
  probes: number;
  /** Path packets dropped: unknown token, wrong source address, malformed. */
  rejected: number;
  /** Path packets not sent: the socket's send queue was full, or the kernel refused them. */
  dropped: number;
  /** Payload bytes of the datagrams sent to members on the path (without the path's header byte). */
  bytesSent: number;
  /** Datagrams members' routes sent in QUIC datagrams instead (path not confirmed or not asked for), and their bytes. */
  sentInQuic: number;
  bytesSentInQuic: number;
}

/**
 * The key a token is found by: its first 30 bits, a small integer (a V8 Smi), so the receive
 * path builds no string and allocates nothing to find a route. The relay makes the tokens and
 * keeps these keys unique (RelayRoute.enable); a packet's whole token is then compared, so a
 * blind attacker still has to guess all 64 bits.
 */
export function tokenKey(buf: Uint8Array, at: number): number {
  return (buf[at] << 22) | (buf[at + 1] << 14) | (buf[at + 2] << 6) | (buf[at + 3] >>> 2);
}

/** Whether buf[at, at + MEDIA_TOKEN_BYTES) is `token` (no early exit). */
function sameToken(buf: Uint8Array, at: number, token: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < MEDIA_TOKEN_BYTES; i++) diff |= buf[at + i] ^ token[i];
  return diff === 0;
}

/**
 * The relay's end: tokens of the members that asked for the path, the handler for the
 * socket's path packets, and per-connection channels that send on the path once the member
 * confirmed it (QUIC datagrams until then).
 *
 * The media packet's way through here is the relay's hot path (docs/transport.md#what-it-costs):
 * it is parsed in place, its route found by an integer key, and nothing is allocated for it
 * but the datagram's view; probes and confirms take the general decoder.
 */
export class RelayMediaPath {
  private readonly byToken = new Map<number, RelayRoute>();
  /** Told when a route got or lost its token or was confirmed (the relay's media plane replans). */
  onRouteChange: (() => void) | undefined;

  /** `stats`: where the path's packets are counted (the relay passes its metrics owner's, core/relay/metrics.ts). */
  constructor(
    private readonly udp: () => UdpSocket,
    readonly stats: RelayMediaPathStats = { received: 0, sent: 0, probes: 0, rejected: 0, dropped: 0, bytesSent: 0, sentInQuic: 0, bytesSentInQuic: 0 },
  ) {}

  /** A channel for one connection: its QUIC datagrams, and the path once enabled. */
  route(quic: DatagramChannel, peer: RelayPathPeer): RelayRoute {
    return new RelayRoute(quic, peer, this);
  }

  /** @internal A fresh token no live route's key collides with (bounded tries: the keys are 30 bits, a relay holds far fewer). */
  newToken(): Buffer {
    for (let tries = 0; tries < 64; tries++) {
      const token = randomBytes(MEDIA_TOKEN_BYTES);
      if (!this.byToken.has(tokenKey(token, 0))) return token;
    }
    throw new InternalError('no free media path token key');
  }

  /** @internal */
  register(route: RelayRoute, token: Uint8Array): void {
    this.byToken.set(tokenKey(token, 0), route);
  }

  /** @internal */
  unregister(route: RelayRoute, token: Uint8Array): void {
    const key = tokenKey(token, 0);
    if (this.byToken.get(key) === route) this.byToken.delete(key);
  }

  /** The live route whose token `buf` carries at OFFSET_MEDIA_PATH_TOKEN, if any. */
  private routeOf(buf: Uint8Array): RelayRoute | undefined {
    const route = this.byToken.get(tokenKey(buf, OFFSET_MEDIA_PATH_TOKEN));
    return route?.token !== undefined && sameToken(buf, OFFSET_MEDIA_PATH_TOKEN, route.token) ? route : undefined;
  }

  /** A packet the socket's 'media-path' class took (first byte 0x21-0x24). */
  handle(data: Buffer, from: { address: string; port: number }): void {
    // Media first, parsed in place: this runs for every packet a member sends.
    const datagram = mediaToRelayDatagram(data);
    if (datagram !== undefined) {
      const route = this.routeOf(data);
      const remote = route?.peer.remote();
      if (route === undefined || remote === undefined || remote.host !== from.address || remote.port !== from.port) {
        this.stats.rejected++;
        return;
      }
      this.stats.received++;
      route.confirmed = true;
      route.peer.onMedia(datagram);
      return;
    }
    let packet;
    try {
      packet = decodeToRelay(data);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.stats.rejected++;
      return;
    }
    const route = this.routeOf(data);
    const remote = route?.peer.remote();
    if (route === undefined || remote === undefined || remote.host !== from.address || remote.port !== from.port) {
      this.stats.rejected++;
      return;
    }
    switch (packet.type) {
      case 'media':
        // Not reached: media decodeToRelay accepts is taken above.
        this.stats.received++;
        route.confirmed = true;
        route.peer.onMedia(packet.datagram);
        return;
      case 'probe':
        this.stats.probes++;
        // An ack is no larger than its probe, and goes to the member's QUIC address only.
        this.send(encodeAck(packet.token), remote);
        return;
      case 'confirm':
        route.confirmed = true;
        return;
    }
  }

  /** A send the kernel refused after all (the callback keeps it off the socket's 'error' event). */
  private readonly onSendError = (err: Error | null): void => {
    if (err) this.stats.dropped++;
  };

  /** @internal A route sent a datagram of `bytes` to its member, on the path or in QUIC. */
  countSent(bytes: number, onPath: boolean): void {
    if (onPath) {
      this.stats.sent++;
      this.stats.bytesSent += bytes;
    } else {
      this.stats.sentInQuic++;
      this.stats.bytesSentInQuic += bytes;
    }
  }

  /** @internal Send one packet (or its parts) to a member's QUIC address; false if dropped. */
  send(data: Uint8Array | readonly Uint8Array[], to: { host: string; port: number }): boolean {
    const udp = this.udp();
    if (udp.getSendQueueCount() > MAX_SOCKET_SEND_QUEUE) {
      this.stats.dropped++;
      return false;
    }
    try {
      udp.send(data as Uint8Array, to.port, to.host, this.onSendError);
      return true;
    } catch {
      // The socket is closing (relay stopping).
      this.stats.dropped++;
      return false;
    }
  }
}


export class RelayRoute implements DatagramChannel {
  /** @internal The path token while enabled (the relay's lookup compares it whole). */
  token?: Buffer;
  #confirmed = false;
  private sentOnPath = 0;

  /** The member proved the path works both ways: its media goes out on the path. */
  get confirmed(): boolean {
    return this.#confirmed;
  }

  set confirmed(value: boolean) {
    if (value === this.#confirmed) return;
    this.#confirmed = value;
    this.path.onRouteChange?.();
  }

  constructor(
    private readonly quic: DatagramChannel,
    readonly peer: RelayPathPeer,
    private readonly path: RelayMediaPath,
  ) {}

  /** Hand out a fresh token (hex) for the path; any earlier one stops working. */
  enable(): string {
    this.disable();
    const token = this.path.newToken();
    this.token = token;
    this.path.register(this, token);
    this.path.onRouteChange?.();
    return token.toString('hex');
  }

  /** The path is closed for this connection (left the room, connection gone). */
  disable(): void {
    if (this.token !== undefined) {
      this.path.unregister(this, this.token);
      this.path.onRouteChange?.();
    }
    this.token = undefined;
    this.confirmed = false;
  }

  send(payload: Uint8Array): boolean {
    if (this.confirmed) {
      if (!this.path.send([MEDIA_TO_CLIENT_HEADER, payload], this.peer.remote())) return false;
      this.sentOnPath++;
      this.path.countSent(payload.byteLength, true);
      return true;
    }
    if (!this.quic.send(payload)) return false;
    this.path.countSent(payload.byteLength, false);
    return true;
  }

  /**
   * A room datagram built by encodeRoomMediaToClient (core/wire/media-path.ts): `packet` as it
   * goes out on the path (one buffer, nothing concatenated per receiver), `tagged` in QUIC.
   */
  sendRoomMedia(packet: Uint8Array, tagged: Uint8Array): boolean {
    if (this.confirmed) {
      if (!this.path.send(packet, this.peer.remote())) return false;
      this.sentOnPath++;
      this.path.countSent(tagged.byteLength, true);
      return true;
    }
    if (!this.quic.send(tagged)) return false;
    this.path.countSent(tagged.byteLength, false);
    return true;
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.quic.onDatagram(handler);
  }

  maxPayload(): number | null {
    return this.quic.maxPayload();
  }

  purgeIfQueued(maxQueued: number): number {
    return this.confirmed ? 0 : this.quic.purgeIfQueued(maxQueued);
  }

  stats(): DatagramStats {
    const s = this.quic.stats();
    return { ...s, sent: s.sent + this.sentOnPath };
  }

  pathStats(): PathStatsSnapshot | undefined {
    return this.quic.pathStats();
  }
}

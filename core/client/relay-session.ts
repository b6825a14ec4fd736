/**
 * A client's session with a relay: QUIC connect with fingerprint verification, then
 * hello / ping / reflect / join over short-lived signalling streams, and the datagram
 * channel for media.
 */
import type { QUICSocket } from '@matrixai/quic';
import { AuthError, ProtocolError, RefusedError, RelayDrainingError, RoomRestrictedError } from '../errors.js';
import { signRegistration } from '../crypto/call-signal.js';
import type { Identity } from '../crypto/identity.js';
import { AUTH_TIMEOUT_MS } from '../relay/auth.js';
import { delay } from '../time.js';
import type { DatagramChannel } from '../transport/datagrams.js';
import { ClientMediaChannel, type MediaPathStats, type RawPath } from '../transport/udp-media.js';
import type { Demux } from '../transport/demux.js';
import type { MediaTransport } from '../transport/media-transport.js';
import { MEDIA_PATH_ACK, MEDIA_PATH_CONTROL_BYTES, OFFSET_MEDIA_PATH_TOKEN, OFFSET_MEDIA_PATH_TYPE, encodeProbe } from '../wire/media-path.js';
import { connectQuic, formatHostPort, type ClientConnection, type HostPort } from '../transport/quic.js';
import { request, requestNoReply, serveSignals, type KnownSignal, type RequestOptions } from '../transport/signal-stream.js';
import { isCallSignal, RELAY_CLOSE_REFUSED, type MemberAnnouncementEntry, type RoomParticipant } from '../wire/signal.js';
import type { RoomCallSession } from './call-session.js';

/** 2 since source ids are 32-bit (core/wire/room-source.ts); the relay refuses another. */
export const CLIENT_PROTOCOL_VERSION = 2;
/** Pushes kept for a listener not set yet; more are dropped and counted (droppedPushes). */
const MAX_EARLY_PUSHES = 256;

export interface RelaySessionOptions {
  relay: HostPort;
  /** Accept or refuse the relay's certificate fingerprint; throw to refuse. */
  verify(certFingerprint: string): void;
  alias?: string;
  /** An access token for a relay that requires one (sent in the hello; others ignore it). */
  token?: string;
  socket?: QUICSocket;
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Media on the UDP media path when the relay offers it ('auto', the default), or always in
   * QUIC datagrams ('quic'): see core/transport/udp-media.ts.
   */
  mediaPath?: 'auto' | 'quic';
}

export interface RoomJoin {
  room: string;
  sourceId: number;
  participants: RoomParticipant[];
  /**
   * The other members' announcements, from a relay that keeps them (undefined: the relay does
   * not, so members must exchange announcements themselves).
   */
  announcements?: MemberAnnouncementEntry[];
}

export class RelaySession implements RoomCallSession {
  private pushListener: ((msg: KnownSignal) => void) | undefined;
  /** Presence and call-signalling pushes go here, apart from room pushes (see onCallSignalling). */
  private callSignalListener: ((msg: KnownSignal) => void) | undefined;
  /** Pushes that arrived before anyone listened (e.g. a room-update racing the join reply). */
  private readonly earlyPushes: KnownSignal[] = [];
  /** Messages pushed by the relay that were malformed or of unknown types, dropped. */
  droppedPushes = 0;
  private readonly media: ClientMediaChannel;
  /** The UDP media path's token from the last join (the relay answers a probe with it at any time). */
  private mediaToken: Buffer | undefined;
  /** The round-trip probe out on the UDP media path, if any. */
  private rttProbe: { sentAt: number; resolve(ms: number | undefined): void; timer: NodeJS.Timeout } | undefined;

  private constructor(
    private readonly client: ClientConnection,
    readonly relay: HostPort,
    readonly relayFingerprint: string,
    readonly handshakeMs: number,
    mediaPath: 'auto' | 'quic',
  ) {
    this.media = new ClientMediaChannel(client.datagrams, client.raw && this.watchProbeAnswers(client.raw), formatHostPort(relay));
    this.media.enabled = mediaPath === 'auto';
  }

  /** The raw path as the media channel sees it, with the answers to our round-trip probes taken first. */
  private watchProbeAnswers(raw: RawPath): RawPath {
    return {
      send: (parts) => raw.send(parts),
      relay: () => raw.relay(),
      onPacket: (handler) =>
        raw.onPacket((data, from) => {
          const probe = this.rttProbe;
          if (
            probe &&
            data.length === MEDIA_PATH_CONTROL_BYTES &&
            data[OFFSET_MEDIA_PATH_TYPE] === MEDIA_PATH_ACK &&
            this.mediaToken?.equals(data.subarray(OFFSET_MEDIA_PATH_TOKEN))
          ) {
            const relay = raw.relay();
            if (from.address === relay.host && from.port === relay.port) {
              this.rttProbe = undefined;
              clearTimeout(probe.timer);
              probe.resolve(performance.now() - probe.sentAt);
            }
          }
          // The media channel sees every packet, acks included (an extra one changes nothing).
          handler(data, from);
        }),
    };
  }

  /**
   * One round trip to the relay on the path media takes now, ms. On the UDP media path: a probe
   * (9 bytes) that the relay answers with its ack at once, timed to the ack; undefined if none
   * came back within `timeoutMs`. In QUIC datagrams: QUIC's smoothed RTT of the connection,
   * which the media keeps fresh there. (QUIC's RTT is not the media's once media moves to the
   * UDP path: only keep-alives and delayed ACKs are left to sample it; it read 10-16 ms on
   * loopback where the path's round trip is ~1 ms.)
   */
  mediaRtt(timeoutMs: number): Promise<number | undefined> {
    const raw = this.client.raw;
    if (this.media.path !== 'udp' || !raw || !this.mediaToken) return Promise.resolve(this.datagrams.pathStats()?.rttMs);
    if (this.rttProbe) return Promise.resolve(undefined); // one at a time: an ack carries no probe id
    const probe = encodeProbe(this.mediaToken);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.rttProbe = undefined;
        resolve(undefined);
      }, timeoutMs);
      timer.unref();
      this.rttProbe = { sentAt: performance.now(), resolve, timer };
      try {
        raw.send([probe]);
      } catch {
        clearTimeout(timer);
        this.rttProbe = undefined;
        resolve(undefined);
      }
    });
  }

  /** Start the UDP media path with the token of a join (or stay in QUIC without one). */
  private startMediaPath(tokenHex: string | undefined): void {
    if (tokenHex === undefined) return;
    this.media.start(tokenHex);
    this.mediaToken = /^[0-9a-f]{16}$/.test(tokenHex) ? Buffer.from(tokenHex, 'hex') : undefined;
  }

  private stopMediaPath(): void {
    this.media.stop();
    this.mediaToken = undefined;
    const probe = this.rttProbe;
    this.rttProbe = undefined;
    if (probe) {
      clearTimeout(probe.timer);
      probe.resolve(undefined);
    }
  }

  static async open(opts: RelaySessionOptions): Promise<RelaySession> {
    const t0 = performance.now();
    const client = await connectQuic({
      relay: opts.relay,
      verify: opts.verify,
      socket: opts.socket,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
    });
    const handshakeMs = performance.now() - t0;
    const session = new RelaySession(client, opts.relay, client.peerFingerprint, handshakeMs, opts.mediaPath ?? 'auto');
    serveSignals(client.connection, {
      handle: (msg) => {
        session.deliverPush(msg);
        return [];
      },
      onDropped: () => {
        session.droppedPushes++;
      },
    });
    try {
      // With a token the relay answers once its auth service has (which may take it up to
      // AUTH_TIMEOUT_MS): wait for that rather than give up first.
      const helloOpts = opts.token === undefined ? opts : { ...opts, timeoutMs: Math.max(opts.timeoutMs ?? 0, AUTH_TIMEOUT_MS + 2_000) };
      const ack = await session.ask({ type: 'hello', version: CLIENT_PROTOCOL_VERSION, alias: opts.alias, client: 'wzp', token: opts.token }, helloOpts);
      if (ack.type === 'error') throw new ProtocolError(`relay refused the hello: ${ack.code}: ${ack.message}`);
      if (ack.type !== 'hello-ack') throw new ProtocolError(`relay answered hello with "${ack.type}"`);
      if (ack.version !== CLIENT_PROTOCOL_VERSION) throw new ProtocolError(`relay speaks wzp protocol ${ack.version}, this client ${CLIENT_PROTOCOL_VERSION}: run the same wzp release on both`);
    } catch (err) {
      // A relay that refuses us (over one of its limits) closes at once with its reason.
      const refusal = await refusedBy(client);
      await client.close();
      throw refusal ?? err;
    }
    return session;
  }

  /** Media to and from the relay: QUIC datagrams, or the UDP media path once confirmed. */
  get datagrams(): DatagramChannel {
    return this.media;
  }

  /**
   * The same media as a MediaTransport: the UDP media path once confirmed, QUIC datagrams
   * until then (a MediaPathSwitch; its `paths` are the two).
   */
  get mediaTransport(): MediaTransport {
    return this.media.transport;
  }

  /**
   * Keep media in QUIC datagrams ('quic') or take the UDP media path when the relay offers it
   * ('auto'); applies from the next join.
   */
  useMediaPath(mode: 'auto' | 'quic'): void {
    this.media.enabled = mode === 'auto';
  }

  /** Which path our media takes now, and the path's counters. */
  mediaPathStats(): MediaPathStats {
    return this.media.mediaPathStats();
  }

  /** Resolves when the connection to the relay is gone. */
  get closed(): Promise<void> {
    return this.client.closed;
  }

  get localAddress(): HostPort {
    return this.client.localAddress;
  }

  /**
   * The demultiplexer of the UDP socket this session's QUIC connection runs on: connectivity
   * checks, a STUN client and the direct path register their packet classes here and send
   * with its send(), so they use the NAT mappings the relay observed (core/transport/demux.ts).
   */
  get demux(): Demux {
    return this.client.demux;
  }

  /** That UDP socket (the direct path dials and accepts on it too). */
  get socket(): QUICSocket {
    return this.client.socket;
  }

  get label(): string {
    return formatHostPort(this.relay);
  }

  /**
   * Send a request, return the reply; an `error` reply becomes a RefusedError when the relay
   * refused on purpose (a limit: RELAY_REFUSAL_CODES), a ProtocolError otherwise.
   */
  async ask(msg: KnownSignal, opts: RequestOptions = {}): Promise<KnownSignal> {
    const reply = await request(this.client.connection, msg, opts);
    if (reply.type === 'error') throw relayError(this.label, msg.type, reply);
    return reply;
  }

  /** Round-trip time of one ping over a fresh stream, in ms. */
  async ping(opts: RequestOptions = {}): Promise<number> {
    const nonce = Math.floor(Math.random() * 2 ** 31);
    const t0 = performance.now();
    const reply = await this.ask({ type: 'ping', nonce }, opts);
    if (reply.type !== 'pong' || reply.nonce !== nonce) throw new ProtocolError('relay answered ping with a wrong pong');
    return performance.now() - t0;
  }

  /** Our address as the relay sees it (server-reflexive address). */
  async reflect(opts: RequestOptions = {}): Promise<string> {
    const reply = await this.ask({ type: 'reflect' }, opts);
    if (reply.type !== 'reflect-response') throw new ProtocolError(`relay answered reflect with "${reply.type}"`);
    return reply.observedAddress;
  }

  async joinEcho(opts: RequestOptions = {}): Promise<void> {
    this.stopMediaPath();
    const reply = await this.ask({ type: 'join', mode: 'echo', ...this.pathRequest() }, opts);
    if (reply.type !== 'joined' || reply.mode !== 'echo') throw new ProtocolError(`relay answered join with "${reply.type}"`);
    this.startMediaPath(reply.mediaToken);
  }

  private pathRequest(): { udpMedia?: true } {
    return this.media.capable ? { udpMedia: true } : {};
  }

  /**
   * Receive messages the relay pushes (room-update, relayed). Messages pushed before a
   * listener was set are delivered to it first, in arrival order.
   */
  onPush(listener: (msg: KnownSignal) => void): void {
    this.pushListener = listener;
    for (const msg of this.earlyPushes.splice(0)) listener(msg);
  }

  /**
   * Receive the relay's presence and call-signalling pushes (call signals, presence-replaced,
   * call-gone) here rather than with onPush: a room call run over this session (runCall sets
   * onPush) leaves them to the call's signalling (core/client/presence.ts).
   */
  onCallSignalling(listener: (msg: KnownSignal) => void): void {
    this.callSignalListener = listener;
  }

  private deliverPush(msg: KnownSignal): void {
    // The drain notice concerns both: a registration (no new calls come) and a call in progress.
    if (msg.type === 'draining' && this.callSignalListener) {
      this.callSignalListener(msg);
      this.pushListener?.(msg);
      return;
    }
    if (this.callSignalListener && (isCallSignal(msg) || msg.type === 'presence-replaced' || msg.type === 'call-gone')) this.callSignalListener(msg);
    else if (this.pushListener) this.pushListener(msg);
    // Bounded: a relay may push to a session that never listens (echo-test, reflect).
    else if (this.earlyPushes.length < MAX_EARLY_PUSHES) this.earlyPushes.push(msg);
    else this.droppedPushes++;
  }

  /**
   * Join a room by its id (the hash of its name); returns our source id, the roster and, from
   * relays that keep them, the members' announcements. `announcement` (our signed one) goes
   * to the members with the join notice.
   */
  async joinRoom(
    room: string,
    opts: RequestOptions & { alias?: string; fingerprint?: string; announcement?: Record<string, unknown>; identity?: Identity; roomName?: string } = {},
  ): Promise<RoomJoin> {
    this.stopMediaPath();
    const join: KnownSignal = {
      type: 'join',
      mode: 'room',
      room,
      alias: opts.alias,
      fingerprint: opts.fingerprint,
      announcement: opts.announcement,
      ...this.pathRequest(),
    };
    let reply = await request(this.client.connection, join, opts);
    if (reply.type === 'error' && reply.code === 'identity-required' && opts.identity !== undefined) {
      // A room its operator restricted to listed identities: prove ours on this connection (a
      // signed challenge, as presence registers, taking no calls) and ask again, once.
      await this.proveIdentity(opts.identity, opts);
      reply = await request(this.client.connection, join, opts);
    }
    if (reply.type === 'error') {
      if (reply.code === 'room-restricted' || reply.code === 'identity-required') {
        const who = opts.identity ? ` your identity ${opts.identity.fingerprint} is not on its list` : ' it admits only listed identities';
        throw new RoomRestrictedError(`room ${opts.roomName ?? room} is restricted on relay ${this.label};${who}`, {
          suggestions: ['ask the relay operator to add your fingerprint (wzp identity shows it) to the room\'s allow list'],
        });
      }
      throw relayError(this.label, join.type, reply);
    }
    if (reply.type !== 'joined' || reply.mode !== 'room' || reply.sourceId === undefined) {
      throw new ProtocolError(`relay answered join with "${reply.type}"`);
    }
    this.startMediaPath(reply.mediaToken);
    return {
      room,
      sourceId: reply.sourceId,
      participants: reply.participants ?? [],
      ...(reply.announcements === undefined ? {} : { announcements: reply.announcements }),
    };
  }

  /**
   * Prove `identity` on this connection: sign the relay's challenge (core/crypto/call-signal.ts
   * registration, receiveCalls false: it takes no incoming calls).
   */
  async proveIdentity(identity: Identity, opts: RequestOptions = {}): Promise<void> {
    const challenge = await this.ask({ type: 'register-challenge' }, opts);
    if (challenge.type !== 'challenge') throw new ProtocolError(`relay answered register-challenge with "${challenge.type}"`);
    const reply = await this.ask({ ...signRegistration(identity, this.relayFingerprint, challenge.nonce), receiveCalls: false }, opts);
    if (reply.type !== 'registered' || reply.fingerprint !== identity.fingerprint) throw new ProtocolError(`relay answered register with "${reply.type}"`);
  }

  /** Send an opaque payload to one room member (by source id) or to all others. */
  async roomSignal(payload: Record<string, unknown>, to?: number, opts: RequestOptions = {}): Promise<void> {
    await this.sendOnly({ type: 'room-signal', payload, ...(to === undefined ? {} : { to }) }, opts);
  }

  /** Leave the room (or echo mode) at once; the relay tells the others immediately. */
  async leave(opts: RequestOptions = {}): Promise<void> {
    this.stopMediaPath();
    await this.sendOnly({ type: 'leave' }, opts);
  }

  private async sendOnly(msg: KnownSignal, opts: RequestOptions): Promise<void> {
    const reply = await requestNoReply(this.client.connection, msg, opts);
    if (reply !== undefined) throw relayError(this.label, msg.type, reply);
  }

  async close(): Promise<void> {
    this.stopMediaPath();
    await this.client.close();
  }
}

/** `error` codes with which a relay refuses on purpose (a limit, or draining), not for a broken request. */
export const RELAY_REFUSAL_CODES: ReadonlySet<string> = new Set(['rate-limited', 'room-full', 'too-large', 'draining']);

/** `error` codes with which a relay that requires a token refuses (./relay/relay.ts hello). */
export const RELAY_AUTH_CODES: ReadonlySet<string> = new Set(['token-required', 'token-rejected', 'auth-unavailable']);

function relayError(label: string, request: string, reply: { code: string; message: string }): Error {
  if (RELAY_AUTH_CODES.has(reply.code)) {
    return new AuthError(`relay ${label} refused: ${reply.message}`, { suggestions: authSuggestions(reply.code) });
  }
  const text = `relay ${label} refused "${request}": ${reply.message} (${reply.code})`;
  if (reply.code === 'draining') {
    return new RelayDrainingError(`relay ${label} is draining (shutting down) and refused "${request}": ${reply.message}`, {
      suggestions: ['use another relay, or give several (RELAY1,RELAY2): the call moves to the next one when a relay drains or is lost'],
    });
  }
  return RELAY_REFUSAL_CODES.has(reply.code) ? new RefusedError(text) : new ProtocolError(text);
}

function authSuggestions(code: string): string[] {
  if (code === 'token-required') return ['this relay admits only clients with a token: give it with --token TOKEN or the WZP_TOKEN environment variable'];
  if (code === 'token-rejected') return ['get a new token from the service the relay operator uses, and check that it is the one for this relay'];
  return ['the relay cannot check tokens right now: try again later, or tell its operator'];
}

/** The relay's refusal, if it closed the connection with one (waits briefly for the close to arrive). */
async function refusedBy(client: ClientConnection): Promise<RefusedError | undefined> {
  await Promise.race([client.closed, delay(300)]);
  const close = client.peerClose();
  if (close === undefined || !close.isApp || close.code !== RELAY_CLOSE_REFUSED) return undefined;
  return new RefusedError(`the relay refused the connection: ${close.reason || 'no reason given'}`, {
    suggestions: ['wait and try again, or ask the relay operator about its limits'],
  });
}

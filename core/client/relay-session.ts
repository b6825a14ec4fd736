/**
 * A client's session with a relay: QUIC connect with fingerprint verification, then
 * hello / ping / reflect / join over short-lived signalling streams, and the datagram
 * channel for media.
 */
import type { QUICSocket } from '@matrixai/quic';
import { ProtocolError } from '../errors.js';
import type { DatagramChannel } from '../transport/datagrams.js';
import { connectQuic, formatHostPort, type ClientConnection, type HostPort } from '../transport/quic.js';
import { request, type KnownSignal, type RequestOptions } from '../transport/signal-stream.js';

export const CLIENT_PROTOCOL_VERSION = 1;

export interface RelaySessionOptions {
  relay: HostPort;
  /** Accept or refuse the relay's certificate fingerprint; throw to refuse. */
  verify(certFingerprint: string): void;
  alias?: string;
  socket?: QUICSocket;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class RelaySession {
  private constructor(
    private readonly client: ClientConnection,
    readonly relay: HostPort,
    readonly relayFingerprint: string,
    readonly handshakeMs: number,
  ) {}

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
    const session = new RelaySession(client, opts.relay, client.peerFingerprint, handshakeMs);
    try {
      const ack = await session.ask({ type: 'hello', version: CLIENT_PROTOCOL_VERSION, alias: opts.alias, client: 'wzp' }, opts);
      if (ack.type !== 'hello-ack') throw new ProtocolError(`relay answered hello with "${ack.type}"`);
    } catch (err) {
      await client.close();
      throw err;
    }
    return session;
  }

  get datagrams(): DatagramChannel {
    return this.client.datagrams;
  }

  get localAddress(): HostPort {
    return this.client.localAddress;
  }

  get label(): string {
    return formatHostPort(this.relay);
  }

  /** Send a request, return the reply; an `error` reply becomes a ProtocolError. */
  async ask(msg: KnownSignal, opts: RequestOptions = {}): Promise<KnownSignal> {
    const reply = await request(this.client.connection, msg, opts);
    if (reply.type === 'error') {
      throw new ProtocolError(`relay ${this.label} refused "${msg.type}": ${reply.message} (${reply.code})`);
    }
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
    const reply = await this.ask({ type: 'join', mode: 'echo' }, opts);
    if (reply.type !== 'joined' || reply.mode !== 'echo') throw new ProtocolError(`relay answered join with "${reply.type}"`);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

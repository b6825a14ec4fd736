/**
 * The wzp relay: a QUIC server that answers signalling (hello, ping, reflect, join) and
 * handles media datagrams per connection mode. This first version has one media mode,
 * `echo` (a client's datagrams are sent back to it); rooms build on the same skeleton.
 *
 * The relay never trusts input: every malformed signal or unexpected datagram is dropped
 * and counted in `metrics`, never thrown.
 */
import type { QUICConnection } from '@matrixai/quic';
import { events as quicEvents } from '@matrixai/quic';
import type { DatagramChannel } from '../transport/datagrams.js';
import { formatHostPort, startQuicServer, type HostPort, type RunningQuicServer, type TlsMaterial } from '../transport/quic.js';
import { serveSignals, type KnownSignal } from '../transport/signal-stream.js';

export const RELAY_PROTOCOL_VERSION = 1;

export interface RelayOptions {
  listen: HostPort;
  tls: TlsMaterial;
  /** Certificate fingerprint announced in hello-ack (clients verify it in TLS anyway). */
  fingerprint: string;
  /** Namespaced events for logs: 'relay:connection', 'relay:signal-dropped', ... */
  onEvent?(event: RelayEvent): void;
}

export type RelayEvent =
  | { type: 'relay:connection-open'; peer: string }
  | { type: 'relay:connection-closed'; peer: string; reason: string }
  | { type: 'relay:join'; peer: string; mode: string }
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
}

type Mode = 'none' | 'echo';

interface Peer {
  readonly connection: QUICConnection;
  readonly datagrams: DatagramChannel;
  readonly label: string;
  mode: Mode;
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
  };
  private readonly peers = new Set<Peer>();
  private server?: RunningQuicServer;

  private constructor(private readonly opts: RelayOptions) {}

  static async start(opts: RelayOptions): Promise<Relay> {
    const relay = new Relay(opts);
    relay.server = await startQuicServer({
      tls: opts.tls,
      listen: opts.listen,
      onConnection: (connection, datagrams) => relay.accept(connection, datagrams),
    });
    return relay;
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
      datagrams,
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
        if (msg.mode === 'echo') {
          peer.mode = 'echo';
          this.emit({ type: 'relay:join', peer: peer.label, mode: 'echo' });
          return [{ type: 'joined', mode: 'echo' }];
        }
        return [{ type: 'error', code: 'unsupported-mode', message: `join mode "${msg.mode}" is not supported by this relay` }];
      case 'leave':
        peer.mode = 'none';
        return [];
      default:
        // A known message that a relay does not accept from clients (e.g. pong): ignore.
        this.metrics.signalsUnknown++;
        this.emit({ type: 'relay:signal-dropped', peer: peer.label, reason: 'unexpected-type', detail: msg.type });
        return [];
    }
  }

  private onDatagram(peer: Peer, payload: Uint8Array): void {
    this.metrics.datagramsReceived++;
    if (peer.mode === 'echo') {
      if (peer.datagrams.send(payload)) this.metrics.datagramsEchoed++;
      else this.metrics.datagramsDropped++;
      return;
    }
    this.metrics.datagramsUnexpected++;
  }
}

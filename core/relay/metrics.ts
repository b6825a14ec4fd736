/**
 * The relay's metrics, in one owner: `RelayMetricsRegistry`.
 *
 * Every counter the relay keeps lives here as a plain integer field that the relay's code
 * increments (connections, signals, datagrams and bytes per path, refusals by reason, auth
 * results), or in a plain object the owner hands to the one class that counts it (the rooms'
 * forwarding, ./rooms.ts, and the UDP media path's packets, core/transport/udp-media.ts).
 * What other parts of the stack count on their own (the QUIC gate, the socket's
 * demultiplexer, the STUN server, presence) is read through `attach()`. From all of it the
 * owner makes:
 * - `snapshot()`: the `RelayMetrics` document `Relay.metrics` returns (the `wzp relay`
 *   summary, `--stats` and the tests read it);
 * - `prometheus()`: a prom-client Registry of its own (never the global one, so several
 *   relays in one process do not mix) whose counters and gauges read the owner's fields when
 *   Prometheus scrapes: the hot path never touches prom-client, it only adds to integers.
 *
 * Forwarding latency: from the moment the relay's socket handed it a datagram (the
 * demultiplexer's arrival stamp, core/transport/demux.ts) to the moment the forward to the
 * room's other members returned (their sends handed to quiche or to the UDP socket). It is
 * sampled: the demultiplexer stamps about one packet in LATENCY_SAMPLE_EVERY, picked by a
 * cheap pseudo-random generator (a counter would alias with periodic traffic, e.g. media
 * packets alternating with ACKs), and only datagrams handled in the same turn as their
 * packet's arrival are measured (the QUIC library's slow path, before a peer is verified or
 * after it migrated, delivers later: those are not measured rather than measured wrong).
 * `npm run bench relay-ops` prints what the sampling costs per packet.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from './process-metrics.js';
import type { SocketGateStats } from '../transport/quic.js';
import type { RelayMediaPathStats } from '../transport/udp-media.js';
import { STUN_DROP_REASONS, type StunDropReason, type StunServerStats } from '../nat/stun-server.js';
import { REFUSAL_REASONS, type RefusalReason } from './limits.js';
import type { PresenceStats } from './presence.js';
import type { AuthStats } from './auth.js';
import type { ForwardStats } from './rooms.js';
import type { FederationStats } from '../federation/federation.js';
import type { PlaneCounters } from './media-plane.js';
import { LINK_DROP_REASONS } from '../federation/link.js';

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
  /** Token validations by result (./auth.ts); all 0 without --auth-url. */
  auth: AuthStats;
  /** Relay links and global rooms (core/federation/); absent without federation. */
  federation?: FederationStats;
  /**
   * The media plane thread (./media-plane.ts): whether it runs (`off`: never started, e.g.
   * not Linux or the UDP path off; `failed`: it stopped working and the main thread forwards
   * everything), the media packets it forwarded itself, those it handed to the main thread,
   * and its receive batches. Its forwards are also in the totals above.
   */
  mediaPlane: { state: MediaPlaneState; packets: number; handedOver: number; batches: number };
}

export type MediaPlaneState = 'running' | 'failed' | 'stopped' | 'off';

/** How a token check ended (core/relay/auth.ts counts them; `cached`: answered from its cache, `busy`: over its cap). */
export type AuthResult = keyof AuthStats;
export const AUTH_RESULTS: readonly AuthResult[] = ['ok', 'refused', 'error', 'cached', 'busy'];
const EMPTY_AUTH: AuthStats = { ok: 0, refused: 0, error: 0, cached: 0, busy: 0 };

/**
 * What the relay dropped that no limit refused (`wzp_relay_drops_total{reason}`; refusals
 * are `wzp_relay_refusals_total{reason}`): datagrams from connections in no media mode,
 * datagrams a member's queue or the socket would not take, stale ones purged for congested
 * members, malformed and unknown signals, rejected UDP packets (media path and unclaimed),
 * datagrams the QUIC library failed on, sends the kernel refused, and STUN's drops.
 */
export type DropReason =
  | 'datagram-unexpected'
  | 'datagram-not-sent'
  | 'datagram-stale'
  | 'signal-malformed'
  | 'signal-unknown'
  | 'udp-rejected'
  | 'socket-error'
  | 'send-error'
  | `stun-${StunDropReason}`;
export const DROP_REASONS: readonly DropReason[] = [
  'datagram-unexpected',
  'datagram-not-sent',
  'datagram-stale',
  'signal-malformed',
  'signal-unknown',
  'udp-rejected',
  'socket-error',
  'send-error',
  ...STUN_DROP_REASONS.map((r) => `stun-${r}` as const),
];

/** One room datagram in this many has its forwarding latency measured (a power of two). */
export const LATENCY_SAMPLE_EVERY = 8;
/** Histogram buckets of the forwarding latency, seconds: 50 µs to 20 ms. */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02];

/** What other parts of the relay count on their own; read when a snapshot or a scrape is taken. */
export interface RelayMetricSources {
  gate(): SocketGateStats | undefined;
  stun(): StunServerStats | undefined;
  /** Non-QUIC packets the socket's demultiplexer dropped (unclaimed ones and path checks). */
  demuxDropped(): number;
  roomsOpen(): number;
  roomMembers(): number;
  presence(): PresenceStats;
  /** Token checks by result (./auth.ts); undefined without token auth. */
  auth(): AuthStats | undefined;
  /** Relay links (core/federation/); undefined without federation. */
  federation?(): FederationStats | undefined;
  /** The media plane's counters and state (./media-plane.ts); undefined while it is off. */
  plane?(): { state: MediaPlaneState; counters: PlaneCounters } | undefined;
}

const NO_PLANE: PlaneCounters = { received: 0, bytesReceived: 0, forwarded: 0, bytesForwarded: 0, sendDropped: 0, rejected: 0, mediaRate: 0, handedOver: 0, batches: 0 };

const EMPTY_STUN_DROPS = Object.fromEntries(STUN_DROP_REASONS.map((r) => [r, 0])) as Record<StunDropReason, number>;
const EMPTY_PRESENCE: PresenceStats = { registrationsOpen: 0, registrationsTotal: 0, registrationsReplaced: 0, callSignalsRouted: 0, callSignalsOffline: 0, callsOpen: 0 };

export class RelayMetricsRegistry {
  // --- plain counters the relay increments (no allocation, no call) ---
  connectionsOpen = 0;
  connectionsTotal = 0;
  /** Connections the QUIC server handed over (handshakes that succeeded), refused ones included. */
  handshakesOk = 0;
  signalsReceived = 0;
  signalsMalformed = 0;
  signalsUnknown = 0;
  /** Media datagrams received in QUIC datagrams, and their bytes (the sender's datagram). */
  quicReceived = 0;
  quicBytesReceived = 0;
  /** Media datagrams received on the UDP media path, and their bytes (without the path's header). */
  udpReceived = 0;
  udpBytesReceived = 0;
  datagramsEchoed = 0;
  datagramsUnexpected = 0;
  echoDropped = 0;
  /** Non-QUIC packets that are not media path packets either (or the path is off). */
  strayUdp = 0;
  readonly refused = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  /** The rooms' forwarding (./rooms.ts counts into it). */
  readonly rooms: ForwardStats = { forwarded: 0, dropped: 0, purged: 0 };
  /**
   * The UDP media path's packets, and what members' routes sent on each path (counted by
   * core/transport/udp-media.ts's RelayMediaPath into it): room forwards and echoes alike.
   */
  readonly mediaPath: RelayMediaPathStats = { received: 0, sent: 0, probes: 0, rejected: 0, dropped: 0, bytesSent: 0, sentInQuic: 0, bytesSentInQuic: 0 };

  private sources?: RelayMetricSources;
  /** The last failed-handshake count exported (kept monotonic: see handshakesFailed()). */
  private failedSeen = 0;
  private readonly latency = new Histogram({
    name: 'wzp_relay_forwarding_latency_seconds',
    help: "Time from a room datagram's arrival at the relay's socket to its forward to the other members returning (sampled, about one packet in 8).",
    buckets: LATENCY_BUCKETS,
    registers: [],
  });
  private registry?: Registry;

  /** Read the gate's, STUN's, the demultiplexer's, the rooms' and presence's own counters from here. */
  attach(sources: RelayMetricSources): void {
    this.sources = sources;
  }

  /** A refusal of a limit (every reason in REFUSAL_REASONS has a counter). */
  refuse(reason: RefusalReason): void {
    this.refused[reason]++;
  }

  /** A sampled forwarding latency, milliseconds. */
  observeForwardingMs(ms: number): void {
    if (ms >= 0 && Number.isFinite(ms)) this.latency.observe(ms / 1000);
  }

  /**
   * Handshakes that did not end in a connection: started, minus succeeded, minus those still
   * in progress; kept monotonic for a counter (a success is counted a moment before the gate
   * sees its handshake end).
   */
  handshakesFailed(): number {
    const gate = this.sources?.gate();
    if (!gate) return this.failedSeen;
    const failed = gate.handshakes - this.handshakesOk - (gate.inProgress ?? 0);
    if (failed > this.failedSeen) this.failedSeen = failed;
    return this.failedSeen;
  }

  /** The media plane's counters (zeros while it is off). */
  private planeCounters(): PlaneCounters {
    return this.sources?.plane?.()?.counters ?? NO_PLANE;
  }

  /** The relay's counters as one document (Relay.metrics). */
  snapshot(): RelayMetrics {
    const s = this.sources;
    const gate = s?.gate();
    const stun = s?.stun();
    const plane = s?.plane?.();
    const p = plane?.counters ?? NO_PLANE;
    const refused = { ...this.refused };
    if (gate) for (const [reason, n] of Object.entries(gate.dropped) as [RefusalReason, number][]) refused[reason] += n;
    refused['media-rate'] += p.mediaRate;
    return {
      connectionsOpen: this.connectionsOpen,
      connectionsTotal: this.connectionsTotal,
      signalsReceived: this.signalsReceived,
      signalsMalformed: this.signalsMalformed,
      signalsUnknown: this.signalsUnknown,
      datagramsReceived: this.quicReceived + this.udpReceived + p.received,
      datagramsEchoed: this.datagramsEchoed,
      datagramsUnexpected: this.datagramsUnexpected,
      datagramsDropped: this.rooms.dropped + this.echoDropped + p.sendDropped,
      datagramsForwarded: this.rooms.forwarded + p.forwarded,
      datagramsPurged: this.rooms.purged,
      datagramsOnUdpPath: this.udpReceived + p.received,
      udpPathRejected: this.mediaPath.rejected + this.strayUdp + (s?.demuxDropped() ?? 0) + p.rejected,
      roomsOpen: s?.roomsOpen() ?? 0,
      refused,
      socketErrors: gate?.errors ?? 0,
      sendErrors: gate?.sendErrors ?? 0,
      handshakesStarted: gate?.handshakes ?? 0,
      retriesSent: gate?.retries ?? 0,
      stunRequests: stun?.received ?? 0,
      stunAnswered: stun?.answered ?? 0,
      stunErrors: stun?.errors ?? 0,
      stunDropped: { ...(stun?.dropped ?? EMPTY_STUN_DROPS) },
      presence: s ? { ...s.presence() } : { ...EMPTY_PRESENCE },
      auth: { ...(s?.auth() ?? EMPTY_AUTH) },
      ...federationSnapshot(s?.federation?.()),
      mediaPlane: { state: plane?.state ?? 'off', packets: p.received, handedOver: p.handedOver, batches: p.batches },
    };
  }

  /** Drops by reason (wzp_relay_drops_total), from a snapshot. */
  drops(m: RelayMetrics = this.snapshot()): Record<DropReason, number> {
    const out = {
      'datagram-unexpected': m.datagramsUnexpected,
      'datagram-not-sent': m.datagramsDropped,
      'datagram-stale': m.datagramsPurged,
      'signal-malformed': m.signalsMalformed,
      'signal-unknown': m.signalsUnknown,
      'udp-rejected': m.udpPathRejected,
      'socket-error': m.socketErrors,
      'send-error': m.sendErrors,
    } as Record<DropReason, number>;
    for (const r of STUN_DROP_REASONS) out[`stun-${r}`] = m.stunDropped[r];
    return out;
  }

  /**
   * This relay's prom-client Registry (made on first use): the `wzp_relay_*` series, read
   * from the owner at scrape time, the forwarding latency histogram, and prom-client's
   * process and Node.js metrics (CPU, RSS, heap, event loop delay: ./process-metrics.ts).
   */
  prometheus(): Registry {
    if (this.registry) return this.registry;
    const registry = new Registry();
    const registers = [registry];
    // One snapshot per scrape: the labelled series below share it.
    let scrape: { m: RelayMetrics; drops: Record<DropReason, number> } | undefined;
    const now = (): { m: RelayMetrics; drops: Record<DropReason, number> } => {
      if (!scrape) {
        const m = this.snapshot();
        scrape = { m, drops: this.drops(m) };
        // Dropped after this scrape's synchronous collection (prom-client collects all metrics in one pass).
        queueMicrotask(() => (scrape = undefined));
      }
      return scrape;
    };
    const gauge = (name: string, help: string, value: (m: RelayMetrics) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value(now().m));
        },
      });
    };
    const counter = (name: string, help: string, value: () => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    };
    const labelled = <L extends string>(name: string, help: string, label: string, values: () => Record<L, number>): void => {
      new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset();
          for (const [key, n] of Object.entries(values()) as [L, number][]) this.inc({ [label]: key }, n);
        },
      });
    };
    gauge('wzp_relay_connections_open', 'QUIC connections open now.', (m) => m.connectionsOpen);
    counter('wzp_relay_connections_total', 'QUIC connections accepted since start.', () => now().m.connectionsTotal);
    gauge('wzp_relay_rooms_open', 'Rooms with at least one member now.', (m) => m.roomsOpen);
    gauge('wzp_relay_room_members', 'Members in all rooms now.', () => this.sources?.roomMembers() ?? 0);
    gauge('wzp_relay_registrations_open', 'Identities registered for calls now (presence).', (m) => m.presence.registrationsOpen);
    gauge('wzp_relay_calls_open', 'Calls the relay tracks now (ringing or answered).', (m) => m.presence.callsOpen);
    labelled('wzp_relay_datagrams_received_total', 'Media datagrams received from members, by path (QUIC datagrams or the UDP media path).', 'path', () => ({
      quic: this.quicReceived,
      udp: this.udpReceived + this.planeCounters().received,
    }));
    labelled('wzp_relay_bytes_received_total', "Bytes of media datagrams received, by path (the sender's datagram, without QUIC or path headers).", 'path', () => ({
      quic: this.quicBytesReceived,
      udp: this.udpBytesReceived + this.planeCounters().bytesReceived,
    }));
    labelled('wzp_relay_datagrams_forwarded_total', 'Media datagrams sent to members (room forwards, one per receiving member, and echoes), by path.', 'path', () => ({
      quic: this.mediaPath.sentInQuic,
      udp: this.mediaPath.sent + this.planeCounters().forwarded,
    }));
    labelled('wzp_relay_bytes_forwarded_total', 'Bytes of media datagrams sent to members (with the room source tag, without QUIC or path headers), by path.', 'path', () => ({
      quic: this.mediaPath.bytesSentInQuic,
      udp: this.mediaPath.bytesSent + this.planeCounters().bytesForwarded,
    }));
    gauge('wzp_relay_media_plane_up', 'Whether the media plane thread forwards room media (1) or the main thread does all of it (0: off or failed).', (m) => (m.mediaPlane.state === 'running' ? 1 : 0));
    labelled('wzp_relay_media_plane_packets_total', 'Media packets on the UDP path the media plane thread forwarded itself, or handed to the main thread (rooms it does not forward, moved addresses).', 'result', () => {
      const p = this.planeCounters();
      return { forwarded: p.received, 'handed-over': p.handedOver };
    });
    counter('wzp_relay_signals_total', 'Signalling requests received.', () => now().m.signalsReceived);
    labelled('wzp_relay_refusals_total', 'Input refused by a limit or the QUIC gate, by reason (docs/relay-limits.md).', 'reason', () => now().m.refused);
    labelled('wzp_relay_drops_total', 'Input or output dropped that no limit refused, by reason (docs/relay-operations.md).', 'reason', () => now().drops);
    labelled('wzp_relay_handshakes_total', 'QUIC handshakes of new connections, by result (failed: timed out, or TLS or the library refused).', 'result', () => ({
      ok: this.handshakesOk,
      failed: this.handshakesFailed(),
    }));
    counter('wzp_relay_retries_total', 'QUIC Retry packets sent (address validation).', () => now().m.retriesSent);
    labelled('wzp_relay_auth_total', 'Token checks (--auth-url), by result: ok, refused, error (service down, slow or garbage), cached, busy (over the check cap).', 'result', () => now().m.auth);
    labelled('wzp_relay_stun_total', 'STUN packets, by outcome.', 'result', () => {
      const m = now().m;
      return { received: m.stunRequests, answered: m.stunAnswered, error: m.stunErrors };
    });
    this.federationSeries(registers, () => now().m.federation);
    registry.registerMetric(this.latency);
    registerProcessMetrics(registry);
    this.registry = registry;
    return registry;
  }

  /**
   * The wzp_relay_federation_* series (docs/federation.md, "Metrics"): per peer relay
   * (`peer`: its short fingerprint), link state, transitions, member datagrams, link frames
   * and their bytes, link messages, drops by reason, and members learned. Without federation
   * only the totals exist, at 0.
   */
  private federationSeries(registers: Registry[], stats: () => FederationStats | undefined): void {
    const links = () => stats()?.links ?? [];
    const peer = (fp: string) => fp.split(':').slice(0, 4).join(':');
    new Gauge({
      name: 'wzp_relay_federation_links_up',
      help: 'Relay links up now.',
      registers,
      collect() {
        this.set(stats()?.linksUp ?? 0);
      },
    });
    new Gauge({
      name: 'wzp_relay_federation_members',
      help: 'Members of global rooms, by where they are: on this relay (local) or reached over a link (remote).',
      labelNames: ['where'],
      registers,
      collect() {
        const s = stats();
        this.set({ where: 'local' }, s?.localMembers ?? 0);
        this.set({ where: 'remote' }, s?.remoteMembers ?? 0);
      },
    });
    new Counter({
      name: 'wzp_relay_federation_call_lookups_total',
      help: 'Presence queries this relay asked the federation for callees not registered here, by result (found, not-found).',
      labelNames: ['result'],
      registers,
      collect() {
        const c = stats()?.calls;
        this.reset();
        this.inc({ result: 'found' }, c?.found ?? 0);
        this.inc({ result: 'not-found' }, c?.notFound ?? 0);
      },
    });
    new Gauge({
      name: 'wzp_relay_federation_calls',
      help: 'Cross-relay 1:1 calls now: with a party on this relay (end), or passing through (transit).',
      labelNames: ['where'],
      registers,
      collect() {
        const c = stats()?.calls;
        this.set({ where: 'end' }, c?.calls ?? 0);
        this.set({ where: 'transit' }, c?.transit ?? 0);
      },
    });
    new Counter({
      name: 'wzp_relay_federation_link_refusals_total',
      help: 'Link hellos refused (not trusted, bad proof, wrong version, self, duplicate).',
      registers,
      collect() {
        this.reset();
        this.inc(stats()?.refused ?? 0);
      },
    });
    new Gauge({
      name: 'wzp_relay_federation_link_up',
      help: 'Whether the link to a peer relay is up (1) or not (0).',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const l of links()) this.set({ peer: peer(l.peer) }, l.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'wzp_relay_federation_link_members',
      help: 'Members announced by a peer relay over its link now.',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const l of links()) this.set({ peer: peer(l.peer) }, l.members);
      },
    });
    const perPeer = (name: string, help: string, label: string, values: (l: FederationStats['links'][number]) => Record<string, number>): void => {
      new Counter({
        name,
        help,
        labelNames: ['peer', label],
        registers,
        collect() {
          this.reset();
          for (const l of links()) for (const [k, n] of Object.entries(values(l))) this.inc({ peer: peer(l.peer), [label]: k }, n);
        },
      });
    };
    perPeer('wzp_relay_federation_link_transitions_total', 'Links to a peer relay that came up and went down.', 'state', (l) => ({ up: l.ups, down: l.downs }));
    perPeer('wzp_relay_federation_datagrams_total', 'Member datagrams received from and sent to a peer relay (entries of link frames).', 'direction', (l) => ({ in: l.datagramsIn, out: l.datagramsOut }));
    perPeer('wzp_relay_federation_frames_total', 'Link frames (QUIC datagrams) received from and sent to a peer relay.', 'direction', (l) => ({ in: l.framesIn, out: l.framesOut }));
    perPeer('wzp_relay_federation_bytes_total', 'Bytes of link frames received from and sent to a peer relay.', 'direction', (l) => ({ in: l.bytesIn, out: l.bytesOut }));
    perPeer('wzp_relay_federation_messages_total', 'Link messages (membership updates, room signals) received from and sent to a peer relay.', 'direction', (l) => ({
      in: l.messagesIn,
      out: l.messagesOut,
    }));
    perPeer('wzp_relay_federation_drops_total', 'What a relay link dropped, by reason (docs/federation.md).', 'reason', (l) =>
      Object.fromEntries(LINK_DROP_REASONS.map((r) => [r, l.drops[r]])),
    );
  }

  /** The Prometheus text exposition of prometheus(). */
  async prometheusText(): Promise<string> {
    return this.prometheus().metrics();
  }
}

function federationSnapshot(f: FederationStats | undefined): { federation?: FederationStats } {
  if (!f) return {};
  return { federation: { ...f, links: f.links.map((l) => ({ ...l, drops: { ...l.drops } })) } };
}

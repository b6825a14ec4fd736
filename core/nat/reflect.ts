/**
 * Reflection from ONE local socket: ask several relays (QUIC `reflect`) and STUN servers
 * (Binding) which address they see, all from the same UDP port, the way a wzp client's one
 * socket carries signalling, reflection and dialling. Comparing the answers shows whether
 * the NAT keeps one mapping for every destination:
 *
 * | observed addresses (one per server address) | mapping                |
 * |-------------------------------|------------------------|
 * | fewer than 2 server addresses answered | `unknown`     |
 * | all equal                     | `endpoint-independent` (a "cone" NAT, or none) |
 * | one IP, different ports       | `symmetric` (address- or address-and-port-dependent mapping) |
 * | different IPs                 | `multiple-addresses` (several uplinks / a NAT pool) |
 *
 * Answers are compared per server ADDRESS: two answers from one address (a relay's QUIC
 * reflect and its STUN) say nothing about the mapping. When every answer is this socket's own
 * address there is no NAT at all (`natDetected: false`).
 *
 * The socket is a QUICSocket whose non-QUIC datagrams (STUN) are fed to a StunClient, so
 * QUIC and STUN share the port. Relays and STUN servers are asked concurrently; STUN servers
 * stand in when a relay cannot be reached. A relay that answers STUN with an RFC 5780
 * OTHER-ADDRESS (started with --stun-alternate) is also asked at that address, so one relay
 * gives two server addresses to compare. A relay whose certificate is refused (a pin
 * mismatch) aborts the whole reflection: that is never a result to report quietly. The
 * caller's signal (Ctrl-C) ends it with the answers received so far, marked `interrupted`.
 */
import type { QUICSocket } from '@matrixai/quic';
import type { RelaySession } from '../client/relay-session.js';
import { FingerprintMismatchError, throwIfAborted } from '../errors.js';
import { formatHostPort, openSocket, parseHostPort, rawUdpSocket, socketDemux } from '../transport/quic.js';
import { stunClass } from '../transport/demux.js';
import { type Endpoint, StunClient, formatEndpoint, sameEndpoint } from './stun.js';
import { sourceAddressToward } from './udp.js';

export type ReflectVia = 'quic' | 'stun';
export type ReflectMapping = 'endpoint-independent' | 'symmetric' | 'multiple-addresses' | 'unknown';
export type AddressFamily = 'IPv4' | 'IPv6';

/** A relay to ask. The caller decides how it is trusted (pins) when it connects. */
export interface ReflectRelay {
  /** `HOST:PORT` as the user gave it: names the observation. */
  readonly label: string;
  /** Opens a session over the shared socket. */
  connect(socket: QUICSocket, options: { timeoutMs: number; signal?: AbortSignal }): Promise<RelaySession>;
  /** The relay's address (an IP literal), for its STUN (and an RFC 5780 relay's other address). */
  endpoint?: Endpoint;
}

export interface ReflectOptions {
  relays: readonly ReflectRelay[];
  /** STUN servers (IP literals) asked from the same socket. */
  stun: readonly Endpoint[];
  /** Address family of the socket; every target must be reachable with it. */
  family: AddressFamily;
  /** Per target: connect + reflect for relays, the whole Binding transaction for STUN. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ObservationError {
  name: string;
  message: string;
}

export interface ReflectObservation {
  /** The relay or STUN server asked, `HOST:PORT`. */
  relay: string;
  via: ReflectVia;
  /** A relay's RFC 5780 other address: the relay (as given) it belongs to. */
  alternateOf?: string;
  /** Our address as that server saw it, `ip:port` (IPv6 in brackets). */
  observedAddress?: string;
  /** Round trip of the reflect request (QUIC, after the handshake) or the Binding (STUN). */
  rttMs?: number;
  /** Relays only: the certificate fingerprint the relay presented. */
  fingerprint?: string;
  error?: ObservationError;
}

export interface ReflectResult {
  /** The socket's address: the route's source address toward the first target, and its port. */
  localAddress: string;
  observations: ReflectObservation[];
  mapping: ReflectMapping;
  /** Why the mapping was classified as it was. */
  reason: string;
  /** False when every answer was `localAddress` itself: no NAT between this host and the servers. */
  natDetected?: boolean;
  notes: string[];
  durationMs: number;
  /** Ctrl-C stopped it: the observations hold the answers received until then. */
  interrupted?: true;
}

/** Classify the addresses several servers saw for one socket (see the module comment). */
export function classifyReflections(addresses: readonly Endpoint[]): { mapping: ReflectMapping; reason: string } {
  if (addresses.length < 2) {
    return { mapping: 'unknown', reason: `${addresses.length} answer${addresses.length === 1 ? '' : 's'}; at least 2 are needed to compare` };
  }
  const ips = new Set(addresses.map((a) => a.address));
  const distinct = new Set(addresses.map(formatEndpoint));
  if (distinct.size === 1) {
    return { mapping: 'endpoint-independent', reason: `all ${addresses.length} servers saw ${formatEndpoint(addresses[0])}` };
  }
  if (ips.size === 1) {
    const ports = [...new Set(addresses.map((a) => a.port))];
    return { mapping: 'symmetric', reason: `one address ${addresses[0].address} with ${ports.length} different ports (${ports.join(', ')}): a new mapping per destination` };
  }
  return { mapping: 'multiple-addresses', reason: `servers saw ${ips.size} different addresses (${[...ips].join(', ')})` };
}

/** Classifies one observation per server address (the first); see the module comment. */
export function classifyByDestination(seen: readonly { destination: Endpoint; observed: Endpoint }[]): { mapping: ReflectMapping; reason: string } {
  const distinct = seen.filter((s, i) => seen.findIndex((o) => sameEndpoint(o.destination, s.destination)) === i);
  const result = classifyReflections(distinct.map((s) => s.observed));
  if (result.mapping === 'unknown' && seen.length > distinct.length) {
    return { mapping: 'unknown', reason: `${seen.length} answers from ${distinct.length} server address${distinct.length === 1 ? '' : 'es'}; at least 2 addresses are needed to compare` };
  }
  return result;
}

/**
 * Asks every relay and STUN server from one fresh socket. Resolves when every target has
 * answered or failed; rejects with the first failure (in the order given) when none
 * answered, and with a FingerprintMismatchError from any relay even if others answered.
 */
export async function reflectFromOneSocket(options: ReflectOptions): Promise<ReflectResult> {
  throwIfAborted(options.signal);
  const startedAt = performance.now();
  const socket = await openSocket({ host: options.family === 'IPv6' ? '::' : '0.0.0.0', port: 0 });
  const udp = rawUdpSocket(socket);
  const client = new StunClient(udp, { listen: false });
  socketDemux(socket).register(stunClass((data, from) => client.handlePacket(data, from)));
  const binding = async (server: Endpoint) => {
    const answer = await client.binding(server, { signal: options.signal, timeoutMs: options.timeoutMs, label: 'reflect' });
    return { observedAddress: formatEndpoint(answer.mappedAddress), rttMs: round(answer.elapsedMs), otherAddress: answer.otherAddress };
  };
  const asked: Endpoint[] = [];
  try {
    const outcomes = (
      await Promise.all([
        ...options.relays.map(async (relay) => {
          // The relay's own STUN, only to learn an RFC 5780 other address to ask as well.
          const other = relayOtherAddress(relay, binding, options);
          const quic = await attempt(relay.label, 'quic', () => reflectRelay(relay, socket, options));
          const alternate = await other;
          if (!alternate || options.stun.some((s) => sameEndpoint(s, alternate))) return [quic];
          asked.push(alternate);
          const extra = await attempt(formatEndpoint(alternate), 'stun', () => binding(alternate));
          return [quic, { ...extra, observation: { ...extra.observation, alternateOf: relay.label } }];
        }),
        ...options.stun.map(async (server) => [await attempt(formatEndpoint(server), 'stun', () => binding(server))]),
      ])
    ).flat();
    const failures = outcomes.flatMap((o) => (o.failure ? [o.failure] : []));
    const mismatch = failures.find((err) => err instanceof FingerprintMismatchError);
    if (mismatch) throw mismatch;
    const observations = outcomes.map((o) => o.observation);
    const answers = outcomes.flatMap((o, i) =>
      o.observation.observedAddress === undefined ? [] : [{ destination: destinationOf(o.observation, options, asked, i), observed: toEndpoint(o.observation.observedAddress) }],
    );
    if (answers.length === 0) {
      throwIfAborted(options.signal);
      if (failures.length > 0) throw failures[0];
    }
    const first = firstTarget(options);
    const localAddress = formatEndpoint({ address: first ? await sourceAddressToward(udp, first) : udp.address().address, port: udp.address().port });
    return {
      localAddress,
      observations,
      ...classifyByDestination(answers),
      ...(answers.length > 0 ? { natDetected: answers.some((a) => formatEndpoint(a.observed) !== localAddress) } : {}),
      notes: notes(options, answers.map((a) => a.destination)),
      durationMs: round(performance.now() - startedAt),
      ...(options.signal?.aborted ? { interrupted: true as const } : {}),
    };
  } finally {
    client.close();
    await socket.stop({ force: true });
  }
}

type Answer = Pick<ReflectObservation, 'observedAddress' | 'rttMs' | 'fingerprint'>;

/** An RFC 5780 relay's OTHER-ADDRESS (from a Binding to its own address), if it has one. */
async function relayOtherAddress(
  relay: ReflectRelay,
  binding: (server: Endpoint) => Promise<{ otherAddress?: Endpoint }>,
  options: ReflectOptions,
): Promise<Endpoint | undefined> {
  if (!relay.endpoint) return undefined;
  try {
    const other = (await binding(relay.endpoint)).otherAddress;
    return other && (other.address.includes(':') === (options.family === 'IPv6')) ? other : undefined;
  } catch {
    return undefined; // a relay without STUN (older), or silent: its QUIC answer stands
  }
}

/** The server address an observation came from (relays: their resolved address, else their label). */
function destinationOf(observation: ReflectObservation, options: ReflectOptions, asked: readonly Endpoint[], index: number): Endpoint {
  if (observation.via === 'quic') {
    const relay = options.relays.find((r) => r.label === observation.relay);
    if (relay?.endpoint) return relay.endpoint;
  }
  const alternate = asked.find((a) => formatEndpoint(a) === observation.relay);
  if (alternate) return alternate;
  const stun = options.stun.find((s) => formatEndpoint(s) === observation.relay);
  if (stun) return stun;
  // A relay name that was not resolved here: its own (unique) label stands for its address.
  return { address: `${observation.relay}#${index}`, port: 0 };
}

/** Runs one target's exchange; a failure becomes part of the observation (and is kept). */
async function attempt(relay: string, via: ReflectVia, run: () => Promise<Answer>): Promise<{ observation: ReflectObservation; failure?: Error }> {
  try {
    return { observation: { relay, via, ...(await run()) } };
  } catch (err) {
    const failure = err instanceof Error ? err : new Error(String(err));
    return { observation: { relay, via, error: { name: failure.name, message: failure.message } }, failure };
  }
}

async function reflectRelay(relay: ReflectRelay, socket: QUICSocket, options: ReflectOptions): Promise<Answer> {
  const session = await relay.connect(socket, { timeoutMs: options.timeoutMs, signal: options.signal });
  try {
    const t0 = performance.now();
    const observed = await session.reflect({ timeoutMs: options.timeoutMs, signal: options.signal });
    return { observedAddress: formatHostPort(parseHostPort(observed)), rttMs: round(performance.now() - t0), fingerprint: session.relayFingerprint };
  } finally {
    await session.close();
  }
}

/** An address-dependent NAT maps every port of one IP alike: only distinct IPs can reveal it. */
function notes(options: ReflectOptions, answered: readonly Endpoint[]): string[] {
  const distinct = answered.filter((a, i) => answered.findIndex((o) => sameEndpoint(o, a)) === i);
  const ips = new Set(distinct.map((a) => a.address));
  if (distinct.length >= 2 && ips.size === 1) {
    return ['every server asked shares one IP address: an address-dependent mapping looks endpoint-independent here; ask servers on different IPs to tell them apart'];
  }
  return [];
}

/** The first target, for the route's source address (the socket itself is bound to any). */
function firstTarget(options: ReflectOptions): Endpoint | undefined {
  const relay = options.relays[0];
  if (relay) {
    const { host, port } = parseHostPort(relay.label);
    return { address: host, port };
  }
  return options.stun[0];
}

function toEndpoint(text: string): Endpoint {
  const { host, port } = parseHostPort(text);
  return { address: host, port };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

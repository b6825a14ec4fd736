/**
 * Reflection from ONE local socket: ask several relays (QUIC `reflect`) and STUN servers
 * (Binding) which address they see, all from the same UDP port, the way a wzp client's one
 * socket carries signalling, reflection and dialling. Comparing the answers shows whether
 * the NAT keeps one mapping for every destination:
 *
 * | observed addresses            | mapping                |
 * |-------------------------------|------------------------|
 * | fewer than 2 answers          | `unknown`              |
 * | all equal                     | `endpoint-independent` (a "cone" NAT, or none) |
 * | one IP, different ports       | `symmetric` (address- or address-and-port-dependent mapping) |
 * | different IPs                 | `multiple-addresses` (several uplinks / a NAT pool) |
 *
 * The socket is a QUICSocket whose non-QUIC datagrams (STUN) are fed to a StunClient, so
 * QUIC and STUN share the port. Relays and STUN servers are asked concurrently; STUN servers
 * stand in when a relay cannot be reached. A relay whose certificate is refused (a pin
 * mismatch) aborts the whole reflection: that is never a result to report quietly.
 */
import type { QUICSocket } from '@matrixai/quic';
import type { RelaySession } from '../client/relay-session.js';
import { FingerprintMismatchError, throwIfAborted } from '../errors.js';
import { formatHostPort, openSocket, parseHostPort, rawUdpSocket } from '../transport/quic.js';
import { type Endpoint, StunClient, formatEndpoint } from './stun.js';
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
  notes: string[];
  durationMs: number;
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

/**
 * Asks every relay and STUN server from one fresh socket. Resolves when every target has
 * answered or failed; rejects with the first failure (in the order given) when none
 * answered, and with a FingerprintMismatchError from any relay even if others answered.
 */
export async function reflectFromOneSocket(options: ReflectOptions): Promise<ReflectResult> {
  throwIfAborted(options.signal);
  const startedAt = performance.now();
  let stun: StunClient | undefined;
  const socket = await openSocket(
    { host: options.family === 'IPv6' ? '::' : '0.0.0.0', port: 0 },
    { onNonQuic: (data, from) => stun?.handlePacket(data, from) },
  );
  const udp = rawUdpSocket(socket);
  const client = new StunClient(udp, { listen: false });
  stun = client;
  try {
    const outcomes = await Promise.all([
      ...options.relays.map((relay) => attempt(relay.label, 'quic', () => reflectRelay(relay, socket, options))),
      ...options.stun.map((server) =>
        attempt(formatEndpoint(server), 'stun', async () => {
          const answer = await client.binding(server, { signal: options.signal, timeoutMs: options.timeoutMs, label: 'reflect' });
          return { observedAddress: formatEndpoint(answer.mappedAddress), rttMs: round(answer.elapsedMs) };
        }),
      ),
    ]);
    throwIfAborted(options.signal);
    const failures = outcomes.flatMap((o) => (o.failure ? [o.failure] : []));
    const mismatch = failures.find((err) => err instanceof FingerprintMismatchError);
    if (mismatch) throw mismatch;
    const observations = outcomes.map((o) => o.observation);
    const answered = observations.flatMap((o) => (o.observedAddress === undefined ? [] : [toEndpoint(o.observedAddress)]));
    if (answered.length === 0 && failures.length > 0) throw failures[0];
    const first = firstTarget(options);
    const localAddress = formatEndpoint({ address: first ? await sourceAddressToward(udp, first) : udp.address().address, port: udp.address().port });
    return { localAddress, observations, ...classifyReflections(answered), notes: notes(options, answered), durationMs: round(performance.now() - startedAt) };
  } finally {
    client.close();
    await socket.stop({ force: true });
  }
}

type Answer = Pick<ReflectObservation, 'observedAddress' | 'rttMs' | 'fingerprint'>;

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
  const ips = new Set([...options.relays.map((r) => parseHostPort(r.label).host), ...options.stun.map((s) => s.address)]);
  if (answered.length >= 2 && ips.size === 1) {
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

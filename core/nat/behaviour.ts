/**
 * NAT behaviour discovery (RFC 5780) against a STUN server with two IPs and two ports.
 *
 * Phase 1: one Binding Request to the primary address (Test I) yields the mapped address, the
 * server's OTHER-ADDRESS and the first RTT sample.
 * Phase 2, all in parallel, each given an answer window of max(minMs, rtts × RTT):
 *  - mapping (§4.3), on the caller's socket: Binding Requests to (alternate IP, primary port)
 *    and (alternate IP, alternate port); the three mapped addresses are compared;
 *  - filtering (§4.4), on a fresh auxiliary socket that has sent only to the primary address:
 *    CHANGE-REQUEST "change IP and port" and "change port". They cannot share the caller's
 *    socket: its mapping probes open the NAT's filter for the alternate address;
 *  - hairpinning (§4.5), on the caller's socket: a request to our own mapped address;
 *  - optionally the binding lifetime (§4.6), see measureBindingLifetime().
 * A silent probe is an answer ("nothing within the window"), so the whole discovery takes one
 * RTT plus one window: a blocked filtering test does not wait seconds.
 */
import type dgram from 'node:dgram';
import { UsageError, throwIfAborted } from '../errors.js';
import {
  type BindingResult,
  type Endpoint,
  type NatProgressListener,
  type ProbeOutcome,
  StunClient,
  assertEndpoint,
  formatEndpoint,
  sameEndpoint,
} from './stun.js';
import { type UdpFamily, closeUdpSocket, delay, openUdpSocket, socketFamily, sourceAddressToward } from './udp.js';

export type NatDependence = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent' | 'unknown';
export type MappingBehaviour = NatDependence;
export type FilteringBehaviour = NatDependence;
export type Hairpinning = 'supported' | 'not-supported' | 'not-applicable';

export type ProbeName =
  | 'mapping-primary'
  | 'mapping-alternate-ip'
  | 'mapping-alternate-ip-port'
  | 'filtering-change-ip-port'
  | 'filtering-change-port'
  | 'hairpin';

export interface ProbeRecord {
  readonly name: ProbeName;
  readonly to: Endpoint;
  readonly answered: boolean;
  readonly from?: Endpoint;
  readonly mappedAddress?: Endpoint;
  /** STUN error code when the server answered with an error response. */
  readonly errorCode?: number;
  readonly attempts: number;
  readonly elapsedMs: number;
}

export interface BindingLifetimeCheck {
  readonly afterMs: number;
  readonly alive: boolean;
}

export interface BindingLifetime {
  /** False when the server ignores RESPONSE-PORT or the probe socket maps to another IP. */
  readonly measurable: boolean;
  readonly checks: readonly BindingLifetimeCheck[];
  /** Largest idle time after which this and every shorter check still reached the mapping. */
  readonly aliveForAtLeastMs: number;
  /** Smallest idle time after which the mapping was gone. */
  readonly expiredWithinMs?: number;
  readonly durationMs: number;
  readonly notes: readonly string[];
}

export interface NatBehaviour {
  readonly server: Endpoint;
  readonly otherAddress?: Endpoint;
  /** The socket's source address toward the server (the route's choice for a wildcard bind). */
  readonly localAddress: Endpoint;
  readonly mappedAddress: Endpoint;
  /** False when the server saw exactly our local address and port. */
  readonly natDetected: boolean;
  readonly mapping: MappingBehaviour;
  readonly filtering: FilteringBehaviour;
  readonly hairpinning: Hairpinning;
  readonly rttMs: number;
  /** How long phase-2 probes waited before counting silence as "blocked". */
  readonly answerWindowMs: number;
  readonly durationMs: number;
  readonly probes: readonly ProbeRecord[];
  /** Why a behaviour is 'unknown', and other caveats. */
  readonly notes: readonly string[];
  readonly bindingLifetime?: BindingLifetime;
}

export interface AnswerWindowOptions {
  /** Floor (default 250 ms): jitter on a fast path must not look like filtering. */
  minMs?: number;
  /** Window in RTTs (default 10). */
  rtts?: number;
}

export interface BindingLifetimeOptions {
  signal?: AbortSignal;
  onProgress?: NatProgressListener;
  /** Idle times to test, one fresh mapping each (at most 16); default the standard list up to maxMs. */
  intervalsMs?: readonly number[];
  /** Bound on the whole test when intervalsMs is not given (default 30 s). */
  maxMs?: number;
  answerWindow?: AnswerWindowOptions;
}

export interface DiscoveryOptions {
  signal?: AbortSignal;
  onProgress?: NatProgressListener;
  /** A client already attached to (or fed by) the socket; otherwise one is made and closed. */
  client?: StunClient;
  answerWindow?: AnswerWindowOptions;
  /** Opt-in, bounded binding-lifetime test run alongside the others. */
  bindingLifetime?: BindingLifetimeOptions;
}

const ANSWER_WINDOW_DEFAULTS = { minMs: 250, rtts: 10, maxMs: 5_000 } as const;
const LIFETIME_INTERVALS_MS = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000] as const;
const LIFETIME_DEFAULT_MAX_MS = 30_000;
const LIFETIME_MAX_CHECKS = 16;

/** How long a probe waits before its silence counts: max(minMs, rtts × RTT), at most 5 s. */
export function answerWindowMs(rttMs: number, options: AnswerWindowOptions = {}): number {
  const minMs = options.minMs ?? ANSWER_WINDOW_DEFAULTS.minMs;
  const rtts = options.rtts ?? ANSWER_WINDOW_DEFAULTS.rtts;
  return Math.min(ANSWER_WINDOW_DEFAULTS.maxMs, Math.max(minMs, rtts * rttMs));
}

/** RFC 5780 §4.3: compare the mapped addresses seen by the three server endpoints. */
export function classifyMapping(primary: Endpoint, alternateIp?: Endpoint, alternateIpPort?: Endpoint): MappingBehaviour {
  if (alternateIp === undefined) return 'unknown';
  if (sameEndpoint(primary, alternateIp)) return 'endpoint-independent';
  if (alternateIpPort === undefined) return 'unknown';
  return sameEndpoint(alternateIp, alternateIpPort) ? 'address-dependent' : 'address-and-port-dependent';
}

/** A CHANGE-REQUEST probe: answered from the requested origin, silent, or unusable. */
export type FilteringProbeResult = 'answered' | 'blocked' | 'invalid';

/** RFC 5780 §4.4: which CHANGE-REQUEST answers got through the NAT's filter. */
export function classifyFiltering(changeIpAndPort: FilteringProbeResult, changePort: FilteringProbeResult): FilteringBehaviour {
  if (changeIpAndPort === 'answered') return 'endpoint-independent';
  if (changeIpAndPort === 'invalid' || changePort === 'invalid') return 'unknown';
  return changePort === 'answered' ? 'address-dependent' : 'address-and-port-dependent';
}

/** Judges a CHANGE-REQUEST outcome: an answer counts only if it came from `expectedOrigin`. */
export function filteringProbeResult(outcome: ProbeOutcome, expectedOrigin: Endpoint): FilteringProbeResult {
  if (!outcome.answered) return 'blocked';
  if (outcome.message.cls !== 'success') return 'invalid';
  return sameEndpoint(outcome.from, expectedOrigin) ? 'answered' : 'invalid';
}

export async function discoverNatBehaviour(socket: dgram.Socket, server: Endpoint, options: DiscoveryOptions = {}): Promise<NatBehaviour> {
  assertEndpoint(server);
  const startedAt = performance.now();
  const client = options.client ?? new StunClient(socket);
  try {
    const common = { signal: options.signal, onProgress: options.onProgress };
    const [primary, sourceAddress] = await Promise.all([
      client.binding(server, { ...common, label: 'mapping-primary' }),
      sourceAddressToward(socket, server),
    ]);
    const rttMs = client.rttMs ?? primary.elapsedMs;
    const windowMs = answerWindowMs(rttMs, options.answerWindow);
    const phase2 = { ...common, timeoutMs: windowMs, rtoMs: client.rtoMs };
    const local = socket.address();
    const localAddress = { address: sourceAddress, port: local.port };
    const natDetected = !sameEndpoint(primary.mappedAddress, localAddress);
    const other = primary.otherAddress;

    const [mapping, filtering, hairpin, bindingLifetime] = await Promise.all([
      other ? mappingProbes(client, server, other, phase2) : undefined,
      other ? filteringProbes(socketFamily(socket), local.address, server, other, phase2) : undefined,
      natDetected ? client.probe(primary.mappedAddress, { ...phase2, label: 'hairpin', expectLoopback: true }) : undefined,
      options.bindingLifetime ? lifetimeUnlessStopped(server, socketFamily(socket), { ...common, ...options.bindingLifetime }) : undefined,
    ]);

    const notes: string[] = [];
    if (!other) notes.push(`${formatEndpoint(server)} sent no OTHER-ADDRESS: it does not support RFC 5780, so mapping and filtering are unknown`);
    const filteringResults = filtering && {
      changeIpAndPort: filteringProbeResult(filtering.changeIpAndPort, filtering.expected.changeIpAndPort),
      changePort: filteringProbeResult(filtering.changePort, filtering.expected.changePort),
    };
    if (filteringResults && (filteringResults.changeIpAndPort === 'invalid' || filteringResults.changePort === 'invalid')) {
      notes.push('the server did not honour CHANGE-REQUEST (answer from the wrong origin or an error): filtering is unknown');
    }
    if (!natDetected) notes.push('the mapped address is a local address: no NAT between this host and the server');

    return {
      server,
      otherAddress: other,
      localAddress,
      mappedAddress: primary.mappedAddress,
      natDetected,
      mapping: classifyMapping(primary.mappedAddress, mappedOf(mapping?.alternateIp), mappedOf(mapping?.alternateIpPort)),
      filtering: filteringResults ? classifyFiltering(filteringResults.changeIpAndPort, filteringResults.changePort) : 'unknown',
      hairpinning: hairpin === undefined ? 'not-applicable' : hairpin.answered ? 'supported' : 'not-supported',
      rttMs,
      answerWindowMs: windowMs,
      durationMs: performance.now() - startedAt,
      probes: [
        bindingRecord('mapping-primary', server, primary),
        ...[mapping?.alternateIp, mapping?.alternateIpPort, filtering?.changeIpAndPort, filtering?.changePort, hairpin]
          .filter((outcome): outcome is ProbeOutcome => outcome !== undefined)
          .map(probeRecord),
      ],
      notes,
      bindingLifetime,
    };
  } finally {
    if (!options.client) client.close();
  }
}

/**
 * The binding-lifetime test takes seconds: when the caller's signal stops it, the other
 * results (measured in the first round trips) are kept and the lifetime says what it had.
 */
async function lifetimeUnlessStopped(server: Endpoint, family: UdpFamily, options: BindingLifetimeOptions): Promise<BindingLifetime> {
  const startedAt = performance.now();
  try {
    return await measureBindingLifetime(server, family, options);
  } catch (err) {
    if (!options.signal?.aborted) throw err;
    return { measurable: false, checks: [], aliveForAtLeastMs: 0, durationMs: performance.now() - startedAt, notes: ['binding lifetime: stopped before the first check'] };
  }
}

interface Phase2Options {
  signal?: AbortSignal;
  onProgress?: NatProgressListener;
  timeoutMs: number;
  rtoMs: number;
}

async function mappingProbes(client: StunClient, server: Endpoint, other: Endpoint, options: Phase2Options) {
  const [alternateIp, alternateIpPort] = await Promise.all([
    client.probe({ address: other.address, port: server.port }, { ...options, label: 'mapping-alternate-ip' }),
    client.probe(other, { ...options, label: 'mapping-alternate-ip-port' }),
  ]);
  return { alternateIp, alternateIpPort };
}

async function filteringProbes(family: UdpFamily, localAddress: string, server: Endpoint, other: Endpoint, options: Phase2Options) {
  const socket = await openUdpSocket(family, localAddress);
  const client = new StunClient(socket);
  try {
    const [changeIpAndPort, changePort] = await Promise.all([
      client.probe(server, { ...options, label: 'filtering-change-ip-port', changeIp: true, changePort: true }),
      client.probe(server, { ...options, label: 'filtering-change-port', changePort: true }),
    ]);
    const expected = { changeIpAndPort: other, changePort: { address: server.address, port: other.port } };
    return { changeIpAndPort, changePort, expected };
  } finally {
    client.close();
    await closeUdpSocket(socket);
  }
}

function mappedOf(outcome: ProbeOutcome | undefined): Endpoint | undefined {
  return outcome?.answered && outcome.message.cls === 'success' ? outcome.message.mappedAddress : undefined;
}

function bindingRecord(name: ProbeName, to: Endpoint, result: BindingResult): ProbeRecord {
  return { name, to, answered: true, from: result.from, mappedAddress: result.mappedAddress, attempts: result.attempts, elapsedMs: result.elapsedMs };
}

function probeRecord(outcome: ProbeOutcome): ProbeRecord {
  const name = outcome.label as ProbeName;
  if (!outcome.answered) return { name, to: outcome.to, answered: false, attempts: outcome.attempts, elapsedMs: outcome.elapsedMs };
  return {
    name,
    to: outcome.to,
    answered: true,
    from: outcome.from,
    mappedAddress: outcome.message.mappedAddress,
    errorCode: outcome.message.error?.code,
    attempts: outcome.attempts,
    elapsedMs: outcome.elapsedMs,
  };
}

// ---------------------------------------------------------------------------------------------
// Binding lifetime (RFC 5780 §4.6)
// ---------------------------------------------------------------------------------------------

/** Idle times to test: the explicit list, or the standard ones up to maxMs. */
export function lifetimeIntervals(options: Pick<BindingLifetimeOptions, 'intervalsMs' | 'maxMs'>): number[] {
  const intervals = options.intervalsMs ?? LIFETIME_INTERVALS_MS.filter((ms) => ms <= (options.maxMs ?? LIFETIME_DEFAULT_MAX_MS));
  if (intervals.length === 0 || intervals.length > LIFETIME_MAX_CHECKS || intervals.some((ms) => !Number.isFinite(ms) || ms <= 0)) {
    throw new UsageError(`binding lifetime needs 1..${LIFETIME_MAX_CHECKS} positive idle times`);
  }
  return [...intervals].sort((a, b) => a - b);
}

/**
 * Binding lifetime, tested in parallel: one fresh socket (and NAT mapping) per idle time T.
 * After T of silence a separate probe socket asks the server, with RESPONSE-PORT, to answer
 * to that mapping's port; the answer arrives only if the mapping (and its filter entry for
 * the server) is still alive. A calibration mapping checked immediately proves that the server
 * honours RESPONSE-PORT and that both sockets map to one public IP. Takes max(T) + a window.
 */
export async function measureBindingLifetime(server: Endpoint, family: UdpFamily, options: BindingLifetimeOptions = {}): Promise<BindingLifetime> {
  assertEndpoint(server);
  throwIfAborted(options.signal);
  const intervals = lifetimeIntervals(options);
  const startedAt = performance.now();
  // Aborted on the way out, so a failed check stops the other checks' waits at once.
  const stop = new AbortController();
  const forwardAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', forwardAbort, { once: true });
  const common = { signal: stop.signal, onProgress: options.onProgress };
  const sockets: dgram.Socket[] = [];
  const clients: StunClient[] = [];
  const open = async () => {
    const socket = await openUdpSocket(family);
    sockets.push(socket);
    const client = new StunClient(socket);
    clients.push(client);
    return client;
  };
  try {
    const prober = await open();
    const calibration = await open();
    const holders: StunClient[] = [];
    for (let i = 0; i < intervals.length; i++) holders.push(await open());
    const proberMapping = await prober.binding(server, { ...common, label: 'lifetime-prober' });
    const windowMs = answerWindowMs(prober.rttMs ?? proberMapping.elapsedMs, options.answerWindow);
    /** undefined: not testable, the holder's mapping is on another public IP than the prober's. */
    const check = async (holder: StunClient, mapped: Endpoint, label: string): Promise<boolean | undefined> => {
      if (mapped.address !== proberMapping.mappedAddress.address) return undefined;
      const outcome = await prober.probe(server, { ...common, label, responsePort: mapped.port, answerOn: holder, timeoutMs: windowMs });
      return outcome.answered && outcome.message.cls === 'success';
    };

    const calibrationMapping = await calibration.binding(server, { ...common, label: 'lifetime-calibration' });
    if (!(await check(calibration, calibrationMapping.mappedAddress, 'lifetime-calibration-check'))) {
      const note =
        calibrationMapping.mappedAddress.address === proberMapping.mappedAddress.address
          ? 'the server did not answer to RESPONSE-PORT'
          : 'two sockets mapped to different public IPs';
      return { measurable: false, checks: [], aliveForAtLeastMs: 0, durationMs: performance.now() - startedAt, notes: [`binding lifetime not measurable: ${note}`] };
    }

    const settled = await Promise.allSettled(
      intervals.map(async (afterMs, i) => {
        const mapping = await holders[i].binding(server, { ...common, label: `lifetime-${afterMs}ms-open` });
        await delay(afterMs, stop.signal);
        return { afterMs, alive: await check(holders[i], mapping.mappedAddress, `lifetime-${afterMs}ms-check`) };
      }),
    );
    const stopped = options.signal?.aborted === true;
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    // Stopped by the caller: the checks that finished are the answer (sorted, so the bounds hold).
    if (failed && !stopped) throw failed.reason;
    const results = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const checks = results.filter((r): r is BindingLifetimeCheck => r.alive !== undefined);
    const skipped = results.filter((r) => r.alive === undefined).map((r) => r.afterMs);
    const notes = skipped.length > 0 ? [`mappings for ${skipped.join(', ')} ms landed on another public IP: not checked`] : [];
    if (failed) notes.push(`stopped after ${checks.length} of ${intervals.length} idle times: the longer ones were not checked`);
    return { measurable: checks.length > 0, ...summariseLifetime(checks), durationMs: performance.now() - startedAt, notes };
  } finally {
    stop.abort();
    options.signal?.removeEventListener('abort', forwardAbort);
    for (const client of clients) client.close();
    await Promise.all(sockets.map(closeUdpSocket));
  }
}

/** Lower and upper bounds from checks sorted by idle time. */
export function summariseLifetime(checks: readonly BindingLifetimeCheck[]): Pick<BindingLifetime, 'checks' | 'aliveForAtLeastMs' | 'expiredWithinMs'> {
  const firstDead = checks.findIndex((c) => !c.alive);
  const leadingAlive = firstDead === -1 ? checks : checks.slice(0, firstDead);
  return { checks, aliveForAtLeastMs: leadingAlive.at(-1)?.afterMs ?? 0, expiredWithinMs: firstDead === -1 ? undefined : checks[firstDead].afterMs };
}

/**
 * Candidates for a direct path (RFC 8445 ideas, adapted to wzp's one shared UDP socket).
 *
 * A candidate is an address where the peer may reach this client's shared socket:
 *
 * - `host`: an interface address (IPv4 private/CGNAT/public, IPv6 global/ULA) with the shared
 *   socket's local port.
 * - `mapped`: a PCP / NAT-PMP / UPnP mapping made for the call (deleted at hangup: see
 *   {@link createMappedCandidate}).
 * - `srflx`: server-reflexive: the relay's observation of the shared socket, or a STUN answer
 *   received on it.
 * - `prflx`: peer-reflexive, learned from connectivity checks (checks.ts makes these).
 * - `predicted`: guesses of the peer's next NAT ports from a NAT-strategy plugin's plan
 *   (see {@link predictedCandidates}); they are remote candidates only, never announced.
 *
 * Candidates are plain JSON-serialisable objects. Anything that arrives from the network
 * goes through {@link validateCandidate}, which bounds every field and throws one typed error.
 *
 * Priorities follow RFC 8445 §5.1.2.1, adapted:
 *
 * ```
 * priority = 2^24 × type preference + 2^8 × local preference + (256 − component id)
 * type preference: host 126 > mapped 110 > srflx 100 > prflx 90 > predicted 10
 * local preference (16 bits): bit 15 = IPv6 (IPv6 first when the type is the same),
 *                             bits 0-14 = 0x7fff − rank within (type, family)
 * component id: always 1 (one socket carries everything), so the low byte is 255
 * ```
 *
 * The type order is the issue's (host > mapped > srflx > prflx), not RFC 8445's (which puts
 * prflx above srflx): a peer-reflexive address seen in a check is usually a symmetric NAT's
 * per-destination port, the least durable of the reachable ones. Predicted candidates come
 * last: hard-NAT tricks run only after everything else had its chance.
 */

import { BlockList, isIP } from 'node:net';
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';
import { DecodeError, UsageError, throwIfAborted } from '../errors.js';
import type { PortMapping } from '../nat/portmap.js';

export type CandidateType = 'host' | 'mapped' | 'srflx' | 'prflx' | 'predicted';
export type CandidateFamily = 'IPv4' | 'IPv6';

export const CANDIDATE_TYPES: readonly CandidateType[] = ['host', 'mapped', 'srflx', 'prflx', 'predicted'];

export interface Candidate {
  readonly type: CandidateType;
  /** An IP literal in canonical form (IPv6 lower-case and compressed, no zone). */
  readonly address: string;
  readonly port: number;
  readonly family: CandidateFamily;
  /** 32-bit unsigned, see the module comment. */
  readonly priority: number;
  /** Optional grouping label (RFC 8445 foundation): 1-32 characters of [A-Za-z0-9+/_.-]. */
  readonly foundation?: string;
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** Type preferences (RFC 8445 §5.1.2.2 range 0-126). */
export const TYPE_PREFERENCE: Readonly<Record<CandidateType, number>> = {
  host: 126,
  mapped: 110,
  srflx: 100,
  prflx: 90,
  predicted: 10,
};

/** Hard limits for candidates from the network. */
export const CANDIDATE_LIMITS = {
  /** Longest textual address accepted (a full IPv6 literal is 39, IPv4-embedded 45). */
  maxAddressChars: 45,
  maxFoundationChars: 32,
  /** Host candidates gathered (all interfaces together). */
  maxHost: 8,
  /** Server-reflexive candidates kept (relay observation + STUN servers). */
  maxSrflx: 4,
  /** Predicted candidates taken from one strategy plan. */
  maxPredicted: 32,
  /** Everything a gather returns. */
  maxTotal: 16,
} as const;

const COMPONENT_ID = 1;
const MAX_RANK = 0x7fff;

/** RFC 8445 §5.1.2.1 priority with wzp's type and local preferences (see the module comment). */
export function candidatePriority(type: CandidateType, family: CandidateFamily, rank = 0): number {
  const clampedRank = Math.min(MAX_RANK, Math.max(0, Math.floor(rank)));
  const localPreference = (family === 'IPv6' ? 0x8000 : 0) | (MAX_RANK - clampedRank);
  return TYPE_PREFERENCE[type] * 2 ** 24 + localPreference * 2 ** 8 + (256 - COMPONENT_ID);
}

// ---------------------------------------------------------------------------------------------
// Address classification

export type AddressScope =
  | 'loopback'
  | 'link-local'
  | 'unspecified'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'ipv4-mapped'
  | 'private'
  | 'cgnat'
  | 'public'
  | 'ula'
  | 'global';

interface ScopeRule {
  readonly scope: AddressScope;
  readonly list: BlockList;
}

function rules(entries: readonly [AddressScope, string, number, 'ipv4' | 'ipv6'][]): ScopeRule[] {
  const byScope = new Map<AddressScope, BlockList>();
  for (const [scope, network, prefix, type] of entries) {
    let list = byScope.get(scope);
    if (list === undefined) byScope.set(scope, (list = new BlockList()));
    list.addSubnet(network, prefix, type);
  }
  return [...byScope].map(([scope, list]) => ({ scope, list }));
}

const IPV4_RULES = rules([
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['cgnat', '100.64.0.0', 10, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['broadcast', '255.255.255.255', 32, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'],
]);

const IPV6_RULES = rules([
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['ipv4-mapped', '::ffff:0:0', 96, 'ipv6'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
  ['ula', 'fc00::', 7, 'ipv6'],
  ['global', '2000::', 3, 'ipv6'],
]);

/**
 * What kind of address this is. IPv4 addresses outside the special ranges are 'public'
 * (documentation ranges such as 203.0.113.0/24 included: the NAT lab uses them as its
 * internet). IPv6 outside 2000::/3 and fc00::/7 (NAT64, discard, deprecated site-local, ...)
 * is 'reserved'. Throws UsageError for anything that is not an IP literal.
 */
export function addressScope(address: string): AddressScope {
  const version = isIP(address);
  if (version === 0) throw new UsageError(`"${address}" is not an IP address`);
  const type = version === 4 ? 'ipv4' : 'ipv6';
  for (const rule of version === 4 ? IPV4_RULES : IPV6_RULES) {
    // First match wins: 255.255.255.255 is 'broadcast' before the rest of 240/4 is 'reserved'.
    if (rule.list.check(address, type)) return rule.scope;
  }
  return version === 4 ? 'public' : 'reserved';
}

/** Scopes a host candidate may come from, best first (rank order within a family). */
const HOST_SCOPES: readonly AddressScope[] = ['global', 'ula', 'public', 'private', 'cgnat'];

/** The canonical text of an IP literal (IPv6: lower-case, compressed), or undefined. */
export function canonicalAddress(address: string): string | undefined {
  if (typeof address !== 'string' || address.length === 0 || address.length > CANDIDATE_LIMITS.maxAddressChars) return undefined;
  const version = isIP(address);
  if (version === 4) return address;
  if (version !== 6 || address.includes('%')) return undefined;
  try {
    const host = new URL(`http://[${address}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return undefined;
  }
}

export function familyOf(address: string): CandidateFamily | undefined {
  const version = isIP(address);
  return version === 4 ? 'IPv4' : version === 6 ? 'IPv6' : undefined;
}

export function endpointKey(endpoint: Endpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}

// ---------------------------------------------------------------------------------------------
// Validation of candidates from the network

const FORMAT = 'candidate';
const FOUNDATION_PATTERN = /^[A-Za-z0-9+/_.-]{1,32}$/;
/** Scopes never accepted from the network: sending checks there reaches nobody or everybody. */
const NEVER_REMOTE: ReadonlySet<AddressScope> = new Set(['unspecified', 'multicast', 'broadcast', 'reserved', 'ipv4-mapped', 'link-local']);

export interface ValidateCandidateOptions {
  /**
   * Accept loopback addresses (default false). A peer has no business announcing 127.0.0.1:
   * it would aim our checks at services on our own machine. Loopback-only tests set this.
   */
  allowLoopback?: boolean;
}

/**
 * Checks a candidate that came from the network and returns a fresh, canonical object with
 * only the known fields (unknown fields are dropped: newer peers may add some). Throws
 * DecodeError (format 'candidate') with reasons 'not-object', 'bad-type', 'bad-address',
 * 'refused-address', 'bad-family', 'bad-port', 'bad-priority', 'bad-foundation'.
 */
export function validateCandidate(input: unknown, options: ValidateCandidateOptions = {}): Candidate {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new DecodeError(FORMAT, 'not-object', 'a candidate must be an object');
  }
  const record = input as Record<string, unknown>;
  const { type, address, port, family, priority, foundation } = record;
  if (typeof type !== 'string' || !(CANDIDATE_TYPES as readonly string[]).includes(type)) {
    throw new DecodeError(FORMAT, 'bad-type', `unknown candidate type ${describe(type)}`);
  }
  const canonical = typeof address === 'string' ? canonicalAddress(address) : undefined;
  if (canonical === undefined) throw new DecodeError(FORMAT, 'bad-address', `not an IP literal: ${describe(address)}`);
  const scope = addressScope(canonical);
  if (NEVER_REMOTE.has(scope) || (scope === 'loopback' && !options.allowLoopback)) {
    throw new DecodeError(FORMAT, 'refused-address', `a ${scope} address is not a usable candidate: ${canonical}`);
  }
  if (family !== familyOf(canonical)) throw new DecodeError(FORMAT, 'bad-family', `family ${describe(family)} does not match ${canonical}`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 0xffff) {
    throw new DecodeError(FORMAT, 'bad-port', `port must be 1-65535, got ${describe(port)}`);
  }
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0 || priority > 0xffffffff) {
    throw new DecodeError(FORMAT, 'bad-priority', `priority must be a 32-bit unsigned integer, got ${describe(priority)}`);
  }
  if (foundation !== undefined && (typeof foundation !== 'string' || !FOUNDATION_PATTERN.test(foundation))) {
    throw new DecodeError(FORMAT, 'bad-foundation', `foundation must be 1-32 characters of [A-Za-z0-9+/_.-], got ${describe(foundation)}`);
  }
  return {
    type: type as CandidateType,
    address: canonical,
    port,
    family: family as CandidateFamily,
    priority,
    ...(foundation === undefined ? {} : { foundation }),
  };
}

/** A short, bounded rendering of a bad value for an error message. */
function describe(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' ? (value === null ? 'null' : 'an object') : String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Host candidates

/**
 * Interface name prefixes skipped by default, and why:
 *
 * - container and VM bridges and their links: `docker`, `br-` (docker networks), `virbr`
 *   (libvirt), `veth` (host ends of container pairs), `vmnet` (VMware), `vboxnet`
 *   (VirtualBox), `lxcbr`, `lxdbr`, `cni`, `flannel`, `cali` (Calico), `weave`, `podman`,
 *   `kube-`. Their addresses exist only on this machine (or inside it): a peer's checks to
 *   them fail at best and reach some other host's container at worst, and they crowd out the
 *   real addresses ("candidates filled by docker/libvirt addresses", FACTS.md).
 * - overlay VPNs: `tailscale`, `wg` (WireGuard), `zt` (ZeroTier), `tun`, `utun`, `tap`,
 *   `ppp`? No: `ppp` is often the real uplink (PPPoE), so it stays. The overlays' addresses
 *   work only when both peers are on the same overlay, and then "direct" would actually be
 *   tunnelled through it (often via that VPN's own relays): the call report would lie. They
 *   also leak which VPN a user runs. A user who wants them passes `interfacePrefixesToSkip`.
 *
 * The NAT lab names client interfaces `eth0`, so nothing here hides its addresses.
 */
export const DEFAULT_SKIPPED_INTERFACE_PREFIXES: readonly string[] = [
  'docker',
  'br-',
  'virbr',
  'veth',
  'vmnet',
  'vboxnet',
  'lxcbr',
  'lxdbr',
  'cni',
  'flannel',
  'cali',
  'weave',
  'podman',
  'kube-',
  'tailscale',
  'wg',
  'zt',
  'tun',
  'utun',
  'tap',
];

export type InterfaceList = NodeJS.Dict<NetworkInterfaceInfo[]>;

export interface HostCandidateOptions {
  /** The shared socket's local port. */
  port: number;
  /** Families the shared socket can send (a udp4 socket cannot use IPv6 candidates). Default both. */
  families?: readonly CandidateFamily[];
  /** Interface list source (tests inject one); default os.networkInterfaces. */
  interfaces?: () => InterfaceList;
  interfacePrefixesToSkip?: readonly string[];
  /** At most this many host candidates (default 8). */
  maxHost?: number;
}

export type SkipReason = 'internal' | 'virtual-interface' | 'family-not-used' | 'scope' | 'duplicate' | 'over-limit' | 'bad-address';

export interface SkippedAddress {
  readonly interface: string;
  readonly address: string;
  readonly reason: SkipReason;
  /** For 'scope': which scope made it unusable. */
  readonly scope?: AddressScope;
}

export interface HostCandidates {
  readonly candidates: Candidate[];
  /** What was left out and why (for the call report; bounded by the interface list). */
  readonly skipped: SkippedAddress[];
}

const MAX_SKIPPED_RECORDS = 64;

/** Host candidates from the machine's interfaces. Sends nothing. */
export function hostCandidates(options: HostCandidateOptions): HostCandidates {
  checkPort(options.port);
  const families = new Set(options.families ?? ['IPv4', 'IPv6']);
  const prefixes = options.interfacePrefixesToSkip ?? DEFAULT_SKIPPED_INTERFACE_PREFIXES;
  const maxHost = Math.max(0, Math.min(options.maxHost ?? CANDIDATE_LIMITS.maxHost, CANDIDATE_LIMITS.maxTotal));
  const list = (options.interfaces ?? networkInterfaces)();
  const skipped: SkippedAddress[] = [];
  const skip = (entry: SkippedAddress) => {
    if (skipped.length < MAX_SKIPPED_RECORDS) skipped.push(entry);
  };
  const found: { name: string; address: string; family: CandidateFamily; scope: AddressScope; order: number }[] = [];
  const seen = new Set<string>();
  let order = 0;
  for (const [name, infos] of Object.entries(list)) {
    for (const info of infos ?? []) {
      order++;
      const raw = String(info.address);
      if (info.internal) {
        skip({ interface: name, address: raw, reason: 'internal' });
        continue;
      }
      if (prefixes.some((prefix) => name.startsWith(prefix))) {
        skip({ interface: name, address: raw, reason: 'virtual-interface' });
        continue;
      }
      const address = canonicalAddress(raw.split('%')[0]);
      const family = address === undefined ? undefined : familyOf(address);
      if (address === undefined || family === undefined) {
        skip({ interface: name, address: raw, reason: 'bad-address' });
        continue;
      }
      if (!families.has(family)) {
        skip({ interface: name, address, reason: 'family-not-used' });
        continue;
      }
      const scope = addressScope(address);
      if (!HOST_SCOPES.includes(scope)) {
        skip({ interface: name, address, reason: 'scope', scope });
        continue;
      }
      if (seen.has(address)) {
        skip({ interface: name, address, reason: 'duplicate' });
        continue;
      }
      seen.add(address);
      found.push({ name, address, family, scope, order });
    }
  }
  // IPv6 first, then by scope (global/public before private before CGNAT), then interface order.
  found.sort((a, b) => familyRank(a.family) - familyRank(b.family) || HOST_SCOPES.indexOf(a.scope) - HOST_SCOPES.indexOf(b.scope) || a.order - b.order);
  const kept = found.slice(0, maxHost);
  for (const dropped of found.slice(maxHost)) skip({ interface: dropped.name, address: dropped.address, reason: 'over-limit' });
  return { candidates: rankCandidates(kept.map(({ address, family }) => ({ type: 'host', address, family, port: options.port }))), skipped };
}

function familyRank(family: CandidateFamily): number {
  return family === 'IPv6' ? 0 : 1;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 0xffff) throw new UsageError(`the shared socket's port must be 1-65535, got ${port}`);
}

/**
 * Gives each candidate its priority from its type, family and rank (order of appearance
 * within its type and family), keeping the input order otherwise.
 */
function rankCandidates(list: readonly Omit<Candidate, 'priority'>[]): Candidate[] {
  const ranks = new Map<string, number>();
  return list.map((candidate) => {
    const key = `${candidate.type}/${candidate.family}`;
    const rank = ranks.get(key) ?? 0;
    ranks.set(key, rank + 1);
    return { ...candidate, priority: candidatePriority(candidate.type, candidate.family, rank) };
  });
}

// ---------------------------------------------------------------------------------------------
// Server-reflexive candidates

/**
 * srflx candidates from observations of the shared socket (the relay's, then STUN answers),
 * in the given order, de-duplicated, at most `maxSrflx`. Observations that are not IP:port
 * endpoints or have an unusable scope are ignored.
 */
export function reflexiveCandidates(observations: readonly Endpoint[], options: { families?: readonly CandidateFamily[]; max?: number } = {}): Candidate[] {
  const families = new Set(options.families ?? ['IPv4', 'IPv6']);
  const max = Math.min(options.max ?? CANDIDATE_LIMITS.maxSrflx, CANDIDATE_LIMITS.maxTotal);
  const out: Omit<Candidate, 'priority'>[] = [];
  const seen = new Set<string>();
  for (const observation of observations) {
    const candidate = usableEndpoint(observation, 'srflx');
    if (candidate === undefined || !families.has(candidate.family)) continue;
    const key = endpointKey(candidate);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(candidate);
    if (out.length >= max) break;
  }
  return rankCandidates(out);
}

function usableEndpoint(endpoint: Endpoint, type: CandidateType): Omit<Candidate, 'priority'> | undefined {
  const address = canonicalAddress(endpoint?.address);
  if (address === undefined || !Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 0xffff) return undefined;
  const family = familyOf(address);
  if (family === undefined || !HOST_SCOPES.includes(addressScope(address))) return undefined;
  return { type, address, port: endpoint.port, family };
}

/** The part of StunClient this module uses (core/nat/stun.ts). */
export interface StunBinder {
  binding(server: Endpoint, options?: { signal?: AbortSignal }): Promise<{ mappedAddress: Endpoint }>;
}

/**
 * Asks STUN servers, through a client bound to the shared socket (a StunClient built on it,
 * usually with `listen: false` fed by the socket's demultiplexer), what the socket's mapped
 * address is. Servers that fail are reported, not thrown; an abort is thrown.
 */
export async function stunObservations(
  client: StunBinder,
  servers: readonly Endpoint[],
  options: { signal?: AbortSignal } = {},
): Promise<{ observations: Endpoint[]; errors: { server: Endpoint; message: string }[] }> {
  const results = await Promise.allSettled(servers.map((server) => client.binding(server, { signal: options.signal })));
  throwIfAborted(options.signal);
  const observations: Endpoint[] = [];
  const errors: { server: Endpoint; message: string }[] = [];
  results.forEach((result, index) => {
    if (result.status === 'fulfilled') observations.push(result.value.mappedAddress);
    else errors.push({ server: servers[index], message: result.reason instanceof Error ? result.reason.message : String(result.reason) });
  });
  return { observations, errors };
}

// ---------------------------------------------------------------------------------------------
// Mapped candidates (PCP / NAT-PMP / UPnP)

/** The part of core/nat/portmap.ts's PortMapper this module uses. */
export interface CallPortMapper {
  add(request: { internalPort: number; lifetimeS: number; description?: string }, options?: { signal?: AbortSignal }): Promise<PortMapping>;
  delete(mapping: PortMapping, options?: { signal?: AbortSignal }): Promise<void>;
  keep(mapping: PortMapping, options: { signal: AbortSignal }): Promise<PortMapping>;
}

export interface MappedCandidateHandle {
  readonly candidate: Candidate;
  /** The mapping as made; renewals may move the external port (the mapper reports those). */
  readonly mapping: PortMapping;
  /**
   * Stops renewing and deletes the mapping. Idempotent: every call returns the same promise,
   * which never rejects (a gateway that does not answer leaves a mapping that expires by
   * itself at the end of its lifetime; the outcome says so). Hook it to hangup and to the
   * process's SIGINT/SIGTERM handlers.
   */
  release(): Promise<ReleaseOutcome>;
  readonly released: boolean;
}

export type ReleaseOutcome = { deleted: true } | { deleted: false; error: string };

export interface MappedCandidateOptions {
  /** The shared socket's local port. */
  port: number;
  /** Requested lifetime; renewed at half of it while the call lasts (default 120 s). */
  lifetimeS?: number;
  signal?: AbortSignal;
  description?: string;
}

/**
 * Maps the shared socket's port on the gateway for this call and returns the `mapped`
 * candidate with a release handle. The mapping is renewed while held (PortMapper.keep).
 * Throws what PortMapper.add throws (NatTraversalError when no protocol worked).
 */
export async function createMappedCandidate(mapper: CallPortMapper, options: MappedCandidateOptions): Promise<MappedCandidateHandle> {
  checkPort(options.port);
  const mapping = await mapper.add(
    { internalPort: options.port, lifetimeS: options.lifetimeS ?? 120, description: options.description ?? 'wzp call' },
    { signal: options.signal },
  );
  const endpoint = usableEndpoint({ address: mapping.externalAddress, port: mapping.externalPort }, 'mapped');
  if (endpoint === undefined || !['public', 'global'].includes(addressScope(endpoint.address))) {
    // The gateway answered with something no peer can use: a private or CGNAT "external"
    // address means a second NAT upstream (a home router behind a carrier's NAT). Delete it at
    // once rather than hold a useless mapping.
    await mapper.delete(mapping).catch(() => undefined);
    throw new UsageError(`the gateway mapped port ${options.port} to an unusable address ${mapping.externalAddress}:${mapping.externalPort}`);
  }
  const candidate = rankCandidates([endpoint])[0];
  const stop = new AbortController();
  const kept = mapper.keep(mapping, { signal: stop.signal });
  // keep() resolves once aborted and the mapping deleted; it rejects when the deletion fails,
  // or when a renewal failed for good (it has tried to delete the mapping by then).
  const outcome: Promise<ReleaseOutcome> = kept.then(
    (): ReleaseOutcome => ({ deleted: true }),
    (error: unknown): ReleaseOutcome => ({ deleted: false, error: error instanceof Error ? error.message : String(error) }),
  );
  let released = false;
  return {
    candidate,
    mapping,
    get released() {
      return released;
    },
    release() {
      released = true;
      stop.abort();
      return outcome;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Predicted candidates (NAT-strategy plugins)

/**
 * A strategy's plan targets (core/nat/strategy-types.ts ProbePlan, sent from the call's own
 * socket) as `predicted` remote candidates for PathChecker.addRemoteCandidates (they are guesses
 * about the peer, never announced to anyone).
 *
 * Bounded and confined: at most `max` (default 32) targets, and only targets whose IP is one
 * of the peer's announced candidate addresses (DESIGN.md §6: hard-NAT tricks only toward the
 * peer's announced addresses; a plugin cannot aim probes at other hosts). Targets that do not
 * parse as IP:PORT (IPv6 in brackets) or are not an Endpoint are dropped. Priorities fall
 * with the plan's order. Plans with extra sockets (the birthday technique) are not candidates
 * of the call's socket: the plan executor sends those.
 */
export function predictedCandidates(plan: { targets: readonly (Endpoint | string)[] }, announced: readonly Endpoint[], options: { max?: number } = {}): Candidate[] {
  const max = Math.max(0, Math.min(options.max ?? CANDIDATE_LIMITS.maxPredicted, CANDIDATE_LIMITS.maxPredicted));
  const allowed = new Set(announced.map((endpoint) => canonicalAddress(endpoint.address)).filter((address) => address !== undefined));
  const out: Omit<Candidate, 'priority'>[] = [];
  const seen = new Set<string>();
  for (const target of Array.isArray(plan.targets) ? plan.targets.slice(0, max * 4) : []) {
    const endpoint = typeof target === 'string' ? parseEndpoint(target) : isEndpointLike(target) ? target : undefined;
    const candidate = endpoint === undefined ? undefined : usableEndpoint(endpoint, 'predicted');
    if (candidate === undefined || !allowed.has(candidate.address)) continue;
    const key = endpointKey(candidate);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(candidate);
    if (out.length >= max) break;
  }
  return rankCandidates(out);
}

function isEndpointLike(value: unknown): value is Endpoint {
  const v = value as Partial<Endpoint> | null;
  return typeof v === 'object' && v !== null && typeof v.address === 'string' && typeof v.port === 'number';
}

/** `1.2.3.4:5` or `[2001:db8::1]:5`; undefined otherwise. */
export function parseEndpoint(text: string): Endpoint | undefined {
  if (text.length > CANDIDATE_LIMITS.maxAddressChars + 8) return undefined;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const address = canonicalAddress(match[1] ?? match[2]);
  const port = Number(match[3]);
  if (address === undefined || (match[1] !== undefined) !== (familyOf(address) === 'IPv6') || port < 1 || port > 0xffff) return undefined;
  return { address, port };
}

// ---------------------------------------------------------------------------------------------
// One gathering for a call

export interface GatherOptions extends Omit<HostCandidateOptions, 'maxHost'> {
  /** `--relay-only`: no host or mapped candidate (no local address leaves the machine). */
  relayOnly?: boolean;
  /** The relay's observation(s) of the shared socket, then any STUN answers. */
  reflexive?: readonly Endpoint[];
  /** A mapping made for this call (createMappedCandidate); ignored with relayOnly (do not make one then). */
  mapped?: MappedCandidateHandle;
  maxHost?: number;
}

export interface GatheredCandidates {
  /** Ordered by priority, highest first; at most CANDIDATE_LIMITS.maxTotal. */
  readonly candidates: Candidate[];
  readonly skipped: SkippedAddress[];
}

/**
 * The call's local candidates: host (unless relayOnly), mapped (unless relayOnly), srflx;
 * de-duplicated by address and port (the higher type wins: a public host address that is
 * also the relay's observation is announced once, as host), sorted by priority. Sends
 * nothing; the mapping (if any) is made beforehand by createMappedCandidate.
 */
export function gatherCandidates(options: GatherOptions): GatheredCandidates {
  checkPort(options.port);
  const families = options.families ?? ['IPv4', 'IPv6'];
  const host: HostCandidates = options.relayOnly ? { candidates: [], skipped: [] } : hostCandidates({ ...options, families });
  const mapped = !options.relayOnly && options.mapped !== undefined && families.includes(options.mapped.candidate.family) ? [options.mapped.candidate] : [];
  const srflx = reflexiveCandidates(options.reflexive ?? [], { families });
  const all = [...host.candidates, ...mapped, ...srflx];
  const byKey = new Map<string, Candidate>();
  for (const candidate of all) {
    const key = endpointKey(candidate);
    const existing = byKey.get(key);
    if (existing === undefined || candidate.priority > existing.priority) byKey.set(key, candidate);
  }
  const candidates = [...byKey.values()].sort((a, b) => b.priority - a.priority).slice(0, CANDIDATE_LIMITS.maxTotal);
  return { candidates, skipped: host.skipped };
}

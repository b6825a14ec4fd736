/**
 * Reading a NAT profile a strategy was handed, before trusting any of it. The peer's profile
 * arrives over the network (signed by the peer, which proves who sent it, not that it is
 * sane): ports outside 1..65535, a NaN or huge delta, arrays of a million entries, missing
 * fields. A strategy must never throw on it and must not plan from it: `checkNatProfile`
 * returns a profile in which everything left is in range, and whatever was not is `unknown`
 * or dropped, so "decline on unknown" covers bad input too.
 *
 * Exported through `wzp/plugin` for third-party strategies; wzp's own (nat-sequential,
 * nat-birthday) use exactly this.
 */
import type { FilteringBehaviour, MappingBehaviour } from './behaviour.js';
import { MAX_SEQUENTIAL_DELTA, WRAP_FLOOR_PORT, type PortAllocationKind } from './port-allocation.js';
import type { NatProfile } from './strategy-types.js';
import type { Endpoint } from './stun.js';

/** `allocation.recentPorts` holds at most this many ports (the contract's bound); older ones are ignored. */
export const MAX_RECENT_PORTS = 16;
/** Reflexive endpoints kept from a profile (a client has a handful: relay, STUN servers, families). */
export const MAX_REFLEXIVE_ENDPOINTS = 16;
/** An age beyond a day is no better than none (and keeps arithmetic on it finite). */
export const MAX_OBSERVED_AGO_MS = 86_400_000;
/** The longest textual IP address (IPv6 with an embedded IPv4 is 45 characters). */
const MAX_ADDRESS_CHARS = 45;

/** Where a NAT's external ports come from when nothing says otherwise: WRAP_FLOOR_PORT..65535. */
export const NAT_PORT_POOL: Readonly<{ low: number; high: number; size: number }> = Object.freeze({
  low: WRAP_FLOOR_PORT,
  high: 65535,
  size: 65535 - WRAP_FLOOR_PORT + 1,
});

const DEPENDENCE: readonly string[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent', 'unknown'];
const KINDS: readonly string[] = ['port-preserving', 'fixed', 'sequential', 'random', 'unknown'];

/** An integer port in 1..65535. */
export function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** 6 for an address with a colon (IPv6), else 4. Addresses come from validated candidates. */
export function ipFamily(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

function unknownProfile(): NatProfile {
  return { mapping: 'unknown', filtering: 'unknown', allocation: { kind: 'unknown', recentPorts: [] }, reflexive: [], consent: false };
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

function dependence(value: unknown): MappingBehaviour & FilteringBehaviour {
  return typeof value === 'string' && DEPENDENCE.includes(value) ? (value as MappingBehaviour) : 'unknown';
}

function endpoint(value: unknown): Endpoint | undefined {
  const address = field(value, 'address');
  const port = field(value, 'port');
  if (typeof address !== 'string' || address.length === 0 || address.length > MAX_ADDRESS_CHARS || !isPort(port)) return undefined;
  return { address, port };
}

function allocation(value: unknown): NatProfile['allocation'] {
  let kind: PortAllocationKind = typeof field(value, 'kind') === 'string' && KINDS.includes(field(value, 'kind') as string) ? (field(value, 'kind') as PortAllocationKind) : 'unknown';
  const rawPorts = field(value, 'recentPorts');
  // Only the newest MAX_RECENT_PORTS matter; slicing first keeps a huge array cheap. One bad
  // entry among them makes the sequence untrustworthy (a gap would look like jitter).
  const newest = Array.isArray(rawPorts) ? rawPorts.slice(-MAX_RECENT_PORTS) : [];
  const recentPorts = newest.every(isPort) ? (newest as number[]).slice() : [];
  const rawDelta = field(value, 'delta');
  const delta =
    typeof rawDelta === 'number' && Number.isInteger(rawDelta) && rawDelta !== 0 && Math.abs(rawDelta) <= MAX_SEQUENTIAL_DELTA ? rawDelta : undefined;
  const rawAgo = field(value, 'observedAgoMs');
  const observedAgoMs = typeof rawAgo === 'number' && Number.isFinite(rawAgo) && rawAgo >= 0 ? Math.min(rawAgo, MAX_OBSERVED_AGO_MS) : undefined;
  // A kind whose meaning rests on data that is missing or contradicts it is not known.
  if (kind === 'sequential' && (delta === undefined || recentPorts.length === 0)) kind = 'unknown';
  if (kind === 'port-preserving' && (recentPorts.length === 0 || recentPorts.some((p) => p !== recentPorts[0]))) kind = 'unknown';
  return {
    kind,
    ...(kind === 'sequential' ? { delta } : {}),
    recentPorts,
    ...(observedAgoMs === undefined ? {} : { observedAgoMs }),
  };
}

/**
 * A copy of `profile` with every field checked: behaviours outside the enum become
 * `unknown`; recent ports are the newest 16, all integers in 1..65535, or none; a delta is an
 * integer with 1 ≤ |delta| ≤ 32 (MAX_SEQUENTIAL_DELTA, the classifier's own bound), or the
 * kind is `unknown`; reflexive endpoints are the first 16 with a port in range; consent is
 * only `true` itself. Never throws.
 */
export function checkNatProfile(profile: unknown): NatProfile {
  try {
    if (typeof profile !== 'object' || profile === null) return unknownProfile();
    const rawReflexive = field(profile, 'reflexive');
    const reflexive = Array.isArray(rawReflexive)
      ? rawReflexive
          .slice(0, MAX_REFLEXIVE_ENDPOINTS)
          .map(endpoint)
          .filter((e): e is Endpoint => e !== undefined)
      : [];
    return {
      mapping: dependence(field(profile, 'mapping')),
      filtering: dependence(field(profile, 'filtering')),
      allocation: allocation(field(profile, 'allocation')),
      reflexive,
      consent: field(profile, 'consent') === true,
    };
  } catch {
    // A getter or proxy that throws: nothing in it can be trusted.
    return unknownProfile();
  }
}

/**
 * The address family both sides can punch in: IPv4 when both have an IPv4 reflexive address
 * (where NATs are), else IPv6 when both have one, else none. Computed from the two profiles
 * alone, so both peers pick the same family without talking.
 */
export function sharedFamily(a: NatProfile, b: NatProfile): 4 | 6 | undefined {
  for (const family of [4, 6] as const) {
    if (a.reflexive.some((e) => ipFamily(e.address) === family) && b.reflexive.some((e) => ipFamily(e.address) === family)) return family;
  }
  return undefined;
}

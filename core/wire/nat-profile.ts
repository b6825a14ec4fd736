/**
 * A NAT profile as call signalling carries it (`nat` in offers and answers, ./signal.ts): what
 * the sender measured of its own NAT on the call's socket at call time (the NatProfile of
 * core/nat/strategy-types.ts, measured by core/nat/profile.ts), for the hard-NAT strategies.
 * This module only defines and validates the shape; it is signed on its own (`natSignature`,
 * core/crypto/call-signal.ts).
 *
 * ```
 * {"mapping":"address-and-port-dependent","filtering":"unknown",
 *  "allocation":{"kind":"sequential","delta":1,"recentPorts":[40000,40001,40002,40003],"observedAgoMs":12},
 *  "reflexive":[{"address":"192.0.2.2","port":40003},{"address":"192.0.2.2","port":40002}],
 *  "consent":true}
 * ```
 *
 * Every field comes from the peer, so every field is bounded:
 * - mapping, filtering: `endpoint-independent`, `address-dependent`,
 *   `address-and-port-dependent` or `unknown`.
 * - allocation.kind: `port-preserving`, `fixed`, `sequential`, `random` or `unknown`;
 *   allocation.delta: an integer with 1 ≤ |delta| ≤ MAX_SEQUENTIAL_DELTA (32), present exactly
 *   when the kind is `sequential`; allocation.recentPorts: at most MAX_NAT_RECENT_PORTS (16)
 *   ports 1-65535; allocation.observedAgoMs (optional): an integer 0-MAX_NAT_OBSERVED_AGO_MS.
 * - reflexive: at most MAX_NAT_REFLEXIVE (8) endpoints `{address, port}`, the address an IPv4
 *   or IPv6 literal exactly as candidates take it (./candidate.ts).
 * - consent: true or false (required: a profile always says it).
 * - Unknown fields, at either level, are dropped; `null` counts as absent for the optional
 *   ones. The canonical form (what the signature covers) is the fields in the order above.
 *
 * What a receiver does with a profile that breaks a rule is ./signal.ts's business: the field
 * is left out (the call goes on, with no consent from that side).
 */
import { MAX_SEQUENTIAL_DELTA, type PortAllocationKind } from '../nat/port-allocation.js';
import type { NatDependence } from '../nat/behaviour.js';
import type { NatProfile } from '../nat/strategy-types.js';
import { isWireAddress, isWirePort } from './candidate.js';

export const NAT_DEPENDENCES = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent', 'unknown'] as const satisfies readonly NatDependence[];
export const PORT_ALLOCATION_KINDS = ['port-preserving', 'fixed', 'sequential', 'random', 'unknown'] as const satisfies readonly PortAllocationKind[];
// Compile-time: the lists name every value of their types (a new value must be added here).
const everyDependence: Exclude<NatDependence, (typeof NAT_DEPENDENCES)[number]> extends never ? true : never = true;
const everyAllocation: Exclude<PortAllocationKind, (typeof PORT_ALLOCATION_KINDS)[number]> extends never ? true : never = true;
void everyDependence;
void everyAllocation;

/** Ports a profile lists in allocation.recentPorts at most. */
export const MAX_NAT_RECENT_PORTS = 16;
/** Reflexive endpoints a profile lists at most. */
export const MAX_NAT_REFLEXIVE = 8;
/**
 * The oldest observation a profile may carry, ms: a profile is measured just before its offer
 * or answer is signed; an observation ten minutes old no longer predicts any NAT.
 */
export const MAX_NAT_OBSERVED_AGO_MS = 600_000;

/** Why `value` is not a NAT profile as signalling carries it (undefined when it is one). */
export function natProfileProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'a NAT profile is a JSON object';
  if (!isDependence(value.mapping)) return `nat.mapping is one of ${NAT_DEPENDENCES.join(', ')}`;
  if (!isDependence(value.filtering)) return `nat.filtering is one of ${NAT_DEPENDENCES.join(', ')}`;
  const a = value.allocation;
  if (!isObject(a)) return 'nat.allocation is a JSON object';
  if (typeof a.kind !== 'string' || !(PORT_ALLOCATION_KINDS as readonly string[]).includes(a.kind)) return `nat.allocation.kind is one of ${PORT_ALLOCATION_KINDS.join(', ')}`;
  const delta = absentIfNull(a.delta);
  if (a.kind === 'sequential') {
    if (!Number.isInteger(delta) || delta === 0 || Math.abs(delta as number) > MAX_SEQUENTIAL_DELTA) {
      return `nat.allocation.delta is a non-zero integer within ±${MAX_SEQUENTIAL_DELTA} for sequential allocation`;
    }
  } else if (delta !== undefined) {
    return 'nat.allocation.delta is only for sequential allocation';
  }
  if (!Array.isArray(a.recentPorts) || a.recentPorts.length > MAX_NAT_RECENT_PORTS || !a.recentPorts.every(isWirePort)) {
    return `nat.allocation.recentPorts is a list of at most ${MAX_NAT_RECENT_PORTS} ports 1-65535`;
  }
  const ago = absentIfNull(a.observedAgoMs);
  if (ago !== undefined && (!Number.isInteger(ago) || (ago as number) < 0 || (ago as number) > MAX_NAT_OBSERVED_AGO_MS)) {
    return `nat.allocation.observedAgoMs is an integer 0-${MAX_NAT_OBSERVED_AGO_MS}`;
  }
  if (!Array.isArray(value.reflexive) || value.reflexive.length > MAX_NAT_REFLEXIVE || !value.reflexive.every((e) => isObject(e) && isWireAddress(e.address) && isWirePort(e.port))) {
    return `nat.reflexive is a list of at most ${MAX_NAT_REFLEXIVE} endpoints {address: an IP literal, port: 1-65535}`;
  }
  if (typeof value.consent !== 'boolean') return 'nat.consent is true or false';
  return undefined;
}

export function isWireNatProfile(value: unknown): value is NatProfile {
  return natProfileProblem(value) === undefined;
}

/** The canonical copy of a valid profile: its fields in order, absent optional ones left out, nothing else. */
export function canonicalNatProfile(p: NatProfile): NatProfile {
  const { kind, delta, recentPorts, observedAgoMs } = p.allocation;
  return {
    mapping: p.mapping,
    filtering: p.filtering,
    allocation: {
      kind,
      ...(delta === undefined || delta === null ? {} : { delta }),
      recentPorts: [...recentPorts],
      ...(observedAgoMs === undefined || observedAgoMs === null ? {} : { observedAgoMs }),
    },
    reflexive: p.reflexive.map((e) => ({ address: e.address, port: e.port })),
    consent: p.consent,
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isDependence(value: unknown): value is NatDependence {
  return typeof value === 'string' && (NAT_DEPENDENCES as readonly string[]).includes(value);
}

function absentIfNull(value: unknown): unknown {
  return value === null ? undefined : value;
}

/**
 * Path candidates as call signalling carries them (offer, answer, candidate-update; see
 * ./signal.ts): where a peer may be reached for a direct path. Gathering and connectivity
 * checks live elsewhere (core/nat); this module only defines and validates the shape.
 *
 * A candidate is a JSON object:
 *
 * ```
 * {"type":"host","address":"192.168.1.20","port":40000,"priority":2130706431}
 * ```
 *
 * - type: `host` (a local interface), `srflx` (server-reflexive: as a relay or STUN server saw
 *   the shared socket), `mapped` (a PCP / NAT-PMP / UPnP mapping made for the call), `prflx`
 *   (peer-reflexive: learned from an incoming check), `predicted` (filled by NAT-strategy
 *   plugins). Other strings are not candidates (the list is refused, not partly read).
 * - address: an IPv4 or IPv6 literal (no names, no zone ids), at most MAX_CANDIDATE_ADDRESS_LENGTH
 *   characters.
 * - port: 1-65535. priority: a u32, higher is tried first (RFC 8445 §5.1.2 style).
 * - Unknown fields of a candidate are dropped; the canonical form is the four fields in this
 *   order, which is what signatures cover.
 * - A list holds at most MAX_CANDIDATES candidates.
 *
 * Candidates a relay adds (its observation of a sender's address, "cross-wiring") are not
 * signed: receivers treat them as hints; the direct path is authenticated by identity, so a
 * tampered candidate cannot connect anyone but the intended peer.
 */
import { isIPv4, isIPv6 } from 'node:net';

export const CANDIDATE_TYPES = ['host', 'srflx', 'mapped', 'prflx', 'predicted'] as const;
export type CandidateType = (typeof CANDIDATE_TYPES)[number];

/** Candidates one list may carry (a dual-stack host with a few interfaces, mappings and predictions). */
export const MAX_CANDIDATES = 16;
/** The longest address literal accepted (an IPv6 address with an embedded IPv4 part is 45). */
export const MAX_CANDIDATE_ADDRESS_LENGTH = 45;

export interface Candidate {
  type: CandidateType;
  /** An IPv4 or IPv6 literal. */
  address: string;
  port: number;
  /** Higher first; a u32. */
  priority: number;
}

/** Why `value` is not a candidate (undefined when it is one). */
export function candidateProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'a candidate is a JSON object';
  const c = value as Record<string, unknown>;
  if (typeof c.type !== 'string' || !(CANDIDATE_TYPES as readonly string[]).includes(c.type)) return `a candidate's type is one of ${CANDIDATE_TYPES.join(', ')}`;
  if (!isWireAddress(c.address)) return "a candidate's address is an IPv4 or IPv6 literal";
  if (!isWirePort(c.port)) return "a candidate's port is 1-65535";
  if (!Number.isInteger(c.priority) || (c.priority as number) < 0 || (c.priority as number) > 0xffff_ffff) return "a candidate's priority is a u32";
  return undefined;
}

/**
 * An address as signalling carries it (candidates, NAT profiles): an IPv4 or IPv6 literal, no
 * host name, no zone id, at most MAX_CANDIDATE_ADDRESS_LENGTH characters.
 */
export function isWireAddress(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_CANDIDATE_ADDRESS_LENGTH && (isIPv4(value) || isIPv6(value)) && !value.includes('%');
}

/** A UDP port as signalling carries it: an integer 1-65535. */
export function isWirePort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 0xffff;
}

export function isCandidate(value: unknown): value is Candidate {
  return candidateProblem(value) === undefined;
}

/** A list of at most MAX_CANDIDATES valid candidates. */
export function isCandidateList(value: unknown): value is Candidate[] {
  return Array.isArray(value) && value.length <= MAX_CANDIDATES && value.every(isCandidate);
}

/** The canonical copy of a valid candidate: its four fields in order, nothing else. */
export function canonicalCandidate(c: Candidate): Candidate {
  return { type: c.type, address: c.address, port: c.port, priority: c.priority };
}

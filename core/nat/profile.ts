/**
 * A call's NAT profile (./strategy-types.ts NatProfile) from what gathering the call's
 * candidates already saw on the call's own socket (core/client/call-candidates.ts): the
 * relay's observation of its connection, and one Binding answer from each distinct STUN
 * server endpoint. Nothing here sends a packet: the profile costs the call no round trip.
 *
 * - mapping: endpoint-independent when every distinct server endpoint saw the same mapped
 *   endpoint. When they differ: address-and-port-dependent if two endpoints on one IP saw
 *   different mappings; address-dependent if every pair on one IP agreed (so only the IP
 *   made a difference). With servers on different IPs only, the two cannot be told apart:
 *   address-and-port-dependent is said (the harder of the two, so that a strategy plans for
 *   it), with a note. Fewer than two distinct endpoints: unknown.
 * - allocation: classifyPortAllocation over the STUN answers in the order their requests were
 *   sent. The requests leave in one burst from one socket, in that order, so a NAT makes
 *   their mappings in that order too; but a request that was lost and sent again may have
 *   made its mapping later (lost before the NAT) or not (lost after it), and one that was
 *   never answered may or may not have made one. So the sequence used is the longest prefix
 *   whose requests were all answered at their first attempt: exactly the mappings made, in
 *   the order made. The relay's observation is not in it: its mapping was made when the
 *   connection was, maybe long before, with other mappings in between. A server at the
 *   relay's own endpoint (a relay answers STUN on its port) reuses the relay's mapping: it
 *   is left out of the sequence without cutting it.
 * - recentPorts: the distinct mapped ports in the order their mappings were made, as far as
 *   known (the relay's first, then the sequence, then the rest in the order answered), the
 *   last 16; observedAgoMs: since the last answer.
 * - filtering: unknown. Filtering needs RFC 5780 CHANGE-REQUEST probes from a socket that has
 *   sent to nobody else (./behaviour.ts): the call's socket has talked to every server asked.
 *   `wzp netcheck` measures it; a call does not invent it.
 * - reflexive: the distinct mapped endpoints, most recently made first (at most 8).
 * - One family: the NAT of the IPv4 answers when there are any (IPv6 seldom has one), else of
 *   the IPv6 ones; the other family's answers are noted and not mixed in.
 */
import { isIP } from 'node:net';
import type { NatProfile } from './strategy-types.js';
import type { MappingBehaviour } from './behaviour.js';
import { classifyPortAllocation, type PortObservation } from './port-allocation.js';
import { type Endpoint, formatEndpoint, sameEndpoint } from './stun.js';

/** Ports and endpoints a profile lists at most (the wire's limits, core/wire/nat-profile.ts). */
const MAX_RECENT_PORTS = 16;
const MAX_REFLEXIVE = 8;

/** One STUN Binding transaction from the call's socket, answered or not. */
export interface StunTransaction {
  /** The endpoint asked (an IP literal). */
  server: Endpoint;
  /** The mapped address it answered with; absent: no (usable) answer within the budget. */
  mapped?: Endpoint;
  /** Requests sent (1: answered at its first). */
  attempts: number;
  /** performance.now() when it was answered (or given up). */
  at: number;
}

export interface NatProfileInput {
  /** The call socket's local port. */
  localPort: number;
  /**
   * The relay's observation of the socket (its `reflect`), with the relay's endpoint as dialled
   * (a host name when dialled by name: then it shares an IP with no STUN server here).
   */
  relay?: { server: Endpoint; mapped: Endpoint; at: number };
  /** The STUN transactions in the order their requests were sent (one per distinct endpoint). */
  stun: readonly StunTransaction[];
  /** This side accepts hard-NAT probing for this call. */
  consent: boolean;
  /** performance.now() of the profile: observedAgoMs counts to it. */
  now: number;
}

export interface MeasuredNatProfile {
  profile: NatProfile;
  /** How each judgement was reached, and why anything is unknown: for the call report. */
  notes: string[];
}

type Family = 4 | 6;

interface Seen {
  server: Endpoint;
  mapped: Endpoint;
  at: number;
}

export function buildNatProfile(input: NatProfileInput): MeasuredNatProfile {
  const notes: string[] = [];
  const answered = input.stun.filter((t): t is StunTransaction & { mapped: Endpoint } => t.mapped !== undefined);
  const all: Seen[] = [...(input.relay ? [input.relay] : []), ...answered];
  const family: Family = all.some((o) => isIP(o.mapped.address) === 4) || all.length === 0 ? 4 : 6;
  const inFamily = (e: Endpoint) => isIP(e.address) === family;
  const others = all.filter((o) => !inFamily(o.mapped));
  if (others.length > 0) notes.push(`${others.length} IPv${family === 4 ? 6 : 4} answer(s) not used: the profile is of the IPv${family} NAT`);
  const relay = input.relay && inFamily(input.relay.mapped) ? input.relay : undefined;
  const relayKey = input.relay ? formatEndpoint(input.relay.server) : undefined;

  // Distinct server endpoints (the relay's own STUN answer is the relay's mapping again).
  const byServer = new Map<string, Seen>();
  for (const o of [...(relay ? [relay] : []), ...answered.filter((t) => inFamily(t.mapped))]) {
    if (!byServer.has(formatEndpoint(o.server))) byServer.set(formatEndpoint(o.server), o);
  }
  const seen = [...byServer.values()];
  const mapping = classifyMappingFrom(seen, notes);

  // The allocation sequence: this family's requests in the order sent, up to the first whose
  // mapping time is uncertain (see the top of this file).
  const sent = input.stun.filter((t) => isIP(t.server.address) === family && formatEndpoint(t.server) !== relayKey);
  const cut = sent.findIndex((t) => t.mapped === undefined || t.attempts !== 1 || !inFamily(t.mapped));
  const sequence = cut === -1 ? sent : sent.slice(0, cut);
  if (cut !== -1) {
    const t = sent[cut];
    notes.push(
      `allocation from the first ${cut} of ${sent.length} STUN answers: ${formatEndpoint(t.server)} ${t.mapped === undefined ? 'gave no usable answer' : `answered only after ${t.attempts} requests`}, so where its mapping falls in the order is unknown`,
    );
  }
  const observations: PortObservation[] = sequence.map((t) => ({ server: t.server, localPort: input.localPort, mapped: t.mapped as Endpoint }));
  const allocation = classifyPortAllocation(observations);
  notes.push(`allocation ${allocation.kind}: ${allocation.reason}`);

  // Mappings in the order made, as far as known: the relay's, the sequence, the rest as answered.
  const rest = answered.filter((t) => inFamily(t.mapped) && !sequence.includes(t) && formatEndpoint(t.server) !== relayKey).sort((a, b) => a.at - b.at);
  const made = [...(relay ? [relay] : []), ...sequence.map((t) => t as Seen), ...rest];
  const recentPorts = distinct(made.map((o) => o.mapped.port), (a, b) => a === b).slice(-MAX_RECENT_PORTS);
  const reflexive = distinct([...made].reverse().map((o) => o.mapped), sameEndpoint).slice(0, MAX_REFLEXIVE);
  const last = Math.max(...made.map((o) => o.at));
  const profile: NatProfile = {
    mapping,
    filtering: 'unknown',
    allocation: {
      kind: allocation.kind,
      ...(allocation.kind === 'sequential' && allocation.delta !== undefined ? { delta: allocation.delta } : {}),
      recentPorts,
      ...(made.length > 0 ? { observedAgoMs: Math.max(0, Math.round(input.now - last)) } : {}),
    },
    reflexive: reflexive.map((e) => ({ address: e.address, port: e.port })),
    consent: input.consent,
  };
  notes.push('filtering unknown: it is not measured on the call socket (wzp netcheck measures it)');
  return { profile, notes };
}

/** The mapping behaviour the distinct server endpoints' answers show (see the top of this file). */
function classifyMappingFrom(seen: readonly Seen[], notes: string[]): MappingBehaviour {
  if (seen.length < 2) {
    notes.push(`mapping unknown: ${seen.length} server endpoint(s) answered, at least 2 distinct ones needed`);
    return 'unknown';
  }
  if (seen.every((o) => sameEndpoint(o.mapped, seen[0].mapped))) {
    notes.push(`mapping endpoint-independent: ${seen.length} server endpoints saw ${formatEndpoint(seen[0].mapped)}`);
    return 'endpoint-independent';
  }
  let sameIpPairs = 0;
  for (const [i, a] of seen.entries()) {
    for (const b of seen.slice(i + 1)) {
      if (a.server.address !== b.server.address) continue;
      sameIpPairs++;
      if (!sameEndpoint(a.mapped, b.mapped)) {
        notes.push(`mapping address-and-port-dependent: ${formatEndpoint(a.server)} and ${formatEndpoint(b.server)} (one IP, two ports) saw ${formatEndpoint(a.mapped)} and ${formatEndpoint(b.mapped)}`);
        return 'address-and-port-dependent';
      }
    }
  }
  if (sameIpPairs > 0) {
    notes.push(`mapping address-dependent: servers on one IP saw one mapping, servers on other IPs others (${seen.length} endpoints)`);
    return 'address-dependent';
  }
  notes.push(
    `mapping not endpoint-independent: ${seen.length} servers on ${seen.length} IPs saw different mappings; without two ports on one IP address-dependent and address-and-port-dependent look alike: the harder is assumed`,
  );
  return 'address-and-port-dependent';
}

function distinct<T>(values: readonly T[], same: (a: T, b: T) => boolean): T[] {
  const out: T[] = [];
  for (const v of values) if (!out.some((o) => same(o, v))) out.push(v);
  return out;
}

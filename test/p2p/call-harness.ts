/**
 * Two PathCheckers wired through the in-memory network: the shape most checker tests share.
 */

import type { Candidate, Endpoint } from '../../core/p2p/candidates.js';
import { type PathCheckEvent, PathChecker, type PathCheckerOptions } from '../../core/p2p/checks.js';
import { type FakeClock, type FakeHost, type FakeNetwork, callSecrets, candidate } from './helpers.js';

/** Where a relay would observe the shared sockets from. */
export const RELAY: Endpoint = { address: '192.0.2.1', port: 4433 };

export interface Side {
  readonly host: FakeHost;
  readonly checker: PathChecker;
  readonly events: PathCheckEvent[];
  readonly local: Candidate[];
}

export type SideOptions = Partial<Omit<PathCheckerOptions, 'role' | 'key' | 'callId' | 'send' | 'localCandidates' | 'timers'>>;

/** The host's candidates: its interface address, and its NAT's mapping as the relay saw it. */
export function localCandidates(host: FakeHost, options: { srflx?: boolean } = {}): Candidate[] {
  const out = [candidate('host', host.inside)];
  if (host.nat !== undefined && (options.srflx ?? true)) out.push(candidate('srflx', host.nat.reflexive(host.inside, RELAY)));
  return out;
}

export function makeSide(
  network: FakeNetwork,
  clock: FakeClock,
  host: FakeHost,
  role: 'controlling' | 'controlled',
  secrets: { key: Uint8Array; callId: Uint8Array },
  local: Candidate[],
  options: SideOptions = {},
): Side {
  const checker = new PathChecker({
    role,
    ...secrets,
    localCandidates: local,
    send: network.sender(host),
    timers: clock,
    sendLogSize: 10_000,
    ...options,
  });
  (host as { receive?: FakeHost['receive'] }).receive = (bytes, from) => checker.receive(bytes, from);
  const events: PathCheckEvent[] = [];
  checker.on((event) => events.push(event));
  return { host, checker, events, local };
}

/** A controlling A and a controlled B that know each other's candidates. */
export function makeCall(
  network: FakeNetwork,
  clock: FakeClock,
  hostA: FakeHost,
  hostB: FakeHost,
  options: { a?: SideOptions; b?: SideOptions; localA?: Candidate[]; localB?: Candidate[] } = {},
): { a: Side; b: Side; secrets: { key: Uint8Array; callId: Uint8Array } } {
  const secrets = callSecrets();
  const localA = options.localA ?? localCandidates(hostA);
  const localB = options.localB ?? localCandidates(hostB);
  const a = makeSide(network, clock, hostA, 'controlling', secrets, localA, { remoteCandidates: localB, ...options.a });
  const b = makeSide(network, clock, hostB, 'controlled', secrets, localB, { remoteCandidates: localA, ...options.b });
  return { a, b, secrets };
}

export function eventTypes(side: Side): string[] {
  return side.events.map((event) => event.type);
}

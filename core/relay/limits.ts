/**
 * What one client (a connection, a source address, a room member) may make a relay do or
 * hold, and what the relay answers when it asks for more. Every limit has a counter in the
 * relay's metrics (`refused`, by reason) and a flag on `wzp relay`; docs/relay-limits.md
 * lists them with their reasons.
 *
 * The defaults leave an honest client far below every limit (a call joins once, signals a
 * few times a second at most, sends GOOD-tier media at ~90 packets and ~9 kB a second) and
 * stop each attack the relay review found: connection and handshake floods, room squatting,
 * join/leave churn, oversized rosters, parked partial frames, signal floods and media
 * floods.
 */
import { UsageError } from '../errors.js';
import { DEFAULT_GATE_LIMITS, GATE_DROP_REASONS, type GateDropReason, type QuicGateLimits } from '../transport/quic-gate.js';
import { MAX_ROOM_PARTICIPANTS } from './rooms.js';

export interface RelayLimits extends QuicGateLimits {
  /** Connections from one source address (IPv4 address or IPv6 /64); more are closed with the reason. */
  connectionsPerSource: number;
  /** Joins one connection may make in a burst (leaves are never refused)... */
  joinBurst: number;
  /** ...and then per minute. Each join (and the leave that follows) makes every member rotate its sender key. */
  joinsPerMinute: number;
  /** Joins all connections from one source address may make in a burst... */
  sourceJoinBurst: number;
  /** ...and then per minute (churn spread over many connections). */
  sourceJoinsPerMinute: number;
  /** Signalling requests one connection may make in a burst (a rotation in a full room sends 63)... */
  signalBurst: number;
  /** ...and then per second. */
  signalsPerSecond: number;
  /** Signalling bytes (JSON) one connection may send per second (burst: 4 s' worth). */
  signalBytesPerSecond: number;
  /** Members in one room (at most MAX_ROOM_PARTICIPANTS, so a full roster fits one answer). */
  roomSize: number;
  /** Members of one room from one source address (IPv4 address or IPv6 /64). */
  roomMembersPerSource: number;
  /** Media one member may send to be forwarded, kbit/s (burst: 1 s' worth). */
  memberKbps: number;
  /** Media packets one member may send to be forwarded, per second (burst: 1 s' worth). */
  memberPacketsPerSecond: number;
  /** Bytes of unfinished signal frames one connection may hold. */
  signalBufferBytes: number;
  /** Bytes of unfinished signal frames all connections together may hold. */
  signalBufferTotalBytes: number;
  /** Identities registered (presence, ./presence.ts) at once, in all. */
  registrations: number;
  /** Identities registered at once from one source address (IPv4 address or IPv6 /64). */
  registrationsPerSource: number;
  /** Call offers one connection may send in a burst... */
  offerBurst: number;
  /** ...and then per minute. */
  offersPerMinute: number;
  /** Offers waiting for one callee's answer (ringing) at once; more are refused. */
  pendingCallsPerCallee: number;
  /** Calls (ringing or answered) the relay tracks at once, in all. */
  calls: number;
}

/**
 * GOOD, the highest tier (core/media/quality.ts): Opus 24 kbit/s in 20 ms frames with
 * Reed-Solomon 4+3, so 87.5 packets/s of ~95 bytes (header, sealed payload, tag), ~67 kbit/s
 * on the wire. The member caps are 4x that: room for FEC repairs, reports, a tier change and
 * bursts, and far below what a flood needs to hurt (the review saw a member's 5,000 packets/s
 * of junk fanned out at 10,350/s).
 */
const GOOD_WIRE_KBPS = 67;
const GOOD_PACKETS_PER_SECOND = 87.5;

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  ...DEFAULT_GATE_LIMITS,
  connectionsPerSource: 64,
  joinBurst: 10,
  joinsPerMinute: 30,
  sourceJoinBurst: 64,
  sourceJoinsPerMinute: 120,
  signalBurst: 200,
  signalsPerSecond: 50,
  signalBytesPerSecond: 32 * 1024,
  roomSize: MAX_ROOM_PARTICIPANTS,
  roomMembersPerSource: 16,
  memberKbps: 4 * GOOD_WIRE_KBPS,
  memberPacketsPerSecond: 4 * GOOD_PACKETS_PER_SECOND,
  signalBufferBytes: 64 * 1024,
  signalBufferTotalBytes: 32 * 1024 * 1024,
  registrations: 100_000,
  registrationsPerSource: 32,
  offerBurst: 5,
  offersPerMinute: 20,
  pendingCallsPerCallee: 4,
  calls: 100_000,
};

/** Why the relay refused or dropped something (the keys of its `refused` metrics). */
export type RefusalReason =
  // At the QUIC gate (core/transport/quic-gate.ts), before the library sees the datagram.
  | GateDropReason
  // A connection over its source's limit, closed after its handshake with the reason.
  | 'source-connections'
  // Signalling.
  | 'join-rate'
  | 'signal-rate'
  | 'signal-bytes'
  | 'signal-streams'
  | 'signal-memory'
  | 'signal-too-large'
  | 'signal-timeout'
  | 'room-full'
  | 'room-source-limit'
  | 'roster-full'
  | 'bad-room'
  | 'bad-announcement'
  | 'bad-fingerprint'
  | 'room-signal-too-large'
  // Presence and call signalling (./presence.ts).
  | 'registration-invalid'
  | 'registrations-full'
  | 'source-registrations'
  | 'not-registered'
  | 'offer-rate'
  | 'pending-calls'
  | 'calls-full'
  | 'unknown-call'
  // Access (./auth.ts, ./access.ts): a token missing, refused or not checkable; a room's ACL.
  | 'auth'
  | 'acl'
  // Media.
  | 'media-rate'
  // A join, registration or call offer while the relay drains (shutting down: docs/relay-operations.md).
  | 'draining'
  /** A relay link refused: federation off here, or a link hello on a connection already in use (core/federation/). */
  | 'link'
  /** A hello of another client protocol version (./relay.ts RELAY_PROTOCOL_VERSION). */
  | 'protocol-version';

export const REFUSAL_REASONS: readonly RefusalReason[] = [
  ...GATE_DROP_REASONS,
  'source-connections',
  'join-rate',
  'signal-rate',
  'signal-bytes',
  'signal-streams',
  'signal-memory',
  'signal-too-large',
  'signal-timeout',
  'room-full',
  'room-source-limit',
  'roster-full',
  'bad-room',
  'bad-announcement',
  'bad-fingerprint',
  'room-signal-too-large',
  'registration-invalid',
  'registrations-full',
  'source-registrations',
  'not-registered',
  'offer-rate',
  'pending-calls',
  'calls-full',
  'unknown-call',
  'auth',
  'acl',
  'media-rate',
  'draining',
  'link',
  'protocol-version',
];

/** Limits with every value checked (positive integers; room size within the hard cap). */
export function resolveRelayLimits(overrides: Partial<RelayLimits> = {}): RelayLimits {
  const limits = { ...DEFAULT_RELAY_LIMITS };
  for (const [name, value] of Object.entries(overrides) as [keyof RelayLimits, number | undefined][]) {
    if (value === undefined) continue;
    if (!(name in DEFAULT_RELAY_LIMITS)) throw new UsageError(`unknown relay limit ${name}`);
    if (!Number.isFinite(value) || value <= 0) throw new UsageError(`relay limit ${name} must be a positive number, got ${value}`);
    limits[name] = value;
  }
  if (limits.roomSize > MAX_ROOM_PARTICIPANTS) throw new UsageError(`relay limit roomSize is at most ${MAX_ROOM_PARTICIPANTS}`);
  return limits;
}

/**
 * The connectivity-check message as the path checker sees it, the codec seam it is given, and
 * the one real codec: an adapter over the wire format, core/wire/path-check.ts (marker 0x30,
 * docs/wire-format.md §3.3). There is no other encoding of a path check: what PathChecker
 * sends is what the socket's demultiplexer routes to the `path-check` class (isPathCheck()).
 *
 * Mapping (agent message <-> wire PathCheck):
 * - kind 'request' / 'response' <-> type 'request' / 'response';
 * - role 'controlling' / 'controlled' <-> the C (controlling) flag;
 * - nominate (requests only) <-> the N flag: the wire format has no nominate on a response,
 *   and the agent needs none (a response is matched to its own transaction, which knows
 *   whether it nominated);
 * - transactionId, callId, tieBreaker, priority, observed: the same fields.
 *
 * Errors: encode() throws what encodePathCheck throws (InternalError for a field out of range:
 * the caller's bug); decode() throws the wire module's DecodeError for bytes that are not a
 * valid, authentic check ('bad-tag': well-formed but not authentic).
 */

import { type PathCheck, decodePathCheck, encodePathCheck } from '../wire/path-check.js';

export type CheckRole = 'controlling' | 'controlled';

interface PathCheckMessageFields {
  /** 12 bytes, fresh for every request; a response echoes its request's. */
  readonly transactionId: Uint8Array;
  /** 16 bytes: which call this check belongs to. */
  readonly callId: Uint8Array;
  /** The sender's role (the wire format's C flag). */
  readonly role: CheckRole;
  /**
   * The sender's random 64-bit ICE tie-breaker (one per agent). Carried, not used to resolve
   * role conflicts: roles come from signed signalling (see PathChecker).
   */
  readonly tieBreaker: bigint;
  /** u32: a request's peer-reflexive priority of its sender; a response echoes its request's. */
  readonly priority: number;
}

export interface PathCheckRequestMessage extends PathCheckMessageFields {
  readonly kind: 'request';
  /** From the controlling side only: "use this pair". */
  readonly nominate: boolean;
}

export interface PathCheckResponseMessage extends PathCheckMessageFields {
  readonly kind: 'response';
  /** The requester's source address as the responder saw it. */
  readonly observed: { readonly address: string; readonly port: number };
}

export type PathCheckMessage = PathCheckRequestMessage | PathCheckResponseMessage;

/**
 * What PathChecker needs from a codec. decode() authenticates with `key` and throws
 * DecodeError for bytes that are not a valid, authentic message; the reason 'bad-tag' means
 * "well-formed but not authentic" (counted separately).
 */
export interface PathCheckCodec {
  encode(message: PathCheckMessage, key: Uint8Array): Uint8Array;
  decode(bytes: Uint8Array, key: Uint8Array): PathCheckMessage;
}

/** The wire module's message for an agent message. */
export function toWirePathCheck(message: PathCheckMessage): PathCheck {
  const fields = {
    transactionId: message.transactionId,
    callId: message.callId,
    controlling: message.role === 'controlling',
    tieBreaker: message.tieBreaker,
    priority: message.priority,
  };
  if (message.kind === 'request') return { type: 'request', ...fields, nominate: message.nominate };
  return { type: 'response', ...fields, observed: { address: message.observed.address, port: message.observed.port } };
}

/** The agent message for a (decoded) wire check. */
export function fromWirePathCheck(check: PathCheck): PathCheckMessage {
  const fields = {
    transactionId: check.transactionId,
    callId: check.callId,
    role: check.controlling ? ('controlling' as const) : ('controlled' as const),
    tieBreaker: check.tieBreaker,
    priority: check.priority,
  };
  if (check.type === 'request') return { kind: 'request', ...fields, nominate: check.nominate };
  return { kind: 'response', ...fields, observed: { address: check.observed.address, port: check.observed.port } };
}

/** The codec PathChecker uses: core/wire/path-check.ts's bytes. */
export const wirePathCheckCodec: PathCheckCodec = {
  encode: (message, key) => encodePathCheck(toWirePathCheck(message), key),
  decode: (bytes, key) => fromWirePathCheck(decodePathCheck(bytes, key)),
};

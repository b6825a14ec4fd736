/**
 * Direct-path connectivity checks: the binding request and response two call peers exchange
 * on each candidate pair (RFC 8445's checks, in the spirit of Tailscale's disco ping/pong),
 * on the one UDP socket that also carries the relay's QUIC connection.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+-------+-------+-+-+-----------+---------------+
 * | marker 0x30   |version| type  |C|N| 0 0 0 0 0 0|    family     |  0
 * +---------------+-------+-------+-+-+-----------+---------------+
 * |                                                               |  4
 * +                                                               +
 * |                  transaction id (96 bits)                     |
 * +                                                               +
 * |                                                               |
 * +---------------------------------------------------------------+
 * |                                                               | 16
 * +                                                               +
 * |                       call id (128 bits)                      |
 * +                                                               +
 * |                                                               |
 * +                                                               +
 * |                                                               |
 * +---------------------------------------------------------------+
 * |                                                               | 32
 * +                      tie-breaker (u64)                        +
 * |                                                               |
 * +---------------------------------------------------------------+
 * |                        priority (u32)                         | 40
 * +-------------------------------+-------------------------------+
 * |   observed port (responses)   |  observed address (4 or 16)   | 44
 * +-------------------------------+           ...                 +
 * |                                                               |
 * +---------------------------------------------------------------+
 * |        tag: HMAC-SHA256(key, every byte before it), first     |  44 (request)
 * +        16 bytes                                               +  50 (IPv4 response)
 * |                                                               |  62 (IPv6 response)
 * +---------------------------------------------------------------+
 * ```
 *
 * - marker 0x30: QUIC's fixed bit (0x40) and long-header bit (0x80) clear, not STUN
 *   (0x00/0x01) nor the media path (0x21-0x24): the first-byte map is in docs/wire-format.md.
 * - version 1 (high nibble); type (low nibble): 1 request, 2 response.
 * - C: the sender is the controlling agent (the caller); N: nominate this pair (ICE's
 *   USE-CANDIDATE), only in a request from the controlling agent. The other six bits are 0.
 * - family: 0 in a request; 4 or 6 in a response (the observed address's length, 4 or 16).
 * - transaction id: random per request, echoed in its response.
 * - call id: the call the check belongs to (it picks the key: pathCheckCallId()).
 * - tie-breaker: the sender's random 64-bit ICE tie-breaker, drawn once per agent (RFC 8445
 *   §7.3.1.1's field). wzp carries it but does not tie-break: roles come from signed signalling
 *   (the caller is controlling), so a check claiming the receiver's own role is dropped and
 *   counted as a role conflict (core/p2p/checks.ts).
 * - priority: a request's: the priority of the peer-reflexive candidate it would create
 *   (RFC 8445 §7.1.1); a response echoes its request's.
 * - observed port and address (responses only): the source the responder saw the request
 *   from, so the requester learns its peer-reflexive address. Port 1-65535; an IPv4 source is
 *   family 4 (never IPv4-mapped IPv6).
 * - tag: HMAC-SHA256 over bytes 0 up to the tag with the call's check key, truncated to 16
 *   bytes. A check without the key's tag is dropped ('bad-tag'); so nobody without the key
 *   (the relay included: the key comes from the call's end-to-end secrets) can fake a check
 *   or the address it reports.
 *
 * Sizes: a request is 60 bytes, a response 66 (IPv4) or 78 (IPv6): far under the 1200 bytes
 * of a path's minimum MTU, and a response is at most 1.3x its request (DESIGN.md §7). Checks
 * go only to candidates announced in signed signalling.
 *
 * Replays: a captured check verifies again (the tag has no time in it); the checking agent
 * answers only requests for its live call and takes only responses to its own outstanding
 * transaction ids. A request reflected back to its sender verifies too (one key for both
 * sides): it carries the agent's own role, so the agent drops it as a role conflict (and it
 * carries the agent's own tie-breaker).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { DecodeError, InternalError } from '../errors.js';
import { bytesToIp, ipToBytes, isIPv4Mapped } from './ip-address.js';

const FORMAT = 'path-check';

export const PATH_CHECK_MARKER = 0x30;
/** The first bytes path checks own on the shared socket (inclusive). */
export const PATH_CHECK_FIRST_BYTES = [PATH_CHECK_MARKER, PATH_CHECK_MARKER] as const;
export const PATH_CHECK_VERSION = 1;
export const PATH_CHECK_TYPE_REQUEST = 1;
export const PATH_CHECK_TYPE_RESPONSE = 2;
export const PATH_CHECK_FLAG_CONTROLLING = 0x80;
export const PATH_CHECK_FLAG_NOMINATE = 0x40;
const KNOWN_FLAGS = PATH_CHECK_FLAG_CONTROLLING | PATH_CHECK_FLAG_NOMINATE;

export const OFFSET_PATH_CHECK_MARKER = 0;
export const OFFSET_PATH_CHECK_VERSION_TYPE = 1;
export const OFFSET_PATH_CHECK_FLAGS = 2;
export const OFFSET_PATH_CHECK_FAMILY = 3;
export const OFFSET_PATH_CHECK_TRANSACTION = 4;
export const OFFSET_PATH_CHECK_CALL_ID = 16;
export const OFFSET_PATH_CHECK_TIE_BREAKER = 32;
export const OFFSET_PATH_CHECK_PRIORITY = 40;
export const OFFSET_PATH_CHECK_OBSERVED = 44;

export const PATH_CHECK_TRANSACTION_BYTES = 12;
export const PATH_CHECK_CALL_ID_BYTES = 16;
export const PATH_CHECK_TAG_BYTES = 16;
/** The fixed part every check starts with (everything up to the observed address). */
export const PATH_CHECK_HEADER_BYTES = OFFSET_PATH_CHECK_OBSERVED;
/** Shortest key accepted: 128 bits. */
export const MIN_PATH_CHECK_KEY_BYTES = 16;

export const PATH_CHECK_REQUEST_BYTES = PATH_CHECK_HEADER_BYTES + PATH_CHECK_TAG_BYTES;
export const PATH_CHECK_RESPONSE_V4_BYTES = PATH_CHECK_HEADER_BYTES + 2 + 4 + PATH_CHECK_TAG_BYTES;
export const PATH_CHECK_RESPONSE_V6_BYTES = PATH_CHECK_HEADER_BYTES + 2 + 16 + PATH_CHECK_TAG_BYTES;
export const MIN_PATH_CHECK_BYTES = PATH_CHECK_REQUEST_BYTES;
export const MAX_PATH_CHECK_BYTES = PATH_CHECK_RESPONSE_V6_BYTES;

const MAX_U64 = (1n << 64n) - 1n;

interface PathCheckFields {
  /** 12 bytes, random per request; a response carries its request's. */
  transactionId: Uint8Array;
  /** 16 bytes. */
  callId: Uint8Array;
  /** The sender is the controlling agent. */
  controlling: boolean;
  /** The sender's ICE tie-breaker, 0 to 2^64 - 1. */
  tieBreaker: bigint;
  /** u32: a request's peer-reflexive priority; a response echoes it. */
  priority: number;
}

export interface PathCheckRequest extends PathCheckFields {
  type: 'request';
  /** Nominate the pair this request goes on (only a controlling agent nominates). */
  nominate: boolean;
}

export interface PathCheckResponse extends PathCheckFields {
  type: 'response';
  /** The source address and port the responder saw the request come from. */
  observed: { address: string; port: number };
}

export type PathCheck = PathCheckRequest | PathCheckResponse;

function checkKey(key: Uint8Array): void {
  if (key.length < MIN_PATH_CHECK_KEY_BYTES) throw new InternalError(`path check key of ${key.length} bytes, must be at least ${MIN_PATH_CHECK_KEY_BYTES}`);
}

function tagOf(key: Uint8Array, signed: Uint8Array): Buffer {
  return createHmac('sha256', key).update(signed).digest().subarray(0, PATH_CHECK_TAG_BYTES);
}

/**
 * A check, tagged with `key` (the call's check key, at least 16 bytes). Throws InternalError
 * for a field out of range: ids of the wrong length, a tie-breaker or priority outside its
 * width, a nominating request from a controlled agent, an observed address that is not an IP
 * address or port 0 (the caller's bug: never input from the network).
 */
export function encodePathCheck(msg: PathCheck, key: Uint8Array): Uint8Array {
  checkKey(key);
  if (msg.transactionId.length !== PATH_CHECK_TRANSACTION_BYTES) throw new InternalError(`path check transaction id of ${msg.transactionId.length} bytes`);
  if (msg.callId.length !== PATH_CHECK_CALL_ID_BYTES) throw new InternalError(`path check call id of ${msg.callId.length} bytes`);
  if (typeof msg.tieBreaker !== 'bigint' || msg.tieBreaker < 0n || msg.tieBreaker > MAX_U64) throw new InternalError(`path check tie-breaker ${String(msg.tieBreaker)} is not a u64`);
  if (!Number.isInteger(msg.priority) || msg.priority < 0 || msg.priority > 0xffff_ffff) throw new InternalError(`path check priority ${msg.priority} is not a u32`);
  let flags = msg.controlling ? PATH_CHECK_FLAG_CONTROLLING : 0;
  let observed: { family: 4 | 6; bytes: Uint8Array; port: number } | undefined;
  if (msg.type === 'request') {
    if (msg.nominate) {
      if (!msg.controlling) throw new InternalError('only the controlling agent nominates');
      flags |= PATH_CHECK_FLAG_NOMINATE;
    }
  } else {
    const ip = ipToBytes(msg.observed.address);
    if (!ip) throw new InternalError(`path check observed address "${msg.observed.address}" is not an IP address`);
    const { port } = msg.observed;
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) throw new InternalError(`path check observed port ${port}, must be 1-65535`);
    observed = { ...ip, port };
  }
  const tagAt = PATH_CHECK_HEADER_BYTES + (observed ? 2 + observed.bytes.length : 0);
  const out = new Uint8Array(tagAt + PATH_CHECK_TAG_BYTES);
  const view = new DataView(out.buffer);
  out[OFFSET_PATH_CHECK_MARKER] = PATH_CHECK_MARKER;
  out[OFFSET_PATH_CHECK_VERSION_TYPE] = (PATH_CHECK_VERSION << 4) | (msg.type === 'request' ? PATH_CHECK_TYPE_REQUEST : PATH_CHECK_TYPE_RESPONSE);
  out[OFFSET_PATH_CHECK_FLAGS] = flags;
  out[OFFSET_PATH_CHECK_FAMILY] = observed ? observed.family : 0;
  out.set(msg.transactionId, OFFSET_PATH_CHECK_TRANSACTION);
  out.set(msg.callId, OFFSET_PATH_CHECK_CALL_ID);
  view.setBigUint64(OFFSET_PATH_CHECK_TIE_BREAKER, msg.tieBreaker);
  view.setUint32(OFFSET_PATH_CHECK_PRIORITY, msg.priority);
  if (observed) {
    view.setUint16(OFFSET_PATH_CHECK_OBSERVED, observed.port);
    out.set(observed.bytes, OFFSET_PATH_CHECK_OBSERVED + 2);
  }
  out.set(tagOf(key, out.subarray(0, tagAt)), tagAt);
  return out;
}

/**
 * Whether a packet is a path check, by its first bytes and size (the tag is not checked): what
 * the socket's demultiplexer asks before handing it to the checking agent.
 */
export function isPathCheck(bytes: Uint8Array): boolean {
  return (
    bytes.length >= MIN_PATH_CHECK_BYTES &&
    bytes.length <= MAX_PATH_CHECK_BYTES &&
    bytes[OFFSET_PATH_CHECK_MARKER] === PATH_CHECK_MARKER &&
    bytes[OFFSET_PATH_CHECK_VERSION_TYPE] >> 4 === PATH_CHECK_VERSION
  );
}

/**
 * The call id of a check not verified yet (a view into `bytes`), to pick its key when several
 * calls share the socket. Throws DecodeError 'truncated', 'bad-marker'. Trust nothing else
 * before decodePathCheck() verified the tag.
 */
export function pathCheckCallId(bytes: Uint8Array): Uint8Array {
  if (bytes.length < MIN_PATH_CHECK_BYTES) throw new DecodeError(FORMAT, 'truncated', `${bytes.length} bytes, a check has at least ${MIN_PATH_CHECK_BYTES}`);
  if (bytes[OFFSET_PATH_CHECK_MARKER] !== PATH_CHECK_MARKER) throw new DecodeError(FORMAT, 'bad-marker', `first byte 0x${bytes[0].toString(16)} is not a path check`);
  return bytes.subarray(OFFSET_PATH_CHECK_CALL_ID, OFFSET_PATH_CHECK_CALL_ID + PATH_CHECK_CALL_ID_BYTES);
}

/**
 * A check received from the network, verified with `key`. Ids are copies (the packet's buffer
 * may be reused). Throws DecodeError: 'truncated', 'too-large', 'trailing-bytes', 'bad-marker',
 * 'bad-version', 'bad-type', 'bad-field' (reserved flag bits set, a nominating response or
 * controlled agent, a family that does not fit the type, observed port 0, an IPv4-mapped IPv6
 * address), 'bad-tag' (not tagged with this key). Throws InternalError for a key under 16 bytes.
 */
export function decodePathCheck(bytes: Uint8Array, key: Uint8Array): PathCheck {
  checkKey(key);
  if (bytes.length < MIN_PATH_CHECK_BYTES) throw new DecodeError(FORMAT, 'truncated', `${bytes.length} bytes, a check has at least ${MIN_PATH_CHECK_BYTES}`);
  if (bytes.length > MAX_PATH_CHECK_BYTES) throw new DecodeError(FORMAT, 'too-large', `${bytes.length} bytes, a check has at most ${MAX_PATH_CHECK_BYTES}`);
  const marker = bytes[OFFSET_PATH_CHECK_MARKER];
  if (marker !== PATH_CHECK_MARKER) throw new DecodeError(FORMAT, 'bad-marker', `first byte 0x${marker.toString(16)} is not a path check`);
  const versionType = bytes[OFFSET_PATH_CHECK_VERSION_TYPE];
  if (versionType >> 4 !== PATH_CHECK_VERSION) throw new DecodeError(FORMAT, 'bad-version', `version ${versionType >> 4}, expected ${PATH_CHECK_VERSION}`);
  const typeCode = versionType & 0x0f;
  if (typeCode !== PATH_CHECK_TYPE_REQUEST && typeCode !== PATH_CHECK_TYPE_RESPONSE) throw new DecodeError(FORMAT, 'bad-type', `type ${typeCode}`);
  const response = typeCode === PATH_CHECK_TYPE_RESPONSE;
  const flags = bytes[OFFSET_PATH_CHECK_FLAGS];
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new DecodeError(FORMAT, 'bad-field', `reserved flag bits 0x${(flags & ~KNOWN_FLAGS).toString(16)} set`);
  const controlling = (flags & PATH_CHECK_FLAG_CONTROLLING) !== 0;
  const nominate = (flags & PATH_CHECK_FLAG_NOMINATE) !== 0;
  if (nominate && (response || !controlling)) throw new DecodeError(FORMAT, 'bad-field', 'nominate is for requests from the controlling agent');
  const family = bytes[OFFSET_PATH_CHECK_FAMILY];
  let addressBytes = 0;
  if (response) {
    if (family !== 4 && family !== 6) throw new DecodeError(FORMAT, 'bad-field', `a response's address family ${family}, must be 4 or 6`);
    addressBytes = family === 4 ? 4 : 16;
  } else if (family !== 0) {
    throw new DecodeError(FORMAT, 'bad-field', `a request's address family ${family}, must be 0`);
  }
  const tagAt = PATH_CHECK_HEADER_BYTES + (response ? 2 + addressBytes : 0);
  const expected = tagAt + PATH_CHECK_TAG_BYTES;
  if (bytes.length < expected) throw new DecodeError(FORMAT, 'truncated', `${bytes.length} bytes, this check has ${expected}`);
  if (bytes.length > expected) throw new DecodeError(FORMAT, 'trailing-bytes', `${bytes.length - expected} bytes after the tag`);
  if (!timingSafeEqual(tagOf(key, bytes.subarray(0, tagAt)), bytes.subarray(tagAt, expected))) {
    throw new DecodeError(FORMAT, 'bad-tag', 'the tag does not verify with this call key');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: PathCheckFields = {
    transactionId: bytes.slice(OFFSET_PATH_CHECK_TRANSACTION, OFFSET_PATH_CHECK_TRANSACTION + PATH_CHECK_TRANSACTION_BYTES),
    callId: bytes.slice(OFFSET_PATH_CHECK_CALL_ID, OFFSET_PATH_CHECK_CALL_ID + PATH_CHECK_CALL_ID_BYTES),
    controlling,
    tieBreaker: view.getBigUint64(OFFSET_PATH_CHECK_TIE_BREAKER),
    priority: view.getUint32(OFFSET_PATH_CHECK_PRIORITY),
  };
  if (!response) return { type: 'request', ...fields, nominate };
  const port = view.getUint16(OFFSET_PATH_CHECK_OBSERVED);
  if (port === 0) throw new DecodeError(FORMAT, 'bad-field', 'observed port 0');
  const address = bytes.subarray(OFFSET_PATH_CHECK_OBSERVED + 2, tagAt);
  if (isIPv4Mapped(address)) throw new DecodeError(FORMAT, 'bad-field', 'an IPv4 source is sent as family 4, not IPv4-mapped IPv6');
  return { type: 'response', ...fields, observed: { address: bytesToIp(address) as string, port } };
}

/**
 * The connectivity-check message as the path checker sees it, the codec interface it is
 * given, and a simple real codec.
 *
 * The wire format proper belongs to core/wire/path-check.ts (written in parallel); this
 * module keeps the same field set (request/response, 96-bit transaction id, 16-byte call id,
 * role and nominate flags, priority, the responder's observation of the requester's source
 * address, a 16-byte HMAC-SHA256 tag with the per-call key) so swapping it in is mechanical:
 * implement PathCheckCodec over the wire module and pass it to PathChecker.
 *
 * Layout of this codec (big-endian):
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-------------------------------+---------------+---------------+
 * |         magic 0x7A63 "zc"     |  version = 1  |  flags        |  0
 * +-------------------------------+---------------+---------------+
 * |                  transaction id (96 bits)                     |  4
 * +---------------------------------------------------------------+
 * |                  call id (128 bits)                           | 16
 * +---------------------------------------------------------------+
 * |                  priority (u32)                               | 32
 * +---------------+-------------------------------+---------------+
 * | observed fam. |       observed port           | observed addr | 36
 * +---------------+-------------------------------+ (0/4/16 B)    |
 * |                  tag: HMAC-SHA256(key, bytes 0..end-16)[0..16] |
 * +---------------------------------------------------------------+
 * ```
 * flags: bit 0 response, bit 1 sender is controlling, bit 2 nominate; other bits must be 0.
 * observed family: 0 none (requests), 4 or 6 (responses must carry one).
 * A request is 55 bytes, a response 59 (IPv4) or 71 (IPv6): a response is never more than
 * 1.3× its request (DESIGN.md §7: no reply to an unvalidated address larger than 3×).
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { DecodeError, UsageError } from '../errors.js';

export const PATH_CHECK_FORMAT = 'path-check';
export const PATH_CHECK_MAGIC = 0x7a63;
export const PATH_CHECK_VERSION = 1;
export const TRANSACTION_ID_BYTES = 12;
export const CALL_ID_BYTES = 16;
export const CHECK_KEY_BYTES = 32;
export const TAG_BYTES = 16;

const OFFSET_MAGIC = 0;
const OFFSET_VERSION = 2;
const OFFSET_FLAGS = 3;
const OFFSET_TRANSACTION_ID = 4;
const OFFSET_CALL_ID = 16;
const OFFSET_PRIORITY = 32;
const OFFSET_OBSERVED_FAMILY = 36;
const OFFSET_OBSERVED_PORT = 37;
const OFFSET_OBSERVED_ADDRESS = 39;

const FLAG_RESPONSE = 0x01;
const FLAG_CONTROLLING = 0x02;
const FLAG_NOMINATE = 0x04;
const KNOWN_FLAGS = FLAG_RESPONSE | FLAG_CONTROLLING | FLAG_NOMINATE;

export const PATH_CHECK_MIN_BYTES = OFFSET_OBSERVED_ADDRESS + TAG_BYTES;
export const PATH_CHECK_MAX_BYTES = OFFSET_OBSERVED_ADDRESS + 16 + TAG_BYTES;

export type CheckRole = 'controlling' | 'controlled';

export interface PathCheckMessage {
  readonly kind: 'request' | 'response';
  /** 12 bytes, fresh for every request; a response echoes its request's. */
  readonly transactionId: Uint8Array;
  /** 16 bytes: which call this check belongs to. */
  readonly callId: Uint8Array;
  /** The sender's role. */
  readonly role: CheckRole;
  /** Requests from the controlling side only: "use this pair". */
  readonly nominate: boolean;
  /** u32: the priority the sender would give a peer-reflexive candidate of itself. */
  readonly priority: number;
  /** Responses: the requester's source address as the responder saw it. */
  readonly observed?: { readonly address: string; readonly port: number };
}

/**
 * What PathChecker needs from a wire codec. decode() authenticates with `key` and throws
 * DecodeError (never anything else) for bytes that are not a valid, authentic message; the
 * reason 'bad-tag' means "well-formed but not authentic" (counted separately).
 */
export interface PathCheckCodec {
  encode(message: PathCheckMessage, key: Uint8Array): Uint8Array;
  decode(bytes: Uint8Array, key: Uint8Array): PathCheckMessage;
}

function fail(reason: string, message: string): never {
  throw new DecodeError(PATH_CHECK_FORMAT, reason, message);
}

function tagOf(key: Uint8Array, body: Uint8Array): Uint8Array {
  return createHmac('sha256', key).update(body).digest().subarray(0, TAG_BYTES);
}

function addressBytes(address: string): Uint8Array {
  const version = isIP(address);
  if (version === 4) return Uint8Array.from(address.split('.').map(Number));
  if (version !== 6) throw new UsageError(`path check: "${address}" is not an IP address`);
  // Expand "::" and an embedded dotted quad into eight 16-bit groups.
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted !== null) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...new Array<string>(fill).fill('0'), ...tailGroups];
  const out = new Uint8Array(16);
  groups.forEach((group, index) => {
    const value = parseInt(group, 16);
    out[2 * index] = value >> 8;
    out[2 * index + 1] = value & 0xff;
  });
  return out;
}

function addressText(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  // Canonical (RFC 5952) compression of the longest run of zero groups via the URL parser.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

function checkLength(name: string, bytes: Uint8Array, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new UsageError(`path check: ${name} must be ${length} bytes`);
}

/** HMAC-SHA256/16-tagged codec with the layout above. */
export const simplePathCheckCodec: PathCheckCodec = {
  encode(message, key) {
    checkLength('key', key, CHECK_KEY_BYTES);
    checkLength('transaction id', message.transactionId, TRANSACTION_ID_BYTES);
    checkLength('call id', message.callId, CALL_ID_BYTES);
    if (!Number.isInteger(message.priority) || message.priority < 0 || message.priority > 0xffffffff) {
      throw new UsageError(`path check: priority must be a u32, got ${message.priority}`);
    }
    const response = message.kind === 'response';
    if (response !== (message.observed !== undefined)) throw new UsageError('path check: a response carries the observed address, a request does not');
    if (message.nominate && (response || message.role !== 'controlling')) throw new UsageError('path check: only a controlling request nominates');
    const observed = message.observed === undefined ? new Uint8Array(0) : addressBytes(message.observed.address);
    if (message.observed !== undefined && (!Number.isInteger(message.observed.port) || message.observed.port < 0 || message.observed.port > 0xffff)) {
      throw new UsageError(`path check: observed port must be 0-65535, got ${message.observed.port}`);
    }
    const bodyLength = OFFSET_OBSERVED_ADDRESS + observed.length;
    const out = new Uint8Array(bodyLength + TAG_BYTES);
    const view = new DataView(out.buffer);
    view.setUint16(OFFSET_MAGIC, PATH_CHECK_MAGIC, false);
    out[OFFSET_VERSION] = PATH_CHECK_VERSION;
    out[OFFSET_FLAGS] = (response ? FLAG_RESPONSE : 0) | (message.role === 'controlling' ? FLAG_CONTROLLING : 0) | (message.nominate ? FLAG_NOMINATE : 0);
    out.set(message.transactionId, OFFSET_TRANSACTION_ID);
    out.set(message.callId, OFFSET_CALL_ID);
    view.setUint32(OFFSET_PRIORITY, message.priority, false);
    out[OFFSET_OBSERVED_FAMILY] = observed.length === 0 ? 0 : observed.length === 4 ? 4 : 6;
    view.setUint16(OFFSET_OBSERVED_PORT, message.observed?.port ?? 0, false);
    out.set(observed, OFFSET_OBSERVED_ADDRESS);
    out.set(tagOf(key, out.subarray(0, bodyLength)), bodyLength);
    return out;
  },

  decode(bytes, key) {
    if (!(bytes instanceof Uint8Array)) fail('not-bytes', 'expected a Uint8Array');
    if (bytes.length > PATH_CHECK_MAX_BYTES) fail('too-large', `${bytes.length} bytes > ${PATH_CHECK_MAX_BYTES}`);
    if (bytes.length < PATH_CHECK_MIN_BYTES) fail('truncated', `${bytes.length} bytes < ${PATH_CHECK_MIN_BYTES}`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint16(OFFSET_MAGIC, false) !== PATH_CHECK_MAGIC) fail('bad-magic', 'not a path check');
    if (bytes[OFFSET_VERSION] !== PATH_CHECK_VERSION) fail('bad-version', `version ${bytes[OFFSET_VERSION]}`);
    const flags = bytes[OFFSET_FLAGS];
    if ((flags & ~KNOWN_FLAGS) !== 0) fail('bad-flags', `unknown flags 0x${flags.toString(16)}`);
    const family = bytes[OFFSET_OBSERVED_FAMILY];
    const addressLength = family === 0 ? 0 : family === 4 ? 4 : family === 6 ? 16 : -1;
    if (addressLength < 0) fail('bad-family', `observed family ${family}`);
    const bodyLength = OFFSET_OBSERVED_ADDRESS + addressLength;
    if (bytes.length !== bodyLength + TAG_BYTES) fail('bad-length', `${bytes.length} bytes for observed family ${family}`);
    if (!(key instanceof Uint8Array) || key.length !== CHECK_KEY_BYTES) fail('bad-key', `the key must be ${CHECK_KEY_BYTES} bytes`);
    // Authenticate before trusting any field's meaning.
    const expected = tagOf(key, bytes.subarray(0, bodyLength));
    if (!timingSafeEqual(expected, bytes.subarray(bodyLength))) fail('bad-tag', 'authentication tag does not match');
    const response = (flags & FLAG_RESPONSE) !== 0;
    const controlling = (flags & FLAG_CONTROLLING) !== 0;
    const nominate = (flags & FLAG_NOMINATE) !== 0;
    if (response !== (family !== 0)) fail('bad-observed', response ? 'a response without the observed address' : 'a request with an observed address');
    if (nominate && (response || !controlling)) fail('bad-flags', 'nominate on a response or from the controlled side');
    const observedPort = view.getUint16(OFFSET_OBSERVED_PORT, false);
    if (!response && observedPort !== 0) fail('bad-observed', 'a request with an observed port');
    return {
      kind: response ? 'response' : 'request',
      transactionId: bytes.slice(OFFSET_TRANSACTION_ID, OFFSET_TRANSACTION_ID + TRANSACTION_ID_BYTES),
      callId: bytes.slice(OFFSET_CALL_ID, OFFSET_CALL_ID + CALL_ID_BYTES),
      role: controlling ? 'controlling' : 'controlled',
      nominate,
      priority: view.getUint32(OFFSET_PRIORITY, false),
      ...(response ? { observed: { address: addressText(bytes.subarray(OFFSET_OBSERVED_ADDRESS, bodyLength)), port: observedPort } } : {}),
    };
  },
};

/**
 * STUN Binding transactions (RFC 5389) over a UDP socket the caller owns.
 *
 * wzp shares one UDP socket for signalling, reflection and dialling, so this module never
 * binds, rebinds or closes the socket it is given. A StunClient either attaches its own
 * 'message' listener (other listeners keep receiving every packet) or is fed packets by the
 * socket owner through handlePacket(). Answers are matched to requests by transaction id
 * only: RFC 5780 CHANGE-REQUEST answers legitimately come from another address.
 *
 * Message layout (RFC 5389 §6), all fields big-endian:
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |0 0|     STUN Message Type     |         Message Length        |  0
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                  Magic Cookie = 0x2112A442                    |  4
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                  Transaction ID (96 bits)                     |  8
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |        attributes (type, length, value padded to 4 bytes)     | 20
 * ```
 * Attribute encoding and decoding is delegated to the `stun` package; its request() is not
 * used (it closes the caller's socket and retransmits for 63.5 s). Retransmission here uses
 * an RTO derived from the RTT measured on earlier transactions.
 */
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type dgram from 'node:dgram';
import { isIP } from 'node:net';
import stun from 'stun';
import { AbortError, DecodeError, NetworkError, ProtocolError, UsageError, throwIfAborted, errorMessage } from '../errors.js';

export const STUN_HEADER_BYTES = 20;
export const STUN_MAGIC_COOKIE = 0x2112a442;
export const STUN_TRANSACTION_ID_BYTES = 12;
/** Hard limit on an accepted message: one unfragmented datagram on an Ethernet path. */
export const STUN_MAX_MESSAGE_BYTES = 1500;

const OFFSET_TYPE = 0;
const OFFSET_LENGTH = 2;
const OFFSET_COOKIE = 4;
const OFFSET_TRANSACTION_ID = 8;
const ATTRIBUTE_HEADER_BYTES = 4;

const METHOD_BINDING = 0x0001;
const BINDING_REQUEST = 0x0001;

/** Attribute types used by wzp (RFC 5389 §18.2, RFC 5780 §9.1). */
export const StunAttribute = {
  MAPPED_ADDRESS: 0x0001,
  CHANGE_REQUEST: 0x0003,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014,
  NONCE: 0x0015,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  PASSWORD_ALGORITHM: 0x001d,
  USERHASH: 0x001e,
  XOR_MAPPED_ADDRESS: 0x0020,
  PADDING: 0x0026,
  RESPONSE_PORT: 0x0027,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
} as const;

/** STUN message types wzp sends or answers (RFC 5389 §6: method Binding, four classes). */
export const StunMessageType = {
  BINDING_REQUEST: 0x0001,
  BINDING_SUCCESS: 0x0101,
  BINDING_ERROR: 0x0111,
} as const;

/** CHANGE-REQUEST flags (RFC 5780 §7.2). */
export const CHANGE_IP_FLAG = 0x04;
export const CHANGE_PORT_FLAG = 0x02;

/** Retransmission defaults: RFC 5389 §7.2.1 starts at 500 ms; later RTOs come from the RTT. */
export const STUN_TIMING = {
  initialRtoMs: 500,
  minRtoMs: 50,
  maxRtoMs: 3_000,
  /** RTO = rtoRttMultiple × smoothed RTT, clamped to [minRtoMs, maxRtoMs]. */
  rtoRttMultiple: 3,
  maxAttempts: 4,
} as const;

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

/** Throws UsageError unless `endpoint` is an IP literal with a port in 1..65535. */
export function assertEndpoint(endpoint: Endpoint): void {
  if (isIP(endpoint.address) === 0 || !Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
    throw new UsageError(`"${formatEndpoint(endpoint)}" is not an IP:PORT endpoint`, {
      suggestions: ['resolve host names first; STUN probes take IP literals, e.g. 203.0.113.1:3478'],
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/**
 * Cheap demultiplexing test (RFC 5389 §6, RFC 7983): two leading zero bits, the magic cookie,
 * and a length field that is a multiple of 4 and matches the datagram. QUIC packets always
 * have bit 0x40 set in the first byte, so they never pass.
 */
export function isStunPacket(packet: Uint8Array): boolean {
  if (packet.length < STUN_HEADER_BYTES || (packet[0] & 0xc0) !== 0) return false;
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const length = view.getUint16(OFFSET_LENGTH, false);
  return view.getUint32(OFFSET_COOKIE, false) === STUN_MAGIC_COOKIE && length % 4 === 0 && STUN_HEADER_BYTES + length === packet.length;
}

export type StunClass = 'request' | 'indication' | 'success' | 'error';

const CLASSES: readonly StunClass[] = ['request', 'indication', 'success', 'error'];

export interface StunMessageInfo {
  readonly cls: StunClass;
  readonly method: number;
  /** Lower-case hex of the 96-bit transaction id. */
  readonly transactionId: string;
  /** XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from servers that only send that. */
  readonly mappedAddress?: Endpoint;
  readonly otherAddress?: Endpoint;
  readonly responseOrigin?: Endpoint;
  readonly error?: { readonly code: number; readonly reason: string };
}

/**
 * Decodes a STUN message. Throws only DecodeError (format 'stun'); reasons: 'truncated',
 * 'too-large', 'not-stun', 'malformed-attributes', 'missing-mapped-address'.
 */
export function decodeStunMessage(packet: Uint8Array): StunMessageInfo {
  if (packet.length < STUN_HEADER_BYTES) throw new DecodeError('stun', 'truncated', `${packet.length} bytes is shorter than the 20-byte header`);
  if (packet.length > STUN_MAX_MESSAGE_BYTES) throw new DecodeError('stun', 'too-large', `${packet.length} bytes exceeds ${STUN_MAX_MESSAGE_BYTES}`);
  if (!isStunPacket(packet)) throw new DecodeError('stun', 'not-stun', 'bad leading bits, magic cookie or length field');
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const type = view.getUint16(OFFSET_TYPE, false);
  const transactionId = Buffer.from(packet.subarray(OFFSET_TRANSACTION_ID, STUN_HEADER_BYTES)).toString('hex');
  const cls = CLASSES[((type & 0x0100) >> 7) | ((type & 0x0010) >> 4)];
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const message = parseAttributes(packet);
  const info: StunMessageInfo = {
    cls,
    method,
    transactionId,
    mappedAddress: addressAttribute(message, StunAttribute.XOR_MAPPED_ADDRESS) ?? addressAttribute(message, StunAttribute.MAPPED_ADDRESS),
    otherAddress: addressAttribute(message, StunAttribute.OTHER_ADDRESS),
    responseOrigin: addressAttribute(message, StunAttribute.RESPONSE_ORIGIN),
    error: errorCodeAttribute(packet),
  };
  if (cls === 'success' && method === METHOD_BINDING && info.mappedAddress === undefined) {
    throw new DecodeError('stun', 'missing-mapped-address', 'Binding success response without (XOR-)MAPPED-ADDRESS');
  }
  return info;
}

/** The `stun` package throws assorted errors (assert, RangeError) on bad attributes. */
function parseAttributes(packet: Uint8Array): stun.StunMessage {
  try {
    return stun.decode(Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength));
  } catch (err) {
    throw new DecodeError('stun', 'malformed-attributes', err instanceof Error ? err.message : String(err));
  }
}

function addressAttribute(message: stun.StunMessage, type: number): Endpoint | undefined {
  const value = message.getAttribute(type)?.value as Partial<stun.AddressValue> | undefined;
  if (typeof value?.address !== 'string' || typeof value.port !== 'number') return undefined;
  return { address: value.address, port: value.port };
}

/**
 * ERROR-CODE read from the bytes: the `stun` package decodes it as class × (number + 100)
 * (420 comes out as 480). Runs after parseAttributes(), so the attribute walk is known to fit.
 * ```
 * |           reserved (21 bits)            |class|     number    |  reason (UTF-8) ...
 * ```
 */
function errorCodeAttribute(packet: Uint8Array): StunMessageInfo['error'] {
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  for (let offset = STUN_HEADER_BYTES; offset + ATTRIBUTE_HEADER_BYTES <= packet.length; ) {
    const type = view.getUint16(offset, false);
    const length = view.getUint16(offset + 2, false);
    const value = offset + ATTRIBUTE_HEADER_BYTES;
    if (value + length > packet.length) return undefined;
    if (type === StunAttribute.ERROR_CODE && length >= 4) {
      const code = (packet[value + 2] & 0x07) * 100 + packet[value + 3];
      return { code, reason: Buffer.from(packet.subarray(value + 4, value + length)).toString('utf8') };
    }
    offset = value + Math.ceil(length / 4) * 4;
  }
  return undefined;
}

export interface BindingRequestFields {
  transactionId: Uint8Array;
  /** RFC 5780 CHANGE-REQUEST: answer from the alternate IP. */
  changeIp?: boolean;
  /** RFC 5780 CHANGE-REQUEST: answer from the alternate port. */
  changePort?: boolean;
  /** RFC 5780 RESPONSE-PORT: answer to this port of the request's source address. */
  responsePort?: number;
}

/** Encodes a Binding Request, with FINGERPRINT so peers sharing the port can demultiplex it. */
export function encodeBindingRequest(fields: BindingRequestFields): Buffer {
  if (fields.transactionId.length !== STUN_TRANSACTION_ID_BYTES) {
    throw new UsageError(`a STUN transaction id is ${STUN_TRANSACTION_ID_BYTES} bytes, not ${fields.transactionId.length}`);
  }
  const message = stun.createMessage(BINDING_REQUEST, Buffer.from(fields.transactionId));
  const flags = (fields.changeIp ? CHANGE_IP_FLAG : 0) | (fields.changePort ? CHANGE_PORT_FLAG : 0);
  if (flags !== 0) message.addAttribute(StunAttribute.CHANGE_REQUEST, flags);
  if (fields.responsePort !== undefined) message.addAttribute(StunAttribute.RESPONSE_PORT, fields.responsePort);
  message.addFingerprint();
  return message.toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Raw messages: the attribute walk and the encoder a STUN server needs (./stun-server.ts)
// ---------------------------------------------------------------------------------------------

/** FINGERPRINT = CRC-32 of the message before it, XOR this (RFC 5389 §15.5). */
export const STUN_FINGERPRINT_XOR = 0x5354554e;
/** Bound on the attributes read from one message: the work per packet stays constant. */
export const STUN_MAX_ATTRIBUTES = 32;
const FINGERPRINT_ATTRIBUTE_BYTES = ATTRIBUTE_HEADER_BYTES + 4;

export interface RawStunAttribute {
  readonly type: number;
  /** The value without its padding (a view into the packet when read). */
  readonly value: Uint8Array;
}

export interface RawStunMessage {
  readonly type: number;
  readonly cls: StunClass;
  readonly method: number;
  readonly transactionId: Uint8Array;
  /** In order; FINGERPRINT is not among them (see `fingerprint`). */
  readonly attributes: readonly RawStunAttribute[];
  /** The message ended with a FINGERPRINT, and it was correct. */
  readonly fingerprint: boolean;
}

/**
 * Walks a STUN message's attributes without interpreting them. Every length is checked
 * before it is read:
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Type                  |            Length             |  +0
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |            Value (Length bytes, padded to a multiple of 4)  ...|  +4
 * ```
 * Throws only DecodeError (format 'stun'); reasons: 'truncated', 'too-large', 'not-stun'
 * (leading bits, magic cookie, or a length field that does not match the datagram),
 * 'malformed-attributes' (an attribute overruns the message), 'too-many-attributes' (more
 * than STUN_MAX_ATTRIBUTES), 'bad-fingerprint' (a FINGERPRINT that is wrong, malformed or not
 * last: RFC 5389 §7.3 says such a message is not STUN).
 */
export function readStunMessage(packet: Uint8Array): RawStunMessage {
  if (packet.length < STUN_HEADER_BYTES) throw new DecodeError('stun', 'truncated', `${packet.length} bytes is shorter than the 20-byte header`);
  if (packet.length > STUN_MAX_MESSAGE_BYTES) throw new DecodeError('stun', 'too-large', `${packet.length} bytes exceeds ${STUN_MAX_MESSAGE_BYTES}`);
  if (!isStunPacket(packet)) throw new DecodeError('stun', 'not-stun', 'bad leading bits, magic cookie or length field');
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const type = view.getUint16(OFFSET_TYPE, false);
  const attributes: RawStunAttribute[] = [];
  let fingerprint = false;
  for (let offset = STUN_HEADER_BYTES; offset < packet.length; ) {
    if (offset + ATTRIBUTE_HEADER_BYTES > packet.length) throw new DecodeError('stun', 'malformed-attributes', `attribute header at ${offset} is truncated`);
    const attributeType = view.getUint16(offset, false);
    const length = view.getUint16(offset + 2, false);
    const value = offset + ATTRIBUTE_HEADER_BYTES;
    const next = value + Math.ceil(length / 4) * 4;
    if (next > packet.length) throw new DecodeError('stun', 'malformed-attributes', `attribute 0x${hex16(attributeType)} (${length} bytes) overruns the message`);
    if (attributeType === StunAttribute.FINGERPRINT) {
      if (length !== 4 || next !== packet.length) throw new DecodeError('stun', 'bad-fingerprint', 'FINGERPRINT is not a last 4-byte attribute');
      const expected = (crc32(packet.subarray(0, offset)) ^ STUN_FINGERPRINT_XOR) >>> 0;
      if (view.getUint32(value, false) !== expected) throw new DecodeError('stun', 'bad-fingerprint', 'FINGERPRINT does not match the message');
      fingerprint = true;
    } else {
      if (attributes.length >= STUN_MAX_ATTRIBUTES) throw new DecodeError('stun', 'too-many-attributes', `more than ${STUN_MAX_ATTRIBUTES} attributes`);
      attributes.push({ type: attributeType, value: packet.subarray(value, value + length) });
    }
    offset = next;
  }
  return {
    type,
    cls: CLASSES[((type & 0x0100) >> 7) | ((type & 0x0010) >> 4)],
    method: (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2),
    transactionId: packet.subarray(OFFSET_TRANSACTION_ID, STUN_HEADER_BYTES),
    attributes,
    fingerprint,
  };
}

/** Bytes an attribute with a value of `valueBytes` takes in a message (header and padding). */
export function stunAttributeBytes(valueBytes: number): number {
  return ATTRIBUTE_HEADER_BYTES + Math.ceil(valueBytes / 4) * 4;
}

/** Bytes of an address attribute's value: 4 + 4 (IPv4) or 4 + 16 (IPv6). */
export function stunAddressValueBytes(endpoint: Endpoint): number {
  return 4 + (isIP(endpoint.address) === 6 ? 16 : 4);
}

/** Bytes of a FINGERPRINT attribute. */
export const STUN_FINGERPRINT_BYTES = FINGERPRINT_ATTRIBUTE_BYTES;

/**
 * The value of an address attribute (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS), or with
 * `transactionId` the XOR-MAPPED-ADDRESS form (RFC 5389 §15.1-15.2): the port XORed with the
 * cookie's top 16 bits, the address with the cookie (IPv4) or cookie + transaction id (IPv6).
 * ```
 * |0 0 0 0 0 0 0 0|    Family     |           Port                |  +0   family 1 IPv4, 2 IPv6
 * |             Address (32 bits or 128 bits)                  ...|  +4
 * ```
 */
export function encodeAddressValue(endpoint: Endpoint, transactionId?: Uint8Array): Uint8Array {
  const v6 = isIP(endpoint.address) === 6;
  if (isIP(endpoint.address) === 0 || !Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) {
    throw new UsageError(`"${formatEndpoint(endpoint)}" is not an IP:PORT endpoint`);
  }
  const address = v6 ? ipv6Bytes(endpoint.address) : ipv4Bytes(endpoint.address);
  const out = new Uint8Array(4 + address.length);
  const view = new DataView(out.buffer);
  out[1] = v6 ? 0x02 : 0x01;
  if (transactionId === undefined) {
    view.setUint16(2, endpoint.port, false);
    out.set(address, 4);
  } else {
    view.setUint16(2, endpoint.port ^ (STUN_MAGIC_COOKIE >>> 16), false);
    const mask = new Uint8Array(16);
    new DataView(mask.buffer).setUint32(0, STUN_MAGIC_COOKIE, false);
    mask.set(transactionId.subarray(0, STUN_TRANSACTION_ID_BYTES), 4);
    for (let i = 0; i < address.length; i++) out[4 + i] = address[i] ^ mask[i];
  }
  return out;
}

/**
 * ERROR-CODE's value (RFC 5389 §15.6): class (hundreds) and number (0-99), then the reason.
 * ```
 * |           Reserved, should be 0         |Class|     Number    |  +0
 * |      Reason Phrase (UTF-8, variable)                       ...|  +4
 * ```
 */
export function encodeErrorCodeValue(code: number, reason: string): Uint8Array {
  if (!Number.isInteger(code) || code < 300 || code > 699) throw new UsageError(`STUN error codes are 300-699, not ${code}`);
  const text = Buffer.from(reason, 'utf8');
  const out = new Uint8Array(4 + text.length);
  out[2] = Math.floor(code / 100);
  out[3] = code % 100;
  out.set(text, 4);
  return out;
}

/** UNKNOWN-ATTRIBUTES' value (RFC 5389 §15.9): the attribute types, 16 bits each. */
export function encodeUint16ListValue(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(2 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(2 * i, v, false));
  return out;
}

/**
 * A whole message: header, attributes (each padded with zeros to 4 bytes) and, with
 * `fingerprint`, a FINGERPRINT over all of it. Its size is exactly
 * 20 + Σ stunAttributeBytes(value) (+ STUN_FINGERPRINT_BYTES).
 */
export function encodeStunMessage(type: number, transactionId: Uint8Array, attributes: readonly RawStunAttribute[], options: { fingerprint?: boolean } = {}): Buffer {
  if (transactionId.length !== STUN_TRANSACTION_ID_BYTES) {
    throw new UsageError(`a STUN transaction id is ${STUN_TRANSACTION_ID_BYTES} bytes, not ${transactionId.length}`);
  }
  const bodyBytes = attributes.reduce((n, a) => n + stunAttributeBytes(a.value.length), 0) + (options.fingerprint ? FINGERPRINT_ATTRIBUTE_BYTES : 0);
  const out = Buffer.alloc(STUN_HEADER_BYTES + bodyBytes);
  out.writeUInt16BE(type & 0x3fff, OFFSET_TYPE);
  out.writeUInt16BE(bodyBytes, OFFSET_LENGTH);
  out.writeUInt32BE(STUN_MAGIC_COOKIE, OFFSET_COOKIE);
  out.set(transactionId, OFFSET_TRANSACTION_ID);
  let offset = STUN_HEADER_BYTES;
  for (const attribute of attributes) {
    if (attribute.value.length > 0xffff) throw new UsageError(`a STUN attribute value is at most 65535 bytes, not ${attribute.value.length}`);
    out.writeUInt16BE(attribute.type, offset);
    out.writeUInt16BE(attribute.value.length, offset + 2);
    out.set(attribute.value, offset + ATTRIBUTE_HEADER_BYTES);
    offset += stunAttributeBytes(attribute.value.length);
  }
  if (options.fingerprint) {
    out.writeUInt16BE(StunAttribute.FINGERPRINT, offset);
    out.writeUInt16BE(4, offset + 2);
    out.writeUInt32BE((crc32(out.subarray(0, offset)) ^ STUN_FINGERPRINT_XOR) >>> 0, offset + ATTRIBUTE_HEADER_BYTES);
  }
  return out;
}

function hex16(n: number): string {
  return n.toString(16).padStart(4, '0');
}

function ipv4Bytes(address: string): Uint8Array {
  return Uint8Array.from(address.split('.').map(Number));
}

/** 16 bytes of an IPv6 literal (`::` compression, an embedded IPv4 tail, a zone id dropped). */
function ipv6Bytes(address: string): Uint8Array {
  let text = address.split('%')[0];
  const groups: number[] = [];
  const lastColon = text.lastIndexOf(':');
  let tail: number[] = [];
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const [left, right] = text.split('::') as [string, string | undefined];
  const parse = (part: string | undefined) => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const head = parse(left);
  const rest = [...parse(right), ...tail];
  groups.push(...head, ...new Array<number>(right === undefined ? 0 : 8 - head.length - rest.length).fill(0), ...rest);
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  groups.slice(0, 8).forEach((g, i) => view.setUint16(2 * i, g, false));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

export type NatProgressEvent =
  | { type: 'nat:probe-sent'; probe: string; to: Endpoint; attempt: number }
  | { type: 'nat:probe-answered'; probe: string; from: Endpoint; attempts: number; elapsedMs: number }
  | { type: 'nat:probe-unanswered'; probe: string; to: Endpoint; attempts: number; elapsedMs: number };

export type NatProgressListener = (event: NatProgressEvent) => void;

export interface StunClientOptions {
  /** Attach a 'message' listener to the socket (default). With false the socket owner feeds
   *  every incoming datagram to handlePacket(). */
  listen?: boolean;
  onProgress?: NatProgressListener;
  /** RTO before any RTT has been measured. */
  initialRtoMs?: number;
  /** Lower bound for the RTT-derived RTO. */
  minRtoMs?: number;
}

export interface ProbeOptions {
  signal?: AbortSignal;
  onProgress?: NatProgressListener;
  /** Name of the probe in progress events and results. */
  label?: string;
  changeIp?: boolean;
  changePort?: boolean;
  responsePort?: number;
  /** Wait for the answer on another client's socket (RFC 5780 §4.6 RESPONSE-PORT tests). */
  answerOn?: StunClient;
  /** Expect our own request to come back instead of a response (RFC 5780 §4.5 hairpinning). */
  expectLoopback?: boolean;
  /** Retransmission timeout of the first attempt; doubles on each retransmission. */
  rtoMs?: number;
  maxAttempts?: number;
  /** Overall deadline; default: the whole retransmission schedule, rto × (2^maxAttempts − 1). */
  timeoutMs?: number;
}

export interface ProbeAnswered {
  readonly answered: true;
  readonly label: string;
  readonly to: Endpoint;
  readonly from: Endpoint;
  readonly message: StunMessageInfo;
  readonly attempts: number;
  /** From the first send to the answer. */
  readonly elapsedMs: number;
  /** Only when unambiguous: the answer came to the first and only attempt (Karn). */
  readonly rttMs?: number;
}

export interface ProbeUnanswered {
  readonly answered: false;
  readonly label: string;
  readonly to: Endpoint;
  readonly attempts: number;
  readonly elapsedMs: number;
}

export type ProbeOutcome = ProbeAnswered | ProbeUnanswered;

export interface BindingResult {
  readonly mappedAddress: Endpoint;
  readonly from: Endpoint;
  readonly otherAddress?: Endpoint;
  readonly responseOrigin?: Endpoint;
  readonly attempts: number;
  readonly elapsedMs: number;
  readonly rttMs?: number;
}

export interface StunClientStats {
  /** Datagrams that passed isStunPacket(). */
  stunPackets: number;
  /** STUN messages that settled one of our transactions. */
  matched: number;
  /** Well-formed STUN messages for no pending transaction (late retransmission answers, peers' checks). */
  unmatched: number;
  /** STUN-looking datagrams that failed to decode: dropped. */
  malformed: number;
}

interface PendingTransaction {
  readonly expect: 'response' | 'request';
  settle(message: StunMessageInfo, from: Endpoint): void;
  cancel(reason: Error): void;
}

/** Smoothed RTT (RFC 6298 gain 1/8) and the RTO derived from it. */
class RttEstimator {
  private smoothed: number | undefined;

  constructor(private readonly initialRtoMs: number, private readonly minRtoMs: number) {}

  get rttMs(): number | undefined {
    return this.smoothed;
  }

  get rtoMs(): number {
    if (this.smoothed === undefined) return this.initialRtoMs;
    return Math.min(STUN_TIMING.maxRtoMs, Math.max(this.minRtoMs, STUN_TIMING.rtoRttMultiple * this.smoothed));
  }

  /** Ambiguous samples (answer after a retransmission) only seed an empty estimator: an
   *  over-estimate then errs towards waiting longer, never shorter. */
  observe(sampleMs: number, ambiguous: boolean): void {
    if (this.smoothed === undefined) this.smoothed = sampleMs;
    else if (!ambiguous) this.smoothed = 0.875 * this.smoothed + 0.125 * sampleMs;
  }
}

export class StunClient {
  readonly stats: StunClientStats = { stunPackets: 0, matched: 0, unmatched: 0, malformed: 0 };
  private readonly rtt: RttEstimator;
  /** Transactions answered on this socket, keyed by transaction id. */
  private readonly pending = new Map<string, PendingTransaction>();
  /** Transactions this client sent, wherever they are answered. */
  private readonly outstanding = new Set<PendingTransaction>();
  private readonly listener: ((packet: Buffer, rinfo: dgram.RemoteInfo) => void) | undefined;
  private closed = false;

  constructor(
    private readonly socket: dgram.Socket,
    private readonly options: StunClientOptions = {},
  ) {
    this.rtt = new RttEstimator(options.initialRtoMs ?? STUN_TIMING.initialRtoMs, options.minRtoMs ?? STUN_TIMING.minRtoMs);
    if (options.listen ?? true) {
      this.listener = (packet, rinfo) => {
        this.handlePacket(packet, rinfo);
      };
      socket.on('message', this.listener);
    }
  }

  /** Smoothed RTT of answered transactions, undefined before the first answer. */
  get rttMs(): number | undefined {
    return this.rtt.rttMs;
  }

  /** The RTO the next probe starts with. */
  get rtoMs(): number {
    return this.rtt.rtoMs;
  }

  /**
   * Offers one incoming datagram. Returns true when it settled one of this client's
   * transactions (the owner should not process it further). Never throws: malformed STUN is
   * counted in `stats.malformed` and dropped.
   */
  handlePacket(packet: Uint8Array, from: Endpoint): boolean {
    if (!isStunPacket(packet)) return false;
    this.stats.stunPackets++;
    let message: StunMessageInfo;
    try {
      message = decodeStunMessage(packet);
    } catch {
      this.stats.malformed++;
      return false;
    }
    const pending = this.pending.get(message.transactionId);
    const accepted = pending !== undefined && (pending.expect === 'request' ? message.cls === 'request' : message.cls === 'success' || message.cls === 'error');
    if (!accepted) {
      this.stats.unmatched++;
      return false;
    }
    this.stats.matched++;
    pending.settle(message, { address: from.address, port: from.port });
    return true;
  }

  /**
   * Sends a Binding Request to `to` and retransmits it until a matching message arrives or the
   * deadline passes. Silence is an outcome (`answered: false`), not an error. Rejects with
   * AbortError (signal, close()) or NetworkError (the socket refused to send).
   */
  async probe(to: Endpoint, options: ProbeOptions = {}): Promise<ProbeOutcome> {
    assertEndpoint(to);
    if (this.closed) throw new AbortError('STUN client is closed');
    throwIfAborted(options.signal);
    const transactionId = randomBytes(STUN_TRANSACTION_ID_BYTES);
    const packet = encodeBindingRequest({ transactionId, changeIp: options.changeIp, changePort: options.changePort, responsePort: options.responsePort });
    return this.transact(to, transactionId.toString('hex'), packet, options);
  }

  /**
   * A Binding transaction that must succeed: rejects with NetworkError when nothing answers
   * in time and ProtocolError when the server answers with an error response.
   */
  async binding(server: Endpoint, options: ProbeOptions = {}): Promise<BindingResult> {
    const outcome = await this.probe(server, options);
    if (!outcome.answered) {
      throw new NetworkError(`no STUN answer from ${formatEndpoint(server)} after ${outcome.attempts} attempts in ${Math.round(outcome.elapsedMs)} ms`, {
        suggestions: ['check the STUN server address and that UDP to it is not blocked'],
      });
    }
    const { message } = outcome;
    if (message.cls === 'error' || message.mappedAddress === undefined) {
      throw new ProtocolError(`STUN server ${formatEndpoint(outcome.from)} answered error ${message.error?.code ?? '?'} ${message.error?.reason ?? ''}`.trim());
    }
    return {
      mappedAddress: message.mappedAddress,
      from: outcome.from,
      otherAddress: message.otherAddress,
      responseOrigin: message.responseOrigin,
      attempts: outcome.attempts,
      elapsedMs: outcome.elapsedMs,
      rttMs: outcome.rttMs,
    };
  }

  /** Detaches from the socket (which stays open) and aborts every pending transaction. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.listener) this.socket.off('message', this.listener);
    const reason = new AbortError('STUN client closed');
    for (const transaction of [...this.outstanding, ...this.pending.values()]) transaction.cancel(reason);
  }

  private transact(to: Endpoint, key: string, packet: Buffer, options: ProbeOptions): Promise<ProbeOutcome> {
    const receiver = options.answerOn ?? this;
    if (receiver.closed) return Promise.reject(new AbortError('STUN client is closed'));
    const label = options.label ?? 'binding';
    const rto = options.rtoMs ?? this.rtoMs;
    const maxAttempts = Math.max(1, options.maxAttempts ?? STUN_TIMING.maxAttempts);
    const timeoutMs = options.timeoutMs ?? rto * (2 ** maxAttempts - 1);
    const measuresRtt = options.answerOn === undefined && !options.expectLoopback;
    const emit = (event: NatProgressEvent) => this.emit(event, options.onProgress);

    return new Promise<ProbeOutcome>((resolve, reject) => {
      const startedAt = performance.now();
      let attempts = 0;
      let retransmitTimer: NodeJS.Timeout | undefined;
      const elapsed = () => performance.now() - startedAt;

      const finish = (): boolean => {
        if (!this.outstanding.delete(transaction)) return false;
        receiver.pending.delete(key);
        clearTimeout(retransmitTimer);
        clearTimeout(deadlineTimer);
        options.signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const fail = (reason: Error) => {
        if (finish()) reject(reason);
      };
      const onAbort = () => fail(new AbortError('operation aborted', { cause: options.signal?.reason }));

      const transaction: PendingTransaction = {
        expect: options.expectLoopback ? 'request' : 'response',
        cancel: fail,
        settle: (message, from) => {
          if (!finish()) return;
          const elapsedMs = elapsed();
          if (measuresRtt) this.rtt.observe(elapsedMs, attempts > 1);
          emit({ type: 'nat:probe-answered', probe: label, from, attempts, elapsedMs });
          resolve({ answered: true, label, to, from, message, attempts, elapsedMs, rttMs: attempts === 1 ? elapsedMs : undefined });
        },
      };

      const send = () => {
        attempts++;
        try {
          this.socket.send(packet, to.port, to.address, (err) => {
            if (err) fail(new NetworkError(`cannot send a STUN request to ${formatEndpoint(to)}: ${err.message}`, { cause: err }));
          });
        } catch (err) {
          fail(new NetworkError(`cannot send a STUN request to ${formatEndpoint(to)}: ${errorMessage(err)}`, { cause: err }));
          return;
        }
        emit({ type: 'nat:probe-sent', probe: label, to, attempt: attempts });
        if (attempts < maxAttempts) retransmitTimer = setTimeout(send, rto * 2 ** (attempts - 1));
      };

      const deadlineTimer = setTimeout(() => {
        if (!finish()) return;
        const elapsedMs = elapsed();
        emit({ type: 'nat:probe-unanswered', probe: label, to, attempts, elapsedMs });
        resolve({ answered: false, label, to, attempts, elapsedMs });
      }, timeoutMs);

      this.outstanding.add(transaction);
      receiver.pending.set(key, transaction);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      send();
    });
  }

  /** Progress listeners are the caller's code; one that throws must not break a transaction. */
  private emit(event: NatProgressEvent, extra?: NatProgressListener): void {
    for (const listener of [this.options.onProgress, extra]) {
      try {
        listener?.(event);
      } catch {
        // ignored: see above
      }
    }
  }
}

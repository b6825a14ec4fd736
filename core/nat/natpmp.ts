/**
 * NAT-PMP (RFC 6886): external-address requests and UDP mappings over UDP to the gateway's
 * port 5351.
 *
 * Hand-written rather than wrapping npm `nat-pmp` 1.0.0, which is measurably broken for us:
 * - a short or malformed answer kills the process: it reads fields without length checks
 *   inside the socket's 'message' handler (a 3-byte answer throws an uncaught RangeError;
 *   a surplus byte trips an `assert`), and a wrapper cannot catch that;
 * - it binds the fixed client port 5350, so a second client in the same host (another wzp
 *   process, a second mapper) fails with EADDRINUSE;
 * - no timeout and no retransmission: an unanswered request never calls back;
 * - answers are matched by opcode only, not by internal port.
 * The protocol is two 12-byte requests; this module shares the request/retransmit exchange
 * with PCP (gateway.ts): an ephemeral socket connected to the gateway, 250 ms doubling.
 * Not implemented: listening for the gateway's address-change announcements on
 * 224.0.0.1:5350 (renewals re-read the external address instead).
 *
 * ```
 * external address request       map request (12 bytes)
 * +-------+-------+              +-------+-------+---------------+
 * | vers 0| op 0  |              | vers 0| op 1  |   reserved    |  0
 * +-------+-------+              +-------+-------+---------------+
 *                                | internal port | suggested ext |  4
 *                                +---------------+---------------+
 *                                |     requested lifetime (s)    |  8
 *                                +-------------------------------+
 * responses: op = 128 + request op
 * +-------+-------+---------------+
 * | vers 0| op    |  result code  |  0
 * +-------+-------+---------------+
 * |  seconds since start of epoch |  4
 * +-------------------------------+
 * | external IPv4 address         |  8   (op 128, 12 bytes)
 * +-------------------------------+
 * | internal port | mapped ext    |  8   (op 129, 16 bytes)
 * +---------------+---------------+
 * |        lifetime (s)           | 12
 * +-------------------------------+
 * ```
 * Error answers are only required to carry the first 8 bytes.
 */

import { DecodeError, UsageError } from '../errors.js';
import {
  PORT_MAPPING_SERVER_PORT,
  PortMapError,
  type PortMapRefusal,
  type RetransmitSchedule,
  exchangeUdp,
} from './gateway.js';

const FORMAT = 'nat-pmp';

export const NATPMP_VERSION = 0;
export const NATPMP_OP_EXTERNAL_ADDRESS = 0;
export const NATPMP_OP_MAP_UDP = 1;
const RESPONSE_OPCODE_OFFSET = 128;
export const NATPMP_MAP_REQUEST_BYTES = 12;
const ERROR_RESPONSE_BYTES = 8;
const ADDRESS_RESPONSE_BYTES = 12;
const MAP_RESPONSE_BYTES = 16;
const MAX_RESPONSE_BYTES = 1100;

const OFFSET_VERSION = 0;
const OFFSET_OPCODE = 1;
const OFFSET_RESULT = 2;
const OFFSET_EPOCH = 4;
const OFFSET_EXTERNAL_ADDRESS = 8;
const OFFSET_REQUEST_INTERNAL_PORT = 4;
const OFFSET_REQUEST_EXTERNAL_PORT = 6;
const OFFSET_REQUEST_LIFETIME = 8;
const OFFSET_RESPONSE_INTERNAL_PORT = 8;
const OFFSET_RESPONSE_EXTERNAL_PORT = 10;
const OFFSET_RESPONSE_LIFETIME = 12;

/** NAT-PMP result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  NOT_AUTHORIZED: 2,
  NETWORK_FAILURE: 3,
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;

const REFUSALS: Record<number, PortMapRefusal> = {
  [NatPmpResult.UNSUPPORTED_VERSION]: 'unsupported-version',
  [NatPmpResult.NOT_AUTHORIZED]: 'not-authorized',
  [NatPmpResult.NETWORK_FAILURE]: 'network-failure',
  [NatPmpResult.OUT_OF_RESOURCES]: 'no-resources',
  [NatPmpResult.UNSUPPORTED_OPCODE]: 'unsupported-opcode',
};

/** RFC 6886 §3.1: 250 ms, doubling; the RFC allows up to 9 attempts (64 s). */
export const NATPMP_DEFAULT_SCHEDULE: RetransmitSchedule = { initialMs: 250, maxAttempts: 4 };

// ---------------------------------------------------------------------------------------
// Wire format

export interface NatPmpMapRequest {
  internalPort: number;
  /** 0 = gateway's choice (and must be 0 when deleting). */
  suggestedExternalPort: number;
  /** 0 deletes the mapping. */
  lifetimeS: number;
}

export interface NatPmpResponse {
  /** The request opcode this answers (the response's opcode minus 128). */
  opcode: number;
  resultCode: number;
  epochS: number;
  /** Present in successful external-address answers. */
  externalAddress: string | undefined;
  /** Present in successful map answers. */
  mapping: { internalPort: number; externalPort: number; lifetimeS: number } | undefined;
}

export function encodeNatPmpExternalAddressRequest(): Uint8Array {
  return Uint8Array.of(NATPMP_VERSION, NATPMP_OP_EXTERNAL_ADDRESS);
}

export function encodeNatPmpMapRequest(request: NatPmpMapRequest): Uint8Array {
  checkRange(request.internalPort, 1, 0xffff, 'internal port');
  checkRange(request.suggestedExternalPort, 0, 0xffff, 'suggested external port');
  checkRange(request.lifetimeS, 0, 0xffffffff, 'lifetime');
  const bytes = new Uint8Array(NATPMP_MAP_REQUEST_BYTES);
  const view = new DataView(bytes.buffer);
  bytes[OFFSET_VERSION] = NATPMP_VERSION;
  bytes[OFFSET_OPCODE] = NATPMP_OP_MAP_UDP;
  view.setUint16(OFFSET_REQUEST_INTERNAL_PORT, request.internalPort, false);
  view.setUint16(OFFSET_REQUEST_EXTERNAL_PORT, request.suggestedExternalPort, false);
  view.setUint32(OFFSET_REQUEST_LIFETIME, request.lifetimeS, false);
  return bytes;
}

/** Decodes a NAT-PMP answer. Every length is checked; bad bytes throw DecodeError only. */
export function decodeNatPmpResponse(bytes: Uint8Array): NatPmpResponse {
  if (bytes.length < ERROR_RESPONSE_BYTES) throw new DecodeError(FORMAT, 'truncated', `answer of ${bytes.length} bytes`);
  if (bytes.length > MAX_RESPONSE_BYTES) throw new DecodeError(FORMAT, 'too-large', `answer of ${bytes.length} bytes`);
  if (bytes[OFFSET_VERSION] !== NATPMP_VERSION) {
    throw new DecodeError(FORMAT, 'bad-version', `version ${bytes[OFFSET_VERSION]}`);
  }
  if (bytes[OFFSET_OPCODE] < RESPONSE_OPCODE_OFFSET) {
    throw new DecodeError(FORMAT, 'not-response', `opcode ${bytes[OFFSET_OPCODE]} is a request`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const opcode = bytes[OFFSET_OPCODE] - RESPONSE_OPCODE_OFFSET;
  const resultCode = view.getUint16(OFFSET_RESULT, false);
  const success = resultCode === NatPmpResult.SUCCESS;
  const response: NatPmpResponse = {
    opcode,
    resultCode,
    epochS: view.getUint32(OFFSET_EPOCH, false),
    externalAddress: undefined,
    mapping: undefined,
  };
  if (success && opcode === NATPMP_OP_EXTERNAL_ADDRESS) {
    requireLength(bytes, ADDRESS_RESPONSE_BYTES, 'external address answer');
    response.externalAddress = Array.from(bytes.subarray(OFFSET_EXTERNAL_ADDRESS, OFFSET_EXTERNAL_ADDRESS + 4)).join('.');
  } else if (success && opcode === NATPMP_OP_MAP_UDP) {
    requireLength(bytes, MAP_RESPONSE_BYTES, 'map answer');
    response.mapping = {
      internalPort: view.getUint16(OFFSET_RESPONSE_INTERNAL_PORT, false),
      externalPort: view.getUint16(OFFSET_RESPONSE_EXTERNAL_PORT, false),
      lifetimeS: view.getUint32(OFFSET_RESPONSE_LIFETIME, false),
    };
  }
  return response;
}

function requireLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length < length) throw new DecodeError(FORMAT, 'truncated', `${what} of ${bytes.length} bytes`);
}

function checkRange(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${what} out of range: ${value}`);
}

// ---------------------------------------------------------------------------------------
// Client

/** A UDP mapping made with NAT-PMP. Plain data (JSON-serialisable). */
export interface NatPmpMapping {
  protocol: 'natpmp';
  gateway: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  /** Lifetime the gateway granted, in seconds. */
  lifetimeS: number;
}

export interface NatPmpOptions {
  gateway: string;
  /** Server port; 5351 unless testing. */
  port?: number;
  schedule?: RetransmitSchedule;
  signal?: AbortSignal;
}

export interface NatPmpMapParams {
  internalPort: number;
  /** Suggested external port; 0 or absent = gateway's choice. */
  externalPort?: number;
  lifetimeS: number;
}

/** The gateway's external IPv4 address. Throws PortMapError if it has none (0.0.0.0). */
export async function natPmpExternalAddress(options: NatPmpOptions): Promise<string> {
  const address = await exchange(encodeNatPmpExternalAddressRequest(), NATPMP_OP_EXTERNAL_ADDRESS, options, (answer) => answer.externalAddress);
  if (address === '0.0.0.0') {
    throw new PortMapError('natpmp', 'network-failure', 'NAT-PMP gateway has no external address (0.0.0.0)');
  }
  return address;
}

/** Creates or renews a UDP mapping. Throws PortMapError on refusal, NetworkError on silence. */
export async function natPmpMap(params: NatPmpMapParams, options: NatPmpOptions): Promise<NatPmpMapping> {
  const request = { internalPort: params.internalPort, suggestedExternalPort: params.externalPort ?? 0, lifetimeS: params.lifetimeS };
  // The address first: asking it cannot leave a mapping behind if it fails.
  const externalAddress = await natPmpExternalAddress(options);
  const mapping = await exchange(encodeNatPmpMapRequest(request), NATPMP_OP_MAP_UDP, options, mappingFor(params.internalPort));
  return {
    protocol: 'natpmp',
    gateway: options.gateway,
    internalPort: mapping.internalPort,
    externalAddress,
    externalPort: mapping.externalPort,
    lifetimeS: mapping.lifetimeS,
  };
}

/** Deletes a mapping: internal port, suggested external port 0, lifetime 0 (RFC 6886 §3.4). */
export async function natPmpDelete(mapping: NatPmpMapping, options: Omit<NatPmpOptions, 'gateway'> = {}): Promise<void> {
  const request = encodeNatPmpMapRequest({ internalPort: mapping.internalPort, suggestedExternalPort: 0, lifetimeS: 0 });
  await exchange(request, NATPMP_OP_MAP_UDP, { ...options, gateway: mapping.gateway }, mappingFor(mapping.internalPort));
}

function mappingFor(internalPort: number) {
  return (answer: NatPmpResponse) => (answer.mapping?.internalPort === internalPort ? answer.mapping : undefined);
}

function exchange<T>(
  request: Uint8Array,
  opcode: number,
  options: NatPmpOptions,
  pick: (answer: NatPmpResponse) => T | undefined,
): Promise<T> {
  return exchangeUdp({
    label: 'NAT-PMP',
    gateway: options.gateway,
    port: options.port ?? PORT_MAPPING_SERVER_PORT,
    request,
    accept: (datagram) => {
      const answer = acceptResponse(datagram, opcode);
      return answer === undefined ? undefined : pick(answer);
    },
    schedule: options.schedule ?? NATPMP_DEFAULT_SCHEDULE,
    signal: options.signal,
  });
}

/**
 * The successful answer to a request with this opcode, or undefined for a datagram that
 * answers another opcode. Error results throw PortMapError.
 */
export function acceptResponse(datagram: Uint8Array, opcode: number): NatPmpResponse | undefined {
  const response = decodeNatPmpResponse(datagram);
  if (response.opcode !== opcode) return undefined;
  if (response.resultCode !== NatPmpResult.SUCCESS) {
    const reason = REFUSALS[response.resultCode] ?? 'unknown';
    const name = Object.entries(NatPmpResult).find(([, code]) => code === response.resultCode)?.[0] ?? 'unknown result';
    throw new PortMapError('natpmp', reason, `NAT-PMP request refused: ${name} (${response.resultCode})`, {
      resultCode: response.resultCode,
    });
  }
  return response;
}

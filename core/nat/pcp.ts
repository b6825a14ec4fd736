/**
 * PCP, the Port Control Protocol (RFC 6887): MAP requests over UDP to the gateway's port 5351.
 * No npm PCP client exists, so this is written from the RFC. Only what a UDP application
 * behind an IPv4 NAT needs: MAP for UDP, renewal (same nonce), delete (lifetime 0).
 *
 * Request: common header (24 bytes) + MAP opcode data (36 bytes) = 60 bytes.
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+-+-------------+-------------------------------+
 * |  version = 2  |0| opcode = 1  |           reserved            |  0
 * +---------------+-+-------------+-------------------------------+
 * |                  requested lifetime (seconds)                 |  4
 * +---------------------------------------------------------------+
 * |       PCP client's IP address (128 bits, IPv4-mapped IPv6)    |  8
 * +---------------------------------------------------------------+
 * |                    mapping nonce (96 bits)                    | 24
 * +---------------+-----------------------------------------------+
 * |   protocol    |              reserved (24 bits)               | 36
 * +---------------+---------------+-------------------------------+
 * |        internal port          |    suggested external port    | 40
 * +-------------------------------+-------------------------------+
 * |      suggested external IP address (128 bits, ::ffff:0:0 = any)| 44
 * +---------------------------------------------------------------+
 * ```
 * Response: common header, then (for MAP) the same 36 bytes with the *assigned* external port
 * and address, then options (each: code, reserved, 16-bit length, data padded to 4 bytes).
 * ```
 * +---------------+-+-------------+---------------+---------------+
 * |  version = 2  |1| opcode = 1  |   reserved    |  result code  |  0
 * +---------------+-+-------------+---------------+---------------+
 * |                      lifetime (seconds)                       |  4
 * +---------------------------------------------------------------+
 * |                      epoch time (seconds)                     |  8
 * +---------------------------------------------------------------+
 * |                      reserved (96 bits)                       | 12
 * +---------------------------------------------------------------+
 * |          MAP opcode data (36 bytes, as in the request)        | 24
 * +---------------------------------------------------------------+
 * ```
 * A server that does not speak PCPv2 answers UNSUPP_VERSION: a NAT-PMP-only gateway answers
 * in NAT-PMP form (version 0, 16-bit result code 1), a PCPv1 one in PCP form with version 1.
 *
 * Retransmission: RFC 6887 §8.1.1 suggests a 3 s initial interval (SHOULD); the gateway is one
 * hop away and this runs interactively, so we start at 250 ms and double, as NAT-PMP does
 * (RFC 6886 §3.1), bounded by attempt count. The schedule is an option.
 */

import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { DecodeError, UsageError } from '../errors.js';
import {
  PORT_MAPPING_SERVER_PORT,
  PortMapError,
  type PortMapRefusal,
  type RetransmitSchedule,
  exchangeUdp,
  localAddressToward,
} from './gateway.js';

const FORMAT = 'pcp';

export const PCP_VERSION = 2;
export const PCP_OPCODE_MAP = 1;
export const PCP_PROTOCOL_UDP = 17;
/** RFC 6887 §7: messages are at most 1100 bytes and a multiple of 4 bytes long. */
export const PCP_MAX_MESSAGE_BYTES = 1100;
export const PCP_NONCE_BYTES = 12;

export const PCP_HEADER_BYTES = 24;
export const PCP_MAP_DATA_BYTES = 36;
export const PCP_MAP_MESSAGE_BYTES = PCP_HEADER_BYTES + PCP_MAP_DATA_BYTES;

const OFFSET_VERSION = 0;
const OFFSET_OPCODE = 1;
const OFFSET_RESULT_CODE = 3;
const OFFSET_LIFETIME = 4;
const OFFSET_CLIENT_ADDRESS = 8;
const OFFSET_EPOCH = 8;
const OFFSET_NONCE = 24;
const OFFSET_PROTOCOL = 36;
const OFFSET_INTERNAL_PORT = 40;
const OFFSET_EXTERNAL_PORT = 42;
const OFFSET_EXTERNAL_ADDRESS = 44;
const RESPONSE_BIT = 0x80;
const OPCODE_MASK = 0x7f;
const OPTION_HEADER_BYTES = 4;
/** NAT-PMP's header: version 0, opcode, 16-bit result code. */
const NATPMP_RESULT_OFFSET = 2;

/** PCP result codes (RFC 6887 §7.4). */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

const REFUSALS: Record<number, PortMapRefusal> = {
  [PcpResult.UNSUPP_VERSION]: 'unsupported-version',
  [PcpResult.NOT_AUTHORIZED]: 'not-authorized',
  [PcpResult.MALFORMED_REQUEST]: 'malformed-request',
  [PcpResult.UNSUPP_OPCODE]: 'unsupported-opcode',
  [PcpResult.UNSUPP_OPTION]: 'unsupported-option',
  [PcpResult.MALFORMED_OPTION]: 'malformed-option',
  [PcpResult.NETWORK_FAILURE]: 'network-failure',
  [PcpResult.NO_RESOURCES]: 'no-resources',
  [PcpResult.UNSUPP_PROTOCOL]: 'unsupported-protocol',
  [PcpResult.USER_EX_QUOTA]: 'user-quota-exceeded',
  [PcpResult.CANNOT_PROVIDE_EXTERNAL]: 'cannot-provide-external',
  [PcpResult.ADDRESS_MISMATCH]: 'address-mismatch',
  [PcpResult.EXCESSIVE_REMOTE_PEERS]: 'excessive-remote-peers',
};

export const PCP_DEFAULT_SCHEDULE: RetransmitSchedule = { initialMs: 250, maxAttempts: 4 };

// ---------------------------------------------------------------------------------------
// Wire format

export interface PcpMapRequest {
  /** This host's IPv4 address as the gateway sees it (the source address of the request). */
  clientAddress: string;
  /** 12 random bytes; the same nonce renews or deletes the mapping. */
  nonce: Uint8Array;
  /** IP protocol number; 17 = UDP. */
  protocol: number;
  internalPort: number;
  /** 0 = let the gateway choose. */
  suggestedExternalPort: number;
  /** IPv4; '0.0.0.0' = let the gateway choose. */
  suggestedExternalAddress: string;
  /** 0 deletes the mapping. */
  lifetimeS: number;
}

export interface PcpMapData {
  nonce: Uint8Array;
  protocol: number;
  internalPort: number;
  /** The assigned external port. */
  externalPort: number;
  /** The assigned external address (dotted IPv4 for IPv4-mapped addresses, else IPv6). */
  externalAddress: string;
}

export interface PcpResponse {
  /** 2, or the lower version a server that does not speak PCPv2 answered with. */
  version: number;
  opcode: number;
  resultCode: number;
  /** For success: the mapping's lifetime; for errors: how long the error holds. */
  lifetimeS: number;
  epochS: number;
  /** The MAP opcode data, when the response carries it (always for a successful MAP). */
  map: PcpMapData | undefined;
}

export function encodePcpMapRequest(request: PcpMapRequest): Uint8Array {
  checkPort(request.internalPort, 'internal port', 1);
  checkPort(request.suggestedExternalPort, 'suggested external port', 0);
  checkUint(request.lifetimeS, 0xffffffff, 'lifetime');
  checkUint(request.protocol, 0xff, 'protocol');
  if (request.nonce.length !== PCP_NONCE_BYTES) throw new UsageError(`PCP nonce must be ${PCP_NONCE_BYTES} bytes`);

  const bytes = new Uint8Array(PCP_MAP_MESSAGE_BYTES);
  const view = new DataView(bytes.buffer);
  bytes[OFFSET_VERSION] = PCP_VERSION;
  bytes[OFFSET_OPCODE] = PCP_OPCODE_MAP;
  view.setUint32(OFFSET_LIFETIME, request.lifetimeS, false);
  bytes.set(ipv4Mapped(request.clientAddress), OFFSET_CLIENT_ADDRESS);
  bytes.set(request.nonce, OFFSET_NONCE);
  bytes[OFFSET_PROTOCOL] = request.protocol;
  view.setUint16(OFFSET_INTERNAL_PORT, request.internalPort, false);
  view.setUint16(OFFSET_EXTERNAL_PORT, request.suggestedExternalPort, false);
  bytes.set(ipv4Mapped(request.suggestedExternalAddress), OFFSET_EXTERNAL_ADDRESS);
  return bytes;
}

/** Decodes a PCP response. Every length is checked; bad bytes throw DecodeError only. */
export function decodePcpResponse(bytes: Uint8Array): PcpResponse {
  if (bytes.length < 4) throw new DecodeError(FORMAT, 'truncated', `response of ${bytes.length} bytes`);
  const version = bytes[OFFSET_VERSION];
  if (version !== PCP_VERSION) return decodeOtherVersion(bytes);
  if (bytes.length < PCP_HEADER_BYTES) throw new DecodeError(FORMAT, 'truncated', `response of ${bytes.length} bytes`);
  if (bytes.length > PCP_MAX_MESSAGE_BYTES) throw new DecodeError(FORMAT, 'too-large', `response of ${bytes.length} bytes`);
  if (bytes.length % 4 !== 0) throw new DecodeError(FORMAT, 'bad-length', `length ${bytes.length} is not a multiple of 4`);
  if ((bytes[OFFSET_OPCODE] & RESPONSE_BIT) === 0) throw new DecodeError(FORMAT, 'not-response', 'R bit is clear');

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const opcode = bytes[OFFSET_OPCODE] & OPCODE_MASK;
  const resultCode = bytes[OFFSET_RESULT_CODE];
  const hasMapData = opcode === PCP_OPCODE_MAP && bytes.length >= PCP_MAP_MESSAGE_BYTES;
  if (opcode === PCP_OPCODE_MAP && resultCode === PcpResult.SUCCESS && !hasMapData) {
    throw new DecodeError(FORMAT, 'truncated', `successful MAP response of ${bytes.length} bytes`);
  }
  checkOptions(bytes, hasMapData ? PCP_MAP_MESSAGE_BYTES : PCP_HEADER_BYTES);
  return {
    version,
    opcode,
    resultCode,
    lifetimeS: view.getUint32(OFFSET_LIFETIME, false),
    epochS: view.getUint32(OFFSET_EPOCH, false),
    map: hasMapData ? decodeMapData(bytes, view) : undefined,
  };
}

function decodeMapData(bytes: Uint8Array, view: DataView): PcpMapData {
  return {
    nonce: bytes.slice(OFFSET_NONCE, OFFSET_NONCE + PCP_NONCE_BYTES),
    protocol: bytes[OFFSET_PROTOCOL],
    internalPort: view.getUint16(OFFSET_INTERNAL_PORT, false),
    externalPort: view.getUint16(OFFSET_EXTERNAL_PORT, false),
    externalAddress: formatAddress16(bytes.subarray(OFFSET_EXTERNAL_ADDRESS, OFFSET_EXTERNAL_ADDRESS + 16)),
  };
}

/**
 * A server that does not speak PCPv2 answers UNSUPP_VERSION in its own format: NAT-PMP
 * (version 0) with a 16-bit result code at offset 2, PCPv1 with the PCP layout.
 */
function decodeOtherVersion(bytes: Uint8Array): PcpResponse {
  const version = bytes[OFFSET_VERSION];
  const resultCode =
    version === 0
      ? (bytes[NATPMP_RESULT_OFFSET] << 8) | bytes[NATPMP_RESULT_OFFSET + 1]
      : bytes[OFFSET_RESULT_CODE];
  const isResponse = (bytes[OFFSET_OPCODE] & RESPONSE_BIT) !== 0;
  if (version > PCP_VERSION || !isResponse || resultCode !== PcpResult.UNSUPP_VERSION) {
    throw new DecodeError(FORMAT, 'bad-version', `version ${version} response that is not UNSUPP_VERSION`);
  }
  return { version, opcode: bytes[OFFSET_OPCODE] & OPCODE_MASK, resultCode, lifetimeS: 0, epochS: 0, map: undefined };
}

/** Options are not used here, but their framing must fit the message exactly. */
function checkOptions(bytes: Uint8Array, start: number): void {
  let offset = start;
  while (offset < bytes.length) {
    if (bytes.length - offset < OPTION_HEADER_BYTES) {
      throw new DecodeError(FORMAT, 'bad-option', `option header truncated at offset ${offset}`);
    }
    const length = (bytes[offset + 2] << 8) | bytes[offset + 3];
    const padded = Math.ceil(length / 4) * 4;
    if (offset + OPTION_HEADER_BYTES + padded > bytes.length) {
      throw new DecodeError(FORMAT, 'bad-option', `option at offset ${offset} overruns the message`);
    }
    offset += OPTION_HEADER_BYTES + padded;
  }
}

function ipv4Mapped(address: string): Uint8Array {
  if (!isIPv4(address)) throw new UsageError(`PCP here supports IPv4 only, got "${address}"`);
  const bytes = new Uint8Array(16);
  bytes[10] = 0xff;
  bytes[11] = 0xff;
  bytes.set(address.split('.').map(Number), 12);
  return bytes;
}

/** Dotted IPv4 for ::ffff:a.b.c.d, otherwise RFC 5952 IPv6 text. */
export function formatAddress16(bytes: Uint8Array): string {
  const isMapped = bytes.subarray(0, 10).every((byte) => byte === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (isMapped) return Array.from(bytes.subarray(12, 16)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16));
  const [start, length] = longestZeroRun(groups);
  if (length < 2) return groups.join(':');
  return `${groups.slice(0, start).join(':')}::${groups.slice(start + length).join(':')}`;
}

function longestZeroRun(groups: string[]): [number, number] {
  let best: [number, number] = [0, 0];
  let runStart = -1;
  for (let i = 0; i <= groups.length; i++) {
    if (i < groups.length && groups[i] === '0') {
      if (runStart < 0) runStart = i;
    } else if (runStart >= 0) {
      if (i - runStart > best[1]) best = [runStart, i - runStart];
      runStart = -1;
    }
  }
  return best;
}

function checkPort(port: number, what: string, min: number): void {
  if (!Number.isInteger(port) || port < min || port > 0xffff) throw new UsageError(`${what} out of range: ${port}`);
}

function checkUint(value: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new UsageError(`${what} out of range: ${value}`);
}

// ---------------------------------------------------------------------------------------
// Client

/** A UDP mapping made with PCP. Plain data (JSON-serialisable): it renews and deletes itself. */
export interface PcpMapping {
  protocol: 'pcp';
  gateway: string;
  internalAddress: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  /** Lifetime the gateway granted, in seconds. */
  lifetimeS: number;
  /** Hex of the 12-byte mapping nonce. */
  nonce: string;
}

export interface PcpOptions {
  gateway: string;
  /** Server port; 5351 unless testing. */
  port?: number;
  schedule?: RetransmitSchedule;
  signal?: AbortSignal;
}

export interface PcpMapParams {
  internalPort: number;
  /** Suggested external port; 0 or absent = gateway's choice. */
  externalPort?: number;
  /** Suggested external IPv4 address; absent = gateway's choice. */
  externalAddress?: string;
  lifetimeS: number;
  /** Hex nonce of the mapping to renew; absent = a new mapping with a fresh nonce. */
  nonce?: string;
}

/** Creates or renews a UDP mapping. Throws PortMapError on refusal, NetworkError on silence. */
export async function pcpMap(params: PcpMapParams, options: PcpOptions): Promise<PcpMapping> {
  const internalAddress = await localAddressToward(options.gateway, options.port);
  const nonce = params.nonce === undefined ? randomBytes(PCP_NONCE_BYTES) : nonceFromHex(params.nonce);
  const response = await sendMap(
    {
      clientAddress: internalAddress,
      nonce,
      protocol: PCP_PROTOCOL_UDP,
      internalPort: params.internalPort,
      suggestedExternalPort: params.externalPort ?? 0,
      suggestedExternalAddress: params.externalAddress ?? '0.0.0.0',
      lifetimeS: params.lifetimeS,
    },
    options,
  );
  const { map } = response;
  return {
    protocol: 'pcp',
    gateway: options.gateway,
    internalAddress,
    internalPort: map.internalPort,
    externalAddress: map.externalAddress,
    externalPort: map.externalPort,
    lifetimeS: response.lifetimeS,
    nonce: Buffer.from(nonce).toString('hex'),
  };
}

/** Deletes a mapping: MAP with the mapping's nonce and lifetime 0 (RFC 6887 §15). */
export async function pcpDelete(mapping: PcpMapping, options: Omit<PcpOptions, 'gateway'> = {}): Promise<void> {
  await sendMap(
    {
      clientAddress: mapping.internalAddress,
      nonce: nonceFromHex(mapping.nonce),
      protocol: PCP_PROTOCOL_UDP,
      internalPort: mapping.internalPort,
      suggestedExternalPort: 0,
      suggestedExternalAddress: '0.0.0.0',
      lifetimeS: 0,
    },
    { ...options, gateway: mapping.gateway },
  );
}

async function sendMap(request: PcpMapRequest, options: PcpOptions): Promise<PcpMapAnswer> {
  return exchangeUdp({
    label: 'PCP',
    gateway: options.gateway,
    port: options.port ?? PORT_MAPPING_SERVER_PORT,
    request: encodePcpMapRequest(request),
    accept: (datagram) => acceptMapResponse(datagram, request),
    schedule: options.schedule ?? PCP_DEFAULT_SCHEDULE,
    signal: options.signal,
  });
}

/** A successful MAP response (which always carries the MAP data). */
export type PcpMapAnswer = PcpResponse & { map: PcpMapData };

/**
 * The answer to `request`, or undefined for a datagram that answers something else (another
 * opcode, another nonce, another internal port or protocol). Error results throw PortMapError.
 */
export function acceptMapResponse(datagram: Uint8Array, request: PcpMapRequest): PcpMapAnswer | undefined {
  const response = decodePcpResponse(datagram);
  if (response.opcode !== PCP_OPCODE_MAP) return undefined;
  const { map } = response;
  if (response.resultCode !== PcpResult.SUCCESS) {
    // Error responses may come with or without the opcode data; with it, it must be ours.
    if (map !== undefined && !matchesRequest(map, request)) return undefined;
    throw pcpRefusal(response);
  }
  if (map === undefined || !matchesRequest(map, request)) return undefined;
  return { ...response, map };
}

function matchesRequest(map: PcpMapData, request: PcpMapRequest): boolean {
  return (
    Buffer.from(map.nonce).equals(request.nonce) &&
    map.protocol === request.protocol &&
    map.internalPort === request.internalPort
  );
}

function pcpRefusal(response: PcpResponse): PortMapError {
  const reason = REFUSALS[response.resultCode] ?? 'unknown';
  const name = Object.entries(PcpResult).find(([, code]) => code === response.resultCode)?.[0] ?? 'unknown result';
  const versionNote = response.version === PCP_VERSION ? '' : ` (the server speaks version ${response.version})`;
  return new PortMapError('pcp', reason, `PCP MAP refused: ${name} (${response.resultCode})${versionNote}`, {
    resultCode: response.resultCode,
  });
}

function nonceFromHex(hex: string): Uint8Array {
  if (!new RegExp(`^[0-9a-fA-F]{${2 * PCP_NONCE_BYTES}}$`).test(hex)) {
    throw new UsageError(`PCP nonce must be ${PCP_NONCE_BYTES} bytes of hex, got "${hex}"`);
  }
  return Buffer.from(hex, 'hex');
}

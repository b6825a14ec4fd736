/**
 * The gateway that port-mapping protocols talk to: finding it (the IPv4 default route in
 * Linux's /proc/net/route, or an address the caller passes), the local address that reaches
 * it, the UDP request/response exchange PCP and NAT-PMP share (both speak to UDP 5351 on the
 * gateway and retransmit at doubling intervals), and PortMapError, the error a gateway's
 * refusal becomes.
 */

import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import {
  AbortError,
  DecodeError,
  NatTraversalError,
  NetworkError,
  UsageError,
  throwIfAborted,
  type WzpErrorOptions,
} from '../errors.js';

/** The three port-mapping protocols, by their short names. */
export type PortMapProtocol = 'pcp' | 'natpmp' | 'upnp';

/** PCP (RFC 6887 §19.1) and NAT-PMP (RFC 6886 §3) servers listen on this UDP port. */
export const PORT_MAPPING_SERVER_PORT = 5351;

/**
 * Why a gateway refused a port-mapping request. PCP result codes (RFC 6887 §7.4), NAT-PMP
 * result codes (RFC 6886 §3.5) and UPnP-IGD SOAP fault codes all map onto these.
 */
export type PortMapRefusal =
  | 'unsupported-version'
  | 'not-authorized'
  | 'malformed-request'
  | 'unsupported-opcode'
  | 'unsupported-option'
  | 'malformed-option'
  | 'network-failure'
  | 'no-resources'
  | 'unsupported-protocol'
  | 'user-quota-exceeded'
  | 'cannot-provide-external'
  | 'address-mismatch'
  | 'excessive-remote-peers'
  | 'conflict'
  | 'only-permanent-leases'
  | 'no-such-entry'
  | 'invalid-args'
  | 'action-failed'
  | 'no-service'
  | 'unknown';

export interface PortMapErrorOptions extends WzpErrorOptions {
  /** The raw result or fault code the gateway sent, when there was one. */
  resultCode?: number;
}

/**
 * A gateway answered but refused (or cannot serve) a port-mapping request. Callers test
 * `name === 'PortMapError'` and `reason`; `resultCode` is the protocol's raw code.
 */
export class PortMapError extends NatTraversalError {
  readonly protocol: PortMapProtocol;
  readonly reason: PortMapRefusal;
  readonly resultCode: number | undefined;

  constructor(protocol: PortMapProtocol, reason: PortMapRefusal, message: string, options: PortMapErrorOptions = {}) {
    super(message, { ...options, suggestions: options.suggestions ?? refusalSuggestions(reason) });
    this.name = 'PortMapError';
    this.protocol = protocol;
    this.reason = reason;
    this.resultCode = options.resultCode;
  }
}

const SUGGESTIONS: Partial<Record<PortMapRefusal, string[]>> = {
  'unsupported-version': ['the gateway speaks another version of this protocol: try the next protocol'],
  'not-authorized': [
    'enable PCP/NAT-PMP/UPnP port mapping on the router',
    "check the router's port-mapping access rules for this host and port",
  ],
  'network-failure': ['the gateway has no usable external address yet (no uplink, or behind another NAT)'],
  'no-resources': ['the gateway is out of ports or mapping slots: delete unused mappings'],
  'address-mismatch': ['another NAT sits between this host and the gateway (double NAT)'],
  conflict: ['another host already maps that external port: ask for a different one'],
  'cannot-provide-external': ['ask without a suggested external port/address'],
  'no-service': ['the gateway does not offer this protocol'],
};

function refusalSuggestions(reason: PortMapRefusal): string[] {
  return SUGGESTIONS[reason] ?? [];
}

// ---------------------------------------------------------------------------------------
// Finding the gateway

const PROC_NET_ROUTE = '/proc/net/route';
const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

/**
 * The IPv4 default gateway in the text of /proc/net/route, or undefined if there is no
 * default route. With several default routes the one with the lowest metric wins.
 * Addresses in that file are hexadecimal in host (little-endian) byte order.
 */
export function parseDefaultGateway(procNetRoute: string): string | undefined {
  let best: { gateway: string; metric: number } | undefined;
  for (const line of procNetRoute.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const [, destination, gatewayHex, flagsHex, , , metricText, mask] = fields;
    const flags = parseInt(flagsHex, 16);
    const isDefault = destination === '00000000' && mask === '00000000';
    if (!isDefault || (flags & (RTF_UP | RTF_GATEWAY)) !== (RTF_UP | RTF_GATEWAY)) continue;
    const gateway = littleEndianHexToIPv4(gatewayHex);
    const metric = Number(metricText);
    if (gateway !== undefined && Number.isInteger(metric) && (best === undefined || metric < best.metric)) {
      best = { gateway, metric };
    }
  }
  return best?.gateway;
}

function littleEndianHexToIPv4(text: string): string | undefined {
  if (!/^[0-9a-fA-F]{8}$/.test(text)) return undefined;
  const value = parseInt(text, 16);
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24].join('.');
}

/**
 * The gateway to talk to: `explicit` if given (it must be an IPv4 address), else the
 * default route's gateway (Linux only). Throws UsageError for a bad explicit address and
 * NetworkError when there is no default route.
 */
export async function resolveGateway(explicit?: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  if (explicit !== undefined) {
    if (!isIPv4(explicit)) {
      throw new UsageError(`gateway must be an IPv4 address, got "${explicit}"`);
    }
    return explicit;
  }
  throwIfAborted(options.signal);
  let table: string;
  try {
    table = await readFile(PROC_NET_ROUTE, { encoding: 'utf8', signal: options.signal });
  } catch (error) {
    if (options.signal?.aborted) throw new AbortError('gateway lookup aborted', { cause: error });
    throw new NetworkError(`cannot read ${PROC_NET_ROUTE} to find the default gateway`, {
      cause: error,
      suggestions: ['pass the gateway address explicitly (this lookup works on Linux only)'],
    });
  }
  const gateway = parseDefaultGateway(table);
  if (gateway === undefined) {
    throw new NetworkError('no IPv4 default route, so no gateway to ask for a port mapping', {
      suggestions: ['check the network connection', 'pass the gateway address explicitly'],
    });
  }
  return gateway;
}

/**
 * The local IPv4 address the kernel would use to reach `host`: a connected UDP socket picks
 * it without sending anything.
 */
export async function localAddressToward(host: string, port = PORT_MAPPING_SERVER_PORT): Promise<string> {
  const socket = createSocket('udp4');
  try {
    await connectSocket(socket, host, port);
    return socket.address().address;
  } catch (error) {
    throw new NetworkError(`no route to ${host}`, { cause: error });
  } finally {
    closeQuietly(socket);
  }
}

/** Closes a socket that may already be closed. */
export function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}

function connectSocket(socket: Socket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.connect(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------
// One UDP request/response exchange with retransmission

/**
 * When to retransmit: the first send, then again after initialMs, 2×initialMs, 4×... until
 * maxAttempts sends went unanswered (the wait after the last send is as long as the
 * interval before it would have been).
 */
export interface RetransmitSchedule {
  initialMs: number;
  maxAttempts: number;
}

/** Total time an exchange waits before giving up. */
export function scheduleTotalMs(schedule: RetransmitSchedule): number {
  return schedule.initialMs * (2 ** schedule.maxAttempts - 1);
}

export interface UdpExchange<T> {
  /** For messages: 'PCP', 'NAT-PMP'. */
  label: string;
  gateway: string;
  port: number;
  request: Uint8Array;
  /**
   * Reads one datagram from the gateway. Returns the answer; undefined for a datagram that
   * is not an answer to this request (another opcode, a stale nonce): it is ignored; throws
   * DecodeError for malformed bytes (ignored, and named if the exchange then times out); any
   * other error (a refusal) ends the exchange with that error.
   */
  accept(datagram: Uint8Array): T | undefined;
  schedule: RetransmitSchedule;
  signal?: AbortSignal;
}

/**
 * Sends `request` from a fresh UDP socket connected to gateway:port (so only the gateway's
 * datagrams reach it, and an ICMP port-unreachable surfaces as a refusal instead of a
 * timeout) and retransmits on the schedule until `accept` yields an answer. Throws
 * NetworkError on timeout or refusal, AbortError when aborted. The socket is always closed.
 */
export async function exchangeUdp<T>(exchange: UdpExchange<T>): Promise<T> {
  throwIfAborted(exchange.signal);
  const socket = createSocket('udp4');
  try {
    await connectSocket(socket, exchange.gateway, exchange.port);
    return await awaitAnswer(socket, exchange);
  } catch (error) {
    throw asExchangeError(error, exchange);
  } finally {
    closeQuietly(socket);
  }
}

function awaitAnswer<T>(socket: Socket, exchange: UdpExchange<T>): Promise<T> {
  const { schedule, signal } = exchange;
  return new Promise<T>((resolve, reject) => {
    let attempts = 0;
    let timer: NodeJS.Timeout | undefined;
    let lastMalformed: DecodeError | undefined;

    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('message');
      socket.removeAllListeners('error');
      socket.on('error', () => undefined); // late ICMP errors after settling are irrelevant
      settle();
    };
    const fail = (error: unknown): void => finish(() => reject(error));
    const onAbort = (): void => fail(new AbortError(`${exchange.label} request aborted`, { cause: signal?.reason }));

    const sendNext = (): void => {
      if (attempts === schedule.maxAttempts) {
        fail(timeoutError(exchange, lastMalformed));
        return;
      }
      const waitMs = schedule.initialMs * 2 ** attempts;
      attempts += 1;
      socket.send(exchange.request, (error) => {
        if (error) fail(error);
      });
      timer = setTimeout(sendNext, waitMs);
    };

    socket.on('message', (datagram: Buffer) => {
      try {
        const answer = exchange.accept(new Uint8Array(datagram.buffer, datagram.byteOffset, datagram.byteLength));
        if (answer !== undefined) finish(() => resolve(answer));
      } catch (error) {
        if (error instanceof DecodeError) lastMalformed = error;
        else fail(error);
      }
    });
    socket.on('error', fail);
    if (signal?.aborted) {
      onAbort(); // aborted while the socket was connecting
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    sendNext();
  });
}

function timeoutError(exchange: UdpExchange<unknown>, lastMalformed: DecodeError | undefined): NetworkError {
  const waited = scheduleTotalMs(exchange.schedule);
  const malformed = lastMalformed ? `; the last datagram was malformed (${lastMalformed.message})` : '';
  return new NetworkError(
    `no ${exchange.label} answer from ${exchange.gateway}:${exchange.port} after ` +
      `${exchange.schedule.maxAttempts} attempts (${waited} ms)${malformed}`,
    { cause: lastMalformed, suggestions: [`check that the gateway supports ${exchange.label} and has it enabled`] },
  );
}

/** Socket errors (errno codes) become NetworkError; everything else passes through as is. */
function asExchangeError(error: unknown, exchange: UdpExchange<unknown>): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (!(error instanceof Error) || typeof code !== 'string') return error;
  const where = `${exchange.gateway}:${exchange.port}`;
  if (code === 'ECONNREFUSED') {
    return new NetworkError(`${where} refused the ${exchange.label} request (nothing listens there)`, {
      cause: error,
      suggestions: [`the gateway does not run a ${exchange.label} server, or has it disabled`],
    });
  }
  return new NetworkError(`${exchange.label} exchange with ${where} failed: ${String(error)}`, { cause: error });
}

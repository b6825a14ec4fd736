/**
 * A STUN server for the relay's own UDP port: Binding requests (RFC 5389 / RFC 8489), and
 * with a second address RFC 5780's NAT behaviour discovery (OTHER-ADDRESS, RESPONSE-ORIGIN,
 * CHANGE-REQUEST, RESPONSE-PORT). So `wzp netcheck --relay HOST:PORT` needs no other server
 * (Tailscale's DERP servers answer STUN the same way).
 *
 * ```
 *             port P (the relay's QUIC port)     port Q (default P + 1)
 *  IP A     A:P  relay socket: QUIC, media path,   A:Q  STUN only
 *                and STUN (non-QUIC packets whose
 *                first byte is 0x00 or 0x01)
 *  IP B     B:P  STUN only                          B:Q  STUN only  (= OTHER-ADDRESS of A:P)
 * ```
 * Without a second address only A:P answers, with XOR-MAPPED-ADDRESS: enough for the
 * reflexive address and, from several servers, the port allocation. With B (and Q) every
 * socket answers, and a request received on D = (Da, Dp) is answered per RFC 5780 §6.1:
 * OTHER-ADDRESS is C = (the other IP, the other port), CHANGE-REQUEST "change IP" answers from
 * (Ca, Dp), "change port" from (Da, Cp), both from (Ca, Cp), RESPONSE-ORIGIN is the socket
 * that answers, RESPONSE-PORT sends the answer to that port of the request's source IP.
 *
 * Hostile input (DESIGN.md §7; docs/nat.md "The relay as a STUN server"):
 * - **never more than 3x**: an answer is built against a byte budget of 3 × the request's
 *   size: XOR-MAPPED-ADDRESS first (it always fits: 20 + 24 bytes ≤ 3 × 20), then
 *   OTHER-ADDRESS, RESPONSE-ORIGIN, MAPPED-ADDRESS and FINGERPRINT while they fit (no SOFTWARE,
 *   no padding). An error answer that would not fit is not sent. The size is checked again
 *   after encoding; the response goes to the request's source IP only (RESPONSE-PORT changes
 *   the port, never the address).
 * - **rate-limited per source** (IPv4 address or IPv6 /64, as the QUIC gate counts them):
 *   at most `answersPerSourcePerSecond` answers, and `answersPerSecond` in all.
 * - **dropped and counted**: anything that is not a well-formed Binding request (truncated,
 *   over STUN_MAX_MESSAGE_BYTES, a bad length or FINGERPRINT, indications and responses, other
 *   methods), requests from sources a reply cannot go to (port 0, broadcast, multicast), and
 *   requests from the server's own sockets (a loop). Nothing here throws on input.
 * - **refused with an error answer** (within the budget), as RFC 5389/5780 require: 420
 *   (UNKNOWN-ATTRIBUTES) for unknown comprehension-required attributes, and for CHANGE-REQUEST
 *   and RESPONSE-PORT when there is no second address; 400 for a malformed CHANGE-REQUEST or
 *   RESPONSE-PORT, or PADDING with RESPONSE-PORT.
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { DecodeError, NetworkError, UsageError, errorMessage } from '../errors.js';
import { KeyedWindowLimiter } from '../net/rate-limit.js';
import { isUnicastSource, sourceKey } from '../transport/quic-gate.js';
import {
  CHANGE_IP_FLAG,
  CHANGE_PORT_FLAG,
  type Endpoint,
  type RawStunAttribute,
  STUN_FINGERPRINT_BYTES,
  STUN_HEADER_BYTES,
  STUN_MAX_MESSAGE_BYTES,
  StunAttribute,
  StunMessageType,
  encodeAddressValue,
  encodeErrorCodeValue,
  encodeStunMessage,
  encodeUint16ListValue,
  formatEndpoint,
  readStunMessage,
  sameEndpoint,
  stunAttributeBytes,
} from './stun.js';

/** Largest answer, as a multiple of the request's size (DESIGN.md §7). */
export const STUN_MAX_AMPLIFICATION = 3;

export interface StunServerLimits {
  /** Answers to one source (IPv4 address or IPv6 /64) per second. */
  answersPerSourcePerSecond: number;
  /** Answers per second in all. */
  answersPerSecond: number;
}

/**
 * A netcheck from one host sends ~12 Binding requests in its first second (first contact,
 * four allocation probes, five behaviour probes), ~25 with --binding-lifetime; a few hosts
 * behind one NAT share a source. At 50 answers of at most ~110 bytes, a forged source draws
 * at most ~5.5 kB/s from this server; 5000 in all bound what every source together can.
 */
export const DEFAULT_STUN_SERVER_LIMITS: StunServerLimits = {
  answersPerSourcePerSecond: 50,
  answersPerSecond: 5_000,
};

export type StunDropReason =
  /** Not STUN at all (on a STUN-only socket), or STUN that does not parse: truncated, bad length, attributes or FINGERPRINT. */
  | 'malformed'
  /** Larger than STUN_MAX_MESSAGE_BYTES. */
  | 'oversized'
  /** An indication or a response: never answered (two servers must not answer each other). */
  | 'not-request'
  /** A request for a method other than Binding. */
  | 'unsupported-method'
  /** From port 0, or an unspecified, broadcast, multicast or reserved address. */
  | 'bad-source'
  /** From one of this server's own sockets. */
  | 'own-address'
  /** Over the per-source or total answer rate. */
  | 'rate-limited'
  /** The answer (an error answer) would be more than 3x the request. */
  | 'over-budget';

export const STUN_DROP_REASONS: readonly StunDropReason[] = [
  'malformed',
  'oversized',
  'not-request',
  'unsupported-method',
  'bad-source',
  'own-address',
  'rate-limited',
  'over-budget',
];

export interface StunServerStats {
  /** Packets handed to the server (on any of its sockets). */
  received: number;
  /** Success answers sent. */
  answered: number;
  /** Error answers sent (400, 420). */
  errors: number;
  dropped: Record<StunDropReason, number>;
  /** Bytes of the requests that were answered, and of their answers (the amplification). */
  answeredRequestBytes: number;
  answerBytes: number;
  /** Answers the kernel refused to send. */
  sendErrors: number;
}

// ---------------------------------------------------------------------------------------------
// Deciding one answer (pure: no sockets, no clock)
// ---------------------------------------------------------------------------------------------

/** The socket a request came to, and what it knows of the RFC 5780 grid. */
export interface StunResponder {
  /** The address the request was sent to (Da:Dp). */
  readonly local: Endpoint;
  /** RFC 5780: the other IP and port (Ca:Cp) relative to `local`; absent without a second address. */
  readonly other?: Endpoint;
}

export type StunDecision =
  | {
      readonly kind: 'answer';
      readonly answer: Buffer;
      /** Success or error answer. */
      readonly error?: number;
      /** Which of the server's addresses sends it. */
      readonly origin: Endpoint;
      /** The request's source, or its source IP with the RESPONSE-PORT. */
      readonly to: Endpoint;
    }
  | { readonly kind: 'drop'; readonly reason: StunDropReason; readonly detail: string };

/** Attributes understood (and so not "unknown comprehension-required") but not acted on. */
const IGNORED_ATTRIBUTES = new Set<number>([
  StunAttribute.USERNAME,
  StunAttribute.MESSAGE_INTEGRITY,
  StunAttribute.MESSAGE_INTEGRITY_SHA256,
  StunAttribute.REALM,
  StunAttribute.NONCE,
  StunAttribute.PASSWORD_ALGORITHM,
  StunAttribute.USERHASH,
]);
/** At most this many types are listed in a 420's UNKNOWN-ATTRIBUTES. */
const MAX_UNKNOWN_LISTED = 4;

/**
 * What to do with one datagram that came to `responder.local` from `from`: the answer and
 * where it goes, or why it is dropped. Never throws.
 */
export function answerStunRequest(packet: Uint8Array, from: Endpoint, responder: StunResponder): StunDecision {
  if (packet.length > STUN_MAX_MESSAGE_BYTES) return drop('oversized', `${packet.length} bytes`);
  let request;
  try {
    request = readStunMessage(packet);
  } catch (err) {
    if (err instanceof DecodeError) return drop(err.reason === 'too-large' ? 'oversized' : 'malformed', err.reason);
    return drop('malformed', errorMessage(err));
  }
  if (request.cls !== 'request') return drop('not-request', request.cls);
  if (request.method !== 0x001) return drop('unsupported-method', `method 0x${request.method.toString(16)}`);

  const budget = STUN_MAX_AMPLIFICATION * packet.length;
  const rfc5780 = responder.other !== undefined;
  let changeFlags = 0;
  let responsePort: number | undefined;
  let padding = false;
  const unknown: number[] = [];
  let badRequest: string | undefined;
  for (const attribute of request.attributes) {
    switch (attribute.type) {
      case StunAttribute.CHANGE_REQUEST:
        if (!rfc5780) unknown.push(attribute.type);
        else if (attribute.value.length !== 4) badRequest = 'CHANGE-REQUEST is not 4 bytes';
        else changeFlags = attribute.value[3] & (CHANGE_IP_FLAG | CHANGE_PORT_FLAG);
        break;
      case StunAttribute.RESPONSE_PORT: {
        if (!rfc5780) {
          unknown.push(attribute.type);
          break;
        }
        const port = attribute.value.length >= 2 ? (attribute.value[0] << 8) | attribute.value[1] : 0;
        if (port === 0) badRequest = 'RESPONSE-PORT is not a port';
        else responsePort = port;
        break;
      }
      case StunAttribute.PADDING:
        padding = true;
        break;
      default:
        // 0x0000-0x7FFF are comprehension-required (RFC 5389 §15).
        if (attribute.type < 0x8000 && !IGNORED_ATTRIBUTES.has(attribute.type)) unknown.push(attribute.type);
    }
  }
  if (padding && responsePort !== undefined) badRequest = 'PADDING with RESPONSE-PORT (RFC 5780 §6.1)';

  const to = { address: from.address, port: from.port };
  if (unknown.length > 0) {
    const listed = [...new Set(unknown)].slice(0, MAX_UNKNOWN_LISTED);
    return errorAnswer(request.transactionId, 420, 'Unknown Attribute', [{ type: StunAttribute.UNKNOWN_ATTRIBUTES, value: encodeUint16ListValue(listed) }], request.fingerprint, budget, responder.local, to);
  }
  if (badRequest !== undefined) return errorAnswer(request.transactionId, 400, 'Bad Request', [], request.fingerprint, budget, responder.local, to);

  const origin = originFor(responder, changeFlags);
  const destination = responsePort === undefined ? to : { address: from.address, port: responsePort };
  const mapped = { address: unmapIPv4(from.address), port: from.port };
  // In order of importance; each added only if the answer stays within the budget.
  const attributes: RawStunAttribute[] = [{ type: StunAttribute.XOR_MAPPED_ADDRESS, value: encodeAddressValue(mapped, request.transactionId) }];
  const optional: RawStunAttribute[] = [];
  if (responder.other) {
    optional.push({ type: StunAttribute.OTHER_ADDRESS, value: encodeAddressValue(responder.other) });
    optional.push({ type: StunAttribute.RESPONSE_ORIGIN, value: encodeAddressValue(origin) });
  }
  optional.push({ type: StunAttribute.MAPPED_ADDRESS, value: encodeAddressValue(mapped) });
  let size = STUN_HEADER_BYTES + stunAttributeBytes(attributes[0].value.length);
  if (size > budget) return drop('over-budget', `${size} bytes for a ${packet.length}-byte request`);
  for (const attribute of optional) {
    const more = stunAttributeBytes(attribute.value.length);
    if (size + more <= budget) {
      attributes.push(attribute);
      size += more;
    }
  }
  const fingerprint = request.fingerprint && size + STUN_FINGERPRINT_BYTES <= budget;
  return finish(encodeStunMessage(StunMessageType.BINDING_SUCCESS, request.transactionId, attributes, { fingerprint }), budget, packet.length, origin, destination);
}

function errorAnswer(
  transactionId: Uint8Array,
  code: number,
  reason: string,
  extra: RawStunAttribute[],
  fingerprint: boolean,
  budget: number,
  origin: Endpoint,
  to: Endpoint,
): StunDecision {
  const base = STUN_HEADER_BYTES + extra.reduce((n, a) => n + stunAttributeBytes(a.value.length), 0);
  // The reason phrase is only for people: left out if it does not fit.
  const withReason = base + stunAttributeBytes(4 + Buffer.byteLength(reason));
  const text = withReason <= budget ? reason : '';
  const size = base + stunAttributeBytes(4 + Buffer.byteLength(text));
  if (size > budget) return drop('over-budget', `a ${code} answer of ${size} bytes`);
  const attributes = [{ type: StunAttribute.ERROR_CODE, value: encodeErrorCodeValue(code, text) }, ...extra];
  const decision = finish(
    encodeStunMessage(StunMessageType.BINDING_ERROR, transactionId, attributes, { fingerprint: fingerprint && size + STUN_FINGERPRINT_BYTES <= budget }),
    budget,
    budget / STUN_MAX_AMPLIFICATION,
    origin,
    to,
  );
  return decision.kind === 'answer' ? { ...decision, error: code } : decision;
}

/** The last word on the budget: the encoded size itself. */
function finish(answer: Buffer, budget: number, requestBytes: number, origin: Endpoint, to: Endpoint): StunDecision {
  if (answer.length > budget) return drop('over-budget', `${answer.length} bytes for a ${requestBytes}-byte request`);
  return { kind: 'answer', answer, origin, to };
}

/** RFC 5780 §6.1 Table 1: the source address of the answer for each CHANGE-REQUEST. */
function originFor(responder: StunResponder, flags: number): Endpoint {
  const { local, other } = responder;
  if (!other || flags === 0) return local;
  return {
    address: flags & CHANGE_IP_FLAG ? other.address : local.address,
    port: flags & CHANGE_PORT_FLAG ? other.port : local.port,
  };
}

function drop(reason: StunDropReason, detail: string): StunDecision {
  return { kind: 'drop', reason, detail };
}

function unmapIPv4(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1] : address;
}

// ---------------------------------------------------------------------------------------------
// The server: the relay's socket and, in RFC 5780 mode, three of its own
// ---------------------------------------------------------------------------------------------

export interface StunServerOptions {
  /** The relay's socket and the address it is bound to (A:P). */
  primary: { socket: dgram.Socket; address: Endpoint };
  /**
   * RFC 5780: a second IP address B of the same family (not a wildcard, and the primary must
   * not be one either) and the second port Q (default P + 1; with none given and P + 1 taken,
   * any free port). The server binds A:Q, B:P and B:Q.
   */
  alternate?: { address: string; port?: number };
  limits?: Partial<StunServerLimits>;
}

interface ServerSocket {
  readonly address: Endpoint;
  readonly socket: dgram.Socket;
  /** Whether this server opened it (and closes it). */
  readonly own: boolean;
  readonly responder: StunResponder;
}

export class StunServer {
  readonly stats: StunServerStats = {
    received: 0,
    answered: 0,
    errors: 0,
    dropped: Object.fromEntries(STUN_DROP_REASONS.map((r) => [r, 0])) as Record<StunDropReason, number>,
    answeredRequestBytes: 0,
    answerBytes: 0,
    sendErrors: 0,
  };
  private readonly limiter: KeyedWindowLimiter;
  private closed = false;

  private constructor(
    private readonly sockets: readonly ServerSocket[],
    limits: StunServerLimits,
  ) {
    this.limiter = new KeyedWindowLimiter(limits.answersPerSourcePerSecond, limits.answersPerSecond);
    for (const s of sockets) {
      if (!s.own) continue;
      s.socket.on('message', (packet, rinfo) => this.receive(s, packet, rinfo));
      // An ICMP error surfacing as a socket error must not end the process.
      s.socket.on('error', () => undefined);
    }
  }

  /** Starts answering on the primary socket (fed through handle()) and, with an alternate, binds the other three. */
  static async start(options: StunServerOptions): Promise<StunServer> {
    const limits = resolveLimits(options.limits);
    const primary = options.primary.address;
    if (!options.alternate) {
      return new StunServer([{ address: primary, socket: options.primary.socket, own: false, responder: { local: primary } }], limits);
    }
    const grid = await bindGrid(options.primary, options.alternate);
    return new StunServer(grid, limits);
  }

  /** Every address that answers STUN: A:P, and in RFC 5780 mode A:Q, B:P, B:Q. */
  get endpoints(): Endpoint[] {
    return this.sockets.map((s) => s.address);
  }

  /** OTHER-ADDRESS of the primary (B:Q), in RFC 5780 mode. */
  get otherAddress(): Endpoint | undefined {
    return this.sockets[0].responder.other;
  }

  /** A packet that came to the primary socket (the relay passes STUN-looking non-QUIC ones). */
  handle(packet: Uint8Array, from: Endpoint): void {
    this.receive(this.sockets[0], packet, from);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.sockets.filter((s) => s.own).map((s) => closeSocket(s.socket)));
  }

  private receive(on: ServerSocket, packet: Uint8Array, from: Endpoint): void {
    this.stats.received++;
    if (this.closed) return;
    try {
      if (!isUnicastSource(from.address, from.port)) return this.count('bad-source');
      if (this.sockets.some((s) => sameEndpoint(s.address, { address: unmapIPv4(from.address), port: from.port }))) return this.count('own-address');
      const decision = answerStunRequest(packet, from, on.responder);
      if (decision.kind === 'drop') return this.count(decision.reason);
      if (!this.limiter.allow(sourceKey(from.address), performance.now())) return this.count('rate-limited');
      const sender = this.sockets.find((s) => sameEndpoint(s.address, decision.origin)) ?? on;
      if (decision.error === undefined) this.stats.answered++;
      else this.stats.errors++;
      this.stats.answeredRequestBytes += packet.length;
      this.stats.answerBytes += decision.answer.length;
      sender.socket.send(decision.answer, decision.to.port, decision.to.address, (err) => {
        if (err) this.stats.sendErrors++;
      });
    } catch {
      // A send on a closing socket: counted as the lost answer it is.
      this.stats.sendErrors++;
    }
  }

  private count(reason: StunDropReason): void {
    this.stats.dropped[reason]++;
  }
}

function resolveLimits(overrides: Partial<StunServerLimits> = {}): StunServerLimits {
  const limits = { ...DEFAULT_STUN_SERVER_LIMITS };
  for (const [name, value] of Object.entries(overrides) as [keyof StunServerLimits, number | undefined][]) {
    if (value === undefined) continue;
    if (!Number.isFinite(value) || value <= 0) throw new UsageError(`STUN server limit ${name} must be a positive number, got ${value}`);
    limits[name] = value;
  }
  return limits;
}

/** Checks the RFC 5780 addresses and binds A:Q, B:P and B:Q. */
async function bindGrid(primary: StunServerOptions['primary'], alternate: NonNullable<StunServerOptions['alternate']>): Promise<ServerSocket[]> {
  const a = primary.address;
  const b = alternate.address;
  const family = isIP(a.address);
  if (family === 0 || a.address === '0.0.0.0' || a.address === '::') {
    throw new UsageError(`a STUN alternate address needs the relay to listen on one address, not ${formatEndpoint(a)}: RFC 5780 answers must come from known addresses`, {
      suggestions: ['listen on the first address, e.g. --listen 203.0.113.1:4433 --stun-alternate 203.0.113.2'],
    });
  }
  if (isIP(b) !== family) throw new UsageError(`the STUN alternate address "${b}" is not an IPv${family} address like ${a.address}`);
  if (b === '0.0.0.0' || b === '::' || b === a.address) throw new UsageError(`the STUN alternate address must be a second address of this host, not "${b}"`);
  if (alternate.port !== undefined && (!Number.isInteger(alternate.port) || alternate.port < 1 || alternate.port > 65535 || alternate.port === a.port)) {
    throw new UsageError(`the STUN alternate port must be 1-65535 and not the relay's port ${a.port}, got ${alternate.port}`);
  }
  const type = family === 6 ? 'udp6' : 'udp4';
  const opened: dgram.Socket[] = [];
  const open = async (address: string, port: number) => {
    const socket = await bindUdp(type, address, port);
    opened.push(socket);
    return socket;
  };
  try {
    const bP = await open(b, a.port);
    let aQ: dgram.Socket;
    let q = alternate.port ?? (a.port < 65535 ? a.port + 1 : 0);
    try {
      aQ = await open(a.address, q);
    } catch (err) {
      if (alternate.port !== undefined) throw err;
      aQ = await open(a.address, 0);
    }
    q = aQ.address().port;
    const bQ = await open(b, q);
    const at = (address: string, port: number): Endpoint => ({ address, port });
    const cell = (address: Endpoint, socket: dgram.Socket, own: boolean, other: Endpoint): ServerSocket => ({ address, socket, own, responder: { local: address, other } });
    return [
      cell(at(a.address, a.port), primary.socket, false, at(b, q)),
      cell(at(a.address, q), aQ, true, at(b, a.port)),
      cell(at(b, a.port), bP, true, at(a.address, q)),
      cell(at(b, q), bQ, true, at(a.address, a.port)),
    ];
  } catch (err) {
    await Promise.all(opened.map(closeSocket));
    throw err;
  }
}

function bindUdp(type: 'udp4' | 'udp6', address: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
    const onError = (err: Error) => {
      socket.close();
      reject(
        new NetworkError(`cannot bind the STUN address ${formatEndpoint({ address, port })}: ${err.message}`, {
          cause: err,
          suggestions: ['is it an address of this host, and the port free? (--stun-alternate IP[:PORT])'],
        }),
      );
    };
    socket.once('error', onError);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

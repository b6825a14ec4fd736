/**
 * The direct path of a 1:1 call: a MediaTransport (kind `direct`) that carries the call's
 * media datagrams straight to the peer on the pair the connectivity checks selected
 * (./checks.ts), on the shared UDP socket (core/transport/demux.ts), in the direct-media
 * format (core/wire/direct-media.ts).
 *
 * What goes on it is what would go to the relay: the media layer's datagrams, sealed end to
 * end with the sender's media key. The sender puts its room source id in front (what the
 * relay would add), and the receiver hands the bytes after the path tag to the same code that
 * takes relayed media; so the media engine does not know which path a packet came on, and
 * the path switch (core/transport/media-transport.ts's MediaPathSwitch) can take packets from
 * both paths while the two ends move between them (the media layer drops duplicates).
 *
 * Authentication, in layers: the pair was proven by checks only the call's two parties can
 * make (HMAC with the call's check key, from the X25519 exchange in the signed offer and
 * answer); each packet carries the sending direction's path tag (from the call's direct-path
 * key), so a receiver takes only its peer's packets; and the media inside is authenticated
 * and decrypted with the sender key the peer wrapped for us (a forged packet is rejected and
 * counted there, as on the relay). Packets are taken only from the remote addresses of pairs
 * that succeeded.
 *
 * State: `open` while the checker has a selected pair that is not stale (an answer to one of
 * our checks on it within the checker's staleAfterMs, 0.8 s) and our source id is known;
 * `connecting` before and while stale; `closed` for good.
 */
import { DecodeError } from '../errors.js';
import { directMediaClass, type Demux, type UdpSource } from '../transport/demux.js';
import { emptyMediaTransportStats, MediaPayloadTooLargeError, type MediaTransport, type MediaTransportState, type MediaTransportStats } from '../transport/media-transport.js';
import { MAX_DATAGRAM_BYTES } from '../wire/datagram.js';
import { DIRECT_MEDIA_HEADER_BYTES, DIRECT_MEDIA_TAG_BYTES, decodeDirectMedia, encodeDirectMediaHeader } from '../wire/direct-media.js';
import { writeSourceId } from '../wire/room-source.js';
import { endpointKey, type Endpoint } from './candidates.js';
import type { PairReport } from './checks.js';

/**
 * The largest datagram the direct path takes: as on the relay (MAX_DATAGRAM_BYTES), so the
 * media layer's packet sizes need not change when the path does. A direct packet is then at
 * most 1319 bytes of UDP payload.
 */
export const DIRECT_MAX_PAYLOAD = MAX_DATAGRAM_BYTES;

/** What the direct path needs of the connectivity checks. */
export interface SelectedPairSource {
  /** The selected pair (undefined until one is). */
  readonly nominated: PairReport | undefined;
  /** No answer on the selected pair for the checker's staleAfterMs. */
  readonly stale: boolean;
}

/** Why a direct-media packet was dropped. */
export interface DirectMediaDrops {
  /** Not direct media (bad marker, truncated, source id 0). */
  malformed: number;
  /** Another call's or direction's tag (our own reflected back included). */
  wrongTag: number;
  /** From an address no succeeded pair has. */
  unknownSource: number;
}

export interface DirectMediaTransportOptions {
  demux: Demux;
  checks: SelectedPairSource;
  /** Our sending direction's path tag, and the peer's (directMediaTags). */
  sendTag: Uint8Array;
  receiveTag: Uint8Array;
  /**
   * How a peer's IP is written for the socket (a dual-stack IPv6 socket sends to IPv4 as
   * ::ffff:a.b.c.d); default unchanged.
   */
  socketAddress?(address: string): string;
  /** How the socket writes a source address back (::ffff:a.b.c.d as a.b.c.d); default unchanged. */
  sourceAddress?(address: string): string;
}

export class DirectMediaTransport implements MediaTransport {
  readonly kind = 'direct' as const;
  readonly drops: DirectMediaDrops = { malformed: 0, wrongTag: 0, unknownSource: 0 };
  readonly #o: DirectMediaTransportOptions;
  readonly #stats = emptyMediaTransportStats();
  readonly #validated = new Set<string>();
  readonly #unregister: () => void;
  #handler: (payload: Uint8Array) => void = () => undefined;
  #header: Uint8Array | undefined;
  #closed = false;
  #lastReceivedAt: number | undefined;

  constructor(options: DirectMediaTransportOptions) {
    if (options.sendTag.length !== DIRECT_MEDIA_TAG_BYTES || options.receiveTag.length !== DIRECT_MEDIA_TAG_BYTES) {
      throw new RangeError(`direct-media path tags are ${DIRECT_MEDIA_TAG_BYTES} bytes`);
    }
    this.#o = options;
    this.#unregister = options.demux.register(directMediaClass((data, from) => this.#receive(data, from)));
  }

  /** Our source id in the call's room (known once joined): what the relay would put in front. */
  setSourceId(sourceId: number): void {
    this.#header = encodeDirectMediaHeader(this.#o.sendTag, sourceId);
  }

  /**
   * The peer's source id in our room, as our relay's roster gives it: what arrives on this
   * path is handed up under it, whatever id the peer's datagrams carry. Relays of a federation
   * forward a member under one id (docs/federation.md, Source ids), so the two agree unless a
   * relay lied to one side, and then the id the peer carries could be another member's, or
   * ours, in our view. Only the peer reaches this path (its tag, a validated address), and its
   * datagrams are authenticated end to end under its key: the id is only which key and jitter
   * buffer to try.
   */
  setPeerSourceId(sourceId: number | undefined): void {
    this.#peerSourceId = sourceId;
  }
  #peerSourceId: number | undefined;

  /** Take media from this remote address (a pair that succeeded). */
  validate(remote: Endpoint): void {
    if (this.#validated.size < 64) this.#validated.add(endpointKey(remote));
  }

  get label(): string {
    const pair = this.#o.checks.nominated;
    return pair ? formatEndpoint(pair.remote) : 'direct (no pair yet)';
  }

  get state(): MediaTransportState {
    if (this.#closed) return 'closed';
    return this.#header !== undefined && this.#o.checks.nominated !== undefined && !this.#o.checks.stale ? 'open' : 'connecting';
  }

  maxPayload(): number {
    return this.state === 'open' ? DIRECT_MAX_PAYLOAD : 0;
  }

  send(payload: Uint8Array): boolean {
    const pair = this.#closed ? undefined : this.#o.checks.nominated;
    if (pair === undefined || this.#header === undefined || this.#o.checks.stale) {
      this.#stats.droppedClosed++;
      return false;
    }
    if (payload.byteLength > DIRECT_MAX_PAYLOAD) {
      this.#stats.droppedTooLarge++;
      throw new MediaPayloadTooLargeError(payload.byteLength, DIRECT_MAX_PAYLOAD, this.kind);
    }
    const to = { host: this.#o.socketAddress?.(pair.remote.address) ?? pair.remote.address, port: pair.remote.port };
    if (!this.#o.demux.send([this.#header, payload], to)) {
      this.#stats.droppedQueueFull++;
      return false;
    }
    this.#stats.sent++;
    this.#stats.bytesSent += payload.byteLength;
    return true;
  }

  onDatagram(handler: (payload: Uint8Array) => void): void {
    this.#handler = handler;
  }

  #receive(data: Buffer, from: UdpSource): void {
    if (this.#closed) return;
    let tag: Uint8Array;
    let tagged: Uint8Array;
    try {
      ({ tag, tagged } = decodeDirectMedia(data));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.drops.malformed++;
      return;
    }
    if (!sameBytes(tag, this.#o.receiveTag)) {
      this.drops.wrongTag++;
      return;
    }
    const address = this.#o.sourceAddress?.(from.address) ?? from.address;
    if (!this.#validated.has(endpointKey({ address, port: from.port }))) {
      this.drops.unknownSource++;
      return;
    }
    if (this.#peerSourceId !== undefined) {
      writeSourceId(tagged, 0, this.#peerSourceId);
    }
    this.#stats.received++;
    this.#stats.bytesReceived += tagged.byteLength;
    this.#lastReceivedAt = performance.now();
    try {
      this.#handler(tagged);
    } catch {
      // Handlers count their own errors.
    }
  }

  lastReceivedAt(): number | undefined {
    return this.#lastReceivedAt;
  }

  /** The selected pair's round trip, from its latest check. */
  rttMs(): number | undefined {
    return this.#closed ? undefined : this.#o.checks.nominated?.rttMs;
  }

  stats(): MediaTransportStats {
    return { ...this.#stats };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = () => undefined;
    this.#unregister();
  }
}

/** Bytes a direct packet adds to the media layer's datagram. */
export const DIRECT_MEDIA_OVERHEAD = DIRECT_MEDIA_HEADER_BYTES;

export function formatEndpoint(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

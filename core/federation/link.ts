/**
 * One relay link (docs/federation.md): a QUIC connection between two relays of a
 * federation, after the dialler proved its identity (./proof.ts). It carries
 *
 * - membership and room signals as signalling messages (core/wire/signal.ts `link-update`,
 *   `link-signal`), each on its own short stream. They are sent one at a time, each after
 *   the peer has handled the one before (requestNoReply waits for the peer to close the
 *   stream after handling it), so the peer applies them in order: a member's join can never
 *   overtake its leave. Messages wait in a bounded queue; a link whose queue overflows or
 *   whose peer stops answering is closed (and everything is relearned on the next link).
 * - media in QUIC datagrams as link frames (core/wire/link-frame.ts): the datagrams that
 *   leave toward the peer in one turn of the event loop are batched into as few frames as
 *   fit (one per turn at low load: no added wait).
 */
import type { QUICConnection } from '@matrixai/quic';
import type { DatagramChannel } from '../transport/datagrams.js';
import { requestNoReply } from '../transport/signal-stream.js';
import { MAX_DATAGRAM_BYTES } from '../wire/datagram.js';
import { encodeLinkFrame, LINK_ENTRY_OVERHEAD, LINK_FRAME_HEADER_BYTES, MAX_LINK_FRAME_ENTRIES, type LinkEntry } from '../wire/link-frame.js';
import { MAX_LINK_UPDATE_ENTRIES, type LinkSignalMessage, type LinkUpdateMessage } from '../wire/signal.js';
import { errorMessage } from '../errors.js';
import { TokenBucket } from '../net/rate-limit.js';

/** Why something on a link was dropped (wzp_relay_federation_drops_total{reason}). */
export type LinkDropReason =
  /** A link datagram that is not a valid link frame. */
  | 'malformed-frame'
  /** A frame entry whose source id the link never announced. */
  | 'unknown-source'
  /** A frame entry or broadcast room signal of a member this relay reaches over another link. */
  | 'not-on-route'
  /** A datagram that would go further but has no hops left. */
  | 'hop-limit'
  /** A datagram too large for the link's datagrams. */
  | 'too-large'
  /** A link frame the QUIC send queue would not take. */
  | 'queue-full'
  /** A membership entry that does not check. */
  | 'malformed-update'
  /** A membership entry over the link's member bound. */
  | 'member-limit'
  /** A membership entry for a room that is not one of this relay's global rooms. */
  | 'room-not-global'
  /** A remote member not admitted: the room is full here. */
  | 'room-full'
  /**
   * A remote member not admitted: its source id is another member's here (two relays of the
   * federation share a source-id prefix: give one another `source_id_prefix`), or it has this
   * relay's own prefix.
   */
  | 'source-id-collision'
  /** A link-signal that does not check (or names a room that is not global). */
  | 'malformed-signal'
  /** A link-signal from or to a member this relay does not know. */
  | 'unknown-member'
  /** A signalling message on a link that is not a link message. */
  | 'unexpected-signal'
  /** Room signals from a link over its rate (LINK_LIMITS.roomSignalsPerSecond). */
  | 'signal-rate'
  /** Cross-relay calls (./calls.ts): a presence query or answer, call signal or call room that does not check. */
  | 'malformed-call'
  /** Presence queries from a link over its rate (CALL_LIMITS.queriesPerSecond). */
  | 'query-rate'
  /** A presence query seen already (another path of a flood): answered once. */
  | 'query-duplicate'
  /** A presence answer for no query this relay asked or passed on. */
  | 'unknown-query'
  /** Call offers from a link over its rate, or over its calls in progress (CALL_LIMITS). */
  | 'offer-rate'
  /** A call signal for no call this relay routes over that link. */
  | 'unknown-call';
export const LINK_DROP_REASONS: readonly LinkDropReason[] = [
  'malformed-frame',
  'unknown-source',
  'not-on-route',
  'hop-limit',
  'too-large',
  'queue-full',
  'malformed-update',
  'member-limit',
  'room-not-global',
  'room-full',
  'source-id-collision',
  'malformed-signal',
  'unknown-member',
  'unexpected-signal',
  'signal-rate',
  'malformed-call',
  'query-rate',
  'query-duplicate',
  'unknown-query',
  'offer-rate',
  'unknown-call',
];

/** What each link may make the relay hold. */
export const LINK_LIMITS = {
  /** Remote members learned over one link. */
  membersPerLink: 4096,
  /** Membership entries and room signals waiting to be sent on one link; more closes the link. */
  queuedMessages: 16_384,
  /** Bytes of entries in one link-update (under the acceptor's MAX_REQUEST_PAYLOAD_BYTES). */
  updateBytes: 6 * 1024,
  /** A peer that has not handled a link message in this long is gone: the link closes. */
  messageTimeoutMs: 10_000,
  /** Link frames left queued in QUIC before stale ones are purged (as for members: ./rooms.ts). */
  queuedDatagrams: 64,
  /** Room signals a link may bring per second (burst: twice that); a member's own relay caps each member's far lower. */
  roomSignalsPerSecond: 500,
} as const;

/** Per peer relay, across its links (kept while the relay runs). */
export interface LinkCounters {
  /** The peer's fingerprint. */
  peer: string;
  /** Whether a link to it is up now, and which side dialled it. */
  up: boolean;
  direction?: 'in' | 'out';
  /** Links that came up, and went down. */
  ups: number;
  downs: number;
  /** Member datagrams received and sent on its links (entries of link frames), and link frames. */
  datagramsIn: number;
  datagramsOut: number;
  framesIn: number;
  framesOut: number;
  /** Bytes of link frames received and sent (the QUIC datagram payload). */
  bytesIn: number;
  bytesOut: number;
  /** Link messages (membership updates, room signals) received and sent. */
  messagesIn: number;
  messagesOut: number;
  /** Members learned over its current link. */
  members: number;
  drops: Record<LinkDropReason, number>;
}

export function emptyLinkCounters(peer: string): LinkCounters {
  return {
    peer,
    up: false,
    ups: 0,
    downs: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    messagesIn: 0,
    messagesOut: 0,
    members: 0,
    drops: Object.fromEntries(LINK_DROP_REASONS.map((r) => [r, 0])) as Record<LinkDropReason, number>,
  };
}

type Outgoing = { kind: 'entry'; entry: Record<string, unknown>; bytes: number } | { kind: 'signal'; msg: LinkSignalMessage };

export class Link {
  /** Members this link announced, by their source ids (the same on every relay: ./federation.ts). */
  readonly rx = new Map<number, unknown>();
  /** What this relay last announced on the link, per member id (to send changes only). */
  readonly told = new Map<string, string>();
  /** Members of each room whose chosen route is this link (media goes here only if > 0). */
  readonly roomRoutes = new Map<string, number>();
  /** The peer's room signals, rate-limited. */
  readonly roomSignals = new TokenBucket(LINK_LIMITS.roomSignalsPerSecond, 2 * LINK_LIMITS.roomSignalsPerSecond, performance.now());
  closed = false;
  private readonly queue: Outgoing[] = [];
  private sending = false;
  private batch: LinkEntry[] = [];
  private batchBytes = LINK_FRAME_HEADER_BYTES;
  private flushScheduled = false;
  private batchMax: number = MAX_DATAGRAM_BYTES;

  constructor(
    /** The peer relay's fingerprint. */
    readonly peer: string,
    /** The fingerprint of the relay that dialled this link (the lower one's link wins a tie). */
    readonly dialler: string,
    readonly direction: 'in' | 'out',
    readonly connection: QUICConnection,
    private readonly channel: DatagramChannel,
    readonly counters: LinkCounters,
    private readonly onFailure: (link: Link, reason: string) => void,
  ) {}

  /** Queue a membership entry (sent in order, batched into link-update messages). */
  sendEntry(entry: Record<string, unknown>): void {
    this.enqueue({ kind: 'entry', entry, bytes: Buffer.byteLength(JSON.stringify(entry)) });
  }

  sendSignal(msg: LinkSignalMessage): void {
    this.enqueue({ kind: 'signal', msg });
  }

  private enqueue(item: Outgoing): void {
    if (this.closed) return;
    if (this.queue.length >= LINK_LIMITS.queuedMessages) {
      this.onFailure(this, `more than ${LINK_LIMITS.queuedMessages} link messages waiting`);
      return;
    }
    this.queue.push(item);
    if (!this.sending) void this.pump();
  }

  /** Resolves once every queued message was handled by the peer (or the link failed). */
  async idle(): Promise<void> {
    while (this.sending && !this.closed) await new Promise((r) => setTimeout(r, 5));
  }

  private async pump(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const head = this.queue[0];
        let msg: LinkUpdateMessage | LinkSignalMessage;
        if (head.kind === 'signal') {
          this.queue.shift();
          msg = head.msg;
        } else {
          const entries: Record<string, unknown>[] = [];
          let bytes = 0;
          while (this.queue.length > 0 && this.queue[0].kind === 'entry' && entries.length < MAX_LINK_UPDATE_ENTRIES) {
            const next = this.queue[0] as Extract<Outgoing, { kind: 'entry' }>;
            if (entries.length > 0 && bytes + next.bytes > LINK_LIMITS.updateBytes) break;
            entries.push(next.entry);
            bytes += next.bytes;
            this.queue.shift();
          }
          msg = { type: 'link-update', entries };
        }
        const refused = await requestNoReply(this.connection, msg, { timeoutMs: LINK_LIMITS.messageTimeoutMs });
        this.counters.messagesOut++;
        if (refused) {
          this.onFailure(this, `the peer refused a ${msg.type}: ${refused.code}: ${refused.message}`);
          return;
        }
      }
    } catch (err) {
      this.onFailure(this, `sending a link message failed: ${errorMessage(err)}`);
    } finally {
      this.sending = false;
    }
  }

  /** Queue one member datagram for the peer, sent in this turn's link frame. */
  sendMedia(sourceId: number, hops: number, datagram: Uint8Array): void {
    if (this.closed) return;
    // The link's datagram limit, asked of QUIC once per batch (a native call).
    if (this.batch.length === 0) this.batchMax = Math.min(this.channel.maxPayload() ?? MAX_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES);
    const max = this.batchMax;
    const size = LINK_ENTRY_OVERHEAD + datagram.byteLength;
    if (LINK_FRAME_HEADER_BYTES + size > max) {
      this.counters.drops['too-large']++;
      return;
    }
    if (this.batchBytes + size > max || this.batch.length >= MAX_LINK_FRAME_ENTRIES) {
      this.flush();
      this.batchMax = max;
    }
    this.batch.push({ sourceId, hops, datagram });
    this.batchBytes += size;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Send what is batched as one link frame. */
  flush(): void {
    this.flushScheduled = false;
    const batch = this.batch;
    if (batch.length === 0 || this.closed) return;
    this.batch = [];
    this.batchBytes = LINK_FRAME_HEADER_BYTES;
    const frame = encodeLinkFrame(batch, this.batchMax);
    this.channel.purgeIfQueued(LINK_LIMITS.queuedDatagrams);
    if (this.channel.send(frame)) {
      this.counters.framesOut++;
      this.counters.datagramsOut += batch.length;
      this.counters.bytesOut += frame.byteLength;
    } else this.counters.drops['queue-full'] += batch.length;
  }

  /** Close the connection (the federation forgets what it learned on it first). */
  close(code = 0, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.batch = [];
    void this.connection.stop({ isApp: true, errorCode: code, reason: Buffer.from(reason), force: true }).catch(() => undefined);
  }
}

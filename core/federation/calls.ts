/**
 * Cross-relay direct calls (docs/federation.md, "Cross-relay calls"): presence found across
 * the federation, call signals routed to the callee's relay and back, and the call's relayed
 * room carried between the two relays for the call's lifetime.
 *
 * Everything here travels as entries of `link-update` messages (ordered per link, bounded,
 * acknowledged: ./link.ts), told apart from membership entries by `kind`:
 *
 * - `{kind: 'where', qid, fp, ttl}`: is identity `fp` registered on you or beyond? A relay
 *   asks it when a local caller offers a call to a fingerprint not registered here; it is
 *   flooded to every other link with `ttl` one lower (at most CALL_LIMITS.queryHops), once
 *   per query id, at most CALL_LIMITS.queriesPerSecond per link.
 * - `{kind: 'here', qid, fp, hops}`: the answer, back along the path the query came
 *   (each relay remembers which link asked), first answer only. Each relay on the way
 *   remembers, briefly (CALL_LIMITS.routeMs), that `fp` is `hops` away over that link.
 * - `{kind: 'call', callId, hops, signal}`: a call signal (offer, ringing, answer, reject,
 *   hangup, candidate-update) or `call-gone`, toward the relay of its recipient. The offer
 *   follows the remembered route; the relays on the way remember the call's two links and
 *   pass its later signals between them; the recipient's relay delivers them as if both
 *   parties were its own, through a peer that stands for the far party (RemoteParty).
 * - `{kind: 'call-room', callId, room}`: a party of the call joined `room` (its relayed
 *   media room) on its relay: the relays on the call's path carry that room over the call's
 *   links, and only those, until the call ends (Federation.carryCallRoom).
 *
 * Trust: a link's answer to a query is believed for routing only. The offers and answers are
 * signed by the parties' identities end to end and verified by the other party, as on one
 * relay; a relay never signs or vouches for anything. A lying link can lose a call (as a
 * relay can), not impersonate anyone.
 */
import { randomBytes } from 'node:crypto';
import { TokenBucket } from '../net/rate-limit.js';
import {
  CALL_ID_PATTERN,
  FINGERPRINT_PATTERN,
  decodeSignal,
  encodeSignal,
  isCallSignal,
  type CallSignalMessage,
  type KnownSignalMessage,
} from '../wire/signal.js';
import type { Presence, PresencePeer, RemotePresence } from '../relay/presence.js';
import type { Link, LinkDropReason } from './link.js';

/** What cross-relay calls may make a relay hold or do. */
export const CALL_LIMITS = {
  /** How far a presence query goes (relays), and the hop limit of call signals. */
  queryHops: 4,
  /** How long a caller's relay waits for an answer to its query (then: offline). */
  queryTimeoutMs: 1_500,
  /** Presence queries a link may bring per second (burst: twice that). */
  queriesPerSecond: 20,
  /** Query ids remembered (dedup and the way back), and for how long. */
  seenQueries: 4096,
  seenMs: 10_000,
  /** How long an answer is remembered as a route (and answered from), and how many. */
  routeMs: 5_000,
  routes: 4096,
  /** Call offers a link may bring per second (burst: twice that). */
  offersPerSecond: 10,
  /** Calls routed over one link at once (ringing or answered, ending or passing). */
  callsPerLink: 256,
  /** Lookups of a caller's relay waiting at once. */
  lookups: 256,
  /** A call not answered in this long is forgotten by the relays it passes (as presence.ts). */
  ringingMs: 150_000,
} as const;

const QID_RE = /^[0-9a-f]{16}$/;
const ROOM_ID_RE = /^[0-9a-f]{32}$/;

/** The relay a call party is on, as presence here sees it: its signals go over `link`. */
class RemoteParty implements PresencePeer {
  readonly remote = true;
  readonly label: string;
  readonly source: string;
  constructor(
    private readonly calls: FederatedCalls,
    readonly link: Link,
    readonly callId: string,
    readonly fingerprint: string,
  ) {
    this.label = `relay ${link.peer.slice(0, 19)} (call ${callId.slice(0, 8)})`;
    this.source = `relay ${link.peer}`;
  }
  observed(): { address: string; port: number } {
    // Not used: the party's own relay added its relayCandidate (presence.ts keeps it).
    return { address: '0.0.0.0', port: 0 };
  }
  push(frame: Uint8Array): void {
    this.calls.sendFrame(this.link, this.callId, frame);
  }
}

interface Seen {
  /** The link that asked (undefined: this relay's own lookup). */
  from: Link | undefined;
  fp: string;
  expires: number;
  answered: boolean;
}

interface Transit {
  /** Toward the caller, and toward the callee. */
  a: Link;
  b: Link;
  caller: string;
  callee: string;
  answered: boolean;
  expires: number;
  room?: string;
}

interface End {
  party: RemoteParty;
  room?: string;
}

interface PerLink {
  queries: TokenBucket;
  offers: TokenBucket;
  calls: number;
}

export interface FederatedCallsOptions {
  presence: Presence;
  links(): Iterable<Link>;
  /** Carry (or stop carrying, `room` undefined) a call's room over these links. */
  carryCallRoom(callId: string, room: string | undefined, links: Link[]): void;
  /** Whether a call's room may be carried (not a restricted or global room here). */
  callRoomAllowed(room: string): boolean;
  /** Whether `room` has members on this relay. */
  roomInUse(room: string): boolean;
  /** The relay is draining: no new calls are delivered here (as for its own clients' offers). */
  draining?(): boolean;
  /** Announce this relay's members of a carried room on `link` again (the other side just started carrying it). */
  reannounce(room: string, link: Link): void;
}

export interface FederatedCallsStats {
  /** Presence queries this relay asked, answered (found), and that timed out. */
  lookups: number;
  found: number;
  notFound: number;
  /** Calls this relay holds a party of whose other party is on another relay, and calls passing through. */
  calls: number;
  transit: number;
}

export class FederatedCalls implements RemotePresence {
  private readonly seen = new Map<string, Seen>();
  private readonly waiting = new Map<string, (r: { link: Link; hops: number } | undefined) => void>();
  private readonly byFp = new Map<string, Promise<{ link: Link; hops: number } | undefined>>();
  private readonly routes = new Map<string, { link: Link; hops: number; expires: number }>();
  private readonly ends = new Map<string, End>();
  private readonly transit = new Map<string, Transit>();
  private readonly perLink = new WeakMap<Link, PerLink>();
  private readonly counters = { lookups: 0, found: 0, notFound: 0 };

  constructor(private readonly opts: FederatedCallsOptions) {}

  get stats(): FederatedCallsStats {
    return { ...this.counters, calls: this.ends.size, transit: this.transit.size };
  }

  private of(link: Link): PerLink {
    let p = this.perLink.get(link);
    if (!p) {
      const now = performance.now();
      p = {
        queries: new TokenBucket(CALL_LIMITS.queriesPerSecond, 2 * CALL_LIMITS.queriesPerSecond, now),
        offers: new TokenBucket(CALL_LIMITS.offersPerSecond, 2 * CALL_LIMITS.offersPerSecond, now),
        calls: 0,
      };
      this.perLink.set(link, p);
    }
    return p;
  }

  private hasLinks(): boolean {
    for (const l of this.opts.links()) if (!l.closed) return true;
    return false;
  }

  // --- the caller's relay ------------------------------------------------------------

  /** Presence asks: where is this offer's callee? (RemotePresence) */
  async locate(msg: Extract<CallSignalMessage, { type: 'offer' }>): Promise<PresencePeer | undefined> {
    if (!this.hasLinks() || this.ends.has(msg.callId) || this.transit.has(msg.callId)) return undefined;
    const route = await this.find(msg.to);
    if (route === undefined || route.link.closed) return undefined;
    const per = this.of(route.link);
    if (per.calls >= CALL_LIMITS.callsPerLink || this.ends.has(msg.callId) || this.transit.has(msg.callId)) return undefined;
    per.calls++;
    const party = new RemoteParty(this, route.link, msg.callId, msg.to);
    this.ends.set(msg.callId, { party });
    return party;
  }

  private find(fp: string): Promise<{ link: Link; hops: number } | undefined> {
    const r = this.routes.get(fp);
    if (r && r.expires > performance.now() && !r.link.closed) return Promise.resolve({ link: r.link, hops: r.hops });
    const pending = this.byFp.get(fp);
    if (pending) return pending;
    if (this.waiting.size >= CALL_LIMITS.lookups) return Promise.resolve(undefined);
    this.counters.lookups++;
    const qid = randomBytes(8).toString('hex');
    if (!this.remember(qid, { from: undefined, fp, expires: performance.now() + CALL_LIMITS.seenMs, answered: false })) return Promise.resolve(undefined);
    const p = new Promise<{ link: Link; hops: number } | undefined>((resolve) => {
      // Not unref'd: a caller waits for it (stop() ends every lookup, clearing its timer).
      const timer = setTimeout(() => done(undefined), CALL_LIMITS.queryTimeoutMs);
      const done = (r: { link: Link; hops: number } | undefined): void => {
        clearTimeout(timer);
        this.waiting.delete(qid);
        this.byFp.delete(fp);
        if (r) this.counters.found++;
        else this.counters.notFound++;
        resolve(r);
      };
      this.waiting.set(qid, done);
    });
    this.byFp.set(fp, p);
    for (const link of this.opts.links()) if (!link.closed) link.sendEntry({ kind: 'where', qid, fp, ttl: CALL_LIMITS.queryHops });
    return p;
  }

  /** Bounded: expired entries go first; when all are fresh, nothing new is remembered. */
  private remember(qid: string, s: Seen): boolean {
    if (this.seen.size >= CALL_LIMITS.seenQueries) {
      const now = performance.now();
      for (const [k, v] of this.seen) if (v.expires <= now) this.seen.delete(k);
      if (this.seen.size >= CALL_LIMITS.seenQueries) return false;
    }
    this.seen.set(qid, s);
    return true;
  }

  // --- what links send -----------------------------------------------------------------

  /** A `kind` entry of a link-update (Federation.onLinkSignal). */
  onEntry(link: Link, e: Record<string, unknown>): void {
    const drop = (reason: LinkDropReason): void => void link.counters.drops[reason]++;
    switch (e.kind) {
      case 'where':
        return this.onWhere(link, e, drop);
      case 'here':
        return this.onHere(link, e, drop);
      case 'call':
        return this.onCall(link, e, drop);
      case 'call-room':
        return this.onCallRoom(link, e, drop);
      default:
        return drop('malformed-call');
    }
  }

  private onWhere(link: Link, e: Record<string, unknown>, drop: (r: LinkDropReason) => void): void {
    const { qid, fp, ttl } = e;
    if (typeof qid !== 'string' || !QID_RE.test(qid) || typeof fp !== 'string' || !FINGERPRINT_PATTERN.test(fp)) return drop('malformed-call');
    if (!Number.isInteger(ttl) || (ttl as number) < 1 || (ttl as number) > 16) return drop('malformed-call');
    if (!this.of(link).queries.take(performance.now())) return drop('query-rate');
    if (this.seen.has(qid)) return drop('query-duplicate');
    const s: Seen = { from: link, fp, expires: performance.now() + CALL_LIMITS.seenMs, answered: false };
    if (!this.remember(qid, s)) return drop('query-rate');
    if (this.opts.presence.isRegistered(fp)) {
      s.answered = true;
      link.sendEntry({ kind: 'here', qid, fp, hops: 1 });
      return;
    }
    const r = this.routes.get(fp);
    if (r && r.link !== link && !r.link.closed && r.expires > performance.now() && r.hops < 16) {
      s.answered = true;
      link.sendEntry({ kind: 'here', qid, fp, hops: r.hops + 1 });
      return;
    }
    // Never further than this relay's own bound, whatever the asker said.
    const next = Math.min(ttl as number, CALL_LIMITS.queryHops) - 1;
    if (next < 1) return;
    for (const other of this.opts.links()) if (other !== link && !other.closed) other.sendEntry({ kind: 'where', qid, fp, ttl: next });
  }

  private onHere(link: Link, e: Record<string, unknown>, drop: (r: LinkDropReason) => void): void {
    const { qid, fp, hops } = e;
    if (typeof qid !== 'string' || !QID_RE.test(qid) || typeof fp !== 'string' || !FINGERPRINT_PATTERN.test(fp)) return drop('malformed-call');
    if (!Number.isInteger(hops) || (hops as number) < 1 || (hops as number) > 16) return drop('malformed-call');
    const s = this.seen.get(qid);
    // Only an answer to what was asked, by a link it was asked of (never the asker's own link).
    if (!s || s.fp !== fp || s.from === link) return drop('unknown-query');
    const now = performance.now();
    const old = this.routes.get(fp);
    if (!old || old.expires <= now || old.link.closed || (hops as number) < old.hops) {
      if (old || this.routes.size < CALL_LIMITS.routes) this.routes.set(fp, { link, hops: hops as number, expires: now + CALL_LIMITS.routeMs });
      else {
        for (const [k, v] of this.routes) if (v.expires <= now) this.routes.delete(k);
        if (this.routes.size < CALL_LIMITS.routes) this.routes.set(fp, { link, hops: hops as number, expires: now + CALL_LIMITS.routeMs });
      }
    }
    if (s.answered) return;
    s.answered = true;
    if (s.from === undefined) this.waiting.get(qid)?.({ link, hops: hops as number });
    else if (!s.from.closed) s.from.sendEntry({ kind: 'here', qid, fp, hops: (hops as number) + 1 });
  }

  private onCall(link: Link, e: Record<string, unknown>, drop: (r: LinkDropReason) => void): void {
    const { callId, hops, signal } = e;
    if (typeof callId !== 'string' || !CALL_ID_PATTERN.test(callId)) return drop('malformed-call');
    if (!Number.isInteger(hops) || (hops as number) < 1 || (hops as number) > 16) return drop('malformed-call');
    const msg = checkSignal(signal);
    if (msg === undefined || msg.callId !== callId) return drop('malformed-call');
    if (msg.type === 'offer') return this.onOffer(link, msg, hops as number, drop);
    const end = this.ends.get(callId);
    if (end) {
      if (end.party.link !== link) return drop('unknown-call');
      if (msg.type === 'call-gone') return this.release(callId, true);
      // Presence checks it is a signal between the call's parties, and routes it.
      const reply = this.opts.presence.route(end.party, msg);
      if (!(reply instanceof Promise) && reply.type === 'error') drop('unknown-call');
      return;
    }
    const t = this.transit.get(callId);
    if (!t || (t.a !== link && t.b !== link)) return drop('unknown-call');
    const out = t.a === link ? t.b : t.a;
    if (msg.type === 'answer') {
      t.answered = true;
    }
    if (hops as number <= 1) drop('hop-limit');
    else if (!out.closed) out.sendEntry({ kind: 'call', callId, hops: (hops as number) - 1, signal });
    if (msg.type === 'hangup' || msg.type === 'reject' || msg.type === 'call-gone') this.endTransit(callId, t);
  }

  private onOffer(link: Link, msg: Extract<CallSignalMessage, { type: 'offer' }>, hops: number, drop: (r: LinkDropReason) => void): void {
    const per = this.of(link);
    if (!per.offers.take(performance.now()) || per.calls >= CALL_LIMITS.callsPerLink) return drop('offer-rate');
    if (this.ends.has(msg.callId) || this.transit.has(msg.callId) || this.opts.presence.hasCall(msg.callId)) return drop('unknown-call');
    const gone = (): void => link.sendEntry({ kind: 'call', callId: msg.callId, hops: CALL_LIMITS.queryHops, signal: { type: 'call-gone', callId: msg.callId, fingerprint: msg.to } });
    if (this.opts.draining?.() === true) return gone();
    if (this.opts.presence.isRegistered(msg.to)) {
      per.calls++;
      const party = new RemoteParty(this, link, msg.callId, msg.from);
      this.ends.set(msg.callId, { party });
      this.opts.presence.adoptRemote(party, msg.from);
      const settle = (r: KnownSignalMessage): void => {
        if (r.type !== 'routed') {
          this.release(msg.callId, false);
          if (!link.closed) gone();
        }
      };
      const reply = this.opts.presence.route(party, msg);
      if (reply instanceof Promise) void reply.then(settle);
      else settle(reply);
      return;
    }
    const r = this.routes.get(msg.to);
    // A route a little older than the caller's relay would still use (its answer passed here first).
    if (!r || r.link === link || r.link.closed || r.expires + CALL_LIMITS.routeMs <= performance.now() || hops <= 1) return gone();
    const perOut = this.of(r.link);
    if (perOut.calls >= CALL_LIMITS.callsPerLink) return gone();
    per.calls++;
    perOut.calls++;
    const t: Transit = { a: link, b: r.link, caller: msg.from, callee: msg.to, answered: false, expires: performance.now() + CALL_LIMITS.ringingMs };
    this.transit.set(msg.callId, t);
    r.link.sendEntry({ kind: 'call', callId: msg.callId, hops: hops - 1, signal: msg });
    this.sweepSoon();
  }

  private onCallRoom(link: Link, e: Record<string, unknown>, drop: (r: LinkDropReason) => void): void {
    const { callId, room } = e;
    if (typeof callId !== 'string' || !CALL_ID_PATTERN.test(callId) || typeof room !== 'string' || !ROOM_ID_RE.test(room)) return drop('malformed-call');
    const end = this.ends.get(callId);
    if (end) {
      // Only for an answered call (before that, there is no room to carry).
      if (end.party.link !== link || !this.opts.presence.isAnswered(callId)) return drop('unknown-call');
      if (end.room === room) return this.opts.reannounce(room, link);
      // The far side's word is taken for a room nobody is in here; a room in use here is
      // carried only if the party here is in it itself (it joined while the call rang: a
      // caller does, docs/direct-calls.md) or once it joins (localJoined), so a lying relay
      // cannot pull the members of a room of this relay over to its side.
      if (end.room === undefined && (!this.opts.roomInUse(room) || this.opts.presence.localPartyRoom(callId) === room)) this.setEndRoom(callId, end, room);
      return;
    }
    const t = this.transit.get(callId);
    if (!t || (t.a !== link && t.b !== link) || !t.answered) return drop('unknown-call');
    if (t.room !== undefined && t.room !== room) return drop('malformed-call');
    if (t.room === undefined) {
      if (!this.opts.callRoomAllowed(room) || this.opts.roomInUse(room)) return;
      t.room = room;
      this.opts.carryCallRoom(callId, room, [t.a, t.b]);
    } else this.opts.reannounce(room, link);
    const out = t.a === link ? t.b : t.a;
    if (!out.closed) out.sendEntry({ kind: 'call-room', callId, room });
  }

  private setEndRoom(callId: string, end: End, room: string): void {
    // One room per call: the first either side names (the parties derive the same one).
    if (end.room !== undefined || !this.opts.callRoomAllowed(room)) return;
    end.room = room;
    this.opts.carryCallRoom(callId, room, [end.party.link]);
  }

  /**
   * A local connection joined `room`: if it is a party of answered calls with a party on
   * another relay, the room is that call's relayed room: carried over the call's link, and
   * the relays on the way told.
   */
  localJoined(peer: PresencePeer, room: string): void {
    for (const { callId, other } of this.opts.presence.remoteCallsOf(peer)) {
      const end = this.ends.get(callId);
      if (!end || end.party !== other || end.room !== undefined || !this.opts.callRoomAllowed(room)) continue;
      // Told first: the link's next entries announce this relay's members of the room, which
      // the other side takes only for a room it carries (entries are handled in order).
      if (!end.party.link.closed) end.party.link.sendEntry({ kind: 'call-room', callId, room });
      this.setEndRoom(callId, end, room);
    }
  }

  /** RemoteParty.push: a presence frame for the far party goes over its link. */
  sendFrame(link: Link, callId: string, frame: Uint8Array): void {
    if (link.closed || !this.ends.has(callId)) return;
    let signal: unknown;
    try {
      signal = decodeSignal(frame);
    } catch {
      return;
    }
    link.sendEntry({ kind: 'call', callId, hops: CALL_LIMITS.queryHops, signal });
  }

  /** Presence ended a call (RemotePresence). */
  callEnded(callId: string): void {
    this.release(callId, false);
  }

  /**
   * Forget this relay's end of a call. `tell`: the far side went (call-gone from the link, or
   * the link dropped): the local party is told, as when a connection on one relay closes.
   */
  private release(callId: string, tell: boolean): void {
    const end = this.ends.get(callId);
    if (!end) return;
    this.ends.delete(callId);
    this.of(end.party.link).calls--;
    if (end.room !== undefined) this.opts.carryCallRoom(callId, undefined, [end.party.link]);
    // With `tell`, presence pushes call-gone to the local party; either way it forgets the stand-in.
    if (tell) this.opts.presence.disconnect(end.party);
    else queueMicrotask(() => this.opts.presence.disconnect(end.party));
  }

  private endTransit(callId: string, t: Transit): void {
    if (this.transit.get(callId) !== t) return;
    this.transit.delete(callId);
    this.of(t.a).calls--;
    this.of(t.b).calls--;
    if (t.room !== undefined) this.opts.carryCallRoom(callId, undefined, [t.a, t.b]);
  }

  private sweepTimer: NodeJS.Timeout | undefined;

  /** Calls passing through that nobody answered are forgotten after CALL_LIMITS.ringingMs. */
  private sweepSoon(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      const now = performance.now();
      for (const [id, t] of this.transit) if (!t.answered && t.expires <= now) this.endTransit(id, t);
      if (this.transit.size > 0) this.sweepSoon();
    }, 5_000);
    this.sweepTimer.unref();
  }

  /** A link dropped: the calls over it end (the parties here are told), routes through it are forgotten. */
  linkDown(link: Link): void {
    for (const [id, end] of [...this.ends]) if (end.party.link === link) this.release(id, true);
    for (const [id, t] of [...this.transit]) {
      if (t.a !== link && t.b !== link) continue;
      const out = t.a === link ? t.b : t.a;
      // The party beyond the dead link is gone, as far as the other side can tell.
      const gone = t.a === link ? t.caller : t.callee;
      if (!out.closed) out.sendEntry({ kind: 'call', callId: id, hops: CALL_LIMITS.queryHops, signal: { type: 'call-gone', callId: id, fingerprint: gone } });
      this.endTransit(id, t);
    }
    for (const [fp, r] of [...this.routes]) if (r.link === link) this.routes.delete(fp);
  }

  stop(): void {
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const done of [...this.waiting.values()]) done(undefined);
  }
}

/** A call signal or call-gone as the wire format checks it (./signal.ts), or undefined. */
function checkSignal(signal: unknown): CallSignalMessage | Extract<KnownSignalMessage, { type: 'call-gone' }> | undefined {
  if (typeof signal !== 'object' || signal === null || Array.isArray(signal)) return undefined;
  let msg: KnownSignalMessage;
  try {
    // Through the same decoder as a client's signal: every field checked.
    msg = decodeSignal(encodeSignal(signal as KnownSignalMessage)) as KnownSignalMessage;
  } catch {
    return undefined;
  }
  if (isCallSignal(msg) || msg.type === 'call-gone') return msg;
  return undefined;
}

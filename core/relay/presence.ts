/**
 * Presence and call routing on a relay (docs/direct-calls.md).
 *
 * Presence: a connection asks for a challenge (a fresh random nonce, kept for that connection
 * only) and registers as an identity by signing it, bound to this relay's certificate
 * fingerprint (core/crypto/call-signal.ts). The table maps each fingerprint to one connection:
 * a newer registration of the same identity replaces the older, which is told
 * (`presence-replaced`). A registration ends when its connection closes.
 *
 * Routing: call signals (offer, ringing, answer, reject, hangup, candidate-update) from a
 * registered connection, whose `from` is the identity it registered, go to the connection
 * registered as `to`; the sender is answered `routed`, or `offline` when nobody is registered
 * as `to`. The relay does not verify call signals' signatures (the recipient does: the relay
 * is not trusted with them), but it tracks each call it routed an offer for, so signals for
 * calls it does not know, or between other parties, are refused.
 *
 * Cross-wiring: to a forwarded offer or answer the relay adds `relayCandidate`, the sender's
 * address as it sees its connection (server-reflexive), unless the sender asked to stay
 * relayed (`relayOnly`). It is outside the signature: receivers treat it as a hint.
 *
 * Every resource has a bound, a counter and a refusal (./limits.ts): registrations in all and
 * per source address, offers per connection, calls waiting for one callee, calls tracked.
 */
import { randomBytes } from 'node:crypto';
import { TokenBucket } from '../net/rate-limit.js';
import { registrationProblem } from '../crypto/call-signal.js';
import {
  encodeSignal,
  type CallSignalMessage,
  type KnownSignalMessage,
  type RegisterMessage,
} from '../wire/signal.js';
import type { Candidate } from '../wire/candidate.js';
import type { RefusalReason, RelayLimits } from './limits.js';

/** How long the relay keeps a call nobody answered (longer than any caller rings). */
export const PENDING_CALL_TTL_MS = 150_000;
/** Calls one connection may be a party of at once (ringing or answered). */
export const MAX_CALLS_PER_CONNECTION = 16;

/** A connection as presence sees it. */
export interface PresencePeer {
  /** For logs: its address. */
  readonly label: string;
  /** The source address it counts toward (IPv4 address or IPv6 /64). */
  readonly source: string;
  /** Its address as the relay sees it (for cross-wiring). */
  observed(): { address: string; port: number };
  /** Deliver an encoded signal frame (a relay push). */
  push(frame: Uint8Array): void;
  /**
   * It stands for a party on another relay of the federation (core/federation/calls.ts): the
   * `relayCandidate` of its offers and answers was added by that party's own relay and is
   * passed on as it is.
   */
  readonly remote?: boolean;
  /** The room it is in now, if any (a relay connection's; for cross-relay calls' rooms). */
  room?(): string | undefined;
}

/**
 * Callees registered on other relays (core/federation/calls.ts). `locate` is asked for an
 * offer whose callee is not registered here: it answers the peer that carries the call's
 * signals to the callee's relay, or undefined (offline).
 */
export interface RemotePresence {
  locate(msg: Extract<CallSignalMessage, { type: 'offer' }>): Promise<PresencePeer | undefined>;
  /** A call this relay tracked ended (told after the current turn). */
  callEnded(callId: string): void;
  /** A local party of an answered call with a party elsewhere is in `room` (the call's relayed room, if it is one). */
  localJoined(peer: PresencePeer, room: string): void;
}

interface PeerState {
  challenge?: string;
  /** The identity this connection proved (for its call signals). */
  fingerprint?: string;
  /** It also takes that identity's incoming calls (it is in the registrations table). */
  receivesCalls: boolean;
  offers: TokenBucket;
  calls: Set<string>;
}

interface RelayCall {
  id: string;
  caller: string;
  callee: string;
  callerPeer: PresencePeer;
  calleePeer: PresencePeer;
  state: 'ringing' | 'answered';
  timer?: NodeJS.Timeout;
}

export interface PresenceStats {
  registrationsOpen: number;
  registrationsTotal: number;
  /** Registrations that replaced an older one of the same identity. */
  registrationsReplaced: number;
  /** Call signals delivered to their recipient. */
  callSignalsRouted: number;
  /** Call signals answered `offline` (nobody registered as the recipient). */
  callSignalsOffline: number;
  /** Calls tracked now (ringing or answered). */
  callsOpen: number;
}

export interface PresenceOptions {
  limits: RelayLimits;
  /** This relay's certificate fingerprint (registrations are bound to it). */
  relayFingerprint: string;
  /** Count and report a refusal (the relay's `refused` metrics). */
  refuse(peer: PresencePeer, reason: RefusalReason, detail: string): void;
  onRegistered?(peer: PresencePeer, fingerprint: string, replaced: boolean): void;
  /** Relay federation: callees on other relays (asked only when a link is up). */
  remote?(): RemotePresence | undefined;
}

type Reply = KnownSignalMessage;

export class Presence {
  private readonly registrations = new Map<string, PresencePeer>();
  private readonly states = new Map<PresencePeer, PeerState>();
  private readonly bySource = new Map<string, number>();
  private readonly calls = new Map<string, RelayCall>();
  private readonly pendingByCallee = new Map<string, number>();
  private readonly counters = { registrationsTotal: 0, registrationsReplaced: 0, callSignalsRouted: 0, callSignalsOffline: 0 };

  constructor(private readonly opts: PresenceOptions) {}

  get stats(): PresenceStats {
    return { ...this.counters, registrationsOpen: this.registrations.size, callsOpen: this.calls.size };
  }

  /**
   * The limits changed (Relay.setLimits: `opts.limits` is the relay's own object, changed in
   * place, and every other limit here is read where it is used): give each connection's offer
   * budget the new rate and burst.
   */
  limitsChanged(): void {
    const l = this.opts.limits;
    for (const s of this.states.values()) s.offers.reconfigure(l.offersPerMinute / 60, l.offerBurst);
  }

  /**
   * The identity a connection proved, if any (it keeps it when a newer registration takes its
   * incoming calls: it may still hang up the calls it has).
   */
  fingerprintOf(peer: PresencePeer): string | undefined {
    return this.states.get(peer)?.fingerprint;
  }

  /** Whether a connection takes `fingerprint`'s calls here. */
  isRegistered(fingerprint: string): boolean {
    return this.registrations.has(fingerprint);
  }

  /** Whether this relay tracks call `callId`. */
  hasCall(callId: string): boolean {
    return this.calls.has(callId);
  }

  /**
   * A peer standing for a party on another relay (`remote`) signals as `fingerprint`. Its
   * relay's claim is taken for routing only: the signals are signed end to end, and the party
   * here verifies them.
   */
  adoptRemote(peer: PresencePeer, fingerprint: string): void {
    this.state(peer).fingerprint = fingerprint;
  }

  /** Whether call `callId` is tracked here and answered. */
  isAnswered(callId: string): boolean {
    return this.calls.get(callId)?.state === 'answered';
  }

  /** The room call `callId`'s party on this relay is in now, if any (a caller joins while it rings). */
  localPartyRoom(callId: string): string | undefined {
    const call = this.calls.get(callId);
    if (!call) return undefined;
    const local = call.callerPeer.remote === true ? call.calleePeer : call.callerPeer;
    return local.remote === true ? undefined : local.room?.();
  }

  /** The answered calls of `peer` whose other party is on another relay: their ids and that party. */
  remoteCallsOf(peer: PresencePeer): { callId: string; other: PresencePeer }[] {
    const out: { callId: string; other: PresencePeer }[] = [];
    for (const id of this.states.get(peer)?.calls ?? []) {
      const call = this.calls.get(id);
      if (!call || call.state !== 'answered') continue;
      const other = call.callerPeer === peer ? call.calleePeer : call.callerPeer;
      if (other.remote === true) out.push({ callId: id, other });
    }
    return out;
  }

  private state(peer: PresencePeer): PeerState {
    let s = this.states.get(peer);
    if (!s) {
      const l = this.opts.limits;
      s = { offers: new TokenBucket(l.offersPerMinute / 60, l.offerBurst, performance.now()), calls: new Set(), receivesCalls: false };
      this.states.set(peer, s);
    }
    return s;
  }

  /** A fresh nonce for this connection (replacing any earlier one). */
  challenge(peer: PresencePeer): Reply {
    const nonce = randomBytes(32).toString('hex');
    this.state(peer).challenge = nonce;
    return { type: 'challenge', nonce };
  }

  register(peer: PresencePeer, msg: RegisterMessage): Reply {
    const s = this.state(peer);
    const problem = registrationProblem(msg, this.opts.relayFingerprint, s.challenge);
    if (problem !== undefined) return this.refusal(peer, 'registration-invalid', 'bad-registration', `registration refused: ${problem}`);
    // One use per nonce: a registration seen on the wire cannot be sent again on this connection.
    s.challenge = undefined;
    const fingerprint = msg.fingerprint;
    // A connection proving another identity (or changing its mind about calls) starts afresh.
    if (s.fingerprint !== undefined && (s.fingerprint !== fingerprint || msg.receiveCalls === false)) this.unregister(peer, false);
    if (msg.receiveCalls === false) {
      // Proof only: its call signals may say `from` this identity; it takes no incoming calls.
      s.fingerprint = fingerprint;
      this.counters.registrationsTotal++;
      return { type: 'registered', fingerprint };
    }
    const current = this.registrations.get(fingerprint);
    if (current === peer) return { type: 'registered', fingerprint };
    const l = this.opts.limits;
    // The same identity coming back replaces its old registration: it does not count twice.
    const fromSource = (this.bySource.get(peer.source) ?? 0) - (current?.source === peer.source ? 1 : 0);
    if (fromSource >= l.registrationsPerSource) {
      return this.refusal(peer, 'source-registrations', 'rate-limited', `too many identities registered from ${peer.source} (this relay allows ${l.registrationsPerSource})`);
    }
    if (current === undefined && this.registrations.size >= l.registrations) {
      return this.refusal(peer, 'registrations-full', 'rate-limited', `this relay holds its maximum of ${l.registrations} registrations`);
    }
    if (current !== undefined) {
      this.unregister(current, true);
      this.counters.registrationsReplaced++;
      current.push(encodeSignal({ type: 'presence-replaced', fingerprint }));
    }
    this.registrations.set(fingerprint, peer);
    s.fingerprint = fingerprint;
    s.receivesCalls = true;
    this.bySource.set(peer.source, (this.bySource.get(peer.source) ?? 0) + 1);
    this.counters.registrationsTotal++;
    this.opts.onRegistered?.(peer, fingerprint, current !== undefined);
    return { type: 'registered', fingerprint };
  }

  /** Route one call signal from `peer` (see the top of this file). */
  route(peer: PresencePeer, msg: CallSignalMessage): Reply | Promise<Reply> {
    const from = this.fingerprintOf(peer);
    if (from === undefined || msg.from !== from) {
      return this.refusal(peer, 'not-registered', 'not-registered', from === undefined ? 'register before signalling a call' : `this connection is registered as ${from}, not ${msg.from}`);
    }
    if (msg.type === 'offer') return this.offer(peer, msg);
    const call = this.calls.get(msg.callId);
    if (!call || !((call.caller === msg.from && call.callee === msg.to) || (call.callee === msg.from && call.caller === msg.to))) {
      return this.refusal(peer, 'unknown-call', 'unknown-call', 'no such call between these parties on this relay');
    }
    // To the connection that party has the call on: the caller's that offered, the callee's the offer went to.
    const target = msg.to === call.caller ? call.callerPeer : call.calleePeer;
    const answeredNow = msg.type === 'answer' && call.state === 'ringing';
    if (answeredNow) {
      call.state = 'answered';
      this.unpend(call);
    }
    if (msg.type === 'reject' || msg.type === 'hangup') this.endCall(call);
    if (!this.states.has(target)) return this.offline(msg);
    const reply = this.deliver(peer, target, msg);
    // A callee joins the call's room before it answers (docs/direct-calls.md): with the caller
    // on another relay, the room is carried from now on, as for a join after the answer (the
    // far relay takes the room's name only once the answer, sent first, has reached it).
    const room = answeredNow && target.remote === true && peer.remote !== true ? peer.room?.() : undefined;
    if (room !== undefined) this.opts.remote?.()?.localJoined(peer, room);
    return reply;
  }

  private offer(peer: PresencePeer, msg: Extract<CallSignalMessage, { type: 'offer' }>): Reply | Promise<Reply> {
    const s = this.state(peer);
    const l = this.opts.limits;
    if (!s.offers.take(performance.now())) {
      return this.refusal(peer, 'offer-rate', 'rate-limited', `more than ${l.offerBurst} call offers at once, or ${l.offersPerMinute} a minute`);
    }
    if (this.calls.has(msg.callId)) return this.refusal(peer, 'unknown-call', 'unknown-call', 'that call id is in use');
    const target = this.registrations.get(msg.to);
    if (target !== undefined) return this.place(peer, target, msg);
    // Not here: maybe on another relay of the federation (never asked for a party that is remote itself).
    const remote = peer.remote === true ? undefined : this.opts.remote?.();
    if (remote === undefined) return this.offline(msg);
    if (this.calls.size >= l.calls || s.calls.size >= MAX_CALLS_PER_CONNECTION) {
      return this.refusal(peer, 'calls-full', 'rate-limited', 'too many calls at once on this relay or for one of the parties');
    }
    return remote.locate(msg).then((far) => {
      if (far === undefined) return this.offline(msg);
      let reply: Reply;
      if (!this.states.has(peer)) reply = this.offline(msg);
      else if (this.calls.has(msg.callId)) reply = this.refusal(peer, 'unknown-call', 'unknown-call', 'that call id is in use');
      else {
        this.adoptRemote(far, msg.to);
        reply = this.place(peer, far, msg);
      }
      // Not placed (nothing was sent to the far relay): its stand-in is released.
      if (reply.type !== 'routed') remote.callEnded(msg.callId);
      return reply;
    });
  }

  private place(peer: PresencePeer, target: PresencePeer, msg: Extract<CallSignalMessage, { type: 'offer' }>): Reply {
    const s = this.state(peer);
    const l = this.opts.limits;
    if ((this.pendingByCallee.get(msg.to) ?? 0) >= l.pendingCallsPerCallee) {
      return this.refusal(peer, 'pending-calls', 'rate-limited', `the callee has ${l.pendingCallsPerCallee} calls waiting for an answer already`);
    }
    const targetState = this.state(target);
    if (this.calls.size >= l.calls || s.calls.size >= MAX_CALLS_PER_CONNECTION || targetState.calls.size >= MAX_CALLS_PER_CONNECTION) {
      return this.refusal(peer, 'calls-full', 'rate-limited', 'too many calls at once on this relay or for one of the parties');
    }
    const call: RelayCall = { id: msg.callId, caller: msg.from, callee: msg.to, callerPeer: peer, calleePeer: target, state: 'ringing' };
    call.timer = setTimeout(() => {
      if (call.state === 'ringing') this.endCall(call);
    }, PENDING_CALL_TTL_MS);
    call.timer.unref();
    this.calls.set(call.id, call);
    this.pendingByCallee.set(call.callee, (this.pendingByCallee.get(call.callee) ?? 0) + 1);
    s.calls.add(call.id);
    targetState.calls.add(call.id);
    return this.deliver(peer, target, msg);
  }

  /** Push `msg` to `target`, cross-wired for offers and answers; the sender is told it went. */
  private deliver(sender: PresencePeer, target: PresencePeer, msg: CallSignalMessage): Reply {
    let forwarded: CallSignalMessage = msg;
    if (msg.type === 'offer' || msg.type === 'answer') {
      const { relayCandidate: _dropped, ...rest } = msg;
      // A party on another relay: its own relay added the candidate (or left it out for relayOnly).
      if (sender.remote === true) forwarded = msg;
      else forwarded = msg.relayOnly === true ? rest : { ...rest, relayCandidate: this.observedCandidate(sender) };
    }
    target.push(encodeSignal(forwarded));
    this.counters.callSignalsRouted++;
    return { type: 'routed', callId: msg.callId };
  }

  private observedCandidate(peer: PresencePeer): Candidate {
    const { address, port } = peer.observed();
    // IPv4-mapped IPv6 (a dual-stack socket) is shown as the IPv4 address it is.
    const plain = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
    return { type: 'srflx', address: plain, port, priority: 0 };
  }

  private offline(msg: CallSignalMessage): Reply {
    this.counters.callSignalsOffline++;
    return { type: 'offline', callId: msg.callId, to: msg.to };
  }

  private refusal(peer: PresencePeer, reason: RefusalReason, code: string, message: string): Reply {
    this.opts.refuse(peer, reason, message);
    return { type: 'error', code, message };
  }

  private unpend(call: RelayCall): void {
    clearTimeout(call.timer);
    call.timer = undefined;
    const n = (this.pendingByCallee.get(call.callee) ?? 1) - 1;
    if (n <= 0) this.pendingByCallee.delete(call.callee);
    else this.pendingByCallee.set(call.callee, n);
  }

  private endCall(call: RelayCall): void {
    if (!this.calls.delete(call.id)) return;
    const remote = call.callerPeer.remote === true || call.calleePeer.remote === true ? this.opts.remote?.() : undefined;
    // After this turn: whoever ended it (disconnect) still tells the other party first.
    if (remote !== undefined) queueMicrotask(() => remote.callEnded(call.id));
    if (call.state === 'ringing') this.unpend(call);
    this.states.get(call.callerPeer)?.calls.delete(call.id);
    this.states.get(call.calleePeer)?.calls.delete(call.id);
  }

  /**
   * Drop this connection's registration: it takes no more calls (it stays open). With
   * `keepProof` it may still signal in the calls it has (a newer registration took over).
   */
  private unregister(peer: PresencePeer, keepProof: boolean): void {
    const s = this.states.get(peer);
    const fingerprint = s?.fingerprint;
    if (!s || fingerprint === undefined) return;
    if (!keepProof) s.fingerprint = undefined;
    s.receivesCalls = false;
    if (this.registrations.get(fingerprint) !== peer) return;
    this.registrations.delete(fingerprint);
    const n = (this.bySource.get(peer.source) ?? 1) - 1;
    if (n <= 0) this.bySource.delete(peer.source);
    else this.bySource.set(peer.source, n);
  }

  /**
   * The connection closed: its registration ends, and the other party of each of its calls is
   * told (`call-gone`, unsigned) and the call forgotten.
   */
  disconnect(peer: PresencePeer): void {
    const s = this.states.get(peer);
    if (!s) return;
    const gone = s.fingerprint;
    this.unregister(peer, false);
    for (const id of [...s.calls]) {
      const call = this.calls.get(id);
      if (!call) continue;
      this.endCall(call);
      const other = call.callerPeer === peer ? call.calleePeer : call.callerPeer;
      const who = call.callerPeer === peer ? call.caller : call.callee;
      if (other !== peer && this.states.has(other)) other.push(encodeSignal({ type: 'call-gone', callId: id, fingerprint: gone ?? who }));
    }
    this.states.delete(peer);
  }

  /** Forget everything (the relay stopped). */
  clear(): void {
    for (const call of this.calls.values()) clearTimeout(call.timer);
    this.calls.clear();
    this.pendingByCallee.clear();
    this.registrations.clear();
    this.states.clear();
    this.bySource.clear();
  }
}

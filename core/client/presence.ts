/**
 * A client's presence on a relay: registered as its identity (a signed challenge, bound to the
 * relay's certificate fingerprint and this connection), sending signed call signals and
 * receiving the others' (docs/direct-calls.md). Every incoming call signal passes a
 * CallSignalVerifier (core/crypto/call-signal.ts) before anything acts on it: unsigned,
 * mis-bound, replayed or stale signals are dropped and counted, as are signals for calls
 * nobody here is handling.
 */
import { ProtocolError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { CallSignalVerifier, CALL_SIGNAL_DROP_REASONS, signCallSignal, signRegistration, type CallSignalDropReason, type UnsignedCallSignal } from '../crypto/call-signal.js';
import type { RequestOptions, KnownSignal } from '../transport/signal-stream.js';
import { isCallSignal, type CallGoneMessage, type CallSignalMessage, type OfferMessage } from '../wire/signal.js';
import type { RelaySession } from './relay-session.js';

/** Why an incoming call signal was dropped: the verifier's reasons, or a call nobody handles. */
export type PresenceDropReason = CallSignalDropReason | 'unknown-call';

export type PresenceEvent =
  | { type: 'presence:signal-dropped'; signal: string; reason: PresenceDropReason; detail: string }
  /** Another session registered as this identity on the relay: this one no longer receives calls. */
  | { type: 'presence:replaced' }
  /** The relay is draining (its notice): it passes on no new offers, and stops within deadlineMs. */
  | { type: 'presence:relay-draining'; deadlineMs: number };

/** What a handler of one call receives: its verified signals, and the relay's hint that the other side's connection closed. */
export type CallSignalHandler = (msg: CallSignalMessage | CallGoneMessage) => void;

/** Calls handled at once by one client (its own and ringing ones). */
const MAX_TRACKED = 64;

export class PresenceClient {
  /** Incoming signals dropped, by reason. */
  readonly dropped: Record<PresenceDropReason, number> = {
    ...(Object.fromEntries(CALL_SIGNAL_DROP_REASONS.map((r) => [r, 0])) as Record<CallSignalDropReason, number>),
    'unknown-call': 0,
  };
  private readonly verifier: CallSignalVerifier;
  private offerHandler: ((offer: OfferMessage) => void) | undefined;
  private readonly handlers = new Map<string, CallSignalHandler>();
  /**
   * Our last sequence number: one counter for all our calls, so it only ever grows within each
   * (receivers track it per call and sender).
   */
  private seq = 0;
  private replacedResolve!: () => void;
  /** Resolves when another session of this identity took the registration over. */
  readonly replaced: Promise<void> = new Promise((resolve) => (this.replacedResolve = resolve));

  private constructor(
    readonly session: RelaySession,
    readonly identity: Identity,
    private readonly onEvent?: (e: PresenceEvent) => void,
    verifier?: CallSignalVerifier,
  ) {
    this.verifier = verifier ?? new CallSignalVerifier({ self: identity.fingerprint });
  }

  get fingerprint(): string {
    return this.identity.fingerprint;
  }

  /**
   * Register `identity` on the relay of `session` (its certificate fingerprint is what the
   * registration is bound to). The session's presence and call pushes come here from now on.
   */
  static async register(
    session: RelaySession,
    identity: Identity,
    opts: RequestOptions & {
      onEvent?(e: PresenceEvent): void;
      verifier?: CallSignalVerifier;
      /**
       * false: prove the identity for our call signals only and take no incoming calls (a
       * caller: another session of this identity may be listening on this relay). Default true.
       */
      receiveCalls?: boolean;
    } = {},
  ): Promise<PresenceClient> {
    const client = new PresenceClient(session, identity, opts.onEvent, opts.verifier);
    session.onCallSignalling((msg) => client.receive(msg));
    const challenge = await session.ask({ type: 'register-challenge' }, opts);
    if (challenge.type !== 'challenge') throw new ProtocolError(`relay answered register-challenge with "${challenge.type}"`);
    const registration = {
      ...signRegistration(identity, session.relayFingerprint, challenge.nonce),
      ...(opts.receiveCalls === false ? { receiveCalls: false } : {}),
    };
    // A refusal over one of the relay's limits is a RefusedError (RelaySession.ask).
    const reply = await session.ask(registration, opts);
    if (reply.type !== 'registered' || reply.fingerprint !== identity.fingerprint) {
      throw new ProtocolError(`relay answered register with "${reply.type}"`);
    }
    return client;
  }

  /** Offers that verified (one handler; a later call replaces it). */
  onOffer(handler: (offer: OfferMessage) => void): void {
    this.offerHandler = handler;
  }

  /** Receive this call's verified signals until the returned function is called. */
  track(callId: string, handler: CallSignalHandler): () => void {
    if (!this.handlers.has(callId) && this.handlers.size >= MAX_TRACKED) throw new ProtocolError(`more than ${MAX_TRACKED} calls at once`);
    this.handlers.set(callId, handler);
    return () => {
      if (this.handlers.get(callId) === handler) this.handlers.delete(callId);
    };
  }

  /**
   * Sign and send one call signal (seq and ts are ours to set); 'offline' when nobody is
   * registered as its recipient. A relay's refusal is a RefusedError (a limit) or ProtocolError.
   */
  async send(unsigned: DistributiveOmitSeq<UnsignedCallSignal>, opts: RequestOptions = {}): Promise<'routed' | 'offline'> {
    // u32 on the wire: a client would need 2^32 signals to wrap.
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const message = signCallSignal(this.identity, { ...unsigned, seq, ts: Date.now() } as UnsignedCallSignal);
    if (message.type === 'offer' && !this.verifier.expect(message.callId, this.fingerprint, message.to)) {
      throw new ProtocolError('too many recent calls to keep track of; try again in a minute');
    }
    const reply = await this.session.ask(message, opts);
    if (reply.type === 'routed' && reply.callId === message.callId) return 'routed';
    if (reply.type === 'offline' && reply.callId === message.callId) return 'offline';
    throw new ProtocolError(`relay answered ${message.type} with "${reply.type}"`);
  }

  /**
   * Handle one pushed message: call signals are verified and handed to their call (offers to
   * onOffer); everything else is dropped and counted. Public so that tests can feed it what a
   * tampering relay would.
   */
  receive(msg: KnownSignal): void {
    if (msg.type === 'draining') {
      this.onEvent?.({ type: 'presence:relay-draining', deadlineMs: msg.deadlineMs });
      return;
    }
    if (msg.type === 'presence-replaced') {
      if (msg.fingerprint === this.fingerprint) {
        this.onEvent?.({ type: 'presence:replaced' });
        this.replacedResolve();
      }
      return;
    }
    if (msg.type === 'call-gone') {
      this.handlers.get(msg.callId)?.(msg);
      return;
    }
    if (!isCallSignal(msg)) return;
    // Nothing to hand it to: dropped before the (costlier) signature check.
    if (msg.type === 'offer' ? this.offerHandler === undefined : !this.handlers.has(msg.callId)) {
      this.drop(msg, 'unknown-call', 'no call of ours has this id');
      return;
    }
    const check = this.verifier.check(msg);
    if (!check.ok) {
      this.drop(msg, check.reason, check.detail);
      return;
    }
    if (msg.type === 'offer') this.offerHandler?.(msg);
    else this.handlers.get(msg.callId)?.(msg);
  }

  private drop(msg: CallSignalMessage, reason: PresenceDropReason, detail: string): void {
    this.dropped[reason]++;
    this.onEvent?.({ type: 'presence:signal-dropped', signal: msg.type, reason, detail });
  }
}

type DistributiveOmitSeq<T> = T extends unknown ? Omit<T, 'seq' | 'ts'> : never;

/**
 * Supervision of a call's link to its relay: the stall watchdog, the round-trip probes on the
 * media's path, and getting back to a lost relay with back-off.
 *
 * - Stall: nothing heard (no datagram, no push) for STALL_MS, a ping tells a quiet room from
 *   a dead relay; no pong within PROBE_TIMEOUT_MS (or the connection closing) is a lost link.
 * - Round trip: every RTT_PING_INTERVAL_MS the link's mediaRtt() (a probe on the path media
 *   takes); the leg is the median of the last RTT_WINDOW samples, and every sample (up to
 *   MAX_RTT_SAMPLES) goes to the report.
 * - Lost: without `reconnect` the call is over (gaveUp). With it, new sessions are opened
 *   (each attempt limited to RECONNECT_ATTEMPT_MS, back-off RECONNECT_BACKOFF_MS between
 *   failures) for up to `reconnectForMs`, and `join` re-joins on the new one. A relay that
 *   answers with another certificate is not retried.
 * - Moved: a relay that drains (its `draining` notice) is left the same way (`lost(reason,
 *   'drain')`) when the call has other relays to go to; `reconnect` is told why and picks
 *   the relay (core/client/relay-rotation.ts). Each move is recorded with its reason and the
 *   relay it landed on.
 *
 * Time comes from a Clock (the real one by default) so all of this runs under a test's
 * manual clock.
 */
import { AbortError, FingerprintMismatchError, errorMessage } from '../errors.js';
import { summarize } from '../media/analysis.js';
import { systemClock, type Clock } from './clock.js';

/** Nothing heard from the relay for this long: ask it for a pong. */
export const STALL_MS = 2500;
/** A pong that takes longer than this means the relay is lost. */
export const PROBE_TIMEOUT_MS = 2000;
/** How often the relay leg's round trip is timed (the link's mediaRtt). */
export const RTT_PING_INTERVAL_MS = 1000;
/** The relay leg's round trip is the median of this many latest samples. */
export const RTT_WINDOW = 5;
/** Round trips kept for the report's percentiles (a day of samples); more are only counted in max. */
export const MAX_RTT_SAMPLES = 86_400;
/** Default for how long to keep trying to get back to a lost relay. */
export const DEFAULT_RECONNECT_FOR_MS = 30_000;
/** One connection attempt's limit, and the back-off between failed attempts. */
export const RECONNECT_ATTEMPT_MS = 4000;
export const RECONNECT_BACKOFF_MS: readonly number[] = [250, 500, 1000, 2000];

/** What supervision needs of a link (RelaySession has it). */
export interface SupervisedLink {
  /** A round trip on the signalling channel; rejects when there is no answer in time. */
  ping(opts: { timeoutMs: number }): Promise<unknown>;
  /** One round trip on the media's path, ms; undefined when none was measured. */
  mediaRtt(timeoutMs: number): Promise<number | undefined>;
  /** Resolves when the link is gone. */
  readonly closed: Promise<void>;
  close(): Promise<void>;
  /** The relay's address, HOST:PORT (RelaySession has it), for the record of moves. */
  readonly label?: string;
}

/** Why the link was left: lost (closed, or silent), or the relay drains (its notice). */
export type LinkLossCause = 'lost' | 'drain';

export interface ReconnectRecord {
  /** When the link was lost, ms into the call. */
  atMs: number;
  /** The gap: from losing the link to being back in the room, ms. */
  outageMs: number;
  attempts: number;
  /** Why the link was left. */
  reason: LinkLossCause;
  /** The relay we got back on (HOST:PORT; absent for a link without a label). */
  relay?: string;
}

export interface RttSummary {
  p50: number;
  p95: number;
  max: number;
  mean: number;
  samples: number;
}

export interface LinkSupervisorOptions<S extends SupervisedLink> {
  session: S;
  /**
   * Open a new link (to the same relay, or the next of the call's relays); without it a lost
   * link ends the call. `cause`: why the last one was left.
   */
  reconnect?(signal: AbortSignal, cause: LinkLossCause): Promise<S>;
  /** How long to keep trying (default DEFAULT_RECONNECT_FOR_MS). */
  reconnectForMs?: number;
  /** Where the attempt just made went (a relay's HOST:PORT), named in its warning when it fails. */
  reconnectTarget?(): string | undefined;
  /** Join again on a new link (it is current already); returns how many were there. */
  rejoin(session: S): Promise<number>;
  /** The link was lost (after the state changed: `reconnecting` says whether we try to get back). */
  onLost?(reason: string, reconnecting: boolean): void;
  onReconnected?(e: { outageMs: number; attempts: number; participants: number; reason: LinkLossCause; relay?: string }): void;
  /** Getting back failed for good: every attempt in reconnectForMs (or a relay with another certificate). */
  onGaveUp?(e: { attempts: number; forMs: number; lastError: string }): void;
  onWarning?(message: string): void;
  /** The call's hang-up: stops reconnecting. */
  signal?: AbortSignal;
  clock?: Clock;
}

export class LinkSupervisor<S extends SupervisedLink> {
  readonly #opts: LinkSupervisorOptions<S>;
  readonly #clock: Clock;
  #session: S;
  #link: 'up' | 'reconnecting' = 'up';
  /** Last datagram or push heard on the link (clock ms). */
  #lastHeardAt: number;
  #probing = false;
  /** A measurement of the relay leg is out. */
  #rttPinging = false;
  #lastRttPingAt = -Infinity;
  /** The latest RTT_WINDOW round trips (ms), newest last; cleared when the link is lost. */
  readonly #recentRtts: number[] = [];
  /** Every round trip measured (up to MAX_RTT_SAMPLES), for the report. */
  readonly #rttSamples: number[] = [];
  #maxRtt = 0;
  /** The call is over: a reconnection in progress gives up. */
  readonly #ending = new AbortController();
  readonly #stop: AbortSignal;
  #lostAt = 0;
  #lostCause: LinkLossCause = 'lost';
  #startedAt = 0;
  #gaveUp = false;
  readonly #reconnects: ReconnectRecord[] = [];

  constructor(opts: LinkSupervisorOptions<S>) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#session = opts.session;
    this.#lastHeardAt = this.#clock.now();
    this.#stop = opts.signal ? AbortSignal.any([this.#ending.signal, opts.signal]) : this.#ending.signal;
  }

  /** The link in use: the first one, then each one reconnect() opened. */
  get session(): S {
    return this.#session;
  }

  get link(): 'up' | 'reconnecting' {
    return this.#link;
  }

  /** Getting back failed for good (or was never tried): the call ends as relay-lost. */
  get gaveUp(): boolean {
    return this.#gaveUp;
  }

  /** Aborted when the call ends or is hung up. */
  get signal(): AbortSignal {
    return this.#stop;
  }

  get reconnects(): readonly ReconnectRecord[] {
    return this.#reconnects;
  }

  /** Whether `session` is the link in use (events from older ones are not ours to handle). */
  isCurrent(session: S): boolean {
    return session === this.#session;
  }

  /** The call started at `at` (clock ms): reconnects are reported relative to it. */
  started(at: number): void {
    this.#startedAt = at;
    this.#lastHeardAt = at;
  }

  /** Something arrived on `session`. */
  heard(session: S): void {
    if (session === this.#session) this.#lastHeardAt = this.#clock.now();
  }

  /** Watch `session` (the current link) for its close. */
  watch(session: S): void {
    void session.closed.then(() => {
      if (session === this.#session) this.lost('the connection to the relay closed');
    });
  }

  /** Once per clock tick: the stall watchdog and the round-trip probe. */
  tick(now: number = this.#clock.now()): void {
    this.#watchLink(now);
    this.#timeRelayLeg(now);
  }

  /** The call is over. */
  stop(): void {
    this.#ending.abort();
  }

  /** Our leg's round trip now: the median of the latest samples, ms. */
  relayRtt(): number | undefined {
    if (this.#link !== 'up' || this.#recentRtts.length === 0) return undefined;
    const sorted = [...this.#recentRtts].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  /** Every round trip measured, summarised (undefined if none was). */
  rttSummary(): RttSummary | undefined {
    if (this.#rttSamples.length === 0) return undefined;
    const s = summarize(this.#rttSamples);
    return { p50: roundMs(s.p50), p95: roundMs(s.p95), max: roundMs(this.#maxRtt), mean: roundMs(s.mean), samples: this.#rttSamples.length };
  }

  /**
   * The link is gone (or, cause `drain`, its relay is draining and we leave it): end the
   * call, or start getting back to a relay.
   */
  lost(reason: string, cause: LinkLossCause = 'lost'): void {
    if (this.#link !== 'up' || this.#stop.aborted) return;
    const reconnecting = this.#opts.reconnect !== undefined;
    if (!reconnecting) {
      this.#gaveUp = true;
      this.#opts.onLost?.(reason, false);
      return;
    }
    this.#link = 'reconnecting';
    this.#lostAt = this.#clock.now();
    this.#lostCause = cause;
    // The next link's leg is timed afresh.
    this.#recentRtts.length = 0;
    void this.#session.close().catch(() => undefined);
    this.#opts.onLost?.(reason, true);
    void this.#reconnectLoop();
  }

  /** Nothing from the relay for a while: a ping tells a quiet room from a dead relay. */
  #watchLink(now: number): void {
    if (this.#link !== 'up' || this.#probing || this.#opts.reconnect === undefined || now - this.#lastHeardAt < STALL_MS) return;
    this.#probing = true;
    const session = this.#session;
    session
      .ping({ timeoutMs: PROBE_TIMEOUT_MS })
      .then(
        () => {
          if (session === this.#session) this.#lastHeardAt = this.#clock.now();
        },
        () => {
          if (session === this.#session) this.lost(`the relay answered nothing for ${((STALL_MS + PROBE_TIMEOUT_MS) / 1000).toFixed(1)} s`);
        },
      )
      .finally(() => {
        this.#probing = false;
      });
  }

  /**
   * Time the relay leg every RTT_PING_INTERVAL_MS. A probe that gets no answer is no sample;
   * whether the relay is lost is the watchdog's to judge.
   */
  #timeRelayLeg(now: number): void {
    if (this.#link !== 'up' || this.#rttPinging || now - this.#lastRttPingAt < RTT_PING_INTERVAL_MS) return;
    this.#rttPinging = true;
    this.#lastRttPingAt = now;
    const session = this.#session;
    session
      .mediaRtt(PROBE_TIMEOUT_MS)
      .then(
        (ms) => {
          if (ms === undefined || !Number.isFinite(ms) || ms < 0 || session !== this.#session || this.#link !== 'up') return;
          this.#recentRtts.push(ms);
          if (this.#recentRtts.length > RTT_WINDOW) this.#recentRtts.shift();
          if (this.#rttSamples.length < MAX_RTT_SAMPLES) this.#rttSamples.push(ms);
          this.#maxRtt = Math.max(this.#maxRtt, ms);
        },
        () => undefined,
      )
      .finally(() => {
        this.#rttPinging = false;
      });
  }

  async #reconnectLoop(): Promise<void> {
    const reconnect = this.#opts.reconnect!;
    const deadline = this.#lostAt + (this.#opts.reconnectForMs ?? DEFAULT_RECONNECT_FOR_MS);
    const stop = this.#stop;
    let lastError = 'no attempt fitted in the time left';
    let attempts = 0;
    for (let attempt = 1; !stop.aborted; attempt++) {
      const left = deadline - this.#clock.now();
      if (left <= 0) break;
      let session: S | undefined;
      const attemptMs = Math.max(1, Math.floor(Math.min(left, RECONNECT_ATTEMPT_MS)));
      const attemptLimit = this.#timeout(attemptMs);
      attempts = attempt;
      try {
        session = await reconnect(AbortSignal.any([stop, attemptLimit.signal]), this.#lostCause);
        if (stop.aborted) {
          await session.close();
          return;
        }
        this.#session = session;
        this.#lastHeardAt = this.#clock.now();
        const participants = await this.#opts.rejoin(session);
        const outageMs = Math.round(this.#clock.now() - this.#lostAt);
        const reason = this.#lostCause;
        const relay = session.label;
        this.#reconnects.push({ atMs: Math.round(this.#lostAt - this.#startedAt), outageMs, attempts: attempt, reason, ...(relay === undefined ? {} : { relay }) });
        this.#link = 'up';
        this.#lastHeardAt = this.#clock.now();
        this.watch(session);
        this.#opts.onReconnected?.({ outageMs, attempts: attempt, participants, reason, ...(relay === undefined ? {} : { relay }) });
        return;
      } catch (err) {
        // A link that connected but could not join is closed; it stays current (and
        // ignored: the link is down) until the next attempt replaces it.
        if (session !== undefined) await session.close().catch(() => undefined);
        if (stop.aborted) return;
        const wait = RECONNECT_BACKOFF_MS[Math.min(attempt - 1, RECONNECT_BACKOFF_MS.length - 1)];
        const why = err instanceof AbortError || attemptLimit.signal.aborted ? `no answer within ${Math.round(Math.min(RECONNECT_ATTEMPT_MS, left) / 100) / 10} s` : errorMessage(err);
        lastError = why;
        const target = this.#opts.reconnectTarget?.();
        this.#opts.onWarning?.(`reconnect attempt ${attempt}${target === undefined ? '' : ` (${target})`} failed: ${why}`);
        // Another certificate at the relay's address is not a network fault: trying again
        // cannot make it the relay we were talking to.
        if (err instanceof FingerprintMismatchError) break;
        await this.#sleep(Math.min(wait, Math.max(0, deadline - this.#clock.now())), stop);
      } finally {
        attemptLimit.clear();
      }
    }
    if (!stop.aborted) {
      this.#gaveUp = true;
      this.#opts.onGaveUp?.({ attempts, forMs: Math.round(this.#clock.now() - this.#lostAt), lastError });
    }
  }

  /** An AbortSignal that aborts after `ms` on our clock. */
  #timeout(ms: number): { signal: AbortSignal; clear(): void } {
    const ac = new AbortController();
    const timer = this.#clock.setTimer(() => ac.abort(new AbortError(`no answer within ${ms} ms`)), ms);
    return { signal: ac.signal, clear: () => this.#clock.clearTimer(timer) };
  }

  /** Wait `ms` on our clock, or less if `signal` aborts. */
  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      const done = (): void => {
        this.#clock.clearTimer(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.#clock.setTimer(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** Milliseconds to 0.1 ms. */
function roundMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}

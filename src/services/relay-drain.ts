/**
 * Draining a relay (docs/relay-operations.md, "Draining and moving clients"): on the first
 * SIGTERM the relay stops taking new sessions (joins, registrations and call offers are
 * refused with `draining`), tells every connected client (the `draining` push, with the
 * deadline) so that clients that know another relay move there at once, and lets the rooms
 * and calls it has go on until they are empty or the drain timeout passes. Then it stops as
 * on any other stop, with its summary.
 */
import { UsageError } from '../../core/errors.js';
import type { Relay } from '../../core/relay/relay.js';

/** `--drain-timeout` default: how long a draining relay waits for its sessions to end. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Longest drain timeout accepted (an hour): a relay told to stop must stop. */
export const MAX_DRAIN_TIMEOUT_MS = 3_600_000;
/**
 * How often a draining relay looks whether its sessions have ended. Polled (the relay has no
 * "last session ended" event, and adding one to every leave path would touch the hot code
 * for this one use): 100 ms is nothing next to a drain's seconds.
 */
const DRAIN_POLL_MS = 100;

export interface DrainReport {
  /** When draining started, ms after the relay started. */
  startedAtMs: number;
  /** From the start of draining to the stop, ms. */
  durationMs: number;
  /** empty: every room and call ended; timeout: --drain-timeout passed; stopped: a second SIGTERM or Ctrl-C. */
  endedBy: 'empty' | 'timeout' | 'stopped';
  /** Sessions (room members, echo tests, 1:1 calls) and connections still there at the stop. */
  sessionsLeft: number;
  connectionsLeft: number;
  /** Sessions and connections when draining started. */
  sessionsAtStart: number;
  connectionsAtStart: number;
}

/**
 * Drain `relay`: start draining (the drain notice goes out), then wait until it has no
 * sessions in progress, `timeoutMs` passes, or `stop` aborts. Does not stop the relay.
 */
export async function drainRelay(relay: Relay, opts: { timeoutMs: number; stop: AbortSignal; startedAt: number }): Promise<DrainReport> {
  const t0 = performance.now();
  const sessionsAtStart = relay.sessionsInProgress;
  const connectionsAtStart = relay.metrics.connectionsOpen;
  relay.startDrain(opts.timeoutMs);
  const endedBy = await new Promise<DrainReport['endedBy']>((resolve) => {
    const finish = (why: DrainReport['endedBy']) => {
      clearInterval(poll);
      clearTimeout(deadline);
      opts.stop.removeEventListener('abort', onStop);
      resolve(why);
    };
    const onStop = () => finish('stopped');
    const poll = setInterval(() => {
      if (relay.sessionsInProgress === 0) finish('empty');
    }, DRAIN_POLL_MS);
    const deadline = setTimeout(() => finish('timeout'), opts.timeoutMs);
    if (opts.stop.aborted) return finish('stopped');
    opts.stop.addEventListener('abort', onStop, { once: true });
  });
  return {
    startedAtMs: Math.round(t0 - opts.startedAt),
    durationMs: Math.round(performance.now() - t0),
    endedBy,
    sessionsLeft: relay.sessionsInProgress,
    connectionsLeft: relay.metrics.connectionsOpen,
    sessionsAtStart,
    connectionsAtStart,
  };
}

/** A drain timeout in ms, checked (0 to MAX_DRAIN_TIMEOUT_MS); the default when absent. */
export function resolveDrainTimeoutMs(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_DRAIN_TIMEOUT_MS;
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_DRAIN_TIMEOUT_MS) {
    throw new UsageError(`drain timeout ${ms / 1000} s: give 0 to ${MAX_DRAIN_TIMEOUT_MS / 1000} seconds`);
  }
  return Math.round(ms);
}

/**
 * The time a call's units run on: the real clock in a call, a manual one in tests (so rotation
 * pacing and the link watchdog can be checked without waiting).
 */
export interface Clock {
  /** Milliseconds, monotonic (performance.now() for the real clock). */
  now(): number;
  /** Run `fn` after `ms`; the handle goes to clearTimer. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout> | undefined),
};

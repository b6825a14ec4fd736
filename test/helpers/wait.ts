/** Polling helpers for integration tests over real sockets. */

/** Resolve once `cond()` holds; reject after `timeoutMs` naming the condition. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`condition not reached in time: ${cond.toString()}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Rate limits for hostile input: a token bucket for one thing (one connection's joins, one
 * member's forwarded bytes), and a keyed limiter for many sources at once (Retries per
 * source address) whose memory stays bounded whatever the number of (possibly forged) keys.
 *
 * Both take the time as an argument (ms, any monotonic clock: performance.now()) so the hot
 * path reads the clock once per packet and tests control time.
 */

/**
 * A token bucket: `ratePerSecond` tokens flow in, at most `burst` are kept; take() spends
 * some if there are enough. Starts full.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private ratePerSecond: number,
    private burst: number,
    now = 0,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Spend `cost` tokens if the bucket holds them; false (nothing spent) otherwise. */
  take(now: number, cost = 1): boolean {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
      this.last = now;
    }
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }

  /** New rate and burst from now on (a configuration reload); the tokens held are kept, capped. */
  reconfigure(ratePerSecond: number, burst: number): void {
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }
}

/**
 * At most `perWindow` events per key in each fixed window of `windowMs`, and at most `total`
 * events in all per window. Keys live for one window only, and a window tracks at most
 * `maxKeys` keys (past that, new keys share the total only): a flood from forged sources
 * costs at most maxKeys map entries, never more.
 */
export class KeyedWindowLimiter {
  private counts = new Map<string, number>();
  private windowStart = -Infinity;
  private totalInWindow = 0;

  constructor(
    private readonly perWindow: number,
    private readonly total: number,
    private readonly windowMs = 1000,
    private readonly maxKeys = 65_536,
  ) {}

  /** Count one event for `key`; false if the key or everyone is over the limit (not counted). */
  allow(key: string, now: number): boolean {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.counts = new Map();
      this.totalInWindow = 0;
    }
    if (this.totalInWindow >= this.total) return false;
    const n = this.counts.get(key) ?? 0;
    if (n >= this.perWindow) return false;
    if (n > 0 || this.counts.size < this.maxKeys) this.counts.set(key, n + 1);
    this.totalInWindow++;
    return true;
  }
}

/**
 * Lets through at most `perSecond` of something per second and counts the rest, for logs
 * of dropped input: an attacker must not be able to turn each dropped packet into a log
 * line. `take()` says whether to log this one; `suppressed()` how many were not logged since
 * the last line that was (to say "and N more").
 */
export class LogLimiter {
  private readonly bucket: TokenBucket;
  private skipped = 0;

  constructor(perSecond = 5, burst = 20) {
    this.bucket = new TokenBucket(perSecond, burst, performance.now());
  }

  take(now = performance.now()): boolean {
    if (this.bucket.take(now)) return true;
    this.skipped++;
    return false;
  }

  /** Lines not logged since the last call; resets the count. */
  suppressed(): number {
    const n = this.skipped;
    this.skipped = 0;
    return n;
  }
}

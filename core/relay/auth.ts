/**
 * Token auth for a relay (docs/relay-operations.md "Token auth"), compatible with the
 * featherChat validation endpoint WarzonePhone's relay uses (`--auth-url`): a client presents
 * a token in its hello; the relay asks the auth service whether it is good and admits the
 * connection only if it is.
 *
 * The request: `POST URL` with `Authorization: Bearer TOKEN`, `Content-Type: application/json`
 * and the body `{"token":"TOKEN"}` (WarzonePhone's relay sends the token in a JSON body, a
 * featherChat-style service reads the bearer header: this serves both). The answer:
 *
 * - 2xx with a JSON object whose `valid` is true: admitted (`fingerprint` and `alias`, strings,
 *   are kept for the relay's log; any other field, e.g. featherChat's `eth_address`, is ignored);
 * - 2xx with `valid: false`, or status 401 / 403: the token is refused;
 * - anything else (another status, a reply that is not such JSON, more than MAX_REPLY_BYTES, no
 *   reply within TIMEOUT_MS, a connection error, a redirect): the service is unavailable, which
 *   refuses the client (fail closed) unless the relay runs with `failOpen`.
 *
 * Hostile input both ways: the relay reads at most MAX_REPLY_BYTES of a reply (then aborts:
 * a service streaming megabytes costs nothing), gives every request TIMEOUT_MS from start to
 * last byte, runs at most `maxConcurrent` requests at once with `maxQueued` more waiting (a
 * flood of hellos with random tokens gets 'busy' answers, never unbounded requests), asks once
 * for concurrent checks of the same token, and caches answers (ok and refused, never errors)
 * for `cacheSeconds` in a bounded table keyed by the token's SHA-256: tokens are never kept,
 * logged or repeated.
 *
 * Hand-written over node's fetch (undici) rather than a client library: the bounds above are
 * the whole point and each is a few lines here.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';

/** How long one validation may take, from request to the reply's last byte. */
export const AUTH_TIMEOUT_MS = 5_000;
/** The most of a reply the relay reads; a longer one is an error. */
export const MAX_REPLY_BYTES = 4 * 1024;
/** The longest token a client may present (visible ASCII: it goes into an HTTP header). */
export const MAX_TOKEN_LENGTH = 2048;
export const DEFAULT_AUTH_CACHE_SECONDS = 30;
export const DEFAULT_AUTH_MAX_CONCURRENT = 8;
export const DEFAULT_AUTH_MAX_QUEUED = 64;
/** Answers cached at most (the oldest goes first). */
export const AUTH_CACHE_ENTRIES = 10_000;
/** The longest fingerprint or alias kept from a service's answer. */
const MAX_INFO_LENGTH = 128;

const TOKEN_RE = /^[\x21-\x7e]+$/;

export interface AuthSettings {
  /** The validation endpoint (http or https). */
  url: string;
  /** Admit clients when the service is unavailable (default: refuse them). */
  failOpen: boolean;
  /** How long answers are cached (0: not at all). */
  cacheSeconds: number;
  /** Requests to the service at once (default DEFAULT_AUTH_MAX_CONCURRENT). */
  maxConcurrent?: number;
  /** Checks waiting for a request slot; more are answered 'busy' (default DEFAULT_AUTH_MAX_QUEUED). */
  maxQueued?: number;
  /** Per-request timeout (default AUTH_TIMEOUT_MS; tests shorten it). */
  timeoutMs?: number;
}

/** How one check ended. */
export type AuthVerdict =
  | { result: 'ok'; cached: boolean; fingerprint?: string; alias?: string }
  | { result: 'refused'; cached: boolean }
  /** The service did not give a usable answer (`detail` says why; never the token). */
  | { result: 'error'; detail: string }
  /** Too many checks at once: not asked. */
  | { result: 'busy' };

/** Counts of validation results (the relay's metrics `auth`). */
export interface AuthStats {
  /** The service said yes. */
  ok: number;
  /** The service said no. */
  refused: number;
  /** The service was unreachable, slow, or answered something unusable. */
  error: number;
  /** Answered from the cache (ok or refused) without asking. */
  cached: number;
  /** Not asked: over the concurrency cap and its queue. */
  busy: number;
}

/** Checks a token's shape; a problem in words (never repeating the token), or undefined. */
export function tokenProblem(token: string): string | undefined {
  if (token.length === 0) return 'the token is empty';
  if (token.length > MAX_TOKEN_LENGTH) return `a token is at most ${MAX_TOKEN_LENGTH} characters`;
  if (!TOKEN_RE.test(token)) return 'a token is visible ASCII characters only (no spaces or control characters)';
  return undefined;
}

/** Settings checked and completed; UsageError naming the problem. */
export function resolveAuthSettings(s: AuthSettings): Required<AuthSettings> {
  let url: URL;
  try {
    url = new URL(s.url);
  } catch {
    throw new UsageError(`auth url "${s.url}" is not a URL`, { suggestions: ['e.g. --auth-url https://chat.example.com/v1/auth/validate'] });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`auth url "${s.url}" must be http: or https:`);
  if (url.username !== '' || url.password !== '') throw new UsageError('auth url must not carry credentials');
  const positive = (name: string, v: number | undefined, d: number, allowZero = false): number => {
    const value = v ?? d;
    if (!Number.isInteger(value) || value < (allowZero ? 0 : 1)) throw new UsageError(`auth ${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`);
    return value;
  };
  return {
    url: url.href,
    failOpen: s.failOpen === true,
    cacheSeconds: positive('cache seconds', s.cacheSeconds, DEFAULT_AUTH_CACHE_SECONDS, true),
    maxConcurrent: positive('max concurrent', s.maxConcurrent, DEFAULT_AUTH_MAX_CONCURRENT),
    maxQueued: positive('max queued', s.maxQueued, DEFAULT_AUTH_MAX_QUEUED, true),
    timeoutMs: positive('timeout', s.timeoutMs, AUTH_TIMEOUT_MS),
  };
}

type Answer = { result: 'ok'; fingerprint?: string; alias?: string } | { result: 'refused' } | { result: 'error'; detail: string };

interface CacheEntry {
  answer: Extract<Answer, { result: 'ok' | 'refused' }>;
  expires: number;
}

export class AuthValidator {
  readonly stats: AuthStats = { ok: 0, refused: 0, error: 0, cached: 0, busy: 0 };
  private settings: Required<AuthSettings>;
  private readonly cache = new Map<string, CacheEntry>();
  /** Checks asked or waiting, by token hash: concurrent checks of one token share one request. */
  private readonly pending = new Map<string, Promise<Answer>>();
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];
  private closed = false;
  private readonly aborts = new Set<AbortController>();

  constructor(settings: AuthSettings) {
    this.settings = resolveAuthSettings(settings);
  }

  get current(): Readonly<Required<AuthSettings>> {
    return this.settings;
  }

  /** Requests to the service now. */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** New settings (live reload); the cache is dropped when the URL changes. */
  update(settings: AuthSettings): void {
    const next = resolveAuthSettings(settings);
    if (next.url !== this.settings.url || next.cacheSeconds === 0) this.cache.clear();
    this.settings = next;
    this.drainQueue();
  }

  /** Check one token (its shape already checked with tokenProblem). */
  async check(token: string): Promise<AuthVerdict> {
    const key = createHash('sha256').update(token, 'utf8').digest('hex');
    const now = performance.now();
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      if (hit.expires > now) {
        this.stats.cached++;
        return { ...hit.answer, cached: true };
      }
      this.cache.delete(key);
    }
    let answer = this.pending.get(key);
    if (answer === undefined) {
      if (this.inFlight >= this.settings.maxConcurrent && this.queue.length >= this.settings.maxQueued) {
        this.stats.busy++;
        return { result: 'busy' };
      }
      answer = this.askWhenFree(token, key);
      this.pending.set(key, answer);
      void answer.finally(() => this.pending.delete(key));
    }
    const a = await answer;
    return a.result === 'error' ? a : { ...a, cached: false };
  }

  /** Abort requests in progress and refuse queued ones (the relay stopped). */
  close(): void {
    this.closed = true;
    for (const a of this.aborts) a.abort();
    this.drainQueue();
    this.cache.clear();
  }

  private async askWhenFree(token: string, key: string): Promise<Answer> {
    await this.acquire();
    let answer: Answer;
    try {
      answer = this.closed ? { result: 'error', detail: 'the relay is stopping' } : await this.ask(token);
    } finally {
      this.release();
    }
    this.stats[answer.result]++;
    const ttl = this.settings.cacheSeconds * 1000;
    if (answer.result !== 'error' && ttl > 0) {
      if (this.cache.size >= AUTH_CACHE_ENTRIES) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
      this.cache.set(key, { answer, expires: performance.now() + ttl });
    }
    return answer;
  }

  /**
   * A request slot: at once if one is free and nobody waits, else in turn. A finished request
   * hands its slot straight to the next waiter (release), so `inFlight` never passes the cap.
   */
  private async acquire(): Promise<void> {
    if (this.inFlight < this.settings.maxConcurrent && this.queue.length === 0) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.queue.push(resolve));
  }

  private release(): void {
    if (this.inFlight <= this.settings.maxConcurrent) {
      const next = this.queue.shift();
      if (next !== undefined) {
        next(); // the slot passes on: inFlight unchanged
        return;
      }
    }
    this.inFlight--;
  }

  /** Wake waiters into slots a raised cap (or a stop) freed. */
  private drainQueue(): void {
    while ((this.closed || this.inFlight < this.settings.maxConcurrent) && this.queue.length > 0) {
      this.inFlight++;
      this.queue.shift()!();
    }
  }

  /** One request to the service, bounded in time and reply size. */
  private async ask(token: string): Promise<Answer> {
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = setTimeout(() => abort.abort(), this.settings.timeoutMs);
    try {
      const response = await fetch(this.settings.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ token }),
        redirect: 'manual',
        signal: abort.signal,
      });
      if (response.status === 401 || response.status === 403) {
        await response.body?.cancel().catch(() => undefined);
        return { result: 'refused' };
      }
      if (response.status < 200 || response.status > 299) {
        await response.body?.cancel().catch(() => undefined);
        return { result: 'error', detail: `the auth service answered HTTP ${response.status}` };
      }
      const text = await readBounded(response, MAX_REPLY_BYTES);
      if (text === undefined) return { result: 'error', detail: `the auth service's answer is longer than ${MAX_REPLY_BYTES} bytes` };
      return parseAnswer(text);
    } catch (err) {
      if (abort.signal.aborted) return { result: 'error', detail: this.closed ? 'the relay is stopping' : `no answer from the auth service within ${this.settings.timeoutMs} ms` };
      return { result: 'error', detail: `the auth service cannot be reached (${causeText(err)})` };
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
      abort.abort(); // releases the connection of a reply not read to its end
    }
  }
}

/** The body as text if it is at most `limit` bytes; undefined (and the rest unread) otherwise. */
async function readBounded(response: Response, limit: number): Promise<string | undefined> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > limit) {
    await response.body?.cancel().catch(() => undefined);
    return undefined;
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(Buffer.concat(chunks));
}

function parseAnswer(text: string): Answer {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { result: 'error', detail: 'the auth service answered something that is not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { result: 'error', detail: 'the auth service answered JSON that is not an object' };
  const o = value as Record<string, unknown>;
  if (o.valid === false) return { result: 'refused' };
  if (o.valid !== true) return { result: 'error', detail: 'the auth service answered without a true or false "valid"' };
  const info = (v: unknown): string | undefined => (typeof v === 'string' && v.length <= MAX_INFO_LENGTH ? v : undefined);
  const fingerprint = info(o.fingerprint);
  const alias = info(o.alias);
  return { result: 'ok', ...(fingerprint === undefined ? {} : { fingerprint }), ...(alias === undefined ? {} : { alias }) };
}

function causeText(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return err instanceof Error ? err.message : String(err);
}

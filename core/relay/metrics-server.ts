/**
 * The relay's HTTP endpoint for operators (`wzp relay --metrics HOST:PORT`):
 *
 * ```
 * GET /metrics   200  Prometheus text format (./metrics.ts: wzp_relay_*, process and Node.js metrics)
 * GET /healthz   200  "ok" while the process serves HTTP at all (liveness)
 * GET /readyz    200  "ready"; 503 "draining" while the relay drains, 503 "stale: ..." when
 *                     its stats stopped being refreshed (readiness: take it out of rotation)
 * anything else  404; a method other than GET or HEAD 405; a request with a body 413
 * ```
 *
 * Hand-written on node:http (no framework): three fixed routes, and every resource bounded
 * because the port may be reachable by more than the scraper: a few connections at once,
 * small headers, no request bodies, short timeouts, and a scrape at a time at most
 * MAX_CONCURRENT_SCRAPES (a scrape is the one costly answer).
 *
 * Staleness, concretely: a heartbeat timer (every `heartbeatMs`, default 1 s) takes the
 * relay's stats snapshot and checks that the relay still serves. The relay is stale, and
 * /readyz answers 503, when the last successful heartbeat is older than `staleAfterMs`
 * (default 5 s: the snapshot or the check failed since, e.g. the relay stopped) or when the
 * last two heartbeats were more than `staleAfterMs` apart (the event loop was blocked that
 * long: the heartbeat could not run, and neither could the relay; ready again at the next
 * heartbeat on time).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NetworkError, UsageError, errorMessage } from '../errors.js';
import { formatHostPort, parseHostPort, type HostPort } from '../transport/quic.js';

/** Connections the server keeps at once (a scraper and a probe or two need fewer). */
export const MAX_METRICS_CONNECTIONS = 8;
/** Scrapes answered at once; more get 503 (each builds the whole exposition). */
export const MAX_CONCURRENT_SCRAPES = 2;
/** Request header bytes accepted (node:http answers 431 above). */
export const MAX_METRICS_HEADER_BYTES = 8 * 1024;
/** A request must arrive whole within this long; idle connections are closed after it too. */
export const METRICS_REQUEST_TIMEOUT_MS = 5_000;

export interface MetricsServerOptions {
  /** HOST:PORT as the operator gave it (`--metrics`); port 0 picks a free one. */
  listen: string;
  /** The Prometheus text exposition (RelayMetricsRegistry.prometheusText). */
  metrics(): Promise<string>;
  /** Content type of the exposition (prom-client Registry.contentType). */
  contentType: string;
  /**
   * One heartbeat's check: take the stats and check the relay serves; throw if not. The
   * relay's: read `relay.metrics` and `relay.address` (which throws once it stopped).
   */
  refresh(): void;
  /** True while the relay drains (its `draining` getter); /readyz is then 503. */
  isDraining?: () => boolean;
  heartbeatMs?: number;
  staleAfterMs?: number;
}

/** Readiness from heartbeats (pure: the clock is an argument, for tests). */
export class Readiness {
  private lastBeat: number;
  private gap = 0;
  private lastError?: string;

  constructor(
    private readonly staleAfterMs: number,
    now: number,
  ) {
    this.lastBeat = now;
  }

  /** A heartbeat ran at `now`; `error` if its check failed. */
  beat(now: number, error?: string): void {
    if (error !== undefined) {
      this.lastError = error;
      return;
    }
    this.gap = now - this.lastBeat;
    this.lastBeat = now;
    this.lastError = undefined;
  }

  /** Why the relay is not ready at `now`, or undefined if it is. */
  staleReason(now: number): string | undefined {
    const age = now - this.lastBeat;
    if (age > this.staleAfterMs) {
      return `stats not refreshed for ${Math.round(age)} ms${this.lastError === undefined ? '' : ` (${this.lastError})`}`;
    }
    if (this.gap > this.staleAfterMs) return `event loop blocked for ${Math.round(this.gap)} ms`;
    return undefined;
  }
}

export interface RunningMetricsServer {
  readonly address: HostPort;
  /** http://HOST:PORT/metrics */
  readonly url: string;
  close(): Promise<void>;
}

/** The --metrics value as an address to bind, or a UsageError naming the flag. */
export function parseMetricsListen(text: string): HostPort {
  try {
    return parseHostPort(text, '127.0.0.1');
  } catch (err) {
    throw new UsageError(`--metrics ${errorMessage(err)}`, { suggestions: ['--metrics HOST:PORT, e.g. 127.0.0.1:9464 (only where your Prometheus can reach it)'] });
  }
}

/** Start the HTTP server; a bind failure is a NetworkError naming --metrics and the cause. */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<RunningMetricsServer> {
  const bind = parseMetricsListen(opts.listen);
  const heartbeatMs = opts.heartbeatMs ?? 1_000;
  const readiness = new Readiness(opts.staleAfterMs ?? 5_000, performance.now());
  let scrapes = 0;

  const heartbeat = (): void => {
    try {
      opts.refresh();
      readiness.beat(performance.now());
    } catch (err) {
      readiness.beat(performance.now(), errorMessage(err));
    }
  };

  const answer = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    // Nothing here takes a body: refuse one rather than read it.
    const length = req.headers['content-length'];
    if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
      answer(res, 413, 'request bodies are not accepted\n', { connection: 'close' });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      answer(res, 405, 'only GET\n', { allow: 'GET, HEAD' });
      return;
    }
    const path = (req.url ?? '').split('?', 1)[0];
    switch (path) {
      case '/healthz':
        answer(res, 200, 'ok\n');
        return;
      case '/readyz': {
        if (opts.isDraining?.()) {
          answer(res, 503, 'draining\n');
          return;
        }
        const stale = readiness.staleReason(performance.now());
        if (stale !== undefined) answer(res, 503, `stale: ${stale}\n`);
        else answer(res, 200, 'ready\n');
        return;
      }
      case '/metrics':
        if (scrapes >= MAX_CONCURRENT_SCRAPES) {
          answer(res, 503, 'too many scrapes at once\n', { 'retry-after': '1' });
          return;
        }
        scrapes++;
        opts
          .metrics()
          .then(
            (text) => answer(res, 200, text, { 'content-type': opts.contentType }),
            (err: unknown) => answer(res, 500, `metrics failed: ${errorMessage(err)}\n`),
          )
          .finally(() => scrapes--);
        return;
      default:
        answer(res, 404, 'not found: /metrics, /healthz, /readyz\n');
    }
  };

  const server: Server = createServer(
    { maxHeaderSize: MAX_METRICS_HEADER_BYTES, requestTimeout: METRICS_REQUEST_TIMEOUT_MS, headersTimeout: METRICS_REQUEST_TIMEOUT_MS, keepAliveTimeout: METRICS_REQUEST_TIMEOUT_MS },
    (req, res) => {
      try {
        handle(req, res);
      } catch (err) {
        if (!res.headersSent) answer(res, 500, `internal error: ${errorMessage(err)}\n`);
        else res.destroy();
      }
    },
  );
  server.maxConnections = MAX_METRICS_CONNECTIONS;
  server.maxRequestsPerSocket = 100;
  server.setTimeout(METRICS_REQUEST_TIMEOUT_MS, (socket) => socket.destroy());
  // A broken client must never take the relay down.
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const where = `--metrics ${formatHostPort(bind)}`;
      const why =
        err.code === 'EADDRINUSE'
          ? 'another process is using that port (EADDRINUSE)'
          : err.code === 'EADDRNOTAVAIL'
            ? `${bind.host} is not an address of this machine (EADDRNOTAVAIL)`
            : err.code === 'EACCES'
              ? `port ${bind.port} is privileged and this process may not bind it (EACCES)`
              : `${err.message}${err.code ? ` (${err.code})` : ''}`;
      // No `cause` with the system code: the relay command rewords such errors as --listen's.
      reject(new NetworkError(`cannot serve metrics on ${where}: ${why}`, { suggestions: ['pick another HOST:PORT for --metrics, e.g. 127.0.0.1:9464'] }));
    };
    server.once('error', onError);
    server.listen(bind.port, bind.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', () => undefined);
  heartbeat();
  const timer = setInterval(heartbeat, heartbeatMs);
  timer.unref();
  const info = server.address() as AddressInfo;
  const address = { host: info.address, port: info.port };
  return {
    address,
    url: `http://${formatHostPort(address)}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

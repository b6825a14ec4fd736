/**
 * Token auth (core/relay/auth.ts) on an in-process relay over real loopback QUIC, against a
 * real HTTP auth service started here (node:http on 127.0.0.1) that accepts one token: good,
 * missing and bad tokens; the service down (fail closed, and fail open), slow (the 5 s
 * timeout), streaming megabytes (cut at 4 KiB), the cache, and a flood of hellos with random
 * tokens that never has more requests in flight at the service than the cap.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { CLIENT_PROTOCOL_VERSION, RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { ExitCode } from '../../core/errors.js';
import { AUTH_TIMEOUT_MS, AuthValidator, MAX_REPLY_BYTES, resolveAuthSettings, tokenProblem, type AuthSettings } from '../../core/relay/auth.js';
import { Relay, type RelayEvent } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';

const GOOD = 'good-token-' + 'x'.repeat(20);

interface AuthService {
  url: string;
  /** Requests received (each with its Authorization header and body). */
  requests: { authorization?: string; body: string }[];
  inFlight: number;
  maxInFlight: number;
  /** Bytes of reply the service managed to write (the huge-reply mode). */
  written: number;
  close(): Promise<void>;
}

type Mode = 'normal' | 'slow' | 'huge' | 'garbage';

/** A featherChat-style validation endpoint: `valid: true` for GOOD, 401 for anything else. */
async function startAuthService(opts: { mode?: Mode; delayMs?: number } = {}): Promise<AuthService> {
  const sockets = new Set<import('node:net').Socket>();
  const svc: AuthService = { url: '', requests: [], inFlight: 0, maxInFlight: 0, written: 0, close: async () => undefined };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      svc.requests.push({ authorization: req.headers.authorization, body });
      svc.inFlight++;
      svc.maxInFlight = Math.max(svc.maxInFlight, svc.inFlight);
      const done = () => svc.inFlight--;
      res.on('close', done);
      const answer = () => {
        if (opts.mode === 'garbage') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json</html>');
          return;
        }
        if (opts.mode === 'huge') {
          // Megabytes of "JSON", streamed without a length: the relay must stop reading at 4 KiB.
          res.writeHead(200, { 'content-type': 'application/json' });
          const chunk = Buffer.alloc(64 * 1024, 0x20);
          let left = 10 * 1024 * 1024;
          const pump = () => {
            while (left > 0 && !res.destroyed) {
              left -= chunk.length;
              svc.written += chunk.length;
              if (!res.write(chunk)) return void res.once('drain', pump);
            }
            if (!res.destroyed) res.end();
          };
          pump();
          return;
        }
        if (req.headers.authorization === `Bearer ${GOOD}`) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ valid: true, fingerprint: 'fc-user-1', alias: 'ana', eth_address: '0xabc' }));
        } else {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ valid: false }));
        }
      };
      const delay = opts.mode === 'slow' ? AUTH_TIMEOUT_MS + 1500 : (opts.delayMs ?? 0);
      if (delay > 0) {
        const t = setTimeout(answer, delay);
        res.on('close', () => clearTimeout(t));
      } else answer();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  svc.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/auth/validate`;
  svc.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return svc;
}

const relays: Relay[] = [];
const sessions: RelaySession[] = [];
const services: AuthService[] = [];
after(async () => {
  await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
  await Promise.all(relays.map((r) => r.stop()));
  await Promise.all(services.map((s) => s.close()));
});

async function service(opts: Parameters<typeof startAuthService>[0] = {}): Promise<AuthService> {
  const s = await startAuthService(opts);
  services.push(s);
  return s;
}

interface TestRelay {
  relay: Relay;
  fingerprint: string;
  events: RelayEvent[];
}

async function startRelay(auth: AuthSettings): Promise<TestRelay> {
  const tls = await deriveTlsCertificate(generateIdentity().seed);
  const events: RelayEvent[] = [];
  const relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, stun: false, auth, onEvent: (e) => events.push(e) });
  relays.push(relay);
  return { relay, fingerprint: tls.fingerprint, events };
}

async function open(r: TestRelay, token?: string): Promise<RelaySession> {
  const session = await RelaySession.open({ relay: r.relay.address, verify: expectFingerprint(r.fingerprint, 'relay'), ...(token === undefined ? {} : { token }) });
  sessions.push(session);
  return session;
}

/** The error `p` rejects with (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: number }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: number };
  }
  assert.fail('expected a rejection');
}

describe('token auth on a relay', () => {
  test('the good token is admitted (and may join); the service got it as a bearer token and in a JSON body', async () => {
    const svc = await service();
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const s = await open(r, GOOD);
    await s.joinEcho();
    assert.equal(svc.requests.length, 1);
    assert.equal(svc.requests[0].authorization, `Bearer ${GOOD}`);
    assert.deepEqual(JSON.parse(svc.requests[0].body), { token: GOOD });
    assert.equal(r.relay.metrics.auth.ok, 1);
    const admitted = r.events.find((e) => e.type === 'relay:authenticated');
    assert.deepEqual(admitted && { via: (admitted as any).via, fingerprint: (admitted as any).fingerprint, alias: (admitted as any).alias }, { via: 'service', fingerprint: 'fc-user-1', alias: 'ana' });
  });

  test('the cache: a second connection with the same token within cacheSeconds does not ask the service', async () => {
    const svc = await service();
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    await open(r, GOOD);
    const again = await open(r, GOOD);
    await again.joinEcho();
    assert.equal(svc.requests.length, 1);
    assert.equal(r.relay.metrics.auth.ok, 1);
    assert.equal(r.relay.metrics.auth.cached, 1);
    // A refused token is cached too.
    await rejection(open(r, 'bad-one'));
    await rejection(open(r, 'bad-one'));
    assert.equal(svc.requests.length, 2);
    assert.equal(r.relay.metrics.auth.refused, 1);
    assert.equal(r.relay.metrics.auth.cached, 2);
  });

  test('without a token: hello, ping and reflect work, but echo, rooms and presence are refused "token required" (AuthError, exit 15)', async () => {
    const svc = await service();
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const s = await open(r);
    await s.ping();
    await s.reflect();
    const err = await rejection(s.joinEcho());
    assert.equal(err.name, 'AuthError');
    assert.equal(err.code, ExitCode.AUTH_REFUSED);
    assert.match(err.message, /refused: token required/);
    const join = await rejection(s.joinRoom('0'.repeat(32)));
    assert.equal(join.name, 'AuthError');
    const reg = await rejection(s.ask({ type: 'register-challenge' }));
    assert.equal(reg.name, 'AuthError');
    assert.equal(svc.requests.length, 0);
    assert.equal(r.relay.metrics.refused.auth, 3);
  });

  test('a bad token is refused at hello: "token rejected by the auth service", and a malformed one without asking', async () => {
    const svc = await service();
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 0 });
    const err = await rejection(open(r, 'not-the-token'));
    assert.equal(err.name, 'AuthError');
    assert.equal(err.code, ExitCode.AUTH_REFUSED);
    assert.match(err.message, /refused: token rejected by the auth service/);
    assert.equal(svc.requests.length, 1);
    const bad = await rejection(open(r, 'has a space'));
    assert.match(bad.message, /token rejected: a token is visible ASCII/);
    assert.equal(svc.requests.length, 1);
    assert.equal(r.relay.metrics.auth.refused, 1);
    assert.equal(r.relay.metrics.refused.auth, 2);
    // No event carries a token.
    assert.ok(!JSON.stringify(r.events).includes('not-the-token'));
  });

  test('the service down: refused "auth service unavailable" (fail closed); with failOpen admitted; both counted as errors', async () => {
    const svc = await service();
    const url = svc.url;
    await svc.close();
    const closed = await startRelay({ url, failOpen: false, cacheSeconds: 30 });
    const err = await rejection(open(closed, GOOD));
    assert.equal(err.name, 'AuthError');
    assert.match(err.message, /refused: auth service unavailable/);
    assert.equal(closed.relay.metrics.auth.error, 1);
    // Errors are not cached: the next connection asks again.
    await rejection(open(closed, GOOD));
    assert.equal(closed.relay.metrics.auth.error, 2);

    const openRelay = await startRelay({ url, failOpen: true, cacheSeconds: 30 });
    const s = await open(openRelay, GOOD);
    await s.joinEcho();
    assert.equal(openRelay.relay.metrics.auth.error, 1);
    assert.ok(openRelay.events.some((e) => e.type === 'relay:authenticated' && e.via === 'fail-open'));
  });

  test('garbage from the service is an error, not a yes', async () => {
    const svc = await service({ mode: 'garbage' });
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const err = await rejection(open(r, GOOD));
    assert.match(err.message, /auth service unavailable/);
    assert.equal(r.relay.metrics.auth.error, 1);
  });

  test('a reply of megabytes is cut at 4 KiB: an error, and the service could write only a little of it', async () => {
    const svc = await service({ mode: 'huge' });
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const before = process.memoryUsage().rss;
    const err = await rejection(open(r, GOOD));
    assert.match(err.message, /auth service unavailable/);
    assert.equal(r.relay.metrics.auth.error, 1);
    const detail = r.events.find((e) => e.type === 'relay:refused' && e.reason === 'auth');
    assert.match(JSON.stringify(detail), new RegExp(`longer than ${MAX_REPLY_BYTES} bytes`));
    // The service streams 10 MiB; reading stopped at 4 KiB, so only socket buffers' worth went out.
    assert.ok(svc.written < 4 * 1024 * 1024, `the service wrote ${svc.written} bytes`);
    assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024);
  });

  test('a service slower than 5 s: the check gives up at the timeout, counted as an error', async () => {
    const svc = await service({ mode: 'slow' });
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const t0 = performance.now();
    const err = await rejection(open(r, GOOD));
    const took = performance.now() - t0;
    assert.match(err.message, /auth service unavailable/);
    assert.ok(took >= AUTH_TIMEOUT_MS - 100, `gave up after ${took} ms`);
    assert.equal(r.relay.metrics.auth.error, 1);
    const detail = r.events.find((e) => e.type === 'relay:refused' && e.reason === 'auth');
    assert.match(JSON.stringify(detail), /no answer from the auth service within 5000 ms/);
  });

  test('a flood of hellos with random tokens never has more requests in flight than the cap; the rest are refused busy', async () => {
    const svc = await service({ delayMs: 400 });
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30, maxConcurrent: 3, maxQueued: 4 });
    // 20 connections (no token yet), then each says hello again with a random token, all at once.
    const conns: RelaySession[] = [];
    for (let i = 0; i < 20; i++) conns.push(await open(r));
    const answers = await Promise.allSettled(conns.map((s) => s.ask({ type: 'hello', version: CLIENT_PROTOCOL_VERSION, token: randomBytes(16).toString('hex') }, { timeoutMs: 10_000 })));
    assert.ok(svc.maxInFlight <= 3, `${svc.maxInFlight} requests in flight at once`);
    assert.ok(svc.maxInFlight >= 1);
    const busy = answers.filter((a) => a.status === 'rejected' && /auth service busy/.test(String(a.reason?.message))).length;
    const refused = answers.filter((a) => a.status === 'rejected' && /token rejected by the auth service/.test(String(a.reason?.message))).length;
    assert.equal(busy + refused, 20);
    assert.ok(busy > 0);
    assert.equal(svc.requests.length, refused);
    const m = r.relay.metrics.auth;
    assert.equal(m.refused, refused);
    assert.equal(m.busy, busy);
    // One connection cannot have two checks going at once.
    const one = conns[0];
    const twice = await Promise.allSettled([0, 1, 2].map(() => one.ask({ type: 'hello', version: CLIENT_PROTOCOL_VERSION, token: randomBytes(16).toString('hex') }, { timeoutMs: 10_000 })));
    assert.ok(twice.some((a) => a.status === 'rejected' && /one token check at a time|at most 3 token checks/.test(String(a.reason?.message))));
    assert.ok(svc.maxInFlight <= 3);
  });

  test('a hello of another protocol version (16-bit source ids) is refused plainly and counted, before any token check', async () => {
    const svc = await service();
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const s = await open(r);
    const err = await rejection(s.ask({ type: 'hello', version: 1, token: randomBytes(16).toString('hex') }, { timeoutMs: 5_000 }));
    assert.match(err.message, /wzp protocol 2, the client 1/);
    assert.equal(r.relay.metrics.refused['protocol-version'], 1);
    assert.equal(svc.requests.length, 0);
  });

  test('live reload: setAccess turns auth off and on; ACL/auth settings are checked before they apply', async () => {
    const svc = await service();
    const r = await startRelay({ url: svc.url, failOpen: false, cacheSeconds: 30 });
    const s = await open(r);
    await rejection(s.joinEcho());
    r.relay.setAccess({ auth: false });
    await s.joinEcho();
    assert.equal(r.relay.access.auth, undefined);
    r.relay.setAccess({ auth: { url: svc.url, failOpen: false, cacheSeconds: 30 } });
    const t = await open(r);
    await rejection(t.joinEcho());
    assert.throws(() => r.relay.setAccess({ auth: { url: 'ftp://x', failOpen: false, cacheSeconds: 1 } }), /must be http: or https:/);
    assert.throws(() => r.relay.setAccess({ roomAcls: [{ name: 'a', allow: [] }] }), /at least one/);
    const access: { auth?: { url: string } } = r.relay.access;
    assert.equal(access.auth?.url, svc.url);
  });
});

describe('auth settings and tokens', () => {
  test('settings are checked', () => {
    assert.throws(() => resolveAuthSettings({ url: 'not a url', failOpen: false, cacheSeconds: 1 }), /not a URL/);
    assert.throws(() => resolveAuthSettings({ url: 'http://u:p@host/', failOpen: false, cacheSeconds: 1 }), /credentials/);
    assert.throws(() => resolveAuthSettings({ url: 'https://host/', failOpen: false, cacheSeconds: -1 }), /non-negative/);
    assert.equal(resolveAuthSettings({ url: 'https://host/v', failOpen: true, cacheSeconds: 0 }).maxConcurrent, 8);
  });

  test('token shapes', () => {
    assert.equal(tokenProblem('abc.DEF-123_~'), undefined);
    assert.match(tokenProblem('') ?? '', /empty/);
    assert.match(tokenProblem('a\r\nX-Evil: 1') ?? '', /visible ASCII/);
    assert.match(tokenProblem('x'.repeat(5000)) ?? '', /at most 2048/);
  });

  test('answers expire after cacheSeconds; errors are never cached', async () => {
    const svc = await service();
    const v = new AuthValidator({ url: svc.url, failOpen: false, cacheSeconds: 1 });
    assert.equal((await v.check(GOOD)).result, 'ok');
    assert.deepEqual(await v.check(GOOD), { result: 'ok', cached: true, fingerprint: 'fc-user-1', alias: 'ana' });
    assert.equal(svc.requests.length, 1);
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(await v.check(GOOD), { result: 'ok', cached: false, fingerprint: 'fc-user-1', alias: 'ana' });
    assert.equal(svc.requests.length, 2);
    v.close();
  });

  test('a declared Content-Length over 4 KiB is not read; a redirect is not followed; other statuses are errors', async () => {
    let mode = '';
    const hits: string[] = [];
    const server = createServer((req, res) => {
      hits.push(req.url ?? '');
      req.resume();
      if (mode === 'long') res.writeHead(200, { 'content-length': String(MAX_REPLY_BYTES + 1) }).end('{"valid":true}'.padEnd(MAX_REPLY_BYTES + 1, ' '));
      else if (mode === 'redirect') res.writeHead(302, { location: '/elsewhere' }).end();
      else res.writeHead(500).end('{"valid":true}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const v = new AuthValidator({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v`, failOpen: false, cacheSeconds: 0 });
      mode = 'long';
      assert.match(JSON.stringify(await v.check('t1')), /longer than 4096 bytes/);
      mode = 'redirect';
      assert.match(JSON.stringify(await v.check('t2')), /HTTP 302/);
      mode = 'error';
      assert.match(JSON.stringify(await v.check('t3')), /HTTP 500/);
      assert.deepEqual(hits, ['/v', '/v', '/v']);
      assert.equal(v.stats.error, 3);
      v.close();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('concurrent checks of one token share one request', async () => {
    const svc = await service({ delayMs: 200 });
    const v = new AuthValidator({ url: svc.url, failOpen: false, cacheSeconds: 0 });
    const verdicts = await Promise.all([1, 2, 3, 4].map(() => v.check(GOOD)));
    assert.ok(verdicts.every((x) => x.result === 'ok'));
    assert.equal(svc.requests.length, 1);
    v.close();
  });
});

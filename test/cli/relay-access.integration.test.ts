/**
 * Token auth and room ACLs with real processes: `wzp relay --auth-url ... --acl ...` against
 * an HTTP auth service started here (node:http on 127.0.0.1) that accepts one token, and the
 * real client commands (echo-test, call) with --token / WZP_TOKEN: the good token calls, a
 * missing or bad one is refused with its message and exit 15, a service that is down refuses
 * (fail closed) unless --auth-fail-open, and an identity not on a room's list gets exit 16.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadOrCreateIdentity } from '../../core/crypto/identity.js';
import { makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';

const GOOD = 'fc-session-token-0123456789';

describe('a relay with token auth and a room ACL (real processes)', () => {
  let server: Server;
  let url: string;
  let requests = 0;
  let relayHome: CliHome;
  let relay: RunningRelay;
  let home: CliHome;
  const ids: Record<'ana' | 'bob' | 'eve', { path: string; fingerprint: string }> = {} as never;

  before(async () => {
    server = createServer((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => {
        if (req.headers.authorization === `Bearer ${GOOD}`) res.writeHead(200, { 'content-type': 'application/json' }).end('{"valid":true,"fingerprint":"fc1","alias":"ana"}');
        else res.writeHead(401).end('{"valid":false}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/auth/validate`;
    home = makeHome('wzp-access-client-');
    for (const name of ['ana', 'bob', 'eve'] as const) {
      const path = join(home.dir, `${name}.json`);
      const { identity } = await loadOrCreateIdentity(path, { create: true });
      ids[name] = { path, fingerprint: identity.fingerprint };
    }
    relayHome = makeHome('wzp-access-relay-');
    relay = await startRelayProcess(
      ['--listen', '127.0.0.1:0', '--json', '--auth-url', url, '--acl', `team=${ids.ana.fingerprint},${ids.bob.fingerprint}`],
      relayHome,
    );
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome?.cleanup();
    home?.cleanup();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const echo = (extra: string[], env: NodeJS.ProcessEnv = {}) =>
    runCli(['echo-test', relay.address, '--relay-fingerprint', relay.fingerprint, '--duration', '1', '--json', ...extra], { ...home, env: { ...home.env, ...env } });

  test('the good token (--token, or WZP_TOKEN) is admitted: echo-test passes', async () => {
    const r = await echo(['--token', GOOD]);
    assert.equal(r.code, 0, r.stderr);
    const viaEnv = await echo([], { WZP_TOKEN: GOOD });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    // The token is never in the report.
    assert.ok(!r.stdout.includes(GOOD));
  });

  test('no token: "token required", exit 15', async () => {
    const r = await echo([]);
    assert.equal(r.code, 15, r.stderr);
    const doc = parseJsonDocument(r) as any;
    assert.equal(doc.name, 'AuthError');
    assert.match(doc.message, /refused: token required/);
    assert.match(doc.suggestions.join(' '), /--token TOKEN or the WZP_TOKEN environment variable/);
  });

  test('a bad token: "token rejected by the auth service", exit 15 (also without --json)', async () => {
    const r = await echo(['--token', 'stolen-or-expired']);
    assert.equal(r.code, 15, r.stderr);
    assert.match((parseJsonDocument(r) as any).message, /refused: token rejected by the auth service/);
    const human = await runCli(['echo-test', relay.address, '--relay-fingerprint', relay.fingerprint, '--duration', '1'], { ...home, env: { ...home.env, WZP_TOKEN: 'nope' } });
    assert.equal(human.code, 15);
    assert.match(human.stderr, /Error: relay \S+ refused: token rejected by the auth service/);
    assert.ok(!human.stderr.includes('nope'));
  });

  test('listen and direct-test (presence) send the token too: without one "token required", with a bad one refused, exit 15', async () => {
    const base = (cmd: string[]) => [...cmd, relay.address, '--relay-fingerprint', relay.fingerprint, '--identity', ids.ana.path, '--json'];
    const none = await runCli([...base(['listen']), '--once'], home);
    assert.equal(none.code, 15, none.stderr);
    assert.match((parseJsonDocument(none) as any).message, /refused: token required/);
    const bad = await runCli([...base(['direct-test']), '--wait', '--token', 'wrong'], home);
    assert.equal(bad.code, 15, bad.stderr);
    assert.match((parseJsonDocument(bad) as any).message, /refused: token rejected by the auth service/);
  });

  test('two listed identities call each other in the restricted room; an unlisted one is refused with exit 16', async () => {
    const callArgs = (who: 'ana' | 'bob' | 'eve', tone: string) => [
      'call', relay.address, '--relay-fingerprint', relay.fingerprint, '--room', 'team', '--tone', tone, '--duration', '3', '--reconnect', '0',
      '--identity', ids[who].path, '--token', GOOD, '--json',
    ];
    const [a, b] = await Promise.all([runCli(callArgs('ana', '440'), home), runCli(callArgs('bob', '660'), home)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const ra = parseJsonDocument(a).result as any;
    assert.ok(ra.participants.some((p: any) => p.fingerprint === ids.bob.fingerprint && p.packetsReceived > 0), JSON.stringify(ra.participants));
    const e = await runCli(callArgs('eve', '880'), home);
    assert.equal(e.code, 16, e.stderr);
    const doc = parseJsonDocument(e) as any;
    assert.equal(doc.name, 'RoomRestrictedError');
    assert.equal(doc.message.startsWith('room team is restricted on relay '), true, doc.message);
    assert.ok(doc.message.endsWith(`your identity ${ids.eve.fingerprint} is not on its list`), doc.message);
  });

  test('the relay counts it all: auth results and refusals by reason', async () => {
    const stopped = await relay.stop('SIGTERM');
    const m = (parseJsonDocument(stopped).result as any).metrics;
    assert.ok(m.auth.ok >= 1, JSON.stringify(m.auth));
    assert.ok(m.auth.cached >= 1, JSON.stringify(m.auth));
    assert.ok(m.auth.refused >= 1, JSON.stringify(m.auth));
    assert.ok(m.refused.auth >= 2);
    assert.equal(m.refused.acl, 1);
    // Cached answers were not asked again: fewer requests than connections that gave a token.
    assert.equal(requests, m.auth.ok + m.auth.refused + m.auth.error);
  });
});

describe('an auth service that is down (real processes)', () => {
  let home: CliHome;
  let url: string;
  before(async () => {
    home = makeHome('wzp-access-down-');
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/auth/validate`;
    await new Promise<void>((resolve) => s.close(() => resolve()));
  });
  after(() => home.cleanup());

  for (const failOpen of [false, true]) {
    test(failOpen ? 'with --auth-fail-open: admitted' : 'fail closed: "auth service unavailable", exit 15', async () => {
      const relayHome = makeHome('wzp-access-down-relay-');
      const relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--json', '--auth-url', url, ...(failOpen ? ['--auth-fail-open'] : [])], relayHome);
      try {
        const r = await runCli(['echo-test', relay.address, '--relay-fingerprint', relay.fingerprint, '--duration', '1', '--json', '--token', GOOD], home);
        if (failOpen) assert.equal(r.code, 0, r.stderr);
        else {
          assert.equal(r.code, 15, r.stderr);
          assert.match((parseJsonDocument(r) as any).message, /refused: auth service unavailable/);
        }
        const m = (parseJsonDocument(await relay.stop('SIGTERM')).result as any).metrics;
        assert.equal(m.auth.error, 1);
      } finally {
        await relay.stop('SIGKILL').catch(() => undefined);
        relayHome.cleanup();
      }
    });
  }
});

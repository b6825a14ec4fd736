/**
 * A real Prometheus (Debian's /usr/bin/prometheus; CI installs it) scraping `wzp relay
 * --metrics` every second while a call goes through the relay: the series exist with sane
 * values (rooms and members during the call, forwarded datagrams rising, every refusal
 * reason present, the one provoked counted), and every query of the Grafana dashboard
 * (docs/grafana/wzp-relay.json) is accepted by Prometheus and returns data. There is no
 * Grafana package here, so the dashboard's queries are checked through Prometheus's API.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { REFUSAL_REASONS } from '../../core/relay/limits.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { makeHome, REPO_ROOT, startRelayProcess } from '../helpers/cli.js';

const PROMETHEUS = '/usr/bin/prometheus';
const DASHBOARD = join(REPO_ROOT, 'docs', 'grafana', 'wzp-relay.json');

interface PromVector {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Every `expr` of the dashboard's panels, with its template variables filled in as Grafana would. */
function dashboardQueries(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  return dashboard.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      panel: p.title,
      // $__rate_interval: at least 4 scrape intervals (1 s here); $instance: "All" (.*).
      expr: t.expr.replaceAll('$__rate_interval', '10s').replaceAll('$instance', '.*'),
    })),
  );
}

describe('Prometheus scraping a relay', () => {
  test('series during a call, and every dashboard query', { skip: existsSync(PROMETHEUS) ? false : `${PROMETHEUS} is absent (apt-get install prometheus; CI installs it)`, timeout: 60_000 }, async () => {
    const home = makeHome('wzp-prometheus-');
    const dir = mkdtempSync(join(tmpdir(), 'wzp-prometheus-'));
    // A trusted peer relay (never linked) gives the federation panels their per-peer series, at 0.
    const trusted = '0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef';
    const relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--trusted', trusted], home);
    let prometheus: ChildProcess | undefined;
    const sessions: RelaySession[] = [];
    let sending: NodeJS.Timeout | undefined;
    try {
      const url = /wzp relay metrics on (http:\/\/(\S+)\/metrics) /.exec(relay.stderr());
      assert.ok(url, `the metrics URL is printed on start: ${relay.stderr()}`);
      const target = url[2];
      assert.notEqual(parseHostPort(target).port, 0);
      // The endpoint itself, before Prometheus.
      const direct = await fetch(url[1]);
      assert.equal(direct.status, 200);
      assert.match(await direct.text(), /^wzp_relay_connections_open 0$/m);
      assert.equal((await fetch(`http://${target}/readyz`)).status, 200);

      const webPort = await freePort();
      const config = join(dir, 'prometheus.yml');
      writeFileSync(
        config,
        [
          'global:',
          '  scrape_interval: 1s',
          '  evaluation_interval: 1s',
          'scrape_configs:',
          '  - job_name: wzp-relay',
          '    scrape_interval: 1s',
          '    scrape_timeout: 900ms',
          '    static_configs:',
          `      - targets: ['${target}']`,
          '',
        ].join('\n'),
      );
      let promLog = '';
      prometheus = spawn(PROMETHEUS, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`, '--log.level=warn'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      prometheus.stderr?.on('data', (d) => (promLog += d));
      const api = `http://127.0.0.1:${webPort}`;
      const query = async (expr: string): Promise<PromVector> => {
        const r = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
        return (await r.json()) as PromVector;
      };
      const value = async (expr: string): Promise<number | undefined> => {
        const r = await query(expr);
        const v = r.data?.result[0]?.value[1];
        return v === undefined ? undefined : Number(v);
      };
      const until = async (what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> => {
        for (const deadline = Date.now() + ms; !(await cond().catch(() => false)); await sleep(250)) {
          if (Date.now() > deadline) throw new Error(`${what} not reached in ${ms} ms\nprometheus: ${promLog}`);
        }
      };
      await until('prometheus ready', async () => (await fetch(`${api}/-/ready`)).ok);
      await until('the relay scraped', async () => (await value('up{job="wzp-relay"}')) === 1);

      // A call: two members of a room, 50 datagrams a second each; and one refused join.
      const fingerprint = parseFingerprint(relay.fingerprint);
      for (let i = 0; i < 3; i++) {
        sessions.push(await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(fingerprint, relay.address) }));
      }
      const [a, b, c] = sessions;
      await a.joinRoom('d'.repeat(32));
      await b.joinRoom('d'.repeat(32));
      await assert.rejects(c.joinRoom('not-a-room-id'));
      sending = setInterval(() => {
        a.datagrams.send(new Uint8Array(80));
        b.datagrams.send(new Uint8Array(80));
      }, 20);

      await until('members seen', async () => (await value('wzp_relay_room_members')) === 2);
      assert.equal(await value('wzp_relay_rooms_open'), 1);
      assert.equal(await value('wzp_relay_connections_open'), 3);
      const forwarded = 'sum(wzp_relay_datagrams_forwarded_total)';
      await until('forwarded datagrams scraped', async () => ((await value(forwarded)) ?? 0) > 0);
      const first = (await value(forwarded)) ?? 0;
      await until('forwarded datagrams rising', async () => ((await value(forwarded)) ?? 0) > first + 50);
      assert.ok(((await value('sum(wzp_relay_datagrams_received_total)')) ?? 0) > 0);
      assert.ok(((await value('sum(wzp_relay_bytes_forwarded_total)')) ?? 0) > 0);
      assert.ok(((await value('wzp_relay_handshakes_total{result="ok"}')) ?? 0) >= 3);
      assert.equal(await value('wzp_relay_refusals_total{reason="bad-room"}'), 1);
      assert.equal(await value('count(wzp_relay_refusals_total)'), REFUSAL_REASONS.length, 'a series for every refusal reason');
      assert.equal(await value('sum(wzp_relay_auth_total)'), 0, 'auth results registered at zero');
      assert.ok(((await value('process_resident_memory_bytes{job="wzp-relay"}')) ?? 0) > 10e6);
      // Enough scrapes with the call going for every rate() window of the dashboard.
      await until('latency in the histogram', async () => ((await value('sum(increase(wzp_relay_forwarding_latency_seconds_count[10s]))')) ?? 0) > 0);
      await sleep(3000);

      const queries = dashboardQueries();
      assert.ok(queries.length >= 20, `dashboard queries: ${queries.length}`);
      const empty: string[] = [];
      for (const q of queries) {
        const r = await query(q.expr);
        assert.equal(r.status, 'success', `${q.panel}: ${q.expr}: ${r.error ?? ''}`);
        assert.equal(r.data?.resultType, 'vector');
        if ((r.data?.result.length ?? 0) === 0) empty.push(`${q.panel}: ${q.expr}`);
      }
      assert.deepEqual(empty, [], 'every dashboard query returns data');
      const p99 = (await value('histogram_quantile(0.99, sum by (le) (rate(wzp_relay_forwarding_latency_seconds_bucket[10s])))')) ?? NaN;
      assert.ok(p99 > 0 && p99 <= 0.02, `forwarding p99 ${p99} s on loopback`);
    } finally {
      if (sending) clearInterval(sending);
      await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
      await relay.stop();
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((r) => prometheus?.once('exit', r));
        prometheus.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
        if (prometheus.exitCode === null) prometheus.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
      home.cleanup();
    }
  });
});

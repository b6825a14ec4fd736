/**
 * The relay's metrics owner (core/relay/metrics.ts) and its HTTP endpoint
 * (core/relay/metrics-server.ts), without a relay: the snapshot equals what was counted, the
 * Prometheus text carries every series, and the endpoint answers, refuses and bounds as
 * documented.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { AUTH_RESULTS, DROP_REASONS, LATENCY_SAMPLE_EVERY, RelayMetricsRegistry } from '../../core/relay/metrics.js';
import { MAX_CONCURRENT_SCRAPES, MAX_METRICS_CONNECTIONS, parseMetricsListen, Readiness, startMetricsServer } from '../../core/relay/metrics-server.js';
import { REFUSAL_REASONS } from '../../core/relay/limits.js';
import type { SocketGateStats } from '../../core/transport/quic.js';
import { GATE_DROP_REASONS } from '../../core/transport/quic-gate.js';
import { Demux } from '../../core/transport/demux.js';

function gateStats(): SocketGateStats {
  return {
    passed: 0,
    retries: 3,
    handshakes: 10,
    inProgress: 2,
    dropped: Object.fromEntries(GATE_DROP_REASONS.map((r) => [r, 0])) as SocketGateStats['dropped'],
    errors: 1,
    sendErrors: 4,
  };
}

function ownerWithSources(gate = gateStats(), auth = { ok: 0, refused: 1, error: 0, cached: 2, busy: 0 }): RelayMetricsRegistry {
  const m = new RelayMetricsRegistry();
  m.attach({
    gate: () => gate,
    stun: () => undefined,
    demuxDropped: () => 5,
    roomsOpen: () => 2,
    roomMembers: () => 7,
    presence: () => ({ registrationsOpen: 1, registrationsTotal: 2, registrationsReplaced: 0, callSignalsRouted: 3, callSignalsOffline: 0, callsOpen: 1 }),
    auth: () => auth,
  });
  return m;
}

/** The value of one sample line in a Prometheus text exposition (undefined if absent). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('relay metrics owner', () => {
  test('the snapshot is what was counted, with the gate\'s and the other sources\' counters', () => {
    const gate = gateStats();
    gate.dropped.runt = 6;
    const m = ownerWithSources(gate);
    m.connectionsOpen = 3;
    m.connectionsTotal = 9;
    m.quicReceived = 100;
    m.udpReceived = 40;
    m.datagramsEchoed = 2;
    m.echoDropped = 1;
    m.rooms.forwarded = 130;
    m.rooms.dropped = 4;
    m.rooms.purged = 5;
    m.mediaPath.rejected = 2;
    m.strayUdp = 1;
    m.signalsMalformed = 7;
    m.refuse('join-rate');
    m.refuse('join-rate');
    m.refuse('runt');
    const s = m.snapshot();
    assert.equal(s.connectionsOpen, 3);
    assert.equal(s.connectionsTotal, 9);
    assert.equal(s.datagramsReceived, 140);
    assert.equal(s.datagramsOnUdpPath, 40);
    assert.equal(s.datagramsForwarded, 130);
    assert.equal(s.datagramsDropped, 5);
    assert.equal(s.datagramsPurged, 5);
    assert.equal(s.udpPathRejected, 2 + 1 + 5);
    assert.equal(s.roomsOpen, 2);
    assert.equal(s.refused['join-rate'], 2);
    assert.equal(s.refused.runt, 7, 'own refusals plus the gate\'s drops');
    assert.equal(s.handshakesStarted, 10);
    assert.equal(s.retriesSent, 3);
    assert.equal(s.socketErrors, 1);
    assert.equal(s.sendErrors, 4);
    assert.equal(s.presence.callsOpen, 1);
    assert.deepEqual(Object.keys(s.refused).sort(), [...REFUSAL_REASONS].sort());
    // A snapshot is a copy: counting on does not change it.
    m.refuse('join-rate');
    assert.equal(s.refused['join-rate'], 2);
  });

  test('failed handshakes: started minus succeeded minus in progress, never decreasing', () => {
    const gate = gateStats();
    const m = ownerWithSources(gate);
    m.handshakesOk = 5;
    assert.equal(m.handshakesFailed(), 10 - 5 - 2);
    // A success counted before the gate saw its handshake end: no step back.
    m.handshakesOk = 6;
    assert.equal(m.handshakesFailed(), 3);
    gate.inProgress = 0;
    gate.handshakes = 12;
    assert.equal(m.handshakesFailed(), 6);
  });

  test('the socket stamps about one packet in LATENCY_SAMPLE_EVERY, with no aliasing, and only while it is handled', () => {
    const stamped = { a: 0, other: 0 };
    let seen = 0;
    const demux = new Demux(
      () => undefined,
      () => {
        if (demux.arrivedAt > 0) stamped.other++;
        return Promise.resolve();
      },
    );
    demux.register({
      name: 'a',
      firstBytes: [[0x20, 0x20]],
      handle: () => {
        seen++;
        if (demux.arrivedAt > 0) stamped.a++;
      },
    });
    const a = Buffer.from([0x20, 1]);
    const quic = Buffer.from([0xc0, 1]);
    const from = { address: '127.0.0.1', port: 1 };
    for (let i = 0; i < 8000; i++) void demux.receive(a, from);
    assert.equal(stamped.a, 0, 'off by default');
    demux.sampleArrivals = LATENCY_SAMPLE_EVERY;
    // Packets of two kinds alternating: a counter would stamp only one kind.
    for (let i = 0; i < 16000; i++) void demux.receive(i % 2 === 0 ? a : quic, from);
    assert.equal(seen, 16000);
    for (const n of [stamped.a, stamped.other]) assert.ok(n > 8000 / LATENCY_SAMPLE_EVERY / 2 && n < (8000 / LATENCY_SAMPLE_EVERY) * 2, `stamped ${n} of 8000`);
    assert.equal(demux.arrivedAt, 0, 'no stamp outside a packet\'s handling');
  });

  test('the Prometheus text has every wzp_relay series with the counted values, and process metrics', async () => {
    const m = ownerWithSources();
    m.connectionsOpen = 3;
    m.connectionsTotal = 9;
    m.quicReceived = 11;
    m.udpBytesReceived = 1234;
    m.mediaPath.sent = 20;
    m.mediaPath.bytesSentInQuic = 999;
    m.handshakesOk = 4;
    m.refuse('media-rate');
    m.observeForwardingMs(0.3);
    m.observeForwardingMs(-1); // not a latency: ignored
    const text = await m.prometheusText();
    assert.equal(sample(text, 'wzp_relay_connections_open'), 3);
    assert.equal(sample(text, 'wzp_relay_connections_total'), 9);
    assert.equal(sample(text, 'wzp_relay_rooms_open'), 2);
    assert.equal(sample(text, 'wzp_relay_room_members'), 7);
    assert.equal(sample(text, 'wzp_relay_datagrams_received_total{path="quic"}'), 11);
    assert.equal(sample(text, 'wzp_relay_datagrams_received_total{path="udp"}'), 0);
    assert.equal(sample(text, 'wzp_relay_bytes_received_total{path="udp"}'), 1234);
    assert.equal(sample(text, 'wzp_relay_datagrams_forwarded_total{path="udp"}'), 20);
    assert.equal(sample(text, 'wzp_relay_bytes_forwarded_total{path="quic"}'), 999);
    assert.equal(sample(text, 'wzp_relay_handshakes_total{result="ok"}'), 4);
    assert.equal(sample(text, 'wzp_relay_handshakes_total{result="failed"}'), 4);
    assert.equal(sample(text, 'wzp_relay_refusals_total{reason="media-rate"}'), 1);
    for (const r of REFUSAL_REASONS) assert.notEqual(sample(text, `wzp_relay_refusals_total{reason="${r}"}`), undefined, r);
    for (const r of DROP_REASONS) assert.notEqual(sample(text, `wzp_relay_drops_total{reason="${r}"}`), undefined, r);
    assert.equal(sample(text, 'wzp_relay_drops_total{reason="udp-rejected"}'), 5);
    assert.equal(sample(text, 'wzp_relay_drops_total{reason="send-error"}'), 4);
    for (const r of AUTH_RESULTS) assert.notEqual(sample(text, `wzp_relay_auth_total{result="${r}"}`), undefined, r);
    assert.equal(sample(text, 'wzp_relay_auth_total{result="cached"}'), 2);
    assert.equal(sample(text, 'wzp_relay_forwarding_latency_seconds_count'), 1);
    assert.equal(sample(text, 'wzp_relay_forwarding_latency_seconds_bucket{le="0.0005"}'), 1);
    assert.equal(sample(text, 'wzp_relay_forwarding_latency_seconds_bucket{le="0.00025"}'), 0);
    assert.ok((sample(text, 'process_resident_memory_bytes') ?? 0) > 0, 'default process metrics');
    assert.notEqual(sample(text, 'process_cpu_seconds_total'), undefined);
    // Counting on shows in the next scrape (values are read at scrape time).
    m.connectionsTotal = 10;
    assert.equal(sample(await m.prometheusText(), 'wzp_relay_connections_total'), 10);
  });

  test('two owners have registries of their own (no global registry shared)', async () => {
    const a = new RelayMetricsRegistry();
    const b = new RelayMetricsRegistry();
    a.connectionsTotal = 1;
    b.connectionsTotal = 2;
    assert.notEqual(a.prometheus(), b.prometheus());
    assert.equal(sample(await a.prometheusText(), 'wzp_relay_connections_total'), 1);
    assert.equal(sample(await b.prometheusText(), 'wzp_relay_connections_total'), 2);
  });
});

describe('readiness', () => {
  test('ready while heartbeats come on time; stale when they stop or fail', () => {
    const r = new Readiness(5000, 0);
    assert.equal(r.staleReason(1000), undefined);
    r.beat(1000);
    assert.equal(r.staleReason(5999), undefined);
    assert.match(r.staleReason(6001) ?? '', /not refreshed for 5001 ms/);
    r.beat(6500, 'relay not started');
    assert.match(r.staleReason(6500) ?? '', /not refreshed for 5500 ms \(relay not started\)/);
    r.beat(7000);
    assert.match(r.staleReason(7000) ?? '', /event loop blocked for 6000 ms/, 'the gap before this beat was too long');
    r.beat(8000);
    assert.equal(r.staleReason(8000), undefined, 'ready again at the next beat on time');
  });
});

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function get(url: string, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: body === undefined ? {} : { 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('metrics HTTP endpoint', () => {
  test('GET /metrics, /healthz, /readyz; 404, 405 and 413 otherwise', async () => {
    const owner = ownerWithSources();
    owner.connectionsTotal = 42;
    const registry = owner.prometheus();
    let draining = false;
    const server = await startMetricsServer({
      listen: '127.0.0.1:0',
      metrics: () => registry.metrics(),
      contentType: registry.contentType,
      refresh: () => undefined,
      isDraining: () => draining,
    });
    try {
      const base = `http://127.0.0.1:${server.address.port}`;
      assert.equal(server.url, `${base}/metrics`);
      const metrics = await get(`${base}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(String(metrics.headers['content-type']), /text\/plain; version=0\.0\.4/);
      assert.equal(sample(metrics.body, 'wzp_relay_connections_total'), 42);
      assert.equal((await get(`${base}/metrics?x=1`)).status, 200, 'a query string is ignored');
      assert.deepEqual([(await get(`${base}/healthz`)).status, (await get(`${base}/healthz`)).body], [200, 'ok\n']);
      assert.equal((await get(`${base}/readyz`)).status, 200);
      draining = true;
      const r = await get(`${base}/readyz`);
      assert.deepEqual([r.status, r.body], [503, 'draining\n']);
      assert.equal((await get(`${base}/healthz`)).status, 200, 'alive while draining');
      assert.equal((await get(`${base}/`)).status, 404);
      assert.equal((await get(`${base}/metrics/../etc/passwd`)).status, 404);
      const post = await get(`${base}/metrics`, 'POST');
      assert.deepEqual([post.status, post.headers.allow], [405, 'GET, HEAD']);
      assert.equal((await get(`${base}/metrics`, 'DELETE')).status, 405);
      assert.equal((await get(`${base}/metrics`, 'GET', 'x'.repeat(100))).status, 413);
      const head = await get(`${base}/healthz`, 'HEAD');
      assert.deepEqual([head.status, head.body], [200, '']);
    } finally {
      await server.close();
    }
  });

  test('/readyz is 503 once the stats stop refreshing (the relay stopped), 200 again after', async () => {
    let failing = false;
    const server = await startMetricsServer({
      listen: '127.0.0.1:0',
      metrics: async () => '',
      contentType: 'text/plain',
      refresh: () => {
        if (failing) throw new Error('relay not started');
      },
      heartbeatMs: 20,
      staleAfterMs: 150,
    });
    try {
      const url = `http://127.0.0.1:${server.address.port}/readyz`;
      assert.equal((await get(url)).status, 200);
      failing = true;
      // Polled, not timed: whenever the staleness shows, it must say why.
      let r = await get(url);
      for (let i = 0; i < 100 && r.status === 200; i++) {
        await new Promise((res) => setTimeout(res, 20));
        r = await get(url);
      }
      assert.equal(r.status, 503);
      assert.match(r.body, /^stale: stats not refreshed for \d+ ms \(relay not started\)/);
      failing = false;
      for (let i = 0; i < 100 && r.status !== 200; i++) {
        await new Promise((res) => setTimeout(res, 20));
        r = await get(url);
      }
      assert.equal(r.status, 200);
    } finally {
      await server.close();
    }
  });

  test('a failing exposition is a 500, scrapes at once are bounded, and garbage gets 400', async () => {
    let release: () => void = () => undefined;
    const slow = new Promise<void>((r) => (release = r));
    let calls = 0;
    const server = await startMetricsServer({
      listen: '127.0.0.1:0',
      metrics: async () => {
        calls++;
        if (calls === 1) throw new Error('boom');
        await slow;
        return 'x 1\n';
      },
      contentType: 'text/plain',
      refresh: () => undefined,
    });
    try {
      const base = `http://127.0.0.1:${server.address.port}`;
      const failed = await get(`${base}/metrics`);
      assert.deepEqual([failed.status, failed.body], [500, 'metrics failed: boom\n']);
      const pending = Array.from({ length: MAX_CONCURRENT_SCRAPES }, () => get(`${base}/metrics`));
      while (calls < 1 + MAX_CONCURRENT_SCRAPES) await new Promise((r) => setTimeout(r, 5));
      const refused = await get(`${base}/metrics`);
      assert.equal(refused.status, 503);
      release();
      for (const p of pending) assert.equal((await p).status, 200);
      // Not HTTP at all: answered 400 and closed, the server keeps serving.
      const garbage = await new Promise<string>((resolve) => {
        const s = connect(server.address.port, '127.0.0.1', () => s.write('\x00\x01garbage\r\n\r\n'));
        let text = '';
        s.on('data', (d) => (text += d));
        s.on('close', () => resolve(text));
        s.on('error', () => resolve(text));
      });
      assert.match(garbage, /^HTTP\/1\.1 400/);
      assert.equal((await get(`${base}/healthz`)).status, 200);
    } finally {
      await server.close();
    }
  });

  test('connections at once are bounded: one over MAX_METRICS_CONNECTIONS is closed unanswered', async () => {
    const server = await startMetricsServer({ listen: '127.0.0.1:0', metrics: async () => '', contentType: 'text/plain', refresh: () => undefined });
    const held: Socket[] = [];
    try {
      for (let i = 0; i < MAX_METRICS_CONNECTIONS; i++) {
        held.push(await new Promise<Socket>((resolve, reject) => {
          const s = connect(server.address.port, '127.0.0.1', () => resolve(s));
          s.on('error', reject);
        }));
      }
      // Each held connection is accepted (a request on it is answered) ...
      const first = held[0];
      const answered = new Promise<string>((resolve) => first.once('data', (d) => resolve(String(d))));
      first.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      assert.match(await answered, /^HTTP\/1\.1 200/);
      // ... and the one over the bound is closed without an answer.
      const extra = await new Promise<string>((resolve) => {
        let text = '';
        const s = connect(server.address.port, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n'));
        s.on('data', (d) => (text += d));
        s.on('close', () => resolve(text));
        s.on('error', () => resolve(text));
      });
      assert.equal(extra, '');
    } finally {
      for (const s of held) s.destroy();
      await server.close();
    }
  });

  test('a bad or busy --metrics address is a clear error naming the flag', async () => {
    assert.throws(() => parseMetricsListen('nonsense'), (e: Error) => e.name === 'UsageError' && /^--metrics "nonsense" is not HOST:PORT/.test(e.message));
    assert.throws(() => parseMetricsListen('127.0.0.1:99999'), (e: Error) => e.name === 'UsageError' && /--metrics/.test(e.message));
    const first = await startMetricsServer({ listen: '127.0.0.1:0', metrics: async () => '', contentType: 'text/plain', refresh: () => undefined });
    try {
      await assert.rejects(
        startMetricsServer({ listen: `127.0.0.1:${first.address.port}`, metrics: async () => '', contentType: 'text/plain', refresh: () => undefined }),
        (e: Error) => e.name === 'NetworkError' && e.message === `cannot serve metrics on --metrics 127.0.0.1:${first.address.port}: another process is using that port (EADDRINUSE)`,
      );
      await assert.rejects(
        startMetricsServer({ listen: '192.0.2.1:0', metrics: async () => '', contentType: 'text/plain', refresh: () => undefined }),
        (e: Error) => e.name === 'NetworkError' && /--metrics 192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine/.test(e.message),
      );
    } finally {
      await first.close();
    }
  });
});

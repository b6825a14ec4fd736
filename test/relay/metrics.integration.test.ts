/**
 * The relay's metrics with real traffic on loopback: datagrams and bytes counted per path,
 * forwards per path, the sampled forwarding latency measured on both paths, the snapshot
 * consistent with the Prometheus series, and /readyz going stale once the relay stopped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { LATENCY_SAMPLE_EVERY } from '../../core/relay/metrics.js';
import { Relay } from '../../core/relay/relay.js';
import { SOURCE_ID_BYTES } from '../../core/relay/rooms.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import { serveRelayMetrics } from '../../src/services/relay.js';
import { waitFor } from '../helpers/wait.js';

function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

describe('relay metrics with traffic', () => {
  let relay: Relay;
  let fingerprint: string;

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint });
  });
  after(() => relay.stop());

  test('each path counts its datagrams and bytes in and out, and the latency is sampled on both', async () => {
    const open = (mediaPath: 'auto' | 'quic') => RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay'), mediaPath });
    const quicA = await open('quic');
    const quicB = await open('quic');
    const udpA = await open('auto');
    const udpB = await open('auto');
    const sessions = [quicA, quicB, udpA, udpB];
    try {
      await quicA.joinRoom('a'.repeat(32));
      await quicB.joinRoom('a'.repeat(32));
      await udpA.joinRoom('b'.repeat(32));
      await udpB.joinRoom('b'.repeat(32));
      await waitFor(() => udpA.mediaPathStats().path === 'udp' && udpB.mediaPathStats().path === 'udp', 5000);
      // Wait for the relay's side of the path too (the member's confirm).
      await waitFor(() => relay.metricsRegistry.mediaPath.received + relay.metricsRegistry.mediaPath.probes > 0, 5000);
      await new Promise((r) => setTimeout(r, 300));
      const m = relay.metricsRegistry;
      // Per path, as exported: the UDP path's figures include what the media plane thread
      // (core/relay/media-plane.ts) forwarded itself, which is all of it here.
      const series = async () => {
        const text = await m.prometheusText();
        const v = (name: string) => sample(text, name) ?? 0;
        return {
          quicIn: v('wzp_relay_datagrams_received_total{path="quic"}'),
          udpIn: v('wzp_relay_datagrams_received_total{path="udp"}'),
          quicBytesIn: v('wzp_relay_bytes_received_total{path="quic"}'),
          udpBytesIn: v('wzp_relay_bytes_received_total{path="udp"}'),
          quicOut: v('wzp_relay_datagrams_forwarded_total{path="quic"}'),
          udpOut: v('wzp_relay_datagrams_forwarded_total{path="udp"}'),
          quicBytesOut: v('wzp_relay_bytes_forwarded_total{path="quic"}'),
          udpBytesOut: v('wzp_relay_bytes_forwarded_total{path="udp"}'),
          latency: v('wzp_relay_forwarding_latency_seconds_count'),
        };
      };
      const before = await series();
      let got = 0;
      for (const s of sessions) s.datagrams.onDatagram(() => got++);
      const N = 64;
      const SIZE = 120;
      for (let i = 0; i < N; i++) {
        quicA.datagrams.send(new Uint8Array(SIZE));
        udpA.datagrams.send(new Uint8Array(SIZE));
        if (i % 8 === 7) await new Promise((r) => setTimeout(r, 20));
      }
      await waitFor(() => got >= 2 * N * 0.9, 5000);
      await new Promise((r) => setTimeout(r, 100));
      const now = await series();
      const quicIn = now.quicIn - before.quicIn;
      const udpIn = now.udpIn - before.udpIn;
      assert.ok(quicIn >= N * 0.9 && quicIn <= N, `QUIC datagrams in: ${quicIn}`);
      assert.ok(udpIn >= N * 0.9 && udpIn <= N, `UDP path datagrams in: ${udpIn}`);
      assert.equal(now.quicBytesIn - before.quicBytesIn, quicIn * SIZE);
      assert.equal(now.udpBytesIn - before.udpBytesIn, udpIn * SIZE);
      const quicOut = now.quicOut - before.quicOut;
      const udpOut = now.udpOut - before.udpOut;
      assert.equal(quicOut, quicIn, 'each QUIC member datagram forwarded once, in QUIC');
      assert.equal(udpOut, udpIn, 'each path datagram forwarded once, on the path');
      assert.equal(now.quicBytesOut - before.quicBytesOut, quicOut * (SIZE + SOURCE_ID_BYTES));
      assert.equal(now.udpBytesOut - before.udpBytesOut, udpOut * (SIZE + SOURCE_ID_BYTES));
      const snap = relay.metrics;
      assert.equal(snap.datagramsReceived, now.quicIn + now.udpIn);
      assert.equal(snap.datagramsOnUdpPath, now.udpIn);
      assert.equal(snap.datagramsForwarded, now.udpOut + now.quicOut - snap.datagramsEchoed);
      assert.equal(snap.roomsOpen, 2);
      // Sampled one in LATENCY_SAMPLE_EVERY, and only datagrams handled in their packet's turn:
      // on loopback with verified peers that is nearly all of them. The media plane reports
      // its samples once a second.
      const wanted = Math.floor((quicIn + udpIn) / LATENCY_SAMPLE_EVERY) / 2;
      let measured = now.latency - before.latency;
      for (const until = Date.now() + 3000; measured < wanted && Date.now() < until; measured = (await series()).latency - before.latency) await new Promise((r) => setTimeout(r, 50));
      assert.ok(measured >= wanted, `latency samples: ${measured}`);
      const text = await m.prometheusText();
      assert.equal(sample(text, 'wzp_relay_room_members'), 4);
      assert.equal(sample(text, 'wzp_relay_rooms_open'), 2);
      assert.equal(sample(text, 'wzp_relay_connections_open'), 4);
      assert.equal(sample(text, 'wzp_relay_handshakes_total{result="ok"}'), 4);
      assert.equal(sample(text, 'wzp_relay_handshakes_total{result="failed"}'), 0);
    } finally {
      await Promise.all(sessions.map((s) => s.close()));
    }

  });

  test('/readyz: ready while the relay serves, 503 once it stopped', async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    const own = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint });
    const server = await serveRelayMetrics(own, '127.0.0.1:0', { heartbeatMs: 20, staleAfterMs: 200 });
    try {
      const url = `http://127.0.0.1:${server.address.port}`;
      assert.equal((await fetch(`${url}/readyz`)).status, 200);
      assert.match(await (await fetch(`${url}/metrics`)).text(), /^wzp_relay_connections_open 0$/m);
      await own.stop();
      let r = await fetch(`${url}/readyz`);
      for (let i = 0; i < 100 && r.status === 200; i++) {
        await new Promise((res) => setTimeout(res, 20));
        r = await fetch(`${url}/readyz`);
      }
      assert.equal(r.status, 503);
      assert.match(await r.text(), /stale: stats not refreshed for \d+ ms \(relay not started\)/);
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
    } finally {
      await server.close();
      await own.stop();
    }
  });
});

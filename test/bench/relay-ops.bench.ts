/**
 * Relay operations figures, on loopback:
 * - `/metrics` scrape time of a `wzp relay --metrics` process carrying 50 calls (100 members
 *   in 50 rooms, 50 packets/s each way), target < 50 ms;
 * - what the metrics cost per packet, in this process: the socket's arrival sampling (a
 *   xorshift step per packet, performance.now() for about one in LATENCY_SAMPLE_EVERY) and a
 *   histogram observation (for the sampled ones).
 */
import { RelaySession } from '../../core/client/relay-session.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { percentile } from '../../core/media/analysis.js';
import { LATENCY_SAMPLE_EVERY, RelayMetricsRegistry } from '../../core/relay/metrics.js';
import { Demux } from '../../core/transport/demux.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { makeHome, MANY_CLIENTS_ONE_ADDRESS, startRelayProcess } from '../helpers/cli.js';

export const name = 'relay operations: /metrics scrape time with 50 calls, metrics cost per packet';

const CALLS = 50;
const TRAFFIC_SECONDS = 8;
const SCRAPES = 30;

/** Nanoseconds per iteration of `fn` over `n` iterations (after a warm-up). */
function nsPer(n: number, fn: () => void): number {
  for (let i = 0; i < 10_000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t0) / n;
}

let sink = 0;

function hotPathCost(): void {
  const cost = (sample: number): number => {
    const demux = new Demux(() => undefined, () => Promise.resolve());
    demux.sampleArrivals = sample;
    // The handler reads the stamp, as the relay's does.
    demux.register({ name: 'media-path', firstBytes: [[0x24, 0x24]], handle: () => void (sink += demux.arrivedAt) });
    const packet = Buffer.from([0x24, 0, 0, 0]);
    const from = { address: '127.0.0.1', port: 1 };
    return nsPer(2_000_000, () => void demux.receive(packet, from));
  };
  // Alternated, best of three each: the first runs also measure the JIT settling on one shape.
  let off = Infinity;
  let on = Infinity;
  for (let round = 0; round < 3; round++) {
    off = Math.min(off, cost(0));
    on = Math.min(on, cost(LATENCY_SAMPLE_EVERY));
  }
  const m = new RelayMetricsRegistry();
  const observe = nsPer(200_000, () => m.observeForwardingMs(0.05));
  console.log(
    `   metrics cost per packet: the socket's arrival sampling ${(on - off).toFixed(0)} ns (dispatch ${off.toFixed(0)} -> ${on.toFixed(0)} ns), ` +
      `a histogram observation ${observe.toFixed(0)} ns (for about one packet in ${LATENCY_SAMPLE_EVERY}); ` +
      `a forwarded packet costs ~25 us (UDP media path) to ~100 us (QUIC datagrams) of relay CPU (npm run bench calls)${sink < 0 ? '' : ''}`,
  );
}

export async function run(): Promise<void> {
  hotPathCost();
  const home = makeHome('wzp-bench-relay-ops-');
  const relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', ...MANY_CLIENTS_ONE_ADDRESS], home);
  const sessions: RelaySession[] = [];
  let sending: NodeJS.Timeout | undefined;
  try {
    const metricsUrl = /wzp relay metrics on (\S+)/.exec(relay.stderr())?.[1];
    if (!metricsUrl) throw new Error(`no metrics URL in: ${relay.stderr()}`);
    const scrape = async (): Promise<{ ms: number; bytes: number }> => {
      const t0 = performance.now();
      const r = await fetch(metricsUrl);
      const text = await r.text();
      if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
      return { ms: performance.now() - t0, bytes: text.length };
    };
    const idle = await scrape();
    const fingerprint = parseFingerprint(relay.fingerprint);
    for (let call = 0; call < CALLS; call++) {
      for (let side = 0; side < 2; side++) {
        const s = await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(fingerprint, relay.address) });
        await s.joinRoom(call.toString(16).padStart(32, '0'));
        s.datagrams.onDatagram(() => undefined);
        sessions.push(s);
      }
    }
    const payload = new Uint8Array(100);
    sending = setInterval(() => {
      for (const s of sessions) s.datagrams.send(payload);
    }, 20);
    await new Promise((r) => setTimeout(r, 1000));
    const times: number[] = [];
    let bytes = 0;
    const until = performance.now() + TRAFFIC_SECONDS * 1000;
    for (let i = 0; i < SCRAPES && performance.now() < until; i++) {
      const s = await scrape();
      times.push(s.ms);
      bytes = s.bytes;
      await new Promise((r) => setTimeout(r, 200));
    }
    const text = await (await fetch(metricsUrl)).text();
    const members = /^wzp_relay_room_members (\d+)$/m.exec(text)?.[1];
    console.log(
      `   /metrics scrape with ${CALLS} calls (${members ?? '?'} members in rooms, 50 packets/s each): median ${percentile(times, 50).toFixed(1)} ms, p90 ${percentile(times, 90).toFixed(1)} ms, ` +
        `max ${Math.max(...times).toFixed(1)} ms over ${times.length} scrapes of ${(bytes / 1024).toFixed(1)} KiB (target < 50 ms); idle relay ${idle.ms.toFixed(1)} ms`,
    );
  } finally {
    if (sending) clearInterval(sending);
    await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
    await relay.stop('SIGTERM');
    home.cleanup();
  }
}

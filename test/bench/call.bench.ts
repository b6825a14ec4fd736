/**
 * Call figures, all on loopback:
 * - mouth-to-ear: a tone burst's onset at the sender's source to its onset at the receiver's
 *   sink, through a relay process, 20 ms frames, no jitter (target <= 50 ms);
 * - call setup: `wzp call` process start to its first frame played, joining a room where
 *   someone already talks (target <= 300 ms);
 * - relay forwarding: packets forwarded per second per core for 1:1 calls at 50 packets/s
 *   each, with p99 added latency, against a plain Node UDP forwarder as the ceiling
 *   (issue 18: >= 0.8 of it with metrics enabled and scraped, moonshot 0.9); on the UDP media path members take by default, and with media
 *   kept in QUIC datagrams (`--media-path quic`, or behind a middlebox that passes only QUIC).
 *
 * What the UDP-path figure measures: the relay process's whole CPU (user and kernel, from
 * /proc, every thread: main, the media plane's, V8's helpers) over the load, divided by the
 * packets forwarded. That includes what the calls cost the relay at rest: their QUIC
 * connections' keep-alives and timers, which the forwarding run prints as "idle with the
 * calls set up" (1-2% of a core for 50 members). With the media plane thread the rest is its
 * receive and send syscalls and their wake-ups, which receive coalescing cut to one per ~15
 * packets at this load. The figure also drifts with the machine by +-20%: compare builds in
 * the same run (WZP_BENCH_BASELINE_BIN below). docs/transport.md#the-media-plane has the
 * profile, what was changed and the numbers.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSocket } from 'node:dgram';
import { RelaySession } from '../../core/client/relay-session.js';
import { runCall } from '../../core/client/call.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { percentile } from '../../core/media/analysis.js';
import { createRegistries, type Registries } from '../../core/registry.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { BIN, makeHome, parseJsonDocument, runCli, startRelayProcess, MANY_CLIENTS_ONE_ADDRESS, type RunningRelay } from '../helpers/cli.js';
import { quicheCostPerForwardUs } from './quiche-floor.js';

export const name = 'calls: mouth-to-ear, call setup, relay forwarding vs plain UDP';

const PLUGINS = fileURLToPath(new URL('../../src/plugins/', import.meta.url));

async function registries(): Promise<Registries> {
  const r = createRegistries();
  for (const p of ['codec-opus', 'codec-pcm', 'codec-codec2', 'fec-none', 'fec-rs', 'fec-xor', 'fec-raptorq']) {
    const hook = (await import(join(PLUGINS, p, 'index.js'))).default as () => Promise<unknown[]>;
    for (const f of await hook()) (p.startsWith('codec') ? r.codecs : r.fec).register(f as never, p);
  }
  return r;
}

function cpuTicks(pid: number, which: 'both' | 'user' | 'system' = 'both'): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const user = Number(fields[11]);
  const system = Number(fields[12]);
  return which === 'user' ? user : which === 'system' ? system : user + system;
}

async function session(relay: RunningRelay, mediaPath: 'auto' | 'quic' = 'auto'): Promise<RelaySession> {
  return RelaySession.open({
    relay: parseHostPort(relay.address),
    verify: expectFingerprint(parseFingerprint(relay.fingerprint), relay.address),
    mediaPath,
  });
}

async function mouthToEar(relay: RunningRelay, reg: Registries): Promise<void> {
  const ONSET_EVERY = 1000;
  let onsetCapturedAt: number | undefined;
  const heard: number[] = [];
  let sent = 0;
  const talker = {
    ended: false,
    read(samples: number): Int16Array {
      const out = new Int16Array(samples);
      // A 200 ms burst of 1 kHz every second; the rest silence. The call reads 10 ms at a
      // time (its clock period); the burst starts at the first sample of a read, which is
      // also the first sample of a 20 ms frame (500 ms is a whole number of frames).
      const t = sent % ONSET_EVERY;
      if (t >= 500 && t < 700) {
        if (t === 500) onsetCapturedAt = performance.now() - (samples * 1000) / 48000; // the read holds the last samples
        for (let i = 0; i < samples; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * 1000 * i) / 48000));
      }
      sent += (samples * 1000) / 48000;
      return out;
    },
  };
  let wasQuiet = true;
  const listener = {
    write(pcm: Int16Array) {
      let peak = 0;
      for (const v of pcm) peak = Math.max(peak, Math.abs(v));
      if (peak > 2000 && wasQuiet && onsetCapturedAt !== undefined) {
        let first = 0;
        while (first < pcm.length && Math.abs(pcm[first]) < 2000) first++;
        heard.push(performance.now() + (first / 48) - onsetCapturedAt);
        onsetCapturedAt = undefined;
      }
      wasQuiet = peak < 500;
    },
    close() {},
  };
  const [a, b] = [await session(relay), await session(relay)];
  const [, reportB] = await Promise.all([
    runCall({ session: a, identity: generateIdentity(), room: 'm2e', alias: 'a', codecs: reg.codecs, fec: reg.fec, source: talker, durationMs: 8000, adaptive: false }),
    runCall({ session: b, identity: generateIdentity(), room: 'm2e', alias: 'b', codecs: reg.codecs, fec: reg.fec, source: { ended: false, read: (n) => new Int16Array(n) }, sink: listener, durationMs: 8000, adaptive: false }),
  ]);
  await a.close();
  await b.close();
  const values = heard.slice(1); // the first burst still meets a filling jitter buffer
  const jb = reportB.participants[0]?.jitterBuffer;
  const jbMean = jb && jb.jitterBufferEmittedCount ? (jb.jitterBufferDelay / jb.jitterBufferEmittedCount) * 1000 : Number.NaN;
  console.log(
    `   (receiver's jitter buffer: mean wait ${jbMean.toFixed(1)} ms, target ${jb?.targetDelayMs.toFixed(1)} ms, ` +
      `current ${jb?.currentDelayMs.toFixed(1)} ms; time-stretched: ${jb?.removedSamplesForAcceleration} samples removed, ` +
      `${jb?.insertedSamplesForDeceleration} inserted; ${jb?.concealedSamples} concealed)`,
  );
  console.log(
    `   mouth-to-ear (GOOD tier, 20 ms frames, loopback relay): median ${percentile(values, 50).toFixed(1)} ms, ` +
      `max ${Math.max(...values).toFixed(1)} ms over ${values.length} onsets (target <= 50 ms)`,
  );
}

async function callSetup(relay: RunningRelay): Promise<void> {
  const talkerHome = makeHome('wzp-bench-talker-');
  const joinerHome = makeHome('wzp-bench-joiner-');
  const talker = spawn(process.execPath, [BIN, 'call', relay.address, '--room', 'setup', '--tone', '440', '--no-playback',
    '--relay-fingerprint', relay.fingerprint, '--duration', '20'], { env: talkerHome.env, stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1500));
  const times: number[] = [];
  const joinToAudio: number[] = [];
  // Run 0 is a first use: it creates the joiner's identity and pins the relay. Not counted.
  for (let i = 0; i <= 7; i++) {
    const r = await runCli(['call', relay.address, '--room', 'setup', '--no-playback', '--tone', '600', '--duration', '2',
      '--relay-fingerprint', relay.fingerprint, '--json'], joinerHome);
    const report = parseJsonDocument(r).result as {
      firstAudioSinceStartMs?: number;
      joinSentSinceStartMs: number;
      setupMs: number;
      firstAudioMs?: number;
    };
    if (i > 0 && report.firstAudioSinceStartMs !== undefined) times.push(report.firstAudioSinceStartMs);
    if (i > 0 && report.firstAudioMs !== undefined) joinToAudio.push(report.firstAudioMs);
    console.log(
      `   call setup ${i === 0 ? 'first use' : `run ${i}`}: process start -> first frame played ${report.firstAudioSinceStartMs?.toFixed(0)} ms ` +
        `(start -> join sent ${report.joinSentSinceStartMs} ms, join round trip ${report.setupMs.toFixed(0)} ms, join -> first audio ${report.firstAudioMs?.toFixed(0)} ms)`,
    );
  }
  talker.kill('SIGINT');
  console.log(
    `   call setup median ${percentile(times, 50).toFixed(0)} ms (target <= 300 ms); ` +
      `join -> first audio median ${percentile(joinToAudio, 50).toFixed(0)} ms (aim <= 60 ms)`,
  );
  talkerHome.cleanup();
  joinerHome.cleanup();
}

/** N 1:1 pairs, each side 50 packets/s of 100 bytes, through the relay; CPU and one-way latency. */
async function relayForwarding(relay: RunningRelay, pairs: number, mediaPath: 'auto' | 'quic', idleMs = 0): Promise<{ perCore: number; p99: number; systemShare: number; idleCpu?: number }> {
  const sessions: RelaySession[] = [];
  const latencies: number[] = [];
  for (let p = 0; p < pairs; p++) {
    for (let side = 0; side < 2; side++) {
      const s = await session(relay, mediaPath);
      await s.joinRoom(`${p.toString(16).padStart(32, '0')}`);
      s.datagrams.onDatagram((d) => {
        const t = untagRoomDatagram(d);
        if (t) latencies.push(performance.now() - new DataView(t.datagram.buffer, t.datagram.byteOffset).getFloat64(0));
      });
      sessions.push(s);
    }
  }
  // Measure the path named, not whatever the sessions happen to be on.
  const want = mediaPath === 'auto' ? 'udp' : 'quic';
  for (const deadline = performance.now() + 3000; sessions.some((s) => s.mediaPathStats().path !== want); ) {
    if (performance.now() > deadline) throw new Error(`sessions did not all take the ${want} media path`);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Steady state: what setting up 50 connections leaves behind is not forwarding. The relay
  // collects its heap after a burst of connections (src/services/relay.ts: two full
  // collections 5-15 s after it), and those collections take the previous round's
  // connections with them, which deoptimizes the hot path's code that had them inlined
  // (V8's "weak objects") and compiles it again. Measured in the window, both moved a
  // round's figure by up to a third. Then V8's memory reducer runs its own full collections
  // ~8 s after the relay's last one (`--trace-gc` of a relay process: "Mark-Compact (reduce)"
  // at 24.4 and 25.0 s after the burst, ~70 ms of CPU with their concurrent marking), which
  // fell in the window of a 16 s settle and moved a round by 3-5 µs per packet.
  const settleMs = idleMs > 0 ? Math.max(0, Number(process.env.WZP_BENCH_SETTLE_MS ?? 30_000)) : 0;
  if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
  // The relay's CPU with every call set up and silent (QUIC timers, keep-alives): a share of
  // a core, spent whether media flows or not.
  let idleCpu: number | undefined;
  if (idleMs > 0) {
    const t0 = performance.now();
    const c0 = cpuTicks(relay.child.pid!);
    await new Promise((r) => setTimeout(r, idleMs));
    idleCpu = (cpuTicks(relay.child.pid!) - c0) / 100 / ((performance.now() - t0) / 1000);
  }
  if (process.env.WZP_BENCH_RELAY_NODE_ARGS) console.log(`   (load from ${new Date().toISOString()})`);
  const measured = measureLoad(relay.child.pid!, latencies, (tick) => {
    for (const s of sessions) {
      const b = new Uint8Array(100);
      new DataView(b.buffer).setFloat64(0, performance.now());
      s.datagrams.send(b);
    }
    return tick;
  }).finally(() => Promise.all(sessions.map((s) => s.close())));
  return { ...(await measured), ...(idleCpu === undefined ? {} : { idleCpu }) };
}

/**
 * The load, then its measurement: WARMUP_SECONDS of it first, not measured (the process under
 * test compiles its hot path meanwhile: in the first measured round, TurboFan's compile
 * threads' CPU was counted as forwarding), then SECONDS measured.
 */
async function measureLoad(pid: number, latencies: number[], sendTick: (tick: number) => number): Promise<{ perCore: number; p99: number; systemShare: number }> {
  const SECONDS = 5;
  const WARMUP_SECONDS = Number(process.env.WZP_BENCH_WARMUP_S ?? 1);
  const warmStart = performance.now();
  for (let tick = 0; tick < WARMUP_SECONDS * 50; tick++) {
    const wait = warmStart + tick * 20 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sendTick(tick);
  }
  await new Promise((r) => setTimeout(r, 20));
  const cpu0 = cpuTicks(pid);
  const sys0 = cpuTicks(pid, 'system');
  const received0 = latencies.length;
  const start = performance.now();
  for (let tick = 0; tick < SECONDS * 50; tick++) {
    const wait = start + tick * 20 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sendTick(tick);
  }
  await new Promise((r) => setTimeout(r, 300));
  const elapsed = (performance.now() - start) / 1000;
  const cpuSeconds = (cpuTicks(pid) - cpu0) / 100;
  const systemShare = (cpuTicks(pid, 'system') - sys0) / 100 / Math.max(cpuSeconds, 0.01);
  const forwarded = latencies.length - received0;
  return { perCore: forwarded / Math.max(cpuSeconds, 0.01), p99: percentile(latencies.slice(received0), 99), systemShare, ...{ elapsed } };
}

/** The ceiling: a plain Node UDP forwarder in its own process, pairs forwarding to each other. */
async function plainUdpForwarding(pairs: number): Promise<{ perCore: number; p99: number; systemShare: number }> {
  const forwarder = spawn(process.execPath, ['--input-type=module', '-e', `
    import { createSocket } from 'node:dgram';
    const s = createSocket('udp4'); const peers = new Map(); const waiting = [];
    s.on('message', (m, r) => {
      const key = r.port;
      if (!peers.has(key)) { if (waiting.length) { const o = waiting.shift(); peers.set(key, o); peers.set(o, key); } else { waiting.push(key); peers.set(key, undefined); } }
      const to = peers.get(key); if (to !== undefined) s.send(m, to, '127.0.0.1');
    });
    s.bind(0, '127.0.0.1', () => console.log(s.address().port));
    setTimeout(() => process.exit(0), 30000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => forwarder.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  const latencies: number[] = [];
  const sockets = await Promise.all(
    Array.from({ length: pairs * 2 }, async () => {
      const s = createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      s.on('message', (m) => latencies.push(performance.now() - m.readDoubleBE(0)));
      return s;
    }),
  );
  // Register pairs in order so the forwarder pairs neighbours.
  for (const s of sockets) {
    s.send(Buffer.alloc(8), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 100));
  latencies.length = 0;
  const result = await measureLoad(forwarder.pid!, latencies, (tick) => {
    for (const s of sockets) {
      const b = Buffer.alloc(100);
      b.writeDoubleBE(performance.now(), 0);
      s.send(b, port, '127.0.0.1');
    }
    return tick;
  });
  for (const s of sockets) s.close();
  forwarder.kill();
  return result;
}

/**
 * Options (environment, for profiling the relay's forwarding without the rest):
 * - WZP_BENCH_CALL=forwarding: only the UDP-path forwarding against the plain forwarder,
 *   WZP_BENCH_ROUNDS times (default 3) in turn, each round's ratio printed (the machine's
 *   speed drifts: compare ratios measured in the same run), then the median ratio;
 * - WZP_BENCH_BASELINE_BIN=PATH/bin/run.js (with forwarding): another build's relay measured
 *   in the same rounds, each against its own plain-forwarder run (before/after on a drifting machine);
 * - WZP_BENCH_BASELINE_ARGS (with forwarding): more `wzp relay` flags for the baseline relay,
 *   which is this build's when WZP_BENCH_BASELINE_BIN is not set (e.g. "--no-media-plane": the
 *   relay with and without its media plane thread in the same rounds);
 * - WZP_BENCH_PAIRS: 1:1 calls in the forwarding load (default 25);
 * - WZP_BENCH_WARMUP_S: seconds of load before each measured window (default 1);
 * - WZP_BENCH_RELAY_PROF=DIR: the relay process writes a V8 CPU profile there (--cpu-prof);
 * - WZP_BENCH_RELAY_NODE_ARGS: more node flags for the relay process (e.g. --perf-basic-prof,
 *   to read `perf record -p PID` of it: the pid is printed).
 */
function relayNodeArgs(): string[] {
  const dir = process.env.WZP_BENCH_RELAY_PROF;
  const extra = (process.env.WZP_BENCH_RELAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return [...(dir ? ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${dir}`] : []), ...extra];
}

async function forwardingOnly(relay: RunningRelay, pairs: number): Promise<void> {
  const rounds = Math.max(1, Math.min(20, Number(process.env.WZP_BENCH_ROUNDS ?? 3)));
  console.log(`   (relay pid ${relay.child.pid})`);
  const ratios: number[] = [];
  // Another build's relay measured in the same rounds (its bin/run.js): a before/after on a
  // machine whose speed drifts.
  const baselineArgs = (process.env.WZP_BENCH_BASELINE_ARGS ?? '').split(' ').filter(Boolean);
  const baselineBin = process.env.WZP_BENCH_BASELINE_BIN ?? (baselineArgs.length > 0 ? BIN : undefined);
  const baselineHome = baselineBin ? makeHome('wzp-bench-baseline-') : undefined;
  const metrics = process.env.WZP_BENCH_METRICS !== 'off';
  const baseline =
    baselineBin && baselineHome
      ? await startRelayProcess(['--listen', '127.0.0.1:0', ...(metrics ? ['--metrics', '127.0.0.1:0'] : []), ...MANY_CLIENTS_ONE_ADDRESS, ...baselineArgs], baselineHome, 20_000, [], baselineBin)
      : undefined;
  // Scraped as this build's relay is.
  const baselineScraper = baseline && metrics && process.env.WZP_BENCH_METRICS !== 'unscraped' ? scrapeMetrics(baseline) : undefined;
  const baselineRatios: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      if (!baseline) break;
      const before = await relayForwarding(baseline, pairs, 'auto', 3000);
      const plain = await plainUdpForwarding(pairs);
      baselineRatios.push(before.perCore / plain.perCore);
      console.log(
        `   round ${r + 1}, baseline relay (${baselineBin}${baselineArgs.length ? ` ${baselineArgs.join(' ')}` : ''}): ${before.perCore.toFixed(0)} packets/s per core (${(1e6 / before.perCore).toFixed(1)} us each, p99 one-way ${before.p99.toFixed(2)} ms; ` +
          `idle ${(100 * (before.idleCpu ?? 0)).toFixed(1)}% of a core); plain ${plain.perCore.toFixed(0)} (${(1e6 / plain.perCore).toFixed(1)} us); ratio ${(before.perCore / plain.perCore).toFixed(2)}`,
      );
      await forwardingRound(relay, pairs, r, ratios);
    }
  } finally {
    baselineScraper?.stop();
    await baseline?.stop('SIGTERM');
    baselineHome?.cleanup();
  }
  if (baseline) {
    console.log(`   baseline relay: median ratio ${percentile(baselineRatios, 50).toFixed(2)}; this relay: median ratio ${percentile(ratios, 50).toFixed(2)} (same rounds)`);
    return;
  }
  for (let r = 0; r < rounds; r++) await forwardingRound(relay, pairs, r, ratios);
  console.log(`   relay forwarding, ${pairs} 1:1 calls, UDP media path: median ratio ${percentile(ratios, 50).toFixed(2)} over ${rounds} rounds`);
}

async function forwardingRound(relay: RunningRelay, pairs: number, r: number, ratios: number[]): Promise<void> {
  const wzp = await relayForwarding(relay, pairs, 'auto', 3000);
  const plain = await plainUdpForwarding(pairs);
  ratios.push(wzp.perCore / plain.perCore);
  console.log(
    `   round ${r + 1}: wzp relay ${wzp.perCore.toFixed(0)} packets/s per core (${(1e6 / wzp.perCore).toFixed(1)} us each, ${(100 * wzp.systemShare).toFixed(0)}% in the kernel, ` +
      `p99 one-way ${wzp.p99.toFixed(2)} ms; idle with the calls set up: ${(100 * (wzp.idleCpu ?? 0)).toFixed(1)}% of a core); ` +
      `plain ${plain.perCore.toFixed(0)} (${(1e6 / plain.perCore).toFixed(1)} us, ${(100 * plain.systemShare).toFixed(0)}% in the kernel, p99 ${plain.p99.toFixed(2)} ms); ratio ${(wzp.perCore / plain.perCore).toFixed(2)}`,
  );
}

/**
 * Scrape the relay's /metrics every SCRAPE_MS for the whole bench, as a busy Prometheus would
 * (its default interval is 15 s): the forwarding figures are with metrics enabled and read
 * (issue 18's target). WZP_BENCH_SCRAPE_MS changes the interval (1000: a scrape a second).
 */
function scrapeMetrics(relay: RunningRelay): { stop(): { scrapes: number; maxMs: number } } {
  const SCRAPE_MS = Math.max(200, Number(process.env.WZP_BENCH_SCRAPE_MS ?? 5000));
  const url = /wzp relay metrics on (\S+)/.exec(relay.stderr())?.[1];
  if (!url) throw new Error(`the relay printed no metrics URL: ${relay.stderr()}`);
  let scrapes = 0;
  let maxMs = 0;
  const timer = setInterval(() => {
    const t0 = performance.now();
    void fetch(url, { signal: AbortSignal.timeout(900) })
      .then((r) => r.text())
      .then(() => {
        scrapes++;
        maxMs = Math.max(maxMs, performance.now() - t0);
      })
      .catch(() => undefined);
  }, SCRAPE_MS);
  return {
    stop: () => {
      clearInterval(timer);
      return { scrapes, maxMs };
    },
  };
}

export async function run(): Promise<void> {
  const home = makeHome('wzp-bench-relay-');
  // WZP_BENCH_METRICS=off: the relay without --metrics (what serving and scraping them costs);
  // =unscraped: with --metrics, never scraped.
  const metrics = process.env.WZP_BENCH_METRICS !== 'off';
  const relay = await startRelayProcess(['--listen', '127.0.0.1:0', ...(metrics ? ['--metrics', '127.0.0.1:0'] : []), ...MANY_CLIENTS_ONE_ADDRESS], home, 20_000, relayNodeArgs());
  const scraper = metrics && process.env.WZP_BENCH_METRICS !== 'unscraped' ? scrapeMetrics(relay) : { stop: () => undefined };
  try {
    const pairs = Math.max(1, Math.min(200, Number(process.env.WZP_BENCH_PAIRS ?? 25)));
    if (process.env.WZP_BENCH_CALL === 'forwarding') {
      await forwardingOnly(relay, pairs);
      return;
    }
    const reg = await registries();
    await mouthToEar(relay, reg);
    await callSetup(relay);
    const PAIRS = pairs;
    const wzp = await relayForwarding(relay, PAIRS, 'auto');
    const inQuic = await relayForwarding(relay, PAIRS, 'quic');
    const plain = await plainUdpForwarding(PAIRS);
    console.log(
      `   relay forwarding, ${PAIRS} 1:1 calls x 2 directions x 50 packets/s, UDP media path: wzp relay ${wzp.perCore.toFixed(0)} packets/s per core ` +
        `(p99 one-way ${wzp.p99.toFixed(2)} ms); plain Node UDP forwarder ${plain.perCore.toFixed(0)} packets/s per core ` +
        `(p99 ${plain.p99.toFixed(2)} ms); ratio ${(wzp.perCore / plain.perCore).toFixed(2)} (target >= 0.8, moonshot 0.9)`,
    );
    console.log(
      `   the same with media in QUIC datagrams (--media-path quic, or behind a middlebox that passes only QUIC): ` +
        `${inQuic.perCore.toFixed(0)} packets/s per core (p99 one-way ${inQuic.p99.toFixed(2)} ms); ratio ${(inQuic.perCore / plain.perCore).toFixed(2)}`,
    );
    // Where the relay's time per packet goes (docs/transport.md#what-it-costs).
    const quicheUs = await quicheCostPerForwardUs();
    const plainUs = 1e6 / plain.perCore;
    console.log(
      `   per forwarded packet: wzp relay ${(1e6 / wzp.perCore).toFixed(1)} us of CPU on the UDP media path, ${(1e6 / inQuic.perCore).toFixed(1)} us in QUIC datagrams; ` +
        `plain Node UDP forwarder ${plainUs.toFixed(1)} us; quiche's own recv + datagram out + datagram in + send through its N-API binding, ` +
        `in one process with hot caches: ${quicheUs.toFixed(1)} us`,
    );
  } finally {
    const scraped = scraper.stop();
    if (scraped) console.log(`   (the relay ran with --metrics, scraped every ${Number(process.env.WZP_BENCH_SCRAPE_MS ?? 5000) / 1000} s: ${scraped.scrapes} scrapes, slowest ${scraped.maxMs.toFixed(1)} ms)`);
    else console.log(`   (the relay ran ${metrics ? 'with --metrics, never scraped' : 'without --metrics'}: WZP_BENCH_METRICS=${process.env.WZP_BENCH_METRICS})`);
    await relay.stop('SIGTERM');
    home.cleanup();
  }
}

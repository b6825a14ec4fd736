/**
 * Datagram round trips through a relay in its own process: N connections each sending
 * paced 100-byte datagrams at 50/s (a voice stream) to the relay in echo mode.
 * Prints RTT percentiles, loss, and the relay process's CPU use.
 *
 * docs/dependencies.md: stock @matrixai/quic measured p99 ~100 ms with 3-7% loss for 50x50/s on two
 * cores, and ~4 ms / 0 loss with the two per-packet costs removed (core/transport/datagrams.ts).
 * Media stays in QUIC datagrams here (mediaPath 'quic'): this measures that path, which
 * media takes until the UDP media path is up and wherever it cannot be (the calls bench
 * measures both).
 */
import { readFileSync } from 'node:fs';
import { RelaySession } from '../../core/client/relay-session.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { percentile } from '../../core/media/analysis.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { makeHome, MANY_CLIENTS_ONE_ADDRESS, startRelayProcess } from '../helpers/cli.js';

export const name = 'datagram echo through a relay process';

const RATE_HZ = 50;
const SECONDS = 5;
const PAYLOAD_BYTES = 100;

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (100/s)
}

async function scenario(connections: number): Promise<void> {
  const home = makeHome('wzp-bench-');
  const relay = await startRelayProcess(['--listen', '127.0.0.1:0', ...MANY_CLIENTS_ONE_ADDRESS], home);
  const sessions: RelaySession[] = [];
  try {
    for (let i = 0; i < connections; i++) {
      const s = await RelaySession.open({
        relay: parseHostPort(relay.address),
        verify: expectFingerprint(parseFingerprint(relay.fingerprint), relay.address),
        mediaPath: 'quic',
      });
      await s.joinEcho();
      sessions.push(s);
    }
    const rtts: number[] = [];
    let sent = 0;
    for (const s of sessions) {
      s.datagrams.onDatagram((d) => {
        const t = new DataView(d.buffer, d.byteOffset, d.byteLength).getFloat64(0);
        rtts.push(performance.now() - t);
      });
    }
    const pid = relay.child.pid!;
    const cpu0 = cpuTicks(pid);
    const start = performance.now();
    const total = RATE_HZ * SECONDS;
    for (let tick = 0; tick < total; tick++) {
      const due = start + (tick * 1000) / RATE_HZ;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      for (const s of sessions) {
        const buf = new Uint8Array(PAYLOAD_BYTES);
        new DataView(buf.buffer).setFloat64(0, performance.now());
        if (s.datagrams.send(buf)) sent++;
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    const elapsed = (performance.now() - start) / 1000;
    const cpuPct = ((cpuTicks(pid) - cpu0) / 100 / elapsed) * 100;
    const loss = sent === 0 ? 0 : ((sent - rtts.length) / sent) * 100;
    console.log(
      `   ${String(connections).padStart(3)} conns x ${RATE_HZ}/s: ${sent} sent, loss ${loss.toFixed(2)}%, ` +
        `rtt p50 ${percentile(rtts, 50).toFixed(2)} ms, p99 ${percentile(rtts, 99).toFixed(2)} ms, ` +
        `max ${Math.max(...rtts).toFixed(1)} ms, relay CPU ${cpuPct.toFixed(0)}% of one core`,
    );
  } finally {
    await Promise.all(sessions.map((s) => s.close()));
    await relay.stop('SIGTERM');
    home.cleanup();
  }
}

export async function run(): Promise<void> {
  for (const n of [1, 10, 50]) await scenario(n);
}

/**
 * Relay federation figures (docs/federation.md), three `wzp relay` processes in a chain
 * A - B - C on loopback (B dials both), 25 global rooms:
 * - added one-way latency per hop at 25 calls: in each room a sender on A and a receiver on
 *   each of A, B and C; every datagram carries its send time (this process's clock, which the
 *   receivers share), so the delay to the receiver on A is 0 hops, on B 1 and on C 2; per hop
 *   is the difference to 0 hops divided by the hops (target p99 < 5 ms per hop);
 * - forwarding across a link vs within one relay, per core: B's CPU time (from /proc) per
 *   datagram it forwards (a) from a member on B to a member on B, 25 rooms, and (b) from a
 *   link to a link (members on A and C only), 25 rooms, same packet rate; the ratio is
 *   (a)/(b): how many datagrams a core forwards across links for each it forwards within one
 *   relay (target >= 0.7).
 * Bounded: ~5 s of traffic per phase at 50 packets/s per sender.
 */
import { readFileSync } from 'node:fs';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity, saveIdentity } from '../../core/crypto/identity.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { percentile } from '../../core/media/analysis.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { makeHome, MANY_CLIENTS_ONE_ADDRESS, startRelayProcess, type RunningRelay } from '../helpers/cli.js';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';

export const name = 'federation: added latency per hop at 25 calls, forwarding across a link vs within one relay per core';

const CALLS = 25;
const SECONDS = 5;
const CLOCK_TICKS = 100;

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A process's CPU time so far, seconds (user + system, from /proc). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(): Promise<void> {
  const home = makeHome('wzp-bench-federation-');
  const relays: RunningRelay[] = [];
  const sessions: RelaySession[] = [];
  try {
    const ids: { path: string; fingerprint: string; port: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const identity = generateIdentity();
      const path = join(home.dir, `relay-${i}.json`);
      await saveIdentity(path, identity);
      ids.push({ path, fingerprint: (await deriveTlsCertificate(identity.seed)).fingerprint, port: await freePort() });
    }
    const rooms = Array.from({ length: 2 * CALLS }, (_, i) => `bench-${i}`);
    const common = [...MANY_CLIENTS_ONE_ADDRESS, ...rooms.flatMap((r) => ['--global-room', r])];
    const start = (i: number, extra: string[]) => startRelayProcess(['--listen', `127.0.0.1:${ids[i].port}`, '--identity', ids[i].path, ...common, ...extra], home);
    relays.push(await start(0, ['--trusted', ids[1].fingerprint]));
    relays.push(await start(2, ['--trusted', ids[1].fingerprint]));
    relays.push(await start(1, ['--peer', `127.0.0.1:${ids[0].port}=${ids[0].fingerprint}`, '--peer', `127.0.0.1:${ids[2].port}=${ids[2].fingerprint}`]));
    const [a, c, b] = relays;
    for (let t = 0; t < 200 && (b.stderr().match(/federation:link-up/g) ?? []).length < 2; t++) await sleep(50);
    const open = async (r: RunningRelay, room: string, onData?: (d: Uint8Array) => void): Promise<RelaySession> => {
      const s = await RelaySession.open({ relay: parseHostPort(r.address), verify: expectFingerprint(r.fingerprint, r.address) });
      sessions.push(s);
      s.datagrams.onDatagram(onData ?? (() => undefined));
      await s.joinRoom(hashRoomName(room));
      return s;
    };

    // --- latency per hop ---
    const delays: number[][] = [[], [], []];
    let measuring = false;
    const senders: RelaySession[] = [];
    for (let call = 0; call < CALLS; call++) {
      for (const [hops, r] of [a, b, c].entries()) {
        await open(r, rooms[call], (d) => {
          const t = untagRoomDatagram(d);
          if (!measuring || !t || t.datagram.length < 8) return;
          delays[hops].push(performance.now() - new DataView(t.datagram.buffer, t.datagram.byteOffset, 8).getFloat64(0));
        });
      }
      senders.push(await open(a, rooms[call]));
    }
    await sleep(500);
    const payload = new Uint8Array(100);
    const stamp = new DataView(payload.buffer);
    const send = (list: RelaySession[]) => {
      for (const s of list) {
        stamp.setFloat64(0, performance.now());
        s.datagrams.send(payload);
      }
    };
    let timer = setInterval(() => send(senders), 20);
    await sleep(1000);
    measuring = true;
    await sleep(SECONDS * 1000);
    measuring = false;
    clearInterval(timer);
    const p = (h: number, q: number) => percentile(delays[h], q);
    const perHop = (q: number) => ((p(2, q) - p(0, q)) / 2).toFixed(2);
    console.log(
      `   one-way delay at ${CALLS} calls (sender on A; ${delays[0].length}/${delays[1].length}/${delays[2].length} datagrams): ` +
        `same relay p50 ${p(0, 50).toFixed(2)} ms p99 ${p(0, 99).toFixed(2)} ms; 1 hop p50 ${p(1, 50).toFixed(2)} p99 ${p(1, 99).toFixed(2)}; 2 hops p50 ${p(2, 50).toFixed(2)} p99 ${p(2, 99).toFixed(2)}`,
    );
    console.log(`   added per hop: p50 ${perHop(50)} ms, p99 ${perHop(99)} ms (target p99 < 5 ms)`);
    await Promise.all(sessions.splice(0).map((s) => s.close().catch(() => undefined)));
    await sleep(500);

    // --- B's CPU per forwarded datagram: within B, then link to link ---
    const cost = async (pairs: [RunningRelay, RunningRelay][], offset: number): Promise<{ perDatagramUs: number; received: number }> => {
      let received = 0;
      const from: RelaySession[] = [];
      for (const [i, [src, dst]] of pairs.entries()) {
        await open(dst, rooms[offset + i], () => void (measuring && received++));
        from.push(await open(src, rooms[offset + i]));
      }
      await sleep(500);
      timer = setInterval(() => send(from), 20);
      await sleep(1000);
      const cpu0 = cpuSeconds(b.child.pid ?? 0);
      measuring = true;
      await sleep(SECONDS * 1000);
      measuring = false;
      const cpu = cpuSeconds(b.child.pid ?? 0) - cpu0;
      clearInterval(timer);
      await Promise.all(sessions.splice(0).map((s) => s.close().catch(() => undefined)));
      await sleep(500);
      return { perDatagramUs: (cpu * 1e6) / Math.max(1, received), received };
    };
    const local = await cost(Array.from({ length: CALLS }, () => [b, b] as [RunningRelay, RunningRelay]), 0);
    const transit = await cost(Array.from({ length: CALLS }, () => [a, c] as [RunningRelay, RunningRelay]), CALLS);
    console.log(
      `   relay B's CPU per forwarded datagram, ${CALLS} rooms at 50 packets/s: within B ${local.perDatagramUs.toFixed(0)} us (${local.received} datagrams), ` +
        `link to link ${transit.perDatagramUs.toFixed(0)} us (${transit.received}); across a link vs within one relay per core: ${(local.perDatagramUs / transit.perDatagramUs).toFixed(2)} (target >= 0.7)`,
    );
  } finally {
    await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
    await Promise.all(relays.map((r) => r.stop('SIGKILL')));
    home.cleanup();
  }
}

/**
 * The relay under each attack of the relay review (test/hostile/attacks.ts), with a 2-party
 * call through it, on loopback. Per attack, on a fresh relay process: whether the relay is
 * still up, its RSS before, at its peak during and 30 s after the attack, and the call's
 * loss and MOS (both members' reports; the call spans the attack). Then, for datagrams an
 * attacker can send without a connection: the relay's reply/request byte ratio (target
 * <= 3), and its CPU per dropped junk packet next to a plain Node UDP receiver's (target
 * <= 2x).
 *
 * Targets (printed, not asserted): 0 crashes; MOS >= 4.0 during each attack (the attacker
 * shares the 2 cores); RSS 30 s after within 25% of before. After the attack another call
 * goes on through the relay, as on any relay at work: V8 collects garbage (and gives memory
 * back) only as it allocates, so an idle relay keeps its heap's high-water mark for longer
 * (docs/relay-limits.md).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { sleep } from '../helpers/wait.js';
import { churn, connectionFlood, junkFlood, mediaJunk, partialFrames, rosterOverflow, signalFlood, squat, type Target } from '../hostile/attacks.js';
import { procCpuMs, startHostileRelay, startTwoPartyCall, type TwoPartyCall } from '../hostile/harness.js';
import { longHeaderMatrix, longHeaderPacket, probeSocket, sendAll, UNVALIDATED_KINDS, zeroRttPacket } from '../hostile/packets.js';

export const name = 'hostile: the relay under attack, with a call through it';

const ROOM = 'bench-under-attack';
const ATTACK_MS = 8000;
const SETTLE_AFTER_MS = 30_000;

interface Attack {
  name: string;
  run(t: Target, port: number): Promise<string>;
}

const ATTACKS: Attack[] = [
  {
    name: '0-RTT + every version x type x truncation',
    async run(t, port) {
      const p = await probeSocket('127.0.0.2');
      let n = 0;
      const until = performance.now() + ATTACK_MS;
      while (performance.now() < until) n += await sendAll(p.socket, port, '127.0.0.1', [zeroRttPacket(), ...[...longHeaderMatrix()].map((m) => m.packet)], 2);
      await p.close();
      return `${n} datagrams`;
    },
  },
  {
    name: 'Initial flood (1200 B, no token)',
    async run(_t, port) {
      const n = await junkFlood(port, '127.0.0.1', () => longHeaderPacket({ version: 1, type: 0, size: 1200 }), { perSecond: 5000, ms: ATTACK_MS });
      return `${n} Initials`;
    },
  },
  {
    name: 'connections + rooms from one address',
    async run(t) {
      const f = await connectionFlood(t, 200, { joinRooms: true });
      await sleep(Math.max(0, ATTACK_MS - 3000));
      await f.close();
      return `${f.accepted}/${f.attempted} accepted`;
    },
  },
  {
    name: 'room squatting (one address)',
    async run(t) {
      const s = await squat(t, hashRoomName(ROOM), 40);
      await sleep(ATTACK_MS / 2);
      await s.close();
      return `${s.accepted}/${s.attempted} seats`;
    },
  },
  {
    name: 'roster overflow (5 addresses)',
    async run(t) {
      const o = await rosterOverflow(t, hashRoomName(`${ROOM}-overflow`), 70, ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7']);
      await o.close();
      return `${o.accepted}/${o.attempted} admitted, ${o.unanswered} unanswered`;
    },
  },
  {
    name: 'join/leave churn (4 connections)',
    async run(t) {
      const c = await churn(t, hashRoomName(ROOM), ATTACK_MS, 4);
      await c.close();
      return `${c.cycles} cycles, ${c.refusedJoins} refused`;
    },
  },
  {
    name: 'partial frames (8 x 100 streams)',
    async run(t) {
      const p = await partialFrames(t, { connections: 8, streams: 100, frameBytes: 8000, holdMs: ATTACK_MS / 2 });
      await p.close();
      return `${p.streamsOpened} streams, ${(p.bytesWritten / 1024).toFixed(0)} KiB in`;
    },
  },
  {
    name: 'room-signal flood (4 kB at 55/s)',
    async run(t) {
      const f = await signalFlood(t, hashRoomName(ROOM), { bytes: 4000, perSecond: 55, ms: ATTACK_MS });
      await f.close();
      return `${f.sent} passed, ${f.refused} refused`;
    },
  },
  {
    name: 'member media junk (5k pps x 1306 B)',
    async run(t) {
      const j = await mediaJunk(t, hashRoomName(ROOM), { size: 1306, perSecond: 5000, ms: ATTACK_MS });
      await j.close();
      return `${j.sent} sent${j.onPath ? ' on the UDP path' : ''}`;
    },
  },
  {
    name: 'junk UDP flood (10k pps)',
    async run(_t, port) {
      const n = await junkFlood(port, '127.0.0.1', () => randomBytes(40), { perSecond: 10_000, ms: ATTACK_MS });
      return `${n} datagrams`;
    },
  },
];

function fmtMb(kb: number): string {
  return (kb / 1024).toFixed(1);
}

async function runAttack(a: Attack): Promise<void> {
  const r = await startHostileRelay();
  const calls: TwoPartyCall[] = [];
  try {
    const target: Target = { relay: { host: r.host, port: r.port }, fingerprint: r.relay.fingerprint };
    // Long enough for the slowest attack; the reports cover the attack and a little around it.
    const during = startTwoPartyCall(r.relay, ROOM, Math.ceil(ATTACK_MS / 1000) + 12);
    calls.push(during);
    await sleep(2500);
    const before = r.rssKb();
    const cpu0 = r.cpuMs();
    const t0 = performance.now();
    let peak = before;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, r.rssKb());
      } catch {
        // the process is gone: reported below
      }
    }, 200);
    const detail = await a.run(target, r.port).catch((err: Error) => `attack failed: ${err.message}`);
    clearInterval(sampler);
    const attackEnded = performance.now();
    const relayCpu = r.alive() ? `${(((r.cpuMs() - cpu0) / (attackEnded - t0)) * 100).toFixed(0)}%` : '-';
    let quality: string;
    try {
      const reports = await during.finish();
      quality = reports
        .map((rep) => rep.participants.filter((p: { alias: string }) => /^tone/.test(p.alias)).map((p: { lossPct: number; mos: number }) => `${p.lossPct}%/${p.mos}`).join(' '))
        .join(', ');
    } catch (err) {
      quality = `call failed: ${(err as Error).message.split('\n')[0]}`;
    }
    // The relay at work afterwards: another call through it until the RSS reading.
    if (r.alive()) calls.push(startTwoPartyCall(r.relay, `${ROOM}-after`, Math.ceil(SETTLE_AFTER_MS / 1000) + 5));
    await sleep(Math.max(0, SETTLE_AFTER_MS - (performance.now() - attackEnded)));
    const alive = r.alive();
    const after = alive ? r.rssKb() : NaN;
    console.log(
      `   ${a.name.padEnd(44)} alive ${alive ? 'yes' : 'NO '}  RSS ${fmtMb(before)} / ${fmtMb(peak)} / ${fmtMb(after)} MB (${((after / before - 1) * 100).toFixed(0)}%)  call loss/MOS ${quality}  relay CPU ${relayCpu}  [${detail}]`,
    );
  } finally {
    for (const c of calls) c.cleanup();
    r.cleanup();
  }
}

async function amplification(): Promise<void> {
  const r = await startHostileRelay();
  try {
    console.log('   reply/request bytes per unvalidated packet kind (target <= 3):');
    for (const kind of UNVALIDATED_KINDS) {
      const p = await probeSocket('127.0.0.2');
      const packets = Array.from({ length: 50 }, () => kind.make());
      const sent = packets.reduce((n, b) => n + b.length, 0);
      await sendAll(p.socket, r.port, r.host, packets);
      await sleep(300);
      const got = p.received();
      await p.close();
      console.log(`     ${kind.name.padEnd(40)} ${(got.bytes / sent).toFixed(3)}  (${got.bytes}/${sent} bytes, ${got.packets} replies)`);
    }
    console.log(`     relay alive: ${r.alive() ? 'yes' : 'NO'}`);
  } finally {
    r.cleanup();
  }
}

/** A plain Node UDP receiver in its own process: counts datagrams, nothing else. */
async function plainReceiver(): Promise<{ port: number; pid: number; stop(): void }> {
  const child = spawn(
    process.execPath,
    ['-e', "const s=require('dgram').createSocket('udp4');let n=0;s.on('message',()=>{n++});s.bind(0,'127.0.0.1',()=>console.log(s.address().port));"],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  return { port, pid: child.pid!, stop: () => child.kill('SIGKILL') };
}

/** CPU ms a process spends on a flood of `make()` datagrams beyond its idle use, per packet (µs). */
async function cpuPerPacket(pid: number, port: number, make: () => Buffer): Promise<number> {
  const idle0 = procCpuMs(pid);
  await sleep(3000);
  const idle = procCpuMs(pid) - idle0;
  const c0 = procCpuMs(pid);
  const n = await junkFlood(port, '127.0.0.1', make, { perSecond: 10_000, ms: 3000 });
  await sleep(200);
  const used = procCpuMs(pid) - c0 - idle * (3200 / 3000);
  return (Math.max(0, used) * 1000) / n;
}

async function junkCost(): Promise<void> {
  const kinds: { name: string; make: () => Buffer }[] = [
    { name: 'random bytes (40)', make: () => randomBytes(40) },
    { name: 'short header, unknown connection', make: () => Buffer.concat([Buffer.of(0x41), randomBytes(40)]) },
    { name: 'v1 Initial under 1200 bytes', make: () => longHeaderPacket({ version: 1, type: 0, size: 300 }) },
    { name: 'media path packet, unknown token', make: () => Buffer.concat([Buffer.of(0x24), randomBytes(100)]) },
  ];
  console.log('   CPU per dropped junk packet, 10k packets/s for 3 s (target <= 2x a plain Node UDP receiver):');
  for (const kind of kinds) {
    const plain = await plainReceiver();
    const r = await startHostileRelay();
    try {
      const plainUs = await cpuPerPacket(plain.pid, plain.port, kind.make);
      const relayUs = await cpuPerPacket(r.relay.child.pid!, r.port, kind.make);
      console.log(`     ${kind.name.padEnd(36)} relay ${relayUs.toFixed(1)} µs, plain ${plainUs.toFixed(1)} µs: ratio ${(relayUs / Math.max(0.1, plainUs)).toFixed(2)}`);
    } finally {
      plain.stop();
      r.cleanup();
    }
  }
}

export async function run(): Promise<void> {
  console.log('   per attack, fresh relay: alive, RSS before / peak during / 30 s after, both members\' loss/MOS during it, relay CPU during it (of one core)');
  for (const a of ATTACKS) await runAttack(a);
  await amplification();
  await junkCost();
}

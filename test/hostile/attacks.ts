/**
 * The attacks of the relay review, as functions: each one is bounded in count and time,
 * talks to a relay on loopback only, and returns what the relay let it do. The attacker can
 * come from another loopback address (127.0.0.2, ...: all of 127/8 is loopback on Linux),
 * so per-source limits meet it and not the honest callers on 127.0.0.1.
 *
 * Shared by the hostile tests (test/hostile/*.integration.test.ts) and the `hostile`
 * benchmark (test/bench/hostile.bench.ts).
 */
import { randomBytes } from 'node:crypto';
import type { QUICSocket } from '@matrixai/quic';
import { RelaySession } from '../../core/client/relay-session.js';
import { expectFingerprint, openSocket, type HostPort } from '../../core/transport/quic.js';
import { sleep } from '../helpers/wait.js';
import { probeSocket } from './packets.js';

export interface Target {
  /** The relay's address. */
  relay: HostPort;
  fingerprint: string;
}

/** A session to the relay from `localHost` (its own socket), or undefined if refused. */
export async function attackerSession(t: Target, localHost = '127.0.0.2'): Promise<{ session: RelaySession; socket: QUICSocket } | { error: Error }> {
  const socket = await openSocket({ host: localHost, port: 0 });
  try {
    const session = await RelaySession.open({ relay: t.relay, verify: expectFingerprint(t.fingerprint, 'relay'), socket, timeoutMs: 3000 });
    return { session, socket };
  } catch (err) {
    await socket.stop({ force: true }).catch(() => undefined);
    return { error: err as Error };
  }
}

async function closeAll(sessions: { session: RelaySession; socket: QUICSocket }[]): Promise<void> {
  await Promise.all(
    sessions.map(async ({ session, socket }) => {
      await session.close().catch(() => undefined);
      await socket.stop({ force: true }).catch(() => undefined);
    }),
  );
}

export interface FloodOutcome {
  attempted: number;
  accepted: number;
  /** Refusals by error name and the relay's reason (e.g. "RefusedError: ... too many connections"). */
  refused: string[];
  close(): Promise<void>;
}

/**
 * Open `n` connections from one address (the review: 500 in 5 s from one process), and with
 * `joinRooms` join a different room on each (500 rooms).
 */
export async function connectionFlood(t: Target, n: number, opts: { localHost?: string; joinRooms?: boolean; concurrency?: number } = {}): Promise<FloodOutcome> {
  const sessions: { session: RelaySession; socket: QUICSocket }[] = [];
  const refused: string[] = [];
  const concurrency = opts.concurrency ?? 8;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const s = await attackerSession(t, opts.localHost);
        if ('error' in s) {
          refused.push(`${s.error.name}: ${s.error.message}`);
          continue;
        }
        sessions.push(s);
        if (opts.joinRooms) {
          await s.session.joinRoom(randomBytes(16).toString('hex')).catch((err: Error) => refused.push(`${err.name}: ${err.message}`));
        }
      }
    }),
  );
  return { attempted: n, accepted: sessions.length, refused, close: () => closeAll(sessions) };
}

/** Occupy a room from one address (the review: 64 connections filled a room). */
export async function squat(t: Target, roomId: string, n: number, localHost = '127.0.0.2'): Promise<FloodOutcome> {
  const sessions: { session: RelaySession; socket: QUICSocket }[] = [];
  const refused: string[] = [];
  let admitted = 0;
  for (let i = 0; i < n; i++) {
    const s = await attackerSession(t, localHost);
    if ('error' in s) {
      refused.push(`${s.error.name}: ${s.error.message}`);
      continue;
    }
    sessions.push(s);
    try {
      await s.session.joinRoom(roomId, { alias: `squatter${i}` });
      admitted++;
    } catch (err) {
      refused.push(`${(err as Error).name}: ${(err as Error).message}`);
    }
  }
  return { attempted: n, accepted: admitted, refused, close: () => closeAll(sessions) };
}

/**
 * Members whose announcements are as large as the relay takes and whose aliases are control
 * characters (the review: past ~38 of them the `joined` answer overflowed the signal limit
 * and every later join went unanswered). Joins from several addresses; every join must be
 * answered, by `joined` or a refusal.
 */
export async function rosterOverflow(t: Target, roomId: string, n: number, hosts: string[]): Promise<FloodOutcome & { unanswered: number }> {
  const sessions: { session: RelaySession; socket: QUICSocket }[] = [];
  const refused: string[] = [];
  let admitted = 0;
  let unanswered = 0;
  for (let i = 0; i < n; i++) {
    const s = await attackerSession(t, hosts[i % hosts.length]);
    if ('error' in s) {
      refused.push(`${s.error.name}: ${s.error.message}`);
      continue;
    }
    sessions.push(s);
    // 767 bytes of JSON: just under the relay's announcement limit.
    const announcement = { pad: 'x'.repeat(767 - 10) };
    const alias = '\u0007\u001b[31m\u202e'.repeat(40);
    try {
      // A relay that does not answer never will: the long wait only keeps a loaded machine's
      // slow answer (this process reads 63 join notices per join) from counting as none.
      await s.session.joinRoom(roomId, { alias, announcement, timeoutMs: 15_000 });
      admitted++;
    } catch (err) {
      const e = err as Error;
      if (e.name === 'NetworkError') unanswered++;
      refused.push(`${e.name}: ${e.message}`);
    }
  }
  return { attempted: n, accepted: admitted, refused, unanswered, close: () => closeAll(sessions) };
}

export interface ChurnOutcome {
  cycles: number;
  refusedJoins: number;
}

/** Join and leave a room as fast as the relay answers, on `connections` connections, for `ms`. */
export async function churn(t: Target, roomId: string, ms: number, connections = 1, localHost = '127.0.0.2'): Promise<ChurnOutcome & { close(): Promise<void> }> {
  const sessions: { session: RelaySession; socket: QUICSocket }[] = [];
  for (let i = 0; i < connections; i++) {
    const s = await attackerSession(t, localHost);
    if (!('error' in s)) sessions.push(s);
  }
  const until = performance.now() + ms;
  let cycles = 0;
  let refusedJoins = 0;
  await Promise.all(
    sessions.map(async ({ session }) => {
      while (performance.now() < until) {
        try {
          await session.joinRoom(roomId, { alias: 'churner', timeoutMs: 1000 });
          await session.leave({ timeoutMs: 1000 });
          cycles++;
        } catch {
          refusedJoins++;
          await sleep(20);
        }
      }
    }),
  );
  return { cycles, refusedJoins, close: () => closeAll(sessions) };
}

/**
 * Streams that each hold an unfinished signal frame (a length prefix promising `frameBytes`
 * and all but the last byte of it), `streams` per connection on `connections` connections,
 * held open for `holdMs` (the review: 8 x 100 streams of 64 KiB took the relay from 86 to
 * 311 MB). Returns how many streams the attacker got open and how many bytes it got in.
 */
export async function partialFrames(
  t: Target,
  opts: { connections: number; streams: number; frameBytes: number; holdMs: number; localHost?: string },
): Promise<{ streamsOpened: number; bytesWritten: number; close(): Promise<void> }> {
  const sessions: { session: RelaySession; socket: QUICSocket }[] = [];
  for (let i = 0; i < opts.connections; i++) {
    const s = await attackerSession(t, opts.localHost);
    if (!('error' in s)) sessions.push(s);
  }
  let streamsOpened = 0;
  let bytesWritten = 0;
  const frame = Buffer.alloc(4 + opts.frameBytes - 1, 0x20);
  frame.writeUInt32BE(opts.frameBytes, 0);
  const writes: Promise<void>[] = [];
  for (const { session } of sessions) {
    const connection = (session as unknown as { client: { connection: import('@matrixai/quic').QUICConnection } }).client.connection;
    for (let i = 0; i < opts.streams; i++) {
      let stream: import('@matrixai/quic').QUICStream;
      try {
        stream = connection.newStream('bidi');
      } catch {
        break;
      }
      streamsOpened++;
      const writer = stream.writable.getWriter();
      // Each write resolves once the relay's flow control takes it (never, past its window).
      writes.push(
        Promise.race([writer.write(frame).then(() => void (bytesWritten += frame.length)), sleep(opts.holdMs)]).catch(() => undefined),
      );
    }
  }
  await Promise.all(writes);
  await sleep(Math.max(0, opts.holdMs));
  return { streamsOpened, bytesWritten, close: () => closeAll(sessions) };
}

/**
 * Room signals of `bytes` each, broadcast at `perSecond` for `ms` by a member (the review:
 * 60 KB signals at 55/s dropped the call a tier).
 */
export async function signalFlood(t: Target, roomId: string, opts: { bytes: number; perSecond: number; ms: number }): Promise<{ sent: number; refused: number; close(): Promise<void> }> {
  const s = await attackerSession(t);
  if ('error' in s) throw s.error;
  await s.session.joinRoom(roomId, { alias: 'signaller' });
  const payload = { kind: 'noise', pad: 'n'.repeat(Math.max(0, opts.bytes - 30)) };
  const until = performance.now() + opts.ms;
  let sent = 0;
  let refused = 0;
  const inFlight: Promise<void>[] = [];
  while (performance.now() < until) {
    inFlight.push(
      s.session.roomSignal(payload, undefined, { timeoutMs: 2000 }).then(
        () => void sent++,
        () => void refused++,
      ),
    );
    await sleep(1000 / opts.perSecond);
  }
  await Promise.all(inFlight);
  return { sent, refused, close: () => closeAll([s]) };
}

/**
 * A member that floods junk media (`size` bytes, `perSecond`) for `ms`, on the UDP media
 * path once it has it (the review: 5,000 packets/s of 1,306 bytes, fanned out at 10,350/s).
 * Its own socket, so it gets the path (from 127.0.0.1).
 */
export async function mediaJunk(t: Target, roomId: string, opts: { size: number; perSecond: number; ms: number }): Promise<{ sent: number; onPath: boolean; close(): Promise<void> }> {
  const session = await RelaySession.open({ relay: t.relay, verify: expectFingerprint(t.fingerprint, 'relay') });
  await session.joinRoom(roomId, { alias: 'junk' });
  for (let i = 0; i < 50 && session.mediaPathStats().path !== 'udp'; i++) await sleep(20);
  const junk = randomBytes(opts.size);
  const until = performance.now() + opts.ms;
  let sent = 0;
  const perTick = Math.max(1, Math.round(opts.perSecond / 200));
  while (performance.now() < until) {
    for (let i = 0; i < perTick; i++) {
      junk[0] = sent & 0xff;
      session.datagrams.send(junk);
      sent++;
    }
    await sleep(5);
  }
  return { sent, onPath: session.mediaPathStats().path === 'udp', close: () => session.close() };
}

/** Raw UDP junk at `perSecond` for `ms` from a fresh socket (paced in 5 ms steps). */
export async function junkFlood(port: number, host: string, make: () => Buffer, opts: { perSecond: number; ms: number }): Promise<number> {
  const p = await probeSocket(host === '127.0.0.1' ? '127.0.0.2' : host);
  const until = performance.now() + opts.ms;
  const perStep = Math.max(1, Math.round(opts.perSecond / 200));
  let sent = 0;
  let due = performance.now();
  while (performance.now() < until) {
    for (let i = 0; i < perStep; i++) {
      p.socket.send(make(), port, host);
      sent++;
    }
    due += 5;
    await sleep(Math.max(0, due - performance.now()));
  }
  await p.close();
  return sent;
}

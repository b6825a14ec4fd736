/**
 * 1:1 calls between the two clients of a P2P lab (./p2p-lab.ts), as users make them: a
 * `wzp relay` process in the wan, `wzp listen --accept-from A --once` in client B's namespace
 * and `wzp call --to B` in client A's, both real CLI processes with their JSON reports. Used
 * by the direct-call lab tests and the direct-call benchmark.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallPathReport } from '../../core/client/direct-call.js';
import type { DirectTestReport } from '../../src/services/direct-test.js';
import { BIN, makeHome, runCli, type CliHome } from '../helpers/cli.js';
import type { LabRelay, P2pLab } from './p2p-lab.js';

export interface LabPerson {
  home: CliHome;
  fingerprint: string;
}

/** A client home with an identity. */
export async function labPerson(prefix: string): Promise<LabPerson> {
  const home = makeHome(prefix);
  const r = await runCli(['identity', '--json'], home);
  if (r.code !== 0) throw new Error(`identity: ${r.stderr}`);
  return { home, fingerprint: (JSON.parse(r.stdout) as { result: { fingerprint: string } }).result.fingerprint };
}

/** The parts of a direct call's JSON result the lab tests read. */
export interface LabCallResult {
  endedBy: string;
  durationMs: number;
  firstAudioMs?: number;
  path: CallPathReport;
  direct: { peerCandidates: { type: string; address: string; port: number }[]; relayCandidate?: { address: string; port: number }; candidates: unknown[]; answerMs: number };
  participants: { fingerprint: string; packetsReceived: number; concealedFrames: number; framesPlayed: number; lossPct: number; decryptRejected: number }[];
}

export interface LabCallOutcome {
  caller: LabCallResult;
  callee: LabCallResult;
  /** Wall time of the caller's process. */
  wallMs: number;
}

export interface LabCallOptions {
  relay: LabRelay;
  /** The relay's address as the clients dial it (default relay.address). */
  relayAddress?: string;
  a: LabPerson;
  b: LabPerson;
  /** The relay the listener (B) registers on, when not `relay` (a federation: docs/federation.md). */
  listenerRelay?: LabRelay;
  durationS: number;
  callerArgs?: readonly string[];
  listenerArgs?: readonly string[];
  /**
   * Runs once the listener is registered and the call placed (e.g. cut the direct path later);
   * `answered` resolves when the listener has answered (its media starts then).
   */
  during?(ctx: { answered: Promise<void> }): Promise<void>;
  timeoutMs?: number;
}

interface Proc {
  done: Promise<{ code: number | null; stdout: string; stderr: string; wallMs: number }>;
  /** Resolves when stderr matches. */
  when(pattern: RegExp, timeoutMs: number): Promise<void>;
  kill(): void;
}

function wzpProcess(lab: P2pLab, side: 'a' | 'b', args: string[], home: CliHome): Proc {
  const started = performance.now();
  const child = lab.spawnIn(lab.clients[side].role, process.execPath, [BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: { pattern: RegExp; resolve(): void }[] = [];
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => {
    stderr += d;
    for (const w of [...waiters]) if (w.pattern.test(stderr)) w.resolve();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string; wallMs: number }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr, wallMs: performance.now() - started })),
  );
  return {
    done,
    kill: () => child.kill('SIGKILL'),
    when: (pattern, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(stderr)) return resolve();
        const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
        void done.then((r) => {
          clearTimeout(timer);
          if (!pattern.test(stderr)) reject(new Error(`exited ${r.code} without ${pattern}:\n${stderr}\n${r.stdout}`));
        });
        waiters.push({
          pattern,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      }),
  };
}

function resultOf(run: { code: number | null; stdout: string; stderr: string }, what: string): Record<string, unknown> {
  let doc: { status?: number; result?: Record<string, unknown> };
  try {
    doc = JSON.parse(run.stdout);
  } catch {
    throw new Error(`${what}: stdout is not one JSON document (exit ${run.code})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
  if (run.code !== 0 || doc.status !== 0 || doc.result === undefined) throw new Error(`${what}: exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return doc.result;
}

/** One call from client A to client B through the lab's relay; both reports. Throws with both outputs when either side fails. */
export async function labCall(lab: P2pLab, o: LabCallOptions): Promise<LabCallOutcome> {
  const relay = o.relayAddress ?? o.relay.address;
  const timeoutMs = o.timeoutMs ?? (o.durationS + 30) * 1000;
  const pin = ['--relay-fingerprint', o.relay.fingerprint];
  const listenRelay = o.listenerRelay ?? o.relay;
  const listener = wzpProcess(
    lab,
    'b',
    ['listen', o.listenerRelay ? listenRelay.address : relay, '--accept-from', o.a.fingerprint, '--once', '--tone', '700', '--relay-fingerprint', listenRelay.fingerprint, ...(o.listenerArgs ?? []), '--json'],
    o.b.home,
  );
  const timer = setTimeout(() => listener.kill(), timeoutMs);
  try {
    await listener.when(/registered as/, 20_000);
    const caller = wzpProcess(
      lab,
      'a',
      ['call', relay, '--to', o.b.fingerprint, '--tone', '440', '--duration', String(o.durationS), '--no-playback', ...pin, ...(o.callerArgs ?? []), '--json'],
      o.a.home,
    );
    const killCaller = setTimeout(() => caller.kill(), timeoutMs);
    try {
      if (o.during) await o.during({ answered: listener.when(/wzp listen: answered/, timeoutMs) });
      const [c, l] = await Promise.all([caller.done, listener.done]);
      const callerResult = resultOf(c, 'the caller');
      const listenResult = resultOf(l, 'the listener');
      const callee = listenResult.call as Record<string, unknown> | undefined;
      if (!callee) throw new Error(`the listener has no call report: ${l.stdout}`);
      return { caller: callerResult as unknown as LabCallResult, callee: callee as unknown as LabCallResult, wallMs: c.wallMs };
    } finally {
      clearTimeout(killCaller);
      caller.kill();
    }
  } finally {
    clearTimeout(timer);
    listener.kill();
  }
}

/** A relay in the lab's wan with its own config dir (left in the temp dir: small, and the OS's to clean). */
export async function labRelay(lab: P2pLab, listen?: string): Promise<LabRelay> {
  const dir = mkdtempSync(join(tmpdir(), 'wzp-lab-relay-'));
  return lab.startRelay({ configDir: dir, ...(listen ? { listen } : {}) });
}

/** A one-line account of a call's path, for assertion messages. */
export function describePath(r: LabCallResult): string {
  const p = r.path;
  const d = p.direct;
  const pairs = d ? d.pairs.map((x) => `${x.localType}->${x.remote.type} ${x.remote.address}:${x.remote.port} ${x.state}${x.failReason ? `(${x.failReason})` : ''}`).join(', ') : '-';
  return `final ${p.final}, timeToDirect ${p.timeToDirectMs ?? '-'} ms, switches [${p.timeline.map((t) => `${t.atMs}:${t.event}:${t.path}`).join(' ')}], pairs [${pairs}], checks ${d ? `${d.checks.requestsSent} sent/${d.checks.responsesReceived} answered` : '-'}`;
}


/** Both reports of one `wzp direct-test` between the lab's clients: A offers (--to), B waits. */
export async function labDirectTest(lab: P2pLab, o: { relay: LabRelay; a: LabPerson; b: LabPerson; args?: string[]; timeoutMs?: number }): Promise<{ tester: DirectTestReport; waiter: DirectTestReport }> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const pin = ['--relay-fingerprint', o.relay.fingerprint];
  const waiter = wzpProcess(lab, 'b', ['direct-test', o.relay.address, '--wait', '--accept-from', o.a.fingerprint, ...pin, ...(o.args ?? []), '--json'], o.b.home);
  const timer = setTimeout(() => waiter.kill(), timeoutMs);
  try {
    await waiter.when(/registered as/, 20_000);
    const tester = wzpProcess(lab, 'a', ['direct-test', o.relay.address, '--to', o.b.fingerprint, ...pin, ...(o.args ?? []), '--json'], o.a.home);
    const killTester = setTimeout(() => tester.kill(), timeoutMs);
    try {
      const [t, w] = await Promise.all([tester.done, waiter.done]);
      return { tester: resultOf(t, 'the tester') as unknown as DirectTestReport, waiter: resultOf(w, 'the waiter') as unknown as DirectTestReport };
    } finally {
      clearTimeout(killTester);
      tester.kill();
    }
  } finally {
    clearTimeout(timer);
    waiter.kill();
  }
}

/** Both sides of a lab call connected and heard each other, and nothing failed to decrypt. */
export function assertConnected(r: LabCallOutcome, what: string): void {
  for (const [side, x] of [['caller', r.caller], ['callee', r.callee]] as const) {
    assert.equal(x.participants.length, 1, `${what} ${side}: one peer`);
    assert.ok(x.participants[0].packetsReceived > 50, `${what} ${side}: heard ${x.participants[0].packetsReceived} packets`);
    assert.equal(x.participants[0].decryptRejected, 0, `${what} ${side}: nothing failed to decrypt`);
  }
}

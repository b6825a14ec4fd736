/**
 * A relay process under attack and a 2-party call through it: what the hostile tests and
 * the `hostile` benchmark share. Every party is a real `wzp` process (bin/run.js) on
 * loopback; the call's two members send tones and record what they hear, so "the call still
 * hears its peer" is measured in the audio, per second.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeWav } from '../../core/media/wav.js';
import { BIN, makeHome, parseJsonDocument, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';
import { toneLevel } from '../helpers/tone-level.js';

export interface HostileRelay {
  relay: RunningRelay;
  host: string;
  port: number;
  home: CliHome;
  /** Stop it (SIGTERM) and return its exit summary's metrics (it runs with --json). */
  stop(): Promise<{ result: CliResult; metrics: any }>;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Its resident set size now, kB (from /proc). */
  rssKb(): number;
  /** Its CPU time so far (user + system), ms (from /proc). */
  cpuMs(): number;
  cleanup(): void;
}

/** Start `wzp relay --json` on loopback with extra flags. */
export async function startHostileRelay(args: string[] = []): Promise<HostileRelay> {
  const home = makeHome('wzp-hostile-relay-');
  const relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--json', ...args], home);
  const [host, portText] = [relay.address.slice(0, relay.address.lastIndexOf(':')), relay.address.slice(relay.address.lastIndexOf(':') + 1)];
  const pid = relay.child.pid!;
  return {
    relay,
    host,
    port: Number(portText),
    home,
    async stop() {
      const result = await relay.stop('SIGTERM');
      let metrics: any;
      try {
        metrics = (parseJsonDocument(result).result as any).metrics;
      } catch {
        metrics = undefined;
      }
      return { result, metrics };
    },
    alive: () => relay.child.exitCode === null && relay.child.signalCode === null,
    rssKb: () => procRssKb(pid),
    cpuMs: () => procCpuMs(pid),
    cleanup: () => {
      if (relay.child.exitCode === null && relay.child.signalCode === null) relay.child.kill('SIGKILL');
      home.cleanup();
    },
  };
}

export function procRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

/** utime + stime of a process, ms (clock ticks are 100 Hz on Linux). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export interface CallParty {
  hz: number;
  wav: string;
  home: CliHome;
  done: Promise<CliResult>;
  stderr(): string;
}

export interface TwoPartyCall {
  parties: [CallParty, CallParty];
  /** Wait for both to end; their JSON reports. */
  finish(): Promise<[any, any]>;
  cleanup(): void;
}

/**
 * Start a 2-party call through `relay` in `room`: two `wzp call` processes sending tones
 * (440 and 700 Hz) for `seconds`, each recording what it hears.
 */
export function startTwoPartyCall(relay: RunningRelay, room: string, seconds: number, extra: string[] = []): TwoPartyCall {
  const tones = [440, 700] as const;
  const parties = tones.map((hz) => {
    const home = makeHome(`wzp-hostile-${hz}-`);
    const wav = join(home.dir, `heard-${hz}.wav`);
    const child = spawn(
      process.execPath,
      [BIN, 'call', relay.address, '--room', room, '--tone', String(hz), '--duration', String(seconds), '--alias', `tone${hz}`,
        '--record', wav, '--no-playback', '--relay-fingerprint', relay.fingerprint, '--json', ...extra],
      { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
    return { hz, wav, home, done, stderr: () => stderr, kill: () => child.kill('SIGKILL') };
  }) as unknown as [CallParty & { kill(): void }, CallParty & { kill(): void }];
  return {
    parties,
    async finish() {
      const results = await Promise.all(parties.map((p) => p.done));
      return results.map((r, i) => {
        if (r.code !== 0) throw new Error(`call party ${parties[i].hz} exited ${r.code}\n${r.stderr}`);
        return parseJsonDocument(r).result;
      }) as [any, any];
    },
    cleanup() {
      for (const p of parties) {
        p.kill();
        p.home.cleanup();
      }
    },
  };
}

/**
 * Per second of a recording: whether the tone `hz` is clearly there (level over `min` in
 * that second). The first `skipSeconds` (joining, first audio) are left out.
 */
export function toneSeconds(wav: string, hz: number, skipSeconds = 1, min = 1000): boolean[] {
  const pcm = decodeWav(readFileSync(wav)).samples;
  const out: boolean[] = [];
  for (let s = skipSeconds; (s + 1) * 48_000 <= pcm.length; s++) out.push(toneLevel(pcm.subarray(s * 48_000, (s + 1) * 48_000), hz, 1) > min);
  return out;
}

/** Seconds of `wav` from `from` to `to` (s, in the recording's timeline) in which `hz` is heard. */
export function heardFraction(wav: string, hz: number, from = 1, to = Infinity): number {
  const seconds = toneSeconds(wav, hz, 0).slice(Math.max(0, Math.floor(from)), Number.isFinite(to) ? Math.ceil(to) : undefined);
  return seconds.length ? seconds.filter(Boolean).length / seconds.length : 0;
}

/**
 * Run the real CLI (bin/run.js) as a separate process, the way a user does, with its config,
 * data and cache directories in a private temporary home so tests never touch the user's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = join(REPO_ROOT, 'bin', 'run.js');

export interface CliHome {
  dir: string;
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

/** A throwaway home: WZP_CONFIG_DIR / WZP_DATA_DIR / WZP_CACHE_DIR inside one temp dir. */
export function makeHome(prefix = 'wzp-test-'): CliHome {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, '.config'),
    XDG_DATA_HOME: join(dir, '.local', 'share'),
    XDG_CACHE_HOME: join(dir, '.cache'),
    WZP_CONFIG_DIR: join(dir, 'config'),
    WZP_DATA_DIR: join(dir, 'data'),
    WZP_CACHE_DIR: join(dir, 'cache'),
    NO_COLOR: '1',
    WZP_DEBUG: '',
  };
  return { dir, env, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `wzp ...args` to completion (bounded by timeoutMs). */
export function runCli(args: string[], home: CliHome, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wzp ${args.join(' ')} did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * runCli() in a network namespace of its own with only a loopback interface (`unshare
 * --net`; tests run as root). For what must not leave the machine: a name lookup asks the
 * system's resolver, which is elsewhere; in here the query cannot go out, so a name that
 * does not resolve is met without a packet leaving.
 */
export function runCliIsolated(args: string[], home: CliHome, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, BIN, ...args], {
      env: home.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wzp ${args.join(' ')} (isolated) did not finish in ${timeoutMs} ms\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Parse stdout as exactly one JSON document (throws with the output if it is not). */
export function parseJsonDocument(r: CliResult): Record<string, unknown> & { status: number } {
  try {
    return JSON.parse(r.stdout);
  } catch (err) {
    throw new Error(`stdout is not one JSON document: ${(err as Error).message}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

export interface RunningRelay {
  address: string;
  fingerprint: string;
  child: ChildProcess;
  /** What it wrote to stderr so far (its start-up lines: the metrics URL with --metrics). */
  stderr(): string;
  /** Send SIGTERM (or another signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<CliResult>;
}

/**
 * `wzp relay` flags for tests and benchmarks that play many clients from one loopback address
 * (25 calls, repeated joins): the relay's per-address limits (docs/relay-limits.md) are meant
 * for one host each, so they are lifted there. test/hostile/ checks the limits themselves.
 */
export const MANY_CLIENTS_ONE_ADDRESS = [
  '--max-connections-per-ip', '100000',
  '--max-handshakes-per-ip', '256',
  '--max-retries-per-ip', '100000',
  '--max-room-members-per-ip', '64',
  '--source-join-burst', '100000',
  '--max-source-joins-per-minute', '1000000',
];

/**
 * Start `wzp relay ...args` in the background (`nodeArgs`: node's own, e.g. --cpu-prof; `bin`:
 * another build's bin/run.js, for a benchmark's before/after) and wait for its "listening on" line.
 */
export function startRelayProcess(args: string[], home: CliHome, timeoutMs = 20_000, nodeArgs: string[] = [], bin = BIN): Promise<RunningRelay> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, bin, 'relay', ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let started = false;
    const exited = new Promise<CliResult>((res) => child.on('close', (code) => res({ code, stdout, stderr })));
    child.stdout.on('data', (d) => (stdout += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`relay did not start in ${timeoutMs} ms\nstderr: ${stderr}`));
    }, timeoutMs);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on (\S+) fingerprint (\S+)/.exec(stderr);
      if (m && !started) {
        started = true;
        clearTimeout(timer);
        resolve({
          address: m[1],
          fingerprint: m[2],
          child,
          stderr: () => stderr,
          stop: (signal: NodeJS.Signals = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    child.on('close', (code) => {
      if (!started) {
        clearTimeout(timer);
        reject(new Error(`relay exited with ${code} before listening\nstderr: ${stderr}`));
      }
    });
  });
}

/**
 * For a describe block: a relay in its own process and a client home, started before its
 * tests and stopped (SIGKILL) and removed after them. Read the fields inside tests.
 */
export function relayProcessForSuite(prefix: string): { relay: RunningRelay; home: CliHome; relayHome: CliHome } {
  const suite = {} as { relay: RunningRelay; home: CliHome; relayHome: CliHome };
  before(async () => {
    suite.relayHome = makeHome(`${prefix}relay-`);
    suite.home = makeHome(prefix);
    suite.relay = await startRelayProcess(['--listen', '127.0.0.1:0'], suite.relayHome);
  });
  after(async () => {
    await suite.relay?.stop('SIGKILL');
    suite.relayHome?.cleanup();
    suite.home?.cleanup();
  });
  return suite;
}

/** A CLI process left running: its end, signals, and a wait for a line on stderr. */
export interface RunningCli {
  done: Promise<CliResult>;
  kill(sig: NodeJS.Signals): void;
  stderr(): string;
  /** Resolves once stderr matches. */
  when(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

export function spawnCli(args: string[], home: CliHome): RunningCli {
  // stdin is not a terminal (ignored): a listener without --accept-from declines every call.
  const child = spawn(process.execPath, [BIN, ...args], { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: { pattern: RegExp; resolve(): void }[] = [];
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    for (const w of [...waiters]) if (w.pattern.test(stderr)) w.resolve();
  });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return {
    done,
    kill: (sig) => child.kill(sig),
    stderr: () => stderr,
    when: (pattern, timeoutMs = 20_000) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(stderr)) return resolve();
        const timer = setTimeout(() => reject(new Error(`no ${pattern} on stderr in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
        void done.then(() => {
          clearTimeout(timer);
          if (!pattern.test(stderr)) reject(new Error(`exited without ${pattern} on stderr:\n${stderr}`));
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

/**
 * Real-time virtual audio devices for tests: a private PulseAudio daemon started by
 * scripts/virtual-audio.sh, with a virtual microphone (PortAudio device "virtmic", the default
 * input) and a virtual speaker ("virtspeaker", the default output).
 *
 * `startVirtualAudio()` points this process at the daemon (PULSE_SERVER, ALSA_CONFIG_PATH, ...
 * in process.env, read by PortAudio when it initialises), so it must run before the test
 * touches core/audio/devices. `inject()` plays audio into the microphone and
 * `captureSpeaker()` records what reached the speaker, both through PulseAudio's own tools.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './cli.js';

const SCRIPT = join(REPO_ROOT, 'scripts', 'virtual-audio.sh');
/** Rate of the audio `captureSpeaker()` returns. */
export const CAPTURE_SAMPLE_RATE = 48_000;
/**
 * PulseAudio client buffers. Injection gets a deep one: a 10 ms buffer underran (a gap of
 * silence in the "microphone") whenever pacat was descheduled on a loaded machine. Recording
 * keeps a small one so the recorded span matches the requested duration closely.
 */
const INJECT_LATENCY_MS = 200;
const RECORD_LATENCY_MS = 20;
const REQUIRED_TOOLS = ['pulseaudio', 'pactl', 'pacat'];

export interface VirtualAudio {
  /** The environment a process needs to use the devices (already applied to this process). */
  env: Record<string, string>;
  /** Play mono 16-bit audio into the virtual microphone; resolves once it has been played. */
  inject(pcm: Int16Array, sampleRate: number): Promise<void>;
  /** Record the virtual speaker for `durationMs` (mono, 16-bit, CAPTURE_SAMPLE_RATE). */
  captureSpeaker(durationMs: number): Promise<Int16Array>;
  /** SIGKILL the daemon, as a crashing sound server would (stop() still cleans up). */
  killServer(): void;
  /** Stop the daemon, remove its directory and restore this process's environment. */
  stop(): Promise<void>;
}

/** Why the virtual devices cannot run here, or undefined if they can. */
export function virtualAudioSkipReason(): string | undefined {
  const missing = REQUIRED_TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  return missing.length === 0
    ? undefined
    : `virtual audio needs ${missing.join(', ')} (Debian: apt-get install pulseaudio pulseaudio-utils libasound2-plugins)`;
}

export async function startVirtualAudio(): Promise<VirtualAudio> {
  const dir = mkdtempSync(join(tmpdir(), 'wzp-virtual-audio-'));
  const scriptEnv = { ...process.env, WZP_VIRTUAL_AUDIO_DIR: dir };
  try {
    await runScript('start', scriptEnv);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const env = parseExports(await runScript('env', scriptEnv));
  const saved = applyEnv(env);
  const clientEnv = { ...process.env, ...env };
  return {
    env,
    inject: (pcm, sampleRate) => inject(clientEnv, pcm, sampleRate),
    captureSpeaker: (durationMs) => record(clientEnv, 'virtspeaker.monitor', durationMs),
    killServer: () => process.kill(Number(readFileSync(join(dir, 'runtime', 'pulse', 'pid'), 'utf8').trim()), 'SIGKILL'),
    async stop() {
      await runScript('stop', scriptEnv);
      applyEnv(saved);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function runScript(command: 'start' | 'stop' | 'env', env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', [SCRIPT, command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`virtual-audio.sh ${command} exited ${code}: ${stderr.trim()}`)),
    );
  });
}

/** `export NAME='value'` lines -> { NAME: value }. */
function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const match of text.matchAll(/^export (\w+)='([^']*)'$/gm)) env[match[1]] = match[2];
  return env;
}

/** Set (or, for undefined values, delete) variables in process.env; returns the old values. */
function applyEnv(vars: Record<string, string | undefined>): Record<string, string | undefined> {
  const previous: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(vars)) {
    previous[name] = process.env[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  return previous;
}

function pulseArgs(sampleRate: number, latencyMs: number): string[] {
  return ['--raw', '--format=s16le', `--rate=${sampleRate}`, '--channels=1', `--latency-msec=${latencyMs}`];
}

function inject(env: NodeJS.ProcessEnv, pcm: Int16Array, sampleRate: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('pacat', ['--playback', '--device=virtmic', ...pulseArgs(sampleRate, INJECT_LATENCY_MS)], {
      env,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pacat exited ${code}: ${stderr.trim()}`))));
    child.stdin.end(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
  });
}

function record(env: NodeJS.ProcessEnv, source: string, durationMs: number): Promise<Int16Array> {
  return new Promise((resolve, reject) => {
    const child = spawn('pacat', ['--record', `--device=${source}`, ...pulseArgs(CAPTURE_SAMPLE_RATE, RECORD_LATENCY_MS)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGTERM'), durationMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGTERM' && code !== 0) {
        reject(new Error(`pacat --record exited ${code ?? signal}: ${stderr.trim()}`));
        return;
      }
      const bytes = Buffer.concat(chunks);
      const samples = new Int16Array(bytes.byteLength >> 1);
      new Uint8Array(samples.buffer).set(bytes.subarray(0, samples.byteLength));
      resolve(samples);
    });
  });
}

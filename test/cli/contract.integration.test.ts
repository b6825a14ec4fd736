/**
 * The CLI contract, over every command in the oclif manifest (oclif.manifest.json, written by
 * scripts/build.mjs): a new command is covered without editing this file.
 *
 * For every command, with the real CLI process:
 * - `--help` and `-h` work (exit 0) and show usage and examples;
 * - with `--json`, every outcome (success, and each kind of bad input that applies: unknown
 *   flag, missing required input, bad HOST:PORT, port 0, a closed loopback port with a short
 *   timeout, a missing/unreadable/corrupt file, an output path that cannot be written) prints
 *   exactly one JSON document on stdout and nothing else; its `status` is the exit code and,
 *   for an error, the code docs/exit-codes.md lists for its `name` (the table is parsed);
 * - without `--json`, an error leaves stdout empty and says `Error: ...` on stderr;
 * - no stack trace ever reaches the user unless WZP_DEBUG=1 (test/cli/error-output checks
 *   that WZP_DEBUG=1 does show one).
 * Commands need a success case (and their addresses and files) in contract-cases.ts.
 * Plus the CLI as a whole: no command, help, a mistyped command (did-you-mean, usage error),
 * and `wzp plugins --json` (oclif's plugin commands speak the same envelope).
 *
 * All cases run before the tests that check them, several processes at a time. Traffic stays
 * on 127.0.0.1; port-mapping commands run in a private network namespace next to a fake
 * gateway (test/helpers/isolated-gateway.ts), so nothing they send can leave the machine.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeWav } from '../../core/media/wav.js';
import { BIN, REPO_ROOT, makeHome, runCli, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';
import { isolatedCommand } from '../helpers/isolated-gateway.js';
import { CONTRACTS, type CommandContract } from './contract-cases.js';

interface ManifestCommand {
  id: string;
  examples?: (string | { command: string })[];
  args: Record<string, { required?: boolean; description?: string }>;
  flags: Record<string, { required?: boolean; type: string }>;
  hidden?: boolean;
}

const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'oclif.manifest.json'), 'utf8')) as { commands: Record<string, ManifestCommand> };
const COMMANDS = Object.values(manifest.commands)
  .filter((c) => !c.hidden)
  .sort((a, b) => a.id.localeCompare(b.id));

/** docs/exit-codes.md's table: error name -> exit code. */
function exitCodeTable(): Map<string, number> {
  const doc = readFileSync(join(REPO_ROOT, 'docs', 'exit-codes.md'), 'utf8');
  const table = new Map<string, number>();
  for (const line of doc.split('\n')) {
    const m = /^\|\s*(\d+)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    for (const name of m[2].matchAll(/`([A-Za-z]+)`/g)) table.set(name[1], Number(m[1]));
  }
  return table;
}
const EXIT_CODES = exitCodeTable();
const code = (name: string): number => {
  const c = EXIT_CODES.get(name);
  assert.ok(c !== undefined, `docs/exit-codes.md lists no exit code for ${name}`);
  return c;
};

/** A line of a JavaScript stack trace. */
const STACK_LINE = /^\s+at (?:.+ \()?(?:file:\/\/|node:|\/)[^\s)]*:\d+:\d+\)?$/m;
const CASE_TIMEOUT_MS = 45_000;
const CONCURRENCY = 4;

type Expect = { kind: 'help' } | { kind: 'json'; status: number; name?: string } | { kind: 'human-error'; status: number };

interface Case {
  title: string;
  /** The command's words and arguments, placeholders not yet filled. */
  argv: string[];
  expect: Expect;
  isolated?: boolean;
  stopWhen?: RegExp;
  partner?: CommandContract['partner'];
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  argv: string[];
  error?: string;
}

const words = (id: string) => id.split(':');

function casesFor(c: ManifestCommand, contract: CommandContract | undefined): Case[] {
  const cmd = words(c.id);
  const base = { isolated: contract?.isolated, stopWhen: contract?.stopWhen };
  const out: Case[] = [
    { title: '--help', argv: [...cmd, '--help'], expect: { kind: 'help' } },
    { title: '-h', argv: [...cmd, '-h'], expect: { kind: 'help' } },
    { title: 'unknown flag (--json)', argv: [...cmd, '--json', '--no-such-flag'], expect: { kind: 'json', status: code('UsageError'), name: 'UsageError' } },
    { title: 'unknown flag (human)', argv: [...cmd, '--no-such-flag'], expect: { kind: 'human-error', status: code('UsageError') } },
  ];
  const required = [...Object.entries(c.args).filter(([, a]) => a.required).map(([n]) => n.toUpperCase()), ...Object.entries(c.flags).filter(([, f]) => f.required).map(([n]) => `--${n}`)];
  if (required.length > 0) {
    out.push({ title: `missing ${required.join(', ')}`, argv: [...cmd, '--json'], expect: { kind: 'json', status: code('UsageError'), name: 'UsageError' }, ...base, stopWhen: undefined });
  }
  if (!contract) return out;
  contract.success.forEach((args, i) =>
    out.push({
      title: `success${contract.success.length > 1 ? ` #${i + 1}` : ''}: ${args.join(' ')}`,
      argv: [...cmd, ...args, '--json'],
      expect: { kind: 'json', status: 0 },
      ...base,
      ...(contract.partner ? { partner: contract.partner } : {}),
    }),
  );
  for (const input of contract.addresses ?? []) {
    const at = input.args.indexOf('{addr}');
    const what = at > 0 && input.args[at - 1].startsWith('--') ? input.args[at - 1] : 'HOST:PORT';
    const bad: [string, string][] = [
      ['not an address', 'not-an-address'],
      ['no port', '127.0.0.1'],
      ['port out of range', '127.0.0.1:70000'],
      ...(input.portZeroValid ? [] : ([['port 0', '127.0.0.1:0']] as [string, string][])),
    ];
    for (const [title, value] of bad) {
      out.push({ title: `${what}: ${title}`, argv: [...cmd, ...input.args.map((a) => a.replace('{addr}', value)), '--json'], expect: { kind: 'json', status: code('UsageError'), name: 'UsageError' }, ...base, stopWhen: undefined });
    }
    if (input.unreachable) {
      out.push({
        title: `${what}: unreachable (closed loopback port)`,
        argv: [...cmd, ...input.args.map((a) => a.replace('{addr}', '{closed}')), ...input.unreachable, '--json'],
        expect: { kind: 'json', status: code('NetworkError'), name: 'NetworkError' },
        ...base,
        stopWhen: undefined,
      });
    }
  }
  for (const file of contract.files ?? []) {
    const variants: [string, string][] = file.output
      ? [['in a directory that does not exist', '{tmp}/no-such-dir/out']]
      : [
          ...(file.createdIfMissing ? [] : ([['missing', '{tmp}/no-such-file']] as [string, string][])),
          ['a directory', '{tmp}'],
          ...(file.anyContent ? [] : ([['not what it should be', '{garbage}']] as [string, string][])),
        ];
    for (const [title, path] of variants) {
      out.push({
        title: `${file.what}: ${title}`,
        argv: [...cmd, ...file.args.map((a) => a.replace('{file}', path)), '--json'],
        expect: { kind: 'json', status: code('ConfigError'), name: 'ConfigError' },
        ...base,
        stopWhen: undefined,
      });
    }
  }
  for (const args of contract.usage ?? []) {
    out.push({ title: `usage: ${args.join(' ')}`, argv: [...cmd, ...args, '--json'], expect: { kind: 'json', status: code('UsageError'), name: 'UsageError' }, ...base, stopWhen: undefined });
  }
  return out;
}

const GLOBAL_CASES: Case[] = [
  { title: 'wzp (no command) shows help', argv: [], expect: { kind: 'help' } },
  { title: 'wzp --help', argv: ['--help'], expect: { kind: 'help' } },
  { title: 'wzp -h', argv: ['-h'], expect: { kind: 'help' } },
  { title: 'mistyped command (--json): usage error with did-you-mean', argv: ['netchek', '--json'], expect: { kind: 'json', status: code('UsageError'), name: 'UsageError' } },
  { title: 'mistyped command (human): did-you-mean', argv: ['netchek'], expect: { kind: 'human-error', status: code('UsageError') } },
  { title: 'mistyped subcommand (--json)', argv: ['pins', 'lst', '--json'], expect: { kind: 'json', status: code('UsageError'), name: 'UsageError' } },
  { title: 'wzp plugins --json: the envelope', argv: ['plugins', '--json'], expect: { kind: 'json', status: 0 } },
  { title: 'wzp plugins -h', argv: ['plugins', '-h'], expect: { kind: 'help' } },
];

interface Env {
  relay: RunningRelay;
  closed: string;
  wav: string;
  garbage: string;
  work: string;
}

function fill(argv: string[], env: Env, tmp: string): string[] {
  return argv.map((a) =>
    a
      .replaceAll('{relay}', env.relay.address)
      .replaceAll('{fp}', env.relay.fingerprint)
      .replaceAll('{closed}', env.closed)
      .replaceAll('{wav}', env.wav)
      .replaceAll('{garbage}', env.garbage)
      .replaceAll('{tmp}', tmp),
  );
}

/** The partner of a case (CommandContract.partner): started, ready, and how to stop it. */
async function startPartner(partner: NonNullable<Case['partner']>, env: Env, tmp: string): Promise<{ fingerprint: string; stop(): void }> {
  const home = makeHome('wzp-contract-partner-');
  const id = await runCli(['identity', '--json'], home);
  const fingerprint = (JSON.parse(id.stdout) as { result: { fingerprint: string } }).result.fingerprint;
  const child = spawn(process.execPath, [BIN, ...fill(partner.args, env, tmp)], { env: home.env, stdio: ['ignore', 'ignore', 'pipe'] });
  const stop = () => {
    child.kill('SIGKILL');
    home.cleanup();
  };
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the partner never printed ${partner.readyWhen}:\n${stderr}`)), 20_000);
    child.stderr.on('data', (d) => {
      stderr += d;
      if (partner.readyWhen.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`the partner exited before ${partner.readyWhen}:\n${stderr}`));
    });
  }).catch((err: unknown) => {
    stop();
    throw err;
  });
  return { fingerprint, stop };
}

async function runCase(c: Case, env: Env, home: CliHome, tmp: string): Promise<Outcome> {
  const partner = c.partner ? await startPartner(c.partner, env, tmp) : undefined;
  try {
    return await runOne({ ...c, argv: c.argv.map((a) => (partner ? a.replaceAll('{partnerFp}', partner.fingerprint) : a)) }, env, home, tmp);
  } finally {
    partner?.stop();
  }
}

function runOne(c: Case, env: Env, home: CliHome, tmp: string): Promise<Outcome> {
  const argv = fill(c.argv, env, tmp);
  const started = performance.now();
  const direct = { command: process.execPath, args: [BIN, ...argv] };
  const { command, args } = c.isolated ? isolatedCommand([process.execPath, BIN, ...argv]) : direct;
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stopped = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (c.stopWhen && !stopped && c.stopWhen.test(stderr)) {
        stopped = true;
        child.kill('SIGINT');
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CASE_TIMEOUT_MS);
    child.on('error', (err) => resolve({ code: null, signal: null, stdout, stderr, ms: performance.now() - started, argv, error: err.message }));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started, argv });
    });
  });
}

async function runAll<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function show(o: Outcome): string {
  return `wzp ${o.argv.join(' ')}\nexit ${o.code}${o.signal ? ` (${o.signal})` : ''} after ${Math.round(o.ms)} ms${o.error ? ` (${o.error})` : ''}\nstdout: ${o.stdout.slice(0, 2000)}\nstderr: ${o.stderr.slice(0, 2000)}`;
}

function checkOutcome(c: Case, o: Outcome): void {
  assert.ok(o.signal === null && o.code !== null, `the process did not exit by itself\n${show(o)}`);
  assert.doesNotMatch(o.stdout, STACK_LINE, `a stack trace on stdout\n${show(o)}`);
  assert.doesNotMatch(o.stderr, STACK_LINE, `a stack trace on stderr\n${show(o)}`);
  if (c.expect.kind === 'help') {
    assert.equal(o.code, 0, show(o));
    assert.match(o.stdout, /USAGE/, show(o));
    return;
  }
  if (c.expect.kind === 'human-error') {
    assert.equal(o.code, c.expect.status, show(o));
    assert.equal(o.stdout, '', `an error printed on stdout\n${show(o)}`);
    assert.match(o.stderr, /^Error: /m, show(o));
    return;
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(o.stdout) as Record<string, unknown>;
  } catch (err) {
    assert.fail(`stdout is not exactly one JSON document (${(err as Error).message})\n${show(o)}`);
  }
  assert.equal(typeof doc, 'object', show(o));
  assert.equal(doc.status, o.code, `status ${String(doc.status)} is not the exit code\n${show(o)}`);
  assert.ok(Array.isArray(doc.warnings), `no warnings array\n${show(o)}`);
  if (doc.status === 0 || doc.status === 130) {
    assert.ok(doc.result !== undefined && doc.result !== null, `no result\n${show(o)}`);
  } else {
    assert.equal(typeof doc.name, 'string', show(o));
    assert.equal(typeof doc.message, 'string', show(o));
    assert.ok(Array.isArray(doc.suggestions), show(o));
    assert.ok(!String(doc.message).includes('internal error'), `an internal error\n${show(o)}`);
    const documented = EXIT_CODES.get(String(doc.name));
    assert.ok(documented !== undefined, `error name ${String(doc.name)} is not in docs/exit-codes.md\n${show(o)}`);
    assert.equal(doc.status, documented, `docs/exit-codes.md lists ${documented} for ${String(doc.name)}\n${show(o)}`);
  }
  assert.equal(o.code, c.expect.status, `expected exit ${c.expect.status}${c.expect.name ? ` (${c.expect.name})` : ''}\n${show(o)}`);
  if (c.expect.name) assert.equal(doc.name, c.expect.name, show(o));
}

describe('CLI contract', () => {
  let relay: RunningRelay;
  let relayHome: CliHome;
  let work: string;
  const results = new Map<Case, Outcome>();
  const all: { group: string; cases: Case[] }[] = [
    { group: 'wzp', cases: GLOBAL_CASES },
    ...COMMANDS.map((c) => ({ group: `wzp ${words(c.id).join(' ')}`, cases: casesFor(c, CONTRACTS[c.id]) })),
  ];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'wzp-contract-'));
    relayHome = makeHome('wzp-contract-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const closed = `127.0.0.1:${socket.address().port}`;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    const wav = join(work, 'tone.wav');
    const samples = Int16Array.from({ length: 48_000 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 48_000)));
    writeFileSync(wav, encodeWav(samples, 48_000));
    const garbage = join(work, 'garbage.bin');
    writeFileSync(garbage, 'root:x:0:0:root:/root:/bin/bash\n{not json, not a WAV}\n');
    const env: Env = { relay, closed, wav, garbage, work };

    const flat = all.flatMap((g) => g.cases);
    let n = 0;
    await runAll(flat, CONCURRENCY, async (c) => {
      const home = makeHome('wzp-contract-');
      const tmp = join(home.dir, 'tmp');
      mkdirSync(tmp);
      try {
        results.set(c, await runCase(c, env, home, tmp));
      } finally {
        home.cleanup();
        n++;
      }
    });
    assert.equal(n, flat.length);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome?.cleanup();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the manifest lists the commands', () => {
    assert.ok(COMMANDS.length >= 10, `${COMMANDS.length} commands in oclif.manifest.json`);
    assert.ok(EXIT_CODES.get('UsageError') === 2 && EXIT_CODES.get('InternalError') === 70, 'docs/exit-codes.md table parsed');
  });

  for (const c of COMMANDS) {
    describe(`wzp ${words(c.id).join(' ')}`, () => {
      test('has examples', () => {
        assert.ok((c.examples ?? []).length > 0, `wzp ${words(c.id).join(' ')} has no examples`);
      });
      test('has a success case in test/cli/contract-cases.ts', () => {
        assert.ok(CONTRACTS[c.id], `add wzp ${words(c.id).join(' ')}'s success case (and its addresses and files) to test/cli/contract-cases.ts`);
      });
    });
  }

  for (const { group, cases } of all) {
    describe(group, () => {
      for (const c of cases) {
        test(c.title, () => {
          const o = results.get(c);
          assert.ok(o, 'not run');
          checkOutcome(c, o);
          if (c.expect.kind === 'help' && c.argv.length > 0 && !c.argv[0].startsWith('-') && c.argv[0] !== 'plugins') {
            assert.match(o.stdout, /EXAMPLES/, `help shows examples\n${show(o)}`);
          }
        });
      }
    });
  }

  test('a mistyped command suggests the right one, as a command line to copy', () => {
    const json = [...results].find(([c]) => c.argv.join(' ') === 'netchek --json')?.[1];
    assert.ok(json);
    assert.deepEqual((JSON.parse(json.stdout) as { suggestions: string[] }).suggestions, ['wzp netcheck --json']);
    const human = [...results].find(([c]) => c.argv.join(' ') === 'netchek')?.[1];
    assert.ok(human);
    assert.match(human.stderr, /did you mean "netcheck"/);
    assert.match(human.stderr, /^Try this: wzp netcheck$/m);
  });
});

/**
 * `wzp identity --restore`: the 24 words come from stdin or a file, never the command line;
 * an existing other identity is replaced only with --force.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, makeHome, parseJsonDocument, runCli, type CliHome, type CliResult } from '../helpers/cli.js';

/** BIP39 test vector: 32 zero bytes of entropy, and the identity it gives (docs/identity.md). */
const WORDS = `${'abandon '.repeat(23)}art`;
const FINGERPRINT = 'b8db:ec0b:ab3b:daf1:e2f5:47a9:df47:2298:b803:7cd9:abf4:c0a8:6a4b:ec90:71ee:2bca';

/** Run `wzp ...args` with `input` on its stdin. */
function runWithStdin(args: string[], home: CliHome, input: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: home.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe('wzp identity --restore', () => {
  let home: CliHome;
  before(() => (home = makeHome('wzp-restore-')));
  after(() => home.cleanup());

  test('from stdin: the identity of the words; again: nothing changes', async () => {
    const r = await runWithStdin(['identity', '--restore', '--json'], home, `${WORDS}\n`);
    const doc = parseJsonDocument(r) as unknown as { status: number; result: { restored: boolean; fingerprint: string; mnemonic?: string } };
    assert.equal(r.code, 0, r.stderr);
    assert.equal(doc.result.restored, true);
    assert.equal(doc.result.fingerprint, FINGERPRINT);
    assert.equal(doc.result.mnemonic, undefined);
    assert.doesNotMatch(r.stdout + r.stderr, /abandon/);

    const shown = parseJsonDocument(await runCli(['identity', '--json'], home)) as unknown as { result: { fingerprint: string } };
    assert.equal(shown.result.fingerprint, FINGERPRINT);

    const again = await runWithStdin(['identity', '--restore'], home, WORDS);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already holds this identity: nothing changed/);
  });

  test('another identity is replaced only with --force; the words never appear in the output', async () => {
    const path = join(home.dir, 'other.json');
    const created = parseJsonDocument(await runCli(['identity', '--identity', path, '--json'], home)) as unknown as { result: { fingerprint: string } };
    const refused = await runWithStdin(['identity', '--identity', path, '--restore', '--json'], home, WORDS);
    const doc = parseJsonDocument(refused) as unknown as { status: number; name: string; message: string; suggestions: string[] };
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal(doc.name, 'ConfigError');
    assert.ok(doc.message.includes(created.result.fingerprint), doc.message);
    assert.doesNotMatch(refused.stdout + refused.stderr, /abandon/);

    const wordsFile = join(home.dir, 'words.txt');
    writeFileSync(wordsFile, `${WORDS}\n`, { mode: 0o600 });
    const forced = await runCli(['identity', '--identity', path, '--restore', '--words-file', wordsFile, '--force', '--json'], home);
    const done = parseJsonDocument(forced) as unknown as { result: { fingerprint: string; replaced?: string } };
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(done.result.fingerprint, FINGERPRINT);
    assert.equal(done.result.replaced, created.result.fingerprint);
  });

  test('bad words are a usage error that does not repeat them; words on the command line are refused', async () => {
    const bad = await runWithStdin(['identity', '--identity', join(home.dir, 'bad.json'), '--restore', '--json'], home, `${'abandon '.repeat(23)}zzzz`);
    const doc = parseJsonDocument(bad) as unknown as { name: string; message: string };
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(doc.name, 'UsageError');
    assert.match(doc.message, /word 24/);
    assert.doesNotMatch(bad.stdout + bad.stderr, /abandon|zzzz/);

    const argv = await runCli(['identity', '--restore', ...WORDS.split(' '), '--json'], home);
    assert.equal(argv.code, 2, argv.stderr);
    // Nor does the refusal repeat words given on the command line (oclif's own error did).
    assert.doesNotMatch(argv.stdout + argv.stderr, /abandon/, 'the words are not repeated');
    const human = await runCli(['identity', '--restore', ...WORDS.split(' ')], home);
    assert.equal(human.code, 2);
    assert.doesNotMatch(human.stdout + human.stderr, /abandon/, 'the words are not repeated');
  });
});

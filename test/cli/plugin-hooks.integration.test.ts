/**
 * Plugins whose `wzp:*` hook never answers (issue 15, item 2), through the real CLI with the
 * fixture plugins linked into a temporary home:
 * - help, `-h` and `wzp plugins ...` never run the hooks, so the user can always look at and
 *   remove a misbehaving plugin (before: every command, these included, exited 13 silently);
 * - a wzp command waits one timeout, warns naming each plugin, carries on with the others and
 *   exits without waiting for the hook's own timer;
 * - the timed-out hooks are remembered and skipped (with a warning) until the plugin changes,
 *   so they cost the timeout once, not on every command.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeHome, parseJsonDocument, runCli, type CliHome, type CliResult } from '../helpers/cli.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const PLUGINS = ['wzp-plugin-never-settles', 'wzp-plugin-slow', 'wzp-plugin-example'];
/** src/extensions.ts HOOK_TIMEOUT_MS. */
const HOOK_TIMEOUT_MS = 5_000;
/** A command that does not wait for any hook: start-up alone, with room for a loaded CI machine. */
const FAST_MS = 3_000;

async function timed(args: string[], home: CliHome): Promise<CliResult & { ms: number }> {
  const started = performance.now();
  const r = await runCli(args, home, 40_000);
  return { ...r, ms: performance.now() - started };
}

function warningsOf(r: CliResult): string[] {
  const doc = parseJsonDocument(r);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(doc.status, 0);
  return doc.warnings as string[];
}

describe('plugin hooks that never settle', () => {
  let home: CliHome;
  let work: string;
  before(async () => {
    home = makeHome('wzp-hooks-');
    work = mkdtempSync(join(tmpdir(), 'wzp-hook-plugins-'));
    for (const name of PLUGINS) {
      cpSync(join(FIXTURES, name), join(work, name), { recursive: true });
      const link = await runCli(['plugins', 'link', join(work, name), '--no-install'], home);
      assert.equal(link.code, 0, link.stderr);
    }
  });
  after(() => {
    home.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  test('help, -h and the plugins commands do not wait for plugin hooks', async () => {
    for (const args of [['--help'], ['-h'], ['echo-test', '--help'], ['extensions', '-h'], []]) {
      const r = await timed(args, home);
      assert.equal(r.code, 0, `wzp ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stdout, /USAGE/, `wzp ${args.join(' ')}`);
      assert.ok(r.ms < FAST_MS, `wzp ${args.join(' ')} took ${Math.round(r.ms)} ms`);
    }
    const list = await timed(['plugins'], home);
    assert.equal(list.code, 0, list.stderr);
    for (const name of PLUGINS) assert.match(list.stdout, new RegExp(name));
    assert.ok(list.ms < FAST_MS, `wzp plugins took ${Math.round(list.ms)} ms`);
    const json = await timed(['plugins', '--json'], home);
    const doc = parseJsonDocument(json);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(doc.status, 0);
    assert.ok(Array.isArray(doc.result));
    assert.ok(json.ms < FAST_MS, `wzp plugins --json took ${Math.round(json.ms)} ms`);
  });

  test('a command waits one timeout, warns naming each plugin, keeps the others, and does not wait for the slow timer', async () => {
    const r = await timed(['extensions', '--json'], home);
    const warnings = warningsOf(r);
    assert.ok(r.ms >= HOOK_TIMEOUT_MS - 100, `took ${Math.round(r.ms)} ms: the hooks were not waited for`);
    // The slow plugin's timer runs 60 s; the hooks of all plugins and kinds run side by side.
    assert.ok(r.ms < HOOK_TIMEOUT_MS + 8_000, `took ${Math.round(r.ms)} ms`);
    for (const name of ['wzp-plugin-never-settles', 'wzp-plugin-slow']) {
      assert.ok(warnings.some((w) => w.includes(name) && /did not answer/.test(w)), `no warning for ${name}: ${warnings.join('\n')}`);
    }
    const rows = (parseJsonDocument(r).result as { extensions: { name: string; plugin: string }[] }).extensions;
    assert.equal(rows.find((e) => e.name === 'mulaw')?.plugin, 'wzp-plugin-example');
    assert.ok(rows.some((e) => e.name === 'opus'));
  });

  test('later commands skip the remembered hooks at once, with a warning naming the plugin', async () => {
    for (const args of [['extensions', '--json'], ['pins', 'list', '--json']]) {
      const r = await timed(args, home);
      const warnings = warningsOf(r);
      assert.ok(r.ms < FAST_MS, `wzp ${args.join(' ')} took ${Math.round(r.ms)} ms`);
      for (const name of ['wzp-plugin-never-settles', 'wzp-plugin-slow']) {
        assert.ok(warnings.some((w) => w.includes(name) && /skipped/.test(w)), `wzp ${args.join(' ')}: ${warnings.join('\n')}`);
      }
    }
    const human = await timed(['extensions'], home);
    assert.equal(human.code, 0);
    assert.match(human.stderr, /Warning: plugin wzp-plugin-never-settles is skipped/);
  });

  test('a plugin that changed is tried again; removing one forgets the remembered timeouts', async () => {
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(work, 'wzp-plugin-never-settles', 'index.js'), later, later);
    const retried = await timed(['extensions', '--json'], home);
    const warnings = warningsOf(retried);
    assert.ok(retried.ms >= HOOK_TIMEOUT_MS - 100, `took ${Math.round(retried.ms)} ms: the changed plugin was not tried again`);
    assert.ok(warnings.some((w) => w.includes('wzp-plugin-never-settles') && /did not answer/.test(w)), warnings.join('\n'));
    assert.ok(warnings.some((w) => w.includes('wzp-plugin-slow') && /skipped/.test(w)), 'the unchanged one stays skipped');

    const unlink = await timed(['plugins', 'unlink', 'wzp-plugin-never-settles'], home);
    assert.equal(unlink.code, 0, unlink.stderr);
    assert.ok(unlink.ms < FAST_MS, `wzp plugins unlink took ${Math.round(unlink.ms)} ms`);
    const afterUnlink = await timed(['extensions', '--json'], home);
    const remaining = warningsOf(afterUnlink);
    assert.ok(!remaining.some((w) => w.includes('wzp-plugin-never-settles')), remaining.join('\n'));
    assert.ok(remaining.some((w) => w.includes('wzp-plugin-slow') && /did not answer/.test(w)), remaining.join('\n'));
  });

  test('a linked plain-JavaScript ES module plugin brings no auto-transpile warning', async () => {
    const r = await timed(['extensions'], home);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /auto-transpiled/);
    const p = await timed(['plugins'], home);
    assert.doesNotMatch(p.stderr, /auto-transpiled/);
  });
});

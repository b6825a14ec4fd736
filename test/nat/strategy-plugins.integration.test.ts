/**
 * The built-in NAT strategies reach the CLI the way a third-party `wzp-plugin-*` package
 * does: through their own package.json's `wzp:nat-strategies` hook, from the built bundle
 * (bin/run.js -> dist/cli). `wzp extensions` lists them with their plugin.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeHome, parseJsonDocument, runCli, type CliHome } from '../helpers/cli.js';

describe('built-in NAT strategies in the CLI', () => {
  let home: CliHome;
  before(() => (home = makeHome('wzp-nat-strategies-')));
  after(() => home.cleanup());

  test('wzp extensions --json lists sequential and birthday from their plugins', async () => {
    const r = await runCli(['extensions', '--json', '--kind', 'nat-strategy'], home);
    assert.equal(r.code, 0, r.stderr);
    const doc = parseJsonDocument(r);
    assert.deepEqual(doc.warnings, []);
    const rows = (doc.result as { extensions: { kind: string; name: string; plugin: string; available: boolean; version: string; description: string }[] }).extensions;
    assert.deepEqual(
      rows.map((e) => [e.kind, e.name, e.plugin, e.available]),
      [
        ['nat-strategy', 'birthday', 'wzp-plugin-nat-birthday', true],
        ['nat-strategy', 'sequential', 'wzp-plugin-nat-sequential', true],
      ],
    );
    for (const e of rows) {
      assert.match(e.version, /^\d+\.\d+\.\d+$/);
      assert.ok(e.description.length > 20, e.description);
    }
  });

  test('the human listing shows them next to the codecs and FEC schemes', async () => {
    const r = await runCli(['extensions'], home);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^nat-strategy\s+birthday\s+\S+\s+wzp-plugin-nat-birthday\s+yes$/m);
    assert.match(r.stdout, /^nat-strategy\s+sequential\s+\S+\s+wzp-plugin-nat-sequential\s+yes$/m);
    assert.match(r.stdout, /^codec\s+opus\b/m);
  });
});

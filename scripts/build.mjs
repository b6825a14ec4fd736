#!/usr/bin/env node
// Build: TypeScript -> dist/, then copy the non-TS files the runtime needs (built-in plugin
// manifests, test fixtures). Run by `npm ci` (prepare), `npm test` and `npm run bench`.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
const tscFailed = r.status !== 0;

// Built-in plugins are oclif plugins of their own: each directory in src/plugins has a
// package.json next to its sources; ship it next to the compiled JS.
const pluginsSrc = join(root, 'src', 'plugins');
if (existsSync(pluginsSrc)) {
  for (const name of readdirSync(pluginsSrc)) {
    const pj = join(pluginsSrc, name, 'package.json');
    if (existsSync(pj)) {
      const out = join(root, 'dist', 'src', 'plugins', name);
      mkdirSync(out, { recursive: true });
      cpSync(pj, join(out, 'package.json'));
    }
  }
}

// Test fixtures (plain JS plugin packages, golden byte files) are used in place from test/,
// but tests resolve them relative to dist/test: mirror the folder.
const fixtures = join(root, 'test', 'fixtures');
if (existsSync(fixtures) && statSync(fixtures).isDirectory()) {
  cpSync(fixtures, join(root, 'dist', 'test', 'fixtures'), { recursive: true });
}
// oclif.manifest.json: without it oclif imports every command module at start-up just to
// read its flags (that pulls in QUIC, codecs, ...: ~0.5 s before any command runs). We build
// it with oclif's own Plugin loader, the way `oclif manifest` does.
if (!tscFailed) {
  const { Plugin } = await import('@oclif/core');
  const { writeFileSync } = await import('node:fs');
  const plugin = new Plugin({ root, type: 'core', isRoot: true, ignoreManifest: true, errorOnManifestCreate: true });
  await plugin.load();
  writeFileSync(join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2));
}
if (tscFailed) {
  console.error('build: tsc reported errors (JS was still emitted)');
  process.exit(1);
}

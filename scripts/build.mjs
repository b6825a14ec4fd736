#!/usr/bin/env node
// Build: TypeScript -> dist/, then copy the non-TS files the runtime needs (built-in plugin
// manifests, test fixtures), bundle the CLI (dist/cli) and write oclif's manifest. Run by
// `npm ci` (prepare), `npm test` and `npm run bench`.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire, isBuiltin } from 'node:module';

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
// The CLI runs from a bundle: dist/cli. Node 20's ES module loader costs ~0.5-1 ms per
// module (resolve, read, compile, link), and `wzp call` loads a few hundred of them (oclif
// aside): measured, process start -> join sent ~450 ms from dist/, ~330 ms from the bundle.
// esbuild bundles every command, hook and built-in plugin together with code splitting, so
// each module exists once (shared chunks: one registry, one set of error classes) and a
// command loads a handful of files; oclif itself is in it too (~100 CommonJS modules). Kept
// external: oclif's own plugins (help, plugins: oclif loads them by path, each with its own
// @oclif/core import, as it does for plugins built against other oclif versions), native
// addons and packages that locate files next to their own code (wasm, prebuilt binaries). dist/ keeps the plain tsc output that tests and the
// package's library entry points (`exports`) use.
if (!tscFailed) {
  const { build } = await import('esbuild');
  const dist = join(root, 'dist');
  const jsUnder = (dir) =>
    readdirSync(dir).flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? jsUnder(p) : p.endsWith('.js') ? [p] : [];
    });
  const plugins = readdirSync(join(dist, 'src', 'plugins')).filter((n) => existsSync(join(dist, 'src', 'plugins', n, 'package.json')));
  rmSync(join(dist, 'cli'), { recursive: true, force: true });
  await build({
    entryPoints: [
      ...jsUnder(join(dist, 'src', 'commands')),
      ...jsUnder(join(dist, 'src', 'hooks')),
      ...plugins.map((n) => join(dist, 'src', 'plugins', n, 'index.js')),
      join(dist, 'src', 'cli.js'),
    ],
    outdir: join(dist, 'cli'),
    outbase: dist,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    external: ['@oclif/plugin-*', 'typescript', '@discordjs/opus', 'naudiodon', 'segfault-handler', 'koffi', 'raptorq', '@shiguredo/rnnoise-wasm', '@matrixai/quic-*'],
    // Node built-ins through require(), not `import`: an ES import of a built-in makes Node
    // build an ES module facade of it (all its exports copied: ~10 ms at start-up, measured).
    plugins: [
      {
        name: 'builtins-by-require',
        setup(b) {
          b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) =>
            isBuiltin(args.path) && args.kind === 'import-statement' ? { path: args.path, namespace: 'builtin' } : undefined,
          );
          b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
        },
      },
    ],
    // CommonJS dependencies inside an ES module bundle call require() for Node built-ins.
    banner: { js: "import { createRequire as __wzpCreateRequire } from 'node:module'; const require = __wzpCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  for (const name of plugins) {
    cpSync(join(dist, 'src', 'plugins', name, 'package.json'), join(dist, 'cli', 'src', 'plugins', name, 'package.json'));
  }
}

// oclif.manifest.json: without it oclif imports every command module at start-up just to
// read its flags (that pulls in QUIC, codecs, ...: ~0.5 s before any command runs). We build
// it with oclif's own Plugin loader, the way `oclif manifest` does, from the bundled commands.
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

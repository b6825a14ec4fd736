#!/usr/bin/env node
// Build: TypeScript -> dist/, then copy the non-TS files the runtime needs (built-in plugin
// manifests, test fixtures), bundle the CLI (dist/cli) and write oclif's manifest. Run by
// `npm ci` (prepare), `npm test` and `npm run bench`.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
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
// The CLI runs from one bundle, dist/cli/src/cli.cjs, loaded by bin/run.js through
// src/bundle-loader.ts with a V8 code cache. Start-up is part of `wzp call`'s set-up time
// (target: process start -> first frame played <= 300 ms), and measured on this 2-core VM:
// - Node 20's ES module loader costs ~0.5-1 ms per module: from dist/ (a few hundred
//   modules) process start -> join sent was ~450 ms, from an ES module bundle split into
//   ~30 chunks 230-320 ms, from this bundle with its code cache 175-240 ms.
// - One file instead of ~30 chunks: ~15 ms less. Node 20 has no compile cache for ES
//   modules, but a CommonJS script can be compiled from a V8 code cache: loading the call
//   path took ~75 ms compiled from source and ~50 ms from the cache.
// - The cache is the whole bundle compiled eagerly (~5 MB; ~40 ms more to load than one of
//   the functions a run compiled), and the build ships one for its own Node next to the
//   bundle: a call's path is otherwise compiled function by function as it first runs, which
//   stalled a call 15-40 ms at a time in its first second (docs/direct-calls.md).
// Commands and built-in plugins sit behind getters (esbuild turns each require() of an ES
// module into a lazy initialiser), so `wzp call` runs the top-level code of call's modules
// only, as with one file per command. oclif finds the commands through its "explicit"
// strategy (package.json oclif.commands) and each built-in plugin's hook through a one-line
// index.cjs in its directory, next to its package.json: still a plugin of its own, loaded
// like a third-party one. Kept external: oclif's own plugins (help, plugins: oclif loads them
// by path, each with its own @oclif/core, as it does for plugins built against other oclif
// versions), native addons and packages that locate files next to their own code (wasm,
// prebuilt binaries). dist/ keeps the plain tsc output that tests and the package's library
// entry points (`exports`) use.
const BUNDLE_ID_PLACEHOLDER = '0'.repeat(64);
// import() inside a script compiled from a V8 code cache fails on Node 20 ("A dynamic import
// callback was not specified": the cache loses the script's link to its import callback,
// measured), and vm's USE_MAIN_CONTEXT_DEFAULT_LOADER prints an experimental warning. So every
// import() call in the bundle (oclif loading ES module plugins, naudiodon, rnnoise) is
// rewritten to call a function of the same name length (the source map stays exact), which
// src/bundle-loader.ts passes in and which does the import() from a real ES module. Loaded
// with a plain require() instead, the bundle defines it as import() itself (banner).
const IMPORT_STANDIN = '__imp_';
function routeDynamicImports(code) {
  const ts = require('typescript');
  const file = ts.createSourceFile('cli.cjs', code, ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const starts = [];
  const visit = (node) => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) starts.push(node.expression.getStart(file));
    ts.forEachChild(node, visit);
  };
  visit(file);
  let out = code;
  // The banner's own import() is the fallback for a plain require(): keep it (it is first).
  for (const at of starts.sort((a, b) => b - a)) {
    if (out.slice(at, at + 6) !== 'import') throw new Error(`build: expected import() at ${at}`);
    if (at < code.indexOf('\n')) continue;
    out = out.slice(0, at) + IMPORT_STANDIN + out.slice(at + 6);
  }
  return out;
}
if (!tscFailed) {
  const { build } = await import('esbuild');
  const { createHash } = await import('node:crypto');
  const { readFileSync, writeFileSync } = await import('node:fs');
  const dist = join(root, 'dist');
  const jsUnder = (dir) =>
    readdirSync(dir).flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? jsUnder(p) : p.endsWith('.js') ? [p] : [];
    });
  const plugins = readdirSync(join(dist, 'src', 'plugins')).filter((n) => existsSync(join(dist, 'src', 'plugins', n, 'package.json')));
  const commandsDir = join(dist, 'src', 'commands');
  // oclif's command ids from file paths: pins/list.js -> pins:list, pins/index.js -> pins.
  const commands = jsUnder(commandsDir).map((file) => {
    const id = relative(commandsDir, file).replace(/\.js$/, '').split(sep).filter((part, i, all) => !(part === 'index' && i === all.length - 1)).join(':');
    return [id, file];
  });
  const spec = (file) => JSON.stringify('./' + relative(dist, file).split(sep).join('/'));
  const entry = join(dist, 'cli-entry.js');
  writeFileSync(
    entry,
    [
      '// Generated by scripts/build.mjs: the entry of the CLI bundle (dist/cli/src/cli.cjs).',
      `export { run } from ${spec(join(dist, 'src', 'cli.js'))};`,
      `export { default as commandNotFoundHook } from ${spec(join(dist, 'src', 'hooks', 'command-not-found.js'))};`,
      `export { default as prerunHook } from ${spec(join(dist, 'src', 'hooks', 'prerun.js'))};`,
      'export const COMMANDS = {',
      ...commands.map(([id, file]) => `  get ${JSON.stringify(id)}() { return require(${spec(file)}).default; },`),
      '};',
      'export const PLUGINS = {',
      ...plugins.map((n) => `  get ${JSON.stringify(n)}() { return require(${spec(join(dist, 'src', 'plugins', n, 'index.js'))}); },`),
      '};',
      '',
    ].join('\n'),
  );
  rmSync(join(dist, 'cli'), { recursive: true, force: true });
  const outfile = join(dist, 'cli', 'src', 'cli.cjs');
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    external: ['@oclif/plugin-*', 'typescript', '@discordjs/opus', 'naudiodon', 'segfault-handler', 'koffi', 'raptorq', '@shiguredo/rnnoise-wasm', '@matrixai/quic-*'],
    // The sources are ES modules: strict mode for all of it (esbuild's own "use strict" comes
    // after the banner, where it is no directive), and import.meta.url is the bundle's own URL
    // (it sits where src/cli.js's paths expect: plugins/ next to it, package.json above).
    define: { 'import.meta.url': '__wzpImportMetaUrl' },
    // The bundle's identity, for its code cache (V8 itself only checks the source length):
    // a hash of the output, written over the placeholder below once the output exists.
    banner: {
      js:
        `/* wzp-bundle-id: ${BUNDLE_ID_PLACEHOLDER} */ 'use strict'; const __wzpImportMetaUrl = require('node:url').pathToFileURL(__filename).href; ` +
        `const ${IMPORT_STANDIN} = typeof __wzpImport === 'function' ? __wzpImport : (specifier, options) => import(specifier, options);`,
    },
    logLevel: 'warning',
  });
  const output = routeDynamicImports(readFileSync(outfile, 'utf8'));
  const bundleId = createHash('sha256').update(output).digest('hex');
  writeFileSync(outfile, output.replace(BUNDLE_ID_PLACEHOLDER, bundleId));
  // The bundle's code cache, every function compiled, for this Node (src/bundle-loader.ts:
  // used until the user's cache directory has one; ~0.4 s here).
  const { eagerCodeCache, shippedCacheFile } = await import(pathToFileURL(join(dist, 'src', 'bundle-loader.js')).href);
  writeFileSync(shippedCacheFile(outfile, bundleId), eagerCodeCache(outfile));
  rmSync(entry);
  for (const name of plugins) {
    const out = join(dist, 'cli', 'src', 'plugins', name);
    mkdirSync(out, { recursive: true });
    // The plugin's own manifest, its hooks pointing at its part of the bundle.
    const pj = JSON.parse(readFileSync(join(dist, 'src', 'plugins', name, 'package.json'), 'utf8'));
    for (const [event, target] of Object.entries(pj.oclif?.hooks ?? {})) {
      if (target !== './index.js') throw new Error(`build: plugin ${name}: hook ${event} must be ./index.js, is ${JSON.stringify(target)}`);
      pj.oclif.hooks[event] = './index.cjs';
    }
    writeFileSync(join(out, 'package.json'), JSON.stringify(pj, null, 2) + '\n');
    writeFileSync(join(out, 'index.cjs'), `// Generated by scripts/build.mjs: this plugin's code is in the CLI bundle.\nmodule.exports = require('../../cli.cjs').PLUGINS[${JSON.stringify(name)}];\n`);
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

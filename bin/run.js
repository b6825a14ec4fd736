#!/usr/bin/env node
// The wzp CLI. It runs from one bundle, dist/cli/src/cli.cjs, compiled from a V8 code cache
// when there is one (scripts/build.mjs and src/bundle-loader.ts say why); src/cli.ts is the
// start-up logic. Built-in plugins (dist/cli/src/plugins/*) are loaded as oclif core
// plugins before the command runs, so their hooks fire through the same path as third-party
// plugins.

// Each open audio stream holds one libuv thread for good (naudiodon); leave room for the
// rest. Set before anything uses the thread pool, hence the dynamic import below.
process.env.UV_THREADPOOL_SIZE ??= '8';

const { fileURLToPath } = await import('node:url');
const { loadBundle } = await import('../dist/src/bundle-loader.js');
const { exports: cli } = loadBundle(fileURLToPath(new URL('../dist/cli/src/cli.cjs', import.meta.url)));
await cli.run(process.argv.slice(2));

#!/usr/bin/env node
// The wzp CLI. It runs from the bundle in dist/cli (scripts/build.mjs says why); src/cli.ts
// is the start-up logic. Built-in plugins (dist/cli/src/plugins/*) are loaded as oclif core
// plugins before the command runs, so their hooks fire through the same path as third-party
// plugins.

// Each open audio stream holds one libuv thread for good (naudiodon); leave room for the
// rest. Set before anything uses the thread pool, hence the dynamic import below.
process.env.UV_THREADPOOL_SIZE ??= '8';

const { run } = await import('../dist/cli/src/cli.js');
await run(process.argv.slice(2));

#!/usr/bin/env node
// The wzp CLI. Built-in plugins (dist/src/plugins/*) are loaded as oclif core plugins before
// the command runs, so their hooks fire through the same path as third-party plugins.

// Each open audio stream holds one libuv thread for good (naudiodon); leave room for the
// rest. Set before anything uses the thread pool, hence the dynamic imports below.
process.env.UV_THREADPOOL_SIZE ??= '8';

// Start-up time is part of `wzp call`'s set-up time (target: process start to first frame
// played <= 300 ms). Most of it is module loading: oclif (CommonJS), then the command's ES
// module graph (~180 modules with @matrixai/quic) that oclif only imports after its config,
// the plugins and the init hook. Node 20's ES module loader reads every file asynchronously,
// so starting the command's import here lets those reads and oclif's own file I/O overlap
// instead of taking turns. It only warms the module cache: oclif still loads and runs the
// command as usual, and a failure is left for that import to report (a failed ES module
// import fails the same way again). Only for the commands whose start-up is timed, and not
// for help.
const PREFETCH = { call: 'call.js', record: 'record.js', 'echo-test': 'echo-test.js' };
const [commandId, ...rest] = process.argv.slice(2);
if (Object.hasOwn(PREFETCH, commandId) && !rest.some((a) => a === '--help' || a === '-h')) {
  import(`../dist/src/commands/${PREFETCH[commandId]}`).catch(() => undefined);
}

// oclif's subpath modules rather than its index, which also loads semver (for an engines
// check), ux and help up front (see src/base-command.ts).
const { Config } = await import('@oclif/core/config');
const { execute } = await import('@oclif/core/execute');
const { loadBuiltinPlugins } = await import('../dist/src/builtin-plugins.js');

const config = await Config.load(import.meta.url);
await loadBuiltinPlugins(config);
await execute({ dir: import.meta.url, loadOptions: config });

// A sound server that died under an open stream leaves naudiodon unable to let the process
// exit; end it once the output is written (see core/audio/stdout-guard.ts).
const { nativeAudioStuck } = await import('../dist/core/audio/devices.js');
if (nativeAudioStuck()) {
  const { exitIfAudioStuck } = await import('../dist/core/audio/stdout-guard.js');
  exitIfAudioStuck(true, typeof process.exitCode === 'number' ? process.exitCode : 0);
}

#!/usr/bin/env node
// The wzp CLI. Built-in plugins (dist/src/plugins/*) are loaded as oclif core plugins before
// the command runs, so their hooks fire through the same path as third-party plugins.

// Each open audio stream holds one libuv thread for good (naudiodon); leave room for the
// rest. Set before anything uses the thread pool, hence the dynamic imports below.
process.env.UV_THREADPOOL_SIZE ??= '8';

const { Config, execute } = await import('@oclif/core');
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

/**
 * The wzp CLI's start: oclif's config, the built-in plugins, the command. bin/run.js loads
 * the bundle built from this module (dist/cli/src/cli.cjs; scripts/build.mjs says why).
 */
import { Config } from '@oclif/core/config';
import { execute } from '@oclif/core/execute';
import { nativeAudioStuck } from '../core/audio/devices.js';
import { loadBuiltinPlugins } from './builtin-plugins.js';
import { discardSpeculation, speculate } from './services/relay-connect.js';

export async function run(argv: string[]): Promise<void> {
  const [commandId, ...rest] = argv;
  const config = await Config.load(import.meta.url);
  // Connect to the relay while the plugins and the command load (services/relay-connect.ts).
  speculate(commandId, rest, commandId === undefined ? undefined : config.findCommand(commandId)?.flags, config.configDir);
  try {
    await loadBuiltinPlugins(config);
    await execute({ dir: import.meta.url, loadOptions: config });
  } finally {
    await discardSpeculation();
  }

  // A sound server that died under an open stream leaves naudiodon unable to let the process
  // exit; end it once the output is written (see core/audio/stdout-guard.ts).
  if (nativeAudioStuck()) {
    const { exitIfAudioStuck } = await import('../core/audio/stdout-guard.js');
    exitIfAudioStuck(true, typeof process.exitCode === 'number' ? process.exitCode : 0);
  }
}

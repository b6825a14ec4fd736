/**
 * The wzp CLI's start: oclif's config, the built-in plugins, the command. bin/run.js imports
 * the bundled copy of this module (dist/cli/src/cli.js; scripts/build.mjs says why).
 */
import { Config } from '@oclif/core/config';
import { execute } from '@oclif/core/execute';
import { nativeAudioStuck } from '../core/audio/devices.js';
import { loadBuiltinPlugins } from './builtin-plugins.js';
import { discardSpeculation, speculate } from './services/relay-connect.js';

/**
 * Start-up time is part of `wzp call`'s set-up time (target: process start to first frame
 * played <= 300 ms). oclif only imports the command after its config, the plugins and the
 * init hook; starting the command's import first lets Node read those files while oclif
 * does its own file I/O. It only warms the module cache: oclif still loads and runs the
 * command, and a failure is left for that import to report (a failed ES module import fails
 * the same way again). Only for the commands whose start-up is timed, and not for help.
 */
const PREFETCH: Record<string, string> = { call: 'call.js', record: 'record.js', 'echo-test': 'echo-test.js' };

export async function run(argv: string[]): Promise<void> {
  const [commandId, ...rest] = argv;
  if (commandId !== undefined && Object.hasOwn(PREFETCH, commandId) && !rest.some((a) => a === '--help' || a === '-h')) {
    // A URL built at run time: the bundler must not try to resolve it.
    const url = new URL(`./commands/${PREFETCH[commandId]}`, import.meta.url);
    import(url.href).catch(() => undefined);
  }
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

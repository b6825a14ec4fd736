/**
 * The wzp CLI's start: oclif's config, the built-in plugins, the command. bin/run.js loads
 * the bundle built from this module (dist/cli/src/cli.cjs; scripts/build.mjs says why).
 *
 * Errors that no wzp command caught (an unknown command, a `wzp plugins ...` failure, a flag
 * error in a command of oclif's own plugins) are written here the way WzpCommand writes its
 * own: with `--json`, one error document on stdout; otherwise `Error: ...` and `Try this: ...`
 * lines on stderr, never wrapped, never with a stack trace unless WZP_DEBUG is set; and the
 * exit code of docs/exit-codes.md.
 */
import { Config } from '@oclif/core/config';
import { flush } from '@oclif/core/flush';
import { run as runOclif } from '@oclif/core/run';
import { nativeAudioStuck } from '../core/audio/devices.js';
import { ExitCode } from '../core/errors.js';
import { describeError, jsonRequested, writeError } from './base-command.js';
import { loadBuiltinPlugins } from './builtin-plugins.js';
import { unsettledHooks } from './extensions.js';
import { discardSpeculation, speculate } from './services/relay-connect.js';

export async function run(argv: string[]): Promise<void> {
  const [commandId, ...rest] = argv;
  try {
    const config = await Config.load(import.meta.url);
    // Connect to the relay while the plugins and the command load (services/relay-connect.ts).
    speculate(commandId, rest, commandId === undefined ? undefined : config.findCommand(commandId)?.flags, config.configDir);
    try {
      await loadBuiltinPlugins(config);
      await runOclif(argv, config);
    } finally {
      await discardSpeculation();
    }
  } catch (err) {
    reportUncaught(err, argv);
  }
  try {
    await flush();
  } catch {
    // stdout is gone (a closed pipe): nothing more can be written anyway.
  }

  // A plugin hook that timed out may still hold the event loop (a timer, a socket): the
  // command is done and its output written, so end the process (src/extensions.ts).
  if (unsettledHooks() > 0) {
    const code = typeof process.exitCode === 'number' ? process.exitCode : 0;
    process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
    return;
  }

  // A sound server that died under an open stream leaves naudiodon unable to let the process
  // exit; end it once the output is written (see core/audio/stdout-guard.ts).
  if (nativeAudioStuck()) {
    const { exitIfAudioStuck } = await import('../core/audio/stdout-guard.js');
    exitIfAudioStuck(true, typeof process.exitCode === 'number' ? process.exitCode : 0);
  }
}

/** An error that reached the top: exit codes and output as a WzpCommand would give them. */
function reportUncaught(err: unknown, argv: string[]): void {
  const e = err as { code?: unknown; oclif?: { exit?: unknown } } | undefined;
  // this.exit(n) in oclif's commands: a deliberate exit, nothing to print.
  if (e?.code === 'EEXIT' && typeof e.oclif?.exit === 'number') {
    process.exitCode = e.oclif.exit;
    return;
  }
  const doc = describeError(err);
  process.exitCode = doc.status === ExitCode.OK ? ExitCode.INTERNAL : doc.status;
  writeError(err, doc, { json: jsonRequested(argv), warnings: [] });
}

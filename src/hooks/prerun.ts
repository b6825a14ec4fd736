/**
 * prerun hook: commands that are not wzp's own (`wzp plugins ...`, from @oclif/plugin-plugins)
 * speak wzp's JSON envelope too. oclif prints such a command's `--json` result as it is (a bare
 * array for `wzp plugins --json`) and its errors as `{"error": {...}}`; here the command class
 * gets WzpCommand's documents instead: `{"status":0,"result":...,"warnings":[...]}` and
 * `{"status":N,"name":...,"message":...,"suggestions":[...],"warnings":[...]}`, with the exit
 * code of docs/exit-codes.md. Without `--json` nothing changes, except that an error reaches
 * src/cli.ts, which writes it as wzp writes its own.
 *
 * Installing, linking, updating or removing a plugin also forgets the plugin hooks that timed
 * out before (src/extensions.ts): the next command tries them again.
 */
import type { Hook } from '@oclif/core';
import { WzpCommand, describeError } from '../base-command.js';
import { forgetHookTimeouts } from '../extensions.js';

const ADAPTED = Symbol.for('wzp.jsonEnvelope');

interface JsonCapable {
  jsonEnabled(): boolean;
  logJson(json: unknown): void;
  toSuccessJson(result: unknown): unknown;
  toErrorJson(err: unknown): unknown;
  warn(input: string | Error): string | Error;
  catch(err: Error & { exitCode?: number }): Promise<unknown>;
}

type Adapted = JsonCapable & { [WARNINGS]?: string[] };
const WARNINGS = Symbol('wzp.warnings');

/** `wzp plugins` commands that change what is installed: hook timeouts remembered before are forgotten. */
const CHANGES_PLUGINS = new Set(['plugins:install', 'plugins:link', 'plugins:uninstall', 'plugins:update', 'plugins:reset']);

const hook: Hook<'prerun'> = async function ({ Command, config }) {
  if (Command.prototype instanceof WzpCommand) return;
  adoptJsonEnvelope(Command as unknown as { prototype: JsonCapable });
  if (CHANGES_PLUGINS.has(Command.id)) forgetHookTimeouts(config.cacheDir);
};

export default hook;

/** Give a foreign oclif command class wzp's JSON documents (once per class). */
export function adoptJsonEnvelope(Command: { prototype: JsonCapable }): void {
  const proto = Command.prototype as JsonCapable & { [ADAPTED]?: boolean };
  if (Object.prototype.hasOwnProperty.call(proto, ADAPTED)) return;
  const originalWarn = proto.warn;
  const originalCatch = proto.catch;
  Object.defineProperties(proto, {
    [ADAPTED]: { value: true },
    logJson: {
      value(this: Adapted, json: unknown): void {
        process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      },
    },
    toSuccessJson: {
      value(this: Adapted, result: unknown): unknown {
        return { status: 0, result, warnings: this[WARNINGS] ?? [] };
      },
    },
    toErrorJson: {
      value(this: Adapted, err: unknown): unknown {
        return { ...describeError(err), warnings: this[WARNINGS] ?? [] };
      },
    },
    warn: {
      value(this: Adapted, input: string | Error): string | Error {
        if (!this.jsonEnabled()) return originalWarn.call(this, input);
        (this[WARNINGS] ??= []).push(typeof input === 'string' ? input : input.message);
        return input;
      },
    },
    catch: {
      async value(this: Adapted, err: Error & { exitCode?: number }): Promise<unknown> {
        // this.exit(n) is not a failure: src/cli.ts ends the process with that code.
        if (!this.jsonEnabled() || (err as { code?: unknown }).code === 'EEXIT') return originalCatch.call(this, err);
        process.exitCode = describeError(err).status;
        this.logJson(this.toErrorJson(err));
        return undefined;
      },
    },
  });
}

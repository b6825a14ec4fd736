/**
 * WzpCommand: the base of every wzp command. It owns all output:
 * - with `--json` (every command has it): exactly one JSON document on stdout,
 *   `{"status":0,"result":{...},"warnings":[...]}` or, on failure,
 *   `{"status":N,"name":"...","message":"...","suggestions":[...]}`;
 * - otherwise human text from the command's `renderHuman(result)`, warnings on stderr.
 * Errors map to the exit codes in docs/exit-codes.md; only this class decides them.
 * It also gives commands an AbortSignal that fires on SIGINT/SIGTERM.
 */
// oclif's subpath modules, not its index: the index also loads semver (for an engines check),
// ux and help before any command runs (measured: require('@oclif/core') 77 ms / 103 ms CPU,
// the subpaths a command needs 55 ms / 72 ms CPU).
import { Command } from '@oclif/core/command';
import * as Flags from '@oclif/core/flags';
import type * as Interfaces from '@oclif/core/interfaces';
import { hostname, release } from 'node:os';
import chalk from 'chalk';
import { CheckFailedError, ExitCode, isWzpError } from '../core/errors.js';
import type { Registries } from '../core/registry.js';
import { loadExtensions, pluginWarnings, registries } from './extensions.js';
import type { ReportMeta } from './services/report-meta.js';

export type { ReportMeta };

export type WzpFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof WzpCommand)['baseFlags'] & T['flags']>;

export interface ErrorDocument {
  status: number;
  name: string;
  message: string;
  suggestions: string[];
  /** Warnings recorded before the failure (kept: they often explain it). */
  warnings?: string[];
  /** A check that failed (CheckFailedError): what was measured. */
  result?: object;
}

export interface SuccessDocument<T> {
  status: 0;
  result: T;
  warnings: string[];
}

if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') chalk.level = 0;

/** `--media-path` for the commands that carry media through a relay (docs/transport.md). */
export const mediaPathFlag = Flags.option({
  summary: 'auto: media on the UDP media path when the relay offers it; quic: always inside QUIC (hides media headers from the network, costs the relay more).',
  options: ['auto', 'quic'] as const,
  default: 'auto' as const,
})();

/**
 * Who may join a room, for the commands that join one (`call`, `record`): see
 * src/services/room-admission.ts and docs/e2e-encryption.md.
 */
export const roomAdmissionFlags = {
  'room-secret': Flags.string({
    summary:
      "A secret the room's members share, mixed into the room id and the admission key: without it a relay can guess a guessable room name from its id. Also env WZP_ROOM_SECRET (preferred: command lines are visible to other users).",
    exclusive: ['room-secret-file'],
  }),
  'room-secret-file': Flags.string({
    summary: 'Read the room secret from the first line of this file (trimmed).',
    exclusive: ['room-secret'],
  }),
  allow: Flags.string({
    summary: 'Admit only this identity (its full fingerprint; repeatable), or @FILE with one fingerprint per line (# comments). Your own identity is always admitted.',
    multiple: true,
    // One value per --allow: `--allow FP RELAY` must not take RELAY as a second fingerprint.
    multipleNonGreedy: true,
  }),
};

/** Flags whose values never go into a report (reportMeta). */
const SECRET_FLAGS = new Set(['room-secret', 'token']);

/** Warnings a JSON document lists; the rest are counted in a last entry. */
const MAX_WARNINGS = 200;

export abstract class WzpCommand<T extends object> extends Command {
  static override enableJsonFlag = true;
  static override baseFlags = {
    'config-dir': Flags.directory({
      helpGroup: 'GLOBAL',
      summary: 'Directory for identity, pins and settings (default: the user config dir; env WZP_CONFIG_DIR).',
    }),
  };

  private readonly collectedWarnings: string[] = [];
  /** Warnings beyond MAX_WARNINGS: counted, not kept (a hostile peer must not grow the report without bound). */
  private warningsNotKept = 0;
  private readonly abortController = new AbortController();
  private readonly onSignal = (sig: NodeJS.Signals) => {
    if (this.interceptSignal(sig)) return;
    if (this.abortController.signal.aborted) {
      // A second Ctrl-C means "now": skip the graceful path.
      process.exit(ExitCode.INTERRUPTED);
    }
    this.abortController.abort(new Error(`received ${sig}`));
  };

  /**
   * A command that gives SIGINT or SIGTERM a meaning of its own (the relay: the first SIGTERM
   * drains) handles it here and returns true; otherwise the signal aborts abortSignal.
   */
  protected interceptSignal(_sig: NodeJS.Signals): boolean {
    return false;
  }

  /** Turn a result into the human-readable text printed without --json. */
  protected abstract renderHuman(result: T): string;

  public abstract override run(): Promise<T>;

  /** Aborts on SIGINT/SIGTERM; long-running commands pass it down to core. */
  protected get abortSignal(): AbortSignal {
    return this.abortController.signal;
  }

  protected get registries(): Registries {
    return registries();
  }

  /** Directory for identity, pins and settings. */
  protected configDir(flags: { 'config-dir'?: string }): string {
    return flags['config-dir'] ?? this.config.configDir;
  }

  public override async init(): Promise<void> {
    await super.init();
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    // The plugins' codecs, FEC schemes and NAT strategies (src/extensions.ts). Only wzp's own
    // commands fire those hooks: help and `wzp plugins ...` never wait for a plugin.
    await loadExtensions(this.config);
    for (const w of pluginWarnings()) this.warn(w);
  }

  public override async finally(err: Error | undefined): Promise<void> {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    await super.finally(err);
  }

  /** The facts an attachable report carries (see docs/json-reports.md). */
  protected reportMeta(schemaVersion: number, flags: object, args: object = {}): ReportMeta {
    return {
      schemaVersion,
      wzpVersion: this.config.version,
      generatedAt: new Date().toISOString(),
      host: { hostname: hostname(), platform: process.platform, osRelease: release(), arch: process.arch, node: process.version },
      flags: Object.fromEntries(
        Object.entries({ ...args, ...flags }).map(([name, value]) => [name, SECRET_FLAGS.has(name) && value !== undefined ? '(redacted)' : value]),
      ),
    };
  }

  /** Record a warning: in the JSON document's `warnings`, or on stderr for humans. */
  public override warn(input: string | Error): string | Error {
    const text = typeof input === 'string' ? input : input.message;
    if (this.collectedWarnings.length < MAX_WARNINGS) this.collectedWarnings.push(text);
    else this.warningsNotKept++;
    if (!this.jsonEnabled()) process.stderr.write(`${chalk.yellow('Warning:')} ${text}\n`);
    return input;
  }

  /** Progress for humans: stderr only, never with --json, so stdout stays parseable. */
  protected progress(text: string): void {
    if (!this.jsonEnabled()) process.stderr.write(`${text}\n`);
  }

  /** Whether live, rewritten status lines make sense (a TTY, not --json). */
  protected get interactive(): boolean {
    return !this.jsonEnabled() && process.stderr.isTTY === true;
  }

  /**
   * The JSON document of a result. A result marked `interrupted: true` (Ctrl-C stopped the
   * measuring; what it holds is what was measured so far) has status 130, the exit code too.
   */
  protected override toSuccessJson(result: T): SuccessDocument<T> | (Omit<SuccessDocument<T>, 'status'> & { status: 130 }) {
    if (isInterrupted(result)) {
      process.exitCode = ExitCode.INTERRUPTED;
      return { status: ExitCode.INTERRUPTED, result, warnings: this.warningsKept() };
    }
    return { status: 0, result, warnings: this.warningsKept() };
  }

  private warningsKept(): string[] {
    const more = this.warningsNotKept ? [`... and ${this.warningsNotKept} more warnings`] : [];
    return [...this.collectedWarnings, ...more];
  }

  protected override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  }

  protected override toErrorJson(err: unknown): ErrorDocument {
    return describeError(err);
  }

  public override async catch(err: Error & { exitCode?: number }): Promise<void> {
    const doc = describeError(err);
    process.exitCode = doc.status;
    // What a failed check measured comes first, as on success.
    if (doc.result && !this.jsonEnabled()) this.printHuman(doc.result as T);
    writeError(err, doc, { json: this.jsonEnabled(), warnings: this.warningsKept() });
  }

  /** Print the human rendering after run() unless --json; an interrupted result exits 130. */
  protected override async _run<R>(): Promise<R> {
    const result = (await super._run()) as R;
    if (result && !this.jsonEnabled()) {
      this.printHuman(result as unknown as T);
      if (isInterrupted(result)) process.exitCode = ExitCode.INTERRUPTED;
    }
    return result;
  }

  private printHuman(result: T): void {
    const text = this.renderHuman(result);
    if (text) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

/**
 * Write a failure: with `json`, its error document (with the warnings) on stdout; otherwise
 * `Error: ...` and one `Try this: ...` line per suggestion on stderr. Written directly rather
 * than through oclif's error renderer, which wraps lines at 80 columns: a wrapped fingerprint
 * or suggested command cannot be copied and pasted. The stack only with WZP_DEBUG set.
 */
export function writeError(err: unknown, doc: ErrorDocument, options: { json: boolean; warnings: string[] }): void {
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ ...doc, warnings: options.warnings }, null, 2)}\n`);
    return;
  }
  const stack = err instanceof Error ? err.stack : undefined;
  const detail = process.env.WZP_DEBUG && stack ? `\n${stack}` : '';
  const lines = [`${chalk.red('Error:')} ${doc.message}${detail}`, ...doc.suggestions.map((s) => `${chalk.dim('Try this:')} ${s}`)];
  process.stderr.write(`${lines.join('\n')}\n`);
}

/** Whether a command line asks for JSON output (`--json` before any `--`, or WZP_CONTENT_TYPE=json, as oclif reads it). */
export function jsonRequested(argv: readonly string[]): boolean {
  if (process.env.WZP_CONTENT_TYPE?.toLowerCase() === 'json') return true;
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/**
 * oclif rewrites the message of an error thrown by a flag's own parser to "Parsing --flag \n\t<our
 * message>\nSee more help with --help": ours already names the flag and its value, so it stands
 * alone.
 */
function flagParseMessage(message: string): string {
  const m = /^Parsing --\S+ \n\t([\s\S]*?)\nSee more help with --help$/.exec(message);
  return m ? m[1] : message;
}

/** A result that Ctrl-C cut short: it holds what was measured so far (docs/exit-codes.md). */
function isInterrupted(result: unknown): boolean {
  return typeof result === 'object' && result !== null && (result as { interrupted?: unknown }).interrupted === true;
}

/** Map any thrown value to the error document and exit status (docs/exit-codes.md). */
export function describeError(err: unknown): ErrorDocument {
  if (isWzpError(err)) {
    // (oclif rewrites the message of an error a flag's own parser threw: see flagParseMessage.)
    const doc: ErrorDocument = { status: err.code, name: err.name, message: flagParseMessage(err.message), suggestions: [...err.suggestions] };
    if (err instanceof CheckFailedError) doc.result = err.result;
    return doc;
  }
  const e = err as Error & { oclif?: { exit?: number }; suggestions?: string[] };
  if (e && typeof e === 'object' && e.oclif && typeof e.oclif.exit === 'number') {
    // oclif's own errors: flag/argument parsing and friends.
    const status = e.oclif.exit;
    return {
      status,
      name: status === ExitCode.USAGE ? 'UsageError' : e.name,
      message: flagParseMessage(e.message),
      suggestions: e.suggestions ?? [],
    };
  }
  return {
    status: ExitCode.INTERNAL,
    name: 'InternalError',
    message: `internal error: ${e?.message ?? String(err)}`,
    suggestions: ['this is a bug in wzp: please report it with the command line and WZP_DEBUG=1 output'],
  };
}

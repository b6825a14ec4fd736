/**
 * The process-wide extension registries, filled from every plugin's `wzp:*` hooks (built-in,
 * user-installed and linked plugins alike), and the warnings that collection produced (a
 * broken plugin is reported, never fatal). Commands read both through the base command.
 *
 * Only wzp's own commands collect (WzpCommand.init): `wzp plugins ...` and help never run a
 * plugin's hooks, so a plugin that misbehaves can always be looked at and removed.
 *
 * wzp fires its hooks itself instead of through oclif's `config.runHook`:
 * - oclif's hook timeout is an unref'd timer, so a hook that never settles leaves nothing to
 *   keep the process alive: Node exits 13 ("unsettled top-level await") with no output at all.
 *   Here the timeout holds the process until it fires, and a hook that timed out is reported.
 * - A hook that timed out is remembered in the cache directory, keyed by the plugin's name,
 *   version, root and the modification times of its package.json and hook file, and skipped
 *   (with a warning) on later runs until the plugin changes or `wzp plugins install/link/
 *   uninstall/update/reset` runs: it costs its timeout once, not on every command.
 * - oclif looks for TypeScript sources to auto-transpile before loading a linked plugin's hook,
 *   and warns on every command that a linked ES module plugin "cannot be auto-transpiled".
 *   wzp plugins are JavaScript (docs/plugins.md): the hook file is loaded as it is.
 * - The three hooks of all plugins run side by side: a slow plugin costs one timeout, not one
 *   per hook.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../core/errors.js';
import { HOOK_CODECS, HOOK_FEC, HOOK_NAT_STRATEGIES, createRegistries, type Registries } from '../core/registry.js';

/** A plugin hook taking longer than this is reported and skipped (and remembered: see above). */
export const HOOK_TIMEOUT_MS = 5_000;

/** The file, in the CLI's cache directory, that remembers hooks that timed out. */
export const HOOK_FAILURES_FILE = 'plugin-hook-timeouts.json';

/** The parts of an oclif plugin this module reads (oclif's `Plugin`). */
export interface HookPlugin {
  name: string;
  version: string;
  root: string;
  type: string;
  moduleType?: string;
  hooks: Record<string, { target: string; identifier: string }[]>;
}

/** The parts of oclif's `Config` this module reads. */
export interface HookConfig {
  plugins: Map<string, HookPlugin>;
  cacheDir: string;
}

export interface CollectOptions {
  timeoutMs?: number;
}

const state: { registries: Registries; warnings: string[]; loaded?: Promise<void>; pendingHooks: number } = {
  registries: createRegistries(),
  warnings: [],
  pendingHooks: 0,
};

export function registries(): Registries {
  return state.registries;
}

export function pluginWarnings(): readonly string[] {
  return state.warnings;
}

/**
 * Hooks that timed out and have not settled yet. A hook may hold the event loop (a timer, a
 * socket) long after it timed out: the CLI ends the process once its output is written.
 */
export function unsettledHooks(): number {
  return state.pendingHooks;
}

/** Fire the `wzp:*` hooks once per process and fill the registries (later calls wait for the first). */
export function loadExtensions(config: HookConfig, options: CollectOptions = {}): Promise<void> {
  state.loaded ??= collectExtensions(config, options).then(({ registries, warnings }) => {
    state.registries = registries;
    state.warnings = warnings;
  });
  return state.loaded;
}

/** Forget every hook that timed out (after `wzp plugins install/link/uninstall/update/reset`). */
export function forgetHookTimeouts(cacheDir: string): void {
  rmSync(join(cacheDir, HOOK_FAILURES_FILE), { force: true });
}

interface HookOutcome {
  plugin: HookPlugin;
  event: string;
  items: unknown[];
}

const EVENTS = [HOOK_CODECS, HOOK_FEC, HOOK_NAT_STRATEGIES] as const;

/** Fire every plugin's `wzp:*` hooks and register what they return. */
export async function collectExtensions(config: HookConfig, options: CollectOptions = {}): Promise<{ registries: Registries; warnings: string[] }> {
  const timeoutMs = options.timeoutMs ?? HOOK_TIMEOUT_MS;
  const registries = createRegistries();
  const warnings: string[] = [];
  const memory = new TimeoutMemory(join(config.cacheDir, HOOK_FAILURES_FILE));
  const plugins = [...config.plugins.values()];

  const runs: Promise<HookOutcome | undefined>[] = [];
  for (const event of EVENTS) {
    for (const plugin of plugins) {
      for (const hook of plugin.hooks[event] ?? []) {
        runs.push(runOne(plugin, event, hook, timeoutMs, memory, warnings));
      }
    }
  }
  const outcomes = (await Promise.all(runs)).filter((o): o is HookOutcome => o !== undefined);
  memory.save();

  // Registration order decides who keeps a contested name: wzp's own plugins first, then
  // user-installed, then linked ones; within a kind, the order oclif loaded them in.
  const order = new Map(plugins.map((p, i) => [p, i]));
  const rank = (o: HookOutcome) => typeRank(o.plugin.type) * plugins.length + (order.get(o.plugin) ?? 0);
  for (const event of EVENTS) {
    const registry = event === HOOK_CODECS ? registries.codecs : event === HOOK_FEC ? registries.fec : registries.natStrategies;
    for (const { plugin, items } of outcomes.filter((o) => o.event === event).sort((a, b) => rank(a) - rank(b))) {
      for (const item of items) {
        try {
          registry.register(item as never, plugin.name);
        } catch (err) {
          warnings.push(errorMessage(err));
        }
      }
    }
  }
  return { registries, warnings };
}

async function runOne(
  plugin: HookPlugin,
  event: string,
  hook: { target: string; identifier: string },
  timeoutMs: number,
  memory: TimeoutMemory,
  warnings: string[],
): Promise<HookOutcome | undefined> {
  let file: string | undefined;
  try {
    file = resolveHookFile(plugin.root, hook.target);
    const stamp = pluginStamp(plugin, file);
    const remembered = memory.get(plugin.name, event);
    if (remembered && sameStamp(remembered, stamp)) {
      warnings.push(
        `plugin ${plugin.name} is skipped for its ${event} hook: it did not answer within ${remembered.timeoutMs / 1000} s on ${remembered.at}; ` +
          `it is tried again when the plugin changes (a new version, its files edited) or after any wzp plugins install/link/uninstall`,
      );
      return undefined;
    }
    const result = await withTimeout(callHook(plugin, file, hook.identifier), timeoutMs);
    if (result.timedOut) {
      memory.set(plugin.name, event, { ...stamp, timeoutMs, at: new Date().toISOString() });
      warnings.push(
        `plugin ${plugin.name} did not answer its ${event} hook within ${timeoutMs / 1000} s: it is skipped, ` +
          `and skipped on later runs until the plugin changes (wzp plugins uninstall ${plugin.name} removes it)`,
      );
      return undefined;
    }
    memory.delete(plugin.name, event);
    const value = result.value;
    const items = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
    return { plugin, event, items };
  } catch (err) {
    warnings.push(`plugin ${plugin.name} failed in its ${event} hook: ${errorMessage(err)}`);
    return undefined;
  }
}

/** The hook's module file: the target as given, or with .js/.mjs/.cjs, or a directory's index. */
function resolveHookFile(root: string, target: string): string {
  const base = resolve(root, target);
  const candidates = [base, ...['.js', '.mjs', '.cjs'].map((ext) => base + ext), ...['.js', '.mjs', '.cjs'].map((ext) => join(base, `index${ext}`))];
  for (const candidate of candidates) {
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // next candidate
    }
  }
  throw new Error(`its hook file ${target} does not exist in ${root}`);
}

async function callHook(plugin: HookPlugin, file: string, identifier: string): Promise<unknown> {
  const ext = extname(file);
  const esm = ext === '.mjs' || (ext !== '.cjs' && plugin.moduleType === 'module');
  const mod = (esm ? await import(pathToFileURL(file).href) : createRequire(import.meta.url)(file)) as Record<string, unknown> | ((...a: unknown[]) => unknown);
  const fn = findHookFunction(mod, identifier);
  if (!fn) throw new Error(`${file} exports no hook function${identifier === 'default' ? '' : ` named ${identifier}`}`);
  // The shape oclif gives a hook: `this` and the options' `context`; wzp hooks need neither.
  const context = {
    debug: () => undefined,
    log: (...args: unknown[]) => process.stderr.write(`${args.map(String).join(' ')}\n`),
    warn: (message: string) => process.stderr.write(`Warning: ${plugin.name}: ${message}\n`),
    error: (message: string) => {
      throw new Error(message);
    },
    exit: (code = 0) => {
      throw new Error(`the hook tried to exit the process (code ${code})`);
    },
  };
  return await fn.call(context, { context });
}

function findHookFunction(mod: unknown, identifier: string): ((...args: unknown[]) => unknown) | undefined {
  if (typeof mod === 'function') return mod as (...args: unknown[]) => unknown;
  if (typeof mod !== 'object' || mod === null) return undefined;
  const m = mod as Record<string, unknown>;
  const named = m[identifier];
  if (typeof named === 'function') return named as (...args: unknown[]) => unknown;
  if (identifier !== 'default') return undefined;
  // A CommonJS module imported as ESM, or a bundled ESM module required from CommonJS.
  const inner = m.default;
  if (typeof inner === 'object' && inner !== null && typeof (inner as Record<string, unknown>).default === 'function') {
    return (inner as Record<string, unknown>).default as (...args: unknown[]) => unknown;
  }
  return Object.values(m).find((v): v is (...args: unknown[]) => unknown => typeof v === 'function');
}

/**
 * Waits for the hook at most `ms`. The timer is a normal (ref'd) one: a hook that never
 * settles and holds nothing would otherwise let Node exit 13 in the middle of the command.
 */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<{ timedOut: false; value: T } | { timedOut: true }> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then((value) => ({ timedOut: false as const, value }));
  const timeout = new Promise<{ timedOut: true }>((res) => {
    timer = setTimeout(() => res({ timedOut: true }), ms);
  });
  try {
    const outcome = await Promise.race([settled, timeout]);
    if (outcome.timedOut) {
      state.pendingHooks++;
      // Whatever it does later is ignored; count it settled so the CLI need not force the exit.
      promise.then(
        () => state.pendingHooks--,
        () => state.pendingHooks--,
      );
    }
    return outcome;
  } finally {
    clearTimeout(timer);
  }
}

interface Stamp {
  version: string;
  root: string;
  /** Modification times (ms) of the plugin's package.json and of the hook file. */
  mtimes: number[];
}

interface Remembered extends Stamp {
  timeoutMs: number;
  at: string;
}

function pluginStamp(plugin: HookPlugin, hookFile: string): Stamp {
  const mtime = (file: string) => {
    try {
      return statSync(file).mtimeMs;
    } catch {
      return 0;
    }
  };
  return { version: plugin.version, root: plugin.root, mtimes: [mtime(join(plugin.root, 'package.json')), mtime(hookFile)] };
}

function sameStamp(a: Stamp, b: Stamp): boolean {
  return a.version === b.version && a.root === b.root && a.mtimes.length === b.mtimes.length && a.mtimes.every((m, i) => m === b.mtimes[i]);
}

/**
 * `<cacheDir>/plugin-hook-timeouts.json`: `{"version": 1, "hooks": {"<plugin> <event>": {...}}}`.
 * A cache: unreadable or corrupt means empty, and a failed write only costs a timeout later.
 */
class TimeoutMemory {
  private entries: Record<string, Remembered> = {};
  private changed = false;

  constructor(private readonly file: string) {
    try {
      if (!existsSync(file)) return;
      const doc = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown; hooks?: unknown };
      if (doc.version === 1 && typeof doc.hooks === 'object' && doc.hooks !== null) this.entries = doc.hooks as Record<string, Remembered>;
    } catch {
      this.entries = {};
    }
  }

  get(plugin: string, event: string): Remembered | undefined {
    const entry = this.entries[`${plugin} ${event}`];
    return entry && Array.isArray(entry.mtimes) && typeof entry.timeoutMs === 'number' ? entry : undefined;
  }

  set(plugin: string, event: string, entry: Remembered): void {
    this.entries[`${plugin} ${event}`] = entry;
    this.changed = true;
  }

  delete(plugin: string, event: string): void {
    if (this.entries[`${plugin} ${event}`] === undefined) return;
    delete this.entries[`${plugin} ${event}`];
    this.changed = true;
  }

  save(): void {
    if (!this.changed) return;
    try {
      mkdirSync(join(this.file, '..'), { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ version: 1, hooks: this.entries }, null, 2)}\n`);
      renameSync(tmp, this.file);
    } catch {
      // A cache that cannot be written costs the timeout again next time.
    }
  }
}

const TYPE_ORDER = ['core', 'user', 'link'];

function typeRank(type: string): number {
  const i = TYPE_ORDER.indexOf(type);
  return i === -1 ? TYPE_ORDER.length : i;
}

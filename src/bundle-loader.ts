/**
 * Loads the CLI bundle (dist/cli/src/cli.cjs, scripts/build.mjs) as a CommonJS module, compiled
 * from a V8 code cache when there is a valid one.
 *
 * Why: start-up is part of `wzp call`'s set-up time, and compiling the bundle's source is a
 * good share of it. Node 20 has no compile cache of its own (module.enableCompileCache() came
 * in Node 22), but vm.Script takes V8 code cache data: measured here, loading the call path
 * took ~75 ms compiled from source and ~50 ms from the cache, and the cache also holds the
 * functions compiled while the command ran.
 *
 * The build ships one next to the bundle (`cli.cjs.<build id>-<node version>-<arch>.v8`, made by the
 * build's Node: shippedCodeCache()), used when the user's cache directory (as oclif computes
 * it: WZP_CACHE_DIR, else XDG_CACHE_HOME/wzp, else ~/.cache/wzp) has none; there, one file per
 * bundle build, Node version and architecture is written when the process exits after a run
 * that had neither (or had one V8 refused: a different V8 or different flags).
 *
 * Either is the whole bundle compiled eagerly (eagerCodeCache()), not what one run happened to
 * compile: with a cache of the functions `wzp identity` ran, a call compiled the rest of its
 * path function by function during its first second, 15-40 ms of stalls right after the
 * answer (answer -> first audio up to 111 ms in the NAT lab; 71 ms with the eager cache:
 * docs/direct-calls.md). The eager cache is ~5 MB against ~2 MB and loads in ~40 ms more, at
 * start-up, before any call.
 * V8 checks its own version, flags and the source length; the file name adds the bundle's
 * content hash (which V8 does not check). Any failure to read or write the cache only costs
 * the time it would have saved. WZP_CODE_CACHE=0 turns it off.
 *
 * import() does not work in a script compiled from a code cache on Node 20, so the build
 * rewrites the bundle's import() calls to a function this module passes in (scripts/build.mjs).
 */
import { mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';
import v8 from 'node:v8';

/** What happened to the code cache, for tests and `WZP_DEBUG`-style diagnostics. */
export type CodeCacheStatus =
  | 'used' // compiled from the cache
  | 'written' // no usable cache: compiled from source, the cache is written at exit
  | 'rejected' // V8 refused the cache (other V8 or flags): compiled from source, rewritten at exit
  | 'off' // WZP_CODE_CACHE=0, or not a bundle built by scripts/build.mjs
  | 'loaded'; // the bundle was already loaded in this process

export interface LoadedBundle<T> {
  exports: T;
  codeCache: CodeCacheStatus;
  /** The cache file (when there is one to read or write). */
  cacheFile?: string;
}

const ID_PATTERN = /^\/\* wzp-bundle-id: ([0-9a-f]{64}) \*\//;
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname, __wzpImport) { ';
const WRAPPER_TAIL = '\n});';

/** oclif's cache directory for the `wzp` CLI, computed the way oclif does on Linux and macOS. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WZP_CACHE_DIR) return env.WZP_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || (process.platform === 'darwin' ? join(homedir(), 'Library', 'Caches') : join(homedir(), '.cache'));
  return join(base, 'wzp');
}

type ModuleInternals = typeof Module & {
  _cache: Record<string, Module>;
  new (id: string, parent?: Module): Module & { loaded: boolean; filename: string; exports: unknown };
};

export function loadBundle<T>(file: string, opts: { cacheDir?: string; env?: NodeJS.ProcessEnv } = {}): LoadedBundle<T> {
  const env = opts.env ?? process.env;
  const filename = realpathSync(file);
  const M = Module as ModuleInternals;
  const already = M._cache[filename];
  if (already) return { exports: already.exports as T, codeCache: 'loaded' };

  const source = readFileSync(filename, 'utf8');
  const id = ID_PATTERN.exec(source)?.[1];
  if (env.WZP_CODE_CACHE === '0' || id === undefined) {
    return { exports: createRequire(filename)(filename) as T, codeCache: 'off' };
  }

  const cacheDir = join(opts.cacheDir ?? defaultCacheDir(env), 'code-cache');
  const cacheName = `cli-${id.slice(0, 16)}-${process.version}-${process.arch}.v8`;
  const cacheFile = join(cacheDir, cacheName);
  let cachedData: Buffer | undefined;
  for (const file of [cacheFile, shippedCacheFile(filename, id)]) {
    try {
      cachedData = readFileSync(file);
      break;
    } catch {
      cachedData = undefined;
    }
  }
  const script = new vm.Script(WRAPPER_HEAD + source + WRAPPER_TAIL, { filename, cachedData });
  const status: CodeCacheStatus = cachedData === undefined ? 'written' : script.cachedDataRejected ? 'rejected' : 'used';

  // A module in require's cache, as require() would make it: whoever requires the bundle
  // (oclif for the commands and hooks, the plugins' index.cjs) gets these exports.
  const mod = new M(filename);
  mod.filename = filename;
  M._cache[filename] = mod;
  try {
    const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
    wrapper.call(mod.exports, mod.exports, createRequire(filename), mod, filename, dirname(filename), importFor(filename));
    mod.loaded = true;
  } catch (err) {
    delete M._cache[filename];
    throw err;
  }

  if (status !== 'used') {
    // The same length, one byte different: V8 keeps scripts it compiled by their source, and
    // would hand back this run's (lazily compiled) one; a code cache is checked by length.
    process.once('exit', () => writeCache(filename, source, cacheDir, cacheName));
  }
  return { exports: mod.exports as T, codeCache: status, cacheFile };
}

/**
 * The bundle's import(): relative specifiers against the bundle's own URL; bare ones resolve
 * from here, which is the same node_modules (dist/src and dist/cli/src share the package).
 */
function importFor(filename: string): (specifier: string, options?: ImportCallOptions) => Promise<unknown> {
  const base = pathToFileURL(filename);
  return (specifier, options) => {
    const target = specifier.startsWith('./') || specifier.startsWith('../') ? new URL(specifier, base).href : specifier;
    return options === undefined ? import(target) : import(target, options);
  };
}

/** The code cache the build ships next to the bundle, for this build (`id`: its wzp-bundle-id), Node version and architecture. */
export function shippedCacheFile(bundle: string, id: string): string {
  return `${bundle}.${id.slice(0, 16)}-${process.version}-${process.arch}.v8`;
}

/**
 * The code cache of the whole bundle, every function compiled (V8's --no-lazy for this one
 * compile, then back, so the cache carries the flag hash later runs check). Compiled under
 * another name: V8 keeps the scripts it compiled by source and name, and would hand back this
 * process's own (lazily compiled) one; the name is not part of the cache (V8 checks the
 * source, its version and its flags), and a run names the script itself.
 */
export function eagerCodeCache(filename: string, source: string = readFileSync(filename, 'utf8')): Buffer {
  let script: vm.Script;
  v8.setFlagsFromString('--no-lazy');
  try {
    script = new vm.Script(WRAPPER_HEAD + source + WRAPPER_TAIL, { filename: `${filename} (eager code cache)` });
  } finally {
    v8.setFlagsFromString('--lazy');
  }
  // After the flag is back: the cache carries the flags' hash as they are when it is made.
  return script.createCachedData();
}

/** The bundle's eager code cache (eagerCodeCache), to a temporary file renamed into place; older builds' caches go. */
function writeCache(filename: string, source: string, dir: string, name: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = join(dir, `.${name}.${process.pid}`);
    writeFileSync(tmp, eagerCodeCache(filename, source));
    renameSync(tmp, join(dir, name));
    for (const other of readdirSync(dir)) {
      if (other !== name && other.startsWith('cli-') && other.endsWith('.v8')) rmSync(join(dir, other), { force: true });
    }
  } catch {
    // A cache that cannot be written costs the next start the time it would have saved.
  }
}

/**
 * The CLI bundle's loader (src/bundle-loader.ts): a V8 code cache written after the first run
 * and used by the next, refused caches replaced, import() working from cached code, and the
 * bundle shared with require() (oclif and the plugins' index.cjs require it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.js';

const LOADER = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'bundle-loader.js')).href;

/** A bundle shaped like scripts/build.mjs's output: id comment, strict mode, the import stand-in. */
function bundleSource(id: string, body: string): string {
  return (
    `/* wzp-bundle-id: ${id} */ 'use strict'; ` +
    "const __imp_ = typeof __wzpImport === 'function' ? __wzpImport : (specifier, options) => import(specifier, options);\n" +
    body
  );
}

const BODY = `
exports.sloppyThis = (function () { return this; })() === undefined ? 'strict' : 'sloppy';
exports.answer = () => 6 * 7;
exports.osCpus = async () => typeof (await __imp_('node:os')).cpus;
`;

interface RunResult {
  status: string;
  strict: string;
  answer: number;
  osCpus: string;
  sameAsRequire: boolean;
}

describe('CLI bundle loader', () => {
  let dir: string;
  let cacheDir: string;
  let bundle: string;
  const run = (env: Record<string, string> = {}): RunResult => {
    const script = `
      import { createRequire } from 'node:module';
      const { loadBundle } = await import(${JSON.stringify(LOADER)});
      const b = loadBundle(${JSON.stringify(bundle)}, { cacheDir: ${JSON.stringify(cacheDir)} });
      const again = createRequire(import.meta.url)(${JSON.stringify(bundle)});
      console.log(JSON.stringify({ status: b.codeCache, strict: b.exports.sloppyThis, answer: b.exports.answer(),
        osCpus: await b.exports.osCpus(), sameAsRequire: again === b.exports }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'nothing on stderr (no experimental-feature warning)');
    return JSON.parse(r.stdout) as RunResult;
  };
  const cacheFiles = () => (existsSync(join(cacheDir, 'code-cache')) ? readdirSync(join(cacheDir, 'code-cache')) : []);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wzp-bundle-'));
    cacheDir = join(dir, 'cache');
    bundle = join(dir, 'cli.cjs');
    writeFileSync(bundle, bundleSource('a'.repeat(64), BODY));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the first run writes the cache at exit, the next runs compile from it', () => {
    const first = run();
    assert.equal(first.status, 'written');
    assert.deepEqual(cacheFiles().length, 1);
    const second = run();
    assert.equal(second.status, 'used');
    assert.equal(second.answer, 42);
    assert.equal(second.strict, 'strict', 'the bundle runs in strict mode, as the ES modules it was built from');
  });

  test('the cache holds every function of the bundle, not only those the first run called', () => {
    // A function never called: compiled lazily by a run, so only an eager cache holds its code.
    const cold = `exports.cold = function () { let x = 0; ${Array.from({ length: 3000 }, (_, i) => `x += ${i} * x + ${i % 7};`).join(' ')} return x; };`;
    const cacheName = 'c'.repeat(64);
    const source = bundleSource(cacheName, BODY + cold);
    writeFileSync(bundle, source);
    assert.equal(run().status, 'written');
    const written = readFileSync(join(cacheDir, 'code-cache', cacheFiles().find((f) => f.includes('cccccccc')) ?? ''));
    const lazy = new vm.Script(`(function (exports, require, module, __filename, __dirname, __wzpImport) { ${source}\n});`).createCachedData();
    assert.ok(written.length > 3 * lazy.length, `cache ${written.length} bytes, a lazy compile's ${lazy.length}`);
    assert.equal(run().status, 'used');
    writeFileSync(bundle, bundleSource('a'.repeat(64), BODY));
    run();
  });

  test('import() works from code compiled out of the cache, and require() finds the same module', () => {
    const r = run();
    assert.equal(r.status, 'used');
    assert.equal(r.osCpus, 'function');
    assert.equal(r.sameAsRequire, true);
  });

  test('a cache V8 refuses is replaced, and the run is unaffected', () => {
    const [name] = cacheFiles();
    writeFileSync(join(cacheDir, 'code-cache', name), Buffer.alloc(4096, 7));
    const r = run();
    assert.equal(r.status, 'rejected');
    assert.equal(r.answer, 42);
    assert.equal(run().status, 'used', 'rewritten at exit');
  });

  test('a new build gets its own cache and the old one is removed', () => {
    const before = cacheFiles();
    writeFileSync(bundle, bundleSource('b'.repeat(64), BODY.replace('6 * 7', '7 * 6')));
    assert.equal(run().status, 'written');
    const now = cacheFiles();
    assert.equal(now.length, 1);
    assert.notDeepEqual(now, before);
    assert.equal(run().status, 'used');
  });

  test('WZP_CODE_CACHE=0 loads with require() and writes nothing', () => {
    rmSync(join(cacheDir, 'code-cache'), { recursive: true, force: true });
    const r = run({ WZP_CODE_CACHE: '0' });
    assert.equal(r.status, 'off');
    assert.equal(r.osCpus, 'function', "the bundle's own import() fallback");
    assert.equal(r.strict, 'strict');
    assert.deepEqual(cacheFiles(), []);
  });

  test('the built CLI bundle loads from the code cache the build ships with it, writing none of its own', () => {
    const real = join(REPO_ROOT, 'dist', 'cli', 'src', 'cli.cjs');
    const own = join(dir, 'empty-cache');
    const script = `
      const { loadBundle } = await import(${JSON.stringify(LOADER)});
      console.log(loadBundle(${JSON.stringify(real)}, { cacheDir: ${JSON.stringify(own)} }).codeCache);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'used');
    assert.equal(existsSync(join(own, 'code-cache')), false, 'nothing written');
  });

  test('the built CLI bundle carries its id and strict mode in its first line', () => {
    const first = readFileSync(join(REPO_ROOT, 'dist', 'cli', 'src', 'cli.cjs'), 'utf8').split('\n', 1)[0];
    assert.match(first, /^\/\* wzp-bundle-id: [0-9a-f]{64} \*\/ 'use strict'; /);
    assert.doesNotMatch(first, /0{64}/, 'the placeholder was replaced by the hash');
  });
});

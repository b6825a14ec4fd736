#!/usr/bin/env node
// `npm test`: build, lint (scripts/lint.mjs), then run every compiled *.test.js under
// dist/test with Node's test runner. Files are listed explicitly: given a directory, Node 20's
// runner would also execute every other .js file below a folder named "test" (helpers,
// fixtures, benchmarks).
// Optional arguments narrow the run to files whose path contains one of them.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const build = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const filters = process.argv.slice(2);
const testRoot = join(root, 'dist', 'test');
const files = [];
(function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'fixtures') walk(p);
    } else if (entry.name.endsWith('.test.js')) {
      const rel = relative(root, p);
      if (filters.length === 0 || filters.some((f) => rel.includes(f))) files.push(p);
    }
  }
})(testRoot);
files.sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// The whole suite also lints the whole tree (scripts/lint.mjs); a run narrowed by filters
// does not (`npm run lint` does it alone).
let lintFailed = false;
if (filters.length === 0) {
  const lint = spawnSync(process.execPath, [join(root, 'scripts', 'lint.mjs')], { stdio: 'inherit' });
  lintFailed = lint.status !== 0;
}
// One file at a time: several suites start relays, namespaces and timing-sensitive media.
const run = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
if (lintFailed) console.error('npm test: ESLint reported problems (above); run `npm run lint`');
process.exit(run.status !== 0 ? (run.status ?? 1) : lintFailed ? 1 : 0);

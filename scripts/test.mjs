#!/usr/bin/env node
// `npm test`: build, lint (scripts/lint.mjs), then run every compiled *.test.js under
// dist/test with Node's test runner. Files are listed explicitly: given a directory, Node 20's
// runner would also execute every other .js file below a folder named "test" (helpers,
// fixtures, benchmarks).
// Optional arguments narrow the run to files whose path contains one of them.
import { spawn, spawnSync } from 'node:child_process';
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
// The TAP output streams through as it comes; failures are repeated at the very end (with
// their suite path and error), because a long run's log is often read from its tail.
const failures = [];
const status = await new Promise((resolve) => {
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...files], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const watcher = failureWatcher(failures);
  let pending = '';
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) watcher(line);
  });
  child.on('close', (code, signal) => {
    if (pending) watcher(pending);
    resolve(code ?? (signal ? 1 : 0));
  });
});
if (failures.length > 0) {
  console.log(`\n# npm test: ${failures.length} failed test(s):`);
  for (const f of failures) {
    console.log(`# FAILED: ${f.path.join(' > ')}`);
    // An error's first lines say what failed; its last lines hold the end of a long message
    // (a screen or a log) and the location. Both, within a bound a CI log's tail keeps.
    const shown = f.details.length <= 70 ? f.details : [...f.details.slice(0, 10), `... (${f.details.length - 70} lines left out)`, ...f.details.slice(-60)];
    for (const detail of shown) console.log(`#   ${detail}`);
  }
}
if (lintFailed) console.error('npm test: ESLint reported problems (above); run `npm run lint`');
process.exit(status !== 0 ? status : lintFailed ? 1 : 0);

/**
 * Follows Node's TAP output line by line and records each failing leaf test: its path of
 * subtest names and the first lines of its YAML diagnostics (error, location). A failing
 * suite whose own failure is only that a child failed is not recorded twice.
 */
function failureWatcher(out) {
  const stack = []; // [indent, name]
  let current = null;
  return (line) => {
    const indent = line.length - line.trimStart().length;
    const text = line.trim();
    if (current) {
      if (text === '...' && indent <= current.indent + 2) {
        current = null;
      } else if (text !== '---' && !/^duration_ms:|^type:/.test(text)) {
        current.details.push(text);
      }
      return;
    }
    const subtest = /^# Subtest: (.*)$/.exec(text);
    if (subtest) {
      while (stack.length > 0 && stack[stack.length - 1][0] >= indent) stack.pop();
      stack.push([indent, subtest[1]]);
      return;
    }
    const notOk = /^not ok \d+ - (.*?)(?: # .*)?$/.exec(text);
    if (notOk) {
      while (stack.length > 0 && stack[stack.length - 1][0] > indent) stack.pop();
      const path = stack.map(([, name]) => name);
      if (path.length === 0 || path[path.length - 1] !== notOk[1]) path.push(notOk[1]);
      const entry = { path, details: [], indent };
      // A suite that failed because a subtest failed adds nothing new: the subtest is listed.
      const isParentOfRecorded = out.some(
        (f) => f.path.length > path.length && path.every((n, i) => f.path[i] === n),
      );
      if (!isParentOfRecorded) out.push(entry);
      current = isParentOfRecorded ? { indent, details: [] } : entry;
    }
  };
}

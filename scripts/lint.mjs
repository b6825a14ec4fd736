#!/usr/bin/env node
// `npm run lint` (and part of `npm test`): ESLint over the whole tree with eslint.config.mjs.
// Extra arguments go to ESLint (e.g. `npm run lint -- --fix`, or paths to lint only those).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const eslintPackage = require.resolve('eslint/package.json');
const eslint = join(dirname(eslintPackage), require(eslintPackage).bin.eslint);
const args = process.argv.slice(2);
const r = spawnSync(process.execPath, [eslint, '--max-warnings', '0', ...(args.length > 0 ? args : ['.'])], { cwd: root, stdio: 'inherit' });
if (r.status === 0) console.log('lint: no problems');
process.exit(r.status ?? 1);

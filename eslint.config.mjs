// ESLint (flat config): `npm run lint`, and part of `npm test` (scripts/test.mjs).
//
// A modest rule set that finds bugs rather than style:
// - ESLint's recommended rules (JavaScript and TypeScript) and typescript-eslint's recommended
//   rules, without prefer-const (style; it would churn files others are editing);
// - two type-checked rules, for network code full of promises: no-floating-promises (a
//   promise nobody awaits or catches: a rejection ends the process) and no-misused-promises
//   (an async function where a void callback is expected: its rejection is lost). node:test's
//   describe/test are known to be safe. Type information costs ~35 s of the lint's ~45 s;
//   the rest of typescript-eslint's type-checked set is not worth that many more findings;
// - wzp's import boundaries (scripts/eslint-plugin-wzp.mjs): core/ imports neither src/ nor
//   oclif; a plugin (src/plugins/*) imports wzp only through the package's public entry points
//   (package.json `exports`), as a third-party plugin must.
// Tests may use `any` (they poke at parsed JSON documents). docs/dependencies.md says why the
// versions are pinned (ESLint 9: Node 20 support).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import wzp from './scripts/eslint-plugin-wzp.mjs';

const nodeGlobals = Object.fromEntries(
  [
    'process', 'console', 'Buffer', 'URL', 'URLSearchParams', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate',
    'clearImmediate', 'performance', 'AbortController', 'AbortSignal', 'TextEncoder', 'TextDecoder', 'queueMicrotask', 'structuredClone',
    'WebAssembly', 'fetch', '__dirname', '__filename', 'require', 'module', 'exports', 'globalThis',
  ].map((name) => [name, 'readonly']),
);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'oclif.manifest.json'] },
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: nodeGlobals },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    rules: {
      'prefer-const': 'off',
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.ts'],
    rules: { 'no-unused-vars': 'off' },
  },
  {
    plugins: { wzp },
    rules: { 'wzp/import-boundaries': 'error' },
  },
);

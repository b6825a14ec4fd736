// wzp's own ESLint rule: the import boundaries of the house (DESIGN.md §1, §3).
//
// `wzp/import-boundaries`
// - core/ is the engine, usable as a library: it imports neither src/ (the CLI) nor oclif.
// - A plugin (src/plugins/<name>/) is built exactly like a third-party `wzp-plugin-*` package:
//   from wzp it imports only the package's public entry points, the files behind package.json
//   `exports` (`.` -> core/index.ts, `./plugin` -> core/plugin.ts, `./compliance` ->
//   core/compliance/index.ts); anything else of the repository only from inside its own
//   directory. npm packages and node: builtins are its own business.
// Every import form counts: `import`, `import type`, `export ... from`, `import()`,
// `typeof import('...')` and `require()`.
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Repository-relative source files (core/x.ts) of the package's public entry points. */
export function publicEntryFiles(pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'))) {
  const targets = Object.values(pkg.exports ?? {}).filter((t) => typeof t === 'string' && t.startsWith('./dist/') && t.endsWith('.js'));
  return new Set(targets.map((t) => t.slice('./dist/'.length).replace(/\.js$/, '.ts')));
}

const toPosix = (p) => p.split(sep).join('/');

/** What a file is, for the rule: 'core', 'plugin:<name>' or 'other'. */
function areaOf(rel) {
  if (rel.startsWith('core/')) return 'core';
  const m = /^src\/plugins\/([^/]+)\//.exec(rel);
  return m ? `plugin:${m[1]}` : 'other';
}

const importBoundaries = {
  meta: {
    type: 'problem',
    docs: { description: 'core/ imports neither src/ nor oclif; plugins import wzp only through its public entry points' },
    schema: [
      {
        type: 'object',
        properties: { root: { type: 'string' }, entries: { type: 'array', items: { type: 'string' } } },
        additionalProperties: false,
      },
    ],
    messages: {
      coreImportsCli: 'core/ must not import the CLI ({{source}} is in src/): the engine is usable without it',
      coreImportsOclif: 'core/ must not import oclif ({{source}}): the engine is usable without the CLI',
      pluginPrivateImport:
        'a plugin imports wzp only through its public entry points ({{entries}}), as a third-party plugin must: {{source}} is not one (export what it needs from core/plugin.ts)',
    },
  },
  create(context) {
    const options = context.options[0] ?? {};
    const root = options.root ?? REPO;
    const entries = options.entries ? new Set(options.entries) : publicEntryFiles();
    const filename = context.filename ?? context.getFilename();
    const rel = toPosix(relative(root, filename));
    const area = areaOf(rel);
    if (area === 'other') return {};

    const check = (node, source) => {
      if (typeof source !== 'string') return;
      if (area === 'core' && (source === '@oclif/core' || source.startsWith('@oclif/'))) {
        context.report({ node, messageId: 'coreImportsOclif', data: { source } });
        return;
      }
      if (!source.startsWith('.')) return; // npm packages and node: builtins
      const target = toPosix(relative(root, resolve(dirname(filename), source))).replace(/\.js$/, '.ts');
      if (area === 'core') {
        if (target.startsWith('src/')) context.report({ node, messageId: 'coreImportsCli', data: { source } });
        return;
      }
      const pluginDir = `src/plugins/${area.slice('plugin:'.length)}/`;
      if (target.startsWith(pluginDir) || entries.has(target)) return;
      context.report({ node, messageId: 'pluginPrivateImport', data: { source, entries: [...entries].sort().join(', ') } });
    };
    const literal = (node) => (node && node.type === 'Literal' ? node.value : undefined);
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => check(node, literal(node.source)),
      TSImportType: (node) => check(node, literal(node.argument?.literal ?? node.argument)),
      CallExpression: (node) => {
        if (node.callee.type === 'Identifier' && node.callee.name === 'require' && node.arguments.length === 1) check(node, literal(node.arguments[0]));
      },
    };
  },
};

export default { meta: { name: 'eslint-plugin-wzp' }, rules: { 'import-boundaries': importBoundaries } };

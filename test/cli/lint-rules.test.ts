/**
 * wzp's own lint rule, `wzp/import-boundaries` (scripts/eslint-plugin-wzp.mjs): core/ imports
 * neither src/ nor oclif, and a plugin imports wzp only through the package's public entry
 * points. Checked with ESLint's RuleTester on code that breaks and keeps each boundary, and on
 * the real tree (what `npm run lint` enforces).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ESLint, RuleTester, type Rule } from 'eslint';
import tseslint from 'typescript-eslint';
import { REPO_ROOT } from '../helpers/cli.js';

interface WzpPlugin {
  rules: Record<string, Rule.RuleModule>;
}
const pluginUrl = pathToFileURL(join(REPO_ROOT, 'scripts', 'eslint-plugin-wzp.mjs')).href;
const { default: wzp, publicEntryFiles } = (await import(pluginUrl)) as { default: WzpPlugin; publicEntryFiles: () => Set<string> };

RuleTester.describe = describe;
RuleTester.it = it;
RuleTester.itOnly = it.only;


const at = (rel: string) => join(REPO_ROOT, rel);
const tester = new RuleTester({ languageOptions: { parser: tseslint.parser, ecmaVersion: 2023, sourceType: 'module' } });

describe('the public entry points come from package.json exports', () => {
  it('are core/index.ts, core/plugin.ts and core/compliance/index.ts', () => {
    assert.deepEqual([...publicEntryFiles()].sort(), ['core/compliance/index.ts', 'core/index.ts', 'core/plugin.ts']);
  });
});

tester.run('wzp/import-boundaries', wzp.rules['import-boundaries'], {
  valid: [
    { filename: at('core/media/pipeline.ts'), code: "import { DecodeError } from '../errors.js';" },
    { filename: at('core/transport/quic.ts'), code: "import { QUICClient } from '@matrixai/quic';" },
    { filename: at('src/plugins/fec-rs/index.ts'), code: "import { collectBlock, type FecCodec } from '../../../core/plugin.js';" },
    { filename: at('src/plugins/fec-rs/index.ts'), code: "import type { Registries } from '../../../core/index.js';" },
    { filename: at('src/plugins/fec-rs/index.ts'), code: "export { describeFecCompliance } from '../../../core/compliance/index.js';" },
    { filename: at('src/plugins/fec-raptorq/index.ts'), code: "import { readFileSync } from 'node:fs'; import { glue } from './glue.js'; type G = typeof import('raptorq/raptorq.js');" },
    { filename: at('src/commands/call.ts'), code: "import { runCall } from '../../core/client/call.js'; import { Flags } from '@oclif/core';" },
  ],
  invalid: [
    { filename: at('core/client/call.ts'), code: "import { WzpCommand } from '../../src/base-command.js';", errors: [{ messageId: 'coreImportsCli' }] },
    { filename: at('core/relay/relay.ts'), code: "export { x } from '../../src/services/y.js';", errors: [{ messageId: 'coreImportsCli' }] },
    { filename: at('core/errors.ts'), code: "import { Errors } from '@oclif/core';", errors: [{ messageId: 'coreImportsOclif' }] },
    { filename: at('core/errors.ts'), code: "const m = await import('@oclif/core/errors');", errors: [{ messageId: 'coreImportsOclif' }] },
    { filename: at('src/plugins/fec-rs/index.ts'), code: "import { gfInv } from '../../../core/media/fec/gf256.js';", errors: [{ messageId: 'pluginPrivateImport' }] },
    { filename: at('src/plugins/fec-rs/index.ts'), code: "import type { FecCodec } from '../../../core/media/fec-types.js';", errors: [{ messageId: 'pluginPrivateImport' }] },
    { filename: at('src/plugins/codec-opus/index.ts'), code: "type E = typeof import('../../../core/errors.js');", errors: [{ messageId: 'pluginPrivateImport' }] },
    { filename: at('src/plugins/codec-opus/index.ts'), code: "import { registries } from '../../extensions.js';", errors: [{ messageId: 'pluginPrivateImport' }] },
    { filename: at('src/plugins/codec-opus/index.ts'), code: "import { x } from '../fec-rs/index.js';", errors: [{ messageId: 'pluginPrivateImport' }] },
  ],
});

describe('the tree keeps the boundaries', () => {
  it('core/ and src/plugins/ pass wzp/import-boundaries', async () => {
    const eslint = new ESLint({
      cwd: REPO_ROOT,
      overrideConfigFile: true,
      overrideConfig: [
        { ignores: ['**/*.d.ts'] },
        { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser }, plugins: { wzp }, rules: { 'wzp/import-boundaries': 'error' } },
      ],
    });
    const results = await eslint.lintFiles(['core/**/*.ts', 'src/plugins/**/*.ts']);
    // Only this rule: the files' inline directives name rules this minimal config does not load.
    const problems = results.flatMap((r) => r.messages.filter((m) => m.ruleId === 'wzp/import-boundaries').map((m) => `${r.filePath}:${m.line} ${m.message}`));
    assert.ok(results.length > 50, `linted ${results.length} files`);
    assert.deepEqual(problems, []);
  });
});

/**
 * The built-in codec plugins and the example plugin are real oclif plugin packages: their
 * package.json declares the `wzp:codecs` hook, and loading the hook module the way oclif
 * does yields the codec factories.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import type { CodecFactory } from '../../core/media/codec-types.js';
import { HOOK_CODECS, createRegistries } from '../../core/registry.js';

interface Manifest {
  name: string;
  type?: string;
  dependencies?: Record<string, string>;
  oclif?: { hooks?: Record<string, string> };
}

const PLUGINS = [
  { dir: new URL('../../src/plugins/codec-opus/', import.meta.url), name: 'wzp-plugin-codec-opus', codecs: ['opus'] },
  { dir: new URL('../../src/plugins/codec-pcm/', import.meta.url), name: 'wzp-plugin-codec-pcm', codecs: ['pcm16'] },
  { dir: new URL('../fixtures/wzp-plugin-example/', import.meta.url), name: 'wzp-plugin-example', codecs: ['mulaw'] },
];

async function loadHook(dir: URL): Promise<{ manifest: Manifest; factories: CodecFactory[] }> {
  const manifest = JSON.parse(await readFile(new URL('package.json', dir), 'utf8')) as Manifest;
  const hookPath = manifest.oclif?.hooks?.[HOOK_CODECS];
  assert.equal(hookPath, './index.js', `${manifest.name} declares the ${HOOK_CODECS} hook`);
  const hook = (await import(new URL(hookPath, dir).href)) as { default: () => Promise<CodecFactory | CodecFactory[]> };
  const result = await hook.default();
  return { manifest, factories: Array.isArray(result) ? result : [result] };
}

for (const plugin of PLUGINS) {
  test(`${plugin.name}: manifest and ${HOOK_CODECS} hook`, async () => {
    const { manifest, factories } = await loadHook(plugin.dir);
    assert.equal(manifest.name, plugin.name);
    assert.equal(manifest.type, 'module');
    assert.deepEqual(
      factories.map((f) => f.name),
      plugin.codecs,
    );
  });
}

test('the example plugin has no dependencies and takes a third-party codec id', async () => {
  const { manifest, factories } = await loadHook(PLUGINS[2].dir);
  assert.equal(manifest.dependencies, undefined);
  for (const f of factories) assert.ok(f.codecId >= 64 && f.codecId <= 254);
});

test('all three plugins register side by side without name or id clashes', async () => {
  const { codecs } = createRegistries();
  for (const plugin of PLUGINS) {
    for (const factory of (await loadHook(plugin.dir)).factories) codecs.register(factory, plugin.name);
  }
  assert.deepEqual(
    codecs.list().map((e) => [e.factory.name, e.factory.codecId, e.plugin]),
    [
      ['mulaw', 64, 'wzp-plugin-example'],
      ['opus', 1, 'wzp-plugin-codec-opus'],
      ['pcm16', 0, 'wzp-plugin-codec-pcm'],
    ],
  );
});

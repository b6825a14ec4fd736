/**
 * Loads the built-in plugins shipped in dist/src/plugins/<name>/ as oclif core plugins.
 *
 * Each built-in is a complete plugin package (package.json with `oclif.hooks` next to its
 * compiled JS), exactly the shape of a third-party `wzp-plugin-*` package. oclif can only
 * find core plugins through node_modules, so we construct them with oclif's own Plugin
 * loader from their directories; from then on oclif fires their hooks like any other.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Plugin, type Config } from '@oclif/core/config';

export const BUILTIN_PLUGINS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'plugins');

export async function loadBuiltinPlugins(config: Config, dir = BUILTIN_PLUGINS_DIR): Promise<void> {
  if (!existsSync(dir)) return;
  const roots = readdirSync(dir)
    .sort()
    .map((entry) => join(dir, entry))
    .filter((root) => existsSync(join(root, 'package.json')));
  // Loaded side by side (each is a few reads of package.json and manifest files), then added
  // in name order as before.
  const plugins = await Promise.all(
    roots.map(async (root) => {
      const plugin = new Plugin({ root, type: 'core', isRoot: false, name: undefined as unknown as string });
      await plugin.load();
      return plugin;
    }),
  );
  for (const plugin of plugins) {
    // A user-installed or linked plugin of the same name overrides the built-in, as oclif does.
    if (config.plugins.has(plugin.name)) continue;
    config.plugins.set(plugin.name, plugin);
  }
}

#!/usr/bin/env node
// The wzp CLI. Built-in plugins (dist/src/plugins/*) are loaded as oclif core plugins before
// the command runs, so their hooks fire through the same path as third-party plugins.
import { Config, execute } from '@oclif/core';
import { loadBuiltinPlugins } from '../dist/src/builtin-plugins.js';

const config = await Config.load(import.meta.url);
await loadBuiltinPlugins(config);
await execute({ dir: import.meta.url, loadOptions: config });

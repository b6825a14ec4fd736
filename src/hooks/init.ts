/**
 * init hook: fire the typed custom hooks `wzp:codecs`, `wzp:fec` and `wzp:nat-strategies`
 * across every loaded plugin (built-in, user-installed and linked alike), and collect what
 * they return into the registries. Failures never crash the CLI: each one becomes a warning
 * naming the plugin (oclif would otherwise swallow hook errors silently).
 */
import type { Hook } from '@oclif/core';
import { HOOK_CODECS, HOOK_FEC, HOOK_NAT_STRATEGIES, createRegistries } from '../../core/registry.js';
import { markLoaded } from '../extensions.js';
import { errorMessage } from '../../core/errors.js';

/** A plugin hook taking longer than this is reported and skipped. */
const HOOK_TIMEOUT_MS = 5_000;

const hook: Hook<'init'> = async function (opts) {
  const registries = createRegistries();
  const warnings: string[] = [];
  const collect = async (event: string, register: (item: never, plugin: string) => void) => {
    const { successes, failures } = await opts.config.runHook(event as never, {} as never, HOOK_TIMEOUT_MS, true);
    for (const { plugin, error } of failures) {
      warnings.push(`plugin ${plugin.name} failed in its ${event} hook: ${errorMessage(error)}`);
    }
    // Registration order decides who keeps a contested name: wzp's own plugins first, then
    // user-installed, then linked ones (oclif's hook order is load order, which is the reverse).
    const ordered = [...successes].sort((a, b) => typeRank(a.plugin.type) - typeRank(b.plugin.type));
    for (const { plugin, result } of ordered) {
      const items: unknown[] = Array.isArray(result) ? result : result === undefined || result === null ? [] : [result];
      for (const item of items) {
        try {
          register(item as never, plugin.name);
        } catch (err) {
          warnings.push(errorMessage(err));
        }
      }
    }
  };
  await collect(HOOK_CODECS, (f, p) => registries.codecs.register(f, p));
  await collect(HOOK_FEC, (f, p) => registries.fec.register(f, p));
  await collect(HOOK_NAT_STRATEGIES, (f, p) => registries.natStrategies.register(f, p));
  markLoaded(registries, warnings);
};

const TYPE_ORDER = ['core', 'user', 'link'];

function typeRank(type: string): number {
  const i = TYPE_ORDER.indexOf(type);
  return i === -1 ? TYPE_ORDER.length : i;
}

export default hook;

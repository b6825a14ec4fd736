/**
 * Registries for the three kinds of extension: codecs, FEC schemes and NAT strategies.
 *
 * Each entry remembers which plugin registered it, so listings (`wzp codecs`) and errors can
 * name the plugin. Registering a second extension under a taken name (or codec/scheme id) is
 * rejected with DuplicateRegistrationError naming both plugins; the first one stays.
 */
import { DuplicateRegistrationError, PluginError } from './errors.js';
import type { Availability, CodecFactory } from './media/codec-types.js';
import type { FecSchemeFactory } from './media/fec-types.js';
import type { NatStrategyFactory } from './nat/strategy-types.js';

export interface RegistryEntry<T> {
  readonly factory: T;
  /** Name of the plugin package that contributed it (e.g. `wzp-plugin-codec-opus`). */
  readonly plugin: string;
}

interface Named {
  readonly name: string;
  readonly version: string;
  availability(): Availability;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;

export class Registry<T extends Named> {
  private readonly entries = new Map<string, RegistryEntry<T>>();

  constructor(
    /** 'codec' | 'FEC scheme' | 'NAT strategy' — used in messages. */
    readonly kind: string,
    /** Extra key that must also be unique (codec id, scheme id), if any. */
    private readonly idOf?: (f: T) => number,
  ) {}

  register(factory: T, plugin: string): void {
    if (typeof factory !== 'object' || factory === null || typeof factory.name !== 'string') {
      throw new PluginError(`plugin ${plugin} registered a ${this.kind} without a name`);
    }
    if (!NAME_RE.test(factory.name)) {
      throw new PluginError(
        `plugin ${plugin} registered ${this.kind} "${factory.name}": names are 1-32 chars of [a-z0-9-]`,
      );
    }
    const existing = this.entries.get(factory.name);
    if (existing) {
      throw new DuplicateRegistrationError(
        `${this.kind} "${factory.name}" from plugin ${plugin} is already registered by plugin ${existing.plugin}; keeping the first`,
        { suggestions: [`uninstall one of the two plugins (wzp plugins uninstall ${plugin})`] },
      );
    }
    if (this.idOf) {
      const id = this.idOf(factory);
      if (!Number.isInteger(id) || id < 0 || id > 254) {
        throw new PluginError(`plugin ${plugin} registered ${this.kind} "${factory.name}" with invalid id ${id} (0-254)`);
      }
      for (const e of this.entries.values()) {
        if (this.idOf(e.factory) === id) {
          throw new DuplicateRegistrationError(
            `${this.kind} "${factory.name}" from plugin ${plugin} uses id ${id}, already taken by "${e.factory.name}" from plugin ${e.plugin}`,
          );
        }
      }
    }
    this.entries.set(factory.name, { factory, plugin });
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The entry, or a PluginError listing what is registered. */
  get(name: string): RegistryEntry<T> {
    const e = this.entries.get(name);
    if (!e) {
      throw new PluginError(`unknown ${this.kind} "${name}"`, {
        suggestions: [`registered: ${[...this.entries.keys()].join(', ') || '(none)'}`],
      });
    }
    return e;
  }

  /** The factory, checked to be available here (or a PluginError with the install hint). */
  require(name: string): T {
    const { factory, plugin } = this.get(name);
    const a = factory.availability();
    if (!a.available) {
      throw new PluginError(`${this.kind} "${name}" (plugin ${plugin}) is unavailable: ${a.reason}`, {
        suggestions: a.hint ? [a.hint] : [],
      });
    }
    return factory;
  }

  byId(id: number): RegistryEntry<T> | undefined {
    if (!this.idOf) return undefined;
    for (const e of this.entries.values()) if (this.idOf(e.factory) === id) return e;
    return undefined;
  }

  list(): RegistryEntry<T>[] {
    return [...this.entries.values()].sort((a, b) => a.factory.name.localeCompare(b.factory.name));
  }
}

export interface Registries {
  codecs: Registry<CodecFactory>;
  fec: Registry<FecSchemeFactory>;
  natStrategies: Registry<NatStrategyFactory>;
}

export function createRegistries(): Registries {
  return {
    codecs: new Registry<CodecFactory>('codec', (f) => f.codecId),
    fec: new Registry<FecSchemeFactory>('FEC scheme', (f) => f.schemeId),
    natStrategies: new Registry<NatStrategyFactory>('NAT strategy'),
  };
}

/** What a `wzp:*` plugin hook returns: one extension or a list of them. */
export type HookContribution<T> = T | readonly T[];

/** The custom oclif hooks a plugin may declare in its package.json `oclif.hooks`. */
export const HOOK_CODECS = 'wzp:codecs';
export const HOOK_FEC = 'wzp:fec';
export const HOOK_NAT_STRATEGIES = 'wzp:nat-strategies';

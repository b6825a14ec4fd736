/** `wzp extensions`: what the plugins registered, and whether it can run here. */
import type { Registries, RegistryEntry } from '../../core/registry.js';
import type { Availability } from '../../core/media/codec-types.js';
import { errorMessage } from '../../core/errors.js';

export interface ExtensionRow {
  kind: 'codec' | 'fec' | 'nat-strategy';
  name: string;
  /** Wire id (codec id / FEC scheme id), where the kind has one. */
  id?: number;
  version: string;
  description: string;
  plugin: string;
  available: boolean;
  reason?: string;
  hint?: string;
}

export interface ExtensionListing {
  extensions: ExtensionRow[];
}

type Kind = ExtensionRow['kind'];

export function listExtensions(r: Registries, only?: Kind): ExtensionListing {
  const rows: ExtensionRow[] = [];
  const add = <T extends { name: string; version: string; description: string; availability(): Availability }>(
    kind: Kind,
    entries: RegistryEntry<T>[],
    id?: (f: T) => number,
  ) => {
    if (only && only !== kind) return;
    for (const { factory, plugin } of entries) {
      let a: Availability;
      try {
        a = factory.availability();
      } catch (err) {
        a = { available: false, reason: `availability check failed: ${errorMessage(err)}` };
      }
      rows.push({
        kind,
        name: factory.name,
        ...(id ? { id: id(factory) } : {}),
        version: factory.version,
        description: factory.description,
        plugin,
        available: a.available,
        ...(a.available ? {} : { reason: a.reason, ...(a.hint ? { hint: a.hint } : {}) }),
      });
    }
  };
  add('codec', r.codecs.list(), (f) => f.codecId);
  add('fec', r.fec.list(), (f) => f.schemeId);
  add('nat-strategy', r.natStrategies.list());
  return { extensions: rows };
}

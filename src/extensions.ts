/**
 * The process-wide extension registries, filled by the init hook from every plugin's
 * `wzp:*` hooks, and the warnings that collection produced (a broken plugin is reported,
 * never fatal). Commands read both through the base command.
 */
import { createRegistries, type Registries } from '../core/registry.js';

const state: { registries: Registries; warnings: string[]; loaded: boolean } = {
  registries: createRegistries(),
  warnings: [],
  loaded: false,
};

export function registries(): Registries {
  return state.registries;
}

export function pluginWarnings(): readonly string[] {
  return state.warnings;
}

export function markLoaded(registries: Registries, warnings: string[]): void {
  state.registries = registries;
  state.warnings = warnings;
  state.loaded = true;
}

export function extensionsLoaded(): boolean {
  return state.loaded;
}

/**
 * The small JSON files wzp keeps in the config directory (relay pins, known members):
 * `{"version": N, "<key>": {"<name>": entry, ...}}`, mode 0600, written atomically. Reading
 * one: a missing file is an empty store; an unreadable or corrupt one is a ConfigError that
 * names the file and the bad entry, never silently reset (a reset would drop pins).
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, errorMessage } from './errors.js';
import { hasErrorCode } from './crypto/identity.js';

export interface StoreFileSpec<E> {
  /** What the file is, for messages: "relay pin file". */
  what: string;
  version: number;
  /** The top-level object holding the entries: "relays". */
  key: string;
  /** What to tell a user whose file is corrupt. */
  suggestion(path: string): string;
  /** Checks one entry's name and value; throws (any Error) to call the entry bad. */
  parseEntry(name: string, value: unknown): [string, E];
}

/** The entries of a store file, in file order; an empty list if it does not exist. */
export async function readStoreFile<E>(path: string, spec: StoreFileSpec<E>): Promise<[string, E][]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return [];
    throw new ConfigError(`cannot read ${spec.what} ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const corrupt = (detail: string, cause?: unknown) =>
    new ConfigError(`${spec.what} ${path} is corrupt: ${detail}`, { cause, suggestions: [spec.suggestion(path)] });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw corrupt('not valid JSON', err);
  }
  if (!isRecord(doc) || doc.version !== spec.version) {
    throw corrupt(`unsupported version ${isRecord(doc) ? JSON.stringify(doc.version) : 'missing'} (this wzp reads version ${spec.version})`);
  }
  const entries = doc[spec.key];
  if (!isRecord(entries)) throw corrupt(`no "${spec.key}" object`);
  const out: [string, E][] = [];
  for (const [name, value] of Object.entries(entries)) {
    try {
      out.push(spec.parseEntry(name, value));
    } catch (err) {
      throw corrupt(`bad entry for "${name.slice(0, 100)}": ${errorMessage(err)}`, err);
    }
  }
  return out;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An entry's ISO 8601 time field; throws if it is not one. */
export function isoTime(entry: Record<string, unknown>, field: string): string {
  const time = entry[field];
  if (typeof time !== 'string' || Number.isNaN(Date.parse(time))) throw new Error(`"${field}" is not an ISO 8601 time`);
  return time;
}

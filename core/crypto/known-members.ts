/**
 * Trust-on-first-use pins for the people met in calls, like ssh's known_hosts (and the relay
 * pins in core/transport/pin-store.ts). The first call with a member records its identity
 * fingerprint and the alias it showed; later calls show it as `known`. A member whose alias is
 * the alias of a pinned member with another fingerprint is worth a warning: someone may be
 * passing themselves off as someone you have met.
 *
 * File (mode 0600, written atomically; never reset silently when unreadable):
 *
 *   {
 *     "version": 1,
 *     "members": {
 *       "b8db:ec0b:...": { "alias": "alice", "firstSeen": "2025-01-01T12:00:00.000Z", "lastSeen": "2025-01-02T08:30:00.000Z" }
 *     }
 *   }
 *
 * At most MAX_KNOWN_MEMBERS are kept: beyond that, the member seen least recently is dropped
 * (someone who knows a room's name could otherwise grow the file without bound by joining
 * with ever new identities). Changes are held in memory until `save()`.
 */
import { ConfigError, errorMessage } from '../errors.js';
import { parseFingerprint } from './fingerprint.js';
import { writePrivateFile } from './identity.js';
import { isoTime, isRecord, readStoreFile, type StoreFileSpec } from '../store-file.js';
import { MAX_ALIAS_BYTES } from './sender-keys.js';

export const KNOWN_MEMBERS_FILE_VERSION = 1;
/** Members kept in the file; the least recently seen go first. */
export const MAX_KNOWN_MEMBERS = 4096;

export interface KnownMemberEntry {
  /** The alias it showed the last time we met (may be empty: it gave none). */
  alias: string;
  /** ISO 8601 time of the first meeting. */
  firstSeen: string;
  /** ISO 8601 time of the latest meeting. */
  lastSeen: string;
}

export interface KnownMember extends KnownMemberEntry {
  fingerprint: string;
}

/** What meeting a member tells: whether we had met before, and who else goes by its alias. */
export interface Meeting {
  /** It was pinned before this store was opened (an earlier call). */
  known: boolean;
  /** When we first met it (now, for a first meeting). */
  firstSeen: string;
  /** Pinned members with another fingerprint whose alias is the same (compared case-insensitively, NFKC). */
  sameAlias: KnownMember[];
}

export class KnownMembers {
  /** Fingerprints pinned when the store was opened: these are `known`. */
  readonly #pinnedBefore: ReadonlySet<string>;
  /** Fingerprints by alias (compared as aliasKey), to find look-alikes without a scan. */
  readonly #byAlias = new Map<string, Set<string>>();

  private constructor(
    /** Where `save()` writes; undefined for a store kept in memory only. */
    readonly path: string | undefined,
    private readonly members: Map<string, KnownMemberEntry>,
    private readonly now: () => Date,
  ) {
    this.#pinnedBefore = new Set(members.keys());
    for (const [fingerprint, entry] of members) this.#index(fingerprint, entry.alias);
  }

  /**
   * Opens the file at `path`; a missing file is an empty store (created on first `save()`).
   * An unreadable or corrupt file is a ConfigError: pins are never dropped silently.
   */
  static async open(path: string, options: { now?: () => Date } = {}): Promise<KnownMembers> {
    const entries = await readStoreFile(path, MEMBERS_FILE_SPEC);
    // Oldest seen first (see meet()); a hand-edited file may be in any order.
    entries.sort(([, a], [, b]) => Date.parse(a.lastSeen) - Date.parse(b.lastSeen));
    const members = new Map(entries.slice(-MAX_KNOWN_MEMBERS));
    return new KnownMembers(path, members, options.now ?? (() => new Date()));
  }

  /** A store that is never written (everyone is new in each process). */
  static inMemory(options: { now?: () => Date } = {}): KnownMembers {
    return new KnownMembers(undefined, new Map(), options.now ?? (() => new Date()));
  }

  /** The pin for a fingerprint (any accepted spelling), if any. */
  lookup(fingerprint: string): KnownMemberEntry | undefined {
    const entry = this.members.get(parseFingerprint(fingerprint));
    return entry === undefined ? undefined : { ...entry };
  }

  /**
   * Records a meeting with `fingerprint` (canonical) showing `alias` now: pins it on the first
   * meeting, updates its alias and lastSeen on later ones.
   */
  meet(fingerprint: string, alias: string): Meeting {
    const sameAlias: KnownMember[] = [];
    for (const other of this.#byAlias.get(aliasKey(alias)) ?? []) {
      const entry = this.members.get(other);
      if (other !== fingerprint && entry !== undefined) sameAlias.push({ fingerprint: other, ...entry });
    }
    const now = this.now().toISOString();
    const existing = this.#forget(fingerprint);
    // Re-inserted so that the map stays ordered by lastSeen (the oldest first, dropped first).
    const entry = { alias, firstSeen: existing?.firstSeen ?? now, lastSeen: now };
    this.members.set(fingerprint, entry);
    this.#index(fingerprint, alias);
    while (this.members.size > MAX_KNOWN_MEMBERS) this.#forget(this.members.keys().next().value as string);
    return { known: this.#pinnedBefore.has(fingerprint), firstSeen: entry.firstSeen, sameAlias };
  }

  #index(fingerprint: string, alias: string): void {
    const key = aliasKey(alias);
    if (key === '') return;
    let set = this.#byAlias.get(key);
    if (set === undefined) this.#byAlias.set(key, (set = new Set()));
    set.add(fingerprint);
  }

  #forget(fingerprint: string): KnownMemberEntry | undefined {
    const entry = this.members.get(fingerprint);
    if (entry === undefined) return undefined;
    this.members.delete(fingerprint);
    const key = aliasKey(entry.alias);
    const set = this.#byAlias.get(key);
    set?.delete(fingerprint);
    if (set?.size === 0) this.#byAlias.delete(key);
    return entry;
  }

  /** All pins, sorted by fingerprint. */
  list(): KnownMember[] {
    return [...this.members]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([fingerprint, entry]) => ({ fingerprint, ...entry }));
  }

  /** Writes the pins atomically with mode 0600 (nothing for an in-memory store). */
  async save(): Promise<void> {
    if (this.path === undefined) return;
    // Written oldest-seen first, so that the order (and which go first) survives a reload.
    const members = Object.fromEntries(this.members);
    try {
      await writePrivateFile(this.path, `${JSON.stringify({ version: KNOWN_MEMBERS_FILE_VERSION, members }, null, 2)}\n`, { overwrite: true });
    } catch (err) {
      throw new ConfigError(`cannot write known members file ${this.path}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** How aliases are compared for look-alikes: NFKC, lowercase, trimmed ("Alice" = "alice" = "ａｌｉｃｅ"). */
function aliasKey(alias: string): string {
  return alias.normalize('NFKC').toLowerCase().trim();
}

const MEMBERS_FILE_SPEC: StoreFileSpec<KnownMemberEntry> = {
  what: 'known members file',
  version: KNOWN_MEMBERS_FILE_VERSION,
  key: 'members',
  suggestion: (path) => `fix ${path} by hand, or move it aside to start over (everyone you meet is then new again)`,
  parseEntry: (fingerprint, value) => [parseFingerprint(fingerprint), parseEntry(value)],
};

function parseEntry(value: unknown): KnownMemberEntry {
  if (!isRecord(value)) throw new Error('not an object');
  if (typeof value.alias !== 'string' || Buffer.byteLength(value.alias) > MAX_ALIAS_BYTES) {
    throw new Error(`"alias" is not a string of at most ${MAX_ALIAS_BYTES} bytes`);
  }
  return { alias: value.alias, firstSeen: isoTime(value, 'firstSeen'), lastSeen: isoTime(value, 'lastSeen') };
}




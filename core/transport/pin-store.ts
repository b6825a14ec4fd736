/**
 * Trust-on-first-use pins for relays, like ssh's known_hosts. The first time a client reaches a
 * relay it records the relay's TLS certificate fingerprint; later connections must present the
 * same one. A fingerprint given explicitly (`--relay-fingerprint`) overrides the pin.
 *
 * File (mode 0600, written atomically; never reset silently when unreadable):
 *
 *   {
 *     "version": 1,
 *     "relays": {
 *       "relay.example.com:4433": {
 *         "fingerprint": "a1b2:c3d4:...",
 *         "firstSeen": "2025-01-01T12:00:00.000Z",
 *         "lastSeen": "2025-01-02T08:30:00.000Z"
 *       }
 *     }
 *   }
 *
 * Relays are keyed by `HOST:PORT` as the user typed it, normalised: lowercase host, IPv6 in
 * brackets in canonical form (`[2001:db8::1]:4433`), port without leading zeros. Changes are
 * held in memory until `save()`, which writes them over the file as it is then: clients save
 * after every connection (a pin's `lastSeen`), so another wzp process's pins recorded
 * meanwhile must survive it.
 */
import { isIPv6 } from 'node:net';
import { ConfigError, FingerprintMismatchError, UsageError, type WzpError, errorMessage } from '../errors.js';
import { parseFingerprint } from '../crypto/fingerprint.js';
import { writePrivateFile } from '../crypto/identity.js';
import { isoTime, isRecord, readStoreFile, type StoreFileSpec } from '../store-file.js';

export const PIN_FILE_VERSION = 1;

export interface PinEntry {
  /** Canonical `xxxx:xxxx:...` SHA-256 of the relay's DER certificate. */
  fingerprint: string;
  /** ISO 8601 time the pin was recorded. */
  firstSeen: string;
  /** ISO 8601 time the relay last presented this fingerprint. */
  lastSeen: string;
}

export interface PinnedRelay extends PinEntry {
  /** Normalised `HOST:PORT`. */
  relay: string;
}

/** `pinned-new`: no pin held this fingerprint before and one is now recorded. `match`: the pin held. */
export type PinCheckResult = 'pinned-new' | 'match';

export interface PinCheckOptions {
  /** A fingerprint the user gave explicitly (`--relay-fingerprint`); it overrides any stored pin. */
  explicit?: string;
}

export class PinStore {
  /** Entries this store changed since it was opened (null: forgotten), applied by save(). */
  private readonly changed = new Map<string, PinEntry | null>();

  private constructor(
    /** Where `save()` writes. */
    readonly path: string,
    private readonly pins: Map<string, PinEntry>,
    private readonly now: () => Date,
  ) {}

  /**
   * Opens the pin file at `path`; a missing file is an empty store (created on first `save()`).
   * An unreadable or corrupt file is a ConfigError: pins are never dropped silently.
   */
  static async open(path: string, options: { now?: () => Date } = {}): Promise<PinStore> {
    const pins = new Map(await readStoreFile(path, PIN_FILE_SPEC));
    return new PinStore(path, pins, options.now ?? (() => new Date()));
  }

  /** The pin for `relay` (`HOST:PORT`), if any. */
  lookup(relay: string): PinEntry | undefined {
    const entry = this.pins.get(normaliseRelayAddress(relay));
    return entry === undefined ? undefined : { ...entry };
  }

  /**
   * Checks the fingerprint a relay presented. With `explicit`, the presented fingerprint must
   * equal it and then replaces any stored pin. Without, the first contact records a pin and
   * later contacts must match it. A mismatch is a FingerprintMismatchError; nothing is changed.
   */
  check(relay: string, presentedFingerprint: string, options: PinCheckOptions = {}): PinCheckResult {
    const key = normaliseRelayAddress(relay);
    const presented = parseFingerprint(presentedFingerprint);
    const pinned = this.pins.get(key);
    if (options.explicit !== undefined) {
      const explicit = parseFingerprint(options.explicit);
      if (explicit !== presented) throw explicitMismatch(key, explicit, presented);
    } else if (pinned !== undefined && pinned.fingerprint !== presented) {
      throw pinMismatch(key, pinned, presented);
    }
    const now = this.now().toISOString();
    if (pinned?.fingerprint === presented) {
      pinned.lastSeen = now;
      this.changed.set(key, pinned);
      return 'match';
    }
    const entry = { fingerprint: presented, firstSeen: now, lastSeen: now };
    this.pins.set(key, entry);
    this.changed.set(key, entry);
    return 'pinned-new';
  }

  /** Removes the pin for `relay`; true if there was one. */
  forget(relay: string): boolean {
    const key = normaliseRelayAddress(relay);
    const had = this.pins.delete(key);
    if (had) this.changed.set(key, null);
    return had;
  }

  /** All pins, sorted by relay. */
  list(): PinnedRelay[] {
    return [...this.pins]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([relay, entry]) => ({ relay, ...entry }));
  }

  /**
   * Writes this store's changes over the file as it is now (pins other processes recorded since
   * this store was opened are kept), atomically with mode 0600. Nothing changed: nothing written.
   */
  async save(): Promise<void> {
    if (this.changed.size === 0) return;
    const current = new Map(await readStoreFile(this.path, PIN_FILE_SPEC));
    for (const [key, entry] of this.changed) {
      if (entry === null) current.delete(key);
      else current.set(key, { ...entry });
    }
    for (const [key, entry] of current) if (!this.changed.has(key)) this.pins.set(key, entry);
    const relays = Object.fromEntries(
      [...current].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([relay, entry]) => [relay, entry]),
    );
    try {
      await writePrivateFile(this.path, `${JSON.stringify({ version: PIN_FILE_VERSION, relays }, null, 2)}\n`, { overwrite: true });
    } catch (err) {
      throw new ConfigError(`cannot write relay pin file ${this.path}: ${errorMessage(err)}`, { cause: err });
    }
    this.changed.clear();
  }
}

/**
 * Canonical pin key for `HOST:PORT`: lowercase host, IPv6 bracketed and compressed, decimal
 * port 1-65535. Anything else (including unbracketed IPv6) is a UsageError.
 */
export function normaliseRelayAddress(relay: string): string {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(relay.trim()) ?? /^([^:[\]]+):(\d+)$/.exec(relay.trim());
  if (match === null) {
    throw new UsageError(`relay address "${relay}" is not HOST:PORT`, {
      suggestions: ['give the port, e.g. relay.example.com:4433', 'write IPv6 addresses in brackets, e.g. [2001:db8::1]:4433'],
    });
  }
  const [, host, portText] = match;
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new UsageError(`relay address "${relay}" has port ${portText}; ports are 1-65535`);
  if (relay.trim().startsWith('[')) {
    if (!isIPv6(host)) throw new UsageError(`relay address "${relay}" has "${host}" in brackets, which is not an IPv6 address`);
    return `${canonicalIPv6(host)}:${port}`;
  }
  return `${host.toLowerCase()}:${port}`;
}

/** `[::1]` for `0:0:0:0:0:0:0:1`; addresses with a zone id (`fe80::1%eth0`) are only lowercased. */
function canonicalIPv6(address: string): string {
  try {
    return new URL(`http://[${address}]/`).hostname;
  } catch {
    return `[${address.toLowerCase()}]`;
  }
}

const PIN_FILE_SPEC: StoreFileSpec<PinEntry> = {
  what: 'relay pin file',
  version: PIN_FILE_VERSION,
  key: 'relays',
  suggestion: (path) => `fix ${path} by hand, or move it aside to start over (every relay is then pinned again on first contact)`,
  parseEntry: (relay, value) => [normaliseRelayAddress(relay), parsePinEntry(value)],
};

function parsePinEntry(value: unknown): PinEntry {
  if (!isRecord(value)) throw new Error('not an object');
  if (typeof value.fingerprint !== 'string') throw new Error('no "fingerprint" string');
  return {
    fingerprint: parseFingerprint(value.fingerprint),
    firstSeen: isoTime(value, 'firstSeen'),
    lastSeen: isoTime(value, 'lastSeen'),
  };
}

function pinMismatch(relay: string, pinned: PinEntry, presented: string): WzpError {
  return new FingerprintMismatchError(
    [
      `relay ${relay} presented a different certificate than the one pinned for it`,
      `  expected:  ${pinned.fingerprint} (pinned ${pinned.firstSeen})`,
      `  presented: ${presented}`,
      'Someone may be intercepting the connection, or the relay was given a new identity.',
    ].join('\n'),
    {
      suggestions: [
        `if the relay operator confirms the new fingerprint, forget the old pin: wzp pins forget ${relay}`,
        `or connect once with --relay-fingerprint ${presented} after checking it with the operator`,
      ],
    },
  );
}

function explicitMismatch(relay: string, explicit: string, presented: string): WzpError {
  return new FingerprintMismatchError(
    [
      `relay ${relay} presented a certificate that does not match --relay-fingerprint`,
      `  expected:  ${explicit}`,
      `  presented: ${presented}`,
    ].join('\n'),
    { suggestions: ["ask the relay operator for the relay's current fingerprint and check every group"] },
  );
}

/**
 * A wzp identity: 24 BIP39 English words (256 bits of entropy) from which every long-term key
 * is derived. The 32-byte *seed* is the BIP39 entropy itself, not the PBKDF2 "BIP39 seed":
 * the entropy is already uniformly random, HKDF with a distinct info string per key gives
 * independent keys, and no passphrase semantics or 2048-round stretching are wanted.
 *
 *   seed = BIP39 entropy (32 bytes)
 *   identity key = Ed25519 private key seeded with HKDF-SHA256(seed, salt "", "wzp-identity-ed25519", 32)
 *   fingerprint  = SHA-256(raw 32-byte public key), shown as `xxxx:xxxx:...` (see fingerprint.ts)
 *
 * The identity file is JSON `{"version":1,"mnemonic":"..."}`, mode 0600 in a 0700 directory,
 * written atomically. Error messages never echo the words: they are the secret.
 */
import { createPrivateKey, createPublicKey, hkdfSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { link, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { entropyToMnemonic, mnemonicToEntropy } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { ConfigError, UsageError, type WzpError, errorMessage } from '../errors.js';
import { sha256Fingerprint, shortFingerprint } from './fingerprint.js';

export const MNEMONIC_WORDS = 24;
export const SEED_BYTES = 32;
export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;
/** HKDF info string for the identity signing key. */
export const IDENTITY_KEY_INFO = 'wzp-identity-ed25519';
export const IDENTITY_FILE_VERSION = 1;

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const WORDS = new Set(wordlist);
const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;

export interface Ed25519KeyPair {
  privateKey: KeyObject;
  /** Raw 32-byte public key. */
  publicKey: Uint8Array;
}

/** An Ed25519 key pair whose private key seed is HKDF-SHA256(seed, salt "", info, 32). */
export function deriveEd25519Key(seed: Uint8Array, info: string): Ed25519KeyPair {
  const keySeed = new Uint8Array(hkdfSync('sha256', seed, new Uint8Array(0), info, 32));
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, keySeed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length)) };
}

export class Identity {
  /** The 24 recovery words, lowercase, single-spaced. Secret. */
  readonly mnemonic: string;
  /** The BIP39 entropy every key is derived from. Secret. */
  readonly seed: Uint8Array;
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  readonly privateKey: KeyObject;
  /** SHA-256 of `publicKey`, `xxxx:xxxx:...` (16 groups). */
  readonly fingerprint: string;
  /** First four groups of `fingerprint`, for display. */
  readonly shortFingerprint: string;

  /** Builds the identity for a 32-byte seed (BIP39 entropy). */
  constructor(seed: Uint8Array) {
    if (seed.length !== SEED_BYTES) throw new RangeError(`identity seed must be ${SEED_BYTES} bytes, got ${seed.length}`);
    this.seed = Uint8Array.from(seed);
    this.mnemonic = entropyToMnemonic(this.seed, wordlist);
    const { privateKey, publicKey } = deriveEd25519Key(this.seed, IDENTITY_KEY_INFO);
    this.privateKey = privateKey;
    this.publicKey = publicKey;
    this.fingerprint = sha256Fingerprint(publicKey);
    this.shortFingerprint = shortFingerprint(this.fingerprint);
  }

  /** Ed25519 signature (64 bytes) over `data`. */
  sign(data: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, data, this.privateKey));
  }

  /** Checks an Ed25519 signature; malformed keys or signatures are simply invalid (false). */
  static verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
    if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES || signature.length !== ED25519_SIGNATURE_BYTES) return false;
    try {
      const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
      return verify(null, data, key, signature);
    } catch {
      return false; // not a valid curve point
    }
  }

  /** Serialises only public facts, so an identity can never leak into a JSON report. */
  toJSON(): { fingerprint: string; publicKey: string } {
    return { fingerprint: this.fingerprint, publicKey: Buffer.from(this.publicKey).toString('hex') };
  }

  [inspect.custom](): string {
    return `Identity <${this.fingerprint}>`;
  }
}

/** A fresh identity from 256 bits of CSPRNG entropy. */
export function generateIdentity(): Identity {
  return new Identity(randomBytes(SEED_BYTES));
}

/**
 * The identity for 24 recovery words. Case and whitespace do not matter. Wrong word count,
 * words outside the BIP39 English list, or a bad checksum are UsageErrors that say which
 * positions are wrong without repeating the words.
 */
export function identityFromMnemonic(words: string): Identity {
  return new Identity(entropyFromMnemonic(words));
}

/** Lowercase, NFKD, single spaces: the form BIP39 checks and we store. */
export function normaliseMnemonic(words: string): string {
  return words.normalize('NFKD').toLowerCase().trim().split(/\s+/).join(' ');
}

function entropyFromMnemonic(input: string): Uint8Array {
  const normalised = normaliseMnemonic(input);
  const words = normalised === '' ? [] : normalised.split(' ');
  if (words.length !== MNEMONIC_WORDS) {
    throw new UsageError(`an identity is ${MNEMONIC_WORDS} recovery words; got ${words.length}`, {
      suggestions: ['enter all 24 words in order, separated by spaces'],
    });
  }
  const unknownPositions = words.flatMap((word, i) => (WORDS.has(word) ? [] : [i + 1]));
  if (unknownPositions.length > 0) {
    const where = unknownPositions.length === 1 ? `word ${unknownPositions[0]} is` : `words ${unknownPositions.join(', ')} are`;
    throw new UsageError(`recovery ${where} not in the BIP39 English word list`, {
      suggestions: ['check the spelling: the first four letters of each word identify it uniquely'],
    });
  }
  try {
    return mnemonicToEntropy(normalised, wordlist);
  } catch {
    throw new UsageError('the recovery words fail their checksum: a word is wrong or two are swapped', {
      suggestions: ['compare each word and its position with your written copy'],
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Identity file

export interface LoadOrCreateResult {
  identity: Identity;
  /** True when no file existed and a new identity was generated and saved. */
  created: boolean;
}

/**
 * Loads the identity at `path`; when the file is missing, generates and saves one if
 * `create` is set, otherwise fails with a ConfigError saying how to create one.
 */
export async function loadOrCreateIdentity(path: string, options: { create: boolean }): Promise<LoadOrCreateResult> {
  const text = await readIdentityFile(path);
  if (text !== undefined) return { identity: parseIdentityFile(path, text), created: false };
  if (!options.create) throw missingIdentityError(path);
  const identity = generateIdentity();
  try {
    await writePrivateFile(path, serialiseIdentity(identity), { overwrite: false });
  } catch (err) {
    if (hasErrorCode(err, 'EEXIST')) return { identity: await loadIdentity(path), created: false }; // lost a race
    throw fileError('cannot write identity file', path, err);
  }
  return { identity, created: true };
}

/** Loads the identity at `path`, refusing files other users can read. */
export async function loadIdentity(path: string): Promise<Identity> {
  const text = await readIdentityFile(path);
  if (text === undefined) throw missingIdentityError(path);
  return parseIdentityFile(path, text);
}

/** Saves `identity` to `path` (0600, atomic). Refuses to replace an existing file unless `overwrite`. */
export async function saveIdentity(path: string, identity: Identity, options: { overwrite?: boolean } = {}): Promise<void> {
  const overwrite = options.overwrite ?? false;
  try {
    await writePrivateFile(path, serialiseIdentity(identity), { overwrite });
  } catch (err) {
    if (hasErrorCode(err, 'EEXIST')) {
      throw new ConfigError(`identity file ${path} already exists; not replacing it`, {
        suggestions: ['move the existing file aside first if you really mean to replace it (write down its 24 words before)'],
      });
    }
    throw fileError('cannot write identity file', path, err);
  }
}

export interface RestoreResult {
  identity: Identity;
  /** The file already held this identity: nothing was written. */
  unchanged: boolean;
  /** The fingerprint of the identity the file held before and --force replaced. */
  replaced?: string;
}

/**
 * Restores the identity of `words` (24 recovery words) into `path`. A file holding the same
 * identity is left as it is; one holding another identity (or one that cannot be read as an
 * identity) is replaced only with `force`, else a ConfigError names it and its fingerprint.
 * The words are never repeated in an error.
 */
export async function restoreIdentity(path: string, words: string, options: { force?: boolean } = {}): Promise<RestoreResult> {
  const identity = identityFromMnemonic(words);
  let existing: Identity | undefined;
  let unreadable: unknown;
  try {
    existing = (await readIdentityFile(path)) === undefined ? undefined : await loadIdentity(path);
  } catch (err) {
    unreadable = err;
  }
  if (existing?.fingerprint === identity.fingerprint) return { identity, unchanged: true };
  if ((existing !== undefined || unreadable !== undefined) && !options.force) {
    const what = existing ? `another identity (fingerprint ${existing.fingerprint})` : `a file that is not a usable identity (${errorMessage(unreadable)})`;
    throw new ConfigError(`identity file ${path} already holds ${what}; not replacing it`, {
      suggestions: [
        existing ? 'write down its 24 words first (`wzp identity --show-mnemonic`): they are the only way back to it' : 'move the file aside if you want to keep it',
        'then restore with --force, or restore into another file with --identity',
      ],
    });
  }
  await saveIdentity(path, identity, { overwrite: true });
  return { identity, unchanged: false, ...(existing ? { replaced: existing.fingerprint } : {}) };
}

function serialiseIdentity(identity: Identity): string {
  return `${JSON.stringify({ version: IDENTITY_FILE_VERSION, mnemonic: identity.mnemonic })}\n`;
}

/** Never attaches the JSON parser's error: its message quotes the file, i.e. the secret words. */
function parseIdentityFile(path: string, text: string): Identity {
  const restore = [`restore ${path} from a backup, or recreate it from your 24 recovery words: wzp identity --restore --force --identity ${path} (the words are read from stdin)`];
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ConfigError(`identity file ${path} is not valid JSON`, { suggestions: restore });
  }
  const fields: Record<string, unknown> = typeof doc === 'object' && doc !== null ? { ...doc } : {};
  if (fields.version !== IDENTITY_FILE_VERSION) {
    const version = JSON.stringify(fields.version) ?? 'missing';
    throw new ConfigError(`identity file ${path} has unsupported version ${version}; this wzp reads version ${IDENTITY_FILE_VERSION}`, {
      suggestions: ['upgrade wzp if the file was written by a newer version', ...restore],
    });
  }
  if (typeof fields.mnemonic !== 'string') {
    throw new ConfigError(`identity file ${path} has no "mnemonic" string`, { suggestions: restore });
  }
  try {
    return identityFromMnemonic(fields.mnemonic);
  } catch (err) {
    throw new ConfigError(`identity file ${path} holds invalid recovery words: ${errorMessage(err)}`, {
      cause: err,
      suggestions: restore,
    });
  }
}

function missingIdentityError(path: string): WzpError {
  return new ConfigError(`no identity file at ${path}`, {
    suggestions: ['create one with `wzp identity --create`'],
  });
}

/**
 * The identity file's text, or undefined when it does not exist. Like ssh with private keys,
 * refuses a file that group or others can access.
 */
async function readIdentityFile(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return undefined;
    throw fileError('cannot read identity file', path, err);
  }
  try {
    const { mode } = await handle.stat();
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new ConfigError(`identity file ${path} is accessible by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); refusing to use it`, {
        suggestions: [`chmod 600 ${path}`],
      });
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Private files (also used by the relay pin store)

/**
 * Writes `data` to `path` atomically with mode 0600, creating the parent directory with mode
 * 0700. The data goes to a temporary file in the same directory, is fsynced, then renamed
 * over `path` (`overwrite`) or hard-linked to it, which fails with EEXIST if `path` exists.
 * Node's errors pass through unchanged for the caller to word.
 */
export async function writePrivateFile(path: string, data: string, options: { overwrite: boolean }): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(temp, 'wx', PRIVATE_FILE_MODE);
    try {
      await handle.writeFile(data, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await (options.overwrite ? rename(temp, path) : link(temp, path));
  } finally {
    await rm(temp, { force: true });
  }
}

/** True when `err` is a Node system error with the given `code` (ENOENT, EEXIST, ...). */
export function hasErrorCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && err.code === code;
}

function fileError(what: string, path: string, cause: unknown): WzpError {
  const reason = hasErrorCode(cause, 'EACCES') || hasErrorCode(cause, 'EPERM') ? 'permission denied' : (cause as Error).message;
  return new ConfigError(`${what} ${path}: ${reason}`, { cause });
}

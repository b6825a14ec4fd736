/**
 * Who may join a room, from the command line of `wzp call` and `wzp record`: the room secret
 * (`--room-secret`, `--room-secret-file`, env WZP_ROOM_SECRET) and the allow list (`--allow`).
 * See docs/e2e-encryption.md ("Room admission").
 */
import { readFile } from 'node:fs/promises';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { validateRoomSecret } from '../../core/crypto/room-name.js';
import { ConfigError, UsageError, errorMessage, isWzpError } from '../../core/errors.js';

/** The environment variable a room secret can come from (the flags win over it). */
export const ROOM_SECRET_ENV = 'WZP_ROOM_SECRET';

/**
 * The room secret: `--room-secret`, else the first line of `--room-secret-file` (trimmed),
 * else WZP_ROOM_SECRET; undefined when none is given. An unreadable file is a ConfigError; an
 * empty or invalid secret is a UsageError (messages never repeat the secret).
 */
export async function resolveRoomSecret(opts: { secret?: string; secretFile?: string; env?: NodeJS.ProcessEnv }): Promise<string | undefined> {
  let secret: string | undefined;
  let from: string;
  if (opts.secret !== undefined) {
    secret = opts.secret;
    from = '--room-secret';
  } else if (opts.secretFile !== undefined) {
    let text: string;
    try {
      text = await readFile(opts.secretFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read the room secret file ${opts.secretFile}: ${errorMessage(err)}`, { cause: err });
    }
    secret = (text.split(/\r?\n/, 1)[0] ?? '').trim();
    from = `the room secret file ${opts.secretFile}`;
    if (secret === '') {
      throw new UsageError(`${from} is empty: the secret is its first line`, {
        suggestions: ['write the secret on the first line of the file'],
      });
    }
  } else {
    secret = (opts.env ?? process.env)[ROOM_SECRET_ENV];
    from = ROOM_SECRET_ENV;
  }
  if (secret === undefined) return undefined;
  try {
    validateRoomSecret(secret);
  } catch (err) {
    throw new UsageError(`${from}: ${errorMessage(err)}`, { cause: err, suggestions: ['unset it, or give the secret the room was created with'] });
  }
  return secret;
}

/**
 * The allow list from `--allow` values: fingerprints in any accepted spelling (see
 * core/crypto/fingerprint.ts), or `@FILE` with one per line (blank lines and `#` comments
 * ignored). Returns canonical fingerprints, undefined when no `--allow` was given. A value that
 * is not a fingerprint is a UsageError naming it (and its file and line); an unreadable file
 * a ConfigError.
 */
export async function resolveAllowList(values: readonly string[] | undefined, flag = '--allow'): Promise<string[] | undefined> {
  if (values === undefined || values.length === 0) return undefined;
  const allowed = new Set<string>();
  for (const value of values) {
    if (value.startsWith('@')) {
      for (const fingerprint of await readAllowFile(value.slice(1), flag)) allowed.add(fingerprint);
    } else {
      allowed.add(fingerprintOf(value, `${flag} ${value}`));
    }
  }
  return [...allowed];
}

async function readAllowFile(path: string, flag: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the allow list ${path} (${flag}): ${errorMessage(err)}`, { cause: err });
  }
  const out: string[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line !== '') out.push(fingerprintOf(line, `${flag} @${path} line ${i + 1}`));
  }
  if (out.length === 0) {
    throw new UsageError(`${flag} @${path} names no fingerprint`, { suggestions: ['put one fingerprint per line in the file (# starts a comment)'] });
  }
  return out;
}

function fingerprintOf(value: string, where: string): string {
  try {
    return parseFingerprint(value);
  } catch (err) {
    if (!isWzpError(err)) throw err;
    throw new UsageError(`${where}: ${err.message}`, {
      cause: err,
      suggestions: ['give the full fingerprint of an identity (wzp identity shows yours), 64 hex digits'],
    });
  }
}

/** A fingerprint given on the command line, or `@FILE` holding it (the first non-comment line). */
export async function readFingerprintArg(value: string, flag: string): Promise<string> {
  if (!value.startsWith('@')) {
    try {
      return parseFingerprint(value);
    } catch (err) {
      throw new UsageError(`${flag} ${value}: ${(err as Error).message}`, { suggestions: ['give the full fingerprint (wzp identity shows yours), 64 hex digits'] });
    }
  }
  const list = await resolveAllowList([value], flag);
  if (!list || list.length !== 1) throw new UsageError(`${flag} ${value}: the file must hold exactly one fingerprint`);
  return list[0];
}

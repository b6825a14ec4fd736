/** `wzp identity`: create, show or restore the user's identity. */
import { readFile } from 'node:fs/promises';
import { loadOrCreateIdentity, restoreIdentity, type Identity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { ConfigError, UsageError, errorMessage } from '../../core/errors.js';

export interface IdentityReport {
  path: string;
  created: boolean;
  /** With --restore: written from the recovery words (false: the file already held them). */
  restored?: boolean;
  /** With --restore --force: the fingerprint of the identity the file held before. */
  replaced?: string;
  /** SHA-256 of the Ed25519 public key. */
  fingerprint: string;
  publicKey: string;
  /** Fingerprint of the TLS certificate derived from the same seed (what peers pin). */
  tlsFingerprint: string;
  /** The 24 recovery words, only when asked for. */
  mnemonic?: string;
}

export async function showIdentity(opts: { path: string; create: boolean; revealMnemonic: boolean }): Promise<IdentityReport> {
  const { identity, created } = await loadOrCreateIdentity(opts.path, { create: opts.create });
  return describe(opts.path, identity, { created }, opts.revealMnemonic);
}

/**
 * Restore an identity from its 24 words, read from a file or from stdin (never from the
 * command line, where `ps` and shell history would show them).
 */
export async function restoreIdentityFromWords(opts: {
  path: string;
  /** A file holding the words; undefined or '-': stdin. */
  wordsFile?: string;
  force: boolean;
  revealMnemonic: boolean;
  /** Ask for the words on a terminal (stderr), without echoing them. */
  prompt?(text: string): void;
}): Promise<IdentityReport> {
  const words = opts.wordsFile === undefined || opts.wordsFile === '-' ? await readWordsFromStdin(opts.prompt) : await readWordsFile(opts.wordsFile);
  const r = await restoreIdentity(opts.path, words, { force: opts.force });
  return describe(opts.path, r.identity, { created: false, restored: !r.unchanged, ...(r.replaced ? { replaced: r.replaced } : {}) }, opts.revealMnemonic);
}

async function describe(path: string, identity: Identity, how: Pick<IdentityReport, 'created' | 'restored' | 'replaced'>, revealMnemonic: boolean): Promise<IdentityReport> {
  const tls = await deriveTlsCertificate(identity.seed);
  return {
    path,
    ...how,
    fingerprint: identity.fingerprint,
    publicKey: Buffer.from(identity.publicKey).toString('hex'),
    tlsFingerprint: tls.fingerprint,
    ...(revealMnemonic ? { mnemonic: identity.mnemonic } : {}),
  };
}

/** Far more than 24 words take; a larger input is not a list of recovery words. */
const MAX_WORDS_BYTES = 4096;

async function readWordsFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the recovery words from ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (text.length > MAX_WORDS_BYTES) throw new UsageError(`${path} is too large to be 24 recovery words`);
  return text;
}

/**
 * The words from stdin: on a terminal one line typed without echo (after a prompt on stderr),
 * otherwise everything piped in.
 */
async function readWordsFromStdin(prompt?: (text: string) => void): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) {
    prompt?.('Enter your 24 recovery words (not shown), then Enter: ');
    return readHiddenLine(stdin);
  }
  let text = '';
  for await (const chunk of stdin) {
    text += String(chunk);
    if (text.length > MAX_WORDS_BYTES) throw new UsageError('stdin is too large to be 24 recovery words');
  }
  return text;
}

function readHiddenLine(stdin: NodeJS.ReadStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let line = '';
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.off('data', onData);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new UsageError('restore cancelled'));
        if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
        else if (line.length < MAX_WORDS_BYTES) line += ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

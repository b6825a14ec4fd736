/**
 * Fingerprints: SHA-256 digests shown to people as lowercase hex in colon-separated groups of
 * four characters, e.g. `a1b2:c3d4:...` (16 groups). The short form is the first four groups.
 *
 * One format serves both identity fingerprints (SHA-256 of the raw Ed25519 public key) and
 * certificate fingerprints (SHA-256 of the DER certificate), so users compare and paste them
 * the same way everywhere.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';

/** Bytes in a SHA-256 digest. */
export const FINGERPRINT_BYTES = 32;
const HEX_DIGITS = FINGERPRINT_BYTES * 2;
const GROUP_LENGTH = 4;
const SHORT_GROUPS = 4;
const SEPARATOR = ':';

/** SHA-256 of `data`, formatted as a fingerprint. */
export function sha256Fingerprint(data: Uint8Array): string {
  return formatFingerprint(createHash('sha256').update(data).digest());
}

/** Formats a 32-byte digest as `xxxx:xxxx:...`. */
export function formatFingerprint(digest: Uint8Array): string {
  if (digest.length !== FINGERPRINT_BYTES) {
    throw new RangeError(`fingerprint digest must be ${FINGERPRINT_BYTES} bytes, got ${digest.length}`);
  }
  return groupHex(Buffer.from(digest).toString('hex'));
}

/** The first four groups of a fingerprint (`a1b2:c3d4:e5f6:a7b8`), for display only. */
export function shortFingerprint(fingerprint: string): string {
  return parseFingerprint(fingerprint).split(SEPARATOR).slice(0, SHORT_GROUPS).join(SEPARATOR);
}

/**
 * Normalises a fingerprint typed or pasted by a user (e.g. `--relay-fingerprint`): accepts any
 * case, with or without colons (spaces and dashes are tolerated as separators too), and returns
 * the canonical `xxxx:xxxx:...` form. Anything that is not exactly 64 hex digits is a UsageError.
 */
export function parseFingerprint(input: string): string {
  const hex = input.trim().toLowerCase().replace(/[:\s-]/g, '');
  if (!/^[0-9a-f]*$/.test(hex)) {
    throw new UsageError(`fingerprint "${input}" contains characters other than hex digits and ':'`, {
      suggestions: [`copy the full fingerprint, ${HEX_DIGITS} hex digits in groups such as a1b2:c3d4:...`],
    });
  }
  if (hex.length !== HEX_DIGITS) {
    throw new UsageError(`fingerprint "${input}" has ${hex.length} hex digits; a SHA-256 fingerprint has ${HEX_DIGITS}`, {
      suggestions: ['copy the full fingerprint, not the short form (the first 4 groups are for display only)'],
    });
  }
  return groupHex(hex);
}

/** True when two fingerprints (in any accepted input form) denote the same digest. */
export function fingerprintsEqual(a: string, b: string): boolean {
  return parseFingerprint(a) === parseFingerprint(b);
}

function groupHex(hex: string): string {
  const groups: string[] = [];
  for (let i = 0; i < hex.length; i += GROUP_LENGTH) groups.push(hex.slice(i, i + GROUP_LENGTH));
  return groups.join(SEPARATOR);
}

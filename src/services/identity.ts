/** `wzp identity`: create or show the user's identity. */
import { loadOrCreateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';

export interface IdentityReport {
  path: string;
  created: boolean;
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
  const tls = await deriveTlsCertificate(identity.seed);
  return {
    path: opts.path,
    created,
    fingerprint: identity.fingerprint,
    publicKey: Buffer.from(identity.publicKey).toString('hex'),
    tlsFingerprint: tls.fingerprint,
    ...(opts.revealMnemonic ? { mnemonic: identity.mnemonic } : {}),
  };
}

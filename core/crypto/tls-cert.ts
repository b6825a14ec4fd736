/**
 * The TLS certificate a wzp node presents in QUIC handshakes, derived from its identity seed so
 * that a relay keeps the same certificate, and therefore the same pinned fingerprint, across
 * restarts and reinstalls from the same 24 words.
 *
 *   TLS key     = Ed25519 private key seeded with HKDF-SHA256(seed, salt "", "wzp-tls-ed25519", 32)
 *   certificate = self-signed X.509 v3, serial 01, valid 2020-01-01 .. 2099-12-31 (UTC),
 *                 subject = issuer = CN=wzp-<identity short fingerprint without colons>,
 *                 basicConstraints cA=false (critical), keyUsage digitalSignature (critical)
 *   fingerprint = SHA-256 of the DER certificate, formatted like identity fingerprints
 *
 * Ed25519 signatures are deterministic and every field is fixed, so the DER bytes are identical
 * on every derivation. Any change here (or an encoding change in @peculiar/x509) changes every
 * relay's fingerprint and breaks all pins: the golden test in test/crypto guards it.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { deriveEd25519Key, Identity, type Ed25519KeyPair } from './identity.js';
import { sha256Fingerprint } from './fingerprint.js';

export { fingerprintsEqual, parseFingerprint, shortFingerprint } from './fingerprint.js';

/** HKDF info string for the TLS certificate key. */
export const TLS_KEY_INFO = 'wzp-tls-ed25519';
const SERIAL_NUMBER = '01';
const NOT_BEFORE = new Date('2020-01-01T00:00:00Z');
const NOT_AFTER = new Date('2099-12-31T23:59:59Z');
const ED25519 = { name: 'Ed25519' } as const;
/** @peculiar/x509 types its provider with the DOM `Crypto`, which Node's webcrypto implements. */
type X509Crypto = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1];

export interface TlsCertificate {
  /** PKCS#8 PEM private key (for @matrixai/quic config `key`). Secret. */
  keyPem: string;
  /** PEM certificate (for @matrixai/quic config `cert`). */
  certPem: string;
  certDer: Uint8Array;
  /** SHA-256 of `certDer`, `xxxx:xxxx:...`: what clients pin. */
  fingerprint: string;
}

/** Derives the deterministic TLS key and self-signed certificate for a 32-byte identity seed. */
export async function deriveTlsCertificate(seed: Uint8Array): Promise<TlsCertificate> {
  const identity = new Identity(seed);
  const key = deriveEd25519Key(identity.seed, TLS_KEY_INFO);
  const keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const cert = await selfSign(key, subjectName(identity));
  const certDer = new Uint8Array(cert.rawData);
  return { keyPem, certPem: cert.toString('pem'), certDer, fingerprint: certFingerprint(certDer) };
}

/** SHA-256 of a DER certificate, formatted as a fingerprint (what a QUIC verify callback compares). */
export function certFingerprint(der: Uint8Array): string {
  return sha256Fingerprint(der);
}

function subjectName(identity: Identity): string {
  return `CN=wzp-${identity.shortFingerprint.replaceAll(':', '')}`;
}

async function selfSign(key: Ed25519KeyPair, name: string): Promise<x509.X509Certificate> {
  const pkcs8 = key.privateKey.export({ format: 'der', type: 'pkcs8' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, ED25519, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('raw', key.publicKey, ED25519, true, ['verify']);
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: SERIAL_NUMBER,
      name,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      keys: { privateKey, publicKey },
      signingAlgorithm: ED25519,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    },
    webcrypto as unknown as X509Crypto,
  );
}

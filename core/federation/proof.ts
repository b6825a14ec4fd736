/**
 * How a relay that dials another proves which relay it is (docs/federation.md, "Links").
 *
 * The dialling relay checks the accepting relay's certificate in the QUIC handshake (it pins
 * the fingerprint its [[peers]] entry names: core/transport/quic.ts expectFingerprint). The
 * accepting relay's QUIC server does not ask clients for certificates (its clients have
 * none), so the dialler proves its own the way a client proves its identity to presence
 * (core/relay/presence.ts: a challenge, signed): it sends its certificate (whose SHA-256 is
 * its fingerprint), the acceptor answers a fresh random nonce, and the dialler signs
 *
 *   "wzp-relay-link-v1" 0x00 nonce (32 bytes) acceptor fingerprint (79 chars) dialler fingerprint (79 chars)
 *
 * with the certificate's Ed25519 key (the relay's TLS key, derived from its seed:
 * core/crypto/tls-cert.ts). Binding both fingerprints stops a relay from replaying a proof
 * made for another relay; the nonce stops replay on another connection. Node's own
 * X509Certificate parses the certificate (no X.509 library to load for this).
 */
import { createHash, createPrivateKey, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { formatFingerprint } from '../crypto/fingerprint.js';

export const LINK_PROOF_LABEL = 'wzp-relay-link-v1';

/** This relay's certificate and its key, to prove itself to relays it dials. */
export interface LinkCredentials {
  fingerprint: string;
  /** The DER certificate. */
  certDer: Uint8Array;
  privateKey: KeyObject;
}

/** Credentials from a relay's TLS material (PEM key and certificate). */
export function linkCredentials(tls: { keyPem: string; certPem: string }): LinkCredentials {
  const cert = new X509Certificate(tls.certPem);
  const certDer = new Uint8Array(cert.raw);
  return { fingerprint: formatFingerprint(createHash('sha256').update(certDer).digest()), certDer, privateKey: createPrivateKey(tls.keyPem) };
}

function proofInput(nonceHex: string, acceptor: string, dialler: string): Buffer {
  return Buffer.concat([Buffer.from(LINK_PROOF_LABEL), Buffer.from([0]), Buffer.from(nonceHex, 'hex'), Buffer.from(acceptor), Buffer.from(dialler)]);
}

/** The dialler's signature (base64) over a challenge from `acceptor`. */
export function signLinkProof(creds: LinkCredentials, nonceHex: string, acceptor: string): string {
  return sign(null, proofInput(nonceHex, acceptor, creds.fingerprint), creds.privateKey).toString('base64');
}

/**
 * Why a dialler's proof does not hold (undefined: it holds): the certificate must hash to the
 * claimed fingerprint, hold an Ed25519 key, and that key must have signed this challenge.
 */
export function linkProofProblem(p: { certificateBase64: string; claimed: string; nonceHex: string; acceptor: string; signatureBase64: string }): string | undefined {
  const der = Buffer.from(p.certificateBase64, 'base64');
  const fp = formatFingerprint(createHash('sha256').update(der).digest());
  if (fp !== p.claimed) return `the certificate's fingerprint is ${fp}, not the claimed ${p.claimed}`;
  let key: KeyObject;
  try {
    key = new X509Certificate(der).publicKey;
  } catch {
    return 'the certificate does not parse';
  }
  if (key.asymmetricKeyType !== 'ed25519') return `the certificate's key is ${key.asymmetricKeyType ?? 'unknown'}, not Ed25519`;
  const signature = Buffer.from(p.signatureBase64, 'base64');
  let ok = false;
  try {
    ok = verify(null, proofInput(p.nonceHex, p.acceptor, p.claimed), key, signature);
  } catch {
    ok = false;
  }
  return ok ? undefined : 'the signature does not verify';
}

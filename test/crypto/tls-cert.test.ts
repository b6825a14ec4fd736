import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { identityFromMnemonic } from '../../core/crypto/identity.js';
import { certFingerprint, deriveTlsCertificate, parseFingerprint } from '../../core/crypto/tls-cert.js';

const TEST_MNEMONIC = `${'abandon '.repeat(23)}art`;
/** Changing this value changes every relay's fingerprint and breaks every client's pin. */
const GOLDEN_TLS_FINGERPRINT = '2b64:1dd9:08dd:c31e:a2ed:011e:953b:f982:f383:30ec:ba65:8e43:bf56:8c89:1ee3:abdb';

test('the certificate is byte-identical across derivations and matches the golden fingerprint', async () => {
  const seed = identityFromMnemonic(TEST_MNEMONIC).seed;
  const first = await deriveTlsCertificate(seed);
  const second = await deriveTlsCertificate(identityFromMnemonic(TEST_MNEMONIC).seed);
  assert.deepEqual(second.certDer, first.certDer);
  assert.equal(second.keyPem, first.keyPem);
  assert.equal(first.fingerprint, GOLDEN_TLS_FINGERPRINT);
  assert.equal(certFingerprint(first.certDer), first.fingerprint);
});

test('the certificate is a valid self-signed Ed25519 cert for the derived key', async () => {
  const identity = identityFromMnemonic(TEST_MNEMONIC);
  const tls = await deriveTlsCertificate(identity.seed);
  const cert = new X509Certificate(tls.certPem);
  assert.deepEqual(new Uint8Array(cert.raw), tls.certDer);
  assert.equal(cert.subject, 'CN=wzp-b8dbec0bab3bdaf1');
  assert.equal(cert.issuer, cert.subject);
  assert.equal(cert.serialNumber, '01');
  assert.equal(new Date(cert.validFrom).toISOString(), '2020-01-01T00:00:00.000Z');
  assert.equal(new Date(cert.validTo).toISOString(), '2099-12-31T23:59:59.000Z');
  assert.equal(cert.publicKey.asymmetricKeyType, 'ed25519');
  assert.ok(cert.verify(cert.publicKey), 'self-signature verifies');
  assert.match(tls.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.ok(cert.checkPrivateKey(createPrivateKey(tls.keyPem)), 'key matches certificate');

  const certKey = cert.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  assert.notDeepEqual(new Uint8Array(certKey), identity.publicKey, 'TLS key is separate from the identity key');
});

test('different seeds give different certificates', async () => {
  const a = await deriveTlsCertificate(new Uint8Array(32).fill(1));
  const b = await deriveTlsCertificate(new Uint8Array(32).fill(2));
  assert.notEqual(a.fingerprint, b.fingerprint);
});

test('a user-typed fingerprint parses to the derived one', async () => {
  const tls = await deriveTlsCertificate(new Uint8Array(32));
  assert.equal(parseFingerprint(tls.fingerprint.replaceAll(':', '').toUpperCase()), tls.fingerprint);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  Identity,
  generateIdentity,
  identityFromMnemonic,
  loadIdentity,
  loadOrCreateIdentity,
  restoreIdentity,
  saveIdentity,
} from '../../core/crypto/identity.js';

/** BIP39 test vector: 32 zero bytes of entropy. */
const TEST_MNEMONIC = `${'abandon '.repeat(23)}art`;
const GOLDEN_PUBLIC_KEY = 'f4e811629f80530e08a89d4c61c8d6137da77f9ba75991eaa675ac259fa7521f';
const GOLDEN_FINGERPRINT = 'b8db:ec0b:ab3b:daf1:e2f5:47a9:df47:2298:b803:7cd9:abf4:c0a8:6a4b:ec90:71ee:2bca';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'wzp-identity-'));
}

function fileMode(path: string): number {
  return statSync(path).mode & 0o777;
}

test('a fixed mnemonic gives a fixed seed, key and fingerprint', () => {
  const identity = identityFromMnemonic(TEST_MNEMONIC);
  assert.deepEqual(identity.seed, new Uint8Array(32));
  assert.equal(Buffer.from(identity.publicKey).toString('hex'), GOLDEN_PUBLIC_KEY);
  assert.equal(identity.fingerprint, GOLDEN_FINGERPRINT);
  assert.equal(identity.shortFingerprint, 'b8db:ec0b:ab3b:daf1');
});

test('generated identities have 24 words and round-trip through their mnemonic', () => {
  const identity = generateIdentity();
  assert.equal(identity.mnemonic.split(' ').length, 24);
  const restored = identityFromMnemonic(identity.mnemonic);
  assert.deepEqual(restored.seed, identity.seed);
  assert.equal(restored.fingerprint, identity.fingerprint);
  assert.notEqual(generateIdentity().fingerprint, identity.fingerprint);
});

test('mnemonic case and whitespace do not matter', () => {
  const messy = `  ${TEST_MNEMONIC.toUpperCase().split(' ').join(' \n\t ')}  `;
  const identity = identityFromMnemonic(messy);
  assert.equal(identity.mnemonic, TEST_MNEMONIC);
  assert.equal(identity.fingerprint, GOLDEN_FINGERPRINT);
});

test('bad mnemonics are UsageErrors that do not repeat the words', () => {
  const twelve = `${'abandon '.repeat(11)}about`;
  assert.throws(() => identityFromMnemonic(twelve), { name: 'UsageError', message: /24 recovery words; got 12/ });
  assert.throws(() => identityFromMnemonic(''), { name: 'UsageError', message: /got 0/ });
  const misspelt = TEST_MNEMONIC.replace(/^abandon abandon abandon abandon/, 'abandon abandon abandn abandon');
  assert.throws(() => identityFromMnemonic(misspelt), (err: Error) => {
    assert.equal(err.name, 'UsageError');
    assert.match(err.message, /recovery word 3 is not in/);
    assert.doesNotMatch(err.message, /abandn/);
    return true;
  });
  assert.throws(() => identityFromMnemonic('abandon '.repeat(24)), { name: 'UsageError', message: /checksum/ });
});

test('sign and verify; tampering is detected', () => {
  const identity = identityFromMnemonic(TEST_MNEMONIC);
  const data = new TextEncoder().encode('hello relay');
  const signature = identity.sign(data);
  assert.equal(signature.length, 64);
  assert.ok(Identity.verify(identity.publicKey, data, signature));

  const tampered = Uint8Array.from(signature);
  tampered[10] ^= 0x01;
  assert.ok(!Identity.verify(identity.publicKey, data, tampered));
  assert.ok(!Identity.verify(identity.publicKey, new TextEncoder().encode('hello relaY'), signature));
  assert.ok(!Identity.verify(generateIdentity().publicKey, data, signature));
  assert.ok(!Identity.verify(identity.publicKey.subarray(1), data, signature));
  assert.ok(!Identity.verify(identity.publicKey, data, signature.subarray(1)));
});

test('secrets stay out of JSON and inspect output', () => {
  const identity = identityFromMnemonic(TEST_MNEMONIC);
  assert.deepEqual(JSON.parse(JSON.stringify({ identity })), {
    identity: { fingerprint: GOLDEN_FINGERPRINT, publicKey: GOLDEN_PUBLIC_KEY },
  });
  assert.doesNotMatch(JSON.stringify(identity), /abandon/);
  assert.equal(inspect(identity), `Identity <${GOLDEN_FINGERPRINT}>`);
});

test('create writes a 0600 file in a new 0700 directory, then loads it', async () => {
  const path = join(tempDir(), 'config', 'identity.json');
  const first = await loadOrCreateIdentity(path, { create: true });
  assert.equal(first.created, true);
  assert.equal(fileMode(path), 0o600);
  assert.equal(fileMode(join(path, '..')), 0o700);
  assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { version: 1, mnemonic: first.identity.mnemonic });
  assert.deepEqual(readdirSync(join(path, '..')), ['identity.json'], 'no temporary file left behind');

  const second = await loadOrCreateIdentity(path, { create: true });
  assert.equal(second.created, false);
  assert.equal(second.identity.fingerprint, first.identity.fingerprint);
});

test('a missing file without create is a ConfigError that says how to create one', async () => {
  const path = join(tempDir(), 'identity.json');
  await assert.rejects(loadOrCreateIdentity(path, { create: false }), (err: Error & { suggestions: string[] }) => {
    assert.equal(err.name, 'ConfigError');
    assert.ok(err.message.includes(path));
    assert.ok(err.suggestions.some((s) => s.includes('wzp identity --create')));
    return true;
  });
});

test('a file readable by group or others is refused with a chmod suggestion', async () => {
  const path = join(tempDir(), 'identity.json');
  await saveIdentity(path, identityFromMnemonic(TEST_MNEMONIC));
  chmodSync(path, 0o644);
  await assert.rejects(loadIdentity(path), (err: Error & { suggestions: string[] }) => {
    assert.equal(err.name, 'ConfigError');
    assert.match(err.message, /0644/);
    assert.deepEqual(err.suggestions, [`chmod 600 ${path}`]);
    return true;
  });
  chmodSync(path, 0o600);
  assert.equal((await loadIdentity(path)).fingerprint, GOLDEN_FINGERPRINT);
});

test('corrupt files are ConfigErrors naming the file and never echoing its content', async () => {
  const dir = tempDir();
  const cases: Array<[string, RegExp]> = [
    [`{"version":1,"mnemonic":"${TEST_MNEMONIC}"`, /not valid JSON/],
    [`{"version":2,"mnemonic":"${TEST_MNEMONIC}"}`, /unsupported version 2/],
    ['[]', /unsupported version missing/],
    ['{"version":1}', /no "mnemonic"/],
    [`{"version":1,"mnemonic":"${'abandon '.repeat(23)}zoo"}`, /invalid recovery words/],
  ];
  for (const [index, [content, expected]] of cases.entries()) {
    const path = join(dir, `identity-${index}.json`);
    writeFileSync(path, content, { mode: 0o600 });
    await assert.rejects(loadIdentity(path), (err: Error) => {
      assert.equal(err.name, 'ConfigError');
      assert.ok(err.message.includes(path), err.message);
      assert.match(err.message, expected);
      assert.doesNotMatch(err.message, /abandon/);
      return true;
    });
  }
});

test('saveIdentity refuses to overwrite unless told to', async () => {
  const path = join(tempDir(), 'identity.json');
  const original = generateIdentity();
  await saveIdentity(path, original);
  await assert.rejects(saveIdentity(path, generateIdentity()), { name: 'ConfigError', message: /already exists/ });
  assert.equal((await loadIdentity(path)).fingerprint, original.fingerprint);

  const replacement = generateIdentity();
  await saveIdentity(path, replacement, { overwrite: true });
  assert.equal((await loadIdentity(path)).fingerprint, replacement.fingerprint);
  assert.equal(fileMode(path), 0o600);
  assert.deepEqual(readdirSync(join(path, '..')), ['identity.json']);
});

test('concurrent creation yields one identity', async () => {
  const path = join(tempDir(), 'identity.json');
  const results = await Promise.all([1, 2, 3].map(() => loadOrCreateIdentity(path, { create: true })));
  assert.equal(results.filter((r) => r.created).length, 1);
  assert.equal(new Set(results.map((r) => r.identity.fingerprint)).size, 1);
});

test('restoreIdentity writes the identity of the words; the same identity again changes nothing', async () => {
  const path = join(tempDir(), 'sub', 'identity.json');
  const restored = await restoreIdentity(path, `  ${TEST_MNEMONIC.toUpperCase()}\n`);
  assert.equal(restored.unchanged, false);
  assert.equal(restored.identity.fingerprint, GOLDEN_FINGERPRINT);
  assert.equal((await loadIdentity(path)).fingerprint, GOLDEN_FINGERPRINT);
  assert.equal(fileMode(path), 0o600);
  const again = await restoreIdentity(path, TEST_MNEMONIC);
  assert.equal(again.unchanged, true);
  assert.equal(again.replaced, undefined);
});

test('restoreIdentity refuses to replace another identity (or an unusable file) without force', async () => {
  const path = join(tempDir(), 'identity.json');
  const other = generateIdentity();
  await saveIdentity(path, other);
  await assert.rejects(restoreIdentity(path, TEST_MNEMONIC), (err: Error & { suggestions: string[] }) => {
    assert.equal(err.name, 'ConfigError');
    assert.ok(err.message.includes(other.fingerprint), err.message);
    assert.doesNotMatch(`${err.message} ${err.suggestions.join(' ')}`, /abandon/);
    assert.ok(err.suggestions.some((s) => /--force/.test(s)));
    return true;
  });
  assert.equal((await loadIdentity(path)).fingerprint, other.fingerprint, 'the file is untouched');
  const forced = await restoreIdentity(path, TEST_MNEMONIC, { force: true });
  assert.equal(forced.replaced, other.fingerprint);
  assert.equal((await loadIdentity(path)).fingerprint, GOLDEN_FINGERPRINT);

  writeFileSync(path, 'not json', { mode: 0o600 });
  await assert.rejects(restoreIdentity(path, TEST_MNEMONIC), { name: 'ConfigError', message: /not a usable identity/ });
  await restoreIdentity(path, TEST_MNEMONIC, { force: true });
  assert.equal((await loadIdentity(path)).fingerprint, GOLDEN_FINGERPRINT);
});

test('restoreIdentity: bad words are a UsageError and nothing is written', async () => {
  const path = join(tempDir(), 'identity.json');
  await assert.rejects(restoreIdentity(path, 'abandon abandon'), { name: 'UsageError', message: /got 2/ });
  assert.deepEqual(readdirSync(join(path, '..')), []);
});

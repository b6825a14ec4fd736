import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  fingerprintsEqual,
  formatFingerprint,
  parseFingerprint,
  sha256Fingerprint,
  shortFingerprint,
} from '../../core/crypto/fingerprint.js';

const HEX = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const FORMATTED = '0001:0203:0405:0607:0809:0a0b:0c0d:0e0f:1011:1213:1415:1617:1819:1a1b:1c1d:1e1f';

test('formats a digest as 16 colon-separated groups of 4 hex digits', () => {
  assert.equal(formatFingerprint(Buffer.from(HEX, 'hex')), FORMATTED);
  assert.throws(() => formatFingerprint(new Uint8Array(31)), RangeError);
});

test('sha256Fingerprint hashes then formats', () => {
  // SHA-256 of the empty string.
  assert.equal(
    sha256Fingerprint(new Uint8Array(0)),
    'e3b0:c442:98fc:1c14:9afb:f4c8:996f:b924:27ae:41e4:649b:934c:a495:991b:7852:b855',
  );
});

test('short form is the first four groups', () => {
  assert.equal(shortFingerprint(FORMATTED), '0001:0203:0405:0607');
});

test('parse accepts any case, with or without separators', () => {
  for (const input of [HEX, HEX.toUpperCase(), FORMATTED, FORMATTED.toUpperCase(), ` ${FORMATTED.replaceAll(':', ' ')} `]) {
    assert.equal(parseFingerprint(input), FORMATTED);
  }
  assert.ok(fingerprintsEqual(HEX.toUpperCase(), FORMATTED));
  assert.ok(!fingerprintsEqual(HEX.replace(/^00/, 'ff'), FORMATTED));
});

test('parse rejects wrong lengths and non-hex with UsageError', () => {
  for (const input of ['', HEX.slice(2), `${HEX}00`, shortFingerprint(FORMATTED), HEX.replace('0a', 'zz')]) {
    assert.throws(() => parseFingerprint(input), { name: 'UsageError' }, input);
  }
});

/**
 * How errors reach a person (issue 15, item 9): a long error message with a fingerprint and a
 * suggested command stays on one line each, whatever the terminal width, so both can be
 * copied and pasted (oclif's renderer wrapped them at 80 columns). Traffic stays on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseJsonDocument, relayProcessForSuite, runCli } from '../helpers/cli.js';

/** 16 groups of 4 hex digits: 79 characters, as wzp shows certificate fingerprints. */
const FINGERPRINT = /\b(?:[0-9a-f]{4}:){15}[0-9a-f]{4}\b/;
const OTHER_FINGERPRINT = Array.from({ length: 16 }, (_, i) => (0xa000 + i).toString(16)).join(':');

describe('error output', () => {
  const suite = relayProcessForSuite('wzp-errout-');

  test('a pin mismatch keeps the 79-character fingerprint and the suggested command on one line, at any COLUMNS', async () => {
    const first = await runCli(['reflect', suite.relay.address, '--json'], suite.home);
    assert.equal(first.code, 0, first.stderr);
    // Pin another certificate for this relay, as if it had been replaced.
    const pinFile = join(suite.home.dir, 'config', 'known-relays.json');
    const pins = JSON.parse(readFileSync(pinFile, 'utf8')) as { relays: Record<string, { fingerprint: string }> };
    assert.ok(pins.relays[suite.relay.address], 'the relay was pinned on first use');
    pins.relays[suite.relay.address].fingerprint = OTHER_FINGERPRINT;
    writeFileSync(pinFile, JSON.stringify(pins, null, 2));

    for (const columns of ['40', '80', '200']) {
      const home = { ...suite.home, env: { ...suite.home.env, COLUMNS: columns } };
      const r = await runCli(['reflect', suite.relay.address], home);
      assert.equal(r.code, 6, r.stderr);
      const lines = r.stderr.split('\n');
      const presented = lines.find((l) => l.includes('presented:'));
      assert.ok(presented, r.stderr);
      assert.equal(FINGERPRINT.exec(presented)?.[0], suite.relay.fingerprint, `COLUMNS=${columns}: ${presented}`);
      const suggestion = lines.find((l) => l.startsWith('Try this:') && l.includes('--relay-fingerprint'));
      assert.ok(suggestion, `COLUMNS=${columns}:\n${r.stderr}`);
      assert.ok(suggestion.includes(`--relay-fingerprint ${suite.relay.fingerprint} `), `COLUMNS=${columns}: ${suggestion}`);
      assert.ok(suggestion.length > 100, 'the line is longer than any terminal width tried');
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
      assert.equal(r.stdout, '');
    }

    const json = await runCli(['reflect', suite.relay.address, '--json'], { ...suite.home, env: { ...suite.home.env, COLUMNS: '40' } });
    const doc = parseJsonDocument(json);
    assert.equal(json.code, 6);
    assert.equal(doc.name, 'FingerprintMismatchError');
    assert.ok((doc.suggestions as string[]).some((s) => s.includes(`--relay-fingerprint ${suite.relay.fingerprint}`)));
  });

  test('a stack trace only with WZP_DEBUG=1', async () => {
    const plain = await runCli(['reflect', 'not-an-address'], suite.home);
    assert.equal(plain.code, 2, plain.stderr);
    assert.match(plain.stderr, /^Error: /m);
    assert.doesNotMatch(plain.stderr, /^\s+at /m);
    const debug = await runCli(['reflect', 'not-an-address'], { ...suite.home, env: { ...suite.home.env, WZP_DEBUG: '1' } });
    assert.equal(debug.code, 2, debug.stderr);
    assert.match(debug.stderr, /^\s+at /m, 'WZP_DEBUG=1 shows where the error came from');
  });
});

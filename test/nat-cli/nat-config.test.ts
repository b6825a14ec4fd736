/** netcheck.json loading, server selection (flags win), and the "nothing configured" error. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, UsageError } from '../../core/errors.js';
import { type LoadedNatConfig, checkHostPort, loadNatConfig, noServersError, parseNatConfig, resolveEndpoints, selectServers } from '../../src/services/nat-config.js';

const FP = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2';
const FP_CANONICAL = FP.match(/.{4}/g)?.join(':');

const loaded = (stun: string[], relays: LoadedNatConfig['config']['relays']): LoadedNatConfig => ({ path: '/cfg/netcheck.json', exists: true, config: { stun, relays } });

describe('netcheck.json', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wzp-nat-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a missing file is an empty configuration', async () => {
    const l = await loadNatConfig(join(dir, 'nowhere'));
    assert.equal(l.exists, false);
    assert.deepEqual(l.config, { stun: [], relays: [] });
    assert.equal(l.path, join(dir, 'nowhere', 'netcheck.json'));
  });

  it('reads servers and canonicalises fingerprints', async () => {
    writeFileSync(join(dir, 'netcheck.json'), JSON.stringify({ stun: ['203.0.113.1:3478'], relays: [{ address: 'relay.example.net:4433', fingerprint: FP.toUpperCase() }, { address: '[2001:db8::1]:4433' }] }));
    const l = await loadNatConfig(dir);
    assert.equal(l.exists, true);
    assert.deepEqual(l.config, { stun: ['203.0.113.1:3478'], relays: [{ address: 'relay.example.net:4433', fingerprint: FP_CANONICAL }, { address: '[2001:db8::1]:4433' }] });
  });

  it('every malformation is a ConfigError naming the file and showing the expected shape', () => {
    const cases: [string, RegExp][] = [
      ['{', /not valid JSON/],
      ['[]', /top level is not an object/],
      ['{"stun": "203.0.113.1:3478"}', /"stun" is not an array/],
      ['{"stun": [3478]}', /"stun" is not an array/],
      ['{"relay": []}', /unknown key "relay"/],
      ['{"relays": {}}', /"relays" is not an array/],
      ['{"relays": ["relay:4433"]}', /relays\[0\] is not an object/],
      ['{"relays": [{"address": "r:4433", "pin": "x"}]}', /relays\[0\] has unknown key "pin"/],
      ['{"relays": [{"address": "r:4433", "fingerprint": "abc"}]}', /relays\[0\]\.fingerprint/],
      ['{"stun": ["203.0.113.1"]}', /not HOST:PORT/],
      ['{"stun": ["203.0.113.1:0"]}', /port 0/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseNatConfig(text, '/cfg/netcheck.json'),
        (err: unknown) => err instanceof ConfigError && message.test(err.message) && err.message.startsWith('/cfg/netcheck.json') && err.suggestions[0].includes('"relays"'),
        text,
      );
    }
  });
});

describe('server selection', () => {
  const file = loaded(['203.0.113.1:3478'], [{ address: 'relay.example.net:4433', fingerprint: FP_CANONICAL }]);

  it('without flags the file is used', () => {
    const s = selectServers({}, file);
    assert.deepEqual(s.stun, ['203.0.113.1:3478']);
    assert.deepEqual(s.relays, file.config.relays);
    assert.deepEqual(s.source, { stun: 'config', relays: 'config' });
  });

  it('flags win per kind, and a flagged relay keeps the fingerprint the file pins for it', () => {
    const s = selectServers({ relay: ['RELAY.example.net:4433', '198.51.100.2:4433'] }, file);
    assert.deepEqual(s.stun, ['203.0.113.1:3478']);
    assert.deepEqual(s.relays, [{ address: 'RELAY.example.net:4433', fingerprint: FP_CANONICAL }, { address: '198.51.100.2:4433' }]);
    assert.deepEqual(s.source, { stun: 'config', relays: 'flags' });
    assert.deepEqual(selectServers({ stun: ['198.51.100.7:3478'] }, file).stun, ['198.51.100.7:3478']);
  });

  it('allOrNothing: anything on the command line replaces the whole file', () => {
    const s = selectServers({ stun: ['198.51.100.7:3478'] }, file, { allOrNothing: true });
    assert.deepEqual(s.relays, []);
    assert.deepEqual(s.source, { stun: 'flags', relays: 'none' });
    assert.deepEqual(selectServers({}, file, { allOrNothing: true }).relays, file.config.relays);
  });

  it('duplicates collapse and bad addresses are usage errors', () => {
    assert.deepEqual(selectServers({ stun: ['203.0.113.1:3478', ' 203.0.113.1:3478', ''] }, loaded([], [])).stun, ['203.0.113.1:3478']);
    assert.throws(() => selectServers({ stun: ['3478'] }, loaded([], [])), UsageError);
    assert.throws(() => checkHostPort('[2001:db8::1]'), UsageError);
    checkHostPort('[2001:db8::1]:3478');
  });

  it('nothing configured: a usage error that says how to configure servers, never a default', () => {
    const err = noServersError('netcheck', '/cfg/netcheck.json', 'any', 'pass --stun HOST:PORT and/or --relay HOST:PORT');
    assert.equal(err.name, 'UsageError');
    assert.equal(err.code, 2);
    assert.match(err.message, /no built-in public servers/);
    assert.match(err.suggestions[0], /--stun/);
    assert.match(err.suggestions[1], /\/cfg\/netcheck\.json: \{"stun"/);
  });

  it('IP literals resolve to themselves without a lookup', async () => {
    assert.deepEqual(await resolveEndpoints('203.0.113.1:3478'), [{ address: '203.0.113.1', port: 3478 }]);
    assert.deepEqual(await resolveEndpoints('[2001:db8::1]:3478'), [{ address: '2001:db8::1', port: 3478 }]);
  });
});

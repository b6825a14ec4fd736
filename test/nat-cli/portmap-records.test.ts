/** `wzp portmap`: the record of mappings made here, and --mapping JSON parsing. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, UsageError } from '../../core/errors.js';
import type { PortMapping } from '../../core/nat/portmap.js';
import { deletePortMapping, describeMapping, parseMappingJson, readRecords, recordFile, removeRecord, replaceRecord } from '../../src/services/portmap.js';

const PCP: PortMapping = {
  protocol: 'pcp',
  gateway: '10.0.0.1',
  internalAddress: '10.0.0.2',
  internalPort: 4433,
  externalAddress: '203.0.113.1',
  externalPort: 52001,
  lifetimeS: 120,
  nonce: '00112233445566778899aabb',
};
const UPNP: PortMapping = {
  protocol: 'upnp',
  gateway: '10.0.0.1',
  service: { serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2', controlUrl: 'http://10.0.0.1:5000/ctl/IPConn', igdVersion: 2 },
  internalAddress: '10.0.0.2',
  internalPort: 4434,
  externalAddress: '203.0.113.1',
  externalPort: 52002,
  lifetimeS: 0,
};

describe('the port-mapping record', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wzp-portmap-records-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('records, replaces by protocol + gateway + internal port, expires, and removes', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const recorded = await replaceRecord(dir, PCP, now);
    assert.equal(recorded.expiresAt, '2030-01-01T00:02:00.000Z');
    assert.equal(statSync(recordFile(dir)).mode & 0o777, 0o600);
    await replaceRecord(dir, UPNP, now);
    const renewed = { ...PCP, externalPort: 52009 };
    await replaceRecord(dir, renewed, new Date('2030-01-01T00:01:00Z'));
    const all = await readRecords(dir, Date.parse('2030-01-01T00:01:30Z'));
    assert.deepEqual(all.map((r) => r.mapping), [UPNP, renewed]);
    assert.equal(all[1].createdAt, '2030-01-01T00:00:00.000Z', 'a renewal keeps the creation time');
    assert.equal(all[0].expiresAt, null, 'a permanent UPnP lease never expires');
    assert.deepEqual((await readRecords(dir, Date.parse('2030-01-01T00:03:01Z'))).map((r) => r.mapping), [UPNP], 'expired records are dropped');
    await removeRecord(dir, UPNP);
    assert.equal(JSON.parse(readFileSync(recordFile(dir), 'utf8')).mappings.length, 1);
  });

  it('a corrupt record file is a ConfigError, never silently reset', async () => {
    const bad = mkdtempSync(join(dir, 'bad-'));
    writeFileSync(recordFile(bad), '{"version": 1, "mappings": [{"mapping": {"protocol": "pcp"}, "createdAt": "x", "expiresAt": null}]}');
    await assert.rejects(readRecords(bad), (err: unknown) => err instanceof ConfigError && /mappings\[0\]/.test(err.message));
    writeFileSync(recordFile(bad), 'nope');
    await assert.rejects(readRecords(bad), ConfigError);
  });

  it('delete without a recorded PCP mapping says to pass its JSON (nothing is sent)', async () => {
    await assert.rejects(
      deletePortMapping({ configDir: mkdtempSync(join(dir, 'empty-')), protocol: 'pcp', externalPort: 52001, gateway: '10.0.0.1' }),
      (err: unknown) => err instanceof UsageError && err.suggestions.some((s) => s.includes('--mapping')),
    );
    await assert.rejects(deletePortMapping({ configDir: dir }), UsageError);
    await assert.rejects(deletePortMapping({ configDir: dir, protocol: 'natpmp', externalPort: 1 }), /--internal-port/);
  });
});

describe('--mapping JSON', () => {
  it('accepts the add document, its result, or the mapping itself', () => {
    assert.deepEqual(parseMappingJson(JSON.stringify({ status: 0, result: { mapping: PCP, kept: false }, warnings: [] })), PCP);
    assert.deepEqual(parseMappingJson(JSON.stringify({ mapping: UPNP })), UPNP);
    assert.deepEqual(parseMappingJson(JSON.stringify(PCP)), PCP);
  });

  it('rejects what cannot be deleted', () => {
    const bad: [unknown, RegExp][] = [
      ['{', /not JSON/],
      [{ ...PCP, protocol: 'ftp' }, /"protocol"/],
      [{ ...PCP, nonce: 'short' }, /"nonce"/],
      [{ ...PCP, internalPort: 0 }, /"internalPort"/],
      [{ ...UPNP, service: { controlUrl: 'x' } }, /"service"/],
      [{ ...PCP, gateway: undefined }, /"gateway"/],
    ];
    for (const [value, message] of bad) {
      assert.throws(() => parseMappingJson(typeof value === 'string' ? value : JSON.stringify(value)), (err: unknown) => err instanceof UsageError && message.test(err.message));
    }
  });

  it('describes a mapping in one line', () => {
    assert.equal(describeMapping(PCP), 'UDP 203.0.113.1:52001 -> 10.0.0.2:4433 with PCP');
  });
});

/**
 * `wzp portmap probe|add|list|delete --json`, the real CLI run in the client namespace of the
 * miniupnpd lab (test/lab/portmap-topology.ts): probe finds PCP, NAT-PMP and UPnP and leaves
 * nothing behind; a mapping added with PCP or UPnP forwards UDP sent from the wan namespace
 * to the client's socket and is listed; delete (by protocol + external port from the record,
 * or with the JSON add printed) stops that; add --keep renews until SIGINT, then deletes;
 * netcheck sees the port mapping and judges the NAT easy.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { PortMapping } from '../../core/nat/portmap.js';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import type { PortmapAddReport, PortmapDeleteReport, PortmapListReport, PortmapProbeReport } from '../../src/services/portmap.js';
import { BIN, type CliHome, makeHome } from '../helpers/cli.js';
import { jsonResult, type NsRun, wzpIn } from '../nat-cli/helpers.js';
import { LAB, LabRunner, type PortmapLab, createPortmapLab, portmapLabSkipReason } from './portmap-topology.js';

const skip = portmapLabSkipReason();

const DELIVERY_TIMEOUT_MS = 3000;
/** How long a packet that must NOT arrive is waited for. */
const SILENCE_MS = 1500;
const SENDS = 5;
const SEND_INTERVAL_MS = 150;
const PORTS = { pcp: 42001, upnp: 42002, kept: 42003 };

describe('wzp portmap CLI against miniupnpd (namespace lab)', { skip, timeout: 240_000 }, () => {
  let lab: PortmapLab;
  let client: LabRunner;
  let wan: LabRunner;
  let home: CliHome;
  let config: string[];

  before(async () => {
    home = makeHome('wzp-portmap-cli-');
    config = ['--config-dir', join(home.dir, 'client')];
    lab = await createPortmapLab();
    client = new LabRunner(lab, 'client');
    wan = new LabRunner(lab, 'wan');
    for (const port of Object.values(PORTS)) await client.call({ op: 'listen', port });
    await lab.startMiniupnpd({ igdV1: false });
  });

  after(async () => {
    await lab?.stopMiniupnpd();
    await lab?.destroy();
    home?.cleanup();
  });

  const wzp = (args: string[]): Promise<NsRun> => wzpIn(lab.namespaces.client, ['portmap', ...args, '--json', ...config], home);

  /** Sends fresh payloads from wan to the mapping's external endpoint; did one reach the client? */
  async function delivered(mapping: PortMapping, waitMs = DELIVERY_TIMEOUT_MS): Promise<boolean> {
    const payload = `wzp-portmap-cli-${randomBytes(6).toString('hex')}`;
    const arrival = client.call<{ arrived: boolean }>({ op: 'await-payload', port: mapping.internalPort, payload, timeoutMs: waitMs });
    await wan.call({ op: 'send', host: mapping.externalAddress, port: mapping.externalPort, payload, count: SENDS, intervalMs: SEND_INTERVAL_MS });
    return (await arrival).result.arrived;
  }

  async function assertNothingMapped(): Promise<void> {
    assert.deepEqual(lab.miniupnpdRules(), [], 'miniupnpd nft chains');
    const list = jsonResult<PortmapListReport>(await wzp(['list']), 'portmap list');
    assert.deepEqual('entries' in list.gatewayTable ? list.gatewayTable.entries : list.gatewayTable, [], 'UPnP table');
    assert.deepEqual(list.recorded, [], 'wzp record');
  }

  it('probe finds PCP, NAT-PMP and UPnP with the external address, and leaves nothing mapped', async () => {
    const probe = jsonResult<PortmapProbeReport>(await wzp(['probe']), 'portmap probe');
    assert.equal(probe.gateway, LAB.routerLan);
    assert.equal(probe.externalAddress, LAB.routerWan);
    assert.deepEqual(probe.available, ['pcp', 'natpmp', 'upnp'], JSON.stringify(probe.protocols));
    assert.equal(probe.protocols.upnp.igdVersion, 2);
    assert.equal(probe.protocols.pcp.leftover, undefined);
    await assertNothingMapped();
  });

  it('netcheck sees the gateway map ports (the outermost NAT): an easy NAT, and nothing left mapped', async () => {
    const run = await wzpIn(lab.namespaces.client, ['netcheck', '--json', '--stun', `${LAB.stunPrimary}:3478`, ...config], home);
    const report = jsonResult<NetcheckReport>(run, 'netcheck');
    assert.deepEqual(report.portMapping.available, ['pcp', 'natpmp', 'upnp'], JSON.stringify(report.portMapping));
    assert.equal(report.portMapping.externalAddress, LAB.routerWan);
    assert.equal(report.ipv4.reflexiveAddress?.split(':')[0], LAB.routerWan, 'the gateway is the outermost NAT');
    assert.equal(report.verdict.kind, 'easy');
    assert.match(report.verdict.reasons[0], /maps ports on request \(PCP, NAT-PMP, UPnP\)/);
    assert.ok(report.durationMs <= 2_000, `netcheck took ${report.durationMs} ms`);
    await assertNothingMapped();
  });

  it('PCP: add forwards UDP from the WAN and is listed; delete by protocol + external port removes it', async () => {
    const added = jsonResult<PortmapAddReport>(
      await wzp(['add', '--internal-port', String(PORTS.pcp), '--external-port', '53001', '--protocol', 'pcp', '--lifetime', '300', '--gateway', LAB.routerLan]),
      'portmap add (pcp)',
    );
    const { mapping } = added;
    assert.equal(mapping.protocol, 'pcp');
    assert.equal(mapping.externalAddress, LAB.routerWan);
    assert.equal(mapping.externalPort, 53001);
    assert.equal(added.deleted, false);
    assert.equal(added.deleteWith, 'wzp portmap delete --protocol pcp --external-port 53001');
    assert.ok(await delivered(mapping), `UDP to ${mapping.externalAddress}:${mapping.externalPort} reaches the client\n${lab.logs()}`);

    const list = jsonResult<PortmapListReport>(await wzp(['list']), 'portmap list');
    assert.deepEqual(list.recorded.map((r) => r.mapping), [mapping], 'recorded by wzp');
    assert.ok('entries' in list.gatewayTable && list.gatewayTable.entries.some((e) => e.externalPort === 53001 && e.internalClient === LAB.clientLan));

    const deleted = jsonResult<PortmapDeleteReport>(await wzp(['delete', '--protocol', 'pcp', '--external-port', '53001']), 'portmap delete (pcp)');
    assert.equal(deleted.source, 'record', 'found the nonce in the record');
    assert.equal(deleted.found, true);
    assert.equal(await delivered(mapping, SILENCE_MS), false, 'no longer forwarded');
    await assertNothingMapped();
  });

  it('UPnP: add forwards UDP from the WAN; delete with the JSON add printed removes it', async () => {
    const addRun = await wzp(['add', '--internal-port', String(PORTS.upnp), '--external-port', '53002', '--protocol', 'upnp', '--lifetime', '300']);
    const { mapping } = jsonResult<PortmapAddReport>(addRun, 'portmap add (upnp)');
    assert.equal(mapping.protocol, 'upnp');
    assert.equal(mapping.externalPort, 53002);
    assert.ok(await delivered(mapping), `UPnP mapping forwards\n${lab.logs()}`);

    const deleted = jsonResult<PortmapDeleteReport>(await wzp(['delete', '--mapping', addRun.stdout]), 'portmap delete --mapping');
    assert.equal(deleted.source, 'mapping-json');
    assert.equal(await delivered(mapping, SILENCE_MS), false);
    await assertNothingMapped();
  });

  it('UPnP: delete by external port finds a mapping wzp did not record in the gateway table', async () => {
    const { mapping } = jsonResult<PortmapAddReport>(
      await wzpIn(lab.namespaces.client, ['portmap', 'add', '--internal-port', String(PORTS.upnp), '--external-port', '53004', '--protocol', 'upnp', '--json', '--config-dir', join(home.dir, 'other')], home),
      'portmap add (upnp, another config dir)',
    );
    const deleted = jsonResult<PortmapDeleteReport>(await wzp(['delete', '--protocol', 'upnp', '--external-port', '53004']), 'portmap delete (upnp table)');
    assert.equal(deleted.source, 'gateway-table');
    assert.equal(deleted.internalPort, PORTS.upnp);
    assert.equal(await delivered(mapping, SILENCE_MS), false);
    const again = jsonResult<PortmapDeleteReport>(await wzp(['delete', '--protocol', 'upnp', '--external-port', '53004']), 'portmap delete (gone)');
    assert.equal(again.found, false, 'nothing left to delete');
    await assertNothingMapped();
  });

  it('a PCP mapping that was not recorded cannot be deleted by port: a usage error pointing at --mapping', async () => {
    const run = await wzp(['delete', '--protocol', 'pcp', '--external-port', '53999']);
    const doc = JSON.parse(run.stdout) as { name: string; suggestions: string[] };
    assert.equal(run.code, 2);
    assert.equal(doc.name, 'UsageError');
    assert.ok(doc.suggestions.some((s) => s.includes('--mapping')));
  });

  it('NAT-PMP add --keep renews a 4 s mapping past its lifetime and deletes it on SIGINT', async () => {
    const child = spawn(
      'ip',
      ['netns', 'exec', lab.namespaces.client, process.execPath, BIN, 'portmap', 'add', '--internal-port', String(PORTS.kept), '--protocol', 'natpmp', '--lifetime', '4', '--keep', '--json', ...config],
      { env: home.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    try {
      // Past the 4 s lifetime: miniupnpd expires what is not renewed.
      await delay(6500);
      const list = jsonResult<PortmapListReport>(await wzp(['list']), 'portmap list (kept)');
      const kept = list.recorded[0]?.mapping;
      assert.ok(kept && kept.protocol === 'natpmp' && kept.internalPort === PORTS.kept, `recorded while kept: ${JSON.stringify(list.recorded)}\n${stderr}`);
      assert.ok(await delivered(kept), 'still forwarded after its lifetime: renewed');
      child.kill('SIGINT');
      const code = await Promise.race([exited, delay(10_000).then(() => 'timeout' as const)]);
      assert.equal(code, 0, `exit after SIGINT\nstdout: ${stdout}\nstderr: ${stderr}`);
      const report = jsonResult<PortmapAddReport>({ code: 0, stdout, stderr, wallMs: 0 }, 'portmap add --keep');
      assert.equal(report.kept, true);
      assert.equal(report.deleted, true);
      assert.ok(report.renewals >= 2, `renewed every ~2 s (${report.renewals} renewals)`);
      assert.equal(await delivered(kept, SILENCE_MS), false, 'deleted on SIGINT');
      await assertNothingMapped();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

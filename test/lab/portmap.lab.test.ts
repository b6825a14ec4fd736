/**
 * Port mapping against a real miniupnpd in a namespace lab (see portmap-topology.ts):
 * for PCP, NAT-PMP, UPnP-IGDv1 and UPnP-IGDv2, a mapping made from the client namespace
 * forwards UDP sent from the wan namespace to the client's socket, and deleting it stops
 * that; probe() finds the protocols and leaves no mapping behind; keep() renews.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { PortMapping, ProbeResult, UpnpListEntry } from '../../core/nat/portmap.js';
import type { PortMapProtocol } from '../../core/nat/gateway.js';
import { LAB, LabRunner, type MapperOptions, type PortmapLab, createPortmapLab, portmapLabSkipReason } from './portmap-topology.js';

const skip = portmapLabSkipReason();

/** The client discovers its gateway from its own default route (no explicit gateway). */
const MAPPER: MapperOptions = {};
const LIFETIME_S = 600;
const DELIVERY_TIMEOUT_MS = 3000;
/** How long a packet that must NOT arrive is waited for. */
const SILENCE_MS = 1500;
const SENDS = 5;
const SEND_INTERVAL_MS = 150;

const PORTS = { pcp: 41001, natpmp: 41002, upnpV1: 41003, upnpV2: 41004, kept: 41005, unkept: 41006 };

describe('port mapping against miniupnpd (namespace lab)', { skip, timeout: 180_000 }, () => {
  let lab: PortmapLab;
  let client: LabRunner;
  let wan: LabRunner;

  before(async () => {
    lab = await createPortmapLab();
    client = new LabRunner(lab, 'client');
    wan = new LabRunner(lab, 'wan');
    for (const port of Object.values(PORTS)) await client.call({ op: 'listen', port });
  });

  after(async () => {
    await lab?.destroy();
  });

  /** Sends a fresh payload from wan to the mapping's external endpoint; did it reach the client? */
  async function delivered(mapping: PortMapping): Promise<boolean> {
    const payload = `wzp-portmap-${randomBytes(6).toString('hex')}`;
    const arrival = client.call<{ arrived: boolean }>({
      op: 'await-payload',
      port: mapping.internalPort,
      payload,
      timeoutMs: DELIVERY_TIMEOUT_MS,
    });
    await wan.call({ op: 'send', host: mapping.externalAddress, port: mapping.externalPort, payload, count: SENDS, intervalMs: SEND_INTERVAL_MS });
    return (await arrival).result.arrived;
  }

  /** Like delivered(), for a mapping that should be gone: waits only SILENCE_MS. */
  async function notDelivered(mapping: PortMapping): Promise<boolean> {
    const payload = `wzp-portmap-${randomBytes(6).toString('hex')}`;
    const arrival = client.call<{ arrived: boolean }>({ op: 'await-payload', port: mapping.internalPort, payload, timeoutMs: SILENCE_MS });
    await wan.call({ op: 'send', host: mapping.externalAddress, port: mapping.externalPort, payload, count: SENDS, intervalMs: SEND_INTERVAL_MS });
    return !(await arrival).result.arrived;
  }

  async function upnpTable(): Promise<UpnpListEntry[]> {
    return (await client.call<UpnpListEntry[]>({ op: 'list', mapper: MAPPER })).result;
  }

  async function assertNothingMapped(): Promise<void> {
    assert.deepEqual(lab.miniupnpdRules(), [], 'miniupnpd nft chains');
    assert.deepEqual(await upnpTable(), [], 'UPnP port-mapping table');
  }

  /** add → forwarded and listed; delete → not forwarded, nothing left. */
  async function mapForwardDelete(protocol: PortMapProtocol, internalPort: number, externalPort: number): Promise<PortMapping> {
    const { result: mapping, events } = await client.call<PortMapping>({
      op: 'add',
      mapper: MAPPER,
      request: { internalPort, externalPort, lifetimeS: LIFETIME_S, preference: [protocol] },
    });
    assert.equal(mapping.protocol, protocol);
    assert.equal(mapping.externalAddress, LAB.routerWan);
    assert.equal(mapping.internalPort, internalPort);
    assert.ok(mapping.lifetimeS > 0 && mapping.lifetimeS <= LIFETIME_S, `lifetime ${mapping.lifetimeS}`);
    assert.deepEqual(
      events.map((event) => event.type),
      ['portmap:trying', 'portmap:mapped'],
    );

    const table = await upnpTable();
    assert.ok(
      table.some((row) => row.externalPort === mapping.externalPort && row.internalClient === LAB.clientLan && row.internalPort === internalPort && row.protocol === 'UDP'),
      `the gateway's table lists the mapping: ${JSON.stringify(table)}`,
    );
    assert.ok(await delivered(mapping), `${protocol}: UDP to ${mapping.externalAddress}:${mapping.externalPort} reaches the client\n${lab.logs()}`);

    await client.call({ op: 'delete', mapper: MAPPER, mapping });
    assert.ok(await notDelivered(mapping), `${protocol}: after delete, UDP no longer reaches the client`);
    await assertNothingMapped();
    return mapping;
  }

  describe('miniupnpd with the IGDv1 description (force_igd_desc_v1=yes)', () => {
    before(async () => lab.startMiniupnpd({ igdV1: true }));
    after(async () => lab.stopMiniupnpd());

    it('probe finds PCP, NAT-PMP and UPnP IGDv1 with the external address and leaves no mapping', async () => {
      const { result } = await client.call<ProbeResult>({ op: 'probe', mapper: MAPPER });
      assert.equal(result.gateway, LAB.routerLan);
      assert.equal(result.externalAddress, LAB.routerWan);
      for (const protocol of ['pcp', 'natpmp', 'upnp'] as const) {
        const probe = result.protocols[protocol];
        assert.equal(probe.available, true, `${protocol}: ${JSON.stringify(probe.error)}`);
        assert.equal(probe.externalAddress, LAB.routerWan);
        assert.equal(probe.leftover, undefined);
      }
      assert.equal(result.protocols.upnp.igdVersion, 1);
      await assertNothingMapped();
    });

    it('PCP: add forwards UDP from the WAN to the client, delete stops it', async () => {
      const mapping = await mapForwardDelete('pcp', PORTS.pcp, 52001);
      assert.equal(mapping.externalPort, 52001, 'miniupnpd grants the suggested external port');
    });

    it('NAT-PMP: add forwards UDP from the WAN to the client, delete stops it', async () => {
      const mapping = await mapForwardDelete('natpmp', PORTS.natpmp, 52002);
      assert.equal(mapping.externalPort, 52002);
    });

    it('UPnP IGDv1: add forwards UDP from the WAN to the client, delete stops it', async () => {
      const mapping = await mapForwardDelete('upnp', PORTS.upnpV1, 52003);
      assert.equal(mapping.protocol === 'upnp' && mapping.service.igdVersion, 1);
      assert.equal(mapping.externalPort, 52003);
    });

    it('UPnP IGDv1: a port outside the allow rule is refused (606), and add reports it', async () => {
      // Only UPnP: miniupnpd 2.3.1 answers PCP/NAT-PMP requests for such ports with silence,
      // walking all external ports while its event loop stalls (see docs/portmap.md).
      const failure = await client
        .call({ op: 'add', mapper: MAPPER, request: { internalPort: 999, lifetimeS: LIFETIME_S, preference: ['upnp'] } })
        .then(
          () => assert.fail('add should fail'),
          (error: { remote: { name: string; message: string } }) => error.remote,
        );
      assert.equal(failure.name, 'NatTraversalError');
      assert.match(failure.message, /upnp: UPnP AddPortMapping refused: 606/);
      await assertNothingMapped();
    });

    it('keep renews a short NAT-PMP mapping past its lifetime and deletes it when aborted', async () => {
      const add = (internalPort: number) =>
        client.call<PortMapping>({ op: 'add', mapper: MAPPER, request: { internalPort, lifetimeS: 4, preference: ['natpmp'] } });
      const kept = (await add(PORTS.kept)).result;
      const unkept = (await add(PORTS.unkept)).result;
      assert.equal(kept.lifetimeS, 4);
      await client.call({ op: 'keep-start', mapper: MAPPER, mapping: kept, key: 'kept' });

      await delay(6500); // past the 4 s lifetime: miniupnpd expires what is not renewed
      assert.ok(await delivered(kept), 'the kept mapping still forwards');
      assert.ok(await notDelivered(unkept), 'the mapping that was not kept expired');

      const { result, events } = await client.call<{ mapping: PortMapping }>({ op: 'keep-stop', key: 'kept' });
      const renewals = events.filter((event) => event.type === 'portmap:renewed').length;
      assert.ok(renewals >= 2, `renewed every ~2 s (${renewals} renewals)`);
      assert.equal(events.at(-1)?.type, 'portmap:deleted');
      assert.ok(await notDelivered(result.mapping), 'deleted after abort');
      await assertNothingMapped();
    });
  });

  describe('miniupnpd with the IGDv2 description (default)', () => {
    before(async () => lab.startMiniupnpd({ igdV1: false }));
    after(async () => lab.stopMiniupnpd());

    it('probe reports UPnP IGDv2 and leaves no mapping', async () => {
      const { result } = await client.call<ProbeResult>({ op: 'probe', mapper: MAPPER });
      assert.equal(result.protocols.upnp.available, true, JSON.stringify(result.protocols.upnp.error));
      assert.equal(result.protocols.upnp.igdVersion, 2);
      assert.equal(result.protocols.upnp.externalAddress, LAB.routerWan);
      await assertNothingMapped();
    });

    it('UPnP IGDv2: add (AddAnyPortMapping) forwards UDP from the WAN to the client, delete stops it', async () => {
      const mapping = await mapForwardDelete('upnp', PORTS.upnpV2, 52004);
      assert.equal(mapping.protocol === 'upnp' && mapping.service.igdVersion, 2);
      assert.equal(mapping.externalPort, 52004);
    });

    it('add falls through the preference order: an unreachable UPnP device moves on to NAT-PMP', async () => {
      const { result: mapping, events } = await client.call<PortMapping>({
        op: 'add',
        mapper: { upnpLocation: `http://${LAB.routerLan}:${LAB.miniupnpdHttpPort + 1}/rootDesc.xml` },
        request: { internalPort: PORTS.natpmp, lifetimeS: LIFETIME_S, preference: ['upnp', 'natpmp'] },
      });
      assert.deepEqual(
        events.map((event) => `${event.type} ${'protocol' in event ? event.protocol : ''}`.trim()),
        ['portmap:trying upnp', 'portmap:failed upnp', 'portmap:trying natpmp', 'portmap:mapped'],
      );
      const failed = events[1];
      assert.ok(failed.type === 'portmap:failed' && failed.error.name === 'NetworkError', JSON.stringify(failed));
      assert.equal(mapping.protocol, 'natpmp');
      assert.ok(await delivered(mapping));
      await client.call({ op: 'delete', mapper: MAPPER, mapping });
      await assertNothingMapped();
    });

  });
});

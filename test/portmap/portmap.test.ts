import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { type PortMapEvent, PortMapper, type PortMapperOptions } from '../../core/nat/portmap.js';
import { PcpResult } from '../../core/nat/pcp.js';
import { FakeIgd, FakeUdpGateway, assertRejectsNamed, hex, igdDescription, soapOk, toHex } from './helpers.js';

const WANIP2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';

/** PCP answers as a PCP server would: echo the MAP data, assign 203.0.113.7:(internal + 1000). */
function pcpAnswer(request: Uint8Array, resultCode: number = PcpResult.SUCCESS): Uint8Array {
  const answer = new Uint8Array(60);
  answer.set(request.subarray(24, 60), 24);
  answer.set([2, 0x81, 0, resultCode]);
  answer.set(request.subarray(4, 8), 4);
  const internal = (request[40] << 8) | request[41];
  answer.set([(internal + 1000) >> 8, (internal + 1000) & 0xff], 42);
  answer.set(hex('00000000000000000000ffffcb007107'), 44);
  return answer;
}

/** NAT-PMP answers: address 203.0.113.7, internal P -> P + 2000. */
function natPmpAnswer(request: Uint8Array): Uint8Array {
  if (request[1] === 0) return hex('00 80 0000 00000001 cb007107');
  const answer = hex('00 81 0000 00000001 0000 0000 00000000');
  const internal = (request[4] << 8) | request[5];
  answer.set(request.subarray(4, 6), 8);
  answer.set([(internal + 2000) >> 8, (internal + 2000) & 0xff], 10);
  answer.set(request.subarray(8, 12), 12);
  return answer;
}

const isPcp = (request: Uint8Array): boolean => request[0] === 2;
const lifetimeOf = (request: Uint8Array): number => new DataView(request.buffer, request.byteOffset).getUint32(4);

describe('PortMapper (fake gateways on loopback)', () => {
  let udp: FakeUdpGateway;
  let igd: FakeIgd;
  let events: PortMapEvent[];

  const mapper = (options: PortMapperOptions = {}): PortMapper =>
    new PortMapper({
      gateway: '127.0.0.1',
      serverPort: udp.port,
      schedule: { initialMs: 300, maxAttempts: 2 }, // no spurious retransmissions; silence costs 900 ms
      upnpLocation: igd.location,
      onProgress: (event) => events.push(event),
      ...options,
    });
  const eventNames = (): string[] => events.map((event) => `${event.type}${'protocol' in event ? ` ${event.protocol}` : ''}`);

  before(async () => {
    udp = await FakeUdpGateway.start();
    igd = await FakeIgd.start();
    igd.description = igdDescription(WANIP2);
  });
  beforeEach(() => {
    udp.received.length = 0;
    igd.requests.length = 0;
    events = [];
    udp.answer = (request) => (isPcp(request) ? pcpAnswer(request) : natPmpAnswer(request));
    igd.onSoap = (action) =>
      action === 'GetExternalIPAddress'
        ? soapOk(action, WANIP2, { NewExternalIPAddress: '203.0.113.7' })
        : soapOk(action, WANIP2, { NewReservedPort: 7777 });
  });
  after(async () => {
    await udp.close();
    await igd.close();
  });

  it('add uses PCP first by default', async () => {
    const mapping = await mapper().add({ internalPort: 5004, lifetimeS: 120 });
    assert.equal(mapping.protocol, 'pcp');
    assert.equal(mapping.externalPort, 6004);
    assert.deepEqual(eventNames(), ['portmap:trying pcp', 'portmap:mapped']);
  });

  it('add falls through to NAT-PMP when PCP is refused', async () => {
    udp.answer = (request) => (isPcp(request) ? pcpAnswer(request, PcpResult.NOT_AUTHORIZED) : natPmpAnswer(request));
    const mapping = await mapper().add({ internalPort: 5004, lifetimeS: 120 });
    assert.equal(mapping.protocol, 'natpmp');
    assert.equal(mapping.externalPort, 7004);
    assert.deepEqual(eventNames(), ['portmap:trying pcp', 'portmap:failed pcp', 'portmap:trying natpmp', 'portmap:mapped']);
    const failed = events[1];
    assert.ok(failed.type === 'portmap:failed' && (failed.error as { reason?: string }).reason === 'not-authorized');
  });

  it('add falls back from PCP to NAT-PMP on a NAT-PMP-only gateway (UNSUPP_VERSION)', async () => {
    udp.answer = (request) => (isPcp(request) ? hex('00 81 0001 00000001') : natPmpAnswer(request));
    const mapping = await mapper().add({ internalPort: 5004, lifetimeS: 120 });
    assert.equal(mapping.protocol, 'natpmp');
    const failed = events[1];
    assert.ok(failed.type === 'portmap:failed' && (failed.error as { reason?: string }).reason === 'unsupported-version');
  });

  it('add follows a configured preference order', async () => {
    const mapping = await mapper({ preference: ['upnp', 'pcp'] }).add({ internalPort: 5004, lifetimeS: 120 });
    assert.equal(mapping.protocol, 'upnp');
    assert.equal(mapping.externalPort, 7777);
  });

  it('add throws NatTraversalError naming every protocol when none works', async () => {
    udp.answer = () => undefined;
    igd.onSoap = () => ({ status: 500, body: 'no' });
    const error = await assertRejectsNamed(mapper().add({ internalPort: 5004, lifetimeS: 120 }), 'NatTraversalError');
    assert.match(error.message, /pcp: no PCP answer.*natpmp: no NAT-PMP answer.*upnp: UPnP GetExternalIPAddress failed with HTTP 500/);
    assert.ok(error.cause instanceof AggregateError && error.cause.errors.length === 3);
  });

  it('add does not fall through on abort', async () => {
    udp.answer = () => undefined;
    await assertRejectsNamed(mapper().add({ internalPort: 5004, lifetimeS: 120 }, { signal: AbortSignal.timeout(20) }), 'AbortError');
    assert.deepEqual(eventNames(), ['portmap:trying pcp']);
  });

  it('add rejects a bad request with UsageError before sending anything', async () => {
    await assertRejectsNamed(mapper().add({ internalPort: 5004, lifetimeS: 0 }), 'UsageError');
    await assertRejectsNamed(mapper().add({ internalPort: 0, lifetimeS: 60 }), 'UsageError');
    await assertRejectsNamed(mapper().add({ internalPort: 5004, externalPort: 70000, lifetimeS: 60 }), 'UsageError');
    assert.equal(udp.received.length, 0);
  });

  it('probe reports all three protocols and deletes the PCP probe mapping', async () => {
    const result = await mapper().probe();
    assert.equal(result.gateway, '127.0.0.1');
    assert.equal(result.externalAddress, '203.0.113.7');
    for (const protocol of ['pcp', 'natpmp', 'upnp'] as const) {
      assert.equal(result.protocols[protocol].available, true, protocol);
      assert.equal(result.protocols[protocol].externalAddress, '203.0.113.7');
    }
    assert.equal(result.protocols.upnp.igdVersion, 2);
    const pcp = udp.received.map((datagram) => datagram.bytes).filter(isPcp);
    assert.equal(pcp.length, 2, 'one MAP and one delete');
    assert.equal(toHex(pcp[1].subarray(24, 36)), toHex(pcp[0].subarray(24, 36)), 'delete uses the same nonce');
    assert.equal(lifetimeOf(pcp[1]), 0);
    assert.ok(!igd.requests.some((request) => request.action.includes('PortMapping')), 'UPnP probe maps nothing');
  });

  it('probe reports a protocol that is down, with the reason', async () => {
    udp.answer = (request) => (isPcp(request) ? pcpAnswer(request, PcpResult.NOT_AUTHORIZED) : natPmpAnswer(request));
    const result = await mapper().probe();
    assert.equal(result.protocols.pcp.available, false);
    assert.deepEqual({ ...result.protocols.pcp.error, message: undefined }, { name: 'PortMapError', reason: 'not-authorized', message: undefined });
    assert.equal(result.protocols.natpmp.available, true);
  });

  it('probe reports a PCP probe mapping it could not delete', async () => {
    udp.answer = (request) => (isPcp(request) && lifetimeOf(request) === 0 ? undefined : isPcp(request) ? pcpAnswer(request) : natPmpAnswer(request));
    const result = await mapper().probe();
    assert.equal(result.protocols.pcp.leftover?.protocol, 'pcp');
    assert.equal(result.protocols.pcp.error?.name, 'NetworkError');
  });

  it('keep renews at half the lifetime and deletes when aborted', async () => {
    const m = mapper();
    const mapping = await m.add({ internalPort: 5004, lifetimeS: 1 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 1300);
    const final = await m.keep(mapping, { signal: controller.signal });
    assert.equal(final.externalPort, mapping.externalPort);
    const lifetimes = udp.received.map((datagram) => lifetimeOf(datagram.bytes));
    assert.deepEqual(lifetimes, [1, 1, 1, 0], 'map, two renewals (at ~0.5 s and ~1 s), delete');
    assert.deepEqual(eventNames().slice(2), ['portmap:renewed', 'portmap:renewed', 'portmap:deleted']);
  });

  it('keep gives up when renewals fail until the mapping expires, and still deletes', async () => {
    const m = mapper();
    const mapping = await m.add({ internalPort: 5004, lifetimeS: 2 });
    udp.answer = (request) => (lifetimeOf(request) === 0 ? pcpAnswer(request) : pcpAnswer(request, PcpResult.NO_RESOURCES));
    const error = await assertRejectsNamed(m.keep(mapping, { signal: new AbortController().signal }), 'PortMapError', 'no-resources');
    assert.ok(error);
    const lifetimes = udp.received.map((datagram) => lifetimeOf(datagram.bytes));
    assert.equal(lifetimes.at(-1), 0, 'deleted at the end');
  });

  it('list reads the UPnP table; delete emits portmap:deleted', async () => {
    igd.onSoap = (action) =>
      action === 'GetGenericPortMappingEntry' ? { status: 500, body: '<errorCode>713</errorCode>' } : soapOk(action, WANIP2);
    assert.deepEqual(await mapper().list(), []);
    const m = mapper();
    const mapping = await m.add({ internalPort: 5004, lifetimeS: 60, preference: ['natpmp'] });
    await m.delete(mapping);
    assert.equal(events.at(-1)?.type, 'portmap:deleted');
    assert.equal(toHex(udp.received.at(-1)?.bytes ?? new Uint8Array()), '00010000138c000000000000');
  });
});

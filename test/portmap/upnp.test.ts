import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  type UpnpGateway,
  encodeMSearch,
  encodeSoapRequest,
  findUpnpGateway,
  parseIgdDescription,
  parseSoapFault,
  parseSoapResponse,
  parseSsdpResponse,
  upnpDelete,
  upnpList,
  upnpMap,
  xmlEscape,
  xmlUnescape,
} from '../../core/nat/upnp.js';
import { FakeIgd, assertRejectsNamed, igdDescription, soapArg, soapFault, soapOk } from './helpers.js';

const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const WANIP2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
const WANPPP1 = 'urn:schemas-upnp-org:service:WANPPPConnection:1';
const LOCATION = 'http://192.0.2.1:5000/rootDesc.xml';

describe('SSDP', () => {
  it('encodes an M-SEARCH for a search target', () => {
    assert.equal(
      encodeMSearch(WANIP2),
      `M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ${WANIP2}\r\n\r\n`,
    );
  });

  it('reads LOCATION and ST from a search response (header names in any case)', () => {
    const text =
      'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nst: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n' +
      'USN: uuid:x::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n' +
      `Location: ${LOCATION}\r\n\r\n`;
    assert.deepEqual(parseSsdpResponse(text), {
      location: LOCATION,
      searchTarget: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
    });
  });

  it('ignores NOTIFY messages, other statuses, and responses without LOCATION', () => {
    assert.equal(parseSsdpResponse(`NOTIFY * HTTP/1.1\r\nLOCATION: ${LOCATION}\r\nNT: x\r\n\r\n`), undefined);
    assert.equal(parseSsdpResponse(`HTTP/1.1 404 Not Found\r\nLOCATION: ${LOCATION}\r\nST: x\r\n\r\n`), undefined);
    assert.equal(parseSsdpResponse('HTTP/1.1 200 OK\r\nST: x\r\n\r\n'), undefined);
    assert.equal(parseSsdpResponse(''), undefined);
  });
});

describe('IGD description', () => {
  it('finds the IGDv2 WANIPConnection:2 service and resolves its control URL', () => {
    assert.deepEqual(parseIgdDescription(igdDescription(WANIP2), LOCATION), {
      serviceType: WANIP2,
      controlUrl: 'http://192.0.2.1:5000/ctl/IPConn',
      igdVersion: 2,
    });
  });

  it('finds the IGDv1 WANIPConnection:1 service', () => {
    assert.equal(parseIgdDescription(igdDescription(WANIP1), LOCATION).igdVersion, 1);
  });

  it('falls back to WANPPPConnection:1', () => {
    assert.equal(parseIgdDescription(igdDescription(WANPPP1), LOCATION).serviceType, WANPPP1);
  });

  it('prefers WANIPConnection:2 over :1 in the same description', () => {
    const both = igdDescription(WANIP1, '/ctl/v1').replace('</serviceList></device></deviceList>', `<service><serviceType>${WANIP2}</serviceType><controlURL>/ctl/v2</controlURL></service></serviceList></device></deviceList>`);
    assert.equal(parseIgdDescription(both, LOCATION).controlUrl, 'http://192.0.2.1:5000/ctl/v2');
  });

  it('resolves the control URL against URLBase', () => {
    const xml = igdDescription(WANIP1, 'ctl/IPConn', 'http://192.0.2.1:5000/base/');
    assert.equal(parseIgdDescription(xml, LOCATION).controlUrl, 'http://192.0.2.1:5000/base/ctl/IPConn');
  });

  it('refuses a control URL on another host (no redirecting our requests elsewhere)', () => {
    assert.throws(() => parseIgdDescription(igdDescription(WANIP1, 'http://198.51.100.9/ctl'), LOCATION), {
      name: 'PortMapError',
      reason: 'no-service',
    });
  });

  it('reports a device without a WAN connection service', () => {
    assert.throws(() => parseIgdDescription(igdDescription('urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1'), LOCATION), {
      name: 'PortMapError',
      reason: 'no-service',
    });
  });
});

describe('SOAP', () => {
  it('encodes an action with escaped arguments', () => {
    assert.equal(
      encodeSoapRequest(WANIP1, 'AddPortMapping', [
        ['NewExternalPort', 6000],
        ['NewPortMappingDescription', 'a<b>&"c\''],
      ]),
      '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
        `<u:AddPortMapping xmlns:u="${WANIP1}"><NewExternalPort>6000</NewExternalPort>` +
        '<NewPortMappingDescription>a&lt;b&gt;&amp;&quot;c&apos;</NewPortMappingDescription></u:AddPortMapping></s:Body></s:Envelope>',
    );
  });

  it('reads output arguments: any prefix, empty and self-closing elements, entities', () => {
    const xml =
      '<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>' +
      `<m:GetGenericPortMappingEntryResponse xmlns:m="${WANIP1}">` +
      '<NewRemoteHost/><NewExternalPort>6000</NewExternalPort><NewProtocol>UDP</NewProtocol>' +
      '<NewInternalClient></NewInternalClient><NewPortMappingDescription>a &amp; b &#x41;&#66;</NewPortMappingDescription>' +
      '</m:GetGenericPortMappingEntryResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>';
    assert.deepEqual(parseSoapResponse(xml, 'GetGenericPortMappingEntry'), {
      NewRemoteHost: '',
      NewExternalPort: '6000',
      NewProtocol: 'UDP',
      NewInternalClient: '',
      NewPortMappingDescription: 'a & b AB',
    });
    assert.equal(parseSoapResponse(xml, 'AddPortMapping'), undefined);
  });

  it('reads the UPnP error of a fault', () => {
    assert.deepEqual(parseSoapFault(soapFault(718, 'ConflictInMappingEntry')), { code: 718, description: 'ConflictInMappingEntry' });
    assert.equal(parseSoapFault('<html>500</html>'), undefined);
  });

  it('escapes and unescapes XML text', () => {
    assert.equal(xmlUnescape(xmlEscape(`<"&'>`)), `<"&'>`);
    assert.equal(xmlUnescape('&unknown;'), '&unknown;');
  });
});

describe('UPnP client against a fake IGD on loopback', () => {
  let igd: FakeIgd;

  before(async () => {
    igd = await FakeIgd.start();
  });
  beforeEach(() => {
    igd.requests.length = 0;
  });
  after(async () => igd.close());

  async function gateway(serviceType: string): Promise<UpnpGateway> {
    igd.description = igdDescription(serviceType);
    return findUpnpGateway({ location: igd.location });
  }

  it('describes the gateway from its location', async () => {
    const found = await gateway(WANIP2);
    assert.equal(found.service.igdVersion, 2);
    assert.equal(found.internalAddress, '127.0.0.1');
    assert.equal(found.service.controlUrl, igd.location.replace('rootDesc.xml', 'ctl/IPConn'));
  });

  it('IGDv2: maps with AddAnyPortMapping and takes the reserved port', async () => {
    const found = await gateway(WANIP2);
    igd.onSoap = (action) =>
      action === 'GetExternalIPAddress'
        ? soapOk(action, WANIP2, { NewExternalIPAddress: '203.0.113.7' })
        : soapOk(action, WANIP2, { NewReservedPort: 6100 });
    const mapping = await upnpMap(found, { internalPort: 5004, externalPort: 6000, lifetimeS: 3600 });
    assert.equal(mapping.externalPort, 6100);
    assert.equal(mapping.externalAddress, '203.0.113.7');
    assert.deepEqual(igd.requests.map((request) => request.action), ['GetExternalIPAddress', 'AddAnyPortMapping']);
    const add = igd.requests[1];
    assert.equal(add.soapAction, `"${WANIP2}#AddAnyPortMapping"`);
    assert.equal(soapArg(add.body, 'NewInternalClient'), '127.0.0.1');
    assert.equal(soapArg(add.body, 'NewProtocol'), 'UDP');
    assert.equal(soapArg(add.body, 'NewLeaseDuration'), '3600');
  });

  it('IGDv1: on ConflictInMappingEntry (718) tries another port, bounded', async () => {
    const found = await gateway(WANIP1);
    let adds = 0;
    igd.onSoap = (action) => {
      if (action === 'GetExternalIPAddress') return soapOk(action, WANIP1, { NewExternalIPAddress: '203.0.113.7' });
      adds += 1;
      return adds < 3 ? { status: 500, body: soapFault(718, 'ConflictInMappingEntry') } : soapOk(action, WANIP1);
    };
    const mapping = await upnpMap(found, { internalPort: 5004, lifetimeS: 3600 });
    const ports = igd.requests.filter((request) => request.action === 'AddPortMapping').map((request) => Number(soapArg(request.body, 'NewExternalPort')));
    assert.equal(ports[0], 5004, 'first tries the internal port');
    assert.equal(ports.length, 3);
    assert.ok(ports[2] >= 49152, 'then random dynamic ports');
    assert.equal(mapping.externalPort, ports[2]);
  });

  it('IGDv1: gives up after 3 conflicts with PortMapError conflict', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = (action) =>
      action === 'GetExternalIPAddress'
        ? soapOk(action, WANIP1, { NewExternalIPAddress: '203.0.113.7' })
        : { status: 500, body: soapFault(718, 'ConflictInMappingEntry') };
    await assertRejectsNamed(upnpMap(found, { internalPort: 5004, lifetimeS: 3600 }), 'PortMapError', 'conflict');
    assert.equal(igd.requests.filter((request) => request.action === 'AddPortMapping').length, 4);
  });

  it('IGDv1: retries with a permanent lease when only those are supported (725)', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = (action, body) => {
      if (action === 'GetExternalIPAddress') return soapOk(action, WANIP1, { NewExternalIPAddress: '203.0.113.7' });
      return soapArg(body, 'NewLeaseDuration') === '0' ? soapOk(action, WANIP1) : { status: 500, body: soapFault(725, 'OnlyPermanentLeasesSupported') };
    };
    const mapping = await upnpMap(found, { internalPort: 5004, lifetimeS: 3600 });
    assert.equal(mapping.lifetimeS, 0);
  });

  it('maps refusals to PortMapError reasons, with the UPnP error code', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = (action) =>
      action === 'GetExternalIPAddress'
        ? soapOk(action, WANIP1, { NewExternalIPAddress: '203.0.113.7' })
        : { status: 500, body: soapFault(606, 'Action not authorized') };
    const error = await assertRejectsNamed(upnpMap(found, { internalPort: 5004, lifetimeS: 60 }), 'PortMapError', 'not-authorized');
    assert.equal((error as { resultCode?: number }).resultCode, 606);
  });

  it('refuses to map when the gateway has no external address', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = (action) => soapOk(action, WANIP1, { NewExternalIPAddress: '0.0.0.0' });
    await assertRejectsNamed(upnpMap(found, { internalPort: 5004, lifetimeS: 60 }), 'PortMapError', 'network-failure');
    assert.deepEqual(igd.requests.map((request) => request.action), ['GetExternalIPAddress']);
  });

  it('lists the table until SpecifiedArrayIndexInvalid (713)', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = (action, body) => {
      const index = Number(soapArg(body, 'NewPortMappingIndex'));
      if (index >= 2) return { status: 500, body: soapFault(713, 'SpecifiedArrayIndexInvalid') };
      return soapOk(action, WANIP1, {
        NewRemoteHost: '',
        NewExternalPort: 6000 + index,
        NewProtocol: 'UDP',
        NewInternalPort: 5000 + index,
        NewInternalClient: '192.0.2.33',
        NewEnabled: 1,
        NewPortMappingDescription: `m${index}`,
        NewLeaseDuration: 100,
      });
    };
    const rows = await upnpList(found);
    assert.equal(rows.length, 2);
    assert.deepEqual(rows[1], {
      remoteHost: '',
      externalPort: 6001,
      protocol: 'UDP',
      internalClient: '192.0.2.33',
      internalPort: 5001,
      enabled: true,
      description: 'm1',
      leaseDurationS: 100,
    });
  });

  it('deletes; a mapping already gone (714) counts as deleted', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = (action) =>
      action === 'GetExternalIPAddress'
        ? soapOk(action, WANIP1, { NewExternalIPAddress: '203.0.113.7' })
        : action === 'AddPortMapping'
          ? soapOk(action, WANIP1)
          : { status: 500, body: soapFault(714, 'NoSuchEntryInArray') };
    const mapping = await upnpMap(found, { internalPort: 5004, lifetimeS: 60 });
    await upnpDelete(mapping);
    const deletion = igd.requests.at(-1);
    assert.equal(deletion?.action, 'DeletePortMapping');
    assert.equal(soapArg(deletion?.body ?? '', 'NewExternalPort'), '5004');
  });

  it('times out a request that is never answered with NetworkError', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = () => 'hang';
    const error = await assertRejectsNamed(upnpList(found, { timeoutMs: 100 }), 'NetworkError');
    assert.match(error.message, /within 100 ms/);
  });

  it('aborts with AbortError', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = () => 'hang';
    await assertRejectsNamed(upnpList(found, { signal: AbortSignal.timeout(50) }), 'AbortError');
  });

  it('reports an HTTP error without a fault as action-failed', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = () => ({ status: 503, body: 'busy' });
    await assertRejectsNamed(upnpList(found), 'PortMapError', 'action-failed');
  });

  it('refuses an oversized answer', async () => {
    const found = await gateway(WANIP1);
    igd.onSoap = () => ({ status: 200, body: 'x'.repeat(300 * 1024) });
    await assertRejectsNamed(upnpList(found), 'PortMapError', 'action-failed');
  });
});

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import { PortMapError } from '../../core/nat/gateway.js';
import {
  type PcpMapRequest,
  PcpResult,
  acceptMapResponse,
  decodePcpResponse,
  encodePcpMapRequest,
  formatAddress16,
  pcpDelete,
  pcpMap,
} from '../../core/nat/pcp.js';
import { FakeUdpGateway, assertDecodeError, assertRejectsNamed, hex, toHex } from './helpers.js';

const NONCE = hex('000102030405060708090a0b');

const REQUEST: PcpMapRequest = {
  clientAddress: '192.0.2.33',
  nonce: NONCE,
  protocol: 17,
  internalPort: 5004,
  suggestedExternalPort: 6000,
  suggestedExternalAddress: '0.0.0.0',
  lifetimeS: 7200,
};

/** RFC 6887 MAP request for REQUEST, field by field. */
const REQUEST_HEX =
  '02 01 0000' + // version 2, R=0 opcode MAP, reserved
  '00001c20' + // requested lifetime 7200
  '00000000 00000000 0000ffff c0000221' + // client ::ffff:192.0.2.33
  '000102030405060708090a0b' + // nonce
  '11 000000' + // protocol UDP, reserved
  '138c 1770' + // internal port 5004, suggested external port 6000
  '00000000 00000000 0000ffff 00000000'; // suggested external ::ffff:0.0.0.0

/** A successful MAP response: lifetime 3600, epoch 1234, assigned 203.0.113.7:6000. */
const RESPONSE_HEX =
  '02 81 00 00' + // version 2, R=1 opcode MAP, reserved, result SUCCESS
  '00000e10' + // lifetime 3600
  '000004d2' + // epoch 1234
  '000000000000000000000000' + // reserved
  '000102030405060708090a0b' + // nonce
  '11 000000' +
  '138c 1770' + // internal port 5004, assigned external port 6000
  '00000000 00000000 0000ffff cb007107'; // assigned external ::ffff:203.0.113.7

describe('PCP MAP encoding', () => {
  it('encodes the golden request byte for byte', () => {
    assert.equal(toHex(encodePcpMapRequest(REQUEST)), toHex(hex(REQUEST_HEX)));
  });

  it('encodes a suggested external address as IPv4-mapped IPv6', () => {
    const bytes = encodePcpMapRequest({ ...REQUEST, suggestedExternalAddress: '203.0.113.7' });
    assert.equal(toHex(bytes.subarray(44)), '00000000000000000000ffffcb007107');
  });

  it('a delete is the same request with lifetime 0', () => {
    const bytes = encodePcpMapRequest({ ...REQUEST, lifetimeS: 0 });
    assert.equal(toHex(bytes.subarray(4, 8)), '00000000');
  });

  for (const [what, bad] of [
    ['internal port 0', { internalPort: 0 }],
    ['internal port 65536', { internalPort: 65536 }],
    ['negative lifetime', { lifetimeS: -1 }],
    ['an IPv6 client address', { clientAddress: '2001:db8::1' }],
    ['an 11-byte nonce', { nonce: NONCE.subarray(1) }],
  ] as const) {
    it(`rejects ${what} with UsageError`, () => {
      assert.throws(() => encodePcpMapRequest({ ...REQUEST, ...bad }), { name: 'UsageError' });
    });
  }
});

describe('PCP response decoding', () => {
  it('decodes the golden success response', () => {
    const response = decodePcpResponse(hex(RESPONSE_HEX));
    assert.deepEqual(response, {
      version: 2,
      opcode: 1,
      resultCode: 0,
      lifetimeS: 3600,
      epochS: 1234,
      map: { nonce: NONCE, protocol: 17, internalPort: 5004, externalPort: 6000, externalAddress: '203.0.113.7' },
    });
  });

  it('decodes a header-only error response (no opcode data)', () => {
    const response = decodePcpResponse(hex('02 81 00 02 0000001e 000004d2 000000000000000000000000'));
    assert.equal(response.resultCode, PcpResult.NOT_AUTHORIZED);
    assert.equal(response.lifetimeS, 30);
    assert.equal(response.map, undefined);
  });

  it('skips well-framed options after the MAP data', () => {
    const withOption = `${RESPONSE_HEX} 01 00 0010 ${'00'.repeat(16)}`; // THIRD_PARTY option, 16 bytes
    assert.equal(decodePcpResponse(hex(withOption)).map?.externalPort, 6000);
  });

  it("reads a NAT-PMP-only server's answer as UNSUPP_VERSION", () => {
    const response = decodePcpResponse(hex('00 81 0001 000004d2'));
    assert.equal(response.version, 0);
    assert.equal(response.resultCode, PcpResult.UNSUPP_VERSION);
  });

  it("reads a PCPv1 server's UNSUPP_VERSION", () => {
    const response = decodePcpResponse(hex('01 81 00 01 00000000 00000000 000000000000000000000000'));
    assert.equal(response.version, 1);
    assert.equal(response.resultCode, PcpResult.UNSUPP_VERSION);
  });

  const invalid: [string, string, string][] = [
    ['an empty datagram', '', 'truncated'],
    ['3 bytes', '02 81 00', 'truncated'],
    ['a header cut short', RESPONSE_HEX.replace(/\s/g, '').slice(0, 40), 'truncated'],
    ['a success without MAP data', '02 81 00 00 00000e10 000004d2 000000000000000000000000', 'truncated'],
    ['a length that is not a multiple of 4', `${RESPONSE_HEX} 00`, 'bad-length'],
    ['more than 1100 bytes', `${RESPONSE_HEX} ${'00'.repeat(1044)}`, 'too-large'],
    ['a request (R bit clear)', REQUEST_HEX, 'not-response'],
    ['an option overrunning the message', `${RESPONSE_HEX} 01 00 0020 ${'00'.repeat(16)}`, 'bad-option'],
    ['a version-0 answer that is not UNSUPP_VERSION', '00 81 0002 000004d2', 'bad-version'],
    ['version 3', '03 81 00 01 00000000 00000000 000000000000000000000000', 'bad-version'],
  ];
  for (const [what, bytes, reason] of invalid) {
    it(`rejects ${what} with DecodeError '${reason}'`, () => {
      assertDecodeError(() => decodePcpResponse(hex(bytes)), reason, 'pcp');
    });
  }

  it('random bytes produce a response or a DecodeError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), fc.integer({ min: 0, max: 2 }), (bytes, version) => {
        if (bytes.length > 0) bytes[0] = version;
        try {
          decodePcpResponse(bytes);
        } catch (error) {
          assert.ok(error instanceof DecodeError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('matching responses to a MAP request', () => {
  it('accepts the answer to this request', () => {
    assert.equal(acceptMapResponse(hex(RESPONSE_HEX), REQUEST)?.map.externalPort, 6000);
  });

  it('ignores an answer with another nonce or internal port', () => {
    assert.equal(acceptMapResponse(hex(RESPONSE_HEX), { ...REQUEST, nonce: new Uint8Array(12) }), undefined);
    assert.equal(acceptMapResponse(hex(RESPONSE_HEX), { ...REQUEST, internalPort: 5005 }), undefined);
  });

  const refusals: [keyof typeof PcpResult, string][] = [
    ['UNSUPP_VERSION', 'unsupported-version'],
    ['NOT_AUTHORIZED', 'not-authorized'],
    ['MALFORMED_REQUEST', 'malformed-request'],
    ['NETWORK_FAILURE', 'network-failure'],
    ['NO_RESOURCES', 'no-resources'],
    ['UNSUPP_PROTOCOL', 'unsupported-protocol'],
    ['CANNOT_PROVIDE_EXTERNAL', 'cannot-provide-external'],
    ['ADDRESS_MISMATCH', 'address-mismatch'],
  ];
  for (const [name, reason] of refusals) {
    it(`maps ${name} to PortMapError '${reason}'`, () => {
      const bytes = hex(RESPONSE_HEX);
      bytes[3] = PcpResult[name];
      assert.throws(
        () => acceptMapResponse(bytes, REQUEST),
        (error: unknown) =>
          error instanceof PortMapError &&
          error.name === 'PortMapError' &&
          error.protocol === 'pcp' &&
          error.reason === reason &&
          error.resultCode === PcpResult[name] &&
          error.message.includes(name),
      );
    });
  }

  it('maps an unknown result code to reason unknown', () => {
    const bytes = hex(RESPONSE_HEX);
    bytes[3] = 99;
    assert.throws(() => acceptMapResponse(bytes, REQUEST), { name: 'PortMapError', reason: 'unknown' });
  });
});

describe('formatAddress16', () => {
  it('formats IPv4-mapped addresses as dotted quads and others as RFC 5952 text', () => {
    assert.equal(formatAddress16(hex('00000000000000000000ffffc0000201')), '192.0.2.1');
    assert.equal(formatAddress16(hex('20010db8000000000000000000000001')), '2001:db8::1');
    assert.equal(formatAddress16(hex('20010db8000000010000000000000001')), '2001:db8:0:1::1');
    assert.equal(formatAddress16(hex('00000000000000000000000000000000')), '::');
    assert.equal(formatAddress16(hex('20010db8000100020003000400050006')), '2001:db8:1:2:3:4:5:6');
  });
});

describe('PCP client against a fake gateway on loopback', () => {
  let gateway: FakeUdpGateway;
  /** 500 ms unless a test is about retransmission timing: no spurious retransmissions on a busy machine. */
  const options = (initialMs = 500) => ({ gateway: '127.0.0.1', port: gateway.port, schedule: { initialMs, maxAttempts: 3 } });

  /** Answers a MAP request as a PCP server would: echoing its MAP data, with this result. */
  function answerMap(resultCode: number, externalPort: number) {
    return (request: Uint8Array): Uint8Array => {
      const response = new Uint8Array(60);
      response.set(request.subarray(24, 60), 24);
      response[0] = 2;
      response[1] = 0x81;
      response[3] = resultCode;
      response.set(request.subarray(4, 8), 4); // grant the requested lifetime
      response[42] = externalPort >> 8;
      response[43] = externalPort & 0xff;
      response.set(hex('00000000000000000000ffffcb007107'), 44);
      return response;
    };
  }

  before(async () => {
    gateway = await FakeUdpGateway.start();
  });
  beforeEach(() => {
    gateway.received.length = 0;
  });
  after(async () => gateway.close());

  it('maps, renews with the same nonce, and deletes with lifetime 0', async () => {
    gateway.answer = answerMap(PcpResult.SUCCESS, 6001);
    const mapping = await pcpMap({ internalPort: 5004, externalPort: 6001, lifetimeS: 120 }, options());
    assert.deepEqual({ ...mapping, nonce: mapping.nonce.length }, {
      protocol: 'pcp',
      gateway: '127.0.0.1',
      internalAddress: '127.0.0.1',
      internalPort: 5004,
      externalAddress: '203.0.113.7',
      externalPort: 6001,
      lifetimeS: 120,
      nonce: 24,
    });
    const renewed = await pcpMap({ internalPort: 5004, lifetimeS: 120, nonce: mapping.nonce }, options());
    assert.equal(renewed.nonce, mapping.nonce);
    await pcpDelete(mapping, { port: gateway.port });

    const [first, renewal, deletion] = gateway.received.map((datagram) => datagram.bytes);
    assert.equal(toHex(first.subarray(8, 24)), '00000000000000000000ffff7f000001', 'client address ::ffff:127.0.0.1');
    assert.equal(toHex(renewal.subarray(24, 36)), mapping.nonce);
    assert.equal(toHex(deletion.subarray(24, 36)), mapping.nonce);
    assert.equal(toHex(deletion.subarray(4, 8)), '00000000', 'delete = lifetime 0');
  });

  it('retransmits at doubling intervals until answered', async () => {
    const answer = answerMap(PcpResult.SUCCESS, 6002);
    gateway.answer = (request, index) => (index < 2 ? undefined : answer(request));
    await pcpMap({ internalPort: 5004, lifetimeS: 120 }, options(50));
    const times = gateway.received.map((datagram) => datagram.atMs);
    assert.equal(times.length, 3);
    const [gap1, gap2] = [times[1] - times[0], times[2] - times[1]];
    assert.ok(gap1 >= 45 && gap1 < 100, `first retransmission after ~50 ms (${gap1})`);
    assert.ok(gap2 >= 95 && gap2 < 180, `second after ~100 ms (${gap2})`);
  });

  it('ignores malformed and foreign datagrams and takes the real answer', async () => {
    const answer = answerMap(PcpResult.SUCCESS, 6003);
    gateway.answer = (request) => {
      const otherNonce = answer(request);
      otherNonce[24] ^= 0xff;
      return [hex('02 81 00'), otherNonce, answer(request)];
    };
    const mapping = await pcpMap({ internalPort: 5004, lifetimeS: 120 }, options());
    assert.equal(mapping.externalPort, 6003);
  });

  it('gives up with NetworkError after the scheduled attempts, naming a malformed answer', async () => {
    gateway.answer = () => hex('02 81 00');
    const error = await assertRejectsNamed(pcpMap({ internalPort: 5004, lifetimeS: 120 }, options(50)), 'NetworkError');
    assert.equal(gateway.received.length, 3);
    assert.match(error.message, /after 3 attempts \(350 ms\).*malformed/);
  });

  it('surfaces a refusal as PortMapError without retrying', async () => {
    gateway.answer = answerMap(PcpResult.NO_RESOURCES, 0);
    await assertRejectsNamed(pcpMap({ internalPort: 5004, lifetimeS: 120 }, options()), 'PortMapError', 'no-resources');
    assert.equal(gateway.received.length, 1);
  });

  it('aborts with AbortError', async () => {
    gateway.answer = () => undefined;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    await assertRejectsNamed(pcpMap({ internalPort: 5004, lifetimeS: 120 }, { ...options(), signal: controller.signal }), 'AbortError');
  });
});

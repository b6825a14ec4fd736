import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import {
  NatPmpResult,
  acceptResponse,
  decodeNatPmpResponse,
  encodeNatPmpExternalAddressRequest,
  encodeNatPmpMapRequest,
  natPmpDelete,
  natPmpExternalAddress,
  natPmpMap,
} from '../../core/nat/natpmp.js';
import { FakeUdpGateway, assertDecodeError, assertRejectsNamed, hex, toHex } from './helpers.js';

const ADDRESS_ANSWER = '00 80 0000 000004d2 cb007107'; // success, epoch 1234, 203.0.113.7
const MAP_ANSWER = '00 81 0000 000004d2 138c 1770 00000e10'; // 5004 -> 6000 for 3600 s

describe('NAT-PMP encoding', () => {
  it('encodes the external address request', () => {
    assert.equal(toHex(encodeNatPmpExternalAddressRequest()), '0000');
  });

  it('encodes the golden UDP map request', () => {
    const bytes = encodeNatPmpMapRequest({ internalPort: 5004, suggestedExternalPort: 6000, lifetimeS: 7200 });
    assert.equal(toHex(bytes), toHex(hex('00 01 0000 138c 1770 00001c20')));
  });

  it('encodes a delete as external port 0, lifetime 0', () => {
    const bytes = encodeNatPmpMapRequest({ internalPort: 5004, suggestedExternalPort: 0, lifetimeS: 0 });
    assert.equal(toHex(bytes), toHex(hex('00 01 0000 138c 0000 00000000')));
  });

  it('rejects out-of-range fields with UsageError', () => {
    assert.throws(() => encodeNatPmpMapRequest({ internalPort: 0, suggestedExternalPort: 0, lifetimeS: 1 }), { name: 'UsageError' });
    assert.throws(() => encodeNatPmpMapRequest({ internalPort: 1, suggestedExternalPort: 70000, lifetimeS: 1 }), { name: 'UsageError' });
    assert.throws(() => encodeNatPmpMapRequest({ internalPort: 1, suggestedExternalPort: 0, lifetimeS: 2 ** 32 }), { name: 'UsageError' });
  });
});

describe('NAT-PMP decoding', () => {
  it('decodes the golden external address answer', () => {
    assert.deepEqual(decodeNatPmpResponse(hex(ADDRESS_ANSWER)), {
      opcode: 0,
      resultCode: 0,
      epochS: 1234,
      externalAddress: '203.0.113.7',
      mapping: undefined,
    });
  });

  it('decodes the golden map answer', () => {
    assert.deepEqual(decodeNatPmpResponse(hex(MAP_ANSWER)), {
      opcode: 1,
      resultCode: 0,
      epochS: 1234,
      externalAddress: undefined,
      mapping: { internalPort: 5004, externalPort: 6000, lifetimeS: 3600 },
    });
  });

  it('decodes an 8-byte error answer', () => {
    const response = decodeNatPmpResponse(hex('00 81 0002 000004d2'));
    assert.equal(response.resultCode, NatPmpResult.NOT_AUTHORIZED);
    assert.equal(response.mapping, undefined);
  });

  const invalid: [string, string, string][] = [
    ['an empty datagram', '', 'truncated'],
    ['3 bytes (the answer that crashes npm nat-pmp)', '00 80 00', 'truncated'],
    ['a successful address answer cut short', '00 80 0000 000004d2 cb00', 'truncated'],
    ['a successful map answer cut short', '00 81 0000 000004d2 138c 1770', 'truncated'],
    ['version 2 (a PCP answer)', '02 81 0000 000004d2 138c 1770 00000e10', 'bad-version'],
    ['a request', '00 01 0000 138c 1770 00001c20', 'not-response'],
    ['more than 1100 bytes', `${MAP_ANSWER} ${'00'.repeat(1090)}`, 'too-large'],
  ];
  for (const [what, bytes, reason] of invalid) {
    it(`rejects ${what} with DecodeError '${reason}'`, () => {
      assertDecodeError(() => decodeNatPmpResponse(hex(bytes)), reason, 'nat-pmp');
    });
  }

  it('random bytes produce an answer or a DecodeError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0x80, max: 0x82 }), (bytes, opcode) => {
        if (bytes.length > 1) {
          bytes[0] = 0;
          bytes[1] = opcode;
        }
        try {
          decodeNatPmpResponse(bytes);
        } catch (error) {
          assert.ok(error instanceof DecodeError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('NAT-PMP result codes', () => {
  const refusals: [keyof typeof NatPmpResult, string][] = [
    ['UNSUPPORTED_VERSION', 'unsupported-version'],
    ['NOT_AUTHORIZED', 'not-authorized'],
    ['NETWORK_FAILURE', 'network-failure'],
    ['OUT_OF_RESOURCES', 'no-resources'],
    ['UNSUPPORTED_OPCODE', 'unsupported-opcode'],
  ];
  for (const [name, reason] of refusals) {
    it(`maps ${name} to PortMapError '${reason}'`, () => {
      const bytes = hex(`00 81 000${NatPmpResult[name]} 000004d2`);
      assert.throws(() => acceptResponse(bytes, 1), {
        name: 'PortMapError',
        protocol: 'natpmp',
        reason,
        resultCode: NatPmpResult[name],
      });
    });
  }

  it('ignores an answer to another opcode', () => {
    assert.equal(acceptResponse(hex(ADDRESS_ANSWER), 1), undefined);
  });
});

describe('NAT-PMP client against a fake gateway on loopback', () => {
  let gateway: FakeUdpGateway;
  /** 500 ms unless a test waits for the timeout: no spurious retransmissions on a busy machine. */
  const options = (initialMs = 500) => ({ gateway: '127.0.0.1', port: gateway.port, schedule: { initialMs, maxAttempts: 3 } });

  /** A NAT-PMP server: external address 203.0.113.7, maps internal P to P + 1000. */
  function server(addressAnswer = ADDRESS_ANSWER) {
    return (request: Uint8Array): Uint8Array => {
      if (request[1] === 0) return hex(addressAnswer);
      const answer = hex('00 81 0000 000004d2 0000 0000 00000000');
      const internal = (request[4] << 8) | request[5];
      const lifetime = request.subarray(8, 12);
      answer.set(request.subarray(4, 6), 8);
      const external = lifetime.every((byte) => byte === 0) ? 0 : internal + 1000;
      answer.set([external >> 8, external & 0xff], 10);
      answer.set(lifetime, 12);
      return answer;
    };
  }

  before(async () => {
    gateway = await FakeUdpGateway.start();
  });
  beforeEach(() => {
    gateway.received.length = 0;
  });
  after(async () => gateway.close());

  it('reads the external address', async () => {
    gateway.answer = server();
    assert.equal(await natPmpExternalAddress(options()), '203.0.113.7');
  });

  it('maps (address first, so a failure cannot leave a mapping) and deletes', async () => {
    gateway.answer = server();
    const mapping = await natPmpMap({ internalPort: 5004, lifetimeS: 60 }, options());
    assert.deepEqual(mapping, {
      protocol: 'natpmp',
      gateway: '127.0.0.1',
      internalPort: 5004,
      externalAddress: '203.0.113.7',
      externalPort: 6004,
      lifetimeS: 60,
    });
    await natPmpDelete(mapping, { port: gateway.port });
    assert.deepEqual(
      gateway.received.map((datagram) => toHex(datagram.bytes)),
      ['0000', '00010000138c00000000003c', '00010000138c000000000000'],
    );
  });

  it('refuses to map when the gateway has no external address yet (0.0.0.0)', async () => {
    gateway.answer = server('00 80 0000 000004d2 00000000');
    await assertRejectsNamed(natPmpMap({ internalPort: 5004, lifetimeS: 60 }, options()), 'PortMapError', 'network-failure');
    assert.equal(gateway.received.length, 1, 'no map request was sent');
  });

  it('ignores a map answer for another internal port', async () => {
    const real = server();
    gateway.answer = (request) => {
      if (request[1] === 0) return real(request);
      const other = real(request);
      other[9] += 1;
      return [other, real(request)];
    };
    assert.equal((await natPmpMap({ internalPort: 5004, lifetimeS: 60 }, options())).internalPort, 5004);
  });

  it('times out with NetworkError when nothing answers', async () => {
    gateway.answer = () => undefined;
    await assertRejectsNamed(natPmpExternalAddress(options(50)), 'NetworkError');
    assert.equal(gateway.received.length, 3);
  });
});

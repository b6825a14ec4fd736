import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import {
  CANDIDATE_LIMITS,
  type Candidate,
  type InterfaceList,
  addressScope,
  candidatePriority,
  gatherCandidates,
  hostCandidates,
  parseEndpoint,
  predictedCandidates,
  reflexiveCandidates,
  stunObservations,
  validateCandidate,
} from '../../core/p2p/candidates.js';

function v4(address: string, extra: Partial<NetworkInterfaceInfo> = {}): NetworkInterfaceInfo {
  return { address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/24`, ...extra } as NetworkInterfaceInfo;
}
function v6(address: string, extra: Partial<NetworkInterfaceInfo> = {}): NetworkInterfaceInfo {
  return { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/64`, scopeid: 0, ...extra } as NetworkInterfaceInfo;
}

/** A workstation with everything that should and should not become a host candidate. */
const MACHINE: InterfaceList = {
  lo: [v4('127.0.0.1', { internal: true }), v6('::1', { internal: true })],
  eth0: [v4('192.168.1.20'), v6('2001:db8:1::20'), v6('fe80::1', { scopeid: 2 }), v6('fd12:3456::20')],
  wlan0: [v4('100.72.1.9'), v4('169.254.10.10'), v4('192.168.1.20')],
  ppp0: [v4('198.51.100.33')],
  docker0: [v4('172.17.0.1')],
  'br-0a1b2c': [v4('172.18.0.1')],
  virbr0: [v4('192.168.122.1')],
  veth12ab: [v6('fe80::2')],
  vmnet8: [v4('192.168.200.1')],
  lxcbr0: [v4('10.0.3.1')],
  cni0: [v4('10.88.0.1')],
  'flannel.1': [v4('10.244.0.0')],
  tailscale0: [v4('100.100.1.1'), v6('fd7a:115c:a1e0::1')],
  wg0: [v4('10.8.0.2')],
  tun0: [v4('10.9.0.2')],
  odd0: [v4('0.0.0.0'), v4('224.0.0.5'), v4('240.0.0.1'), v6('::ffff:192.0.2.1'), v6('ff02::1'), v6('64:ff9b::1'), v4('not-an-address')],
};

const describeCandidates = (list: readonly Candidate[]) => list.map((c) => `${c.type} ${c.family} ${c.address}:${c.port}`);

describe('host candidates (injected interface lists; nothing is sent)', () => {
  it('keeps private, CGNAT and public IPv4 and global and ULA IPv6, IPv6 first, with the shared socket port', () => {
    const { candidates } = hostCandidates({ port: 4433, interfaces: () => MACHINE });
    assert.deepEqual(describeCandidates(candidates), [
      'host IPv6 2001:db8:1::20:4433',
      'host IPv6 fd12:3456::20:4433',
      'host IPv4 198.51.100.33:4433',
      'host IPv4 192.168.1.20:4433',
      'host IPv4 100.72.1.9:4433',
    ]);
    const priorities = candidates.map((c) => c.priority);
    assert.deepEqual(priorities, [...priorities].sort((a, b) => b - a));
    assert.equal(new Set(priorities).size, priorities.length);
  });

  it('says why each other address was left out', () => {
    const { skipped } = hostCandidates({ port: 4433, interfaces: () => MACHINE });
    const reasons = Object.fromEntries(skipped.map((s) => [`${s.interface} ${s.address}`, s.reason + (s.scope ? ` ${s.scope}` : '')]));
    assert.deepEqual(reasons, {
      'lo 127.0.0.1': 'internal',
      'lo ::1': 'internal',
      'eth0 fe80::1': 'scope link-local',
      'wlan0 169.254.10.10': 'scope link-local',
      'wlan0 192.168.1.20': 'duplicate',
      'docker0 172.17.0.1': 'virtual-interface',
      'br-0a1b2c 172.18.0.1': 'virtual-interface',
      'virbr0 192.168.122.1': 'virtual-interface',
      'veth12ab fe80::2': 'virtual-interface',
      'vmnet8 192.168.200.1': 'virtual-interface',
      'lxcbr0 10.0.3.1': 'virtual-interface',
      'cni0 10.88.0.1': 'virtual-interface',
      'flannel.1 10.244.0.0': 'virtual-interface',
      'tailscale0 100.100.1.1': 'virtual-interface',
      'tailscale0 fd7a:115c:a1e0::1': 'virtual-interface',
      'wg0 10.8.0.2': 'virtual-interface',
      'tun0 10.9.0.2': 'virtual-interface',
      'odd0 0.0.0.0': 'scope unspecified',
      'odd0 224.0.0.5': 'scope multicast',
      'odd0 240.0.0.1': 'scope reserved',
      'odd0 ::ffff:c000:201': 'scope ipv4-mapped',
      'odd0 ff02::1': 'scope multicast',
      'odd0 64:ff9b::1': 'scope reserved',
      'odd0 not-an-address': 'bad-address',
    });
  });

  it('only the families the shared socket can send, the skip list can be overridden, the count is bounded', () => {
    const v4only = hostCandidates({ port: 1, interfaces: () => MACHINE, families: ['IPv4'] });
    assert.ok(v4only.candidates.every((c) => c.family === 'IPv4'));
    assert.ok(v4only.skipped.some((s) => s.reason === 'family-not-used'));
    const withDocker = hostCandidates({ port: 1, interfaces: () => MACHINE, interfacePrefixesToSkip: [] });
    assert.ok(withDocker.candidates.some((c) => c.address === '172.17.0.1'));
    const many: InterfaceList = { eth0: Array.from({ length: 40 }, (_, i) => v4(`10.0.${i}.1`)) };
    const bounded = hostCandidates({ port: 1, interfaces: () => many });
    assert.equal(bounded.candidates.length, CANDIDATE_LIMITS.maxHost);
    assert.equal(bounded.skipped.filter((s) => s.reason === 'over-limit').length, 40 - CANDIDATE_LIMITS.maxHost);
    assert.equal(hostCandidates({ port: 1, interfaces: () => many, maxHost: 2 }).candidates.length, 2);
    assert.throws(() => hostCandidates({ port: 0, interfaces: () => many }), { name: 'UsageError' });
  });

  it('an interface address with a zone id is taken without it; an empty list gives nothing', () => {
    assert.deepEqual(describeCandidates(hostCandidates({ port: 9, interfaces: () => ({ eth0: [v6('2001:DB8::0:1%eth0')] }) }).candidates), ['host IPv6 2001:db8::1:9']);
    assert.deepEqual(hostCandidates({ port: 9, interfaces: () => ({}) }).candidates, []);
  });
});

describe('address scopes', () => {
  it('classifies the special ranges', () => {
    const table: Record<string, string> = {
      '10.1.2.3': 'private',
      '172.31.255.255': 'private',
      '172.32.0.1': 'public',
      '192.168.0.1': 'private',
      '100.64.0.1': 'cgnat',
      '100.127.255.255': 'cgnat',
      '100.128.0.1': 'public',
      '127.0.0.2': 'loopback',
      '169.254.1.1': 'link-local',
      '203.0.113.9': 'public',
      '255.255.255.255': 'broadcast',
      '::1': 'loopback',
      '::': 'unspecified',
      'fe80::1': 'link-local',
      'febf::1': 'link-local',
      'fc00::1': 'ula',
      'fdff::1': 'ula',
      '2001:db8::1': 'global',
      '3fff::1': 'global',
      '4000::1': 'reserved',
    };
    for (const [address, scope] of Object.entries(table)) assert.equal(addressScope(address), scope, address);
    assert.throws(() => addressScope('example.org'), { name: 'UsageError' });
  });
});

describe('priorities', () => {
  it('type preference host > mapped > srflx > prflx > predicted dominates; IPv6 first within a type; rank last', () => {
    const order = [
      candidatePriority('host', 'IPv6'),
      candidatePriority('host', 'IPv6', 1),
      candidatePriority('host', 'IPv4'),
      candidatePriority('mapped', 'IPv6'),
      candidatePriority('mapped', 'IPv4'),
      candidatePriority('srflx', 'IPv6'),
      candidatePriority('srflx', 'IPv4', 5),
      candidatePriority('prflx', 'IPv4'),
      candidatePriority('predicted', 'IPv6'),
      candidatePriority('predicted', 'IPv4', 99_999),
    ];
    assert.deepEqual(order, [...order].sort((a, b) => b - a));
    assert.equal(new Set(order).size, order.length);
    // RFC 8445 §5.1.2.1 layout: (2^24)·126 + (2^8)·(0x8000 | 0x7fff) + 255.
    assert.equal(candidatePriority('host', 'IPv6'), 126 * 2 ** 24 + 0xffff * 2 ** 8 + 255);
    assert.ok(order.every((p) => Number.isInteger(p) && p >= 0 && p <= 0xffffffff));
  });
});

describe('validateCandidate (hostile input)', () => {
  const good = { type: 'srflx', address: '203.0.113.7', port: 40000, family: 'IPv4', priority: candidatePriority('srflx', 'IPv4') };

  it('returns a canonical copy with only the known fields', () => {
    const result = validateCandidate({ ...good, foundation: 'relay-1', extra: 'x'.repeat(10_000), nested: { a: 1 } });
    assert.deepEqual(result, { ...good, foundation: 'relay-1' });
    assert.deepEqual(validateCandidate({ ...good, address: '2001:DB8:0:0::7', family: 'IPv6' }).address, '2001:db8::7');
  });

  it('refuses each bad field with its own reason', () => {
    const cases: [unknown, string][] = [
      [null, 'not-object'],
      [[good], 'not-object'],
      ['candidate', 'not-object'],
      [{ ...good, type: 'relay' }, 'bad-type'],
      [{ ...good, type: undefined }, 'bad-type'],
      [{ ...good, address: 'example.org' }, 'bad-address'],
      [{ ...good, address: '1'.repeat(100_000) }, 'bad-address'],
      [{ ...good, address: 'fe80::1%eth0', family: 'IPv6' }, 'bad-address'],
      [{ ...good, address: 42 }, 'bad-address'],
      [{ ...good, address: '0.0.0.0' }, 'refused-address'],
      [{ ...good, address: '255.255.255.255' }, 'refused-address'],
      [{ ...good, address: '224.0.0.251' }, 'refused-address'],
      [{ ...good, address: '169.254.1.1' }, 'refused-address'],
      [{ ...good, address: '127.0.0.1' }, 'refused-address'],
      [{ ...good, address: '::ffff:203.0.113.7', family: 'IPv6' }, 'refused-address'],
      [{ ...good, address: 'ff02::1', family: 'IPv6' }, 'refused-address'],
      [{ ...good, family: 'IPv6' }, 'bad-family'],
      [{ ...good, family: 'ipv4' }, 'bad-family'],
      [{ ...good, port: 0 }, 'bad-port'],
      [{ ...good, port: 65536 }, 'bad-port'],
      [{ ...good, port: 1.5 }, 'bad-port'],
      [{ ...good, port: '443' }, 'bad-port'],
      [{ ...good, priority: -1 }, 'bad-priority'],
      [{ ...good, priority: 2 ** 32 }, 'bad-priority'],
      [{ ...good, priority: Number.NaN }, 'bad-priority'],
      [{ ...good, foundation: '' }, 'bad-foundation'],
      [{ ...good, foundation: 'x'.repeat(33) }, 'bad-foundation'],
      [{ ...good, foundation: 'a b' }, 'bad-foundation'],
      [{ ...good, foundation: 7 }, 'bad-foundation'],
    ];
    for (const [input, reason] of cases) {
      assert.throws(
        () => validateCandidate(input),
        (error: unknown) => error instanceof DecodeError && error.format === 'candidate' && error.reason === reason && error.message.length < 200,
        `${JSON.stringify(input)?.slice(0, 80)} should be ${reason}`,
      );
    }
    assert.equal(validateCandidate({ ...good, address: '127.0.0.1' }, { allowLoopback: true }).address, '127.0.0.1');
  });

  it('anything at all either validates to a well-formed candidate or throws DecodeError (property)', () => {
    const field = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.constant(null), fc.constant(undefined), fc.object(), fc.ipV4(), fc.ipV6());
    fc.assert(
      fc.property(
        fc.record({
          type: fc.oneof(fc.constantFrom('host', 'mapped', 'srflx', 'prflx', 'predicted'), field),
          address: fc.oneof(fc.ipV4(), fc.ipV6(), field),
          port: fc.oneof(fc.integer({ min: -1, max: 70_000 }), field),
          family: fc.oneof(fc.constantFrom('IPv4', 'IPv6'), field),
          priority: fc.oneof(fc.nat(), field),
          foundation: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 40 })),
        }),
        (input) => {
          try {
            const candidate = validateCandidate(input);
            assert.ok(candidate.port >= 1 && candidate.port <= 65535 && candidate.address.length <= 45);
          } catch (error) {
            assert.ok(error instanceof DecodeError, String(error));
          }
        },
      ),
    );
  });
});

describe('server-reflexive, predicted and gathered candidates', () => {
  it('srflx from observations: de-duplicated, usable scopes and families only, bounded', () => {
    const list = reflexiveCandidates([
      { address: '203.0.113.7', port: 40000 },
      { address: '203.0.113.7', port: 40000 },
      { address: '203.0.113.7', port: 40001 },
      { address: '2001:db8::7', port: 40000 },
      { address: '127.0.0.1', port: 1 },
      { address: 'bogus', port: 1 },
      { address: '203.0.113.8', port: 0 },
      { address: '203.0.113.9', port: 1 },
      { address: '203.0.113.10', port: 1 },
      { address: '203.0.113.11', port: 1 },
    ]);
    assert.deepEqual(describeCandidates(list), [
      'srflx IPv4 203.0.113.7:40000',
      'srflx IPv4 203.0.113.7:40001',
      'srflx IPv6 2001:db8::7:40000',
      'srflx IPv4 203.0.113.9:1',
    ]);
    assert.deepEqual(describeCandidates(reflexiveCandidates([{ address: '2001:db8::7', port: 4 }], { families: ['IPv4'] })), []);
  });

  it('STUN observations through a client on the shared socket: answers kept, failures reported', async () => {
    const asked: string[] = [];
    const client = {
      binding: async (server: { address: string; port: number }) => {
        asked.push(`${server.address}:${server.port}`);
        if (server.port === 3478) return { mappedAddress: { address: '203.0.113.7', port: 40000 } };
        throw new Error('no STUN answer');
      },
    };
    const result = await stunObservations(client, [
      { address: '192.0.2.1', port: 3478 },
      { address: '192.0.2.2', port: 3479 },
    ]);
    assert.deepEqual(asked, ['192.0.2.1:3478', '192.0.2.2:3479']);
    assert.deepEqual(result.observations, [{ address: '203.0.113.7', port: 40000 }]);
    assert.deepEqual(result.errors, [{ server: { address: '192.0.2.2', port: 3479 }, message: 'no STUN answer' }]);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(stunObservations(client, [{ address: '192.0.2.1', port: 3478 }], { signal: controller.signal }), { name: 'AbortError' });
  });

  it('predicted candidates from a strategy plan: only toward announced addresses, parsed, de-duplicated, bounded, lowest priority', () => {
    const announced = [
      { address: '198.51.100.20', port: 50000 },
      { address: '2001:db8::20', port: 50000 },
    ];
    const plan = {
      targets: [
        '198.51.100.20:50001',
        '198.51.100.20:50001',
        '198.51.100.21:50002', // not announced: a plugin cannot aim probes elsewhere
        '[2001:db8::20]:50003',
        '2001:db8::20:50004', // IPv6 without brackets is ambiguous
        '198.51.100.20:0',
        '198.51.100.20:99999',
        'example.org:1',
        ...Array.from({ length: 100 }, (_, i) => `198.51.100.20:${51000 + i}`),
      ],
    };
    const list = predictedCandidates(plan, announced);
    assert.equal(list.length, CANDIDATE_LIMITS.maxPredicted);
    assert.deepEqual(describeCandidates(list.slice(0, 3)), ['predicted IPv4 198.51.100.20:50001', 'predicted IPv6 2001:db8::20:50003', 'predicted IPv4 198.51.100.20:51000']);
    assert.ok(list.every((c) => c.priority < candidatePriority('prflx', 'IPv4')));
    assert.deepEqual(predictedCandidates(plan, []), []);
    assert.deepEqual(predictedCandidates({ targets: 'nonsense' as unknown as string[] }, announced), []);
    assert.equal(predictedCandidates(plan, announced, { max: 3 }).length, 3);
  });

  it('parseEndpoint', () => {
    assert.deepEqual(parseEndpoint('1.2.3.4:5'), { address: '1.2.3.4', port: 5 });
    assert.deepEqual(parseEndpoint('[2001:DB8::1]:443'), { address: '2001:db8::1', port: 443 });
    for (const bad of ['1.2.3.4', '[1.2.3.4]:5', '2001:db8::1:443', '1.2.3.4:0', '1.2.3.4:65536', ':5', '[::1]', 'a'.repeat(200)]) assert.equal(parseEndpoint(bad), undefined, bad);
  });

  it('gathering: host + srflx by priority; an srflx equal to a host address is announced once, as host', () => {
    const { candidates } = gatherCandidates({
      port: 4433,
      interfaces: () => ({ eth0: [v4('198.51.100.33'), v4('192.168.1.20')] }),
      reflexive: [
        { address: '198.51.100.33', port: 4433 },
        { address: '203.0.113.7', port: 40000 },
      ],
    });
    assert.deepEqual(describeCandidates(candidates), ['host IPv4 198.51.100.33:4433', 'host IPv4 192.168.1.20:4433', 'srflx IPv4 203.0.113.7:40000']);
  });

  it('relayOnly: no host and no mapped candidate, srflx only', () => {
    const mapped = {
      candidate: { type: 'mapped', address: '203.0.113.9', port: 41000, family: 'IPv4', priority: candidatePriority('mapped', 'IPv4') } as Candidate,
      mapping: {} as never,
      released: false,
      release: async () => ({ deleted: true as const }),
    };
    let reads = 0;
    const interfaces = () => {
      reads++;
      return MACHINE;
    };
    const options = { port: 4433, interfaces, reflexive: [{ address: '203.0.113.7', port: 40000 }], mapped };
    const normal = gatherCandidates(options).candidates;
    assert.ok(normal.some((c) => c.type === 'host') && normal.some((c) => c.type === 'mapped'));
    assert.deepEqual(describeCandidates(normal.filter((c) => c.type !== 'host')), ['mapped IPv4 203.0.113.9:41000', 'srflx IPv4 203.0.113.7:40000']);
    assert.equal(reads, 1);
    const relayOnly = gatherCandidates({ ...options, relayOnly: true });
    assert.deepEqual(describeCandidates(relayOnly.candidates), ['srflx IPv4 203.0.113.7:40000']);
    assert.equal(reads, 1, 'with relayOnly the interface list is not even read');
    assert.deepEqual(relayOnly.skipped, []);
  });
});

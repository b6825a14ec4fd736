/** The netcheck verdict rules (core/nat/netcheck.ts netcheckVerdict) and the reflect classification. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AllocationCheck,
  type BehaviourCheck,
  type FamilyCheck,
  type VerdictInput,
  VERDICT_SUMMARIES,
  describeAllocation,
  netcheckProfile,
  netcheckVerdict,
  strategiesForNetwork,
} from '../../core/nat/netcheck.js';
import type { NatStrategy } from '../../core/nat/strategy-types.js';
import { classifyByDestination, classifyReflections } from '../../core/nat/reflect.js';

const CONE: VerdictInput = {
  udpWorks: true,
  natDetected: true,
  mapping: 'endpoint-independent',
  filtering: 'address-and-port-dependent',
  hairpinning: 'not-supported',
  acrossServers: 'endpoint-independent',
  allocation: 'port-preserving',
  portMapping: [],
  publicAddress: '203.0.113.100:40000',
  relaysConfigured: 1,
  relaysAnswered: 1,
};
const SYMMETRIC: VerdictInput = { ...CONE, mapping: 'address-and-port-dependent', acrossServers: 'symmetric', allocation: 'random' };

describe('netcheck verdict', () => {
  it('nothing answered over UDP from two or more server addresses: udp-blocked, whatever else is known', () => {
    const v = netcheckVerdict({ ...CONE, udpWorks: false, portMapping: ['pcp'], serversAsked: ['192.0.2.1', '198.51.100.7'] });
    assert.equal(v.kind, 'udp-blocked');
    assert.equal(v.summary, VERDICT_SUMMARIES['udp-blocked']);
    assert.match(v.reasons[0], /answered over UDP \(2 server addresses asked\)/);
  });

  it('one silent server address, none asked, or an interrupted check: unknown, not udp-blocked', () => {
    const one = netcheckVerdict({ ...CONE, udpWorks: false, serversAsked: ['192.0.2.1'] });
    assert.equal(one.kind, 'unknown');
    assert.match(one.reasons[0], /only server address asked \(192\.0\.2\.1\) did not answer: it may be down/);
    assert.match(netcheckVerdict({ ...CONE, udpWorks: false, serversAsked: [] }).reasons[0], /did not resolve/);
    const interrupted = netcheckVerdict({ ...CONE, udpWorks: false, serversAsked: ['192.0.2.1', '198.51.100.7'], interrupted: true });
    assert.equal(interrupted.kind, 'unknown');
    assert.ok(interrupted.reasons.some((r) => /interrupted/.test(r)));
  });

  it('endpoint-independent mapping: easy, with the filtering and hairpinning explained', () => {
    const v = netcheckVerdict(CONE);
    assert.equal(v.kind, 'easy');
    assert.equal(v.summary, 'easy NAT — direct calls will usually work');
    assert.match(v.reasons[0], /endpoint-independent mapping/);
    assert.match(v.reasons[1], /address-and-port-dependent filtering: both sides send first/);
    assert.match(v.reasons[2], /no hairpinning/);
    assert.match(netcheckVerdict({ ...CONE, filtering: 'endpoint-independent' }).reasons[1], /without hole punching/);
  });

  it('no NAT: no-nat, said as such, with what filters (a firewall)', () => {
    const v = netcheckVerdict({ ...SYMMETRIC, natDetected: false, portMapping: ['upnp'], portMappingExternalAddress: '203.0.113.100' });
    assert.equal(v.kind, 'no-nat');
    assert.equal(v.summary, VERDICT_SUMMARIES['no-nat']);
    assert.match(v.summary, /^no NAT/);
    assert.match(v.reasons[0], /no NAT: .* peers reach it directly; only a firewall/);
    assert.match(v.reasons[1], /address-and-port-dependent filtering by a firewall/);
  });

  it('a port-mapping protocol on the outermost NAT makes even a symmetric NAT easy', () => {
    const v = netcheckVerdict({ ...SYMMETRIC, portMapping: ['pcp', 'upnp'], portMappingExternalAddress: '203.0.113.100' });
    assert.equal(v.kind, 'easy');
    assert.match(v.reasons[0], /maps ports on request \(PCP, UPnP\)/);
  });

  it('a port-mapping gateway behind another NAT (double NAT) does not help', () => {
    const v = netcheckVerdict({ ...SYMMETRIC, portMapping: ['natpmp'], portMappingExternalAddress: '10.0.0.1' });
    assert.equal(v.kind, 'hard');
    assert.match(v.reasons[0], /double NAT/);
  });

  it('a mapping per destination: hard with random ports, hard-predictable with sequential or preserved ones', () => {
    const hard = netcheckVerdict(SYMMETRIC);
    assert.equal(hard.kind, 'hard');
    assert.equal(hard.summary, 'hard NAT — calls will mostly be relayed');
    assert.ok(hard.reasons.some((r) => /at random/.test(r)));
    assert.ok(hard.reasons.some((r) => /no port-mapping protocol/.test(r)));
    const sequential = netcheckVerdict({ ...SYMMETRIC, allocation: 'sequential' });
    assert.equal(sequential.kind, 'hard-predictable');
    assert.equal(sequential.summary, 'hard NAT, predictable — direct calls may work with port prediction');
    assert.ok(sequential.reasons.some((r) => /sequentially/.test(r)));
    assert.equal(netcheckVerdict({ ...SYMMETRIC, mapping: 'address-dependent', allocation: 'port-preserving' }).kind, 'hard-predictable');
    assert.equal(netcheckVerdict({ ...SYMMETRIC, allocation: 'unknown' }).kind, 'hard');
  });

  it('without RFC 5780 the servers\' view decides: one address is easy, several are a mapping per destination', () => {
    const unmeasured = { ...CONE, mapping: 'unknown', filtering: 'unknown', hairpinning: 'unknown', natDetected: undefined } as const;
    const easy = netcheckVerdict(unmeasured);
    assert.equal(easy.kind, 'easy');
    assert.match(easy.reasons[0], /no RFC 5780/);
    assert.equal(netcheckVerdict({ ...unmeasured, acrossServers: 'symmetric', allocation: 'unknown' }).kind, 'hard');
    assert.equal(netcheckVerdict({ ...unmeasured, acrossServers: 'multiple-addresses', allocation: 'unknown' }).kind, 'hard');
  });

  it('nothing measured: unknown, with what to configure', () => {
    const v = netcheckVerdict({ ...CONE, mapping: 'unknown', acrossServers: 'unknown', natDetected: undefined });
    assert.equal(v.kind, 'unknown');
    assert.match(v.reasons[0], /RFC 5780/);
  });

  it('relays configured but none answered is a reason of its own', () => {
    const v = netcheckVerdict({ ...CONE, relaysConfigured: 2, relaysAnswered: 0 });
    assert.equal(v.kind, 'easy');
    assert.match(v.reasons.at(-1) ?? '', /no relay answered/);
    assert.ok(!netcheckVerdict({ ...CONE, relaysConfigured: 0, relaysAnswered: 0 }).reasons.some((r) => /no relay answered/.test(r)));
  });
});

describe('reflect classification (one socket, several servers)', () => {
  const at = (address: string, port: number) => ({ address, port });

  it('fewer than two answers: unknown', () => {
    assert.equal(classifyReflections([]).mapping, 'unknown');
    assert.equal(classifyReflections([at('203.0.113.100', 4000)]).mapping, 'unknown');
  });

  it('all equal: endpoint-independent', () => {
    const c = classifyReflections([at('203.0.113.100', 4000), at('203.0.113.100', 4000), at('203.0.113.100', 4000)]);
    assert.equal(c.mapping, 'endpoint-independent');
    assert.match(c.reason, /all 3 servers saw 203\.0\.113\.100:4000/);
  });

  it('one IP, different ports: symmetric', () => {
    const c = classifyReflections([at('203.0.113.100', 40000), at('203.0.113.100', 40001)]);
    assert.equal(c.mapping, 'symmetric');
    assert.match(c.reason, /40000, 40001/);
  });

  it('different IPs: multiple-addresses', () => {
    assert.equal(classifyReflections([at('203.0.113.100', 4000), at('198.51.100.9', 4000)]).mapping, 'multiple-addresses');
    assert.equal(classifyReflections([at('2001:db8::1', 4000), at('2001:db8::2', 4000)]).mapping, 'multiple-addresses');
  });

  it('two answers from ONE server address (a relay over QUIC and its STUN) compare nothing: unknown', () => {
    const relay = at('203.0.113.1', 4433);
    const c = classifyByDestination([
      { destination: relay, observed: at('203.0.113.100', 4000) },
      { destination: relay, observed: at('203.0.113.100', 4000) },
    ]);
    assert.equal(c.mapping, 'unknown');
    assert.match(c.reason, /2 answers from 1 server address/);
    const two = classifyByDestination([
      { destination: relay, observed: at('203.0.113.100', 4000) },
      { destination: relay, observed: at('203.0.113.100', 4000) },
      { destination: at('203.0.113.2', 4434), observed: at('203.0.113.100', 4001) },
    ]);
    assert.equal(two.mapping, 'symmetric');
  });
});

describe('allocation in one line', () => {
  it('says what the next mapping will do', () => {
    assert.equal(describeAllocation({ kind: 'sequential', delta: 1, prediction: { ports: [40008, 40009], confidence: 1 } }), 'sequential (step 1): next 40008, 40009 (confidence 1)');
    assert.equal(describeAllocation({ kind: 'port-preserving', prediction: { ports: [5000], confidence: 1 } }), 'port-preserving: a mapping keeps its local port');
    assert.equal(describeAllocation({ kind: 'fixed', prediction: { ports: [6000], confidence: 1 } }), 'fixed: one external port (6000) for every destination');
    assert.equal(describeAllocation({ kind: 'random', prediction: { ports: [], confidence: 0 } }), 'random: the next port cannot be predicted');
  });
});

describe('the verdict names the hard-NAT strategies that apply', () => {
  const behaviour = {
    status: 'ok',
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    hairpinning: 'unknown',
    notes: [],
    durationMs: 1,
  } as unknown as BehaviourCheck;
  const allocation = {
    status: 'ok',
    kind: 'sequential',
    delta: 2,
    consistency: 1,
    samples: 4,
    explanation: '',
    observations: ['198.51.100.7:40010', '198.51.100.7:40012', '198.51.100.7:40014', '198.51.100.7:40016'].map((m, i) => ({ server: `192.0.2.${i + 1}:3478`, mappedAddress: m })),
    unanswered: [],
    prediction: { ports: [40018], confidence: 1 },
    durationMs: 1,
  } as unknown as AllocationCheck;
  const main = { status: 'ok', reflexiveAddress: '198.51.100.7:40016', servers: [], durationMs: 1 } as unknown as FamilyCheck;

  it('the profile is what a call would send: mapping, filtering, allocation with its ports, the public address', () => {
    assert.deepEqual(netcheckProfile(behaviour, allocation, main), {
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      allocation: { kind: 'sequential', delta: 2, recentPorts: [40010, 40012, 40014, 40016] },
      reflexive: [{ address: '198.51.100.7', port: 40016 }],
      consent: true,
    });
    // Mapping not measured (no RFC 5780 server): the comparison across servers stands in.
    const unmeasured = { ...behaviour, mapping: 'unknown' } as BehaviourCheck;
    assert.equal(netcheckProfile(unmeasured, allocation, { ...main, acrossServers: { mapping: 'symmetric', reason: '' } }).mapping, 'address-and-port-dependent');
    assert.equal(netcheckProfile(unmeasured, allocation, main).mapping, 'unknown');
  });

  it('each strategy says what it does for this network; silent, empty and throwing ones are left out', () => {
    const make = (name: string, describeFor: NatStrategy['describeFor']): NatStrategy => ({
      name,
      version: '1',
      description: name,
      applicable: () => false,
      plan: () => undefined,
      describeFor,
    });
    const profile = netcheckProfile(behaviour, allocation, main);
    const lines = strategiesForNetwork(
      [
        make('predicts', (p) => (p.allocation.kind === 'sequential' ? `predicts the next ports (step ${p.allocation.delta})` : undefined)),
        make('silent', () => undefined),
        make('empty', () => ''),
        make('broken', () => {
          throw new Error('plugin bug');
        }),
      ],
      profile,
    );
    assert.deepEqual(lines, [{ name: 'predicts', does: 'predicts the next ports (step 2)' }]);
  });
});

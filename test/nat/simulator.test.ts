/**
 * The NAT simulator (core/nat/simulator.ts): each RFC 4787 behaviour packet by packet, the
 * profile a host measures, plan execution and its bounds, determinism, and two classic
 * results of hole punching as sanity checks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Prng } from '../../core/media/prng.js';
import {
  type SimNatConfig,
  SIM_BOUNDS,
  SIM_SERVER,
  SimNat,
  planViolations,
  probeOrder,
  simulateCall,
  simulateNatProfile,
  simulateProfiles,
  simulatedContexts,
} from '../../core/nat/simulator.js';
import { DEFAULT_STRATEGY_LIMITS, type NatStrategy, type ProbePlan, type StrategyContext } from '../../core/nat/strategy-types.js';

const EIM = 'endpoint-independent';
const ADM = 'address-dependent';
const APDM = 'address-and-port-dependent';
const FULL_CONE: SimNatConfig = { mapping: EIM, filtering: EIM, allocation: 'port-preserving' };
const PORT_RESTRICTED: SimNatConfig = { mapping: EIM, filtering: APDM, allocation: 'port-preserving' };
const SYMMETRIC_RANDOM: SimNatConfig = { mapping: APDM, filtering: APDM, allocation: 'random' };
const SYMMETRIC_SEQUENTIAL: SimNatConfig = { mapping: APDM, filtering: APDM, allocation: 'sequential', delta: 1 };

const inside = { address: '192.168.1.10', port: 40_000 };
const peer = { address: '198.51.100.7', port: 5000 };

function nat(config: SimNatConfig, seed = 1): SimNat {
  return new SimNat(config, new Prng(seed));
}

/** Consecutive differences. */
function steps(ports: number[]): number[] {
  return ports.slice(1).map((p, i) => p - ports[i]);
}

describe('NAT simulator: mapping (RFC 4787 §4.1)', () => {
  it('endpoint-independent mapping reuses the external port for any new destination', () => {
    const n = nat({ mapping: EIM, filtering: APDM, allocation: 'random' });
    const first = n.outbound(0, inside, peer);
    assert.ok(first);
    assert.equal(first.address, n.publicIp);
    assert.deepEqual(n.outbound(10, inside, { address: peer.address, port: 5001 }), first);
    assert.deepEqual(n.outbound(20, inside, { address: '192.0.2.9', port: 9 }), first);
    assert.equal(n.stats.mappings, 1);
  });

  it('address-dependent mapping: one port per remote IP, whatever the remote port', () => {
    const n = nat({ mapping: ADM, filtering: APDM, allocation: 'random' });
    const first = n.outbound(0, inside, peer);
    assert.deepEqual(n.outbound(1, inside, { address: peer.address, port: 6000 }), first);
    const other = n.outbound(2, inside, { address: '192.0.2.9', port: peer.port });
    assert.notEqual(other?.port, first?.port);
    assert.equal(n.stats.mappings, 2);
  });

  it('address-and-port-dependent mapping opens a new port for another port of the same IP', () => {
    const n = nat({ mapping: APDM, filtering: APDM, allocation: 'random' });
    const first = n.outbound(0, inside, peer);
    const second = n.outbound(1, inside, { address: peer.address, port: peer.port + 1 });
    assert.notEqual(second?.port, first?.port);
    assert.deepEqual(n.outbound(2, inside, peer), first, 'the first destination keeps its mapping');
    assert.equal(n.stats.mappings, 2);
  });

  it('a mapping expires mappingTimeoutMs after its last outbound packet; outbound traffic refreshes it', () => {
    const n = nat({ mapping: EIM, filtering: EIM, allocation: 'random', mappingTimeoutMs: 30_000 });
    const mapped = n.outbound(0, inside, peer);
    assert.ok(mapped);
    n.outbound(20_000, inside, peer);
    assert.ok(n.inbound(49_999, peer, mapped.port), 'refreshed at 20 s: alive until 50 s');
    assert.equal(n.inbound(50_000, peer, mapped.port), undefined);
    assert.equal(n.stats.expired, 1);
    assert.equal(n.stats.droppedNoMapping, 1);
    n.outbound(50_001, inside, peer);
    assert.equal(n.stats.mappings, 2, 'a packet after expiry opens a new mapping');
  });
});

describe('NAT simulator: filtering (RFC 4787 §5)', () => {
  const cases: Array<[SimNatConfig['filtering'], { otherPort: boolean; otherIp: boolean }]> = [
    [EIM, { otherPort: true, otherIp: true }],
    [ADM, { otherPort: true, otherIp: false }],
    [APDM, { otherPort: false, otherIp: false }],
  ];
  for (const [filtering, expected] of cases) {
    it(`${filtering} filtering: from another port ${expected.otherPort ? 'passes' : 'is dropped'}, from another IP ${expected.otherIp ? 'passes' : 'is dropped'}`, () => {
      const n = nat({ mapping: EIM, filtering, allocation: 'port-preserving' });
      const mapped = n.outbound(0, inside, peer);
      assert.ok(mapped);
      assert.deepEqual(n.inbound(1, peer, mapped.port)?.internal, inside, 'the endpoint we sent to always gets through');
      assert.equal(n.inbound(2, { address: peer.address, port: 9999 }, mapped.port) !== undefined, expected.otherPort);
      assert.equal(n.inbound(3, { address: '192.0.2.200', port: peer.port }, mapped.port) !== undefined, expected.otherIp);
      const dropped = Number(!expected.otherPort) + Number(!expected.otherIp);
      assert.equal(n.stats.droppedFiltered, dropped);
    });
  }

  it('a packet to an external port without a mapping is dropped and counted', () => {
    const n = nat(FULL_CONE);
    const mapped = n.outbound(0, inside, peer);
    assert.ok(mapped);
    const unused = mapped.port === 65_535 ? 1024 : mapped.port + 1;
    assert.equal(n.inbound(1, peer, unused), undefined);
    assert.equal(n.stats.droppedNoMapping, 1);
  });

  it('does not hairpin: a packet to its own public IP is dropped', () => {
    const n = nat(FULL_CONE);
    assert.equal(n.outbound(0, inside, { address: n.publicIp, port: 1234 }), undefined);
    assert.equal(n.stats.droppedHairpin, 1);
  });
});

describe('NAT simulator: port allocation', () => {
  it('port-preserving keeps the local port, and a taken port falls back to the next free one (or a random one)', () => {
    const n = nat({ mapping: APDM, filtering: APDM, allocation: 'port-preserving' });
    assert.equal(n.outbound(0, inside, peer)?.port, inside.port);
    // Same socket, new destination (a new mapping): its port is taken by the first.
    assert.equal(n.outbound(1, inside, { address: peer.address, port: 5001 })?.port, inside.port + 1);
    // Another host using the same local port.
    assert.equal(n.outbound(2, { address: '192.168.1.11', port: inside.port }, peer)?.port, inside.port + 2);

    const r = nat({ mapping: APDM, filtering: APDM, allocation: 'port-preserving', preserveFallback: 'random' });
    r.outbound(0, inside, peer);
    const fallback = r.outbound(1, inside, { address: peer.address, port: 5001 })?.port;
    assert.ok(fallback !== undefined && fallback !== inside.port && Math.abs(fallback - inside.port) > 1, `random fallback ${fallback}`);
  });

  it('sequential allocation steps by delta and wraps within the pool', () => {
    const n = nat({ mapping: APDM, filtering: APDM, allocation: 'sequential', delta: 2, portPool: { min: 2000, max: 2063 } });
    // Delta 2 in a pool of 64 ports cycles through 32 of them.
    const ports = Array.from({ length: 32 }, (_, i) => n.outbound(i, inside, { address: peer.address, port: 1000 + i })?.port ?? -1);
    assert.ok(ports.every((p) => p >= 2000 && p <= 2063));
    assert.equal(new Set(ports).size, 32);
    assert.equal(n.outbound(99, inside, { address: peer.address, port: 999 }), undefined, 'the 33rd finds every reachable port taken');
    const wraps = steps(ports).filter((s) => s !== 2);
    assert.ok(wraps.length >= 1 && wraps.every((s) => s === -62), `steps other than +2: ${wraps.join(', ')}`);
  });

  it('sequential delta 2 with background traffic: other hosts take ports between ours', () => {
    const n = nat({ mapping: APDM, filtering: APDM, allocation: 'sequential', delta: 2 });
    const ours = (i: number) => n.outbound(i, inside, { address: peer.address, port: 7000 + i })?.port ?? -1;
    const ports = [ours(0)];
    for (const others of [0, 1, 3]) {
      for (let j = 0; j < others; j++) n.openBackgroundFlow(ports.length);
      ports.push(ours(ports.length));
    }
    assert.deepEqual(steps(ports), [2, 4, 8]);
    assert.equal(n.stats.backgroundMappings, 4);
    assert.equal(n.stats.mappings, 4);
  });

  it('background traffic in a measured profile: a jitter at 10/s, nothing predictable at 1000/s', () => {
    const busy = (rate: number) => Array.from({ length: 30 }, (_, seed) => simulateNatProfile({ ...SYMMETRIC_SEQUENTIAL, delta: 2, backgroundPerSecond: rate }, { seed }).profile.allocation);
    const quiet = simulateNatProfile({ ...SYMMETRIC_SEQUENTIAL, delta: 2 }, { seed: 1 }).profile.allocation;
    assert.deepEqual([quiet.kind, quiet.delta, steps(quiet.recentPorts)], ['sequential', 2, [2, 2, 2]]);
    const light = busy(10);
    assert.ok(light.filter((a) => a.kind === 'sequential' && a.delta === 2).length >= 20, 'mostly still sequential at 10/s');
    assert.ok(
      light.some((a) => steps(a.recentPorts).some((s) => s !== 2)),
      'at 10/s some profiles see another host take a port between two of ours',
    );
    const heavy = busy(1000);
    assert.ok(heavy.every((a) => a.kind !== 'sequential'), `at 1000/s: ${heavy.map((a) => a.kind).join(', ')}`);
  });

  it('random allocation spreads over the pool', () => {
    const n = nat({ mapping: APDM, filtering: APDM, allocation: 'random' });
    const ports = Array.from({ length: 500 }, (_, i) => n.outbound(i, inside, { address: peer.address, port: 1000 + i })?.port ?? -1);
    assert.equal(new Set(ports).size, 500);
    assert.ok(Math.min(...ports) < 1024 + 2000 && Math.max(...ports) > 65_535 - 2000, 'covers the range');
    const small = steps(ports).filter((s) => Math.abs(s) <= 32).length;
    assert.ok(small < 10, `${small} of 499 steps look sequential`);
    const lowHalf = ports.filter((p) => p < (1024 + 65_535) / 2).length;
    assert.ok(lowHalf > 200 && lowHalf < 300, `${lowHalf} of 500 in the lower half`);
  });

  it('an exhausted pool drops the packet instead of reusing a port', () => {
    const n = nat({ mapping: APDM, filtering: APDM, allocation: 'sequential', portPool: { min: 3000, max: 3063 } });
    const ports = Array.from({ length: 65 }, (_, i) => n.outbound(i, inside, { address: peer.address, port: 1000 + i })?.port);
    assert.equal(new Set(ports.slice(0, 64)).size, 64);
    assert.equal(ports[64], undefined);
    assert.equal(n.stats.droppedPoolExhausted, 1);
  });

  it('refuses configurations outside its bounds', () => {
    const bad: SimNatConfig[] = [
      { ...FULL_CONE, allocation: 'sequential', delta: 0 },
      { ...FULL_CONE, portPool: { min: 1000, max: 1010 } },
      { ...FULL_CONE, backgroundPerSecond: SIM_BOUNDS.maxBackgroundPerSecond + 1 },
      { ...FULL_CONE, mapping: 'unknown' as never },
      { ...FULL_CONE, mappingTimeoutMs: 10 },
    ];
    for (const config of bad) assert.throws(() => nat(config), { name: 'UsageError' }, JSON.stringify(config));
  });
});

describe('NAT simulator: the profile a host measures', () => {
  const expectations: Array<[string, SimNatConfig, Partial<{ mapping: string; filtering: string; kind: string; delta: number }>]> = [
    ['full cone', FULL_CONE, { mapping: EIM, filtering: EIM, kind: 'port-preserving' }],
    ['address-restricted, random port', { mapping: EIM, filtering: ADM, allocation: 'random' }, { mapping: EIM, filtering: ADM, kind: 'fixed' }],
    ['port-restricted', PORT_RESTRICTED, { mapping: EIM, filtering: APDM, kind: 'port-preserving' }],
    ['address-dependent mapping', { mapping: ADM, filtering: ADM, allocation: 'sequential' }, { mapping: ADM, filtering: ADM }],
    ['symmetric sequential', SYMMETRIC_SEQUENTIAL, { mapping: APDM, filtering: APDM, kind: 'sequential', delta: 1 }],
    ['symmetric random', SYMMETRIC_RANDOM, { mapping: APDM, filtering: APDM, kind: 'random' }],
    // From one socket, "keep the port, else the next free one" looks sequential.
    ['symmetric port-preserving', { mapping: APDM, filtering: APDM, allocation: 'port-preserving' }, { mapping: APDM, filtering: APDM, kind: 'sequential', delta: 1 }],
  ];
  for (const [name, config, expected] of expectations) {
    it(`${name}: classified as RFC 5780 / the allocation classifier would`, () => {
      for (const seed of [1, 2, 3]) {
        const { profile, localPort, observations } = simulateNatProfile(config, { seed });
        assert.equal(profile.mapping, expected.mapping);
        assert.equal(profile.filtering, expected.filtering);
        if (expected.kind) assert.equal(profile.allocation.kind, expected.kind);
        if (expected.delta) assert.equal(profile.allocation.delta, expected.delta);
        assert.equal(profile.consent, true);
        assert.ok(profile.reflexive.length >= 1 && profile.reflexive.every((e) => e.address === '203.0.113.10'));
        assert.deepEqual(observations[0].server, SIM_SERVER.primary, 'the relay saw the call socket first');
        assert.deepEqual(profile.reflexive.at(-1), observations[0].mapped, 'most recent first: the relay’s view is last');
        if (expected.kind === 'port-preserving') assert.deepEqual(profile.allocation.recentPorts, [localPort]);
      }
    });
  }

  it('sequential recentPorts are the call socket’s last mappings, oldest first, aged by observedAgoMs', () => {
    const { profile } = simulateNatProfile(SYMMETRIC_SEQUENTIAL, { seed: 5, latencyMs: 30 });
    const ports = profile.allocation.recentPorts;
    assert.deepEqual(steps(ports), [1, 1, 1]);
    assert.ok((profile.allocation.observedAgoMs ?? -1) >= 0);
    assert.deepEqual(profile.reflexive.map((e) => e.port), [...ports].reverse());
  });

  it('a side’s profile does not depend on the other side: simulateNatProfile(side) equals that side of a call', () => {
    for (const seed of [1, 7]) {
      const config = { a: { ...SYMMETRIC_SEQUENTIAL, backgroundPerSecond: 20 }, b: SYMMETRIC_RANDOM, lossRate: 0.2, latencyMs: 15 };
      const both = simulateProfiles(config, seed);
      for (const side of ['a', 'b'] as const) {
        const alone = simulateNatProfile(config[side], { seed, side, lossRate: 0.2, latencyMs: 15 });
        assert.deepEqual(alone, both.profiles[side]);
      }
      assert.deepEqual(simulatedContexts(both.profiles), both.contexts);
      const call = simulateCall(config, { seed });
      assert.deepEqual(call.profiles, both.profiles);
    }
  });

  it('a consent of false is carried in the profile', () => {
    assert.equal(simulateNatProfile(FULL_CONE, { seed: 1, consent: false }).profile.consent, false);
    const { contexts } = simulateProfiles({ a: FULL_CONE, b: FULL_CONE, consent: { b: false } }, 1);
    assert.deepEqual([contexts.a.remote.consent, contexts.b.local.consent, contexts.a.local.consent], [false, false, true]);
  });

  it('contexts: the peer’s announced addresses and the roles', () => {
    const { contexts } = simulateProfiles({ a: FULL_CONE, b: PORT_RESTRICTED }, 1);
    assert.deepEqual(contexts.a.remoteAddresses, ['198.51.100.20', '192.168.2.20']);
    assert.deepEqual(contexts.b.remoteAddresses, ['203.0.113.10', '192.168.1.10']);
    assert.equal(contexts.a.role, 'controlling');
    assert.equal(contexts.b.role, 'controlled');
  });
});

/** A plan with defaults for the fields a test does not care about. */
function plan(overrides: Partial<ProbePlan>): ProbePlan {
  return {
    strategy: 'test',
    sockets: 0,
    targets: [],
    startAfterMs: 0,
    ratePerSecond: 50,
    budget: { packets: 10, ms: 1000 },
    expectedSuccess: 0.5,
    rationale: 'test plan',
    ...overrides,
  };
}

describe('NAT simulator: calls and plans', () => {
  it('sanity: plain checks between two port-restricted cone NATs succeed', () => {
    for (let seed = 0; seed < 20; seed++) {
      const call = simulateCall({ a: PORT_RESTRICTED, b: PORT_RESTRICTED }, { seed });
      assert.equal(call.checks.succeeded, true, `seed ${seed}`);
      assert.ok(call.nats.a.droppedFiltered + call.nats.b.droppedFiltered > 0, 'the filters did drop something (the filtering probes)');
    }
  });

  it('sanity: plain checks between symmetric-random and port-restricted fail, in both orders; full cone gets through', () => {
    for (let seed = 0; seed < 20; seed++) {
      for (const config of [{ a: SYMMETRIC_RANDOM, b: PORT_RESTRICTED }, { a: PORT_RESTRICTED, b: SYMMETRIC_RANDOM }]) {
        const call = simulateCall(config, { seed });
        assert.equal(call.checks.succeeded, false, `seed ${seed}`);
        assert.equal(call.success, false);
      }
      assert.equal(simulateCall({ a: SYMMETRIC_RANDOM, b: FULL_CONE }, { seed }).checks.succeeded, true);
    }
  });

  it('no checks configured: nothing is sent to the peer', () => {
    const call = simulateCall({ a: PORT_RESTRICTED, b: PORT_RESTRICTED, checks: { packets: 0 } }, { seed: 1 });
    assert.equal(call.checks.succeeded, false);
    assert.equal(call.sides.a.checksSent + call.sides.b.checksSent, 0);
  });

  it('probe order: round-robin over the sending sockets, each walking the targets in order', () => {
    const order = Array.from({ length: 8 }, (_, k) => probeOrder(k, 3, 2));
    assert.deepEqual(
      order.map((o) => `${o.socket}${o.target}`),
      ['00', '10', '20', '01', '11', '21', '00', '10'],
    );
    assert.deepEqual(
      Array.from({ length: 4 }, (_, k) => probeOrder(k, 0, 3)),
      [0, 1, 2, 0].map((target) => ({ socket: 0, target })),
    );
    assert.throws(() => probeOrder(0, 1, 0), { name: 'UsageError' });
  });

  it('a plan never exceeds its budget: packets, time, sockets; paced at its rate in 10 ms batches', () => {
    // Probes to the peer's host address die in the wan: nothing answers, the budget runs out.
    // The executor's batches: at startAfterMs + 10 j (j ≥ 1, inside budget.ms), floor(10 j × rate) probes in all.
    const cases = [
      { packets: 50, ms: 300, rate: 100, sockets: 0, expected: 29, lastAt: 290 },
      { packets: 12, ms: 5000, rate: 400, sockets: 5, expected: 12, lastAt: 30 },
      { packets: 100, ms: 1000, rate: 50, sockets: 2, expected: 49, lastAt: 980, startAfterMs: 0 },
      { packets: 100, ms: 1000, rate: 50, sockets: 2, expected: 24, lastAt: 980, startAfterMs: 500 },
      { packets: 100, ms: 1000, rate: 30, sockets: 0, expected: 29, lastAt: 970 },
    ];
    for (const c of cases) {
      const call = simulateCall(
        { a: PORT_RESTRICTED, b: PORT_RESTRICTED, checks: { packets: 0 } },
        {
          seed: 3,
          plans: (side, context) =>
            side === 'a'
              ? plan({ sockets: c.sockets, targets: [{ address: context.remoteAddresses.at(-1) ?? '', port: 9 }], ratePerSecond: c.rate, budget: { packets: c.packets, ms: c.ms }, startAfterMs: c.startAfterMs ?? 0 })
              : undefined,
        },
      );
      const a = call.sides.a;
      assert.equal(a.probesSent, c.expected, JSON.stringify(c));
      assert.equal(a.socketsOpened, c.sockets);
      assert.ok((a.lastProbeAtMs ?? Infinity) < c.ms);
      assert.equal(a.planEndedAtMs, c.ms);
      assert.equal(call.sides.b.probesSent, 0);
      assert.equal(a.lastProbeAtMs, c.lastAt, JSON.stringify(c));
      assert.equal(call.timeline.endedAtMs, call.timeline.plansStartAtMs + c.ms);
    }
  });

  it('refuses plans outside their limits or budget, or aimed elsewhere', () => {
    const limits = { maxPackets: 100, maxSockets: 4, maxMs: 2000, maxRatePerSecond: 50 };
    const peerTarget = (context: StrategyContext) => [{ address: context.remoteAddresses[0], port: 4000 }];
    const bad: Array<[string, (context: StrategyContext) => ProbePlan, RegExp]> = [
      ['too many sockets', (c) => plan({ sockets: 5, targets: peerTarget(c) }), /sockets 5 > .*maxSockets 4/],
      ['too many packets', (c) => plan({ targets: peerTarget(c), budget: { packets: 101, ms: 100 } }), /budget.packets 101/],
      ['too long', (c) => plan({ targets: peerTarget(c), budget: { packets: 1, ms: 2001 } }), /budget.ms 2001/],
      ['too fast', (c) => plan({ targets: peerTarget(c), ratePerSecond: 51 }), /ratePerSecond 51/],
      ['starts after its end', (c) => plan({ targets: peerTarget(c), startAfterMs: 1500, budget: { packets: 1, ms: 1000 } }), /startAfterMs 1500/],
      ['a target off the announced addresses', () => plan({ targets: [{ address: '192.0.2.77', port: 1 }] }), /192\.0\.2\.77/],
      ['a claim above 1', (c) => plan({ targets: peerTarget(c), expectedSuccess: 1.2 }), /expectedSuccess/],
      ['a malformed target', () => plan({ targets: [{ address: '203.0.113.10', port: 70_000 }] }), /not \{address, port\}/],
    ];
    for (const [what, make, message] of bad) {
      assert.throws(() => simulateCall({ a: FULL_CONE, b: FULL_CONE }, { seed: 1, limits, plans: (_side, c) => make(c) }), (err: Error) => {
        assert.equal(err.name, 'PluginError', what);
        assert.match(err.message, message, what);
        return true;
      });
    }
    const ok = planViolations(plan({ targets: [{ address: '198.51.100.20', port: 4000 }] }), { remoteAddresses: ['198.51.100.20'] }, limits, 'test');
    assert.deepEqual(ok, []);
    assert.match(planViolations(plan({}), { remoteAddresses: [] }, limits, 'other').join(), /not the strategy's name/);
  });

  it('refuses limits beyond its own bounds, and a strategy whose sides disagree', () => {
    assert.throws(() => simulateCall({ a: FULL_CONE, b: FULL_CONE }, { seed: 1, limits: { ...DEFAULT_STRATEGY_LIMITS, maxSockets: SIM_BOUNDS.maxSockets + 1 } }), { name: 'UsageError' });
    const oneSided: NatStrategy = {
      name: 'one-sided',
      version: '1.0.0',
      description: 'applicable on the controlling side only',
      applicable: (c) => c.role === 'controlling',
      plan: () => undefined,
      describeFor: () => undefined,
    };
    assert.throws(() => simulateCall({ a: FULL_CONE, b: FULL_CONE }, { seed: 1, strategy: oneSided }), { name: 'PluginError', message: /applicable\(\) said true on side a and false on side b/ });
  });

  it('a prediction plan gets through a sequential symmetric NAT; both plans stop at the first answer', () => {
    // Side a (hard, sequential) probes b's reflexive endpoint from its call socket: each probe
    // is a new mapping, at the next ports. Side b (port-restricted) aims at a's next ports.
    const plans = (side: 'a' | 'b', c: StrategyContext): ProbePlan => {
      if (side === 'a') return plan({ targets: [c.remote.reflexive[0]], ratePerSecond: 100, budget: { packets: 20, ms: 2000 } });
      const last = c.remote.allocation.recentPorts.at(-1) ?? 0;
      const targets = Array.from({ length: 40 }, (_, i) => ({ address: c.remote.reflexive[0].address, port: last + 1 + i }));
      return plan({ targets, ratePerSecond: 200, budget: { packets: 200, ms: 2000 } });
    };
    let successes = 0;
    for (let seed = 0; seed < 20; seed++) {
      const call = simulateCall({ a: SYMMETRIC_SEQUENTIAL, b: PORT_RESTRICTED }, { seed, plans });
      assert.equal(call.checks.succeeded, false, 'the plain checks cannot do it');
      if (!call.success) continue;
      successes++;
      const pair = call.pair;
      assert.ok(pair && call.msToSuccess !== undefined);
      assert.equal(pair.socket, 'call');
      assert.equal(pair.remote.address, pair.side === 'a' ? '198.51.100.20' : '203.0.113.10');
      for (const side of ['a', 'b'] as const) {
        assert.equal(call.sides[side].planEndedAtMs, call.msToSuccess, 'both plans end at the success');
        assert.ok(call.sides[side].probesSent < call.plans[side]!.budget.packets);
      }
    }
    assert.ok(successes >= 18, `${successes} of 20`);
  });

  it('sockets listen through the strategy’s slot (the longer half’s budget.ms), not only their own', () => {
    // a (sequential) opens 2 sockets and sends one probe each toward b within its 200 ms; b
    // aims at a's next ports only after 1000 ms, when a's own budget is long spent.
    const plans = (side: 'a' | 'b', c: StrategyContext): ProbePlan => {
      if (side === 'a') return plan({ sockets: 2, targets: [c.remote.reflexive[0]], ratePerSecond: 100, budget: { packets: 2, ms: 200 } });
      const last = c.remote.allocation.recentPorts.at(-1) ?? 0;
      const targets = Array.from({ length: 10 }, (_, i) => ({ address: c.remote.reflexive[0].address, port: last + 1 + i }));
      return plan({ targets, startAfterMs: 1000, ratePerSecond: 100, budget: { packets: 10, ms: 1500 } });
    };
    const call = simulateCall({ a: SYMMETRIC_SEQUENTIAL, b: PORT_RESTRICTED }, { seed: 4, plans });
    assert.equal(call.success, true);
    assert.equal(call.pair?.side, 'b');
    assert.ok((call.msToSuccess ?? 0) > 1000, `answered at ${call.msToSuccess} ms`);
    assert.ok((call.sides.a.lastProbeAtMs ?? Infinity) < 200);
    assert.equal(call.sides.a.planEndedAtMs, call.msToSuccess);
    // Without an answer both halves end with the slot.
    const silent = simulateCall({ a: SYMMETRIC_SEQUENTIAL, b: PORT_RESTRICTED }, { seed: 4, plans: (side, c) => (side === 'a' ? plans('a', c) : { ...plans('b', c), targets: [{ address: c.remoteAddresses[0], port: 9 }] }) });
    assert.equal(silent.success, false);
    assert.deepEqual([silent.sides.a.planEndedAtMs, silent.sides.b.planEndedAtMs], [1500, 1500]);
    assert.equal(silent.timeline.endedAtMs, silent.timeline.plansStartAtMs + 1500);
  });

  it('extra sockets send probes, and the answer comes back to the socket that sent', () => {
    // Side b opens 4 sockets and sends one probe each to a's reflexive (full cone): a answers.
    const call = simulateCall(
      { a: FULL_CONE, b: SYMMETRIC_RANDOM, checks: { packets: 0 } },
      { seed: 2, plans: (side, c) => (side === 'b' ? plan({ sockets: 4, targets: [c.remote.reflexive[0]], budget: { packets: 4, ms: 500 } }) : undefined) },
    );
    assert.equal(call.success, true);
    assert.equal(call.pair?.side, 'b');
    assert.equal(call.pair?.socket, 0);
    assert.equal(call.sides.a.probeAnswersSent, 1);
    assert.equal(call.sides.b.socketsOpened, 4);
  });

  it('is deterministic by seed, and the seed matters', () => {
    const config = { a: { ...SYMMETRIC_SEQUENTIAL, backgroundPerSecond: 30 }, b: SYMMETRIC_RANDOM, lossRate: 0.1 };
    const plans = (_side: 'a' | 'b', c: StrategyContext) =>
      plan({ sockets: 3, targets: Array.from({ length: 30 }, () => ({ address: c.remote.reflexive[0].address, port: 1024 + Math.floor(c.random() * 64_512) })), budget: { packets: 60, ms: 1000 }, ratePerSecond: 100 });
    const first = simulateCall(config, { seed: 42, plans });
    assert.deepEqual(simulateCall(config, { seed: 42, plans }), first);
    const other = simulateCall(config, { seed: 43, plans });
    assert.notDeepEqual(other.profiles, first.profiles);
    assert.notDeepEqual(other.plans.a?.targets, first.plans.a?.targets, 'random() differs with the seed');
    assert.ok(first.wan.lost > 0, 'loss is applied');
  });
});

/**
 * checkNatProfile: a peer's NAT profile comes over the network; what a strategy plans from
 * must be in range, and anything that is not becomes `unknown` (which strategies decline).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_RECENT_PORTS, MAX_REFLEXIVE_ENDPOINTS, NAT_PORT_POOL, checkNatProfile, sharedFamily } from '../../core/plugin.js';
import type { NatProfile } from '../../core/plugin.js';

const GOOD: NatProfile = {
  mapping: 'address-and-port-dependent',
  filtering: 'address-and-port-dependent',
  allocation: { kind: 'sequential', delta: 2, recentPorts: [40000, 40002, 40004], observedAgoMs: 800 },
  reflexive: [{ address: '203.0.113.100', port: 40004 }],
  consent: true,
};

describe('checkNatProfile', () => {
  it('keeps a good profile as it is (a copy)', () => {
    const checked = checkNatProfile(GOOD);
    assert.deepEqual(checked, GOOD);
    assert.notEqual(checked.allocation.recentPorts, GOOD.allocation.recentPorts);
  });

  it('non-objects and empty objects are entirely unknown, without consent', () => {
    for (const bad of [null, undefined, 42, 'profile', [], {}, () => 1]) {
      const p = checkNatProfile(bad);
      assert.equal(p.mapping, 'unknown');
      assert.equal(p.filtering, 'unknown');
      assert.equal(p.allocation.kind, 'unknown');
      assert.deepEqual(p.allocation.recentPorts, []);
      assert.deepEqual(p.reflexive, []);
      assert.equal(p.consent, false);
    }
  });

  it('a sequential claim without a usable delta or ports is unknown', () => {
    for (const delta of [Number.NaN, 0, 33, -33, 1.5, 1e9, Infinity, '1', null, undefined]) {
      const p = checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, delta } });
      assert.equal(p.allocation.kind, 'unknown', `delta ${String(delta)}`);
      assert.equal(p.allocation.delta, undefined);
    }
    assert.equal(checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, delta: -32 } }).allocation.delta, -32);
    assert.equal(checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, recentPorts: [] } }).allocation.kind, 'unknown');
  });

  it('one bad port among the newest drops them all; only the newest 16 count', () => {
    for (const bad of [-1, 0, 65536, 1.5, Number.NaN, '40006', null]) {
      const p = checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, recentPorts: [40000, 40002, bad] } });
      assert.deepEqual(p.allocation.recentPorts, [], String(bad));
      assert.equal(p.allocation.kind, 'unknown');
    }
    // A bad port older than the newest 16 is out of the window and harmless.
    const long = [-5, ...Array.from({ length: 20 }, (_, i) => 30000 + 2 * i)];
    const p = checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, recentPorts: long } });
    assert.equal(p.allocation.recentPorts.length, MAX_RECENT_PORTS);
    assert.equal(p.allocation.recentPorts.at(-1), 30038);
    assert.equal(p.allocation.kind, 'sequential');
  });

  it('a huge array costs nothing and keeps the newest ports', () => {
    const huge = new Array<number>(1_000_000).fill(40000);
    huge[huge.length - 1] = 40002;
    const started = performance.now();
    const p = checkNatProfile({ ...GOOD, allocation: { kind: 'sequential', delta: 2, recentPorts: huge }, reflexive: new Array(1_000_000).fill({ address: '203.0.113.9', port: 1 }) });
    assert.ok(performance.now() - started < 200);
    assert.equal(p.allocation.recentPorts.length, MAX_RECENT_PORTS);
    assert.equal(p.reflexive.length, MAX_REFLEXIVE_ENDPOINTS);
  });

  it('port-preserving needs one port throughout', () => {
    assert.equal(checkNatProfile({ ...GOOD, allocation: { kind: 'port-preserving', recentPorts: [5000, 5000] } }).allocation.kind, 'port-preserving');
    assert.equal(checkNatProfile({ ...GOOD, allocation: { kind: 'port-preserving', recentPorts: [5000, 5001] } }).allocation.kind, 'unknown');
  });

  it('reflexive endpoints out of range are dropped; behaviours outside the enum are unknown; consent is only true', () => {
    const p = checkNatProfile({
      ...GOOD,
      mapping: 'symmetric',
      filtering: 7,
      reflexive: [{ address: '203.0.113.1', port: 0 }, { address: '', port: 5 }, { address: 'x'.repeat(200), port: 5 }, { port: 5 }, null, { address: '203.0.113.2', port: 65535 }],
      consent: 'yes',
    });
    assert.equal(p.mapping, 'unknown');
    assert.equal(p.filtering, 'unknown');
    assert.deepEqual(p.reflexive, [{ address: '203.0.113.2', port: 65535 }]);
    assert.equal(p.consent, false);
  });

  it('observedAgoMs: negative or NaN is dropped, huge is capped', () => {
    assert.equal(checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, observedAgoMs: -1 } }).allocation.observedAgoMs, undefined);
    assert.equal(checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, observedAgoMs: Number.NaN } }).allocation.observedAgoMs, undefined);
    assert.equal(checkNatProfile({ ...GOOD, allocation: { ...GOOD.allocation, observedAgoMs: 1e300 } }).allocation.observedAgoMs, 86_400_000);
  });

  it('a getter that throws makes the whole profile unknown', () => {
    const evil = { ...GOOD, get allocation(): never {
      throw new Error('boom');
    } };
    assert.equal(checkNatProfile(evil).consent, false);
  });

  it('never throws, and what it returns is always in range (random input)', () => {
    fc.assert(
      fc.property(fc.anything(), fc.anything(), fc.anything(), (a, b, c) => {
        for (const input of [a, { mapping: a, allocation: b, reflexive: c, consent: true }, { ...GOOD, allocation: { kind: 'sequential', delta: a, recentPorts: b } }]) {
          const p = checkNatProfile(input);
          for (const port of p.allocation.recentPorts) assert.ok(Number.isInteger(port) && port >= 1 && port <= 65535);
          for (const e of p.reflexive) assert.ok(Number.isInteger(e.port) && e.port >= 1 && e.port <= 65535 && typeof e.address === 'string');
          if (p.allocation.kind === 'sequential') assert.ok(Number.isInteger(p.allocation.delta) && p.allocation.delta !== 0 && Math.abs(p.allocation.delta!) <= 32);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the pool is 1024..65535 and the shared family prefers IPv4', () => {
    assert.deepEqual({ ...NAT_PORT_POOL }, { low: 1024, high: 65535, size: 64512 });
    const v4 = { ...GOOD, reflexive: [{ address: '2001:db8::1', port: 5 }, { address: '203.0.113.1', port: 5 }] };
    const v6only = { ...GOOD, reflexive: [{ address: '2001:db8::2', port: 5 }] };
    assert.equal(sharedFamily(v4, v4), 4);
    assert.equal(sharedFamily(v4, v6only), 6);
    assert.equal(sharedFamily({ ...GOOD, reflexive: [{ address: '203.0.113.1', port: 5 }] }, v6only), undefined);
  });
});

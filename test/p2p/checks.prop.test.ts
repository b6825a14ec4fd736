import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { endpointKey } from '../../core/p2p/candidates.js';
import { localCandidates, makeSide } from './call-harness.js';
import { FakeClock, type FakeHost, FakeNat, FakeNetwork, callSecrets, seededRandom } from './helpers.js';

type NatMode = 'none' | 'full-cone' | 'address' | 'port' | 'symmetric';

/** The pairs the issue says must go direct (a symmetric side needs a peer that does not filter by port). */
const VIABLE: readonly [NatMode, NatMode | 'same-nat'][] = [
  ...(['none', 'full-cone', 'address', 'port'] as const).flatMap((a) => (['none', 'full-cone', 'address', 'port'] as const).map((b): [NatMode, NatMode] => [a, b])),
  ...(['none', 'full-cone', 'address'] as const).flatMap((other): [NatMode, NatMode][] => [
    ['symmetric', other],
    [other, 'symmetric'],
  ]),
  ['port', 'same-nat'],
  ['symmetric', 'same-nat'],
];

function nat(mode: NatMode, publicAddress: string, firstPort: number): FakeNat | undefined {
  switch (mode) {
    case 'none':
      return undefined;
    case 'full-cone':
      return new FakeNat({ publicAddress, filtering: 'none', firstPort });
    case 'address':
      return new FakeNat({ publicAddress, filtering: 'address', firstPort });
    case 'port':
      return new FakeNat({ publicAddress, filtering: 'address-and-port', firstPort });
    case 'symmetric':
      return new FakeNat({ publicAddress, mapping: 'symmetric', filtering: 'address-and-port', firstPort });
  }
}

function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

describe('PathChecker (property): two agents over a lossy network converge on one path', () => {
  it('whenever a pair is viable, both sides select the same pair, whatever the loss, delay, candidate order and timing', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...VIABLE),
        fc.double({ min: 0, max: 0.15, noNaN: true }),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 0, max: 600 }),
        fc.integer(),
        ([modeA, modeB], loss, latencyMs, startDelayB, updateAtMs, seed) => {
          const random = seededRandom(seed);
          const clock = new FakeClock();
          const network = new FakeNetwork({ clock, latencyMs, loss, random });
          const natA = nat(modeA, '203.0.113.10', 40000);
          const natB = modeB === 'same-nat' ? natA : nat(modeB, '198.51.100.20', 50000);
          const hostA: FakeHost = network.addHost({
            name: 'a',
            inside: natA === undefined ? { address: '203.0.113.5', port: 5000 } : { address: '10.0.0.2', port: 5000 },
            nat: natA,
          });
          const hostB: FakeHost = network.addHost({
            name: 'b',
            inside: natB === undefined ? { address: '198.51.100.7', port: 6000 } : natB === natA ? { address: '10.0.0.3', port: 6000 } : { address: '10.1.0.2', port: 6000 },
            nat: natB,
          });
          const secrets = callSecrets();
          const localA = localCandidates(hostA);
          const localB = localCandidates(hostB);
          // Each side learns the other's candidates in a random order, some of them only in a
          // later candidate update.
          const toA = shuffle(localB, random);
          const toB = shuffle(localA, random);
          const splitA = Math.floor(random() * (toA.length + 1));
          const splitB = Math.floor(random() * (toB.length + 1));
          const a = makeSide(network, clock, hostA, 'controlling', secrets, localA, { remoteCandidates: toA.slice(0, splitA), sendLogSize: 0 });
          const b = makeSide(network, clock, hostB, 'controlled', secrets, localB, { remoteCandidates: toB.slice(0, splitB), sendLogSize: 0 });
          // The controlled side only ever follows: it selects nothing before A has nominated.
          const earlySelections: number[] = [];
          b.checker.on((event) => {
            if (event.type === 'nominated' && a.checker.stats.nominationsSent === 0) earlySelections.push(clock.now());
          });
          a.checker.start();
          clock.setTimeout(() => b.checker.start(), startDelayB);
          clock.setTimeout(() => {
            a.checker.addRemoteCandidates(toA.slice(splitA));
            b.checker.addRemoteCandidates(toB.slice(splitB));
          }, updateAtMs);

          const both = clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 15_000, 10);
          assert.ok(both, `no selection: A ${JSON.stringify(a.checker.pairs())} B ${JSON.stringify(b.checker.pairs())}`);
          clock.advance(3_000); // let any late nomination settle
          const na = a.checker.nominated;
          const nb = b.checker.nominated;
          assert.ok(na !== undefined && nb !== undefined);
          assert.ok(na.observed !== undefined && nb.observed !== undefined);
          // The same path seen from both ends: where A sends is where B is seen from, and back.
          assert.equal(endpointKey(na.remote), endpointKey(nb.observed));
          assert.equal(endpointKey(nb.remote), endpointKey(na.observed));
          if (modeB === 'same-nat') assert.equal(na.remote.type, 'host');
          assert.deepEqual(earlySelections, []);
          a.checker.close();
          b.checker.close();
        },
      ),
      { numRuns: 80 },
    );
  });
});

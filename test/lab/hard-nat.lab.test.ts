/**
 * `wzp direct-test` through the NAT lab (issue 17): two clients behind two NAT routers, the
 * relay and coturn in the wan, no call and no audio. Behind a symmetric-sequential NAT facing a
 * port-restricted one, both sides report a direct path found by the sequential strategy, with
 * its plan's packets and sockets next to the budget; two symmetric-random NATs stay relayed,
 * and the verdict says why. (The 5 x 5 matrix of real calls with the strategies is in
 * ./direct-call.lab.test.ts; repeated runs and rates are in `npm run bench`.)
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { labDirectTest, labPerson, labRelay, type LabPerson } from './direct-call-lab.js';
import { P2P_NET, P2pLab, p2pLabAvailable } from './p2p-lab.js';

const availability = await p2pLabAvailable();
/** coturn in the wan: two IPs x two ports, so each side's NAT profile is measured. */
const FOUR_STUN = ['--stun', [P2P_NET.relay, P2P_NET.alternate].flatMap((ip) => [P2P_NET.stunPort, P2P_NET.stunPort + 1].map((port) => `${ip}:${port}`)).join(',')];

describe('wzp direct-test through the NAT lab', { skip: availability.ok ? false : availability.reason }, () => {
  const people: LabPerson[] = [];
  after(() => {
    for (const p of people) p.home.cleanup();
  });
  async function pair(): Promise<[LabPerson, LabPerson]> {
    const a = await labPerson('wzp-hn-a-');
    const b = await labPerson('wzp-hn-b-');
    people.push(a, b);
    return [a, b];
  }

  it('symmetric-sequential offers, port-restricted waits: direct, found by the sequential strategy, inside its budget', async () => {
    const [pa, pb] = await pair();
    const lab = await P2pLab.create({ topology: { kind: 'two-nat', a: 'symmetric-sequential', b: 'port-restricted' }, coturn: true });
    try {
      const { tester, waiter } = await labDirectTest(lab, { relay: await labRelay(lab), a: pa, b: pb, args: FOUR_STUN });
      for (const [side, r] of [['tester', tester], ['waiter', waiter]] as const) {
        const show = `${side}: ${JSON.stringify({ verdict: r.verdict, hardNat: r.direct.hardNat, pairs: r.direct.pairs.length })}`;
        assert.equal(r.verdict.kind, 'direct', show);
        assert.match(r.verdict.summary, /direct calls work between these two networks \(found by sequential\)/, show);
        const won = r.direct.hardNat?.attempts.find((a) => a.outcome === 'succeeded');
        assert.equal(won?.strategy, 'sequential', show);
        // Probes and sockets within the plan's budget, and the reasons say so.
        assert.ok(won?.plan && won.packetsSent <= won.plan.budget.packets && won.socketsOpened <= won.plan.sockets, show);
        assert.ok(r.verdict.reasons.some((x) => /^sequential: succeeded, \d+ of \d+ probes, \d+ of \d+ sockets/.test(x)), show);
        assert.deepEqual(r.direct.hardNat?.consent, { local: true, remote: true });
      }
      // The profiles each side measured and the other received.
      assert.equal(tester.nat.local?.allocation.kind, 'sequential');
      assert.equal(waiter.nat.remote?.allocation.kind, 'sequential');
      assert.equal(waiter.nat.local?.mapping, 'endpoint-independent');
      // The hard side opened a fresh socket for its half; the easy side probed from the call's.
      const hard = tester.direct.hardNat?.attempts.find((a) => a.strategy === 'sequential');
      assert.equal(hard?.plan?.openOnly, true);
      assert.ok((hard?.socketsOpened ?? 0) >= 1);
    } finally {
      await lab.destroy();
    }
  });

  it('two symmetric-random NATs: relayed, and the verdict says both NATs are symmetric with random ports', async () => {
    const [pa, pb] = await pair();
    const lab = await P2pLab.create({ topology: { kind: 'two-nat', a: 'symmetric-random', b: 'symmetric-random' }, coturn: true });
    try {
      const { tester, waiter } = await labDirectTest(lab, { relay: await labRelay(lab), a: pa, b: pb, args: [...FOUR_STUN, '--test-for', '5'] });
      for (const r of [tester, waiter]) {
        assert.equal(r.verdict.kind, 'relayed', JSON.stringify(r.verdict));
        assert.equal(r.verdict.summary, 'relayed: both NATs are symmetric with random ports');
        assert.deepEqual(r.direct.hardNat?.attempts, [], 'no strategy applies to two random symmetric NATs');
        assert.deepEqual([...(r.direct.hardNat?.notApplicable ?? [])].sort(), ['birthday', 'sequential']);
      }
    } finally {
      await lab.destroy();
    }
  });
});

/**
 * 1:1 calls across two federated relays through real NATs (issue 19, docs/federation.md,
 * "Cross-relay calls"): relay A and relay B in the lab's wan, linked (B dials A), client A
 * behind one NAT calls (`wzp call --to`) from relay A, client B behind another listens
 * (`wzp listen`) on relay B. Two endpoint-independent NATs: the call goes direct (cross-wired
 * with the addresses each relay saw). Two symmetric NATs: no direct path, and the call is
 * relayed A -> B (the call's room carried over the link) and both hear each other.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateIdentity, saveIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { assertConnected, describePath, labCall, labPerson, type LabCallOutcome, type LabPerson } from './direct-call-lab.js';
import { P2P_NET, P2pLab, type LabRelay, type P2pTopology, p2pLabAvailable } from './p2p-lab.js';

const availability = await p2pLabAvailable();
const people: LabPerson[] = [];

/** Relays A (203.0.113.1) and B (203.0.113.2) in the wan, B dialling A, once their link is up. */
async function federatedRelays(lab: P2pLab): Promise<[LabRelay, LabRelay]> {
  const ids = [];
  for (const name of ['a', 'b']) {
    const dir = mkdtempSync(join(tmpdir(), `wzp-lab-fed-${name}-`));
    const identity = generateIdentity();
    const path = join(dir, 'relay-identity.json');
    await saveIdentity(path, identity);
    ids.push({ dir, path, fingerprint: (await deriveTlsCertificate(identity.seed)).fingerprint });
  }
  const aListen = `${P2P_NET.relay}:4433`;
  const a = await lab.startRelay({ configDir: ids[0].dir, listen: aListen, args: ['--identity', ids[0].path, '--trusted', ids[1].fingerprint] });
  const b = await lab.startRelay({ configDir: ids[1].dir, listen: `${P2P_NET.alternate}:4433`, args: ['--identity', ids[1].path, '--peer', `${aListen}=${ids[0].fingerprint}`] });
  const until = Date.now() + 20_000;
  while (!(/federation:link-up/.test(a.stderr()) && /federation:link-up/.test(b.stderr()))) {
    if (Date.now() > until) throw new Error(`no link between the relays:\n${a.stderr()}\n${b.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return [a, b];
}

async function crossRelayCall(topology: P2pTopology): Promise<LabCallOutcome> {
  const pa = await labPerson('wzp-fedlab-a-');
  const pb = await labPerson('wzp-fedlab-b-');
  people.push(pa, pb);
  const lab = await P2pLab.create({ topology, coturn: false });
  try {
    const [relayA, relayB] = await federatedRelays(lab);
    return await labCall(lab, { relay: relayA, listenerRelay: relayB, a: pa, b: pb, durationS: 3 });
  } finally {
    await lab.destroy();
  }
}


describe('1:1 calls across two federated relays in the NAT lab', { skip: availability.ok ? false : availability.reason }, () => {
  after(() => {
    for (const p of people) p.home.cleanup();
  });

  it('port-restricted calls port-restricted across relays A and B: connects on the relays, goes direct', async () => {
    const r = await crossRelayCall({ kind: 'two-nat', a: 'port-restricted', b: 'port-restricted' });
    assertConnected(r, 'port-restricted x port-restricted');
    // Cross-wired across the relays: each side got the address the other side's relay saw (its NAT's).
    assert.equal(r.caller.direct.relayCandidate?.address, P2P_NET.sides.b.public, 'what relay B saw of the callee');
    assert.equal(r.callee.direct.relayCandidate?.address, P2P_NET.sides.a.public, 'what relay A saw of the caller');
    for (const [side, x] of [['caller', r.caller], ['callee', r.callee]] as const) {
      assert.equal(x.path.timeline[0].path, 'relay', `${side}: media starts on the relays`);
      assert.equal(x.path.final, 'direct', `${side}: ${describePath(x)}`);
    }
  });

  it('symmetric calls symmetric across relays A and B: no direct path, relayed A -> B, both hear each other', async () => {
    const r = await crossRelayCall({ kind: 'two-nat', a: 'symmetric-random', b: 'symmetric-random' });
    assertConnected(r, 'symmetric x symmetric');
    for (const [side, x] of [['caller', r.caller], ['callee', r.callee]] as const) assert.equal(x.path.final, 'relay', `${side}: ${describePath(x)}`);
  });
});

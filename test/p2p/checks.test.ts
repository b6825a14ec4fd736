import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { candidatePriority, endpointKey } from '../../core/p2p/candidates.js';
import { wirePathCheckCodec } from '../../core/p2p/check-codec.js';
import { CHECK_DEFAULTS, PathChecker, pairPriority } from '../../core/p2p/checks.js';
import { PATH_CHECK_REQUEST_BYTES, PATH_CHECK_RESPONSE_V4_BYTES } from '../../core/wire/path-check.js';
import { RELAY, eventTypes, localCandidates, makeCall, makeSide } from './call-harness.js';
import { FakeClock, FakeNat, FakeNetwork, callSecrets, candidate } from './helpers.js';

const A_INSIDE = { address: '10.0.0.2', port: 5000 };
const B_INSIDE = { address: '10.1.0.2', port: 6000 };

function world(options: { latencyMs?: number; loss?: number } = {}) {
  const clock = new FakeClock();
  const network = new FakeNetwork({ clock, latencyMs: options.latencyMs ?? 10, loss: options.loss ?? 0 });
  return { clock, network };
}

describe('PathChecker: pacing and back-off', () => {
  it('paces checks 20 ms apart, backs off per pair (100, 200, 400, 800, 800, 800 ms) and gives up after 7 attempts', () => {
    const { clock, network } = world();
    const host = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const failures: string[] = [];
    const side = makeSide(network, clock, host, 'controlling', callSecrets(), [candidate('host', host.inside)], {
      // Nobody is there: every check goes unanswered.
      remoteCandidates: [candidate('host', { address: '198.51.100.1', port: 1000 }), candidate('srflx', { address: '198.51.100.2', port: 2000 })],
    });
    side.checker.on((event) => {
      if (event.type === 'failed') failures.push(`${clock.now()} ${event.reason}`);
    });
    side.checker.start();
    clock.advance(10_000);
    const times = (to: string) => side.checker.sendLog.filter((entry) => entry.to === to).map((entry) => entry.at);
    assert.deepEqual(times('198.51.100.1:1000'), [0, 100, 300, 700, 1500, 2300, 3100]);
    assert.deepEqual(times('198.51.100.2:2000'), [20, 120, 320, 720, 1520, 2320, 3120]);
    const all = side.checker.sendLog.map((entry) => entry.at);
    for (let i = 1; i < all.length; i++) assert.ok(all[i] - all[i - 1] >= 20, `sends at ${all[i - 1]} and ${all[i]} are closer than 20 ms`);
    assert.deepEqual(
      side.checker.pairs().map((pair) => [pair.remote.type, pair.state, pair.failReason, pair.attempts, pair.failedAt]),
      [
        ['host', 'failed', 'timeout', 7, 3900],
        ['srflx', 'failed', 'timeout', 7, 3920],
      ],
    );
    assert.deepEqual(failures, ['3920 every pair failed (timeout)']);
    assert.equal(clock.pending, 0, 'nothing left scheduled after giving up');
  });

  it('the check budget bounds the round: pairs beyond it fail with "budget"', () => {
    const { clock, network } = world();
    const host = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const remotes = Array.from({ length: 10 }, (_, i) => candidate('srflx', { address: '198.51.100.1', port: 1000 + i }, i));
    const side = makeSide(network, clock, host, 'controlling', callSecrets(), [candidate('host', host.inside)], { remoteCandidates: remotes, maxChecks: 15 });
    side.checker.start();
    clock.advance(10_000);
    assert.equal(side.checker.sendLog.length, 15);
    const reasons = side.checker.pairs().map((pair) => pair.failReason);
    assert.ok(reasons.includes('budget'), reasons.join());
    assert.deepEqual(eventTypes(side), ['failed']);
    assert.equal(clock.pending, 0);
  });

  it('the round deadline fails pairs still unanswered', () => {
    const { clock, network } = world();
    const host = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const side = makeSide(network, clock, host, 'controlling', callSecrets(), [candidate('host', host.inside)], {
      remoteCandidates: [candidate('host', { address: '198.51.100.1', port: 1000 })],
      maxDurationMs: 500,
    });
    side.checker.start();
    clock.advance(2_000);
    assert.deepEqual(side.checker.pairs().map((pair) => [pair.failReason, pair.failedAt, pair.attempts]), [['deadline', 500, 3]]);
  });
});

describe('PathChecker: two agents through NATs', () => {
  it('both endpoint-independent, address-restricted: the controlling side nominates srflx<->srflx and both select it', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: A_INSIDE, nat: new FakeNat({ publicAddress: '203.0.113.10', filtering: 'address' }) });
    const hostB = network.addHost({ name: 'b', inside: B_INSIDE, nat: new FakeNat({ publicAddress: '198.51.100.20', filtering: 'address', firstPort: 50000 }) });
    const { a, b } = makeCall(network, clock, hostA, hostB);
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 3_000));
    const na = a.checker.nominated;
    const nb = b.checker.nominated;
    assert.ok(na !== undefined && nb !== undefined);
    assert.deepEqual([na.remote.type, endpointKey(na.remote), na.localType], ['srflx', '198.51.100.20:50000', 'srflx']);
    assert.deepEqual([nb.remote.type, endpointKey(nb.remote), nb.localType], ['srflx', '203.0.113.10:40000', 'srflx']);
    assert.deepEqual(na.observed, { address: '203.0.113.10', port: 40000 });
    assert.equal(na.rttMs, 20);
    // The filters: B's first checks to A (sent before A wrote to B) were dropped by A's NAT.
    assert.ok(network.deliveries.some((delivery) => delivery.outcome === 'filtered'));
    assert.deepEqual(a.checker.localPeerReflexive, []);
    assert.equal(eventTypes(a).filter((type) => type === 'nominated').length, 1);
    assert.equal(eventTypes(b).filter((type) => type === 'nominated').length, 1);
    // Host pairs (private addresses on different LANs) were cancelled or failed, never succeeded.
    for (const pair of [...a.checker.pairs(), ...b.checker.pairs()].filter((pair) => pair.remote.type === 'host')) assert.notEqual(pair.state, 'succeeded');
  });

  it('a symmetric NAT side: the peer learns a peer-reflexive candidate, the symmetric side its own prflx address', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: A_INSIDE, nat: new FakeNat({ publicAddress: '203.0.113.10', mapping: 'symmetric' }) });
    const hostB = network.addHost({ name: 'b', inside: B_INSIDE, nat: new FakeNat({ publicAddress: '198.51.100.20', filtering: 'address', firstPort: 50000 }) });
    const { a, b } = makeCall(network, clock, hostA, hostB);
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 3_000));
    const na = a.checker.nominated;
    const nb = b.checker.nominated;
    assert.ok(na !== undefined && nb !== undefined);
    // A's relay mapping was port 40000; its flow to B's srflx got another port.
    const aSeenByB = na.observed;
    assert.ok(aSeenByB !== undefined);
    assert.equal(aSeenByB.address, '203.0.113.10');
    assert.notEqual(aSeenByB.port, 40000);
    assert.equal(na.localType, 'prflx');
    assert.deepEqual(a.checker.localPeerReflexive.map(endpointKey), a.events.filter((event) => event.type === 'prflx-local').map((event) => endpointKey((event as { endpoint: { address: string; port: number } }).endpoint)));
    assert.ok(a.checker.localPeerReflexive.some((endpoint) => endpointKey(endpoint) === endpointKey(aSeenByB)));
    assert.equal(nb.remote.type, 'prflx');
    assert.equal(endpointKey(nb.remote), endpointKey(aSeenByB));
    assert.equal(endpointKey(na.remote), endpointKey(nb.observed ?? { address: '', port: 0 }));
    // A prflx remote candidate gets the priority its request announced.
    assert.equal(nb.remote.priority, candidatePriority('prflx', 'IPv4'));
    assert.ok(eventTypes(b).includes('prflx-remote'));
  });

  it('two clients behind one NAT without hairpinning go direct over host candidates', () => {
    const { clock, network } = world();
    const nat = new FakeNat({ publicAddress: '203.0.113.10' });
    const hostA = network.addHost({ name: 'a', inside: { address: '10.0.0.2', port: 5000 }, nat });
    const hostB = network.addHost({ name: 'b', inside: { address: '10.0.0.3', port: 6000 }, nat });
    const { a, b } = makeCall(network, clock, hostA, hostB);
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 3_000));
    assert.deepEqual([a.checker.nominated?.remote.type, a.checker.nominated?.localType], ['host', 'host']);
    assert.equal(endpointKey(a.checker.nominated?.remote ?? { address: '', port: 0 }), '10.0.0.3:6000');
    assert.equal(endpointKey(b.checker.nominated?.remote ?? { address: '', port: 0 }), '10.0.0.2:5000');
    assert.ok(network.deliveries.some((delivery) => delivery.outcome === 'unroutable'), 'the srflx pair met the missing hairpin');
  });

  it('nominates the best succeeded pair after nominationWaitMs when a better pair stays pending', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const hostB = network.addHost({ name: 'b', inside: { address: '198.51.100.7', port: 6000 } });
    const unreachableHost = candidate('host', { address: '10.9.9.9', port: 6000 });
    const bHost = candidate('host', hostB.inside, 1);
    const { a, b } = makeCall(network, clock, hostA, hostB, { localB: [unreachableHost, bHost], a: { nominationWaitMs: 150 } });
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined, 2_000));
    const nominated = a.checker.nominated;
    const succeeded = a.checker.pairs().find((pair) => endpointKey(pair.remote) === '198.51.100.7:6000');
    assert.equal(endpointKey(nominated?.remote ?? { address: '', port: 0 }), '198.51.100.7:6000');
    // The unreachable host candidate outranks the working one: A waits 150 ms after the first
    // success, then nominates (answered one round trip later).
    const succeededAt = succeeded?.succeededAt ?? NaN;
    const nominatedAt = nominated?.nominatedAt ?? NaN;
    assert.ok(nominatedAt >= succeededAt + 150 + 20 && nominatedAt <= succeededAt + 150 + 20 + 20, `succeeded ${succeededAt}, nominated ${nominatedAt}`);
    assert.equal(a.checker.pairs()[0].remote.address, '10.9.9.9');
    assert.equal(a.checker.pairs()[0].failReason, 'cancelled');
    assert.ok(b.checker.nominated !== undefined || clock.runUntil(() => b.checker.nominated !== undefined, 1_000));
  });
});

describe('PathChecker: nomination belongs to the controlling side', () => {
  it('the controlled side never sends a nominate flag and selects nothing until the controlling side nominates', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const hostB = network.addHost({ name: 'b', inside: { address: '198.51.100.7', port: 6000 } });
    const { a, b, secrets } = makeCall(network, clock, hostA, hostB);
    let blockNominations = true;
    const nominating: string[] = [];
    network.drop = (from, _to, bytes) => {
      const message = wirePathCheckCodec.decode(bytes, secrets.key);
      const nominate = message.kind === 'request' && message.nominate;
      if (nominate) nominating.push(from.name);
      return blockNominations && nominate;
    };
    a.checker.start();
    b.checker.start();
    clock.advance(3_000);
    assert.ok(b.checker.pairs().some((pair) => pair.state === 'succeeded'), 'B has a working pair');
    assert.equal(b.checker.nominated, undefined, 'but selects nothing on its own');
    assert.equal(a.checker.nominated, undefined);
    assert.ok(nominating.length > 0 && nominating.every((name) => name === 'a'), nominating.join());
    blockNominations = false;
    a.checker.restart();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 3_000));
    assert.ok(nominating.every((name) => name === 'a'));
  });

  it('two agents both claiming to be controlling drop each other (role conflict) and nominate nothing', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const hostB = network.addHost({ name: 'b', inside: { address: '198.51.100.7', port: 6000 } });
    const secrets = callSecrets();
    const a = makeSide(network, clock, hostA, 'controlling', secrets, [candidate('host', hostA.inside)], { remoteCandidates: [candidate('host', hostB.inside)] });
    const b = makeSide(network, clock, hostB, 'controlling', secrets, [candidate('host', hostB.inside)], { remoteCandidates: [candidate('host', hostA.inside)] });
    a.checker.start();
    b.checker.start();
    clock.advance(6_000);
    assert.equal(a.checker.nominated, undefined);
    assert.ok(a.checker.stats.dropped.roleConflict > 0);
    assert.equal(a.checker.stats.responsesSent, 0);
    assert.ok(eventTypes(a).includes('failed'));
  });
});

describe('PathChecker: hostile input', () => {
  function lone() {
    const { clock, network } = world();
    const host = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const secrets = callSecrets();
    const sent: { to: string; bytes: Uint8Array }[] = [];
    const checker = new PathChecker({
      role: 'controlled',
      ...secrets,
      localCandidates: [candidate('host', host.inside)],
      send: (bytes, address, port) => sent.push({ to: `${address}:${port}`, bytes }),
      timers: clock,
    });
    checker.start();
    return { clock, checker, secrets, sent };
  }
  const request = (key: Uint8Array, callId: Uint8Array, role: 'controlling' | 'controlled' = 'controlling', transactionId = randomBytes(12)) =>
    wirePathCheckCodec.encode({ kind: 'request', transactionId, callId, role, tieBreaker: 1n, nominate: false, priority: 1 }, key);
  const from = { address: '198.51.100.9', port: 7000 };

  it('drops and counts unauthenticated, malformed, wrong-call, same-role, replayed and unsolicited packets without answering', () => {
    const { checker, secrets, sent } = lone();
    const valid = request(secrets.key, secrets.callId);
    assert.equal(checker.receive(valid, from), true);
    assert.equal(sent.length, 1, 'a valid request is answered');
    assert.equal(checker.receive(valid, from), false, 'the same request again is a replay');
    assert.equal(checker.receive(valid, { address: '198.51.100.10', port: 7000 }), false, 'also from elsewhere');
    assert.equal(checker.receive(request(randomBytes(32), secrets.callId), from), false);
    const tampered = request(secrets.key, secrets.callId);
    tampered[33] ^= 1;
    assert.equal(checker.receive(tampered, from), false);
    assert.equal(checker.receive(request(secrets.key, randomBytes(16)), from), false);
    assert.equal(checker.receive(request(secrets.key, secrets.callId, 'controlled'), from), false);
    assert.equal(checker.receive(randomBytes(20), from), false);
    assert.equal(checker.receive(new Uint8Array(0), from), false);
    const response = wirePathCheckCodec.encode(
      { kind: 'response', transactionId: randomBytes(12), callId: secrets.callId, role: 'controlling', tieBreaker: 1n, priority: 1, observed: { address: '203.0.113.5', port: 5000 } },
      secrets.key,
    );
    assert.equal(checker.receive(response, from), false);
    assert.equal(checker.receive(request(secrets.key, secrets.callId), { address: 'not-an-ip', port: 1 }), false);
    assert.deepEqual(
      { ...checker.stats.dropped },
      {
        ...Object.fromEntries(Object.keys(checker.stats.dropped).map((key) => [key, 0])),
        replayed: 2,
        unauthenticated: 2,
        wrongCall: 1,
        roleConflict: 1,
        malformed: 3,
        unsolicited: 1,
      },
    );
    assert.equal(sent.filter((packet) => wirePathCheckCodec.decode(packet.bytes, secrets.key).kind === 'response').length, 1);
  });

  it('a response from another address than the request went to is dropped, the transaction stays open for the real one', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const secrets = callSecrets();
    const sent: Uint8Array[] = [];
    const checker = new PathChecker({
      role: 'controlling',
      ...secrets,
      localCandidates: [candidate('host', hostA.inside)],
      remoteCandidates: [candidate('host', { address: '198.51.100.7', port: 6000 })],
      send: (bytes) => sent.push(bytes),
      timers: clock,
    });
    checker.start();
    clock.advance(0);
    const check = wirePathCheckCodec.decode(sent[0], secrets.key);
    const answer = wirePathCheckCodec.encode(
      { kind: 'response', transactionId: check.transactionId, callId: secrets.callId, role: 'controlled', tieBreaker: 1n, priority: 1, observed: hostA.inside },
      secrets.key,
    );
    assert.equal(checker.receive(answer, { address: '198.51.100.8', port: 6000 }), false);
    assert.equal(checker.stats.dropped.unsolicited, 1);
    assert.equal(checker.receive(answer, { address: '198.51.100.7', port: 6000 }), true);
    assert.equal(checker.pairs()[0].state, 'succeeded');
    assert.equal(checker.receive(answer, { address: '198.51.100.7', port: 6000 }), false, 'an answer is accepted once');
    assert.equal(checker.stats.dropped.replayed, 1);
  });

  it('stays bounded under a flood of bogus and of authentic checks from many sources', () => {
    const { clock, checker, secrets, sent } = lone();
    for (let i = 0; i < 5_000; i++) {
      const source = { address: `198.51.${(i >> 8) & 0xff}.${i & 0xff}`, port: 1024 + (i % 60_000) };
      checker.receive(randomBytes(1 + (i % 80)), source);
      checker.receive(request(randomBytes(32), secrets.callId), source);
      checker.receive(request(secrets.key, randomBytes(16)), source);
      // An attacker who somehow has the key can still only make a bounded number of prflx pairs.
      checker.receive(request(secrets.key, secrets.callId), source);
      if (i % 500 === 0) clock.advance(20);
    }
    clock.advance(60_000);
    assert.equal(checker.pairs().length, CHECK_DEFAULTS.maxPeerReflexive);
    assert.equal(checker.stats.dropped.prflxOverLimit, 5_000 - CHECK_DEFAULTS.maxPeerReflexive);
    assert.ok(checker.pendingTransactions <= CHECK_DEFAULTS.maxPendingTransactions);
    assert.equal(checker.stats.dropped.unauthenticated + checker.stats.dropped.malformed, 10_000);
    assert.equal(checker.stats.dropped.wrongCall, 5_000);
    // Answers are never larger than 1.3x the request and go only to authentic requesters.
    const responses = sent.filter((packet) => packet.bytes.length > PATH_CHECK_REQUEST_BYTES);
    assert.equal(responses.length, 5_000);
    assert.ok(responses.every((packet) => packet.bytes.length === PATH_CHECK_RESPONSE_V4_BYTES));
    assert.ok(PATH_CHECK_RESPONSE_V4_BYTES <= 1.3 * PATH_CHECK_REQUEST_BYTES);
  });

  it('refuses invalid, own, prflx and excess remote candidates', () => {
    const { checker } = lone();
    const own = candidate('host', { address: '203.0.113.5', port: 5000 });
    const accepted = checker.addRemoteCandidates([
      own,
      { ...candidate('host', { address: '198.51.100.1', port: 1 }), port: 70_000 },
      candidate('prflx', { address: '198.51.100.1', port: 2 }),
      candidate('host', { address: '127.0.0.1', port: 3 }),
      'junk',
      null,
      ...Array.from({ length: 200 }, (_, i) => candidate('srflx', { address: '198.51.100.2', port: 1000 + i })),
    ]);
    assert.equal(accepted, CHECK_DEFAULTS.maxRemoteCandidates);
    assert.equal(checker.pairs().length, CHECK_DEFAULTS.maxRemoteCandidates);
  });

  it('a codec that throws something unexpected is counted, not thrown', () => {
    const { clock, network } = world();
    const host = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const checker = new PathChecker({
      role: 'controlled',
      ...callSecrets(),
      localCandidates: [candidate('host', host.inside)],
      send: () => undefined,
      timers: clock,
      codec: {
        encode: () => new Uint8Array(1),
        decode: () => {
          throw new RangeError('boom');
        },
      },
    });
    assert.equal(checker.receive(new Uint8Array(10), { address: '198.51.100.1', port: 1 }), false);
    assert.equal(checker.stats.dropped.malformed, 1);
  });
});

describe('PathChecker: after the first success', () => {
  it('sends 3 extra checks on a pair that succeeds, then keepalives every 200 ms on the nominated pair', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const hostB = network.addHost({ name: 'b', inside: { address: '198.51.100.7', port: 6000 } });
    const { a, b } = makeCall(network, clock, hostA, hostB, { localA: [candidate('host', hostA.inside)], localB: [candidate('host', hostB.inside)] });
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 2_000));
    const nominatedAt = clock.now();
    clock.advance(2_000);
    assert.equal(a.checker.stats.extraSent, 3);
    assert.equal(b.checker.stats.extraSent, 3);
    const keepalives = a.checker.sendLog.filter((entry) => entry.kind === 'keepalive').map((entry) => entry.at);
    assert.ok(keepalives.length >= 6, keepalives.join());
    for (let i = 1; i < keepalives.length; i++) assert.equal(keepalives[i] - keepalives[i - 1], 200);
    assert.ok(b.checker.stats.keepalivesSent >= 6);
    assert.ok((a.checker.lastReceivedAt ?? 0) >= nominatedAt + 1_500);
    assert.equal(a.checker.stale, false);
  });

  it('says "stale" when the nominated pair has carried no answer for 0.8 s (within 0.8 s of a cut), "recovered" when answers return', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const hostB = network.addHost({ name: 'b', inside: { address: '198.51.100.7', port: 6000 } });
    const { a, b } = makeCall(network, clock, hostA, hostB, { localA: [candidate('host', hostA.inside)], localB: [candidate('host', hostB.inside)] });
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 2_000));
    clock.advance(1_000);
    let cut = true;
    network.drop = () => cut;
    const cutAt = clock.now();
    const lastAnswer = a.checker.lastReceivedAt ?? 0;
    let staleAt = NaN;
    a.checker.on((event) => {
      if (event.type === 'stale') staleAt = clock.now();
    });
    assert.ok(clock.runUntil(() => a.checker.stale, 2_000));
    const stale = a.events.find((event) => event.type === 'stale');
    assert.ok(stale !== undefined && stale.type === 'stale');
    assert.equal(stale.silentMs, 800);
    assert.equal(staleAt, lastAnswer + 800);
    assert.ok(staleAt - cutAt <= 800);
    assert.ok(b.checker.stale || clock.runUntil(() => b.checker.stale, 500));
    cut = false;
    assert.ok(clock.runUntil(() => !a.checker.stale && !b.checker.stale, 1_000));
    assert.deepEqual(eventTypes(a).slice(-2), ['stale', 'recovered']);
  });
});

describe('PathChecker: a NAT that rebinds mid-call', () => {
  it('the controlling side moves to the peer-reflexive pair its peer now answers from, and the controlled side follows', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: A_INSIDE, nat: new FakeNat({ publicAddress: '203.0.113.10', filtering: 'address' }) });
    const natB = new FakeNat({ publicAddress: '198.51.100.20', filtering: 'none', firstPort: 50000 });
    const hostB = network.addHost({ name: 'b', inside: B_INSIDE, nat: natB });
    const { a, b } = makeCall(network, clock, hostA, hostB);
    a.checker.start();
    b.checker.start();
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 2_000));
    assert.equal(endpointKey(a.checker.nominated?.remote ?? { address: '', port: 0 }), '198.51.100.20:50000');
    clock.advance(500);
    natB.rebind();
    const reboundAt = clock.now();
    assert.ok(clock.runUntil(() => a.events.filter((event) => event.type === 'nominated').length === 2, 3_000));
    const moved = a.checker.nominated;
    assert.equal(moved?.remote.type, 'prflx');
    assert.equal(moved?.remote.address, '198.51.100.20');
    assert.notEqual(moved?.remote.port, 50000);
    assert.ok(clock.now() - reboundAt <= 1_500, `moved ${clock.now() - reboundAt} ms after the rebinding`);
    assert.deepEqual(eventTypes(a).filter((type) => type === 'stale' || type === 'nominated'), ['nominated', 'stale', 'nominated']);
    clock.advance(1_000);
    assert.equal(a.checker.stale, false);
    assert.equal(b.checker.stale, false);
    assert.equal(endpointKey(b.checker.nominated?.remote ?? { address: '', port: 0 }), endpointKey(a.checker.nominated?.observed ?? { address: '', port: 0 }));
    assert.equal(endpointKey(a.checker.nominated?.remote ?? { address: '', port: 0 }), endpointKey(b.checker.nominated?.observed ?? { address: '', port: 0 }));
  });
});

describe('PathChecker: low-TTL priming', () => {
  function conntrackWorld(primeTtl: number | undefined) {
    // Both NATs port-restricted with Linux conntrack behaviour, ~no latency, B starts 5 ms
    // after A: A's first check reaches B's NAT before B has sent anything.
    const { clock, network } = world({ latencyMs: 1 });
    const hostA = network.addHost({ name: 'a', inside: A_INSIDE, nat: new FakeNat({ publicAddress: '203.0.113.10', conntrack: true }) });
    const hostB = network.addHost({ name: 'b', inside: B_INSIDE, nat: new FakeNat({ publicAddress: '198.51.100.20', conntrack: true, firstPort: 50000 }) });
    const localA = localCandidates(hostA).filter((c) => c.type === 'srflx');
    const localB = localCandidates(hostB).filter((c) => c.type === 'srflx');
    const { a, b } = makeCall(network, clock, hostA, hostB, { localA, localB, a: { primeTtl }, b: { primeTtl } });
    a.checker.start();
    clock.advance(5);
    b.checker.start();
    return { clock, network, a, b, hostB };
  }

  it('without priming, an early inbound check poisons the peer NAT and the pair fails', () => {
    const { clock, a, b, hostB } = conntrackWorld(undefined);
    clock.advance(10_000);
    assert.equal(a.checker.nominated, undefined);
    assert.equal(b.checker.nominated, undefined);
    assert.ok(hostB.nat?.log.some((line) => line.startsWith('conntrack clash')), 'the simulated conntrack clash happened');
    assert.ok(eventTypes(a).includes('failed'));
  });

  it('with primeTtl 2, each side first sends one check that dies after its own NAT, and the pair succeeds', () => {
    const { clock, network, a, b, hostB } = conntrackWorld(2);
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 3_000));
    assert.equal(hostB.nat?.log.length, 0);
    const firstA = a.checker.sendLog[0];
    assert.deepEqual([firstA.kind, firstA.ttl, firstA.at], ['prime', 2, 0]);
    assert.deepEqual([a.checker.sendLog[1].kind, a.checker.sendLog[1].ttl, a.checker.sendLog[1].at], ['check', undefined, 20]);
    assert.deepEqual(b.checker.sendLog[0].kind, 'prime');
    assert.equal(network.deliveries.filter((delivery) => delivery.outcome === 'ttl-expired').length, 2);
    assert.equal(a.checker.stats.primedSent, 1);
    assert.equal(a.checker.pairs()[0].primed, true);
  });
});

describe('PathChecker: the controlled side holds its checks until the controlling side is checking', () => {
  // The callee starts when it sends the answer; the caller starts when the answer arrives,
  // here 60 ms later. Both NATs port-restricted with conntrack; both prime.
  function calleeFirst(holdChecksMs: number | undefined) {
    const { clock, network } = world({ latencyMs: 1 });
    const hostA = network.addHost({ name: 'a', inside: A_INSIDE, nat: new FakeNat({ publicAddress: '203.0.113.10', conntrack: true }) });
    const hostB = network.addHost({ name: 'b', inside: B_INSIDE, nat: new FakeNat({ publicAddress: '198.51.100.20', conntrack: true, firstPort: 50000 }) });
    const localA = localCandidates(hostA).filter((c) => c.type === 'srflx');
    const localB = localCandidates(hostB).filter((c) => c.type === 'srflx');
    const { a, b } = makeCall(network, clock, hostA, hostB, { localA, localB, a: { primeTtl: 2 }, b: { primeTtl: 2, ...(holdChecksMs === undefined ? {} : { holdChecksMs }) } });
    b.checker.start();
    clock.advance(60);
    a.checker.start();
    return { clock, a, b, hostA };
  }

  it('without the hold, the callee check that beats the caller priming poisons the caller NAT and the pair fails', () => {
    const { clock, a, b, hostA } = calleeFirst(undefined);
    clock.advance(10_000);
    assert.equal(a.checker.nominated, undefined);
    assert.equal(b.checker.nominated, undefined);
    assert.ok(hostA.nat?.log.some((line) => line.startsWith('conntrack clash')), 'the simulated conntrack clash happened');
  });

  it('with the hold, the callee only primes until the caller check arrives, and the pair succeeds', () => {
    const { clock, a, b, hostA } = calleeFirst(300);
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 3_000));
    assert.equal(hostA.nat?.log.length, 0);
    assert.deepEqual(b.checker.sendLog.slice(0, 1).map((x) => x.kind), ['prime']);
    // Its first ordinary check went after the caller's request arrived (at ~60 + 20 ms), long before the 300 ms hold ran out.
    const firstOrdinary = b.checker.sendLog.find((x) => x.kind !== 'prime' && x.kind !== 'response');
    assert.ok(firstOrdinary && firstOrdinary.at >= 60 && firstOrdinary.at < 200, JSON.stringify(b.checker.sendLog.slice(0, 6)));
  });
});

describe('PathChecker: remote candidates at any time', () => {
  it('a candidate update after failure re-arms the checks and can still succeed', () => {
    const { clock, network } = world();
    const hostA = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const hostB = network.addHost({ name: 'b', inside: { address: '198.51.100.7', port: 6000 } });
    const secrets = callSecrets();
    const a = makeSide(network, clock, hostA, 'controlling', secrets, [candidate('host', hostA.inside)], {
      remoteCandidates: [candidate('host', { address: '198.51.100.99', port: 6000 })],
    });
    const b = makeSide(network, clock, hostB, 'controlled', secrets, [candidate('host', hostB.inside)]);
    a.checker.start();
    b.checker.start();
    clock.advance(5_000);
    assert.deepEqual(eventTypes(a), ['failed']);
    assert.equal(a.checker.addRemoteCandidates([candidate('host', hostB.inside)]), 1);
    assert.ok(clock.runUntil(() => a.checker.nominated !== undefined && b.checker.nominated !== undefined, 2_000));
    // B learned A only from A's checks: a peer-reflexive remote.
    assert.equal(b.checker.nominated?.remote.type, 'prflx');
  });

  it('pair priority follows RFC 8445 (controlling G, controlled D) and orders host before srflx', () => {
    const g = candidatePriority('host', 'IPv4');
    const d = candidatePriority('srflx', 'IPv6');
    assert.equal(pairPriority(g, d), (BigInt(Math.min(g, d)) << 32n) + 2n * BigInt(Math.max(g, d)) + 1n);
    assert.equal(pairPriority(d, g), (BigInt(Math.min(g, d)) << 32n) + 2n * BigInt(Math.max(g, d)));
    assert.ok(pairPriority(candidatePriority('host', 'IPv4'), candidatePriority('host', 'IPv4')) > pairPriority(candidatePriority('host', 'IPv4'), candidatePriority('srflx', 'IPv6')));
    assert.ok(pairPriority(candidatePriority('host', 'IPv6'), candidatePriority('host', 'IPv6')) > pairPriority(candidatePriority('host', 'IPv4'), candidatePriority('host', 'IPv4')));
  });

  it('checks go out in pair-priority order: IPv6 before IPv4 of the same type, host before mapped before srflx before predicted', () => {
    const { clock, network } = world();
    const host = network.addHost({ name: 'a', inside: { address: '203.0.113.5', port: 5000 } });
    const remotes = [
      candidate('predicted', { address: '198.51.100.1', port: 5 }),
      candidate('srflx', { address: '198.51.100.1', port: 4 }),
      candidate('mapped', { address: '198.51.100.1', port: 3 }),
      candidate('host', { address: '198.51.100.1', port: 2 }),
      candidate('host', { address: '2001:db8::1', port: 1 }),
    ];
    const side = makeSide(network, clock, host, 'controlling', callSecrets(), [candidate('host', host.inside), candidate('host', { address: '2001:db8::5', port: 5000 })], {
      remoteCandidates: remotes,
    });
    side.checker.start();
    clock.advance(90);
    assert.deepEqual(
      side.checker.sendLog.map((entry) => entry.to),
      ['[2001:db8::1]:1', '198.51.100.1:2', '198.51.100.1:3', '198.51.100.1:4', '198.51.100.1:5'],
    );
    void RELAY;
  });
});

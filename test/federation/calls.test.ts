/**
 * Cross-relay calls' bounds and hostile input (core/federation/calls.ts), against a real
 * Presence and stand-in links that record what they would send: a presence-query flood from
 * one link is bounded per second and counted, repeated query ids are answered once, a
 * query's TTL is capped by this relay's own bound, answers nobody asked for are dropped, and
 * malformed entries, offers over a link's rate, and signals for calls a link does not carry
 * are counted by reason. A call whose link drops ends, the local party told.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { newCallId, signCallSignal, signRegistration } from '../../core/crypto/call-signal.js';
import { CALL_LIMITS, FederatedCalls } from '../../core/federation/calls.js';
import { emptyLinkCounters, type Link } from '../../core/federation/link.js';
import { resolveRelayLimits } from '../../core/relay/limits.js';
import { Presence, type PresencePeer } from '../../core/relay/presence.js';
import { decodeSignal, type KnownSignalMessage } from '../../core/wire/signal.js';

const RELAY_FP = generateIdentity().fingerprint;

interface FakeLink {
  link: Link;
  sent: Record<string, unknown>[];
}

function fakeLink(name: string): FakeLink {
  const sent: Record<string, unknown>[] = [];
  const link = { peer: generateIdentity().fingerprint, closed: false, counters: emptyLinkCounters(name), sendEntry: (e: Record<string, unknown>) => void sent.push(e) };
  return { link: link as unknown as Link, sent };
}

function localPeer(): PresencePeer & { got: KnownSignalMessage[] } {
  const got: KnownSignalMessage[] = [];
  return { label: 'local', source: '127.0.0.1', observed: () => ({ address: '127.0.0.1', port: 5000 }), push: (f) => void got.push(decodeSignal(f) as KnownSignalMessage), got };
}

function setup(inUse: Set<string> = new Set(), draining = false): { presence: Presence; calls: FederatedCalls; l1: FakeLink; l2: FakeLink; carried: [string, string | undefined][] } {
  let ref: FederatedCalls | undefined;
  // As the relay wires them: presence asks the calls about callees elsewhere, and tells them of ended calls.
  const presence = new Presence({ limits: resolveRelayLimits(), relayFingerprint: RELAY_FP, refuse: () => undefined, remote: () => ref });
  const l1 = fakeLink('l1');
  const l2 = fakeLink('l2');
  const carried: [string, string | undefined][] = [];
  const calls = new FederatedCalls({
    presence,
    links: () => [l1.link, l2.link],
    carryCallRoom: (callId, room) => void carried.push([callId, room]),
    callRoomAllowed: () => true,
    roomInUse: (room) => inUse.has(room),
    reannounce: () => undefined,
    draining: () => draining,
  });
  ref = calls;
  return { presence, calls, l1, l2, carried };
}

function register(presence: Presence, identity: Identity): PresencePeer & { got: KnownSignalMessage[] } {
  const peer = localPeer();
  const ch = presence.challenge(peer) as { nonce: string };
  const r = presence.register(peer, signRegistration(identity, RELAY_FP, ch.nonce));
  assert.equal(r.type, 'registered');
  return peer;
}

const qid = (i: number): string => i.toString(16).padStart(16, '0');

function offer(caller: Identity, callee: string, callId = newCallId()): Record<string, unknown> {
  return signCallSignal(caller, { type: 'offer', callId, to: callee, role: 'caller', seq: 1, ts: Date.now(), ephemeralKey: Buffer.alloc(32, 1).toString('base64'), candidates: [] }) as unknown as Record<string, unknown>;
}

describe('cross-relay calls: presence queries', () => {
  test('a flood of queries from one link is bounded per second, counted, and never sent back to it', () => {
    const { calls, l1, l2 } = setup();
    const nobody = generateIdentity().fingerprint;
    for (let i = 0; i < 1000; i++) calls.onEntry(l1.link, { kind: 'where', qid: qid(i), fp: nobody, ttl: 4 });
    const forwarded = l2.sent.filter((e) => e.kind === 'where');
    // The burst (twice the rate), and what the bucket refilled while the loop ran.
    assert.ok(forwarded.length >= 2 * CALL_LIMITS.queriesPerSecond && forwarded.length <= 2 * CALL_LIMITS.queriesPerSecond + 10, `${forwarded.length} forwarded`);
    assert.equal(l1.link.counters.drops['query-rate'], 1000 - forwarded.length);
    assert.equal(l1.sent.length, 0, 'nothing back to the asking link');
    assert.ok(forwarded.every((e) => e.ttl === 3));
  });

  test('a repeated query id is dropped as a duplicate; a TTL over the bound is capped; TTL 1 goes no further', () => {
    const { calls, l1, l2 } = setup();
    const fp = generateIdentity().fingerprint;
    calls.onEntry(l1.link, { kind: 'where', qid: qid(1), fp, ttl: 16 });
    calls.onEntry(l1.link, { kind: 'where', qid: qid(1), fp, ttl: 16 });
    calls.onEntry(l2.link, { kind: 'where', qid: qid(1), fp, ttl: 16 });
    assert.equal(l1.link.counters.drops['query-duplicate'], 1);
    assert.equal(l2.link.counters.drops['query-duplicate'], 1);
    assert.deepEqual(l2.sent, [{ kind: 'where', qid: qid(1), fp, ttl: CALL_LIMITS.queryHops - 1 }]);
    calls.onEntry(l1.link, { kind: 'where', qid: qid(2), fp, ttl: 1 });
    assert.equal(l2.sent.length, 1);
  });

  test('malformed entries are dropped and counted', () => {
    const { calls, l1, l2 } = setup();
    const fp = generateIdentity().fingerprint;
    const bad: Record<string, unknown>[] = [
      { kind: 'where', qid: 'xyz', fp, ttl: 2 },
      { kind: 'where', qid: qid(3), fp: 'nope', ttl: 2 },
      { kind: 'where', qid: qid(3), fp, ttl: 0 },
      { kind: 'where', qid: qid(3), fp, ttl: 1e9 },
      { kind: 'here', qid: qid(3), fp, hops: -1 },
      { kind: 'call', callId: 'short', hops: 2, signal: {} },
      { kind: 'call', callId: newCallId(), hops: 2, signal: { type: 'offer' } },
      { kind: 'call', callId: newCallId(), hops: 2, signal: { type: 'join', room: 'x' } },
      { kind: 'call-room', callId: newCallId(), room: 'not a room' },
      { kind: 'teleport' },
    ];
    for (const e of bad) calls.onEntry(l1.link, e);
    assert.equal(l1.link.counters.drops['malformed-call'], bad.length);
    assert.equal(l2.sent.length, 0);
  });

  test('answers: one to a query nobody asked, or from the link that asked, is dropped; the first real one goes back, once', () => {
    const { calls, l1, l2 } = setup();
    const fp = generateIdentity().fingerprint;
    calls.onEntry(l2.link, { kind: 'here', qid: qid(9), fp, hops: 1 });
    assert.equal(l2.link.counters.drops['unknown-query'], 1);
    calls.onEntry(l1.link, { kind: 'where', qid: qid(10), fp, ttl: 3 });
    calls.onEntry(l1.link, { kind: 'here', qid: qid(10), fp, hops: 1 });
    assert.equal(l1.link.counters.drops['unknown-query'], 1);
    // The wrong fingerprint for that query.
    calls.onEntry(l2.link, { kind: 'here', qid: qid(10), fp: generateIdentity().fingerprint, hops: 1 });
    assert.equal(l2.link.counters.drops['unknown-query'], 2);
    calls.onEntry(l2.link, { kind: 'here', qid: qid(10), fp, hops: 1 });
    calls.onEntry(l2.link, { kind: 'here', qid: qid(10), fp, hops: 1 });
    assert.deepEqual(l1.sent, [{ kind: 'here', qid: qid(10), fp, hops: 2 }]);
    // Remembered briefly: the next query for it is answered here, not flooded.
    calls.onEntry(l1.link, { kind: 'where', qid: qid(11), fp, ttl: 3 });
    assert.deepEqual(l1.sent[1], { kind: 'here', qid: qid(11), fp, hops: 2 });
    assert.equal(l2.sent.filter((e) => e.qid === qid(11)).length, 0);
  });

  test('a callee registered here is answered at one hop; a caller here finds one over a link, or is told offline after the timeout', async () => {
    const { presence, calls, l1, l2 } = setup();
    const bo = generateIdentity();
    register(presence, bo);
    calls.onEntry(l1.link, { kind: 'where', qid: qid(20), fp: bo.fingerprint, ttl: 2 });
    assert.deepEqual(l1.sent, [{ kind: 'here', qid: qid(20), fp: bo.fingerprint, hops: 1 }]);
    assert.equal(l2.sent.length, 0);

    const ana = generateIdentity();
    const far = generateIdentity().fingerprint;
    const o = offer(ana, far) as never;
    const found = calls.locate(o);
    const q = l2.sent.find((e) => e.kind === 'where' && e.fp === far);
    assert.ok(q, 'asked on every link');
    calls.onEntry(l2.link, { kind: 'here', qid: q.qid, fp: far, hops: 2 });
    const party = await found;
    assert.ok(party?.remote);
    const t0 = performance.now();
    assert.equal(await calls.locate(offer(ana, generateIdentity().fingerprint) as never), undefined);
    assert.ok(performance.now() - t0 >= CALL_LIMITS.queryTimeoutMs - 50);
    assert.equal(calls.stats.found, 1);
    assert.equal(calls.stats.notFound, 1);
  });
});

describe('cross-relay calls: signals over links', () => {
  test('an offer from a link reaches the callee registered here, its relay candidate kept; the answer goes back over that link; offers over the rate are dropped', () => {
    const { presence, calls, l1 } = setup();
    const bo = generateIdentity();
    const ana = generateIdentity();
    const boPeer = register(presence, bo);
    const callId = newCallId();
    const relayCandidate = { type: 'srflx', address: '198.51.100.7', port: 4000, priority: 0 };
    calls.onEntry(l1.link, { kind: 'call', callId, hops: 4, signal: { ...offer(ana, bo.fingerprint, callId), relayCandidate } });
    assert.equal(boPeer.got.length, 1);
    assert.equal(boPeer.got[0].type, 'offer');
    assert.deepEqual((boPeer.got[0] as { relayCandidate?: unknown }).relayCandidate, relayCandidate);
    const answer = signCallSignal(bo, { type: 'answer', callId, to: ana.fingerprint, role: 'callee', seq: 1, ts: Date.now(), ephemeralKey: Buffer.alloc(32, 2).toString('base64'), candidates: [] });
    const reply = presence.route(boPeer, answer);
    assert.equal((reply as KnownSignalMessage).type, 'routed');
    const back = l1.sent.find((e) => e.kind === 'call') as { callId: string; signal: { type: string; relayCandidate?: { address: string } } };
    assert.equal(back.callId, callId);
    assert.equal(back.signal.type, 'answer');
    assert.equal(back.signal.relayCandidate?.address, '127.0.0.1', 'cross-wired by the callee relay');
    // A signal for that call from another link is not taken.
    const { l2 } = { l2: fakeLink('l2') };
    calls.onEntry(l2.link, { kind: 'call', callId, hops: 4, signal: signCallSignal(ana, { type: 'hangup', callId, to: bo.fingerprint, role: 'caller', seq: 2, ts: Date.now() }) });
    assert.equal(l2.link.counters.drops['unknown-call'], 1);
    // An offer flood from the link: at most the burst gets through.
    for (let i = 0; i < 100; i++) {
      const id = newCallId();
      calls.onEntry(l1.link, { kind: 'call', callId: id, hops: 4, signal: offer(ana, bo.fingerprint, id) });
    }
    assert.ok(l1.link.counters.drops['offer-rate'] >= 100 - 2 * CALL_LIMITS.offersPerSecond - 2, JSON.stringify(l1.link.counters.drops));
  });

  test('the link of a call drops: the party here is told the call is gone', async () => {
    const { presence, calls, l1 } = setup();
    const bo = generateIdentity();
    const ana = generateIdentity();
    const boPeer = register(presence, bo);
    const callId = newCallId();
    calls.onEntry(l1.link, { kind: 'call', callId, hops: 4, signal: offer(ana, bo.fingerprint, callId) });
    assert.equal(calls.stats.calls, 1);
    calls.linkDown(l1.link);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(boPeer.got.map((m) => m.type), ['offer', 'call-gone']);
    assert.equal(calls.stats.calls, 0);
    assert.equal(presence.stats.callsOpen, 0);
  });

  test('an offer for a callee this relay cannot reach is answered call-gone on the link it came from', () => {
    const { calls, l1, l2 } = setup();
    const ana = generateIdentity();
    const callId = newCallId();
    const to = generateIdentity().fingerprint;
    calls.onEntry(l1.link, { kind: 'call', callId, hops: 4, signal: offer(ana, to, callId) });
    assert.deepEqual(l1.sent, [{ kind: 'call', callId, hops: CALL_LIMITS.queryHops, signal: { type: 'call-gone', callId, fingerprint: to } }]);
    assert.equal(l2.sent.length, 0);
  });

  test("a call's room named by the far relay is carried over the call's link only if nobody is in it here; until the call ends", async () => {
    const busy = 'b'.repeat(32);
    const { presence, calls, l1, carried } = setup(new Set([busy]));
    const bo = generateIdentity();
    const ana = generateIdentity();
    const boPeer = register(presence, bo);
    const callId = newCallId();
    calls.onEntry(l1.link, { kind: 'call', callId, hops: 4, signal: offer(ana, bo.fingerprint, callId) });
    // Before the answer: no call room.
    calls.onEntry(l1.link, { kind: 'call-room', callId, room: 'c'.repeat(32) });
    assert.deepEqual(carried, []);
    void presence.route(boPeer, signCallSignal(bo, { type: 'answer', callId, to: ana.fingerprint, role: 'callee', seq: 1, ts: Date.now(), ephemeralKey: Buffer.alloc(32, 2).toString('base64'), candidates: [] }));
    // A room in use on this relay: not pulled over by the far side's word.
    calls.onEntry(l1.link, { kind: 'call-room', callId, room: busy });
    assert.deepEqual(carried, []);
    // (The one before the answer, and one for a call that does not exist.)
    calls.onEntry(l1.link, { kind: 'call-room', callId: newCallId(), room: 'c'.repeat(32) });
    assert.equal(l1.link.counters.drops['unknown-call'], 2);
    calls.onEntry(l1.link, { kind: 'call-room', callId, room: 'c'.repeat(32) });
    assert.deepEqual(carried, [[callId, 'c'.repeat(32)]]);
    // The hang-up ends the call and the room's carriage.
    calls.onEntry(l1.link, { kind: 'call', callId, hops: 4, signal: signCallSignal(ana, { type: 'hangup', callId, to: bo.fingerprint, role: 'caller', seq: 2, ts: Date.now() }) });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(carried, [[callId, 'c'.repeat(32)], [callId, undefined]]);
    assert.equal(calls.stats.calls, 0);
  });

  test("a caller's offer to a callee on another relay: sent once found, cross-wired; a caller gone meanwhile leaves nothing behind", async () => {
    const { presence, calls, l2 } = setup();
    const ana = generateIdentity();
    const anaPeer = register(presence, ana);
    const far = generateIdentity().fingerprint;
    const callId = newCallId();
    const pending = presence.route(anaPeer, offer(ana, far, callId) as never);
    assert.ok(pending instanceof Promise);
    const q = l2.sent.find((e) => e.kind === 'where');
    assert.ok(q);
    calls.onEntry(l2.link, { kind: 'here', qid: q.qid, fp: far, hops: 1 });
    assert.equal((await pending).type, 'routed');
    const sent = l2.sent.find((e) => e.kind === 'call') as { signal: { type: string; relayCandidate?: { address: string; port: number } } };
    assert.equal(sent.signal.type, 'offer');
    assert.deepEqual(sent.signal.relayCandidate && [sent.signal.relayCandidate.address, sent.signal.relayCandidate.port], ['127.0.0.1', 5000]);
    assert.equal(calls.stats.calls, 1);

    // The caller hangs up (its connection closes): the far relay is told, the call forgotten.
    presence.disconnect(anaPeer);
    await new Promise((r) => setImmediate(r));
    assert.equal(l2.sent.filter((e) => e.kind === 'call').length, 2);
    assert.equal((l2.sent.at(-1) as { signal: { type: string } }).signal.type, 'call-gone');
    assert.equal(calls.stats.calls, 0);

    // Found only after the caller left: nothing is sent, nothing kept.
    const cy = generateIdentity();
    const cyPeer = register(presence, cy);
    const p2 = presence.route(cyPeer, offer(cy, far) as never);
    presence.disconnect(cyPeer);
    // (The route is remembered: found at once.)
    assert.equal((await p2).type, 'offline');
    await new Promise((r) => setImmediate(r));
    assert.equal(calls.stats.calls, 0);
    assert.equal(l2.sent.filter((e) => e.kind === 'call').length, 2);
  });

  test('a draining relay delivers no new call from a link: the caller side is told call-gone', () => {
    const { presence, calls, l1 } = setup(new Set(), true);
    const bo = generateIdentity();
    const boPeer = register(presence, bo);
    const callId = newCallId();
    calls.onEntry(l1.link, { kind: 'call', callId, hops: 4, signal: offer(generateIdentity(), bo.fingerprint, callId) });
    assert.equal(boPeer.got.length, 0);
    assert.equal((l1.sent[0] as { signal: { type: string } }).signal.type, 'call-gone');
    assert.equal(calls.stats.calls, 0);
  });
});

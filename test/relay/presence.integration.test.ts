/**
 * Presence and call signalling through an in-process relay over real loopback QUIC
 * (core/relay/presence.ts, core/client/presence.ts, core/client/direct-call.ts): signed
 * registration, replacement, routing with cross-wiring, offline, the end of a registration
 * with its connection, every limit refusing and counting, and the clients dropping what a
 * tampering relay or a replay would hand them.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { IncomingCall, placeCall, type RingingCall } from '../../core/client/direct-call.js';
import { PresenceClient } from '../../core/client/presence.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { signCallSignal, signRegistration } from '../../core/crypto/call-signal.js';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import type { RelayLimits } from '../../core/relay/limits.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import type { KnownSignal } from '../../core/transport/signal-stream.js';
import type { NatProfile } from '../../core/nat/strategy-types.js';
import type { AnswerMessage, OfferMessage, RingingMessage } from '../../core/wire/signal.js';
import { waitFor } from '../helpers/wait.js';

const relays: Relay[] = [];
const sessions: RelaySession[] = [];
after(async () => {
  await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
  await Promise.all(relays.map((r) => r.stop()));
});

async function startRelay(limits: Partial<RelayLimits> = {}): Promise<{ relay: Relay; fingerprint: string }> {
  const tls = await deriveTlsCertificate(generateIdentity().seed);
  const relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, limits, stun: false });
  relays.push(relay);
  return { relay, fingerprint: tls.fingerprint };
}

async function connect(r: { relay: Relay; fingerprint: string }): Promise<RelaySession> {
  const session = await RelaySession.open({ relay: r.relay.address, verify: expectFingerprint(r.fingerprint, 'relay') });
  sessions.push(session);
  return session;
}

async function registered(r: { relay: Relay; fingerprint: string }, identity: Identity = generateIdentity()): Promise<PresenceClient> {
  return PresenceClient.register(await connect(r), identity);
}

/** The offers a client receives, verified. */
function offers(p: PresenceClient): OfferMessage[] {
  const got: OfferMessage[] = [];
  p.onOffer((o) => got.push(o));
  return got;
}

describe('presence on a relay', () => {
  test('register, call, ring, answer: both sides hold the same keys, and each got the other address from the relay', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    const bob = await registered(r);
    let ringing = 0;
    const bobCall: Awaited<ReturnType<IncomingCall['accept']>>[] = [];
    bob.onOffer((offer) => {
      const incoming = new IncomingCall(bob, offer);
      void incoming.ring().then(() => incoming.accept()).then((call) => bobCall.push(call));
    });
    const call = await placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, onRinging: () => ringing++ });
    await waitFor(() => bobCall.length === 1, 5000);
    assert.equal(ringing, 1);
    assert.equal(call.peer, bob.fingerprint);
    assert.equal(bobCall[0].peer, alice.fingerprint);
    assert.deepEqual(call.keys, bobCall[0].keys);
    // Cross-wiring: each side got the other's address as the relay saw it (a hint).
    assert.equal(call.relayCandidate?.type, 'srflx');
    assert.equal(call.relayCandidate?.address, '127.0.0.1');
    assert.equal(call.relayCandidate?.port, bob.session.localAddress.port);
    assert.equal(bobCall[0].relayCandidate?.port, alice.session.localAddress.port);
    // Hang-up reaches the other side.
    await call.hangup();
    assert.equal(await bobCall[0].peerEnded, 'peer-hangup');
    const m = r.relay.metrics;
    assert.equal(m.presence.registrationsOpen, 2);
    assert.ok(m.presence.callSignalsRouted >= 4, `${m.presence.callSignalsRouted} routed`);
    assert.equal(m.presence.callsOpen, 0);
  });

  test('--relay-only: no candidates, and the relay adds no address', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    const bob = await registered(r);
    const got: OfferMessage[] = [];
    bob.onOffer((offer) => {
      got.push(offer);
      void new IncomingCall(bob, offer).accept({ relayOnly: true });
    });
    const call = await placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, relayOnly: true, candidates: [{ type: 'host', address: '192.168.1.9', port: 1, priority: 1 }] });
    assert.equal(got[0].relayOnly, true);
    assert.deepEqual(got[0].candidates, []);
    assert.equal(got[0].relayCandidate, undefined);
    assert.equal(call.peerRelayOnly, true);
    assert.equal(call.relayCandidate, undefined);
    await call.hangup();
  });

  test('offline, declined, busy and no answer are told apart', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    await assert.rejects(placeCall(alice, { to: generateIdentity().fingerprint, ringTimeoutMs: 2000 }), { name: 'CalleeOfflineError' });
    const bob = await registered(r);
    bob.onOffer((offer) => void new IncomingCall(bob, offer).reject('declined'));
    await assert.rejects(placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 2000 }), { name: 'CallDeclinedError' });
    bob.onOffer((offer) => void new IncomingCall(bob, offer).reject('busy'));
    await assert.rejects(placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 2000 }), { name: 'CalleeBusyError' });
    // Bob rings but never answers: the caller gives up and hangs up, and Bob hears of it.
    const cancelled: Promise<string>[] = [];
    bob.onOffer((offer) => {
      const incoming = new IncomingCall(bob, offer);
      cancelled.push(incoming.cancelled);
      void incoming.ring();
    });
    const t0 = performance.now();
    await assert.rejects(placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 700 }), { name: 'NoAnswerError' });
    assert.ok(performance.now() - t0 >= 650);
    assert.equal(await cancelled[0], 'peer-hangup');
    await waitFor(() => r.relay.metrics.presence.callsOpen === 0, 2000);
  });

  test("a forged registration of someone else's fingerprint is refused and counted; so is a registration replayed on another connection", async () => {
    const r = await startRelay();
    const victim = generateIdentity();
    const mallory = generateIdentity();
    const session = await connect(r);
    const challenge = await session.ask({ type: 'register-challenge' });
    assert.equal(challenge.type, 'challenge');
    const nonce = (challenge as Extract<KnownSignal, { type: 'challenge' }>).nonce;
    // Mallory signs with her key but claims the victim's fingerprint and key.
    const forged = { ...signRegistration(mallory, r.fingerprint, nonce), fingerprint: victim.fingerprint, identityKey: Buffer.from(victim.publicKey).toString('base64') };
    await assert.rejects(session.ask(forged), /registration refused: the signature does not verify/);
    // A genuine registration of the victim, seen on the wire, replayed on another connection.
    const genuine = signRegistration(victim, r.fingerprint, nonce);
    const other = await connect(r);
    await other.ask({ type: 'register-challenge' });
    await assert.rejects(other.ask(genuine), /nonce is not the one this connection was given/);
    // Without asking for a challenge at all.
    const third = await connect(r);
    await assert.rejects(third.ask(genuine), /ask for a challenge first/);
    assert.equal(r.relay.metrics.refused['registration-invalid'], 3);
    assert.equal(r.relay.metrics.presence.registrationsOpen, 0);
    // Nobody took the victim's calls.
    const caller = await registered(r);
    await assert.rejects(placeCall(caller, { to: victim.fingerprint, ringTimeoutMs: 1000 }), { name: 'CalleeOfflineError' });
  });

  test('a newer registration of the same identity replaces the older, which is told; a closed connection ends its registration', async () => {
    const r = await startRelay();
    const bob = generateIdentity();
    const first = await registered(r, bob);
    const firstOffers = offers(first);
    const second = await registered(r, bob);
    const secondOffers = offers(second);
    await first.replaced;
    assert.equal(r.relay.metrics.presence.registrationsReplaced, 1);
    assert.equal(r.relay.metrics.presence.registrationsOpen, 1);
    const alice = await registered(r);
    await assert.rejects(placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 500 }), { name: 'NoAnswerError' });
    assert.equal(firstOffers.length, 0);
    assert.equal(secondOffers.length, 1);
    await second.session.close();
    await waitFor(() => r.relay.metrics.presence.registrationsOpen === 1, 3000);
    await assert.rejects(placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 500 }), { name: 'CalleeOfflineError' });
  });

  test('a caller that proves its identity without taking its calls leaves a listener of the same identity in place', async () => {
    const r = await startRelay();
    const ana = generateIdentity();
    const listening = await registered(r, ana);
    const anaOffers = offers(listening);
    const bob = await registered(r);
    bob.onOffer((o) => void new IncomingCall(bob, o).accept());
    // Ana calls Bob from another session of her identity, as `wzp call --to` does.
    const calling = await PresenceClient.register(await connect(r), ana, { receiveCalls: false });
    const call = await placeCall(calling, { to: bob.fingerprint, ringTimeoutMs: 3000 });
    assert.equal(call.peer, bob.fingerprint);
    assert.equal(r.relay.metrics.presence.registrationsReplaced, 0);
    // Ana's listener still takes her calls.
    const carol = await registered(r);
    await assert.rejects(placeCall(carol, { to: ana.fingerprint, ringTimeoutMs: 500 }), { name: 'NoAnswerError' });
    assert.equal(anaOffers.length, 1);
    await call.hangup();
  });

  test('a callee whose connection closes while ringing: the caller hears from the relay at once', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    const bob = await registered(r);
    bob.onOffer(() => void bob.session.close());
    const t0 = performance.now();
    await assert.rejects(placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 10_000 }), { name: 'CalleeOfflineError' });
    assert.ok(performance.now() - t0 < 9000);
  });

  test('NAT profiles: each side gets the other\'s, signed and verified; an older peer sends none (no consent); a profile altered on the way is ignored, the call goes on', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    const bob = await registered(r);
    const aliceNat: NatProfile = {
      mapping: 'address-and-port-dependent',
      filtering: 'unknown',
      allocation: { kind: 'sequential', delta: 1, recentPorts: [40001, 40002, 40003], observedAgoMs: 30 },
      reflexive: [{ address: '198.51.100.2', port: 40003 }],
      consent: true,
    };
    const bobNat: NatProfile = { mapping: 'endpoint-independent', filtering: 'unknown', allocation: { kind: 'port-preserving', recentPorts: [5000] }, reflexive: [{ address: '192.0.2.2', port: 5000 }], consent: false };
    const bobCalls: Awaited<ReturnType<IncomingCall['accept']>>[] = [];
    let bobAnswers: (incoming: IncomingCall) => Promise<Awaited<ReturnType<IncomingCall['accept']>>> = (incoming) => incoming.accept({ nat: bobNat });
    bob.onOffer((offer) => void bobAnswers(new IncomingCall(bob, offer)).then((c) => bobCalls.push(c)));

    const call = await placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, nat: aliceNat });
    await waitFor(() => bobCalls.length === 1, 5000);
    assert.deepEqual(call.localNat, aliceNat);
    assert.deepEqual(call.peerNat, bobNat);
    assert.deepEqual(call.peerNatStatus, { status: 'verified' });
    assert.deepEqual(bobCalls[0].localNat, bobNat);
    assert.deepEqual(bobCalls[0].peerNat, aliceNat);
    await call.hangup();

    // An older callee: its answer has no profile. The call works; no consent from it.
    bobAnswers = (incoming) => incoming.accept();
    const call2 = await placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, nat: aliceNat });
    await waitFor(() => bobCalls.length === 2, 5000);
    assert.equal(call2.peerNat, undefined);
    assert.deepEqual(call2.peerNatStatus, { status: 'absent' });
    assert.equal(bobCalls[1].localNat, undefined);
    await call2.hangup();

    // --relay-only sends no profile even when given one.
    bobAnswers = (incoming) => incoming.accept({ relayOnly: true, nat: bobNat });
    const call3 = await placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, relayOnly: true, nat: aliceNat });
    await waitFor(() => bobCalls.length === 3, 5000);
    assert.equal(call3.localNat, undefined);
    assert.deepEqual(call3.peerNatStatus, { status: 'absent' });
    assert.deepEqual(bobCalls[2].peerNatStatus, { status: 'absent' });
    await call3.hangup();

    // A relay that turns the callee's "no" into a "yes": the answer still counts, the profile does not.
    const got = offers(bob);
    const calling = placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, nat: aliceNat });
    await waitFor(() => got.length === 1, 3000);
    const answer = signCallSignal(bob.identity, {
      type: 'answer',
      callId: got[0].callId,
      to: alice.fingerprint,
      role: 'callee',
      seq: 100,
      ts: Date.now(),
      ephemeralKey: Buffer.alloc(32, 5).toString('base64'),
      candidates: [],
      nat: bobNat,
    }) as AnswerMessage;
    alice.receive({ ...answer, nat: { ...bobNat, consent: true } } as KnownSignal);
    const altered = await calling;
    assert.equal(altered.peerNat, undefined);
    assert.equal(altered.peerNatStatus.status, 'ignored');
    assert.match(altered.peerNatStatus.status === 'ignored' ? altered.peerNatStatus.problem : '', /does not verify/);
    altered.close();
  });

  test('a callee rings with its ephemeral key (signed): the caller has the call\'s keys before the answer, the same as the answer\'s; an altered or stripped ringing key gives none; an answer with another key fails the call', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    const bob = await registered(r);
    const bobCalls: Awaited<ReturnType<IncomingCall['accept']>>[] = [];
    let answerLater: (() => void) | undefined;
    bob.onOffer((offer) => {
      const incoming = new IncomingCall(bob, offer);
      void incoming.ring().then(() => {
        answerLater = () => void incoming.accept().then((c) => bobCalls.push(c));
      });
    });
    const early: RingingCall[] = [];
    const calling = placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, onRingingKeys: (rc) => early.push(rc) });
    await waitFor(() => early.length === 1 && answerLater !== undefined, 5000);
    // Known while it rings: nobody has answered yet.
    assert.equal(bobCalls.length, 0);
    assert.equal(early[0].peer, bob.fingerprint);
    answerLater!();
    const call = await calling;
    await waitFor(() => bobCalls.length === 1, 5000);
    assert.equal(early[0].callId, call.callId);
    assert.deepEqual(early[0].keys, call.keys, 'the ringing key is the answer\'s: the same room and keys');
    assert.deepEqual(bobCalls[0].keys, call.keys);
    await call.hangup();

    // Signals a relay could alter: the ringing key changed, or its signature stripped (an older
    // relay drops both fields: no early keys then, the ringing itself still counts).
    const got = offers(bob);
    const rang: number[] = [];
    const early2: RingingCall[] = [];
    const calling2 = placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 5000, onRinging: () => rang.push(1), onRingingKeys: (rc) => early2.push(rc) });
    await waitFor(() => got.length === 1, 3000);
    const base = { callId: got[0].callId, to: alice.fingerprint, role: 'callee' as const, ts: Date.now() };
    const bobKey = Buffer.alloc(32, 7).toString('base64');
    const ringing = signCallSignal(bob.identity, { ...base, type: 'ringing', seq: 10, ephemeralKey: bobKey }) as RingingMessage;
    assert.ok(ringing.keySignature !== undefined, 'a keyed ringing is signed twice');
    alice.receive({ ...ringing, ephemeralKey: Buffer.alloc(32, 8).toString('base64') } as KnownSignal);
    const stripped = signCallSignal(bob.identity, { ...base, type: 'ringing', seq: 11, ephemeralKey: bobKey }) as RingingMessage;
    alice.receive({ ...stripped, keySignature: undefined } as KnownSignal);
    // A key signature moved onto another ringing (another seq): it is bound to its own signal.
    const plain = signCallSignal(bob.identity, { ...base, type: 'ringing', seq: 12 }) as RingingMessage;
    alice.receive({ ...plain, ephemeralKey: bobKey, keySignature: ringing.keySignature } as KnownSignal);
    await waitFor(() => rang.length === 3, 2000);
    assert.equal(early2.length, 0, 'no early keys from an altered, stripped or moved ringing key');
    assert.equal(alice.dropped['bad-signature'], 0, 'the ringings themselves verify');
    // A genuine keyed ringing, then an answer (also genuinely Bob's) with another key: the
    // callee broke the protocol; the call fails rather than run in a room nobody joins.
    alice.receive(signCallSignal(bob.identity, { ...base, type: 'ringing', seq: 13, ephemeralKey: bobKey }) as KnownSignal);
    await waitFor(() => early2.length === 1, 2000);
    alice.receive(signCallSignal(bob.identity, { ...base, type: 'answer', seq: 14, ephemeralKey: Buffer.alloc(32, 9).toString('base64'), candidates: [] }) as KnownSignal);
    await assert.rejects(calling2, { name: 'ProtocolError', message: /another ephemeral key than it rang with/ });
  });

  test('the clients drop what a tampering relay or a replay would give them', async () => {
    const r = await startRelay();
    const alice = await registered(r);
    const bob = await registered(r);
    const got = offers(bob);
    const calling = placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 3000 });
    await waitFor(() => got.length === 1, 3000);
    const offer = got[0];
    // The same offer again (a relay replaying it): dropped.
    bob.receive(offer);
    assert.equal(bob.dropped.replayed, 1);
    assert.equal(got.length, 1);
    // An answer altered on the way (another ephemeral key, candidates added): dropped by the caller.
    const answer = signCallSignal(bob.identity, {
      type: 'answer',
      callId: offer.callId,
      to: alice.fingerprint,
      role: 'callee',
      seq: 1,
      ts: Date.now(),
      ephemeralKey: Buffer.alloc(32, 5).toString('base64'),
      candidates: [],
    });
    alice.receive({ ...answer, candidates: [{ type: 'host', address: '198.51.100.66', port: 9, priority: 1 }] } as KnownSignal);
    alice.receive({ ...answer, ephemeralKey: Buffer.alloc(32, 6).toString('base64') } as KnownSignal);
    // An answer with the callee's fingerprint but another's key (a relay impersonating Bob).
    alice.receive(signCallSignal(generateIdentity(), { ...answer, to: alice.fingerprint } as never) as KnownSignal);
    assert.equal(alice.dropped['bad-signature'], 2);
    await assert.rejects(calling, { name: 'NoAnswerError' });
    // The impersonation was signed by someone who is not a party of the call Alice offered.
    assert.equal(alice.dropped['mis-bound'], 1);
  });
});

describe('presence limits', () => {
  test('registrations per source address and in all are refused and counted', async () => {
    const r = await startRelay({ registrationsPerSource: 2 });
    await registered(r);
    await registered(r);
    await assert.rejects(registered(r), { name: 'RefusedError', message: /too many identities registered from 127\.0\.0\.1 \(this relay allows 2\)/ });
    assert.equal(r.relay.metrics.refused['source-registrations'], 1);
    const all = await startRelay({ registrations: 1 });
    await registered(all);
    await assert.rejects(registered(all), { name: 'RefusedError', message: /maximum of 1 registrations/ });
    assert.equal(all.relay.metrics.refused['registrations-full'], 1);
  });

  test('offers per connection, and calls ringing one callee, are refused and counted', async () => {
    const r = await startRelay({ offerBurst: 2, offersPerMinute: 1, pendingCallsPerCallee: 1 });
    const alice = await registered(r);
    const bob = await registered(r);
    const carol = await registered(r);
    offers(bob); // rings forever
    const first = placeCall(alice, { to: bob.fingerprint, ringTimeoutMs: 3000 });
    first.catch(() => undefined);
    await waitFor(() => r.relay.metrics.presence.callsOpen === 1, 2000);
    await assert.rejects(placeCall(carol, { to: bob.fingerprint, ringTimeoutMs: 1000 }), { name: 'RefusedError', message: /calls waiting for an answer already/ });
    assert.equal(r.relay.metrics.refused['pending-calls'], 1);
    // Alice's second offer (to Carol) is in the burst; the third is over it.
    carol.onOffer((o) => void new IncomingCall(carol, o).reject('declined'));
    await assert.rejects(placeCall(alice, { to: carol.fingerprint, ringTimeoutMs: 1000 }), { name: 'CallDeclinedError' });
    await assert.rejects(placeCall(alice, { to: carol.fingerprint, ringTimeoutMs: 1000 }), { name: 'RefusedError', message: /call offers at once/ });
    assert.equal(r.relay.metrics.refused['offer-rate'], 1);
    await assert.rejects(first, { name: 'NoAnswerError' });
  });

  test('call signals from an unregistered connection, or for a call the relay does not know, are refused and counted', async () => {
    const r = await startRelay();
    const alice = generateIdentity();
    const bob = await registered(r);
    const anonymous = await connect(r);
    const hangup = signCallSignal(alice, { type: 'hangup', callId: '0'.repeat(32), to: bob.fingerprint, role: 'caller', seq: 1, ts: Date.now() });
    await assert.rejects(anonymous.ask(hangup), /register before signalling a call/);
    const registeredAlice = await registered(r, alice);
    await assert.rejects(registeredAlice.session.ask(hangup), /no such call between these parties/);
    // Claiming to be someone else than the identity this connection registered as.
    const asBob = signCallSignal(bob.identity, { type: 'hangup', callId: '0'.repeat(32), to: alice.fingerprint, role: 'caller', seq: 1, ts: Date.now() });
    await assert.rejects(registeredAlice.session.ask(asBob), /this connection is registered as/);
    assert.equal(r.relay.metrics.refused['not-registered'], 2);
    assert.equal(r.relay.metrics.refused['unknown-call'], 1);
  });
});

/**
 * Signed presence registrations, signed call signals and the call's key derivations
 * (core/crypto/call-signal.ts, core/crypto/call-keys.ts): what a receiver accepts, and that
 * every tampering, replay or stale copy is dropped with its reason.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CALL_CHECK_KEY_LABEL, deriveCallKeys, deriveCallSecret, exportCallKey, generateEphemeralKey, type CallContext } from '../../core/crypto/call-keys.js';
import { CallSignalVerifier, natProfileFrom, newCallId, registrationProblem, signCallSignal, signRegistration, type UnsignedCallSignal } from '../../core/crypto/call-signal.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import type { NatProfile } from '../../core/nat/strategy-types.js';
import { decodeSignal, encodeSignal, type AnswerMessage, type CallSignalMessage, type OfferMessage } from '../../core/wire/signal.js';

const caller = generateIdentity();
const callee = generateIdentity();
const stranger = generateIdentity();
const RELAY_FP = 'cafe:'.repeat(15) + 'cafe';
const NOW = 1_765_000_000_000;
const KEY = Buffer.alloc(32, 9).toString('base64');

function offer(over: Partial<UnsignedCallSignal> = {}, by = caller): CallSignalMessage {
  return signCallSignal(by, { type: 'offer', callId: newCallId(), to: callee.fingerprint, role: 'caller', seq: 1, ts: NOW, ephemeralKey: KEY, candidates: [], ...over } as UnsignedCallSignal);
}

function verifier(now = NOW): CallSignalVerifier {
  return new CallSignalVerifier({ self: callee.fingerprint, now: () => now });
}

/** Through the wire and back, as the receiver gets it. */
function wire<T extends CallSignalMessage>(m: T): T {
  return decodeSignal(encodeSignal(m)) as T;
}

describe('presence registration', () => {
  it('a registration signed for this relay and nonce proves the fingerprint', () => {
    const nonce = 'ab'.repeat(32);
    assert.equal(registrationProblem(signRegistration(caller, RELAY_FP, nonce), RELAY_FP, nonce), undefined);
  });
  it('is refused for another nonce (another connection), another relay, or without a challenge', () => {
    const nonce = 'ab'.repeat(32);
    const msg = signRegistration(caller, RELAY_FP, nonce);
    assert.match(registrationProblem(msg, RELAY_FP, 'cd'.repeat(32))!, /nonce/);
    assert.match(registrationProblem(msg, 'beef:'.repeat(15) + 'beef', nonce)!, /signature/);
    assert.match(registrationProblem(msg, RELAY_FP, undefined)!, /challenge/);
  });
  it("nobody registers someone else's fingerprint: with their own key, or with the victim's key and a forged signature", () => {
    const nonce = 'ab'.repeat(32);
    const mine = signRegistration(stranger, RELAY_FP, nonce);
    assert.match(registrationProblem({ ...mine, fingerprint: callee.fingerprint }, RELAY_FP, nonce)!, /hash of the identity key/);
    const forged = { ...mine, fingerprint: callee.fingerprint, identityKey: Buffer.from(callee.publicKey).toString('base64') };
    assert.match(registrationProblem(forged, RELAY_FP, nonce)!, /signature/);
  });
});

describe('call signal verification', () => {
  it('accepts a signed offer that came through the wire, with a relay-added candidate', () => {
    const m = wire({ ...offer(), relayCandidate: { type: 'srflx', address: '203.0.113.5', port: 4433, priority: 0 } } as CallSignalMessage);
    assert.deepEqual(verifier().check(m), { ok: true });
  });

  it('drops every tampered signed field: bad-signature or mis-bound', () => {
    const base = wire(offer({ candidates: [{ type: 'host', address: '192.168.1.2', port: 5000, priority: 100 }], relayOnly: true }));
    const tampered: [string, Partial<Record<string, unknown>>, string][] = [
      ['call id', { callId: newCallId() }, 'bad-signature'],
      ['seq', { seq: 2 }, 'bad-signature'],
      ['ts', { ts: NOW + 1 }, 'bad-signature'],
      ['ephemeral key (a relay swapping in its own)', { ephemeralKey: Buffer.alloc(32, 7).toString('base64') }, 'bad-signature'],
      ['a candidate address', { candidates: [{ type: 'host', address: '192.168.1.3', port: 5000, priority: 100 }] }, 'bad-signature'],
      ['a candidate removed', { candidates: [] }, 'bad-signature'],
      ['relayOnly dropped', { relayOnly: undefined }, 'bad-signature'],
      ['the sender (fingerprint of another key)', { from: stranger.fingerprint }, 'mis-bound'],
      ['the sender and its key (a relay impersonating someone)', { from: stranger.fingerprint, identityKey: Buffer.from(stranger.publicKey).toString('base64') }, 'bad-signature'],
      ['the recipient', { to: stranger.fingerprint }, 'mis-bound'],
      ['the role', { role: 'callee' }, 'mis-bound'],
      ['the type (an offer turned into an answer)', { type: 'answer' }, 'mis-bound'],
      ['the type and role (an offer turned into an answer from the callee)', { type: 'answer', role: 'callee' }, 'bad-signature'],
    ];
    for (const [what, change, reason] of tampered) {
      const v = verifier();
      const m = wire({ ...base, ...change } as CallSignalMessage);
      const r = v.check(m);
      assert.equal(r.ok, false, what);
      if (!r.ok) assert.equal(r.reason, reason, what);
      assert.equal(v.dropped[reason as 'mis-bound'], 1, what);
    }
  });

  it('a recipient swapped for the signer (to: callee re-signed by a stranger) verifies only as the stranger', () => {
    // A relay cannot re-sign as the caller; a stranger can sign only as itself.
    const m = wire(offer({}, stranger));
    assert.deepEqual(verifier().check(m), { ok: true });
    assert.equal(m.from, stranger.fingerprint);
  });

  it('drops a replayed offer, and any signal not newer than the last from its sender', () => {
    const v = verifier();
    const first = wire(offer());
    assert.deepEqual(v.check(first), { ok: true });
    assert.deepEqual(v.check(first), { ok: false, reason: 'replayed', detail: 'an offer for a call already seen' });
    const hangup = (seq: number) => wire(signCallSignal(caller, { type: 'hangup', callId: first.callId, to: callee.fingerprint, role: 'caller', seq, ts: NOW }));
    assert.deepEqual(v.check(hangup(5)), { ok: true });
    const again = v.check(hangup(5));
    assert.equal(again.ok ? 'ok' : again.reason, 'replayed');
    const older = v.check(hangup(3));
    assert.equal(older.ok ? 'ok' : older.reason, 'replayed');
    assert.equal(v.dropped.replayed, 3);
  });

  it('drops signals whose call has other parties than its offer said', () => {
    const v = verifier();
    const first = wire(offer());
    assert.ok(v.check(first).ok);
    // The stranger signs a hangup for the caller's call: it is not a party.
    const m = wire(signCallSignal(stranger, { type: 'hangup', callId: first.callId, to: callee.fingerprint, role: 'caller', seq: 9, ts: NOW }));
    const r = v.check(m);
    assert.equal(r.ok ? 'ok' : r.reason, 'mis-bound');
  });

  it('drops stale signals, old or from the future', () => {
    for (const skew of [-61_000, 61_000]) {
      const v = verifier(NOW + skew);
      const r = v.check(wire(offer()));
      assert.equal(r.ok ? 'ok' : r.reason, 'stale', `${skew}`);
    }
    assert.ok(verifier(NOW + 59_000).check(wire(offer())).ok);
  });

  it('drops an unsigned signal (empty or zeroed signature)', () => {
    const m = wire(offer());
    const v = verifier();
    const r = v.check({ ...m, signature: Buffer.alloc(64).toString('base64') });
    assert.equal(r.ok ? 'ok' : r.reason, 'bad-signature');
  });

  it('remembers a bounded number of calls, and refuses new ones rather than forget fresh ones', () => {
    let now = NOW;
    const v = new CallSignalVerifier({ self: callee.fingerprint, maxCalls: 3, now: () => now });
    for (let i = 0; i < 3; i++) assert.ok(v.check(wire(offer({ ts: now }))).ok);
    const r = v.check(wire(offer({ ts: now })));
    assert.equal(r.ok ? 'ok' : r.reason, 'overloaded');
    assert.equal(v.trackedCalls, 3);
    now += 121_000; // the oldest can no longer be replayed fresh: forgotten for the new one
    assert.ok(v.check(wire(offer({ ts: now }))).ok);
    assert.equal(v.trackedCalls, 3);
  });
});

describe('the NAT profile in an offer or answer: signed on its own', () => {
  const nat: NatProfile = {
    mapping: 'address-and-port-dependent',
    filtering: 'unknown',
    allocation: { kind: 'sequential', delta: 1, recentPorts: [40001, 40002, 40003], observedAgoMs: 20 },
    reflexive: [{ address: '198.51.100.2', port: 40003 }],
    consent: true,
  };
  const signedOffer = (over: Partial<UnsignedCallSignal> = {}) => wire(offer({ nat, ...over } as Partial<UnsignedCallSignal>) as OfferMessage);

  it('a signed profile round-trips through the wire and verifies, beside a verifying offer; and in an answer', () => {
    const m = signedOffer();
    assert.match(m.natSignature ?? '', /^[A-Za-z0-9+/]{86}==$/);
    assert.deepEqual(verifier().check(m), { ok: true });
    assert.deepEqual(natProfileFrom(m), { status: 'verified', profile: nat });
    const answer = wire(signCallSignal(callee, { type: 'answer', callId: m.callId, to: caller.fingerprint, role: 'callee', seq: 1, ts: NOW, ephemeralKey: KEY, candidates: [], nat: { ...nat, consent: false } }) as AnswerMessage);
    assert.deepEqual(natProfileFrom(answer), { status: 'verified', profile: { ...nat, consent: false } });
  });

  it('every change to a signed profile is caught: the profile is ignored, the call goes on', () => {
    const m = signedOffer();
    const changes: [string, NatProfile][] = [
      ['consent given where it was withheld (or the reverse)', { ...nat, consent: false }],
      ['another mapping', { ...nat, mapping: 'endpoint-independent' }],
      ['another delta', { ...nat, allocation: { ...nat.allocation, delta: 2 } }],
      ['a recent port moved', { ...nat, allocation: { ...nat.allocation, recentPorts: [40001, 40002, 40004] } }],
      ['an age changed', { ...nat, allocation: { ...nat.allocation, observedAgoMs: 21 } }],
      ['a reflexive address swapped', { ...nat, reflexive: [{ address: '203.0.113.66', port: 40003 }] }],
    ];
    for (const [what, changed] of changes) {
      const tampered = wire({ ...m, nat: changed });
      // The main signature does not cover the profile: the offer itself still verifies ...
      assert.deepEqual(verifier().check(tampered), { ok: true }, what);
      // ... and the profile does not.
      const r = natProfileFrom(tampered);
      assert.equal(r.status, 'ignored', what);
      assert.match(r.status === 'ignored' ? r.problem : '', /does not verify/, what);
    }
  });

  it('a profile moved to another signal of the same sender (another call, seq, ts or type) does not verify', () => {
    const m = signedOffer();
    const same = { callId: m.callId, seq: m.seq, ts: m.ts };
    const others: [string, OfferMessage | AnswerMessage][] = [
      ['another call', signedOffer({ ...same, callId: newCallId() })],
      ['another seq', signedOffer({ ...same, seq: 2 })],
      ['another ts', signedOffer({ ...same, ts: NOW + 1 })],
      ['an answer in the same call', wire(signCallSignal(caller, { type: 'answer', ...same, to: callee.fingerprint, role: 'callee', ephemeralKey: KEY, candidates: [], nat }) as AnswerMessage)],
    ];
    for (const [what, other] of others) {
      assert.equal(natProfileFrom(other).status, 'verified', `${what}: its own signature verifies`);
      assert.equal(natProfileFrom({ ...other, natSignature: m.natSignature }).status, 'ignored', what);
    }
    // The signature names the signal, not the rest of its body: on the signal it was made for it verifies.
    assert.equal(natProfileFrom({ ...signedOffer({ ...same, candidates: [{ type: 'host', address: '10.0.0.1', port: 1, priority: 1 }] }), natSignature: m.natSignature }).status, 'verified');
  });

  it('stripped on the way: both fields gone is absent (as from an older peer), one of the two is ignored', () => {
    const m = signedOffer();
    const { nat: _n, natSignature: _s, ...bare } = m;
    assert.deepEqual(natProfileFrom(wire(bare as OfferMessage)), { status: 'absent' });
    const noProfile = natProfileFrom(wire({ ...m, nat: undefined }));
    assert.equal(noProfile.status, 'ignored');
    assert.match(noProfile.status === 'ignored' ? noProfile.problem : '', /signature without a profile/);
    const unsigned = natProfileFrom(wire({ ...m, natSignature: undefined }));
    assert.equal(unsigned.status, 'ignored');
    assert.match(unsigned.status === 'ignored' ? unsigned.problem : '', /without its signature/);
  });

  it('an older peer (no profile) verifies as before: absent, no consent', () => {
    const m = wire(offer() as OfferMessage);
    assert.equal(m.nat, undefined);
    assert.equal(m.natSignature, undefined);
    assert.deepEqual(verifier().check(m), { ok: true });
    assert.deepEqual(natProfileFrom(m), { status: 'absent' });
  });

  it('an older receiver or relay, which drops both fields, still verifies an offer that carried a profile', () => {
    const m = signedOffer();
    // What a decoder without the two fields in its schema hands on: the same message without them.
    const { nat: _n, natSignature: _s, ...asOldSeesIt } = m;
    assert.deepEqual(verifier().check(wire(asOldSeesIt as OfferMessage)), { ok: true });
  });

  it('a profile signed by someone else (a relay re-signing) does not verify against the sender', () => {
    const m = signedOffer();
    const byStranger = wire(offer({ nat: { ...nat, consent: false }, callId: m.callId } as Partial<UnsignedCallSignal>, stranger) as OfferMessage);
    const r = natProfileFrom({ ...m, nat: byStranger.nat, natSignature: byStranger.natSignature });
    assert.equal(r.status, 'ignored');
  });

  it('an invalid profile handed over in memory (not decoded) is ignored with its problem, not trusted', () => {
    const m = signedOffer();
    const r = natProfileFrom({ ...m, nat: { ...nat, allocation: { ...nat.allocation, recentPorts: [0] } } });
    assert.equal(r.status, 'ignored');
    assert.match(r.status === 'ignored' ? r.problem : '', /recentPorts/);
  });
});

describe('call keys', () => {
  function pair() {
    const a = generateEphemeralKey();
    const b = generateEphemeralKey();
    const context: CallContext = { callId: newCallId(), callerFingerprint: caller.fingerprint, calleeFingerprint: callee.fingerprint, callerEphemeralKey: a.publicKey, calleeEphemeralKey: b.publicKey };
    return { a, b, context };
  }

  it('both sides derive the same keys from their own private key and the other public one', () => {
    const { a, b, context } = pair();
    const ka = deriveCallKeys(deriveCallSecret(a.privateKey, b.publicKey, context));
    const kb = deriveCallKeys(deriveCallSecret(b.privateKey, a.publicKey, context));
    assert.deepEqual(ka, kb);
    assert.match(ka.roomName, /^[0-9a-f]{32}$/);
    assert.match(ka.roomSecret, /^[0-9a-f]{64}$/);
  });

  it('each derivation has its own label: no two keys are equal, and exportCallKey is the same derivation', () => {
    const { a, b, context } = pair();
    const secret = deriveCallSecret(a.privateKey, b.publicKey, context);
    const k = deriveCallKeys(secret);
    const hexes = [k.callSecret, k.checkKey, k.directPathKey, k.firstSenderKeys.caller, k.firstSenderKeys.callee].map((b) => Buffer.from(b).toString('hex'));
    hexes.push(k.roomName, k.roomSecret);
    assert.equal(new Set(hexes).size, hexes.length);
    assert.deepEqual(exportCallKey(secret, CALL_CHECK_KEY_LABEL), k.checkKey);
  });

  it('the secret is bound to the call: another call id or swapped identities give another secret', () => {
    const { a, b, context } = pair();
    const s = deriveCallSecret(a.privateKey, b.publicKey, context);
    assert.notDeepEqual(deriveCallSecret(a.privateKey, b.publicKey, { ...context, callId: newCallId() }), s);
    assert.notDeepEqual(deriveCallSecret(a.privateKey, b.publicKey, { ...context, callerFingerprint: context.calleeFingerprint, calleeFingerprint: context.callerFingerprint }), s);
  });

  it('a relay that swaps in its own ephemeral keys ends up with other secrets on each side (and the swap fails the signatures anyway)', () => {
    const { a, b, context } = pair();
    const relay = generateEphemeralKey();
    // Each side computes with what it received: the relay's key instead of the peer's.
    const callerSide = deriveCallSecret(a.privateKey, relay.publicKey, { ...context, calleeEphemeralKey: relay.publicKey });
    const calleeSide = deriveCallSecret(b.privateKey, relay.publicKey, { ...context, callerEphemeralKey: relay.publicKey });
    assert.notDeepEqual(callerSide, calleeSide);
  });

  it('refuses a low-order peer key (KeyExchangeError bad-key)', () => {
    const { a, context } = pair();
    assert.throws(() => deriveCallSecret(a.privateKey, new Uint8Array(32), context), { name: 'KeyExchangeError' });
    assert.throws(() => deriveCallSecret(a.privateKey, new Uint8Array(31), context), { name: 'KeyExchangeError' });
  });
});

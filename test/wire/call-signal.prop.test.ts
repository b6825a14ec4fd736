/** Properties of the presence and call-signal codecs (core/wire/signal.ts, core/wire/candidate.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import { MAX_SEQUENTIAL_DELTA } from '../../core/nat/port-allocation.js';
import type { NatProfile } from '../../core/nat/strategy-types.js';
import { CANDIDATE_TYPES, MAX_CANDIDATES, type Candidate } from '../../core/wire/candidate.js';
import { MAX_NAT_OBSERVED_AGO_MS, MAX_NAT_RECENT_PORTS, MAX_NAT_REFLEXIVE, NAT_DEPENDENCES, PORT_ALLOCATION_KINDS, natProfileProblem } from '../../core/wire/nat-profile.js';
import { decodeSignal, encodeSignal, type CallSignalMessage, type KnownSignalMessage } from '../../core/wire/signal.js';
import { decodeOrReject } from './helpers.js';

const hexArb = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('hex'));
const b64Arb = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('base64'));
const fingerprintArb = hexArb(32).map((h) => h.match(/.{4}/g)!.join(':'));
const candidateArb: fc.Arbitrary<Candidate> = fc.record(
  {
    type: fc.constantFrom(...CANDIDATE_TYPES),
    address: fc.oneof(fc.ipV4(), fc.ipV6()),
    port: fc.integer({ min: 1, max: 65535 }),
    priority: fc.integer({ min: 0, max: 0xffff_ffff }),
  },
  { noNullPrototype: true },
);
const candidatesArb = fc.array(candidateArb, { maxLength: MAX_CANDIDATES });
const portArb = fc.integer({ min: 1, max: 65535 });
const natProfileArb: fc.Arbitrary<NatProfile> = fc
  .record(
    {
      mapping: fc.constantFrom(...NAT_DEPENDENCES),
      filtering: fc.constantFrom(...NAT_DEPENDENCES),
      kind: fc.constantFrom(...PORT_ALLOCATION_KINDS),
      delta: fc.integer({ min: 1, max: MAX_SEQUENTIAL_DELTA }).chain((d) => fc.constantFrom(d, -d)),
      recentPorts: fc.array(portArb, { maxLength: MAX_NAT_RECENT_PORTS }),
      observedAgoMs: fc.option(fc.integer({ min: 0, max: MAX_NAT_OBSERVED_AGO_MS }), { nil: undefined }),
      reflexive: fc.array(fc.record({ address: fc.oneof(fc.ipV4(), fc.ipV6()), port: portArb }, { noNullPrototype: true }), { maxLength: MAX_NAT_REFLEXIVE }),
      consent: fc.boolean(),
    },
    { noNullPrototype: true },
  )
  .map(({ mapping, filtering, kind, delta, recentPorts, observedAgoMs, reflexive, consent }) => ({
    mapping,
    filtering,
    allocation: { kind, ...(kind === 'sequential' ? { delta } : {}), recentPorts, ...(observedAgoMs === undefined ? {} : { observedAgoMs }) },
    reflexive,
    consent,
  }));
const commonArb = fc.record(
  {
    callId: hexArb(16),
    from: fingerprintArb,
    to: fingerprintArb,
    role: fc.constantFrom('caller' as const, 'callee' as const),
    seq: fc.integer({ min: 0, max: 0xffff_ffff }),
    ts: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    identityKey: b64Arb(32),
    signature: b64Arb(64),
  },
  { noNullPrototype: true },
);
const keyed = (type: 'offer' | 'answer') =>
  fc
    .tuple(
      commonArb,
      b64Arb(32),
      candidatesArb,
      fc.option(fc.constant(true as const), { nil: undefined }),
      fc.option(candidateArb, { nil: undefined }),
      fc.option(natProfileArb, { nil: undefined }),
      fc.option(b64Arb(64), { nil: undefined }),
    )
    .map(([c, ephemeralKey, candidates, relayOnly, relayCandidate, nat, natSignature]) => ({
      type,
      ...c,
      ephemeralKey,
      candidates,
      ...(relayOnly ? { relayOnly } : {}),
      ...(relayCandidate ? { relayCandidate } : {}),
      ...(nat ? { nat } : {}),
      ...(natSignature ? { natSignature } : {}),
    }));
const callSignalArb: fc.Arbitrary<CallSignalMessage> = fc.oneof(
  keyed('offer'),
  keyed('answer'),
  commonArb.map((c) => ({ type: 'ringing' as const, ...c })),
  commonArb.map((c) => ({ type: 'hangup' as const, ...c })),
  fc.tuple(commonArb, fc.constantFrom('declined' as const, 'busy' as const)).map(([c, reason]) => ({ type: 'reject' as const, ...c, reason })),
  fc.tuple(commonArb, candidatesArb).map(([c, candidates]) => ({ type: 'candidate-update' as const, ...c, candidates })),
);
const presenceArb: fc.Arbitrary<KnownSignalMessage> = fc.oneof(
  fc.constant({ type: 'register-challenge' as const }),
  hexArb(32).map((nonce) => ({ type: 'challenge' as const, nonce })),
  fc.tuple(fingerprintArb, b64Arb(32), hexArb(32), b64Arb(64)).map(([fingerprint, identityKey, nonce, signature]) => ({ type: 'register' as const, fingerprint, identityKey, nonce, signature })),
  fingerprintArb.map((fingerprint) => ({ type: 'presence-replaced' as const, fingerprint })),
  fc.tuple(hexArb(16), fingerprintArb).map(([callId, to]) => ({ type: 'offline' as const, callId, to })),
);

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

describe('call signal properties', () => {
  it('every call and presence signal round-trips, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(fc.oneof(callSignalArb, presenceArb), (message) => {
        const bytes = encodeSignal(message);
        const decoded = decodeSignal(bytes);
        assert.deepStrictEqual(decoded, message);
        assert.deepStrictEqual(encodeSignal(decoded as KnownSignalMessage), bytes);
      }),
    );
  });

  it('a signal with one field replaced by any JSON value decodes or is a DecodeError, and what decodes re-encodes', () => {
    fc.assert(
      fc.property(callSignalArb, fc.jsonValue(), fc.nat(), (message, value, pick) => {
        const fields = Object.keys(message).filter((k) => k !== 'type');
        const name = fields[pick % fields.length];
        const mutated = { ...message, [name]: value };
        const decoded = decodeOrReject(() => decodeSignal(frame(new TextEncoder().encode(JSON.stringify(mutated)))));
        if (decoded !== undefined && decoded.type !== 'unknown') {
          assert.deepStrictEqual(decodeSignal(encodeSignal(decoded)), decoded);
        }
      }),
    );
  });

  it('candidates with extra fields decode to their canonical four fields', () => {
    fc.assert(
      fc.property(callSignalArb, candidatesArb, fc.dictionary(fc.string().filter((k) => !['type', 'address', 'port', 'priority', '__proto__'].includes(k)), fc.jsonValue(), { maxKeys: 3 }), (message, candidates, extra) => {
        const json = JSON.stringify({ ...message, type: 'candidate-update', candidates: candidates.map((c) => ({ ...extra, ...c })) });
        const decoded = decodeSignal(frame(new TextEncoder().encode(json)));
        assert.equal(decoded.type, 'candidate-update');
        assert.deepStrictEqual((decoded as Extract<CallSignalMessage, { type: 'candidate-update' }>).candidates, candidates);
      }),
    );
  });

  it('an offer or answer whose NAT profile has one field replaced by any JSON value always decodes: with the profile if it is still valid, else without it', () => {
    const path = fc.constantFrom(['mapping'], ['filtering'], ['allocation'], ['allocation', 'kind'], ['allocation', 'delta'], ['allocation', 'recentPorts'], ['allocation', 'observedAgoMs'], ['reflexive'], ['consent']);
    fc.assert(
      fc.property(keyed('answer'), natProfileArb, path, fc.jsonValue(), (message, nat, [first, second], value) => {
        const mutated = structuredClone(nat) as unknown as Record<string, Record<string, unknown>>;
        if (second === undefined) (mutated as Record<string, unknown>)[first] = value;
        else mutated[first][second] = value;
        const decoded = decodeSignal(frame(new TextEncoder().encode(JSON.stringify({ ...message, nat: mutated })))) as Extract<CallSignalMessage, { type: 'answer' }>;
        assert.equal(decoded.type, 'answer');
        assert.equal(decoded.ephemeralKey, message.ephemeralKey);
        if (natProfileProblem(mutated) === undefined) assert.ok(decoded.nat !== undefined);
        else assert.equal(decoded.nat, undefined);
        assert.deepStrictEqual(decodeSignal(encodeSignal(decoded)), decoded);
      }),
    );
  });

  it('random bytes behind a length prefix only ever give a DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeSignal(frame(bytes));
        } catch (error) {
          assert.ok(error instanceof DecodeError, String(error));
        }
      }),
    );
  });
});

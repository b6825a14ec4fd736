/**
 * Golden frames for presence and call signalling (core/wire/signal.ts) and the candidate type
 * (core/wire/candidate.ts): canonical frames re-encode byte-exactly, unknown fields and types
 * are tolerated, and every bound is enforced with a typed DecodeError.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NatProfile } from '../../core/nat/strategy-types.js';
import { MAX_SEQUENTIAL_DELTA } from '../../core/nat/port-allocation.js';
import { candidateProblem, isCandidateList, MAX_CANDIDATES, type Candidate } from '../../core/wire/candidate.js';
import { MAX_NAT_OBSERVED_AGO_MS, MAX_NAT_RECENT_PORTS, MAX_NAT_REFLEXIVE, natProfileProblem } from '../../core/wire/nat-profile.js';
import { decodeSignal, encodeSignal, isCallSignal, SIGNAL_SCHEMA, type KnownSignalMessage, type SignalMessage } from '../../core/wire/signal.js';
import { assertDecodeError, atOffset, toHex } from './helpers.js';

function frame(payload: string): Uint8Array {
  const bytes = new TextEncoder().encode(payload);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

const A = 'aaaa:'.repeat(15) + 'aaaa';
const B = 'b0b0:'.repeat(15) + 'b0b0';
const ID = '00112233445566778899aabbccddeeff';
const KEY = Buffer.alloc(32, 1).toString('base64'); // AQEB...AQE=
const KEY2 = Buffer.alloc(32, 2).toString('base64');
const SIG = Buffer.alloc(64, 3).toString('base64');
const NONCE = 'ab'.repeat(32);
const COMMON = `"callId":"${ID}","from":"${A}","to":"${B}","role":"caller","seq":1,"ts":1765000000000,"identityKey":"${KEY}","signature":"${SIG}"`;
const common = { callId: ID, from: A, to: B, role: 'caller' as const, seq: 1, ts: 1765000000000, identityKey: KEY, signature: SIG };
const host: Candidate = { type: 'host', address: '192.168.1.20', port: 40000, priority: 2130706431 };
const NAT_SIG = Buffer.alloc(64, 4).toString('base64');
const NAT_JSON =
  '{"mapping":"address-and-port-dependent","filtering":"unknown","allocation":{"kind":"sequential","delta":1,"recentPorts":[39990,40001,40002],"observedAgoMs":12},"reflexive":[{"address":"198.51.100.2","port":40002},{"address":"2001:db8::7","port":5}],"consent":true}';
const nat: NatProfile = {
  mapping: 'address-and-port-dependent',
  filtering: 'unknown',
  allocation: { kind: 'sequential', delta: 1, recentPorts: [39990, 40001, 40002], observedAgoMs: 12 },
  reflexive: [
    { address: '198.51.100.2', port: 40002 },
    { address: '2001:db8::7', port: 5 },
  ],
  consent: true,
};
/** An answer carrying `natJson` as its nat (with a signature), for the tolerance cases. */
const withNat = (natJson: string) => `{"type":"answer",${COMMON.replace('"caller"', '"callee"')},"ephemeralKey":"${KEY2}","candidates":[],"nat":${natJson},"natSignature":"${NAT_SIG}"}`;
/** NAT_JSON with one part replaced. */
const natWith = (from: string, to: string) => {
  assert.ok(NAT_JSON.includes(from), from);
  return NAT_JSON.replace(from, to);
};
const v6: Candidate = { type: 'srflx', address: '2001:db8::7', port: 5, priority: 0 };

const CANONICAL: [string, KnownSignalMessage][] = [
  ['{"type":"register-challenge"}', { type: 'register-challenge' }],
  [`{"type":"challenge","nonce":"${NONCE}"}`, { type: 'challenge', nonce: NONCE }],
  [
    `{"type":"register","fingerprint":"${A}","identityKey":"${KEY}","nonce":"${NONCE}","signature":"${SIG}"}`,
    { type: 'register', fingerprint: A, identityKey: KEY, nonce: NONCE, signature: SIG },
  ],
  [`{"type":"registered","fingerprint":"${A}"}`, { type: 'registered', fingerprint: A }],
  [`{"type":"presence-replaced","fingerprint":"${A}"}`, { type: 'presence-replaced', fingerprint: A }],
  [
    `{"type":"offer",${COMMON},"ephemeralKey":"${KEY2}","candidates":[{"type":"host","address":"192.168.1.20","port":40000,"priority":2130706431},{"type":"srflx","address":"2001:db8::7","port":5,"priority":0}]}`,
    { type: 'offer', ...common, ephemeralKey: KEY2, candidates: [host, v6] },
  ],
  [
    `{"type":"offer",${COMMON},"ephemeralKey":"${KEY2}","candidates":[],"relayOnly":true}`,
    { type: 'offer', ...common, ephemeralKey: KEY2, candidates: [], relayOnly: true },
  ],
  [
    `{"type":"answer",${COMMON.replace('"caller"', '"callee"')},"ephemeralKey":"${KEY2}","candidates":[],"relayCandidate":{"type":"srflx","address":"203.0.113.9","port":4433,"priority":0}}`,
    { type: 'answer', ...common, role: 'callee', ephemeralKey: KEY2, candidates: [], relayCandidate: { type: 'srflx', address: '203.0.113.9', port: 4433, priority: 0 } },
  ],
  [
    `{"type":"offer",${COMMON},"ephemeralKey":"${KEY2}","candidates":[],"nat":${NAT_JSON},"natSignature":"${NAT_SIG}"}`,
    { type: 'offer', ...common, ephemeralKey: KEY2, candidates: [], nat, natSignature: NAT_SIG },
  ],
  [
    // The smallest profile: nothing known, nothing seen, consent withheld (--no-hard-nat).
    `{"type":"answer",${COMMON.replace('"caller"', '"callee"')},"ephemeralKey":"${KEY2}","candidates":[],"nat":{"mapping":"unknown","filtering":"unknown","allocation":{"kind":"unknown","recentPorts":[]},"reflexive":[],"consent":false},"natSignature":"${NAT_SIG}"}`,
    {
      type: 'answer',
      ...common,
      role: 'callee',
      ephemeralKey: KEY2,
      candidates: [],
      nat: { mapping: 'unknown', filtering: 'unknown', allocation: { kind: 'unknown', recentPorts: [] }, reflexive: [], consent: false },
      natSignature: NAT_SIG,
    },
  ],
  [`{"type":"ringing",${COMMON}}`, { type: 'ringing', ...common }],
  [
    // The callee's ephemeral key, sent early with its own signature.
    `{"type":"ringing",${COMMON.replace('"caller"', '"callee"')},"ephemeralKey":"${KEY2}","keySignature":"${NAT_SIG}"}`,
    { type: 'ringing', ...common, role: 'callee', ephemeralKey: KEY2, keySignature: NAT_SIG },
  ],
  [`{"type":"reject",${COMMON},"reason":"busy"}`, { type: 'reject', ...common, reason: 'busy' }],
  [`{"type":"hangup",${COMMON}}`, { type: 'hangup', ...common }],
  [`{"type":"candidate-update",${COMMON},"candidates":[{"type":"mapped","address":"198.51.100.1","port":1,"priority":7}]}`, { type: 'candidate-update', ...common, candidates: [{ type: 'mapped', address: '198.51.100.1', port: 1, priority: 7 }] }],
  [`{"type":"routed","callId":"${ID}"}`, { type: 'routed', callId: ID }],
  [`{"type":"offline","callId":"${ID}","to":"${B}"}`, { type: 'offline', callId: ID, to: B }],
  [`{"type":"call-gone","callId":"${ID}","fingerprint":"${A}"}`, { type: 'call-gone', callId: ID, fingerprint: A }],
];

const TOLERATED: [string, string, SignalMessage][] = [
  [
    'unknown fields, also inside candidates (dropped)',
    `{"type":"candidate-update",${COMMON},"candidates":[{"type":"prflx","address":"10.0.0.1","port":9,"priority":1,"foundation":"x"}],"video":true}`,
    { type: 'candidate-update', ...common, candidates: [{ type: 'prflx', address: '10.0.0.1', port: 9, priority: 1 }] },
  ],
  [
    'a ringing key that is no key32, and a key signature that is no sig64 (each left out: the ringing itself counts)',
    `{"type":"ringing",${COMMON.replace('"caller"', '"callee"')},"ephemeralKey":"AAAA","keySignature":"x"}`,
    { type: 'ringing', ...common, role: 'callee' },
  ],
  ['a call signal type from a later version', `{"type":"transfer",${COMMON},"target":"${B}"}`, { type: 'unknown', rawType: 'transfer' }],
  [
    'unknown fields inside a NAT profile and its allocation and endpoints (dropped), and null optional fields',
    withNat(natWith('"consent":true', '"consent":true,"pcp":1').replace('"observedAgoMs":12', '"observedAgoMs":12,"jitter":3').replace('"port":5}', '"port":5,"ttl":9}').replace('"delta":1', '"delta":1,"extra":null')),
    { type: 'answer', ...common, role: 'callee', ephemeralKey: KEY2, candidates: [], nat, natSignature: NAT_SIG },
  ],
  [
    'null for optional fields of a NAT profile (absent)',
    withNat(natWith('"observedAgoMs":12', '"observedAgoMs":null')),
    { type: 'answer', ...common, role: 'callee', ephemeralKey: KEY2, candidates: [], nat: { ...nat, allocation: { kind: 'sequential', delta: 1, recentPorts: [39990, 40001, 40002] } }, natSignature: NAT_SIG },
  ],
  ['a predicted candidate (for strategy plugins)', `{"type":"candidate-update",${COMMON},"candidates":[{"type":"predicted","address":"203.0.113.1","port":5001,"priority":0}]}`, {
    type: 'candidate-update',
    ...common,
    candidates: [{ type: 'predicted', address: '203.0.113.1', port: 5001, priority: 0 }],
  }],
];

const manyCandidates = JSON.stringify(Array.from({ length: MAX_CANDIDATES + 1 }, () => host));
const INVALID: [string, string][] = [
  ['a call id in capitals', `{"type":"hangup",${COMMON.replace(ID, ID.toUpperCase())}}`],
  ['a short call id', `{"type":"hangup",${COMMON.replace(ID, ID.slice(2))}}`],
  ['a fingerprint not in groups', `{"type":"hangup",${COMMON.replace(`"from":"${A}"`, `"from":"${A.replaceAll(':', '')}"`)}}`],
  ['an unknown role', `{"type":"hangup",${COMMON.replace('"caller"', '"observer"')}}`],
  ['a seq over u32', `{"type":"hangup",${COMMON.replace('"seq":1', '"seq":4294967296')}}`],
  ['a negative ts', `{"type":"hangup",${COMMON.replace('"ts":1765000000000', '"ts":-1')}}`],
  ['a 31-byte key', `{"type":"hangup",${COMMON.replace(KEY, Buffer.alloc(31, 1).toString('base64'))}}`],
  ['unpadded base64', `{"type":"hangup",${COMMON.replace(KEY, KEY.replace('=', ''))}}`],
  ['base64 with a non-canonical last digit', `{"type":"hangup",${COMMON.replace(KEY, KEY.replace('E=', 'F='))}}`],
  ['a signature that is not a string', `{"type":"hangup",${COMMON.replace(`"${SIG}"`, '64')}}`],
  ['no signature', `{"type":"hangup",${COMMON.replace(`,"signature":"${SIG}"`, '')}}`],
  ['an offer without candidates', `{"type":"offer",${COMMON},"ephemeralKey":"${KEY2}"}`],
  ['an offer without an ephemeral key', `{"type":"offer",${COMMON},"candidates":[]}`],
  [`${MAX_CANDIDATES + 1} candidates`, `{"type":"candidate-update",${COMMON},"candidates":${manyCandidates}}`],
  ['a candidate with a host name', `{"type":"candidate-update",${COMMON},"candidates":[{"type":"host","address":"example.com","port":1,"priority":1}]}`],
  ['a candidate with a zone id', `{"type":"candidate-update",${COMMON},"candidates":[{"type":"host","address":"fe80::1%eth0","port":1,"priority":1}]}`],
  ['a candidate of an unknown type', `{"type":"candidate-update",${COMMON},"candidates":[{"type":"relay","address":"10.0.0.1","port":1,"priority":1}]}`],
  ['a candidate on port 0', `{"type":"candidate-update",${COMMON},"candidates":[{"type":"host","address":"10.0.0.1","port":0,"priority":1}]}`],
  ['a candidate priority over u32', `{"type":"candidate-update",${COMMON},"candidates":[{"type":"host","address":"10.0.0.1","port":1,"priority":4294967296}]}`],
  ['candidates that are not a list', `{"type":"candidate-update",${COMMON},"candidates":{"0":{}}}`],
  ['a reject for another reason', `{"type":"reject",${COMMON},"reason":"maybe"}`],
  ['a relay candidate that is not a candidate', `{"type":"offer",${COMMON},"ephemeralKey":"${KEY2}","candidates":[],"relayCandidate":"203.0.113.9:4433"}`],
  ['a challenge nonce of 31 bytes', `{"type":"challenge","nonce":"${'ab'.repeat(31)}"}`],
  ['a register without its key', `{"type":"register","fingerprint":"${A}","nonce":"${NONCE}","signature":"${SIG}"}`],
];

/**
 * Profiles that break a rule (./nat-profile.ts). Each is left out of the message it came in
 * (the answer still decodes: the call goes on, with no consent from that side), never a
 * refused frame: a later version may widen a field (a new allocation kind), and an invalid
 * advisory field must not cost the call.
 */
const bigPorts = JSON.stringify(Array.from({ length: MAX_NAT_RECENT_PORTS + 1 }, (_, i) => 40000 + i));
const bigReflexive = JSON.stringify(Array.from({ length: MAX_NAT_REFLEXIVE + 1 }, (_, i) => ({ address: '198.51.100.2', port: 40000 + i })));
const MALFORMED_NAT: [string, string][] = [
  ['a string', '"symmetric"'],
  ['a list', '[]'],
  ['a mapping from a later version', natWith('"mapping":"address-and-port-dependent"', '"mapping":"paired"')],
  ['a filtering that is not a string', natWith('"filtering":"unknown"', '"filtering":7')],
  ['no allocation', natWith(',"allocation":{"kind":"sequential","delta":1,"recentPorts":[39990,40001,40002],"observedAgoMs":12}', '')],
  ['an allocation kind from a later version', natWith('"kind":"sequential"', '"kind":"paired"')],
  [`a delta over ${MAX_SEQUENTIAL_DELTA}`, natWith('"delta":1', `"delta":${MAX_SEQUENTIAL_DELTA + 1}`)],
  [`a delta under -${MAX_SEQUENTIAL_DELTA}`, natWith('"delta":1', `"delta":-${MAX_SEQUENTIAL_DELTA + 1}`)],
  ['a delta of 0', natWith('"delta":1', '"delta":0')],
  ['a fractional delta', natWith('"delta":1', '"delta":1.5')],
  ['sequential without a delta', natWith('"delta":1,', '')],
  ['a delta for random allocation', natWith('"kind":"sequential"', '"kind":"random"')],
  [`${MAX_NAT_RECENT_PORTS + 1} recent ports`, natWith('[39990,40001,40002]', bigPorts)],
  ['a recent port 0', natWith('[39990,40001,40002]', '[0]')],
  ['a recent port over 65535', natWith('[39990,40001,40002]', '[65536]')],
  ['a recent port as a string', natWith('[39990,40001,40002]', '["40001"]')],
  ['recent ports that are not a list', natWith('[39990,40001,40002]', '{"0":39990}')],
  ['a negative age', natWith('"observedAgoMs":12', '"observedAgoMs":-1')],
  [`an age over ${MAX_NAT_OBSERVED_AGO_MS} ms`, natWith('"observedAgoMs":12', `"observedAgoMs":${MAX_NAT_OBSERVED_AGO_MS + 1}`)],
  ['a fractional age', natWith('"observedAgoMs":12', '"observedAgoMs":1.5')],
  [`${MAX_NAT_REFLEXIVE + 1} reflexive endpoints`, natWith('[{"address":"198.51.100.2","port":40002},{"address":"2001:db8::7","port":5}]', bigReflexive)],
  ['a reflexive host name', natWith('"198.51.100.2"', '"example.com"')],
  ['a reflexive address with a zone id', natWith('"2001:db8::7"', '"fe80::1%eth0"')],
  ['a reflexive port 0', natWith('"port":5', '"port":0')],
  ['a reflexive endpoint that is a string', natWith('{"address":"2001:db8::7","port":5}', '"[2001:db8::7]:5"')],
  ['no consent field', natWith(',"consent":true', '')],
  ['consent as a string', natWith('"consent":true', '"consent":"yes"')],
];

describe('call signals: golden frames', () => {
  for (const [json, message] of CANONICAL) {
    it(`round-trips ${message.type} byte-exactly (${json.length} bytes)`, () => {
      assert.deepStrictEqual(decodeSignal(atOffset(frame(json))), message);
      assert.equal(toHex(encodeSignal(message)), toHex(frame(json)));
    });
  }
  for (const [name, json, message] of TOLERATED) {
    it(`tolerates ${name}`, () => {
      const decoded = decodeSignal(frame(json));
      assert.deepStrictEqual(decoded, message);
    });
  }
  for (const [name, json] of INVALID) {
    it(`refuses ${name} (bad-field)`, () => {
      assertDecodeError(() => decodeSignal(frame(json)), 'bad-field', 'signal');
    });
  }
  for (const [name, natJson] of MALFORMED_NAT) {
    it(`leaves out a NAT profile with ${name}, and decodes the rest of the answer`, () => {
      assert.ok(natProfileProblem(JSON.parse(natJson)) !== undefined, 'the profile breaks a rule');
      const decoded = decodeSignal(frame(withNat(natJson)));
      assert.deepStrictEqual(decoded, { type: 'answer', ...common, role: 'callee', ephemeralKey: KEY2, candidates: [], natSignature: NAT_SIG });
    });
  }
  it('leaves out a malformed NAT signature, and keeps the profile (the receiver then ignores it as unsigned)', () => {
    const decoded = decodeSignal(frame(withNat(NAT_JSON).replace(NAT_SIG, NAT_SIG.slice(4))));
    assert.deepStrictEqual(decoded, { type: 'answer', ...common, role: 'callee', ephemeralKey: KEY2, candidates: [], nat });
  });
  it('the NAT profile is tolerated, nothing else: a bad relayOnly beside it still refuses the frame', () => {
    assertDecodeError(() => decodeSignal(frame(withNat(NAT_JSON).replace('"candidates":[]', '"candidates":[],"relayOnly":"yes"'))), 'bad-field', 'signal');
  });
  it('encoding a message with an invalid NAT profile is a bug (InternalError), never a frame without it', () => {
    const bad = { ...nat, allocation: { ...nat.allocation, delta: 0 } };
    assert.throws(() => encodeSignal({ type: 'offer', ...common, ephemeralKey: KEY2, candidates: [], nat: bad, natSignature: NAT_SIG }), { name: 'InternalError' });
  });
  it('encoding a message with a bad candidate is a bug (InternalError), never a frame', () => {
    assert.throws(() => encodeSignal({ type: 'candidate-update', ...common, candidates: [{ ...host, port: 0 }] }), { name: 'InternalError' });
  });
  it('the call signal types are known and recognised', () => {
    for (const t of ['offer', 'ringing', 'answer', 'reject', 'hangup', 'candidate-update']) {
      assert.ok(Object.hasOwn(SIGNAL_SCHEMA, t), t);
      assert.ok(isCallSignal({ type: t }), t);
    }
    for (const t of ['routed', 'offline', 'call-gone', 'register', 'join']) assert.equal(isCallSignal({ type: t }), false, t);
  });
  it('a full offer (16 IPv6 candidates of the longest form) stays far below the relay request limit', () => {
    const longest = 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255';
    const candidates = Array.from({ length: MAX_CANDIDATES }, (): Candidate => ({ type: 'predicted', address: longest, port: 65535, priority: 0xffff_ffff }));
    const bytes = encodeSignal({ type: 'offer', ...common, ephemeralKey: KEY2, candidates, relayOnly: true, relayCandidate: candidates[0] }).length;
    assert.ok(bytes < 8 * 1024, `${bytes} bytes`);
    // ... and with the largest NAT profile beside them.
    const biggest: NatProfile = {
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      allocation: { kind: 'sequential', delta: -MAX_SEQUENTIAL_DELTA, recentPorts: Array.from({ length: MAX_NAT_RECENT_PORTS }, () => 65535), observedAgoMs: MAX_NAT_OBSERVED_AGO_MS },
      reflexive: Array.from({ length: MAX_NAT_REFLEXIVE }, () => ({ address: longest, port: 65535 })),
      consent: false,
    };
    const withProfile = encodeSignal({ type: 'offer', ...common, ephemeralKey: KEY2, candidates, relayCandidate: candidates[0], nat: biggest, natSignature: NAT_SIG }).length;
    assert.ok(withProfile < 8 * 1024, `${withProfile} bytes`);
  });
});

describe('candidates', () => {
  it('accepts each type with IPv4 and IPv6 literals', () => {
    for (const type of ['host', 'srflx', 'mapped', 'prflx', 'predicted'] as const) {
      assert.equal(candidateProblem({ type, address: '100.64.0.1', port: 1, priority: 0 }), undefined);
      assert.equal(candidateProblem({ type, address: 'fd00::1', port: 65535, priority: 0xffff_ffff }), undefined);
    }
  });
  it('says what is wrong', () => {
    assert.match(candidateProblem(null)!, /JSON object/);
    assert.match(candidateProblem({ type: 'turn', address: '10.0.0.1', port: 1, priority: 0 })!, /type/);
    assert.match(candidateProblem({ type: 'host', address: '10.0.0.256', port: 1, priority: 0 })!, /address/);
    assert.match(candidateProblem({ type: 'host', address: '10.0.0.1', port: 1.5, priority: 0 })!, /port/);
    assert.match(candidateProblem({ type: 'host', address: '10.0.0.1', port: 1, priority: -1 })!, /priority/);
  });
  it('bounds a list', () => {
    assert.equal(isCandidateList(Array.from({ length: MAX_CANDIDATES }, () => host)), true);
    assert.equal(isCandidateList(Array.from({ length: MAX_CANDIDATES + 1 }, () => host)), false);
    assert.equal(isCandidateList([host, { ...host, address: 'localhost' }]), false);
  });
});

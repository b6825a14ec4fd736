/**
 * Golden frames for presence and call signalling (core/wire/signal.ts) and the candidate type
 * (core/wire/candidate.ts): canonical frames re-encode byte-exactly, unknown fields and types
 * are tolerated, and every bound is enforced with a typed DecodeError.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { candidateProblem, isCandidateList, MAX_CANDIDATES, type Candidate } from '../../core/wire/candidate.js';
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
  [`{"type":"ringing",${COMMON}}`, { type: 'ringing', ...common }],
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
  ['a call signal type from a later version', `{"type":"transfer",${COMMON},"target":"${B}"}`, { type: 'unknown', rawType: 'transfer' }],
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

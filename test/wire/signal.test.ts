import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeError } from '../../core/errors.js';
import {
  type KnownSignalMessage,
  MAX_SIGNAL_PAYLOAD_BYTES,
  type SignalMessage,
  SignalFrameDecoder,
  decodeSignal,
  encodeSignal,
  formatSocketAddress,
  parseSocketAddress,
} from '../../core/wire/signal.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

/** A frame holding `payload` (JSON text) behind its length prefix. */
function frame(payload: string | Uint8Array): Uint8Array {
  const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** Canonical frames: they decode to the message and the message encodes to them. */
const CANONICAL: [string, KnownSignalMessage][] = [
  ['{"type":"hello","version":1,"alias":"ana","client":"wzp/0.1.0"}', { type: 'hello', version: 1, alias: 'ana', client: 'wzp/0.1.0' }],
  ['{"type":"hello","version":1}', { type: 'hello', version: 1 }],
  ['{"type":"hello-ack","version":1,"relayFingerprint":"a1b2 c3d4"}', { type: 'hello-ack', version: 1, relayFingerprint: 'a1b2 c3d4' }],
  ['{"type":"ping","nonce":42}', { type: 'ping', nonce: 42 }],
  ['{"type":"pong","nonce":9007199254740991}', { type: 'pong', nonce: Number.MAX_SAFE_INTEGER }],
  ['{"type":"reflect"}', { type: 'reflect' }],
  ['{"type":"reflect-response","observedAddress":"203.0.113.7:4433"}', { type: 'reflect-response', observedAddress: '203.0.113.7:4433' }],
  ['{"type":"reflect-response","observedAddress":"[2001:db8::1]:65535"}', { type: 'reflect-response', observedAddress: '[2001:db8::1]:65535' }],
  ['{"type":"join","mode":"echo"}', { type: 'join', mode: 'echo' }],
  ['{"type":"join","mode":"room","room":"ops","alias":"Zoë 🎧"}', { type: 'join', mode: 'room', room: 'ops', alias: 'Zoë 🎧' }],
  ['{"type":"joined","mode":"room","room":"ops"}', { type: 'joined', mode: 'room', room: 'ops' }],
  [
    '{"type":"join","mode":"room","room":"ops","fingerprint":"fp-a","announcement":{"fingerprint":"fp-a","signature":"c2ln"}}',
    { type: 'join', mode: 'room', room: 'ops', fingerprint: 'fp-a', announcement: { fingerprint: 'fp-a', signature: 'c2ln' } },
  ],
  [
    '{"type":"joined","mode":"room","room":"ops","sourceId":2,"participants":[{"sourceId":1,"alias":"a","fingerprint":"fp-a"},{"sourceId":2,"alias":"b","fingerprint":"fp-b"}],"announcements":[{"sourceId":1,"announcement":{"fingerprint":"fp-a"}}]}',
    {
      type: 'joined',
      mode: 'room',
      room: 'ops',
      sourceId: 2,
      participants: [
        { sourceId: 1, alias: 'a', fingerprint: 'fp-a' },
        { sourceId: 2, alias: 'b', fingerprint: 'fp-b' },
      ],
      announcements: [{ sourceId: 1, announcement: { fingerprint: 'fp-a' } }],
    },
  ],
  [
    '{"type":"room-update","room":"ops","participants":[{"sourceId":2,"alias":"b","fingerprint":"fp-b"}],"joined":2,"announcement":{"fingerprint":"fp-b"}}',
    {
      type: 'room-update',
      room: 'ops',
      participants: [{ sourceId: 2, alias: 'b', fingerprint: 'fp-b' }],
      joined: 2,
      announcement: { fingerprint: 'fp-b' },
    },
  ],
  ['{"type":"leave"}', { type: 'leave' }],
  ['{"type":"error","code":"room-full","message":"room \\"ops\\" is full"}', { type: 'error', code: 'room-full', message: 'room "ops" is full' }],
  ['{"type":"error","code":"x","message":"\\ud800"}', { type: 'error', code: 'x', message: '\ud800' }],
  ['{"type":"draining","deadlineMs":30000}', { type: 'draining', deadlineMs: 30000 }],
  ['{"type":"draining","deadlineMs":0}', { type: 'draining', deadlineMs: 0 }],
];

/** Accepted but not canonical: they decode to the message (which re-encodes canonically). */
const TOLERATED: [string, string, SignalMessage][] = [
  ['unknown fields', '{"type":"ping","nonce":1,"extra":true,"nested":{"a":[1]}}', { type: 'ping', nonce: 1 }],
  ['other key order and whitespace', ' { "nonce" : 5 ,\n "type" : "pong" } ', { type: 'pong', nonce: 5 }],
  ['null for an optional field', '{"type":"join","mode":"echo","room":null}', { type: 'join', mode: 'echo' }],
  ['an unknown type', '{"type":"call-offer","sdp":"v=0"}', { type: 'unknown', rawType: 'call-offer' }],
  ['the type "unknown"', '{"type":"unknown"}', { type: 'unknown', rawType: 'unknown' }],
  ['an empty type', '{"type":""}', { type: 'unknown', rawType: '' }],
  ['a type named like an Object method', '{"type":"toString"}', { type: 'unknown', rawType: 'toString' }],
  ['the type "__proto__"', '{"type":"__proto__"}', { type: 'unknown', rawType: '__proto__' }],
];

const INVALID_PAYLOADS: [string, string | Uint8Array, string][] = [
  ['invalid UTF-8', hex('7b ff fe 7d'), 'bad-utf8'],
  ['an empty payload', '', 'bad-json'],
  ['cut JSON', '{"type":', 'bad-json'],
  ['a byte-order mark', '\ufeff{"type":"leave"}', 'bad-json'],
  ['an array', '[{"type":"leave"}]', 'not-object'],
  ['a string', '"leave"', 'not-object'],
  ['null', 'null', 'not-object'],
  ['no type', '{}', 'bad-type'],
  ['a numeric type', '{"type":5}', 'bad-type'],
  ['a null type', '{"type":null}', 'bad-type'],
  ['a missing required field', '{"type":"ping"}', 'bad-field'],
  ['null for a required field', '{"type":"hello-ack","version":1,"relayFingerprint":null}', 'bad-field'],
  ['a field only in __proto__', '{"type":"ping","__proto__":{"nonce":1}}', 'bad-field'],
  ['a negative nonce', '{"type":"ping","nonce":-1}', 'bad-field'],
  ['a fractional nonce', '{"type":"ping","nonce":1.5}', 'bad-field'],
  ['a nonce as a string', '{"type":"pong","nonce":"1"}', 'bad-field'],
  ['a version over u32', '{"type":"hello","version":4294967296}', 'bad-field'],
  ['a numeric alias', '{"type":"hello","version":1,"alias":5}', 'bad-field'],
  ['an unknown mode', '{"type":"join","mode":"conference"}', 'bad-field'],
  ['an announcement that is not an object', '{"type":"join","mode":"room","announcement":["fp"]}', 'bad-field'],
  ['an announcement entry without its announcement', '{"type":"joined","mode":"room","announcements":[{"sourceId":1}]}', 'bad-field'],
  ['an announcement entry with source id 0', '{"type":"joined","mode":"room","announcements":[{"sourceId":0,"announcement":{}}]}', 'bad-field'],
  ['a missing error message', '{"type":"error","code":"x"}', 'bad-field'],
  ['a drain notice without its deadline', '{"type":"draining"}', 'bad-field'],
  ['a negative drain deadline', '{"type":"draining","deadlineMs":-1}', 'bad-field'],
  ['a drain deadline as a string', '{"type":"draining","deadlineMs":"30000"}', 'bad-field'],
  ...[
    'example.com:80',
    '203.0.113.7',
    '203.0.113.7:0',
    '203.0.113.7:65536',
    '203.0.113.7:080',
    '203.0.113.7:',
    '2001:db8::1:80',
    '[203.0.113.7]:80',
    '[2001:db8::1]',
    ':80',
  ].map((address): [string, string, string] => [
    `observed address ${address}`,
    JSON.stringify({ type: 'reflect-response', observedAddress: address }),
    'bad-field',
  ]),
];

describe('signal: golden frames', () => {
  it('frames a message as a 4-byte big-endian length and JSON', () => {
    assert.equal(toHex(encodeSignal({ type: 'leave' })), '00000010' + '7b2274797065223a226c65617665227d');
  });

  for (const [json, message] of CANONICAL) {
    it(`round-trips ${json} byte-exactly`, () => {
      assert.deepStrictEqual(decodeSignal(atOffset(frame(json))), message);
      assert.equal(toHex(encodeSignal(message)), toHex(frame(json)));
    });
  }

  for (const [name, json, message] of TOLERATED) {
    it(`accepts ${name}`, () => {
      assert.deepStrictEqual(decodeSignal(frame(json)), message);
    });
  }

  for (const [name, payload, reason] of INVALID_PAYLOADS) {
    it(`rejects ${name} with '${reason}'`, () => {
      assertDecodeError(() => decodeSignal(frame(payload)), reason, 'signal');
    });
  }

  it('rejects cut, oversized and overlong frames', () => {
    assertDecodeError(() => decodeSignal(hex('000000')), 'truncated', 'signal');
    assertDecodeError(() => decodeSignal(hex('00000010 7b22')), 'truncated', 'signal');
    assertDecodeError(() => decodeSignal(hex('00010001')), 'too-large', 'signal');
    assertDecodeError(() => decodeSignal(hex('00000010 7b2274797065223a226c65617665227d 00')), 'trailing-bytes', 'signal');
  });

  it('takes a payload of exactly 64 KiB and no more', () => {
    const overhead = '{"type":"error","code":"x","message":""}'.length;
    const largest: KnownSignalMessage = { type: 'error', code: 'x', message: 'm'.repeat(MAX_SIGNAL_PAYLOAD_BYTES - overhead) };
    const encoded = encodeSignal(largest);
    assert.equal(encoded.length, 4 + MAX_SIGNAL_PAYLOAD_BYTES);
    assert.deepStrictEqual(decodeSignal(encoded), largest);
    assert.throws(() => encodeSignal({ ...largest, message: `${largest.message}m` }), { name: 'InternalError' });
  });
});

describe('encodeSignal: checks', () => {
  const invalid: [string, unknown][] = [
    ['an unknown message', { type: 'unknown', rawType: 'x' }],
    ['a type not in the schema', { type: 'call-offer' }],
    ['a missing required field', { type: 'ping' }],
    ['an ill-typed field', { type: 'join', mode: 'conference' }],
    ['a malformed address', { type: 'reflect-response', observedAddress: 'localhost:1' }],
  ];
  for (const [name, message] of invalid) {
    it(`refuses ${name} with InternalError`, () => {
      assert.throws(() => encodeSignal(message as KnownSignalMessage), { name: 'InternalError' });
    });
  }

  it('leaves out fields outside the schema', () => {
    const message = { type: 'ping', nonce: 1, secret: 'x' } as KnownSignalMessage;
    assert.equal(new TextDecoder().decode(encodeSignal(message).subarray(4)), '{"type":"ping","nonce":1}');
  });
});

describe('socket addresses', () => {
  it('formats IPv4 plainly and IPv6 in brackets', () => {
    assert.equal(formatSocketAddress('198.51.100.2', 5000), '198.51.100.2:5000');
    assert.equal(formatSocketAddress('2001:db8::2', 5000), '[2001:db8::2]:5000');
  });

  it('parses what it formats', () => {
    assert.deepStrictEqual(parseSocketAddress('198.51.100.2:5000'), { address: '198.51.100.2', port: 5000, family: 'IPv4' });
    assert.deepStrictEqual(parseSocketAddress('[::1]:1'), { address: '::1', port: 1, family: 'IPv6' });
    assert.equal(parseSocketAddress('nonsense'), undefined);
  });
});

describe('SignalFrameDecoder', () => {
  function collecting(): { decoder: SignalFrameDecoder; invalid: DecodeError[] } {
    const invalid: DecodeError[] = [];
    return { decoder: new SignalFrameDecoder({ onInvalidFrame: (error) => invalid.push(error) }), invalid };
  }

  const messages: KnownSignalMessage[] = [
    { type: 'hello', version: 1, alias: 'ana' },
    { type: 'ping', nonce: 7 },
    { type: 'leave' },
  ];
  const stream = Buffer.concat(messages.map(encodeSignal));

  it('decodes several frames from one chunk', () => {
    assert.deepStrictEqual(collecting().decoder.push(stream), messages);
  });

  it('decodes frames fed one byte at a time', () => {
    const { decoder } = collecting();
    const out: SignalMessage[] = [];
    for (const byte of stream) out.push(...decoder.push(Uint8Array.of(byte)));
    assert.deepStrictEqual(out, messages);
    assert.equal(decoder.bufferedBytes, 0);
  });

  it('reports a partial frame as buffered', () => {
    const { decoder } = collecting();
    assert.deepStrictEqual(decoder.push(stream.subarray(0, 10)), []);
    assert.equal(decoder.bufferedBytes, 10);
    assert.deepStrictEqual(decoder.push(stream.subarray(10)), messages);
  });

  it('decodes a 64 KiB frame arriving in pieces', () => {
    const big: KnownSignalMessage = { type: 'error', code: 'x', message: 'é'.repeat(30_000) };
    const bytes = encodeSignal(big);
    const { decoder } = collecting();
    const out: SignalMessage[] = [];
    for (let i = 0; i < bytes.length; i += 1000) out.push(...decoder.push(bytes.subarray(i, i + 1000)));
    assert.deepStrictEqual(out, [big]);
  });

  it('skips an invalid frame, reports it, and goes on', () => {
    const { decoder, invalid } = collecting();
    const chunk = Buffer.concat([encodeSignal(messages[0]), frame('{"type":'), frame('{"type":"ping"}'), encodeSignal(messages[2])]);
    assert.deepStrictEqual(decoder.push(chunk), [messages[0], messages[2]]);
    assert.deepStrictEqual(
      invalid.map((error) => error.reason),
      ['bad-json', 'bad-field'],
    );
  });

  it('passes unknown types on', () => {
    const { decoder, invalid } = collecting();
    assert.deepStrictEqual(decoder.push(frame('{"type":"presence","who":[]}')), [{ type: 'unknown', rawType: 'presence' }]);
    assert.equal(invalid.length, 0);
  });

  it('breaks for good on a declared length over 64 KiB', () => {
    const { decoder } = collecting();
    assert.deepStrictEqual(decoder.push(encodeSignal(messages[1])), [messages[1]]);
    assertDecodeError(() => decoder.push(hex('00010001 7b')), 'too-large', 'signal');
    assertDecodeError(() => decoder.push(encodeSignal(messages[1])), 'too-large', 'signal');
  });

  it('accepts empty chunks', () => {
    assert.deepStrictEqual(collecting().decoder.push(new Uint8Array(0)), []);
  });
});

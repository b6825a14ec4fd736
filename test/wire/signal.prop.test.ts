import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../core/errors.js';
import { type SignalMessage, SIGNAL_SCHEMA, SignalFrameDecoder, decodeSignal, encodeSignal } from '../../core/wire/signal.js';
import { chunked, cutsArb, knownSignalArb } from './arbitraries.js';
import { decodeOrReject, toHex } from './helpers.js';

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

const utf8 = (text: string) => new TextEncoder().encode(text);

/** JSON objects with a known type and random fields, some of them named like schema fields. */
const knownTypes = Object.keys(SIGNAL_SCHEMA);
const fieldNames = [...new Set(Object.values(SIGNAL_SCHEMA).flatMap((rules) => Object.keys(rules)))];
const messageLikeArb = fc
  .tuple(
    fc.oneof(fc.constantFrom(...knownTypes), fc.string()),
    fc.dictionary(fc.oneof(fc.constantFrom(...fieldNames), fc.string()), fc.jsonValue(), { maxKeys: 5 }),
  )
  .map(([type, fields]) => utf8(JSON.stringify({ ...fields, type })));

/** Frames of any kind: valid, message-like, arbitrary JSON, random bytes. */
const frameArb = fc.oneof(
  knownSignalArb.map(encodeSignal),
  messageLikeArb.map(frame),
  fc.json().map((json) => frame(utf8(json))),
  fc.uint8Array({ maxLength: 30 }).map(frame),
);

/** Everything a stream decoder produced, failing the test on any exception but a DecodeError. */
function runDecoder(chunks: readonly Uint8Array[]): { messages: SignalMessage[]; invalid: number; broken: boolean } {
  let invalid = 0;
  const decoder = new SignalFrameDecoder({
    onInvalidFrame: (error) => {
      assert.ok(error instanceof DecodeError);
      invalid++;
    },
  });
  const messages: SignalMessage[] = [];
  for (const chunk of chunks) {
    const pushed = decodeOrReject(() => decoder.push(chunk));
    if (pushed === undefined) return { messages, invalid, broken: true };
    messages.push(...pushed);
  }
  return { messages, invalid, broken: false };
}

describe('signal properties', () => {
  it('decodeSignal(encodeSignal(message)) deep-equals message', () => {
    fc.assert(
      fc.property(knownSignalArb, (message) => {
        assert.deepStrictEqual(decodeSignal(encodeSignal(message)), message);
      }),
    );
  });

  it('a decoded known message re-encodes canonically and stays the same', () => {
    fc.assert(
      fc.property(messageLikeArb, (payload) => {
        const message = decodeOrReject(() => decodeSignal(frame(payload)));
        if (message === undefined || message.type === 'unknown') return;
        const canonical = encodeSignal(message);
        assert.deepStrictEqual(decodeSignal(canonical), message);
        assert.equal(toHex(encodeSignal(decodeSignal(canonical) as typeof message)), toHex(canonical));
      }),
      { numRuns: 2000 },
    );
  });

  it('the stream decoder yields the same as frame-by-frame decoding, however the bytes are chunked', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 20 }), cutsArb, (frames, cuts) => {
        const outcomes = frames.map((f) => decodeOrReject(() => decodeSignal(f)));
        const expected = outcomes.filter((m): m is SignalMessage => m !== undefined);
        const result = runDecoder(chunked(Buffer.concat(frames), cuts));
        assert.deepStrictEqual(result, { messages: expected, invalid: frames.length - expected.length, broken: false });
      }),
      { numRuns: 500 },
    );
  });

  it('random bytes in random chunks give only DecodeErrors or messages', () => {
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 2000 }),
      fc.array(fc.oneof(frameArb, fc.uint8Array({ maxLength: 8 })), { maxLength: 10 }).map((parts) => Buffer.concat(parts)),
    );
    fc.assert(
      fc.property(bytesArb, cutsArb, (bytes, cuts) => {
        runDecoder(chunked(bytes, cuts));
        decodeOrReject(() => decodeSignal(bytes));
      }),
      { numRuns: 2000 },
    );
  });
});

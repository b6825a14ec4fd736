import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type MediaHeader, encodeMediaHeader } from '../../core/wire/media-header.js';
import { MINI_HEADER_BYTES, MiniHeaderDecoder, MiniHeaderEncoder } from '../../core/wire/mini-header.js';
import { mediaHeaderArb, mediaStream, steadyStepArb, streamStepArb, withoutReport } from './arbitraries.js';
import { decodeOrReject } from './helpers.js';

const startArb = mediaHeaderArb.map(withoutReport);
const optionsArb = fc.record(
  { fullHeaderInterval: fc.integer({ min: 1, max: 200 }), fullHeadersAfterChange: fc.integer({ min: 1, max: 4 }) },
  { noNullPrototype: true },
).map((options) => ({ ...options, fullHeadersAfterChange: Math.min(options.fullHeadersAfterChange, options.fullHeaderInterval) }));

/** A loss pattern: packet i is lost when rolls[i] < percent. */
const lossArb = fc
  .tuple(fc.integer({ min: 0, max: 60 }), fc.array(fc.nat({ max: 99 }), { minLength: 400, maxLength: 400 }))
  .map(([percent, rolls]) => (i: number) => rolls[i % rolls.length] < percent);

function encodeAll(headers: readonly MediaHeader[], options: ConstructorParameters<typeof MiniHeaderEncoder>[0]): Uint8Array[] {
  const encoder = new MiniHeaderEncoder(options);
  return headers.map((header) => encoder.encodeHeader(header));
}

describe('mini header properties', () => {
  it('a lossless stream decodes to exactly the headers sent', () => {
    fc.assert(
      fc.property(startArb, fc.array(streamStepArb, { minLength: 20, maxLength: 300 }), optionsArb, (start, steps, options) => {
        const headers = mediaStream(start, steps);
        const decoder = new MiniHeaderDecoder();
        const decoded = encodeAll(headers, options).map((bytes) => decoder.decodeHeader(bytes).header);
        assert.deepStrictEqual(decoded, headers);
      }),
      { numRuns: 200 },
    );
  });

  it('a steady stream survives any loss that leaves one full header in two', () => {
    fc.assert(
      fc.property(startArb, fc.array(steadyStepArb, { minLength: 50, maxLength: 400 }), lossArb, (start, steps, lost) => {
        const headers = mediaStream(start, steps);
        const encoded = encodeAll(headers, {});
        let fullsSeen = 0;
        const kept = [...encoded.keys()].filter((i) => {
          const isFull = encoded[i].length !== MINI_HEADER_BYTES;
          const keepAnyway = isFull && fullsSeen++ % 2 === 0;
          return keepAnyway || !lost(i);
        });
        const decoder = new MiniHeaderDecoder();
        for (const i of kept) assert.deepStrictEqual(decoder.decodeHeader(encoded[i]).header, headers[i], `packet ${i}`);
      }),
      { numRuns: 200 },
    );
  });

  it('loss, reordering and changes yield only DecodeErrors or well-formed headers', () => {
    const swapsArb = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 4 })), { maxLength: 40 });
    fc.assert(
      fc.property(
        startArb,
        fc.array(streamStepArb, { minLength: 20, maxLength: 300 }),
        lossArb,
        swapsArb,
        optionsArb,
        (start, steps, lost, swaps, options) => {
          const encoded = encodeAll(mediaStream(start, steps), options).filter((_, i) => !lost(i));
          for (const [at, distance] of encoded.length > 1 ? swaps : []) {
            const i = at % encoded.length;
            const j = Math.min(encoded.length - 1, i + distance);
            [encoded[i], encoded[j]] = [encoded[j], encoded[i]];
          }
          const decoder = new MiniHeaderDecoder();
          for (const bytes of encoded) {
            const decoded = decodeOrReject(() => decoder.decodeHeader(bytes));
            if (decoded !== undefined) encodeMediaHeader(decoded.header);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('random bytes give a DecodeError or a valid decode, with or without a context', () => {
    const miniLike = fc.tuple(fc.integer({ min: 0x80, max: 0xbf }), fc.uint8Array({ maxLength: 8 })).map(([first, rest]) => Uint8Array.of(first, ...rest));
    fc.assert(
      fc.property(fc.option(mediaHeaderArb), fc.array(fc.oneof(miniLike, fc.uint8Array({ maxLength: 40 })), { maxLength: 20 }), (context, inputs) => {
        const decoder = new MiniHeaderDecoder();
        if (context !== null) decoder.decodeHeader(encodeMediaHeader(context));
        for (const bytes of inputs) {
          const decoded = decodeOrReject(() => decoder.decodePacket(bytes));
          if (decoded !== undefined) encodeMediaHeader(decoded.header);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { type MediaHeader, QualityTier, encodeMediaHeader } from '../../core/wire/media-header.js';
import {
  MINI_HEADER_BYTES,
  MiniHeaderDecoder,
  MiniHeaderEncoder,
  type MiniHeaderEncoderOptions,
} from '../../core/wire/mini-header.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

const BASE: MediaHeader = {
  version: 1,
  codecId: 2,
  tier: QualityTier.DEGRADED,
  sequence: 0x1234,
  timestamp: 2400,
  frameSamples: 960,
  fec: { schemeId: 1, block: 5, symbol: 3, repair: false, k: 5, r: 2 },
  extensions: [],
};

interface StreamStart {
  sequence: number;
  timestamp: number;
  block: number;
}

/** Packet i of a steady stream: 20 ms frames in FEC blocks of 5 source + 2 repair packets. */
function packet(i: number, start: StreamStart = { sequence: 0x1234, timestamp: 2400, block: 5 }): MediaHeader {
  const symbol = i % 7;
  return {
    ...BASE,
    sequence: (start.sequence + i) & 0xffff,
    timestamp: (start.timestamp + i * 960) >>> 0,
    fec: { ...BASE.fec, block: (start.block + Math.floor(i / 7)) & 0xffff, symbol, repair: symbol >= 5 },
  };
}

function stream(count: number, change: (i: number, header: MediaHeader) => MediaHeader = (_, h) => h): MediaHeader[] {
  return Array.from({ length: count }, (_, i) => change(i, packet(i)));
}

function encodeAll(headers: readonly MediaHeader[], options?: MiniHeaderEncoderOptions): Uint8Array[] {
  const encoder = new MiniHeaderEncoder(options);
  return headers.map((header) => encoder.encodeHeader(header));
}

/** Indexes of the packets that got a full header. */
function fullIndexes(encoded: readonly Uint8Array[]): number[] {
  return encoded.flatMap((bytes, i) => (bytes.length === MINI_HEADER_BYTES ? [] : [i]));
}

describe('mini header: golden bytes', () => {
  const context = hex('14 02 1234 00000960 08 01 0005 03 05 02');
  const next = (steps: number, fec: Partial<MediaHeader['fec']>): MediaHeader => ({
    ...BASE,
    sequence: BASE.sequence + steps,
    timestamp: BASE.timestamp + steps * 960,
    fec: { ...BASE.fec, ...fec },
  });
  const golden: [string, string, MediaHeader][] = [
    ['the next source packet', '92 35 05 04 d5', next(1, { symbol: 4 })],
    ['a repair packet (R set)', 'b2 36 05 05 1a', next(2, { symbol: 5, repair: true })],
    ['the first packet of the next block', '92 37 06 00 20', next(3, { block: 6, symbol: 0 })],
  ];

  for (const [name, bytes, header] of golden) {
    it(`encodes and expands ${name}`, () => {
      const decoder = new MiniHeaderDecoder();
      decoder.decodeHeader(context);
      assert.deepStrictEqual(decoder.decodeHeader(atOffset(hex(bytes))), { header, headerLength: 5, compressed: true });
    });
  }

  it('produces exactly those bytes', () => {
    const encoded = encodeAll([BASE, ...golden.map(([, , header]) => header)], { fullHeadersAfterChange: 1 });
    assert.deepStrictEqual(encoded.map(toHex), [context, ...golden.map(([, bytes]) => hex(bytes))].map(toHex));
  });

  it('expands across sequence, timestamp and block wraparound', () => {
    const last: MediaHeader = { ...BASE, sequence: 0xffff, timestamp: 0xffff_ffff - 959, fec: { ...BASE.fec, block: 0xffff } };
    const next: MediaHeader = { ...BASE, sequence: 0, timestamp: 0, fec: { ...BASE.fec, block: 0, symbol: 0 } };
    const encoded = encodeAll([last, next], { fullHeadersAfterChange: 1 });
    assert.equal(toHex(encoded[1]), '8000000077');
    const decoder = new MiniHeaderDecoder();
    decoder.decodeHeader(encoded[0]);
    assert.deepStrictEqual(decoder.decodeHeader(encoded[1]).header, next);
  });

  it("rejects a mini header with no context as 'no-context'", () => {
    assertDecodeError(() => new MiniHeaderDecoder().decodeHeader(hex('92 35 05 04 d5')), 'no-context', 'mini-header');
  });

  it("rejects a cut mini header as 'truncated'", () => {
    const decoder = new MiniHeaderDecoder();
    decoder.decodeHeader(context);
    assertDecodeError(() => decoder.decodeHeader(hex('92 35 05 04')), 'truncated', 'mini-header');
  });

  it("rejects a mini header whose CRC does not match the context as 'context-mismatch'", () => {
    const decoder = new MiniHeaderDecoder();
    decoder.decodeHeader(context);
    assertDecodeError(() => decoder.decodeHeader(hex('92 35 05 04 d6')), 'context-mismatch', 'mini-header');
  });

  it('passes full-header errors through', () => {
    assertDecodeError(() => new MiniHeaderDecoder().decodeHeader(new Uint8Array(0)), 'truncated', 'media-header');
    assertDecodeError(() => new MiniHeaderDecoder().decodeHeader(hex('c0 01 0001 14')), 'bad-version', 'media-header');
  });

  it('is a third of the full header', () => {
    assert.equal(MINI_HEADER_BYTES, 5);
    assert.equal(encodeMediaHeader(BASE).length, 15);
  });
});

describe('MiniHeaderEncoder: full or mini', () => {
  it('sends a full header every 50 packets, three in a row at the start', () => {
    assert.deepStrictEqual(fullIndexes(encodeAll(stream(160))), [0, 1, 2, 52, 102, 152]);
  });

  it('follows fullHeaderInterval and fullHeadersAfterChange', () => {
    assert.deepStrictEqual(fullIndexes(encodeAll(stream(25), { fullHeaderInterval: 10, fullHeadersAfterChange: 1 })), [0, 10, 20]);
    assert.deepStrictEqual(fullIndexes(encodeAll(stream(5), { fullHeaderInterval: 1 })), [0, 1, 2, 3, 4]);
  });

  it('sends a quality report in a full header, without repeats', () => {
    const headers = stream(12, (i, h) => (i === 10 ? { ...h, report: { fractionLost: 3, rttMs: 80, jitterMs: 4 } } : h));
    assert.deepStrictEqual(fullIndexes(encodeAll(headers)), [0, 1, 2, 10]);
  });

  const changes: [string, (h: MediaHeader) => MediaHeader][] = [
    ['the codec', (h) => ({ ...h, codecId: 3 })],
    ['the tier', (h) => ({ ...h, tier: QualityTier.GOOD })],
    ['the FEC scheme', (h) => ({ ...h, fec: { ...h.fec, schemeId: 2 } })],
    ['the FEC geometry', (h) => ({ ...h, fec: { ...h.fec, r: 3 } })],
    ['the extensions', (h) => ({ ...h, extensions: [{ id: 1, data: hex('01') }] })],
  ];
  for (const [name, change] of changes) {
    it(`sends three full headers when ${name} changes`, () => {
      const headers = stream(30, (i, h) => (i >= 20 ? change(h) : h));
      assert.deepStrictEqual(fullIndexes(encodeAll(headers)), [0, 1, 2, 20, 21, 22]);
    });
  }

  it('treats a frame size change as a change', () => {
    const headers = stream(30).map((h, i) =>
      i >= 20 ? { ...h, frameSamples: 1920, timestamp: (packet(20).timestamp + (i - 20) * 1920) >>> 0 } : h,
    );
    assert.deepStrictEqual(fullIndexes(encodeAll(headers)), [0, 1, 2, 20, 21, 22]);
  });

  it('sends full headers after a sequence gap', () => {
    const headers = stream(30).filter((_, i) => i !== 10);
    assert.deepStrictEqual(fullIndexes(encodeAll(headers)), [0, 1, 2, 10, 11, 12]);
  });

  it('sends full headers after a timestamp jump', () => {
    const headers = stream(30, (i, h) => (i >= 10 ? { ...h, timestamp: h.timestamp + 9600 } : h));
    assert.deepStrictEqual(fullIndexes(encodeAll(headers)), [0, 1, 2, 10, 11, 12]);
  });

  it('sends a full header when the FEC block leaves the mini window', () => {
    const headers = stream(12, (i, h) => (i >= 10 ? { ...h, fec: { ...h.fec, block: h.fec.block + 200 } } : h));
    assert.deepStrictEqual(fullIndexes(encodeAll(headers, { fullHeadersAfterChange: 1 })), [0, 10]);
  });

  it('starts over with a full header after reset()', () => {
    const encoder = new MiniHeaderEncoder({ fullHeadersAfterChange: 1 });
    const headers = stream(6);
    const sizes = headers.map((h, i) => {
      if (i === 3) encoder.reset();
      return encoder.encodeHeader(h).length;
    });
    assert.deepStrictEqual(sizes, [15, 5, 5, 15, 5, 5]);
  });

  it('checks its options', () => {
    for (const options of [
      { fullHeaderInterval: 0 },
      { fullHeaderInterval: 4097 },
      { fullHeaderInterval: 2.5 },
      { fullHeadersAfterChange: 0 },
      { fullHeaderInterval: 10, fullHeadersAfterChange: 11 },
    ]) {
      assert.throws(() => new MiniHeaderEncoder(options), { name: 'InternalError' }, JSON.stringify(options));
    }
  });

  it('refuses an invalid header with InternalError', () => {
    assert.throws(() => new MiniHeaderEncoder().encodeHeader({ ...BASE, sequence: -1 }), { name: 'InternalError' });
  });
});

describe('MiniHeaderDecoder: loss and reordering', () => {
  function decodeAll(decoder: MiniHeaderDecoder, encoded: readonly Uint8Array[]): (MediaHeader | string)[] {
    return encoded.map((bytes) => {
      try {
        return decoder.decodeHeader(bytes).header;
      } catch (error) {
        return (error as { reason: string }).reason;
      }
    });
  }

  it('restores every header of a lossless stream', () => {
    const headers = stream(200, (i, h) => {
      if (i === 75) return { ...h, report: { fractionLost: 1, rttMs: 2, jitterMs: 3 } };
      return i >= 120 ? { ...h, codecId: 9 } : h;
    });
    assert.deepStrictEqual(decodeAll(new MiniHeaderDecoder(), encodeAll(headers)), headers);
  });

  it('survives the loss of a periodic full header', () => {
    const headers = stream(100);
    const encoded = encodeAll(headers);
    const kept = [...encoded.keys()].filter((i) => i !== 52);
    assert.deepStrictEqual(
      decodeAll(new MiniHeaderDecoder(), kept.map((i) => encoded[i])),
      kept.map((i) => headers[i]),
    );
  });

  it('tolerates gaps of 127 and of 800 lost packets', () => {
    for (const gap of [127, 800]) {
      const headers = stream(gap + 10);
      const encoded = encodeAll(headers);
      const kept = [0, 1, 2, 3, gap + 4, gap + 5];
      const decoded = decodeAll(new MiniHeaderDecoder(), kept.map((i) => encoded[i]));
      assert.deepStrictEqual(decoded, kept.map((i) => headers[i]), `gap ${gap}`);
    }
  });

  it("rejects mini headers as 'context-mismatch' when the change they depend on was lost", () => {
    const headers = stream(80, (i, h) => (i >= 20 ? { ...h, codecId: 9 } : h));
    const encoded = encodeAll(headers, { fullHeadersAfterChange: 1 });
    assert.deepStrictEqual(fullIndexes(encoded), [0, 20, 70]);
    const decoded = decodeAll(new MiniHeaderDecoder(), encoded.filter((_, i) => i !== 20));
    assert.deepStrictEqual(decoded.slice(0, 20), headers.slice(0, 20));
    assert.deepStrictEqual(decoded.slice(20, 69), Array(49).fill('context-mismatch'));
    assert.deepStrictEqual(decoded.slice(69), headers.slice(70));
  });

  it('recovers at once from a lost change thanks to the repeated full headers', () => {
    const headers = stream(40, (i, h) => (i >= 20 ? { ...h, codecId: 9 } : h));
    const encoded = encodeAll(headers);
    const kept = [...encoded.keys()].filter((i) => i !== 20);
    assert.deepStrictEqual(
      decodeAll(new MiniHeaderDecoder(), kept.map((i) => encoded[i])),
      kept.map((i) => headers[i]),
    );
  });

  it('expands a mini header that arrives after the next context change', () => {
    const headers = stream(30, (i, h) => (i >= 20 ? { ...h, codecId: 9 } : h));
    const encoded = encodeAll(headers);
    const order = [...encoded.keys()];
    order.splice(19, 2, 20, 19); // packet 19 (mini, old codec) arrives after 20 (full, new codec)
    assert.deepStrictEqual(
      decodeAll(new MiniHeaderDecoder(), order.map((i) => encoded[i])),
      order.map((i) => headers[i]),
    );
  });

  it('keeps decoding when an old full header arrives late', () => {
    const headers = stream(30, (i, h) => (i >= 20 ? { ...h, codecId: 9 } : h));
    const encoded = encodeAll(headers);
    const order = [...encoded.keys()];
    order.splice(24, 0, 1); // a duplicate of full header 1 (old codec) shows up late
    assert.deepStrictEqual(
      decodeAll(new MiniHeaderDecoder(), order.map((i) => encoded[i])),
      order.map((i) => headers[i]),
    );
  });

  it('forgets its contexts on reset()', () => {
    const encoded = encodeAll(stream(5));
    const decoder = new MiniHeaderDecoder();
    decodeAll(decoder, encoded);
    decoder.reset();
    assertDecodeError(() => decoder.decodeHeader(encoded[4]), 'no-context');
  });
});

describe('mini header packets', () => {
  it('round-trips header and payload', () => {
    const encoder = new MiniHeaderEncoder({ fullHeadersAfterChange: 1 });
    const decoder = new MiniHeaderDecoder();
    for (const [i, header] of stream(3).entries()) {
      const payload = Uint8Array.of(i, 0xaa);
      const decoded = decoder.decodePacket(encoder.encodePacket(header, payload));
      assert.deepStrictEqual(decoded, { header, payload, compressed: i > 0 });
    }
  });

  it("rejects a datagram over the limit as 'too-large'", () => {
    assertDecodeError(() => new MiniHeaderDecoder().decodePacket(new Uint8Array(MAX_DATAGRAM_BYTES + 1).fill(0x92)), 'too-large', 'mini-header');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FIXED_HEADER_BYTES,
  type MediaHeader,
  QualityTier,
  decodeMediaHeader,
  decodeMediaPacket,
  encodeMediaHeader,
  encodeMediaPacket,
  mediaHeaderLength,
  quantizeQualityReport,
} from '../../core/wire/media-header.js';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

const FIXED = '02 1234 00000960 08 01 0005 03 05 02';

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

const REPORT = { fractionLost: 26, rttMs: 120, jitterMs: 15 };

const GOLDEN: { name: string; bytes: string; header: MediaHeader }[] = [
  { name: 'source packet', bytes: `14 ${FIXED}`, header: BASE },
  {
    name: 'repair packet',
    bytes: '14 02 1235 00000d20 88 01 0005 05 05 02',
    header: { ...BASE, sequence: 0x1235, timestamp: 3360, fec: { ...BASE.fec, symbol: 5, repair: true } },
  },
  { name: 'with a quality report', bytes: `16 ${FIXED} | 1a 0078 000f`, header: { ...BASE, report: REPORT } },
  {
    name: 'with a report and an extension',
    bytes: `17 ${FIXED} | 1a 0078 000f | 05 01 03 aabbcc`,
    header: { ...BASE, report: REPORT, extensions: [{ id: 1, data: hex('aabbcc') }] },
  },
  {
    name: 'with two empty extensions',
    bytes: `15 ${FIXED} | 04 07 00 08 00`,
    header: { ...BASE, extensions: [{ id: 7, data: hex('') }, { id: 8, data: hex('') }] },
  },
  {
    name: 'every field at its maximum',
    bytes: '18 fe ffff ffffffff ff ff ffff ff ff ff',
    header: {
      version: 1,
      codecId: 254,
      tier: QualityTier.CATASTROPHIC,
      sequence: 0xffff,
      timestamp: 0xffff_ffff,
      frameSamples: 127 * 120,
      fec: { schemeId: 255, block: 0xffff, symbol: 255, repair: true, k: 255, r: 255 },
      extensions: [],
    },
  },
  {
    name: 'every field at its minimum',
    bytes: '10 00 0000 00000000 01 00 0000 00 00 00',
    header: {
      version: 1,
      codecId: 0,
      tier: QualityTier.GOOD,
      sequence: 0,
      timestamp: 0,
      frameSamples: 120,
      fec: { schemeId: 0, block: 0, symbol: 0, repair: false, k: 0, r: 0 },
      extensions: [],
    },
  },
];

const INVALID: { name: string; bytes: string; reason: string }[] = [
  { name: 'empty', bytes: '', reason: 'truncated' },
  { name: 'first byte only', bytes: '14', reason: 'truncated' },
  { name: 'fixed part one byte short', bytes: '14 02 1234 00000960 08 01 0005 03 05', reason: 'truncated' },
  { name: 'version 0', bytes: `04 ${FIXED}`, reason: 'bad-version' },
  { name: 'version 2', bytes: `24 ${FIXED}`, reason: 'bad-version' },
  { name: 'version 7', bytes: `74 ${FIXED}`, reason: 'bad-version' },
  { name: 'a mini header', bytes: '92 35 05 04 d5', reason: 'bad-version' },
  { name: 'a trunk frame', bytes: 'c0 01 0001 14', reason: 'bad-version' },
  { name: 'reserved tier 3', bytes: `1c ${FIXED}`, reason: 'bad-field' },
  { name: 'reserved codec id 255', bytes: '14 ff 1234 00000960 08 01 0005 03 05 02', reason: 'bad-field' },
  { name: 'zero frame duration', bytes: '14 02 1234 00000960 00 01 0005 03 05 02', reason: 'bad-field' },
  { name: 'repair flag with zero frame duration', bytes: '14 02 1234 00000960 80 01 0005 03 05 02', reason: 'bad-field' },
  { name: 'report flag without a report', bytes: `16 ${FIXED}`, reason: 'truncated' },
  { name: 'report cut short', bytes: `16 ${FIXED} | 1a 0078 00`, reason: 'truncated' },
  { name: 'extension flag without a block', bytes: `15 ${FIXED}`, reason: 'truncated' },
  { name: 'empty extension block', bytes: `15 ${FIXED} | 00`, reason: 'bad-extension' },
  { name: 'extension block cut short', bytes: `15 ${FIXED} | 05 01 03 aa`, reason: 'truncated' },
  { name: 'extension element header overruns its block', bytes: `15 ${FIXED} | 01 07 00`, reason: 'bad-extension' },
  { name: 'extension data overruns its block', bytes: `15 ${FIXED} | 03 01 05 aa bb cc dd ee`, reason: 'bad-extension' },
  { name: 'extension after a cut report', bytes: `17 ${FIXED} | 1a 00`, reason: 'truncated' },
];

describe('media header: golden bytes', () => {
  for (const { name, bytes, header } of GOLDEN) {
    it(`encodes and decodes ${name}`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodeMediaHeader(header)), toHex(wire));
      assert.equal(mediaHeaderLength(header), wire.length);
      assert.deepStrictEqual(decodeMediaHeader(atOffset(wire)), { header, headerLength: wire.length });
    });
  }

  for (const { name, bytes, reason } of INVALID) {
    it(`rejects ${name} with '${reason}'`, () => {
      assertDecodeError(() => decodeMediaHeader(atOffset(hex(bytes))), reason, 'media-header');
    });
  }

  it('is 15 bytes without report and extensions', () => {
    assert.equal(FIXED_HEADER_BYTES, 15);
    assert.equal(encodeMediaHeader(BASE).length, 15);
  });
});

describe('media packet', () => {
  it('splits header and payload, the payload being a view', () => {
    const wire = hex(`16 ${FIXED} | 1a 0078 000f | deadbeef`);
    const { header, payload } = decodeMediaPacket(wire);
    assert.deepStrictEqual(header, { ...BASE, report: REPORT });
    assert.equal(toHex(payload), 'deadbeef');
    assert.equal(payload.buffer, wire.buffer);
  });

  it('encodes header then payload', () => {
    assert.equal(toHex(encodeMediaPacket(BASE, hex('0102'))), toHex(hex(`14 ${FIXED} 0102`)));
  });

  it('accepts an empty payload', () => {
    assert.equal(decodeMediaPacket(encodeMediaPacket(BASE, new Uint8Array(0))).payload.length, 0);
  });

  it('holds the datagram limit on both sides', () => {
    const largest = new Uint8Array(MAX_DATAGRAM_BYTES - 15);
    assert.equal(encodeMediaPacket(BASE, largest).length, MAX_DATAGRAM_BYTES);
    assert.throws(() => encodeMediaPacket(BASE, new Uint8Array(largest.length + 1)), { name: 'InternalError' });
    const oversized = new Uint8Array(MAX_DATAGRAM_BYTES + 1);
    oversized.set(encodeMediaHeader(BASE));
    assertDecodeError(() => decodeMediaPacket(oversized), 'too-large', 'media-header');
  });
});

describe('media header: encoder checks', () => {
  const invalidHeaders: [string, MediaHeader][] = [
    ['version 2', { ...BASE, version: 2 as 1 }],
    ['codec id 255', { ...BASE, codecId: 255 }],
    ['negative codec id', { ...BASE, codecId: -1 }],
    ['tier 3', { ...BASE, tier: 3 as QualityTier }],
    ['sequence 65536', { ...BASE, sequence: 65536 }],
    ['fractional sequence', { ...BASE, sequence: 1.5 }],
    ['timestamp 2^32', { ...BASE, timestamp: 2 ** 32 }],
    ['NaN timestamp', { ...BASE, timestamp: Number.NaN }],
    ['frame not a multiple of 120 samples', { ...BASE, frameSamples: 100 }],
    ['zero frame', { ...BASE, frameSamples: 0 }],
    ['frame over 127 units', { ...BASE, frameSamples: 128 * 120 }],
    ['fec block 65536', { ...BASE, fec: { ...BASE.fec, block: 65536 } }],
    ['fec symbol 256', { ...BASE, fec: { ...BASE.fec, symbol: 256 } }],
    ['fec k 256', { ...BASE, fec: { ...BASE.fec, k: 256 } }],
    ['fec scheme 256', { ...BASE, fec: { ...BASE.fec, schemeId: 256 } }],
    ['report loss 256', { ...BASE, report: { ...REPORT, fractionLost: 256 } }],
    ['report rtt 65536', { ...BASE, report: { ...REPORT, rttMs: 65536 } }],
    ['extension id 256', { ...BASE, extensions: [{ id: 256, data: new Uint8Array(0) }] }],
    ['extension block over 255 bytes', { ...BASE, extensions: [{ id: 1, data: new Uint8Array(254) }] }],
  ];
  for (const [name, header] of invalidHeaders) {
    it(`refuses ${name} with InternalError`, () => {
      assert.throws(() => encodeMediaHeader(header), { name: 'InternalError' });
    });
  }

  it('accepts the largest extension block', () => {
    const header = { ...BASE, extensions: [{ id: 1, data: new Uint8Array(253) }] };
    assert.equal(encodeMediaHeader(header).length, 15 + 1 + 255);
    assert.deepStrictEqual(decodeMediaHeader(encodeMediaHeader(header)).header, header);
  });
});

describe('quantizeQualityReport', () => {
  it('quantizes loss to 1/256 and rounds times', () => {
    assert.deepStrictEqual(quantizeQualityReport({ lossRatio: 0.1, rttMs: 120.4, jitterMs: 14.6 }), {
      fractionLost: 26,
      rttMs: 120,
      jitterMs: 15,
    });
  });

  it('saturates out-of-range values', () => {
    assert.deepStrictEqual(quantizeQualityReport({ lossRatio: 1, rttMs: 70_000, jitterMs: Infinity }), {
      fractionLost: 255,
      rttMs: 65535,
      jitterMs: 65535,
    });
    assert.deepStrictEqual(quantizeQualityReport({ lossRatio: -0.5, rttMs: Number.NaN, jitterMs: -3 }), {
      fractionLost: 0,
      rttMs: 0,
      jitterMs: 0,
    });
  });
});

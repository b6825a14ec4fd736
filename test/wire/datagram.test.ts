import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc8 } from '../../core/wire/crc8.js';
import { datagramKind } from '../../core/wire/datagram.js';
import { assertDecodeError, hex } from './helpers.js';

describe('datagramKind', () => {
  const cases: [string, string][] = [
    ['10', 'full'],
    ['1f', 'full'],
    ['20', 'full'],
    ['7f', 'full'],
    ['80', 'mini'],
    ['bf', 'mini'],
    ['c0', 'trunk'],
  ];
  for (const [first, kind] of cases) {
    it(`reads first byte 0x${first} as ${kind}`, () => {
      assert.equal(datagramKind(hex(`${first} 00 00`)), kind);
    });
  }

  for (const first of ['00', '0f', 'c1', 'ff']) {
    it(`rejects reserved first byte 0x${first}`, () => {
      assertDecodeError(() => datagramKind(hex(first)), 'bad-marker', 'datagram');
    });
  }

  it('rejects an empty datagram', () => {
    assertDecodeError(() => datagramKind(new Uint8Array(0)), 'truncated', 'datagram');
  });
});

describe('crc8 (CRC-8/ROHC)', () => {
  it('has the catalogue check value', () => {
    assert.equal(crc8(new TextEncoder().encode('123456789')), 0xd0);
  });

  it('is the initial value for no bytes', () => {
    assert.equal(crc8(new Uint8Array(0)), 0xff);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkFramesToEncode, collectBlock, validateFecParams } from '../../core/media/fec/block.js';
import { bareRepairSymbolSize, mulAddSymbolInto, readSymbol, symbolSizeFor, writeSymbol } from '../../core/media/fec/symbols.js';
import type { FecPacket, FecParams } from '../../core/media/fec-types.js';

const params: FecParams = { k: 4, r: 2, maxFrameBytes: 10 };

function throwsNamed(run: () => unknown, name: string, reason?: string): void {
  assert.throws(run, (err: Error & { reason?: string }) => {
    assert.equal(err.name, name, err.message);
    if (reason !== undefined) assert.equal(err.reason, reason, err.message);
    return true;
  });
}

describe('symbols', () => {
  test('a frame becomes u16 length + bytes + zero padding (golden bytes)', () => {
    const symbol = new Uint8Array(6);
    writeSymbol(Uint8Array.of(0xaa, 0xbb), symbol);
    assert.deepEqual(symbol, Uint8Array.of(0x00, 0x02, 0xaa, 0xbb, 0x00, 0x00));
    assert.deepEqual(readSymbol('t', symbol), Uint8Array.of(0xaa, 0xbb));
  });

  test('mulAddSymbolInto with c = 1 XORs the padded symbol in', () => {
    const acc = Uint8Array.of(0x01, 0x00, 0x0f, 0xf0, 0x00);
    mulAddSymbolInto(acc, Uint8Array.of(0xff), 1);
    assert.deepEqual(acc, Uint8Array.of(0x01, 0x01, 0xf0, 0xf0, 0x00));
  });

  test('symbol size is the longest frame plus 2', () => {
    assert.equal(symbolSizeFor([new Uint8Array(3), new Uint8Array(0), new Uint8Array(7)]), 9);
  });

  test('impossible recovered symbols are DecodeError bad-symbol', () => {
    throwsNamed(() => readSymbol('t', Uint8Array.of(0x00)), 'DecodeError', 'bad-symbol');
    throwsNamed(() => readSymbol('t', Uint8Array.of(0x00, 0x03, 1, 2)), 'DecodeError', 'bad-symbol');
    throwsNamed(() => readSymbol('t', Uint8Array.of(0x00, 0x01, 1, 2)), 'DecodeError', 'bad-symbol');
    throwsNamed(() => readSymbol('t', Uint8Array.of(0xff, 0xff)), 'DecodeError', 'bad-symbol');
  });

  test('repair payloads of one block must agree and fit the received frames', () => {
    const block = collectBlock('t', params, [{ index: 1, repair: false, data: new Uint8Array(5) }], 4);
    block.repairs[0] = new Uint8Array(7);
    assert.equal(bareRepairSymbolSize('t', params, block), 7);
    block.repairs[1] = new Uint8Array(8);
    throwsNamed(() => bareRepairSymbolSize('t', params, block), 'DecodeError', 'bad-length');
    block.repairs = [new Uint8Array(6)];
    throwsNamed(() => bareRepairSymbolSize('t', params, block), 'DecodeError', 'bad-length');
    block.repairs = [new Uint8Array(13)];
    throwsNamed(() => bareRepairSymbolSize('t', params, block), 'DecodeError', 'bad-length');
  });
});

describe('params and encoder input', () => {
  test('valid params pass; each bad field is a UsageError naming it', () => {
    validateFecParams('t', params);
    validateFecParams('t', { k: 64, r: 64, maxFrameBytes: 4096 });
    for (const bad of [{ k: 0 }, { k: 65 }, { r: -1 }, { r: 65 }, { maxFrameBytes: 0 }, { k: Number.NaN }, { r: 1.5 }]) {
      throwsNamed(() => validateFecParams('t', { ...params, ...bad }), 'UsageError');
    }
    throwsNamed(() => validateFecParams('t', params, { maxR: 0 }), 'UsageError');
  });

  test('empty or oversized blocks and frames are PluginError', () => {
    checkFramesToEncode('t', params, [new Uint8Array(0), new Uint8Array(10)]);
    throwsNamed(() => checkFramesToEncode('t', params, []), 'PluginError');
    throwsNamed(() => checkFramesToEncode('t', params, new Array(5).fill(new Uint8Array(1))), 'PluginError');
    throwsNamed(() => checkFramesToEncode('t', params, [new Uint8Array(11)]), 'PluginError');
  });
});

describe('collectBlock', () => {
  const src = (index: number): FecPacket => ({ index, repair: false, data: Uint8Array.of(index) });
  const rep = (index: number): FecPacket => ({ index, repair: true, data: Uint8Array.of(0, 1, index) });

  test('sorts packets into slots and lists lost frames', () => {
    const block = collectBlock('t', params, [rep(5), src(2), src(0)], 4);
    assert.deepEqual(block.sources, [Uint8Array.of(0), undefined, Uint8Array.of(2), undefined]);
    assert.deepEqual(block.repairs, [undefined, Uint8Array.of(0, 1, 5)]);
    assert.deepEqual(block.lost, [1, 3]);
  });

  test('a short block puts its repair packets right after its frames', () => {
    const block = collectBlock('t', params, [src(0), rep(2), rep(3)], 2);
    assert.equal(block.repairs.filter(Boolean).length, 2);
  });

  test('each kind of malformed block has its own reason', () => {
    const cases: [FecPacket[], number, string][] = [
      [[src(0)], 0, 'bad-k'],
      [[src(0)], 5, 'bad-k'],
      [[src(0)], 2.5, 'bad-k'],
      [[{ ...src(0), index: 6 }], 4, 'bad-index'],
      [[{ ...src(0), index: -1 }], 4, 'bad-index'],
      [[{ ...src(0), index: 0.5 }], 4, 'bad-index'],
      [[{ ...src(0), repair: true }], 4, 'repair-flag'],
      [[{ ...rep(4), repair: false }], 4, 'repair-flag'],
      [[src(1), src(1)], 4, 'duplicate-index'],
      [[{ index: 0, repair: false, data: new Uint8Array(11) }], 4, 'too-large'],
      [[{ index: 0, repair: false } as FecPacket], 4, 'bad-payload'],
      [[null as unknown as FecPacket], 4, 'bad-packet'],
    ];
    for (const [packets, k, reason] of cases) throwsNamed(() => collectBlock('t', params, packets, k), 'DecodeError', reason);
  });
});

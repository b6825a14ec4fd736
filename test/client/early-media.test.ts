import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EARLY_DATAGRAM_MS, EarlyDatagrams, MAX_EARLY_DATAGRAMS, MAX_EARLY_SLOTS } from '../../core/client/early-media.js';

const d = (n: number) => Uint8Array.of(n);

test('datagrams that came before their slot was admitted are handed over in order, once', () => {
  const early = new EarlyDatagrams();
  early.hold(7, d(1), 0);
  early.hold(8, d(9), 1);
  early.hold(7, d(2), 20);
  assert.deepEqual(early.take(7, 30).map((x) => x[0]), [1, 2]);
  assert.deepEqual(early.take(7, 31), [], 'taken once');
  assert.equal(early.size, 1, "the other slot's datagram is still held");
  assert.equal(early.delivered, 2);
  assert.equal(early.dropped, 0);
});

test('a datagram older than EARLY_DATAGRAM_MS expires unread (a slot never admitted, or refused)', () => {
  const early = new EarlyDatagrams();
  early.hold(7, d(1), 0);
  early.hold(7, d(2), 100);
  assert.deepEqual(early.take(7, EARLY_DATAGRAM_MS + 50).map((x) => x[0]), [2]);
  assert.equal(early.dropped, 1);
  // Expiry also happens while holding, so a slot that is never admitted holds nothing for long.
  early.hold(9, d(3), 0);
  early.hold(10, d(4), EARLY_DATAGRAM_MS + 1);
  assert.equal(early.size, 1);
});

test('bounded: a flood from one slot keeps only the newest MAX_EARLY_DATAGRAMS', () => {
  const early = new EarlyDatagrams();
  for (let i = 0; i < 1000; i++) early.hold(7, d(i % 256), 1);
  assert.equal(early.size, MAX_EARLY_DATAGRAMS);
  assert.equal(early.dropped, 1000 - MAX_EARLY_DATAGRAMS);
  const taken = early.take(7, 2);
  assert.equal(taken.length, MAX_EARLY_DATAGRAMS);
  assert.equal(taken[taken.length - 1][0], 999 % 256, 'the newest kept');
});

test('bounded: many slots (someone joining under many slots) keep at most MAX_EARLY_SLOTS, the oldest slot giving way', () => {
  const early = new EarlyDatagrams();
  for (let slot = 1; slot <= 100; slot++) early.hold(slot, d(slot), slot);
  assert.equal(new Set(Array.from({ length: 100 }, (_, i) => i + 1).filter((s) => early.take(s, 100).length > 0)).size, MAX_EARLY_SLOTS);
  assert.equal(early.size, 0);
  // The slots kept are the latest ones.
  const kept = new EarlyDatagrams();
  for (let slot = 1; slot <= 10; slot++) kept.hold(slot, d(slot), slot);
  assert.deepEqual(kept.take(10, 11).map((x) => x[0]), [10]);
  assert.deepEqual(kept.take(1, 11), []);
});

test('clear() (the relay link was lost) drops everything held', () => {
  const early = new EarlyDatagrams();
  early.hold(7, d(1), 0);
  early.hold(8, d(2), 0);
  early.clear();
  assert.equal(early.size, 0);
  assert.equal(early.dropped, 2);
  assert.deepEqual(early.take(7, 1), []);
});

test('take(..., usable): handed over from the first usable datagram (a stream that starts mid-way: mini headers before its first full header)', () => {
  const early = new EarlyDatagrams();
  for (const n of [0x81, 0x82, 0x01, 0x83]) early.hold(7, d(n), 0);
  const full = (x: Uint8Array) => (x[0] & 0xc0) !== 0x80;
  assert.deepEqual(early.take(7, 1, full).map((x) => x[0]), [0x01, 0x83], 'the mini ones after it expand against it');
  assert.equal(early.dropped, 2);
  early.hold(8, d(0x81), 0);
  assert.deepEqual(early.take(8, 1, full), [], 'nothing usable: nothing handed over');
  assert.equal(early.size, 0);
  assert.equal(early.dropped, 3);
});

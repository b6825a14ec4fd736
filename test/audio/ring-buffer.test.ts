import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SampleRing } from '../../core/audio/ring-buffer.js';

const seq = (from: number, count: number) => Int16Array.from({ length: count }, (_, i) => from + i);

test('reads exactly what was written, in order, across the wrap-around', () => {
  const ring = new SampleRing(8);
  ring.write(seq(0, 6));
  assert.deepEqual(ring.read(4), seq(0, 4));
  ring.write(seq(6, 5)); // wraps: 2 old + 5 new = 7 of 8
  assert.equal(ring.available(), 7);
  assert.deepEqual(ring.read(7), seq(4, 7));
  assert.equal(ring.available(), 0);
  assert.equal(ring.dropped, 0);
  assert.equal(ring.overflows, 0);
});

test('read() takes nothing unless a whole request is buffered; readUpTo() takes what there is', () => {
  const ring = new SampleRing(8);
  ring.write(seq(0, 3));
  assert.equal(ring.read(4), undefined);
  assert.equal(ring.available(), 3);
  assert.deepEqual(ring.readUpTo(5), seq(0, 3));
  assert.deepEqual(ring.readUpTo(5), new Int16Array(0));
});

test('overflow drops the oldest samples and counts them', () => {
  const ring = new SampleRing(5);
  ring.write(seq(0, 4));
  assert.equal(ring.write(seq(4, 3)), 2);
  assert.deepEqual(ring.read(5), seq(2, 5));
  assert.equal(ring.dropped, 2);
  assert.equal(ring.overflows, 1);
});

test('a write larger than the capacity keeps only its newest samples', () => {
  const ring = new SampleRing(4);
  ring.write(seq(0, 2));
  assert.equal(ring.write(seq(2, 10)), 8);
  assert.deepEqual(ring.read(4), seq(8, 4));
  assert.equal(ring.dropped, 8);
  assert.equal(ring.overflows, 1);
});

test('rejects a capacity that is not a positive integer', () => {
  assert.throws(() => new SampleRing(0), { name: 'InternalError' });
  assert.throws(() => new SampleRing(2.5), { name: 'InternalError' });
});

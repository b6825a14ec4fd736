import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Prng } from '../../core/media/prng.js';

const draw = (rng: Prng, n: number, f: (r: Prng) => number) => Array.from({ length: n }, () => f(rng));

describe('Prng', () => {
  it('repeats for a seed and differs across seeds and derived streams', () => {
    const a = draw(new Prng(1), 100, (r) => r.nextU32());
    assert.deepEqual(draw(new Prng(1), 100, (r) => r.nextU32()), a);
    assert.notDeepEqual(draw(new Prng(2), 100, (r) => r.nextU32()), a);
    assert.notDeepEqual(
      draw(Prng.derive(1, 0), 100, (r) => r.nextU32()),
      draw(Prng.derive(1, 1), 100, (r) => r.nextU32()),
    );
  });

  it('draws uniform and normal values with the right moments', () => {
    const rng = new Prng(99);
    const u = draw(rng, 100_000, (r) => r.next());
    assert.ok(u.every((x) => x >= 0 && x < 1));
    const uMean = u.reduce((s, x) => s + x, 0) / u.length;
    assert.ok(Math.abs(uMean - 0.5) < 0.005, `uniform mean ${uMean}`);
    const z = draw(rng, 100_000, (r) => r.normal(10, 2));
    const zMean = z.reduce((s, x) => s + x, 0) / z.length;
    const zSd = Math.sqrt(z.reduce((s, x) => s + (x - zMean) ** 2, 0) / z.length);
    assert.ok(Math.abs(zMean - 10) < 0.03 && Math.abs(zSd - 2) < 0.03, `normal ${zMean} / ${zSd}`);
  });

  it('rejects a non-integer seed', () => {
    assert.throws(() => new Prng(0.5), { name: 'InternalError' });
  });
});

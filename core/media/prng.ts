/**
 * A small seeded pseudo-random number generator for reproducible simulations (network
 * impairment, sweeps, property tests). Not for cryptography.
 *
 * The generator is sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit
 * state, passes PractRand/BigCrush), seeded through splitmix32 so that nearby seeds
 * (0, 1, 2, ...) give unrelated streams.
 */
import { InternalError } from '../errors.js';

const TWO_POW_32 = 4_294_967_296;
/** Outputs discarded after seeding so the counter-based state is well mixed. */
const WARM_UP_ROUNDS = 12;

/** splitmix32: a stateless-step mixer used to expand one 32-bit seed into many words. */
function splitmix32(state: number): { state: number; value: number } {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return { state: next, value: (z ^ (z >>> 16)) >>> 0 };
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** `seed` is any integer; it is reduced to 32 bits. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new InternalError(`prng: seed must be a safe integer, got ${seed}`);
    let mix = { state: seed | 0, value: 0 };
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      mix = splitmix32(mix.state);
      words.push(mix.value);
    }
    [this.a, this.b, this.c, this.d] = words;
    for (let i = 0; i < WARM_UP_ROUNDS; i++) this.nextU32();
  }

  /** Derive an independent generator for a sub-stream (e.g. one per impairment kind). */
  static derive(seed: number, stream: number): Prng {
    return new Prng(splitmix32((seed | 0) ^ Math.imul(stream + 1, 0x27d4eb2d)).value | 0);
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** True with probability `p` (0..1). */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A normally distributed value (Box-Muller transform). */
  normal(mean = 0, sd = 1): number {
    const u = 1 - this.next(); // (0, 1]: log(u) is finite
    const v = this.next();
    return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

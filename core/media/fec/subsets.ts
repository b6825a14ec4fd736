/** Enumerating erasure patterns: which e of n packets of a block are lost. */

/**
 * Every e-element subset of 0..n-1 as an ascending index array, in lexicographic order.
 * The yielded array is reused between steps: copy it to keep it.
 */
export function* subsets(n: number, e: number): Generator<readonly number[]> {
  if (e < 0 || e > n) return;
  const chosen = Array.from({ length: e }, (_, i) => i);
  while (true) {
    yield chosen;
    let i = e - 1;
    while (i >= 0 && chosen[i] === n - e + i) i--;
    if (i < 0) return;
    chosen[i]++;
    for (let t = i + 1; t < e; t++) chosen[t] = chosen[t - 1] + 1;
  }
}

/** n choose e (0 outside 0..n). Exact for the block sizes FEC uses. */
export function binomial(n: number, e: number): number {
  if (e < 0 || e > n) return 0;
  let result = 1;
  for (let i = 1; i <= e; i++) result = (result * (n - e + i)) / i;
  return Math.round(result);
}

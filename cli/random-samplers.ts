// Seeded random sampling for generated load (`sluice load`, benchmarks): a repeatable PRNG and a Zipf sampler,
// so a run with the same seed sends the same entities in the same order.

/** Sampler of ranks 1..n with P(k) ∝ 1/k^s, by inverse CDF over a precomputed table. */
export function zipf(n: number, s = 1.1, rnd: () => number = Math.random): () => number {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let k = 1; k <= n; k++) {
    acc += 1 / k ** s;
    cdf[k - 1] = acc;
  }
  for (let k = 0; k < n; k++) cdf[k]! /= acc;
  return () => {
    const u = rnd();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** Deterministic PRNG (mulberry32) so runs are repeatable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

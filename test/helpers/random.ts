// Seeded pseudo-random numbers for tests: the same values on every run and machine. Two generators, each
// kept as the recorded expectations were made with it: an LCG (lcg, lcgFloats, randomPromptIds) and xorshift32
// (randomArray).

/**
 * The 32-bit linear congruential generator of Numerical Recipes (x' = 1664525 x + 1013904223 mod 2^32):
 * each call returns the next state, an unsigned 32-bit integer. Fine for test data, not for anything else.
 */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

/** `n` f32 values in [-scale/2, scale/2) from lcg(seed). */
export function lcgFloats(n: number, seed: number, scale = 2): Float32Array {
  const next = lcg(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() / 2 ** 32 - 0.5) * scale;
  return out;
}

/** `n` values uniform in [-scale, scale) from a xorshift32 stream of `seed` (0 counts as 1). */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/**
 * `n` prompt ids of the Llama-2 vocabulary: BOS (1), then ids in [3, 31993) (no control tokens) from the
 * C library's rand() recurrence (x' = 1103515245 x + 12345 mod 2^32, computed in doubles as the recorded
 * expectations were).
 */
export function randomPromptIds(n: number, seed: number): number[] {
  const out = [1];
  let s = seed;
  for (let i = 1; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out.push(3 + (s % 31990));
  }
  return out;
}

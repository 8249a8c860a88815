// The token sampler: logit processors, then a seeded draw.
//
// Order in which the processors apply to one position's logits (vocab,) f32:
//   1. repetition penalty   (CTRL, Keskar et al. 2019, as in HF's RepetitionPenaltyLogitsProcessor):
//                            for every id in prompt + generated, l > 0 ? l / p : l * p
//   2. presence/frequency   (OpenAI's additive definitions, over generated tokens only):
//                            l -= presence * (count > 0) + frequency * count
//   3. temperature          l / T; T = 0 is greedy: argmax, ties to the lowest id (steps 4-7 skipped)
//   4. top-k                keep the logits >= the k-th largest (ties at the boundary kept); 0 = off
//   5. top-p (nucleus, Holtzman et al. 2019): keep the smallest set of most probable tokens whose
//                            probability sums to >= top_p (ties ordered by lower id), at least one
//   6. min-p                drop tokens with p < min_p * p_max
//   7. draw                 inverse CDF over the kept tokens in ascending id order, u from the PRNG
// Probabilities in 5-7 are softmax of the logits after temperature and the earlier filters.
// A removed token's logit becomes -Infinity; NaN logits count as removed.
//
// Log-probabilities (the API's `logprobs`) are log-softmax of the logits after steps 1-3: the
// penalties and the temperature (and any constrained-decoding mask, applied before the sampler),
// before the truncation filters 4-6; with temperature 0, after the penalties alone (temperature 1).
//
// Each processor is a pure function: it reads `logits` and writes `out` (a fresh copy unless
// given; pass `out === logits` to work in place). Costs for a vocab V: O(V) per processor,
// O(V log k) for top-k, and top-p buckets by probability and sorts only the bucket at the edge.
//
// The PRNG is xoshiro128** (Blackman & Vigna 2018) seeded through SplitMix64 from a 63-bit seed:
// integer-only, so the same seed gives the same u sequence in every JS engine. (The draw itself
// uses Math.exp, which the major engines compute identically through fdlibm ports.)

import { prngNextRef, prngState } from '../kernels/sample.ts';
import type { ResidentSampling, SamplingParams, TokenLogprob, TokenSampler } from './generation-types.ts';

/** Largest accepted seed: 2^63 - 1. */
export const MAX_SEED = (1n << 63n) - 1n;

/** HF/CTRL multiplicative penalty over the set of `tokens` (each id penalized once). */
export function applyRepetitionPenalty(
  logits: Float32Array,
  tokens: Iterable<number>,
  penalty: number,
  out: Float32Array = logits.slice(),
): Float32Array {
  if (out !== logits) out.set(logits);
  if (penalty === 1) return out;
  const seen = tokens instanceof Set ? (tokens as Set<number>) : new Set(tokens);
  for (const id of seen) {
    if (id < 0 || id >= logits.length) continue;
    const l = logits[id]!;
    out[id] = l > 0 ? l / penalty : l * penalty;
  }
  return out;
}

/** Counts of each id in `tokens`. */
export function countTokens(tokens: Iterable<number>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const id of tokens) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** OpenAI's additive penalties: l -= presence * (count > 0) + frequency * count, per generated id. */
export function applyPresenceFrequencyPenalty(
  logits: Float32Array,
  counts: ReadonlyMap<number, number>,
  presence: number,
  frequency: number,
  out: Float32Array = logits.slice(),
): Float32Array {
  if (out !== logits) out.set(logits);
  if (presence === 0 && frequency === 0) return out;
  for (const [id, count] of counts) {
    if (id < 0 || id >= logits.length || count <= 0) continue;
    out[id] = logits[id]! - presence - frequency * count;
  }
  return out;
}

/** l / temperature, for temperature > 0 (0 means greedy and is handled by the caller). */
export function applyTemperature(
  logits: Float32Array,
  temperature: number,
  out: Float32Array = logits.slice(),
): Float32Array {
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0 here, got ${temperature}`);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! / temperature;
  return out;
}

/** Index of the largest logit; ties go to the lowest id; NaN never wins. -1 if all are -inf/NaN. */
export function argmax(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    if (l > bestValue) {
      bestValue = l;
      best = i;
    }
  }
  return best;
}

/** Keeps the logits >= the k-th largest finite logit (ties at the boundary stay); k = 0 is off. */
export function applyTopK(logits: Float32Array, k: number, out: Float32Array = logits.slice()): Float32Array {
  if (out !== logits) out.set(logits);
  if (k <= 0 || k >= logits.length) return out;
  // Min-heap of the k largest values seen so far: O(V log k), no sort of the vocab.
  const heap = new Float32Array(k);
  let size = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (!(v > -Infinity)) continue;
    if (size < k) {
      let j = size++;
      heap[j] = v;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (heap[parent]! <= heap[j]!) break;
        const t = heap[parent]!;
        heap[parent] = heap[j]!;
        heap[j] = t;
        j = parent;
      }
    } else if (v > heap[0]!) {
      heap[0] = v;
      let j = 0;
      for (;;) {
        const l = 2 * j + 1;
        const r = l + 1;
        let m = j;
        if (l < k && heap[l]! < heap[m]!) m = l;
        if (r < k && heap[r]! < heap[m]!) m = r;
        if (m === j) break;
        const t = heap[m]!;
        heap[m] = heap[j]!;
        heap[j] = t;
        j = m;
      }
    }
  }
  if (size < k) return out; // fewer than k candidates: nothing to drop
  const threshold = heap[0]!;
  for (let i = 0; i < out.length; i++) if (!(logits[i]! >= threshold)) out[i] = -Infinity;
  return out;
}

/** Largest finite logit, or -Infinity. */
function maxLogit(logits: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > m) m = logits[i]!;
  return m;
}

/** Top-p buckets: TOP_P_BINS bins over lmax - l in [0, TOP_P_RANGE); the last bin takes the rest. */
const TOP_P_BINS = 4096;
const TOP_P_RANGE = 40;

/**
 * Nucleus filter: keeps the smallest set of most probable tokens (ties by lower id) whose
 * probabilities sum to >= topP; always keeps at least one. topP >= 1 is off.
 */
export function applyTopP(logits: Float32Array, topP: number, out: Float32Array = logits.slice()): Float32Array {
  if (out !== logits) out.set(logits);
  if (topP >= 1) return out;
  const lmax = maxLogit(logits);
  if (lmax === -Infinity) return out;
  // Unnormalized weights w = exp(l - lmax) in (0, 1]; Z their sum.
  const w = new Float64Array(logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    const wi = l > -Infinity ? Math.exp(l - lmax) : 0;
    w[i] = wi;
    z += wi;
  }
  const target = topP * z;
  // Bucket the tokens by d = lmax - l (bins ordered by falling probability), walk the bins until
  // the mass reaches the target, and sort only the members of the bin where it does: O(V).
  const bin = new Uint16Array(logits.length);
  const binMass = new Float64Array(TOP_P_BINS);
  for (let i = 0; i < logits.length; i++) {
    if (w[i] === 0) continue;
    const b = Math.min(TOP_P_BINS - 1, Math.floor(((lmax - logits[i]!) * TOP_P_BINS) / TOP_P_RANGE));
    bin[i] = b;
    binMass[b] += w[i]!;
  }
  let cum = 0;
  let edge = 0;
  while (edge < TOP_P_BINS - 1 && cum + binMass[edge]! < target) cum += binMass[edge++]!;
  const keep = new Uint8Array(logits.length);
  const members: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    if (w[i] === 0) continue;
    if (bin[i]! < edge) keep[i] = 1;
    else if (bin[i] === edge) members.push(i);
  }
  members.sort((a, b) => w[b]! - w[a]! || a - b);
  for (const id of members) {
    keep[id] = 1;
    cum += w[id]!;
    if (cum >= target) break;
  }
  for (let i = 0; i < out.length; i++) if (!keep[i]) out[i] = -Infinity;
  return out;
}

/** Drops tokens whose probability is below minP times the largest probability; 0 is off. */
export function applyMinP(logits: Float32Array, minP: number, out: Float32Array = logits.slice()): Float32Array {
  if (out !== logits) out.set(logits);
  if (minP <= 0) return out;
  const lmax = maxLogit(logits);
  if (lmax === -Infinity) return out;
  // p_i / p_max = exp(l_i - l_max): no normalization needed.
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    if (!(l > -Infinity) || Math.exp(l - lmax) < minP) out[i] = -Infinity;
  }
  return out;
}

/**
 * Draws one id from softmax(logits) by inverse CDF in ascending id order, with u in [0, 1).
 * Returns the argmax when every logit is -inf/NaN (then -1 if there is nothing at all).
 */
export function drawToken(logits: Float32Array, u: number): number {
  const lmax = maxLogit(logits);
  if (lmax === -Infinity) return argmax(logits);
  let z = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    if (l > -Infinity) z += Math.exp(l - lmax);
  }
  const target = u * z;
  let cum = 0;
  let last = -1;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    if (!(l > -Infinity)) continue;
    cum += Math.exp(l - lmax);
    last = i;
    if (cum > target) return i;
  }
  return last; // u * z rounded up past the final cumulative sum
}

export function createPrng(seed: bigint): () => number {
  return prngWithState(seed).next;
}

/**
 * createPrng's generator and its live xoshiro128** state (4 words): SplitMix64-seeded xoshiro128**, 53 bits per
 * draw from two outputs, written once in kernels/sample.ts (prngState, prngNextRef) so the GPU sampler draws the
 * same numbers.
 */
function prngWithState(seed: bigint): { next: () => number; state: Uint32Array } {
  if (seed < 0n || seed > MAX_SEED) throw new RangeError(`seed must be in 0..2^63-1, got ${seed}`);
  const state = prngState(seed);
  return { next: () => prngNextRef(state), state };
}

/** A random seed in 0..2^63-1 from the platform's CSPRNG. */
export function randomSeed(): bigint {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  return ((BigInt(words[0]! & 0x7fffffff) << 32n) | BigInt(words[1]!)) & MAX_SEED;
}

/** log(sum(exp(l))) over the finite logits; -Infinity if none. */
function logSumExp(logits: Float32Array): number {
  const lmax = maxLogit(logits);
  if (lmax === -Infinity) return -Infinity;
  let z = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    if (l > -Infinity) z += Math.exp(l - lmax);
  }
  return lmax + Math.log(z);
}

/**
 * Log-probability of `token` under softmax(logits), and the `k` most likely ids (ties: lower id
 * first; ids with probability 0 are left out). O(V k), k <= 20.
 */
export function tokenLogprob(logits: Float32Array, token: number, k: number): TokenLogprob {
  const lse = logSumExp(logits);
  const lp = (id: number) => logits[id]! - lse;
  const top: { token: number; logprob: number }[] = [];
  if (k > 0) {
    const ids: number[] = []; // sorted by falling logit, then rising id
    for (let i = 0; i < logits.length; i++) {
      const l = logits[i]!;
      if (!(l > -Infinity)) continue;
      if (ids.length === k && !(l > logits[ids[k - 1]!]!)) continue;
      let j = ids.length < k ? ids.length : k - 1;
      while (j > 0 && logits[ids[j - 1]!]! < l) j--;
      ids.splice(j, 0, i);
      if (ids.length > k) ids.pop();
    }
    for (const id of ids) top.push({ token: id, logprob: lp(id) });
  }
  return { token, logprob: lp(token), top };
}

/** Steps 4-7 on a copy of `x` (x keeps the pre-truncation logits). */
function drawFiltered(x: Float32Array, params: SamplingParams, u: number): number {
  const y = x.slice();
  applyTopK(y, params.topK, y);
  applyTopP(y, params.topP, y);
  applyMinP(y, params.minP, y);
  return drawToken(y, u);
}

export interface SamplerOptions {
  /** Record a TokenLogprob per sampled token (sampler.logprobs), with this many alternatives (0..20). */
  topLogprobs?: number;
}

/**
 * A sampler for one request. `promptTokens` feed the repetition penalty; `accept(token)` records
 * each generated token (the backend calls it right after sample()). `greedy` is true when sample()
 * is a plain argmax of the logits (temperature 0 and no penalties).
 */
export function createSampler(params: SamplingParams, promptTokens: readonly number[], opts: SamplerOptions = {}): TokenSampler {
  const record = opts.topLogprobs !== undefined;
  const logprobs: TokenLogprob[] = [];
  const penaltySet = new Set<number>(promptTokens); // prompt + generated, for the repetition penalty
  const counts = new Map<number, number>(); // generated only, for presence/frequency
  const seed = params.seed ?? randomSeed();
  const prng = prngWithState(seed);
  const rand = prng.next;
  let draws = 0; // generator outputs used so far: one per sampled token (temperature > 0), none for greedy ones
  let scratch = new Float32Array(0);
  // Logprobs need the logits on the host, so such a sampler is never `greedy` (no GPU argmax).
  const greedy =
    !record && params.temperature === 0 && params.repetitionPenalty === 1 && params.presencePenalty === 0 && params.frequencyPenalty === 0;

  const accept = (token: number): void => {
    penaltySet.add(token);
    counts.set(token, (counts.get(token) ?? 0) + 1);
  };
  // A sampler without logprobs can be reproduced on the GPU (runtime/gpu-sampler.ts): `resident` tells the
  // loop its parameters and generator state, and takes the tokens the GPU picked with them.
  const resident: ResidentSampling = {
    params: { ...params, seed },
    prngState: () => prng.state.slice(),
    get draws() {
      return draws;
    },
    acceptPicked(token: number): void {
      if (params.temperature > 0) {
        rand();
        draws++;
      }
      accept(token);
    },
  };

  return {
    greedy,
    ...(record ? { logprobs } : { resident }),
    sample(logits: Float32Array): number {
      if (scratch.length !== logits.length) scratch = new Float32Array(logits.length);
      const x = scratch;
      applyRepetitionPenalty(logits, penaltySet, params.repetitionPenalty, x);
      applyPresenceFrequencyPenalty(x, counts, params.presencePenalty, params.frequencyPenalty, x);
      if (params.temperature === 0) {
        const t = argmax(x);
        if (record) logprobs.push(tokenLogprob(x, t, opts.topLogprobs!));
        return t;
      }
      applyTemperature(x, params.temperature, x);
      if (record) {
        // The logprobs are of x before truncation; the draw is from a truncated copy (same token as below).
        draws++;
        const t = drawFiltered(x, params, rand());
        logprobs.push(tokenLogprob(x, t, opts.topLogprobs!));
        return t;
      }
      applyTopK(x, params.topK, x);
      applyTopP(x, params.topP, x);
      applyMinP(x, params.minP, x);
      draws++;
      return drawToken(x, rand());
    },
    accept,
  };
}

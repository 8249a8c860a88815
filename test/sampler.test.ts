import { describe, expect, it } from 'vitest';
import {
  MAX_SEED,
  applyMinP,
  applyPresenceFrequencyPenalty,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  countTokens,
  createPrng,
  tokenLogprob,
  createSampler,
  drawToken,
} from '../runtime/sampler.ts';
import type { SamplingParams } from '../runtime/generation-types.ts';
import { prngNextRef, prngState } from '../kernels/sample.ts';

// ---- Naive CPU references: plain arrays, full sorts, written from the definitions. ----

function refRepetition(logits: number[], tokens: number[], p: number): number[] {
  const out = [...logits];
  for (const id of new Set(tokens)) out[id] = logits[id]! > 0 ? logits[id]! / p : logits[id]! * p;
  return out;
}

function refPresenceFrequency(logits: number[], generated: number[], presence: number, frequency: number): number[] {
  return logits.map((l, id) => {
    const c = generated.filter((t) => t === id).length;
    return l - presence * (c > 0 ? 1 : 0) - frequency * c;
  });
}

function refSoftmax(logits: number[]): number[] {
  const m = Math.max(...logits);
  const e = logits.map((l) => (l === -Infinity ? 0 : Math.exp(l - m)));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

function refTopK(logits: number[], k: number): number[] {
  if (k === 0) return [...logits];
  const sorted = [...logits].sort((a, b) => b - a);
  const kth = sorted[k - 1]!;
  return logits.map((l) => (l >= kth ? l : -Infinity));
}

function refTopP(logits: number[], p: number): number[] {
  const probs = refSoftmax(logits);
  const order = probs.map((_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
  const keep = new Set<number>();
  let cum = 0;
  for (const id of order) {
    keep.add(id);
    cum += probs[id]!;
    if (cum >= p) break;
  }
  return logits.map((l, i) => (keep.has(i) ? l : -Infinity));
}

function refMinP(logits: number[], minP: number): number[] {
  const probs = refSoftmax(logits);
  const pmax = Math.max(...probs);
  return logits.map((l, i) => (probs[i]! < minP * pmax ? -Infinity : l));
}

function refDraw(logits: number[], u: number): number {
  const probs = refSoftmax(logits);
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cum += probs[i]!;
    if (u < cum) return i;
  }
  return probs.length - 1 - [...probs].reverse().findIndex((p) => p > 0);
}

function refArgmax(logits: number[]): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** The whole documented pipeline on plain arrays, given the draw's u. */
function refPipeline(logits: number[], prompt: number[], generated: number[], sp: SamplingParams, u: number): number {
  let x = refRepetition(logits, [...prompt, ...generated], sp.repetitionPenalty);
  x = refPresenceFrequency(x, generated, sp.presencePenalty, sp.frequencyPenalty);
  if (sp.temperature === 0) return refArgmax(x);
  x = x.map((l) => l / sp.temperature);
  x = refTopK(x, sp.topK);
  if (sp.topP < 1) x = refTopP(x, sp.topP);
  if (sp.minP > 0) x = refMinP(x, sp.minP);
  return refDraw(x, u);
}

const f32 = (a: number[]) => Float32Array.from(a);
/** Rounds a reference through f32, as the processors store f32. */
const asF32 = (a: number[]) => Array.from(Float32Array.from(a));

// Exactly representable in f32, so the references see the same inputs as the processors.
const LOGITS = asF32([1.5, -0.7, 3.2, 0.0, -2.4, 2.9, 0.35, -0.05, 1.1, 2.2, -1.3, 0.8]);

const BASE: SamplingParams = {
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
};

describe('logit processors against the naive reference', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen ids, once each', () => {
    const tokens = [2, 1, 2, 4, 3, 2];
    const out = applyRepetitionPenalty(f32(LOGITS), tokens, 1.3);
    expect(Array.from(out)).toEqual(asF32(refRepetition(LOGITS, tokens, 1.3)));
    expect(out[2]).toBeCloseTo(3.2 / 1.3, 5); // positive: divided
    expect(out[1]).toBeCloseTo(-0.7 * 1.3, 5); // negative: multiplied
    expect(out[3]).toBe(0); // zero stays
    expect(out[5]).toBeCloseTo(2.9, 6); // unseen: unchanged
    // A penalty below 1 boosts seen tokens instead.
    expect(applyRepetitionPenalty(f32(LOGITS), [2], 0.5)[2]).toBeCloseTo(6.4, 5);
  });

  it('presence and frequency penalties follow the OpenAI additive formula over counts', () => {
    const generated = [5, 5, 5, 0, 9];
    const out = applyPresenceFrequencyPenalty(f32(LOGITS), countTokens(generated), 0.6, 0.25);
    expect(Array.from(out)).toEqual(asF32(refPresenceFrequency(LOGITS, generated, 0.6, 0.25)));
    expect(out[5]).toBeCloseTo(2.9 - 0.6 - 0.75, 5);
    expect(out[0]).toBeCloseTo(1.5 - 0.6 - 0.25, 5);
    // Negative values encourage repetition.
    expect(applyPresenceFrequencyPenalty(f32(LOGITS), countTokens([3]), -1, -2)[3]).toBeCloseTo(3, 6);
  });

  it('temperature scales logits and does not mutate its input', () => {
    const input = f32(LOGITS);
    const out = applyTemperature(input, 0.5);
    expect(Array.from(out)).toEqual(asF32(LOGITS.map((l) => l / 0.5)));
    expect(Array.from(input)).toEqual(asF32(LOGITS));
    expect(() => applyTemperature(input, 0)).toThrow(RangeError);
  });

  it('top-k keeps the k largest (boundary ties kept) and is off at 0', () => {
    for (const k of [1, 3, 5, 12]) {
      expect(Array.from(applyTopK(f32(LOGITS), k))).toEqual(asF32(refTopK(LOGITS, k)));
    }
    expect(Array.from(applyTopK(f32(LOGITS), 0))).toEqual(asF32(LOGITS));
    const tied = [1, 3, 2, 3, 0];
    expect(Array.from(applyTopK(f32(tied), 1))).toEqual(refTopK(tied, 1)); // both 3s kept
    expect(Array.from(applyTopK(f32(LOGITS), 3)).filter((l) => l > -Infinity)).toEqual(asF32([3.2, 2.9, 2.2]));
  });

  it('top-p keeps the smallest nucleus reaching top_p, at least one token', () => {
    for (const p of [0.05, 0.3, 0.5, 0.75, 0.9, 0.99]) {
      expect(Array.from(applyTopP(f32(LOGITS), p))).toEqual(asF32(refTopP(LOGITS, p)));
    }
    const one = applyTopP(f32(LOGITS), 1e-9);
    expect(Array.from(one).filter((l) => l > -Infinity)).toEqual(asF32([3.2]));
    // Ties are ordered by lower id: with two equal best tokens and tiny p, the lower id stays.
    const tie = applyTopP(f32([0, 5, 5, 1]), 0.1);
    expect(Array.from(tie)).toEqual([-Infinity, 5, -Infinity, -Infinity]);
    // After top-k removed tokens, top-p works on what is left.
    const afterK = applyTopK(f32(LOGITS), 4);
    expect(Array.from(applyTopP(afterK, 0.8))).toEqual(asF32(refTopP(Array.from(afterK), 0.8)));
  });

  it('top-p on a 32000 vocab matches the reference (sorting only above the probability floor)', () => {
    const rand = createPrng(7n);
    const big = Array.from({ length: 32000 }, () => (rand() - 0.5) * 8);
    const got = applyTopP(f32(big), 0.9);
    const want = refTopP(asF32(big), 0.9);
    expect(Array.from(got)).toEqual(asF32(want));
    expect(Array.from(got).filter((l) => l > -Infinity).length).toBeGreaterThan(1000); // a flat-ish tail
  });

  it('min-p drops tokens below min_p * p_max', () => {
    for (const m of [0.01, 0.1, 0.3, 0.6, 1]) {
      expect(Array.from(applyMinP(f32(LOGITS), m))).toEqual(asF32(refMinP(LOGITS, m)));
    }
    // p_i / p_max = exp(l_i - l_max): with min_p = 0.5 tokens within ln 2 of the max stay.
    const kept = Array.from(applyMinP(f32(LOGITS), 0.5)).filter((l) => l > -Infinity);
    expect(kept).toEqual(asF32([3.2, 2.9]));
  });

  it('argmax breaks ties to the lowest id', () => {
    expect(argmax(f32([1, 4, 2, 4, 4]))).toBe(1);
    expect(argmax(f32([-Infinity, -Infinity, 0]))).toBe(2);
  });

  it('drawToken is the inverse CDF in ascending id order', () => {
    const probs = refSoftmax(LOGITS);
    let cum = 0;
    for (let i = 0; i < LOGITS.length; i++) {
      // u just inside each bucket [cum, cum + p_i).
      expect(drawToken(f32(LOGITS), cum + probs[i]! * 0.5)).toBe(i);
      cum += probs[i]!;
    }
    expect(drawToken(f32(LOGITS), 0)).toBe(0);
    expect(drawToken(f32(LOGITS), 0.999999999)).toBe(11);
    const masked = f32([-Infinity, 2, -Infinity, 2]);
    expect(drawToken(masked, 0.49)).toBe(1);
    expect(drawToken(masked, 0.51)).toBe(3);
  });
});

describe('PRNG', () => {
  it('matches golden values of SplitMix64-seeded xoshiro128** (computed independently in Python)', () => {
    const golden: [bigint, number[]][] = [
      [0n, [0.870254774404272, 0.6697971505310978, 0.3616586206733957, 0.759190638670705]],
      [42n, [0.4137016681565887, 0.003983993377814743, 0.6500837027638867, 0.6846020186141416]],
      [MAX_SEED, [0.1266629790925342, 0.6688966289757386, 0.6056661951040103, 0.16942629615308014]],
    ];
    for (const [seed, values] of golden) {
      const r = createPrng(seed);
      expect([r(), r(), r(), r()]).toEqual(values);
    }
  });

  it('rejects seeds outside 0..2^63-1', () => {
    expect(() => createPrng(-1n)).toThrow(RangeError);
    expect(() => createPrng(MAX_SEED + 1n)).toThrow(RangeError);
  });

  it('is uniform on [0, 1) (10 bins, 100k draws)', () => {
    const r = createPrng(99n);
    const bins = new Array(10).fill(0);
    let outside = 0;
    for (let i = 0; i < 100_000; i++) {
      const u = r();
      if (!(u >= 0 && u < 1)) outside++;
      bins[Math.floor(u * 10)]++;
    }
    expect(outside).toBe(0);
    for (const b of bins) expect(Math.abs(b - 10_000)).toBeLessThan(500); // ~5 sigma
  });
});

describe('createSampler', () => {
  it('composes the processors in the documented order (equal to the reference pipeline)', () => {
    const sp: SamplingParams = {
      temperature: 0.8,
      topP: 0.85,
      topK: 6,
      minP: 0.05,
      presencePenalty: 0.4,
      frequencyPenalty: 0.3,
      repetitionPenalty: 1.2,
      seed: 1234n,
    };
    const prompt = [2, 5, 5];
    const sampler = createSampler(sp, prompt);
    const us = createPrng(1234n); // the same u stream the sampler consumes
    const logitRand = createPrng(5n);
    const generated: number[] = [];
    for (let step = 0; step < 200; step++) {
      const logits = asF32(LOGITS.map((l) => l + (logitRand() - 0.5) * 2));
      const want = refPipeline(logits, prompt, generated, sp, us());
      const got = sampler.sample(f32(logits));
      expect(got).toBe(want);
      sampler.accept(got);
      generated.push(got);
    }
    expect(new Set(generated).size).toBeGreaterThan(2);
  });

  it('reports greedy only for temperature 0 without penalties', () => {
    expect(createSampler({ ...BASE, temperature: 0 }, []).greedy).toBe(true);
    expect(createSampler({ ...BASE, temperature: 0, topK: 5, topP: 0.5, minP: 0.1 }, []).greedy).toBe(true);
    expect(createSampler({ ...BASE }, []).greedy).toBe(false);
    expect(createSampler({ ...BASE, temperature: 0, repetitionPenalty: 1.1 }, []).greedy).toBe(false);
    expect(createSampler({ ...BASE, temperature: 0, presencePenalty: 0.1 }, []).greedy).toBe(false);
    expect(createSampler({ ...BASE, temperature: 0, frequencyPenalty: -0.1 }, []).greedy).toBe(false);
  });

  it('temperature 0 is argmax after penalties, ties to the lowest id', () => {
    const s = createSampler({ ...BASE, temperature: 0 }, []);
    expect(s.sample(f32([1, 7, 7, 3]))).toBe(1);
    const p = createSampler({ ...BASE, temperature: 0, repetitionPenalty: 2 }, [1]);
    expect(p.sample(f32([1, 7, 6, 3]))).toBe(2); // 7 / 2 = 3.5 < 6
    const f = createSampler({ ...BASE, temperature: 0, frequencyPenalty: 1.5 }, []);
    expect(f.sample(f32([0, 5, 4]))).toBe(1);
    f.accept(1);
    expect(f.sample(f32([0, 5, 4]))).toBe(2); // 5 - 1.5 = 3.5 < 4
  });

  it('the same seed gives the same draws; another seed gives others', () => {
    const run = (seed: bigint) => {
      const s = createSampler({ ...BASE, seed }, []);
      const out: number[] = [];
      for (let i = 0; i < 64; i++) {
        const t = s.sample(f32(LOGITS));
        s.accept(t);
        out.push(t);
      }
      return out;
    };
    expect(run(77n)).toEqual(run(77n));
    expect(run(MAX_SEED)).toEqual(run(MAX_SEED));
    expect(run(77n)).not.toEqual(run(78n));
  });

  it('without a seed two samplers differ (random seed)', () => {
    const run = () => {
      const s = createSampler(BASE, []);
      return Array.from({ length: 64 }, () => s.sample(f32(LOGITS))).join(',');
    };
    expect(run()).not.toBe(run());
  });

  it('draws follow softmax(logits / T) within tolerance over 60k draws', () => {
    const T = 1.5;
    const s = createSampler({ ...BASE, temperature: T, seed: 2024n }, []);
    const n = 60_000;
    const counts = new Array(LOGITS.length).fill(0);
    const x = f32(LOGITS);
    for (let i = 0; i < n; i++) counts[s.sample(x)]++;
    const probs = refSoftmax(LOGITS.map((l) => l / T));
    for (let i = 0; i < probs.length; i++) {
      const sigma = Math.sqrt(n * probs[i]! * (1 - probs[i]!));
      expect(Math.abs(counts[i] - n * probs[i]!)).toBeLessThan(5 * sigma + 1);
    }
  });

  it('each filter restricts what can be drawn', () => {
    const draws = (sp: SamplingParams) => {
      const s = createSampler({ ...sp, seed: 3n }, []);
      const seen = new Set<number>();
      for (let i = 0; i < 3000; i++) seen.add(s.sample(f32(LOGITS)));
      return [...seen].sort((a, b) => a - b);
    };
    expect(draws(BASE)).toEqual([...LOGITS.keys()]);
    expect(draws({ ...BASE, topK: 3 })).toEqual([2, 5, 9]);
    expect(draws({ ...BASE, topP: 0.5 })).toEqual([2, 5]); // p(2) = .34, p(5) = .25
    expect(draws({ ...BASE, minP: 0.15 })).toEqual([0, 2, 5, 9]); // exp(l - 3.2) >= 0.15
    expect(draws({ ...BASE, temperature: 0.05 })).toEqual([2, 5]); // sharp: 3.2 vs 2.9 only
  });

  it('penalties change the draw distribution as intended', () => {
    const share = (sp: SamplingParams, prompt: number[], history: number[]) => {
      const s = createSampler({ ...sp, seed: 11n }, prompt);
      for (const t of history) s.accept(t);
      let hits = 0;
      for (let i = 0; i < 4000; i++) if (s.sample(f32(LOGITS)) === 2) hits++;
      return hits / 4000;
    };
    const base = share(BASE, [], []);
    expect(base).toBeGreaterThan(0.3);
    expect(share({ ...BASE, repetitionPenalty: 3 }, [2], [])).toBeLessThan(base / 2); // prompt token
    expect(share({ ...BASE, presencePenalty: 2 }, [2], [])).toBeCloseTo(base, 1); // prompt ignored
    expect(share({ ...BASE, presencePenalty: 2 }, [], [2])).toBeLessThan(base / 2);
    expect(share({ ...BASE, frequencyPenalty: 1 }, [], [2, 2, 2])).toBeLessThan(base / 5);
    expect(share({ ...BASE, frequencyPenalty: -1 }, [], [2])).toBeGreaterThan(base + 0.15);
  });

  it('is fast on a 32000 vocab with top-k, top-p and min-p', () => {
    const rand = createPrng(8n);
    const logits = Float32Array.from({ length: 32000 }, () => (rand() - 0.5) * 10);
    const s = createSampler({ ...BASE, topK: 40, topP: 0.9, minP: 0.02, repetitionPenalty: 1.1, seed: 1n }, [5, 6]);
    const full = createSampler({ ...BASE, topP: 0.95, seed: 1n }, []);
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) {
      s.accept(s.sample(logits));
      full.accept(full.sample(logits));
    }
    const msPerStep = (performance.now() - t0) / 100;
    expect(msPerStep).toBeLessThan(40); // ~3 ms for both samplers together on a 2-core machine
  });
});

describe('tokenLogprob', () => {
  it('log-softmax of the chosen id and the k most likely ids, ties by lower id, -inf left out', () => {
    const l = Float32Array.from([1, 3, -Infinity, 3, 0.5, 2]);
    const m = 3;
    const z = Math.log([1, 3, 3, 0.5, 2].reduce((a, v) => a + Math.exp(v - m), 0)) + m;
    const r = tokenLogprob(l, 4, 4);
    expect(r.token).toBe(4);
    expect(r.logprob).toBeCloseTo(0.5 - z, 6);
    expect(r.top.map((t) => t.token)).toEqual([1, 3, 5, 0]);
    r.top.forEach((t) => expect(t.logprob).toBeCloseTo(l[t.token]! - z, 6));
    expect(tokenLogprob(l, 1, 10).top.map((t) => t.token)).toEqual([1, 3, 5, 0, 4]); // never the -inf id
    expect(tokenLogprob(l, 1, 0).top).toEqual([]);
  });

  it('a sampler asked for logprobs records them and draws the same tokens as one that is not', () => {
    const params = { temperature: 0.8, topP: 0.9, topK: 5, minP: 0.01, presencePenalty: 0.5, frequencyPenalty: 0.2, repetitionPenalty: 1.2, seed: 3n };
    const a = createSampler(params, [5, 6]);
    const b = createSampler(params, [5, 6], { topLogprobs: 2 });
    expect(b.greedy).toBe(false);
    for (let step = 0; step < 30; step++) {
      const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i * 7.1 + step) * 3);
      const ta = a.sample(logits);
      const tb = b.sample(logits);
      expect(tb).toBe(ta);
      a.accept(ta);
      b.accept(tb);
    }
    expect(b.logprobs!.length).toBe(30);
    expect(a.logprobs).toBeUndefined();
  });
});

describe('createSampler.resident (the GPU-resident loop hands tokens back)', () => {
  const sp: SamplingParams = { temperature: 0.9, topP: 0.9, topK: 20, minP: 0, presencePenalty: 0.2, frequencyPenalty: 0.1, repetitionPenalty: 1.1, seed: 77n };
  const logitsAt = (rand: () => number) => f32(Array.from({ length: 64 }, () => (rand() - 0.5) * 6));

  it('acceptPicked() of tokens drawn elsewhere leaves the sampler where sample() + accept() would', () => {
    const a = createSampler(sp, [1, 2, 3]);
    const b = createSampler(sp, [1, 2, 3]);
    const la = createPrng(9n), lb = createPrng(9n);
    expect(b.resident!.params).toEqual(sp);
    for (let i = 0; i < 10; i++) {
      const t = a.sample(logitsAt(la));
      a.accept(t);
      logitsAt(lb);
      b.resident!.acceptPicked(t); // picked from the same state: the same draw was used
    }
    expect(a.resident!.draws).toBe(10);
    expect(b.resident!.draws).toBe(10);
    expect(b.resident!.prngState()).toEqual(a.resident!.prngState());
    for (let i = 0; i < 20; i++) {
      const l = logitsAt(la);
      logitsAt(lb);
      const t = a.sample(l);
      expect(b.sample(l)).toBe(t);
      a.accept(t);
      b.accept(t);
    }
  });

  it('the state starts where createPrng(seed) does, greedy tokens make no draws, random seeds are exposed, logprobs samplers have none', () => {
    const s = createSampler({ ...sp, temperature: 0 }, []);
    const before = s.resident!.prngState();
    s.resident!.acceptPicked(4);
    expect(s.resident!.draws).toBe(0);
    expect(s.resident!.prngState()).toEqual(before);
    const x = createSampler(sp, []);
    const st = prngState(77n); // the GPU sampler's start for this seed
    expect(x.resident!.prngState()).toEqual(st);
    x.resident!.acceptPicked(4);
    expect(x.resident!.draws).toBe(1);
    prngNextRef(st); // the GPU's draw, on the host
    expect(x.resident!.prngState()).toEqual(st);
    const r = createSampler({ ...sp, seed: undefined }, []);
    expect(typeof r.resident!.params.seed).toBe('bigint');
    expect(createSampler(sp, [], { topLogprobs: 1 }).resident).toBeUndefined();
  });
});

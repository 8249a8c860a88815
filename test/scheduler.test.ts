// Continuous batching on the real model: concurrent sequences, chunked prefill interleaved with decode,
// preemption when the KV pool runs out, prefix caching, cancellation; every output checked exactly.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel } from '../runtime/model.ts';
import { Scheduler, QueueFullError, type SchedulerOptions } from '../runtime/scheduler.ts';
import type { KvPool } from '../runtime/kv-pool.ts';
import { createSampler } from '../runtime/sampler.ts';
import type { TokenSampler } from '../runtime/generation-types.ts';

const cfg = TEST_CONFIGS.gqa;
const weights = randomWeights(cfg, 2024);
let ctx: GpuContext | null = null;
let model: LlamaModel | null = null;

beforeAll(async () => {
  ctx = await testGpu();
  if (ctx) model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', context: 128, nSlots: 6, maxOut: 6, prefillChunk: 8 });
});
afterAll(() => model?.destroy());

const greedy = (): TokenSampler => ({ greedy: true, sample: (l) => { let b = 0; for (let i = 1; i < l.length; i++) if (l[i]! > l[b]!) b = i; return b; }, accept: () => undefined });
const promptOf = (n: number, seed: number): number[] => {
  const out = [1];
  let s = seed;
  for (let i = 1; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; out.push(3 + (s % 31990)); }
  return out;
};
async function collect(g: AsyncGenerator<number>, stopAfter = Infinity): Promise<number[]> {
  const out: number[] = [];
  for await (const t of g) { out.push(t); if (out.length >= stopAfter) break; }
  return out;
}
const oracle = (p: number[], n: number) => new ReferenceModel(cfg, weights).generateGreedy(p, n);

describe('scheduler', () => {
  it('10 concurrent greedy requests (more than the 6 slots) each give the oracle tokens; the pool returns to empty', async (t) => {
    if (!model) return t.skip();
    const sched = new Scheduler(model, { prefixCaching: false });
    const reqs = Array.from({ length: 10 }, (_, i) => ({ p: promptOf(3 + ((i * 7) % 20), 100 + i), n: 6 + (i % 5) }));
    const outs = await Promise.all(reqs.map((r) => collect(sched.generate({ promptTokens: r.p, maxTokens: r.n, sampler: greedy() }))));
    reqs.forEach((r, i) => expect(outs[i]).toEqual(oracle(r.p, r.n)));
    expect(sched.idle).toBe(true);
    expect(model.pool.usedBlocks).toBe(0);
    expect(sched.metrics().decodeTokens).toBeGreaterThan(0);
  });

  it('a seeded sampled request gives the same tokens alone and batched with others', async (t) => {
    if (!model) return t.skip();
    const sched = new Scheduler(model);
    const p = promptOf(9, 5);
    const mk = () => createSampler({ temperature: 0.9, topP: 0.95, topK: 0, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed: 42n }, p);
    const alone = await collect(sched.generate({ promptTokens: p, maxTokens: 12, sampler: mk() }));
    const others = [1, 2, 3, 4].map((i) => collect(sched.generate({ promptTokens: promptOf(5 + i, i), maxTokens: 10, sampler: greedy() })));
    const batched = await collect(sched.generate({ promptTokens: p, maxTokens: 12, sampler: mk() }));
    await Promise.all(others);
    expect(batched).toEqual(alone);
  });

  it('prefix caching reuses the blocks of an earlier request and reports them; output unchanged', async (t) => {
    if (!model) return t.skip();
    const sched = new Scheduler(model);
    model.pool.clearCache();
    const turn1 = promptOf(40, 77);
    const a = await collect(sched.generate({ promptTokens: turn1, maxTokens: 5, sampler: greedy() }));
    const turn2 = [...turn1, ...a, 29871, 13, 500, 600];
    const req = { promptTokens: turn2, maxTokens: 5, sampler: greedy(), stats: {} as { cachedTokens?: number } };
    const hitsBefore = sched.metrics().prefixHitTokens;
    const b = await collect(sched.generate(req));
    const reused = Math.floor((turn1.length + a.length - 1) / 16) * 16;
    expect(req.stats.cachedTokens).toBe(reused); // what the API reports as usage.prompt_tokens_details.cached_tokens
    expect(sched.metrics().prefixHitTokens - hitsBefore).toBe(reused);
    expect(b).toEqual(oracle(turn2, 5));
  });

  it('preempts when the KV pool is short and resumes with the same tokens', async (t) => {
    if (!ctx) return t.skip();
    // 6 blocks of 16 positions (f32 K and V, as the budget below counts them) = 96 positions for 3 sequences that each grow to ~50.
    const small = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', kvDtype: 'f32', context: 128, nSlots: 3, maxOut: 3, prefillChunk: 8,
      kvBudgetBytes: 6 * 2 * cfg.nLayers * 16 * cfg.nKvHeads * cfg.headDim * 4 });
    try {
      const sched = new Scheduler(small, { prefixCaching: false });
      const reqs = [0, 1, 2].map((i) => ({ p: promptOf(20 + i, 300 + i), n: 30 }));
      const outs = await Promise.all(reqs.map((r) => collect(sched.generate({ promptTokens: r.p, maxTokens: r.n, sampler: greedy() }))));
      reqs.forEach((r, i) => expect(outs[i]).toEqual(oracle(r.p, r.n)));
      expect(sched.metrics().preemptions).toBeGreaterThan(0);
      expect(small.pool.usedBlocks).toBe(0);
    } finally {
      small.destroy();
    }
  });

  it('a consumer that stops early frees its blocks; others finish; a full queue refuses with QueueFullError', async (t) => {
    if (!model) return t.skip();
    const sched = new Scheduler(model, { maxQueue: 2, maxBatch: 2 });
    const ctrl = new AbortController();
    const stopped = collect(sched.generate({ promptTokens: promptOf(10, 1), maxTokens: 50, sampler: greedy() }), 3);
    const aborted = collect(sched.generate({ promptTokens: promptOf(10, 2), maxTokens: 50, sampler: greedy(), signal: ctrl.signal }));
    while (sched.metrics().running < 2) await new Promise((r) => setTimeout(r, 1));
    const w1 = collect(sched.generate({ promptTokens: promptOf(6, 3), maxTokens: 4, sampler: greedy() }));
    const w2 = collect(sched.generate({ promptTokens: promptOf(6, 4), maxTokens: 4, sampler: greedy() }));
    expect(sched.metrics().waiting).toBe(2);
    await expect(collect(sched.generate({ promptTokens: promptOf(6, 5), maxTokens: 4, sampler: greedy() }))).rejects.toBeInstanceOf(QueueFullError);
    setTimeout(() => ctrl.abort(), 50);
    expect((await stopped).length).toBe(3);
    expect((await aborted).length).toBeLessThan(50);
    expect(await w1).toEqual(oracle(promptOf(6, 3), 4));
    expect(await w2).toEqual(oracle(promptOf(6, 4), 4));
    await new Promise((r) => setTimeout(r, 50));
    expect(model.pool.usedBlocks).toBe(0);
  });

  it('maxQueue 0: no waiting, only running; assertCapacity counts the sequences of an n > 1 request', async (t) => {
    if (!model) return t.skip();
    const sched = new Scheduler(model, { maxQueue: 0, maxBatch: 2 });
    expect(() => sched.assertCapacity()).not.toThrow(); // idle: runs at once
    expect(() => sched.assertCapacity(2)).not.toThrow();
    expect(() => sched.assertCapacity(3)).toThrow(QueueFullError);
    const a = collect(sched.generate({ promptTokens: promptOf(6, 11), maxTokens: 6, sampler: greedy() }));
    const b = collect(sched.generate({ promptTokens: promptOf(6, 12), maxTokens: 6, sampler: greedy() }));
    expect(sched.metrics().waiting + sched.metrics().running).toBe(2);
    await expect(collect(sched.generate({ promptTokens: promptOf(6, 13), maxTokens: 4, sampler: greedy() }))).rejects.toBeInstanceOf(QueueFullError);
    expect(await a).toEqual(oracle(promptOf(6, 11), 6));
    expect(await b).toEqual(oracle(promptOf(6, 12), 6));
    await new Promise((r) => setTimeout(r, 20));
    expect(sched.idle).toBe(true);
    expect(await collect(sched.generate({ promptTokens: promptOf(6, 13), maxTokens: 4, sampler: greedy() }))).toEqual(oracle(promptOf(6, 13), 4));
    // With a queue of 1 and both slots busy, one more may wait, two more may not.
    const q = new Scheduler(model, { maxQueue: 1, maxBatch: 2 });
    const c = collect(q.generate({ promptTokens: promptOf(6, 14), maxTokens: 4, sampler: greedy() }));
    const d = collect(q.generate({ promptTokens: promptOf(6, 15), maxTokens: 4, sampler: greedy() }));
    expect(() => q.assertCapacity(1)).not.toThrow();
    expect(() => q.assertCapacity(2)).toThrow(QueueFullError);
    await Promise.all([c, d]);
    expect(await collect(q.generate({ promptTokens: promptOf(6, 16), maxTokens: 0, sampler: greedy() }))).toEqual([]); // max_tokens 0: nothing
  });

  it('logprobs do not change what a seeded sampler draws through the batched scheduler', async (t) => {
    if (!model) return t.skip();
    const sched = new Scheduler(model, { maxBatch: 4 });
    const params = { temperature: 0.9, topP: 0.95, topK: 40, minP: 0, presencePenalty: 0.3, frequencyPenalty: 0, repetitionPenalty: 1.1, seed: 77n };
    const p = promptOf(9, 21);
    const withLp = createSampler(params, p, { topLogprobs: 3 });
    const [plain, recorded] = await Promise.all([
      collect(sched.generate({ promptTokens: p, maxTokens: 8, sampler: createSampler(params, p) })),
      collect(sched.generate({ promptTokens: p, maxTokens: 8, sampler: withLp })),
    ]);
    expect(recorded).toEqual(plain);
    expect(withLp.logprobs!.map((e) => e.token)).toEqual(recorded);
    for (const e of withLp.logprobs!) expect(e.top.length).toBe(3);
  });
});

// The GPU-resident decode loop: greedy steps recorded and submitted back to back, each step's ids copied from
// the previous step's argmax on the GPU, the tokens read back once per run of steps.
describe('resident decode', () => {
  const poolState = (p: KvPool) => ({ used: p.usedBlocks, cached: p.cachedBlocks, available: p.availableBlocks });
  const decodeSteps = (m: LlamaModel) => {
    const step = vi.spyOn(m, 'step');
    const resident = vi.spyOn(m as { decodeResident: NonNullable<LlamaModel['decodeResident']> }, 'decodeResident');
    return {
      serial: () => step.mock.calls.filter((c) => c[3] === 'decode').length,
      runs: () => resident.mock.calls.length,
      continued: () => resident.mock.calls.filter((c) => c[2] === true).length, // submitted before the previous run was read
      restore: () => vi.restoreAllMocks(),
    };
  };
  /** Runs `reqs` concurrently on a fresh prefix cache, then a follow-up that reuses their prefixes; tokens and pool states. */
  async function run(m: LlamaModel, opts: SchedulerOptions, reqs: { p: number[]; n: number }[]) {
    m.pool.clearCache();
    const sched = new Scheduler(m, opts);
    const outs = await Promise.all(reqs.map((r) => collect(sched.generate({ promptTokens: r.p, maxTokens: r.n, sampler: greedy() }))));
    await new Promise((r) => setTimeout(r, 20));
    const after = poolState(m.pool);
    const follow = { promptTokens: [...reqs[0]!.p, ...outs[0]!, 500, 600], maxTokens: 3, sampler: greedy(), stats: {} as { cachedTokens?: number } };
    const next = await collect(sched.generate(follow));
    return { outs, after, next, cached: follow.stats.cachedTokens };
  }

  it('is the default for greedy requests on one device: the serial path\'s tokens, pool and prefix cache', async (t) => {
    if (!model) return t.skip();
    expect(model.decodeResident).toBeDefined();
    const reqs = [0, 1, 2, 3].map((i) => ({ p: promptOf(5 + 3 * i, 700 + i), n: 5 + 4 * i })); // 5..17 tokens: runs of 8 and shorter
    const count = decodeSteps(model);
    const serial = await run(model, { residentSteps: 1 }, reqs);
    expect(count.runs()).toBe(0);
    const serialSteps = count.serial();
    const resident = await run(model, {}, reqs);
    // Serial steps only while others are admitted or prefill (a run would delay them).
    expect(count.serial() - serialSteps).toBeLessThan(serialSteps / 2);
    expect(count.runs()).toBeGreaterThan(0);
    // One sequence alone: no serial decode step at all, and runs submitted before the previous one was read.
    const before = count.serial();
    const alone = await collect(new Scheduler(model).generate({ promptTokens: reqs[3]!.p, maxTokens: 20, sampler: greedy() }));
    expect(count.serial()).toBe(before);
    expect(count.continued()).toBeGreaterThan(0);
    count.restore();
    expect(alone).toEqual(oracle(reqs[3]!.p, 20));
    reqs.forEach((r, i) => expect(resident.outs[i]).toEqual(oracle(r.p, r.n)));
    expect(resident).toEqual(serial);
    expect(resident.after.used).toBe(0);
  });

  it('EOS mid-run: the tokens up to EOS, the pool and prefix cache as after the serial path', async (t) => {
    if (!ctx) return t.skip();
    const p = promptOf(7, 901);
    const free = oracle(p, 24);
    // Make the 5th distinct greedy token the end of sequence: generation stops inside the first run of 8.
    const eos = free.find((tok, i) => i >= 4 && free.indexOf(tok) === i)!;
    const eosCfg = { ...cfg, eosTokenId: eos };
    const m = await LlamaModel.fromProvider(memoryProvider(eosCfg, weights), { gpu: ctx, dtype: 'f32', context: 128, nSlots: 3, maxOut: 3, prefillChunk: 8 });
    try {
      const want = new ReferenceModel(eosCfg, weights).generateGreedy(p, 24);
      expect(want.at(-1)).toBe(eos);
      expect(want.length).toBeLessThan(24);
      const reqs = [{ p, n: 24 }]; // alone: every token after the first comes from a run
      const serial = await run(m, { residentSteps: 1 }, reqs);
      const resident = await run(m, {}, reqs);
      expect(resident.outs[0]).toEqual(want);
      expect(resident).toEqual(serial);
    } finally {
      m.destroy();
    }
  });

  it('a consumer that leaves mid-run and an abort mid-run free every block; the cached prefixes stay right', async (t) => {
    if (!model) return t.skip();
    model.pool.clearCache();
    const sched = new Scheduler(model);
    const p1 = promptOf(20, 911), p2 = promptOf(18, 912);
    const ctrl = new AbortController();
    const left = collect(sched.generate({ promptTokens: p1, maxTokens: 40, sampler: greedy() }), 3);
    const aborted = (async () => {
      const got: number[] = [];
      for await (const tok of sched.generate({ promptTokens: p2, maxTokens: 40, sampler: greedy(), signal: ctrl.signal })) {
        got.push(tok);
        if (got.length === 2) ctrl.abort();
      }
      return got;
    })();
    const full = [p1, p2].map((p) => oracle(p, 26));
    expect(await left).toEqual(full[0]!.slice(0, 3));
    expect(await aborted).toEqual(full[1]!.slice(0, 2)); // nothing after the abort
    for (let i = 0; i < 500 && !sched.idle; i++) await new Promise((r) => setTimeout(r, 10)); // the runs in flight end
    expect(sched.idle).toBe(true);
    expect(model.pool.usedBlocks).toBe(0);
    // Whatever prefixes those sequences published hold their tokens' KV: continuing from them gives the oracle's tokens.
    for (const [i, p] of [p1, p2].entries()) {
      const cont = [...p, ...full[i]!.slice(0, 20)];
      const req = { promptTokens: cont, maxTokens: 6, sampler: greedy(), stats: {} as { cachedTokens?: number } };
      expect(await collect(sched.generate(req))).toEqual(full[i]!.slice(20));
      expect(req.stats.cachedTokens).toBeGreaterThan(0);
    }
  });
});

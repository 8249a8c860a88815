// Sampled requests on the GPU-resident decode loop: the GPU sampler (runtime/gpu-sampler.ts) picks each step's
// token from the CPU sampler's state, so a seeded request gives the serial path's tokens (residentSteps 1,
// createSampler on the host), alone, batched, handed back to the serial path mid-request, and stopped mid-run.
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel } from '../runtime/model.ts';
import { isCpuAdapter } from '../kernels/matmul.ts';
import { Scheduler, type SchedulerOptions } from '../runtime/scheduler.ts';
import type { KvPool } from '../runtime/kv-pool.ts';
import { createSampler } from '../runtime/sampler.ts';
import type { GenerateRequest, SamplingParams, TokenSampler } from '../runtime/generation-types.ts';

const cfg = TEST_CONFIGS.gqa;
const weights = randomWeights(cfg, 2024);
// gpuSampling: on whatever the adapter (its default is off on software adapters like this suite's).
const opts = { dtype: 'f32' as const, context: 128, nSlots: 4, maxOut: 4, prefillChunk: 8, gpuSampling: true };
let ctx: GpuContext | null = null;
let model: LlamaModel | null = null;

beforeAll(async () => {
  ctx = await testGpu();
  if (ctx) model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, ...opts });
});
afterAll(() => model?.destroy());

const params = (seed: bigint): SamplingParams => ({
  temperature: 0.8, topP: 0.9, topK: 40, minP: 0, repetitionPenalty: 1.1, presencePenalty: 0.2, frequencyPenalty: 0, seed,
});
const promptOf = (n: number, seed: number): number[] => {
  const out = [1];
  let s = seed;
  for (let i = 1; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; out.push(3 + (s % 31990)); }
  return out;
};
async function collect(g: AsyncGenerator<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const t of g) out.push(t);
  return out;
}
const poolState = (p: KvPool) => ({ used: p.usedBlocks, cached: p.cachedBlocks, available: p.availableBlocks });

interface Req { p: number[]; n: number; seed: bigint; delayMs?: number; mask?: boolean; logprobs?: boolean }

/** Runs `reqs` concurrently on a fresh prefix cache; their tokens, their samplers' draws, the pool after, and the resident runs taken. */
async function run(m: LlamaModel, o: SchedulerOptions, reqs: Req[]) {
  m.pool.clearCache();
  const resident = vi.spyOn(m as { decodeResident: NonNullable<LlamaModel['decodeResident']> }, 'decodeResident');
  const sched = new Scheduler(m, o);
  const samplers: TokenSampler[] = [];
  const outs = await Promise.all(reqs.map(async (r) => {
    if (r.delayMs) await new Promise((res) => setTimeout(res, r.delayMs));
    const sampler = createSampler(params(r.seed), r.p, r.logprobs ? { topLogprobs: 2 } : {});
    samplers.push(sampler);
    const req: GenerateRequest = { promptTokens: r.p, maxTokens: r.n, sampler };
    if (r.mask) req.allowedTokens = () => new Uint8Array(cfg.vocabSize).fill(1); // allows everything, but needs the host
    return collect(sched.generate(req));
  }));
  for (let i = 0; i < 200 && !sched.idle; i++) await new Promise((res) => setTimeout(res, 10));
  const calls = resident.mock.calls;
  resident.mockRestore();
  return {
    outs,
    draws: samplers.map((s) => s.resident?.draws),
    pool: poolState(m.pool),
    sampledRuns: calls.filter((c) => c[3] !== undefined).length,
    runs: calls.length,
  };
}

describe('sampled requests on the resident decode loop', () => {
  it('is the default on GPUs, off on software adapters (gpuSampling overrides it either way)', async (t) => {
    if (!ctx || !model) return t.skip();
    const { gpuSampling: _, ...plain } = opts;
    const byDefault = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, ...plain });
    const off = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, ...plain, gpuSampling: false });
    try {
      expect(byDefault.sampledResident).toBe(!isCpuAdapter(ctx.device));
      expect(off.sampledResident).toBe(false);
      expect(model.sampledResident).toBe(true);
    } finally {
      byDefault.destroy();
      off.destroy();
    }
  });

  it('one seeded sequence: the serial path\'s tokens, with sampled runs taken', async (t) => {
    if (!model) return t.skip();
    const reqs = [{ p: promptOf(6, 31), n: 24, seed: 1234n }];
    const serial = await run(model, { residentSteps: 1 }, reqs);
    const resident = await run(model, {}, reqs);
    expect(serial.runs).toBe(0);
    expect(resident.sampledRuns).toBeGreaterThan(1);
    expect(resident.outs).toEqual(serial.outs);
    expect(resident.outs[0]!.length).toBe(24);
    expect(resident.draws).toEqual([24]); // one draw per token, the first on the host, the rest on the GPU
    expect(serial.draws).toEqual([24]);
    expect(resident.pool).toEqual(serial.pool);
    // Sampling matters here: another seed gives other tokens.
    const other = await run(model, {}, [{ ...reqs[0]!, seed: 99n }]);
    expect(other.outs[0]).not.toEqual(serial.outs[0]);
  });

  it('three concurrent sequences with different seeds, and a masked one joining later (the batch goes serial, then resident again)', async (t) => {
    if (!model) return t.skip();
    const reqs: Req[] = [
      { p: promptOf(5, 41), n: 20, seed: 7n },
      { p: promptOf(9, 42), n: 30, seed: 8n },
      { p: promptOf(12, 43), n: 14, seed: 9n },
    ];
    const serial = await run(model, { residentSteps: 1 }, reqs);
    const resident = await run(model, {}, reqs);
    expect(resident.sampledRuns).toBeGreaterThan(0);
    expect(resident.outs).toEqual(serial.outs);
    expect(resident.pool).toEqual(serial.pool);
    // A request whose mask needs the host joins after the others' first runs: the whole batch is serial while it runs.
    const mixed = [...reqs, { p: promptOf(4, 44), n: 6, seed: 10n, delayMs: 400, mask: true }];
    const mSerial = await run(model, { residentSteps: 1 }, mixed);
    const mResident = await run(model, {}, mixed);
    expect(mResident.sampledRuns).toBeGreaterThan(0);
    expect(mResident.outs).toEqual(mSerial.outs);
    expect(mResident.outs.slice(0, 3)).toEqual(serial.outs);
    expect(mResident.draws).toEqual(mSerial.draws);
  });

  it('a batch with a logprobs request stays serial', async (t) => {
    if (!model) return t.skip();
    const reqs: Req[] = [{ p: promptOf(5, 51), n: 8, seed: 3n }, { p: promptOf(5, 52), n: 12, seed: 4n, logprobs: true }];
    const serial = await run(model, { residentSteps: 1 }, reqs);
    const resident = await run(model, {}, reqs);
    expect(resident.runs).toBe(0);
    expect(resident.outs).toEqual(serial.outs);
  });

  it('EOS mid-run: the tokens up to EOS, and the pool, as on the serial path', async (t) => {
    if (!ctx || !model) return t.skip();
    const p = promptOf(7, 61);
    const free = (await run(model, { residentSteps: 1 }, [{ p, n: 24, seed: 5n }])).outs[0]!;
    // The 6th token, at its first occurrence, becomes the end of sequence: generation stops inside a run.
    const eos = free.find((tok, i) => i >= 5 && free.indexOf(tok) === i)!;
    expect(eos).toBeDefined();
    const m = await LlamaModel.fromProvider(memoryProvider({ ...cfg, eosTokenId: eos }, weights), { gpu: ctx, ...opts });
    try {
      const reqs = [{ p, n: 24, seed: 5n }, { p: promptOf(6, 62), n: 24, seed: 6n }];
      const serial = await run(m, { residentSteps: 1 }, reqs);
      const resident = await run(m, {}, reqs);
      expect(serial.outs[0]).toEqual(free.slice(0, free.indexOf(eos) + 1));
      expect(resident.sampledRuns).toBeGreaterThan(0);
      expect(resident).toEqual({ ...serial, runs: resident.runs, sampledRuns: resident.sampledRuns });
      expect(resident.pool.used).toBe(0);
    } finally {
      m.destroy();
    }
  });
});

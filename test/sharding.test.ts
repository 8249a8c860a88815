// Pipeline sharding: a model split across 2 and 3 devices (separate GPUDevices from one adapter: separate
// memory spaces, exactly like separate GPUs to WebGPU) gives bit-identical logits and the same tokens as
// one device, through generate and through the scheduler.
import { describe, it, expect, beforeAll } from 'vitest';
import { collect } from './helpers/collect.ts';
import { greedySampler } from './helpers/samplers.ts';
import type { GpuContext } from '../runtime/device.ts';
import { createGpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel, evenLayerSplit } from '../runtime/model.ts';
import { Scheduler } from '../runtime/scheduler.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { encodeHfModel } from '../checkpoint/random-model.ts';
import { mapDir } from '../checkpoint/byte-source.ts';
import { buildLlama2TokenizerJson } from '../tokenizer/llama2-vocab.ts';
import { loadLlamaEngine } from '../serve/llama-engine.ts';
import { startServer } from '../api/server.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

const cfg = { ...TEST_CONFIGS.gqa, nLayers: 5 };
const weights = randomWeights(cfg, 555);
const prompt = [1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203];

describe('sharding', () => {
  it('even layer split', () => {
    expect(evenLayerSplit(5, 2)).toEqual([[0, 2], [3, 4]]);
    expect(evenLayerSplit(80, 3)).toEqual([[0, 26], [27, 53], [54, 79]]);
  });

  for (const n of [2, 3]) {
    it(`${n} devices: identical logits and greedy tokens to one device`, async (t) => {
      if (!ctx) return t.skip();
      const one = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', context: 64, prefillChunk: 8, nSlots: 3, maxOut: 12 });
      const gpus = [ctx];
      for (let i = 1; i < n; i++) gpus.push(await createGpuContext());
      const many = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpus, dtype: 'f32', context: 64, prefillChunk: 8, nSlots: 3, maxOut: 12 });
      try {
        expect(many.stages.length).toBe(n);
        expect(many.stages.map((s) => s.weights.layers.length).reduce((a, b) => a + b)).toBe(cfg.nLayers);
        expect(many.stages[0]!.weights.tokEmbeddings).not.toBeNull();
        expect(many.stages[n - 1]!.weights.output).not.toBeNull();
        const a = await one.logitsAll(prompt);
        const b = await many.logitsAll(prompt);
        expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
        const want = new ReferenceModel(cfg, weights, { kvDtype: many.kvDtype }).generateGreedy(prompt, 10);
        // Greedy decode is GPU-resident on one device (`one`); a sharded model keeps the serial step.
        expect(one.decodeResident).toBeDefined();
        expect(many.decodeResident).toBeUndefined();
        expect(await collect(one.generateGreedy(prompt, 10))).toEqual(want);
        expect(await collect(many.generateGreedy(prompt, 10))).toEqual(want);
        const sched = new Scheduler(many);
        const outs = await Promise.all([0, 1, 2].map((i) => collect(sched.generate({
          promptTokens: prompt.slice(0, 6 + i), maxTokens: 8,
          sampler: greedySampler(),
        }))));
        outs.forEach((o, i) => expect(o).toEqual(new ReferenceModel(cfg, weights, { kvDtype: many.kvDtype }).generateGreedy(prompt.slice(0, 6 + i), 8)));
      } finally {
        one.destroy();
        many.destroy();
        gpus.slice(1).forEach((g) => g.destroy());
      }
    });
  }

  it('through the server: 2 devices answer exactly like 1; a plan that does not fit is refused before allocating', async (t) => {
    if (!ctx) return t.skip();
    const files = encodeHfModel(cfg, weights, { dtype: 'F32', tokenizerJson: JSON.stringify(buildLlama2TokenizerJson()) });
    const ask = async (devices: number): Promise<string> => {
      const llama = await loadLlamaEngine({ model: mapDir('shard-model', files), dtype: 'f32', context: 64, devices, maxBatch: 2, deviceMemoryBytes: 1 << 30 });
      const server = await startServer({ engine: llama.engine, port: 0 });
      try {
        expect(llama.model.stages.length).toBe(devices);
        const r = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ model: 'shard-model', temperature: 0, max_tokens: 8, messages: [{ role: 'user', content: 'Split me across devices' }] }) });
        return (await r.json()).choices[0].message.content;
      } finally {
        await server.close();
        await llama.close();
      }
    };
    expect(await ask(2)).toBe(await ask(1));
    // 4 MiB per device cannot hold the 12 MB embedding: refused with the planner's message, nothing loaded.
    await expect(loadLlamaEngine({ model: mapDir('shard-model', files), dtype: 'f32', context: 64, devices: 2, deviceMemoryBytes: 4 << 20 }))
      .rejects.toThrow(/does not fit: needs .* more than the devices hold/);
  });
});

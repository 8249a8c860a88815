// The trained default model (tiny-llama-2-kjv) through our WebGPU runtime against PyTorch on the same weights:
// exact greedy continuations of several prompts and the top-10 logits after each prompt, recorded by
// scripts/train/fixtures.ts (PyTorch float32) in test/fixtures/kjv-greedy.json.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { collect } from './helpers/collect.ts';
import { readFileSync } from 'node:fs';
import { testGpu } from './helpers/gpu.ts';
import type { GpuContext } from '../runtime/device.ts';
import { openModelSource } from '../checkpoint/load.ts';
import { LlamaModel } from '../runtime/model.ts';
import { DEFAULT_MODEL_NAME } from '../checkpoint/default-model.ts';

interface Case { text: string; prompt: number[]; greedy: number[]; top10_last_prompt_position: { ids: number[]; logits: number[] } }
const fixture = JSON.parse(readFileSync(new URL('./fixtures/kjv-greedy.json', import.meta.url), 'utf8')) as { tokens: number[] & number; cases: Case[] };

let gpu: GpuContext | null = null;
let model: LlamaModel | null = null;
beforeAll(async () => {
  gpu = await testGpu();
  if (!gpu) return;
  const src = await openModelSource('default');
  expect(src.name).toBe(DEFAULT_MODEL_NAME);
  model = await LlamaModel.fromProvider(src.provider, { gpu, dtype: 'f32' });
});
afterAll(() => model?.destroy());

describe('default model (trained) vs PyTorch', () => {
  it('loads with its own config: Llama-2 vocabulary, GQA, tied embeddings, 512 context', async () => {
    if (!gpu) return;
    const src = await openModelSource('default');
    expect(src.config).toMatchObject({ vocabSize: 32000, tieWordEmbeddings: true, maxSeqLen: 512 });
    expect(src.config.nKvHeads).toBeLessThan(src.config.nHeads);
    await src.close();
  });

  for (const c of fixture.cases) {
    it(`greedy continuation of ${JSON.stringify(c.text)} equals PyTorch's`, async () => {
      if (!model) return;
      expect(await collect(model.generateGreedy(c.prompt, fixture.tokens))).toEqual(c.greedy);
    });
  }

  it('logits after each prompt match PyTorch within 1e-3 (top 10 ids, same order)', async () => {
    if (!model) return;
    for (const c of fixture.cases) {
      const all = await model.logitsAll(c.prompt);
      const V = 32000;
      const last = all.subarray((c.prompt.length - 1) * V, c.prompt.length * V);
      const order = Array.from(last.keys()).sort((a, b) => last[b]! - last[a]!).slice(0, 10);
      expect(order).toEqual(c.top10_last_prompt_position.ids);
      c.top10_last_prompt_position.ids.forEach((id, i) => expect(Math.abs(last[id]! - c.top10_last_prompt_position.logits[i]!)).toBeLessThan(1e-3));
    }
  });
});

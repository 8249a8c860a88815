// Decode time per token against the context already in the KV cache: the tiny random model's shape
// (tiny-random-llama-2: dim 256, 4 layers, 8 heads, 2 KV heads) with a 4096-position context. Each point
// times greedy decode steps (argmax on the GPU, 4 bytes read back) of one sequence at position P, so
// attention reads P + 1 cached positions; the cache's contents do not change the work, so it is not filled.
//
//   llama2-webgpu bench host --decode-curve [--positions 63,1023,4095] [--steps N] [--kv-dtype f16|f32] [--json]

import { TINY_RANDOM_MODEL_CONFIG } from '../checkpoint/tiny-random-model.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel, type ModelOptions } from '../runtime/model.ts';

export interface CurvePoint {
  context: number; // positions attended (P + 1)
  ms_per_token: number;
}

export async function decodeCurve(positions: number[], steps: number, extra: Partial<ModelOptions> = {}): Promise<CurvePoint[]> {
  const cfg = { ...TINY_RANDOM_MODEL_CONFIG, maxSeqLen: 4096 };
  const model = await LlamaModel.fromProvider(memoryProvider(cfg, randomWeights(cfg, 2)), { dtype: 'f16', context: 4096, ...extra });
  try {
    const slot = model.pool.acquireSlot()!;
    if (!model.pool.reserve(slot, 4096)) throw new Error('KV pool too small');
    model.writeTable(slot);
    const out: CurvePoint[] = [];
    for (const pos of positions) {
      for (let i = 0; i < 3; i++) await model.step([{ token: 100 + i, pos, slot }], [0], 'argmax', 'decode');
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) await model.step([{ token: 100 + i, pos, slot }], [0], 'argmax', 'decode');
      out.push({ context: pos + 1, ms_per_token: Math.round(((performance.now() - t0) / steps) * 100) / 100 });
    }
    model.pool.releaseSlot(slot);
    return out;
  } finally {
    model.destroy();
    model.stages[0]!.gpu.destroy();
  }
}

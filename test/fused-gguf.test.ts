// The fused decode step (runtime/forward.ts fuseDecode) over GGUF block types, as llama.cpp's quantizer writes
// them (test/fixtures/gguf-mixes): rows of one type are stacked (q|k|v, w1|w3) where a row is whole words, a
// mix's odd ones out (Q4_K_M's Q6_K attn_v) stay separate matvecs with the norm and RoPE folded in, and the
// logits and greedy tokens equal those of the separate kernels on the same weights.
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { fileSource } from '../checkpoint/byte-source.ts';
import { openGgufModel } from '../checkpoint/gguf-provider.ts';
import { collect } from './helpers/collect.ts';
import { LlamaModel } from '../runtime/model.ts';
import { createForward, destroyForward, encodeForward, type Forward } from '../runtime/forward.ts';

const DIR = new URL('./fixtures/gguf-mixes/', import.meta.url);

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

describe('fused decode step over GGUF block types', () => {
  for (const mix of ['Q4_0', 'Q4_K_M']) {
    it(`${mix}: stacked where the types match, the same logits and tokens as the separate kernels`, async (t) => {
      if (!ctx) return t.skip();
      const g = await openGgufModel(await fileSource(new URL(`${mix}.gguf`, DIR).pathname));
      const model = await LlamaModel.fromProvider(g.provider, { gpu: ctx, context: 64, prefillChunk: 8, maxOut: 32 });
      const on = await createForward(ctx, g.provider.config, model.stages[0]!.weights, { ...model.stages[0]!.fwd.opts, fuseDecode: true, normPrologue: true });
      const off = await createForward(ctx, g.provider.config, model.stages[0]!.weights, { ...model.stages[0]!.fwd.opts, fuseDecode: false });
      const stage = (model as unknown as { stages: { fwd: Forward }[] }).stages[0]!;
      const own = stage.fwd;
      try {
        // Dispatches per layer: q|k|v as one matvec where the three share a type (else three), attention, wo,
        // w1|w3 as one with SwiGLU where they share a type (else two and the SwiGLU kernel), w2.
        const L = model.stages[0]!.weights.layers[0]!;
        const same = (...ms: typeof L.wq[]) => ms.every((m) => m.format === ms[0]!.format);
        const want = (same(L.wq, L.wk, L.wv) ? 1 : 3) + 2 + (same(L.w1, L.w3) ? 1 : 3) + 1;
        let n = 0;
        const pass = { setPipeline: () => undefined, setBindGroup: () => undefined, dispatchWorkgroups: () => void n++, end: () => undefined };
        const enc = { beginComputePass: () => pass, copyBufferToBuffer: () => undefined } as unknown as GPUCommandEncoder;
        encodeForward(on, enc, 1, [0], 'decode', 16);
        const all = n;
        n = 0;
        encodeForward({ ...on, layers: [] }, enc, 1, [0], 'decode', 16);
        expect(all - n).toBe(want);
        if (mix === 'Q4_0') expect(want).toBe(5);
        else expect(want).toBe(7); // attn_v is Q6_K in Q4_K_M

        const toks = [1, 100, 200, 150, 42, 270, 7, 99, 3, 180];
        const out: { logits: Float32Array; tokens: number[] }[] = [];
        for (const f of [off, on]) {
          stage.fwd = f;
          out.push({ logits: await model.logitsAll(toks), tokens: await collect(model.generateGreedy(toks.slice(0, 6), 12)) });
        }
        let maxErr = 0, maxRef = 0;
        for (let i = 0; i < out[0]!.logits.length; i++) {
          maxErr = Math.max(maxErr, Math.abs(out[1]!.logits[i]! - out[0]!.logits[i]!));
          maxRef = Math.max(maxRef, Math.abs(out[0]!.logits[i]!));
        }
        // The norm applied in another order, and k and v may round to the other neighbouring f16 of the cache.
        expect(maxErr / maxRef).toBeLessThan(1e-4);
        expect(out[1]!.tokens).toEqual(out[0]!.tokens);
      } finally {
        stage.fwd = own;
        destroyForward(on);
        destroyForward(off);
        model.destroy();
        await g.close();
      }
    });
  }
});

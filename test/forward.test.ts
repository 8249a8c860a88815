// End to end: the WebGPU forward pass against the CPU oracle (checkpoint/reference.ts) on deterministic
// random-weights models, one multi-head (7B/13B-like) and one grouped-query (70B-like).
import { describe, it, expect, beforeAll } from 'vitest';
import { collect } from './helpers/collect.ts';
import { randomPromptIds } from './helpers/random.ts';
import type { GpuContext } from '../runtime/device.ts';
import { createGpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { randomWeights, encodeHfModel } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel, ContextOverflowError } from '../runtime/model.ts';
import { openHfModel, validateHfModel } from '../checkpoint/hf-model.ts';
import { hfProvider } from '../checkpoint/hf-provider.ts';
import { mapDir } from '../checkpoint/byte-source.ts';
import { roundTrip } from '../kernels/weight-formats.ts';
import { createForward, destroyForward, encodeForward, type Forward } from '../runtime/forward.ts';
import { isCpuAdapter } from '../kernels/matmul.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

function maxRelErr(got: Float32Array, want: Float32Array): number {
  let maxErr = 0, maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
    maxRef = Math.max(maxRef, Math.abs(want[i]!));
  }
  return maxErr / maxRef;
}

for (const kind of ['mha', 'gqa'] as const) {
  describe(`${kind} random model`, () => {
    const cfg = TEST_CONFIGS[kind];
    const weights = randomWeights(cfg, 1234);

    it('f32: logits of every position match the CPU oracle; greedy tokens are identical', async (t) => {
      if (!ctx) return t.skip();
      // The f32 KV cache (--kv-dtype f32); the default f16 cache is checked in the next test.
      const model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', prefillChunk: 16, maxOut: 16, kvDtype: 'f32' });
      try {
        const toks = randomPromptIds(40, 7); // 40 positions: 3 prefill chunks, the last one partial
        const ref = new ReferenceModel(cfg, weights);
        const want = ref.forward(toks, 0);
        const got = await model.logitsAll(toks);
        expect(got.length).toBe(want.length);
        // Tolerance: relative to the largest logit; f32 accumulation order differs from the f64 oracle.
        expect(maxRelErr(got, want)).toBeLessThan(1e-4);

        const p = randomPromptIds(21, 99);
        const wantTokens = new ReferenceModel(cfg, weights).generateGreedy(p, 24);
        const gotTokens = await collect(model.generateGreedy(p, 24));
        expect(gotTokens).toEqual(wantTokens);
        expect(new Set(gotTokens).size).toBeGreaterThan(3); // not a degenerate repeat
      } finally {
        model.destroy();
      }
    });

    it('f16 weights from an HF directory (sharded BF16 file set) match the oracle on the rounded weights', async (t) => {
      if (!ctx) return t.skip();
      const files = encodeHfModel(cfg, weights, { dtype: 'F16', shards: 2 });
      const hf = await openHfModel(mapDir('random', files));
      validateHfModel(hf);
      const model = await LlamaModel.fromProvider(hfProvider(hf), { gpu: ctx, dtype: 'f16', prefillChunk: 32, maxOut: 8 });
      try {
        // The default KV cache: f16 where the adapter has shader-f16; the oracle rounds K and V the same way.
        const kvDtype = model.kvDtype;
        expect(kvDtype).toBe(ctx.hasF16 ? 'f16' : 'f32');
        const rounded = new Map([...weights].map(([k, v]) => [k, roundTrip('f16', v)]));
        const p = randomPromptIds(12, 3);
        const want = new ReferenceModel(cfg, rounded, { kvDtype }).generateGreedy(p, 16);
        expect(await collect(model.generateGreedy(p, 16))).toEqual(want);
        expect(want).toEqual(new ReferenceModel(cfg, rounded).generateGreedy(p, 16)); // the same tokens as with f32 K and V
        const toks = randomPromptIds(8, 5);
        expect(maxRelErr((await model.logitsAll(toks)), new ReferenceModel(cfg, rounded, { kvDtype }).forward(toks, 0))).toBeLessThan(1e-4);
      } finally {
        model.destroy();
        await hf.close();
      }
    });
  });
}

describe('limits', () => {
  it('tensors larger than one binding are split across bindings and give the same tokens', async (t) => {
    if (!ctx) return t.skip();
    const cfg = TEST_CONFIGS.gqa;
    const weights = randomWeights(cfg, 77);
    // 256 KiB per binding: the (32000, 96) f32 embedding and output head (12 MB) split into 47 chunks each.
    const small = await createGpuContext({ maxBindingBytes: 256 * 1024 });
    const model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: small, dtype: 'f32', context: 128 });
    try {
      expect(model.stages[0]!.weights.tokEmbeddings!.chunks.length).toBe(Math.ceil((32000 * 96 * 4) / (256 * 1024)));
      const p = randomPromptIds(10, 11);
      expect(await collect(model.generateGreedy(p, 12))).toEqual(new ReferenceModel(cfg, weights).generateGreedy(p, 12));
    } finally {
      model.destroy();
      small.destroy();
    }
  });

  it('a prompt longer than the context is a clear error, and the model keeps working', async (t) => {
    if (!ctx) return t.skip();
    const cfg = TEST_CONFIGS.mha;
    const weights = randomWeights(cfg, 5);
    const model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', context: 32 });
    try {
      await expect(collect(model.generateGreedy(randomPromptIds(40, 1), 4))).rejects.toThrow(ContextOverflowError);
      await expect(collect(model.generateGreedy(randomPromptIds(40, 1), 4))).rejects.toThrow(/context length 32/);
      // Generation stops at the end of the context.
      const out = await collect(model.generateGreedy(randomPromptIds(28, 2), 100));
      expect(out.length).toBeLessThanOrEqual(4);
      expect(out).toEqual(new ReferenceModel({ ...cfg, maxSeqLen: 32 }, weights).generateGreedy(randomPromptIds(28, 2), 100).slice(0, out.length));
    } finally {
      model.destroy();
    }
  });
});

describe('decode step: fused dispatches', () => {
  it('5 dispatches per layer (norm, rope + kv write and swiglu folded into the matvecs); the same tokens as the separate kernels, split bindings and a tiled prefill', async (t) => {
    if (!ctx) return t.skip();
    const cfg = TEST_CONFIGS.gqa;
    const weights = randomWeights(cfg, 31);
    // 48 KiB per binding: the fused q|k|v (160 x 96 f32 = 60 KiB) no longer fits one binding (three matvecs, each with
    // the norm and rope), the fused w1|w3 (2 x 96 KiB) is split into 4 chunks of gate and up rows, w2 into 2.
    const small = await createGpuContext({ maxBindingBytes: 48 * 1024 });
    const fusedModel = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', context: 128, prefillChunk: 16 });
    const apartModel = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: small, dtype: 'f32', context: 128, prefillChunk: 16 });
    // The fused decode step is the default on GPUs and off on software adapters (isCpuAdapter): each model
    // here runs it forced on (swapped in for its own forward pass), beside the separate kernels (norm, rope_kv,
    // swiglu), the epilogues alone (norm separate), and a tiled prefill (GPUs' path) over the chunked w1|w3 (the
    // swiglu kernel then reads gate | up chunk by chunk).
    const on = { fuseDecode: true, normPrologue: true };
    const fused = await createForward(ctx, cfg, fusedModel.stages[0]!.weights, { ...fusedModel.stages[0]!.fwd.opts, ...on });
    const apart = await createForward(small, cfg, apartModel.stages[0]!.weights, { ...apartModel.stages[0]!.fwd.opts, ...on });
    const separate = await createForward(ctx, cfg, fusedModel.stages[0]!.weights, { ...fusedModel.stages[0]!.fwd.opts, fuseDecode: false });
    const epilogues = await createForward(ctx, cfg, fusedModel.stages[0]!.weights, { ...fusedModel.stages[0]!.fwd.opts, fuseDecode: true, normPrologue: false });
    const tiled = await createForward(small, cfg, apartModel.stages[0]!.weights, { ...apartModel.stages[0]!.fwd.opts, ...on, matmulChoice: { prefill: 'tiled' } });
    // GPUs' matvec design (split), whose default this fused step is, on this adapter too.
    const split = await createForward(ctx, cfg, fusedModel.stages[0]!.weights, { ...fusedModel.stages[0]!.fwd.opts, ...on, matmulChoice: { variant: 'split' } });
    const stage = (m: LlamaModel) => (m as unknown as { stages: { fwd: Forward }[] }).stages[0]!;
    try {
      const count = (f: Forward, nTokens = 1) => {
        let n = 0, pipelines = 0;
        const pass = { setPipeline: () => void pipelines++, setBindGroup: () => undefined, dispatchWorkgroups: () => void n++, end: () => undefined };
        encodeForward(f, { beginComputePass: () => pass, copyBufferToBuffer: () => undefined } as unknown as GPUCommandEncoder, nTokens, [0], nTokens > 1 ? 'prefill' : 'decode', 64);
        return { n, pipelines };
      };
      // Dispatches per layer (the embedding and head chunks, final norm and argmax taken out).
      const perLayer = (f: Forward, nTokens = 1) => (count(f, nTokens).n - count({ ...f, layers: [] }, nTokens).n) / cfg.nLayers;
      // Per layer: q|k|v (+ norm, rope, kv write), attention, wo, w1|w3 (+ norm, swiglu), w2; plus embedding, final norm, head, argmax.
      expect(count(fused).n).toBe(5 * cfg.nLayers + 4);
      // Apart: wq, wk, wv, attention, wo, 4 chunks of w1|w3, 2 of w2.
      expect(perLayer(apart)).toBe(11);
      // The separate kernels: norm, q|k|v, rope_kv, attention, wo, norm, w1|w3, swiglu, w2.
      expect(perLayer(separate)).toBe(9);
      // The epilogues alone: norm, q|k|v (+ rope, kv write), attention, wo, norm, w1|w3 (+ swiglu), w2.
      expect(perLayer(epilogues)).toBe(7);
      expect(perLayer(split)).toBe(5);
      // The default here: fused on GPUs only.
      expect(perLayer(fusedModel.stages[0]!.fwd)).toBe(isCpuAdapter(ctx.device) ? 9 : 5);
      // A tiled prefill step runs the separate kernels: norm, wq, wk, wv, rope_kv, attention, wo, norm, 4 w1|w3, swiglu, 2 w2.
      expect(perLayer(tiled, 16)).toBe(15);
      // A pipeline already set is not set again (consecutive matvecs over chunks or separate matrices share one).
      expect(count(apart).pipelines).toBeLessThan(count(apart).n);
      const toks = randomPromptIds(20, 13);
      const ref = new ReferenceModel(cfg, weights, { kvDtype: fused.kvDtype });
      const want = ref.forward(toks, 0);
      const p = randomPromptIds(9, 17);
      const wantTokens = new ReferenceModel(cfg, weights, { kvDtype: fused.kvDtype }).generateGreedy(p, 12);
      const check = async (m: LlamaModel, label: string) => {
        expect(maxRelErr(await m.logitsAll(toks), want), label).toBeLessThan(1e-4);
        expect(await collect(m.generateGreedy(p, 12)), label).toEqual(wantTokens);
      };
      const runs = [[fusedModel, fused, 'fused'], [apartModel, apart, 'fused, split bindings'], [fusedModel, separate, 'separate kernels'],
        [fusedModel, epilogues, 'epilogues only'], [apartModel, tiled, 'tiled prefill'], [fusedModel, split, 'split design']] as const;
      const logits: Float32Array[] = [];
      for (const [m, f, label] of runs) {
        const own = stage(m).fwd;
        stage(m).fwd = f;
        try {
          logits.push(await m.logitsAll(toks));
          await check(m, label);
        } finally {
          stage(m).fwd = own;
        }
      }
      // Row by row the same sums whatever the chunking: the split-binding model gives the same logits, bit for bit.
      expect(maxRelErr(logits[0]!, logits[1]!)).toBe(0);
    } finally {
      for (const f of [fused, apart, separate, epilogues, tiled, split]) destroyForward(f);
      fusedModel.destroy();
      apartModel.destroy();
      small.destroy();
    }
  });

  it('w1|w3 fused chunk by chunk across the parts\' own chunks (f16, q4 octet layouts): the same logits and tokens as the separate kernels', async (t) => {
    if (!ctx) return t.skip();
    const cfg = TEST_CONFIGS.gqa;
    const weights = randomWeights(cfg, 41);
    // Bindings so small that w1 and w3 are two chunks each and the fused w1|w3 three, whose row ranges cross the
    // parts' chunk boundaries (the copies are split there).
    for (const [dtype, binding] of [['f16', 32 * 1024], ['q4', 12 * 1024]] as const) {
      const small = await createGpuContext({ maxBindingBytes: binding });
      const model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: small, dtype, context: 64, prefillChunk: 8 });
      const on = await createForward(small, cfg, model.stages[0]!.weights, { ...model.stages[0]!.fwd.opts, fuseDecode: true, normPrologue: true });
      const off = await createForward(small, cfg, model.stages[0]!.weights, { ...model.stages[0]!.fwd.opts, fuseDecode: false });
      const stage = (model as unknown as { stages: { fwd: Forward }[] }).stages[0]!;
      const own = stage.fwd;
      try {
        expect(model.stages[0]!.weights.layers[0]!.w1.chunks.length, dtype).toBeGreaterThanOrEqual(2);
        expect(on.layers[0]!.gateUpFused.length, dtype).toBeGreaterThanOrEqual(3);
        expect(on.layers[0]!.swigluFused).toBe(true);
        const toks = randomPromptIds(12, 23), p = randomPromptIds(7, 29);
        const out: { logits: Float32Array; tokens: number[] }[] = [];
        for (const f of [off, on]) {
          stage.fwd = f;
          out.push({ logits: await model.logitsAll(toks), tokens: await collect(model.generateGreedy(p, 10)) });
        }
        // Not bit for bit: the norm is applied in another order, and k and v may round to the other neighbouring f16.
        expect(maxRelErr(out[1]!.logits, out[0]!.logits), dtype).toBeLessThan(1e-4);
        expect(out[1]!.tokens, dtype).toEqual(out[0]!.tokens);
      } finally {
        stage.fwd = own;
        destroyForward(on);
        destroyForward(off);
        model.destroy();
        small.destroy();
      }
    }
  });
});

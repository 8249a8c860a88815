// Linear RoPE scaling (config.json rope_scaling, GGUF llama.rope.scaling.* / scale_linear): parsing,
// the GPU forward pass against the CPU oracle with factor 2, and the refusal of what the runtime does
// not implement (other scaling types, bias terms, activations other than SiLU) by name.
import { beforeAll, describe, expect, it } from 'vitest';
import { collect } from './helpers/collect.ts';
import { randomPromptIds } from './helpers/random.ts';
import { bytesSource, mapDir } from '../checkpoint/byte-source.ts';
import { parseHfConfig, toHfConfig, type LlamaConfig } from '../checkpoint/config.ts';
import { readGguf } from '../checkpoint/gguf.ts';
import { ggufConfig, openGgufModel } from '../checkpoint/gguf-provider.ts';
import { encodeGguf } from '../checkpoint/gguf-writer.ts';
import { openHfModel } from '../checkpoint/hf-model.ts';
import { toHfName } from '../checkpoint/keymap.ts';
import { encodeHfModel, randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { encodeSafetensors } from '../checkpoint/safetensors.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel } from '../runtime/model.ts';
import { ropeRef, ropeTable } from '../kernels/rope.ts';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';

const { gqa } = TEST_CONFIGS;
const tiny: LlamaConfig = { ...gqa, nLayers: 1, vocabSize: 320 };
const hfJson = (extra: Record<string, unknown>): Record<string, unknown> => ({ ...toHfConfig(tiny), ...extra });

describe('config.json: rope_scaling, biases, activation', () => {
  it('reads linear rope_scaling under "type" and "rope_type", and "default"/null as none', () => {
    expect(parseHfConfig(hfJson({ rope_scaling: { type: 'linear', factor: 2 } })).ropeScaleFactor).toBe(2);
    expect(parseHfConfig(hfJson({ rope_scaling: { rope_type: 'linear', factor: 4.5 } })).ropeScaleFactor).toBe(4.5);
    expect(parseHfConfig(hfJson({ rope_scaling: null })).ropeScaleFactor).toBeUndefined();
    expect(parseHfConfig(hfJson({ rope_scaling: { rope_type: 'default' } })).ropeScaleFactor).toBeUndefined();
    expect(parseHfConfig(hfJson({ rope_scaling: { type: 'linear', factor: 1 } })).ropeScaleFactor).toBeUndefined();
  });

  it('writes rope_scaling back (convert keeps it) and parses its own output', () => {
    const cfg = { ...tiny, ropeScaleFactor: 2 };
    const json = toHfConfig(cfg);
    expect(json.rope_scaling).toEqual({ type: 'linear', factor: 2 });
    expect(parseHfConfig(json)).toEqual(cfg);
    expect('rope_scaling' in toHfConfig(tiny)).toBe(false);
  });

  it('refuses other scaling types, bad factors, biases and non-SiLU activations, naming them', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ rope_scaling: { type: 'dynamic', factor: 2 } }, /rope_scaling type "dynamic" is not supported/],
      [{ rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 4096 } }, /rope_scaling type "yarn"/],
      [{ rope_scaling: { rope_type: 'llama3', factor: 8 } }, /"llama3"/],
      [{ rope_scaling: { type: 'linear' } }, /rope_scaling "factor" must be a positive number/],
      [{ rope_scaling: { type: 'linear', factor: -1 } }, /"factor" must be a positive number, got -1/],
      [{ rope_scaling: 'linear' }, /"rope_scaling" must be an object/],
      [{ attention_bias: true }, /"attention_bias": true is not supported/],
      [{ mlp_bias: true }, /"mlp_bias": true is not supported/],
      [{ hidden_act: 'gelu' }, /"hidden_act": "gelu" is not supported \(only "silu"/],
    ];
    for (const [extra, msg] of bad) expect(() => parseHfConfig(hfJson(extra), 'm/config.json'), JSON.stringify(extra)).toThrow(msg);
    // What Llama-2 checkpoints say is accepted.
    expect(() => parseHfConfig(hfJson({ attention_bias: false, mlp_bias: false, hidden_act: 'silu' }))).not.toThrow();
    expect(() => parseHfConfig(hfJson({ hidden_act: 'swish' }))).not.toThrow(); // transformers' alias of silu
  });

  it('refuses an HF checkpoint carrying bias tensors, naming the tensor', async () => {
    const w = randomWeights(tiny, 5);
    const files = encodeHfModel(tiny, w, { dtype: 'F32' });
    const tensors = [...w].map(([name, data]) => ({
      name: toHfName(name), dtype: 'F32', shape: name.endsWith('norm') ? [data.length] : [data.length / tiny.dim, tiny.dim],
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    }));
    const bias = new Float32Array(tiny.dim);
    tensors.push({ name: 'model.layers.0.self_attn.q_proj.bias', dtype: 'F32', shape: [tiny.dim], data: new Uint8Array(bias.buffer) });
    files['model.safetensors'] = encodeSafetensors(tensors);
    await expect(openHfModel(mapDir('biased', files))).rejects.toThrow(/model\.layers\.0\.self_attn\.q_proj\.bias": bias tensors are not supported/);
  });
});

describe('GGUF: llama.rope.scaling.*', () => {
  const weights = randomWeights(tiny, 3);

  it('reads type "linear" + factor (as written by convert_hf_to_gguf.py), and the older scale_linear', async () => {
    const m = await openGgufModel(bytesSource('scaled.gguf', encodeGguf({ ...tiny, ropeScaleFactor: 2 }, weights, { type: 'F32' })));
    expect(m.metadata.get('llama.rope.scaling.type')).toBe('linear');
    expect(m.config.ropeScaleFactor).toBe(2);
    await m.close();

    const f = await readGguf(bytesSource('old.gguf', encodeGguf(tiny, weights, { type: 'F32' })));
    expect(ggufConfig(f).ropeScaleFactor).toBeUndefined();
    f.metadata.set('llama.rope.scale_linear', 4);
    f.valueTypes.set('llama.rope.scale_linear', 'f32');
    expect(ggufConfig(f).ropeScaleFactor).toBe(4); // no type key: llama.cpp reads it as linear
    f.metadata.set('llama.rope.scaling.factor', 8);
    expect(ggufConfig(f).ropeScaleFactor).toBe(8); // the newer key wins
    f.metadata.set('llama.rope.scaling.type', 'none');
    expect(ggufConfig(f).ropeScaleFactor).toBeUndefined();
    f.metadata.set('llama.rope.scaling.type', 'yarn');
    expect(() => ggufConfig(f)).toThrow(/old\.gguf: llama\.rope\.scaling\.type "yarn" is not supported/);
  });

  it('refuses bias tensors by name', async () => {
    const f = await readGguf(bytesSource('b.gguf', encodeGguf(tiny, weights, { type: 'F32' })));
    const norm = f.tensors.get('blk.0.attn_norm.weight')!;
    f.tensors.set('blk.0.attn_q.bias', { ...norm, name: 'blk.0.attn_q.bias' });
    expect(() => ggufConfig(f)).toThrow(/b\.gguf: tensor "blk\.0\.attn_q\.bias": bias tensors are not supported/);
  });
});

describe('RoPE table with a linear scale', () => {
  it('row 2p at factor 2 is row p at factor 1 (positions divided by the factor), and matches ropeRef', () => {
    const D = 16, half = D / 2;
    const one = ropeTable(64, D, 10000);
    const two = ropeTable(128, D, 10000, 2);
    for (let p = 0; p < 64; p++) expect(two.subarray(2 * p * half * 2, (2 * p + 1) * half * 2)).toEqual(one.subarray(p * half * 2, (p + 1) * half * 2));
    // an odd position lies between two factor-1 angles: not equal to either
    expect(two.subarray(3 * half * 2, 4 * half * 2)).not.toEqual(one.subarray(1 * half * 2, 2 * half * 2));
    const x = Float32Array.from({ length: 4 * D }, (_, i) => Math.sin(i + 1));
    const viaRef = ropeRef(x, [7, 31], 2, D, 10000, 2);
    // rotate-half by hand from the table
    for (const [t, pos] of [[0, 7], [1, 31]] as const) {
      for (let h = 0; h < 2; h++) {
        for (let i = 0; i < half; i++) {
          const c = two[(pos * half + i) * 2]!, s = two[(pos * half + i) * 2 + 1]!;
          const a = x[(t * 2 + h) * D + i]!, b = x[(t * 2 + h) * D + i + half]!;
          expect(viaRef[(t * 2 + h) * D + i]).toBeCloseTo(a * c - b * s, 6);
          expect(viaRef[(t * 2 + h) * D + i + half]).toBeCloseTo(b * c + a * s, 6);
        }
      }
    }
  });
});

describe('GPU forward pass with linear RoPE scaling (factor 2) against the CPU oracle', () => {
  let ctx: GpuContext | null = null;
  beforeAll(async () => {
    ctx = await testGpu();
  });

  it('logits of every position within 1e-4 of the oracle and identical greedy tokens; factor 2 changes them', async (t) => {
    if (!ctx) return t.skip();
    const cfg: LlamaConfig = { ...gqa, ropeScaleFactor: 2 };
    const weights = randomWeights(cfg, 77);
    const toks = randomPromptIds(33, 5);
    const model = await LlamaModel.fromProvider(memoryProvider(cfg, weights), { gpu: ctx, dtype: 'f32', prefillChunk: 16, maxOut: 16 });
    try {
      const want = new ReferenceModel(cfg, weights, { kvDtype: model.kvDtype }).forward(toks, 0);
      const got = await model.logitsAll(toks);
      const unscaled = new ReferenceModel({ ...cfg, ropeScaleFactor: undefined }, weights).forward(toks, 0);
      let maxRef = 0, err = 0, moved = 0;
      for (let i = 0; i < want.length; i++) {
        maxRef = Math.max(maxRef, Math.abs(want[i]!));
        err = Math.max(err, Math.abs(got[i]! - want[i]!));
        moved = Math.max(moved, Math.abs(unscaled[i]! - want[i]!));
      }
      expect(err / maxRef).toBeLessThan(1e-4);
      expect(moved / maxRef).toBeGreaterThan(1e-2); // the scale matters: without it the test could not fail

      const p = toks.slice(0, 12);
      const wantTokens = new ReferenceModel(cfg, weights, { kvDtype: model.kvDtype }).generateGreedy(p, 16);
      expect(await collect(model.generateGreedy(p, 16))).toEqual(wantTokens);
      expect(wantTokens).not.toEqual(new ReferenceModel({ ...cfg, ropeScaleFactor: undefined }, weights).generateGreedy(p, 16));
    } finally {
      model.destroy();
    }
  });
});

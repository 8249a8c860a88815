// random-model.ts (determinism, weight scales) and hf-model.ts (opening and validating HF directories,
// single-file and sharded, in memory and on disk, and every error naming directory/file/tensor).

import { describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mapDir, nodeDir } from '../checkpoint/byte-source.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../kernels/half.ts';
import { openHfModel, validateHfModel, type HfModel } from '../checkpoint/hf-model.ts';
import { expectedTensors, toHfName } from '../checkpoint/keymap.ts';
import { encodeHfModel, randomWeights, writeModelDir } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { encodeSafetensors, readTensorAsF32 } from '../checkpoint/safetensors.ts';

const { mha, gqa } = TEST_CONFIGS;
// Same shapes as mha but 1 layer and a small vocab: quick to build many broken variants of.
const tiny: LlamaConfig = { ...mha, nLayers: 1, vocabSize: 300 };

const u8 = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Index of the first differing byte of two typed arrays, or -1 when identical (vitest's deep
 *  equality walks millions of elements one by one: far too slow for whole tensors). */
function firstDiff(a: ArrayBufferView, b: ArrayBufferView): number {
  const x = u8(a);
  const y = u8(b);
  if (x.byteLength !== y.byteLength) return Math.min(x.byteLength, y.byteLength);
  for (let i = 0; i < x.byteLength; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

function stats(a: Float32Array): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const v of a) {
    s += v;
    s2 += v * v;
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(s2 / a.length - mean * mean) };
}

/** y = W x for W (rows, cols) row-major. */
function matvec(w: Float32Array, x: Float32Array, rows: number, cols: number): Float32Array {
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = 0; c < cols; c++) acc += w[r * cols + c]! * x[c]!;
    y[r] = acc;
  }
  return y;
}

/** A tiny-model safetensors file from our-name tensors, F32, with chosen HF names/dtypes overridden. */
function tinyFile(weights: Map<string, Float32Array>, edit?: (t: { name: string; dtype: string; shape: number[]; data: Uint8Array }[]) => void): Uint8Array {
  const list = [...expectedTensors(tiny)].map(([name, shape]) => ({ name: toHfName(name), dtype: 'F32', shape, data: u8(weights.get(name)!) }));
  edit?.(list);
  return encodeSafetensors(list);
}

async function withModel<T>(files: Record<string, Uint8Array>, fn: (m: HfModel) => Promise<T> | T): Promise<T> {
  const m = await openHfModel(mapDir('mem-model', files));
  try {
    return await fn(m);
  } finally {
    await m.close();
  }
}

describe('randomWeights', () => {
  it('is deterministic: same seed -> identical bytes, different seed -> different', () => {
    const a = encodeHfModel(tiny, randomWeights(tiny, 42), { dtype: 'F32' });
    const b = encodeHfModel(tiny, randomWeights(tiny, 42), { dtype: 'F32' });
    const c = encodeHfModel(tiny, randomWeights(tiny, 43), { dtype: 'F32' });
    expect(firstDiff(a['model.safetensors']!, b['model.safetensors']!)).toBe(-1);
    expect(fnv1a(a['model.safetensors']!)).not.toBe(fnv1a(c['model.safetensors']!));
    // seeds differing only above 32 bits must differ too
    const hi = randomWeights(tiny, 2 ** 32 + 42).get('norm')!;
    expect(firstDiff(hi, randomWeights(tiny, 42).get('norm')!)).not.toBe(-1);
  });

  it('produces the pinned values (a change here changes every fixture; do it knowingly)', () => {
    const w = randomWeights(mha, 0);
    const emb = w.get('tok_embeddings')!;
    // golden values, fixed when the generator was written; same on every engine (integer ops + exact arithmetic)
    expect([...emb.subarray(0, 4)]).toEqual(GOLDEN_EMB_0_4);
    expect(fnv1a(encodeHfModel(mha, w, { dtype: 'BF16' })['model.safetensors']!)).toBe(GOLDEN_BF16_HASH);
  });

  it('seeds each tensor from (seed, name), independent of the other tensors', () => {
    const one = randomWeights(tiny, 5);
    const two = randomWeights({ ...tiny, nLayers: 2 }, 5);
    for (const name of ['tok_embeddings', 'layers.0.wq', 'layers.0.ffn_norm', 'norm', 'output']) {
      expect(firstDiff(two.get(name)!, one.get(name)!)).toBe(-1);
    }
    expect(firstDiff(two.get('layers.1.wq')!, two.get('layers.0.wq')!)).not.toBe(-1);
    expect(firstDiff(two.get('layers.0.wk')!, two.get('layers.0.wq')!.subarray(0, two.get('layers.0.wk')!.length))).not.toBe(-1);
  });

  it('has the documented scales, keeping activations and logits sane', () => {
    const cfg = gqa;
    const w = randomWeights(cfg, 1);
    for (const [name, shape] of expectedTensors(cfg)) expect(w.get(name)!.length).toBe(shape.reduce((a, b) => a * b, 1));

    const emb = stats(w.get('tok_embeddings')!);
    expect(Math.abs(emb.mean)).toBeLessThan(0.01);
    expect(emb.std).toBeCloseTo(0.5, 2);
    const norm = stats(w.get('layers.1.attention_norm')!);
    expect(Math.abs(norm.mean - 1)).toBeLessThan(0.03);
    expect(norm.std).toBeGreaterThan(0.07);
    expect(norm.std).toBeLessThan(0.13);
    expect(stats(w.get('layers.0.wq')!).std).toBeCloseTo(1 / Math.sqrt(cfg.dim), 2);
    expect(stats(w.get('layers.2.w2')!).std).toBeCloseTo(1 / Math.sqrt(cfg.hiddenDim), 2);

    // Normal-ish: ~68% within one std, and tails present but bounded.
    const wq = w.get('layers.0.wq')!;
    const sd = 1 / Math.sqrt(cfg.dim);
    let inside = 0;
    let max = 0;
    for (const v of wq) {
      if (Math.abs(v) < sd) inside++;
      max = Math.max(max, Math.abs(v));
    }
    expect(inside / wq.length).toBeGreaterThan(0.64);
    expect(inside / wq.length).toBeLessThan(0.72);
    expect(max / sd).toBeGreaterThan(2.5);

    // A unit-RMS input keeps roughly unit RMS through a linear layer.
    const x = randomWeights({ ...cfg, vocabSize: 1 }, 9).get('tok_embeddings')!.map((v) => v * 2); // ~N(0,1), length dim
    const rms = (a: Float32Array): number => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    const xs = x.map((v) => v / rms(x));
    const q = matvec(wq, xs, cfg.nHeads * cfg.headDim, cfg.dim);
    expect(rms(q)).toBeGreaterThan(0.7);
    expect(rms(q)).toBeLessThan(1.4);

    // Logits of the head for a normed hidden state spread by a few units: greedy decoding is not degenerate.
    const h = xs.map((v, i) => v * w.get('norm')![i]!);
    const logits = matvec(w.get('output')!, h, cfg.vocabSize, cfg.dim);
    const ls = stats(logits);
    expect(ls.std).toBeGreaterThan(0.5);
    expect(ls.std).toBeLessThan(20);
    const sorted = [...logits].sort((a, b) => b - a);
    expect(sorted[0]! - sorted[1]!).toBeLessThan(ls.std * 3); // no single token dominating by construction
  });
});

describe('encodeHfModel + openHfModel', () => {
  let gqaWeights: Map<string, Float32Array> | undefined; // built once, shared by the three dtypes
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`round-trips a GQA model as ${dtype}`, async () => {
      const w = (gqaWeights ??= randomWeights(gqa, 3));
      const files = encodeHfModel(gqa, w, { dtype, tokenizerJson: '{"model":{}}', tokenizerConfigJson: '{"add_bos_token":true}' });
      expect(Object.keys(files).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
      await withModel(files, async (m) => {
        validateHfModel(m);
        expect(m.config).toEqual(gqa);
        expect(m.configJson.torch_dtype).toBe({ F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype]);
        expect(m.generationConfig).toEqual({ bos_token_id: 1, eos_token_id: 2 });
        expect(m.tokenizerJson).toBe('{"model":{}}');
        expect(m.tokenizerConfigJson).toBe('{"add_bos_token":true}');
        expect(m.metadata).toEqual({ format: 'pt' });
        expect([...m.tensors.keys()].sort()).toEqual([...expectedTensors(gqa).keys()].sort());
        expect(m.tensors.get('layers.2.wk')!.name).toBe('model.layers.2.self_attn.k_proj.weight');
        expect(m.tensors.get('layers.2.wk')!.shape).toEqual([32, 96]);
        expect(m.tensors.get('layers.2.wk')!.dtype).toBe(dtype);
        for (const name of ['tok_embeddings', 'layers.1.wv', 'layers.2.ffn_norm', 'output']) {
          const t = m.tensors.get(name)!;
          const got = await readTensorAsF32(m.sources.get(t.file)!, t);
          const want = w.get(name)!;
          const expected = dtype === 'F32' ? want : dtype === 'F16' ? f16ToF32(f32ToF16(want)) : bf16ToF32(f32ToBf16(want));
          expect(firstDiff(got, expected)).toBe(-1);
        }
      });
    });
  }

  it('writes and reads a sharded directory (index + N byte-balanced shards)', async () => {
    const w = randomWeights(mha, 4);
    const files = encodeHfModel(mha, w, { dtype: 'F16', shards: 3 });
    const shardNames = Object.keys(files).filter((f) => f.endsWith('.safetensors')).sort();
    expect(shardNames).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    expect(files['model.safetensors']).toBeUndefined();
    const index = JSON.parse(new TextDecoder().decode(files['model.safetensors.index.json']));
    expect(Object.keys(index.weight_map).length).toBe(expectedTensors(mha).size);
    expect(index.weight_map['model.embed_tokens.weight']).toBe('model-00001-of-00003.safetensors');
    expect(index.weight_map['lm_head.weight']).toBe('model-00003-of-00003.safetensors');
    expect(new Set(Object.values(index.weight_map)).size).toBe(3);
    await withModel(files, async (m) => {
      validateHfModel(m);
      expect([...m.sources.keys()].sort()).toEqual(shardNames);
      const t = m.tensors.get('layers.1.w2')!;
      expect(t.file).toBe(index.weight_map['model.layers.1.mlp.down_proj.weight']);
      expect(firstDiff(await readTensorAsF32(m.sources.get(t.file)!, t), f16ToF32(f32ToF16(w.get('layers.1.w2')!)))).toBe(-1);
    });
    // as many shards as tensors still gives every shard one tensor
    const n = expectedTensors(tiny).size;
    const many = encodeHfModel(tiny, randomWeights(tiny, 1), { dtype: 'F32', shards: n });
    expect(Object.keys(many).filter((f) => f.endsWith('.safetensors')).length).toBe(n);
    await withModel(many, (m) => validateHfModel(m));
    expect(() => encodeHfModel(tiny, randomWeights(tiny, 1), { dtype: 'F32', shards: n + 1 })).toThrow(/shards/);
  });

  it('writes a directory to disk and opens it with nodeDir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hf-test-'));
    try {
      const path = join(dir, 'nested', 'model');
      const w = randomWeights(tiny, 8);
      await writeModelDir(path, encodeHfModel(tiny, w, { dtype: 'BF16', shards: 2 }));
      const m = await openHfModel(nodeDir(path));
      try {
        validateHfModel(m);
        const t = m.tensors.get('layers.0.wo')!;
        expect(firstDiff(await readTensorAsF32(m.sources.get(t.file)!, t), bf16ToF32(f32ToBf16(w.get('layers.0.wo')!)))).toBe(-1);
      } finally {
        await m.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('handles tied embeddings: no lm_head needed, and an lm_head present is dropped', async () => {
    const tied = { ...tiny, tieWordEmbeddings: true };
    const w = randomWeights(tied, 2);
    expect(w.has('output')).toBe(false);
    await withModel(encodeHfModel(tied, w, { dtype: 'F32' }), (m) => {
      validateHfModel(m);
      expect(m.config.tieWordEmbeddings).toBe(true);
      expect(m.tensors.has('output')).toBe(false);
    });
    // a tied config whose file still carries lm_head.weight (some exports do)
    const files = encodeHfModel(tiny, randomWeights(tiny, 2), { dtype: 'F32' });
    files['config.json'] = encodeHfModel(tied, w, { dtype: 'F32' })['config.json']!;
    await withModel(files, (m) => {
      validateHfModel(m);
      expect(m.tensors.has('output')).toBe(false);
    });
  });

  it('ignores tensors it does not use (rotary inv_freq)', async () => {
    const w = randomWeights(tiny, 1);
    const files = encodeHfModel(tiny, w, { dtype: 'F32' });
    files['model.safetensors'] = tinyFile(w, (l) =>
      l.push({ name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [8], data: new Uint8Array(32) }),
    );
    await withModel(files, (m) => {
      validateHfModel(m);
      expect(m.tensors.size).toBe(expectedTensors(tiny).size);
    });
  });
});

describe('openHfModel / validateHfModel errors', () => {
  const w = randomWeights(tiny, 11);
  const good = (): Record<string, Uint8Array> => encodeHfModel(tiny, w, { dtype: 'F32' });

  it('names the directory when config.json or the weights are missing', async () => {
    const noConfig = good();
    delete noConfig['config.json'];
    await expect(openHfModel(mapDir('dir-a', noConfig))).rejects.toThrow(/dir-a: no config\.json/);
    const noWeights = good();
    delete noWeights['model.safetensors'];
    await expect(openHfModel(mapDir('dir-b', noWeights))).rejects.toThrow(/dir-b: no weights found.*model\.safetensors/);
    noWeights['pytorch_model.bin'] = new Uint8Array(4);
    await expect(openHfModel(mapDir('dir-c', noWeights))).rejects.toThrow(/dir-c: .*pytorch_model\.bin is not supported/);
    const badConfig = good();
    badConfig['config.json'] = new TextEncoder().encode('{"hidden_size": 64');
    await expect(openHfModel(mapDir('dir-d', badConfig))).rejects.toThrow(/dir-d\/config\.json: not valid JSON/);
  });

  it('names file and tensor for a truncated weights file', async () => {
    const files = good();
    const full = files['model.safetensors']!;
    files['model.safetensors'] = full.subarray(0, full.byteLength - 1000);
    await expect(openHfModel(mapDir('trunc', files))).rejects.toThrow(/trunc\/model\.safetensors: tensor "lm_head\.weight".*truncated/);
  });

  it('names file, tensor, found and expected shape for a wrong shape', async () => {
    const files = good();
    const other = { ...tiny, hiddenDim: 160 };
    files['config.json'] = encodeHfModel(other, randomWeights(other, 1), { dtype: 'F32' })['config.json']!;
    await withModel(files, (m) => {
      expect(() => validateHfModel(m)).toThrow(
        /mem-model\/model\.safetensors: tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[172, 64\], expected \[160, 64\]/,
      );
    });
  });

  it('names a missing tensor, and a missing lm_head when not tied', async () => {
    const files = good();
    files['model.safetensors'] = tinyFile(w, (l) => l.splice(l.findIndex((t) => t.name === 'model.layers.0.self_attn.v_proj.weight'), 1));
    await withModel(files, (m) => {
      expect(() => validateHfModel(m)).toThrow(/mem-model: missing tensor model\.layers\.0\.self_attn\.v_proj\.weight \(expected shape \[64, 64\]\)/);
    });
    files['model.safetensors'] = tinyFile(w, (l) => l.pop());
    await expect(openHfModel(mapDir('nohead', files))).rejects.toThrow(/nohead\/model\.safetensors: missing tensor lm_head\.weight/);
  });

  it('names file and tensor for a dtype that is not allowed', async () => {
    const files = good();
    files['model.safetensors'] = tinyFile(w, (l) => {
      const t = l.find((x) => x.name === 'model.norm.weight')!;
      t.dtype = 'I32'; // same byte size as F32
    });
    await withModel(files, (m) => {
      expect(() => validateHfModel(m)).toThrow(/mem-model\/model\.safetensors: tensor model\.norm\.weight has dtype I32, expected one of F32, F16, BF16/);
      validateHfModel(m, ['F32', 'I32']); // allowed when the caller says so
    });
  });

  it('rejects tensors the config does not account for (more layers than config says)', async () => {
    const files = encodeHfModel({ ...tiny, nLayers: 2 }, randomWeights({ ...tiny, nLayers: 2 }, 1), { dtype: 'F32' });
    files['config.json'] = good()['config.json']!;
    await withModel(files, (m) => {
      expect(() => validateHfModel(m)).toThrow(/model\.safetensors: unexpected tensor model\.layers\.1\.self_attn\.q_proj\.weight/);
    });
  });

  it('names the shard for a missing shard file or a tensor the index misplaces', async () => {
    const files = encodeHfModel(tiny, w, { dtype: 'F32', shards: 2 });
    const noShard = { ...files };
    delete noShard['model-00002-of-00002.safetensors'];
    await expect(openHfModel(mapDir('sh', noShard))).rejects.toThrow(/sh: model\.safetensors\.index\.json lists model-00002-of-00002\.safetensors, but that file is missing/);

    const index = JSON.parse(new TextDecoder().decode(files['model.safetensors.index.json']));
    const moved = 'model.embed_tokens.weight';
    index.weight_map[moved] = 'model-00002-of-00002.safetensors';
    const lying = { ...files, 'model.safetensors.index.json': new TextEncoder().encode(JSON.stringify(index)) };
    await expect(openHfModel(mapDir('sh', lying))).rejects.toThrow(/sh\/model-00002-of-00002\.safetensors: missing tensor model\.embed_tokens\.weight/);
  });
});

// Pinned by running the generator once (see the test above); update only on purpose.
const GOLDEN_EMB_0_4 = [-0.38289228081703186, -0.17275628447532654, -0.09905175119638443, 0.8329856991767883];
const GOLDEN_BF16_HASH = 4128034040;

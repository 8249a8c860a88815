// Deterministic random-weights Llama models (tests, benchmarks, the tiny random model), and the HF model
// directory encoder they are written with.
// The same (config, seed) gives the same bytes on every engine: the generator uses only 32-bit integer
// ops and exact float arithmetic (no Math.log/cos, whose last bits differ between JS engines).

import { toHfConfig, type LlamaConfig } from './config.ts';
import { nodeFs } from './node-fs.ts';
import { encodeFloats, type FileDtype } from './float-dtypes.ts';
import { expectedTensors, toHfName } from './keymap.ts';
import type { TensorProvider } from './tensor-provider.ts';
import { encodeSafetensors } from './safetensors.ts';

/** murmur3's 32-bit finalizer: a bijective avalanche mix. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** 32-bit seed for one tensor from (seed, name): FNV-1a of the name mixed with both halves of the seed. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  return mix32(h ^ mix32(lo ^ mix32(hi + 0x9e3779b9)));
}

/**
 * Fills `out` with approximately N(0, std^2) values from a Weyl sequence through mix32 (a "splitmix32"
 * generator). Each normal is an Irwin-Hall sum of 4 uniforms, centred and scaled to unit variance
 * (sum of 4 U(0,1) has mean 2, variance 1/3); bounded at +-3.46 std, which is all test weights need.
 */
function fillNormal(out: Float32Array, seed32: number, mean: number, std: number): void {
  let state = seed32 >>> 0;
  // uniforms are integers in [0, 2^32): each has mean (2^32-1)/2 and variance ~2^64/12, so
  // (sum - 2(2^32-1)) * sqrt(3) * 2^-32 has unit variance. sqrt(3) is a literal to stay engine-exact.
  const k = 1.7320508075688772 * std * 2 ** -32;
  const centre = 2 * (2 ** 32 - 1);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let j = 0; j < 4; j++) {
      state = (state + 0x9e3779b9) >>> 0;
      s += mix32(state);
    }
    out[i] = mean + (s - centre) * k;
  }
}

/**
 * Random weights for `cfg`, our names -> row-major f32 data (shapes from expectedTensors):
 *   tok_embeddings  N(0, 0.5^2)
 *   linear (out,in) N(0, 1/in): keeps activations at unit scale through the residual stream
 *   output (head)   N(0, (4/sqrt(dim))^2): logits std ~4 for a unit-RMS hidden state, so greedy
 *                   decoding is not a coin toss among near-equal logits nor one-hot
 *   norms           1 + N(0, 0.1^2)
 * Each tensor is seeded from (seed, name), so it does not depend on which others exist.
 */
export function randomWeights(cfg: LlamaConfig, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(cfg)) out.set(name, randomTensor(cfg, seed, name, shape));
  return out;
}

/** One tensor of randomWeights(cfg, seed), generated alone. */
function randomTensor(cfg: LlamaConfig, seed: number, name: string, shape: number[]): Float32Array {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  const s = tensorSeed(seed, name);
  if (name === 'tok_embeddings') fillNormal(data, s, 0, 0.5);
  else if (name === 'output') fillNormal(data, s, 0, 4 / Math.sqrt(cfg.dim));
  else if (shape.length === 1) fillNormal(data, s, 1, 0.1);
  else fillNormal(data, s, 0, 1 / Math.sqrt(shape[1]!));
  return data;
}

/**
 * The same weights as randomWeights(cfg, seed), generated lazily one tensor at a time (the benchmarks'
 * billion-parameter models never exist whole in host memory). Returns a TensorProvider.
 */
export function randomProvider(cfg: LlamaConfig, seed: number): TensorProvider {
  const shapes = expectedTensors(cfg);
  let last: { name: string; data: Float32Array } | null = null;
  return {
    config: cfg,
    async readRowsF32(name, rowStart, rows) {
      const shape = shapes.get(name);
      if (!shape) throw new Error(`random model: no tensor ${name}`);
      if (last?.name !== name) last = { name, data: randomTensor(cfg, seed, name, shape) };
      if (shape.length === 1) return last.data;
      return last.data.subarray(rowStart * shape[1]!, (rowStart + rows) * shape[1]!);
    },
  };
}


export interface EncodeHfOptions {
  dtype: FileDtype;
  shards?: number; // > 1: model-0000k-of-0000N.safetensors + model.safetensors.index.json
  tokenizerJson?: string;
  tokenizerConfigJson?: string;
}

const TORCH_DTYPE: Record<FileDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * The files of an HF model directory holding `weights` (our names) in `opts.dtype`: config.json,
 * generation_config.json, model.safetensors or N shards + index, and the tokenizer files when given.
 * Tensors are written in expectedTensors order; shards split that order into N byte-balanced runs.
 */
export function encodeHfModel(cfg: LlamaConfig, weights: Map<string, Float32Array>, opts: EncodeHfOptions): Record<string, Uint8Array> {
  const enc = new TextEncoder();
  const files: Record<string, Uint8Array> = {};
  const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v, null, 2) + '\n');
  files['config.json'] = json({ ...toHfConfig(cfg), torch_dtype: TORCH_DTYPE[opts.dtype] });
  files['generation_config.json'] = json({ bos_token_id: cfg.bosTokenId, eos_token_id: cfg.eosTokenId });
  if (opts.tokenizerJson !== undefined) files['tokenizer.json'] = enc.encode(opts.tokenizerJson);
  if (opts.tokenizerConfigJson !== undefined) files['tokenizer_config.json'] = enc.encode(opts.tokenizerConfigJson);

  const expected = expectedTensors(cfg);
  for (const name of weights.keys()) {
    if (!expected.has(name)) throw new Error(`encodeHfModel: tensor "${name}" is not part of this config`);
  }
  const tensors = [...expected].map(([name, shape]) => {
    const w = weights.get(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (!w) throw new Error(`encodeHfModel: missing tensor "${name}"`);
    if (w.length !== n) throw new Error(`encodeHfModel: tensor "${name}" has ${w.length} values, shape [${shape.join(', ')}] needs ${n}`);
    return { name: toHfName(name), dtype: opts.dtype, shape, data: encodeFloats(w, opts.dtype) };
  });
  const meta = { format: 'pt' }; // what transformers writes; some loaders check it

  const nShards = opts.shards ?? 1;
  if (!Number.isInteger(nShards) || nShards < 1 || nShards > tensors.length) {
    throw new Error(`encodeHfModel: shards must be an integer in [1, ${tensors.length}], got ${nShards}`);
  }
  if (nShards === 1) {
    files['model.safetensors'] = encodeSafetensors(tensors, meta);
    return files;
  }

  // Contiguous runs: start a new shard once this one holds its share of the bytes, or when the
  // remaining tensors are just enough to give every remaining shard one.
  const total = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  const groups: (typeof tensors)[] = [[]];
  let before = 0;
  tensors.forEach((t, i) => {
    const s = groups.length - 1;
    const cur = groups[s]!;
    const full = before >= ((s + 1) * total) / nShards;
    const forced = tensors.length - i === nShards - 1 - s;
    if (cur.length > 0 && s < nShards - 1 && (full || forced)) groups.push([t]);
    else cur.push(t);
    before += t.data.byteLength;
  });
  const pad = (k: number): string => String(k).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  groups.forEach((g, k) => {
    const file = `model-${pad(k + 1)}-of-${pad(nShards)}.safetensors`;
    files[file] = encodeSafetensors(g, meta);
    for (const t of g) weightMap[t.name] = file;
  });
  files['model.safetensors.index.json'] = json({ metadata: { total_size: total }, weight_map: weightMap });
  return files;
}

/** Node/Deno only (node:fs): writes `files` into directory `path`, creating it (mkdir -p). */
export async function writeModelDir(path: string, files: Record<string, Uint8Array>): Promise<void> {
  const fs = await nodeFs();
  await fs.mkdir(path, { recursive: true });
  const base = path.replace(/\/$/, '');
  for (const [file, bytes] of Object.entries(files)) await fs.writeFile(`${base}/${file}`, bytes);
}

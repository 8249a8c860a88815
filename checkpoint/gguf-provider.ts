// A Llama model in one GGUF file (llama.cpp's format) as a TensorProvider: config from the metadata,
// GGUF tensor names mapped to ours and q/k rows put back into HF order (keymap.ts), tensors decoded to f32
// row range by row range (gguf-quants.ts), and the tokenizer rebuilt from the metadata (gguf-tokenizer.ts).
// By default (storedFormat 'native') every block-quantized matrix goes to the GPU as the file's blocks
// (readRowsPacked: whole rows of bytes, q/k rows moved whole), in its own format (nativeFormats: Q4_K, Q6_K,
// ...; F16 as f16, F32 as f32).

import type { ByteSource } from './byte-source.ts';
import { validateConfig, type LlamaConfig } from './config.ts';
import { readGguf, readGgufRowBytes, type GgufFile, type GgufTensorInfo, type GgufValue } from './gguf.ts';
import { dequantize, GGML_TYPES, READABLE_TYPES, nativeFormat } from './gguf-quants.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import { tokenizerFromGguf } from './gguf-tokenizer.ts';
import { expectedTensors, fromGgufName, permuteQk, qkHeads, tensorSetProblems, toGgufName } from './keymap.ts';
import type { TensorProvider } from './tensor-provider.ts';

/** A metadata float stored as f32, as the shortest decimal that rounds to it (1e-5, not 9.99999974738e-6). */
function shortestF32(v: number): number {
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === Math.fround(v)) return d;
  }
  return v;
}

/**
 * The linear RoPE scale factor of a GGUF, read as llama.cpp's llama-model.cpp does: the type from
 * llama.rope.scaling.type (absent: "linear"), the factor from llama.rope.scaling.factor or else the
 * older llama.rope.scale_linear (absent or 0: no scaling); type "none" means no scaling. Other types
 * (yarn, longrope, ...) are refused.
 */
function ggufRopeScale(f: GgufFile, num: (key: string, fallback?: number) => number): number {
  const type = f.metadata.get('llama.rope.scaling.type') ?? 'linear';
  if (type === 'none') return 1;
  if (type !== 'linear') throw new Error(`${f.source}: llama.rope.scaling.type ${JSON.stringify(String(type))} is not supported (only "linear" RoPE scaling is implemented)`);
  const factor = f.metadata.has('llama.rope.scaling.factor') ? num('llama.rope.scaling.factor') : num('llama.rope.scale_linear', 0);
  if (factor === 0) return 1;
  if (!(factor > 0)) throw new Error(`${f.source}: RoPE scale factor must be positive, got ${factor}`);
  return factor;
}

/** LlamaConfig from GGUF metadata and tensor shapes. Throws naming the file and the key. */
export function ggufConfig(f: GgufFile): LlamaConfig {
  const md = f.metadata;
  const arch = md.get('general.architecture');
  if (arch !== 'llama') throw new Error(`${f.source}: general.architecture is ${JSON.stringify(arch ?? null)}; only "llama" is supported`);
  const num = (key: string, fallback?: number): number => {
    const v = md.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${f.source}: missing metadata "${key}"`);
    }
    if (typeof v !== 'number') throw new Error(`${f.source}: metadata "${key}" must be a number, got ${String(v)}`);
    return f.valueTypes.get(key) === 'f32' ? shortestF32(v) : v;
  };
  const ropeScale = ggufRopeScale(f, num);
  for (const name of f.tensors.keys()) {
    if (name.endsWith('.bias')) throw new Error(`${f.source}: tensor "${name}": bias tensors are not supported (this runtime has no bias terms)`);
  }
  const emb = f.tensors.get('token_embd.weight');
  if (!emb) throw new Error(`${f.source}: missing tensor "token_embd.weight"`);
  const dim = num('llama.embedding_length');
  const nHeads = num('llama.attention.head_count');
  const headDim = num('llama.attention.key_length', dim / nHeads);
  const ropeDims = num('llama.rope.dimension_count', headDim);
  if (ropeDims !== headDim) throw new Error(`${f.source}: llama.rope.dimension_count (${ropeDims}) != head size (${headDim}): partial RoPE is not supported`);
  const cfg: LlamaConfig = {
    dim,
    hiddenDim: num('llama.feed_forward_length'),
    nLayers: num('llama.block_count'),
    nHeads,
    nKvHeads: num('llama.attention.head_count_kv', nHeads),
    headDim,
    vocabSize: emb.shape[0]!,
    maxSeqLen: num('llama.context_length', 4096),
    normEps: num('llama.attention.layer_norm_rms_epsilon', 1e-5),
    ropeTheta: num('llama.rope.freq_base', 10000),
    bosTokenId: num('tokenizer.ggml.bos_token_id', 1),
    eosTokenId: num('tokenizer.ggml.eos_token_id', 2),
    tieWordEmbeddings: !f.tensors.has('output.weight'),
  };
  if (ropeScale !== 1) cfg.ropeScaleFactor = ropeScale;
  validateConfig(cfg, f.source);
  return cfg;
}

/** Rows [rowStart, rowStart + rows) of a tensor as f32: the file's bytes (gguf.ts) decoded (gguf-quants.ts). */
async function readGgufRows(src: ByteSource, t: GgufTensorInfo, rowStart: number, rows: number): Promise<Float32Array> {
  const bytes = await readGgufRowBytes(src, t, rowStart, rows); // checks the type is known and the rows exist
  try {
    return dequantize(GGML_TYPES.get(t.typeId)!, bytes, rows * t.ne[0]!);
  } catch (e) {
    throw new Error(`${src.name}: tensor "${t.name}": ${(e as Error).message}`);
  }
}

export interface GgufModel {
  config: LlamaConfig;
  provider: TensorProvider;
  tokenizerJson: string | null; // HF tokenizer.json rebuilt from the metadata; null when it has no SentencePiece vocabulary
  tokenizerConfigJson: string | null;
  metadata: Map<string, GgufValue>;
  tensorTypes: Map<string, string>; // our name -> ggml type name ("Q4_0")
  nativeFormats: Map<string, WeightFormat>; // our matrix name -> its GPU format as stored ("Q4_K", f16 for F16)
  file: GgufFile;
  close(): Promise<void>;
}

/**
 * Opens a GGUF Llama model: reads the header only, checks every tensor we need is there with the
 * right shape and a type we can decode, before anything runs. Errors name the file and tensor.
 */
export async function openGgufModel(src: ByteSource): Promise<GgufModel> {
  try {
    const file = await readGguf(src);
    const config = ggufConfig(file);
    const shapes = expectedTensors(config);
    const tensors = new Map<string, GgufTensorInfo>();
    for (const info of file.tensors.values()) {
      const ours = fromGgufName(info.name);
      if (ours !== null && shapes.has(ours)) tensors.set(ours, info);
    }
    const problems = tensorSetProblems(config, tensors, {
      nameOf: toGgufName,
      missing: (gname) => `${src.name}: missing tensor "${gname}"`,
      check(t, gname, shape) {
        if (t.shape.join() !== shape.join()) {
          return [`${src.name}: tensor "${gname}" has shape [${t.shape.join(', ')}] (ne [${t.ne.join(', ')}]), expected [${shape.join(', ')}]`];
        }
        if (!READABLE_TYPES.has(t.type)) {
          return [`${src.name}: tensor "${gname}" has ggml type ${t.type}, which is not supported (supported: ${[...READABLE_TYPES].join(', ')})`];
        }
        return [];
      },
    });
    if (problems.length > 0) throw new Error(problems[0]);
    const tensorTypes = new Map<string, string>();
    for (const name of shapes.keys()) tensorTypes.set(name, tensors.get(name)!.type);
    // Matrices go to the GPU as stored (weights.ts, dtype 'native'): block types as their raw bytes.
    const nativeFormats = new Map<string, WeightFormat>();
    for (const [name, shape] of shapes) if (shape.length === 2) nativeFormats.set(name, nativeFormat(tensorTypes.get(name)!));

    /** Rows of a tensor through `read`, q/k rows put back in HF order (a permuted row moves only within its head). */
    const readRows = async <T extends Float32Array | Uint8Array>(
      name: string, rowStart: number, rows: number, perRow: number, read: (t: GgufTensorInfo, r0: number, n: number) => Promise<T>,
    ): Promise<T> => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${src.name}: no tensor for "${name}"`);
      const heads = qkHeads(name, config);
      if (heads === 0) return read(t, rowStart, rows);
      const D = config.headDim;
      const h0 = Math.floor(rowStart / D);
      const h1 = Math.ceil((rowStart + rows) / D);
      const block = permuteQk(await read(t, h0 * D, (h1 - h0) * D), h1 - h0, perRow, false);
      return block.subarray((rowStart - h0 * D) * perRow, (rowStart - h0 * D + rows) * perRow) as T;
    };

    const provider: TensorProvider = {
      config,
      storedFormat: 'native',
      nativeFormats,
      async readRowsF32(name, rowStart, rows) {
        const t = tensors.get(name);
        if (!t) throw new Error(`${src.name}: no tensor for "${name}"`);
        if (t.shape.length === 1) return readGgufRows(src, t, 0, 1);
        return readRows(name, rowStart, rows, t.shape[1]!, (ti, r0, n) => readGgufRows(src, ti, r0, n));
      },
      // The file's bytes of a block-type matrix (F32 / F16 are packed from readRowsF32, losslessly).
      async readRowsPacked(name, format, rowStart, rows) {
        const t = tensors.get(name);
        if (!t || t.shape.length !== 2 || format !== t.type) return null;
        return readRows(name, rowStart, rows, t.byteLength / t.shape[0]!, (ti, r0, n) => readGgufRowBytes(src, ti, r0, n));
      },
    };
    const tok = tokenizerFromGguf(file.metadata, src.name);
    return {
      config,
      provider,
      tokenizerJson: tok?.tokenizerJson ?? null,
      tokenizerConfigJson: tok?.tokenizerConfigJson ?? null,
      metadata: file.metadata,
      tensorTypes,
      nativeFormats,
      file,
      close: async () => src.close?.(),
    };
  } catch (e) {
    await src.close?.();
    throw e;
  }
}

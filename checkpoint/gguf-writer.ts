// Writes Llama models as GGUF files that llama.cpp loads: the test fixtures of the GGUF reader and
// the models of the llama.cpp cross-check (bench/llamacpp/). What llama.cpp's convert_hf_to_gguf.py
// writes for a LlamaForCausalLM, minus what we do not use:
//   - general.architecture "llama" and the llama.* hyper-parameters llama-model.cpp reads;
//   - tensors under GGUF names (token_embd, blk.N.attn_q, ...), q/k rows permuted to Meta's
//     interleaved RoPE layout (keymap.ts explains it);
//   - norm vectors in F32 whatever the type asked, as the converter does; matrices in the type asked,
//     falling back to F16 when a row is not a whole number of 32-value blocks (the converter's
//     QuantError fallback: e.g. 172-column w2 of the test configs);
//   - optionally the tokenizer (tokenizer.ggml.*) from an HF tokenizer.json (gguf-tokenizer.ts).

import type { LlamaConfig } from './config.ts';
import { encodeGgufHeader, type GgufEntry, type GgufTensorSpec } from './gguf.ts';
import { ggmlRowBytes, ggmlTypeByName, quantizeQ4_0, quantizeQ8_0 } from './gguf-quants.ts';
import { ggufTokenizerEntries } from './gguf-tokenizer.ts';
import { f32ToF16 } from '../kernels/half.ts';
import { expectedTensors, permuteQk, qkHeads, toGgufName } from './keymap.ts';
import type { TensorProvider } from './tensor-provider.ts';

// node:fs in Node and Deno. A variable specifier keeps bundlers from resolving it in browser builds, where
// models come as Blobs or URLs and the code that uses it never runs.
const NODE_FS = 'node:fs/promises';

export type GgufWriteType = 'F32' | 'F16' | 'Q8_0' | 'Q4_0';

export interface EncodeGgufOptions {
  type: GgufWriteType; // for the matrices; norms stay F32
  tokenizerJson?: object; // an HF tokenizer.json (SentencePiece-style BPE) to embed as tokenizer.ggml.*
  chatTemplate?: string; // tokenizer.chat_template
  name?: string; // general.name
  alignment?: number; // general.alignment (default 32; written only when different)
}

// llama_ftype: what general.file_type says the bulk of the tensors are.
const FILE_TYPE: Record<GgufWriteType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

interface Planned {
  name: string; // ours
  shape: number[]; // row-major, ours
  type: string; // ggml type name
  spec: GgufTensorSpec;
}

function plan(cfg: LlamaConfig, opts: EncodeGgufOptions): { entries: GgufEntry[]; tensors: Planned[] } {
  const u32 = (key: string, value: number): GgufEntry => ({ key, type: 'u32', value });
  const entries: GgufEntry[] = [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.name', type: 'string', value: opts.name ?? 'llama2-webgpu' },
    u32('general.file_type', FILE_TYPE[opts.type]),
    u32('llama.vocab_size', cfg.vocabSize),
    u32('llama.context_length', cfg.maxSeqLen),
    u32('llama.embedding_length', cfg.dim),
    u32('llama.block_count', cfg.nLayers),
    u32('llama.feed_forward_length', cfg.hiddenDim),
    u32('llama.rope.dimension_count', cfg.headDim),
    u32('llama.attention.head_count', cfg.nHeads),
    u32('llama.attention.head_count_kv', cfg.nKvHeads),
    { key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', value: cfg.normEps },
    { key: 'llama.rope.freq_base', type: 'f32', value: cfg.ropeTheta },
  ];
  if (cfg.ropeScaleFactor !== undefined && cfg.ropeScaleFactor !== 1) {
    // What convert_hf_to_gguf.py writes for rope_scaling {"type": "linear"}.
    entries.push({ key: 'llama.rope.scaling.type', type: 'string', value: 'linear' }, { key: 'llama.rope.scaling.factor', type: 'f32', value: cfg.ropeScaleFactor });
  }
  if (opts.alignment !== undefined && opts.alignment !== 32) entries.push(u32('general.alignment', opts.alignment));
  if (opts.tokenizerJson) {
    entries.push(...ggufTokenizerEntries(opts.tokenizerJson, { bos: cfg.bosTokenId, eos: cfg.eosTokenId }, opts.chatTemplate));
  } else {
    entries.push(u32('tokenizer.ggml.bos_token_id', cfg.bosTokenId), u32('tokenizer.ggml.eos_token_id', cfg.eosTokenId));
  }

  const tensors: Planned[] = [];
  for (const [name, shape] of expectedTensors(cfg)) {
    const cols = shape[shape.length - 1]!;
    let type: string = shape.length === 1 ? 'F32' : opts.type;
    if (cols % ggmlTypeByName(type).blockSize !== 0) type = 'F16';
    const t = ggmlTypeByName(type);
    const rows = shape.length === 2 ? shape[0]! : 1;
    const spec = { name: toGgufName(name), ne: [...shape].reverse(), typeId: t.id, byteLength: ggmlRowBytes(t, cols) * rows };
    tensors.push({ name, shape, type, spec });
  }
  return { entries, tensors };
}

/** One tensor's bytes in the file: q/k permuted, then converted to its planned type. */
function encodeTensor(cfg: LlamaConfig, p: Planned, data: Float32Array): Uint8Array {
  const n = p.shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new Error(`GGUF writer: tensor "${p.name}" has ${data.length} values, shape [${p.shape.join(', ')}] needs ${n}`);
  const heads = qkHeads(p.name, cfg);
  const x = heads > 0 ? permuteQk(data, heads, p.shape[1]!, true) : data;
  const bytes = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  switch (p.type) {
    case 'F32': return bytes(x);
    case 'F16': return bytes(f32ToF16(x));
    case 'Q8_0': return quantizeQ8_0(x);
    case 'Q4_0': return quantizeQ4_0(x);
    default: throw new Error(`GGUF writer: cannot write type ${p.type}`);
  }
}

/** What each of our tensors is stored as, for a config and options (norms F32, F16 fallbacks). */
export function ggufTensorTypes(cfg: LlamaConfig, opts: EncodeGgufOptions): Map<string, string> {
  return new Map(plan(cfg, opts).tensors.map((t) => [t.name, t.type]));
}

/** A whole GGUF file in memory from our-name f32 tensors in HF layout (tests, small models). */
export function encodeGguf(cfg: LlamaConfig, weights: Map<string, Float32Array>, opts: EncodeGgufOptions): Uint8Array {
  const { entries, tensors } = plan(cfg, opts);
  for (const name of weights.keys()) {
    if (!tensors.some((t) => t.name === name)) throw new Error(`GGUF writer: tensor "${name}" is not part of this config`);
  }
  const { header, offsets, dataSize } = encodeGgufHeader(entries, tensors.map((t) => t.spec), opts.alignment);
  const out = new Uint8Array(header.byteLength + dataSize);
  out.set(header, 0);
  tensors.forEach((t, i) => {
    const w = weights.get(t.name);
    if (!w) throw new Error(`GGUF writer: missing tensor "${t.name}"`);
    out.set(encodeTensor(cfg, t, w), header.byteLength + offsets[i]!);
  });
  return out;
}

/**
 * Node/Deno only (node:fs): streams a GGUF file to `path` from a TensorProvider (an HF directory, ...),
 * one tensor at a time, so host memory holds one tensor, never the whole model.
 */
export async function writeGgufFile(path: string, src: TensorProvider, opts: EncodeGgufOptions): Promise<void> {
  const fs: typeof import('node:fs/promises') = await import(/* @vite-ignore */ NODE_FS);
  const cfg = src.config;
  const { entries, tensors } = plan(cfg, opts);
  const { header, offsets, dataSize } = encodeGgufHeader(entries, tensors.map((t) => t.spec), opts.alignment);
  const handle = await fs.open(path, 'w');
  const writeAt = async (bytes: Uint8Array, at: number): Promise<void> => {
    for (let done = 0; done < bytes.byteLength; ) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, at + done);
      done += bytesWritten;
    }
  };
  try {
    await writeAt(header, 0);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const rows = t.shape.length === 2 ? t.shape[0]! : 1;
      await writeAt(encodeTensor(cfg, t, await src.readRowsF32(t.name, 0, rows)), header.byteLength + offsets[i]!);
    }
    await handle.truncate(header.byteLength + dataSize); // the padding after the last tensor
  } finally {
    await handle.close();
  }
}

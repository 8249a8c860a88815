// Writes GGUF files: the header of any tensor set (encodeGgufHeader: metadata entries, tensor infos, the
// data section's layout), and Llama models that llama.cpp loads (the test fixtures of the GGUF reader and
// the models of the llama.cpp cross-check, bench/llamacpp/). What llama.cpp's convert_hf_to_gguf.py
// writes for a LlamaForCausalLM, minus what we do not use:
//   - general.architecture "llama" and the llama.* hyper-parameters llama-model.cpp reads;
//   - tensors under GGUF names (token_embd, blk.N.attn_q, ...), q/k rows permuted to Meta's
//     interleaved RoPE layout (keymap.ts explains it);
//   - norm vectors in F32 whatever the type asked, as the converter does; matrices in the type asked,
//     falling back to F16 when a row is not a whole number of 32-value blocks (the converter's
//     QuantError fallback: e.g. 172-column w2 of the test configs);
//   - optionally the tokenizer (tokenizer.ggml.*) from an HF tokenizer.json (gguf-tokenizer.ts).

import type { LlamaConfig } from './config.ts';
import { nodeFs } from './node-fs.ts';
import { GGUF_FIXED_SIZES, GGUF_MAGIC, GGUF_VALUE_TYPES, type GgufEntry, type GgufScalarType } from './gguf.ts';
import { GGML_TYPES, ggmlRowBytes, ggmlTensorBytes, ggmlTypeByName, quantizeQ4_0, quantizeQ8_0 } from './gguf-quants.ts';
import { ggufTokenizerEntries } from './gguf-tokenizer.ts';
import { encodeFloats } from './float-dtypes.ts';
import { expectedTensors, permuteQk, qkHeads, toGgufName } from './keymap.ts';
import type { TensorProvider } from './tensor-provider.ts';

/** A tensor to write: its dims innermost first, its ggml type id and its data size. */
export interface GgufTensorSpec {
  name: string;
  ne: number[];
  typeId: number; // any u32: tests write unknown ids on purpose
  byteLength: number;
}

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  len = 0;
  private grow(n: number): number {
    if (this.len + n > this.buf.byteLength) {
      const next = new Uint8Array(Math.max(this.buf.byteLength * 2, this.len + n));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  // grow() may replace buf and view: call it before touching them.
  u32(v: number): void {
    const at = this.grow(4);
    this.view.setUint32(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.grow(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  raw(b: Uint8Array): void {
    const at = this.grow(b.byteLength);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.byteLength);
    this.raw(b);
  }
  scalar(type: GgufScalarType, v: number | bigint | string | boolean): void {
    if (type === 'string') return this.string(String(v));
    const at = this.grow(GGUF_FIXED_SIZES[type]!);
    const d = this.view;
    switch (type) {
      case 'u8': return d.setUint8(at, Number(v));
      case 'i8': return d.setInt8(at, Number(v));
      case 'u16': return d.setUint16(at, Number(v), true);
      case 'i16': return d.setInt16(at, Number(v), true);
      case 'u32': return d.setUint32(at, Number(v), true);
      case 'i32': return d.setInt32(at, Number(v), true);
      case 'f32': return d.setFloat32(at, Number(v), true);
      case 'f64': return d.setFloat64(at, Number(v), true);
      case 'bool': return d.setUint8(at, v ? 1 : 0);
      case 'u64': return d.setBigUint64(at, BigInt(v), true);
      case 'i64': return d.setBigInt64(at, BigInt(v), true);
    }
  }
  bytes(): Uint8Array { return this.buf.slice(0, this.len); }
}

/**
 * The header of a GGUF v3 file (everything before the data section, padded to the alignment) and
 * where each tensor goes: `offsets[i]` is tensor i's offset in the data section. Tensors are laid
 * out in order, each padded to the alignment; the caller writes the data after the header.
 */
export function encodeGgufHeader(entries: GgufEntry[], tensors: GgufTensorSpec[], alignment = 32): { header: Uint8Array; offsets: number[]; dataSize: number } {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(entries.length);
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.key)) throw new Error(`GGUF writer: metadata key "${e.key}" given twice`);
    seen.add(e.key);
    w.string(e.key);
    w.u32(GGUF_VALUE_TYPES.indexOf(e.type));
    if (e.type === 'array') {
      w.u32(GGUF_VALUE_TYPES.indexOf(e.of));
      w.u64(e.value.length);
      for (let i = 0; i < e.value.length; i++) w.scalar(e.of, e.value[i]!);
    } else {
      w.scalar(e.type, e.value);
    }
  }
  const offsets: number[] = [];
  let at = 0;
  for (const t of tensors) {
    const known = GGML_TYPES.get(t.typeId);
    if (known) {
      const need = ggmlTensorBytes(known, t.ne);
      if (need !== t.byteLength) throw new Error(`GGUF writer: tensor "${t.name}": ${t.byteLength} bytes given, ${known.name} [${t.ne.join(', ')}] needs ${need}`);
    }
    w.string(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.typeId);
    w.u64(at);
    offsets.push(at);
    at += Math.ceil(t.byteLength / alignment) * alignment;
  }
  w.raw(new Uint8Array(Math.ceil(w.len / alignment) * alignment - w.len));
  return { header: w.bytes(), offsets, dataSize: at };
}

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
  switch (p.type) {
    case 'F32':
    case 'F16': return encodeFloats(x, p.type);
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
  const fs = await nodeFs();
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

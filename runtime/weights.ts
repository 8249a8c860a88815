// Model weights on the GPU. Matrices are stored in a WeightFormat and split by rows into chunks that
// each fit one storage binding (maxStorageBufferBindingSize: 128 MiB on lavapipe; Llama-2-70B's
// embedding is 500 MiB in f16). Norm weights stay f32. Tensors are read and uploaded one row-chunk at
// a time, so host memory stays bounded by one chunk, not by the model.

import type { GpuContext } from './device.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { matrixFormats, type TensorProvider } from '../checkpoint/tensor-provider.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';
import { formatSpec, type Dtype, type WeightFormat } from '../kernels/weight-formats.ts';
import { storageBuffer, writeBufferPadded } from '../kernels/common.ts';

export interface WeightChunk {
  buffer: GPUBuffer; // (rows, cols) in the matrix's format
  rowStart: number;
  rows: number;
}

export interface WeightMatrix {
  name: string;
  format: WeightFormat;
  rows: number; // out_features
  cols: number; // in_features (K)
  chunks: WeightChunk[];
}

export interface LayerWeights {
  attentionNorm: GPUBuffer; // (dim) f32
  wq: WeightMatrix; // (nHeads*headDim, dim)
  wk: WeightMatrix; // (nKvHeads*headDim, dim)
  wv: WeightMatrix; // (nKvHeads*headDim, dim)
  wo: WeightMatrix; // (dim, nHeads*headDim)
  ffnNorm: GPUBuffer; // (dim) f32
  w1: WeightMatrix; // (hiddenDim, dim) gate
  w2: WeightMatrix; // (dim, hiddenDim) down
  w3: WeightMatrix; // (hiddenDim, dim) up
}

/** Which part of the model one device holds (pipeline sharding: consecutive layers per device). */
export interface WeightPart {
  firstLayer: number;
  lastLayer: number; // inclusive; lastLayer < firstLayer for none
  embedding: boolean; // the first device
  head: boolean; // final norm and output head: the last device
}

export interface GpuWeights {
  format: WeightFormat; // the embedding's (the gather is compiled for it); with dtype 'native' matrices differ
  part: WeightPart;
  tokEmbeddings: WeightMatrix | null; // (vocab, dim), on the device with part.embedding
  layers: LayerWeights[]; // layers part.firstLayer..part.lastLayer
  norm: GPUBuffer | null; // (dim) f32, with the head
  output: WeightMatrix | null; // (vocab, dim), with the head; the embedding itself when tied
  bytes: number; // total GPU bytes of weights
}

export interface LoadProgress {
  tensor: string;
  done: number; // tensors uploaded
  total: number;
  bytes: number; // GPU bytes uploaded so far
}

/** Rows per chunk so that one chunk fits a binding and a buffer; a multiple of `align` (the format's rowAlign). */
export function rowsPerChunk(ctx: Pick<GpuContext, 'maxBindingBytes' | 'maxBufferBytes'>, rowBytes: number, align = 1): number {
  const cap = Math.min(ctx.maxBindingBytes, ctx.maxBufferBytes);
  const r = Math.floor(cap / rowBytes / align) * align;
  if (r < 1) throw new Error(`${align} weight row(s) of ${rowBytes} bytes exceed the adapter's binding limit (${cap} bytes)`);
  return r;
}

export function wholeModel(cfg: LlamaConfig): WeightPart {
  return { firstLayer: 0, lastLayer: cfg.nLayers - 1, embedding: true, head: true };
}

/** Number of tensors a part loads (for progress). */
function partTensorCount(cfg: LlamaConfig, part: WeightPart): number {
  const layers = Math.max(0, part.lastLayer - part.firstLayer + 1);
  return layers * 9 + (part.embedding ? 1 : 0) + (part.head ? (cfg.tieWordEmbeddings && part.embedding ? 1 : 2) : 0); // a tied head reuses the embedding
}

export async function loadWeights(
  ctx: GpuContext, src: TensorProvider, dtype: Dtype, onProgress?: (p: LoadProgress) => void,
  part: WeightPart = wholeModel(src.config),
): Promise<GpuWeights> {
  const cfg = src.config;
  const shapes = expectedTensors(cfg);
  const total = partTensorCount(cfg, part);
  let done = 0;
  let bytes = 0;
  const tick = (tensor: string): void => {
    done++;
    onProgress?.({ tensor, done, total, bytes });
  };

  const formats = matrixFormats(cfg, dtype, src.nativeFormats);
  const format = formats.get('tok_embeddings')!;
  const matrix = async (name: string): Promise<WeightMatrix> => {
    const shape = shapes.get(name)!;
    const [rows, cols] = shape as [number, number];
    const mFormat = formats.get(name)!;
    const spec = formatSpec(mFormat);
    const per = rowsPerChunk(ctx, spec.rowBytes(cols), spec.rowAlign);
    const chunks: WeightChunk[] = [];
    for (let r0 = 0; r0 < rows; r0 += per) {
      const n = Math.min(per, rows - r0);
      // A converted model's bytes, or a GGUF's blocks, go straight to the GPU; anything else is packed here.
      let packed = (await src.readRowsPacked?.(name, mFormat, r0, n)) ?? null;
      if (!packed) {
        const data = await src.readRowsF32(name, r0, n);
        if (data.length !== n * cols) throw new Error(`${name}: expected ${n * cols} values for rows ${r0}..${r0 + n}, got ${data.length}`);
        packed = spec.pack(data, n, cols);
      }
      const buffer = storageBuffer(ctx.device, `${name}[${r0}:${r0 + n}]`, packed.byteLength);
      writeBufferPadded(ctx.device, buffer, 0, packed);
      bytes += buffer.size;
      chunks.push({ buffer, rowStart: r0, rows: n });
    }
    tick(name);
    return { name, format: mFormat, rows, cols, chunks };
  };
  const vector = async (name: string): Promise<GPUBuffer> => {
    const data = await src.readRowsF32(name, 0, 1);
    const buffer = storageBuffer(ctx.device, name, data.byteLength);
    writeBufferPadded(ctx.device, buffer, 0, data);
    bytes += buffer.size;
    tick(name);
    return buffer;
  };

  // WebGPU reports a buffer it could not allocate only through an error scope: catch it and say so.
  ctx.device.pushErrorScope('out-of-memory');
  let scopeOpen = true;
  const checkMemory = async (): Promise<void> => {
    scopeOpen = false;
    const err = await ctx.device.popErrorScope();
    if (err) throw new Error(`out of GPU memory after uploading ${(bytes / 2 ** 20).toFixed(1)} MiB of weights (${err.message}): use a smaller --dtype, more devices, or a smaller --context`);
  };
  try {
    const tokEmbeddings = part.embedding ? await matrix('tok_embeddings') : null;
    const layers: LayerWeights[] = [];
    for (let i = part.firstLayer; i <= part.lastLayer; i++) {
      const p = `layers.${i}.`;
      layers.push({
        attentionNorm: await vector(p + 'attention_norm'),
        wq: await matrix(p + 'wq'),
        wk: await matrix(p + 'wk'),
        wv: await matrix(p + 'wv'),
        wo: await matrix(p + 'wo'),
        ffnNorm: await vector(p + 'ffn_norm'),
        w1: await matrix(p + 'w1'),
        w2: await matrix(p + 'w2'),
        w3: await matrix(p + 'w3'),
      });
      // Let the queue drain now and then so staging memory does not pile up on big models.
      if (i % 4 === 3) await ctx.device.queue.onSubmittedWorkDone();
    }
    let norm: GPUBuffer | null = null;
    let output: WeightMatrix | null = null;
    if (part.head) {
      norm = await vector('norm');
      output = cfg.tieWordEmbeddings ? (tokEmbeddings ?? (await matrix('tok_embeddings'))) : await matrix('output');
    }
    await ctx.device.queue.onSubmittedWorkDone();
    await checkMemory();
    return { format, part, tokEmbeddings, layers, norm, output, bytes };
  } finally {
    if (scopeOpen) await ctx.device.popErrorScope().catch(() => null);
  }
}

export function destroyWeights(w: GpuWeights): void {
  const seen = new Set<GPUBuffer>();
  const m = (x: WeightMatrix): void => x.chunks.forEach((c) => seen.add(c.buffer));
  if (w.tokEmbeddings) m(w.tokEmbeddings);
  if (w.output) m(w.output);
  if (w.norm) seen.add(w.norm);
  for (const l of w.layers) {
    seen.add(l.attentionNorm);
    seen.add(l.ffnNorm);
    [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3].forEach(m);
  }
  seen.forEach((b) => b.destroy());
}

// The forward pass on one device: scratch buffers (named once, like llama2.c's RunState), the pipelines
// and bind groups of every dispatch (made at load), and `encodeForward`, which records one step.
//
// A step processes nTokens token rows at once. Row t is token ids[t] at position pos[t] of the
// sequence in KV slot slot[t]: a prefill chunk is many rows of one slot, a batched decode step is one
// row per slot, and the two can mix. Logits are computed for nOut chosen rows only.

import type { GpuContext } from './device.ts';
import type { LlamaConfig } from './config.ts';
import type { GpuWeights, WeightMatrix } from './weights.ts';
import { bindGroup, getPipeline, grid1d, packParams, storageBuffer, uniformBuffer, uploadBuffer, encodeDispatch, type Dispatch } from '../kernels/common.ts';
import { matmulPipelines, recordMatmul, encodeMatmul, type MatmulDispatch } from '../kernels/matmul.ts';
import { embeddingWgsl, packEmbeddingParams } from '../kernels/embedding.ts';
import { RMSNORM_WGSL, packRmsnormParams } from '../kernels/rmsnorm.ts';
import { ROPE_WGSL, packRopeParams, ropeTable } from '../kernels/rope.ts';
import { kvWriteWgsl, packKvWriteParams, kvBytesPerElement, type KvDtype } from '../kernels/kv-cache.ts';
import { attentionWgsl, ATTENTION_COMBINE_WGSL, ATTENTION_SPLIT_LEN, attentionPartFloats, packAttentionParams } from '../kernels/attention.ts';
import { SWIGLU_WGSL, packSwigluParams } from '../kernels/swiglu.ts';
import { ARGMAX_WGSL, packArgmaxParams } from '../kernels/argmax.ts';

export interface ForwardOptions {
  maxTokens: number; // token rows per step (the prefill chunk)
  maxOut: number; // rows of logits per step
  blockSize: number; // KV positions per cache block
  nBlocks: number; // KV blocks in the pool (per layer)
  nSlots: number; // sequences that can hold cache at once
  maxBlocksPerSeq: number; // block-table row length = ceil(context / blockSize)
  kvDtype?: KvDtype; // KV cache elements; default f16 where the device has shader-f16, else f32
}

/** Decode rows (one per slot) whose attention is split across workgroups (flash-decoding). */
export const splitAttentionRows = (o: Pick<ForwardOptions, 'maxTokens' | 'nSlots'>): number => Math.min(o.maxTokens, Math.max(1, o.nSlots));
/** Splits per row of a decode step's attention at the full context. */
export const attentionMaxSplits = (context: number): number => Math.max(1, Math.ceil(context / ATTENTION_SPLIT_LEN));

/** Scratch buffers of one device. Shapes in (rows, cols); all f32 unless noted. */
export interface RunState {
  step: GPUBuffer; // uniform Step {nTokens, nOut}
  ids: GPUBuffer; // (maxTokens) u32 token ids
  pos: GPUBuffer; // (maxTokens) u32 positions
  slot: GPUBuffer; // (maxTokens) u32 KV slots
  blockTable: GPUBuffer; // (nSlots, maxBlocksPerSeq) u32
  ropeCs: GPUBuffer; // (context, headDim/2) vec2 (cos, sin)
  x: GPUBuffer; // (maxTokens, dim) residual stream
  xb: GPUBuffer; // (maxTokens, dim) normed input of attention / FFN
  q: GPUBuffer; // (maxTokens, nHeads*headDim)
  k: GPUBuffer; // (maxTokens, nKvHeads*headDim)
  v: GPUBuffer; // (maxTokens, nKvHeads*headDim)
  att: GPUBuffer; // (maxTokens, nHeads*headDim) attention output
  hb: GPUBuffer; // (maxTokens, hiddenDim) gate, then silu(gate)*up
  hb2: GPUBuffer; // (maxTokens, hiddenDim) up
  xOut: GPUBuffer; // (maxOut, dim) rows whose logits are wanted
  xOutNorm: GPUBuffer; // (maxOut, dim)
  logits: GPUBuffer; // (maxOut, vocab)
  best: GPUBuffer; // (maxOut) u32 argmax of each logits row
  attPart: GPUBuffer; // (splitAttentionRows, nHeads, maxSplits, 4 + headDim) partial softmax of split attention
  kCache: GPUBuffer[]; // per layer (nBlocks*blockSize, nKvHeads*headDim) f16 or f32
  vCache: GPUBuffer[]; // per layer (nBlocks*blockSize, nKvHeads*headDim)
}

interface LayerOps {
  attentionNorm: Dispatch;
  wq: MatmulDispatch[];
  wk: MatmulDispatch[];
  wv: MatmulDispatch[];
  ropeQ: Dispatch;
  ropeK: Dispatch;
  kvWrite: Dispatch;
  attention: Dispatch; // one workgroup per (row, head) over all its positions
  attentionSplit: Dispatch | null; // decode: one per (row, head, split of ATTENTION_SPLIT_LEN positions)
  attentionCombine: Dispatch | null;
  wo: MatmulDispatch[]; // accumulates into x
  ffnNorm: Dispatch;
  w1: MatmulDispatch[];
  w3: MatmulDispatch[];
  swiglu: Dispatch;
  w2: MatmulDispatch[]; // accumulates into x
}

export interface Forward {
  cfg: LlamaConfig;
  opts: ForwardOptions;
  rs: RunState;
  embed: Dispatch[]; // one per chunk of the table; empty unless this device holds the embedding
  layers: LayerOps[]; // this device's layers
  finalNorm: Dispatch | null; // null unless this device holds the head
  head: MatmulDispatch[];
  argmax: Dispatch | null;
  kvBytes: number;
  kvDtype: KvDtype;
}

export async function createForward(ctx: GpuContext, cfg: LlamaConfig, w: GpuWeights, opts: ForwardOptions): Promise<Forward> {
  const { device } = ctx;
  const D = cfg.headDim;
  const qDim = cfg.nHeads * D;
  const kvDim = cfg.nKvHeads * D;
  const T = opts.maxTokens;
  const f = 4; // bytes per f32
  const kvDtype: KvDtype = opts.kvDtype ?? (ctx.hasF16 ? 'f16' : 'f32');
  if (kvDtype === 'f16' && !ctx.hasF16) throw new Error('an f16 KV cache needs the adapter feature shader-f16');
  const cacheBytes = opts.nBlocks * opts.blockSize * kvDim * kvBytesPerElement(kvDtype);
  if (cacheBytes > ctx.maxBindingBytes) {
    throw new Error(`KV cache of one layer (${cacheBytes} bytes) exceeds the adapter's binding limit (${ctx.maxBindingBytes}); use a smaller context or KV budget`);
  }
  const context = opts.maxBlocksPerSeq * opts.blockSize;
  const maxSplits = attentionMaxSplits(context);
  const splitRows = splitAttentionRows(opts);
  const buf = (label: string, bytes: number) => storageBuffer(device, label, bytes);
  const rs: RunState = {
    step: uniformBuffer(device, 'step', packParams([[0, 'u32'], [0, 'u32'], [0, 'u32'], [0, 'u32']])),
    ids: buf('ids', T * 4),
    pos: buf('pos', T * 4),
    slot: buf('slot', T * 4),
    blockTable: buf('blockTable', opts.nSlots * opts.maxBlocksPerSeq * 4),
    ropeCs: uploadBuffer(device, 'ropeCs', ropeTable(Math.max(context, 1), D, cfg.ropeTheta, cfg.ropeScaleFactor ?? 1)),
    x: buf('x', T * cfg.dim * f),
    xb: buf('xb', T * cfg.dim * f),
    q: buf('q', T * qDim * f),
    k: buf('k', T * kvDim * f),
    v: buf('v', T * kvDim * f),
    att: buf('att', T * qDim * f),
    hb: buf('hb', T * cfg.hiddenDim * f),
    hb2: buf('hb2', T * cfg.hiddenDim * f),
    xOut: buf('xOut', opts.maxOut * cfg.dim * f),
    xOutNorm: buf('xOutNorm', opts.maxOut * cfg.dim * f),
    logits: buf('logits', opts.maxOut * cfg.vocabSize * f),
    best: buf('best', opts.maxOut * 4),
    attPart: buf('attPart', maxSplits > 1 ? attentionPartFloats(splitRows, cfg.nHeads, D, maxSplits) * f : 16),
    kCache: [],
    vCache: [],
  };
  for (let l = 0; l < w.layers.length; l++) {
    rs.kCache.push(buf(`kCache.${l}`, cacheBytes));
    rs.vCache.push(buf(`vCache.${l}`, cacheBytes));
  }

  const fmt = w.format;
  // Matmul pipelines per weight format in use (a matrix whose K the format cannot hold is stored as f16).
  const matrices = [...w.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3]), ...(w.output ? [w.output] : [])];
  const formats = [...new Set(matrices.map((m) => m.format))];
  const mmPipes = new Map(await Promise.all(formats.map(async (f) => [f, await matmulPipelines(ctx, f)] as const)));
  const [pEmbed, pNorm, pRope, pKv, pAtt, pCombine, pSwiglu, pArgmax] = await Promise.all([
    getPipeline(device, `embedding-${fmt}`, embeddingWgsl(fmt)),
    getPipeline(device, 'rmsnorm', RMSNORM_WGSL),
    getPipeline(device, 'rope', ROPE_WGSL),
    getPipeline(device, `kv-write-${kvDtype}`, kvWriteWgsl(kvDtype)),
    getPipeline(device, `attention-${kvDtype}`, attentionWgsl(kvDtype)),
    getPipeline(device, 'attention-combine', ATTENTION_COMBINE_WGSL),
    getPipeline(device, 'swiglu', SWIGLU_WGSL),
    getPipeline(device, 'argmax', ARGMAX_WGSL),
  ]);
  const dispatch = (pipeline: GPUComputePipeline, label: string, params: ArrayBuffer, buffers: GPUBuffer[]): Dispatch => ({
    pipeline,
    label,
    bindGroup: bindGroup(device, pipeline, label, [rs.step, uniformBuffer(device, label + '.params', params), ...buffers]),
  });
  // The matmul dispatches of each row-chunk of W (matvec per M, tiled); y (M, ldy) at columns chunk.rowStart..
  const matmul = (m: WeightMatrix, x: GPUBuffer, y: GPUBuffer, accumulate: boolean, useOut = false): MatmulDispatch[] =>
    m.chunks.map((c) => recordMatmul(device, mmPipes.get(m.format)!, rs.step,
      { N: c.rows, K: m.cols, rowOffset: c.rowStart, ldy: m.rows, accumulate, useOut }, x, y, c.buffer, `${m.name}[${c.rowStart}]`));

  const embed = (w.tokEmbeddings?.chunks ?? []).map((c) =>
    dispatch(pEmbed, `embed[${c.rowStart}]`, packEmbeddingParams(cfg.dim, c.rowStart, c.rows), [rs.ids, rs.x, c.buffer]));
  const layers: LayerOps[] = w.layers.map((L, l) => ({ // l: local index; names use the global layer
    attentionNorm: dispatch(pNorm, `${l}.attention_norm`, packRmsnormParams(cfg.dim, cfg.normEps, false), [rs.x, L.attentionNorm, rs.xb]),
    wq: matmul(L.wq, rs.xb, rs.q, false),
    wk: matmul(L.wk, rs.xb, rs.k, false),
    wv: matmul(L.wv, rs.xb, rs.v, false),
    ropeQ: dispatch(pRope, `${l}.rope_q`, packRopeParams(cfg.nHeads, D), [rs.q, rs.pos, rs.ropeCs]),
    ropeK: dispatch(pRope, `${l}.rope_k`, packRopeParams(cfg.nKvHeads, D), [rs.k, rs.pos, rs.ropeCs]),
    kvWrite: dispatch(pKv, `${l}.kv_write`, packKvWriteParams(kvDim, opts.blockSize, opts.maxBlocksPerSeq),
      [rs.k, rs.v, rs.pos, rs.slot, rs.blockTable, rs.kCache[l]!, rs.vCache[l]!]),
    attention: dispatch(pAtt, `${l}.attention`, packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq),
      [rs.q, rs.kCache[l]!, rs.vCache[l]!, rs.pos, rs.slot, rs.blockTable, rs.att, rs.attPart]),
    attentionSplit: maxSplits > 1 ? dispatch(pAtt, `${l}.attention_split`,
      packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq, ATTENTION_SPLIT_LEN, maxSplits),
      [rs.q, rs.kCache[l]!, rs.vCache[l]!, rs.pos, rs.slot, rs.blockTable, rs.att, rs.attPart]) : null,
    attentionCombine: maxSplits > 1 ? dispatch(pCombine, `${l}.attention_combine`,
      packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq, ATTENTION_SPLIT_LEN, maxSplits),
      [rs.pos, rs.attPart, rs.att]) : null,
    wo: matmul(L.wo, rs.att, rs.x, true),
    ffnNorm: dispatch(pNorm, `${l}.ffn_norm`, packRmsnormParams(cfg.dim, cfg.normEps, false), [rs.x, L.ffnNorm, rs.xb]),
    w1: matmul(L.w1, rs.xb, rs.hb, false),
    w3: matmul(L.w3, rs.xb, rs.hb2, false),
    swiglu: dispatch(pSwiglu, `${l}.swiglu`, packSwigluParams(cfg.hiddenDim), [rs.hb, rs.hb2]),
    w2: matmul(L.w2, rs.hb, rs.x, true),
  }));
  const finalNorm = w.norm ? dispatch(pNorm, 'norm', packRmsnormParams(cfg.dim, cfg.normEps, true), [rs.xOut, w.norm, rs.xOutNorm]) : null;
  const head = w.output ? matmul(w.output, rs.xOutNorm, rs.logits, false, true) : [];
  const argmax = w.output ? dispatch(pArgmax, 'argmax', packArgmaxParams(cfg.vocabSize), [rs.logits, rs.best]) : null;
  return { cfg, opts, rs, embed, layers, finalNorm, head, argmax, kvBytes: 2 * w.layers.length * cacheBytes, kvDtype };
}

/**
 * Records one forward step: nTokens rows (ids/pos/slot already written), logits for rows outRows.
 * maxLen: the longest row's attended positions (max pos + 1); it sizes a decode step's split attention.
 */
export function encodeForward(f: Forward, enc: GPUCommandEncoder, nTokens: number, outRows: number[], kind: 'prefill' | 'decode' = 'prefill',
  maxLen = f.opts.maxBlocksPerSeq * f.opts.blockSize): void {
  const c = f.cfg;
  // Decode rows attend in splits of ATTENTION_SPLIT_LEN positions (a row that fits one split computes
  // exactly what the one-workgroup kernel does); prefill rows use one workgroup per (row, head).
  const splits = Math.ceil(maxLen / ATTENTION_SPLIT_LEN);
  const split = kind === 'decode' && splits > 1 && nTokens <= splitAttentionRows(f.opts);
  const rs = f.rs;
  const nOut = outRows.length;
  const mm = (pass: GPUComputePassEncoder, ds: MatmulDispatch[], M: number) => ds.forEach((d) => encodeMatmul(pass, d, M));
  const run = encodeDispatch;

  let pass = enc.beginComputePass({ label: 'layers' });
  for (const e of f.embed) run(pass, e, nTokens);
  for (const L of f.layers) {
    // h = x + attention(norm(x))
    run(pass, L.attentionNorm, nTokens);
    mm(pass, L.wq, nTokens);
    mm(pass, L.wk, nTokens);
    mm(pass, L.wv, nTokens);
    run(pass, L.ropeQ, ...grid1d((nTokens * c.nHeads * c.headDim) / 2, 64));
    run(pass, L.ropeK, ...grid1d((nTokens * c.nKvHeads * c.headDim) / 2, 64));
    run(pass, L.kvWrite, ...grid1d((nTokens * c.nKvHeads * c.headDim) / 4, 64));
    if (split && L.attentionSplit && L.attentionCombine) {
      run(pass, L.attentionSplit, c.nHeads, nTokens, splits);
      run(pass, L.attentionCombine, c.nHeads, nTokens);
    } else run(pass, L.attention, c.nHeads, nTokens);
    mm(pass, L.wo, nTokens); // x += att · wo^T
    // out = h + ffn(norm(h)), ffn = w2(silu(w1 x) * w3 x)
    run(pass, L.ffnNorm, nTokens);
    mm(pass, L.w1, nTokens);
    mm(pass, L.w3, nTokens);
    run(pass, L.swiglu, ...grid1d(nTokens * c.hiddenDim, 64));
    mm(pass, L.w2, nTokens); // x += hb · w2^T
  }
  pass.end();
  if (nOut === 0 || !f.finalNorm || !f.argmax) return;
  const rowBytes = c.dim * 4;
  outRows.forEach((r, i) => enc.copyBufferToBuffer(rs.x, r * rowBytes, rs.xOut, i * rowBytes, rowBytes));
  pass = enc.beginComputePass({ label: 'head' });
  run(pass, f.finalNorm, nOut);
  mm(pass, f.head, nOut);
  run(pass, f.argmax, nOut);
  pass.end();
}

export function destroyForward(f: Forward): void {
  const rs = f.rs;
  for (const b of [rs.step, rs.ids, rs.pos, rs.slot, rs.blockTable, rs.ropeCs, rs.x, rs.xb, rs.q, rs.k, rs.v, rs.att, rs.hb, rs.hb2,
    rs.xOut, rs.xOutNorm, rs.logits, rs.best, rs.attPart, ...rs.kCache, ...rs.vCache]) b.destroy();
}

// The forward pass on one device: scratch buffers (named once, like llama2.c's RunState), the pipelines
// and bind groups of every dispatch (made at load), and `encodeForward`, which records one step. A decode step
// on a GPU is 5 dispatches per layer: q|k|v (RMSNorm folded in before, RoPE and the KV-cache write after),
// attention, wo (+ residual), gate|up (RMSNorm before, SwiGLU after), w2 (+ residual); ForwardOptions.fuseDecode.
//
// A step processes nTokens token rows at once. Row t is token ids[t] at position pos[t] of the
// sequence in KV slot slot[t]: a prefill chunk is many rows of one slot, a batched decode step is one
// row per slot, and the two can mix. Logits are computed for nOut chosen rows only.

import type { GpuContext } from './device.ts';
import { attentionMaxSplits, runStateSizes, splitAttentionRows, type StepShape } from './buffers.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import type { GpuWeights, LayerWeights, WeightMatrix } from './weights.ts';
import { bindGroup, getPipeline, packParams, storageBuffer, uniformBuffer, uploadBuffer, encodeDispatch, type Dispatch } from '../kernels/common.ts';
import { matmulPipelines, recordMatmul, encodeMatmul, usesMatvec, isCpuAdapter, fusionName, fusionStorageBuffers, type MatmulDispatch, type MatmulPipelines, type MatmulParams, type MatvecFusion, type MatmulChoice } from '../kernels/matmul.ts';
import { embeddingWgsl, embeddingGrid, packEmbeddingParams } from '../kernels/embedding.ts';
import { RMSNORM_WGSL, packRmsnormParams } from '../kernels/rmsnorm.ts';
import { ropeTable } from '../kernels/rope.ts';
import { kvBytesPerElement, type KvDtype } from '../kernels/kv-cache.ts';
import { ropeKvWgsl, packRopeKvParams, ropeKvGrid } from '../kernels/rope-kv.ts';
import { attentionPrefillWgsl, attentionPrefillGrid, PREFILL_MAX_HEAD_DIM } from '../kernels/attention-prefill.ts';
import { formatSpec } from '../kernels/weight-formats.ts';
import { isGgmlBlockType } from '../kernels/ggml-blocks.ts';
import {
  attentionWgsl, attentionGrid, ATTENTION_COMBINE_WGSL, attentionCombineGrid, ATTENTION_SPLIT_LEN, packAttentionParams,
} from '../kernels/attention.ts';
import { SWIGLU_CAT_WGSL, packSwigluParams, swigluGrid } from '../kernels/swiglu.ts';
import { ARGMAX_WGSL, argmaxGrid, packArgmaxParams } from '../kernels/argmax.ts';

/** The step shape (runtime/buffers.ts: rows, logits rows, slots, KV blocks), the KV pool and the fusion choices. */
export interface ForwardOptions extends StepShape {
  nBlocks: number; // KV blocks in the pool (per layer)
  kvDtype?: KvDtype; // KV cache elements; default f16 where the device has shader-f16, else f32
  /**
   * Whether the given matrices (same format and K) may be fused (wq|wk|wv into one buffer, w1|w3 chunk by chunk);
   * default: q|k|v when the fused buffer fits one storage binding, w1|w3 always. false: never.
   */
  canFuse?: false | ((kind: 'qkv' | 'gate_up', parts: WeightMatrix[]) => boolean);
  /**
   * Chunks the fused w1 | w3 is split into (each chunk holds the gate and up rows of its hidden units);
   * default: as few as fit one storage binding each. q | k | v fuse only into one chunk.
   */
  fuseChunks?: (kind: 'gate_up', parts: WeightMatrix[]) => number;
  /**
   * Fused decode dispatches: RMSNorm in the prologue of the q|k|v and gate|up matvecs (normPrologue), SwiGLU in
   * the gate|up matvec's epilogue, RoPE and the KV-cache write in the q|k|v matvec's epilogue, wherever the step
   * runs matvecs (decode; prefill on CPU adapters). Default: on GPUs, where a decode step is bound by dispatches;
   * off on software adapters (lavapipe, SwiftShader), whose per-lane loads make the fused matvecs cost more CPU
   * than the dispatches they save (README, "The decode step"). false: the separate kernels.
   */
  fuseDecode?: boolean;
  /**
   * With fuseDecode, RMSNorm in the matvecs' prologue; default: as fuseDecode's default. false: the norm stays its
   * own dispatch and only the epilogues fuse (7 dispatches per layer).
   */
  normPrologue?: boolean;
  /** Force a matvec design or prefill path (tests, benchmarks); default: the device's own. */
  matmulChoice?: MatmulChoice;
}

/** Scratch buffers of one device. Shapes in (rows, cols); all f32 unless noted. */
export interface RunState {
  step: GPUBuffer; // uniform Step {nTokens, nOut}
  ids: GPUBuffer; // (maxRows) u32 token ids
  pos: GPUBuffer; // (maxRows) u32 positions
  slot: GPUBuffer; // (maxRows) u32 KV slots
  blockTable: GPUBuffer; // (nSlots, maxBlocksPerSeq) u32
  ropeCs: GPUBuffer; // (context, headDim/2) vec2 (cos, sin)
  x: GPUBuffer; // (maxRows, dim) residual stream
  xb: GPUBuffer; // (maxRows, dim) normed input of attention / FFN
  qkv: GPUBuffer; // (maxRows, (nHeads + 2 nKvHeads) * headDim): q | k | v of each row; q rotated in place
  att: GPUBuffer; // (maxRows, nHeads*headDim) attention output
  hb: GPUBuffer; // (maxRows, hiddenDim) silu(gate)*up
  hb2: GPUBuffer; // (maxRows, 2 * hiddenDim) gate | up of each row
  xOut: GPUBuffer; // (maxOut, dim) rows whose logits are wanted
  xOutNorm: GPUBuffer; // (maxOut, dim)
  logits: GPUBuffer; // (maxOut, vocab)
  best: GPUBuffer; // (maxOut) u32 argmax of each logits row
  attPart: GPUBuffer; // (splitAttentionRows, nHeads, maxSplits, 4 + headDim) partial softmax of split attention
  kCache: GPUBuffer[]; // per layer (nBlocks*blockSize, nKvHeads*headDim) f16 or f32
  vCache: GPUBuffer[]; // per layer (nBlocks*blockSize, nKvHeads*headDim)
}

interface LayerOps {
  // The matvec steps' dispatches (empty with fuseDecode false): norm folded in when normFused (else they read the
  // separate norm's xb), rope/swiglu where the flags say.
  normFused: boolean;
  qkvFused: MatmulDispatch[]; // norm(x) · (wq|wk|wv)^T, + RoPE and the KV-cache write when ropeFused
  ropeFused: boolean;
  gateUpFused: MatmulDispatch[]; // norm(x) · (w1|w3)^T: silu(gate) * up into hb when swigluFused, else into hb2
  swigluFused: boolean;
  // The separate kernels (a tiled prefill step, or fuseDecode false).
  attentionNorm: Dispatch;
  qkv: MatmulDispatch[]; // one matmul over wq|wk|wv when fused, else one per matrix (chunk)
  ropeKv: Dispatch; // RoPE of q (in place) and k, k and v into the cache
  attention: Dispatch; // one workgroup per (row, head) over all its positions
  attentionSplit: Dispatch | null; // decode: one per (row, head, split of ATTENTION_SPLIT_LEN positions)
  attentionCombine: Dispatch | null;
  attentionPrefill: Dispatch | null; // prefill rows of one sequence: tiles of rows sharing K/V tiles
  wo: MatmulDispatch[]; // accumulates into x
  ffnNorm: Dispatch;
  gateUp: MatmulDispatch[]; // w1|w3 into hb2, one matmul when fused
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
  const kvDtype: KvDtype = opts.kvDtype ?? (ctx.hasF16 ? 'f16' : 'f32');
  if (kvDtype === 'f16' && !ctx.hasF16) throw new Error('an f16 KV cache needs the adapter feature shader-f16');
  const cacheBytes = opts.nBlocks * opts.blockSize * kvDim * kvBytesPerElement(kvDtype);
  if (cacheBytes > ctx.maxBindingBytes) {
    throw new Error(`KV cache of one layer (${cacheBytes} bytes) exceeds the adapter's binding limit (${ctx.maxBindingBytes}); use a smaller context or KV budget`);
  }
  const context = opts.maxBlocksPerSeq * opts.blockSize;
  const qkvDim = qDim + 2 * kvDim;
  const maxSplits = attentionMaxSplits(context);
  const buf = (label: string, bytes: number) => storageBuffer(device, label, bytes);
  // Every run-state buffer at the size runtime/buffers.ts gives (what the planner counted); ropeCs and step start filled.
  const size = runStateSizes(cfg, opts);
  const rs: RunState = {
    step: uniformBuffer(device, 'step', packParams([[0, 'u32'], [0, 'u32'], [0, 'u32'], [0, 'u32']])),
    ids: buf('ids', size.ids),
    pos: buf('pos', size.pos),
    slot: buf('slot', size.slot),
    blockTable: buf('blockTable', size.blockTable),
    ropeCs: uploadBuffer(device, 'ropeCs', ropeTable(Math.max(context, 1), D, cfg.ropeTheta, cfg.ropeScaleFactor ?? 1)),
    x: buf('x', size.x),
    xb: buf('xb', size.xb),
    qkv: buf('qkv', size.qkv),
    att: buf('att', size.att),
    hb: buf('hb', size.hb),
    hb2: buf('hb2', size.hb2),
    xOut: buf('xOut', size.xOut),
    xOutNorm: buf('xOutNorm', size.xOutNorm),
    logits: buf('logits', size.logits),
    best: buf('best', size.best),
    attPart: buf('attPart', size.attPart),
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
  const mmPipes = new Map(await Promise.all(formats.map(async (f) => [f, await matmulPipelines(ctx, f, opts.matmulChoice)] as const)));
  const [pEmbed, pNorm, pRopeKv, pAtt, pCombine, pSwiglu, pArgmax, pPrefill] = await Promise.all([
    getPipeline(device, `embedding-${fmt}`, embeddingWgsl(fmt)),
    getPipeline(device, 'rmsnorm', RMSNORM_WGSL),
    getPipeline(device, `rope-kv-${kvDtype}`, ropeKvWgsl(kvDtype)),
    getPipeline(device, `attention-${kvDtype}`, attentionWgsl(kvDtype)),
    getPipeline(device, 'attention-combine', ATTENTION_COMBINE_WGSL),
    getPipeline(device, 'swiglu-cat', SWIGLU_CAT_WGSL),
    getPipeline(device, 'argmax', ARGMAX_WGSL),
    D <= PREFILL_MAX_HEAD_DIM ? getPipeline(device, `attention-prefill-${kvDtype}`, attentionPrefillWgsl(kvDtype)) : null,
  ]);
  const dispatch = (pipeline: GPUComputePipeline, label: string, params: ArrayBuffer, buffers: GPUBuffer[]): Dispatch => ({
    pipeline,
    label,
    bindGroup: bindGroup(device, pipeline, label, [rs.step, uniformBuffer(device, label + '.params', params), ...buffers]),
  });
  // The matmul dispatches of each row-chunk of W (matvec per M, tiled); y (M, ldy) at columns col0 + chunk.rowStart..
  const matmul = (m: WeightMatrix, x: GPUBuffer, y: GPUBuffer, accumulate: boolean, useOut = false, col0 = 0, ldy = m.rows): MatmulDispatch[] =>
    m.chunks.map((c) => recordMatmul(device, mmPipes.get(m.format)!, rs.step,
      { N: c.rows, K: m.cols, rowOffset: col0 + c.rowStart, ldy, accumulate, useOut }, x, y, c.buffer, `${m.name}[${c.rowStart}]`));
  // Several matrices into consecutive columns of y: one matmul over their fused rows when allowed.
  const cap = Math.min(ctx.maxBindingBytes, ctx.maxBufferBytes);
  const canFuse = opts.canFuse === false ? () => false
    : (opts.canFuse ?? ((kind: string, parts: WeightMatrix[]) => kind === 'gate_up' || fusedBytes(parts) <= cap));
  // As few chunks as fit one binding each (a chunk's rows per part are rounded up to the format's row group).
  const fuseChunks = opts.fuseChunks ?? ((_: 'gate_up', parts: WeightMatrix[]) => {
    const spec = formatSpec(parts[0]!.format);
    const rows = parts[0]!.rows, cols = parts[0]!.cols;
    for (let k = Math.ceil(fusedBytes(parts) / cap); ; k++) {
      const n = Math.ceil(Math.ceil(rows / k) / spec.rowAlign) * spec.rowAlign;
      if (spec.bufferBytes(n * parts.length, cols) <= cap || n <= spec.rowAlign) return k;
    }
  });
  const qkvParts = w.layers.map((L) => { const f = fuseRows(device, 'qkv', [L.wq, L.wk, L.wv], canFuse, () => 1); return f ? [f] : [L.wq, L.wk, L.wv]; });
  const gateUps = w.layers.map((L) => fuseRows(device, 'gate_up', [L.w1, L.w3], canFuse, fuseChunks));
  const concat = (parts: WeightMatrix[], x: GPUBuffer, y: GPUBuffer): MatmulDispatch[] => {
    const ld = parts.reduce((a, m) => a + m.rows, 0);
    let col = 0;
    return parts.flatMap((m) => { const d = matmul(m, x, y, false, false, col, ld); col += m.rows; return d; });
  };

  // The fused decode dispatches (kernels/matmul.ts, MatvecFusion). RoPE + KV write in the q|k|v matvec's epilogue
  // needs every chunk to hold whole heads and the adapter to bind its 10 storage buffers; else rope_kv runs.
  const gpu = !isCpuAdapter(device);
  const fuse = opts.fuseDecode ?? gpu;
  const norm = opts.normPrologue ?? gpu;
  const maxStorage = device.limits.maxStorageBuffersPerShaderStage;
  const ropeNorm: MatvecFusion = { norm, epilogue: 'rope', kv: kvDtype };
  const swiNorm: MatvecFusion = { norm, epilogue: 'swiglu' };
  const xIn = norm ? rs.x : rs.xb; // the matvecs' input: the residual stream (norm in the prologue) or the normed xb
  const gIn = (g: GPUBuffer) => (norm ? [g] : []);
  const headBases = [0, cfg.nHeads, cfg.nHeads + cfg.nKvHeads];
  const ropeOk = qkvParts.map((parts) => D % 2 === 0 && fusionStorageBuffers(ropeNorm) <= maxStorage
    && parts.every((m) => m.chunks.every((c) => c.rowStart % D === 0 && c.rows % D === 0)));
  const fusions = new Map<string, [WeightMatrix['format'], MatvecFusion]>();
  const want = (m: WeightMatrix, fu: MatvecFusion) => fusions.set(`${m.format}:${fusionName(fu)}`, [m.format, fu]);
  // Without the norm prologue a matvec with no epilogue is the plain one: the separate path serves.
  const qkvOn = (l: number) => fuse && (norm || ropeOk[l]!);
  const gateUpOn = (l: number) => fuse && (norm || gateUps[l] !== null);
  if (fuse) {
    w.layers.forEach((L, l) => {
      if (qkvOn(l)) for (const m of qkvParts[l]!) want(m, ropeOk[l] ? ropeNorm : { norm: true });
      if (gateUpOn(l)) {
        if (gateUps[l]) want(gateUps[l]!, swiNorm);
        else for (const m of [L.w1, L.w3]) want(m, { norm: true });
      }
    });
  }
  const fusedPipes = new Map<string, MatmulPipelines>(await Promise.all([...fusions].map(async ([k, [f, fu]]) => [k, await matmulPipelines(ctx, f, opts.matmulChoice, fu)] as const)));
  const fusedMatvec = (m: WeightMatrix, fu: MatvecFusion, x: GPUBuffer, y: GPUBuffer, col0: number, ldy: number, extra: GPUBuffer[],
    chunkParams: (c: WeightMatrix['chunks'][number]) => Partial<MatmulParams> = () => ({})): MatmulDispatch[] =>
    m.chunks.map((c) => recordMatmul(device, fusedPipes.get(`${m.format}:${fusionName(fu)}`)!, rs.step,
      { N: c.rows, K: m.cols, rowOffset: col0 + c.rowStart, ldy, accumulate: false, useOut: false, eps: cfg.normEps, ...chunkParams(c) },
      x, y, c.buffer, `${m.name}[${c.rowStart}].${fusionName(fu)}`, extra));
  const qkvFused = (l: number, L: LayerWeights): MatmulDispatch[] => {
    if (!qkvOn(l)) return [];
    const parts = qkvParts[l]!;
    if (!ropeOk[l]) return parts.flatMap((m, i) => fusedMatvec(m, { norm: true }, rs.x, rs.qkv, parts.length === 1 ? 0 : [0, qDim, qDim + kvDim][i]!, qkvDim, [L.attentionNorm]));
    const extra = [...gIn(L.attentionNorm), rs.pos, rs.slot, rs.blockTable, rs.ropeCs, rs.kCache[l]!, rs.vCache[l]!];
    return parts.flatMap((m, i) => fusedMatvec(m, ropeNorm, xIn, rs.qkv, 0, qkvDim, extra, (c) => ({
      rowOffset: c.rowStart, // q's columns of qkv; k and v go to the cache
      rope: { headDim: D, headBase: headBases[parts.length === 1 ? 0 : i]! + c.rowStart / D, nHeads: cfg.nHeads, nKvHeads: cfg.nKvHeads, blockSize: opts.blockSize, maxBlocks: opts.maxBlocksPerSeq },
    })));
  };
  const gateUpFused = (l: number, L: LayerWeights): MatmulDispatch[] => {
    if (!gateUpOn(l)) return [];
    const gu = gateUps[l];
    // A chunk of the fused w1|w3 holds the gate then the up rows of its hidden units c.rowStart / 2 ..
    if (gu) return fusedMatvec(gu, swiNorm, xIn, rs.hb, 0, cfg.hiddenDim, gIn(L.ffnNorm), (c) => ({ rowOffset: c.rowStart / 2 }));
    return [L.w1, L.w3].flatMap((m, i) => fusedMatvec(m, { norm: true }, rs.x, rs.hb2, i * cfg.hiddenDim, 2 * cfg.hiddenDim, [L.ffnNorm]));
  };

  const embed = (w.tokEmbeddings?.chunks ?? []).map((c) =>
    dispatch(pEmbed, `embed[${c.rowStart}]`, packEmbeddingParams(cfg.dim, c.rowStart, c.rows), [rs.ids, rs.x, c.buffer]));
  const layers: LayerOps[] = w.layers.map((L, l) => ({ // l: local index; names use the global layer
    qkvFused: qkvFused(l, L),
    normFused: norm,
    ropeFused: fuse && ropeOk[l]!,
    gateUpFused: gateUpFused(l, L),
    swigluFused: fuse && gateUps[l] !== null,
    attentionNorm: dispatch(pNorm, `${l}.attention_norm`, packRmsnormParams(cfg.dim, cfg.normEps, false), [rs.x, L.attentionNorm, rs.xb]),
    qkv: concat(qkvParts[l]!, rs.xb, rs.qkv),
    ropeKv: dispatch(pRopeKv, `${l}.rope_kv`, packRopeKvParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq),
      [rs.qkv, rs.pos, rs.slot, rs.blockTable, rs.ropeCs, rs.kCache[l]!, rs.vCache[l]!]),
    attention: dispatch(pAtt, `${l}.attention`, packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq,
      undefined, 1, qkvDim), [rs.qkv, rs.kCache[l]!, rs.vCache[l]!, rs.pos, rs.slot, rs.blockTable, rs.att, rs.attPart]),
    attentionSplit: maxSplits > 1 ? dispatch(pAtt, `${l}.attention_split`,
      packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq, ATTENTION_SPLIT_LEN, maxSplits, qkvDim),
      [rs.qkv, rs.kCache[l]!, rs.vCache[l]!, rs.pos, rs.slot, rs.blockTable, rs.att, rs.attPart]) : null,
    attentionCombine: maxSplits > 1 ? dispatch(pCombine, `${l}.attention_combine`,
      packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq, ATTENTION_SPLIT_LEN, maxSplits, qkvDim),
      [rs.pos, rs.attPart, rs.att]) : null,
    attentionPrefill: pPrefill ? dispatch(pPrefill, `${l}.attention_prefill`,
      packAttentionParams(cfg.nHeads, cfg.nKvHeads, D, opts.blockSize, opts.maxBlocksPerSeq, undefined, 1, qkvDim),
      [rs.qkv, rs.kCache[l]!, rs.vCache[l]!, rs.pos, rs.slot, rs.blockTable, rs.att]) : null,
    wo: matmul(L.wo, rs.att, rs.x, true),
    ffnNorm: dispatch(pNorm, `${l}.ffn_norm`, packRmsnormParams(cfg.dim, cfg.normEps, false), [rs.x, L.ffnNorm, rs.xb]),
    gateUp: gateUps[l] ? matmul(gateUps[l]!, rs.xb, rs.hb2, false) : concat([L.w1, L.w3], rs.xb, rs.hb2),
    // gate | up per chunk of the fused matrix (its chunks' hidden units), or gate then up.
    swiglu: dispatch(pSwiglu, `${l}.swiglu`, packSwigluParams(cfg.hiddenDim, gateUps[l] ? gateUps[l]!.chunks[0]!.rows / 2 : cfg.hiddenDim), [rs.hb2, rs.hb]),
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
 * oneSlot: every row is of the same sequence (a prefill chunk), so prefill attention can share K/V tiles.
 */
export function encodeForward(f: Forward, enc: GPUCommandEncoder, nTokens: number, outRows: number[], kind: 'prefill' | 'decode' = 'prefill',
  maxLen = f.opts.maxBlocksPerSeq * f.opts.blockSize, oneSlot = false): void {
  const c = f.cfg;
  // Decode rows attend in splits of ATTENTION_SPLIT_LEN positions (a row that fits one split computes
  // exactly what the one-workgroup kernel does); prefill rows use one workgroup per (row, head).
  const splits = Math.ceil(maxLen / ATTENTION_SPLIT_LEN);
  const split = kind === 'decode' && splits > 1 && nTokens <= splitAttentionRows(f.opts);
  const tiles = kind === 'prefill' && oneSlot && nTokens > 1;
  const rs = f.rs;
  const nOut = outRows.length;
  const mm = (pass: GPUComputePassEncoder, ds: MatmulDispatch[], M: number) => ds.forEach((d) => encodeMatmul(pass, d, M));
  const run = encodeDispatch;

  let pass = dedupPipelines(enc.beginComputePass({ label: 'layers' }));
  for (const e of f.embed) run(pass, e, ...embeddingGrid(nTokens));
  const fused = (ds: MatmulDispatch[]) => ds.length > 0 && ds.every((d) => usesMatvec(d, nTokens));
  for (const L of f.layers) {
    // h = x + attention(norm(x))
    if (fused(L.qkvFused)) {
      if (!L.normFused) run(pass, L.attentionNorm, nTokens);
      mm(pass, L.qkvFused, nTokens);
    } else {
      run(pass, L.attentionNorm, nTokens);
      mm(pass, L.qkv, nTokens);
    }
    if (!(L.ropeFused && fused(L.qkvFused))) run(pass, L.ropeKv, ...ropeKvGrid(nTokens, c.nHeads, c.nKvHeads, c.headDim));
    if (split && L.attentionSplit && L.attentionCombine) {
      run(pass, L.attentionSplit, ...attentionGrid(c.nHeads, nTokens, splits));
      run(pass, L.attentionCombine, ...attentionCombineGrid(c.nHeads, nTokens));
    } else if (tiles && L.attentionPrefill) run(pass, L.attentionPrefill, ...attentionPrefillGrid(c.nHeads, nTokens));
    else run(pass, L.attention, ...attentionGrid(c.nHeads, nTokens));
    mm(pass, L.wo, nTokens); // x += att · wo^T
    // out = h + ffn(norm(h)), ffn = w2(silu(w1 x) * w3 x)
    if (fused(L.gateUpFused)) {
      if (!L.normFused) run(pass, L.ffnNorm, nTokens);
      mm(pass, L.gateUpFused, nTokens);
      if (!L.swigluFused) run(pass, L.swiglu, ...swigluGrid(nTokens, c.hiddenDim));
    } else {
      run(pass, L.ffnNorm, nTokens);
      mm(pass, L.gateUp, nTokens);
      run(pass, L.swiglu, ...swigluGrid(nTokens, c.hiddenDim));
    }
    mm(pass, L.w2, nTokens); // x += hb · w2^T
  }
  pass.end();
  if (nOut === 0 || !f.finalNorm || !f.argmax) return;
  const rowBytes = c.dim * 4;
  outRows.forEach((r, i) => enc.copyBufferToBuffer(rs.x, r * rowBytes, rs.xOut, i * rowBytes, rowBytes));
  pass = dedupPipelines(enc.beginComputePass({ label: 'head' }));
  run(pass, f.finalNorm, nOut);
  mm(pass, f.head, nOut);
  run(pass, f.argmax, ...argmaxGrid(nOut));
  pass.end();
}

export function destroyForward(f: Forward): void {
  const rs = f.rs;
  for (const b of [rs.step, rs.ids, rs.pos, rs.slot, rs.blockTable, rs.ropeCs, rs.x, rs.xb, rs.qkv, rs.att, rs.hb, rs.hb2,
    rs.xOut, rs.xOutNorm, rs.logits, rs.best, rs.attPart, ...rs.kCache, ...rs.vCache]) b.destroy();
}

/**
 * A compute pass that skips setPipeline when the pipeline is already set (consecutive matvecs of one format
 * share theirs). Bind groups are per dispatch, so every setBindGroup is needed.
 */
function dedupPipelines(pass: GPUComputePassEncoder): GPUComputePassEncoder {
  let last: GPUComputePipeline | null = null;
  return {
    setPipeline(p: GPUComputePipeline) {
      if (p !== last) pass.setPipeline((last = p));
    },
    setBindGroup: (i: number, g: GPUBindGroup) => pass.setBindGroup(i, g),
    dispatchWorkgroups: (x: number, y?: number, z?: number) => pass.dispatchWorkgroups(x, y, z),
    end: () => pass.end(),
  } as unknown as GPUComputePassEncoder;
}

/** Bytes of the fused buffer of `parts` (their rows stacked). */
function fusedBytes(parts: WeightMatrix[]): number {
  return formatSpec(parts[0]!.format).bufferBytes(parts.reduce((a, m) => a + m.rows, 0), parts[0]!.cols);
}

// Formats whose buffer of n rows is its row groups' bytes in order (weight-formats.ts), so stacking matrices is
// concatenating buffers: ours, and GGUF block types (rows of whole blocks) where a row is whole 4-byte words
// (copies are in words). Another matrix is never fused: it gets one matmul of its own.
const ROW_STACKABLE = new Set<string>(['f32', 'f16', 'q8', 'q4']);
const rowStackable = (format: WeightMatrix['format'], cols: number): boolean =>
  ROW_STACKABLE.has(format) || (isGgmlBlockType(format) && formatSpec(format).rowBytes(cols) % 4 === 0);

// Fused matrices made for a part list (keyed by its first matrix), so a second createForward on the same
// weights reuses them: after fusing, the parts' own buffers are gone.
const fusedOf = new WeakMap<WeightMatrix, WeightMatrix>();

/**
 * wq|wk|wv or w1|w3 as one matrix, and the parts' buffers freed: the parts' chunks then name the fused buffers
 * (destroyWeights frees them). q|k|v: the parts' rows in order, one chunk. gate|up: `chunks(kind, parts)`
 * chunks, chunk c holding rows [r0, r0 + n) of every part in turn (n = the rows per chunk, a multiple of the
 * format's row group; the last chunk may be shorter), so one chunk has the gate and up rows of its hidden units;
 * with one chunk that is the parts' rows in order. A format's buffer of n rows is its row groups' blocks in
 * order, so copying whole row groups is copying bytes. Null when the parts differ in format, K or rows (gate|up),
 * are not whole row groups, are split into chunks (q|k|v), or `allow` refuses.
 */
function fuseRows(device: GPUDevice, kind: 'qkv' | 'gate_up', parts: WeightMatrix[], allow: (kind: 'qkv' | 'gate_up', parts: WeightMatrix[]) => boolean,
  chunks: (kind: 'gate_up', parts: WeightMatrix[]) => number): WeightMatrix | null {
  const done = fusedOf.get(parts[0]!);
  if (done) return done;
  const { format, cols } = parts[0]!;
  const spec = formatSpec(format);
  const whole = (m: WeightMatrix) => m.rows % spec.rowAlign === 0
    && m.chunks.every((c) => c.rows % spec.rowAlign === 0 && c.buffer.size >= spec.bufferBytes(c.rows, cols));
  if (!rowStackable(format, cols) || parts.some((m) => m.format !== format || m.cols !== cols || !whole(m))) return null;
  if (kind === 'qkv' ? parts.some((m) => m.chunks.length !== 1) : parts.some((m) => m.rows !== parts[0]!.rows)) return null;
  if (!allow(kind, parts)) return null;
  const total = parts.reduce((a, m) => a + m.rows, 0);
  const name = parts[0]!.name.replace(/[^.]*$/, kind);
  // Rows of each part per chunk.
  const n = kind === 'qkv' ? total
    : Math.ceil(Math.ceil(parts[0]!.rows / Math.max(1, chunks('gate_up', parts))) / spec.rowAlign) * spec.rowAlign;
  const enc = device.createCommandEncoder();
  const out: WeightMatrix['chunks'] = [];
  // Copies rows [r0, r1) of m (whole row groups, possibly across its chunks) to buffer at byte `off`.
  const copyRows = (m: WeightMatrix, r0: number, r1: number, buffer: GPUBuffer, off: number): number => {
    for (const c of m.chunks) {
      const a = Math.max(r0, c.rowStart), b = Math.min(r1, c.rowStart + c.rows);
      if (a >= b) continue;
      const src = spec.bufferBytes(a - c.rowStart, cols), bytes = spec.bufferBytes(b - a, cols);
      enc.copyBufferToBuffer(c.buffer, src, buffer, off, bytes);
      off += bytes;
    }
    return off;
  };
  if (kind === 'qkv') {
    const buffer = storageBuffer(device, name, spec.bufferBytes(total, cols));
    let off = 0;
    for (const m of parts) off = copyRows(m, 0, m.rows, buffer, off);
    out.push({ buffer, rowStart: 0, rows: total });
  } else {
    const H = parts[0]!.rows;
    for (let r0 = 0; r0 < H; r0 += n) {
      const r1 = Math.min(H, r0 + n);
      const buffer = storageBuffer(device, `${name}[${r0 * parts.length}]`, spec.bufferBytes((r1 - r0) * parts.length, cols));
      let off = 0;
      for (const m of parts) off = copyRows(m, r0, r1, buffer, off);
      out.push({ buffer, rowStart: r0 * parts.length, rows: (r1 - r0) * parts.length });
    }
  }
  device.queue.submit([enc.finish()]);
  // The parts' old buffers are freed once the copies have run; their chunks now name the fused buffers, each
  // fused buffer named at least once (so destroyWeights frees it; a part then lists a chunk of no rows).
  let k = 0;
  for (const m of parts) {
    for (const c of m.chunks) c.buffer.destroy();
    m.chunks = m.chunks.map((c) => ({ ...c, buffer: out[k++ % out.length]!.buffer }));
  }
  for (; k < out.length; k++) parts[0]!.chunks.push({ buffer: out[k]!.buffer, rowStart: parts[0]!.rows, rows: 0 });
  const fused: WeightMatrix = { name, format, rows: total, cols, chunks: out };
  fusedOf.set(parts[0]!, fused);
  return fused;
}

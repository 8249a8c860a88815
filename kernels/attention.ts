// Causal grouped-query attention over the paged KV cache, for decode and prefill alike: token row t
// (query position pos[t] of sequence slot[t]) attends to its sequence's cached positions 0..pos[t]
// (the causal mask), which the kv-write kernel has already filled for every row of this step.
// Query head h reads KV head h / (nHeads / nKvHeads) (GQA, Ainslie et al. 2023; MHA when equal).
//   out[t, h, :] = softmax_j(q[t,h,:] . K[j, kvh, :] / sqrt(D)) V[j, kvh, :]
// Softmax is computed online over tiles of WG positions (Milakov & Gimelshein 2018), so any context
// length works with fixed workgroup memory. The cache is f16 (default) or f32; math is f32.
//
// Split-context decoding ("flash-decoding", Dao et al. 2023): the positions of a row are cut into splits
// of splitLen positions, one workgroup per (row, head, split), so one sequence at a long context still
// fills the GPU. A row with a single split (pos < splitLen) writes its output directly; otherwise each
// split writes its running max m, sum l and unnormalized accumulator, and the combine kernel merges
// them: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s, M = max_s m_s. With splitLen >= the
// context this is the plain one-workgroup-per-(row, head) kernel (prefill uses it that way).
// Grid: attentionGrid, (nHeads, nTokens, nSplits); tiles of WG positions (see the kernel for who does what).

import { STEP_WGSL, packParams } from './common.ts';
import { CACHE_ROW_WGSL, cacheRowRef, kvEnable, type KvDtype } from './kv-cache.ts';

const WG = 64;

/** The Params of every attention kernel (packAttentionParams). */
const ATTENTION_PARAMS_WGSL = /* wgsl */ `
struct Params {
  nHeads: u32,
  nKvHeads: u32,
  headDim: u32,
  blockSize: u32,
  maxBlocks: u32,
  scale: f32,      // 1 / sqrt(headDim)
  splitLen: u32,   // positions per split (a multiple of ${WG})
  maxSplits: u32,  // splits per row the partial buffers hold
  qStride4: u32,   // vec4 between token rows of q (nHeads * D / 4, or more when q sits in a fused qkv row)
}`;
export const ATTENTION_MAX_HEAD_DIM = 4 * WG; // D / 4 vec4 per invocation row
/** Positions per split of a decode row (a multiple of the tile, WG). */
export const ATTENTION_SPLIT_LEN = 256;

/**
 * WGSL shared by the attention kernels (this file's and kernels/attention-prefill.ts): the Params, the bindings
 * 0..8, the paged cache row of a query head's KV head (kvHead4, kvRow4), and the online-softmax rescale.
 */
export const attentionCommonWgsl = (kv: KvDtype): string => /* wgsl */ `${kvEnable(kv)}
${STEP_WGSL}
${ATTENTION_PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;             // (nTokens, qStride): row t's heads first
@group(0) @binding(3) var<storage, read> kCache: array<vec4<${kv}>>;        // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(4) var<storage, read> vCache: array<vec4<${kv}>>;        // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(5) var<storage, read> pos: array<u32>;                 // (nTokens)
@group(0) @binding(6) var<storage, read> slot: array<u32>;                // (nTokens)
@group(0) @binding(7) var<storage, read> blockTable: array<u32>;          // (nSlots, maxBlocks)
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;     // (nTokens, nHeads, D)
${CACHE_ROW_WGSL}

// Vec4 offset, in a cache row, of the KV head query head h reads: h / (nHeads / nKvHeads) (GQA).
fn kvHead4(h: u32) -> u32 {
  return (h / (p.nHeads / p.nKvHeads)) * (p.headDim / 4u);
}

// Vec4 index of position j of slot s in the paged cache, at the head offset kvOff4 (kvHead4).
fn kvRow4(s: u32, j: u32, kvOff4: u32) -> u32 {
  return cacheRow(s, j) * p.nKvHeads * (p.headDim / 4u) + kvOff4;
}

// Online softmax (Milakov & Gimelshein 2018): the running max *m rises to tmax (>= *m); returns e^(old - new),
// the factor that rescales the sum and the accumulator gathered under the old max.
fn raiseMax(m: ptr<function, f32>, tmax: f32) -> f32 {
  let corr = exp(*m - tmax);
  *m = tmax;
  return corr;
}`;

export const attentionWgsl = (kv: KvDtype): string => /* wgsl */ `${attentionCommonWgsl(kv)}
@group(0) @binding(9) var<storage, read_write> part: array<f32>;          // (rows, nHeads, maxSplits, 4 + D): m, l, -, -, acc

const WG: u32 = ${WG}u;
var<workgroup> qs: array<vec4<f32>, ${WG}>;      // the query row, scaled (D / 4 <= WG)
var<workgroup> ps: array<f32, ${WG}>;            // scores, then weights, of the tile's positions
var<workgroup> rowsS: array<u32, ${WG}>;         // vec4 index of each tile position's K/V row
var<workgroup> accS: array<vec4<f32>, ${WG}>;
var<workgroup> nPos: u32;

// Scores: invocation j takes position j of the tile (a dot over D / 4 vec4). Weighted sum of V: invocation
// (g, d4) = (lid / D4, lid % D4) accumulates vec4 d4 of positions g, g + G, ... (G = WG / D4 groups), and the
// groups are summed once at the end.
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  let sp = wid.z;
  if (t >= step.nTokens) { return; }
  let D4 = p.headDim / 4u;
  let G = WG / D4;
  let g = lid / D4;
  let d4 = lid % D4;
  let kvOff4 = kvHead4(h);
  let qBase4 = t * p.qStride4 + h * D4;
  let oBase4 = (t * p.nHeads + h) * D4;
  if (lid == 0u) { nPos = pos[t] + 1u; }
  let n = workgroupUniformLoad(&nPos);
  let first = sp * p.splitLen;
  if (first >= n) { return; } // uniform: this split is past the row's positions
  let end = min(n, first + p.splitLen);
  if (lid < D4) { qs[lid] = q[qBase4 + lid] * p.scale; }
  workgroupBarrier();
  let s = slot[t];
  var m = -3.0e38;  // running max
  var l = 0.0;      // running sum of exp
  var acc = vec4<f32>(0.0);
  for (var start = first; start < end; start += WG) {
    let j = start + lid;
    var score = -3.0e38;
    if (j < end) {
      let row = kvRow4(s, j, kvOff4);
      rowsS[lid] = row;
      var dotv = 0.0;
      for (var i = 0u; i < D4; i++) { dotv += dot(qs[i], vec4<f32>(kCache[row + i])); }
      score = dotv;
    }
    ps[lid] = score;
    workgroupBarrier();
    let count = min(WG, end - start);
    var tmax = m;
    for (var jj = 0u; jj < count; jj++) { tmax = max(tmax, ps[jj]); }
    workgroupBarrier();
    ps[lid] = select(0.0, exp(score - tmax), j < end);
    workgroupBarrier();
    let corr = raiseMax(&m, tmax);
    var tsum = 0.0;
    for (var jj = 0u; jj < count; jj++) { tsum += ps[jj]; }
    l = l * corr + tsum;
    acc *= corr;
    if (g < G) {
      for (var jj = g; jj < count; jj += G) { acc += ps[jj] * vec4<f32>(vCache[rowsS[jj] + d4]); }
    }
    workgroupBarrier();
  }
  accS[lid] = acc;
  workgroupBarrier();
  if (lid >= D4) { return; }
  var total = vec4<f32>(0.0);
  for (var gg = 0u; gg < G; gg++) { total += accS[gg * D4 + lid]; }
  if (n <= p.splitLen) { // the row's only split: the output itself
    out[oBase4 + lid] = total / l;
    return;
  }
  let pBase = ((t * p.nHeads + h) * p.maxSplits + sp) * (4u + 4u * D4);
  if (lid == 0u) { part[pBase] = m; part[pBase + 1u] = l; }
  for (var c = 0u; c < 4u; c++) { part[pBase + 4u + 4u * lid + c] = total[c]; }
}`;

/** Merges the splits of rows with more than one (see above). Grid: attentionCombineGrid. Same Params. */
export const ATTENTION_COMBINE_WGSL = /* wgsl */ `
${STEP_WGSL}
${ATTENTION_PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> pos: array<u32>;           // (nTokens)
@group(0) @binding(3) var<storage, read> part: array<f32>;          // (rows, nHeads, maxSplits, 4 + D)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;     // (nTokens, nHeads, D)

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= step.nTokens) { return; }
  let n = pos[t] + 1u;
  let nS = (n + p.splitLen - 1u) / p.splitLen;
  if (nS <= 1u) { return; } // written by the attention kernel itself
  let D = p.headDim;
  let stride = 4u + D;
  let base = (t * p.nHeads + h) * p.maxSplits * stride;
  var M = -3.0e38;
  for (var s = 0u; s < nS; s++) { M = max(M, part[base + s * stride]); }
  var L = 0.0;
  for (var s = 0u; s < nS; s++) { L += exp(part[base + s * stride] - M) * part[base + s * stride + 1u]; }
  for (var d = lid; d < D; d += ${WG}u) {
    var a = 0.0;
    for (var s = 0u; s < nS; s++) { a += exp(part[base + s * stride] - M) * part[base + s * stride + 4u + d]; }
    out[(t * p.nHeads + h) * D + d] = a / L;
  }
}`;

export const ATTENTION_WGSL = attentionWgsl('f32');

/**
 * qStride: floats between token rows of q (default nHeads * headDim).
 * splitLen: positions per split (a multiple of 64; >= the context for one workgroup per (row, head));
 * maxSplits: splits per row the partial buffer holds.
 */
export function packAttentionParams(nHeads: number, nKvHeads: number, headDim: number, blockSize: number, maxBlocks: number,
  splitLen = Math.ceil((blockSize * maxBlocks) / WG) * WG, maxSplits = 1, qStride = nHeads * headDim): ArrayBuffer {
  if (headDim % 4 !== 0) throw new Error(`attention: head_dim ${headDim} must be a multiple of 4`);
  if (headDim > ATTENTION_MAX_HEAD_DIM) throw new Error(`attention: head_dim ${headDim} > ${ATTENTION_MAX_HEAD_DIM} is not supported`);
  if (splitLen % WG !== 0 || splitLen < WG) throw new Error(`attention: splitLen ${splitLen} must be a positive multiple of ${WG}`);
  return packParams([
    [nHeads, 'u32'],
    [nKvHeads, 'u32'],
    [headDim, 'u32'],
    [blockSize, 'u32'],
    [maxBlocks, 'u32'],
    [1 / Math.sqrt(headDim), 'f32'],
    [splitLen, 'u32'],
    [maxSplits, 'u32'],
    [qStride / 4, 'u32'],
  ]);
}

/** Workgroups of an attention step: one per (head, row, split of splitLen positions). */
export const attentionGrid = (nHeads: number, nTokens: number, splits = 1): [number, number, number] => [nHeads, nTokens, splits];
/** Workgroups of the combine kernel: one per (head, row). */
export const attentionCombineGrid = (nHeads: number, nTokens: number): [number, number] => [nHeads, nTokens];

/** Floats of the partial-results buffer for `rows` rows. */
export const attentionPartFloats = (rows: number, nHeads: number, headDim: number, maxSplits: number): number =>
  rows * nHeads * maxSplits * (4 + headDim);

/** CPU reference over the same paged cache layout. */
export function attentionRef(
  q: Float32Array, kCache: Float32Array, vCache: Float32Array, positions: number[], slots: number[],
  blockTable: Uint32Array, maxBlocks: number, blockSize: number, nHeads: number, nKvHeads: number, headDim: number,
): Float32Array {
  const out = new Float32Array(q.length);
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  positions.forEach((position, t) => {
    for (let h = 0; h < nHeads; h++) {
      const kvOff = Math.floor(h / group) * headDim;
      const qBase = (t * nHeads + h) * headDim;
      const scores = new Float64Array(position + 1);
      for (let j = 0; j <= position; j++) {
        const row = cacheRowRef(blockTable, maxBlocks, blockSize, slots[t]!, j) * kvDim + kvOff;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qBase + d]! * kCache[row + d]!;
        scores[j] = s / Math.sqrt(headDim);
      }
      const mx = Math.max(...scores);
      let sum = 0;
      for (let j = 0; j <= position; j++) sum += (scores[j] = Math.exp(scores[j]! - mx));
      for (let j = 0; j <= position; j++) {
        const row = cacheRowRef(blockTable, maxBlocks, blockSize, slots[t]!, j) * kvDim + kvOff;
        for (let d = 0; d < headDim; d++) out[qBase + d] = out[qBase + d]! + (scores[j]! / sum) * vCache[row + d]!;
      }
    }
  });
  return out;
}

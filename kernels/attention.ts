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
// Grid: (nHeads, nTokens, nSplits); each invocation scores one position of a tile and owns output
// elements d = lid, lid + WG, ... (D <= 4 * WG).

import { STEP_WGSL, packParams } from './common.ts';
import { CACHE_ROW_WGSL, cacheRowRef, kvEnable, type KvDtype } from './kv-cache.ts';

const WG = 64;
export const ATTENTION_MAX_HEAD_DIM = 4 * WG;
/** Positions per split of a decode row (a multiple of the tile, WG). */
export const ATTENTION_SPLIT_LEN = 256;

export const attentionWgsl = (kv: KvDtype): string => /* wgsl */ `${kvEnable(kv)}
${STEP_WGSL}
struct Params {
  nHeads: u32,
  nKvHeads: u32,
  headDim: u32,
  blockSize: u32,
  maxBlocks: u32,
  scale: f32,      // 1 / sqrt(headDim)
  splitLen: u32,   // positions per split (a multiple of ${WG})
  maxSplits: u32,  // splits per row the partial buffers hold
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;             // (nTokens, nHeads, D)
@group(0) @binding(3) var<storage, read> kCache: array<${kv}>;        // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(4) var<storage, read> vCache: array<${kv}>;        // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(5) var<storage, read> pos: array<u32>;           // (nTokens)
@group(0) @binding(6) var<storage, read> slot: array<u32>;          // (nTokens)
@group(0) @binding(7) var<storage, read> blockTable: array<u32>;    // (nSlots, maxBlocks)
@group(0) @binding(8) var<storage, read_write> out: array<f32>;     // (nTokens, nHeads, D)
@group(0) @binding(9) var<storage, read_write> part: array<f32>;    // (rows, nHeads, maxSplits, 2 + D): m, l, acc
${CACHE_ROW_WGSL}

const WG: u32 = ${WG}u;
var<workgroup> qs: array<f32, ${ATTENTION_MAX_HEAD_DIM}>;
var<workgroup> ps: array<f32, ${WG}>;
var<workgroup> nPos: u32;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  let sp = wid.z;
  if (t >= step.nTokens) { return; }
  let D = p.headDim;
  let kvDim = p.nKvHeads * D;
  let kvOff = (h / (p.nHeads / p.nKvHeads)) * D;
  let qBase = (t * p.nHeads + h) * D;
  if (lid == 0u) { nPos = pos[t] + 1u; }
  let n = workgroupUniformLoad(&nPos);
  let first = sp * p.splitLen;
  if (first >= n) { return; } // uniform: this split is past the row's positions
  let end = min(n, first + p.splitLen);
  let single = n <= p.splitLen;
  for (var d = lid; d < D; d += WG) { qs[d] = q[qBase + d] * p.scale; }
  workgroupBarrier();
  let s = slot[t];
  var m = -3.0e38;  // running max
  var l = 0.0;      // running sum of exp
  var acc = vec4<f32>(0.0); // out[d] for d = lid + i*WG
  for (var start = first; start < end; start += WG) {
    let j = start + lid;
    var score = -3.0e38;
    if (j < end) {
      let row = cacheRow(s, j) * kvDim + kvOff;
      var dotv = 0.0;
      for (var d = 0u; d < D; d++) { dotv += qs[d] * f32(kCache[row + d]); }
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
    let corr = exp(m - tmax);
    var tsum = 0.0;
    for (var jj = 0u; jj < count; jj++) { tsum += ps[jj]; }
    l = l * corr + tsum;
    acc *= corr;
    for (var jj = 0u; jj < count; jj++) {
      let row = cacheRow(s, start + jj) * kvDim + kvOff;
      let pj = ps[jj];
      for (var i = 0u; i < 4u; i++) {
        let d = lid + i * WG;
        if (d < D) { acc[i] += pj * f32(vCache[row + d]); }
      }
    }
    m = tmax;
    workgroupBarrier();
  }
  if (single) {
    for (var i = 0u; i < 4u; i++) {
      let d = lid + i * WG;
      if (d < D) { out[qBase + d] = acc[i] / l; }
    }
    return;
  }
  let pBase = ((t * p.nHeads + h) * p.maxSplits + sp) * (2u + D);
  if (lid == 0u) { part[pBase] = m; part[pBase + 1u] = l; }
  for (var i = 0u; i < 4u; i++) {
    let d = lid + i * WG;
    if (d < D) { part[pBase + 2u + d] = acc[i]; }
  }
}`;

/** Merges the splits of rows with more than one (see above). Grid: (nHeads, nTokens). Same Params. */
export const ATTENTION_COMBINE_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params {
  nHeads: u32,
  nKvHeads: u32,
  headDim: u32,
  blockSize: u32,
  maxBlocks: u32,
  scale: f32,
  splitLen: u32,
  maxSplits: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> pos: array<u32>;           // (nTokens)
@group(0) @binding(3) var<storage, read> part: array<f32>;          // (rows, nHeads, maxSplits, 2 + D)
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
  let stride = 2u + D;
  let base = (t * p.nHeads + h) * p.maxSplits * stride;
  var M = -3.0e38;
  for (var s = 0u; s < nS; s++) { M = max(M, part[base + s * stride]); }
  var L = 0.0;
  for (var s = 0u; s < nS; s++) { L += exp(part[base + s * stride] - M) * part[base + s * stride + 1u]; }
  for (var d = lid; d < D; d += ${WG}u) {
    var a = 0.0;
    for (var s = 0u; s < nS; s++) { a += exp(part[base + s * stride] - M) * part[base + s * stride + 2u + d]; }
    out[(t * p.nHeads + h) * D + d] = a / L;
  }
}`;

export const ATTENTION_WGSL = attentionWgsl('f32');

/**
 * splitLen: positions per split (a multiple of 64; >= the context for one workgroup per (row, head));
 * maxSplits: splits per row the partial buffer holds.
 */
export function packAttentionParams(nHeads: number, nKvHeads: number, headDim: number, blockSize: number, maxBlocks: number,
  splitLen = Math.ceil((blockSize * maxBlocks) / WG) * WG, maxSplits = 1): ArrayBuffer {
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
  ]);
}

/** Floats of the partial-results buffer for `rows` rows. */
export const attentionPartFloats = (rows: number, nHeads: number, headDim: number, maxSplits: number): number =>
  rows * nHeads * maxSplits * (2 + headDim);

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

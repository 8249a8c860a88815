// Causal grouped-query attention over the paged KV cache, for decode and prefill alike: token row t
// (query position pos[t] of sequence slot[t]) attends to its sequence's cached positions 0..pos[t]
// (the causal mask), which the kv-write kernel has already filled for every row of this step.
// Query head h reads KV head h / (nHeads / nKvHeads) (GQA, Ainslie et al. 2023; MHA when equal).
//   out[t, h, :] = softmax_j(q[t,h,:] . K[j, kvh, :] / sqrt(D)) V[j, kvh, :]
// Softmax is computed online over tiles of WG positions (Milakov & Gimelshein 2018), so any context
// length works with fixed workgroup memory.
// Grid: (nHeads, nTokens); one workgroup of WG invocations per (row, head); each invocation scores one
// position of the tile and owns output elements d = lid, lid + WG, ... (D <= 4 * WG).

import { STEP_WGSL, packParams } from './common.ts';
import { CACHE_ROW_WGSL, cacheRowRef } from './kv-cache.ts';

const WG = 64;
export const ATTENTION_MAX_HEAD_DIM = 4 * WG;

export const ATTENTION_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params {
  nHeads: u32,
  nKvHeads: u32,
  headDim: u32,
  blockSize: u32,
  maxBlocks: u32,
  scale: f32,      // 1 / sqrt(headDim)
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;             // (nTokens, nHeads, D)
@group(0) @binding(3) var<storage, read> kCache: array<f32>;        // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(4) var<storage, read> vCache: array<f32>;        // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(5) var<storage, read> pos: array<u32>;           // (nTokens)
@group(0) @binding(6) var<storage, read> slot: array<u32>;          // (nTokens)
@group(0) @binding(7) var<storage, read> blockTable: array<u32>;    // (nSlots, maxBlocks)
@group(0) @binding(8) var<storage, read_write> out: array<f32>;     // (nTokens, nHeads, D)
${CACHE_ROW_WGSL}

const WG: u32 = ${WG}u;
var<workgroup> qs: array<f32, ${ATTENTION_MAX_HEAD_DIM}>;
var<workgroup> ps: array<f32, ${WG}>;
var<workgroup> nPos: u32;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= step.nTokens) { return; }
  let D = p.headDim;
  let kvDim = p.nKvHeads * D;
  let kvOff = (h / (p.nHeads / p.nKvHeads)) * D;
  let qBase = (t * p.nHeads + h) * D;
  for (var d = lid; d < D; d += WG) { qs[d] = q[qBase + d] * p.scale; }
  if (lid == 0u) { nPos = pos[t] + 1u; }
  let n = workgroupUniformLoad(&nPos); // also a barrier: qs is visible to all
  let s = slot[t];
  var m = -3.0e38;  // running max
  var l = 0.0;      // running sum of exp
  var acc = vec4<f32>(0.0); // out[d] for d = lid + i*WG
  for (var start = 0u; start < n; start += WG) {
    let j = start + lid;
    var score = -3.0e38;
    if (j < n) {
      let row = cacheRow(s, j) * kvDim + kvOff;
      var dotv = 0.0;
      for (var d = 0u; d < D; d++) { dotv += qs[d] * kCache[row + d]; }
      score = dotv;
    }
    ps[lid] = score;
    workgroupBarrier();
    let count = min(WG, n - start);
    var tmax = m;
    for (var jj = 0u; jj < count; jj++) { tmax = max(tmax, ps[jj]); }
    workgroupBarrier();
    ps[lid] = select(0.0, exp(score - tmax), j < n);
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
        if (d < D) { acc[i] += pj * vCache[row + d]; }
      }
    }
    m = tmax;
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let d = lid + i * WG;
    if (d < D) { out[qBase + d] = acc[i] / l; }
  }
}`;

export function packAttentionParams(nHeads: number, nKvHeads: number, headDim: number, blockSize: number, maxBlocks: number): ArrayBuffer {
  if (headDim > ATTENTION_MAX_HEAD_DIM) throw new Error(`attention: head_dim ${headDim} > ${ATTENTION_MAX_HEAD_DIM} is not supported`);
  return packParams([
    [nHeads, 'u32'],
    [nKvHeads, 'u32'],
    [headDim, 'u32'],
    [blockSize, 'u32'],
    [maxBlocks, 'u32'],
    [1 / Math.sqrt(headDim), 'f32'],
  ]);
}

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

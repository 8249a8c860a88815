// Prefill attention in tiles of query rows: one workgroup takes R consecutive token rows of one sequence (the
// host uses it only when every row of the step is the same slot) and one head, and walks the context in tiles
// of TP positions; each tile's K and V rows are read from the cache once into workgroup memory and shared by
// the R rows, instead of once per row as in kernels/attention.ts. Causal mask and online softmax as there;
// row r attends positions 0..pos[r]. Same bindings and Params as attentionWgsl (qStride4 included).
// Invocations: R rows x LPR lanes; lane l of row r scores positions l, l + LPR, ... of a tile and owns vec4
// d4 = l, l + LPR, ... of the row's output. Needs headDim <= 4 * 32 (D4 <= 32).
// Grid: (nHeads, ceil(nTokens / R)).

import { STEP_WGSL } from './common.ts';
import { CACHE_ROW_WGSL, kvEnable, type KvDtype } from './kv-cache.ts';

export const PREFILL_ROWS = 8;
const TP = 16;
const LPR = 8;
export const PREFILL_MAX_HEAD_DIM = 128;

export const attentionPrefillWgsl = (kv: KvDtype): string => /* wgsl */ `${kvEnable(kv)}
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
  qStride4: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kCache: array<vec4<${kv}>>;
@group(0) @binding(4) var<storage, read> vCache: array<vec4<${kv}>>;
@group(0) @binding(5) var<storage, read> pos: array<u32>;
@group(0) @binding(6) var<storage, read> slot: array<u32>;
@group(0) @binding(7) var<storage, read> blockTable: array<u32>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;
${CACHE_ROW_WGSL}

const R: u32 = ${PREFILL_ROWS}u;
const TP: u32 = ${TP}u;
const LPR: u32 = ${LPR}u;
var<workgroup> qsh: array<vec4<f32>, ${PREFILL_ROWS * 32}>;
var<workgroup> ksh: array<vec4<f32>, ${TP * 32}>;
var<workgroup> vsh: array<vec4<f32>, ${TP * 32}>;
var<workgroup> sc: array<f32, ${PREFILL_ROWS * TP}>;
var<workgroup> nMax: u32;

@compute @workgroup_size(${PREFILL_ROWS * LPR})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t0 = wid.y * R;
  if (t0 >= step.nTokens) { return; }
  let D4 = p.headDim / 4u;
  let kvDim4 = p.nKvHeads * D4;
  let kvOff4 = (h / (p.nHeads / p.nKvHeads)) * D4;
  let r = lid / LPR;
  let lane = lid % LPR;
  let t = t0 + r;
  let valid = t < step.nTokens;
  let s = slot[t0];
  for (var i = lid; i < R * D4; i += R * LPR) {
    let tt = t0 + i / D4;
    var v = vec4<f32>(0.0);
    if (tt < step.nTokens) { v = q[tt * p.qStride4 + h * D4 + i % D4] * p.scale; }
    qsh[i] = v;
  }
  if (lid == 0u) {
    var mx = 0u;
    for (var rr = 0u; rr < R; rr++) { if (t0 + rr < step.nTokens) { mx = max(mx, pos[t0 + rr] + 1u); } }
    nMax = mx;
  }
  let n = workgroupUniformLoad(&nMax); // also a barrier: qsh is visible
  var myN = 0u;
  if (valid) { myN = pos[t] + 1u; }
  var m = -3.0e38;
  var l = 0.0;
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  for (var start = 0u; start < n; start += TP) {
    for (var i = lid; i < TP * D4; i += R * LPR) {
      let j = start + i / D4;
      if (j < n) {
        let row = cacheRow(s, j) * kvDim4 + kvOff4 + i % D4;
        ksh[i] = vec4<f32>(kCache[row]);
        vsh[i] = vec4<f32>(vCache[row]);
      }
    }
    workgroupBarrier();
    for (var jj = lane; jj < TP; jj += LPR) {
      var score = -3.0e38;
      if (start + jj < myN) {
        var d = 0.0;
        for (var i = 0u; i < D4; i++) { d += dot(qsh[r * D4 + i], ksh[jj * D4 + i]); }
        score = d;
      }
      sc[r * TP + jj] = score;
    }
    workgroupBarrier();
    var tmax = m;
    for (var jj = 0u; jj < TP; jj++) { tmax = max(tmax, sc[r * TP + jj]); }
    let corr = exp(m - tmax);
    l *= corr;
    for (var c = 0u; c < 4u; c++) { acc[c] *= corr; }
    for (var jj = 0u; jj < TP; jj++) {
      let pj = select(0.0, exp(sc[r * TP + jj] - tmax), start + jj < myN);
      l += pj;
      for (var c = 0u; c < 4u; c++) {
        let d4 = lane + c * LPR;
        if (d4 < D4) { acc[c] += pj * vsh[jj * D4 + d4]; }
      }
    }
    m = tmax;
    workgroupBarrier();
  }
  if (!valid) { return; }
  for (var c = 0u; c < 4u; c++) {
    let d4 = lane + c * LPR;
    if (d4 < D4) { out[(t * p.nHeads + h) * D4 + d4] = acc[c] / l; }
  }
}`;

// Prefill attention in tiles of query rows: one workgroup takes R consecutive token rows of one sequence (the
// host uses it only when every row of the step is the same slot) and one head, and walks the context in tiles
// of TP positions; each tile's K and V rows are read from the cache once into workgroup memory and shared by
// the R rows, instead of once per row as in kernels/attention.ts. Causal mask and online softmax as there;
// row r attends positions 0..pos[r]. Same bindings and Params as attentionWgsl (qStride4 included).
// Invocations: R rows x LPR lanes; lane l of row r scores positions l, l + LPR, ... of a tile and owns vec4
// d4 = l, l + LPR, ... of the row's output. Needs headDim <= PREFILL_MAX_HEAD_DIM.
// Grid: attentionPrefillGrid, (nHeads, ceil(nTokens / R)).

import type { KvDtype } from './kv-cache.ts';
import { attentionCommonWgsl } from './attention.ts';

const R = 8; // token rows per workgroup
const TP = 16; // positions per K/V tile
const LPR = 8; // lanes per row
export const PREFILL_MAX_HEAD_DIM = 128;
const MAX_D4 = PREFILL_MAX_HEAD_DIM / 4; // vec4 per head row at most; a lane owns MAX_D4 / LPR of them

export const attentionPrefillWgsl = (kv: KvDtype): string => /* wgsl */ `${attentionCommonWgsl(kv)}

const R: u32 = ${R}u;
const TP: u32 = ${TP}u;
const LPR: u32 = ${LPR}u;
const NC: u32 = ${MAX_D4 / LPR}u; // vec4 of the output per lane
var<workgroup> qsh: array<vec4<f32>, ${R * MAX_D4}>;
var<workgroup> ksh: array<vec4<f32>, ${TP * MAX_D4}>;
var<workgroup> vsh: array<vec4<f32>, ${TP * MAX_D4}>;
var<workgroup> sc: array<f32, ${R * TP}>;
var<workgroup> nMax: u32;

@compute @workgroup_size(${R * LPR})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t0 = wid.y * R;
  if (t0 >= step.nTokens) { return; }
  let D4 = p.headDim / 4u;
  let kvOff4 = kvHead4(h);
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
  var acc: array<vec4<f32>, NC>; // zeros: vec4 d4 = lane + c * LPR of the row's output
  for (var start = 0u; start < n; start += TP) {
    for (var i = lid; i < TP * D4; i += R * LPR) {
      let j = start + i / D4;
      if (j < n) {
        let row = kvRow4(s, j, kvOff4) + i % D4;
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
    let corr = raiseMax(&m, tmax);
    l *= corr;
    for (var c = 0u; c < NC; c++) { acc[c] *= corr; }
    for (var jj = 0u; jj < TP; jj++) {
      let pj = select(0.0, exp(sc[r * TP + jj] - tmax), start + jj < myN);
      l += pj;
      for (var c = 0u; c < NC; c++) {
        let d4 = lane + c * LPR;
        if (d4 < D4) { acc[c] += pj * vsh[jj * D4 + d4]; }
      }
    }
    workgroupBarrier();
  }
  if (!valid) { return; }
  for (var c = 0u; c < NC; c++) {
    let d4 = lane + c * LPR;
    if (d4 < D4) { out[(t * p.nHeads + h) * D4 + d4] = acc[c] / l; }
  }
}`;

/** Workgroups of a prefill step of nTokens rows of one sequence: one per (head, R rows). */
export const attentionPrefillGrid = (nHeads: number, nTokens: number): [number, number] => [nHeads, Math.ceil(nTokens / R)];

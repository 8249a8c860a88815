// Matrix products with the weights: Y (M, ldy)[:, rowOffset .. rowOffset+N] (+)= X (M, K) · W (N, K)^T.
// X and Y are f32 activations; W is one row-chunk of a weight matrix in a WeightFormat (a matrix bigger
// than maxStorageBufferBindingSize is split by rows into chunks, one dispatch each, writing its columns
// of Y at rowOffset). M is Step.nTokens (or Step.nOut for the logits head).
//
// Two kernels:
//  - matvec (decode, M <= 4): a workgroup of WG invocations computes ROWS rows of W for all M rows of X:
//    the invocations stride over K in vec4s (so each weight is loaded once per step, coalesced), and
//    the partial sums are reduced through workgroup memory. Grid: (ceil(N / ROWS), 1).
//  - tiled (prefill, M > 4): 64x64 output tiles, 256 invocations each computing a 4x4 block, K in steps
//    of 16 staged through workgroup memory. Grid: (ceil(N / 64), ceil(M / 64)).
// With accumulate = 1 the result is added to Y (the residual connection, fused).

import { STEP_WGSL, packParams, type Dispatch, encodeDispatch } from './common.ts';
import { formatSpec, type WeightFormat } from './weight-formats.ts';

export const MATVEC_MAX_M = 4;
const MATVEC_WG = 64;
const MATVEC_ROWS = 4;

export function matvecWgsl(format: WeightFormat): string {
  return /* wgsl */ `
${STEP_WGSL}
struct Params {
  N: u32,          // rows of W in this chunk
  K4: u32,         // K / 4
  rowOffset: u32,  // first column of Y written by this chunk
  ldy: u32,        // row stride of Y in f32
  accumulate: u32, // 1: Y += X W^T
  useOut: u32,     // 1: M = step.nOut, else step.nTokens
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
${formatSpec(format).wgsl(4)}

const WG: u32 = ${MATVEC_WG}u;
const ROWS: u32 = ${MATVEC_ROWS}u;
const MAXM: u32 = ${MATVEC_MAX_M}u;
var<workgroup> partial: array<vec4<f32>, ${MATVEC_WG * MATVEC_ROWS}>; // [row][lane], one vec4 lane per m

@compute @workgroup_size(${MATVEC_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let M = min(select(step.nTokens, step.nOut, p.useOut == 1u), MAXM);
  let row0 = wid.x * ROWS;
  var acc: array<vec4<f32>, ${MATVEC_ROWS}>; // acc[r][m]
  for (var k4 = lid; k4 < p.K4; k4 += WG) {
    var xs: array<vec4<f32>, ${MATVEC_MAX_M}>;
    for (var m = 0u; m < M; m++) { xs[m] = x[m * p.K4 + k4]; }
    for (var r = 0u; r < ROWS; r++) {
      let row = row0 + r;
      if (row < p.N) {
        let wv = loadW4(row, k4, p.K4);
        for (var m = 0u; m < M; m++) { acc[r][m] += dot(wv, xs[m]); }
      }
    }
  }
  for (var r = 0u; r < ROWS; r++) { partial[r * WG + lid] = acc[r]; }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      for (var r = 0u; r < ROWS; r++) { partial[r * WG + lid] += partial[r * WG + lid + s]; }
    }
    workgroupBarrier();
  }
  if (lid < ROWS * MAXM) {
    let r = lid / MAXM;
    let m = lid % MAXM;
    let row = row0 + r;
    if (row < p.N && m < M) {
      let i = m * p.ldy + p.rowOffset + row;
      let v = partial[r * WG][m];
      y[i] = select(v, y[i] + v, p.accumulate == 1u);
    }
  }
}`;
}

const TILE = 64;
const TK4 = 4; // K step of 16 = 4 vec4

export function tiledWgsl(format: WeightFormat): string {
  return /* wgsl */ `
${STEP_WGSL}
struct Params {
  N: u32,
  K4: u32,
  rowOffset: u32,
  ldy: u32,
  accumulate: u32,
  useOut: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
${formatSpec(format).wgsl(4)}

const T: u32 = ${TILE}u;
const TK4: u32 = ${TK4}u;
var<workgroup> xs: array<vec4<f32>, ${TILE * TK4}>; // [m][k4] of the tile
var<workgroup> ws: array<vec4<f32>, ${TILE * TK4}>; // [n][k4] of the tile

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let M = select(step.nTokens, step.nOut, p.useOut == 1u);
  let n0 = wid.x * T;
  let m0 = wid.y * T;
  let tx = lid3.x; // 4 output columns: n0 + tx*4 ..
  let ty = lid3.y; // 4 output rows:    m0 + ty*4 ..
  var acc: array<vec4<f32>, 4>; // acc[i][j]: row m0+ty*4+i, column n0+tx*4+j
  // Each invocation stages one vec4 of X and one of W per K step: row lid / 4, k4 lid % 4.
  let lr = lid / TK4;
  let lk = lid % TK4;
  for (var kb = 0u; kb < p.K4; kb += TK4) {
    let k4 = kb + lk;
    var xv = vec4<f32>(0.0);
    if (m0 + lr < M && k4 < p.K4) { xv = x[(m0 + lr) * p.K4 + k4]; }
    xs[lr * TK4 + lk] = xv;
    var wv = vec4<f32>(0.0);
    if (n0 + lr < p.N && k4 < p.K4) { wv = loadW4(n0 + lr, k4, p.K4); }
    ws[lr * TK4 + lk] = wv;
    workgroupBarrier();
    for (var c = 0u; c < TK4; c++) {
      for (var i = 0u; i < 4u; i++) {
        let a = xs[(ty * 4u + i) * TK4 + c];
        acc[i] += vec4<f32>(dot(a, ws[(tx * 4u + 0u) * TK4 + c]), dot(a, ws[(tx * 4u + 1u) * TK4 + c]),
                            dot(a, ws[(tx * 4u + 2u) * TK4 + c]), dot(a, ws[(tx * 4u + 3u) * TK4 + c]));
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n < p.N) {
        let idx = m * p.ldy + p.rowOffset + n;
        y[idx] = select(acc[i][j], y[idx] + acc[i][j], p.accumulate == 1u);
      }
    }
  }
}`;
}

export interface MatmulParams {
  N: number;
  K: number;
  rowOffset: number;
  ldy: number;
  accumulate: boolean;
  useOut: boolean;
}

export function packMatmulParams(q: MatmulParams): ArrayBuffer {
  if (q.K % 4 !== 0) throw new Error(`matmul: K = ${q.K} must be a multiple of 4`);
  return packParams([
    [q.N, 'u32'],
    [q.K / 4, 'u32'],
    [q.rowOffset, 'u32'],
    [q.ldy, 'u32'],
    [q.accumulate ? 1 : 0, 'u32'],
    [q.useOut ? 1 : 0, 'u32'],
  ]);
}

/** The two recorded dispatches of one weight chunk; encode picks by M. */
export interface MatmulDispatch {
  matvec: Dispatch;
  tiled: Dispatch;
  N: number;
}

export function encodeMatmul(pass: GPUComputePassEncoder, d: MatmulDispatch, M: number): void {
  if (M <= MATVEC_MAX_M) encodeDispatch(pass, d.matvec, Math.ceil(d.N / MATVEC_ROWS));
  else encodeDispatch(pass, d.tiled, Math.ceil(d.N / TILE), Math.ceil(M / TILE));
}

/** CPU reference: y (M, N) = x (M, K) · w (N, K)^T, accumulated in f64. */
export function matmulRef(x: Float32Array, w: Float32Array, M: number, N: number, K: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s;
    }
  }
  return y;
}

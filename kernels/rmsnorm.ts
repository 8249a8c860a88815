// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * w, per row.
// Grid: (rows); one workgroup of 256 reduces one row of length dim.

import { STEP_WGSL, packParams } from './common.ts';

const WG = 256;

export const RMSNORM_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params {
  dim: u32,
  eps: f32,
  useOut: u32, // 1: rows = step.nOut, else step.nTokens
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;        // (rows, dim)
@group(0) @binding(3) var<storage, read> w: array<f32>;        // (dim)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (rows, dim)

var<workgroup> red: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  let rows = select(step.nTokens, step.nOut, p.useOut == 1u);
  if (row >= rows) { return; }
  let base = row * p.dim;
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += ${WG}u) { let v = x[base + i]; ss += v * v; }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(red[0] / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += ${WG}u) { y[base + i] = x[base + i] * scale * w[i]; }
}`;

export function packRmsnormParams(dim: number, eps: number, useOut: boolean): ArrayBuffer {
  return packParams([[dim, 'u32'], [eps, 'f32'], [useOut ? 1 : 0, 'u32']]);
}

export function rmsnormRef(x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number): Float32Array {
  const y = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
    const scale = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i]! * scale * w[i]!;
  }
  return y;
}

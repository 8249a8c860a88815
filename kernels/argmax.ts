// Sampling helper: greedy argmax of each logits row (ties -> the lowest id), so greedy decoding reads
// back 4 bytes per row instead of the whole vocabulary. Grid: argmaxGrid, (nOut); one workgroup of WG per row.

import { STEP_WGSL, packParams } from './common.ts';

const WG = 256;

export const ARGMAX_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params { vocab: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;      // (nOut, vocab)
@group(0) @binding(3) var<storage, read_write> best: array<u32>;  // (nOut)

var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= step.nOut) { return; }
  var v = -3.4e38;
  var idx = 0xffffffffu;
  for (var i = lid; i < p.vocab; i += ${WG}u) {
    let x = logits[row * p.vocab + i];
    if (x > v) { v = x; idx = i; }
  }
  bv[lid] = v;
  bi[lid] = idx;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = bv[lid + s];
      let oi = bi[lid + s];
      if (ov > bv[lid] || (ov == bv[lid] && oi < bi[lid])) { bv[lid] = ov; bi[lid] = oi; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { best[row] = bi[0]; }
}`;

/** Workgroups of an argmax over nOut rows: one per row. */
export const argmaxGrid = (nOut: number): [number] => [nOut];

export function packArgmaxParams(vocab: number): ArrayBuffer {
  return packParams([[vocab, 'u32']]);
}

export function argmaxRef(logits: Float32Array, rows: number, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let b = 0;
    for (let i = 1; i < vocab; i++) if (logits[r * vocab + i]! > logits[r * vocab + b]!) b = i;
    out.push(b);
  }
  return out;
}

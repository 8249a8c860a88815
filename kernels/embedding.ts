// Embedding gather: out[t, :] = table[ids[t], :] for the ids that fall in this chunk of the table
// (rows rowStart .. rowStart+rows). A table larger than one binding is split by rows and gathered with
// one dispatch per chunk. Grid: embeddingGrid, (nTokens); one workgroup of WG copies one token's row.

import { STEP_WGSL, packParams } from './common.ts';
import { formatSpec, type WeightFormat } from './weight-formats.ts';

const WG = 64;

export function embeddingWgsl(format: WeightFormat): string {
  return /* wgsl */ `
${STEP_WGSL}
struct Params {
  dim4: u32,     // dim / 4
  rowStart: u32, // first table row held by this chunk
  rows: u32,     // rows in this chunk
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> ids: array<u32>;          // (nTokens)
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // (nTokens, dim)
${formatSpec(format).wgsl(4)}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x;
  if (t >= step.nTokens) { return; }
  let id = ids[t];
  if (id < p.rowStart || id >= p.rowStart + p.rows) { return; }
  for (var k4 = lid; k4 < p.dim4; k4 += ${WG}u) {
    out[t * p.dim4 + k4] = loadW4(id - p.rowStart, k4, p.dim4);
  }
}`;
}

/** Workgroups of a gather of nTokens rows: one per token. */
export const embeddingGrid = (nTokens: number): [number] => [nTokens];

export function packEmbeddingParams(dim: number, rowStart: number, rows: number): ArrayBuffer {
  return packParams([[dim / 4, 'u32'], [rowStart, 'u32'], [rows, 'u32']]);
}

export function embeddingRef(table: Float32Array, dim: number, ids: number[]): Float32Array {
  const out = new Float32Array(ids.length * dim);
  ids.forEach((id, t) => out.set(table.subarray(id * dim, (id + 1) * dim), t * dim));
  return out;
}

// RoPE of q and k and the KV-cache write, in one dispatch. Input: the fused q/k/v projection of each token
// row, qkv (nTokens, ld) with ld = (nHeads + 2 nKvHeads) * D: q heads, then k heads, then v heads. q is
// rotated in place (attention reads it from qkv); k is rotated and v copied into the cache row of the
// token's (slot, position) (kernels/kv-cache.ts addressing), as f16 or f32. Rotation as kernels/rope.ts.
// Grid: grid1d(nTokens * (nHeads + 2 nKvHeads) * D/2, 64); one invocation handles one pair (i, i + D/2) of
// one head: rotates it (q, k) or copies it (v).

import { STEP_WGSL, grid1d, linearMainWgsl, packParams } from './common.ts';
import { CACHE_ROW_WGSL, kvEnable, type KvDtype } from './kv-cache.ts';

const WG = 64;

export const ropeKvWgsl = (kv: KvDtype): string => /* wgsl */ `${kvEnable(kv)}
${STEP_WGSL}
struct Params {
  nHeads: u32,
  nKvHeads: u32,
  half: u32,       // D / 2
  blockSize: u32,
  maxBlocks: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;          // (nTokens, (nHeads + 2 nKvHeads) * D)
@group(0) @binding(3) var<storage, read> pos: array<u32>;                // (nTokens)
@group(0) @binding(4) var<storage, read> slot: array<u32>;               // (nTokens)
@group(0) @binding(5) var<storage, read> blockTable: array<u32>;         // (nSlots, maxBlocks)
@group(0) @binding(6) var<storage, read> cs: array<vec2<f32>>;           // (context, D/2) (cos, sin)
@group(0) @binding(7) var<storage, read_write> kCache: array<${kv}>;      // (nBlocks*blockSize, nKvHeads*D)
@group(0) @binding(8) var<storage, read_write> vCache: array<${kv}>;     // (nBlocks*blockSize, nKvHeads*D)
${CACHE_ROW_WGSL}

${linearMainWgsl(WG, 'step.nTokens * (p.nHeads + 2u * p.nKvHeads) * p.half', /* wgsl */ `
  let heads = p.nHeads + 2u * p.nKvHeads;
  let perToken = heads * p.half;
  let t = i / perToken;
  let h = (i % perToken) / p.half;
  let j = i % p.half;
  let D = 2u * p.half;
  let src = t * heads * D + h * D + j;
  let a = qkv[src];
  let b = qkv[src + p.half];
  if (h >= p.nHeads + p.nKvHeads) { // v: copied
    let dst = cacheRow(slot[t], pos[t]) * p.nKvHeads * D + (h - p.nHeads - p.nKvHeads) * D + j;
    vCache[dst] = ${kv}(a);
    vCache[dst + p.half] = ${kv}(b);
    return;
  }
  let c = cs[pos[t] * p.half + j];
  let ra = a * c.x - b * c.y;
  let rb = b * c.x + a * c.y;
  if (h < p.nHeads) { // q: in place
    qkv[src] = ra;
    qkv[src + p.half] = rb;
    return;
  }
  let dst = cacheRow(slot[t], pos[t]) * p.nKvHeads * D + (h - p.nHeads) * D + j;
  kCache[dst] = ${kv}(ra);
  kCache[dst + p.half] = ${kv}(rb);`)}`;

/** Workgroups of a RoPE + KV step: one invocation per rotation pair of every q, k and v head of each row. */
export const ropeKvGrid = (nTokens: number, nHeads: number, nKvHeads: number, headDim: number): [number, number] =>
  grid1d((nTokens * (nHeads + 2 * nKvHeads) * headDim) / 2, WG);

export function packRopeKvParams(nHeads: number, nKvHeads: number, headDim: number, blockSize: number, maxBlocks: number): ArrayBuffer {
  return packParams([[nHeads, 'u32'], [nKvHeads, 'u32'], [headDim / 2, 'u32'], [blockSize, 'u32'], [maxBlocks, 'u32']]);
}

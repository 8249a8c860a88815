// KV-cache write. The cache of one layer is a pool of blocks: k and v are each
// (nBlocks * blockSize, kvDim) f16 (the default; needs shader-f16) or f32, kvDim = nKvHeads * headDim. A sequence (slot s) owns blocks listed
// in its row of the block table, (nSlots, maxBlocks) u32: position p of slot s lives at cache row
//   blockTable[s * maxBlocks + p / blockSize] * blockSize + p % blockSize.
// This kernel stores the new tokens' (already rotated) k and v rows at their positions.
// Grid: kvWriteGrid (grid1d(nTokens * kvDim / 4, WG)); one invocation moves one vec4 of k and one of v.

import { STEP_WGSL, grid1d, linearMainWgsl, packParams } from './common.ts';

const WG = 64;

/** WGSL helper shared with attention: the cache row of (slot, pos). Needs `blockTable` and `p.blockSize`, `p.maxBlocks`. */
export const CACHE_ROW_WGSL = /* wgsl */ `
fn cacheRow(slot: u32, position: u32) -> u32 {
  return blockTable[slot * p.maxBlocks + position / p.blockSize] * p.blockSize + position % p.blockSize;
}`;

/** Element type of the KV cache. f16 halves its memory and the bytes attention reads per position. */
export type KvDtype = 'f16' | 'f32';

export const kvBytesPerElement = (dtype: KvDtype): number => (dtype === 'f16' ? 2 : 4);

/** WGSL `enable` line a kernel that binds the cache needs. */
export const kvEnable = (dtype: KvDtype): string => (dtype === 'f16' ? 'enable f16;' : '');

export const kvWriteWgsl = (dtype: KvDtype): string => /* wgsl */ `${kvEnable(dtype)}
${STEP_WGSL}
struct Params {
  kvDim4: u32,     // nKvHeads * headDim / 4
  blockSize: u32,  // positions per block
  maxBlocks: u32,  // block-table row length
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;             // (nTokens, kvDim)
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;             // (nTokens, kvDim)
@group(0) @binding(4) var<storage, read> pos: array<u32>;                 // (nTokens)
@group(0) @binding(5) var<storage, read> slot: array<u32>;                // (nTokens)
@group(0) @binding(6) var<storage, read> blockTable: array<u32>;          // (nSlots, maxBlocks)
@group(0) @binding(7) var<storage, read_write> kCache: array<vec4<${dtype}>>;  // (nBlocks*blockSize, kvDim)
@group(0) @binding(8) var<storage, read_write> vCache: array<vec4<${dtype}>>;  // (nBlocks*blockSize, kvDim)
${CACHE_ROW_WGSL}

${linearMainWgsl(WG, 'step.nTokens * p.kvDim4', /* wgsl */ `
  let t = i / p.kvDim4;
  let e = i % p.kvDim4;
  let dst = cacheRow(slot[t], pos[t]) * p.kvDim4 + e;
  kCache[dst] = vec4<${dtype}>(k[i]);
  vCache[dst] = vec4<${dtype}>(v[i]);`)}`;

/** Workgroups of a kv-write step of nTokens rows of kvDim values. */
export const kvWriteGrid = (nTokens: number, kvDim: number): [number, number] => grid1d((nTokens * kvDim) / 4, WG);

export const KV_WRITE_WGSL = kvWriteWgsl('f32');

export function packKvWriteParams(kvDim: number, blockSize: number, maxBlocks: number): ArrayBuffer {
  if (kvDim % 4 !== 0) throw new Error(`kv-cache: kvDim ${kvDim} must be a multiple of 4`);
  return packParams([[kvDim / 4, 'u32'], [blockSize, 'u32'], [maxBlocks, 'u32']]);
}

/** CPU reference of the cache addressing. */
export function cacheRowRef(blockTable: Uint32Array, maxBlocks: number, blockSize: number, slot: number, position: number): number {
  const b = blockTable[slot * maxBlocks + Math.floor(position / blockSize)]!;
  return b * blockSize + (position % blockSize);
}

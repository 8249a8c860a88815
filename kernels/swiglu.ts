// SwiGLU gate (Shazeer 2020): g[i] = silu(g[i]) * u[i], silu(a) = a / (1 + e^-a), over (nTokens, hidden).
// Grid: swigluGrid(nTokens, hidden).

import { STEP_WGSL, grid1d, linearMainWgsl, packParams } from './common.ts';

const WG = 64;

export const SWIGLU_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params { hidden: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> g: array<f32>; // (nTokens, hidden): gate in, result out
@group(0) @binding(3) var<storage, read> u: array<f32>;       // (nTokens, hidden): up

${linearMainWgsl(WG, 'step.nTokens * p.hidden', /* wgsl */ `
  let a = g[i];
  g[i] = a / (1.0 + exp(-a)) * u[i];`)}`;

/**
 * The same over the fused gate/up projection: gu (nTokens, 2 hidden) holds, per chunk c of chunkRows hidden
 * units (the last one may be shorter), its gate columns then its up columns (runtime/forward.ts fuses w1 | w3
 * chunk by chunk so that a chunk of the fused matrix holds both halves of its units); with one chunk
 * (chunkRows = hidden) that is gate in [0, hidden) and up in [hidden, 2 hidden). out (nTokens, hidden) =
 * silu(gate) * up. Grid: swigluGrid(nTokens, hidden).
 */
export const SWIGLU_CAT_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params { hidden: u32, chunkRows: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> gu: array<f32>;         // (nTokens, 2 hidden): gate | up per chunk
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (nTokens, hidden)

${linearMainWgsl(WG, 'step.nTokens * p.hidden', /* wgsl */ `
  let t = i / p.hidden;
  let c = (i % p.hidden) / p.chunkRows;
  let l = (i % p.hidden) % p.chunkRows;
  let rows = min(p.chunkRows, p.hidden - c * p.chunkRows); // this chunk's units
  let g = t * 2u * p.hidden + 2u * c * p.chunkRows + l;
  let a = gu[g];
  out[i] = a / (1.0 + exp(-a)) * gu[g + rows];`)}`;

/** Workgroups of either SwiGLU kernel over nTokens rows of `hidden` units. */
export const swigluGrid = (nTokens: number, hidden: number): [number, number] => grid1d(nTokens * hidden, WG);

/** chunkRows: SWIGLU_CAT_WGSL's hidden units per chunk of gate | up (default: one chunk). */
export function packSwigluParams(hidden: number, chunkRows = hidden): ArrayBuffer {
  return packParams([[hidden, 'u32'], [chunkRows, 'u32']]);
}

export function swigluRef(g: Float32Array, u: Float32Array): Float32Array {
  return g.map((a, i) => (a / (1 + Math.exp(-a))) * u[i]!);
}

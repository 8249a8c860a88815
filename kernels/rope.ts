// Rotary position embeddings (Su et al. 2021, RoFormer) in the Hugging Face Llama layout
// ("rotate half"): within each head of size D, element i pairs with element i + D/2 and both are
// rotated by the angle (pos / s) * theta^(-2i/D), s the linear RoPE scale factor (1 for Llama-2;
// "position interpolation", Chen et al. 2023, arXiv:2306.15595, as HF's rope_scaling "linear" and
// llama.cpp's rope_freq_scale = 1/s):
//   out[i]       = x[i] * cos - x[i + D/2] * sin
//   out[i + D/2] = x[i + D/2] * cos + x[i] * sin
// cos/sin come from a (maxSeqLen, D/2) table computed on the host in f64 (WGSL's sin/cos are only
// accurate on [-pi, pi]). Applied in place to q (nTokens, nHeads, D) or k (nTokens, nKvHeads, D).
// Grid: ropeGrid (grid1d(nTokens * nHeads * D/2, WG)); one invocation rotates one pair.

import { STEP_WGSL, grid1d, linearMainWgsl, packParams } from './common.ts';

const WG = 64;

export const ROPE_WGSL = /* wgsl */ `
${STEP_WGSL}
struct Params {
  nHeads: u32,
  half: u32, // D / 2
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;  // (nTokens, nHeads, D)
@group(0) @binding(3) var<storage, read> pos: array<u32>;      // (nTokens) position of each row
@group(0) @binding(4) var<storage, read> cs: array<vec2<f32>>; // (maxSeqLen, D/2) (cos, sin)

${linearMainWgsl(WG, 'step.nTokens * p.nHeads * p.half', /* wgsl */ `
  let perToken = p.nHeads * p.half;
  let t = i / perToken;
  let h = (i % perToken) / p.half;
  let j = i % p.half;
  let c = cs[pos[t] * p.half + j];
  let base = (t * p.nHeads + h) * 2u * p.half;
  let a = x[base + j];
  let b = x[base + j + p.half];
  x[base + j] = a * c.x - b * c.y;
  x[base + j + p.half] = b * c.x + a * c.y;`)}`;

/** Workgroups of a rope step over nTokens rows of nHeads heads of headDim. */
export const ropeGrid = (nTokens: number, nHeads: number, headDim: number): [number, number] => grid1d((nTokens * nHeads * headDim) / 2, WG);

export function packRopeParams(nHeads: number, headDim: number): ArrayBuffer {
  return packParams([[nHeads, 'u32'], [headDim / 2, 'u32']]);
}

/** (maxSeqLen, D/2) interleaved (cos, sin) for angle (pos / scale) * theta^(-2i/D). */
export function ropeTable(maxSeqLen: number, headDim: number, theta: number, scale = 1): Float32Array {
  const half = headDim / 2;
  const t = new Float32Array(maxSeqLen * half * 2);
  for (let pos = 0; pos < maxSeqLen; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = (pos / scale) * Math.pow(theta, (-2 * i) / headDim);
      t[(pos * half + i) * 2] = Math.cos(angle);
      t[(pos * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return t;
}

export function ropeRef(x: Float32Array, positions: number[], nHeads: number, headDim: number, theta: number, scale = 1): Float32Array {
  const out = x.slice();
  const half = headDim / 2;
  positions.forEach((pos, t) => {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = (pos / scale) * Math.pow(theta, (-2 * i) / headDim);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        const a = x[base + i]!;
        const b = x[base + i + half]!;
        out[base + i] = a * c - b * s;
        out[base + i + half] = b * c + a * s;
      }
    }
  });
  return out;
}

// The quantization of q8 and q4 (the packing math; where each quant and scale goes is the formats' layout,
// kernels/dtype-formats.ts, whose packers call these per row).
//
// Quantization is group-wise: a group is QGROUP = 32 consecutive weights of one row, rounded to nearest
// with the group's f16 scale (and for q4 its f16 min) rounded *outward* before the quants are computed
// from them, so that no weight is clipped and every weight dequantizes within half a step:
//
//   q8: d = amax / 127 rounded up to an f16;               q = round(w / d)        in [-127, 127]; w' = d q
//   q4: m = min rounded down to an f16;
//       d = (max - m) / 15 rounded up to an f16;           q = round((w - m) / d)  in [0, 15];     w' = d q + m
//
//   |w - w'| <= d / 2 for every weight (up to the f32 rounding of d q + m).
//
// q4 keeps a per-group min (as GGUF Q4_1 does) rather than a symmetric scale: on Gaussian groups of 32
// its RMS error is 9% below the best symmetric 4-bit (Q4_0's signed-absmax / -8, which also clips the
// other side) and 21% below unclipped absmax / 7, for 0.5 bit more per weight. GGUF Q4_0 (d, q - 8) and
// Q8_0 (d, q) blocks map onto q4 (d, m = -8 d) and q8 without loss.

import { f16Values, f32ToF16 } from './half.ts';

/** Weights per quantization group (one scale, and for q4 one min, each). */
export const QGROUP = 32;

/** In place: the nearest-even f16 bits[i] of vals[i] become the smallest f16 >= vals[i] (vals[i] >= 0). */
function roundUp(bits: Uint16Array, vals: Float32Array, G: number): void {
  const half = f16Values();
  for (let g = 0; g < G; g++) if (half[bits[g]!]! < vals[g]!) bits[g] = bits[g]! + 1;
}

/** In place: the nearest-even f16 bits[i] of vals[i] become the largest f16 <= vals[i]. */
function roundDown(bits: Uint16Array, vals: Float32Array, G: number): void {
  const half = f16Values();
  for (let g = 0; g < G; g++) {
    if (half[bits[g]!]! > vals[g]!) {
      const h = bits[g]!;
      // Below zero a larger magnitude is more negative; +0 steps to the smallest negative subnormal.
      bits[g] = h === 0 ? 0x8001 : h & 0x8000 ? h + 1 : h - 1;
    }
  }
}

const F16_MAX = 65504;
const clampF16 = (v: number): number => (v > F16_MAX ? F16_MAX : v < -F16_MAX ? -F16_MAX : v);

/** f16 bits of the q8 scales of the G groups of data starting at `off` (scratch d: G floats). */
export function q8Scales(data: Float32Array, off: number, G: number, d: Float32Array, dBits: Uint16Array): void {
  for (let g = 0; g < G; g++) {
    let amax = 0;
    for (let i = off + g * QGROUP, e = i + QGROUP; i < e; i++) {
      const a = Math.abs(data[i]!);
      if (a > amax) amax = a;
    }
    d[g] = clampF16(amax / 127);
  }
  f32ToF16(d.subarray(0, G), dBits);
  roundUp(dBits, d, G);
}

/** f16 bits of the q4 (scale, min) of the G groups of data starting at `off` (scratch d, m, hi: G floats). */
export function q4Params(
  data: Float32Array, off: number, G: number, d: Float32Array, dBits: Uint16Array, m: Float32Array, mBits: Uint16Array, hi: Float32Array,
): void {
  const half = f16Values();
  for (let g = 0; g < G; g++) {
    let lo = Infinity, h = -Infinity;
    for (let i = off + g * QGROUP, e = i + QGROUP; i < e; i++) {
      const v = data[i]!;
      if (v < lo) lo = v;
      if (v > h) h = v;
    }
    m[g] = clampF16(lo);
    hi[g] = clampF16(h);
  }
  f32ToF16(m.subarray(0, G), mBits);
  roundDown(mBits, m, G);
  for (let g = 0; g < G; g++) d[g] = (hi[g]! - half[mBits[g]!]!) / 15;
  f32ToF16(d.subarray(0, G), dBits);
  roundUp(dBits, d, G);
}

/** The q4 quant of v: round((v - m) / d) with inv = 1 / d; in [0, 15] by construction, clamped against f32 rounding. */
export function q4Quant(v: number, m: number, inv: number): number {
  const q = ((v - m) * inv + 0.5) | 0;
  return q > 15 ? 15 : q;
}

/**
 * quantize-then-dequantize of q8 or q4 groups laid along `data` (a matrix with K % 32 == 0 flattened, or any
 * length % 32 == 0): the same values as unpack(pack(data)) without building the layout.
 */
export function quantizeRoundTrip(fmt: 'q8' | 'q4', data: Float32Array): Float32Array {
  if (data.length % QGROUP !== 0) throw new Error(`${fmt}: ${data.length} values is not a whole number of ${QGROUP}-groups`);
  const out = new Float32Array(data.length);
  const half = f16Values();
  const G = 4096; // groups per pass
  const d = new Float32Array(G), dBits = new Uint16Array(G);
  const m = new Float32Array(G), mBits = new Uint16Array(G), hi = new Float32Array(G);
  for (let off = 0; off < data.length; off += G * QGROUP) {
    const n = Math.min(G, (data.length - off) / QGROUP);
    if (fmt === 'q8') q8Scales(data, off, n, d, dBits);
    else q4Params(data, off, n, d, dBits, m, mBits, hi);
    for (let g = 0; g < n; g++) {
      const dg = half[dBits[g]!]!;
      const inv = dg > 0 ? 1 / dg : 0;
      const mg = fmt === 'q4' ? half[mBits[g]!]! : 0;
      for (let i = off + g * QGROUP, e = i + QGROUP; i < e; i++) {
        out[i] = fmt === 'q8' ? Math.fround(dg * Math.round(data[i]! * inv)) : Math.fround(Math.fround(dg * q4Quant(data[i]!, mg, inv)) + mg);
      }
    }
  }
  return out;
}

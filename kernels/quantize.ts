// Host-side packing of the octet-interleaved weight formats (f16, q8, q4; layouts documented in
// weight-formats.ts) and the exact inverses, which are the CPU references of what the kernels read.
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

import { f16ToF32, f32ToF16 } from './half.ts';

export const QGROUP = 32;
/** Rows per octet: the unit of row interleaving (and of row chunks) of f16, q8 and q4. */
export const OCTET = 8;

/** K padded to whole blocks (k per block: f16 32, q8 256, q4 128). */
export const paddedK = (K: number, kBlock: number): number => Math.ceil(K / kBlock) * kBlock;

export const F16_KBLOCK = 32;
export const Q8_KBLOCK = 256;
export const Q4_KBLOCK = 128;
/** vec4<u32> per row per block. */
export const F16_BLOCK_VEC4 = 4;
export const Q8_BLOCK_VEC4 = 17; // 16 of quants (8 groups x 32 bytes), 1 of scales (8 x f16)
export const Q4_BLOCK_VEC4 = 5; // 4 of quants (4 groups x 16 bytes), 1 of (scale, min) words

export const f16RowBytes = (K: number): number => paddedK(K, F16_KBLOCK) * 2;
export const q8RowBytes = (K: number): number => (paddedK(K, Q8_KBLOCK) / Q8_KBLOCK) * Q8_BLOCK_VEC4 * 16;
export const q4RowBytes = (K: number): number => (paddedK(K, Q4_KBLOCK) / Q4_KBLOCK) * Q4_BLOCK_VEC4 * 16;

/** Bytes of a chunk of `rows` rows: whole octets (the missing rows of the last one are zeros). */
export const octetBytes = (rowBytes: number, rows: number): number => Math.ceil(rows / OCTET) * OCTET * rowBytes;

function checkShape(fmt: string, data: Float32Array, rows: number, K: number, group: number): void {
  if (K % group !== 0) throw new Error(`${fmt}: K = ${K} is not a multiple of ${group}`);
  if (data.length !== rows * K) throw new Error(`${fmt}: ${data.length} values for a (${rows}, ${K}) matrix`);
}

let table: Float32Array | null = null;
/** All 65536 f16 bit patterns as f32 (256 KiB, built on first use). */
function f16Table(): Float32Array {
  if (!table) table = f16ToF32(Uint16Array.from({ length: 65536 }, (_, i) => i));
  return table;
}

/** In place: the nearest-even f16 bits[i] of vals[i] become the smallest f16 >= vals[i] (vals[i] >= 0). */
function roundUp(bits: Uint16Array, vals: Float32Array, G: number): void {
  const half = f16Table();
  for (let g = 0; g < G; g++) if (half[bits[g]!]! < vals[g]!) bits[g] = bits[g]! + 1;
}

/** In place: the nearest-even f16 bits[i] of vals[i] become the largest f16 <= vals[i]. */
function roundDown(bits: Uint16Array, vals: Float32Array, G: number): void {
  const half = f16Table();
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

// ---- f16 ---------------------------------------------------------------------------------------------

/** vec4 index of 8-weight chunk c of row `row` (f16). */
const f16Vec4 = (row: number, c: number, Kp: number): number =>
  (row >> 3) * Kp + (c >> 2) * 32 + (c & 3) * 8 + (row & 7);

export function packF16(data: Float32Array, rows: number, K: number): Uint8Array {
  checkShape('f16', data, rows, K, 4);
  const Kp = paddedK(K, F16_KBLOCK);
  const out = new Uint16Array(octetBytes(f16RowBytes(K), rows) / 2);
  const h = f32ToF16(data);
  for (let row = 0; row < rows; row++) {
    for (let k = 0; k < K; k += 8) {
      const o = f16Vec4(row, k >> 3, Kp) * 8;
      const n = Math.min(8, K - k);
      for (let i = 0; i < n; i++) out[o + i] = h[row * K + k + i]!;
    }
  }
  return new Uint8Array(out.buffer);
}

export function unpackF16(bytes: Uint8Array, rows: number, K: number): Float32Array {
  const Kp = paddedK(K, F16_KBLOCK);
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const half = f16Table();
  const out = new Float32Array(rows * K);
  for (let row = 0; row < rows; row++) {
    for (let k = 0; k < K; k++) out[row * K + k] = half[h[f16Vec4(row, k >> 3, Kp) * 8 + (k & 7)]!]!;
  }
  return out;
}

// ---- q8 ----------------------------------------------------------------------------------------------

/** f16 bits of the q8 scales of the G groups of data starting at `off` (scratch d: G floats). */
function q8Scales(data: Float32Array, off: number, G: number, d: Float32Array, dBits: Uint16Array): void {
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

/** Packs a (rows, K) f32 matrix as q8 octets (layout in weight-formats.ts). */
export function packQ8(data: Float32Array, rows: number, K: number): Uint8Array {
  checkShape('q8', data, rows, K, QGROUP);
  const G = K / QGROUP;
  const octetVec4 = (paddedK(K, Q8_KBLOCK) / Q8_KBLOCK) * Q8_BLOCK_VEC4 * OCTET;
  const out = new Uint8Array(octetBytes(q8RowBytes(K), rows));
  const q = new Int8Array(out.buffer);
  const h16 = new Uint16Array(out.buffer);
  const half = f16Table();
  const d = new Float32Array(G), dBits = new Uint16Array(G);
  for (let row = 0; row < rows; row++) {
    const src = row * K;
    q8Scales(data, src, G, d, dBits);
    const oct = (row >> 3) * octetVec4, r = row & 7;
    for (let g = 0; g < G; g++) {
      const blk = oct + (g >> 3) * Q8_BLOCK_VEC4 * OCTET;
      h16[(blk + 128 + r) * 8 + (g & 7)] = dBits[g]!;
      const dg = half[dBits[g]!]!;
      const inv = dg > 0 ? 1 / dg : 0;
      const o0 = (blk + (g & 7) * 16 + r) * 16; // bytes 0..15 of the group; 16..31 are 8 vec4 further
      for (let j = 0, i = src + g * QGROUP; j < QGROUP; j++, i++) {
        // |w| / d <= 127 by construction (d rounded up), so no clamp is needed.
        q[o0 + (j & 15) + (j >> 4) * 128] = Math.round(data[i]! * inv);
      }
    }
  }
  return out;
}

/** q8 octets -> (rows, K) f32: w' = d q, the value the kernels multiply by. */
export function unpackQ8(bytes: Uint8Array, rows: number, K: number): Float32Array {
  const octetVec4 = (paddedK(K, Q8_KBLOCK) / Q8_KBLOCK) * Q8_BLOCK_VEC4 * OCTET;
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const half = f16Table();
  const out = new Float32Array(rows * K);
  for (let row = 0; row < rows; row++) {
    const oct = (row >> 3) * octetVec4, r = row & 7;
    for (let g = 0; g < K / QGROUP; g++) {
      const blk = oct + (g >> 3) * Q8_BLOCK_VEC4 * OCTET;
      const d = half[h16[(blk + 128 + r) * 8 + (g & 7)]!]!;
      const o0 = (blk + (g & 7) * 16 + r) * 16;
      for (let j = 0; j < QGROUP; j++) out[row * K + g * QGROUP + j] = Math.fround(d * q[o0 + (j & 15) + (j >> 4) * 128]!);
    }
  }
  return out;
}

// ---- q4 ----------------------------------------------------------------------------------------------

/** f16 bits of the q4 (scale, min) of the G groups of data starting at `off` (scratch d, m, hi: G floats). */
function q4Params(
  data: Float32Array, off: number, G: number, d: Float32Array, dBits: Uint16Array, m: Float32Array, mBits: Uint16Array, hi: Float32Array,
): void {
  const half = f16Table();
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
function q4Quant(v: number, m: number, inv: number): number {
  const q = ((v - m) * inv + 0.5) | 0;
  return q > 15 ? 15 : q;
}

/** Packs a (rows, K) f32 matrix as q4 octets (layout in weight-formats.ts). */
export function packQ4(data: Float32Array, rows: number, K: number): Uint8Array {
  checkShape('q4', data, rows, K, QGROUP);
  const G = K / QGROUP;
  const octetVec4 = (paddedK(K, Q4_KBLOCK) / Q4_KBLOCK) * Q4_BLOCK_VEC4 * OCTET;
  const out = new Uint8Array(octetBytes(q4RowBytes(K), rows));
  const u32 = new Uint32Array(out.buffer);
  const half = f16Table();
  const d = new Float32Array(G), dBits = new Uint16Array(G);
  const m = new Float32Array(G), mBits = new Uint16Array(G);
  const hi = new Float32Array(G);
  for (let row = 0; row < rows; row++) {
    const src = row * K;
    q4Params(data, src, G, d, dBits, m, mBits, hi);
    const oct = (row >> 3) * octetVec4, r = row & 7;
    for (let g = 0; g < G; g++) {
      const blk = oct + (g >> 2) * Q4_BLOCK_VEC4 * OCTET;
      u32[(blk + 32 + r) * 4 + (g & 3)] = (dBits[g]! | (mBits[g]! << 16)) >>> 0;
      const mg = half[mBits[g]!]!, dg = half[dBits[g]!]!;
      const inv = dg > 0 ? 1 / dg : 0;
      // Byte b of the group's 16: weight b in the low nibble, weight b + 16 in the high nibble.
      for (let b = 0, i = src + g * QGROUP, o = (blk + (g & 3) * 8 + r) * 16; b < 16; b++, i++, o++) {
        out[o] = q4Quant(data[i]!, mg, inv) | (q4Quant(data[i + 16]!, mg, inv) << 4);
      }
    }
  }
  return out;
}

/** q4 octets -> (rows, K) f32: w' = d q + m, the value the kernels multiply by. */
export function unpackQ4(bytes: Uint8Array, rows: number, K: number): Float32Array {
  const octetVec4 = (paddedK(K, Q4_KBLOCK) / Q4_KBLOCK) * Q4_BLOCK_VEC4 * OCTET;
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const half = f16Table();
  const out = new Float32Array(rows * K);
  for (let row = 0; row < rows; row++) {
    const oct = (row >> 3) * octetVec4, r = row & 7;
    for (let g = 0; g < K / QGROUP; g++) {
      const blk = oct + (g >> 2) * Q4_BLOCK_VEC4 * OCTET;
      const sm = u32[(blk + 32 + r) * 4 + (g & 3)]!;
      const dg = half[sm & 0xffff]!, mg = half[sm >>> 16]!;
      const o = row * K + g * QGROUP, qb = (blk + (g & 3) * 8 + r) * 16;
      for (let b = 0; b < 16; b++) {
        const byte = bytes[qb + b]!;
        out[o + b] = Math.fround(Math.fround(dg * (byte & 15)) + mg);
        out[o + b + 16] = Math.fround(Math.fround(dg * (byte >> 4)) + mg);
      }
    }
  }
  return out;
}

/**
 * quantize-then-dequantize of q8 or q4 groups laid along `data` (a matrix with K % 32 == 0 flattened, or any
 * length % 32 == 0): the same values as unpack(pack(data)) without building the layout.
 */
export function quantizeRoundTrip(fmt: 'q8' | 'q4', data: Float32Array): Float32Array {
  if (data.length % QGROUP !== 0) throw new Error(`${fmt}: ${data.length} values is not a whole number of ${QGROUP}-groups`);
  const out = new Float32Array(data.length);
  const half = f16Table();
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

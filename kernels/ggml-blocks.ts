// ggml's block-quantized tensor types (ggml-common.h's block structs), kept on the GPU exactly as a GGUF
// file stores them: a (rows, K) matrix is rows x (K / BS) blocks of TS bytes, row-major, the file's bytes
// unchanged (a row chunk is a byte range of the tensor). One record per type: its constants, the CPU
// reference decoder (ggml-quants.c's dequantize_row_*, every f32 operation in the same order, so it
// matches the `gguf` Python package's gguf.quants.dequantize bit for bit), and the WGSL that decodes a block
// in registers with the same operations: `grp` (what 32 consecutive weights share: scales and mins, multiplied
// out once) and `deqg` (4 weights from their quants and grp's values); deq4 = deqg(grp) for random access.
//
// The GPU binding is `w: array<u32>` over the raw bytes; blocks of 18, 22, 34, 110 or 210 bytes are not
// 4-byte aligned, so reads go through wU8 / wU16 / wU32 (byte offsets; wU32 of an unaligned offset joins
// two words). Layouts (offsets in bytes from the block's start; "f16" = IEEE half, "i8" = two's complement):
//
//   Q4_0  BS 32  TS 18   f16 d | u8 qs[16]                       w[j] = d * ((qs[j%16] >> 4*(j/16) & 15) - 8)
//   Q4_1  BS 32  TS 20   f16 d | f16 m | u8 qs[16]               w[j] = d * (qs nibble) + m
//   Q5_0  BS 32  TS 22   f16 d | u32 qh | u8 qs[16]              q = nibble | (qh >> j & 1) << 4; w = d * (q - 16)
//   Q5_1  BS 32  TS 24   f16 d | f16 m | u32 qh | u8 qs[16]      w = d * q + m
//   Q8_0  BS 32  TS 34   f16 d | i8 qs[32]                       w = qs[j] * d
//   Q2_K  BS 256 TS 84   u8 scales[16] | u8 qs[64] | f16 d | f16 dmin
//                        j = 128 n + 32 s + l: q = qs[32 n + l] >> 2 s & 3, sc = scales[j / 16]
//                        w = (d * (sc & 15)) * q - dmin * (sc >> 4)
//   Q3_K  BS 256 TS 110  u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d
//                        q = (qs[32 n + l] >> 2 s & 3) - (hmask[l] >> (4 n + s) & 1 ? 0 : 4)
//                        6-bit sc of group g = j / 16: low 4 bits scales[g % 8] >> 4 (g / 8), high 2 bits
//                        scales[8 + g % 4] >> 2 (g / 4); w = (d * (sc - 32)) * q
//   Q4_K  BS 256 TS 144  f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//                        j = 64 c + 32 h + l: q = qs[32 c + l] >> 4 h & 15; (sc, m) = 6-bit pair 2 c + h
//                        (get_scale_min_k4); w = (d * sc) * q - dmin * m
//   Q5_K  BS 256 TS 176  f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//                        as Q4_K with q += 16 * (qh[l] >> (2 c + h) & 1)
//   Q6_K  BS 256 TS 210  u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//                        j = 128 n + 32 p + l: q = (ql[64 n + 32 (p % 2) + l] >> 4 (p / 2) & 15)
//                        | (qh[32 n + l] >> 2 p & 3) << 4; w = (d * scales[8 n + 2 p + l / 16]) * (q - 32)
//   BF16 BS 4    TS 8    four bfloat16 (the top halves of f32s): a pseudo-block, so that deq4 is uniform

import { f16Values } from './half.ts';

export type GgmlBlockType = 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'BF16';

export interface GgmlBlockFormat {
  name: GgmlBlockType;
  BS: number; // weights per block
  TS: number; // bytes per block
  f16At: number[]; // byte offsets of the block's f16 fields (scales, mins): what random blocks must keep finite
  /** CPU reference: decodes the block at byte `o` of `b` into y[yo .. yo + BS). */
  decode(b: Uint8Array, o: number, y: Float32Array, yo: number): void;
  /**
   * WGSL body of `fn grp(o: u32, i: u32) -> vec4<f32>`: what the 32 weights 32 (i / 32) .. of the block at byte o
   * share (their scales and mins, already multiplied out: loaded once per 32 weights by the matrix kernels).
   */
  grp: string;
  /** WGSL body of `fn deqg(o: u32, i: u32, g: vec4<f32>) -> vec4<f32>`: weights i .. i + 3 (i % 4 == 0), g = grp(o, i). */
  deqg: string;
}

const fr = Math.fround;
const f16 = (b: Uint8Array, o: number): number => f16Values()[b[o]! | (b[o + 1]! << 8)]!;
const i8 = (v: number): number => (v << 24) >> 24;
const u32le = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** Q4_K / Q5_K: the 6-bit (scale, min) pair s (0..7) from the 12 bytes at `q` (get_scale_min_k4). */
function scaleMinK4(b: Uint8Array, q: number, s: number): [number, number] {
  if (s < 4) return [b[q + s]! & 63, b[q + s + 4]! & 63];
  return [(b[q + s + 4]! & 15) | ((b[q + s - 4]! >> 6) << 4), (b[q + s + 4]! >> 4) | ((b[q + s]! >> 6) << 4)];
}

/** WGSL: (sc, m) of pair s for the Q4_K / Q5_K scales at byte q. */
const SCALE_MIN_K4_WGSL = /* wgsl */ `
  let s3 = bytes4(w[q >> 2u]); let s7 = bytes4(w[(q >> 2u) + 1u]); let s11 = bytes4(w[(q >> 2u) + 2u]); // q % 4 == 0
  let lo = s % 4u;
  let sc = select((s11[lo] & 15u) | ((s3[lo] >> 6u) << 4u), s3[lo] & 63u, s < 4u);
  let mn = select((s11[lo] >> 4u) | ((s7[lo] >> 6u) << 4u), s7[lo] & 63u, s < 4u);`;

/** The 4 bytes at byte offset o of w as vec4<u32> (byte 0 first). */
const NIB = (expr: string, shift: string): string => `((bytes4(${expr}) >> vec4<u32>(${shift})) & vec4<u32>(15u))`;

/**
 * Q4_0, Q4_1, Q5_0, Q5_1 (ggml's first quants): 32 weights, an f16 scale d (and for _1 an f16 min m), for Q5
 * a u32 qh of fifth bits (bit j: weight j), then 16 bytes of nibbles (byte j: weight j low, weight j + 16 high).
 * q = nibble | fifth bit << 4; w = d * (q - offset) (_0: offset 8 or 16, the middle of q's range) or d * q + m.
 */
function firstQuant(name: 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1', withMin: boolean, fifthBit: boolean): GgmlBlockFormat {
  const qhAt = withMin ? 4 : 2;
  const qsAt = qhAt + (fifthBit ? 4 : 0);
  const TS = qsAt + 16;
  const offset = fifthBit ? 16 : 8;
  // The u32 at a byte offset: a plain load where every block is 4-byte aligned (TS % 4 == 0).
  const u32At = (off: string): string => (TS % 4 === 0 ? `w[(${off}) >> 2u]` : `wU32(${off})`);
  return {
    name, BS: 32, TS, f16At: withMin ? [0, 2] : [0],
    decode(b, o, y, yo) {
      const d = f16(b, o), m = withMin ? f16(b, o + 2) : 0, qh = fifthBit ? u32le(b, o + qhAt) : 0;
      for (let j = 0; j < 16; j++) {
        const q = b[o + qsAt + j]!;
        const lo = (q & 15) | (((qh >>> j) & 1) << 4), hi = (q >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        y[yo + j] = withMin ? fr(fr(d * lo) + m) : fr(d * (lo - offset));
        y[yo + j + 16] = withMin ? fr(fr(d * hi) + m) : fr(d * (hi - offset));
      }
    },
    grp: withMin ? `
  return vec4<f32>(wF16(o), wF16(o + 2u), 0.0, 0.0);` : `
  return vec4<f32>(wF16(o), 0.0, 0.0, 0.0);`,
    deqg: (fifthBit ? `
  let hb = (vec4<u32>(${u32At(`o + ${qhAt}u`)}) >> (vec4<u32>(i) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u);` : '') + `
  let q = ${NIB(u32At(`o + ${qsAt}u + i % 16u`), '4u * (i / 16u)')}${fifthBit ? ' | (hb << vec4<u32>(4u))' : ''};` + (withMin ? `
  return g.x * vec4<f32>(q) + vec4<f32>(g.y);` : `
  return g.x * (vec4<f32>(q) - vec4<f32>(${offset}.0));`),
  };
}

const Q4_0 = firstQuant('Q4_0', false, false);
const Q4_1 = firstQuant('Q4_1', true, false);
const Q5_0 = firstQuant('Q5_0', false, true);
const Q5_1 = firstQuant('Q5_1', true, true);

const Q8_0: GgmlBlockFormat = {
  name: 'Q8_0', BS: 32, TS: 34, f16At: [0],
  decode(b, o, y, yo) {
    const d = f16(b, o);
    for (let j = 0; j < 32; j++) y[yo + j] = fr(i8(b[o + 2 + j]!) * d);
  },
  grp: `
  return vec4<f32>(wF16(o), 0.0, 0.0, 0.0);`,
  deqg: `
  let q = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(wU32(o + 2u + i)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
  return q * g.x;`,
};

const Q2_K: GgmlBlockFormat = {
  name: 'Q2_K', BS: 256, TS: 84, f16At: [80, 82],
  decode(b, o, y, yo) {
    const d = f16(b, o + 80), dmin = f16(b, o + 82);
    for (let j = 0; j < 256; j++) {
      const n = j >> 7, s = (j >> 5) & 3, l = j & 31;
      const sc = b[o + (j >> 4)]!;
      const q = (b[o + 16 + 32 * n + l]! >> (2 * s)) & 3;
      y[yo + j] = fr(fr(fr(d * (sc & 15)) * q) - fr(dmin * (sc >> 4)));
    }
  },
  grp: `
  let s = 2u * (i / 32u); // the two 16-weight groups
  let d = wF16(o + 80u); let dmin = wF16(o + 82u);
  let a = wU8(o + s); let b = wU8(o + s + 1u);
  return vec4<f32>(d * f32(a & 15u), dmin * f32(a >> 4u), d * f32(b & 15u), dmin * f32(b >> 4u));`,
  deqg: `
  let n = i / 128u; let s = (i / 32u) % 4u; let l = i % 32u;
  let q = (bytes4(w[(o + 16u + 32u * n + l) >> 2u]) >> vec4<u32>(2u * s)) & vec4<u32>(3u);
  let h = (i / 16u) % 2u == 1u;
  return select(g.x, g.z, h) * vec4<f32>(q) - vec4<f32>(select(g.y, g.w, h));`,
};

const Q3_K: GgmlBlockFormat = {
  name: 'Q3_K', BS: 256, TS: 110, f16At: [108],
  decode(b, o, y, yo) {
    const d = f16(b, o + 108);
    for (let j = 0; j < 256; j++) {
      const n = j >> 7, s = (j >> 5) & 3, l = j & 31, g = j >> 4;
      const sc = (((b[o + 96 + (g % 8)]! >> (4 * (g >> 3))) & 15) | (((b[o + 104 + (g % 4)]! >> (2 * (g >> 2))) & 3) << 4)) - 32;
      const q = ((b[o + 32 + 32 * n + l]! >> (2 * s)) & 3) - ((b[o + l]! >> (4 * n + s)) & 1 ? 0 : 4);
      y[yo + j] = fr(fr(d * sc) * q);
    }
  },
  grp: `
  let d = wF16(o + 108u);
  var out = vec4<f32>(0.0);
  for (var k = 0u; k < 2u; k++) {
    let gi = 2u * (i / 32u) + k; // 16-weight group
    let sc = ((wU8(o + 96u + gi % 8u) >> (4u * (gi / 8u))) & 15u) | (((wU8(o + 104u + gi % 4u) >> (2u * (gi / 4u))) & 3u) << 4u);
    out[k] = d * f32(i32(sc) - 32);
  }
  return out;`,
  deqg: `
  let n = i / 128u; let s = (i / 32u) % 4u; let l = i % 32u;
  let ql = (bytes4(wU32(o + 32u + 32u * n + l)) >> vec4<u32>(2u * s)) & vec4<u32>(3u);
  let hm = (bytes4(wU32(o + l)) >> vec4<u32>(4u * n + s)) & vec4<u32>(1u);
  return select(g.x, g.y, (i / 16u) % 2u == 1u) * (vec4<f32>(ql) - 4.0 * vec4<f32>(vec4<u32>(1u) - hm));`,
};

/**
 * Q4_K and Q5_K: 256 weights in 8 groups of 32 with 6-bit (scale, min) pairs; Q5_K adds a fifth bit per weight
 * (qh[l] bit g for weight 32 g + l) before the nibbles.
 */
function kQuant45(name: 'Q4_K' | 'Q5_K', fifthBit: boolean): GgmlBlockFormat {
  const qsAt = fifthBit ? 48 : 16;
  return {
    name, BS: 256, TS: qsAt + 128, f16At: [0, 2],
    decode(b, o, y, yo) {
      const d = f16(b, o), dmin = f16(b, o + 2);
      for (let g = 0; g < 8; g++) {
        const c = g >> 1, h = g & 1;
        const [sc, m] = scaleMinK4(b, o + 4, g);
        const dl = fr(d * sc), ml = fr(dmin * m);
        for (let l = 0; l < 32; l++) {
          const q = ((b[o + qsAt + 32 * c + l]! >> (4 * h)) & 15) + (fifthBit ? 16 * ((b[o + 16 + l]! >> g) & 1) : 0);
          y[yo + 32 * g + l] = fr(fr(dl * q) - ml);
        }
      }
    },
    grp: `
  let s = i / 32u; let q = o + 4u;${SCALE_MIN_K4_WGSL}
  return vec4<f32>(wF16(o) * f32(sc), wF16(o + 2u) * f32(mn), 0.0, 0.0);`,
    deqg: `
  let c = i / 64u; let h = (i / 32u) % 2u; let l = i % 32u;` + (fifthBit ? `
  let hb = (bytes4(w[(o + 16u + l) >> 2u]) >> vec4<u32>(i / 32u)) & vec4<u32>(1u);` : '') + `
  let v = ${NIB(`w[(o + ${qsAt}u + 32u * c + l) >> 2u]`, '4u * h')}${fifthBit ? ' | (hb << vec4<u32>(4u))' : ''};
  return g.x * vec4<f32>(v) - vec4<f32>(g.y);`,
  };
}

const Q4_K = kQuant45('Q4_K', false);
const Q5_K = kQuant45('Q5_K', true);

const Q6_K: GgmlBlockFormat = {
  name: 'Q6_K', BS: 256, TS: 210, f16At: [208],
  decode(b, o, y, yo) {
    const d = f16(b, o + 208);
    for (let j = 0; j < 256; j++) {
      const n = j >> 7, p = (j >> 5) & 3, l = j & 31;
      const lo = (b[o + 64 * n + 32 * (p & 1) + l]! >> (4 * (p >> 1))) & 15;
      const hi = (b[o + 128 + 32 * n + l]! >> (2 * p)) & 3;
      const sc = i8(b[o + 192 + 8 * n + 2 * p + (l >> 4)]!);
      y[yo + j] = fr(fr(d * sc) * ((lo | (hi << 4)) - 32));
    }
  },
  grp: `
  let d = wF16(o + 208u);
  let s = o + 192u + 2u * (i / 32u);
  return vec4<f32>(d * f32(bitcast<i32>(wU8(s) << 24u) >> 24u), d * f32(bitcast<i32>(wU8(s + 1u) << 24u) >> 24u), 0.0, 0.0);`,
  deqg: `
  let n = i / 128u; let p = (i / 32u) % 4u; let l = i % 32u;
  let lo = ${NIB('wU32(o + 64u * n + 32u * (p % 2u) + l)', '4u * (p / 2u)')};
  let hi = (bytes4(wU32(o + 128u + 32u * n + l)) >> vec4<u32>(2u * p)) & vec4<u32>(3u);
  return select(g.x, g.y, (i / 16u) % 2u == 1u) * (vec4<f32>(lo | (hi << vec4<u32>(4u))) - vec4<f32>(32.0));`,
};

const bfBits = new Uint32Array(1), bfF32 = new Float32Array(bfBits.buffer);
const BF16: GgmlBlockFormat = {
  name: 'BF16', BS: 4, TS: 8, f16At: [0, 2, 4, 6],
  decode(b, o, y, yo) {
    for (let j = 0; j < 4; j++) {
      bfBits[0] = (b[o + 2 * j]! | (b[o + 2 * j + 1]! << 8)) << 16;
      y[yo + j] = bfF32[0]!;
    }
  },
  grp: `
  return vec4<f32>(0.0);`,
  deqg: `
  let a = w[o >> 2u]; let c = w[(o >> 2u) + 1u]; // o % 8 == 0
  return vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(c << 16u), bitcast<f32>(c & 0xffff0000u));`,
};

export const GGML_BLOCKS: Record<GgmlBlockType, GgmlBlockFormat> = { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 };

export const isGgmlBlockType = (t: string): t is GgmlBlockType => t in GGML_BLOCKS;

/** CPU reference: `n` weights (a whole number of blocks) of type t stored at b[0..] as f32. */
export function decodeBlocks(t: GgmlBlockFormat, b: Uint8Array, n: number, y = new Float32Array(n)): Float32Array {
  if (n % t.BS !== 0) throw new Error(`${t.name}: ${n} values is not a whole number of ${t.BS}-value blocks`);
  if (b.byteLength < (n / t.BS) * t.TS) throw new Error(`${t.name}: ${b.byteLength} bytes hold fewer than ${n} values`);
  for (let k = 0, o = 0; k < n; k += t.BS, o += t.TS) t.decode(b, o, y, k);
  return y;
}

/**
 * WGSL of a type's storage binding `w` (raw bytes as u32 words), the byte readers, `deq4`, and `loadW4(row, k4, K4)`
 * (weights 4 k4 .. 4 k4 + 3 of a row of K = 4 K4 weights) for the tiled matmul and the embedding gather.
 */
export function ggmlBlockWgsl(t: GgmlBlockFormat, binding: number): string {
  return /* wgsl */ `
@group(0) @binding(${binding}) var<storage, read> w: array<u32>; // ${t.name} blocks of ${t.BS} weights in ${t.TS} bytes, rows contiguous
${ggmlBlockFns(t)}
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  let k = 4u * k4;
  return deq4(row * (K4 * 4u / ${t.BS}u) * ${t.TS}u + (k / ${t.BS}u) * ${t.TS}u, k % ${t.BS}u);
}`;
}

/** The byte readers over `w`, grp, deqg and deq4 (shared by ggmlBlockWgsl and the matrix-vector kernels). */
export function ggmlBlockFns(t: GgmlBlockFormat): string {
  return /* wgsl */ `
fn wU8(o: u32) -> u32 { return (w[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu; }
fn wF16(o: u32) -> f32 { return unpack2x16float(w[o >> 2u] >> ((o & 2u) * 8u)).x; } // o even
fn wU32(o: u32) -> u32 { // little-endian u32 at any byte offset (branch-free: measured faster on lavapipe)
  let a = o >> 2u;
  let s = (o & 3u) * 8u;
  let lo = w[a];
  return select((lo >> s) | (w[a + 1u] << ((32u - s) & 31u)), lo, s == 0u);
}
fn bytes4(u: u32) -> vec4<u32> { return (vec4<u32>(u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu); }
fn grp(o: u32, i: u32) -> vec4<f32> {${t.grp}
}
fn deqg(o: u32, i: u32, g: vec4<f32>) -> vec4<f32> {${t.deqg}
}
fn deq4(o: u32, i: u32) -> vec4<f32> { return deqg(o, i, grp(o, i)); }`;
}

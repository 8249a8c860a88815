// The formats any model can be converted to (`--dtype`): f32, f16, q8 and q4, one record each (FormatSpec,
// kernels/format-spec.ts) holding the format's layout constants, its host packer and the exact inverse (the
// CPU reference of what the kernels read), the WGSL of a random-access read, `loadW4(row, k4, K4) -> vec4<f32>`
// = W[row, 4*k4 .. 4*k4+3] (K4 = K / 4, used by the tiled matmul and the embedding gather), and the
// matrix-vector kernels' block code (kernels/matmul.ts), which reads whole blocks instead. Matrices are
// (rows, K) like nn.Linear's (out_features, in_features).
//
// f32: plain row-major, one vec4<f32> = 4 weights. rowBytes = 4 K.
//
// f16, q8, q4 are "octet-interleaved": rows are grouped into octets of 8 (a buffer holds whole octets;
// the missing rows of the last one are zeros), and an octet is a sequence of blocks, each covering
// KB consecutive k for its 8 rows. K is padded with zero weights to a whole number of blocks (Kp). Inside a
// block the 16-byte vec4<u32> of the 8 rows alternate: the i-th vec4 of row r is at vec4 index 8 i + r.
// So the 8 rows' data for a k range is one contiguous 128-byte run, and an octet is one sequential
// stream: a matrix-vector kernel with one row per invocation reads it with aligned vec4 loads that are
// contiguous across 8 neighbouring invocations (coalesced on GPUs). On lavapipe, whose workgroups run as
// 8-lane SIMD on a CPU thread, it keeps a workgroup on few streams however many rows it takes (a read
// test with 8 streams per 8-lane workgroup ran 3.7x faster than with 64); with the one row per lane the
// kernel uses there now, it measured the same as row-major.
// Vec4 index of the start of octet o: o * Kp / KB * (vec4 per row per block) * 8.
//
// f16: KB = 32, 4 vec4 per row per block. Vec4 c (0..3) of row r in block b holds weights
//      k = 32 b + 8 c .. 8 c + 7 as IEEE halves, weight 2t in the low and 2t + 1 in the high 16 bits of u32 t
//      (unpack2x16float is core WGSL, so no shader-f16 is needed). rowBytes = 2 Kp (Kp = K rounded up to 32).
//
// q8: KB = 256 = 8 groups of 32 (group g = k / 32), 17 vec4 per row per block:
//      vec4 2 j and 2 j + 1 (j = 0..7) of row r: the 32 int8 quants (two's complement) of group 8 b + j,
//        byte i of the 32 = weight 32 j + i, byte 4 t + s in bits 8 s .. 8 s + 7 of u32 t;
//      vec4 16 of row r: the 8 groups' f16 scales d, group 2 t in the low and 2 t + 1 in the high half of u32 t.
//      Weight = d * q. rowBytes = 17/16 Kp = 8.5 bits per weight (Kp = K rounded up to 256).
//
// q4: KB = 128 = 4 groups of 32, 5 vec4 per row per block:
//      vec4 j (0..3) of row r: the 32 4-bit quants of group 4 b + j; byte i (0..15) of the 16 holds weight
//        32 j + i in its low nibble and weight 32 j + 16 + i in its high nibble (byte 4 t + s in bits
//        8 s .. 8 s + 7 of u32 t, so u32 t's low nibbles are weights 4 t .. 4 t + 3 and its high nibbles
//        weights 16 + 4 t .. 16 + 4 t + 3);
//      vec4 4 of row r: u32 j = the group's f16 scale d (low half) and f16 min m (high half).
//      Weight = d * q + m. rowBytes = 5/8 Kp = 5 bits per weight (Kp = K rounded up to 128).
//
// Quantization (group size 32, scale/min rounded outward, |error| <= d/2): kernels/quantize.ts. q8 and q4
// need K % 32 == 0; the loader stores a matrix whose K is not as f16 (`supports`).

import { f16Values, f32ToF16 } from './half.ts';
import { QGROUP, q8Scales, q4Params, q4Quant } from './quantize.ts';
import { range, tree, type BlockCode, type DtypeFormat, type FormatSpec } from './format-spec.ts';

/** Rows per octet: the unit of row interleaving (and of row chunks) of f16, q8 and q4. */
export const OCTET = 8;

/** K padded to whole blocks of kBlock weights. */
const paddedK = (K: number, kBlock: number): number => Math.ceil(K / kBlock) * kBlock;
/** Bytes of `rows` rows of an octet format (blocks of kBlock weights in blockVec4 vec4 per row): whole octets. */
const octetBufferBytes = (rows: number, K: number, kBlock: number, blockVec4: number): number =>
  Math.ceil(rows / OCTET) * OCTET * (paddedK(K, kBlock) / kBlock) * blockVec4 * 16;
/**
 * Vec4 index of row `row`'s first vec4 in its block b (of nB per row), blocks of blockVec4 vec4 per row: the
 * host side of the matvec code's rowBlockBase. Its vec4 i is OCTET vec4 further on per i.
 */
const octetBlock = (row: number, b: number, nB: number, blockVec4: number): number =>
  ((row >> 3) * nB + b) * blockVec4 * OCTET + (row & 7);

/** Vec4 index of row `row`'s first vec4 in the block (KB weights, blockVec4 vec4 per row) of its group g. */
const groupBlock = (row: number, g: number, K: number, KB: number, blockVec4: number): number =>
  octetBlock(row, Math.floor((g * QGROUP) / KB), paddedK(K, KB) / KB, blockVec4);

/**
 * The record of an octet format, from its block shape (KB weights in blockVec4 vec4 per row) and its parts:
 * `pack` fills `out` (the chunk's bytes, zeros) from a matrix of the right shape, `unpack` fills `out` (rows, K).
 */
function octetFormat(
  name: DtypeFormat, KB: number, blockVec4: number, kAlign: number,
  parts: {
    loadW4: string;
    pack(data: Float32Array, rows: number, K: number, out: Uint8Array): void;
    unpack(bytes: Uint8Array, rows: number, K: number, out: Float32Array): void;
    /** The matvec block code's: the row's first vec4 in block b, where simpler than the octet formula (f16). */
    rowBlockBase?: BlockCode['rowBlockBase'];
    /** The vec4 of a row's block that holds the scales, loaded once per block and row as sc{r} (q8, q4). */
    scalesVec4?: number;
    xprep?: BlockCode['xprep'];
    body: BlockCode['body'];
  },
): FormatSpec {
  const matvec: BlockCode = {
    KB, sub: KB / QGROUP, elem: 'vec4<u32>', stride: OCTET,
    // octetBlock's formula, in WGSL.
    rowBlockBase: parts.rowBlockBase ?? ((row, b) => `((${row} / 8u) * (Kp / ${KB}u) + ${b}) * ${blockVec4 * OCTET}u + ${row} % 8u`),
    head: (r, v) => (parts.scalesVec4 === undefined ? [] : [`let sc${r} = ${v(parts.scalesVec4)};`]),
    xprep: parts.xprep ?? (() => []),
    body: parts.body,
  };
  return {
    name,
    rowBytes: (K) => octetBufferBytes(OCTET, K, KB, blockVec4) / OCTET,
    rowAlign: OCTET,
    bufferBytes: (rows, K) => octetBufferBytes(rows, K, KB, blockVec4),
    supports: (K) => K % kAlign === 0,
    // loadW4's frame: `base` is the row's first vec4 in the block of k4 (the matvec code's rowBlockBase).
    wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec4<u32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  let Kp = (K4 * 4u + ${KB - 1}u) / ${KB}u * ${KB}u; // K padded to whole blocks
  let base = ${matvec.rowBlockBase('row', `(k4 / ${KB / 4}u)`)};${parts.loadW4}
}`,
    pack(data, rows, K) {
      if (K % kAlign !== 0) throw new Error(`${name}: K = ${K} is not a multiple of ${kAlign}`);
      if (data.length !== rows * K) throw new Error(`${name}: ${data.length} values for a (${rows}, ${K}) matrix`);
      const out = new Uint8Array(octetBufferBytes(rows, K, KB, blockVec4));
      parts.pack(data, rows, K, out);
      return out;
    },
    unpack(bytes, rows, K) {
      const out = new Float32Array(rows * K);
      parts.unpack(bytes, rows, K, out);
      return out;
    },
    matvec,
  };
}

// ---- f32 ---------------------------------------------------------------------------------------------

const f32: FormatSpec = {
  name: 'f32',
  rowBytes: (K) => K * 4,
  rowAlign: 1,
  bufferBytes: (rows, K) => rows * K * 4,
  supports: (K) => K % 4 === 0,
  wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec4<f32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  return w[row * K4 + k4];
}`,
  pack: (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  unpack: (bytes, rows, K) => new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + rows * K * 4)),
  matvec: {
    KB: 32, sub: 1, elem: 'vec4<f32>', stride: 1,
    rowBlockBase: (row, b) => `${row} * p.K4 + ${b} * 8u`,
    head: () => [],
    xprep: () => [],
    body: (r, _j, M, v) => [
      ...range(8).map((c) => `let w${c} = ${v(c)};`),
      ...range(M).map((m) => `acc${r}_${m} += ${tree(range(8).map((c) => `w${c} * xb${m}_${c}`))};`),
    ],
  },
};

// ---- f16 ---------------------------------------------------------------------------------------------

const F16_KB = 32; // weights per row per block
const F16_VEC4 = 4; // vec4<u32> per row per block: 8 halves each

/** Vec4 index of 8-weight chunk c of row `row` (f16; Kp = K padded to F16_KB). */
const f16Vec4 = (row: number, c: number, Kp: number): number =>
  octetBlock(row, c >> 2, Kp / F16_KB, F16_VEC4) + (c & 3) * OCTET;

function packF16(data: Float32Array, rows: number, K: number, bytes: Uint8Array): void {
  const Kp = paddedK(K, F16_KB);
  const out = new Uint16Array(bytes.buffer);
  const h = f32ToF16(data);
  for (let row = 0; row < rows; row++) {
    for (let k = 0; k < K; k += 8) {
      const o = f16Vec4(row, k >> 3, Kp) * 8;
      const n = Math.min(8, K - k);
      for (let i = 0; i < n; i++) out[o + i] = h[row * K + k + i]!;
    }
  }
}

function unpackF16(bytes: Uint8Array, rows: number, K: number, out: Float32Array): void {
  const Kp = paddedK(K, F16_KB);
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const half = f16Values();
  for (let row = 0; row < rows; row++) {
    for (let k = 0; k < K; k++) out[row * K + k] = half[h[f16Vec4(row, k >> 3, Kp) * 8 + (k & 7)]!]!;
  }
}

const f16 = octetFormat('f16', F16_KB, F16_VEC4, 4, {
  loadW4: /* wgsl */ `
  let v = w[base + ((k4 / 2u) % 4u) * ${OCTET}u];
  let h = select(v.xy, v.zw, (k4 & 1u) == 1u);   // weights 4 k4 .. 4 k4 + 3 are one half of the vec4
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));`,
  pack: packF16,
  unpack: unpackF16,
  // (row / 8) * Kp is the octet's start: Kp / KB blocks of F16_VEC4 * OCTET = KB vec4.
  rowBlockBase: (row, b) => `(${row} / 8u) * Kp + ${b} * ${F16_VEC4 * OCTET}u + ${row} % 8u`,
  body: (r, _j, M, v) => {
    const out: string[] = [];
    for (let c = 0; c < F16_VEC4; c++) {
      out.push(`let h${c} = ${v(c)};`);
      out.push(`let a${c} = vec4<f32>(unpack2x16float(h${c}.x), unpack2x16float(h${c}.y));`);
      out.push(`let b${c} = vec4<f32>(unpack2x16float(h${c}.z), unpack2x16float(h${c}.w));`);
    }
    for (const m of range(M)) {
      out.push(`acc${r}_${m} += ${tree(range(F16_VEC4).flatMap((c) => [`a${c} * xb${m}_${2 * c}`, `b${c} * xb${m}_${2 * c + 1}`]))};`);
    }
    return out;
  },
});

// ---- q8 ----------------------------------------------------------------------------------------------

const Q8_KB = 256; // weights per row per block: 8 groups of QGROUP
const Q8_VEC4 = 17; // vec4<u32> per row per block: 2 j, 2 j + 1 the 32 quants of group j, then the scales
const Q8_SCALES = 16; // the vec4 of the 8 f16 scales

/** Byte of quant j of group g in the block at vec4 `base`: vec4 2 (g % 8) holds j < 16, the next (OCTET on) j >= 16. */
const q8QuantByte = (base: number, g: number, j: number): number => (base + 2 * (g & 7) * OCTET) * 16 + (j & 15) + (j >> 4) * OCTET * 16;
/** Index (in u16) of group g's f16 scale in the block at vec4 `base`. */
const q8ScaleU16 = (base: number, g: number): number => (base + Q8_SCALES * OCTET) * 8 + (g & 7);

/** Packs a (rows, K) f32 matrix as q8 octets: d = amax / 127 rounded up to an f16, q = round(w / d). */
function packQ8(data: Float32Array, rows: number, K: number, out: Uint8Array): void {
  const G = K / QGROUP;
  const q = new Int8Array(out.buffer);
  const h16 = new Uint16Array(out.buffer);
  const half = f16Values();
  const d = new Float32Array(G), dBits = new Uint16Array(G);
  for (let row = 0; row < rows; row++) {
    const src = row * K;
    q8Scales(data, src, G, d, dBits);
    for (let g = 0; g < G; g++) {
      const base = groupBlock(row, g, K, Q8_KB, Q8_VEC4);
      h16[q8ScaleU16(base, g)] = dBits[g]!;
      const dg = half[dBits[g]!]!;
      const inv = dg > 0 ? 1 / dg : 0;
      // |w| / d <= 127 by construction (d rounded up), so no clamp is needed.
      for (let j = 0; j < QGROUP; j++) q[q8QuantByte(base, g, j)] = Math.round(data[src + g * QGROUP + j]! * inv);
    }
  }
}

/** q8 octets -> (rows, K) f32: w' = d q, the value the kernels multiply by. */
function unpackQ8(bytes: Uint8Array, rows: number, K: number, out: Float32Array): void {
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const half = f16Values();
  for (let row = 0; row < rows; row++) {
    for (let g = 0; g < K / QGROUP; g++) {
      const base = groupBlock(row, g, K, Q8_KB, Q8_VEC4);
      const d = half[h16[q8ScaleU16(base, g)]!]!;
      for (let j = 0; j < QGROUP; j++) out[row * K + g * QGROUP + j] = Math.fround(d * q[q8QuantByte(base, g, j)]!);
    }
  }
}

const q8 = octetFormat('q8', Q8_KB, Q8_VEC4, QGROUP, {
  loadW4: /* wgsl */ `
  let g = (k4 / 8u) % 8u;                         // group in the block
  let q = w[base + (2u * g + (k4 / 4u) % 2u) * ${OCTET}u][k4 % 4u];
  let d = unpack2x16float(w[base + ${Q8_SCALES * OCTET}u][g / 2u])[g % 2u];
  return d * vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));`,
  pack: packQ8,
  unpack: unpackQ8,
  scalesVec4: Q8_SCALES,
  body: (r, j, M, v) => {
    const out: string[] = [];
    // int8 byte s of u32 t: shifted to the top and back down, arithmetically (sign extension).
    for (let h = 0; h < 2; h++) {
      out.push(`let q${h} = ${v(`(2u * ${j} + ${h}u)`)};`);
      for (let t = 0; t < 4; t++) {
        out.push(`let e${h}${t} = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q${h}[${t}]) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));`);
      }
    }
    out.push(`let d = unpack2x16float(sc${r}[${j} / 2u])[${j} % 2u];`);
    for (const m of range(M)) {
      const terms = [0, 1].flatMap((h) => [0, 1, 2, 3].map((t) => `e${h}${t} * xb${m}_${4 * h + t}`));
      out.push(`acc${r}_${m} += d * ${tree(terms)};`);
    }
    return out;
  },
});

// ---- q4 ----------------------------------------------------------------------------------------------

const Q4_KB = 128; // weights per row per block: 4 groups of QGROUP
const Q4_VEC4 = 5; // vec4<u32> per row per block: j the 32 nibbles of group j, then the (scale, min) words
const Q4_SCALES = 4; // the vec4 of the 4 groups' (f16 scale, f16 min)

/** Byte of the 16 quant bytes of group g in the block at vec4 `base` (vec4 g % 4). */
const q4QuantByte = (base: number, g: number): number => (base + (g & 3) * OCTET) * 16;
/** Index (in u32) of group g's (scale | min << 16) word in the block at vec4 `base`. */
const q4ScaleU32 = (base: number, g: number): number => (base + Q4_SCALES * OCTET) * 4 + (g & 3);

/** Packs a (rows, K) f32 matrix as q4 octets: m = min rounded down, d = (max - m) / 15 rounded up (f16s). */
function packQ4(data: Float32Array, rows: number, K: number, out: Uint8Array): void {
  const G = K / QGROUP;
  const u32 = new Uint32Array(out.buffer);
  const half = f16Values();
  const d = new Float32Array(G), dBits = new Uint16Array(G);
  const m = new Float32Array(G), mBits = new Uint16Array(G);
  const hi = new Float32Array(G);
  for (let row = 0; row < rows; row++) {
    const src = row * K;
    q4Params(data, src, G, d, dBits, m, mBits, hi);
    for (let g = 0; g < G; g++) {
      const base = groupBlock(row, g, K, Q4_KB, Q4_VEC4);
      u32[q4ScaleU32(base, g)] = (dBits[g]! | (mBits[g]! << 16)) >>> 0;
      const mg = half[mBits[g]!]!, dg = half[dBits[g]!]!;
      const inv = dg > 0 ? 1 / dg : 0;
      // Byte b of the group's 16: weight b in the low nibble, weight b + 16 in the high nibble.
      for (let b = 0, i = src + g * QGROUP, o = q4QuantByte(base, g); b < 16; b++, i++, o++) {
        out[o] = q4Quant(data[i]!, mg, inv) | (q4Quant(data[i + 16]!, mg, inv) << 4);
      }
    }
  }
}

/** q4 octets -> (rows, K) f32: w' = d q + m, the value the kernels multiply by. */
function unpackQ4(bytes: Uint8Array, rows: number, K: number, out: Float32Array): void {
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const half = f16Values();
  for (let row = 0; row < rows; row++) {
    for (let g = 0; g < K / QGROUP; g++) {
      const base = groupBlock(row, g, K, Q4_KB, Q4_VEC4);
      const sm = u32[q4ScaleU32(base, g)]!;
      const dg = half[sm & 0xffff]!, mg = half[sm >>> 16]!;
      const o = row * K + g * QGROUP, qb = q4QuantByte(base, g);
      for (let b = 0; b < 16; b++) {
        const byte = bytes[qb + b]!;
        out[o + b] = Math.fround(Math.fround(dg * (byte & 15)) + mg);
        out[o + b + 16] = Math.fround(Math.fround(dg * (byte >> 4)) + mg);
      }
    }
  }
}

// q4 nibble i of a u32, taken as (u & mask) converted to f32 = nib * 2^shift (or u >> 28 for the top one,
// whose mask would not fit an i32): the 2^-shift is folded into the broadcast x, which all rows share,
// saving one shift per weight.
/** A WGSL f32 literal. */
const f = (v: number): string => (Number.isInteger(v) ? `${v}.0` : v.toExponential());
const Q4_LO_MASK = 'vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf000000u)';
const Q4_LO_SCALE = `vec4<f32>(1.0, ${f(2 ** -8)}, ${f(2 ** -16)}, ${f(2 ** -24)})`;
const Q4_HI_SCALE = `vec4<f32>(${f(2 ** -4)}, ${f(2 ** -12)}, ${f(2 ** -20)}, 1.0)`;

const q4 = octetFormat('q4', Q4_KB, Q4_VEC4, QGROUP, {
  loadW4: /* wgsl */ `
  let g = (k4 / 8u) % 4u;                         // group in the block
  let c = k4 % 8u;                                // weights 4 c .. 4 c + 3 of the group
  let q = (w[base + g * ${OCTET}u][c % 4u] >> (4u * (c / 4u))) & 0x0f0f0f0fu;
  let sm = unpack2x16float(w[base + ${Q4_SCALES * OCTET}u][g]);      // (scale, min)
  return fma(vec4<f32>(sm.x), vec4<f32>((vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u)), vec4<f32>(sm.y));`,
  pack: packQ4,
  unpack: unpackQ4,
  scalesVec4: Q4_SCALES,
  xprep: (M) => range(M).flatMap((m) => [
    ...[0, 1, 2, 3].map((t) => `let xl${m}_${t} = xb${m}_${t} * ${Q4_LO_SCALE};`),
    ...[0, 1, 2, 3].map((t) => `let xh${m}_${t} = xb${m}_${4 + t} * ${Q4_HI_SCALE};`),
  ]),
  body: (r, j, M, v) => {
    const out: string[] = [`let q = ${v(j)};`];
    for (let t = 0; t < 4; t++) {
      out.push(`let l${t} = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q[${t}]) & ${Q4_LO_MASK}));`);
      out.push(`let h${t} = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q[${t}] & 0xf0u, q[${t}] & 0xf000u, q[${t}] & 0xf00000u, q[${t}] >> 28u)));`);
    }
    out.push(`let sm = unpack2x16float(sc${r}[${j}]);`); // (scale d, min m): w = d q + m
    for (const m of range(M)) {
      const terms = [0, 1, 2, 3].flatMap((t) => [`l${t} * xl${m}_${t}`, `h${t} * xh${m}_${t}`]);
      // The min's term m * sum(x) is spread over the 4 lanes of the vec4 accumulator.
      out.push(`acc${r}_${m} += fma(vec4<f32>(sm.x), ${tree(terms)}, vec4<f32>(0.25 * sm.y * sx${m}));`);
    }
    return out;
  },
});

/** The dtype formats: a model in any format (f32 weights) can be packed into these. */
export const FORMATS: Record<DtypeFormat, FormatSpec> = { f32, f16, q8, q4 };

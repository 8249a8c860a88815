// Weight storage formats. Matrices are (rows, K) like nn.Linear's (out_features, in_features). A format is
// a structural variant of the kernels that read weights: it gives the byte layout, the host-side packer
// and its inverse (the CPU reference), and the WGSL of a generic random-access read,
// `loadW4(row, k4, K4) -> vec4<f32>` = W[row, 4*k4 .. 4*k4+3] (K4 = K / 4), used by the tiled matmul
// and the embedding gather. The matrix-vector kernels (matmul.ts) read whole blocks instead.
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
//
// GGUF's block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16) are formats too, under
// ggml's names: a GGUF tensor goes to the GPU with the file's bytes unchanged (rows of blocks, row-major,
// rowAlign 1) and the kernels decode it in registers (kernels/ggml-blocks.ts has the layouts, the CPU
// decoders and the WGSL). They are only loaded as stored: there is no packer from f32 for them.

import { f16ToF32, f32ToF16 } from './half.ts';
import { GGML_BLOCKS, decodeBlocks, ggmlBlockWgsl, type GgmlBlockFormat, type GgmlBlockType } from './ggml-blocks.ts';
import {
  OCTET, QGROUP, packF16, unpackF16, packQ8, unpackQ8, packQ4, unpackQ4, f16RowBytes, q8RowBytes, q4RowBytes, octetBytes,
  quantizeRoundTrip,
} from './quantize.ts';

/** The formats any model can be converted to (`--dtype`). */
export type DtypeFormat = 'f32' | 'f16' | 'q8' | 'q4';
/** Every format a matrix can have on the GPU: the dtype formats and GGUF's block types, kept as stored. */
export type WeightFormat = DtypeFormat | GgmlBlockType;
/** What a load asks for: a format, or 'native' (each GGUF tensor in its own type, see TensorProvider.nativeFormats). */
export type Dtype = WeightFormat | 'native';

export interface FormatSpec {
  name: WeightFormat;
  /** Bytes per row of K weights, padding included (exact: a chunk of n rows is bufferBytes(n, K)). */
  rowBytes(K: number): number;
  /** Rows are stored in units of this many (8 for the octet formats): chunks start at multiples of it. */
  rowAlign: number;
  /** Bytes of a packed (rows, K) chunk: rowBytes(K) * rows rounded up to rowAlign. */
  bufferBytes(rows: number, K: number): number;
  /** Whether this format can hold rows of K weights (q8, q4: K % 32 == 0; all: K % 4 == 0). */
  supports(K: number): boolean;
  /** WGSL: the binding `w` at @binding(binding) and fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32>. */
  wgsl(binding: number): string;
  /** Host-side packing of a (rows, K) f32 matrix. */
  pack(data: Float32Array, rows: number, K: number): Uint8Array;
  /** The inverse of pack: the (rows, K) weights the kernels multiply by. */
  unpack(bytes: Uint8Array, rows: number, K: number): Float32Array;
}

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
};

const f16: FormatSpec = {
  name: 'f16',
  rowBytes: f16RowBytes,
  rowAlign: OCTET,
  bufferBytes: (rows, K) => octetBytes(f16RowBytes(K), rows),
  supports: (K) => K % 4 === 0,
  wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec4<u32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  let Kp = (K4 + 7u) / 8u * 32u;                 // K padded to whole 32-weight blocks
  let v = w[(row / 8u) * Kp + (k4 / 8u) * 32u + ((k4 / 2u) % 4u) * 8u + row % 8u];
  let h = select(v.xy, v.zw, (k4 & 1u) == 1u);   // weights 4 k4 .. 4 k4 + 3 are one half of the vec4
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}`,
  pack: packF16,
  unpack: unpackF16,
};

const q8: FormatSpec = {
  name: 'q8',
  rowBytes: q8RowBytes,
  rowAlign: OCTET,
  bufferBytes: (rows, K) => octetBytes(q8RowBytes(K), rows),
  supports: (K) => K % QGROUP === 0,
  wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec4<u32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  let nB = (K4 + 63u) / 64u;                      // 256-weight blocks per row
  let blk = (row / 8u) * nB * 136u + (k4 / 64u) * 136u + row % 8u;
  let g = (k4 / 8u) % 8u;                         // group in the block
  let q = w[blk + g * 16u + ((k4 / 4u) % 2u) * 8u][k4 % 4u];
  let d = unpack2x16float(w[blk + 128u][g / 2u])[g % 2u];
  return d * vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}`,
  pack: packQ8,
  unpack: unpackQ8,
};

const q4: FormatSpec = {
  name: 'q4',
  rowBytes: q4RowBytes,
  rowAlign: OCTET,
  bufferBytes: (rows, K) => octetBytes(q4RowBytes(K), rows),
  supports: (K) => K % QGROUP === 0,
  wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec4<u32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  let nB = (K4 + 31u) / 32u;                      // 128-weight blocks per row
  let blk = (row / 8u) * nB * 40u + (k4 / 32u) * 40u + row % 8u;
  let g = (k4 / 8u) % 4u;                         // group in the block
  let c = k4 % 8u;                                // weights 4 c .. 4 c + 3 of the group
  let q = (w[blk + g * 8u][c % 4u] >> (4u * (c / 4u))) & 0x0f0f0f0fu;
  let sm = unpack2x16float(w[blk + 32u][g]);      // (scale, min)
  return fma(vec4<f32>(sm.x), vec4<f32>((vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u)), vec4<f32>(sm.y));
}`,
  pack: packQ4,
  unpack: unpackQ4,
};

/** The dtype formats: a model in any format (f32 weights) can be packed into these. */
export const FORMATS: Record<DtypeFormat, FormatSpec> = { f32, f16, q8, q4 };

/** A GGUF block type as a format: the raw blocks (rows of K / BS blocks of TS bytes). */
function ggmlFormat(t: GgmlBlockFormat): FormatSpec {
  // BF16's pseudo-blocks are 4 weights; the matrix-vector kernels read 32 at a time, so it needs K % 32 == 0.
  const kAlign = Math.max(t.BS, 32);
  const rowBytes = (K: number): number => {
    if (K % t.BS !== 0) throw new Error(`${t.name}: a row of ${K} weights is not a whole number of ${t.BS}-weight blocks`);
    return (K / t.BS) * t.TS;
  };
  return {
    name: t.name,
    rowBytes,
    rowAlign: 1,
    bufferBytes: (rows, K) => rows * rowBytes(K),
    supports: (K) => K % kAlign === 0,
    wgsl: (b) => ggmlBlockWgsl(t, b),
    pack: () => {
      throw new Error(`${t.name} weights are loaded as a GGUF file stores them; they cannot be packed from f32 values (use --dtype q4, q8, f16 or f32)`);
    },
    unpack: (bytes, rows, K) => decodeBlocks(t, bytes, rows * K),
  };
}

/** GGUF's block types, kept as stored. */
export const GGML_FORMATS = Object.fromEntries(
  Object.values(GGML_BLOCKS).map((t) => [t.name, ggmlFormat(t)]),
) as Record<GgmlBlockType, FormatSpec>;

export function formatSpec(f: WeightFormat): FormatSpec {
  const s = (FORMATS as Record<string, FormatSpec>)[f] ?? (GGML_FORMATS as Record<string, FormatSpec>)[f];
  if (!s) throw new Error(`unknown weight format "${f}" (expected one of ${[...Object.keys(FORMATS), ...Object.keys(GGML_FORMATS)].join(', ')})`);
  return s;
}

export const isDtypeFormat = (f: string): f is DtypeFormat => f in FORMATS;
export const isGgmlFormat = (f: string): f is GgmlBlockType => f in GGML_FORMATS;

/** The format a (rows, K) matrix is stored in when `f` is asked for: f16 where f cannot hold rows of K. */
export function storedFormat(f: WeightFormat, K: number): WeightFormat {
  return formatSpec(f).supports(K) ? f : 'f16';
}

/**
 * CPU reference of a format's round trip: the weights the GPU sees for `data`, a (rows, K) matrix flattened
 * (q8, q4: K % 32 == 0, so groups never cross rows and the result does not depend on K).
 */
export function roundTrip(f: DtypeFormat, data: Float32Array): Float32Array {
  if (f === 'f32') return data;
  if (f === 'f16') return f16ToF32(f32ToF16(data));
  return quantizeRoundTrip(f, data);
}

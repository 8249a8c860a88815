// Weight storage formats: the registry of every format a matrix can have on the GPU. A format is a
// structural variant of the kernels that read weights, one record each (FormatSpec, kernels/format-spec.ts):
// the byte layout, the host-side packer and its inverse (the CPU reference), the WGSL of a random-access
// read (`loadW4`) and the matrix-vector kernels' block code. The dtype formats f32, f16, q8 and q4 (what
// any model can be converted to) are in kernels/dtype-formats.ts, with their layouts.
//
// GGUF's block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16) are formats too, under
// ggml's names: a GGUF tensor goes to the GPU with the file's bytes unchanged (rows of blocks, row-major,
// rowAlign 1) and the kernels decode it in registers (kernels/ggml-blocks.ts has the layouts, the CPU
// decoders and the WGSL). They are only loaded as stored: there is no packer from f32 for them.

import { f16ToF32, f32ToF16 } from './half.ts';
import { GGML_BLOCKS, decodeBlocks, ggmlBlockFns, ggmlBlockWgsl, type GgmlBlockFormat, type GgmlBlockType } from './ggml-blocks.ts';
import { quantizeRoundTrip } from './quantize.ts';
import { FORMATS } from './dtype-formats.ts';
import { range, type BlockCode, type DtypeFormat, type FormatSpec, type WeightFormat } from './format-spec.ts';

export type { BlockCode, Dtype, DtypeFormat, FormatSpec, WeightFormat } from './format-spec.ts';
export { FORMATS };

/**
 * A GGUF block type's matrix-vector code: w is the raw bytes (u32 words), `base` the byte offset of the
 * block (KB = max(BS, 32) weights: one block of 256 or 32, or 8 of BF16's 4-weight pseudo-blocks), and each
 * vec4 of weights comes from the type's deq4 (kernels/ggml-blocks.ts), decoded in registers.
 */
function ggmlBlockCode(t: GgmlBlockFormat): BlockCode {
  const KB = Math.max(t.BS, 32);
  return {
    KB, sub: KB / 32, elem: 'u32', stride: 1, fns: ggmlBlockFns(t),
    rowBlockBase: (row, b) => `${row} * ((Kp / ${t.BS}u) * ${t.TS}u) + ${b} * ${(KB / t.BS) * t.TS}u`,
    head: () => [],
    xprep: () => [],
    body: (r, j, M, _v, base) => [
      // The group's scales once per 32 weights (grp), then a loop over the 8 vec4 rather than 8 inlined
      // decodes (whose code, times M, made LLVM take seconds per pipeline on lavapipe); its bound is not a
      // constant for the same reason as matmul.ts's subLoop's.
      ...range(M).map((m) => `var xs${m} = array<vec4<f32>, 8>(${range(8).map((c) => `xb${m}_${c}`).join(', ')});`),
      `let g = grp(${base} + (32u * ${j} / ${t.BS}u) * ${t.TS}u, (32u * ${j}) % ${t.BS}u);`,
      `for (var c = 0u; c < min(8u, Kp / 4u); c++) {`,
      `  let i = 32u * ${j} + 4u * c;`,
      `  let wv = deqg(${base} + (i / ${t.BS}u) * ${t.TS}u, i % ${t.BS}u, g);`,
      ...range(M).map((m) => `  acc${r}_${m} += wv * xs${m}[c];`),
      `}`,
    ],
  };
}

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
    matvec: ggmlBlockCode(t),
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

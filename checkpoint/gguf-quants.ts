// ggml tensor types as GGUF files store them, and the CPU codecs for the ones we read and write.
//
// Every ggml type packs a row of ne[0] values into ne[0] / blockSize blocks of typeSize bytes
// (ggml.c's type_traits: blck_size, type_size). The two block formats we write are llama.cpp's
// reference quantizers (ggml-quants.c: quantize_row_q8_0_ref, quantize_row_q4_0_ref), reproduced
// bit for bit: every intermediate below is rounded to f32 with Math.fround, as the C code computes
// in `float`, and the f16 scale is rounded to nearest even like GGML_FP32_TO_FP16.
//
//   Q8_0  block of 32: f16 d | int8 q[32]                 x = q * d,        d = amax / 127
//   Q4_0  block of 32: f16 d | u8 qs[16] (two nibbles)     x = (q - 8) * d,  d = max / -8
//         qs[j] low nibble holds element j, high nibble element j + 16; `max` is the signed value of
//         largest magnitude, so the extreme maps to q = 0 exactly and the other side gets 8 levels.

import { f32ToF16 } from '../kernels/half.ts';
import { decodeFloats } from './float-dtypes.ts';
import { GGML_BLOCKS, decodeBlocks, isGgmlBlockType } from '../kernels/ggml-blocks.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';

export interface GgmlType {
  id: number;
  name: string; // as ggml names it (upper case): F32, Q4_0, Q4_K, IQ2_XXS, ...
  blockSize: number; // values per block
  typeSize: number; // bytes per block
}

// [name, id, blockSize, typeSize]; ids 4, 5 (Q4_2, Q4_3) and 31-33, 36-38 (repacked variants) were
// removed from ggml and never occur in files. Sizes from ggml-common.h's block structs.
const TABLE: [string, number, number, number][] = [
  ['F32', 0, 1, 4], ['F16', 1, 1, 2], ['Q4_0', 2, 32, 18], ['Q4_1', 3, 32, 20],
  ['Q5_0', 6, 32, 22], ['Q5_1', 7, 32, 24], ['Q8_0', 8, 32, 34], ['Q8_1', 9, 32, 36],
  ['Q2_K', 10, 256, 84], ['Q3_K', 11, 256, 110], ['Q4_K', 12, 256, 144], ['Q5_K', 13, 256, 176],
  ['Q6_K', 14, 256, 210], ['Q8_K', 15, 256, 292], ['IQ2_XXS', 16, 256, 66], ['IQ2_XS', 17, 256, 74],
  ['IQ3_XXS', 18, 256, 98], ['IQ1_S', 19, 256, 50], ['IQ4_NL', 20, 32, 18], ['IQ3_S', 21, 256, 110],
  ['IQ2_S', 22, 256, 82], ['IQ4_XS', 23, 256, 136], ['I8', 24, 1, 1], ['I16', 25, 1, 2],
  ['I32', 26, 1, 4], ['I64', 27, 1, 8], ['F64', 28, 1, 8], ['IQ1_M', 29, 256, 56],
  ['BF16', 30, 1, 2], ['TQ1_0', 34, 256, 54], ['TQ2_0', 35, 256, 66], ['MXFP4', 39, 32, 17],
];

export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map(
  TABLE.map(([name, id, blockSize, typeSize]) => [id, { id, name, blockSize, typeSize }]),
);

/**
 * The types we decode (exactly as ggml does: kernels/ggml-blocks.ts) and load; everything else in GGML_TYPES
 * (the IQ families, Q8_1, Q8_K, TQ*, MXFP4, integers) is recognised but refused before anything is allocated.
 */
export const READABLE_TYPES: ReadonlySet<string> = new Set([
  'F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K',
]);

/** The GPU format a GGUF matrix of a READABLE type keeps when loaded as stored (F32 and F16 as ours, losslessly). */
export function nativeFormat(type: string): WeightFormat {
  if (type === 'F32') return 'f32';
  if (type === 'F16') return 'f16';
  if (READABLE_TYPES.has(type) && isGgmlBlockType(type)) return type;
  throw new Error(`ggml type ${type} has no GPU format (supported: ${[...READABLE_TYPES].join(', ')})`);
}

export function ggmlTypeByName(name: string): GgmlType {
  for (const t of GGML_TYPES.values()) if (t.name === name) return t;
  throw new Error(`unknown ggml type "${name}"`);
}

/** A type id's name for messages: "Q4_K", or "unknown type 99". */
export function ggmlTypeName(id: number): string {
  return GGML_TYPES.get(id)?.name ?? `unknown type ${id}`;
}

/** Bytes of one row of `cols` values; throws when cols is not a whole number of blocks. */
export function ggmlRowBytes(t: GgmlType, cols: number): number {
  if (cols % t.blockSize !== 0) throw new Error(`a row of ${cols} values is not a whole number of ${t.name} blocks (${t.blockSize})`);
  return (cols / t.blockSize) * t.typeSize;
}

/** Bytes of a tensor of dims `ne` (innermost first): ne[1] * ne[2] * ... rows of ne[0] values. */
export function ggmlTensorBytes(t: GgmlType, ne: readonly number[]): number {
  return ggmlRowBytes(t, ne[0]!) * ne.slice(1).reduce((a, b) => a * b, 1);
}

const QK = 32; // values per Q8_0 / Q4_0 block
const fr = Math.fround;

/** C's roundf: halves away from zero (Math.round sends -2.5 to -2). */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * The shell both reference quantizers share: per block of 32 a scale d (stored to f32, then written as f16
 * first in the block), and the block's quants from x * (1 / d) written after it by `quants`.
 */
function quantizeBlocks(
  what: string, x: Float32Array, blockBytes: number, scale: (x: Float32Array, at: number) => number,
  quants: (out: Uint8Array, at: number, x: Float32Array, xAt: number, id: number) => void,
): Uint8Array {
  if (x.length % QK !== 0) throw new Error(`${what}: ${x.length} values is not a multiple of ${QK}`);
  const nb = x.length / QK;
  const d = new Float32Array(nb);
  for (let b = 0; b < nb; b++) d[b] = scale(x, b * QK); // the store rounds to f32
  const dh = f32ToF16(d);
  const out = new Uint8Array(nb * blockBytes);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const id = d[b] !== 0 ? fr(1 / d[b]!) : 0;
    dv.setUint16(b * blockBytes, dh[b]!, true);
    quants(out, b * blockBytes + 2, x, b * QK, id);
  }
  return out;
}

/** f32 values (length a multiple of 32) -> Q8_0 blocks, as quantize_row_q8_0_ref. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  return quantizeBlocks('quantizeQ8_0', x, 34, (x, at) => {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[at + j]!));
    return amax / 127;
  }, (out, at, x, xAt, id) => {
    for (let j = 0; j < QK; j++) out[at + j] = roundf(fr(x[xAt + j]! * id)) & 0xff; // int8, two's complement
  });
}

/** f32 values (length a multiple of 32) -> Q4_0 blocks, as quantize_row_q4_0_ref. */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  return quantizeBlocks('quantizeQ4_0', x, 18, (x, at) => {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[at + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    return max / -8;
  }, (out, at, x, xAt, id) => {
    for (let j = 0; j < QK / 2; j++) {
      // (int8_t)(x0 + 8.5f) truncates toward zero; the sum is >= ~0.5, so trunc == floor here.
      const lo = Math.min(15, Math.trunc(fr(fr(x[xAt + j]! * id) + 8.5)));
      const hi = Math.min(15, Math.trunc(fr(fr(x[xAt + QK / 2 + j]! * id) + 8.5)));
      out[at + j] = lo | (hi << 4);
    }
  });
}

/** Q8_0 blocks -> `n` f32 values (dequantize_row_q8_0: kernels/ggml-blocks.ts's decoder). */
export function dequantizeQ8_0(src: Uint8Array, n: number, dst = new Float32Array(n)): Float32Array {
  return decodeBlocks(GGML_BLOCKS.Q8_0, src, n, dst);
}

/** Q4_0 blocks -> `n` f32 values (dequantize_row_q4_0: kernels/ggml-blocks.ts's decoder). */
export function dequantizeQ4_0(src: Uint8Array, n: number, dst = new Float32Array(n)): Float32Array {
  return decodeBlocks(GGML_BLOCKS.Q4_0, src, n, dst);
}

/** `n` values of type `t` stored in `bytes` -> f32. Throws for the types we only recognise. */
export function dequantize(t: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  switch (t.name) {
    case 'F32':
    case 'F16':
    case 'BF16':
      return decodeFloats(t.name, bytes, n);
    default:
      if (READABLE_TYPES.has(t.name) && isGgmlBlockType(t.name)) return decodeBlocks(GGML_BLOCKS[t.name], bytes, n);
      throw new Error(`ggml type ${t.name} cannot be decoded (supported: ${[...READABLE_TYPES].join(', ')})`);
  }
}

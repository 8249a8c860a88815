// What a weight format is: the record every format fills in once (kernels/dtype-formats.ts for f32, f16, q8
// and q4; kernels/weight-formats.ts for GGUF's block types), and the small WGSL-writing helpers the records'
// matrix-vector code shares. The kernels that read weights (matmul.ts, embedding.ts) take everything
// format-specific from the record: its byte layout, host packer, WGSL random-access load and matvec block.

import type { GgmlBlockType } from './ggml-blocks.ts';

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
  /** The format's part of the matrix-vector kernels (kernels/matmul.ts). */
  matvec: BlockCode;
}

/**
 * The per-format part of a matrix-vector kernel: the weights of a block of KB consecutive k (for f32, one of
 * 32) are read `sub` sub-blocks of 32 k at a time. X for a sub-block is the 8 vec4 `xb{m}_{c}` (c = 0..7,
 * k = 32 j + 4 c ..) and, for q4, its sum `sx{m}`. The generated statements add row r's dot product into
 * `acc{r}_{m}`; `v(i)` is the WGSL index of the row's i-th vec4 of the current block.
 */
export interface BlockCode {
  KB: number;
  sub: number;
  /** WGSL type of w's elements. */
  elem: 'vec4<f32>' | 'vec4<u32>' | 'u32';
  /** WGSL functions over `w` the body calls (GGUF block types: the byte readers and deq4). */
  fns?: string;
  /** Vec4 index of row `row`'s first vec4 in its block `b` (WGSL; `Kp` is K padded to whole blocks). */
  rowBlockBase(row: string, b: string): string;
  /** Stride between a row's consecutive vec4 within a block. */
  stride: number;
  /** Statements run once per block and row, before the sub-blocks (scales). */
  head(r: number, v: (i: number | string) => string): string[];
  /** Statements for sub-block j (a WGSL u32 expression) of the block for row r, whose rowBlockBase is `base`. */
  body(r: number, j: string, M: number, v: (i: number | string) => string, base: string): string[];
  /** Statements computing, per sub-block, shared values from xb (q4: prescaled x and sums). */
  xprep(M: number): string[];
}

/** 0 .. n - 1 (the unrolled rows of X, the vec4 of a sub-block). */
export const range = (n: number): number[] => [...Array(n).keys()];
/** A balanced sum (short dependency chains: lavapipe does not reassociate float adds). */
export const tree = (t: string[]): string => (t.length === 1 ? t[0]! : `(${tree(t.slice(0, t.length >> 1))} + ${tree(t.slice(t.length >> 1))})`);

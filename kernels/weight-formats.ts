// Weight storage formats. A format is a structural variant of the kernels that read weights: it gives the
// WGSL declaration of the weight binding and `loadW4(row, k4, K4)`, which returns the 4 consecutive
// weights W[row, 4*k4 .. 4*k4+3] as f32 (K4 = K / 4, the row length in groups of 4). Matrices are
// (rows, K) row-major, like nn.Linear's (out_features, in_features).
//
//   f32: array<vec4<f32>>; one vec4 = 4 weights (16 bytes).
//   f16: array<vec2<u32>>; one vec2<u32> = 4 IEEE half floats, element 2i in the low 16 bits of u32 i
//        (unpack2x16float is core WGSL, so this works without the shader-f16 feature).

import { f16ToF32, f32ToF16 } from '../runtime/half.ts';

export type WeightFormat = 'f32' | 'f16';

export interface FormatSpec {
  name: WeightFormat;
  /** Bytes of one row of K weights (K % 4 == 0). */
  rowBytes(K: number): number;
  /** WGSL: the binding `w` at @binding(binding) and fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32>. */
  wgsl(binding: number): string;
  /** Host-side packing of a (rows, K) f32 matrix. */
  pack(data: Float32Array, rows: number, K: number): Uint8Array;
}

const f32: FormatSpec = {
  name: 'f32',
  rowBytes: (K) => K * 4,
  wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec4<f32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  return w[row * K4 + k4];
}`,
  pack: (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
};

const f16: FormatSpec = {
  name: 'f16',
  rowBytes: (K) => K * 2,
  wgsl: (b) => /* wgsl */ `
@group(0) @binding(${b}) var<storage, read> w: array<vec2<u32>>;
fn loadW4(row: u32, k4: u32, K4: u32) -> vec4<f32> {
  let v = w[row * K4 + k4];
  return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}`,
  pack: (data) => {
    const h = f32ToF16(data);
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  },
};

export const FORMATS: Record<WeightFormat, FormatSpec> = { f32, f16 };

export function formatSpec(f: WeightFormat): FormatSpec {
  const s = FORMATS[f];
  if (!s) throw new Error(`unknown weight format "${f}" (expected one of ${Object.keys(FORMATS).join(', ')})`);
  return s;
}

/** CPU reference of a format's round trip: the weights the GPU will see. */
export function roundTrip(f: WeightFormat, data: Float32Array): Float32Array {
  if (f === 'f32') return data;
  return f16ToF32(f32ToF16(data));
}

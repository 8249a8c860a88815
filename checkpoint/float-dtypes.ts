// Plain float tensors as files store them (safetensors and GGUF name these dtypes alike): little-endian f32,
// IEEE f16 and bfloat16, to and from f32. The one codec of the readers and writers of both formats.

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../kernels/half.ts';

/** A tensor's dtype in a file: F32, F16 or BF16 (a file's, not a GPU weight format: kernels/weight-formats.ts). */
export type FileDtype = 'F32' | 'F16' | 'BF16';

export const isFileDtype = (d: string): d is FileDtype => d === 'F32' || d === 'F16' || d === 'BF16';

/**
 * `n` values of `dtype` stored in `bytes` as f32. Aligned F32 data is returned as a view of the bytes (no
 * copy; for in-memory sources that is a view of the file's own buffer); unaligned data is copied first,
 * since typed-array views need element alignment.
 */
export function decodeFloats(dtype: FileDtype, bytes: Uint8Array, n: number): Float32Array {
  if (dtype === 'F32') {
    const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    return new Float32Array(b.buffer, b.byteOffset, n);
  }
  const b = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const halves = new Uint16Array(b.buffer, b.byteOffset, n);
  return dtype === 'F16' ? f16ToF32(halves) : bf16ToF32(halves);
}

/** f32 values as the bytes of `dtype` (F32 as a view of the same memory; f16 / bf16 rounded to nearest even). */
export function encodeFloats(data: Float32Array, dtype: FileDtype): Uint8Array {
  const v = dtype === 'F32' ? data : dtype === 'F16' ? f32ToF16(data) : f32ToBf16(data);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

// Whole-array conversions between f32 and the two 16-bit float formats of checkpoints.
//
//   f16  (IEEE 754 binary16): 1 sign, 5 exponent (bias 15), 10 mantissa bits.
//   bf16 (bfloat16):          1 sign, 8 exponent (bias 127), 7 mantissa bits: the top half of an f32.
//
// f32 -> 16-bit rounds to nearest, ties to even, as IEEE 754 and torch do; overflow gives +-inf,
// tiny values become f16 subnormals or signed zero, NaN stays a (quiet) NaN. Table-free bit arithmetic:
// typed-array loops, no allocation beyond the output. All views assume a little-endian host (every
// WebGPU platform is), the same as the safetensors data they read.

/** `dst`, checked to hold n values. */
function checkDst<T extends Float32Array | Uint16Array>(fn: string, dst: T, n: number): T {
  if (dst.length < n) throw new Error(`${fn}: dst has ${dst.length} elements, need ${n}`);
  return dst;
}

/** f16 bit patterns -> f32 values. `dst` (length >= src.length) is reused when given. */
export function f16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ? checkDst('f16ToF32', dst, src.length) : new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i]!;
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant * 2^-24, exact in f32
      out[i] = (sign ? -mant : mant) * 5.960464477539063e-8;
    } else if (exp === 31) {
      bits[i] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN with its payload
    } else {
      bits[i] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // rebias 15 -> 127
    }
  }
  return out;
}

/** Rounds one f32 bit pattern to the nearest f16 bit pattern (ties to even). */
function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf; NaN kept quiet
  const e = exp - 112; // f16 biased exponent
  if (e >= 31) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // f16 subnormal (or zero): value = m * 2^(e-14-10) with the implicit bit, so r = m >> (14 - e)
    if (e < -10) return sign; // below half the smallest subnormal (2^-25): rounds to zero
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    let r = m >>> shift;
    if (rem > halfway || (rem === halfway && (r & 1))) r++; // may carry into the smallest normal: correct
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++; // a carry out of 0x7bff gives 0x7c00 = inf: correct
  return sign | r;
}

/** f32 values -> f16 bit patterns, round to nearest even. */
export function f32ToF16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ? checkDst('f32ToF16', dst, src.length) : new Uint16Array(src.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

/** bf16 bit patterns -> f32 values (exact: bf16 is the top 16 bits of an f32). */
export function bf16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ? checkDst('bf16ToF32', dst, src.length) : new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/** f32 values -> bf16 bit patterns, round to nearest even; NaN stays a quiet NaN. */
export function f32ToBf16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ? checkDst('f32ToBf16', dst, src.length) : new Uint16Array(src.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) {
      out[i] = (x >>> 16) | 0x40; // NaN: keep sign and top payload, force quiet
    } else {
      // adding 0x7fff plus the lowest kept bit rounds half to even; overflow carries into inf
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

let table: Float32Array | null = null;
/** All 65536 f16 bit patterns as f32 (256 KiB, built on first use): a lookup for per-element decoders. */
export function f16Values(): Float32Array {
  if (!table) table = f16ToF32(Uint16Array.from({ length: 65536 }, (_, i) => i));
  return table;
}

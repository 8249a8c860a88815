// The fused matrix-vector kernels of a decode step (kernels/matmul.ts, MatvecFusion): the RMSNorm prologue,
// the SwiGLU epilogue over gate | up rows, and the RoPE + KV-cache-write epilogue over q | k | v heads, in
// every matvec design, against the composed CPU references (normMatmulRef, swigluRef, ropeRef, cacheRowRef).
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu, runKernel, uploadBuffer, storageBuffer, readBuffer, randomArray, maxAbsDiff } from './helpers/gpu.ts';
import {
  matvecWgsl, matvecGrid, matvecVariant, packMatmulParams, normMatmulRef, variantName, type MatvecVariant, type MatvecFusion,
} from '../kernels/matmul.ts';
import { formatSpec, roundTrip, type DtypeFormat } from '../kernels/weight-formats.ts';
import { swigluRef } from '../kernels/swiglu.ts';
import { ropeRef, ropeTable } from '../kernels/rope.ts';
import { cacheRowRef } from '../kernels/kv-cache.ts';
import { f16ToF32, f32ToF16 } from '../kernels/half.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});
const f32 = async (buf: GPUBuffer, n: number) => new Float32Array(await readBuffer(ctx!.device, buf, 0, n * 4));

/** The device's own design for `format`, and the other designs where the device can run them. */
function variants(c: GpuContext, format: DtypeFormat): MatvecVariant[] {
  const own = matvecVariant(c, format);
  const out: MatvecVariant[] = [own];
  if (own.kind === 'lanes') out.push({ ...own, rowsets: own.rowsets === 1 ? 2 : 1 });
  if (c.hasSubgroups) out.push({ kind: 'split', subgroups: true });
  out.push({ kind: 'split', subgroups: false });
  return out;
}

describe('rmsnorm prologue', () => {
  // K not a multiple of the formats' blocks; N not of the octet; results added into a wider Y.
  const cases: [DtypeFormat, number, number, number][] = [['f32', 1, 37, 100], ['f16', 3, 45, 96], ['q8', 2, 19, 288], ['q4', 4, 30, 160]];
  for (const [format, M, N, K] of cases) {
    it(`${format} M=${M} N=${N} K=${K}, every design`, async (t) => {
      if (!ctx) return t.skip();
      const { device } = ctx;
      const x = randomArray(M * K, 3 + N, 2), g = randomArray(K, 4 + K, 1.5), w = randomArray(N * K, 5 + M, 0.5);
      const ref = normMatmulRef(x, g, 1e-5, roundTrip(format, w), M, N, K);
      const ldy = N + 7, resid = randomArray(M * ldy, 6, 1);
      for (const v of variants(ctx, format)) {
        const y = uploadBuffer(device, 'y', resid);
        await runKernel(ctx, matvecWgsl(format, M, v, { norm: true }), packMatmulParams({ N, K, rowOffset: 3, ldy, accumulate: true, useOut: false, eps: 1e-5 }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', formatSpec(format).pack(w, N, K)), uploadBuffer(device, 'g', g)], matvecGrid(v, N), { nTokens: M });
        const want = resid.slice();
        for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) want[m * ldy + 3 + n] += ref[m * N + n]!;
        expect(maxAbsDiff(await f32(y, M * ldy), want), variantName(v)).toBeLessThan(2e-5 * Math.sqrt(K));
      }
    });
  }
});

describe('swiglu epilogue over gate | up rows', () => {
  for (const [format, M, H, K] of [['f16', 2, 44, 96], ['q4', 1, 40, 128], ['f32', 4, 21, 36]] as [DtypeFormat, number, number, number][]) {
    it(`${format} M=${M} hidden=${H} K=${K}, every design`, async (t) => {
      if (!ctx) return t.skip();
      const { device } = ctx;
      const x = randomArray(M * K, 11 + H, 2), g = randomArray(K, 12, 1.5), w = randomArray(2 * H * K, 13 + M, 0.5);
      const ref = normMatmulRef(x, g, 1e-5, roundTrip(format, w), M, 2 * H, K);
      const gate = new Float32Array(M * H), up = new Float32Array(M * H);
      for (let m = 0; m < M; m++) { gate.set(ref.subarray(m * 2 * H, m * 2 * H + H), m * H); up.set(ref.subarray(m * 2 * H + H, (m + 1) * 2 * H), m * H); }
      const want0 = swigluRef(gate, up);
      // Written at columns 5.. of a (M, H + 9) output: the chunk of hidden units a chunk of gate | up rows owns.
      const ldy = H + 9, base = randomArray(M * ldy, 14, 1);
      const want = base.slice();
      for (let m = 0; m < M; m++) for (let j = 0; j < H; j++) want[m * ldy + 5 + j] = want0[m * H + j]!;
      for (const v of variants(ctx, format)) {
        const y = uploadBuffer(device, 'y', base);
        await runKernel(ctx, matvecWgsl(format, M, v, { norm: true, epilogue: 'swiglu' }),
          packMatmulParams({ N: 2 * H, K, rowOffset: 5, ldy, accumulate: false, useOut: false, eps: 1e-5 }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', formatSpec(format).pack(w, 2 * H, K)), uploadBuffer(device, 'g', g)],
          matvecGrid(v, 2 * H), { nTokens: M });
        expect(maxAbsDiff(await f32(y, M * ldy), want), variantName(v)).toBeLessThan(1e-4);
      }
    });
  }
});

describe('rope + kv-cache epilogue over q | k | v heads', () => {
  // GQA heads; the fused q|k|v matrix (headBase 0) and a lone k matrix (headBase nHeads), f16 and f32 caches.
  const nHeads = 4, nKvHeads = 2, D = 16, K = 64, blockSize = 4, maxBlocks = 8, nBlocks = 16;
  const cases: [DtypeFormat, 'f16' | 'f32', 'qkv' | 'k'][] = [['f16', 'f16', 'qkv'], ['q4', 'f32', 'qkv'], ['f32', 'f32', 'k']];
  for (const [format, kv, part] of cases) {
    it(`${format} weights, ${kv} cache, ${part} rows, every design`, async (t) => {
      if (!ctx || (kv === 'f16' && !ctx.hasF16)) return t.skip();
      const { device } = ctx;
      const qDim = nHeads * D, kvDim = nKvHeads * D, ld = qDim + 2 * kvDim;
      const headBase = part === 'qkv' ? 0 : nHeads;
      const N = part === 'qkv' ? ld : kvDim;
      const positions = [9, 10, 3], slots = [0, 0, 1], M = positions.length;
      const table = new Uint32Array(2 * maxBlocks);
      for (let i = 0; i < maxBlocks; i++) { table[i] = 15 - i; table[maxBlocks + i] = i; }
      const x = randomArray(M * K, 21, 2), g = randomArray(K, 22, 1.5), w = randomArray(N * K, 23, 0.5);
      const proj = normMatmulRef(x, g, 1e-5, roundTrip(format, w), M, N, K); // (M, N) before RoPE
      const cols = (off: number, n: number) => { const o = new Float32Array(M * n); for (let m = 0; m < M; m++) o.set(proj.subarray(m * N + off, m * N + off + n), m * n); return o; };
      const el = kv === 'f16' ? 2 : 4;
      const cs = ropeTable(64, D, 10000);
      for (const v of variants(ctx, format)) {
        const ldy = ld + 3, yInit = randomArray(M * ldy, 24, 1);
        const y = uploadBuffer(device, 'y', yInit);
        const kc = storageBuffer(device, 'kc', nBlocks * blockSize * kvDim * el), vc = storageBuffer(device, 'vc', nBlocks * blockSize * kvDim * el);
        const fusion: MatvecFusion = { norm: true, epilogue: 'rope', kv };
        await runKernel(ctx, matvecWgsl(format, M, v, fusion),
          packMatmulParams({ N, K, rowOffset: 0, ldy, accumulate: false, useOut: false, eps: 1e-5, rope: { headDim: D, headBase, nHeads, nKvHeads, blockSize, maxBlocks } }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', formatSpec(format).pack(w, N, K)), uploadBuffer(device, 'g', g),
            uploadBuffer(device, 'pos', new Uint32Array(positions)), uploadBuffer(device, 'slot', new Uint32Array(slots)), uploadBuffer(device, 'table', table),
            uploadBuffer(device, 'cs', cs), kc, vc],
          matvecGrid(v, N), { nTokens: M });
        const name = variantName(v);
        // q rotated into Y's first qDim columns (the rest untouched); k rotated and v into their cache rows.
        const gotY = await f32(y, M * ldy);
        const wantY = yInit.slice();
        if (part === 'qkv') {
          const q = ropeRef(cols(0, qDim), positions, nHeads, D, 10000);
          for (let m = 0; m < M; m++) wantY.set(q.subarray(m * qDim, (m + 1) * qDim), m * ldy);
        }
        expect(maxAbsDiff(gotY, wantY), name).toBeLessThan(1e-4);
        const kRef = ropeRef(cols(part === 'qkv' ? qDim : 0, kvDim), positions, nKvHeads, D, 10000);
        const vRef = part === 'qkv' ? cols(qDim + kvDim, kvDim) : null;
        const read = async (b: GPUBuffer) => {
          const raw = await readBuffer(device, b, 0, nBlocks * blockSize * kvDim * el);
          return kv === 'f16' ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
        };
        const kGot = await read(kc), vGot = await read(vc);
        const store = (a: Float32Array) => (kv === 'f16' ? f16ToF32(f32ToF16(a)) : a);
        // f16 cache: the GPU's f32 value may round to the neighbouring half (one f16 ulp near 4 is 2^-8).
        const tol = kv === 'f16' ? 4e-3 : 1e-4;
        positions.forEach((p, m) => {
          const row = cacheRowRef(table, maxBlocks, blockSize, slots[m]!, p);
          expect(maxAbsDiff(kGot.subarray(row * kvDim, (row + 1) * kvDim), store(kRef.subarray(m * kvDim, (m + 1) * kvDim))), `${name} k`).toBeLessThan(tol);
          if (vRef) expect(maxAbsDiff(vGot.subarray(row * kvDim, (row + 1) * kvDim), store(vRef.subarray(m * kvDim, (m + 1) * kvDim))), `${name} v`).toBeLessThan(tol);
        });
        // Rows of no token were not written (v of a lone k matrix: nothing).
        const written = new Set(positions.map((p, m) => cacheRowRef(table, maxBlocks, blockSize, slots[m]!, p)));
        for (let r = 0; r < nBlocks * blockSize; r++) if (!written.has(r)) expect(kGot.subarray(r * kvDim, (r + 1) * kvDim).every((e) => e === 0)).toBe(true);
        if (!vRef) expect(vGot.every((e) => e === 0)).toBe(true);
      }
    });
  }
});

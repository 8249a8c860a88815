// The fused matrix-vector kernels of a decode step (kernels/matmul.ts, MatvecFusion): the RMSNorm prologue,
// the SwiGLU epilogue over gate | up rows, and the RoPE + KV-cache-write epilogue over q | k | v heads, in
// every matvec design, against the composed CPU references (normMatmulRef, swigluRef, ropeRef, cacheRowRef).
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu, runKernel, uploadBuffer, storageBuffer, readBuffer, maxAbsDiff } from './helpers/gpu.ts';
import { randomArray } from './helpers/random.ts';
import {
  matvecWgsl, matvecGrid, matvecVariant, packMatmulParams, normMatmulRef, variantName, type MatvecVariant, type MatvecFusion,
} from '../kernels/matmul.ts';
import { readFileSync } from 'node:fs';
import { formatSpec, roundTrip, type WeightFormat } from '../kernels/weight-formats.ts';
import { isGgmlBlockType, type GgmlBlockType } from '../kernels/ggml-blocks.ts';
import { swigluRef } from '../kernels/swiglu.ts';
import { ropeRef, ropeTable } from '../kernels/rope.ts';
import { cacheRowRef } from '../kernels/kv-cache.ts';
import { f16ToF32, f32ToF16 } from '../kernels/half.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});
const f32 = async (buf: GPUBuffer, n: number) => new Float32Array(await readBuffer(ctx!.device, buf, 0, n * 4));
const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/**
 * The device's own design for `format`; with `all`, also the other designs where the device can run them (each
 * first compile of a design takes seconds on lavapipe, so one case per group runs them all).
 */
function variants(c: GpuContext, format: WeightFormat, all: boolean): MatvecVariant[] {
  const own = matvecVariant(c, format);
  const out: MatvecVariant[] = [own];
  if (!all) return out;
  if (own.kind === 'lanes') out.push({ ...own, rowsets: own.rowsets === 1 ? 2 : 1 });
  if (c.hasSubgroups && own.kind !== 'split') out.push({ kind: 'split', subgroups: true });
  if (!(own.kind === 'split' && !own.subgroups)) out.push({ kind: 'split', subgroups: false });
  return out;
}

/** A GGUF block type's recorded fixture (test/fixtures/ggml-blocks): its raw blocks and their decoded values. */
function ggmlFixture(t: GgmlBlockType): { rows: number; K: number; bytes: Uint8Array; ref: Float32Array } {
  const dir = new URL('./fixtures/ggml-blocks/', import.meta.url);
  const { rows, K } = (JSON.parse(readFileSync(new URL('index.json', dir), 'utf8')) as Record<string, { rows: number; K: number }>)[t]!;
  const f = readFileSync(new URL(`${t}.f32`, dir));
  return { rows, K, bytes: new Uint8Array(readFileSync(new URL(`${t}.bin`, dir))), ref: new Float32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength)) };
}

/** Weights of `format` (rows, K): the packed bytes and the values the kernel sees (round-tripped, or a GGUF fixture's). */
function matrixOf(format: WeightFormat, rows: number, K: number, seed: number): { bytes: ArrayBufferView; values: Float32Array } {
  if (isGgmlBlockType(format)) {
    const fx = ggmlFixture(format);
    if (fx.rows !== rows || fx.K !== K) throw new Error(`${format} fixture is (${fx.rows}, ${fx.K})`);
    return { bytes: fx.bytes, values: fx.ref };
  }
  const w = randomArray(rows * K, seed, 0.5);
  return { bytes: formatSpec(format).pack(w, rows, K), values: roundTrip(format, w) };
}

describe('rmsnorm prologue', () => {
  // K not a multiple of the formats' blocks; N not of the octet; results added into a wider Y. GGUF block types
  // (q/k/v and w1/w3 kept apart, each with the prologue) on a recorded fixture.
  const cases: [WeightFormat, number, number, number, boolean][] = [
    ['f16', 3, 45, 96, true], ['f32', 1, 37, 100, false], ['q8', 2, 19, 288, false], ['q4', 4, 30, 160, false], ['Q4_K', 2, 8, 512, false], ['Q8_0', 1, 8, 256, false],
  ];
  for (const [format, M, N, K, all] of cases) {
    it(`${format} M=${M} N=${N} K=${K}, ${all ? 'every design' : 'the device\'s design'}`, async (t) => {
      if (!ctx) return t.skip();
      const { device } = ctx;
      const x = randomArray(M * K, 3 + N, 2), g = randomArray(K, 4 + K, 1.5), w = matrixOf(format, N, K, 5 + M);
      const ref = normMatmulRef(x, g, 1e-5, w.values, M, N, K);
      const ldy = N + 7, resid = randomArray(M * ldy, 6, 1);
      for (const v of variants(ctx, format, all)) {
        const y = uploadBuffer(device, 'y', resid);
        await runKernel(ctx, matvecWgsl(format, M, v, { norm: true }), packMatmulParams({ N, K, rowOffset: 3, ldy, accumulate: true, useOut: false, eps: 1e-5 }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', w.bytes), uploadBuffer(device, 'g', g)], matvecGrid(v, N), { nTokens: M });
        const want = resid.slice();
        for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) want[m * ldy + 3 + n] += ref[m * N + n]!;
        // f32 sums in another order than the f64 reference, relative to the results' scale (GGUF fixtures span octaves).
        expect(maxAbsDiff(await f32(y, M * ldy), want), variantName(v)).toBeLessThan(2e-6 * Math.sqrt(K) * Math.max(1, maxAbs(ref)));
      }
    });
  }
});

describe('swiglu epilogue over gate | up rows', () => {
  const cases: [WeightFormat, number, number, number, boolean][] = [['f16', 2, 44, 96, true], ['q4', 1, 40, 128, false], ['f32', 4, 21, 36, false], ['Q6_K', 3, 4, 512, false]];
  for (const [format, M, H, K, all] of cases) {
    it(`${format} M=${M} hidden=${H} K=${K}, ${all ? 'every design' : 'the device\'s design'}`, async (t) => {
      if (!ctx) return t.skip();
      const { device } = ctx;
      const x = randomArray(M * K, 11 + H, 2), g = randomArray(K, 12, 1.5), w = matrixOf(format, 2 * H, K, 13 + M);
      const ref = normMatmulRef(x, g, 1e-5, w.values, M, 2 * H, K);
      const gate = new Float32Array(M * H), up = new Float32Array(M * H);
      for (let m = 0; m < M; m++) { gate.set(ref.subarray(m * 2 * H, m * 2 * H + H), m * H); up.set(ref.subarray(m * 2 * H + H, (m + 1) * 2 * H), m * H); }
      const want0 = swigluRef(gate, up);
      // Written at columns 5.. of a (M, H + 9) output: the chunk of hidden units a chunk of gate | up rows owns.
      const ldy = H + 9, base = randomArray(M * ldy, 14, 1);
      const want = base.slice();
      for (let m = 0; m < M; m++) for (let j = 0; j < H; j++) want[m * ldy + 5 + j] = want0[m * H + j]!;
      for (const v of variants(ctx, format, all)) {
        const y = uploadBuffer(device, 'y', base);
        await runKernel(ctx, matvecWgsl(format, M, v, { norm: true, epilogue: 'swiglu' }),
          packMatmulParams({ N: 2 * H, K, rowOffset: 5, ldy, accumulate: false, useOut: false, eps: 1e-5 }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', w.bytes), uploadBuffer(device, 'g', g)],
          matvecGrid(v, 2 * H), { nTokens: M });
        expect(maxAbsDiff(await f32(y, M * ldy), want), variantName(v)).toBeLessThan(1e-5 * Math.sqrt(K) * Math.max(1, maxAbs(want0)));
      }
    });
  }
});

describe('rope + kv-cache epilogue over q | k | v heads', () => {
  // GQA heads; the fused q|k|v matrix (headBase 0) and a lone k matrix (headBase nHeads), f16 and f32 caches.
  const nHeads = 4, nKvHeads = 2, D = 16, K = 64, blockSize = 4, maxBlocks = 8, nBlocks = 16;
  const cases: [WeightFormat, 'f16' | 'f32', 'qkv' | 'k', boolean][] = [['f16', 'f16', 'qkv', true], ['q4', 'f32', 'qkv', false], ['f32', 'f32', 'k', false]];
  for (const [format, kv, part, all] of cases) {
    it(`${format} weights, ${kv} cache, ${part} rows, ${all ? 'every design' : 'the device\'s design'}`, async (t) => {
      if (!ctx || (kv === 'f16' && !ctx.hasF16)) return t.skip();
      const { device } = ctx;
      const qDim = nHeads * D, kvDim = nKvHeads * D, ld = qDim + 2 * kvDim;
      const headBase = part === 'qkv' ? 0 : nHeads;
      const N = part === 'qkv' ? ld : kvDim;
      const positions = [9, 10, 3], slots = [0, 0, 1], M = positions.length;
      const table = new Uint32Array(2 * maxBlocks);
      for (let i = 0; i < maxBlocks; i++) { table[i] = 15 - i; table[maxBlocks + i] = i; }
      const x = randomArray(M * K, 21, 2), g = randomArray(K, 22, 1.5), w = matrixOf(format, N, K, 23);
      const proj = normMatmulRef(x, g, 1e-5, w.values, M, N, K); // (M, N) before RoPE
      const cols = (off: number, n: number) => { const o = new Float32Array(M * n); for (let m = 0; m < M; m++) o.set(proj.subarray(m * N + off, m * N + off + n), m * n); return o; };
      const el = kv === 'f16' ? 2 : 4;
      const cs = ropeTable(64, D, 10000);
      for (const v of variants(ctx, format, all)) {
        const ldy = ld + 3, yInit = randomArray(M * ldy, 24, 1);
        const y = uploadBuffer(device, 'y', yInit);
        const kc = storageBuffer(device, 'kc', nBlocks * blockSize * kvDim * el), vc = storageBuffer(device, 'vc', nBlocks * blockSize * kvDim * el);
        const fusion: MatvecFusion = { norm: true, epilogue: 'rope', kv };
        await runKernel(ctx, matvecWgsl(format, M, v, fusion),
          packMatmulParams({ N, K, rowOffset: 0, ldy, accumulate: false, useOut: false, eps: 1e-5, rope: { headDim: D, headBase, nHeads, nKvHeads, blockSize, maxBlocks } }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', w.bytes), uploadBuffer(device, 'g', g),
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

// Every kernel against its CPU reference on random input, and every shader variant compiles cleanly.
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { getPipeline } from '../kernels/common.ts';
import { testGpu, runKernel, uploadBuffer, storageBuffer, readBuffer, maxAbsDiff } from './helpers/gpu.ts';
import { randomArray } from './helpers/random.ts';
import { matvecWgsl, tiledWgsl, tiledGrid, matvecGrid, matvecVariant, packMatmulParams, matmulRef, MATVEC_MAX_M } from '../kernels/matmul.ts';
import { FORMATS, formatSpec, roundTrip, type DtypeFormat } from '../kernels/weight-formats.ts';
import { embeddingWgsl, embeddingGrid, packEmbeddingParams, embeddingRef } from '../kernels/embedding.ts';
import { RMSNORM_WGSL, packRmsnormParams, rmsnormRef } from '../kernels/rmsnorm.ts';
import { SWIGLU_WGSL, SWIGLU_CAT_WGSL, packSwigluParams, swigluGrid, swigluRef } from '../kernels/swiglu.ts';
import { ropeKvWgsl, packRopeKvParams, ropeKvGrid } from '../kernels/rope-kv.ts';
import { ROPE_WGSL, ropeGrid, packRopeParams, ropeRef, ropeTable } from '../kernels/rope.ts';
import { KV_WRITE_WGSL, kvWriteWgsl, kvWriteGrid, packKvWriteParams, cacheRowRef } from '../kernels/kv-cache.ts';
import {
  ATTENTION_WGSL, ATTENTION_COMBINE_WGSL, ATTENTION_SPLIT_LEN, attentionWgsl, attentionGrid, attentionCombineGrid, attentionPartFloats,
  packAttentionParams, attentionRef,
} from '../kernels/attention.ts';
import { f16ToF32, f32ToF16 } from '../kernels/half.ts';
import { attentionPrefillWgsl, attentionPrefillGrid } from '../kernels/attention-prefill.ts';
import { ARGMAX_WGSL, argmaxGrid, packArgmaxParams, argmaxRef } from '../kernels/argmax.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});
const f32 = async (buf: GPUBuffer, n: number) => new Float32Array(await readBuffer(ctx!.device, buf, 0, n * 4));

const formats = Object.keys(FORMATS) as DtypeFormat[];

describe('shaders compile without errors or warnings', () => {
  // The matvec variants of every format are compiled in test/quant.test.ts.
  const all: [string, string][] = [
    ...formats.flatMap((f): [string, string][] => [[`tiled-${f}`, tiledWgsl(f)], [`embedding-${f}`, embeddingWgsl(f)]]),
    ['rmsnorm', RMSNORM_WGSL], ['swiglu', SWIGLU_WGSL], ['rope', ROPE_WGSL], ['kv-write', KV_WRITE_WGSL],
    ['attention', ATTENTION_WGSL], ['argmax', ARGMAX_WGSL], ['kv-write-f16', kvWriteWgsl('f16')],
    ['attention-f16', attentionWgsl('f16')], ['attention-combine', ATTENTION_COMBINE_WGSL],
    ['rope-kv-f32', ropeKvWgsl('f32')], ['rope-kv-f16', ropeKvWgsl('f16')], ['swiglu-cat', SWIGLU_CAT_WGSL],
  ];
  for (const [name, code] of all) {
    it(name, async (t) => {
      if (!ctx || (name.endsWith('-f16') && !ctx.hasF16)) return t.skip();
      await expect(getPipeline(ctx.device, 'compile:' + name, code)).resolves.toBeDefined();
    });
  }
});

describe('matmul (the device\'s matvec design; every design and format: quant.test.ts)', () => {
  // Shapes include ones that are not multiples of the tile (64) or row group (8).
  const shapes: [number, number, number][] = [[1, 37, 64], [3, 130, 96], [4, 5, 8], [7, 70, 132], [65, 129, 200], [130, 64, 36]];
  for (const format of ['f32', 'f16'] as DtypeFormat[]) {
    for (const [M, N, K] of shapes) {
      it(`${format} M=${M} N=${N} K=${K}`, async (t) => {
        if (!ctx) return t.skip();
        const { device } = ctx;
        const x = randomArray(M * K, 1 + M + N, 1);
        const w = randomArray(N * K, 7 + K, 0.5);
        const wq = roundTrip(format, w);
        const ref = matmulRef(x, wq, M, N, K);
        // Write into the middle of a wider Y (rowOffset, ldy) on top of a residual, as the forward pass does.
        const ldy = N + 9;
        const resid = randomArray(M * ldy, 99, 1);
        const y = uploadBuffer(device, 'y', resid);
        const variant = matvecVariant(ctx, format);
        const code = M <= MATVEC_MAX_M ? matvecWgsl(format, M, variant) : tiledWgsl(format);
        const grid = M <= MATVEC_MAX_M ? matvecGrid(variant, N) : tiledGrid(N, M);
        await runKernel(ctx, code, packMatmulParams({ N, K, rowOffset: 5, ldy, accumulate: true, useOut: false }),
          [uploadBuffer(device, 'x', x), y, uploadBuffer(device, 'w', formatSpec(format).pack(w, N, K))], grid, { nTokens: M });
        const got = await f32(y, M * ldy);
        const expected = resid.slice();
        for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) expected[m * ldy + 5 + n] = resid[m * ldy + 5 + n]! + ref[m * N + n]!;
        expect(maxAbsDiff(got, expected)).toBeLessThan(1e-4 * Math.sqrt(K));
      });
    }
  }
});

describe('elementwise and row kernels', () => {
  it('embedding gather from a chunk of the table', async (t) => {
    if (!ctx) return t.skip();
    const { device } = ctx;
    for (const format of formats) {
      const vocab = 50, dim = formatSpec(format).supports(24) ? 24 : 64, ids = [3, 49, 0, 17, 3];
      const table = randomArray(vocab * dim, 5);
      const rt = roundTrip(format, table);
      const out = storageBuffer(device, 'out', ids.length * dim * 4);
      // Two chunks: rows 0..29 and 30..49, like a table split across bindings.
      for (const [start, rows] of [[0, 30], [30, 20]] as const) {
        await runKernel(ctx, embeddingWgsl(format), packEmbeddingParams(dim, start, rows),
          [uploadBuffer(device, 'ids', new Uint32Array(ids)), out,
            uploadBuffer(device, 'tab', formatSpec(format).pack(table.subarray(start * dim, (start + rows) * dim), rows, dim))],
          embeddingGrid(ids.length), { nTokens: ids.length });
      }
      // Exact for f32/f16; q4's d * q + m may be fused into one rounding by a GPU (the reference rounds twice).
      expect(maxAbsDiff(await f32(out, ids.length * dim), embeddingRef(rt, dim, ids))).toBeLessThanOrEqual(format === 'q4' ? 1e-6 : 0);
    }
  });

  it('rmsnorm', async (t) => {
    if (!ctx) return t.skip();
    const { device } = ctx;
    const rows = 5, dim = 300;
    const x = randomArray(rows * dim, 11, 3), w = randomArray(dim, 12);
    const y = storageBuffer(device, 'y', rows * dim * 4);
    await runKernel(ctx, RMSNORM_WGSL, packRmsnormParams(dim, 1e-5, false), [uploadBuffer(device, 'x', x), uploadBuffer(device, 'w', w), y], [rows], { nTokens: rows });
    expect(maxAbsDiff(await f32(y, rows * dim), rmsnormRef(x, w, rows, dim, 1e-5))).toBeLessThan(1e-5);
  });

  it('swiglu', async (t) => {
    if (!ctx) return t.skip();
    const { device } = ctx;
    const T = 3, hidden = 100;
    const g = randomArray(T * hidden, 21, 8), u = randomArray(T * hidden, 22, 2);
    const gb = uploadBuffer(device, 'g', g);
    await runKernel(ctx, SWIGLU_WGSL, packSwigluParams(hidden), [gb, uploadBuffer(device, 'u', u)], swigluGrid(T, hidden), { nTokens: T });
    expect(maxAbsDiff(await f32(gb, T * hidden), swigluRef(g, u))).toBeLessThan(1e-5);
  });

  it('rope at scattered positions (HF rotate-half layout)', async (t) => {
    if (!ctx) return t.skip();
    const { device } = ctx;
    const nHeads = 3, D = 16, positions = [0, 1, 7, 255, 4000];
    const x = randomArray(positions.length * nHeads * D, 31);
    const xb = uploadBuffer(device, 'x', x);
    await runKernel(ctx, ROPE_WGSL, packRopeParams(nHeads, D),
      [xb, uploadBuffer(device, 'pos', new Uint32Array(positions)), uploadBuffer(device, 'cs', ropeTable(4096, D, 10000))],
      ropeGrid(positions.length, nHeads, D), { nTokens: positions.length });
    expect(maxAbsDiff(await f32(xb, x.length), ropeRef(x, positions, nHeads, D, 10000))).toBeLessThan(1e-5);
  });

  it('argmax with ties picks the lowest id', async (t) => {
    if (!ctx) return t.skip();
    const { device } = ctx;
    const rows = 3, vocab = 32000;
    const logits = randomArray(rows * vocab, 41);
    logits[1 * vocab + 500] = 5; logits[1 * vocab + 20000] = 5; // tie in row 1
    const best = storageBuffer(device, 'best', rows * 4);
    await runKernel(ctx, ARGMAX_WGSL, packArgmaxParams(vocab), [uploadBuffer(device, 'l', logits), best], argmaxGrid(rows), { nTokens: 0, nOut: rows });
    const got = [...new Uint32Array(await readBuffer(device, best, 0, rows * 4))];
    expect(got).toEqual(argmaxRef(logits, rows, vocab));
    expect(got[1]).toBe(500);
  });
});

describe('kv cache and attention (paged, causal, GQA)', () => {
  for (const [nHeads, nKvHeads, D] of [[4, 4, 16], [8, 2, 32], [2, 1, 128]] as const) {
    it(`nHeads=${nHeads} nKvHeads=${nKvHeads} D=${D}`, async (t) => {
      if (!ctx) return t.skip();
      const { device } = ctx;
      const kvDim = nKvHeads * D, blockSize = 16, maxBlocks = 12, nBlocks = 24;
      // Two sequences with scattered blocks; slot 0 prefilled earlier up to position 69, slot 1 up to 29.
      const table = new Uint32Array(2 * maxBlocks);
      for (let i = 0; i < maxBlocks; i++) { table[i] = (i * 2 + 1) % nBlocks; table[maxBlocks + i] = (i * 2) % nBlocks; }
      const kc = randomArray(nBlocks * blockSize * kvDim, 51), vc = randomArray(nBlocks * blockSize * kvDim, 52);
      // This step: a 3-token prefill chunk of slot 0 at positions 70..72 and one decode token of slot 1 at 30.
      const positions = [70, 71, 72, 30], slots = [0, 0, 0, 1];
      const T = positions.length;
      const kNew = randomArray(T * kvDim, 53), vNew = randomArray(T * kvDim, 54);
      const q = randomArray(T * nHeads * D, 55);
      const kcb = uploadBuffer(device, 'kc', kc), vcb = uploadBuffer(device, 'vc', vc);
      const posb = uploadBuffer(device, 'pos', new Uint32Array(positions)), slotb = uploadBuffer(device, 'slot', new Uint32Array(slots));
      const tab = uploadBuffer(device, 'table', table);
      await runKernel(ctx, KV_WRITE_WGSL, packKvWriteParams(kvDim, blockSize, maxBlocks),
        [uploadBuffer(device, 'k', kNew), uploadBuffer(device, 'v', vNew), posb, slotb, tab, kcb, vcb], kvWriteGrid(T, kvDim), { nTokens: T });
      const kExp = kc.slice(), vExp = vc.slice();
      positions.forEach((p, t) => {
        const row = cacheRowRef(table, maxBlocks, blockSize, slots[t]!, p);
        kExp.set(kNew.subarray(t * kvDim, (t + 1) * kvDim), row * kvDim);
        vExp.set(vNew.subarray(t * kvDim, (t + 1) * kvDim), row * kvDim);
      });
      expect(maxAbsDiff(await f32(kcb, kc.length), kExp)).toBe(0);
      expect(maxAbsDiff(await f32(vcb, vc.length), vExp)).toBe(0);
      const out = storageBuffer(device, 'out', T * nHeads * D * 4);
      await runKernel(ctx, ATTENTION_WGSL, packAttentionParams(nHeads, nKvHeads, D, blockSize, maxBlocks),
        [uploadBuffer(device, 'q', q), kcb, vcb, posb, slotb, tab, out, storageBuffer(device, 'part', 16)], attentionGrid(nHeads, T), { nTokens: T });
      const ref = attentionRef(q, kExp, vExp, positions, slots, table, maxBlocks, blockSize, nHeads, nKvHeads, D);
      expect(maxAbsDiff(await f32(out, ref.length), ref)).toBeLessThan(1e-5);
    });
  }
});

// Split-context (flash-decoding) decode attention and the one-workgroup kernel at long contexts, over f16 and
// f32 caches, against the f64 reference on the same (f16-rounded) cache values.
describe('attention at long contexts: split decode + combine, whole-row prefill, f16/f32 cache', () => {
  const cases: [number, number, number, 'f16' | 'f32'][] = [[8, 2, 64, 'f16'], [4, 4, 32, 'f32'], [16, 2, 128, 'f16']];
  for (const [nHeads, nKvHeads, D, kv] of cases) {
    it(`nHeads=${nHeads} nKvHeads=${nKvHeads} D=${D} ${kv} cache, context 4096`, async (t) => {
      if (!ctx || (kv === 'f16' && !ctx.hasF16)) return t.skip();
      const { device } = ctx;
      const kvDim = nKvHeads * D, blockSize = 16, context = 4096, maxBlocks = context / blockSize;
      const nSlots = 3, nBlocks = nSlots * maxBlocks;
      // Scattered blocks: slot s's block i is block (i * nSlots + (nSlots - 1 - s)) reversed within the pool.
      const table = new Uint32Array(nSlots * maxBlocks);
      for (let s = 0; s < nSlots; s++) for (let i = 0; i < maxBlocks; i++) table[s * maxBlocks + i] = nBlocks - 1 - (i * nSlots + s);
      let kc = randomArray(nBlocks * blockSize * kvDim, 61 + D), vc = randomArray(nBlocks * blockSize * kvDim, 62 + D);
      if (kv === 'f16') { kc = f16ToF32(f32ToF16(kc)); vc = f16ToF32(f32ToF16(vc)); }
      const upCache = (a: Float32Array) => uploadBuffer(device, 'cache', kv === 'f16' ? f32ToF16(a) : a);
      const kcb = upCache(kc), vcb = upCache(vc);
      const tab = uploadBuffer(device, 'table', table);
      const run = async (positions: number[], slots: number[], split: boolean) => {
        const T = positions.length;
        const q = randomArray(T * nHeads * D, 63 + T, 2);
        const posb = uploadBuffer(device, 'pos', new Uint32Array(positions)), slotb = uploadBuffer(device, 'slot', new Uint32Array(slots));
        const out = storageBuffer(device, 'out', T * nHeads * D * 4);
        const maxSplits = context / ATTENTION_SPLIT_LEN;
        const part = storageBuffer(device, 'part', attentionPartFloats(T, nHeads, D, maxSplits) * 4);
        const params = split
          ? packAttentionParams(nHeads, nKvHeads, D, blockSize, maxBlocks, ATTENTION_SPLIT_LEN, maxSplits)
          : packAttentionParams(nHeads, nKvHeads, D, blockSize, maxBlocks);
        const qb = uploadBuffer(device, 'q', q);
        const splits = split ? Math.ceil((Math.max(...positions) + 1) / ATTENTION_SPLIT_LEN) : 1;
        await runKernel(ctx!, attentionWgsl(kv), params, [qb, kcb, vcb, posb, slotb, tab, out, part], attentionGrid(nHeads, T, splits), { nTokens: T });
        if (split) await runKernel(ctx!, ATTENTION_COMBINE_WGSL, params, [posb, part, out], attentionCombineGrid(nHeads, T), { nTokens: T });
        const ref = attentionRef(q, kc, vc, positions, slots, table, maxBlocks, blockSize, nHeads, nKvHeads, D);
        return maxAbsDiff(await f32(out, ref.length), ref);
      };
      // A decode batch: one row at the last position (16 splits), one just past one split, one inside the first.
      expect(await run([4095, 256, 100], [0, 1, 2], true)).toBeLessThan(2e-5);
      // A prefill chunk at the end of the context: one workgroup per (row, head) over all positions.
      expect(await run([4093, 4094, 4095], [2, 2, 2], false)).toBeLessThan(2e-5);
    });
  }
});

// The fused decode-step kernels: RoPE of q and k with the KV-cache write (one dispatch), SwiGLU over gate | up.
describe('fused rope + kv write, swiglu over gate | up', () => {
  for (const [nHeads, nKvHeads, D, kv] of [[8, 2, 32, 'f16'], [4, 4, 16, 'f32'], [6, 2, 128, 'f16']] as const) {
    it(`rope-kv nHeads=${nHeads} nKvHeads=${nKvHeads} D=${D} ${kv} cache`, async (t) => {
      if (!ctx || (kv === 'f16' && !ctx.hasF16)) return t.skip();
      const { device } = ctx;
      const qDim = nHeads * D, kvDim = nKvHeads * D, ld = qDim + 2 * kvDim, blockSize = 16, maxBlocks = 8, nBlocks = 16;
      const positions = [70, 71, 5], slots = [0, 0, 1], T = positions.length;
      const table = new Uint32Array(2 * maxBlocks);
      for (let i = 0; i < maxBlocks; i++) { table[i] = 15 - i; table[maxBlocks + i] = i; }
      const qkv = randomArray(T * ld, 71 + D);
      const el = kv === 'f16' ? 2 : 4;
      const qkvb = uploadBuffer(device, 'qkv', qkv);
      const kcb = storageBuffer(device, 'kc', nBlocks * blockSize * kvDim * el), vcb = storageBuffer(device, 'vc', nBlocks * blockSize * kvDim * el);
      await runKernel(ctx, ropeKvWgsl(kv), packRopeKvParams(nHeads, nKvHeads, D, blockSize, maxBlocks),
        [qkvb, uploadBuffer(device, 'pos', new Uint32Array(positions)), uploadBuffer(device, 'slot', new Uint32Array(slots)), uploadBuffer(device, 'table', table),
          uploadBuffer(device, 'cs', ropeTable(128, D, 10000)), kcb, vcb],
        ropeKvGrid(T, nHeads, nKvHeads, D), { nTokens: T });
      const part = (off: number, n: number) => { const o = new Float32Array(T * n); for (let r = 0; r < T; r++) o.set(qkv.subarray(r * ld + off, r * ld + off + n), r * n); return o; };
      const qRef = ropeRef(part(0, qDim), positions, nHeads, D, 10000);
      const kRef = ropeRef(part(qDim, kvDim), positions, nKvHeads, D, 10000);
      const vRef = part(qDim + kvDim, kvDim);
      const got = await f32(qkvb, T * ld);
      const gotQ = new Float32Array(T * qDim);
      for (let r = 0; r < T; r++) gotQ.set(got.subarray(r * ld, r * ld + qDim), r * qDim);
      expect(maxAbsDiff(gotQ, qRef)).toBeLessThan(1e-5);
      // k and v sit in the cache rows of (slot, position), rounded as the cache stores them.
      const read = async (b: GPUBuffer) => {
        const raw = await readBuffer(device, b, 0, nBlocks * blockSize * kvDim * el);
        return kv === 'f16' ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
      };
      const kc = await read(kcb), vc = await read(vcb);
      const store = (a: Float32Array) => (kv === 'f16' ? f16ToF32(f32ToF16(a)) : a);
      positions.forEach((p, r) => {
        const row = cacheRowRef(table, maxBlocks, blockSize, slots[r]!, p);
        expect(maxAbsDiff(kc.subarray(row * kvDim, (row + 1) * kvDim), store(kRef.subarray(r * kvDim, (r + 1) * kvDim)))).toBeLessThan(1e-5);
        expect(maxAbsDiff(vc.subarray(row * kvDim, (row + 1) * kvDim), store(vRef.subarray(r * kvDim, (r + 1) * kvDim)))).toBe(0);
      });
    });
  }

  it('swiglu over gate | up rows, in one chunk and chunk by chunk', async (t) => {
    if (!ctx) return t.skip();
    const { device } = ctx;
    const T = 3, H = 172;
    // chunkRows C: per chunk c of hidden units [cC, cC + n) (n = C, the last one shorter), n gate then n up columns.
    for (const C of [H, 48]) {
      const gu = randomArray(T * 2 * H, 81 + C, 4);
      const out = storageBuffer(device, 'out', T * H * 4);
      await runKernel(ctx, SWIGLU_CAT_WGSL, packSwigluParams(H, C), [uploadBuffer(device, 'gu', gu), out], swigluGrid(T, H), { nTokens: T });
      const g = new Float32Array(T * H), u = new Float32Array(T * H);
      for (let r = 0; r < T; r++) {
        for (let c0 = 0; c0 < H; c0 += C) {
          const n = Math.min(C, H - c0), base = r * 2 * H + 2 * c0;
          g.set(gu.subarray(base, base + n), r * H + c0);
          u.set(gu.subarray(base + n, base + 2 * n), r * H + c0);
        }
      }
      expect(maxAbsDiff(await f32(out, T * H), swigluRef(g, u)), `chunkRows ${C}`).toBeLessThan(1e-5);
    }
  });
});

// Prefill attention in tiles of query rows sharing each K/V tile, against the reference: a chunk of 21 rows of
// one sequence (3 tiles of 8, the last partial) ending at the context's end, with GQA and both cache types.
describe('prefill attention, tiles of query rows', () => {
  for (const [nHeads, nKvHeads, D, kv, last] of [[8, 2, 64, 'f16', 4095], [4, 4, 16, 'f32', 40], [6, 2, 128, 'f16', 2000]] as const) {
    it(`nHeads=${nHeads} nKvHeads=${nKvHeads} D=${D} ${kv} cache, rows up to position ${last}`, async (t) => {
      if (!ctx || (kv === 'f16' && !ctx.hasF16)) return t.skip();
      const { device } = ctx;
      const kvDim = nKvHeads * D, blockSize = 16, maxBlocks = 4096 / blockSize, nBlocks = maxBlocks + 3;
      const table = new Uint32Array(2 * maxBlocks);
      for (let i = 0; i < maxBlocks; i++) { table[maxBlocks + i] = (i * 7 + 3) % nBlocks; }
      let kc = randomArray(nBlocks * blockSize * kvDim, 91 + D), vc = randomArray(nBlocks * blockSize * kvDim, 92 + D);
      if (kv === 'f16') { kc = f16ToF32(f32ToF16(kc)); vc = f16ToF32(f32ToF16(vc)); }
      const up = (a: Float32Array) => uploadBuffer(device, 'cache', kv === 'f16' ? f32ToF16(a) : a);
      const T = 21;
      const positions = Array.from({ length: T }, (_, i) => last - (T - 1) + i), slots = positions.map(() => 1);
      const q = randomArray(T * nHeads * D, 93, 2);
      const out = storageBuffer(device, 'out', T * nHeads * D * 4);
      await runKernel(ctx, attentionPrefillWgsl(kv), packAttentionParams(nHeads, nKvHeads, D, blockSize, maxBlocks),
        [uploadBuffer(device, 'q', q), up(kc), up(vc), uploadBuffer(device, 'pos', new Uint32Array(positions)),
          uploadBuffer(device, 'slot', new Uint32Array(slots)), uploadBuffer(device, 'table', table), out],
        attentionPrefillGrid(nHeads, T), { nTokens: T });
      const ref = attentionRef(q, kc, vc, positions, slots, table, maxBlocks, blockSize, nHeads, nKvHeads, D);
      expect(maxAbsDiff(await f32(out, ref.length), ref)).toBeLessThan(2e-5);
    });
  }
});

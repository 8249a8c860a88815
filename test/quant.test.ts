// Quantized weight formats (q8, q4) and the matrix kernels over every format: the host packers against
// their error bounds, the layouts against their inverse, and every matvec design x M and the tiled matmul
// against matmulRef on the round-tripped weights, on shapes that are not multiples of the tiles or blocks.
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { getPipeline } from '../kernels/common.ts';
import { testGpu, runKernel, uploadBuffer, readBuffer, maxAbsDiff } from './helpers/gpu.ts';
import { randomArray } from './helpers/random.ts';
import {
  matvecWgsl, tiledWgsl, tiledGrid, matvecGrid, matvecVariant, variantName, packMatmulParams, matmulRef, type MatvecVariant,
} from '../kernels/matmul.ts';
import { FORMATS, formatSpec, roundTrip, storedFormat, type DtypeFormat, type WeightFormat } from '../kernels/weight-formats.ts';
import { QGROUP } from '../kernels/quantize.ts';
import { f16ToF32 } from '../kernels/half.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel } from '../runtime/model.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

const formats = Object.keys(FORMATS) as DtypeFormat[];
const { pack: packQ8, unpack: unpackQ8 } = FORMATS.q8;
const { pack: packQ4, unpack: unpackQ4 } = FORMATS.q4;

/** Gaussian-ish test weights (sum of uniforms) with a few outliers, like trained weights. */
function weights(n: number, seed: number, scale: number): Float32Array {
  const a = randomArray(n, seed, scale), b = randomArray(n, seed + 1, scale), c = randomArray(n, seed + 2, scale);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (a[i]! + b[i]! + c[i]!) / 1.7 + (i % 97 === 5 ? 6 * scale : 0);
  return out;
}

describe('host packing', () => {
  // (rows, K): K a multiple of 32 but not of q8's 256 or q4's 128-weight blocks, rows not of the octet.
  const shapes: [number, number][] = [[37, 160], [8, 32], [13, 288], [3, 4096]];
  for (const [rows, K] of shapes) {
    it(`q8 (${rows}, ${K}): |w - w'| <= d/2 per group, unpack(pack) = roundTrip, rowBytes exact`, () => {
      const w = weights(rows * K, rows + K, 0.05);
      const packed = packQ8(w, rows, K);
      expect(packed.byteLength).toBe(formatSpec('q8').bufferBytes(rows, K));
      expect(packed.byteLength).toBe(Math.ceil(rows / 8) * 8 * formatSpec('q8').rowBytes(K));
      const back = unpackQ8(packed, rows, K);
      expect(maxAbsDiff(back, roundTrip('q8', w))).toBe(0);
      for (let g = 0; g < (rows * K) / QGROUP; g++) {
        let amax = 0, err = 0;
        for (let i = g * QGROUP; i < (g + 1) * QGROUP; i++) {
          amax = Math.max(amax, Math.abs(w[i]!));
          err = Math.max(err, Math.abs(back[i]! - w[i]!));
        }
        // d is amax / 127 rounded up to an f16 (relative step 2^-10 at most above).
        const d = (amax / 127) * (1 + 2 ** -10);
        expect(err).toBeLessThanOrEqual(d / 2 + 1e-7 * amax);
      }
    });
    it(`q4 (${rows}, ${K}): |w - w'| <= d/2 per group, unpack(pack) = roundTrip, rowBytes exact`, () => {
      const w = weights(rows * K, 3 * rows + K, 0.05);
      const packed = packQ4(w, rows, K);
      expect(packed.byteLength).toBe(formatSpec('q4').bufferBytes(rows, K));
      const back = unpackQ4(packed, rows, K);
      expect(maxAbsDiff(back, roundTrip('q4', w))).toBe(0);
      let worstRatio = 0;
      for (let g = 0; g < (rows * K) / QGROUP; g++) {
        let lo = Infinity, hi = -Infinity, err = 0;
        for (let i = g * QGROUP; i < (g + 1) * QGROUP; i++) {
          lo = Math.min(lo, w[i]!);
          hi = Math.max(hi, w[i]!);
          err = Math.max(err, Math.abs(back[i]! - w[i]!));
        }
        // m = lo rounded down and d = (hi - m) / 15 rounded up, each by at most one f16 step (2^-10 relative).
        const m = lo - Math.abs(lo) * 2 ** -10;
        const d = ((hi - m) / 15) * (1 + 2 ** -10);
        expect(err).toBeLessThanOrEqual(d / 2 + 1e-7 * Math.max(Math.abs(lo), Math.abs(hi)));
        worstRatio = Math.max(worstRatio, err / d);
      }
      expect(worstRatio).toBeGreaterThan(0.4); // the bound is tight: rounding does reach half a step
    });
  }

  it('q4 keeps the per-group min: a group offset from zero loses nothing to it', () => {
    // Values in [1.00, 1.01): a symmetric scale would spend its 16 levels on [-1.01, 1.01].
    const w = new Float32Array(64).map((_, i) => 1 + (i % 32) / 3200);
    const back = roundTrip('q4', w);
    expect(maxAbsDiff(back, w)).toBeLessThan(0.01 / 15);
  });

  it('q8 and q4 refuse K that is not a multiple of 32; the loader stores such a matrix as f16', () => {
    expect(() => packQ8(new Float32Array(2 * 48), 2, 48)).toThrow(/multiple of 32/);
    expect(() => packQ4(new Float32Array(2 * 48), 2, 48)).toThrow(/multiple of 32/);
    expect(formatSpec('q4').supports(172)).toBe(false);
    expect(storedFormat('q4', 172)).toBe('f16');
    expect(storedFormat('q8', 4096)).toBe('q8');
  });

  it('f16 octet layout round-trips exactly (K not a multiple of the 32-weight block)', () => {
    const rows = 11, K = 44;
    const w = weights(rows * K, 5, 1);
    const spec = formatSpec('f16');
    const packed = spec.pack(w, rows, K);
    expect(packed.byteLength).toBe(spec.bufferBytes(rows, K));
    expect(maxAbsDiff(spec.unpack(packed, rows, K), roundTrip('f16', w))).toBe(0);
  });

  it('q8 and q4 round trips are much closer than their bit budgets suggest only where they should be', () => {
    // RMS error relative to the RMS weight: q8 ~ 1/254 of the range per group, q4 ~ 1/30.
    const w = weights(64 * 256, 9, 1);
    const rms = (a: Float32Array, b?: Float32Array): number => Math.sqrt(a.reduce((s, v, i) => s + (v - (b?.[i] ?? 0)) ** 2, 0) / a.length);
    const r8 = rms(roundTrip('q8', w), w) / rms(w), r4 = rms(roundTrip('q4', w), w) / rms(w);
    expect(r8).toBeLessThan(0.01);
    expect(r4).toBeLessThan(0.12);
    expect(r4).toBeGreaterThan(5 * r8);
  });

  it('scales are stored as f16 (GGUF Q8_0-style d): a tiny group stays finite and accurate', () => {
    const w = new Float32Array(32).map((_, i) => (i - 16) * 1e-6);
    const back = roundTrip('q8', w);
    expect(back.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(back, w)).toBeLessThan(2e-7);
    expect(f16ToF32(new Uint16Array([0x3c00]))[0]).toBe(1); // sanity of the f16 helper the packers use
  });
});

// Every matvec design this device can run: the one it picks, and the GPU one with both reductions.
function variantsFor(c: GpuContext, format: WeightFormat): MatvecVariant[] {
  const v: MatvecVariant[] = [matvecVariant(c, format, 'split-shared')];
  if (c.hasSubgroups) v.push(matvecVariant(c, format, 'split'));
  try {
    v.push(matvecVariant(c, format, 'lanes'));
  } catch {
    // no fixed-size subgroups: the lanes design does not apply to this device
  }
  return v;
}

describe('every matvec design compiles cleanly for every format and M', () => {
  for (const format of formats) {
    it(format, async (t) => {
      if (!ctx) return t.skip();
      for (const v of variantsFor(ctx, format)) {
        for (let M = 1; M <= 4; M++) {
          await expect(getPipeline(ctx.device, `compile:matvec-${format}-${variantName(v)}-${M}`, matvecWgsl(format, M, v))).resolves.toBeDefined();
        }
      }
    });
  }
});

describe('matmul against the CPU reference on the round-tripped weights', () => {
  // (M, N, K): N not a multiple of 8 or 64; K a multiple of 32 for q8/q4 but not of their 128/256-weight
  // blocks. The device's own design runs every M; the other designs run M = 1 and 3.
  const shapes: [number, number, number][] = [[1, 37, 64], [2, 129, 96], [3, 37, 160], [4, 9, 288], [1, 300, 4096], [7, 37, 96], [70, 129, 160]];
  for (const format of formats) {
    for (const [M, N, K] of shapes) {
      it(`${format} M=${M} N=${N} K=${K}`, async (t) => {
        if (!ctx) return t.skip();
        const { device } = ctx;
        const x = randomArray(M * K, 11 + M + N, 1);
        const w = weights(N * K, 17 + K, 0.1);
        const ref = matmulRef(x, roundTrip(format, w), M, N, K);
        const ldy = N + 3;
        const resid = randomArray(M * ldy, 5, 1);
        const wb = uploadBuffer(device, 'w', formatSpec(format).pack(w, N, K));
        const runs: [string, string, [number, number]][] = [];
        if (M > 4) runs.push(['tiled', tiledWgsl(format), tiledGrid(N, M)]);
        else {
          const own = matvecVariant(ctx, format);
          for (const v of variantsFor(ctx, format)) {
            if (variantName(v) === variantName(own) || M === 1 || M === 3) runs.push([variantName(v), matvecWgsl(format, M, v), matvecGrid(v, N)]);
          }
        }
        for (const [name, code, grid] of runs) {
          const y = uploadBuffer(device, 'y', resid);
          await runKernel(ctx, code, packMatmulParams({ N, K, rowOffset: 2, ldy, accumulate: true, useOut: false }),
            [uploadBuffer(device, 'x', x), y, wb], grid, { nTokens: M });
          const got = new Float32Array(await readBuffer(device, y, 0, M * ldy * 4));
          const want = resid.slice();
          for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) want[m * ldy + 2 + n] = resid[m * ldy + 2 + n]! + ref[m * N + n]!;
          // f32 accumulation in a different order from the f64 reference: ~1e-7 relative per term.
          expect(maxAbsDiff(got, want), `${format} ${name}`).toBeLessThan(2e-5 * Math.sqrt(K));
        }
      });
    }
  }
});

describe('quantized models end to end', () => {
  // The MHA test model's hidden size (172) is not a multiple of 32: its w2 loads as f16 (storedFormat).
  for (const kind of ['mha', 'gqa'] as const) {
    for (const dtype of ['q8', 'q4'] as const) {
      it(`${kind} ${dtype}: logits of every position match the CPU oracle on the round-tripped weights`, async (t) => {
        if (!ctx) return t.skip();
        const cfg = TEST_CONFIGS[kind];
        const w = randomWeights(cfg, 4321);
        // f32 K and V: this checks the quantized matmuls against the oracle at 1e-4; an f16 cache's rounding of
        // K and V (tested in forward.test.ts against an oracle that rounds them too) adds up to ~2e-4 here.
        const model = await LlamaModel.fromProvider(memoryProvider(cfg, w), { gpu: ctx, dtype, prefillChunk: 16, maxOut: 16, kvDtype: 'f32' });
        try {
          const shapes = expectedTensors(cfg);
          const rounded = new Map([...w].map(([name, v]) => {
            const shape = shapes.get(name)!;
            return [name, shape.length === 2 ? roundTrip(storedFormat(dtype, shape[1]!) as DtypeFormat, v) : v] as const;
          }));
          expect(model.stages[0]!.weights.layers[0]!.w2.format).toBe(storedFormat(dtype, cfg.hiddenDim));
          const toks = [1, ...Array.from({ length: 23 }, (_, i) => 3 + ((i * 7919) % 31000))]; // 2 prefill chunks
          const want = new ReferenceModel(cfg, rounded).forward(toks, 0);
          const got = await model.logitsAll(toks);
          let maxErr = 0, maxRef = 0;
          for (let i = 0; i < want.length; i++) {
            maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
            maxRef = Math.max(maxRef, Math.abs(want[i]!));
          }
          // The same tolerance as the f32 model: the GPU sees exactly the round-tripped weights.
          expect(maxErr / maxRef).toBeLessThan(1e-4);
        } finally {
          model.destroy();
        }
      });
    }
  }
});

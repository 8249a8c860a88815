// GGUF block types kept native on the GPU (kernels/ggml-blocks.ts): the CPU decoders and the GPU's
// in-register decoding against the `gguf` Python package's reference dequantizer, bit for bit, on random
// blocks recorded by scripts/fixtures/ggml-blocks.py; then every matrix kernel over these formats against
// matmulRef on the decoded weights.
import { readFileSync } from 'node:fs';
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu, runKernel, uploadBuffer, storageBuffer, readBuffer, maxAbsDiff } from './helpers/gpu.ts';
import { randomArray } from './helpers/random.ts';
import { GGML_BLOCKS, decodeBlocks, type GgmlBlockType } from '../kernels/ggml-blocks.ts';
import { formatSpec, GGML_FORMATS, storedFormat } from '../kernels/weight-formats.ts';
import { embeddingWgsl, packEmbeddingParams } from '../kernels/embedding.ts';
import {
  matvecWgsl, tiledWgsl, tiledGrid, matvecGrid, packMatmulParams, matmulRef, type MatvecVariant,
} from '../kernels/matmul.ts';
import { dequantize, ggmlTypeByName } from '../checkpoint/gguf-quants.ts';

const DIR = new URL('./fixtures/ggml-blocks/', import.meta.url);
const index = JSON.parse(readFileSync(new URL('index.json', DIR), 'utf8')) as Record<GgmlBlockType, { rows: number; K: number }>;
const types = Object.keys(GGML_BLOCKS) as GgmlBlockType[];

function fixture(t: GgmlBlockType): { rows: number; K: number; bytes: Uint8Array; ref: Float32Array } {
  const { rows, K } = index[t];
  const bytes = new Uint8Array(readFileSync(new URL(`${t}.bin`, DIR)));
  const f = readFileSync(new URL(`${t}.f32`, DIR));
  const ref = new Float32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
  return { rows, K, bytes, ref };
}

/** Indices where a and b differ in their bits (so -0 != +0 and NaN payloads count). */
function bitDiffs(a: Float32Array, b: Float32Array): number[] {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) out.push(i);
  return out;
}

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

describe('CPU decoders = gguf.quants.dequantize, bit for bit', () => {
  it('every type has a recorded fixture', () => {
    expect(Object.keys(index).sort()).toEqual([...types].sort());
  });
  for (const t of types) {
    it(t, () => {
      const { rows, K, bytes, ref } = fixture(t);
      expect(bytes.byteLength).toBe(formatSpec(t).bufferBytes(rows, K));
      expect(bitDiffs(decodeBlocks(GGML_BLOCKS[t], bytes, rows * K), ref)).toEqual([]);
      // The GGUF reader's decoder is the same one (through the ggml type table).
      expect(bitDiffs(dequantize(ggmlTypeByName(t), bytes, rows * K), ref)).toEqual([]);
    });
  }
});

describe('GPU decoding in registers (loadW4, via the embedding gather) = the reference, bit for bit', () => {
  for (const t of types) {
    it(t, async (tt) => {
      if (!ctx) return tt.skip();
      const { device } = ctx;
      const { rows, K, bytes, ref } = fixture(t);
      const ids = [...Array(rows).keys()].reverse();
      const out = storageBuffer(device, 'out', rows * K * 4);
      await runKernel(ctx, embeddingWgsl(t), packEmbeddingParams(K, 0, rows),
        [uploadBuffer(device, 'ids', new Uint32Array(ids)), out, uploadBuffer(device, 'w', bytes)], [rows], { nTokens: rows });
      const got = new Float32Array(await readBuffer(device, out, 0, rows * K * 4));
      const want = new Float32Array(rows * K);
      ids.forEach((id, r) => want.set(ref.subarray(id * K, (id + 1) * K), r * K));
      expect(bitDiffs(got, want)).toEqual([]);
    });
  }
});

describe('matrix kernels over GGUF block types = matmulRef on the decoded weights', () => {
  // Every type through the lanes matvec (CPU adapters, M = 1 as in decode). The split design (GPUs) and the
  // tiled kernel share their per-type code with it (deq4) and with loadW4 (checked bit for bit above), and
  // each first dispatch compiles for seconds on lavapipe: they run on a 32- and a 256-weight type each.
  const SPLIT: GgmlBlockType[] = ['Q8_0', 'Q6_K'];
  const TILED: GgmlBlockType[] = ['Q5_1', 'Q3_K'];
  for (const t of types) {
    it(`${t}: matvec lanes M = 1${SPLIT.includes(t) ? ', split M = 3' : ''}${TILED.includes(t) ? ', tiled M = 70' : ''}`, async (tt) => {
      if (!ctx) return tt.skip();
      const { device } = ctx;
      const { rows: N, K, bytes, ref: w } = fixture(t);
      // Scale-free tolerance: the fixtures' scales span many octaves.
      const tol = (M: number, x: Float32Array): number => {
        let s = 0;
        for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) s = Math.max(s, Math.abs(x[m * K + k]! * w[n * K + k]!));
        return s * K * 2 ** -20;
      };
      const wBuf = uploadBuffer(device, 'w', bytes);
      const runs: [string, number, string, [number, number]][] = [];
      const lanes: MatvecVariant = { kind: 'lanes', sg: 8, rowsets: 1 }, split: MatvecVariant = { kind: 'split', subgroups: false };
      if (ctx.hasSubgroups) runs.push(['lanes', 1, matvecWgsl(t, 1, lanes), matvecGrid(lanes, N)]);
      if (SPLIT.includes(t) || !ctx.hasSubgroups) runs.push(['split', 3, matvecWgsl(t, 3, split), matvecGrid(split, N)]);
      if (TILED.includes(t)) runs.push(['tiled', 70, tiledWgsl(t), tiledGrid(N, 70)]);
      for (const [name, M, code, grid] of runs) {
        const x = randomArray(M * K, 5 + M, 1);
        const ref = matmulRef(x, w, M, N, K);
        const y = storageBuffer(device, 'y', M * N * 4);
        await runKernel(ctx, code, packMatmulParams({ N, K, rowOffset: 0, ldy: N, accumulate: false, useOut: false }),
          [uploadBuffer(device, 'x', x), y, wBuf], grid, { nTokens: M });
        const got = new Float32Array(await readBuffer(device, y, 0, M * N * 4));
        expect(maxAbsDiff(got, ref), `${name} M=${M}`).toBeLessThanOrEqual(tol(M, x));
      }
    });
  }
});

describe('GGUF block formats: sizes', () => {
  it('bytes are the file\'s: rows x K / BS x TS, no padding; K not a whole block falls back to f16', () => {
    for (const [t, spec] of Object.entries(GGML_FORMATS)) {
      const b = GGML_BLOCKS[t as GgmlBlockType];
      const K = Math.max(b.BS, 32) * 3;
      expect(spec.bufferBytes(5, K)).toBe((5 * K * b.TS) / b.BS);
      expect(spec.rowAlign).toBe(1);
      expect(storedFormat(t as GgmlBlockType, K)).toBe(t);
      expect(storedFormat(t as GgmlBlockType, K + 4)).toBe('f16');
      expect(() => spec.pack(new Float32Array(K), 1, K)).toThrow(/loaded as a GGUF file stores them/);
    }
  });
});

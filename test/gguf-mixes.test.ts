// The twelve GGUF file types people download, as llama.cpp's own quantizer writes them (recorded by
// scripts/fixtures/gguf-mixes.ts from a random model whose matrix dimensions are multiples of 256):
//  - `--dtype f32` of each file gives exactly llama.cpp's greedy tokens on the F32 file llama.cpp dequantized
//    from it (so every block type in the mix is decoded exactly as llama.cpp decodes it);
//  - the default load keeps every tensor in its own type on the GPU (bytes within 5% of the file's tensor
//    bytes) and gives the f32 path's logits up to summation order.
import { readFileSync } from 'node:fs';
import { describe, it, expect, beforeAll } from 'vitest';
import { collect } from './helpers/collect.ts';
import { createGpuContext, type GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { MIXES_CONFIG } from './helpers/gguf-mixes.ts';
import { fileSource } from '../checkpoint/byte-source.ts';
import { openGgufModel } from '../checkpoint/gguf-provider.ts';
import { LlamaModel } from '../runtime/model.ts';
import { expectedTensors, toGgufName } from '../checkpoint/keymap.ts';
import { writeConverted } from '../checkpoint/converted.ts';
import { openModelSource } from '../checkpoint/load.ts';
import { planModel } from '../runtime/planner.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DIR = new URL('./fixtures/gguf-mixes/', import.meta.url);
const recorded = JSON.parse(readFileSync(new URL('tokens.json', DIR), 'utf8')) as {
  prompt: number[];
  mixes: Record<string, { tokens: number[]; types: Record<string, string> }>;
};
const MIXES = ['Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'Q4_0', 'Q4_K_S', 'Q4_K_M', 'Q5_0', 'Q5_K_S', 'Q5_K_M', 'Q6_K', 'Q8_0'];

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

describe('GGUF mixes quantized by llama.cpp', () => {
  it('all twelve mixes are recorded, each with its K-quant / legacy types', () => {
    expect(Object.keys(recorded.mixes).sort()).toEqual([...MIXES].sort());
    // llama.cpp writes output.weight as Q6_K in every mix but Q8_0 (the case the issue started from).
    for (const mix of MIXES) expect(recorded.mixes[mix]!.types['output.weight']).toBe(mix === 'Q8_0' ? 'Q8_0' : 'Q6_K');
  });

  for (const mix of MIXES) {
    it(`${mix}: f32 greedy = llama.cpp; native on the GPU as stored, logits = the f32 path's`, async (t) => {
      if (!ctx) return t.skip();
      const path = new URL(`${mix}.gguf`, DIR).pathname;
      const g = await openGgufModel(await fileSource(path));
      const rec = recorded.mixes[mix]!;
      const opts = { gpu: ctx, context: 64, prefillChunk: 32, maxOut: 32 };
      const f32 = await LlamaModel.fromProvider(g.provider, { ...opts, dtype: 'f32' });
      let native: LlamaModel | null = null;
      try {
        expect(await collect(f32.generateGreedy(recorded.prompt, rec.tokens.length))).toEqual(rec.tokens);

        native = await LlamaModel.fromProvider(g.provider, opts); // the default: as stored
        const shapes = expectedTensors(MIXES_CONFIG);
        const w = native.stages[0]!.weights;
        const mats = [w.tokEmbeddings!, w.output!, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3])];
        for (const m of mats) {
          const type = rec.types[toGgufName(m.name)]!;
          expect(m.format, m.name).toBe(type === 'F32' ? 'f32' : type === 'F16' ? 'f16' : type);
        }
        let fileBytes = 0;
        for (const name of shapes.keys()) fileBytes += g.file.tensors.get(toGgufName(name))!.byteLength;
        expect(native.weightBytes / fileBytes).toBeGreaterThanOrEqual(1);
        expect(native.weightBytes / fileBytes).toBeLessThan(1.05);
        // The planner counts what was allocated, format by format.
        const plan = planModel({
          config: MIXES_CONFIG, dtype: 'native', formats: g.provider.nativeFormats, context: 64, prefillChunk: 32, maxOut: 32,
          devices: [{ memoryBytes: 2 ** 30, maxBindingBytes: ctx.maxBindingBytes, maxBufferBytes: ctx.maxBufferBytes }],
        });
        expect(plan.devices[0]!.weightBytes).toBe(native.weightBytes);

        const toks = [...recorded.prompt, ...rec.tokens];
        const want = await f32.logitsAll(toks);
        const got = await native.logitsAll(toks);
        let maxErr = 0, maxRef = 0;
        for (let i = 0; i < want.length; i++) {
          maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
          maxRef = Math.max(maxRef, Math.abs(want[i]!));
        }
        // The same weights, decoded in registers: only the order of the sums differs.
        expect(maxErr / maxRef).toBeLessThan(1e-4);
      } finally {
        f32.destroy();
        native?.destroy();
        await g.close();
      }
    });
  }

  it('convert keeps every tensor in its own type (Q4_K_M): the same blocks, loadable as stored', async () => {
    const g = await openGgufModel(await fileSource(new URL('Q4_K_M.gguf', DIR).pathname));
    const dir = await mkdtemp(join(tmpdir(), 'convert-native-'));
    try {
      await writeConverted(dir, g.provider, 'native', {});
      const c = await openModelSource(dir);
      try {
        expect(c.provider.storedFormat).toBe('native');
        expect([...c.provider.nativeFormats!]).toEqual([...g.nativeFormats]);
        expect(new Set(g.nativeFormats.values())).toEqual(new Set(['Q4_K', 'Q6_K']));
        for (const [name, f] of g.nativeFormats) {
          const [rows] = expectedTensors(MIXES_CONFIG).get(name)!;
          const a = await g.provider.readRowsPacked!(name, f, 0, rows!);
          const b = await c.provider.readRowsPacked!(name, f, 0, rows!);
          expect(a && b && Buffer.from(b).equals(Buffer.from(a)), name).toBe(true);
          // A row range of a q/k matrix (rows permuted into HF order) decodes the same from both.
          expect(await c.provider.readRowsF32(name, 64, 64)).toEqual(await g.provider.readRowsF32(name, 64, 64));
        }
      } finally {
        await c.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      await g.close();
    }
  });

  it('matrices larger than one binding split at row (block) boundaries and give the same logits', async (t) => {
    if (!ctx) return t.skip();
    // 16 KiB per binding: the Q6_K head (288 rows of 210 bytes) and every (256, 256) Q4_0 / Q4_K matrix split
    // into chunks of whole rows; Q4_0's 18-byte blocks start chunks at 2-byte-aligned rows, too.
    const small = await createGpuContext({ maxBindingBytes: 16 * 1024 });
    for (const mix of ['Q4_0', 'Q4_K_M']) {
      const g = await openGgufModel(await fileSource(new URL(`${mix}.gguf`, DIR).pathname));
      const opts = { context: 64, prefillChunk: 32, maxOut: 32 };
      const one = await LlamaModel.fromProvider(g.provider, { ...opts, gpu: ctx });
      const split = await LlamaModel.fromProvider(g.provider, { ...opts, gpu: small });
      try {
        expect(split.stages[0]!.weights.output!.chunks.length).toBe(Math.ceil(288 / Math.floor((16 * 1024) / 210)));
        expect(split.stages[0]!.weights.layers[0]!.wq.chunks.length).toBeGreaterThan(1);
        expect(split.weightBytes).toBeGreaterThanOrEqual(one.weightBytes); // chunks pad to 16 bytes
        const toks = [...recorded.prompt, ...recorded.mixes[mix]!.tokens];
        expect(await split.logitsAll(toks)).toEqual(await one.logitsAll(toks));
      } finally {
        one.destroy();
        split.destroy();
        await g.close();
      }
    }
    small.destroy();
  });
});

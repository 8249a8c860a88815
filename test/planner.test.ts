// The memory planner (runtime/planner.ts), the built-in configs and `llama2-webgpu plan` (cli/plan.ts):
// byte counts against hand-computed sums, the layer split against a brute-force search, per-buffer limits,
// suggestions found by re-planning, and on the GPU: what a sharded model really allocates equals the plan.
import { describe, it, expect, vi, afterEach } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_CONFIGS, builtinConfig } from '../checkpoint/builtin-configs.ts';
import { toHfConfig, type LlamaConfig } from '../checkpoint/config.ts';
import {
  kvLayout, parseSize, planModel, scratchBytes, weightBytes, type DeviceBudget, type PlanInput,
} from '../runtime/planner.ts';
import { runPlan } from '../cli/plan.ts';
import { createGpuContext, type GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { memoryProvider } from '../checkpoint/tensor-provider.ts';
import { LlamaModel } from '../runtime/model.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
// The WebGPU default limits (the CLI's defaults too). Every tensor here splits into chunks whose byte
// size is a multiple of 16, so no padding enters the hand-computed sums below.
const LIMITS = { maxBindingBytes: 128 * MiB, maxBufferBytes: 256 * MiB };
const dev = (memoryBytes: number, limits = LIMITS): DeviceBudget => ({ memoryBytes, ...limits });
const devs = (n: number, memoryBytes: number): DeviceBudget[] => Array.from({ length: n }, () => dev(memoryBytes));
const { 'llama-2-7b': L7, 'llama-2-13b': L13, 'llama-2-70b': L70 } = BUILTIN_CONFIGS;
// q4 and q8 are cast because kernels/weight-formats.ts gains them in a parallel change.
const Q4 = 'q4' as WeightFormat;
const Q8 = 'q8' as WeightFormat;

// Row sizes from the layouts documented in kernels/weight-formats.ts / kernels/quantize.ts: a row of K
// weights is K int8 (q8) or K/2 bytes of nibbles (q4), then K/32 f16 scales (q8) or (scale, min) f16
// pairs (q4), padded to 16 bytes.
const pad16 = (n: number): number => Math.ceil(n / 16) * 16;
const q8Row = (K: number): number => K + pad16((K / 32) * 2);
const q4Row = (K: number): number => K / 2 + pad16((K / 32) * 4);

describe('built-in configs', () => {
  it('have the published Llama-2 and TinyLlama shapes', () => {
    expect(L7).toMatchObject({ dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, headDim: 128, vocabSize: 32000, maxSeqLen: 4096, normEps: 1e-5, ropeTheta: 10000 });
    expect(L13).toMatchObject({ dim: 5120, hiddenDim: 13824, nLayers: 40, nHeads: 40, nKvHeads: 40, headDim: 128, maxSeqLen: 4096 });
    expect(L70).toMatchObject({ dim: 8192, hiddenDim: 28672, nLayers: 80, nHeads: 64, nKvHeads: 8, headDim: 128, maxSeqLen: 4096 });
    expect(BUILTIN_CONFIGS['tinyllama-1.1b']).toMatchObject({ dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, headDim: 64, maxSeqLen: 2048 });
    expect(builtinConfig('llama-2-70b')).not.toBe(L70); // a copy
    expect(builtinConfig('llama-2-70b')).toEqual(L70);
    expect(builtinConfig('llama-3-8b')).toBeNull();
    expect(builtinConfig('toString')).toBeNull();
  });
});

describe('weight bytes', () => {
  it('7B f16', () => {
    const w = weightBytes(L7, 'f16', LIMITS);
    expect(w.embedding).toBe(32000 * 4096 * 2); // 262,144,000
    expect(w.layer).toBe(4 * 4096 * 4096 * 2 + 3 * 4096 * 11008 * 2 + 2 * 4096 * 4); // wq wk wv wo, w1 w2 w3, 2 norms
    expect(w.layer).toBe(404_783_104);
    expect(w.norm).toBe(4096 * 4);
    expect(w.output).toBe(32000 * 4096 * 2);
    expect(w.embedding + 32 * w.layer + w.norm + w.output).toBe(13_477_363_712); // 12.55 GiB
  });

  it('13B f16 and f32', () => {
    const w = weightBytes(L13, 'f16', LIMITS);
    expect(w.embedding).toBe(32000 * 5120 * 2);
    expect(w.layer).toBe(4 * 5120 * 5120 * 2 + 3 * 5120 * 13824 * 2 + 2 * 5120 * 4);
    expect(2 * w.embedding + 40 * w.layer + w.norm).toBe(26_032_558_080);
    const w32 = weightBytes(L13, 'f32', LIMITS);
    expect(w32.layer).toBe(4 * 5120 * 5120 * 4 + 3 * 5120 * 13824 * 4 + 2 * 5120 * 4);
  });

  it('70B f16, with GQA: wk and wv are (1024, 8192)', () => {
    const w = weightBytes(L70, 'f16', LIMITS);
    expect(w.embedding).toBe(32000 * 8192 * 2);
    // wq (8192, 8192), wk wv (1024, 8192), wo (8192, 8192), w1 w3 (28672, 8192), w2 (8192, 28672), 2 norms
    expect(w.layer).toBe(2 * 8192 * 8192 * 2 + 2 * 1024 * 8192 * 2 + 3 * 28672 * 8192 * 2 + 2 * 8192 * 4);
    expect(2 * w.embedding + 80 * w.layer + w.norm).toBe(137_955_934_208); // 128.48 GiB
  });

  it('70B q8 and q4 from the documented row layouts', () => {
    expect([q4Row(8192), q4Row(28672), q8Row(8192), q8Row(28672)]).toEqual([4096 + 1024, 14336 + 3584, 8192 + 512, 28672 + 1792]);
    const q4 = weightBytes(L70, Q4, LIMITS);
    expect(q4.embedding).toBe(32000 * 5120);
    expect(q4.layer).toBe((8192 + 1024 + 1024 + 8192 + 2 * 28672) * 5120 + 8192 * 17920 + 2 * 8192 * 4); // wq wk wv wo w1 w3 | w2 | norms
    expect(q4.layer).toBe(534_839_296);
    expect(2 * q4.embedding + 80 * q4.layer + q4.norm).toBe(43_114_856_448); // 40.15 GiB
    const q8 = weightBytes(L70, Q8, LIMITS);
    expect(q8.layer).toBe((8192 + 1024 + 1024 + 8192 + 2 * 28672) * 8704 + 8192 * 30464 + 2 * 8192 * 4);
    expect(q8.layer).toBe(909_180_928);
  });

  it('counts whole octets of rows per chunk for the octet formats, as weights.ts allocates', () => {
    // f16 rows of 32 weights are 64 bytes, stored in octets of 8 rows; a 600-byte binding holds one octet.
    const tiny: LlamaConfig = { ...L7, dim: 32, hiddenDim: 64, nHeads: 1, nKvHeads: 1, headDim: 32, vocabSize: 10, nLayers: 1 };
    const w = weightBytes(tiny, 'f16', { maxBindingBytes: 600, maxBufferBytes: 100000 });
    expect(w.embedding).toBe(512 + 512); // (10, 32): rows 0-7, then rows 8-9 padded to a whole octet
    // wq wk wv wo (32, 32): 4 octets of 512; w1 w3 (64, 32): 8 octets of 512; w2 (32, 64): rows of 128 bytes
    // (a 1024-byte octet over the binding) -> minimal chunks of one octet each, 4 of 1024; norms 128 each.
    expect(w.layer).toBe(4 * 4 * 512 + 2 * 8 * 512 + 4 * 1024 + 2 * 128);
    // q4 cannot hold dim 30 (K % 32): the whole model is counted as f16, as weights.ts loads it.
    const odd: LlamaConfig = { ...tiny, dim: 36, headDim: 36 };
    expect(weightBytes(odd, 'q4', { maxBindingBytes: 1 << 20, maxBufferBytes: 1 << 20 })).toEqual(weightBytes(odd, 'f16', { maxBindingBytes: 1 << 20, maxBufferBytes: 1 << 20 }));
  });
});

describe('GGUF tensors as stored (dtype native)', () => {
  // llama-2-70b-chat.Q4_0.gguf as llama.cpp writes it: every matrix Q4_0 (18 bytes per 32 weights), output Q6_K
  // (210 bytes per 256). Rows are whole blocks and no chunk needs padding, so the GPU holds the file's bytes.
  const q4_0 = (rows: number, K: number): number => (rows * K * 18) / 32;
  const formats = (c: LlamaConfig, head: WeightFormat = 'Q6_K'): Map<string, WeightFormat> => {
    const m = new Map<string, WeightFormat>([['tok_embeddings', 'Q4_0'], ['output', head]]);
    for (let i = 0; i < c.nLayers; i++) for (const t of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3']) m.set(`layers.${i}.${t}`, 'Q4_0');
    return m;
  };

  it('70B Q4_0 (Q6_K head): the file\'s tensor bytes exactly, the embedding and head split across bindings', () => {
    const w = weightBytes(L70, 'native', LIMITS, formats(L70));
    expect(w.embedding).toBe(q4_0(32000, 8192)); // 147 MB: two chunks of whole rows (29127 + 2873)
    expect(w.output).toBe((32000 * 8192 * 210) / 256);
    expect(w.layer).toBe(2 * q4_0(8192, 8192) + 2 * q4_0(1024, 8192) + 3 * q4_0(28672, 8192) + 2 * 8192 * 4);
    expect(w.layers.every((b) => b === w.layer)).toBe(true);
    const total = w.embedding + 80 * w.layer + w.norm + w.output;
    expect(total).toBe(38_871_482_368); // the tensor data of TheBloke's llama-2-70b-chat.Q4_0.gguf (38.87 GB file)
    const p = planModel({ config: L70, dtype: 'native', formats: formats(L70), context: 4096, devices: devs(4, 24 * GiB) });
    expect(p.fits).toBe(true);
    expect(p.devices.reduce((a, d) => a + d.weightBytes, 0)).toBe(total);
  });

  it('mixed layers (a Q4_K_M-like mix) are counted layer by layer', () => {
    const f = formats(L7, 'Q6_K');
    f.set('layers.0.w2', 'Q6_K');
    f.set('layers.0.wv', 'Q6_K');
    const w = weightBytes(L7, 'native', LIMITS, f);
    const q6 = (rows: number, K: number): number => (rows * K * 210) / 256;
    expect(w.layers[0]! - w.layers[1]!).toBe(q6(4096, 11008) - q4_0(4096, 11008) + q6(4096, 4096) - q4_0(4096, 4096));
    expect(w.layer).toBe(w.layers[0]);
    const p = planModel({ config: L7, dtype: 'native', formats: f, context: 512, devices: devs(2, 8 * GiB) });
    expect(p.devices.reduce((a, d) => a + d.weightBytes, 0)).toBe(w.embedding + w.layers.reduce((a, b) => a + b, 0) + w.norm + w.output);
    expect(() => planModel({ config: L7, dtype: 'native', context: 512, devices: devs(1, 8 * GiB) })).toThrow(/needs the model's stored formats/);
  });
});

describe('KV cache and scratch', () => {
  it('KV bytes per position per layer: f16 (default) or f32 K and V of nKvHeads * headDim', () => {
    expect(kvLayout(L7, 4096).bytesPerTokenPerLayer).toBe(2 * 4096 * 2); // 16 KiB
    expect(kvLayout(L70, 4096).bytesPerTokenPerLayer).toBe(2 * 1024 * 2); // 4 KiB: 8 kv heads x 128
    expect(kvLayout(L70, 4096).totalBytes).toBe(1.25 * GiB); // 70B at 4096 positions, f16
    expect(kvLayout(L7, 4096, undefined, undefined, undefined, 'f32').bytesPerTokenPerLayer).toBe(2 * 4096 * 4); // 32 KiB
    expect(kvLayout(L13, 4096, undefined, undefined, undefined, 'f32').bytesPerTokenPerLayer).toBe(2 * 5120 * 4); // 40 KiB
    expect(kvLayout(L70, 4096, undefined, undefined, undefined, 'f32').bytesPerTokenPerLayer).toBe(2 * 1024 * 4); // 8 KiB: 8 kv heads x 128
    expect(kvLayout(BUILTIN_CONFIGS['tinyllama-1.1b'], 2048, undefined, undefined, undefined, 'f32').bytesPerTokenPerLayer).toBe(2 * 256 * 4);
    const kv = kvLayout(L70, 4096, undefined, undefined, undefined, 'f32');
    expect(kv).toMatchObject({ nBlocks: 256, positions: 4096, bufferBytes: 4096 * 1024 * 4, layerBytes: 2 * 4096 * 1024 * 4 });
    expect(kv.totalBytes).toBe(80 * 2 * 4096 * 1024 * 4); // 2.5 GiB
    expect(kvLayout(L70, 100).positions).toBe(112); // whole blocks of 16
  });

  it('a KV budget buys whole blocks (16 positions, every layer, K and V)', () => {
    const block = 2 * 80 * 16 * 1024 * 4; // 70B: 10 MiB
    expect(kvLayout(L70, 4096, 5 * block + block - 1, 1, 16, 'f32').nBlocks).toBe(5);
    expect(kvLayout(L70, 4096, 8 * GiB, 1, 16, 'f32').positions).toBe(Math.floor((8 * GiB) / block) * 16);
    expect(() => kvLayout(L70, 4096, block - 1, 1, 16, 'f32')).toThrow(/less than one block/);
    expect(kvLayout(L70, 4096, 5 * block + block - 1).nBlocks).toBe(11); // f16: a block is half the bytes
  });

  it('scratch: RunState of forward.ts plus the read-back staging of model.ts', () => {
    // 70B, prefill chunk 128, maxOut 8, context 4096.
    const T = 128, O = 8;
    const runState = 16 + 3 * T * 4 + 256 * 4 + 4096 * 128 * 4 // step, ids pos slot, block table, rope (cos, sin)
      + 2 * T * 8192 * 4 + 2 * T * 8192 * 4 + 2 * T * 1024 * 4 + 3 * T * 28672 * 4 // x xb, q (in qkv) att, k v (in qkv), hb, hb2 (gate | up)
      + 2 * O * 8192 * 4 + O * 32000 * 4 + O * 4 // xOut xOutNorm, logits, best
      + 1 * 64 * 16 * (4 + 128) * 4; // attPart: split attention of one decode row, 64 heads, 4096 / 256 splits
    expect(runState).toBe(66_054_704);
    // staging x; 16-byte logits/best stubs and resident-token ring stubs off the head of a sharded model
    expect(scratchBytes(L70, 4096, { head: false, devices: 2 })).toBe(runState + T * 8192 * 4 + 16 + 16 + 2 * 16);
    expect(scratchBytes(L70, 4096, { head: true, devices: 2 })).toBe(runState + T * 8192 * 4 + O * 32000 * 4 + O * 4 + 2 * 16); // x, logits, best
    // One device: also the ring of two buffers of 8 resident steps' ids (RUNTIME_DEFAULTS.residentSteps)
    expect(scratchBytes(L70, 4096, { head: true, devices: 1 })).toBe(runState + T * 8192 * 4 + O * 32000 * 4 + O * 4 + 2 * 8 * O * 4);
  });
});

describe('planModel', () => {
  // With the f32 KV cache (the f16 default is checked at the end).
  const base = (over: Partial<PlanInput>): PlanInput => ({ config: L70, dtype: Q4, context: 4096, devices: devs(1, 80 * GiB), kvDtype: 'f32', ...over });
  // 70B q4 at 4096: per layer 534,839,296 weight bytes + 33,554,432 KV bytes; embedding and output 163,840,000;
  // scratch 70,249,072 (71,273,072 on the last device, which also reads back the logits), staging included.
  const layer = 534_839_296 + 33_554_432;

  it('70B q4, context 4096, on 4 x 24 GiB: 20 layers each', () => {
    const p = planModel(base({ devices: devs(4, 24 * GiB) }));
    expect(p.fits).toBe(true);
    expect(p.devices.map((d) => d.layers)).toEqual([[0, 19], [20, 39], [40, 59], [60, 79]]);
    expect(p.devices.map((d) => [d.embedding, d.head])).toEqual([[true, false], [false, false], [false, false], [false, true]]);
    expect(p.devices.map((d) => d.bytes)).toEqual([
      163_840_000 + 20 * layer + 70_249_072,
      20 * layer + 70_249_072,
      20 * layer + 70_249_072,
      163_840_000 + 8192 * 4 + 20 * layer + 71_273_072,
    ]);
    expect(p.devices[0]!.kvBytes).toBe(20 * 2 * 4096 * 1024 * 4);
    expect(p.totalBytes).toBe(43_114_856_448 + 2.5 * GiB + 3 * 70_249_072 + 71_273_072);
    expect(p.shortfallBytes).toBe(0);
    expect(p.suggestions).toEqual([]);
    expect(p.message).toMatch(/^fits: 42\.92 GiB .*device 0: layers 0-19 \+ embedding, 10\.81 GiB of 24\.00 GiB \(45\.0%\)/);
  });

  it('70B q4, context 4096, on 2 x 48 GiB: 40 layers each', () => {
    const p = planModel(base({ devices: devs(2, 48 * GiB) }));
    expect(p.fits).toBe(true);
    expect(p.devices.map((d) => d.layers)).toEqual([[0, 39], [40, 79]]);
    expect(p.devices.map((d) => d.bytes)).toEqual([163_840_000 + 40 * layer + 70_249_072, 163_840_000 + 8192 * 4 + 40 * layer + 71_273_072]);
  });

  it('unequal devices: the split minimises the largest load / memory (32 GiB + 16 GiB: 54 + 26 layers)', () => {
    // 54 layers: (163,840,000 + 55,028,304 + 54 L) / 32 GiB = 0.900 and (163,872,768 + 56,052,304 + 26 L) / 16 GiB = 0.873;
    // 53 would put 0.906 on the second device, 55 0.916 on the first.
    const p = planModel(base({ devices: [dev(32 * GiB), dev(16 * GiB)] }));
    expect(p.devices.map((d) => d.layers)).toEqual([[0, 53], [54, 79]]);
    expect(p.devices[0]!.bytes).toBe(163_840_000 + 70_249_072 + 54 * layer);
  });

  it('the split is optimal: brute force over every split of 3 unequal devices', () => {
    for (const mems of [[20, 12, 16], [8, 30, 9], [14, 14, 14], [40, 3, 6]]) {
      const devices = mems.map((m) => dev(m * GiB));
      const p = planModel(base({ devices }));
      const fixed = [163_840_000 + 70_249_072, 70_249_072, 163_840_000 + 8192 * 4 + 71_273_072];
      const ratio = (ks: number[]): number => Math.max(...ks.map((k, i) => (fixed[i]! + k * layer) / devices[i]!.memoryBytes));
      let best = Infinity;
      for (let a = 1; a <= 78; a++) for (let b = 1; a + b <= 79; b++) best = Math.min(best, ratio([a, b, 80 - a - b]));
      const got = ratio(p.devices.map((d) => d.layers[1] - d.layers[0] + 1));
      expect(got).toBeCloseTo(best, 12);
      expect(p.fits).toBe(got <= 1);
    }
  });

  it('70B f16 on 2 x 24 GiB does not fit: by how much, and what would', () => {
    const p = planModel(base({ dtype: 'f16', devices: devs(2, 24 * GiB) }));
    expect(p.fits).toBe(false);
    const f16Layer = 1_711_341_568 + 33_554_432;
    const need = [524_288_000 + 40 * f16Layer + 70_249_072, 524_288_000 + 8192 * 4 + 40 * f16Layer + 71_273_072];
    expect(p.devices.map((d) => d.bytes)).toEqual(need);
    expect(p.shortfallBytes).toBe(need[0]! + need[1]! - 2 * 24 * GiB); // 83.11 GiB
    // 6 x 24 GiB holds 131 GiB; q8 (68.3 GiB of weights) misses 3 devices by 18 MB; q4 fits the two as they are.
    expect(p.suggestions).toEqual([
      'fits with 6 devices of 24.00 GiB (--devices 6)',
      'fits with --dtype q8 on 4 devices of 24.00 GiB (--devices 4)',
      'fits with --dtype q4',
    ]);
    expect(p.message).toContain('does not fit: needs 131.11 GiB');
    expect(p.message).toContain('83.11 GiB more than the devices hold');
    expect(p.message).toContain('Would fit: fits with 6 devices');
    // The suggestions hold: re-planning with them fits.
    expect(planModel(base({ dtype: 'f16', devices: devs(6, 24 * GiB) })).fits).toBe(true);
    expect(planModel(base({ dtype: 'f16', devices: devs(5, 24 * GiB) })).fits).toBe(false);
    expect(planModel(base({ dtype: Q8, devices: devs(3, 24 * GiB) })).fits).toBe(false);
    expect(planModel(base({ dtype: Q8, devices: devs(4, 24 * GiB) })).fits).toBe(true);
  });

  it('suggests the largest context that fits (7B f16 on one 16 GiB device)', () => {
    // Fixed: 13,477,363,712 weights + 28,264,016 + 5,636,096 (hb2: gate | up) scratch; per position 32 layers x 32 KiB KV + 512 bytes of rope
    // table: 3,674,241,456 bytes of room hold 3488 positions (whole blocks of 16), not 3504.
    const p7 = (context: number) => planModel({ config: L7, dtype: 'f16', context, devices: [dev(16 * GiB)], kvDtype: 'f32' });
    expect(p7(3488).fits).toBe(true);
    expect(p7(3504).fits).toBe(false);
    // + the split attention's partials: one decode row, 32 heads, ceil(3504 / 256) = 14 splits of (4 + 128) f32
    // + the ring of two staging buffers for 8 resident decode steps of 8 ids (one device)
    expect(p7(3504).shortfallBytes).toBe(13_477_363_712 + 28_264_016 + 128 * 11008 * 4 + 3504 * (32 * 32768 + 512) + 880 + 32 * 14 * 132 * 4 + 2 * 8 * 8 * 4 - 16 * GiB);
    expect(p7(4096).suggestions).toContain('fits with --context 3328'); // 3488 rounded down to a multiple of 256
  });

  it('with a KV budget, suggests the largest budget that fits', () => {
    const p = planModel({ config: L7, dtype: 'f16', context: 4096, devices: [dev(16 * GiB)], kvBudgetBytes: 8 * GiB, kvDtype: 'f32' });
    expect(p.fits).toBe(false);
    // 7B: a block of 16 positions is 16 MiB; room as above less the 4096-context rope table and block table.
    expect(p.suggestions).toContain('fits with --kv-budget 3488MiB (3488 positions)');
  });

  it("a layer's K cache over the binding limit fails whatever the memory, naming the limit", () => {
    const small = { maxBindingBytes: 32 * MiB, maxBufferBytes: 256 * MiB };
    const p = planModel({ config: L7, dtype: 'f32', context: 4096, devices: [dev(1000 * GiB, small)], kvDtype: 'f32' });
    expect(p.fits).toBe(false);
    expect(p.shortfallBytes).toBe(0);
    expect(p.violations).toEqual([
      `one layer's K cache (and its V cache): 4096 positions x 4096 x f32, is ${64 * MiB} bytes, over the storage binding limit (maxStorageBufferBindingSize) of ${32 * MiB} bytes`,
    ]);
    expect(p.suggestions).toContain('fits with --context 2048'); // 2048 x 4096 x 4 = 32 MiB
    expect(p.message).toContain('maxStorageBufferBindingSize');
    // The buffer-size limit, when it is the smaller one, is named instead.
    const q = planModel({ config: L7, dtype: 'f32', context: 4096, kvDtype: 'f32', devices: devs(2, 1000 * GiB).map((d) => ({ ...d, maxBindingBytes: 1 * GiB, maxBufferBytes: 48 * MiB })) });
    expect(q.violations).toEqual([`devices 0, 1: one layer's K cache (and its V cache): 4096 positions x 4096 x f32, is ${64 * MiB} bytes, over the buffer size limit (maxBufferSize) of ${48 * MiB} bytes`]);
  });

  it('a weight row over the binding limit fails, and nothing simple fixes a 16 KiB binding', () => {
    const p = planModel({ config: L7, dtype: 'f16', context: 64, prefillChunk: 1, maxOut: 1, devices: [dev(1000 * GiB, { maxBindingBytes: 16384, maxBufferBytes: 16384 })] });
    expect(p.fits).toBe(false);
    // w2 rows are 11008 x 2 = 22016 bytes; rows of 4096 (8192 bytes) fit.
    expect(p.violations).toContain('one f16 weight row of 11008 columns (w2) is 22016 bytes, over the storage binding limit (maxStorageBufferBindingSize) of 16384 bytes');
    expect(p.violations.some((v) => v.includes('4096 columns'))).toBe(false);
    expect(p.violations).toContain('scratch buffer logits is 128000 bytes, over the storage binding limit (maxStorageBufferBindingSize) of 16384 bytes');
    expect(p.suggestions).toEqual([]);
    expect(p.message).toContain('No single change found that fits');
  });

  it('tied embeddings: one copy on one device, a second on the head device when sharded', () => {
    const tied: LlamaConfig = { ...BUILTIN_CONFIGS['tinyllama-1.1b'], tieWordEmbeddings: true };
    const emb = 32000 * 2048 * 2;
    const one = planModel({ config: tied, dtype: 'f16', context: 2048, devices: [dev(8 * GiB)] });
    const two = planModel({ config: tied, dtype: 'f16', context: 2048, devices: devs(2, 8 * GiB) });
    const w = weightBytes(tied, 'f16', LIMITS);
    expect(one.devices[0]!.weightBytes).toBe(emb + 22 * w.layer + 2048 * 4);
    expect(two.devices[1]!.weightBytes - (two.devices[1]!.layers[1] - two.devices[1]!.layers[0] + 1) * w.layer).toBe(emb + 2048 * 4);
  });

  it('rejects invalid input', () => {
    expect(() => planModel(base({ context: 4097 }))).toThrow(/between 1 and the model's max_position_embeddings \(4096\)/);
    expect(() => planModel(base({ devices: [] }))).toThrow(/no devices/);
    expect(() => planModel(base({ devices: devs(81, GiB) }))).toThrow(/81 devices for 80 layers/);
    expect(() => planModel(base({ devices: [dev(0)] }))).toThrow(/memoryBytes must be a positive/);
    expect(() => planModel(base({ dtype: 'q3' as WeightFormat }))).toThrow(/unknown weight format "q3"/);
  });
});

describe('parseSize', () => {
  it('reads binary and decimal units and plain bytes', () => {
    expect(parseSize('24GiB')).toBe(24 * 2 ** 30);
    expect(parseSize('48GB')).toBe(48e9);
    expect(parseSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseSize('1.5GiB')).toBe(1_610_612_736);
    expect(parseSize(' 2 gib ')).toBe(2 * 2 ** 30);
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('1TB')).toBe(1e12);
    expect(parseSize('1000')).toBe(1000);
    expect(parseSize('7B')).toBe(7);
    expect(parseSize(4096)).toBe(4096);
  });
  it('rejects what it cannot read', () => {
    for (const bad of ['', '24XB', '-1GiB', '1.5', 'GiB', '24 G', '1e9']) expect(() => parseSize(bad), bad).toThrow(/invalid size/);
    expect(() => parseSize(1.5)).toThrow(/whole number/);
  });
});

describe('llama2-webgpu plan', () => {
  let out = '';
  let err = '';
  const capture = (): void => {
    out = '';
    err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  };
  afterEach(() => vi.restoreAllMocks());
  const lastJson = (): { fits: boolean; devices: { layers: [number, number]; bytes: number }[]; suggestions: string[] } =>
    JSON.parse(out.trimEnd().split('\n').at(-1)!);

  it('70B q4 on 4 x 24 GiB: a table per device, exit 0, JSON on the last line', async () => {
    capture();
    const code = await runPlan(['--model', 'llama-2-70b', '--dtype', 'q4', '--context', '4096', '--devices', '4', '--device-memory', '24GiB', '--kv-dtype', 'f32', '--json']);
    vi.restoreAllMocks();
    console.log(out);
    expect(code).toBe(0);
    expect(out).toContain('llama-2-70b, q4 weights, context 4096, 4 devices (128MiB per binding, 256MiB per buffer)');
    expect(out).toContain('KV cache: 4096 positions x 8 KiB per position per layer (f32 K and V) = 2.50 GiB');
    expect(out).toMatch(/^ +0 {2}0-19 {4}embedding {4}10\.11 GiB {2}0\.63 GiB {2}0\.07 GiB {2}10\.81 GiB {2}24\.00 GiB {2}45\.0%$/m);
    expect(out).toMatch(/^ +3 {2}60-79 {3}norm\+output .* 10\.81 GiB {2}24\.00 GiB {2}45\.0%$/m);
    expect(out).toMatch(/^fits$/m);
    const j = lastJson();
    expect(Object.keys(j).slice(0, 2)).toEqual(['fits', 'devices']);
    expect(j.fits).toBe(true);
    expect(j.devices.map((d) => d.layers)).toEqual([[0, 19], [20, 39], [40, 59], [60, 79]]);
    expect(j.devices[1]!.bytes).toBe(20 * (534_839_296 + 33_554_432) + 70_249_072);
  });

  it('the default KV cache is f16: 70B at 4096 positions needs 1.25 GiB', async () => {
    capture();
    const code = await runPlan(['--model', 'llama-2-70b', '--dtype', 'q4', '--context', '4096', '--devices', '2', '--device-memory', '48GiB']);
    vi.restoreAllMocks();
    expect(code).toBe(0);
    expect(out).toContain('KV cache: 4096 positions x 4 KiB per position per layer (f16 K and V) = 1.25 GiB');
    expect(out).toMatch(/^ +1 {2}40-79 {3}norm\+output {2}20\.08 GiB {2}0\.63 GiB {2}0\.07 GiB {2}20\.77 GiB {2}48\.00 GiB {2}43\.3%$/m);
  });

  it('70B q4 on 2 x 48 GiB fits', async () => {
    capture();
    const code = await runPlan(['--model', 'llama-2-70b', '--dtype', 'q4', '--context', '4096', '--devices', '2', '--device-memory', '48GiB', '--kv-dtype', 'f32']);
    vi.restoreAllMocks();
    console.log(out);
    expect(code).toBe(0);
    expect(out).toMatch(/^ +1 {2}40-79 {3}norm\+output {2}20\.08 GiB {2}1\.25 GiB {2}0\.07 GiB {2}21\.39 GiB {2}48\.00 GiB {2}44\.6%$/m);
  });

  it('a plan that does not fit: exit 3, the shortfall and the suggestions', async () => {
    capture();
    const code = await runPlan(['--model', 'llama-2-70b', '--dtype', 'f16', '--devices', '2', '--device-memory', '24GiB', '--kv-dtype', 'f32', '--json']);
    vi.restoreAllMocks();
    expect(code).toBe(3);
    expect(out).toContain('does not fit: 83.11 GiB more than the devices hold\nwould fit:\n  - fits with 6 devices of 24.00 GiB (--devices 6)\n');
    expect(out).toContain('  - fits with --dtype q4\n');
    expect(lastJson().fits).toBe(false);
  });

  it('--model DIR reads config.json; sizes per device', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'plan-'));
    try {
      await writeFile(join(dir, 'config.json'), JSON.stringify(toHfConfig(L7)));
      capture();
      const code = await runPlan(['--model', dir, '--device-memory', '24GiB,8GiB', '--json']);
      vi.restoreAllMocks();
      expect(code).toBe(0);
      const want = planModel({ config: L7, dtype: 'f16', context: 4096, devices: [dev(24 * GiB), dev(8 * GiB)] });
      expect(lastJson().devices).toEqual(want.devices);
      expect(want.devices[1]!.memoryBytes).toBe(8 * GiB);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const [args, msg] of [
    [['--device-memory', '24GiB'], /--model is required/],
    [['--model', 'llama-2-70b'], /--device-memory is required/],
    [['--model', 'llama-2-70b', '--device-memory', '24XB'], /--device-memory: invalid size "24XB"/],
    [['--model', 'llama-2-70b', '--device-memory', '24GiB', '--context', '5000'], /--context must be an integer in \[1, 4096\]/],
    [['--model', 'llama-2-70b', '--device-memory', '24GiB', '--dtype', 'q3'], /--dtype must be one of q4, q8, f16, f32/],
    [['--model', 'llama-2-70b', '--device-memory', '24GiB,8GiB', '--devices', '3'], /2 sizes for --devices 3/],
    [['--model', 'no-such-model', '--device-memory', '24GiB'], /neither a built-in config \(llama-2-7b, llama-2-13b, llama-2-70b, tinyllama-1.1b\) nor a directory/],
    [['--model', 'llama-2-70b', '--device-memory', '24GiB', '--kv-budget', '1MiB'], /less than one block/],
    [['--model', 'llama-2-70b', '--device-memory', '24GiB', '--frobnicate'], /unknown option --frobnicate/],
  ] as [string[], RegExp][]) {
    it(`usage error, exit 2: ${args.join(' ')}`, async () => {
      capture();
      const code = await runPlan(args);
      vi.restoreAllMocks();
      expect(code).toBe(2);
      expect(err).toMatch(msg);
      expect(err).toContain('Run "llama2-webgpu plan --help" for usage.');
      expect(out).toBe('');
    });
  }
});

describe('the plan is what a sharded model allocates (GPU)', () => {
  it('weights, KV cache and scratch of each device, with chunk padding', async (t) => {
    const base = await testGpu();
    if (!base) return t.skip();
    // f16, a 9984-byte binding cap: w2 rows of 172 weights (padded to 192: 384 bytes) go in whole octets of
    // 8 rows, 24 rows per chunk: 24 + 24 + 16 (the last octets whole); the (300, 64) embedding 72 rows per chunk.
    const cfg: LlamaConfig = { ...TEST_CONFIGS.mha, nLayers: 5, vocabSize: 300 };
    const gpus: GpuContext[] = [];
    for (let i = 0; i < 3; i++) gpus.push(await createGpuContext({ maxBindingBytes: 10000 }));
    // prefillChunk 7: hb2 (7 rows of gate | up, 2 x 172 f32) stays under the 9984-byte binding cap.
    const opts = { context: 32, prefillChunk: 7, maxOut: 8 };
    // Unequal memories: the middle device takes fewer layers.
    const budgets = [600_000, 300_000, 600_000].map((m, i) => ({ memoryBytes: m, maxBindingBytes: gpus[i]!.maxBindingBytes, maxBufferBytes: gpus[i]!.maxBufferBytes }));
    const plan = planModel({ config: cfg, dtype: 'f16', devices: budgets, ...opts });
    expect(plan.fits).toBe(true);
    expect(gpus[0]!.maxBindingBytes).toBe(9984);
    const model = await LlamaModel.fromProvider(memoryProvider(cfg, randomWeights(cfg, 3)), {
      gpus, dtype: 'f16', ...opts, layerSplit: plan.devices.map((d) => d.layers),
    });
    try {
      expect(plan.devices.map((d) => d.layers[1] - d.layers[0] + 1)).toEqual([2, 1, 2]);
      model.stages.forEach((st, i) => {
        const d = plan.devices[i]!;
        const rs = st.fwd.rs;
        const kv = [...rs.kCache, ...rs.vCache].reduce((a, b) => a + b.size, 0);
        const scratch = Object.values(rs).filter((b): b is GPUBuffer => !Array.isArray(b)).reduce((a, b) => a + b.size, 0)
          + st.stagingX.size + st.stagingLogits.size + st.stagingBest.size + st.stagingIds.reduce((a, b) => a + b.size, 0);
        expect({ weights: st.weights.bytes, kv, scratch }).toEqual({ weights: d.weightBytes, kv: d.kvBytes, scratch: d.scratchBytes });
      });
      const w2 = model.stages[0]!.weights.layers[0]!.w2;
      expect(w2.chunks.map((c) => [c.rows, c.buffer.size])).toEqual([[24, 9216], [24, 9216], [16, 6144]]);
    } finally {
      model.destroy();
      gpus.forEach((g) => g.destroy());
    }
  });
});

// `llama2-webgpu bench host`: what the host spends on one decode step, for Llama-2-7B's and 70B's layer
// structure. A decode step's GPU work streams the weights in milliseconds on a fast GPU, so the host's
// recording (command encoder + compute pass + finish) and submit time per token matter as much.
//
// Recording and submitting cost depend on the number of dispatches, pipelines and bind groups, not on the
// tensor sizes. So the forward pass built here has the real model's structure (layers, heads, weight
// formats and the number of row-chunks each real matrix is split into on this adapter) but small
// dimensions (dim 256, tiny vocabulary) and zero weights: the GPU's share of a step stays negligible on a
// software adapter, and the numbers are the host's. The forward pass is the runtime's own (createForward
// / encodeForward), so the counts are those of a real decode step.

import { createGpuContext, type GpuContext } from '../runtime/device.ts';
import { builtinConfig } from '../checkpoint/builtin-configs.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { rowsPerChunk, type GpuWeights, type WeightMatrix, type LayerWeights } from '../runtime/weights.ts';
import { createForward, destroyForward, encodeForward, type Forward } from '../runtime/forward.ts';
import { formatSpec, storedFormat, type WeightFormat } from '../kernels/weight-formats.ts';
import { packParams, storageBuffer } from '../kernels/common.ts';
import { decodeCurve } from './decode-curve.ts';

export const BENCH_HOST_HELP = `llama2-webgpu bench host [--json] [--iterations N] [--models 7b:f16,70b:q4] [--unfused]
  Host cost of one decode step (batch 1) on Llama-2-7B's and 70B's layer structure: dispatches per step and per
  layer, setPipeline/setBindGroup calls, and recording (encoder + pass + finish) and submit time per step and
  per layer (medians over the steps). Dimensions are shrunk (recording does not depend on them) so the GPU's work is negligible. With
  --json one object per line with model, dtype, fused, layers, dispatches_per_step, dispatches_per_layer,
  encode_us_per_layer, encode_us_per_step, submit_us_per_step, host_us_per_step. --unfused: first a row with the
  separate norm, rope_kv and swiglu kernels (the decode step before they were fused), then the fused one.
llama2-webgpu bench host --decode-curve [--json] [--positions 63,255,1023,2047,4095] [--steps N] [--kv-dtype f16|f32]
  Decode ms/token at each position of one sequence on the tiny random model's shape with a 4096-position context.`;

export interface HostBenchRow {
  model: string;
  dtype: WeightFormat;
  fused: boolean; // the fused decode dispatches (false: --unfused, the separate norm/rope_kv/swiglu kernels)
  layers: number;
  dispatches_per_step: number;
  dispatches_per_layer: number;
  set_pipeline_per_step: number;
  set_bind_group_per_step: number;
  encode_us_per_step: number;
  encode_us_per_layer: number;
  submit_us_per_step: number;
  host_us_per_step: number;
}

interface Counts {
  dispatches: number;
  setPipeline: number;
  setBindGroup: number;
}

/** A command encoder stand-in that counts what encodeForward records (nothing reaches the GPU). */
function countingEncoder(): { enc: GPUCommandEncoder; counts: Counts } {
  const counts: Counts = { dispatches: 0, setPipeline: 0, setBindGroup: 0 };
  const pass = {
    setPipeline: () => void counts.setPipeline++,
    setBindGroup: () => void counts.setBindGroup++,
    dispatchWorkgroups: () => void counts.dispatches++,
    dispatchWorkgroupsIndirect: () => void counts.dispatches++,
    end: () => undefined,
  };
  const enc = { beginComputePass: () => pass, copyBufferToBuffer: () => undefined, clearBuffer: () => undefined };
  return { enc: enc as unknown as GPUCommandEncoder, counts };
}

/**
 * Weights of `small` (zeros) whose matrices are split into as many row-chunks as `real`'s would be on
 * this adapter, so the forward pass has the real model's dispatches.
 */
export function structuralWeights(ctx: GpuContext, real: LlamaConfig, small: LlamaConfig, format: WeightFormat): GpuWeights {
  let bytes = 0;
  const matrix = (name: string, realRows: number, realCols: number, rows: number, cols: number): WeightMatrix => {
    const realSpec = formatSpec(storedFormat(format, realCols));
    const nChunks = Math.ceil(realRows / rowsPerChunk(ctx, realSpec.rowBytes(realCols), realSpec.rowAlign));
    const fmt = storedFormat(format, cols);
    const spec = formatSpec(fmt);
    const per = Math.ceil(rows / nChunks / spec.rowAlign) * spec.rowAlign;
    if (per * (nChunks - 1) >= rows) throw new Error(`${name}: ${rows} rows cannot make ${nChunks} chunks`);
    const chunks = [];
    for (let r0 = 0; r0 < rows; r0 += per) {
      const n = Math.min(per, rows - r0);
      const buffer = storageBuffer(ctx.device, `${name}[${r0}]`, spec.bufferBytes(n, cols));
      bytes += buffer.size;
      chunks.push({ buffer, rowStart: r0, rows: n });
    }
    return { name, format: fmt, rows, cols, chunks };
  };
  const vector = (n: number) => {
    const b = ctx.device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, mappedAtCreation: true });
    new Float32Array(b.getMappedRange()).fill(1);
    b.unmap();
    return b;
  };
  const R = real, S = small;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < S.nLayers; l++) {
    layers.push({
      attentionNorm: vector(S.dim),
      wq: matrix(`${l}.wq`, R.nHeads * R.headDim, R.dim, S.nHeads * S.headDim, S.dim),
      wk: matrix(`${l}.wk`, R.nKvHeads * R.headDim, R.dim, S.nKvHeads * S.headDim, S.dim),
      wv: matrix(`${l}.wv`, R.nKvHeads * R.headDim, R.dim, S.nKvHeads * S.headDim, S.dim),
      wo: matrix(`${l}.wo`, R.dim, R.nHeads * R.headDim, S.dim, S.nHeads * S.headDim),
      ffnNorm: vector(S.dim),
      w1: matrix(`${l}.w1`, R.hiddenDim, R.dim, S.hiddenDim, S.dim),
      w2: matrix(`${l}.w2`, R.dim, R.hiddenDim, S.dim, S.hiddenDim),
      w3: matrix(`${l}.w3`, R.hiddenDim, R.dim, S.hiddenDim, S.dim),
    });
  }
  return {
    format,
    part: { firstLayer: 0, lastLayer: S.nLayers - 1, embedding: true, head: true },
    tokEmbeddings: matrix('tok_embeddings', R.vocabSize, R.dim, S.vocabSize, S.dim),
    layers,
    norm: vector(S.dim),
    output: matrix('output', R.vocabSize, R.dim, S.vocabSize, S.dim),
    bytes,
  };
}

/** The shrunk config: the real layer count and heads, dim 256, a 512-token vocabulary. */
export function structuralConfig(real: LlamaConfig): LlamaConfig {
  const dim = 256;
  const headDim = Math.max(4, dim / real.nHeads);
  return { ...real, dim: headDim * real.nHeads, hiddenDim: 512, headDim, vocabSize: 512, maxSeqLen: 64 };
}

function countStep(f: Forward): Counts {
  const { enc, counts } = countingEncoder();
  encodeForward(f, enc, 1, [0], 'decode');
  return counts;
}

/**
 * Recording (encoder + pass + finish) and submit time of a decode step of each forward pass, in µs, the passes
 * alternating step by step (so that a slow phase of a shared machine hits them alike); medians over the steps,
 * since on a shared machine a few steps stall.
 */
async function timeSteps(ctx: GpuContext, fs: Forward[], iterations: number): Promise<{ encodeUs: number; submitUs: number }[]> {
  const { device } = ctx;
  const stepInfo = packParams([[1, 'u32'], [1, 'u32'], [0, 'u32'], [0, 'u32']]);
  const zeros = new Uint32Array(1);
  const encode: number[][] = fs.map(() => []);
  const submit: number[][] = fs.map(() => []);
  for (let i = -3; i < iterations; i++) {
    for (let k = 0; k < fs.length; k++) {
      const f = fs[k]!;
      const t0 = performance.now();
      const enc = device.createCommandEncoder();
      encodeForward(f, enc, 1, [0], 'decode');
      const cb = enc.finish();
      const t1 = performance.now();
      // What model.step writes per decode step, then the submit.
      device.queue.writeBuffer(f.rs.ids, 0, zeros);
      device.queue.writeBuffer(f.rs.pos, 0, zeros);
      device.queue.writeBuffer(f.rs.slot, 0, zeros);
      device.queue.writeBuffer(f.rs.step, 0, stepInfo);
      device.queue.submit([cb]);
      const t2 = performance.now();
      await device.queue.onSubmittedWorkDone();
      // A software adapter's worker threads wind down after the work; on 2 cores they would share the CPU with
      // the next step's recording (a GPU's do not).
      await new Promise((r) => setTimeout(r, 5));
      if (i >= 0) {
        encode[k]!.push(t1 - t0);
        submit[k]!.push(t2 - t1);
      }
    }
  }
  const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2; };
  return fs.map((_, k) => ({ encodeUs: median(encode[k]!) * 1000, submitUs: median(submit[k]!) * 1000 }));
}

export async function benchHost(ctx: GpuContext, model: string, format: WeightFormat, iterations: number, fused = true): Promise<HostBenchRow> {
  const real = builtinConfig(model);
  if (!real) throw new Error(`unknown model ${model}`);
  const small = structuralConfig(real);
  const w = structuralWeights(ctx, real, small, format);
  // Fuse wq|wk|wv exactly when the real matrices would fit one binding on this adapter, and split the fused
  // w1|w3 into as many chunks as the real one needs.
  const realChunks = (kind: 'qkv' | 'gate_up'): number => {
    const rows = kind === 'qkv' ? (real.nHeads + 2 * real.nKvHeads) * real.headDim : 2 * real.hiddenDim;
    return Math.ceil(formatSpec(storedFormat(format, real.dim)).bufferBytes(rows, real.dim) / Math.min(ctx.maxBindingBytes, ctx.maxBufferBytes));
  };
  const f = await createForward(ctx, small, w, {
    maxRows: 1, maxOut: 1, blockSize: 16, nBlocks: 1, nSlots: 1, maxBlocksPerSeq: 1, fuseDecode: fused, normPrologue: fused,
    canFuse: (kind) => kind === 'gate_up' || realChunks(kind) === 1, fuseChunks: () => realChunks('gate_up'),
  });
  try {
    const full = countStep(f);
    const head: Forward = { ...f, layers: [] };
    const base = countStep(head);
    const L = small.nLayers;
    const [t, tBase] = await timeSteps(ctx, [f, head], iterations) as [{ encodeUs: number; submitUs: number }, { encodeUs: number; submitUs: number }];
    const round = (x: number) => Math.round(x * 10) / 10;
    return {
      model,
      dtype: format,
      fused,
      layers: L,
      dispatches_per_step: full.dispatches,
      dispatches_per_layer: (full.dispatches - base.dispatches) / L,
      set_pipeline_per_step: full.setPipeline,
      set_bind_group_per_step: full.setBindGroup,
      encode_us_per_step: round(t.encodeUs),
      encode_us_per_layer: round(Math.max(0, t.encodeUs - tBase.encodeUs) / L),
      submit_us_per_step: round(t.submitUs),
      host_us_per_step: round(t.encodeUs + t.submitUs),
    };
  } finally {
    destroyForward(f);
    for (const m of [w.tokEmbeddings!, w.output!, ...w.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3])]) m.chunks.forEach((c) => c.buffer.destroy());
    for (const L of w.layers) { L.attentionNorm.destroy(); L.ffnNorm.destroy(); }
    w.norm!.destroy();
  }
}

export interface BenchHostArgs {
  json: boolean;
  unfused: boolean;
  iterations: number;
  models: [string, WeightFormat][];
  curve: boolean;
  positions: number[];
  steps: number;
  kvDtype?: 'f16' | 'f32';
}

export function parseBenchHostArgs(argv: string[]): BenchHostArgs {
  let json = false;
  let unfused = false;
  let curve = false;
  let positions = [63, 255, 1023, 2047, 4095];
  let steps = 20;
  let kvDtype: 'f16' | 'f32' | undefined;
  let iterations = 30;
  let models: [string, WeightFormat][] = [['llama-2-7b', 'f16'], ['llama-2-70b', 'q4']];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--unfused') unfused = true;
    else if (a === '--decode-curve') curve = true;
    else if (a === '--positions') {
      positions = (argv[++i] ?? '').split(',').map(Number);
      if (positions.some((p) => !Number.isInteger(p) || p < 0 || p > 4095)) throw new Error('--positions must be integers in [0, 4095]');
    } else if (a === '--steps') {
      steps = Number(argv[++i]);
      if (!Number.isInteger(steps) || steps < 1) throw new Error('--steps must be a positive integer');
    } else if (a === '--kv-dtype') {
      const v = argv[++i];
      if (v !== 'f16' && v !== 'f32') throw new Error('--kv-dtype must be f16 or f32');
      kvDtype = v;
    }
    else if (a === '--iterations') {
      iterations = Number(argv[++i]);
      if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations must be a positive integer');
    } else if (a === '--models') {
      models = (argv[++i] ?? '').split(',').map((s) => {
        const [m, d] = s.split(':');
        const name = `llama-2-${m}`;
        if (!builtinConfig(name)) throw new Error(`--models: unknown model "${m}" (7b, 13b, 70b)`);
        if (!['f32', 'f16', 'q8', 'q4'].includes(d ?? '')) throw new Error(`--models: dtype of "${s}" must be f32, f16, q8 or q4`);
        return [name, d as WeightFormat];
      });
    } else throw new Error(`unknown option ${a}`);
  }
  return { json, unfused, iterations, models, curve, positions, steps, kvDtype };
}

export async function runBenchHost(argv: string[], print: (line: string) => void): Promise<void> {
  const o = parseBenchHostArgs(argv);
  if (o.curve) {
    const pts = await decodeCurve(o.positions, o.steps, o.kvDtype ? { kvDtype: o.kvDtype } : {});
    if (o.json) for (const p of pts) print(JSON.stringify(p));
    else {
      print('| context (positions attended) | decode ms/token |');
      print('|---|---|');
      for (const p of pts) print(`| ${p.context} | ${p.ms_per_token} |`);
    }
    return;
  }
  const ctx = await createGpuContext();
  const rows: HostBenchRow[] = [];
  for (const [m, d] of o.models) {
    for (const fused of o.unfused ? [false, true] : [true]) {
      const r = await benchHost(ctx, m, d, o.iterations, fused);
      rows.push(r);
      if (o.json) print(JSON.stringify(r));
    }
  }
  if (!o.json) {
    print(`adapter: ${ctx.adapterName}; ${o.iterations} decode steps (batch 1) per model`);
    print('| model | dtype | fused | layers | dispatches/step | dispatches/layer | setPipeline/step | setBindGroup/step | record µs/step | record µs/layer | submit µs/step | host µs/step |');
    print('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      print(`| ${r.model} | ${r.dtype} | ${r.fused ? 'yes' : 'no'} | ${r.layers} | ${r.dispatches_per_step} | ${r.dispatches_per_layer} | ${r.set_pipeline_per_step} | ${r.set_bind_group_per_step} | ${r.encode_us_per_step} | ${r.encode_us_per_layer} | ${r.submit_us_per_step} | ${r.host_us_per_step} |`);
    }
  }
  ctx.destroy();
}

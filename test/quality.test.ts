// Bounds on what quantization costs (issue 3): per-position top-1 agreement and logit error of q8, q4 and
// f16 against f32 over 256 positions of one sequence, on a deterministic random-weights model (numbers in
// the README).
import { it, expect } from 'vitest';
import { testGpu } from './helpers/gpu.ts';
import type { GpuContext } from '../runtime/device.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { LlamaModel } from '../runtime/model.ts';
import { randomProvider } from '../checkpoint/random-model.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';

interface QualityRow {
  dtype: WeightFormat;
  positions: number;
  top1: number; // fraction of positions whose argmax equals f32's
  maxAbsErr: number; // largest |logit - f32 logit| over all positions and ids
  rmsErr: number; // RMS of the logit error
  logitStd: number; // std of the f32 logits (the scale the errors compare to)
}

/** A 70B-shaped (GQA 4:1) small model whose dims are multiples of every quantization group. */
const QUALITY_CONFIG: LlamaConfig = {
  dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 2, headDim: 32, vocabSize: 32000,
  maxSeqLen: 512, normEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, tieWordEmbeddings: false,
};

function qualityTokens(n: number, seed = 12345): number[] {
  const out = [1];
  let s = seed;
  for (let i = 1; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out.push(3 + (s % 31990));
  }
  return out;
}

async function measureQuality(gpu: GpuContext, dtypes: WeightFormat[], positions = 256, cfg = QUALITY_CONFIG, seed = 7): Promise<QualityRow[]> {
  const tokens = qualityTokens(positions);
  const run = async (dtype: WeightFormat): Promise<Float32Array> => {
    const m = await LlamaModel.fromProvider(randomProvider(cfg, seed), { gpu, dtype, context: positions, prefillChunk: 64, maxOut: 64 });
    try {
      return await m.logitsAll(tokens);
    } finally {
      m.destroy();
    }
  };
  const ref = await run('f32');
  const V = cfg.vocabSize;
  let mean = 0;
  for (const v of ref) mean += v;
  mean /= ref.length;
  let varSum = 0;
  for (const v of ref) varSum += (v - mean) ** 2;
  const logitStd = Math.sqrt(varSum / ref.length);
  const argmax = (a: Float32Array, p: number): number => {
    let b = 0;
    for (let i = 1; i < V; i++) if (a[p * V + i]! > a[p * V + b]!) b = i;
    return b;
  };
  const rows: QualityRow[] = [];
  for (const dtype of dtypes) {
    const got = dtype === 'f32' ? ref : await run(dtype);
    let agree = 0, maxAbsErr = 0, sq = 0;
    for (let p = 0; p < positions; p++) if (argmax(got, p) === argmax(ref, p)) agree++;
    for (let i = 0; i < ref.length; i++) {
      const e = Math.abs(got[i]! - ref[i]!);
      maxAbsErr = Math.max(maxAbsErr, e);
      sq += e * e;
    }
    rows.push({ dtype, positions, top1: agree / positions, maxAbsErr, rmsErr: Math.sqrt(sq / ref.length), logitStd });
  }
  return rows;
}

function qualityTable(rows: QualityRow[]): string {
  const lines = ['| dtype | positions | top-1 agreement with f32 | max abs logit error | RMS logit error | f32 logit std |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.dtype} | ${r.positions} | ${(100 * r.top1).toFixed(1)}% | ${r.maxAbsErr.toFixed(4)} | ${r.rmsErr.toFixed(4)} | ${r.logitStd.toFixed(3)} |`);
  }
  return lines.join('\n');
}

it('q8, q4 and f16 stay close to f32 over 256 positions', async (t) => {
  const gpu = await testGpu();
  if (!gpu) return t.skip();
  const rows = await measureQuality(gpu, ['f32', 'f16', 'q8', 'q4'], 256);
  console.log('\n' + qualityTable(rows));
  const by = Object.fromEntries(rows.map((r) => [r.dtype, r]));
  expect(by.f32!.top1).toBe(1);
  expect(by.f32!.maxAbsErr).toBe(0);
  // Random-weights networks amplify weight noise far more than trained ones, so agreement is lower than
  // on a real checkpoint; the firm checks are that each format's error scales with its step size.
  expect(by.f16!.top1).toBeGreaterThanOrEqual(0.98);
  expect(by.q8!.top1).toBeGreaterThanOrEqual(0.9);
  expect(by.q4!.top1).toBeGreaterThanOrEqual(0.3);
  expect(by.q8!.rmsErr).toBeLessThan(0.05 * by.f32!.logitStd);
  // q4's step is 15 levels over the group's range against q8's 254 over twice its absmax: ~17x coarser.
  const q4OverQ8 = by.q4!.rmsErr / by.q8!.rmsErr;
  expect(q4OverQ8).toBeGreaterThan(8);
  expect(q4OverQ8).toBeLessThan(32);
  // f16 keeps 11 significant bits against q8's ~7 over the group's absmax.
  expect(by.q8!.rmsErr / by.f16!.rmsErr).toBeGreaterThan(8);
});

// What quantization costs: per-position top-1 agreement and logit error of each weight format against
// f32, on a deterministic random-weights model, over a few hundred positions of one sequence.
// Used by test/quality.test.ts (which bounds the numbers) and by `llama2-webgpu bench quality`.

import type { GpuContext } from '../runtime/device.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { LlamaModel } from '../runtime/model.ts';
import { randomProvider } from '../checkpoint/random-model.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';

export interface QualityRow {
  dtype: WeightFormat;
  positions: number;
  top1: number; // fraction of positions whose argmax equals f32's
  maxAbsErr: number; // largest |logit - f32 logit| over all positions and ids
  rmsErr: number; // RMS of the logit error
  logitStd: number; // std of the f32 logits (the scale the errors compare to)
}

/** A 70B-shaped (GQA 4:1) small model whose dims are multiples of every quantization group. */
export const QUALITY_CONFIG: LlamaConfig = {
  dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 2, headDim: 32, vocabSize: 32000,
  maxSeqLen: 512, normEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, tieWordEmbeddings: false,
};

export function qualityTokens(n: number, seed = 12345): number[] {
  const out = [1];
  let s = seed;
  for (let i = 1; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out.push(3 + (s % 31990));
  }
  return out;
}

export async function measureQuality(gpu: GpuContext, dtypes: WeightFormat[], positions = 256, cfg = QUALITY_CONFIG, seed = 7): Promise<QualityRow[]> {
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

export function qualityTable(rows: QualityRow[]): string {
  const lines = ['| dtype | positions | top-1 agreement with f32 | max abs logit error | RMS logit error | f32 logit std |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.dtype} | ${r.positions} | ${(100 * r.top1).toFixed(1)}% | ${r.maxAbsErr.toFixed(4)} | ${r.rmsErr.toFixed(4)} | ${r.logitStd.toFixed(3)} |`);
  }
  return lines.join('\n');
}

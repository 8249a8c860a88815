// Bounds on what quantization costs (issue 3): top-1 agreement and logit error of q8, q4 and f16
// against f32 over 256 positions of a random-weights model (numbers in the README).
import { it, expect } from 'vitest';
import { testGpu } from './helpers/gpu.ts';
import { measureQuality, qualityTable } from '../bench/quality.ts';

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

// What quantization costs on a trained network: perplexity of the default model on held-out text (books never
// trained on: bench/data/kjv-heldout.txt) under each of our formats, beside llama.cpp's perplexity of the same
// tokens on the same weights (node-llama-cpp's CPU build, installed by scripts/setup.sh; the GGUF files come from
// llama.cpp's own quantizer). Bounds from issue 13: f16 within 0.1% of f32, q8 within 1%, and each 4-bit format
// no worse than llama.cpp's 4-bit format of the same kind by more than 1%.
import { it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { testGpu } from './helpers/gpu.ts';
import { measurePerplexity, perplexityTable, perplexityWindows, checkPerplexityFormats, nllOf, type PerplexityRow } from '../bench/perplexity.ts';
import { llamaCppInstalled } from '../bench/llamacpp/runner.ts';

it('perplexity on held-out text: ours per format within bounds of f32 and of llama.cpp', async (t) => {
  const gpu = await testGpu();
  if (!gpu) return t.skip();
  if (!llamaCppInstalled()) throw new Error('node-llama-cpp is not installed: run scripts/setup.sh (or npm install --prefix bench/llamacpp --omit=optional --ignore-scripts)');
  const text = readFileSync(new URL('../bench/data/kjv-heldout.txt', import.meta.url), 'utf8');
  const rows: PerplexityRow[] = [];
  for await (const r of measurePerplexity({ model: 'default', text, maxTokens: 1022, gpu, ours: ['f32', 'f16', 'q8', 'q4', 'Q8_0', 'Q4_0', 'Q4_K_M'], llamacpp: ['F32', 'Q8_0', 'Q4_0', 'Q4_K_M', 'Q4_1-pure'] })) rows.push(r);
  console.log('\n' + perplexityTable(rows));
  const ours = (f: string): number => rows.find((r) => r.engine === 'ours' && r.format === f)!.ppl;
  const theirs = (f: string): number => rows.find((r) => r.engine === 'llamacpp' && r.format === f)!.ppl;
  expect(rows.every((r) => r.tokens === 1022)).toBe(true);
  // The same network: our f32 and llama.cpp's F32 agree closely (both full precision; different summation order).
  expect(Math.abs(ours('f32') / theirs('F32') - 1)).toBeLessThan(1e-3);
  // A trained model, not noise: well below the 32000-way uniform guess.
  expect(ours('f32')).toBeLessThan(1000);
  expect(Math.abs(ours('f16') / ours('f32') - 1)).toBeLessThan(0.001);
  expect(Math.abs(ours('q8') / ours('f32') - 1)).toBeLessThan(0.01);
  expect(Math.abs(ours('Q8_0') / ours('f32') - 1)).toBeLessThan(0.01);
  // 4-bit. Ours converted at load (q4: groups of 32 with an f16 scale and minimum, every matrix) against the
  // same kind in llama.cpp: Q4_1 for every matrix (--pure; its Q4_0/Q4_1 mixes keep the tied head in Q6_K);
  // the llama.cpp-quantized GGUF files loaded as stored against llama.cpp running them.
  expect(ours('q4')).toBeLessThan(theirs('Q4_1-pure') * 1.01);
  expect(ours('Q4_0')).toBeLessThan(theirs('Q4_0') * 1.01);
  expect(ours('Q4_K_M')).toBeLessThan(theirs('Q4_K_M') * 1.01);
  // and quantization costs something: the bounds above are not vacuous.
  expect(theirs('Q4_0')).toBeGreaterThan(theirs('F32'));
});

it('windows cover the text in order after BOS; unknown formats are refused by name; nll is -log softmax', () => {
  expect(perplexityWindows([5, 6, 7, 8, 9], 3)).toEqual([[1, 5, 6], [1, 7, 8], [1, 9]]);
  expect(perplexityWindows([5, 6, 7, 8, 9], 3, 3)).toEqual([[1, 5, 6], [1, 7]]);
  expect(() => checkPerplexityFormats(['f32', 'Q4_K_M', 'Q4_1-pure'], true)).not.toThrow();
  expect(() => checkPerplexityFormats(['q4'], false)).toThrow(/unknown format q4/);
  expect(() => checkPerplexityFormats(['f32', 'IQ4_NL', 'Q9'], true)).toThrow(/unknown formats IQ4_NL, Q9/);
  expect(nllOf([0, 0, 0, 0], 2)).toBeCloseTo(Math.log(4), 12);
  expect(nllOf([1000, 0], 0)).toBeCloseTo(0, 12); // stable for large logits
});

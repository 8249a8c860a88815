// bench/generate.ts end to end on a tiny shape, without llama.cpp (node-llama-cpp is an optional, bench-only
// package that the test suite never needs): JSON rows with every field, the Markdown table, a well-formed
// SVG; and the read-bandwidth kernel against its CPU reference.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { lcg } from './helpers/random.ts';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../cli/common.ts';
import { FORMATS } from '../kernels/weight-formats.ts';
import { runBenchGenerate } from '../cli/bench.ts';
import { ggufWeightBytesPerToken, oursWeightBytesPerToken, promptIds, TINY_CONFIG } from '../bench/generate.ts';
import { measureReadBandwidth, xorAllRef } from '../bench/read-bandwidth.ts';
import type { BenchRow } from '../bench/report.ts';
import { createGpuContext, type GpuContext } from '../runtime/device.ts';

/** Checks that `xml` is one balanced element tree with quoted attributes and escaped text; returns the tag names. */
function checkXml(xml: string): string[] {
  const body = xml.replace(/^<\?xml[^>]*\?>\s*/, '').trim();
  const stack: string[] = [];
  const names: string[] = [];
  let i = 0;
  let roots = 0;
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    const text = body.slice(i, lt < 0 ? body.length : lt);
    if (/[<>]/.test(text) || /&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(text)) throw new Error(`unescaped text "${text}"`);
    if (lt < 0) break;
    const gt = body.indexOf('>', lt);
    if (gt < 0) throw new Error('unterminated tag');
    const tag = body.slice(lt + 1, gt);
    const m = /^(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)$/.exec(tag);
    if (!m) throw new Error(`malformed tag <${tag}>`);
    const [, close, name, , selfClose] = m;
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> does not close the open element`);
    } else {
      if (stack.length === 0) roots++;
      names.push(name!);
      if (!selfClose) stack.push(name!);
    }
    i = gt + 1;
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return names;
}

describe('bench generate (tiny shape, ours only)', () => {
  let out = '';
  let printed: BenchRow[] = [];
  const dtypes = (['q4', 'q8', 'f16'] as string[]).filter((d) => d in FORMATS);

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'bench-generate-'));
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      const code = await runBenchGenerate(['--model', 'tiny', '--prompt-lengths', '8,20', '--gen', '4', '--json', '--out', out, '--bandwidth-mib', '8']);
      expect(code).toBe(0);
    } finally {
      spy.mockRestore();
    }
    printed = lines.join('').trim().split('\n').map((l) => JSON.parse(l) as BenchRow);
  });
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('prints one JSON row per (dtype, prompt length) with every field', () => {
    expect(printed.map((r) => [r.dtype, r.prompt_tokens])).toEqual(dtypes.flatMap((d) => [[d, 8], [d, 20]]));
    for (const r of printed) {
      expect(Object.keys(r).sort()).toEqual([
        'adapter', 'bandwidth_gb_s', 'bound_decode_tps', 'cores', 'cpu', 'date', 'dtype', 'fraction_of_bound', 'gen_tokens',
        'llamacpp', 'model', 'ours', 'prompt_tokens', 'ratio_decode', 'ratio_prefill',
      ]);
      expect(r.model).toBe('tiny');
      expect(r.gen_tokens).toBe(4);
      expect(r.llamacpp).toBeNull();
      expect(r.ratio_decode).toBeNull();
      expect(r.ratio_prefill).toBeNull();
      for (const v of [r.ours.prefill_tps, r.ours.decode_tps, r.ours.ttft_ms, r.ours.weight_bytes_per_token, r.bound_decode_tps, r.fraction_of_bound, r.bandwidth_gb_s, r.cores]) {
        expect(Number.isFinite(v) && v > 0).toBe(true);
      }
      expect(r.ours.weight_bytes_per_token).toBe(oursWeightBytesPerToken(TINY_CONFIG, r.dtype as keyof typeof FORMATS));
      expect(r.fraction_of_bound).toBeCloseTo(r.ours.decode_tps / r.bound_decode_tps, 12);
      expect(r.adapter.length).toBeGreaterThan(0);
      expect(r.cpu.length).toBeGreaterThan(0);
      expect(Number.isNaN(Date.parse(r.date))).toBe(false);
    }
  });

  it('writes generate.json with the machine and the same rows', async () => {
    const j = JSON.parse(await readFile(join(out, 'generate.json'), 'utf8')) as { rows: BenchRow[]; adapter: string; cpu: string; date: string; llamacpp: unknown };
    expect(j.rows).toEqual(printed);
    expect(j.adapter).toBe(printed[0]!.adapter);
    expect(j.cpu).toBe(printed[0]!.cpu);
    expect(j.date).toBe(printed[0]!.date);
    expect(j.llamacpp).toBeNull();
  });

  it('writes a Markdown table naming the machine, the adapter and the date', async () => {
    const md = await readFile(join(out, 'generate.md'), 'utf8');
    const r0 = printed[0]!;
    expect(md).toContain(r0.adapter);
    expect(md).toContain(r0.cpu);
    expect(md).toContain(r0.date);
    const table = md.split('\n').filter((l) => l.startsWith('|'));
    expect(table.length).toBe(2 + printed.length); // header, separator, one line per row
    const cols = table[0]!.split('|').length;
    for (const l of table) expect(l.split('|').length).toBe(cols);
  });

  it('writes a well-formed SVG bar chart naming the machine, the adapter and the date', async () => {
    const svg = await readFile(join(out, 'generate.svg'), 'utf8');
    const names = checkXml(svg);
    expect(names[0]).toBe('svg');
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    // one bar for ours and one for the bound per row (no llama.cpp series), plus the background and legend
    expect(names.filter((n) => n === 'rect').length).toBe(1 + 2 + 2 * printed.length);
    const r0 = printed[0]!;
    expect(svg).toContain(r0.date.slice(0, 10));
    expect(svg).toContain(r0.cpu.replace(/&/g, '&amp;'));
    expect(svg).toMatch(/WebGPU adapter: /);
  });

  it('rejects unknown formats and a --vs other than llamacpp', async () => {
    await expect(runBenchGenerate(['--model', 'tiny', '--dtype', 'q3'])).rejects.toThrow(UsageError);
    await expect(runBenchGenerate(['--model', 'tiny', '--vs', 'vllm'])).rejects.toThrow(UsageError);
  });
});

describe('bench helpers', () => {
  it('prompt ids are deterministic, start with BOS and avoid the control tokens', () => {
    const a = promptIds(64, TINY_CONFIG, 7);
    expect(a).toEqual(promptIds(64, TINY_CONFIG, 7));
    expect(a[0]).toBe(1);
    expect(a.slice(1).every((t) => Number.isInteger(t) && t >= 3 && t < 32000)).toBe(true);
    expect(promptIds(16, TINY_CONFIG, 7)).toEqual(a.slice(0, 16));
    expect(new Set(a).size).toBeGreaterThan(60);
  });

  it('weight bytes per token: f16 reads what llama.cpp F16 reads; f32 twice the matrices', () => {
    const f16 = oursWeightBytesPerToken(TINY_CONFIG, 'f16');
    expect(f16).toBe(ggufWeightBytesPerToken(TINY_CONFIG, 'F16'));
    const c = TINY_CONFIG;
    const matrices = c.nLayers * (2 * c.dim * c.dim + 2 * (c.nKvHeads * c.headDim) * c.dim + 3 * c.dim * c.hiddenDim) + c.vocabSize * c.dim + c.dim;
    const norms = 4 * c.dim * (2 * c.nLayers + 1);
    expect(f16).toBe(2 * matrices + norms);
    expect(oursWeightBytesPerToken(TINY_CONFIG, 'f32')).toBe(4 * matrices + norms);
  });
});

describe('read-bandwidth kernel', () => {
  let gpu: GpuContext;
  beforeAll(async () => {
    gpu = await createGpuContext();
  });
  afterAll(() => gpu?.destroy());

  it('reads every word: the xor of the workgroup results equals the CPU reference', async () => {
    // 4 MiB + 48 bytes: not a whole number of workgroups, so the bounds checks are exercised
    const words = new Uint32Array((4 * 2 ** 20 + 48) / 4);
    const next = lcg(12345);
    for (let i = 0; i < words.length; i++) words[i] = next();
    const r = await measureReadBandwidth(gpu, { fill: words, minSeconds: 0.01, trials: 1 });
    expect(r.bytes).toBe(words.byteLength);
    expect(r.checksum).toBe(xorAllRef(words));
    expect(Number.isFinite(r.gbPerS) && r.gbPerS > 0).toBe(true);
  });
});

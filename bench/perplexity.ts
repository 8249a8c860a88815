// Perplexity of a text under each weight format, ours beside llama.cpp's, on the same weights and the same
// tokens: `llama2-webgpu bench quality --model default --text FILE`. What quantization costs on a trained model
// (bounded on the held-out slice in test/perplexity.test.ts).
//
// The text is tokenized once (Llama-2's tokenizer, no BOS) and cut into windows of context-1 tokens; each window
// is scored after BOS, every position predicting the next token: ppl = exp(mean over scored tokens of -log p).
// Ours: the model loaded at f32/f16/q8/q4, and llama.cpp-quantized GGUF files loaded as stored (GGUF type names
// such as Q4_K_M). llama.cpp (node-llama-cpp's CPU build, F32 KV cache): the F32 GGUF we write from the model,
// and that file quantized by llama.cpp's own quantizer (bench/llamacpp/quantize.py).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { GpuContext } from '../runtime/device.ts';
import { openModelSource } from '../checkpoint/load.ts';
import { LlamaModel } from '../runtime/model.ts';
import { writeGgufFile } from '../checkpoint/gguf-writer.ts';
import { LlamaTokenizer } from '../tokenizer/tokenizer.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import { loadLlamaCpp } from './llamacpp/runner.ts';

export interface PerplexityRow {
  engine: 'ours' | 'llamacpp';
  format: string; // f32, f16, q8, q4 (ours, converted at load) or a GGUF file type (F32, Q8_0, Q4_0, Q4_K_M, ...;
  // TYPE-pure: llama.cpp's --pure, every matrix in TYPE, where its mixes keep the head/embedding in Q6_K)
  tokens: number; // scored tokens
  ppl: number;
  nll: number; // mean negative log-likelihood, nats per token
}

export interface PerplexityOptions {
  model: string; // "default", an HF directory, ...
  text: string;
  maxTokens?: number; // scored tokens at most (default: the whole text)
  ours?: string[]; // default f32, f16, q8, q4, Q8_0, Q4_0, Q4_K_M
  llamacpp?: string[]; // default F32, Q8_0, Q4_0, Q4_K_M; [] skips llama.cpp
  gpu: GpuContext;
  workDir?: string; // where the GGUF files go, reused when they exist (default: a new temporary folder, removed after)
  log?: (line: string) => void;
}

const OUR_FORMATS = new Set(['f32', 'f16', 'q8', 'q4']);
/** What bench/llamacpp/quantize.py writes (llama_ftype names), each also as TYPE-pure. */
const GGUF_FILE_TYPES = ['F32', 'F16', 'Q4_0', 'Q4_1', 'Q8_0', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'Q4_K_S', 'Q4_K_M', 'Q5_K_S', 'Q5_K_M', 'Q6_K'];

/** Throws naming the formats it does not know: ours (f32, f16, q8, q4) where `ours`, else GGUF file types. */
export function checkPerplexityFormats(formats: string[], ours: boolean): void {
  const known = (f: string): boolean => (ours && OUR_FORMATS.has(f)) || GGUF_FILE_TYPES.includes(f.replace(/-pure$/, ''));
  const bad = formats.filter((f) => !known(f));
  if (bad.length) throw new Error(`unknown format${bad.length > 1 ? 's' : ''} ${bad.join(', ')}: expected ${ours ? 'f32, f16, q8, q4 or ' : ''}a GGUF file type (${GGUF_FILE_TYPES.join(', ')}, each also as TYPE-pure)`);
}
export const DEFAULT_OURS = ['f32', 'f16', 'q8', 'q4', 'Q8_0', 'Q4_0', 'Q4_K_M'];
export const DEFAULT_LLAMACPP = ['F32', 'Q8_0', 'Q4_0', 'Q4_K_M', 'Q4_1-pure'];

/** BOS + up to context-1 text tokens per window, covering the text in order. */
export function perplexityWindows(ids: number[], context: number, maxTokens = Infinity, bos = 1): number[][] {
  const wins: number[][] = [];
  const per = context - 1;
  const n = Math.min(ids.length, maxTokens);
  for (let i = 0; i < n; i += per) wins.push([bos, ...ids.slice(i, Math.min(i + per, n))]);
  return wins;
}

/** -log softmax(logits)[target], computed stably in float64. */
export function nllOf(logits: ArrayLike<number>, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return Math.log(sum) + max - logits[target]!;
}

/** bench/llamacpp/quantize.py, from the sources (bench/) or the compiled code (dist/bench/). */
function quantizeScript(): string {
  const at = ['./llamacpp/quantize.py', '../../bench/llamacpp/quantize.py'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = at.find((p) => existsSync(p));
  if (!found) throw new Error(`llama.cpp's quantizer script not found at ${at.join(' or ')}`);
  return found;
}

/** The model as an F32 GGUF (written by us) or llama.cpp's quantization of it, cached in workDir. */
async function ggufOf(model: string, type: string, workDir: string, log: (l: string) => void): Promise<string> {
  mkdirSync(workDir, { recursive: true });
  const f32 = join(workDir, 'F32.gguf');
  if (!existsSync(f32)) {
    const src = await openModelSource(model);
    try {
      await writeGgufFile(f32, src.provider, { type: 'F32', tokenizerJson: src.tokenizerJson ? JSON.parse(src.tokenizerJson) : undefined, name: src.name });
    } finally {
      await src.close();
    }
  }
  if (type === 'F32') return f32;
  const out = join(workDir, `${type}.gguf`);
  if (!existsSync(out)) {
    log(`quantizing with llama.cpp's quantizer: ${type}`);
    // TYPE-pure: every matrix in TYPE (llama.cpp's --pure), no 6-bit head or embedding as its mixes keep
    const pure = type.endsWith('-pure');
    execFileSync(process.env.PYTHON ?? 'python3', [quantizeScript(), f32, out, pure ? type.slice(0, -5) : type, ...(pure ? ['--pure'] : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return out;
}

async function oursNll(gpu: GpuContext, spec: string, dtype: WeightFormat | undefined, wins: number[][], context: number): Promise<number> {
  const src = await openModelSource(spec);
  const model = await LlamaModel.fromProvider(src.provider, { gpu, dtype, context, prefillChunk: 128, maxOut: 128 });
  try {
      const V = src.config.vocabSize;
      let total = 0;
      for (const w of wins) {
        const logits = await model.logitsAll(w);
        for (let p = 0; p + 1 < w.length; p++) total += nllOf(logits.subarray(p * V, (p + 1) * V), w[p + 1]!);
      }
      return total;
  } finally {
    model.destroy();
    await src.close();
  }
}

async function llamaCppNll(ggufPath: string, wins: number[][], context: number, vocab: number): Promise<number> {
  const llama = await loadLlamaCpp({ threads: 2, install: false, log: () => undefined });
  try {
    const session = await llama.open(ggufPath, context, { f32Cache: true });
    try {
      let total = 0;
      for (const w of wins) {
        const logits = await session.logits(w, vocab);
        for (let p = 0; p + 1 < w.length; p++) total += nllOf(logits.subarray(p * vocab, (p + 1) * vocab), w[p + 1]!);
      }
      return total;
    } finally {
      await session.close();
    }
  } finally {
    await llama.close();
  }
}

/** Yields one row per engine and format, ours first. */
export async function* measurePerplexity(o: PerplexityOptions): AsyncGenerator<PerplexityRow> {
  const log = o.log ?? (() => undefined);
  checkPerplexityFormats(o.ours ?? DEFAULT_OURS, true);
  checkPerplexityFormats(o.llamacpp ?? DEFAULT_LLAMACPP, false);
  const src = await openModelSource(o.model);
  const { config } = src;
  const tok = LlamaTokenizer.fromJson(src.tokenizerJson ?? '{}', src.tokenizerConfigJson ?? undefined);
  await src.close();
  const context = Math.min(config.maxSeqLen, 512);
  const wins = perplexityWindows(tok.encode(o.text, { addBos: false }), context, o.maxTokens, config.bosTokenId);
  const tokens = wins.reduce((n, w) => n + w.length - 1, 0);
  const workDir = o.workDir ?? mkdtempSync(join(tmpdir(), 'llama2-webgpu-ppl-'));
  const row = (engine: PerplexityRow['engine'], format: string, total: number): PerplexityRow => ({ engine, format, tokens, ppl: Math.exp(total / tokens), nll: total / tokens });
  try {
    for (const f of o.ours ?? DEFAULT_OURS) {
      log(`ours ${f}: ${tokens} tokens in ${wins.length} window(s)`);
      if (OUR_FORMATS.has(f)) yield row('ours', f, await oursNll(o.gpu, o.model, f as WeightFormat, wins, context));
      else yield row('ours', f, await oursNll(o.gpu, await ggufOf(o.model, f, workDir, log), undefined, wins, context));
    }
    for (const f of o.llamacpp ?? DEFAULT_LLAMACPP) {
      log(`llama.cpp ${f}`);
      yield row('llamacpp', f, await llamaCppNll(await ggufOf(o.model, f, workDir, log), wins, context, config.vocabSize));
    }
  } finally {
    if (o.workDir === undefined) rmSync(workDir, { recursive: true, force: true });
  }
}

export function perplexityTable(rows: PerplexityRow[]): string {
  const f32 = rows.find((r) => r.engine === 'ours' && r.format === 'f32')?.ppl;
  const lines = ['| engine | format | tokens | perplexity | vs our f32 |', '|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.engine === 'ours' ? 'llama2-webgpu' : 'llama.cpp'} | ${r.format} | ${r.tokens} | ${r.ppl.toFixed(3)} | ${f32 ? `${((r.ppl / f32 - 1) * 100).toFixed(2)}%` : ''} |`);
  return lines.join('\n');
}

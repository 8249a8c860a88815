// `llama2-webgpu bench generate`: prefill tok/s, time to first token and decode tok/s of our runtime, for
// each weight format and prompt length, on a Llama model of realistic shape with deterministic random
// weights; optionally llama.cpp (CPU, node-llama-cpp) on the same weights written as GGUF, in the same
// run; and the physical bound: the adapter's streaming-read bandwidth / the weight bytes of one decode step.
//
// Both runtimes are timed the same way, from token ids, greedy, wall clock around the request:
//   TTFT        start of the request -> first generated token (prompt evaluation + first sample)
//   prefill     prompt tokens / TTFT
//   decode      (gen - 1) / (time of the last token - time of the first), exactly --gen tokens (EOS does
//               not stop either runtime)
// Each model is loaded once per format and warmed up with a short request before the timed ones.
// "Same weights": one f32 tensor set from (shape, seed); each runtime stores it in its own format (ours:
// kernels/weight-formats.ts, llama.cpp: GGUF F16/Q8_0/Q4_0 written by checkpoint/gguf-writer.ts), so the
// quantized values and bytes per weight can differ slightly between the two at q4/q8 (both reported).

import { createHash } from 'node:crypto';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { formatSpec, type WeightFormat } from '../kernels/weight-formats.ts';
import { builtinConfig } from '../checkpoint/builtin-configs.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { createGpuContext, type GpuContext } from '../runtime/device.ts';
import { ggmlRowBytes, ggmlTypeByName } from '../checkpoint/gguf-quants.ts';
import { ggufTensorTypes, writeGgufFile, type GgufWriteType } from '../checkpoint/gguf-writer.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';
import { openModelSource } from '../checkpoint/load.ts';
import { LlamaModel } from '../runtime/model.ts';
import { createSampler } from '../runtime/sampler.ts';
import type { LoadProgress } from '../runtime/weights.ts';
import { randomProvider } from '../checkpoint/random-model.ts';
import type { TensorProvider } from '../checkpoint/tensor-provider.ts';
import { buildLlama2TokenizerJson } from '../tokenizer/llama2-vocab.ts';
import { loadLlamaCpp, type LlamaCppRuntime, type LlamaCppTiming } from './llamacpp/runner.ts';
import { measureReadBandwidth } from './read-bandwidth.ts';
import { markdownReport, svgChart, fmt, type BenchMeta, type BenchRow, type LlamaCppNumbers, type RuntimeNumbers } from './report.ts';

/**
 * A 2-layer GQA shape for tests and smoke runs: the Llama-2 vocabulary (so llama.cpp gets a real tokenizer),
 * rows a whole number of 256-weight blocks (no padding in any of our formats, none in GGUF's).
 */
export const TINY_CONFIG: LlamaConfig = {
  dim: 256, hiddenDim: 768, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 64, vocabSize: 32000, maxSeqLen: 256,
  normEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, tieWordEmbeddings: false,
};

/** Our weight format -> the GGUF type llama.cpp runs for it. */
const GGUF_TYPE: Record<string, GgufWriteType> = { q4: 'Q4_0', q8: 'Q8_0', f16: 'F16', f32: 'F32' };

interface BenchModel {
  label: string;
  weights: string; // how the weights were made, for the report
  cacheKey: string; // names the GGUF files
  provider: TensorProvider;
  tokenizerJson: object | null;
  close(): Promise<void>;
}

async function openBenchModel(spec: string, seed: number): Promise<BenchModel> {
  const cfg = spec === 'tiny' ? { ...TINY_CONFIG } : builtinConfig(spec);
  if (cfg) {
    return {
      label: spec, weights: `random weights (seed ${seed})`, cacheKey: `random-${spec}-${hash({ cfg, seed, v: 1 })}`,
      provider: randomProvider(cfg, seed), tokenizerJson: cfg.vocabSize === 32000 ? buildLlama2TokenizerJson() : null,
      close: async () => undefined,
    };
  }
  const src = await openModelSource(spec);
  const mtime = (await stat(spec)).mtimeMs;
  return {
    label: src.name, weights: `weights of ${spec}`, cacheKey: `${src.name}-${hash({ spec, mtime, cfg: src.config })}`,
    provider: src.provider,
    tokenizerJson: src.tokenizerJson ? (JSON.parse(src.tokenizerJson) as object) : src.config.vocabSize === 32000 ? buildLlama2TokenizerJson() : null,
    close: () => src.close(),
  };
}

function hash(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 10);
}

function cpuName(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model.trim() || 'unknown CPU';
}

function shapeLine(c: LlamaConfig): string {
  return `dim ${c.dim}, ${c.nLayers} layers, ${c.nHeads} heads (${c.nKvHeads} KV), FFN ${c.hiddenDim}, vocab ${c.vocabSize}`;
}

/** Weight bytes one decode step reads in our format: every matrix, the norms, and one embedding row. */
export function oursWeightBytesPerToken(cfg: LlamaConfig, dtype: WeightFormat): number {
  const spec = formatSpec(dtype);
  let bytes = cfg.tieWordEmbeddings ? cfg.vocabSize * spec.rowBytes(cfg.dim) : 0;
  for (const [name, shape] of expectedTensors(cfg)) {
    if (shape.length === 1) bytes += 4 * shape[0]!;
    else bytes += (name === 'tok_embeddings' ? 1 : shape[0]!) * spec.rowBytes(shape[1]!);
  }
  return bytes;
}

/** The same for llama.cpp's GGUF of `type` (norms F32, F16 fallbacks as written). */
export function ggufWeightBytesPerToken(cfg: LlamaConfig, type: GgufWriteType): number {
  const types = ggufTensorTypes(cfg, { type });
  let bytes = 0;
  for (const [name, shape] of expectedTensors(cfg)) {
    const t = ggmlTypeByName(types.get(name)!);
    const cols = shape[shape.length - 1]!;
    const rows = shape.length === 1 || name === 'tok_embeddings' ? 1 : shape[0]!;
    bytes += rows * ggmlRowBytes(t, cols);
    if (name === 'tok_embeddings' && cfg.tieWordEmbeddings) bytes += cfg.vocabSize * ggmlRowBytes(t, cols);
  }
  return bytes;
}

/** Deterministic prompt ids: BOS, then ids in [3, vocab) (no control tokens) from a xorshift32 stream. */
export function promptIds(n: number, cfg: LlamaConfig, seed: number): number[] {
  let s = (seed ^ 0x2545f491) >>> 0 || 1;
  const out = [cfg.bosTokenId];
  while (out.length < n) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out.push(3 + (s % (cfg.vocabSize - 3)));
  }
  return out.slice(0, n);
}

type Timing = Omit<LlamaCppTiming, 'tokens'> & { tokens: number[] };

async function timeOurs(model: LlamaModel, prompt: number[], gen: number, temperature: number): Promise<Timing> {
  const tokens: number[] = [];
  const t0 = performance.now();
  let tFirst = 0;
  let tLast = 0;
  const sampler = temperature > 0
    ? createSampler({ temperature, topP: 0.9, topK: 40, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: 1234n }, prompt)
    : null;
  const tokens$ = sampler ? model.generate({ promptTokens: prompt, maxTokens: gen, sampler }) : model.generateGreedy(prompt, gen);
  for await (const t of tokens$) {
    tLast = performance.now();
    if (tokens.length === 0) tFirst = tLast;
    tokens.push(t);
  }
  if (tokens.length !== gen) throw new Error(`generated ${tokens.length} tokens, expected ${gen}`);
  const ttft = (tFirst - t0) / 1000;
  return { prefill_tps: prompt.length / ttft, decode_tps: (gen - 1) / ((tLast - tFirst) / 1000), ttft_ms: ttft * 1000, tokens };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Warm-up, then `runs` timed requests per prompt length; medians, and the tokens of the first run. */
async function timeAll(run: (prompt: number[], gen: number) => Promise<Timing>, prompts: number[][], gen: number, runs: number): Promise<Timing[]> {
  // Warm-up: a short request (at most --gen tokens: the context holds the longest prompt plus --gen).
  await run(prompts[0]!.slice(0, Math.min(16, prompts[0]!.length)), Math.min(3, gen));
  const out: Timing[] = [];
  for (const p of prompts) {
    const ts: Timing[] = [];
    for (let i = 0; i < runs; i++) ts.push(await run(p, gen));
    out.push({
      prefill_tps: median(ts.map((t) => t.prefill_tps)), decode_tps: median(ts.map((t) => t.decode_tps)),
      ttft_ms: median(ts.map((t) => t.ttft_ms)), tokens: ts[0]!.tokens,
    });
  }
  return out;
}

/** The GGUF of `type` in the cache, written (once, atomically) from the provider. */
async function cachedGguf(m: BenchModel, cacheDir: string, type: GgufWriteType, log: (s: string) => void): Promise<string> {
  const path = join(cacheDir, `${m.cacheKey}-${type}.gguf`);
  if (await stat(path).then(() => true, () => false)) return path;
  if (!m.tokenizerJson) throw new Error(`${m.label}: no tokenizer to embed in the GGUF llama.cpp needs`);
  await mkdir(cacheDir, { recursive: true });
  log(`writing ${path} (once; later runs reuse it)`);
  const tmp = `${path}.tmp-${process.pid}`;
  const t0 = performance.now();
  await writeGgufFile(tmp, m.provider, { type, tokenizerJson: m.tokenizerJson, name: m.label });
  await rename(tmp, path);
  log(`  written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return path;
}

/** What `bench generate` runs (cli/bench.ts parses the flags into this). */
export interface BenchGenerateOptions {
  /** A built-in config name (random weights), "tiny" (TINY_CONFIG), or an HF directory / .gguf file. */
  model: string;
  dtypes: WeightFormat[];
  promptLengths: number[];
  gen: number; // tokens generated per request (at least 2: decode tok/s needs two)
  vsLlamaCpp: boolean;
  threads: number; // llama.cpp's
  runs: number; // timed requests per row, medians reported
  prefillChunk?: number;
  seed: number; // of the random weights and the prompt ids
  bandwidthMiB: number; // buffer of the read-bandwidth measurement
  out: string; // where generate.json, .md and .svg go
  cache: string; // GGUF files for llama.cpp
  json: boolean; // one JSON row per line on stdout instead of the table
  /** Sampling temperature of our requests (0: greedy, the default); sampled with top_p 0.9, top_k 40 and a fixed seed. */
  temperature?: number;
  /** ModelOptions.fuseDecode / gpuSampling (undefined: the adapter's defaults). */
  fuseDecode?: boolean;
  gpuSampling?: boolean;
  /** A progress callback for loading the model as `label` (none: quiet). */
  loadProgress?: (label: string) => (p: LoadProgress) => void;
}

export async function benchGenerate(opts: BenchGenerateOptions): Promise<void> {
  const { dtypes, gen, threads, runs, prefillChunk, seed } = opts;
  const lengths = opts.promptLengths;
  const cores = availableParallelism();
  const log = (s: string): void => void process.stderr.write(s + '\n');

  const date = new Date().toISOString();
  const cpu = cpuName();
  const m = await openBenchModel(opts.model, seed);
  let gpu: GpuContext | null = null;
  let lc: LlamaCppRuntime | null = null;
  try {
    const cfg = m.provider.config;
    const maxPrompt = Math.max(...lengths);
    const context = maxPrompt + gen;
    // Ours: room for the longest prompt plus --gen (random weights do not care about the trained context),
    // and an EOS id no token has, so that every request generates exactly --gen tokens.
    const oursProvider: TensorProvider = {
      config: { ...cfg, maxSeqLen: Math.max(cfg.maxSeqLen, context), eosTokenId: -1 },
      readRowsF32: (name, r0, n) => m.provider.readRowsF32(name, r0, n),
    };
    const allIds = promptIds(maxPrompt, cfg, seed);
    const prompts = lengths.map((n) => allIds.slice(0, n));

    gpu = await createGpuContext();
    const bw = await measureReadBandwidth(gpu, { bytes: opts.bandwidthMiB * 2 ** 20 });
    log(`${cpu}, ${cores} cores; adapter ${gpu.adapterName}; streaming read ${fmt(bw.gbPerS)} GB/s over ${(bw.bytes / 2 ** 20).toFixed(0)} MiB`);
    if (opts.vsLlamaCpp) {
      lc = await loadLlamaCpp({ threads, install: true, log });
      log(`llama.cpp: node-llama-cpp ${lc.version} (${lc.release}), CPU, ${lc.threads} threads`);
    }

    const rows: BenchRow[] = [];
    for (const dtype of dtypes) {
      const t0 = performance.now();
      const model = await LlamaModel.fromProvider(oursProvider, { dtype, context, gpu, prefillChunk, fuseDecode: opts.fuseDecode, gpuSampling: opts.gpuSampling, onProgress: opts.loadProgress?.(`loading ${m.label} ${dtype}`) });
      log(`loaded ${m.label} as ${dtype} (${(model.weightBytes / 2 ** 20).toFixed(1)} MiB on the GPU) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      let ours: Timing[];
      try {
        ours = await timeAll((p, g) => timeOurs(model, p, g, opts.temperature ?? 0), prompts, gen, runs);
      } finally {
        model.destroy();
      }
      const oursBytes = oursWeightBytesPerToken(cfg, dtype);
      let theirs: Timing[] | null = null;
      const ggufType = GGUF_TYPE[dtype];
      if (lc && !ggufType) log(`llama.cpp: no GGUF type for our format ${dtype}; skipped`);
      if (lc && ggufType) {
        const path = await cachedGguf(m, opts.cache, ggufType, log);
        const s = await lc.open(path, context);
        try {
          theirs = await timeAll((p, g) => s.run(p, g), prompts, gen, runs);
        } finally {
          await s.close();
        }
      }
      lengths.forEach((n, i) => {
        const o = ours[i]!;
        const t = theirs?.[i] ?? null;
        const bound = (bw.gbPerS * 1e9) / oursBytes;
        const oursNum: RuntimeNumbers = { prefill_tps: o.prefill_tps, decode_tps: o.decode_tps, ttft_ms: o.ttft_ms, weight_bytes_per_token: oursBytes };
        let lcNum: LlamaCppNumbers | null = null;
        if (t && ggufType) {
          const same = o.tokens.findIndex((tok, k) => t.tokens[k] !== tok);
          lcNum = {
            prefill_tps: t.prefill_tps, decode_tps: t.decode_tps, ttft_ms: t.ttft_ms, weight_bytes_per_token: ggufWeightBytesPerToken(cfg, ggufType),
            gguf_type: ggufType, threads, same_tokens: same < 0 ? o.tokens.length : same,
          };
        }
        const row: BenchRow = {
          model: m.label, dtype, prompt_tokens: n, gen_tokens: gen, ours: oursNum, llamacpp: lcNum,
          ratio_decode: lcNum ? o.decode_tps / lcNum.decode_tps : null, ratio_prefill: lcNum ? o.prefill_tps / lcNum.prefill_tps : null,
          bound_decode_tps: bound, fraction_of_bound: o.decode_tps / bound, bandwidth_gb_s: bw.gbPerS,
          adapter: gpu!.adapterName, cpu, cores, date,
        };
        rows.push(row);
        log(`${dtype} prompt ${n}: ours prefill ${fmt(o.prefill_tps)} tok/s, TTFT ${fmt(o.ttft_ms)} ms, decode ${fmt(o.decode_tps)} tok/s ` +
          `(${(100 * row.fraction_of_bound).toFixed(0)}% of ${fmt(bound)})` +
          (lcNum ? `; llama.cpp prefill ${fmt(lcNum.prefill_tps)}, TTFT ${fmt(lcNum.ttft_ms)} ms, decode ${fmt(lcNum.decode_tps)}; decode ratio ${row.ratio_decode!.toFixed(2)}` : ''));
        if (opts.json) process.stdout.write(JSON.stringify(row) + '\n');
      });
    }

    const meta: BenchMeta = {
      model: m.label, shape: shapeLine(cfg), weights: m.weights, adapter: gpu.adapterName, cpu, cores, date,
      bandwidth_gb_s: bw.gbPerS, bandwidth_bytes: bw.bytes, runs,
      llamacpp: lc ? { version: lc.version, release: lc.release, threads: lc.threads } : null,
    };
    const md = markdownReport(meta, rows);
    const out = opts.out;
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'generate.json'), JSON.stringify({ ...meta, rows }, null, 2) + '\n');
    await writeFile(join(out, 'generate.md'), md);
    await writeFile(join(out, 'generate.svg'), svgChart(meta, rows));
    log(`wrote ${['json', 'md', 'svg'].map((e) => join(out, `generate.${e}`)).join(', ')}`);
    if (!opts.json) process.stdout.write(md);
  } finally {
    await lc?.close();
    gpu?.destroy();
    await m.close();
  }
}


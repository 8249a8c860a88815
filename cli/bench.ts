// `llama2-webgpu bench generate|serve|kernels|quality|host`. The flags of generate, serve and quality are
// parsed here into the benchmark's typed options; kernels and host keep their own parsers in bench/ (kernels
// also runs standalone), whose plain errors become usage errors here.

import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { benchGenerate } from '../bench/generate.ts';
import { benchServe, type BenchServeOptions } from '../bench/serve.ts';
import { benchKernels, parseBenchKernelsArgs } from '../bench/kernels.ts';
import { measurePerplexity, perplexityTable, checkPerplexityFormats, DEFAULT_OURS, DEFAULT_LLAMACPP, type PerplexityRow } from '../bench/perplexity.ts';
import { runBenchHost, parseBenchHostArgs, BENCH_HOST_HELP } from '../bench/host.ts';
import { createGpuContext } from '../runtime/device.ts';
import { FORMATS, type WeightFormat } from '../kernels/weight-formats.ts';
import { BUILTIN_MODEL_NAMES } from '../checkpoint/builtin-configs.ts';
import { UsageError, parseCommandArgs, intArg, numArg, choiceArg, progressPrinter } from './common.ts';

const BENCH_GENERATE_HELP = `llama2-webgpu bench generate [options]
  Prefill tok/s, time to first token and decode tok/s per weight format and prompt length, on random
  weights of a real model's shape; with --vs llamacpp, llama.cpp (CPU) on the same weights as GGUF.
  --model NAME|DIR        tinyllama-1.1b (default), llama-2-7b, ${BUILTIN_MODEL_NAMES.filter((n) => n !== 'tinyllama-1.1b' && n !== 'llama-2-7b').join(', ')},
                          tiny (a 2-layer test shape), or an HF directory / .gguf file (its own weights)
  --dtype LIST            weight formats, comma-separated (default: q4,q8,f16 where this build has them)
  --prompt-lengths LIST   prompt tokens, comma-separated (default 128,512,2048)
  --gen N                 tokens to generate per request (default 128)
  --vs llamacpp           also run llama.cpp through node-llama-cpp (installed into bench/llamacpp on first use)
  --threads N             llama.cpp threads (default: the number of cores)
  --runs N                timed requests per row, medians reported (default 1)
  --temperature T         sample our requests at T (top_p 0.9, top_k 40, seed 1234; default 0: greedy)
  --fused auto|on|off     the fused decode step (default auto: on GPUs, off on software adapters)
  --gpu-sampling auto|on|off  sampled tokens picked on the GPU in resident decode runs (default auto: as --fused)
  --prefill-chunk N       our prefill rows per step (default 128)
  --seed N                seed of the random weights and prompt ids (default 1234)
  --bandwidth-mib N       buffer of the read-bandwidth measurement (default 256, capped by the adapter)
  --out DIR               where generate.json, generate.md and generate.svg go (default bench/results)
  --cache DIR             GGUF files for llama.cpp, written once (default bench/.cache)
  --json                  print one JSON object per row instead of the table`;

const BENCH_SERVE_HELP = `llama2-webgpu bench serve [--model DIR|FILE|default|tiny-random-llama-2] [--dtype q4|q8|f16|f32]
                          [--concurrency 16] [--max-tokens 16] [--turns 5] [--turn-tokens 400] [--json]
  Aggregate decode tokens/s of N concurrent streaming clients vs the same requests one at a time, and the
  time to first token of turn T of a conversation with and without prefix caching. The default model is
  tiny-random-llama-2 (2048 positions of context: the conversation outgrows the trained default's 512).`;

export const BENCH_HELP = `${BENCH_GENERATE_HELP}

${BENCH_SERVE_HELP}

llama2-webgpu bench kernels [--json] [--dtypes f32,f16,q8,q4,Q4_K,...|gguf] [--shapes 4096x4096,...] [--kernels matvec,prefill,tiled]
                            [--iterations N] [--no-f32-70b] [--prefill-m M]
  Time per call, weight GB/s, and that as a fraction of the adapter's streaming-read bandwidth measured in the
  same run, for the matmul kernels on Llama-2-7B's and 70B's shapes; prefill matmul in GFLOP/s. With --json each
  line is an object with kernel, dtype, rows, cols, ms, gbps, read_gbps, fraction (and gflops).

llama2-webgpu bench quality [--model default] --text FILE [--tokens N] [--ours f32,f16,q8,q4,Q8_0,Q4_0,Q4_K_M]
                            [--llamacpp F32,Q8_0,Q4_0,Q4_K_M|none] [--json]
  Per-token perplexity of a text under each weight format, ours beside llama.cpp's on the same weights and the
  same tokens (windows of the model's context, each after BOS). Our formats: f32/f16/q8/q4 (converted at load)
  and GGUF types (the model written as F32 GGUF, quantized by llama.cpp's own quantizer, loaded as stored).
  llama.cpp runs through node-llama-cpp (installed into bench/llamacpp on first use). With --json each line is
  {"engine":"ours"|"llamacpp","format","tokens","ppl","nll"}.

${BENCH_HOST_HELP}`;

export async function runBench(argv: string[]): Promise<number> {
  const [which, ...rest] = argv;
  switch (which) {
    case 'generate':
      return runBenchGenerate(rest);
    case 'serve':
      await benchServe(parseBenchServeArgs(rest));
      return 0;
    case 'kernels': {
      let o;
      try {
        o = parseBenchKernelsArgs(rest);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      await benchKernels({ ...o, print: (l) => process.stdout.write(l + '\n') });
      return 0;
    }
    case 'quality': {
      const { values } = parseCommandArgs(rest, {
        model: { type: 'string', default: 'default' },
        text: { type: 'string' },
        tokens: { type: 'string' },
        ours: { type: 'string' },
        llamacpp: { type: 'string' },
        json: { type: 'boolean', default: false },
      });
      if (values.text === undefined) throw new UsageError('--text FILE is required (e.g. bench/data/kjv-heldout.txt)');
      const { readFile } = await import('node:fs/promises');
      const text = await readFile(values.text, 'utf8').catch((e: Error) => {
        throw new UsageError(`cannot read --text ${values.text}: ${e.message}`);
      });
      const maxTokens = intArg('tokens', values.tokens, Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
      const list = (v: string | undefined, def: string[]): string[] => (v === undefined ? def : v === 'none' ? [] : v.split(',').map((x) => x.trim()).filter(Boolean));
      const ours = list(values.ours, DEFAULT_OURS);
      const llamacpp = list(values.llamacpp, DEFAULT_LLAMACPP);
      try {
        checkPerplexityFormats(ours, true);
        checkPerplexityFormats(llamacpp, false);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      if (llamacpp.length) {
        // node-llama-cpp is bench-only: installed into bench/llamacpp on first use, as bench generate does
        const { llamaCppInstalled, installLlamaCpp } = await import('../bench/llamacpp/runner.ts');
        if (!llamaCppInstalled()) await installLlamaCpp((l) => process.stderr.write(l + '\n'));
      }
      const gpu = await createGpuContext();
      const rows: PerplexityRow[] = [];
      for await (const r of measurePerplexity({ model: values.model!, text, maxTokens, ours, llamacpp, gpu, log: (l) => process.stderr.write(l + '\n') })) {
        rows.push(r);
        if (values.json) process.stdout.write(JSON.stringify(r) + '\n');
      }
      if (!values.json) process.stdout.write(perplexityTable(rows) + '\n');
      gpu.destroy();
      return 0;
    }
    case 'host': {
      try {
        parseBenchHostArgs(rest);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      await runBenchHost(rest, (l) => process.stdout.write(l + '\n'));
      return 0;
    }
    default:
      throw new UsageError(`unknown benchmark "${which ?? ''}" (expected: generate, serve, kernels, quality, host)`);
  }
}

/** `bench generate`'s flags into its options, and the run; 0 when it finished. */
export async function runBenchGenerate(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    model: { type: 'string', default: 'tinyllama-1.1b' },
    dtype: { type: 'string' },
    'prompt-lengths': { type: 'string' },
    gen: { type: 'string' },
    vs: { type: 'string' },
    threads: { type: 'string' },
    runs: { type: 'string' },
    'prefill-chunk': { type: 'string' },
    seed: { type: 'string' },
    'bandwidth-mib': { type: 'string' },
    out: { type: 'string', default: 'bench/results' },
    cache: { type: 'string', default: join('bench', '.cache') },
    json: { type: 'boolean', default: false },
    temperature: { type: 'string' },
    fused: { type: 'string' },
    'gpu-sampling': { type: 'string' },
  });
  const onOff = (name: string, v: string | undefined): boolean | undefined => {
    const c = choiceArg(name, v ?? 'auto', ['auto', 'on', 'off'] as const);
    return c === 'auto' ? undefined : c === 'on';
  };
  if (values.vs !== undefined && values.vs !== 'llamacpp') throw new UsageError(`--vs must be "llamacpp", got "${values.vs}"`);
  const dtypes = dtypeList(values.dtype);
  if (dtypes.length === 0) throw new UsageError('--dtype: no weight format to run');
  await benchGenerate({
    model: values.model!,
    dtypes,
    promptLengths: intList('prompt-lengths', values['prompt-lengths'], [128, 512, 2048]),
    gen: intArg('gen', values.gen, 128, 2, 1 << 20),
    vsLlamaCpp: values.vs === 'llamacpp',
    threads: intArg('threads', values.threads, availableParallelism(), 1, 1024),
    runs: intArg('runs', values.runs, 1, 1, 100),
    prefillChunk: values['prefill-chunk'] === undefined ? undefined : intArg('prefill-chunk', values['prefill-chunk'], 128, 1, 65536),
    seed: intArg('seed', values.seed, 1234, 0, 0xffffffff),
    bandwidthMiB: intArg('bandwidth-mib', values['bandwidth-mib'], 256, 1, 1 << 16),
    out: values.out!,
    cache: values.cache!,
    json: values.json!,
    temperature: numArg('temperature', values.temperature, 0, 0, 2),
    fuseDecode: onOff('fused', values.fused),
    gpuSampling: onOff('gpu-sampling', values['gpu-sampling']),
    loadProgress: progressPrinter,
  });
  return 0;
}

function intList(name: string, v: string | undefined, def: number[]): number[] {
  if (v === undefined) return def;
  const out = v.split(',').map((s) => intArg(name, s.trim(), 0, 1, 1 << 20));
  if (out.length === 0) throw new UsageError(`--${name} is empty`);
  return out;
}

function dtypeList(v: string | undefined): WeightFormat[] {
  const have = Object.keys(FORMATS);
  if (v === undefined) return (['q4', 'q8', 'f16'] as string[]).filter((d) => have.includes(d)) as WeightFormat[];
  const out = v.split(',').map((s) => s.trim());
  for (const d of out) if (!have.includes(d)) throw new UsageError(`--dtype: unknown weight format "${d}" (this build has ${have.join(', ')})`);
  return out as WeightFormat[];
}

function parseBenchServeArgs(argv: string[]): BenchServeOptions {
  const { values } = parseCommandArgs(argv, {
    model: { type: 'string', default: 'tiny-random-llama-2' },
    dtype: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    'max-tokens': { type: 'string', default: '16' },
    turns: { type: 'string', default: '5' },
    'turn-tokens': { type: 'string', default: '400' },
    json: { type: 'boolean', default: false },
  });
  return {
    model: values.model!,
    dtype: values.dtype as WeightFormat | undefined,
    concurrency: Number(values.concurrency),
    maxTokens: Number(values['max-tokens']),
    turns: Number(values.turns),
    turnTokens: Number(values['turn-tokens']),
    json: values.json!,
  };
}

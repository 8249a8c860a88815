// `llama2-webgpu bench generate|kernels|quality`.

import { runBenchGenerate, BENCH_GENERATE_HELP } from '../bench/generate.ts';
import { runBenchServe, BENCH_SERVE_HELP } from '../bench/serve.ts';
import { benchKernels, parseBenchKernelsArgs } from '../bench/kernels.ts';
import { measurePerplexity, perplexityTable, checkPerplexityFormats, DEFAULT_OURS, DEFAULT_LLAMACPP, type PerplexityRow } from '../bench/perplexity.ts';
import { runBenchHost, parseBenchHostArgs, BENCH_HOST_HELP } from '../bench/host.ts';
import { createGpuContext } from '../runtime/device.ts';
import { UsageError, parseCommandArgs, intArg } from './common.ts';

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
      return runBenchServe(rest);
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

// `llama2-webgpu bench generate|kernels|quality`.

import { runBenchGenerate, BENCH_GENERATE_HELP } from '../bench/generate.ts';
import { runBenchServe, BENCH_SERVE_HELP } from '../bench/serve.ts';
import { benchKernels, parseBenchKernelsArgs } from '../bench/kernels.ts';
import { measureQuality, qualityTable } from '../bench/quality.ts';
import { runBenchHost, parseBenchHostArgs, BENCH_HOST_HELP } from '../bench/host.ts';
import { createGpuContext } from '../runtime/device.ts';
import { UsageError } from './common.ts';

export const BENCH_HELP = `${BENCH_GENERATE_HELP}

${BENCH_SERVE_HELP}

llama2-webgpu bench kernels [--json] [--dtypes f32,f16,q8,q4] [--shapes 4096x4096,...] [--kernels matvec,prefill,tiled]
                            [--iterations N] [--no-f32-70b] [--prefill-m M]
  Time per call, weight GB/s, and that as a fraction of the adapter's streaming-read bandwidth measured in the
  same run, for the matmul kernels on Llama-2-7B's and 70B's shapes; prefill matmul in GFLOP/s. With --json each
  line is an object with kernel, dtype, rows, cols, ms, gbps, read_gbps, fraction (and gflops).

llama2-webgpu bench quality [--positions N]
  Top-1 agreement and logit error of f16, q8 and q4 against f32 on a random-weights model.

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
      const i = rest.indexOf('--positions');
      const positions = i >= 0 ? Number(rest[i + 1]) : 256;
      if (!Number.isInteger(positions) || positions < 2 || positions > 512) throw new UsageError('--positions must be an integer in [2, 512]');
      const gpu = await createGpuContext();
      process.stdout.write(qualityTable(await measureQuality(gpu, ['f32', 'f16', 'q8', 'q4'], positions)) + '\n');
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

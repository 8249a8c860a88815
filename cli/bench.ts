// `llama2-webgpu bench generate|kernels|quality`.

import { runBenchGenerate, BENCH_GENERATE_HELP } from '../bench/generate.ts';
import { UsageError } from './common.ts';

export const BENCH_HELP = `${BENCH_GENERATE_HELP}`;

export async function runBench(argv: string[]): Promise<number> {
  const [which, ...rest] = argv;
  switch (which) {
    case 'generate':
      return runBenchGenerate(rest);
    default:
      throw new UsageError(`unknown benchmark "${which ?? ''}" (expected: generate)`);
  }
}

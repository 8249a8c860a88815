// The llama2-webgpu command line.

import { runGenerate, GENERATE_HELP } from './generate.ts';
import { runServe, SERVE_HELP } from './serve.ts';
import { runPlan, PLAN_HELP } from './plan.ts';
import { runBench, BENCH_HELP } from './bench.ts';
import { runConvert, CONVERT_HELP } from './convert.ts';
import { readFileSync } from 'node:fs';
import { closest, isUsageError, reportUsageError } from './common.ts';

const COMMANDS = ['generate', 'serve', 'plan', 'convert', 'bench'] as const;

/** This package's version: package.json is two levels up from dist/cli/ (one from cli/ when run from source). */
export function version(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'llama2-webgpu' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next
    }
  }
  return 'unknown';
}

const HELP = `llama2-webgpu: Llama-2 inference on WebGPU

Usage: llama2-webgpu COMMAND [options]     (llama2-webgpu COMMAND --help for one command; --version)

Commands:
  generate   raw text completion
  serve      OpenAI-compatible HTTP server with continuous batching
  plan       memory plan of a model across devices, before allocating anything
  convert    pre-quantize a model for fast loading
  bench      benchmarks: bench generate (vs llama.cpp), bench kernels, bench quality, bench host

${GENERATE_HELP}

${SERVE_HELP}

${PLAN_HELP}

${CONVERT_HELP}

${BENCH_HELP}
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd) {
      // No command is a usage error: the help goes to stderr, with status 2.
      process.stderr.write(HELP);
      return 2;
    }
    if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
      process.stdout.write(HELP);
      return 0;
    }
    if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
      process.stdout.write(`llama2-webgpu ${version()}\n`);
      return 0;
    }
    if ((COMMANDS as readonly string[]).includes(cmd) && (rest.includes('--help') || rest.includes('-h'))) {
      const helps: Record<string, string> = { generate: GENERATE_HELP, serve: SERVE_HELP, plan: PLAN_HELP, bench: BENCH_HELP, convert: CONVERT_HELP };
      process.stdout.write((helps[cmd] ?? HELP) + '\n');
      return 0;
    }
    switch (cmd) {
      case 'generate':
        await runGenerate(rest);
        return 0;
      case 'convert':
        return await runConvert(rest);
      case 'bench':
        return await runBench(rest);
      case 'plan':
        return await runPlan(rest);
      case 'serve':
        await runServe(rest);
        return 0;
      default: {
        const guess = closest(cmd.replace(/^-+/, ''), COMMANDS);
        process.stderr.write(`llama2-webgpu: unknown command "${cmd}"${guess ? ` (did you mean "${guess}"?)` : ''}\n` +
          `Commands: ${COMMANDS.join(', ')}. Run "llama2-webgpu --help" for usage.\n`);
        return 2;
      }
    }
  } catch (e) {
    if (isUsageError(e)) return reportUsageError(cmd, e);
    const err = e as Error;
    process.stderr.write(`llama2-webgpu: error: ${err.message}\n`);
    if (process.env.DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

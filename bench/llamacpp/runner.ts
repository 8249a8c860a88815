// llama.cpp as a benchmark baseline, through node-llama-cpp's prebuilt CPU binary.
//
// node-llama-cpp is a bench-only dependency with its own package.json next to this file; nothing in the
// runtime imports it. It is installed into bench/llamacpp/node_modules on first use (or by hand):
//   npm install --prefix bench/llamacpp --omit=optional --ignore-scripts --no-audit --no-fund
// --omit=optional skips its CUDA/Vulkan/Metal builds (node-llama-cpp lists every platform binary as an
// optional dependency; package.json names the linux-x64 CPU one directly), --ignore-scripts keeps its
// postinstall from downloading or compiling llama.cpp. About 85 MB. NODE_LLAMA_CPP_DIR, when set, points
// at another install's node_modules/node-llama-cpp instead.
//
// Timing is the same as for our runtime (bench/generate.ts): from token ids, greedy, wall clock around
// the sequence's evaluation. TTFT = prompt evaluation + the first sampled token; decode tok/s over the
// tokens after the first.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const NODE_LLAMA_CPP_VERSION = '3.22.1';

// The slice of node-llama-cpp's API used here (imported at run time, untyped).
interface NlcSequence {
  evaluate(tokens: number[], opts: { temperature: number; yieldEogToken: boolean }): AsyncGenerator<number>;
  controlledEvaluate(input: [number, { generateNext: { logits: true } }][]): Promise<({ next: { logits?: Map<number, number> } } | undefined)[]>;
  clearHistory(): Promise<void>;
}
interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
interface NlcModel {
  createContext(opts: Record<string, unknown>): Promise<NlcContext>;
  tokenize(text: string): number[];
  dispose(): Promise<void>;
}
interface NlcLlama {
  loadModel(opts: { modelPath: string }): Promise<NlcModel>;
  buildType: string;
  cpuMathCores: number;
  llamaCppRelease: { repo: string; release: string };
  dispose(): Promise<void>;
}
interface Nlc {
  getLlama(opts: Record<string, unknown>): Promise<NlcLlama>;
}

/** One timed generation. */
export interface LlamaCppTiming {
  prefill_tps: number; // prompt tokens / TTFT
  decode_tps: number; // (tokens - 1) / (time of the last token - time of the first)
  ttft_ms: number;
  tokens: number[]; // the generated ids
}

export interface LlamaCppSession {
  /** Greedy generation of exactly `gen` tokens (EOS does not stop it) after `prompt`, from an empty cache. */
  run(prompt: number[], gen: number): Promise<LlamaCppTiming>;
  /** The logits after each of `tokens` (row p: the distribution of token p+1), from an empty cache. */
  logits(tokens: number[], vocabSize: number): Promise<Float32Array>;
  /** `text` in the model's vocabulary, by llama.cpp's own tokenizer (no BOS). */
  tokenize(text: string): number[];
  close(): Promise<void>;
}

export interface LlamaCppRuntime {
  version: string; // node-llama-cpp's
  release: string; // the llama.cpp release its binary was built from
  threads: number;
  /** `f32Cache`: an F32 KV cache (llama.cpp's default is F16), for comparisons of exact numbers. */
  open(ggufPath: string, contextSize: number, opts?: { f32Cache?: boolean }): Promise<LlamaCppSession>;
  close(): Promise<void>;
}

/** bench/llamacpp of the checkout: this file's folder from the sources, ../../../bench/llamacpp from dist/. */
function llamaCppPackageDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [here, resolve(here, '../../../bench/llamacpp')]) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'llama2-webgpu-bench-llamacpp') return dir;
  }
  throw new Error(`cannot find bench/llamacpp/package.json near ${here}: run from a clone of the repository, or set NODE_LLAMA_CPP_DIR`);
}

function installedDir(): string {
  return process.env.NODE_LLAMA_CPP_DIR ?? join(llamaCppPackageDir(), 'node_modules', 'node-llama-cpp');
}

/** Whether node-llama-cpp can be imported without installing it. */
export function llamaCppInstalled(): boolean {
  try {
    return existsSync(join(installedDir(), 'package.json'));
  } catch {
    return false;
  }
}

/** Installs bench/llamacpp's dependencies with npm; npm's output goes to stderr. */
export async function installLlamaCpp(log: (line: string) => void): Promise<void> {
  const dir = llamaCppPackageDir();
  const args = ['install', '--prefix', dir, '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'];
  log(`installing node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (llama.cpp's prebuilt CPU binary, ~85 MB) into ${relative(process.cwd(), dir) || '.'}/node_modules:\n  npm ${args.map((a) => (a === dir ? relative(process.cwd(), dir) || '.' : a)).join(' ')}`);
  await new Promise<void>((res, rej) => {
    const child = spawn(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { stdio: ['ignore', 2, 2] });
    child.on('error', rej);
    child.on('exit', (code) => (code === 0 ? res() : rej(new Error(`npm install in ${dir} failed with exit code ${code}`))));
  });
}

/** The node-llama-cpp module (untyped) from bench/llamacpp/node_modules or NODE_LLAMA_CPP_DIR. */
export async function importNodeLlamaCpp(): Promise<unknown> {
  const dir = installedDir();
  try {
    return await import(/* @vite-ignore */ pathToFileURL(join(dir, 'dist', 'index.js')).href);
  } catch (e) {
    throw new Error(`cannot import node-llama-cpp from ${dir} (${(e as Error).message}); install it with: npm install --prefix bench/llamacpp --omit=optional --ignore-scripts --no-audit --no-fund`);
  }
}

/**
 * Loads node-llama-cpp (installing it first when `install` and it is missing) and its CPU backend; never
 * builds or downloads llama.cpp itself.
 */
export async function loadLlamaCpp(opts: { threads: number; install: boolean; log: (line: string) => void }): Promise<LlamaCppRuntime> {
  if (!llamaCppInstalled()) {
    if (!opts.install || process.env.NODE_LLAMA_CPP_DIR) throw new Error(`node-llama-cpp is not installed at ${installedDir()}; run: npm install --prefix bench/llamacpp --omit=optional --ignore-scripts --no-audit --no-fund`);
    await installLlamaCpp(opts.log);
  }
  const nlc = (await importNodeLlamaCpp()) as Nlc;
  const pkg = JSON.parse(readFileSync(join(installedDir(), 'package.json'), 'utf8')) as { version: string };
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: opts.threads });
  const threads = opts.threads;
  return {
    version: pkg.version,
    release: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
    threads,
    close: () => llama.dispose(),
    async open(ggufPath, contextSize, opts = {}) {
      const model = await llama.loadModel({ modelPath: ggufPath });
      const cache = opts.f32Cache ? { flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } : {};
      const ctx = await model.createContext({ contextSize, sequences: 1, threads: { ideal: threads, min: threads }, ...cache });
      const seq = ctx.getSequence();
      return {
        async run(prompt, gen) {
          if (gen < 1) throw new Error('llama.cpp run: gen must be >= 1');
          await seq.clearHistory();
          const tokens: number[] = [];
          const t0 = performance.now();
          let tFirst = 0;
          let tLast = 0;
          // temperature 0: llama.cpp's greedy sampler; yieldEogToken: EOS is a token like any other here.
          for await (const t of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
            tLast = performance.now();
            if (tokens.length === 0) tFirst = tLast;
            tokens.push(t);
            if (tokens.length >= gen) break;
          }
          const ttft = (tFirst - t0) / 1000;
          return {
            prefill_tps: prompt.length / ttft,
            decode_tps: tokens.length > 1 ? (tokens.length - 1) / ((tLast - tFirst) / 1000) : NaN,
            ttft_ms: ttft * 1000,
            tokens,
          };
        },
        async logits(tokens, vocabSize) {
          await seq.clearHistory();
          const res = await seq.controlledEvaluate(tokens.map((t) => [t, { generateNext: { logits: true } }]));
          const out = new Float32Array(tokens.length * vocabSize);
          for (let p = 0; p < tokens.length; p++) {
            const lg = res[p]?.next.logits;
            if (!lg || lg.size !== vocabSize) throw new Error(`llama.cpp gave ${lg?.size ?? 0} logits at position ${p}, expected ${vocabSize}`);
            for (const [id, v] of lg) out[p * vocabSize + id] = v;
          }
          return out;
        },
        tokenize: (text) => model.tokenize(text),
        async close() {
          await ctx.dispose();
          await model.dispose();
        },
      };
    },
  };
}

// Built-in model configs, so that memory plans (runtime/planner.ts, `llama2-webgpu plan`) and benchmarks can
// name a model without its files. Numbers are those of the published HF config.json files
// (meta-llama/Llama-2-{7b,13b,70b}-hf, TinyLlama/TinyLlama-1.1B-Chat-v1.0); Llama-2 paper, Touvron et al.
// 2023, table 1 and section 2.2 (GQA for 70B: 8 key/value heads).

import { validateConfig, type LlamaConfig } from './config.ts';

/** The fields every Llama-2-family config here shares. */
const LLAMA2_COMMON = {
  vocabSize: 32000,
  normEps: 1e-5,
  ropeTheta: 10000,
  bosTokenId: 1,
  eosTokenId: 2,
  tieWordEmbeddings: false,
} as const;

function llama(dim: number, hiddenDim: number, nLayers: number, nHeads: number, nKvHeads: number, maxSeqLen: number): LlamaConfig {
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim: dim / nHeads, maxSeqLen, ...LLAMA2_COMMON };
}

export const BUILTIN_CONFIGS = {
  'llama-2-7b': llama(4096, 11008, 32, 32, 32, 4096),
  'llama-2-13b': llama(5120, 13824, 40, 40, 40, 4096),
  'llama-2-70b': llama(8192, 28672, 80, 64, 8, 4096), // GQA: 8 heads per kv head
  'tinyllama-1.1b': llama(2048, 5632, 22, 32, 4, 2048), // GQA: 8 heads per kv head
} as const satisfies Record<string, LlamaConfig>;

export type BuiltinModelName = keyof typeof BUILTIN_CONFIGS;

export const BUILTIN_MODEL_NAMES = Object.keys(BUILTIN_CONFIGS) as BuiltinModelName[];

for (const [name, c] of Object.entries(BUILTIN_CONFIGS)) validateConfig(c, name);

/** The built-in config called `name` (a copy), or null when there is none. */
export function builtinConfig(name: string): LlamaConfig | null {
  if (!Object.hasOwn(BUILTIN_CONFIGS, name)) return null;
  return { ...BUILTIN_CONFIGS[name as BuiltinModelName] };
}

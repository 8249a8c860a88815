// A small Llama-2-architecture model with deterministic random weights and the real Llama-2 tokenizer,
// built in memory in about a second (`--model tiny-random-llama-2`). Its text is meaningless by construction;
// tests use it where they need exact shapes (GQA like 70B, a 2048-token context) without files on disk.
// The default model (`--model default`) is the trained one in default-model.ts.

import type { LlamaConfig } from './config.ts';
import { mapDir, type ModelDir } from './byte-source.ts';
import { randomWeights, encodeHfModel } from './random-model.ts';
import { llama2TokenizerConfigJson, llama2TokenizerJsonText } from '../tokenizer/llama2-vocab.ts';

export const TINY_RANDOM_MODEL_NAME = 'tiny-random-llama-2';
export const TINY_RANDOM_MODEL_SEED = 2;

/** GQA like 70B (4 query heads per KV head), Llama-2's vocabulary, 2048 context: ~19M parameters. */
export const TINY_RANDOM_MODEL_CONFIG: LlamaConfig = {
  dim: 256,
  hiddenDim: 704,
  nLayers: 4,
  nHeads: 8,
  nKvHeads: 2,
  headDim: 32,
  vocabSize: 32000,
  maxSeqLen: 2048,
  normEps: 1e-5,
  ropeTheta: 10000,
  bosTokenId: 1,
  eosTokenId: 2,
  tieWordEmbeddings: false,
};

let cached: Record<string, Uint8Array> | null = null;

/** The files of the tiny random model (HF layout, F16 safetensors), built once per process. */
export function tinyRandomModelFiles(): Record<string, Uint8Array> {
  if (!cached) {
    cached = encodeHfModel(TINY_RANDOM_MODEL_CONFIG, randomWeights(TINY_RANDOM_MODEL_CONFIG, TINY_RANDOM_MODEL_SEED), {
      dtype: 'F16',
      tokenizerJson: llama2TokenizerJsonText(),
      tokenizerConfigJson: JSON.stringify(llama2TokenizerConfigJson()),
    });
  }
  return cached;
}

export function tinyRandomModelDir(): ModelDir {
  return mapDir(TINY_RANDOM_MODEL_NAME, tinyRandomModelFiles());
}

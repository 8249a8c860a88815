// The small model configs of the tests (and of bench/llamacpp's cross-checks of the same random models).
import type { LlamaConfig } from '../../checkpoint/config.ts';

/** A small Llama config of the given shape with Llama-2's vocabulary and token ids; `over` replaces any field. */
export function smallConfig(
  dim: number, hiddenDim: number, nLayers: number, nHeads: number, nKvHeads: number, headDim: number, over: Partial<LlamaConfig> = {},
): LlamaConfig {
  return {
    dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim,
    vocabSize: 32000, maxSeqLen: 256, normEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, tieWordEmbeddings: false,
    ...over,
  };
}

/** Small configs for tests: one multi-head, one grouped-query (3 q heads per kv head). */
export const TEST_CONFIGS: { mha: LlamaConfig; gqa: LlamaConfig } = {
  mha: smallConfig(64, 172, 2, 4, 4, 16),
  gqa: smallConfig(96, 256, 3, 6, 2, 16),
};

// The runtime's defaults, written once: the model's buffers (runtime/model.ts, runtime/planner.ts), the
// scheduler, and the commands and the served-model assembly that expose them as options.

export const RUNTIME_DEFAULTS = {
  /** Positions per sequence when none is given: the model's max_position_embeddings, at most this. */
  maxContext: 4096,
  /** Token rows of one forward step: a prompt is prefilled in chunks of this many tokens. */
  prefillChunk: 128,
  /** Rows of logits one forward step computes (sequences decoding together, at most). */
  maxOut: 8,
  /** Positions per KV-cache block. */
  blockSize: 16,
  /** Sequences holding KV cache at once (a LlamaModel on its own). */
  nSlots: 1,
  /** Waiting requests before the scheduler refuses new ones. */
  maxQueue: 64,
  /** Sequences decoding together in a served model (serve/llama-engine.ts, `llama2-webgpu serve`). */
  maxBatch: 8,
  /** Greedy decode steps recorded and submitted before their tokens are read back (the GPU-resident loop). */
  residentSteps: 8,
} as const;

/** The context of a model whose max_position_embeddings is `maxSeqLen`, when none is asked for. */
export const defaultContext = (maxSeqLen: number): number => Math.min(maxSeqLen, RUNTIME_DEFAULTS.maxContext);

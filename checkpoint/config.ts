// Model hyper-parameters, in the names the forward pass uses, parsed from a Hugging Face config.json.

export interface LlamaConfig {
  dim: number; // hidden size (4096 for 7B, 8192 for 70B)
  hiddenDim: number; // FFN inner size (11008 for 7B, 28672 for 70B)
  nLayers: number;
  nHeads: number; // query heads
  nKvHeads: number; // key/value heads; nHeads % nKvHeads == 0 (GQA when smaller)
  headDim: number; // dim / nHeads
  vocabSize: number;
  maxSeqLen: number; // max_position_embeddings: the context length
  normEps: number; // rms_norm_eps
  ropeTheta: number; // rope_theta (10000 for Llama-2)
  /**
   * Linear RoPE scaling ("position interpolation", Chen et al. 2023, arXiv:2306.15595): rotary angles
   * use position / ropeScaleFactor. From config.json rope_scaling {"type": "linear", "factor": F} or
   * GGUF llama.rope.scaling.factor. Absent or 1: no scaling.
   */
  ropeScaleFactor?: number;
  bosTokenId: number;
  eosTokenId: number;
  tieWordEmbeddings: boolean;
}

/** Parses an HF LlamaForCausalLM config.json object; throws naming the bad field. */
export function parseHfConfig(json: Record<string, unknown>, source = 'config.json'): LlamaConfig {
  const num = (key: string, fallback?: number): number => {
    const v = json[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${source}: missing required field "${key}"`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${source}: field "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const archs = json.architectures;
  if (Array.isArray(archs) && archs.length > 0 && !archs.some((a) => a === 'LlamaForCausalLM')) {
    throw new Error(`${source}: architecture ${JSON.stringify(archs)} is not supported (expected LlamaForCausalLM)`);
  }
  refuseUnsupported(json, source);
  const dim = num('hidden_size');
  const nHeads = num('num_attention_heads');
  const nKvHeads = num('num_key_value_heads', nHeads);
  const eos = json.eos_token_id;
  const cfg: LlamaConfig = {
    dim,
    hiddenDim: num('intermediate_size'),
    nLayers: num('num_hidden_layers'),
    nHeads,
    nKvHeads,
    headDim: num('head_dim', dim / nHeads),
    vocabSize: num('vocab_size'),
    maxSeqLen: num('max_position_embeddings', 4096),
    normEps: num('rms_norm_eps', 1e-5),
    ropeTheta: num('rope_theta', 10000),
    bosTokenId: num('bos_token_id', 1),
    eosTokenId: Array.isArray(eos) ? Number(eos[0]) : num('eos_token_id', 2),
    tieWordEmbeddings: json.tie_word_embeddings === true,
  };
  const factor = ropeScalingFactor(json.rope_scaling, source);
  if (factor !== 1) cfg.ropeScaleFactor = factor;
  validateConfig(cfg, source);
  return cfg;
}

/**
 * Fields of a Llama config.json that change the maths in ways this runtime does not implement: they are
 * refused by name rather than silently ignored (the model would load and produce wrong text).
 */
function refuseUnsupported(json: Record<string, unknown>, source: string): void {
  for (const key of ['attention_bias', 'mlp_bias'] as const) {
    if (json[key] === true) throw new Error(`${source}: "${key}": true is not supported (this runtime has no bias terms in the ${key === 'mlp_bias' ? 'MLP' : 'attention'} projections)`);
  }
  const act = json.hidden_act ?? json.hidden_activation;
  // "swish" is the same function as "silu" (x * sigmoid(x)) in transformers' ACT2FN.
  if (act !== undefined && act !== null && act !== 'silu' && act !== 'swish') {
    throw new Error(`${source}: "hidden_act": ${JSON.stringify(act)} is not supported (only "silu", Llama's SwiGLU)`);
  }
}

/**
 * The linear factor of an HF `rope_scaling` object ({"type" | "rope_type": "linear", "factor": F}); 1 for
 * none (absent, null, or type "default"). Any other type (dynamic, yarn, llama3, longrope, ...) throws.
 */
export function ropeScalingFactor(v: unknown, source = 'config.json'): number {
  if (v === undefined || v === null) return 1;
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${source}: "rope_scaling" must be an object or null, got ${JSON.stringify(v)}`);
  const o = v as Record<string, unknown>;
  const type = o.rope_type ?? o.type;
  if (type === 'default') return 1;
  if (type !== 'linear') {
    throw new Error(`${source}: rope_scaling type ${JSON.stringify(type ?? null)} is not supported (only "linear" RoPE scaling is implemented)`);
  }
  const f = o.factor;
  if (typeof f !== 'number' || !Number.isFinite(f) || f <= 0) {
    throw new Error(`${source}: rope_scaling "factor" must be a positive number, got ${JSON.stringify(f ?? null)}`);
  }
  return f;
}

export function validateConfig(c: LlamaConfig, source = 'config'): void {
  const positive: (keyof LlamaConfig)[] = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'headDim', 'vocabSize', 'maxSeqLen'];
  for (const k of positive) {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${source}: ${k} must be a positive integer, got ${v}`);
  }
  if (c.headDim * c.nHeads !== c.dim) throw new Error(`${source}: head_dim (${c.headDim}) x num_attention_heads (${c.nHeads}) != hidden_size (${c.dim})`);
  if (c.nHeads % c.nKvHeads !== 0) throw new Error(`${source}: num_attention_heads (${c.nHeads}) is not a multiple of num_key_value_heads (${c.nKvHeads})`);
  const f = c.ropeScaleFactor;
  if (f !== undefined && !(Number.isFinite(f) && f > 0)) throw new Error(`${source}: RoPE scale factor must be a positive number, got ${f}`);
  if (c.headDim % 2 !== 0) throw new Error(`${source}: head_dim must be even for rotary embeddings, got ${c.headDim}`);
}

/** The HF config.json that describes `c` (used when writing models). */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    ...(c.ropeScaleFactor !== undefined && c.ropeScaleFactor !== 1 ? { rope_scaling: { type: 'linear', factor: c.ropeScaleFactor } } : {}),
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    tie_word_embeddings: c.tieWordEmbeddings,
    hidden_act: 'silu',
    torch_dtype: 'float32',
  };
}

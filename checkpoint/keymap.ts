// The ONE map from outside tensor names to ours (Meta's names, as in llama2.c / tinygrad): the tensors a
// config needs, Hugging Face's and GGUF's names for them, the q/k row order GGUF keeps, and the one check
// that a checkpoint holds the whole set. Shapes are (rows, cols) = (out_features, in_features), row-major,
// as nn.Linear stores them.

import type { LlamaConfig } from './config.ts';

/** Our tensor names and shapes for a config. Per-layer names use `layers.{i}.`. */
export function expectedTensors(c: LlamaConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  m.set('tok_embeddings', [c.vocabSize, c.dim]);
  for (let i = 0; i < c.nLayers; i++) {
    const p = `layers.${i}.`;
    m.set(p + 'attention_norm', [c.dim]);
    m.set(p + 'wq', [qDim, c.dim]);
    m.set(p + 'wk', [kvDim, c.dim]);
    m.set(p + 'wv', [kvDim, c.dim]);
    m.set(p + 'wo', [c.dim, qDim]);
    m.set(p + 'ffn_norm', [c.dim]);
    m.set(p + 'w1', [c.hiddenDim, c.dim]); // gate
    m.set(p + 'w2', [c.dim, c.hiddenDim]); // down
    m.set(p + 'w3', [c.hiddenDim, c.dim]); // up
  }
  m.set('norm', [c.dim]);
  if (!c.tieWordEmbeddings) m.set('output', [c.vocabSize, c.dim]);
  return m;
}

const HF_LAYER: Record<string, string> = {
  'input_layernorm.weight': 'attention_norm',
  'self_attn.q_proj.weight': 'wq',
  'self_attn.k_proj.weight': 'wk',
  'self_attn.v_proj.weight': 'wv',
  'self_attn.o_proj.weight': 'wo',
  'post_attention_layernorm.weight': 'ffn_norm',
  'mlp.gate_proj.weight': 'w1',
  'mlp.down_proj.weight': 'w2',
  'mlp.up_proj.weight': 'w3',
};
const HF_GLOBAL: Record<string, string> = {
  'model.embed_tokens.weight': 'tok_embeddings',
  'model.norm.weight': 'norm',
  'lm_head.weight': 'output',
};

/** HF name -> our name, or null for tensors we do not use (e.g. rotary_emb.inv_freq). */
export function fromHfName(name: string): string | null {
  if (name in HF_GLOBAL) return HF_GLOBAL[name]!;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (m && m[2]! in HF_LAYER) return `layers.${m[1]}.${HF_LAYER[m[2]!]}`;
  return null;
}

/** Our name -> HF name (for writing models). */
export function toHfName(name: string): string {
  for (const [hf, ours] of Object.entries(HF_GLOBAL)) if (ours === name) return hf;
  const m = /^layers\.(\d+)\.(.+)$/.exec(name);
  if (m) for (const [hf, ours] of Object.entries(HF_LAYER)) if (ours === m[2]) return `model.layers.${m[1]}.${hf}`;
  throw new Error(`no HF name for tensor "${name}"`);
}

const GGUF_LAYER: Record<string, string> = {
  attn_norm: 'attention_norm',
  attn_q: 'wq',
  attn_k: 'wk',
  attn_v: 'wv',
  attn_output: 'wo',
  ffn_norm: 'ffn_norm',
  ffn_gate: 'w1',
  ffn_down: 'w2',
  ffn_up: 'w3',
};
const GGUF_GLOBAL: Record<string, string> = { token_embd: 'tok_embeddings', output_norm: 'norm', output: 'output' };

/** GGUF tensor name -> ours, or null for tensors we do not use (rope_freqs, ...). */
export function fromGgufName(name: string): string | null {
  const m = /^(?:blk\.(\d+)\.)?([a-z_]+)\.weight$/.exec(name);
  if (!m) return null;
  if (m[1] === undefined) return GGUF_GLOBAL[m[2]!] ?? null;
  const ours = GGUF_LAYER[m[2]!];
  return ours ? `layers.${m[1]}.${ours}` : null;
}

/** Our tensor name -> GGUF's (for writing). */
export function toGgufName(name: string): string {
  for (const [g, ours] of Object.entries(GGUF_GLOBAL)) if (ours === name) return `${g}.weight`;
  const m = /^layers\.(\d+)\.(.+)$/.exec(name);
  if (m) for (const [g, ours] of Object.entries(GGUF_LAYER)) if (ours === m[2]) return `blk.${m[1]}.${g}.weight`;
  throw new Error(`no GGUF name for tensor "${name}"`);
}

// Row order of wq / wk. HF checkpoints apply RoPE "rotate-half" style: within a head of D rows, row i
// (i < D/2) pairs with row i + D/2. Meta's original layout, which GGUF keeps and llama.cpp's rope (mode 0)
// expects, pairs adjacent rows 2i and 2i+1. llama.cpp's convert_hf_to_gguf.py turns one into the other per
// head (its `permute`: reshape (heads, 2, D/2, cols), swap the middle axes):
//     GGUF row h*D + 2*i + a  =  HF row h*D + a*D/2 + i        (a in {0, 1}, i < D/2)
// with `heads` = query heads for q and KV heads for k. Our tensors are in HF order (the rotate-half RoPE of
// our kernels and oracle): the GGUF reader applies the inverse, the GGUF writer the permutation itself.

/** How many heads a q/k tensor's rows are permuted in, or 0 for tensors that are not. */
export function qkHeads(name: string, c: LlamaConfig): number {
  if (name.endsWith('.wq')) return c.nHeads;
  if (name.endsWith('.wk')) return c.nKvHeads;
  return 0;
}

/**
 * Reorders the rows of a (heads * D, cols) matrix between the HF and the GGUF layouts (see above).
 * `toGguf` true: HF -> GGUF (what the converter does); false: GGUF -> HF.
 */
export function permuteQk<T extends Float32Array | Uint8Array>(w: T, heads: number, cols: number, toGguf: boolean): T {
  const rows = w.length / cols;
  const D = rows / heads;
  if (!Number.isInteger(D) || D % 2 !== 0) throw new Error(`permuteQk: ${rows} rows are not ${heads} heads of an even size`);
  // cols: elements per row (a Uint8Array of raw GGUF rows permutes whole rows of bytes: blocks never cross rows).
  const out = (w instanceof Float32Array ? new Float32Array(w.length) : new Uint8Array(w.length)) as T;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      for (let a = 0; a < 2; a++) {
        const g = h * D + 2 * i + a;
        const hf = h * D + a * (D / 2) + i;
        const [from, to] = toGguf ? [hf, g] : [g, hf];
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

/** How a checkpoint format names and checks the tensors it holds (see tensorSetProblems). */
export interface TensorSetRules<T> {
  /** The format's name for one of our tensors, as its messages show it (HF, GGUF). */
  nameOf(ours: string): string;
  /** The message for a tensor the config needs and the checkpoint lacks. */
  missing(name: string, shape: readonly number[]): string;
  /** The problems of a present tensor (shape, dtype, size, ...) as messages; none when it is fine. */
  check(t: T, name: string, shape: readonly number[], ours: string): string[];
  /** The message for a tensor the config does not account for; absent: such tensors are not looked for. */
  unexpected?(t: T, ours: string): string;
}

/**
 * The one tensor-set check of every checkpoint format: does `found` (our names -> the format's record of each
 * tensor) hold every tensor `cfg` needs, each passing the format's own checks? The problems, in
 * expectedTensors order (per tensor: missing, or what `check` finds), then the unexpected tensors; empty
 * when the set is complete. A format that stops at the first problem throws the first of the list.
 */
export function tensorSetProblems<T>(cfg: LlamaConfig, found: ReadonlyMap<string, T>, rules: TensorSetRules<T>): string[] {
  const problems: string[] = [];
  const expected = expectedTensors(cfg);
  for (const [ours, shape] of expected) {
    const t = found.get(ours);
    const name = rules.nameOf(ours);
    if (t === undefined) problems.push(rules.missing(name, shape));
    else problems.push(...rules.check(t, name, shape, ours));
  }
  if (rules.unexpected) for (const [ours, t] of found) if (!expected.has(ours)) problems.push(rules.unexpected(t, ours));
  return problems;
}

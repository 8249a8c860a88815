// The ONE map from outside tensor names to ours (Meta's names, as in llama2.c / tinygrad).
// Shapes are (rows, cols) = (out_features, in_features), row-major, as nn.Linear stores them.

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

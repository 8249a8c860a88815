// The CPU oracle: a plain TypeScript Llama-2 forward pass, one token at a time, in f64 accumulators.
// It shares no code with the GPU path (not even the kernels' references) so that the two can be
// compared. Math as in Meta's llama/model.py with the HF rotate-half RoPE layout.

import type { LlamaConfig } from './config.ts';

export class ReferenceModel {
  private readonly k: Float32Array[]; // per layer (maxSeqLen, nKvHeads * headDim)
  private readonly v: Float32Array[];

  /** kvDtype 'f16': K and V are rounded to the nearest f16 when cached, as the GPU's f16 KV cache stores them. */
  constructor(readonly cfg: LlamaConfig, private readonly w: Map<string, Float32Array>, private readonly opts: { kvDtype?: 'f16' | 'f32' } = {}) {
    const kvDim = cfg.nKvHeads * cfg.headDim;
    this.k = Array.from({ length: cfg.nLayers }, () => new Float32Array(cfg.maxSeqLen * kvDim));
    this.v = Array.from({ length: cfg.nLayers }, () => new Float32Array(cfg.maxSeqLen * kvDim));
  }

  private t(name: string): Float32Array {
    const a = this.w.get(name);
    if (!a) throw new Error(`reference: missing tensor ${name}`);
    return a;
  }

  /** Logits (tokens.length, vocab) for `tokens` at positions startPos.. (earlier positions must be cached). */
  forward(tokens: number[], startPos: number): Float32Array {
    const out = new Float32Array(tokens.length * this.cfg.vocabSize);
    tokens.forEach((tok, i) => out.set(this.step(tok, startPos + i), i * this.cfg.vocabSize));
    return out;
  }

  /** Greedy generation: the prompt, then up to maxTokens argmax tokens (stops after EOS). */
  generateGreedy(prompt: number[], maxTokens: number): number[] {
    let logits = this.forward(prompt, 0).subarray((prompt.length - 1) * this.cfg.vocabSize);
    const out: number[] = [];
    for (let i = 0; i < maxTokens; i++) {
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
      out.push(best);
      if (best === this.cfg.eosTokenId || prompt.length + out.length >= this.cfg.maxSeqLen) break;
      logits = this.step(best, prompt.length + out.length - 1);
    }
    return out;
  }

  private step(token: number, pos: number): Float32Array {
    const c = this.cfg;
    const D = c.headDim;
    const kvDim = c.nKvHeads * D;
    if (pos >= c.maxSeqLen) throw new Error(`reference: position ${pos} is past the context (${c.maxSeqLen})`);
    const x = Float64Array.from(this.t('tok_embeddings').subarray(token * c.dim, (token + 1) * c.dim));
    for (let l = 0; l < c.nLayers; l++) {
      const p = `layers.${l}.`;
      const xb = rmsnorm(x, this.t(p + 'attention_norm'), c.normEps);
      const q = matvec(this.t(p + 'wq'), xb, c.nHeads * D);
      const k = matvec(this.t(p + 'wk'), xb, kvDim);
      const v = matvec(this.t(p + 'wv'), xb, kvDim);
      // Linear RoPE scaling: the rotary angle of position pos is that of pos / factor.
      const ropePos = pos / (c.ropeScaleFactor ?? 1);
      rope(q, c.nHeads, D, ropePos, c.ropeTheta);
      rope(k, c.nKvHeads, D, ropePos, c.ropeTheta);
      const kv = (a: Float64Array) => (this.opts.kvDtype === 'f16' ? a.map(roundF16) : a);
      this.k[l]!.set(kv(k), pos * kvDim);
      this.v[l]!.set(kv(v), pos * kvDim);
      const att = new Float64Array(c.nHeads * D);
      const group = c.nHeads / c.nKvHeads;
      for (let h = 0; h < c.nHeads; h++) {
        const kvOff = Math.floor(h / group) * D;
        const scores = new Float64Array(pos + 1);
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[h * D + d]! * this.k[l]![j * kvDim + kvOff + d]!;
          scores[j] = s / Math.sqrt(D);
        }
        softmax(scores);
        for (let j = 0; j <= pos; j++) {
          for (let d = 0; d < D; d++) att[h * D + d] += scores[j]! * this.v[l]![j * kvDim + kvOff + d]!;
        }
      }
      const o = matvec(this.t(p + 'wo'), att, c.dim);
      for (let i = 0; i < c.dim; i++) x[i] += o[i]!;
      const xb2 = rmsnorm(x, this.t(p + 'ffn_norm'), c.normEps);
      const g = matvec(this.t(p + 'w1'), xb2, c.hiddenDim);
      const u = matvec(this.t(p + 'w3'), xb2, c.hiddenDim);
      for (let i = 0; i < c.hiddenDim; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      const down = matvec(this.t(p + 'w2'), g, c.dim);
      for (let i = 0; i < c.dim; i++) x[i] += down[i]!;
    }
    const xf = rmsnorm(x, this.t('norm'), c.normEps);
    const head = c.tieWordEmbeddings ? this.t('tok_embeddings') : this.t('output');
    return Float32Array.from(matvec(head, xf, c.vocabSize));
  }
}

function rmsnorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const s = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * s * w[i]!);
}

/** W (rows, x.length) · x. */
function matvec(w: Float32Array, x: Float64Array, rows: number): Float64Array {
  const K = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const base = r * K;
    for (let k = 0; k < K; k++) s += w[base + k]! * x[k]!;
    y[r] = s;
  }
  return y;
}

function rope(x: Float64Array, nHeads: number, D: number, pos: number, theta: number): void {
  const half = D / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      const a = pos * Math.pow(theta, (-2 * i) / D);
      const c = Math.cos(a), s = Math.sin(a);
      const x0 = x[h * D + i]!, x1 = x[h * D + i + half]!;
      x[h * D + i] = x0 * c - x1 * s;
      x[h * D + i + half] = x1 * c + x0 * s;
    }
  }
}

function softmax(x: Float64Array): void {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i] = Math.exp(x[i]! - m);
  for (let i = 0; i < x.length; i++) x[i]! /= sum;
}

/** x rounded to the nearest IEEE half (ties to even); |x| within the half range. */
function roundF16(x: number): number {
  const a = Math.abs(Math.fround(x)); // the GPU rounds the f32 value
  if (a === 0) return 0;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10); // subnormal halves below 2^-14
  const r = a / ulp;
  let n = Math.floor(r);
  const frac = r - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 === 1)) n++;
  return Math.sign(x) * n * ulp;
}

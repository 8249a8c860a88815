#!/usr/bin/env python3
"""PyTorch as the oracle for the default model: reads {"model": DIR, "prompts": [[ids...], ...], "tokens": N} on
stdin, runs the HF-layout Llama of train.py in float32 on the directory's weights (F16 in the file, widened
exactly), and prints, per prompt, the greedy continuation (N tokens, no KV cache: every step recomputes the
whole sequence) and the top-10 logits at the prompt's last position. Used by fixtures.ts."""
import json, struct, sys, os
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import Llama

DTYPES = {'F16': np.float16, 'F32': np.float32, 'BF16': None}


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == '__metadata__':
            continue
        a, b = h['data_offsets']
        arr = np.frombuffer(data[a:b], dtype=DTYPES[h['dtype']]).reshape(h['shape'])
        out[name] = torch.tensor(arr.astype(np.float32))
    return out


def load(model_dir):
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    model = Llama(cfg)
    tensors = read_safetensors(os.path.join(model_dir, 'model.safetensors'))
    with torch.no_grad():
        for name, p in model.hf_state().items():
            p.copy_(tensors[name])
    return model.eval()


@torch.no_grad()
def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(1)
    model = load(req['model'])
    out = []
    for ids in req['prompts']:
        seq = list(ids)
        logits = model(torch.tensor([seq]))[0, -1]
        top = torch.topk(logits, 10)
        first = {'ids': top.indices.tolist(), 'logits': [float(v) for v in top.values]}
        gen = []
        for _ in range(req['tokens']):
            nxt = int(model(torch.tensor([seq]))[0, -1].argmax())
            gen.append(nxt); seq.append(nxt)
        out.append({'prompt': ids, 'greedy': gen, 'top10_last_prompt_position': first})
    json.dump({'torch': torch.__version__, 'results': out}, sys.stdout)


if __name__ == '__main__':
    main()

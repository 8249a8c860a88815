"""Checks our GGUF files with llama.cpp's own Python package (gguf-py, `pip install gguf`).

Run scripts/llamacpp/greedy-check.ts first; it leaves {mha,gqa}-{F32,F16,Q8_0,Q4_0}.gguf in its --out directory.
For each model this script:
  - parses every file with gguf.GGUFReader (an independent reader of the header, metadata and tensors);
  - re-quantizes the F32 file's matrices with gguf.quants.quantize (llama.cpp's reference Q8_0/Q4_0
    quantizers, written to match ggml-quants.c bit for bit) and compares the bytes with the
    Q8_0/Q4_0 files our TypeScript writer produced;
  - checks the F16 file against numpy's float16 rounding.
Usage: python3 scripts/llamacpp/gguf_py_check.py [DIR]   (default: $TMPDIR/llama2-webgpu-llamacpp)
"""

import os
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import quantize, dequantize


def tensors(path):
    r = GGUFReader(path)
    return r, {t.name: t for t in r.tensors}


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "llama2-webgpu-llamacpp")
    ok = True
    for model in ("mha", "gqa"):
        reader, f32 = tensors(os.path.join(d, f"{model}-F32.gguf"))
        arch = reader.fields["general.architecture"]
        tok = reader.fields["tokenizer.ggml.tokens"]
        print(f"{model}: {len(reader.tensors)} tensors, architecture {bytes(arch.parts[-1]).decode()}, "
              f"{len(tok.data)} tokens")
        for qtype in ("F16", "Q8_0", "Q4_0"):
            _, qt = tensors(os.path.join(d, f"{model}-{qtype}.gguf"))
            same = differ = 0
            for name, t in f32.items():
                q = qt[name]
                x = np.asarray(t.data, dtype=np.float32).reshape(-1, int(t.shape[0]))  # rows of ne[0]
                want_type = q.tensor_type
                if want_type == GGMLQuantizationType.F32:
                    want = x.tobytes()
                elif want_type == GGMLQuantizationType.F16:
                    want = x.astype(np.float16).tobytes()
                else:
                    want = quantize(x, want_type).tobytes()
                got = np.asarray(q.data).tobytes()
                if got == want:
                    same += 1
                else:
                    differ += 1
                    ok = False
                    print(f"  {qtype} {name}: bytes differ from gguf-py ({want_type.name})")
                if want_type in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0):
                    back = dequantize(np.asarray(q.data), want_type).reshape(x.shape)
                    err = float(np.abs(back - x).max())
                    amax = float(np.abs(x).max())
                    assert err <= amax / (127 if want_type == GGMLQuantizationType.Q8_0 else 7), (name, err)
            print(f"  {qtype}: {same} tensors byte-identical to gguf-py, {differ} differ")
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

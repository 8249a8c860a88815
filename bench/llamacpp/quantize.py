#!/usr/bin/env python3
"""llama.cpp's own quantizer, called through the libllama shared library that node-llama-cpp's prebuilt
Linux binaries carry (ctypes, nothing to compile). An oracle: the GGUF files it writes are what
llama.cpp's `llama-quantize` writes, the mixes included (e.g. Q4_K_M keeps some tensors in Q6_K).

    python3 bench/llamacpp/quantize.py IN.gguf OUT.gguf TYPE [--pure]

TYPE is a llama_ftype name or number: F32 (0, also turns a quantized file back into F32 with llama.cpp's own
dequantization), Q4_0 (2), Q4_1 (3), Q8_0 (7), Q5_0 (8), Q5_1 (9), Q2_K (10), Q3_K_S (11), Q3_K_M (12),
Q3_K_L (13), Q4_K_S (14), Q4_K_M (15), Q5_K_S (16), Q5_K_M (17), Q6_K (18). --pure: every matrix in TYPE.
LIBLLAMA_DIR overrides where libllama*.so is looked for (default: node-llama-cpp installed under bench/llamacpp).
"""
import ctypes, glob, os, sys

FTYPES = {'F32': 0, 'F16': 1, 'Q4_0': 2, 'Q4_1': 3, 'Q8_0': 7, 'Q5_0': 8, 'Q5_1': 9, 'Q2_K': 10, 'Q3_K_S': 11,
          'Q3_K_M': 12, 'Q3_K_L': 13, 'Q4_K_S': 14, 'Q4_K_M': 15, 'Q5_K_S': 16, 'Q5_K_M': 17, 'Q6_K': 18}

# llama_model_quantize_params (llama.h): int32 nthread; int32 ftype; int32 output_tensor_type;
# int32 token_embedding_type; bool allow_requantize @16; bool quantize_output_tensor @17; bool only_copy @18;
# bool pure @19; ... then pointers. The defaults come from llama_model_quantize_default_params(); only the
# leading fields are patched, inside a buffer larger than the struct.
PARAMS_BYTES = 256


class Params(ctypes.Structure):
    _fields_ = [('raw', ctypes.c_uint8 * PARAMS_BYTES)]


def libllama():
    here = os.path.dirname(os.path.abspath(__file__))
    d = os.environ.get('LIBLLAMA_DIR') or os.path.join(here, 'node_modules', '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64')
    found = sorted(glob.glob(os.path.join(d, 'libllama*.so')))
    if not found:
        sys.exit(f'libllama*.so not found in {d}: install node-llama-cpp (npm install --prefix bench/llamacpp --omit=optional --ignore-scripts) or set LIBLLAMA_DIR')
    # libllama resolves libggml*.so from its own folder
    return ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    if len(args) != 3:
        sys.exit(__doc__)
    src, dst, kind = args
    ftype = int(kind) if kind.isdigit() else FTYPES.get(kind.upper())
    if ftype is None:
        sys.exit(f'unknown type {kind}; one of {", ".join(FTYPES)}')
    lib = libllama()
    lib.llama_backend_init()
    lib.llama_model_quantize_default_params.restype = Params
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    p = lib.llama_model_quantize_default_params()
    ctypes.c_int32.from_buffer(p.raw, 0).value = 2            # nthread
    ctypes.c_int32.from_buffer(p.raw, 4).value = ftype        # ftype
    p.raw[16] = 1                                             # allow_requantize: also F32 from a quantized file
    if '--pure' in sys.argv:
        p.raw[19] = 1
    rc = lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f'llama_model_quantize failed ({rc})')


if __name__ == '__main__':
    main()

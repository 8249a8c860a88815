// A TensorProvider over an opened HF model directory: reads row ranges of F32/F16/BF16 safetensors.

import type { HfModel } from './hf-model.ts';
import type { TensorProvider } from './tensor-provider.ts';
import { readTensorAsF32, DTYPE_SIZES } from './safetensors.ts';

export function hfProvider(m: HfModel): TensorProvider {
  return {
    config: m.config,
    async readRowsF32(name, rowStart, rows) {
      const t = m.tensors.get(name);
      if (!t) throw new Error(`${m.dir.name}: missing tensor for ${name}`);
      const src = m.sources.get(t.file);
      if (!src) throw new Error(`${m.dir.name}: weights file ${t.file} is not open`);
      if (t.shape.length === 1) return readTensorAsF32(src, t);
      const cols = t.shape.slice(1).reduce((a, b) => a * b, 1);
      const rowBytes = cols * DTYPE_SIZES[t.dtype]!;
      const part = { ...t, shape: [rows, cols], offset: t.offset + rowStart * rowBytes, byteLength: rows * rowBytes };
      return readTensorAsF32(src, part);
    },
  };
}

// What the GPU side asks of a checkpoint: a provider of named tensors (our names, keymap.ts) and the
// format each matrix is uploaded in. Every checkpoint format (HF directory, converted directory, GGUF,
// in-memory) implements TensorProvider; runtime/weights.ts uploads from one.

import type { LlamaConfig } from './config.ts';
import { expectedTensors } from './keymap.ts';
import { formatSpec, storedFormat, type Dtype, type WeightFormat } from '../kernels/weight-formats.ts';

/** Where weights come from (an HF directory, a converted directory, a GGUF file, memory). Names are ours (keymap.ts). */
export interface TensorProvider {
  readonly config: LlamaConfig;
  /**
   * The default --dtype for this model: a pre-converted model's format, or 'native' (a GGUF file, or a
   * directory converted from one) where each matrix keeps its own format, given by nativeFormats.
   */
  readonly storedFormat?: Dtype;
  /** Each matrix's format as stored (our names); what dtype 'native' loads. */
  readonly nativeFormats?: ReadonlyMap<string, WeightFormat>;
  /**
   * Rows [rowStart, rowStart + rows) of a matrix already packed in `format` (exactly what
   * formatSpec(format).pack would give), or null when the provider does not hold that format.
   */
  readRowsPacked?(name: string, format: WeightFormat, rowStart: number, rows: number): Promise<Uint8Array | null>;
  /** Rows [rowStart, rowStart + rows) of a (rows, cols) tensor (or all of a 1-D one), as f32. */
  readRowsF32(name: string, rowStart: number, rows: number): Promise<Float32Array>;
}

/**
 * The format each matrix gets for a requested dtype: `native` keeps every matrix's stored format (GGUF block
 * types as their raw blocks); a dtype format packs every matrix in it, as f16 where it cannot hold a row
 * (q8/q4 need K % 32 == 0, and a model whose dim they cannot hold is f16 throughout: the embedding gather
 * is compiled for one format). Throws naming the model's matrices when 'native' has nothing to go on.
 */
export function matrixFormats(cfg: LlamaConfig, dtype: Dtype, nativeFormats?: ReadonlyMap<string, WeightFormat>): Map<string, WeightFormat> {
  const out = new Map<string, WeightFormat>();
  if (dtype === 'native' && !nativeFormats) throw new Error('dtype "native" needs a model that stores its own formats (a GGUF file or a converted directory)');
  const whole = dtype === 'native' || formatSpec(dtype).supports(cfg.dim) ? dtype : storedFormat(dtype, cfg.dim);
  for (const [name, shape] of expectedTensors(cfg)) {
    if (shape.length !== 2) continue;
    const f = whole === 'native' ? nativeFormats!.get(name) : whole;
    if (!f) throw new Error(`no stored format for matrix "${name}"`);
    out.set(name, storedFormat(f, shape[1]!));
  }
  return out;
}

/** A provider over in-memory f32 tensors (tests, generated models). */
export function memoryProvider(config: LlamaConfig, tensors: Map<string, Float32Array>): TensorProvider {
  const shapes = expectedTensors(config);
  return {
    config,
    async readRowsF32(name, rowStart, rows) {
      const t = tensors.get(name);
      const shape = shapes.get(name);
      if (!t || !shape) throw new Error(`missing tensor ${name}`);
      const cols = shape.length === 2 ? shape[1]! : shape[0]!;
      if (shape.length === 1) return t;
      return t.subarray(rowStart * cols, (rowStart + rows) * cols);
    },
  };
}

// Pre-converted model directories: `llama2-webgpu convert` writes the weights already packed in a GPU
// format (q4, q8, f16, f32), so loading a 70B model does not re-quantize 140 GB at every start.
//
// Layout: an HF-style directory (config.json, tokenizer files, generation_config.json) whose
// model.safetensors holds every matrix as a U8 tensor of shape [bufferBytes(rows, K)] under its HF name,
// with exactly the bytes formatSpec(format).pack(matrix, rows, K) gives (the whole matrix: octet
// formats pad the last octet of rows with zeros; GGUF block types are the GGUF file's blocks, q/k rows
// in HF order), and the norm vectors as F32. The safetensors __metadata__ names the format:
//   "llama2_webgpu.format":        the requested format ("q4", ...), or "native" (from a GGUF, as stored)
//   "llama2_webgpu.format.<name>": each matrix's stored format (f16 where q4/q8 cannot hold its K; Q4_K ...)
//   "llama2_webgpu.version":       "1"
// Row chunks that start at a multiple of the format's rowAlign are byte ranges of the packed tensor.

import type { HfModel } from './hf-model.ts';
import { nodeFs } from './node-fs.ts';
import type { TensorProvider } from './tensor-provider.ts';
import { expectedTensors, tensorSetProblems, toHfName } from './keymap.ts';
import { readTensorAsF32, type TensorInfo } from './safetensors.ts';
import { formatSpec, isDtypeFormat, isGgmlFormat, type Dtype, type WeightFormat } from '../kernels/weight-formats.ts';
import { matrixFormats } from './tensor-provider.ts';

const isFormat = (f: string): f is WeightFormat => isDtypeFormat(f) || isGgmlFormat(f);

export const CONVERTED_KEY = 'llama2_webgpu.format';
export const CONVERTED_VERSION = '1';

export function isConverted(m: HfModel): boolean {
  return m.metadata[CONVERTED_KEY] !== undefined;
}

/** Validates a converted directory (every tensor present with the exact packed size) and gives its provider. */
export function convertedProvider(m: HfModel): TensorProvider {
  const fmt = m.metadata[CONVERTED_KEY] as Dtype;
  if (fmt !== 'native' && !isFormat(fmt)) throw new Error(`${m.dir.name}: unknown converted format "${fmt}"`);
  if (m.metadata['llama2_webgpu.version'] !== CONVERTED_VERSION) {
    throw new Error(`${m.dir.name}: converted with format version ${m.metadata['llama2_webgpu.version']}, this runtime reads version ${CONVERTED_VERSION}: convert it again`);
  }
  const cfg = m.config;
  const shapes = expectedTensors(cfg);
  // Each matrix's format: named in the metadata, else (converted before the per-matrix keys) the requested
  // one where it holds the row, f16 where not.
  const formatOf = (hf: string, K: number): string | undefined =>
    m.metadata[`${CONVERTED_KEY}.${hf}`] ?? (fmt === 'native' ? undefined : formatSpec(fmt).supports(K) ? fmt : 'f16');
  const problems = tensorSetProblems(cfg, m.tensors, {
    nameOf: toHfName,
    missing: (hf) => `${m.dir.name}: missing tensor ${hf}`,
    check(t, hf, shape) {
      if (shape.length === 1) {
        return t.dtype !== 'F32' || t.shape.join() !== shape.join() ? [`${m.dir.name}/${t.file}: tensor ${hf} must be F32 [${shape}], is ${t.dtype} [${t.shape}]`] : [];
      }
      const f = formatOf(hf, shape[1]!);
      if (f === undefined || !isFormat(f)) return [`${m.dir.name}: tensor ${hf} has unknown format "${f}"`];
      const want = formatSpec(f).bufferBytes(shape[0]!, shape[1]!);
      if (t.dtype !== 'U8' || t.byteLength !== want) {
        return [`${m.dir.name}/${t.file}: tensor ${hf} should hold ${want} bytes of packed ${f} for shape [${shape}], has ${t.dtype} of ${t.byteLength} bytes (truncated or converted for another model?)`];
      }
      return [];
    },
  });
  if (problems.length > 0) throw new Error(problems[0]);
  const stored = new Map<string, WeightFormat>();
  for (const [name, shape] of shapes) if (shape.length === 2) stored.set(name, formatOf(toHfName(name), shape[1]!) as WeightFormat);
  const bytesOf = async (t: TensorInfo, offset: number, length: number): Promise<Uint8Array> => {
    const src = m.sources.get(t.file)!;
    return src.read(t.offset + offset, length);
  };
  return {
    config: cfg,
    storedFormat: fmt,
    nativeFormats: fmt === 'native' ? stored : undefined,
    async readRowsPacked(name, format, rowStart, rows) {
      const f = stored.get(name);
      if (f !== format) return null;
      const spec = formatSpec(f);
      if (rowStart % spec.rowAlign !== 0) return null;
      const [, K] = shapes.get(name)! as [number, number];
      const bytes = await bytesOf(m.tensors.get(name)!, rowStart * spec.rowBytes(K), spec.bufferBytes(rows, K));
      return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    },
    async readRowsF32(name, rowStart, rows) {
      const t = m.tensors.get(name)!;
      const shape = shapes.get(name)!;
      if (shape.length === 1) return readTensorAsF32(m.sources.get(t.file)!, t);
      const f = stored.get(name)!;
      const spec = formatSpec(f);
      const K = shape[1]!;
      // Read whole aligned units, unpack, then keep the rows asked for.
      const first = Math.floor(rowStart / spec.rowAlign) * spec.rowAlign;
      const n = Math.min(shape[0]!, rowStart + rows) - first;
      const bytes = await bytesOf(t, first * spec.rowBytes(K), spec.bufferBytes(n, K));
      const all = spec.unpack(bytes.byteOffset % 4 === 0 ? bytes : bytes.slice(), n, K);
      return all.subarray((rowStart - first) * K, (rowStart - first + rows) * K);
    },
  };
}

/** Converts a model (any TensorProvider) into a directory of packed weights, one tensor in memory at a time. */
export async function writeConverted(
  outDir: string, src: TensorProvider, format: Dtype, extraFiles: Record<string, string>,
  onTensor?: (name: string, done: number, total: number) => void,
): Promise<void> {
  const fs = await nodeFs();
  const { writeSafetensorsFile } = await import('./safetensors.ts');
  const { toHfConfig } = await import('./config.ts');
  await fs.mkdir(outDir, { recursive: true });
  const cfg = src.config;
  const shapes = expectedTensors(cfg);
  const metadata: Record<string, string> = { format: 'pt', [CONVERTED_KEY]: format, 'llama2_webgpu.version': CONVERTED_VERSION };
  const formats = matrixFormats(cfg, format, src.nativeFormats);
  const specs = [...shapes].map(([name, shape]) => {
    const hf = toHfName(name);
    if (shape.length === 1) return { name: hf, dtype: 'F32', shape, byteLength: shape[0]! * 4, ours: name };
    const f = formats.get(name)!;
    metadata[`${CONVERTED_KEY}.${hf}`] = f;
    const bytes = formatSpec(f).bufferBytes(shape[0]!, shape[1]!);
    return { name: hf, dtype: 'U8', shape: [bytes], byteLength: bytes, ours: name, format: f };
  });
  let done = 0;
  await writeSafetensorsFile(`${outDir}/model.safetensors`, specs, async (hfName) => {
    const s = specs.find((x) => x.name === hfName)!;
    const shape = shapes.get(s.ours)!;
    // Stored blocks (a GGUF's) are copied as they are; anything else is packed from f32.
    const packed = shape.length === 2 ? await src.readRowsPacked?.(s.ours, s.format!, 0, shape[0]!) : null;
    let out: Uint8Array;
    if (packed) out = packed;
    else {
      const data = await src.readRowsF32(s.ours, 0, shape[0]!);
      out = shape.length === 1 ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : formatSpec(s.format!).pack(data, shape[0]!, shape[1]!);
    }
    onTensor?.(s.ours, ++done, specs.length);
    return out;
  }, metadata);
  await fs.writeFile(`${outDir}/config.json`, JSON.stringify({ ...toHfConfig(cfg), torch_dtype: format }, null, 2));
  for (const [file, text] of Object.entries(extraFiles)) await fs.writeFile(`${outDir}/${file}`, text);
}

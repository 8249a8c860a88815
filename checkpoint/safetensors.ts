// safetensors reader and writer (https://github.com/huggingface/safetensors, "Format" in its README).
//
// File layout:
//   [0, 8)        u64 little-endian N: header length in bytes
//   [8, 8+N)      UTF-8 JSON: { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": {str: str} }
//   [8+N, ...)    data section; data_offsets are relative to its start; tensors are row-major, little-endian
//
// Reading goes through a ByteSource, so only the header and one tensor at a time are in host memory.

import type { ByteSource } from './byte-source.ts';
import { nodeFs } from './node-fs.ts';
import { decodeFloats, isFileDtype } from './float-dtypes.ts';

/** Bytes per element of each dtype we accept (packed/quantized data can ride in the integer types). */
export const DTYPE_SIZES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
};

/** The reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string; // name as stored in the file (HF name for HF checkpoints)
  dtype: string; // a key of DTYPE_SIZES
  shape: number[];
  file: string; // which file holds it (the relative name in a model directory)
  offset: number; // absolute byte offset in the file
  byteLength: number; // product(shape) * DTYPE_SIZES[dtype]
}

export interface SafetensorsHeader {
  tensors: TensorInfo[]; // in file (offset) order
  metadata: Record<string, string>;
}

function numel(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const isIndex = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Reads and validates the header of a safetensors file. Every error names the file and, when one is
 * involved, the tensor. `file` is what goes into TensorInfo.file (default: src.name).
 */
export async function readSafetensorsHeader(src: ByteSource, file: string = src.name): Promise<SafetensorsHeader> {
  const where = src.name;
  if (src.size < 8) throw new Error(`${where}: file is ${src.size} bytes, too short for a safetensors header`);
  const lenBytes = await src.read(0, 8);
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    throw new Error(`${where}: safetensors header length ${hi * 2 ** 32 + lo} is absurd (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file?`);
  }
  const n = lo;
  if (8 + n > src.size) {
    throw new Error(`${where}: safetensors header length ${n} is past the end of the file (${src.size} bytes); the file is truncated or not safetensors`);
  }
  const dataStart = 8 + n;
  const dataSize = src.size - dataStart;

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(8, n)));
  } catch (e) {
    throw new Error(`${where}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`${where}: safetensors header is not a JSON object`);
  }

  let metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  const begins = new Map<TensorInfo, number>();
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new Error(`${where}: "__metadata__" must be an object of strings`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new Error(`${where}: "__metadata__" value "${k}" must be a string, got ${JSON.stringify(v)}`);
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    const bad = (why: string): Error => new Error(`${where}: tensor "${name}": ${why}`);
    if (typeof entry !== 'object' || entry === null) throw bad('header entry is not an object');
    const { dtype, shape, data_offsets: offs } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZES)) {
      throw bad(`unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isIndex)) throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isIndex)) throw bad(`data_offsets ${JSON.stringify(offs)} is not [begin, end]`);
    const [begin, end] = offs as [number, number];
    if (end < begin) throw bad(`data_offsets [${begin}, ${end}] are out of order`);
    const expected = numel(shape) * DTYPE_SIZES[dtype]!;
    if (end - begin !== expected) {
      throw bad(`data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} shape [${shape.join(', ')}] needs ${expected}`);
    }
    const t: TensorInfo = { name, dtype, shape: [...shape], file, offset: dataStart + begin, byteLength: expected };
    tensors.push(t);
    begins.set(t, begin);
  }

  // In file order: no two tensors may overlap, and each must end inside the file. The first one that
  // does not fit is where a truncated download was cut.
  tensors.sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let prevEnd = 0;
  let prevName = '';
  for (const t of tensors) {
    const begin = begins.get(t)!;
    const end = begin + t.byteLength;
    if (begin < prevEnd) throw new Error(`${where}: tensor "${t.name}": data_offsets [${begin}, ${end}] overlap tensor "${prevName}" (which ends at ${prevEnd})`);
    if (end > dataSize) {
      throw new Error(
        `${where}: tensor "${t.name}": data_offsets [${begin}, ${end}] extend past the end of the file ` +
          `(data section is ${dataSize} bytes, file ${src.size} bytes); the file is truncated`,
      );
    }
    prevEnd = end;
    prevName = t.name;
  }
  return { tensors, metadata };
}

/** The raw bytes of one tensor. May share memory with the source (in-memory sources return views). */
export async function readTensorBytes(src: ByteSource, t: TensorInfo): Promise<Uint8Array> {
  return src.read(t.offset, t.byteLength);
}

/** One F32/F16/BF16 tensor as f32 values, row-major (float-dtypes.ts: an aligned F32 tensor is a view of the bytes read). */
export async function readTensorAsF32(src: ByteSource, t: TensorInfo): Promise<Float32Array> {
  const n = numel(t.shape);
  if (!isFileDtype(t.dtype)) {
    throw new Error(`${src.name}: tensor "${t.name}" has dtype ${t.dtype}; only F32, F16 and BF16 can be read as f32`);
  }
  return decodeFloats(t.dtype, await readTensorBytes(src, t), n);
}

/** What the writer needs to know of a tensor before its data. */
export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
  byteLength: number;
}

/** Builds the 8-byte length + JSON header (space-padded so the data section starts 8-aligned). */
function encodeHeader(tensors: TensorSpec[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const size = DTYPE_SIZES[t.dtype];
    if (size === undefined) throw new Error(`safetensors writer: tensor "${t.name}": unsupported dtype "${t.dtype}"`);
    if (t.name === '__metadata__' || t.name in header) throw new Error(`safetensors writer: duplicate or reserved tensor name "${t.name}"`);
    if (!t.shape.every(isIndex)) throw new Error(`safetensors writer: tensor "${t.name}": bad shape [${t.shape.join(', ')}]`);
    const need = numel(t.shape) * size;
    if (t.byteLength !== need) {
      throw new Error(`safetensors writer: tensor "${t.name}": ${t.byteLength} bytes of data but ${t.dtype} shape [${t.shape.join(', ')}] needs ${need}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + need] };
    offset += need;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n).fill(0x20); // pad with spaces, as the reference writer does
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  return out;
}

/** A whole safetensors file in memory; tensors are stored in the given order. */
export function encodeSafetensors(
  tensors: { name: string; dtype: string; shape: number[]; data: Uint8Array }[],
  metadata?: Record<string, string>,
): Uint8Array {
  const head = encodeHeader(
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength })),
    metadata,
  );
  let total = head.byteLength;
  for (const t of tensors) total += t.data.byteLength;
  const out = new Uint8Array(total);
  out.set(head, 0);
  let at = head.byteLength;
  for (const t of tensors) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}

/**
 * Node/Deno only (node:fs): streams a safetensors file to `path`, asking `getData` for one tensor at a
 * time, so host memory holds the header plus one tensor, never the whole model.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: TensorSpec[],
  getData: (name: string) => Promise<Uint8Array>,
  metadata?: Record<string, string>,
): Promise<void> {
  const fs = await nodeFs();
  const head = encodeHeader(tensors, metadata);
  const handle = await fs.open(path, 'w');
  const writeAll = async (bytes: Uint8Array): Promise<void> => {
    for (let done = 0; done < bytes.byteLength; ) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
      done += bytesWritten;
    }
  };
  try {
    await writeAll(head);
    for (const t of tensors) {
      const data = await getData(t.name);
      if (data.byteLength !== t.byteLength) {
        throw new Error(`${path}: tensor "${t.name}": getData returned ${data.byteLength} bytes, header says ${t.byteLength}`);
      }
      await writeAll(data);
    }
  } finally {
    await handle.close();
  }
}

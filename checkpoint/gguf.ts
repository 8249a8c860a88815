// GGUF, llama.cpp's model file format (ggml's docs/gguf.md), versions 2 and 3, little-endian:
//
//   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//   metadata_kv_count x { string key | u32 value_type | value }
//   tensor_count      x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32), then the data section; each tensor's offset is
//   relative to the data section's start and a multiple of the alignment.
//
// string = u64 byte length + UTF-8 bytes (no terminator); array = u32 element type + u64 count +
// elements. ne[] lists dimensions innermost first: a (rows, cols) row-major matrix has
// ne = [cols, rows]. Version 1 used u32 counts and lengths and is refused.
//
// This file is the reader: it fetches the header in chunks through a ByteSource (the data section at most
// as the last chunk's read-ahead) and gives each tensor's byte range, row range by row range
// (readGgufRowBytes). What the bytes of a ggml type mean is gguf-quants.ts's; what the tensors and metadata
// mean for a Llama model, gguf-provider.ts's and gguf-tokenizer.ts's; writing, gguf-writer.ts's.

import type { ByteSource } from './byte-source.ts';
import { ggmlRowBytes, ggmlTensorBytes, ggmlTypeName, GGML_TYPES } from './gguf-quants.ts';

/** GGUF value types by id (gguf_type): index = the u32 stored in the file. */
export const GGUF_VALUE_TYPES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'] as const;
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];
export type GgufScalarType = Exclude<GgufValueType, 'array'>;

/**
 * A metadata value as read. Integers and floats are numbers (u64/i64 beyond 2^53 are bigints);
 * numeric arrays are typed arrays of the element type; string and bool arrays are JS arrays.
 */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array
  | string[]
  | boolean[]
  | GgufValue[];

/** A metadata entry to write: the type fixes the encoding; arrays name their element type. */
export type GgufEntry =
  | { key: string; type: Exclude<GgufScalarType, 'string' | 'bool'>; value: number | bigint }
  | { key: string; type: 'string'; value: string }
  | { key: string; type: 'bool'; value: boolean }
  | { key: string; type: 'array'; of: GgufScalarType; value: ArrayLike<number | bigint | string | boolean> };

export interface GgufTensorInfo {
  name: string; // GGUF name, e.g. "blk.0.attn_q.weight"
  ne: number[]; // dims, innermost first
  shape: number[]; // dims, outermost first (row-major shape: [rows, cols] for a matrix)
  typeId: number; // ggml_type
  type: string; // its name ("Q4_0", "unknown type 99")
  offset: number; // absolute byte offset in the file
  byteLength: number; // NaN for unknown type ids
}

export interface GgufFile {
  source: string; // file name, for messages
  version: number;
  metadata: Map<string, GgufValue>;
  valueTypes: Map<string, string>; // key -> "u32", "string", "array<f32>", ...
  tensors: Map<string, GgufTensorInfo>; // in file order
  alignment: number;
  dataOffset: number; // absolute offset of the data section
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
/** Bytes of each fixed-size value type. */
export const GGUF_FIXED_SIZES: Partial<Record<GgufValueType, number>> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8 };
const MAX_DIMS = 4; // GGML_MAX_DIMS
const CHUNK = 1 << 20; // header bytes fetched per read (Llama-2's vocabulary makes a ~0.75 MB header)

/** Sequential reads over a ByteSource, fetched CHUNK bytes at a time. Every error names the file. */
class Cursor {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(this.buf.buffer);
  private bufStart = 0;
  constructor(private readonly src: ByteSource, private readonly chunk: number) {}

  remaining(): number {
    return this.src.size - this.pos;
  }

  fail(why: string): Error {
    return new Error(`${this.src.name}: ${why}`);
  }

  /** Makes [pos, pos + n) available; returns its offset inside buf. */
  private async need(n: number, what: string): Promise<number> {
    if (this.pos + n > this.src.size) {
      throw this.fail(`GGUF header is cut off while reading ${what} at offset ${this.pos} (file is ${this.src.size} bytes); the file is truncated`);
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.byteLength) {
      const len = Math.min(Math.max(n, this.chunk), this.src.size - this.pos);
      const bytes = await this.src.read(this.pos, len);
      this.buf = bytes;
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.bufStart = this.pos;
    }
    return this.pos - this.bufStart;
  }

  async bytes(n: number, what: string): Promise<Uint8Array> {
    const at = await this.need(n, what);
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }

  async u32(what: string): Promise<number> {
    const at = await this.need(4, what);
    this.pos += 4;
    return this.view.getUint32(at, true);
  }

  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  async size(what: string): Promise<number> {
    const at = await this.need(8, what);
    this.pos += 8;
    const v = this.view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`${what} is ${v}, which is absurd; the file is corrupt`);
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const n = await this.size(`length of ${what}`);
    if (this.pos + n > this.src.size) {
      throw this.fail(`GGUF header is cut off in ${what} (${n} bytes at offset ${this.pos}, file is ${this.src.size} bytes); the file is truncated or corrupt`);
    }
    return new TextDecoder().decode(await this.bytes(n, what));
  }

  async scalar(type: GgufScalarType, what: string): Promise<number | bigint | boolean | string> {
    if (type === 'string') return this.string(what);
    const at = await this.need(GGUF_FIXED_SIZES[type]!, what);
    const v = this.view;
    this.pos += GGUF_FIXED_SIZES[type]!;
    switch (type) {
      case 'u8': return v.getUint8(at);
      case 'i8': return v.getInt8(at);
      case 'u16': return v.getUint16(at, true);
      case 'i16': return v.getInt16(at, true);
      case 'u32': return v.getUint32(at, true);
      case 'i32': return v.getInt32(at, true);
      case 'f32': return v.getFloat32(at, true);
      case 'f64': return v.getFloat64(at, true);
      case 'bool': {
        const b = v.getUint8(at);
        if (b > 1) throw this.fail(`${what}: bool byte is ${b}, expected 0 or 1`);
        return b === 1;
      }
      case 'u64':
      case 'i64': {
        const x = type === 'u64' ? v.getBigUint64(at, true) : v.getBigInt64(at, true);
        return x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
      }
    }
  }
}

function valueType(id: number, c: Cursor, what: string): GgufValueType {
  const t = GGUF_VALUE_TYPES[id];
  if (t === undefined) throw c.fail(`${what} has unknown value type ${id}`);
  return t;
}

type TypedCtor = new (b: ArrayBuffer, offset: number, length: number) => GgufValue;
const TYPED: Partial<Record<GgufValueType, TypedCtor>> = {
  u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array, u32: Uint32Array, i32: Int32Array,
  f32: Float32Array, f64: Float64Array, u64: BigUint64Array, i64: BigInt64Array,
};

async function readValue(c: Cursor, type: GgufValueType, what: string, types: string[]): Promise<GgufValue> {
  if (type !== 'array') {
    types.push(type);
    return c.scalar(type, what);
  }
  const of = valueType(await c.u32(`element type of ${what}`), c, what);
  const n = await c.size(`length of ${what}`);
  types.push(`array<${of}>`);
  // Every element takes at least one byte (a string at least its 8-byte length): refuse counts the
  // rest of the file cannot hold before allocating anything.
  const minBytes = of === 'string' || of === 'array' ? 8 : GGUF_FIXED_SIZES[of]!;
  if (n * minBytes > c.remaining()) throw c.fail(`${what}: array of ${n} ${of} values does not fit in the rest of the file; the file is truncated or corrupt`);
  const Typed = TYPED[of];
  if (Typed) {
    const raw = (await c.bytes(n * GGUF_FIXED_SIZES[of]!, what)).slice(); // copy: aligned, and owned
    return new Typed(raw.buffer, 0, n);
  }
  const out: GgufValue[] = [];
  for (let i = 0; i < n; i++) out.push(await readValue(c, of, `${what}[${i}]`, []));
  return out as GgufValue;
}

/**
 * Reads and validates a GGUF header (metadata and tensor infos), fetching `chunkBytes` at a time; of
 * the data section, at most the read-ahead of the last chunk. Errors name the file and the key or tensor.
 */
export async function readGguf(src: ByteSource, opts: { chunkBytes?: number } = {}): Promise<GgufFile> {
  const c = new Cursor(src, opts.chunkBytes ?? CHUNK);
  if (src.size < 24) throw c.fail(`file is ${src.size} bytes, too short for a GGUF header`);
  const magic = await c.u32('magic');
  if (magic !== GGUF_MAGIC) throw c.fail(`not a GGUF file (magic 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF")`);
  const version = await c.u32('version');
  if (version === 1) throw c.fail('GGUF version 1 is not supported (re-convert the model with a current llama.cpp)');
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24);
    if (swapped === 2 || swapped === 3) throw c.fail('big-endian GGUF files are not supported');
    throw c.fail(`unsupported GGUF version ${version} (supported: 2, 3)`);
  }
  const nTensors = await c.size('tensor count');
  const nKv = await c.size('metadata count');

  const metadata = new Map<string, GgufValue>();
  const valueTypes = new Map<string, string>();
  for (let i = 0; i < nKv; i++) {
    const key = await c.string(`metadata key #${i}`);
    const t = valueType(await c.u32(`type of metadata "${key}"`), c, `metadata "${key}"`);
    const types: string[] = [];
    const value = await readValue(c, t, `metadata "${key}"`, types);
    if (metadata.has(key)) throw c.fail(`metadata key "${key}" appears twice`);
    metadata.set(key, value);
    valueTypes.set(key, types[0]!);
  }

  const alignment = metadata.get('general.alignment') ?? 32;
  if (typeof alignment !== 'number' || !Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
    throw c.fail(`general.alignment must be a positive multiple of 8, got ${String(alignment)}`);
  }

  const raw: (Omit<GgufTensorInfo, 'offset'> & { rel: number })[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = await c.string(`name of tensor #${i}`);
    const bad = (why: string): Error => c.fail(`tensor "${name}": ${why}`);
    const nDims = await c.u32(`dims of tensor "${name}"`);
    if (nDims < 1 || nDims > MAX_DIMS) throw bad(`has ${nDims} dimensions (1..${MAX_DIMS} allowed)`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(await c.size(`ne[${d}] of tensor "${name}"`));
    const typeId = await c.u32(`type of tensor "${name}"`);
    const rel = await c.size(`offset of tensor "${name}"`);
    if (rel % alignment !== 0) throw bad(`data offset ${rel} is not a multiple of the alignment (${alignment})`);
    const t = GGML_TYPES.get(typeId);
    let byteLength = NaN;
    if (t) {
      try {
        byteLength = ggmlTensorBytes(t, ne);
      } catch (e) {
        throw bad((e as Error).message);
      }
    }
    if (raw.some((r) => r.name === name)) throw bad('appears twice');
    raw.push({ name, ne, shape: [...ne].reverse(), typeId, type: ggmlTypeName(typeId), byteLength, rel });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataSize = src.size - dataOffset;

  // The first tensor whose data ends past the end of the file is where a truncated download was cut.
  const tensors = new Map<string, GgufTensorInfo>();
  for (const r of raw) {
    const { rel, ...info } = r;
    if (rel + (Number.isNaN(r.byteLength) ? 0 : r.byteLength) > dataSize) {
      throw c.fail(`tensor "${r.name}": data [${rel}, ${rel + r.byteLength}) extends past the end of the file (data section is ${Math.max(0, dataSize)} bytes); the file is truncated`);
    }
    tensors.set(r.name, { ...info, offset: dataOffset + rel });
  }
  return { source: src.name, version, metadata, valueTypes, tensors, alignment, dataOffset };
}

/**
 * Rows [rowStart, rowStart + rows) of a tensor as the file stores them (whole blocks: a row is ne[0] values).
 * Rows run over the outermost dims, so for a matrix they are the rows of its (rows, cols) = (ne[1], ne[0])
 * shape; a 1-D tensor is one row.
 */
export async function readGgufRowBytes(src: ByteSource, t: GgufTensorInfo, rowStart: number, rows: number): Promise<Uint8Array> {
  const type = GGML_TYPES.get(t.typeId);
  if (!type) throw new Error(`${src.name}: tensor "${t.name}" has unknown ggml type ${t.typeId}; this reader does not know it`);
  const total = t.ne.slice(1).reduce((a, b) => a * b, 1);
  if (!Number.isInteger(rowStart) || !Number.isInteger(rows) || rowStart < 0 || rows < 0 || rowStart + rows > total) {
    throw new Error(`${src.name}: tensor "${t.name}": rows [${rowStart}, ${rowStart + rows}) are outside its ${total} rows`);
  }
  const rowBytes = ggmlRowBytes(type, t.ne[0]!);
  const bytes = await src.read(t.offset + rowStart * rowBytes, rows * rowBytes);
  return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice(); // GPU uploads want 4-byte aligned views
}

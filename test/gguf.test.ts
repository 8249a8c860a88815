// GGUF: the Q8_0/Q4_0 block codecs against llama.cpp's reference quantizers (golden blocks and an
// independent re-implementation), the header reader/writer (every value type, alignment, errors),
// the q/k row permutation of llama.cpp's converter, metadata -> config, the tokenizer rebuilt from
// GGUF metadata against tokenizer/, and greedy tokens of the CPU oracle from GGUF vs HF weights.

import { beforeAll, describe, expect, it } from 'vitest';
import { lcg, lcgFloats } from './helpers/random.ts';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesSource, mapDir } from '../checkpoint/byte-source.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { readGguf, type GgufEntry } from '../checkpoint/gguf.ts';
import { ggufConfig, openGgufModel, type GgufModel } from '../checkpoint/gguf-provider.ts';
import { dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from '../checkpoint/gguf-quants.ts';
import { encodeGguf, encodeGgufHeader, ggufTensorTypes, writeGgufFile, type GgufTensorSpec, type GgufWriteType } from '../checkpoint/gguf-writer.ts';
import { f16ToF32, f32ToF16 } from '../kernels/half.ts';
import { openHfModel } from '../checkpoint/hf-model.ts';
import { hfProvider } from '../checkpoint/hf-provider.ts';
import { expectedTensors, fromGgufName, permuteQk, toGgufName } from '../checkpoint/keymap.ts';
import { encodeHfModel, randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import type { TensorProvider } from '../checkpoint/tensor-provider.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson, LlamaTokenizer, type SpmTokenizerJson as Llama2TokenizerJson } from '../tokenizer/index.ts';

const { mha, gqa } = TEST_CONFIGS;
// mha's shapes with one layer and a small vocab: quick to write in every type.
const tiny: LlamaConfig = { ...mha, nLayers: 1, vocabSize: 320 };

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

async function readAll(p: TensorProvider): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(p.config)) out.set(name, (await p.readRowsF32(name, 0, shape.length === 2 ? shape[0]! : 1)).slice());
  return out;
}

const open = (bytes: Uint8Array, name = 'model.gguf'): Promise<GgufModel> => openGgufModel(bytesSource(name, bytes));

// ---- an independent reading of the block formats, written from the format description ----------

const f16 = (bits: number): number => f16ToF32(new Uint16Array([bits]))[0]!;

/** Q8_0 / Q4_0 decoded straight from the block layout, one DataView read at a time. */
function refDequant(type: 'Q8_0' | 'Q4_0', bytes: Uint8Array, n: number): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  const size = type === 'Q8_0' ? 34 : 18;
  for (let b = 0; b < n / 32; b++) {
    const d = f16(dv.getUint16(b * size, true));
    for (let j = 0; j < 32; j++) {
      if (type === 'Q8_0') out[b * 32 + j] = dv.getInt8(b * size + 2 + j) * d;
      else {
        const byte = dv.getUint8(b * size + 2 + (j % 16));
        out[b * 32 + j] = ((j < 16 ? byte & 15 : byte >> 4) - 8) * d;
      }
    }
  }
  return out;
}

describe('Q8_0 / Q4_0 blocks', () => {
  // The block x = -16, -15, ..., 15 worked through llama.cpp's reference quantizers by hand.
  const ramp = Float32Array.from({ length: 32 }, (_, i) => i - 16);

  it('Q4_0: golden block (d = max / -8 with max the signed extreme, nibbles split 0..15 / 16..31)', () => {
    // max = -16 -> d = 2, id = 0.5; q = min(15, trunc(x/2 + 8.5)): x=-16 -> 0, x=0 (j=16) -> 8, x=15 -> 15
    const q = quantizeQ4_0(ramp);
    expect(q.length).toBe(18);
    expect([q[0], q[1]]).toEqual([0x00, 0x40]); // f16(2) = 0x4000, little-endian
    // low nibble: element j (x = j - 16) -> trunc(j/2 + 0.5); high: element j + 16 (x = j) -> min(15, 8 + trunc(j/2 + 0.5))
    expect([...q.subarray(2)]).toEqual([0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4, 0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8]);
    const y = dequantizeQ4_0(q, 32);
    expect([y[0], y[16], y[30], y[31]]).toEqual([-16, 0, 14, 14]); // the extreme is exact; +15 clamps to 7 steps
  });

  it('Q8_0: golden block and round-half-away-from-zero', () => {
    const q = quantizeQ8_0(ramp);
    expect(q.length).toBe(34);
    const dv = new DataView(q.buffer);
    expect(dv.getUint16(0, true)).toBe(0x3008); // d = 16/127 = 0.12598 -> f16 0.1259765625
    // q = roundf(x * 127/16): -16 -> -127, -1 -> -8 (-7.94), 1 -> 8, 15 -> 119 (119.06)
    expect([dv.getInt8(2), dv.getInt8(2 + 15), dv.getInt8(2 + 16), dv.getInt8(2 + 17), dv.getInt8(2 + 31)]).toEqual([-127, -8, 0, 8, 119]);
    // amax = 127 gives d = 1 exactly: halves round away from zero (C roundf), unlike Math.round(-2.5) = -2
    const halves = new Float32Array(32);
    halves.set([127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5]);
    const h = new Int8Array(quantizeQ8_0(halves).buffer, 2, 32);
    expect([...h.subarray(0, 7)]).toEqual([127, 3, -3, 1, -1, 2, -2]);
  });

  it('all-zero blocks: d = 0, Q4_0 codes 8, Q8_0 codes 0, decoding to zeros', () => {
    const z = new Float32Array(64);
    const q4 = quantizeQ4_0(z);
    const q8 = quantizeQ8_0(z);
    expect([...q4.subarray(2, 18)].every((b) => b === 0x88)).toBe(true);
    expect([...q8.subarray(2, 34)].every((b) => b === 0)).toBe(true);
    expect([...dequantizeQ4_0(q4, 64)].every((v) => v === 0)).toBe(true);
    expect([...dequantizeQ8_0(q8, 64)].every((v) => v === 0)).toBe(true);
  });

  it('decode equals the independent reader and stays within each format\'s error bound', () => {
    const x = lcgFloats(32 * 500, 7, 3);
    for (let i = 0; i < x.length; i += 97) x[i] *= 20; // outliers: blocks of very different scale
    for (const type of ['Q8_0', 'Q4_0'] as const) {
      const q = type === 'Q8_0' ? quantizeQ8_0(x) : quantizeQ4_0(x);
      const y = type === 'Q8_0' ? dequantizeQ8_0(q, x.length) : dequantizeQ4_0(q, x.length);
      expect(sameBits(y, refDequant(type, q, x.length))).toBe(true);
      let worst = 0;
      for (let b = 0; b < x.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
        // Q8_0: half a step (amax/127) plus the f16 rounding of the scale (2^-11 relative, times 127 steps).
        // Q4_0: one step (amax/8): the side opposite the extreme is clamped at q = 15, i.e. 7 steps of 8.
        const bound = type === 'Q8_0' ? (amax / 127) * (0.5 + 127 * 2 ** -11) : (amax / 8) * (1 + 8 * 2 ** -11);
        for (let j = 0; j < 32; j++) worst = Math.max(worst, Math.abs(y[b * 32 + j]! - x[b * 32 + j]!) / bound);
      }
      expect(worst).toBeLessThanOrEqual(1);
      expect(worst).toBeGreaterThan(0.3); // the bound is tight enough to mean something
    }
  });
});

// ---- header reader / writer ------------------------------------------------------------------

describe('GGUF header', () => {
  const entries: GgufEntry[] = [
    { key: 'a.u8', type: 'u8', value: 250 },
    { key: 'a.i8', type: 'i8', value: -100 },
    { key: 'a.u16', type: 'u16', value: 65000 },
    { key: 'a.i16', type: 'i16', value: -30000 },
    { key: 'a.u32', type: 'u32', value: 4_000_000_000 },
    { key: 'a.i32', type: 'i32', value: -2_000_000_000 },
    { key: 'a.f32', type: 'f32', value: 0.1 },
    { key: 'a.bool', type: 'bool', value: true },
    { key: 'a.string', type: 'string', value: 'llama 🦙 ▁x' },
    { key: 'a.u64', type: 'u64', value: 2n ** 60n },
    { key: 'a.u64small', type: 'u64', value: 12345 },
    { key: 'a.i64', type: 'i64', value: -(2n ** 62n) },
    { key: 'a.f64', type: 'f64', value: 0.1 },
    { key: 'arr.u8', type: 'array', of: 'u8', value: [1, 2, 255] },
    { key: 'arr.i32', type: 'array', of: 'i32', value: [-1, 0, 7] },
    { key: 'arr.f32', type: 'array', of: 'f32', value: [0.5, -2] },
    { key: 'arr.f64', type: 'array', of: 'f64', value: [Math.PI] },
    { key: 'arr.i64', type: 'array', of: 'i64', value: [-5n, 2n ** 40n] },
    { key: 'arr.bool', type: 'array', of: 'bool', value: [true, false] },
    { key: 'arr.string', type: 'array', of: 'string', value: ['<s>', '', '▁the'] },
    { key: 'arr.empty', type: 'array', of: 'u16', value: [] },
  ];
  const tensors: GgufTensorSpec[] = [
    { name: 't.a', ne: [3], typeId: 0, byteLength: 12 },
    { name: 't.b', ne: [64, 2], typeId: 8, byteLength: 2 * 2 * 34 },
  ];
  const build = (alignment?: number): Uint8Array => {
    const { header, offsets, dataSize } = encodeGgufHeader(entries, tensors, alignment);
    const out = new Uint8Array(header.byteLength + dataSize);
    out.set(header);
    out.set(new Uint8Array(new Float32Array([1, 2, 3]).buffer), header.byteLength + offsets[0]!);
    out.set(quantizeQ8_0(lcgFloats(128, 3)), header.byteLength + offsets[1]!);
    return out;
  };

  it('round-trips every value type, arrays included', async () => {
    const f = await readGguf(bytesSource('h.gguf', build()));
    expect(f.version).toBe(3);
    const md = Object.fromEntries(f.metadata);
    expect(md['a.u8']).toBe(250);
    expect(md['a.i8']).toBe(-100);
    expect(md['a.u16']).toBe(65000);
    expect(md['a.i16']).toBe(-30000);
    expect(md['a.u32']).toBe(4_000_000_000);
    expect(md['a.i32']).toBe(-2_000_000_000);
    expect(md['a.f32']).toBe(Math.fround(0.1));
    expect(md['a.bool']).toBe(true);
    expect(md['a.string']).toBe('llama 🦙 ▁x');
    expect(md['a.u64']).toBe(2n ** 60n); // beyond 2^53: a bigint
    expect(md['a.u64small']).toBe(12345);
    expect(md['a.i64']).toBe(-(2n ** 62n));
    expect(md['a.f64']).toBe(0.1);
    expect(md['arr.u8']).toEqual(new Uint8Array([1, 2, 255]));
    expect(md['arr.i32']).toEqual(new Int32Array([-1, 0, 7]));
    expect(md['arr.f32']).toEqual(new Float32Array([0.5, -2]));
    expect(md['arr.f64']).toEqual(new Float64Array([Math.PI]));
    expect(md['arr.i64']).toEqual(new BigInt64Array([-5n, 2n ** 40n]));
    expect(md['arr.bool']).toEqual([true, false]);
    expect(md['arr.string']).toEqual(['<s>', '', '▁the']);
    expect(md['arr.empty']).toEqual(new Uint16Array(0));
    expect(f.valueTypes.get('arr.f32')).toBe('array<f32>');
    expect(f.valueTypes.get('a.u64')).toBe('u64');
    const b = f.tensors.get('t.b')!;
    expect(b).toMatchObject({ ne: [64, 2], shape: [2, 64], type: 'Q8_0', byteLength: 136 });
    expect(b.offset % 32).toBe(0);
  });

  it('honours general.alignment', async () => {
    const withAlign: GgufEntry[] = [...entries, { key: 'general.alignment', type: 'u32', value: 256 }];
    const { header, offsets } = encodeGgufHeader(withAlign, tensors, 256);
    expect(header.byteLength % 256).toBe(0);
    expect(offsets).toEqual([0, 256]);
    const file = new Uint8Array(header.byteLength + 256 + 136);
    file.set(header);
    const f = await readGguf(bytesSource('a.gguf', file));
    expect(f.alignment).toBe(256);
    expect(f.dataOffset).toBe(header.byteLength);
    expect(f.tensors.get('t.b')!.offset).toBe(header.byteLength + 256);
  });

  it('refuses files that are not GGUF v2/v3, and truncated headers', async () => {
    const good = build();
    const patch = (at: number, v: number): Uint8Array => {
      const b = good.slice();
      new DataView(b.buffer).setUint32(at, v, true);
      return b;
    };
    await expect(readGguf(bytesSource('m.gguf', patch(0, 0x12345678)))).rejects.toThrow(/m\.gguf: not a GGUF file/);
    await expect(readGguf(bytesSource('v.gguf', patch(4, 1)))).rejects.toThrow(/v\.gguf: GGUF version 1 is not supported/);
    await expect(readGguf(bytesSource('v.gguf', patch(4, 0x03000000)))).rejects.toThrow(/big-endian/);
    await expect(readGguf(bytesSource('v.gguf', patch(4, 7)))).rejects.toThrow(/unsupported GGUF version 7/);
    expect((await readGguf(bytesSource('v2.gguf', patch(4, 2)))).version).toBe(2); // v2 = v3 for little-endian files
    await expect(readGguf(bytesSource('cut.gguf', good.subarray(0, 200)))).rejects.toThrow(/cut\.gguf: GGUF header is cut off .* truncated/);
    await expect(readGguf(bytesSource('tiny.gguf', good.subarray(0, 10)))).rejects.toThrow(/too short/);
  });
});

// ---- q/k permutation ---------------------------------------------------------------------------

describe('q/k row permutation (llama.cpp convert_hf_to_gguf.py `permute`)', () => {
  const heads = 3;
  const D = 8;
  const cols = 5;
  const rowIds = Float32Array.from({ length: heads * D * cols }, (_, i) => Math.floor(i / cols)); // row r holds r

  it('maps HF row h*D + a*D/2 + i to GGUF row h*D + 2i + a, and back', () => {
    const g = permuteQk(rowIds, heads, cols, true);
    const rows = Array.from({ length: heads * D }, (_, r) => g[r * cols]!);
    // head 0: GGUF rows 0..7 hold HF rows 0,4,1,5,2,6,3,7 (pairs (i, i + D/2) made adjacent)
    expect(rows.slice(0, 8)).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect(rows.slice(8, 16)).toEqual([8, 12, 9, 13, 10, 14, 11, 15]);
    expect(sameBits(permuteQk(g, heads, cols, false), rowIds)).toBe(true);
    const x = lcgFloats(heads * D * cols, 5);
    expect(sameBits(permuteQk(permuteQk(x, heads, cols, true), heads, cols, false), x)).toBe(true);
  });

  it('turns rotate-half RoPE on HF weights into interleaved (Meta / llama.cpp mode 0) RoPE on GGUF weights', () => {
    const w = lcgFloats(heads * D * cols, 11);
    const x = lcgFloats(cols, 12);
    const matvec = (m: Float32Array): Float64Array => Float64Array.from({ length: heads * D }, (_, r) => {
      let s = 0;
      for (let c = 0; c < cols; c++) s += m[r * cols + c]! * x[c]!;
      return s;
    });
    const pos = 7;
    const angle = (i: number): number => pos * Math.pow(10000, (-2 * i) / D);
    const half = matvec(w); // rotate-half: (i, i + D/2) pairs
    const inter = matvec(permuteQk(w, heads, cols, true)); // interleaved: (2i, 2i + 1) pairs
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < D / 2; i++) {
        const [c, s] = [Math.cos(angle(i)), Math.sin(angle(i))];
        const [a0, a1] = [half[h * D + i]!, half[h * D + i + D / 2]!];
        const [b0, b1] = [inter[h * D + 2 * i]!, inter[h * D + 2 * i + 1]!];
        expect(b0 * c - b1 * s).toBeCloseTo(a0 * c - a1 * s, 12);
        expect(b1 * c + b0 * s).toBeCloseTo(a1 * c + a0 * s, 12);
      }
    }
  });

  it('names: GGUF <-> ours', () => {
    expect(fromGgufName('blk.12.attn_q.weight')).toBe('layers.12.wq');
    expect(fromGgufName('blk.0.ffn_gate.weight')).toBe('layers.0.w1');
    expect(fromGgufName('blk.0.ffn_down.weight')).toBe('layers.0.w2');
    expect(fromGgufName('blk.0.ffn_up.weight')).toBe('layers.0.w3');
    expect(fromGgufName('token_embd.weight')).toBe('tok_embeddings');
    expect(fromGgufName('output_norm.weight')).toBe('norm');
    expect(fromGgufName('rope_freqs.weight')).toBeNull();
    for (const name of expectedTensors(gqa).keys()) expect(fromGgufName(toGgufName(name))).toBe(name);
  });
});

// ---- whole models ------------------------------------------------------------------------------

describe('GGUF models: write, open, read', () => {
  const weights = randomWeights(tiny, 42);

  it('metadata -> config, for MHA, GQA and tied embeddings', async () => {
    for (const cfg of [tiny, { ...gqa, nLayers: 1, vocabSize: 320 }, { ...tiny, tieWordEmbeddings: true, ropeTheta: 500000, normEps: 1e-6 }]) {
      const m = await open(encodeGguf(cfg, randomWeights(cfg, 1), { type: 'F32' }));
      expect(m.config).toEqual(cfg); // eps/theta are f32 in the file; read back as the shortest decimal
      expect(m.metadata.get('general.architecture')).toBe('llama');
      expect(m.file.valueTypes.get('llama.attention.layer_norm_rms_epsilon')).toBe('f32');
      expect(m.tokenizerJson).toBeNull();
    }
  });

  for (const type of ['F32', 'F16', 'Q8_0', 'Q4_0'] as GgufWriteType[]) {
    it(`${type}: every tensor reads back as the codec gives it, in any row range`, async () => {
      const m = await open(encodeGguf(tiny, weights, { type }));
      const types = ggufTensorTypes(tiny, { type });
      expect(m.tensorTypes).toEqual(types);
      expect(types.get('layers.0.attention_norm')).toBe('F32'); // norms stay f32
      // 172-column w2 is not whole 32-value blocks: stored F16, as llama.cpp's converter falls back
      expect(types.get('layers.0.w2')).toBe(type === 'F32' ? 'F32' : 'F16');
      expect(types.get('layers.0.wq')).toBe(type);
      for (const [name, shape] of expectedTensors(tiny)) {
        const w = weights.get(name)!;
        const rows = shape.length === 2 ? shape[0]! : 1;
        const got = await m.provider.readRowsF32(name, 0, rows);
        const t = types.get(name)!;
        const want =
          t === 'F32' ? w
          : t === 'F16' ? f16ToF32(f32ToF16(w))
          : refDequant(t as 'Q8_0' | 'Q4_0', t === 'Q8_0' ? quantizeQ8_0(w) : quantizeQ4_0(w), w.length);
        expect(sameBits(got, want), name).toBe(true);
        if (rows > 1) {
          const cols = shape[1]!;
          for (const [r0, n] of [[5, 11], [rows - 3, 3], [16, 16], [1, 1]] as [number, number][]) {
            const part = await m.provider.readRowsF32(name, r0, n);
            expect(sameBits(part, want.subarray(r0 * cols, (r0 + n) * cols)), `${name}[${r0}:${r0 + n}]`).toBe(true);
          }
        }
      }
    });
  }

  it('streams the same file to disk from a provider (an HF directory)', async () => {
    const hf = await openHfModel(mapDir('hf', encodeHfModel(tiny, weights, { dtype: 'F32' })));
    const dir = await mkdtemp(join(tmpdir(), 'gguf-'));
    try {
      for (const type of ['F32', 'Q4_0'] as GgufWriteType[]) {
        const path = join(dir, `m-${type}.gguf`);
        await writeGgufFile(path, hfProvider(hf), { type, alignment: 64 });
        const disk = new Uint8Array(await readFile(path));
        const mem = encodeGguf(tiny, weights, { type, alignment: 64 });
        expect(disk.length).toBe(mem.length);
        expect(disk.findIndex((b, i) => b !== mem[i])).toBe(-1); // (vitest's deep equality is slow on big arrays)
        expect((await open(disk)).file.dataOffset % 64).toBe(0);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      await hf.close();
    }
  });

  it('names the tensor and type of an unsupported tensor type', async () => {
    // A real quantized type we only recognise (IQ4_NL = 20) and an id no ggml knows (99), written into a valid file.
    const base = await readGguf(bytesSource('x', encodeGguf(tiny, weights, { type: 'F32' })));
    const entries: GgufEntry[] = [
      { key: 'general.architecture', type: 'string', value: 'llama' },
      ...(['embedding_length', 'feed_forward_length', 'block_count', 'attention.head_count'] as const).map(
        (k): GgufEntry => ({ key: `llama.${k}`, type: 'u32', value: base.metadata.get(`llama.${k}`) as number }),
      ),
    ];
    for (const [typeId, typeName, bytes] of [[20, 'IQ4_NL', 2 * 18 * 64], [99, 'unknown type 99', 4096]] as const) {
      const specs: GgufTensorSpec[] = [...base.tensors.values()].map((t) =>
        t.name === 'blk.0.attn_k.weight' ? { name: t.name, ne: t.ne, typeId, byteLength: bytes } : { name: t.name, ne: t.ne, typeId: t.typeId, byteLength: t.byteLength },
      );
      const { header, dataSize } = encodeGgufHeader(entries, specs);
      const file = new Uint8Array(header.byteLength + dataSize);
      file.set(header);
      await expect(open(file, 'k.gguf')).rejects.toThrow(
        new RegExp(`k\\.gguf: tensor "blk\\.0\\.attn_k\\.weight" has ggml type ${typeName}, which is not supported \\(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K\\)`),
      );
    }
  });

  it('refuses truncated files, missing tensors, wrong shapes and other architectures', async () => {
    const good = encodeGguf(tiny, weights, { type: 'Q8_0' });
    const f = await readGguf(bytesSource('x', good));
    const last = [...f.tensors.values()].at(-1)!;
    await expect(open(good.subarray(0, good.length - 100), 'cut.gguf')).rejects.toThrow(
      new RegExp(`cut\\.gguf: tensor "${last.name.replace(/\./g, '\\.')}": data .* extends past the end of the file .* truncated`),
    );
    await expect(open(good.subarray(0, f.dataOffset - 64), 'cut.gguf')).rejects.toThrow(/cut\.gguf: GGUF header is cut off/);

    const rewrite = (edit: (specs: GgufTensorSpec[], entries: GgufEntry[]) => void): Uint8Array => {
      const entries: GgufEntry[] = [...f.metadata].flatMap(([key, value]): GgufEntry[] =>
        typeof value === 'string' ? [{ key, type: 'string', value }]
        : typeof value === 'number' ? [{ key, type: f.valueTypes.get(key) as 'u32', value }]
        : []);
      const specs = [...f.tensors.values()].map((t) => ({ name: t.name, ne: [...t.ne], typeId: t.typeId, byteLength: t.byteLength }));
      edit(specs, entries);
      const { header, dataSize } = encodeGgufHeader(entries, specs);
      const out = new Uint8Array(header.byteLength + dataSize);
      out.set(header);
      return out;
    };
    await expect(open(rewrite((s) => s.splice(s.findIndex((t) => t.name === 'blk.0.ffn_up.weight'), 1)), 'm.gguf')).rejects.toThrow(
      /m\.gguf: missing tensor "blk\.0\.ffn_up\.weight"/,
    );
    await expect(open(rewrite((s) => {
      const t = s.find((x) => x.name === 'blk.0.attn_v.weight')!;
      t.ne = [t.ne[0]!, t.ne[1]! / 2];
      t.byteLength /= 2;
    }), 'm.gguf')).rejects.toThrow(/m\.gguf: tensor "blk\.0\.attn_v\.weight" has shape \[32, 64\] .* expected \[64, 64\]/);
    await expect(open(rewrite((_, e) => {
      e[e.findIndex((x) => x.key === 'general.architecture')] = { key: 'general.architecture', type: 'string', value: 'falcon' };
    }), 'm.gguf')).rejects.toThrow(/m\.gguf: general\.architecture is "falcon"; only "llama" is supported/);
    await expect(open(rewrite((_, e) => e.splice(e.findIndex((x) => x.key === 'llama.block_count'), 1)), 'm.gguf')).rejects.toThrow(
      /m\.gguf: missing metadata "llama\.block_count"/,
    );
  });
});

// ---- tokenizer and generation with the real Llama-2 vocabulary -----------------------------------

// Hand-written cases: whitespace runs (the pieces whose merge order GGUF cannot carry exactly),
// byte fallback, code, several scripts, special-token text.
const CASES = [
  'Hello world', 'Hello, my dog is cute', 'a', ' ', '  ', '     ', '          x', 'x          y', '\n\n\n',
  '\t\tindented\n    four spaces\n        eight spaces', 'The quick brown fox jumps over the lazy dog.',
  "don't stop; it's fine -- really?!", 'GGUF keeps Meta\'s row order for q and k.', '3.14159 2.71828 1e-5 0xFF 1,024',
  'for (let i = 0; i < n; i++) { sum += a[i] * b[i]; }', 'if x:\n    return [y for y in z]\n',
  'Ünïcödé façade naïve', 'Москва и Санкт-Петербург', '東京と大阪', '서울', 'Αθήνα', 'القاهرة', 'ירושלים', 'मुंबई',
  '🦙🦙🦙 llama emoji', '👩🏽‍💻 at work', '🇩🇪🇧🇷', 'ǅ ǈ ǋ', '∮ E⋅da = Q', '<s>', '</s> end', 'x<unk>y', '[INST] hi [/INST]',
  '▁', '▁▁▁', 'zero\u200bwidth', '\u0007bell', 'mixed  \t  whitespace \n\n  end  ',
];
const WORDS = ['the', ' the', 'llama', ' GGUF', 'ing', 'tion', ' ', '   ', '\n', '\t', '.', ',', '!', '42', '7', 'é', '中', 'жи', '🦙', '😀', '∑', 'Σ', '<s>', '▁', 'ſ', 'ﬁ', '\u00a0', 'Quantize', ' row', 'Q4_0'];

function randomStrings(count: number, seed: number): string[] {
  const u32 = lcg(seed);
  const next = (): number => u32() / 2 ** 32;
  return Array.from({ length: count }, () => {
    let out = '';
    const n = 1 + Math.floor(next() * 20);
    for (let i = 0; i < n; i++) out += WORDS[Math.floor(next() * WORDS.length)];
    return out;
  });
}

describe('GGUF with the Llama-2 vocabulary', () => {
  let vocabJson: Llama2TokenizerJson;
  let model: GgufModel;
  const weights = randomWeights(mha, 2024);

  beforeAll(async () => {
    vocabJson = buildLlama2TokenizerJson();
    model = await open(encodeGguf(mha, weights, { type: 'F32', tokenizerJson: vocabJson }));
  });

  it('writes SentencePiece token types and scores', () => {
    const md = model.metadata;
    const tokens = md.get('tokenizer.ggml.tokens') as string[];
    const types = md.get('tokenizer.ggml.token_type') as Int32Array;
    const scores = md.get('tokenizer.ggml.scores') as Float32Array;
    expect(tokens.length).toBe(32000);
    expect([tokens[0], tokens[1], tokens[2], tokens[3], tokens[13], tokens[259]]).toEqual(['<unk>', '<s>', '</s>', '<0x00>', '<0x0A>', '▁▁']);
    expect([types[0], types[1], types[2], types[3], types[258], types[259], types[15043]]).toEqual([2, 3, 3, 6, 6, 1, 1]);
    // a piece's score is minus the rank of the first merge making it: "▁t" is Llama-2's first merge
    expect(vocabJson.model.merges[0]).toBe('▁ t');
    expect(scores[vocabJson.model.vocab['▁t']!]).toBe(-0);
    expect(scores[15043]!).toBeLessThan(scores[vocabJson.model.vocab['▁t']!]!);
    expect(md.get('tokenizer.ggml.model')).toBe('llama');
    expect(md.get('tokenizer.ggml.add_space_prefix')).toBe(true);
    expect([md.get('tokenizer.ggml.bos_token_id'), md.get('tokenizer.ggml.eos_token_id'), md.get('tokenizer.ggml.unknown_token_id')]).toEqual([1, 2, 0]);
  });

  it('reads the header in chunks of any size, and of the data section at most one chunk of read-ahead', async () => {
    const bytes = encodeGguf(tiny, randomWeights(tiny, 1), { type: 'Q4_0', tokenizerJson: vocabJson });
    let furthest = 0;
    let reads = 0;
    const inner = bytesSource('v.gguf', bytes);
    const spy = { ...inner, read: (o: number, n: number) => ((reads++, (furthest = Math.max(furthest, o + n))), inner.read(o, n)) };
    const small = await readGguf(spy, { chunkBytes: 100 }); // the vocabulary spans thousands of chunks
    expect(reads).toBeGreaterThan(1000);
    expect(furthest).toBeLessThanOrEqual(small.dataOffset + 100);
    const whole = await readGguf(bytesSource('v.gguf', bytes));
    expect(small.metadata).toEqual(whole.metadata);
    expect(small.tensors).toEqual(whole.tensors);
    expect(whole.dataOffset).toBeGreaterThan(700_000);
  });

  it('rebuilds a tokenizer.json that encodes and decodes like tokenizer/', () => {
    const mine = LlamaTokenizer.fromJson(model.tokenizerJson!, model.tokenizerConfigJson!);
    const ref = LlamaTokenizer.fromJson(vocabJson, llama2TokenizerConfigJson());
    const json = JSON.parse(model.tokenizerJson!) as Llama2TokenizerJson;
    expect(new Set(json.model.merges)).toEqual(new Set(vocabJson.model.merges)); // same merges; order may differ for whitespace runs
    expect(Object.keys(json.model.vocab).length).toBe(32000);
    expect(mine.encode('Hello world')).toEqual([1, 15043, 3186]);
    const cases = [...CASES, ...randomStrings(300, 77)];
    const bad = cases.filter((s) => JSON.stringify(mine.encode(s)) !== JSON.stringify(ref.encode(s)));
    expect(cases.length).toBeGreaterThan(300);
    expect(bad).toEqual([]);
    const ids = ref.encode(cases.join('|'));
    expect(mine.decode(ids)).toBe(ref.decode(ids));
    expect([mine.bosId, mine.eosId, mine.unkId]).toEqual([1, 2, 0]);
  });

  it('greedy tokens of the CPU oracle from GGUF F32 equal those from HF safetensors', async () => {
    const hf = await openHfModel(mapDir('hf', encodeHfModel(mha, weights, { dtype: 'F32' })));
    const fromHf = await readAll(hfProvider(hf));
    const fromGguf = await readAll(model.provider);
    for (const [name, w] of fromHf) expect(sameBits(fromGguf.get(name)!, w), name).toBe(true);
    expect(model.config).toEqual(hf.config);
    const prompt = [1, 15043, 29892, 590, 11203, 338, 274, 1082];
    const a = new ReferenceModel(model.config, fromGguf).generateGreedy(prompt, 16);
    const b = new ReferenceModel(hf.config, fromHf).generateGreedy(prompt, 16);
    expect(a).toHaveLength(16);
    expect(a).toEqual(b);
    await hf.close();
  });

  it('GQA: q and k permuted with their own head counts come back in HF order', async () => {
    const cfg = { ...gqa, nLayers: 1, vocabSize: 320 };
    const w = randomWeights(cfg, 3);
    const m = await open(encodeGguf(cfg, w, { type: 'F32' }));
    const raw = await readGguf(bytesSource('g', encodeGguf(cfg, w, { type: 'F32' })));
    expect(raw.tensors.get('blk.0.attn_k.weight')!.shape).toEqual([cfg.nKvHeads * cfg.headDim, cfg.dim]);
    for (const name of ['layers.0.wq', 'layers.0.wk']) {
      const rows = expectedTensors(cfg).get(name)![0]!;
      expect(sameBits(await m.provider.readRowsF32(name, 0, rows), w.get(name)!), name).toBe(true);
    }
    expect(ggufConfig(raw)).toEqual(cfg);
  });
});

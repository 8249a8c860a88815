// half.ts conversions (against known bit patterns and a nearest-value property) and the safetensors
// reader/writer: round trips, alignment, streaming writer, and every header error naming file + tensor.

import { describe, expect, it } from 'vitest';
import { lcgFloats } from './helpers/random.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesSource, fileSource } from '../checkpoint/byte-source.ts';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../kernels/half.ts';
import {
  encodeSafetensors,
  readSafetensorsHeader,
  readTensorAsF32,
  readTensorBytes,
  writeSafetensorsFile,
} from '../checkpoint/safetensors.ts';

const f32Bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0]!;
const fromBits = (b: number): number => new Float32Array(new Uint32Array([b]).buffer)[0]!;
const toF16 = (x: number): number => f32ToF16(new Float32Array([x]))[0]!;
const toBf16 = (x: number): number => f32ToBf16(new Float32Array([x]))[0]!;
const fromF16 = (h: number): number => f16ToF32(new Uint16Array([h]))[0]!;

describe('half: f16', () => {
  it('decodes known bit patterns, including subnormals, inf, nan and signed zero', () => {
    expect(fromF16(0x3c00)).toBe(1);
    expect(fromF16(0xc000)).toBe(-2);
    expect(fromF16(0x7bff)).toBe(65504);
    expect(fromF16(0x0400)).toBe(2 ** -14); // smallest normal
    expect(fromF16(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(fromF16(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(fromF16(0x8001)).toBe(-(2 ** -24));
    expect(fromF16(0x3555)).toBe(0.333251953125);
    expect(fromF16(0x7c00)).toBe(Infinity);
    expect(fromF16(0xfc00)).toBe(-Infinity);
    expect(fromF16(0x7e00)).toBeNaN();
    expect(Object.is(fromF16(0x8000), -0)).toBe(true);
    expect(Object.is(fromF16(0x0000), 0)).toBe(true);
  });

  it('encodes with round-to-nearest-even, overflow to inf, underflow through subnormals', () => {
    expect(toF16(1)).toBe(0x3c00);
    expect(toF16(-2)).toBe(0xc000);
    expect(toF16(65504)).toBe(0x7bff);
    expect(toF16(65519)).toBe(0x7bff); // below the midpoint to 65536
    expect(toF16(65520)).toBe(0x7c00); // exact midpoint: ties to even (0x7c00) = inf
    expect(toF16(1e10)).toBe(0x7c00);
    expect(toF16(-Infinity)).toBe(0xfc00);
    expect(toF16(1 + 2 ** -11)).toBe(0x3c00); // tie between 0x3c00 and 0x3c01 -> even
    expect(toF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie between 0x3c01 and 0x3c02 -> even
    expect(toF16(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(toF16(2 ** -24)).toBe(0x0001);
    expect(toF16(-(2 ** -24))).toBe(0x8001);
    expect(toF16(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal -> 0
    expect(toF16(2 ** -25 * 1.0001)).toBe(0x0001);
    expect(toF16(3 * 2 ** -25)).toBe(0x0002); // 1.5 subnormal ulps: tie -> even
    expect(toF16(2 ** -26)).toBe(0x0000);
    expect(toF16(-(2 ** -30))).toBe(0x8000); // signed zero
    expect(toF16(1023.5 * 2 ** -24)).toBe(0x0400); // largest subnormal rounds up into the smallest normal
    expect(toF16(2 ** -14)).toBe(0x0400);
    const nan = toF16(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
  });

  it('round-trips every f16 bit pattern exactly (NaNs stay NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    for (let i = 0; i < 65536; i++) {
      const isNan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNan) expect((back[i]! & 0x7c00) === 0x7c00 && (back[i]! & 0x3ff) !== 0).toBe(true);
      else if (back[i] !== i) throw new Error(`f16 0x${i.toString(16)} came back as 0x${back[i]!.toString(16)}`);
    }
  });

  it('picks the nearest f16 (ties to even) for random f32 across normal and subnormal ranges', () => {
    for (const scale of [1e-6, 1e-3, 1, 1000, 60000]) {
      const xs = lcgFloats(20000, 7 + scale, 2 * scale);
      const hs = f32ToF16(xs);
      const back = f16ToF32(hs);
      for (let i = 0; i < xs.length; i++) {
        const x = xs[i]!;
        const h = hs[i]!;
        const err = Math.abs(back[i]! - x);
        // neighbours one ulp either way (same sign, finite)
        for (const nb of [h - 1, h + 1]) {
          if ((nb & 0x7fff) > 0x7bff || (nb & 0x8000) !== (h & 0x8000)) continue;
          const e2 = Math.abs(fromF16(nb) - x);
          if (e2 < err || (e2 === err && (h & 1) === 1)) throw new Error(`f32 ${x}: got 0x${h.toString(16)}, 0x${nb.toString(16)} is nearer or even`);
        }
      }
    }
  });

  it('reuses dst and converts views with a byte offset', () => {
    const buf = new Uint16Array([0, 0x3c00, 0xc000]);
    const dst = new Float32Array(4);
    const out = f16ToF32(buf.subarray(1), dst);
    expect(out).toBe(dst);
    expect([...dst]).toEqual([1, -2, 0, 0]);
    const src = new Float32Array([9, 1, 0.5]).subarray(1);
    expect([...f32ToF16(src)]).toEqual([0x3c00, 0x3800]);
  });
});

describe('half: bf16', () => {
  it('decodes exactly and encodes with round-to-nearest-even', () => {
    expect([...bf16ToF32(new Uint16Array([0x3f80, 0xc000, 0x7f80, 0x0001]))]).toEqual([1, -2, Infinity, fromBits(0x00010000)]);
    expect(bf16ToF32(new Uint16Array([0x7fc0]))[0]).toBeNaN();
    expect(toBf16(1)).toBe(0x3f80);
    expect(toBf16(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(toBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(toBf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(toBf16(fromBits(0x7f7fffff))).toBe(0x7f80); // max f32 rounds to inf
    expect(toBf16(-0)).toBe(0x8000);
    expect(toBf16(fromBits(0x00018000))).toBe(0x0002); // subnormal tie -> even
    const nan = toBf16(NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
    // a NaN whose payload lives only in the low 16 bits must not turn into inf
    // (built from raw bits: a signalling NaN read into a JS number may be canonicalised)
    const sNan = new Float32Array(new Uint32Array([0x7f800001, 0xff800001]).buffer);
    const out = f32ToBf16(sNan);
    expect(out[0]! & 0x7f).not.toBe(0);
    expect(out[1]! & 0x807f).toBeGreaterThan(0x8000);
  });

  it('round-trips random values within half a bf16 ulp', () => {
    const xs = lcgFloats(10000, 3, 10);
    const back = bf16ToF32(f32ToBf16(xs));
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      const ulp = 2 ** (Math.floor(Math.log2(Math.abs(x))) - 7);
      if (!(Math.abs(back[i]! - x) <= ulp / 2) || (f32Bits(back[i]!) & 0xffff) !== 0) {
        throw new Error(`bf16 round trip of ${x} gave ${back[i]}`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------------

const u8 = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function sampleTensors() {
  const a = lcgFloats(6, 1, 4); // F32 [2, 3]
  const b = lcgFloats(8, 2, 4); // F16 [8]
  const c = lcgFloats(4, 3, 4); // BF16 [2, 2]
  return {
    a,
    b,
    c,
    list: [
      { name: 'a.weight', dtype: 'F32', shape: [2, 3], data: u8(a) },
      { name: 'b.weight', dtype: 'F16', shape: [8], data: u8(f32ToF16(b)) },
      { name: 'c.weight', dtype: 'BF16', shape: [2, 2], data: u8(f32ToBf16(c)) },
      { name: 'packed', dtype: 'U8', shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
      { name: 'ids', dtype: 'I32', shape: [2], data: u8(new Int32Array([-7, 7])) },
    ],
  };
}

/** A header-only safetensors file around `header` plus `dataBytes` zero bytes. */
function rawFile(header: unknown, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setUint32(0, json.byteLength, true);
  out.set(json, 8);
  return out;
}

const headerOf = (bytes: Uint8Array, name = 'x.safetensors') => readSafetensorsHeader(bytesSource(name, bytes));

describe('safetensors: round trip', () => {
  it('encodes and reads back F32/F16/BF16/U8/I32 with metadata, in the given order', async () => {
    const { a, b, c, list } = sampleTensors();
    const file = encodeSafetensors(list, { format: 'pt', note: 'hi' });
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0); // data section 8-aligned
    const headerText = new TextDecoder().decode(file.subarray(8, 8 + n));
    expect(headerText.trimEnd().endsWith('}')).toBe(true); // JSON then space padding only
    expect(JSON.parse(headerText).__metadata__).toEqual({ format: 'pt', note: 'hi' });

    const src = bytesSource('m.safetensors', file);
    const { tensors, metadata } = await readSafetensorsHeader(src);
    expect(metadata).toEqual({ format: 'pt', note: 'hi' });
    expect(tensors.map((t) => t.name)).toEqual(['a.weight', 'b.weight', 'c.weight', 'packed', 'ids']);
    expect(tensors.map((t) => t.byteLength)).toEqual([24, 16, 8, 5, 8]);
    expect(tensors[0]!.offset).toBe(8 + n);
    expect(tensors[1]!.offset).toBe(8 + n + 24);
    expect(tensors.every((t) => t.file === 'm.safetensors')).toBe(true);
    expect(tensors[2]!.shape).toEqual([2, 2]);

    expect(await readTensorAsF32(src, tensors[0]!)).toEqual(a);
    expect(await readTensorAsF32(src, tensors[1]!)).toEqual(f16ToF32(f32ToF16(b)));
    const cBack = await readTensorAsF32(src, tensors[2]!);
    expect(cBack).toEqual(bf16ToF32(f32ToBf16(c)));
    for (let i = 0; i < 4; i++) expect(Math.abs(cBack[i]! - c[i]!)).toBeLessThan(Math.abs(c[i]!) / 128);
    expect([...(await readTensorBytes(src, tensors[3]!))]).toEqual([1, 2, 3, 4, 5]);
    await expect(readTensorAsF32(src, tensors[4]!)).rejects.toThrow(/m\.safetensors.*"ids".*I32/);
  });

  it('reads tensors at unaligned offsets (copying first)', async () => {
    const x = lcgFloats(5, 9, 2);
    const file = encodeSafetensors([
      { name: 'pad', dtype: 'U8', shape: [3], data: new Uint8Array(3) },
      { name: 'x', dtype: 'F32', shape: [5], data: u8(x) }, // data offset 3: not 4-aligned
      { name: 'h', dtype: 'F16', shape: [5], data: u8(f32ToF16(x)) }, // data offset 23: odd
    ]);
    const src = bytesSource('u.safetensors', file);
    const { tensors } = await readSafetensorsHeader(src);
    expect(tensors[1]!.offset % 4).toBe(3);
    expect(await readTensorAsF32(src, tensors[1]!)).toEqual(x);
    expect(await readTensorAsF32(src, tensors[2]!)).toEqual(f16ToF32(f32ToF16(x)));
  });

  it('returns tensors in file order even when the JSON lists them otherwise', async () => {
    const file = rawFile(
      {
        late: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
        early: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      },
      8,
    );
    const { tensors } = await headerOf(file);
    expect(tensors.map((t) => t.name)).toEqual(['early', 'late']);
  });

  it('streams a file to disk identical to the in-memory encoder', async () => {
    const { list } = sampleTensors();
    const dir = await mkdtemp(join(tmpdir(), 'st-test-'));
    try {
      const path = join(dir, 'w.safetensors');
      const byName = new Map(list.map((t) => [t.name, t.data]));
      const asked: string[] = [];
      await writeSafetensorsFile(
        path,
        list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength })),
        async (name) => {
          asked.push(name);
          return byName.get(name)!;
        },
        { format: 'pt' },
      );
      expect(asked).toEqual(list.map((t) => t.name));
      const src = await fileSource(path);
      try {
        const disk = await src.read(0, src.size);
        expect(disk).toEqual(encodeSafetensors(list, { format: 'pt' }));
      } finally {
        await src.close?.();
      }
      await expect(
        writeSafetensorsFile(path, [{ name: 'q', dtype: 'F32', shape: [2], byteLength: 8 }], async () => new Uint8Array(4)),
      ).rejects.toThrow(/"q".*4 bytes/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writer rejects data that does not match dtype x shape, and unknown dtypes', () => {
    expect(() => encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [3], data: new Uint8Array(8) }])).toThrow(/"w".*8 bytes.*needs 12/);
    expect(() => encodeSafetensors([{ name: 'w', dtype: 'Q4', shape: [3], data: new Uint8Array(3) }])).toThrow(/"w".*Q4/);
    expect(() =>
      encodeSafetensors([
        { name: 'w', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
        { name: 'w', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      ]),
    ).toThrow(/duplicate/);
  });
});

describe('safetensors: header errors name the file and the tensor', () => {
  it('detects a truncated file and names the first tensor that does not fit', async () => {
    const { list } = sampleTensors();
    const file = encodeSafetensors(list);
    // cut inside 'b.weight' (the 2nd tensor): it and everything after no longer fit
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    const cut = file.subarray(0, 8 + n + 24 + 5);
    await expect(headerOf(cut, 'cut.safetensors')).rejects.toThrow(/cut\.safetensors: tensor "b\.weight".*past the end.*truncated/);
    // cut only the last byte: the last tensor is named
    await expect(headerOf(file.subarray(0, file.byteLength - 1), 'last.safetensors')).rejects.toThrow(/last\.safetensors: tensor "ids"/);
    // cut inside the header
    await expect(headerOf(file.subarray(0, 20), 'h.safetensors')).rejects.toThrow(/h\.safetensors: .*header length \d+ is past the end/);
    await expect(headerOf(file.subarray(0, 5), 'tiny.safetensors')).rejects.toThrow(/tiny\.safetensors: .*too short/);
  });

  it('rejects an absurd header length', async () => {
    const f = new Uint8Array(64);
    new DataView(f.buffer).setBigUint64(0, 200_000_000n, true);
    await expect(headerOf(f, 'big.safetensors')).rejects.toThrow(/big\.safetensors: .*absurd/);
    new DataView(f.buffer).setBigUint64(0, 2n ** 40n, true);
    await expect(headerOf(f, 'big.safetensors')).rejects.toThrow(/absurd/);
  });

  it('rejects bad JSON and non-object headers', async () => {
    const bad = new TextEncoder().encode('{"a": {"dtype": "F32",');
    const f = new Uint8Array(8 + bad.byteLength);
    new DataView(f.buffer).setUint32(0, bad.byteLength, true);
    f.set(bad, 8);
    await expect(headerOf(f, 'j.safetensors')).rejects.toThrow(/j\.safetensors: .*not valid JSON/);
    await expect(headerOf(rawFile([1, 2], 0), 'arr.safetensors')).rejects.toThrow(/arr\.safetensors: .*not a JSON object/);
    await expect(headerOf(rawFile({ __metadata__: { a: 1 } }, 0), 'm.safetensors')).rejects.toThrow(/m\.safetensors: .*__metadata__.*"a"/);
  });

  it('rejects unsupported dtypes, bad shapes and offsets', async () => {
    await expect(headerOf(rawFile({ 'w.q': { dtype: 'Q4_K', shape: [4], data_offsets: [0, 4] } }, 4), 'd.safetensors')).rejects.toThrow(
      /d\.safetensors: tensor "w\.q": unsupported dtype "Q4_K"/,
    );
    await expect(headerOf(rawFile({ 'w.s': { dtype: 'F32', shape: [2, -1], data_offsets: [0, 4] } }, 4), 's.safetensors')).rejects.toThrow(
      /s\.safetensors: tensor "w\.s": shape/,
    );
    await expect(headerOf(rawFile({ 'w.n': { dtype: 'F16', shape: [3, 2], data_offsets: [0, 8] } }, 16), 'n.safetensors')).rejects.toThrow(
      /n\.safetensors: tensor "w\.n": .*span 8 bytes.*needs 12/,
    );
    await expect(headerOf(rawFile({ 'w.o': { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, 4), 'o.safetensors')).rejects.toThrow(
      /o\.safetensors: tensor "w\.o": .*out of order/,
    );
    await expect(headerOf(rawFile({ 'w.m': { dtype: 'U8', shape: [1] } }, 4), 'm.safetensors')).rejects.toThrow(/m\.safetensors: tensor "w\.m": data_offsets/);
    await expect(
      headerOf(
        rawFile(
          {
            first: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            second: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
          },
          12,
        ),
        'ov.safetensors',
      ),
    ).rejects.toThrow(/ov\.safetensors: tensor "second".*overlap tensor "first"/);
  });
});

// `llama2-webgpu bench kernels [--json]`: the weight-streaming kernels against the adapter's own roofline,
// all in one run on one device.
//
//  1. read: the adapter's streaming-read bandwidth, from plain read kernels over a 64 MiB buffer: every
//     invocation loads vec4<u32> and xors them (the result is written only if it equals a value it never
//     does, so the loads cannot be dropped). Access patterns: one contiguous run per invocation ("blocked",
//     two workgroup sizes) and consecutive invocations on consecutive vec4 ("strided", the GPU-friendly
//     one); the fastest is the roofline of this device. It is timed again in alternation with every kernel
//     below, and that row's read_gbps is the median of those runs, so a machine shared with other work
//     (CI) loads both sides of each fraction alike.
//  2. matvec (decode, M = 1) for each dtype and shape, the chunks split by rows exactly as runtime/weights.ts
//     does: gbps = weight bytes (what the chunks hold, padding included) / time; fraction = gbps / read_gbps.
//  3. prefill (M = 128 rows of X, the device's path for M > 4: see kernels/matmul.ts PrefillKind), and the
//     tiled kernel where that is not the device's path (first shape only, by default): GFLOP/s = 2 M N K /
//     time, and the same bandwidth columns (weight bytes / time).
//
// Time per call: the median of `iterations` timed submissions after a warm-up, each holding enough calls
// (every chunk's dispatch, encoded back to back in one pass) to last ~0.2 s, timed from submit to
// onSubmittedWorkDone. The weights are one packed octet (or row) of random values repeated: the kernels'
// speed does not depend on the values, and packing 28672 x 8192 random weights in JS would take longer
// than the benchmark.
//
// GGUF's block types (Q4_0 ... Q6_K, BF16: kept as stored, decoded in registers) are measured with
// --dtypes Q4_K,Q6_K,... (or `gguf` for all of them) beside f32/f16/q8/q4; their weights are random blocks.
//
// Standalone: BENCH_KERNELS_MAIN=1 npx vite-node bench/kernels.ts -- [--json] [--dtypes q4,f16,Q4_K|gguf] [--shapes 4096x4096,...]
//   [--kernels matvec,prefill,tiled] [--iterations N] [--variant lanes|split|split-shared] [--prefill matvec|tiled]
//   [--prefill-m N] [--prefill-all] [--no-f32-70b]

import { bindGroup, getPipeline, storageBuffer, uniformBuffer, packParams } from '../kernels/common.ts';
import { matmulPipelines, recordMatmul, encodeMatmul, variantName, type MatmulDispatch, type PrefillKind } from '../kernels/matmul.ts';
import { formatSpec, isGgmlFormat, type WeightFormat } from '../kernels/weight-formats.ts';
import { GGML_BLOCKS } from '../kernels/ggml-blocks.ts';
import { createGpuContext, type GpuContext } from '../runtime/device.ts';
import { rowsPerChunk } from '../runtime/weights.ts';

export type BenchKernel = 'matvec' | 'prefill' | 'tiled';

export interface BenchRow {
  kernel: 'read' | 'matvec' | 'prefill' | 'tiled'; // prefill: the device's M > 4 path; tiled: the tiled kernel
  dtype: WeightFormat | 'u32';
  rows: number; // N (read: 0)
  cols: number; // K (read: 0)
  ms: number; // per call, median
  gbps: number; // weight bytes per second / 1e9
  read_gbps: number; // the streaming-read bandwidth: the best read pattern, re-timed alternately with this row's kernel
  fraction: number; // gbps / read_gbps
  gflops?: number; // tiled: 2 M N K / time / 1e9
  variant: string; // the kernel design (matvec: lanes8x4, split-subgroup, ...; read: the pattern)
  chunks?: number; // row chunks (bindings) of the matrix
  bytes: number; // bytes streamed per call
  adapter: string;
}

export interface BenchKernelsOptions {
  json: boolean;
  /** (rows, cols) = (N, K); default: Llama-2-7B's and 70B's matrix shapes. */
  shapes?: [number, number][];
  dtypes?: WeightFormat[];
  /** Default: matvec on every shape, prefill on the first two, tiled on the first where prefill is not tiled. */
  kernels?: BenchKernel[];
  iterations?: number; // timed submissions per row (default 5)
  /** Force a matvec design instead of the device's default. */
  variant?: 'lanes' | 'split' | 'split-shared';
  /** Force the prefill path (default: the device's, see kernels/matmul.ts PrefillKind). */
  prefill?: PrefillKind;
  /** Skip f32 on shapes with a side of 8192 or more (940 MB of weights, minutes on lavapipe). */
  skipF32Large?: boolean;
  prefillM?: number; // rows of X for the prefill and tiled kernels (default 128)
  prefillAll?: boolean; // prefill on every shape (default: the first two)
  gpu?: GpuContext;
  print: (line: string) => void;
}

const DEFAULT_SHAPES: [number, number][] = [
  [4096, 4096], [11008, 4096], [4096, 11008], // Llama-2-7B: wq/wk/wv/wo, w1/w3, w2
  [8192, 8192], [28672, 8192], [8192, 28672], [1024, 8192], // Llama-2-70B: wq/wo, w1/w3, w2, wk/wv (GQA)
];
const DEFAULT_DTYPES: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

const READ_BYTES = 64 * 2 ** 20;
const TARGET_SECONDS = 0.2;

type Encode = (pass: GPUComputePassEncoder) => void;

/**
 * Median wall time of one call of `encode` (each submission holds enough calls to last ~0.2 s; the first
 * warms up), and, when `read` is given, of one pass of the read kernel timed in alternation with it, so
 * that both see the same load on a shared machine.
 */
async function timeCalls(device: GPUDevice, encode: Encode, iterations: number, read?: Encode): Promise<{ s: number; readS: number }> {
  const submit = async (e: Encode, calls: number): Promise<number> => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < calls; i++) e(pass);
    pass.end();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / 1000;
  };
  const count = (first: number): number => Math.max(1, Math.min(200, Math.round(TARGET_SECONDS / Math.max(first, 1e-5))));
  const calls = count(await submit(encode, 1)); // warm-up: compiles the pipeline on lavapipe, pages the weights in
  const readCalls = read ? count(await submit(read, 1)) : 0;
  const times: number[] = [], reads: number[] = [];
  for (let i = 0; i < iterations; i++) {
    if (read) reads.push((await submit(read, readCalls)) / readCalls);
    times.push((await submit(encode, calls)) / calls);
  }
  const median = (a: number[]): number => a.sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
  return { s: median(times), readS: median(reads) };
}

/** The read kernel: invocation t reads `per` vec4 (blocked: src[t*per + i]; strided: src[t + i*T]). */
function readWgsl(wg: number, blocked: boolean): string {
  return /* wgsl */ `
struct Params { per: u32, threads: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var a = vec4<u32>(0u);
  for (var i = 0u; i < p.per; i += 4u) {
    ${[0, 1, 2, 3].map((u) => (blocked ? `a ^= src[gid.x * p.per + i + ${u}u];` : `a ^= src[gid.x + (i + ${u}u) * p.threads];`)).join('\n    ')}
  }
  let r = a.x ^ a.y ^ a.z ^ a.w;
  if (r == 0x9e3779b9u) { out[gid.x] = r; } // never true for the fill below: keeps the loads live
}`;
}

interface ReadKernel {
  variant: string;
  bytes: number;
  encode: Encode;
}

/** The read kernels over one 64 MiB buffer (blocked: one contiguous run per invocation; strided: GPU-style). */
async function readKernels(gpu: GpuContext): Promise<ReadKernel[]> {
  const { device } = gpu;
  const bytes = Math.min(READ_BYTES, Math.floor(gpu.maxBindingBytes / 16) * 16);
  const src = storageBuffer(device, 'read.src', bytes);
  const fill = new Uint32Array(bytes / 4);
  for (let i = 0; i < fill.length; i++) fill[i] = Math.imul(i, 0x9e3779b1) >>> 0;
  fill[0] = 1; // the xor of all words differs from the sentinel
  device.queue.writeBuffer(src, 0, fill);
  const out = storageBuffer(device, 'read.out', 1 << 20);
  const res: ReadKernel[] = [];
  // (workgroup size, invocations, blocked): runs of 64 KiB per invocation for CPU-like adapters; strided
  // over 64 Ki invocations (16 vec4 each) for GPUs.
  for (const [wg, threads, blocked] of [[16, 1024, true], [64, 4096, true], [256, 65536, false]] as const) {
    const per = bytes / 16 / threads;
    const pipeline = await getPipeline(device, `bench-read-${wg}-${blocked}`, readWgsl(wg, blocked));
    const bg = bindGroup(device, pipeline, 'read', [uniformBuffer(device, 'read.params', packParams([[per, 'u32'], [threads, 'u32'], [0, 'u32'], [0, 'u32']])), src, out]);
    res.push({
      variant: `${blocked ? 'blocked' : 'strided'}-wg${wg}`, bytes,
      encode: (pass) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bg);
        pass.dispatchWorkgroups(threads / wg);
      },
    });
  }
  return res;
}

/** A (N, K) matrix in `dtype` split into binding-sized row chunks like runtime/weights.ts, random values. */
function makeChunks(gpu: GpuContext, dtype: WeightFormat, N: number, K: number): { buffer: GPUBuffer; rowStart: number; rows: number }[] {
  const spec = formatSpec(dtype);
  const per = rowsPerChunk(gpu, spec.rowBytes(K), spec.rowAlign);
  // One packed tile of `align` rows of random weights, repeated through every chunk.
  const align = spec.rowAlign;
  const tileRows = Math.min(align, N);
  const src = new Float32Array(tileRows * K);
  let s = 0x12345678;
  for (let i = 0; i < src.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    src[i] = ((s / 4294967296) * 2 - 1) * 0.05;
  }
  let tile: Uint8Array;
  if (isGgmlFormat(dtype)) {
    // GGUF block types have no packer: random blocks whose f16 fields (scales, mins) are small finite halves.
    const b = GGML_BLOCKS[dtype];
    tile = new Uint8Array(spec.bufferBytes(tileRows, K));
    for (let i = 0; i < tile.length; i++) tile[i] = Math.floor((src[i % src.length]! + 0.05) * 2550) & 255;
    for (let o = 0; o < tile.length; o += b.TS) for (const f of b.f16At) tile.set([0x00, 0x1c + (o % 7)], o + f); // ~2^-8
  } else tile = spec.pack(src, tileRows, K);
  const piece = new Uint8Array(Math.max(1, Math.floor(16 * 2 ** 20 / tile.byteLength)) * tile.byteLength);
  for (let o = 0; o < piece.byteLength; o += tile.byteLength) piece.set(tile, o);
  const chunks: { buffer: GPUBuffer; rowStart: number; rows: number }[] = [];
  for (let r0 = 0; r0 < N; r0 += per) {
    const rows = Math.min(per, N - r0);
    const bytes = spec.bufferBytes(rows, K); // a multiple of 4
    const buffer = storageBuffer(gpu.device, `bench.w[${r0}]`, bytes);
    for (let o = 0; o < bytes; o += piece.byteLength) gpu.device.queue.writeBuffer(buffer, o, piece, 0, Math.min(piece.byteLength, bytes - o));
    chunks.push({ buffer, rowStart: r0, rows });
  }
  return chunks;
}

export async function benchKernels(opts: BenchKernelsOptions): Promise<BenchRow[]> {
  const gpu = opts.gpu ?? (await createGpuContext());
  const { device } = gpu;
  const iterations = opts.iterations ?? 5;
  const shapes = opts.shapes ?? DEFAULT_SHAPES;
  const dtypes = opts.dtypes ?? DEFAULT_DTYPES;
  const prefillM = opts.prefillM ?? 128;
  const rows: BenchRow[] = [];
  const emit = (row: BenchRow): void => {
    rows.push(row);
    opts.print(opts.json ? JSON.stringify(row) : tableLine(row));
  };
  if (!opts.json) {
    opts.print(`adapter: ${gpu.adapterName}`);
    opts.print(tableHeader());
  }

  // The roofline: every read pattern once, then the fastest is re-timed next to each kernel below.
  const reads = await readKernels(gpu);
  const readTimes: number[] = [];
  for (const r of reads) readTimes.push((await timeCalls(device, r.encode, iterations)).s);
  const bestRead = reads[readTimes.indexOf(Math.min(...readTimes))]!;
  const readGbps = bestRead.bytes / Math.min(...readTimes) / 1e9;
  reads.forEach((r, i) => {
    const gbps = r.bytes / readTimes[i]! / 1e9;
    emit({ kernel: 'read', dtype: 'u32', rows: 0, cols: 0, ms: readTimes[i]! * 1000, gbps, read_gbps: readGbps, fraction: gbps / readGbps, variant: r.variant, bytes: r.bytes, adapter: gpu.adapterName });
  });

  const maxK = Math.max(...shapes.map(([, K]) => K));
  const maxN = Math.max(...shapes.map(([N]) => N));
  const x = storageBuffer(device, 'bench.x', prefillM * maxK * 4);
  const xFill = new Float32Array(prefillM * maxK);
  for (let i = 0; i < xFill.length; i++) xFill[i] = Math.sin(i) * 0.5;
  device.queue.writeBuffer(x, 0, xFill);
  const y = storageBuffer(device, 'bench.y', prefillM * maxN * 4);
  const step = uniformBuffer(device, 'bench.step', packParams([[1, 'u32'], [1, 'u32'], [0, 'u32'], [0, 'u32']]));
  const stepM = uniformBuffer(device, 'bench.stepM', packParams([[prefillM, 'u32'], [prefillM, 'u32'], [0, 'u32'], [0, 'u32']]));

  for (const dtype of dtypes) {
    const pipes = await matmulPipelines(gpu, dtype, { variant: opts.variant, prefill: opts.prefill });
    for (const [si, [N, K]] of shapes.entries()) {
      if (dtype === 'f32' && opts.skipF32Large && Math.max(N, K) >= 8192) continue;
      if (!formatSpec(dtype).supports(K)) continue;
      // Prefill re-reads the weights per slice of X on CPU adapters: seconds per call there, so by default
      // it runs on the first two shapes (7B's attention and FFN; f32: the first), --prefill-all on all.
      const small = si < (dtype === 'f32' ? 1 : 2);
      const kernels = opts.kernels ?? (['matvec', ...(small || opts.prefillAll ? ['prefill'] : []),
        ...(si === 0 && pipes.prefill !== 'tiled' ? ['tiled'] : [])] as BenchKernel[]);
      const chunks = makeChunks(gpu, dtype, N, K);
      const bytes = chunks.reduce((sum, c) => sum + formatSpec(dtype).bufferBytes(c.rows, K), 0);
      for (const kernel of kernels) {
        const M = kernel === 'matvec' ? 1 : prefillM;
        const kp = kernel === 'tiled' ? { ...pipes, prefill: 'tiled' as const } : pipes;
        const ds: MatmulDispatch[] = chunks.map((c) => recordMatmul(device, kp, M === 1 ? step : stepM,
          { N: c.rows, K, rowOffset: c.rowStart, ldy: N, accumulate: false, useOut: false }, x, y, c.buffer, `bench.${dtype}`));
        // Prefill calls take seconds on CPU adapters: fewer iterations.
        const { s, readS } = await timeCalls(device, (pass) => ds.forEach((d) => encodeMatmul(pass, d, M)),
          kernel === 'matvec' ? iterations : Math.min(iterations, 3), bestRead.encode);
        const gbps = bytes / s / 1e9;
        const localRead = bestRead.bytes / readS / 1e9;
        emit({
          kernel, dtype, rows: N, cols: K, ms: s * 1000, gbps, read_gbps: localRead, fraction: gbps / localRead,
          ...(kernel !== 'matvec' ? { gflops: (2 * M * N * K) / s / 1e9 } : {}),
          variant: kernel === 'matvec' ? variantName(kp.variant) : kp.prefill === 'tiled' ? 'tiled64' : `${variantName(kp.variant)}-m4xz`,
          chunks: chunks.length, bytes, adapter: gpu.adapterName,
        });
      }
      chunks.forEach((c) => c.buffer.destroy());
    }
  }
  x.destroy();
  y.destroy();
  return rows;
}

function tableHeader(): string {
  return ['kernel', 'dtype', 'rows x cols', 'variant', 'ms', 'GB/s', 'read GB/s', 'fraction', 'GFLOP/s'].map((h, i) => pad(h, WIDTHS[i]!)).join(' ');
}
const WIDTHS = [7, 5, 13, 15, 9, 7, 9, 8, 8];
const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
function tableLine(r: BenchRow): string {
  return [
    r.kernel, r.dtype, r.rows ? `${r.rows}x${r.cols}` : '64 MiB', r.variant, r.ms.toFixed(3), r.gbps.toFixed(2), r.read_gbps.toFixed(2),
    r.fraction.toFixed(2), r.gflops !== undefined ? r.gflops.toFixed(1) : '',
  ].map((c, i) => pad(c, WIDTHS[i]!)).join(' ');
}

/** Parses the standalone / CLI arguments. */
export function parseBenchKernelsArgs(argv: string[]): Omit<BenchKernelsOptions, 'print'> {
  const o: Omit<BenchKernelsOptions, 'print'> = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--json') o.json = true;
    else if (a === '--no-f32-70b') o.skipF32Large = true;
    else if (a === '--dtypes') {
      o.dtypes = val().split(',').flatMap((d) => (d === 'gguf' ? Object.keys(GGML_BLOCKS) : [d])) as WeightFormat[];
      for (const d of o.dtypes) formatSpec(d); // throws naming the formats there are
    }
    else if (a === '--kernels') o.kernels = val().split(',') as BenchKernel[];
    else if (a === '--iterations') o.iterations = Number(val());
    else if (a === '--variant') o.variant = val() as 'lanes' | 'split' | 'split-shared';
    else if (a === '--prefill') o.prefill = val() as PrefillKind;
    else if (a === '--prefill-m') o.prefillM = Number(val());
    else if (a === '--prefill-all') o.prefillAll = true;
    else if (a === '--shapes') {
      o.shapes = val().split(',').map((s) => {
        const [n, k] = s.split('x').map(Number);
        if (!n || !k) throw new Error(`bad shape "${s}" (expected ROWSxCOLS)`);
        return [n, k] as [number, number];
      });
    } else if (a !== '--') throw new Error(`unknown option ${a}`);
  }
  return o;
}

// Run as a script: `node dist/bench/kernels.js`, or through vite-node (which keeps its own path in argv[1])
// with BENCH_KERNELS_MAIN=1.
const entry = typeof process !== 'undefined' ? (process.argv[1] ?? '') : '';
if (/bench\/kernels\.[jt]s$/.test(entry) || (typeof process !== 'undefined' && process.env.BENCH_KERNELS_MAIN === '1')) {
  const o = parseBenchKernelsArgs(process.argv.slice(2));
  await benchKernels({ ...o, print: (l) => console.log(l) });
  process.exit(0);
}

// The adapter's streaming-read bandwidth: the roofline that decode, which reads every weight once per
// token, cannot beat. One kernel reads a buffer once, front to back, as vec4<u32> (16 bytes a load) and
// folds it with xor, so the compiler cannot drop the loads and the result has a CPU reference.
//
// Bindings: 0 Params (uniform), 1 src: array<vec4<u32>> (nVec4) read, 2 out: array<u32> (one per workgroup).
// Grid: ceil(nVec4 / (WG * perThread)) workgroups of WG, folded by grid1d. Invocation t of T reads
// src[t], src[t + T], src[t + 2T], ... (perThread loads; consecutive invocations read consecutive
// vec4s, so every load instruction of a workgroup covers one contiguous 4 KiB run), xors them, and the
// workgroup xors its WG partial results into out[workgroup].
// Bytes written: 4 per workgroup, 1/(16 WG perThread) of the bytes read, which is left uncounted.

import { bindGroup, getPipeline, grid1d, LINEAR_INDEX_WGSL, packParams, readBuffer, storageBuffer, uniformBuffer } from '../kernels/common.ts';
import type { GpuContext } from '../runtime/device.ts';

const WG = 256;
const PER_THREAD = 16;

const READ_BANDWIDTH_WGSL = /* wgsl */ `
${LINEAR_INDEX_WGSL}
struct Params { nVec4: u32, nThreads: u32, perThread: u32, blocked: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>; // (nVec4)
@group(0) @binding(2) var<storage, read_write> out: array<u32>; // (workgroups)

var<workgroup> part: array<u32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = linearIndex(gid, nwg, ${WG}u);
  var acc = vec4<u32>(0u);
  if (t < p.nThreads) {
    for (var i = 0u; i < p.perThread; i++) {
      // strided (GPU-style, coalesced across invocations) or blocked (one contiguous run per invocation,
      // what a CPU adapter streams fastest)
      let j = select(t + i * p.nThreads, t * p.perThread + i, p.blocked == 1u);
      if (j < p.nVec4) { acc ^= src[j]; }
    }
  }
  part[lid] = acc.x ^ acc.y ^ acc.z ^ acc.w;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] ^= part[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[wid.x + wid.y * nwg.x] = part[0]; }
}`;

/** CPU reference: the xor of every u32 word of `words` (what the per-workgroup results xor to). */
export function xorAllRef(words: Uint32Array): number {
  let x = 0;
  for (let i = 0; i < words.length; i++) x ^= words[i]!;
  return x >>> 0;
}

export interface ReadBandwidth {
  bytes: number; // bytes read by one pass
  seconds: number; // best time of one pass
  gbPerS: number; // bytes / seconds / 1e9 (the faster of the two access patterns)
  layout: 'strided' | 'blocked'; // the pattern that gave gbPerS
  checksum: number; // xor of every word read (equals xorAllRef of the contents)
}

export interface ReadBandwidthOptions {
  bytes?: number; // buffer to stream; default 256 MiB, capped at the adapter's binding size
  minSeconds?: number; // each timed trial lasts at least this long (passes repeated in one submission); default 0.25
  trials?: number; // default 3; the best trial counts
  /** Contents of the buffer (tests); default: a cheap pseudo-random fill. */
  fill?: Uint32Array<ArrayBuffer>;
}

/**
 * Measures how fast one pass of the kernel streams a buffer, wall-clock from submit to
 * onSubmittedWorkDone, with enough passes per submission to hide the submit overhead.
 */
export async function measureReadBandwidth(gpu: GpuContext, opts: ReadBandwidthOptions = {}): Promise<ReadBandwidth> {
  const { device } = gpu;
  const cap = Math.min(gpu.maxBindingBytes, gpu.maxBufferBytes);
  const bytes = opts.fill ? opts.fill.byteLength : Math.floor(Math.min(opts.bytes ?? 256 * 2 ** 20, cap) / 16) * 16;
  if (bytes < 16 || bytes % 16 !== 0 || bytes > cap) throw new Error(`read bandwidth: ${bytes} bytes must be a positive multiple of 16, at most ${cap}`);
  const nVec4 = bytes / 16;
  const src = storageBuffer(device, 'bandwidth.src', bytes);
  // Upload in 16 MiB pieces so host memory stays small whatever the buffer size.
  const piece = 16 * 2 ** 20;
  for (let off = 0; off < bytes; off += piece) {
    const n = Math.min(piece, bytes - off);
    let words: Uint32Array<ArrayBuffer>;
    if (opts.fill) words = opts.fill.slice(off / 4, (off + n) / 4);
    else {
      words = new Uint32Array(n / 4);
      for (let i = 0; i < words.length; i++) words[i] = Math.imul(off / 4 + i, 0x9e3779b1) >>> 0;
    }
    device.queue.writeBuffer(src, off, words);
  }
  const pipeline = await getPipeline(device, 'read-bandwidth', READ_BANDWIDTH_WGSL);
  // Two access patterns; the adapter's bandwidth is the faster one.
  const layouts = (['strided', 'blocked'] as const).map((layout) => {
    const perThread = layout === 'strided' ? PER_THREAD : 4096; // blocked: 64 KiB runs
    const nThreads = Math.ceil(nVec4 / perThread);
    const [gx, gy] = grid1d(nThreads, WG);
    const params = uniformBuffer(device, `bandwidth.params.${layout}`, packParams([[nVec4, 'u32'], [nThreads, 'u32'], [perThread, 'u32'], [layout === 'blocked' ? 1 : 0, 'u32']]));
    const out = storageBuffer(device, `bandwidth.out.${layout}`, gx * gy * 4);
    return { layout, gx, gy, params, out, bg: bindGroup(device, pipeline, 'bandwidth', [params, src, out]) };
  });
  const run = async (L: (typeof layouts)[number], passes: number): Promise<number> => {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < passes; i++) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, L.bg);
      pass.dispatchWorkgroups(L.gx, L.gy);
      pass.end();
    }
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / 1000;
  };
  try {
    let result: ReadBandwidth | null = null;
    for (const L of layouts) {
      await run(L, 1); // warm-up: first dispatch, page-in of the buffer
      const minSeconds = opts.minSeconds ?? 0.25;
      const one = await run(L, 1);
      const passes = Math.max(1, Math.min(1000, Math.ceil(minSeconds / Math.max(one, 1e-6))));
      let best = Infinity;
      for (let t = 0; t < (opts.trials ?? 3); t++) best = Math.min(best, (await run(L, passes)) / passes);
      const parts = new Uint32Array(await readBuffer(device, L.out, 0, L.gx * L.gy * 4));
      const r: ReadBandwidth = { bytes, seconds: best, gbPerS: bytes / best / 1e9, layout: L.layout, checksum: xorAllRef(parts) };
      if (result && r.checksum !== result.checksum) throw new Error('read bandwidth: the two access patterns read different data');
      if (!result || r.gbPerS > result.gbPerS) result = r;
    }
    return result!;
  } finally {
    src.destroy();
    for (const L of layouts) {
      L.out.destroy();
      L.params.destroy();
    }
  }
}

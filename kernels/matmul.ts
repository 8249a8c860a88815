// Matrix products with the weights: Y (M, ldy)[:, rowOffset .. rowOffset+N] (+)= X (M, K) · W (N, K)^T.
// X and Y are f32 activations; W is one row-chunk of a weight matrix in a WeightFormat (a matrix bigger than
// maxStorageBufferBindingSize is split by rows into chunks, one dispatch each, writing its columns of Y at
// rowOffset). M is Step.nTokens (or Step.nOut for the logits head). With accumulate = 1 the result is added
// to Y (the residual connection, fused).
//
// Bindings (all kernels): 0 Step, 1 Params, 2 x (M, K) f32 as vec4, 3 y (M, ldy) f32, 4 w (the chunk); the fused
// matvecs of a decode step (MatvecFusion: an RMSNorm prologue, a SwiGLU or RoPE + KV-cache epilogue) bind more from 5.
//
// Matrix-vector (decode, M <= 4): one pipeline per M (the M rows of X are unrolled), in one of two designs
// picked per device at load (`matvecVariant`), both reading whole blocks of the weight layouts
// (weight-formats.ts) with aligned vec4 loads and dequantizing in registers:
//  - lanes (CPU adapters: lavapipe, SwiftShader): one invocation per weight row, workgroup = one subgroup of
//    SG lanes, ROWSETS sets of SG rows per workgroup, each lane looping over all of K. X is loaded once per
//    workgroup, one vec4 per lane, and handed to every lane with subgroupShuffle: on lavapipe every
//    non-constant storage load is a per-lane scalar loop with a bounds check (~9 instructions per 32-bit
//    component), so loads are what costs, and this loads each weight byte once and X once per SG*ROWSETS
//    rows. No barriers, no reduction. Grid: (ceil(N / (SG*ROWSETS)), 1), folded into y past 65535.
//  - split (GPUs): a workgroup of 64 takes one octet of 8 rows; invocation l works on row l % 8 and on the
//    blocks b ≡ l / 8 (mod 8) of K, so 8 neighbouring invocations read one contiguous 128-byte run. The 8
//    partial sums of a row are reduced with subgroupShuffleXor where the device has subgroups (>= 8 lanes)
//    and through workgroup memory otherwise. Grid: (ceil(N / 8), 1), folded.
// GGUF's block types (kernels/ggml-blocks.ts) go through the same two designs: the weights are the file's raw
// blocks (w: array<u32>), a block is KB = max(BS, 32) weights, and per 32 weights the type's `grp` loads and
// multiplies out the group's scales once, then `deqg` decodes each vec4 from its quants in registers.
// Prefill (M > 4), `PrefillKind`: the M = 4 matvec over slices of X along z (CPU adapters), or tiled: 64x64
// output tiles, 256 invocations each computing a 4x4 block, K in steps of 16 staged through workgroup
// memory, weights read with the format's generic loadW4. Grid: (ceil(N/64), ceil(M/64)).

import { STEP_WGSL, packParams, type Dispatch, encodeDispatch, getPipeline, bindGroup, uniformBuffer } from './common.ts';
import { formatSpec, type BlockCode, type WeightFormat } from './weight-formats.ts';
import { CACHE_ROW_WGSL, type KvDtype } from './kv-cache.ts';
import { OCTET } from './dtype-formats.ts';
import { tree } from './format-spec.ts';
import { rmsnormRef } from './rmsnorm.ts';

export const MATVEC_MAX_M = 4;
/** Rows of X per slice when a prefill runs the matvec kernel (PrefillKind 'matvec'; 1, 2 and 4 measured alike). */
const PREFILL_SLICE = MATVEC_MAX_M;

/** How matrix-vector products are computed on a device (see the header). */
export type MatvecVariant =
  | { kind: 'lanes'; sg: number; rowsets: number }
  | { kind: 'split'; subgroups: boolean };

/** The device facts the choice of kernel depends on (a subset of GpuContext). */
export interface MatvecDevice {
  device: GPUDevice;
  hasSubgroups: boolean;
}

/**
 * Rowsets per workgroup of the lanes kernel, by format. Measured on lavapipe (Mesa 25, AVX2): more rowsets
 * share each X load between more rows, but keep more values live than the 16 AVX registers hold, and the
 * spills cost more than the X loads saved, except for q4 at 2 (f16 at 2: 0.28 of the read bandwidth vs
 * 0.49 at 1; q4 at 1, 2, 3, 4: 0.22, 0.30, 0.25, 0.20).
 */
const LANES_ROWSETS: Partial<Record<WeightFormat, number>> = { f32: 1, f16: 1, q8: 1, q4: 2 }; // GGUF block types: 1

/**
 * The matrix-vector design for a device: `lanes` on CPU adapters whose subgroups have a fixed size that is
 * a multiple of 8, else `split` (with subgroup reductions where subgroups of >= 8 lanes exist).
 */
export function matvecVariant(ctx: MatvecDevice, format: WeightFormat, force?: 'lanes' | 'split' | 'split-shared'): MatvecVariant {
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const ext = info as (GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; isFallbackAdapter?: boolean }) | undefined;
  const sgMin = ext?.subgroupMinSize ?? 0, sgMax = ext?.subgroupMaxSize ?? 0;
  const cpu = isCpuAdapter(ctx.device);
  const fixedSg = ctx.hasSubgroups && sgMin === sgMax && sgMin % OCTET === 0 && sgMin > 0;
  if (force === 'lanes' || (force === undefined && cpu && fixedSg)) {
    if (!fixedSg) throw new Error('the lanes matvec needs subgroups of one fixed size, a multiple of 8');
    return { kind: 'lanes', sg: sgMin, rowsets: LANES_ROWSETS[format] ?? 1 };
  }
  return { kind: 'split', subgroups: force !== 'split-shared' && ctx.hasSubgroups && sgMin >= OCTET };
}

/** Whether the device is a software adapter running on the CPU (lavapipe, SwiftShader), by its adapter info. */
export function isCpuAdapter(device: GPUDevice): boolean {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo & { isFallbackAdapter?: boolean } }).adapterInfo;
  const name = `${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.device ?? ''} ${info?.description ?? ''}`;
  return info?.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|softpipe/i.test(name);
}

export const variantName = (v: MatvecVariant): string =>
  v.kind === 'lanes' ? `lanes${v.sg}x${v.rowsets}` : v.subgroups ? 'split-subgroup' : 'split-shared';

const PARAMS_WGSL = /* wgsl */ `
struct Params {
  N: u32,          // rows of W in this chunk
  K4: u32,         // K / 4
  rowOffset: u32,  // first column of Y written by this chunk
  ldy: u32,        // row stride of Y in f32
  accumulate: u32, // 1: Y += X W^T
  useOut: u32,     // 1: M = step.nOut, else step.nTokens
  eps: f32,        // norm prologue: RMSNorm epsilon
  half: u32,       // rope epilogue: headDim / 2
  headBase: u32,   // rope epilogue: head (of q | k | v) of the chunk's first row
  nHeads: u32,     // rope epilogue
  nKvHeads: u32,   // rope epilogue
  blockSize: u32,  // rope epilogue: KV-cache positions per block
  maxBlocks: u32,  // rope epilogue: block-table row length
}`;

const ms = (M: number): number[] => [...Array(M).keys()];
const u32 = (i: number | string): string => (typeof i === 'number' ? `${i}u` : i);

/** The per-format part of a matrix-vector kernel: the format record's block code (kernels/format-spec.ts). */
const blockCode = (format: WeightFormat): BlockCode => formatSpec(format).matvec;

/**
 * The loop header over a block's sub-blocks. Its bound is `min(sub, Kp / 32)` (always `sub`) rather than
 * the constant: with a constant trip count of 4 the compiler unrolls it, and LLVM then takes seconds per
 * pipeline on lavapipe.
 */
const subLoop = (bc: BlockCode): string[] =>
  bc.sub === 1 ? ['{', '  let j = 0u;'] : [`let nSub = min(${bc.sub}u, Kp / 32u);`, `for (var j = 0u; j < nSub; j++) {`];

/**
 * What a matrix-vector kernel does around the product (decode's fused dispatches; runtime/forward.ts):
 *  - norm: an RMSNorm prologue. X is the raw residual stream; the kernel reads the norm weight g (binding 5,
 *    (K) f32) with each vec4 of X and multiplies it in, sums X's squares on the way through K, and scales
 *    each row's result by rsqrt(mean(x^2) + eps) at the end: W (x * g * r) = r (W (x * g)), format-agnostic.
 *  - epilogue 'swiglu': the chunk's rows are gate rows [0, N/2) then the matching up rows [N/2, N); a
 *    workgroup computes pairs (gate j, up j) and writes silu(gate) * up to Y column rowOffset + j.
 *  - epilogue 'rope': the rows are whole heads of q | k | v (head headBase + h of the chunk's head h); a
 *    workgroup computes pairs of rows (i, i + D/2) of a head and rotates them (kernels/rope.ts): q goes to Y
 *    (at rowOffset + h D + i), k rotated and v as is into the KV cache row of (slot, position) (kv-cache.ts).
 *    Bindings after g (or from 5 without the norm): pos, slot, blockTable, cos/sin table, kCache, vCache.
 * A pair's two rows are computed by two lanes of one subgroup (lanes, 1 rowset: lane l and l ^ SG/2), by one
 * lane (lanes, 2 rowsets: rowset 0 and 1) or by two invocations of one workgroup (split: r and r ^ 4).
 */
export interface MatvecFusion {
  norm?: boolean;
  epilogue?: 'none' | 'swiglu' | 'rope';
  kv?: KvDtype; // rope: the cache's element type
}

export const fusionName = (fu: MatvecFusion = {}): string =>
  `${fu.norm ? 'norm' : ''}${fu.epilogue && fu.epilogue !== 'none' ? `-${fu.epilogue}${fu.epilogue === 'rope' ? `-${fu.kv ?? 'f32'}` : ''}` : ''}` || 'plain';

/** Storage buffers a fused matvec binds (x, y, w, g, then the rope epilogue's six). */
export const fusionStorageBuffers = (fu: MatvecFusion = {}): number => 3 + (fu.norm ? 1 : 0) + (fu.epilogue === 'rope' ? 6 : 0);

/** WGSL of the M-row matrix-vector kernel of `format` in `variant`. */
export function matvecWgsl(format: WeightFormat, M: number, variant: MatvecVariant, fusion: MatvecFusion = {}): string {
  if (M < 1 || M > MATVEC_MAX_M) throw new Error(`matvec: M = ${M} outside 1..${MATVEC_MAX_M}`);
  return variant.kind === 'lanes' ? lanesWgsl(format, M, variant.sg, variant.rowsets, fusion) : splitWgsl(format, M, variant.subgroups, fusion);
}

const indent = (lines: string[], n: number): string => lines.map((l) => ' '.repeat(n) + l).join('\n');

/** Kp: K padded to whole blocks (the octet formats' row length in the layout). */
const kpLine = (KB: number): string => `let Kp = (p.K4 * 4u + ${KB - 1}u) / ${KB}u * ${KB}u;`;

const paired = (fu: MatvecFusion): boolean => fu.epilogue === 'swiglu' || fu.epilogue === 'rope';

/** The bindings and helper functions of a fused kernel (after w at binding 4). */
function fusionDecls(fu: MatvecFusion): string {
  const out: string[] = [];
  let b = 5;
  if (fu.norm) out.push(`@group(0) @binding(${b++}) var<storage, read> g: array<vec4<f32>>;     // (K) RMSNorm weight`);
  if (fu.epilogue === 'rope') {
    const kv = fu.kv ?? 'f32';
    out.push(
      `@group(0) @binding(${b++}) var<storage, read> pos: array<u32>;          // (M) positions`,
      `@group(0) @binding(${b++}) var<storage, read> slot: array<u32>;         // (M) KV slots`,
      `@group(0) @binding(${b++}) var<storage, read> blockTable: array<u32>;   // (nSlots, maxBlocks)`,
      `@group(0) @binding(${b++}) var<storage, read> cs: array<vec2<f32>>;     // (context, D/2) (cos, sin)`,
      `@group(0) @binding(${b++}) var<storage, read_write> kCache: array<${kv}>; // (nBlocks*blockSize, nKvHeads*D)`,
      `@group(0) @binding(${b++}) var<storage, read_write> vCache: array<${kv}>; // (nBlocks*blockSize, nKvHeads*D)`,
      CACHE_ROW_WGSL,
      `// Pair q of this chunk = rows (i, i + D/2) of head h, values a and b: stores the wanted halves.
fn storeRope(t: u32, q: u32, a: f32, b: f32, wantA: bool, wantB: bool) {
  let h = q / p.half;
  let i = q % p.half;
  let hq = p.headBase + h;
  let D = 2u * p.half;
  let ps = pos[t];
  if (hq >= p.nHeads + p.nKvHeads) { // v: copied
    let dst = cacheRow(slot[t], ps) * p.nKvHeads * D + (hq - p.nHeads - p.nKvHeads) * D + i;
    if (wantA) { vCache[dst] = ${kv}(a); }
    if (wantB) { vCache[dst + p.half] = ${kv}(b); }
    return;
  }
  let c = cs[ps * p.half + i];
  let ra = a * c.x - b * c.y;
  let rb = b * c.x + a * c.y;
  if (hq < p.nHeads) { // q: into Y
    let o = t * p.ldy + p.rowOffset + h * D + i;
    if (wantA) { y[o] = ra; }
    if (wantB) { y[o + p.half] = rb; }
    return;
  }
  let dst = cacheRow(slot[t], ps) * p.nKvHeads * D + (hq - p.nHeads) * D + i;
  if (wantA) { kCache[dst] = ${kv}(ra); }
  if (wantB) { kCache[dst + p.half] = ${kv}(rb); }
}`,
    );
  }
  if (fu.epilogue === 'swiglu') out.push('fn silu(a: f32) -> f32 { return a / (1.0 + exp(-a)); }');
  return out.join('\n');
}

/** WGSL: the row of W that slot computes for pair `q` (its first row, or second when `isB`). */
function pairRow(fu: MatvecFusion, q0: string, isB: string): string {
  const q = `(${q0})`;
  return fu.epilogue === 'swiglu'
    ? `${q} + select(0u, p.N / 2u, ${isB})`
    : `(${q} / p.half) * 2u * p.half + ${q} % p.half + select(0u, p.half, ${isB})`;
}

/** WGSL statements of a pair's epilogue for row m of X: a, b the pair's two results. */
function pairStore(fu: MatvecFusion, m: number, q: string, a: string, b: string, wantA: string, wantB: string): string {
  return fu.epilogue === 'swiglu'
    ? `if (${wantA}) { y[(m0 + ${m}u) * p.ldy + p.rowOffset + ${q}] = silu(${a}) * ${b}; }`
    : `storeRope(m0 + ${m}u, ${q}, ${a}, ${b}, ${wantA}, ${wantB});`;
}

function lanesWgsl(format: WeightFormat, M: number, SG: number, ROWSETS: number, fu: MatvecFusion = {}): string {
  const bc = blockCode(format);
  const pair = paired(fu);
  if (pair && !(ROWSETS % 2 === 0 || (ROWSETS === 1 && SG % 2 === 0))) throw new Error(`matvec: a paired epilogue needs an even number of rowsets or lanes`);
  const rs = [...Array(ROWSETS).keys()];
  const L: string[] = [];
  // Rows of this lane: (wg * ROWSETS + r) * SG + lane; loads use the row clamped into the chunk (the
  // clamped lanes compute a duplicate and do not write), so every lane stays active for the broadcasts.
  // Paired: one rowset, lanes l < SG/2 take the first rows of pairs wg * SG/2 + l, lanes l + SG/2 the
  // second; or an even number of rowsets, the first half of them the first rows and the rest the second.
  const H = ROWSETS === 1 ? 1 : ROWSETS / 2;
  for (const r of rs) {
    if (!pair) L.push(`let row${r} = (wg * ${ROWSETS}u + ${r}u) * ${SG}u + lane;`);
    else if (ROWSETS === 1) {
      L.push(`let isB = lane >= ${SG / 2}u;`, `let q0 = wg * ${SG / 2}u + lane % ${SG / 2}u;`, `let row0 = ${pairRow(fu, 'q0', 'isB')};`);
    } else {
      L.push(`let q${r} = (wg * ${H}u + ${r % H}u) * ${SG}u + lane;`, `let row${r} = ${pairRow(fu, `q${r}`, r >= H ? 'true' : 'false')};`);
    }
    L.push(`let rc${r} = min(row${r}, p.N - 1u);`);
  }
  for (const r of rs) for (const m of ms(M)) L.push(`var acc${r}_${m} = vec4<f32>(0.0);`);
  if (fu.norm) for (const m of ms(M)) L.push(`var ss${m} = 0.0;`);
  L.push(`for (var b = 0u; b < nB; b++) {`);
  const body: string[] = [];
  for (const r of rs) body.push(`let base${r} = ${bc.rowBlockBase(`rc${r}`, 'b')};`);
  for (const r of rs) body.push(...bc.head(r, (i) => `w[base${r} + ${u32(i)} * ${bc.stride}u]`));
  // Sub-blocks of 32 k in a loop (unrolling them made LLVM take seconds per pipeline on lavapipe).
  const sb: string[] = [];
  // X of sub-block j: lane l loads vec4 l % 8 of its 32 values (zero past K), then all 8 are broadcast.
  if (fu.norm) sb.push(`let gv = g[min(b * ${bc.KB / 4}u + j * 8u + lane % 8u, p.K4 - 1u)];`);
  for (const m of ms(M)) {
    sb.push(`let xi${m} = b * ${bc.KB / 4}u + j * 8u + lane % 8u;`);
    if (fu.norm) {
      // The norm prologue: squares summed once per vec4 (lanes 0..7), x scaled by the norm weight.
      sb.push(`let xr${m} = select(vec4<f32>(0.0), x[(m0 + ${m}u) * p.K4 + xi${m}], xi${m} < p.K4);`);
      sb.push(`ss${m} += select(dot(xr${m}, xr${m}), 0.0, lane >= 8u);`);
      sb.push(`let xv${m} = xr${m} * gv;`);
    } else sb.push(`let xv${m} = select(vec4<f32>(0.0), x[(m0 + ${m}u) * p.K4 + xi${m}], xi${m} < p.K4);`);
    // subgroupShuffle with a constant lane measured 2x cheaper than subgroupBroadcast on lavapipe.
    for (let c = 0; c < 8; c++) sb.push(`let xb${m}_${c} = subgroupShuffle(xv${m}, ${c}u);`);
    if (format === 'q4') sb.push(`let sx${m} = subgroupAdd(dot(xv${m}, vec4<f32>(select(1.0, 0.0, lane >= 8u))));`);
  }
  sb.push(...bc.xprep(M));
  for (const r of rs) sb.push('{', ...bc.body(r, 'j', M, (i) => `w[base${r} + ${u32(i)} * ${bc.stride}u]`, `base${r}`).map((s) => '  ' + s), '}');
  body.push(...subLoop(bc), ...sb.map((s) => '  ' + s), '}');
  L.push(...body.map((s) => '  ' + s), '}');
  // The row's result: the accumulator's lanes summed (times the norm's scale).
  if (fu.norm) for (const m of ms(M)) L.push(`let rs${m} = inverseSqrt(subgroupAdd(ss${m}) / f32(p.K4 * 4u) + p.eps);`);
  const tv = (r: number, m: number) => `dot(acc${r}_${m}, vec4<f32>(1.0))${fu.norm ? ` * rs${m}` : ''}`;
  if (!pair) {
    for (const r of rs) {
      L.push(`if (row${r} < p.N) {`);
      for (const m of ms(M)) {
        L.push(`  if (m0 + ${m}u < Mrt) { let i = (m0 + ${m}u) * p.ldy + p.rowOffset + row${r}; let t = ${tv(r, m)}; y[i] = select(t, y[i] + t, p.accumulate == 1u); }`);
      }
      L.push(`}`);
    }
  } else if (ROWSETS === 1) {
    // The partner's result from lane ^ SG/2; each lane stores its own row (rope) or the first lane both (swiglu).
    for (const m of ms(M)) L.push(`let t${m} = ${tv(0, m)};`, `let o${m} = subgroupShuffleXor(t${m}, ${SG / 2}u);`);
    L.push(`if (q0 < p.N / 2u) {`);
    for (const m of ms(M)) {
      L.push(`  if (m0 + ${m}u < Mrt) { ${pairStore(fu, m, 'q0', `select(t${m}, o${m}, isB)`, `select(o${m}, t${m}, isB)`, fu.epilogue === 'swiglu' ? '!isB' : '!isB', 'isB')} }`);
    }
    L.push(`}`);
  } else {
    for (let r = 0; r < H; r++) {
      L.push(`if (q${r} < p.N / 2u) {`);
      for (const m of ms(M)) L.push(`  if (m0 + ${m}u < Mrt) { ${pairStore(fu, m, `q${r}`, tv(r, m), tv(r + H, m), 'true', 'true')} }`);
      L.push(`}`);
    }
  }
  return /* wgsl */ `enable subgroups;${fu.epilogue === 'rope' && fu.kv === 'f16' ? '\nenable f16;' : ''}
${STEP_WGSL}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
@group(0) @binding(4) var<storage, read> w: array<${bc.elem}>;     // the chunk, ${format}
${fusionDecls(fu)}
${bc.fns ?? ''}
// lanes: ${SG} rows per rowset, ${ROWSETS} rowsets per workgroup, ${M} row(s) of X${fu.norm || pair ? `, fused: ${fusionName(fu)}` : ''}.
@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let wg = wid.x + wid.y * nwg.x;
  let Mrt = select(step.nTokens, step.nOut, p.useOut == 1u);
  let m0 = wid.z * ${M}u; // first row of X and Y: a prefill runs ceil(M / 4) slices of 4 along z
  ${kpLine(bc.KB)}
  let nB = Kp / ${bc.KB}u;
${indent(L, 2)}
}`;
}

const SPLIT_WG = 64;
const SPLIT_SLICES = SPLIT_WG / OCTET;

function splitWgsl(format: WeightFormat, M: number, subgroups: boolean, fu: MatvecFusion = {}): string {
  const bc = blockCode(format);
  const pair = paired(fu);
  const fused = pair || fu.norm === true;
  const L: string[] = [];
  for (const m of ms(M)) L.push(`var acc0_${m} = vec4<f32>(0.0);`);
  if (fu.norm) L.push(`var ss = vec4<f32>(0.0); // per row of X: sum of squares of this slice's blocks`);
  L.push(`for (var b = slice; b < nB; b += ${SPLIT_SLICES}u) {`);
  const body: string[] = [`let base0 = ${bc.rowBlockBase('rc', 'b')};`, ...bc.head(0, (i) => `w[base0 + ${u32(i)} * ${bc.stride}u]`)];
  const sb: string[] = [];
  // X of sub-block j, read directly: the 8 invocations of a slice read the same addresses (a broadcast).
  const xIdx = (c: number) => `b * ${bc.KB / 4}u + j * 8u + ${c}u`;
  for (const m of ms(M)) {
    for (let c = 0; c < 8; c++) {
      if (fu.norm) {
        sb.push(`let xr${m}_${c} = select(vec4<f32>(0.0), x[(m0 + ${m}u) * p.K4 + ${xIdx(c)}], ${xIdx(c)} < p.K4);`);
        sb.push(`let xb${m}_${c} = xr${m}_${c} * g[min(${xIdx(c)}, p.K4 - 1u)];`);
      } else sb.push(`let xb${m}_${c} = select(vec4<f32>(0.0), x[(m0 + ${m}u) * p.K4 + ${xIdx(c)}], ${xIdx(c)} < p.K4);`);
    }
    if (fu.norm) sb.push(`ss[${m}] += ${tree([...Array(8).keys()].map((c) => `dot(xr${m}_${c}, xr${m}_${c})`))};`);
    if (format === 'q4') sb.push(`let sx${m} = ${[...Array(8).keys()].map((c) => `dot(xb${m}_${c}, vec4<f32>(1.0))`).join(' + ')};`);
  }
  sb.push(...bc.xprep(M));
  sb.push(...bc.body(0, 'j', M, (i) => `w[base0 + ${u32(i)} * ${bc.stride}u]`, 'base0'));
  body.push(...subLoop(bc), ...sb.map((s) => '  ' + s), '}');
  L.push(...body.map((s) => '  ' + s), '}');
  const accVec = `vec4<f32>(${[0, 1, 2, 3].map((m) => (m < M ? `dot(acc0_${m}, vec4<f32>(1.0))` : '0.0')).join(', ')})`;
  const write = [
    `let row = oct * 8u + r;`,
    `if (row < p.N) {`,
    ...ms(M).map((m) => `  if (m0 + ${m}u < Mrt) { let i = (m0 + ${m}u) * p.ldy + p.rowOffset + row; y[i] = select(total[${m}], y[i] + total[${m}], p.accumulate == 1u); }`),
    `}`,
  ];
  let reduce: string;
  if (fused) {
    // The partial sums (and the norm's squares) of slices reduced into invocations 0..7 without an early
    // return (the paired epilogue's barrier needs uniform control flow), then scaled and stored.
    const red = (v: string, s: string) => subgroups
      ? `
  var v${s} = ${v};
  for (var o = 8u; o < min(sgSize, ${SPLIT_WG}u); o <<= 1u) { v${s} += subgroupShuffleXor(v${s}, o); }
  if (sgLane < 8u) { part${s}[lid] = v${s}; }`
      : `
  part${s}[lid] = ${v};`;
    const sum = (s: string) => subgroups
      ? `for (var s = 0u; s < ${SPLIT_WG}u; s += sgSize) { total${s} += part${s}[s + lid]; }`
      : `for (var s = 0u; s < ${SPLIT_SLICES}u; s++) { total${s} += part${s}[s * 8u + lid]; }`;
    const pairLines = pair ? [
      `let isB = r >= 4u;`,
      `let q = oct * 4u + r % 4u;`,
      `if (q < p.N / 2u) {`,
      ...ms(M).map((m) => `  if (m0 + ${m}u < Mrt) { ${pairStore(fu, m, 'q', `select(total[${m}], other[${m}], isB)`, `select(other[${m}], total[${m}], isB)`, '!isB', 'isB')} }`),
      `}`,
    ] : [];
    reduce = `${red(accVec, '')}${fu.norm ? red('ss', 'S') : ''}
  workgroupBarrier();
  var total = vec4<f32>(0.0);${fu.norm ? '\n  var totalS = vec4<f32>(0.0);' : ''}
  if (lid < 8u) {
    ${sum('')}${fu.norm ? `\n    ${sum('S')}\n    total *= inverseSqrt(totalS / f32(p.K4 * 4u) + p.eps);` : ''}
  }${pair ? `
  if (lid < 8u) { tot[lid] = total; }
  workgroupBarrier();
  if (lid < 8u) {
    let other = tot[lid ^ 4u];
${indent(pairLines, 4)}
  }` : `
  if (lid < 8u) {
${indent(write, 4)}
  }`}`;
  } else if (subgroups) {
    // Invocations l and l ^ 8, l ^ 16, l ^ 32 hold the same row: fold the slices inside each subgroup
    // (subgroups of a 1-D workgroup are runs of consecutive local indices, aligned to their size, on every
    // adapter we know; WGSL does not promise it, which is why the shared variant exists and is tested too),
    // then add the subgroups' partials through workgroup memory.
    reduce = `
  var v = ${accVec};
  for (var o = 8u; o < min(sgSize, ${SPLIT_WG}u); o <<= 1u) { v += subgroupShuffleXor(v, o); }
  if (sgSize >= ${SPLIT_WG}u) {
    if (lid < 8u) { let total = v;
${indent(write, 6)}
    }
    return;
  }
  if (sgLane < 8u) { part[lid] = v; }
  workgroupBarrier();
  if (lid < 8u) {
    var total = vec4<f32>(0.0);
    for (var s = 0u; s < ${SPLIT_WG}u; s += sgSize) { total += part[s + lid]; }
${indent(write, 4)}
  }`;
  } else {
    reduce = `
  part[lid] = ${accVec};
  workgroupBarrier();
  if (lid < 8u) {
    var total = vec4<f32>(0.0);
    for (var s = 0u; s < ${SPLIT_SLICES}u; s++) { total += part[s * 8u + lid]; }
${indent(write, 4)}
  }`;
  }
  const f16 = fu.epilogue === 'rope' && fu.kv === 'f16';
  return /* wgsl */ `${subgroups ? 'enable subgroups;\n' : ''}${f16 ? 'enable f16;\n' : ''}${STEP_WGSL}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
@group(0) @binding(4) var<storage, read> w: array<${bc.elem}>;     // the chunk, ${format}
${fusionDecls(fu)}
${bc.fns ?? ''}
var<workgroup> part: array<vec4<f32>, ${SPLIT_WG}>; // partial sums, one vec4 lane per row of X${fu.norm ? `\nvar<workgroup> partS: array<vec4<f32>, ${SPLIT_WG}>; // partial sums of squares of X` : ''}${pair ? '\nvar<workgroup> tot: array<vec4<f32>, 8>; // the 8 rows\' results, for the pairs\' exchange' : ''}

// split: one octet per workgroup, ${SPLIT_SLICES} slices of K per row, ${M} row(s) of X${fused ? `, fused: ${fusionName(fu)}` : ''}.
@compute @workgroup_size(${SPLIT_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${subgroups ? ',\n        @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgLane: u32' : ''}) {
  let oct = wid.x + wid.y * nwg.x;
  let Mrt = select(step.nTokens, step.nOut, p.useOut == 1u);
  let m0 = wid.z * ${M}u; // first row of X and Y: a prefill runs ceil(M / 4) slices of 4 along z
  ${kpLine(bc.KB)}
  let nB = Kp / ${bc.KB}u;
  let r = lid % 8u;
  let slice = lid / 8u;
  let rc = min(${pair ? pairRow(fu, 'oct * 4u + r % 4u', 'r >= 4u') : 'oct * 8u + r'}, p.N - 1u);
${indent(L, 2)}
${reduce}
}`;
}

/** Workgroups of one matvec dispatch over N rows, as (x, y) under the 65535-per-dimension limit. */
export function matvecGrid(variant: MatvecVariant, N: number): [number, number] {
  const groups = Math.max(1, Math.ceil(N / (variant.kind === 'lanes' ? variant.sg * variant.rowsets : OCTET)));
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

const TILE = 64;
const TK4 = 4; // K step of 16 = 4 vec4

export function tiledWgsl(format: WeightFormat): string {
  return /* wgsl */ `
${STEP_WGSL}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
${formatSpec(format).wgsl(4)}

const T: u32 = ${TILE}u;
const TK4: u32 = ${TK4}u;
var<workgroup> xs: array<vec4<f32>, ${TILE * TK4}>; // [m][k4] of the tile
var<workgroup> ws: array<vec4<f32>, ${TILE * TK4}>; // [n][k4] of the tile

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let M = select(step.nTokens, step.nOut, p.useOut == 1u);
  let n0 = wid.x * T;
  let m0 = wid.y * T;
  let tx = lid3.x; // 4 output columns: n0 + tx*4 ..
  let ty = lid3.y; // 4 output rows:    m0 + ty*4 ..
  var acc: array<vec4<f32>, 4>; // acc[i][j]: row m0+ty*4+i, column n0+tx*4+j
  // Each invocation stages one vec4 of X and one of W per K step: row lid / 4, k4 lid % 4.
  let lr = lid / TK4;
  let lk = lid % TK4;
  for (var kb = 0u; kb < p.K4; kb += TK4) {
    let k4 = kb + lk;
    var xv = vec4<f32>(0.0);
    if (m0 + lr < M && k4 < p.K4) { xv = x[(m0 + lr) * p.K4 + k4]; }
    xs[lr * TK4 + lk] = xv;
    var wv = vec4<f32>(0.0);
    if (n0 + lr < p.N && k4 < p.K4) { wv = loadW4(n0 + lr, k4, p.K4); }
    ws[lr * TK4 + lk] = wv;
    workgroupBarrier();
    for (var c = 0u; c < TK4; c++) {
      for (var i = 0u; i < 4u; i++) {
        let a = xs[(ty * 4u + i) * TK4 + c];
        acc[i] += vec4<f32>(dot(a, ws[(tx * 4u + 0u) * TK4 + c]), dot(a, ws[(tx * 4u + 1u) * TK4 + c]),
                            dot(a, ws[(tx * 4u + 2u) * TK4 + c]), dot(a, ws[(tx * 4u + 3u) * TK4 + c]));
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n < p.N) {
        let idx = m * p.ldy + p.rowOffset + n;
        y[idx] = select(acc[i][j], y[idx] + acc[i][j], p.accumulate == 1u);
      }
    }
  }
}`;
}

export const tiledGrid = (N: number, M: number): [number, number] => [Math.ceil(N / TILE), Math.ceil(M / TILE)];

export interface MatmulParams {
  N: number;
  K: number;
  rowOffset: number;
  ldy: number;
  accumulate: boolean;
  useOut: boolean;
  eps?: number; // norm prologue
  rope?: RopeParams; // rope epilogue
}

/** The rope epilogue's shape: the chunk's first head in q | k | v, and the cache's addressing. */
export interface RopeParams {
  headDim: number;
  headBase: number;
  nHeads: number;
  nKvHeads: number;
  blockSize: number;
  maxBlocks: number;
}

export function packMatmulParams(q: MatmulParams): ArrayBuffer {
  if (q.K % 4 !== 0) throw new Error(`matmul: K = ${q.K} must be a multiple of 4`);
  const r = q.rope;
  return packParams([
    [q.N, 'u32'],
    [q.K / 4, 'u32'],
    [q.rowOffset, 'u32'],
    [q.ldy, 'u32'],
    [q.accumulate ? 1 : 0, 'u32'],
    [q.useOut ? 1 : 0, 'u32'],
    [q.eps ?? 0, 'f32'],
    [r ? r.headDim / 2 : 0, 'u32'],
    [r?.headBase ?? 0, 'u32'],
    [r?.nHeads ?? 0, 'u32'],
    [r?.nKvHeads ?? 0, 'u32'],
    [r?.blockSize ?? 0, 'u32'],
    [r?.maxBlocks ?? 0, 'u32'],
  ]);
}

/**
 * How a step of M > 4 rows (prefill) is computed: `tiled`, or `matvec`, the M = 4 matvec kernel run over
 * ceil(M / 4) slices of X along the grid's z (the weights are re-read per slice). On lavapipe, whose
 * barriers and workgroup memory are slow, the latter measured ~9x faster than the tiled kernel at M = 128
 * (bench/kernels.ts), so the lanes design uses it; GPUs use the tiled kernel.
 */
export type PrefillKind = 'tiled' | 'matvec';

/**
 * The pipelines of one weight format on one device: matvec[M - 1] for M = 1..4, and the tiled one (null
 * for a fused matvec, which has no tiled form: a step that needs the tiled kernel uses the unfused dispatches).
 */
export interface MatmulPipelines {
  format: WeightFormat;
  variant: MatvecVariant;
  prefill: PrefillKind;
  fusion: MatvecFusion;
  matvec: GPUComputePipeline[];
  tiled: GPUComputePipeline | null;
}

export interface MatmulChoice {
  variant?: 'lanes' | 'split' | 'split-shared'; // force a matvec design
  prefill?: PrefillKind; // force a prefill path
}

export async function matmulPipelines(ctx: MatvecDevice, format: WeightFormat, choice: MatmulChoice = {}, fusion: MatvecFusion = {}): Promise<MatmulPipelines> {
  const variant = matvecVariant(ctx, format, choice.variant);
  const name = variantName(variant);
  const plain = !fusion.norm && (fusion.epilogue ?? 'none') === 'none';
  const fname = plain ? '' : `-${fusionName(fusion)}`;
  const [tiled, ...matvec] = await Promise.all([
    plain ? getPipeline(ctx.device, `tiled-${format}`, tiledWgsl(format)) : null,
    ...[1, 2, 3, 4].map((M) => getPipeline(ctx.device, `matvec-${format}-${name}-m${M}${fname}`, matvecWgsl(format, M, variant, fusion))),
  ]);
  const prefill = choice.prefill ?? (variant.kind === 'lanes' ? 'matvec' : 'tiled');
  return { format, variant, prefill, fusion, matvec: matvec as GPUComputePipeline[], tiled };
}

/** The recorded dispatches of one weight chunk (made at load); encode picks by M. */
export interface MatmulDispatch {
  matvec: Dispatch[]; // [M - 1]
  matvecGrid: [number, number];
  tiled: Dispatch | null; // null: a fused matvec
  prefill: PrefillKind;
  N: number;
}

/**
 * Records the dispatches of y (+)= x · chunk^T with their bind groups and Params uniform. `extra`: the fused
 * kernels' further bindings from 5 on (the norm weight, then the rope epilogue's; MatvecFusion).
 */
export function recordMatmul(
  device: GPUDevice, pipes: MatmulPipelines, step: GPUBuffer, q: MatmulParams, x: GPUBuffer, y: GPUBuffer, w: GPUBuffer, label: string,
  extra: GPUBuffer[] = [],
): MatmulDispatch {
  if (extra.length !== fusionStorageBuffers(pipes.fusion) - 3) throw new Error(`${label}: ${fusionName(pipes.fusion)} matvec binds ${fusionStorageBuffers(pipes.fusion) - 3} extra buffers, got ${extra.length}`);
  const params = uniformBuffer(device, `${label}.params`, packMatmulParams(q));
  const bufs = [step, params, x, y, w, ...extra];
  const d = (pipeline: GPUComputePipeline, l: string): Dispatch => ({ pipeline, label: l, bindGroup: bindGroup(device, pipeline, l, bufs) });
  return {
    N: q.N,
    matvec: pipes.matvec.map((p, i) => d(p, `${label}.matvec${i + 1}`)),
    matvecGrid: matvecGrid(pipes.variant, q.N),
    tiled: pipes.tiled ? d(pipes.tiled, `${label}.tiled`) : null,
    prefill: pipes.prefill,
  };
}

/** Whether a step of M rows runs `d` as a matvec (the only form a fused matvec has). */
export const usesMatvec = (d: Pick<MatmulDispatch, 'prefill'>, M: number): boolean => M <= MATVEC_MAX_M || d.prefill === 'matvec';

export function encodeMatmul(pass: GPUComputePassEncoder, d: MatmulDispatch, M: number): void {
  if (M <= MATVEC_MAX_M) encodeDispatch(pass, d.matvec[M - 1]!, d.matvecGrid[0], d.matvecGrid[1]);
  else if (d.prefill === 'matvec') encodeDispatch(pass, d.matvec[PREFILL_SLICE - 1]!, d.matvecGrid[0], d.matvecGrid[1], Math.ceil(M / PREFILL_SLICE));
  else if (d.tiled) encodeDispatch(pass, d.tiled, ...tiledGrid(d.N, M));
  else throw new Error('a fused matvec cannot run a tiled prefill step');
}

/** CPU reference: y (M, N) = x (M, K) · w (N, K)^T, accumulated in f64. */
export function matmulRef(x: Float32Array, w: Float32Array, M: number, N: number, K: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s;
    }
  }
  return y;
}

/** CPU reference of the norm prologue: y (M, N) = rmsnorm(x, g) (M, K) · w (N, K)^T, in f64. */
export function normMatmulRef(x: Float32Array, g: Float32Array, eps: number, w: Float32Array, M: number, N: number, K: number): Float32Array {
  return matmulRef(rmsnormRef(x, g, M, K, eps), w, M, N, K);
}

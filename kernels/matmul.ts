// Matrix products with the weights: Y (M, ldy)[:, rowOffset .. rowOffset+N] (+)= X (M, K) · W (N, K)^T.
// X and Y are f32 activations; W is one row-chunk of a weight matrix in a WeightFormat (a matrix bigger than
// maxStorageBufferBindingSize is split by rows into chunks, one dispatch each, writing its columns of Y at
// rowOffset). M is Step.nTokens (or Step.nOut for the logits head). With accumulate = 1 the result is added
// to Y (the residual connection, fused).
//
// Bindings (all kernels): 0 Step, 1 Params, 2 x (M, K) f32 as vec4, 3 y (M, ldy) f32, 4 w (the chunk).
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
import { OCTET } from './dtype-formats.ts';

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
  const name = `${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.device ?? ''} ${info?.description ?? ''}`;
  const cpu = ext?.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|softpipe/i.test(name);
  const fixedSg = ctx.hasSubgroups && sgMin === sgMax && sgMin % OCTET === 0 && sgMin > 0;
  if (force === 'lanes' || (force === undefined && cpu && fixedSg)) {
    if (!fixedSg) throw new Error('the lanes matvec needs subgroups of one fixed size, a multiple of 8');
    return { kind: 'lanes', sg: sgMin, rowsets: LANES_ROWSETS[format] ?? 1 };
  }
  return { kind: 'split', subgroups: force !== 'split-shared' && ctx.hasSubgroups && sgMin >= OCTET };
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

/** WGSL of the M-row matrix-vector kernel of `format` in `variant`. */
export function matvecWgsl(format: WeightFormat, M: number, variant: MatvecVariant): string {
  if (M < 1 || M > MATVEC_MAX_M) throw new Error(`matvec: M = ${M} outside 1..${MATVEC_MAX_M}`);
  return variant.kind === 'lanes' ? lanesWgsl(format, M, variant.sg, variant.rowsets) : splitWgsl(format, M, variant.subgroups);
}

const indent = (lines: string[], n: number): string => lines.map((l) => ' '.repeat(n) + l).join('\n');

/** Kp: K padded to whole blocks (the octet formats' row length in the layout). */
const kpLine = (KB: number): string => `let Kp = (p.K4 * 4u + ${KB - 1}u) / ${KB}u * ${KB}u;`;

function lanesWgsl(format: WeightFormat, M: number, SG: number, ROWSETS: number): string {
  const bc = blockCode(format);
  const rs = [...Array(ROWSETS).keys()];
  const L: string[] = [];
  // Rows of this lane: (wg * ROWSETS + r) * SG + lane; loads use the row clamped into the chunk (the
  // clamped lanes compute a duplicate and do not write), so every lane stays active for the broadcasts.
  for (const r of rs) {
    L.push(`let row${r} = (wg * ${ROWSETS}u + ${r}u) * ${SG}u + lane;`);
    L.push(`let rc${r} = min(row${r}, p.N - 1u);`);
  }
  for (const r of rs) for (const m of ms(M)) L.push(`var acc${r}_${m} = vec4<f32>(0.0);`);
  L.push(`for (var b = 0u; b < nB; b++) {`);
  const body: string[] = [];
  for (const r of rs) body.push(`let base${r} = ${bc.rowBlockBase(`rc${r}`, 'b')};`);
  for (const r of rs) body.push(...bc.head(r, (i) => `w[base${r} + ${u32(i)} * ${bc.stride}u]`));
  // Sub-blocks of 32 k in a loop (unrolling them made LLVM take seconds per pipeline on lavapipe).
  const sb: string[] = [];
  // X of sub-block j: lane l loads vec4 l % 8 of its 32 values (zero past K), then all 8 are broadcast.
  for (const m of ms(M)) {
    sb.push(`let xi${m} = b * ${bc.KB / 4}u + j * 8u + lane % 8u;`);
    sb.push(`let xv${m} = select(vec4<f32>(0.0), x[(m0 + ${m}u) * p.K4 + xi${m}], xi${m} < p.K4);`);
    // subgroupShuffle with a constant lane measured 2x cheaper than subgroupBroadcast on lavapipe.
    for (let c = 0; c < 8; c++) sb.push(`let xb${m}_${c} = subgroupShuffle(xv${m}, ${c}u);`);
    if (format === 'q4') sb.push(`let sx${m} = subgroupAdd(dot(xv${m}, vec4<f32>(select(1.0, 0.0, lane >= 8u))));`);
  }
  sb.push(...bc.xprep(M));
  for (const r of rs) sb.push('{', ...bc.body(r, 'j', M, (i) => `w[base${r} + ${u32(i)} * ${bc.stride}u]`, `base${r}`).map((s) => '  ' + s), '}');
  body.push(...subLoop(bc), ...sb.map((s) => '  ' + s), '}');
  L.push(...body.map((s) => '  ' + s), '}');
  for (const r of rs) {
    L.push(`if (row${r} < p.N) {`);
    for (const m of ms(M)) {
      L.push(`  if (m0 + ${m}u < Mrt) { let i = (m0 + ${m}u) * p.ldy + p.rowOffset + row${r}; let t = dot(acc${r}_${m}, vec4<f32>(1.0)); y[i] = select(t, y[i] + t, p.accumulate == 1u); }`);
    }
    L.push(`}`);
  }
  return /* wgsl */ `enable subgroups;
${STEP_WGSL}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
@group(0) @binding(4) var<storage, read> w: array<${bc.elem}>;     // the chunk, ${format}
${bc.fns ?? ''}
// lanes: ${SG} rows per rowset, ${ROWSETS} rowsets per workgroup, ${M} row(s) of X.
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

function splitWgsl(format: WeightFormat, M: number, subgroups: boolean): string {
  const bc = blockCode(format);
  const L: string[] = [];
  for (const m of ms(M)) L.push(`var acc0_${m} = vec4<f32>(0.0);`);
  L.push(`for (var b = slice; b < nB; b += ${SPLIT_SLICES}u) {`);
  const body: string[] = [`let base0 = ${bc.rowBlockBase('rc', 'b')};`, ...bc.head(0, (i) => `w[base0 + ${u32(i)} * ${bc.stride}u]`)];
  const sb: string[] = [];
  // X of sub-block j, read directly: the 8 invocations of a slice read the same addresses (a broadcast).
  for (const m of ms(M)) {
    for (let c = 0; c < 8; c++) {
      sb.push(`let xb${m}_${c} = select(vec4<f32>(0.0), x[(m0 + ${m}u) * p.K4 + b * ${bc.KB / 4}u + j * 8u + ${c}u], b * ${bc.KB / 4}u + j * 8u + ${c}u < p.K4);`);
    }
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
  if (subgroups) {
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
  return /* wgsl */ `${subgroups ? 'enable subgroups;\n' : ''}${STEP_WGSL}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // (M, K)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // (M, ldy)
@group(0) @binding(4) var<storage, read> w: array<${bc.elem}>;     // the chunk, ${format}
${bc.fns ?? ''}
var<workgroup> part: array<vec4<f32>, ${SPLIT_WG}>; // partial sums, one vec4 lane per row of X

// split: one octet per workgroup, ${SPLIT_SLICES} slices of K per row, ${M} row(s) of X.
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
  let rc = min(oct * 8u + r, p.N - 1u);
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
}

export function packMatmulParams(q: MatmulParams): ArrayBuffer {
  if (q.K % 4 !== 0) throw new Error(`matmul: K = ${q.K} must be a multiple of 4`);
  return packParams([
    [q.N, 'u32'],
    [q.K / 4, 'u32'],
    [q.rowOffset, 'u32'],
    [q.ldy, 'u32'],
    [q.accumulate ? 1 : 0, 'u32'],
    [q.useOut ? 1 : 0, 'u32'],
  ]);
}

/**
 * How a step of M > 4 rows (prefill) is computed: `tiled`, or `matvec`, the M = 4 matvec kernel run over
 * ceil(M / 4) slices of X along the grid's z (the weights are re-read per slice). On lavapipe, whose
 * barriers and workgroup memory are slow, the latter measured ~9x faster than the tiled kernel at M = 128
 * (bench/kernels.ts), so the lanes design uses it; GPUs use the tiled kernel.
 */
export type PrefillKind = 'tiled' | 'matvec';

/** The pipelines of one weight format on one device: matvec[M - 1] for M = 1..4, and the tiled one. */
export interface MatmulPipelines {
  format: WeightFormat;
  variant: MatvecVariant;
  prefill: PrefillKind;
  matvec: GPUComputePipeline[];
  tiled: GPUComputePipeline;
}

export interface MatmulChoice {
  variant?: 'lanes' | 'split' | 'split-shared'; // force a matvec design
  prefill?: PrefillKind; // force a prefill path
}

export async function matmulPipelines(ctx: MatvecDevice, format: WeightFormat, choice: MatmulChoice = {}): Promise<MatmulPipelines> {
  const variant = matvecVariant(ctx, format, choice.variant);
  const name = variantName(variant);
  const [tiled, ...matvec] = await Promise.all([
    getPipeline(ctx.device, `tiled-${format}`, tiledWgsl(format)),
    ...[1, 2, 3, 4].map((M) => getPipeline(ctx.device, `matvec-${format}-${name}-m${M}`, matvecWgsl(format, M, variant))),
  ]);
  const prefill = choice.prefill ?? (variant.kind === 'lanes' ? 'matvec' : 'tiled');
  return { format, variant, prefill, matvec, tiled: tiled! };
}

/** The recorded dispatches of one weight chunk (made at load); encode picks by M. */
export interface MatmulDispatch {
  matvec: Dispatch[]; // [M - 1]
  matvecGrid: [number, number];
  tiled: Dispatch;
  prefill: PrefillKind;
  N: number;
}

/** Records the dispatches of y (+)= x · chunk^T with their bind groups and Params uniform. */
export function recordMatmul(
  device: GPUDevice, pipes: MatmulPipelines, step: GPUBuffer, q: MatmulParams, x: GPUBuffer, y: GPUBuffer, w: GPUBuffer, label: string,
): MatmulDispatch {
  const params = uniformBuffer(device, `${label}.params`, packMatmulParams(q));
  const bufs = [step, params, x, y, w];
  const d = (pipeline: GPUComputePipeline, l: string): Dispatch => ({ pipeline, label: l, bindGroup: bindGroup(device, pipeline, l, bufs) });
  return {
    N: q.N,
    matvec: pipes.matvec.map((p, i) => d(p, `${label}.matvec${i + 1}`)),
    matvecGrid: matvecGrid(pipes.variant, q.N),
    tiled: d(pipes.tiled, `${label}.tiled`),
    prefill: pipes.prefill,
  };
}

export function encodeMatmul(pass: GPUComputePassEncoder, d: MatmulDispatch, M: number): void {
  if (M <= MATVEC_MAX_M) encodeDispatch(pass, d.matvec[M - 1]!, d.matvecGrid[0], d.matvecGrid[1]);
  else if (d.prefill === 'matvec') encodeDispatch(pass, d.matvec[PREFILL_SLICE - 1]!, d.matvecGrid[0], d.matvecGrid[1], Math.ceil(M / PREFILL_SLICE));
  else encodeDispatch(pass, d.tiled, ...tiledGrid(d.N, M));
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

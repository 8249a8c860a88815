// Memory planner for pipeline sharding: before anything is allocated, decide which consecutive layers go on
// which device and check that every device's share, and every single buffer, fits. Pure arithmetic over the
// config: it allocates nothing and needs no GPU, so `llama2-webgpu plan` runs anywhere and the runtime can
// call it before loading.
//
// What a device holds (bytes are exactly what the runtime allocates, see the functions below):
//   device 0        the token embedding (vocab, dim)
//   every device    its layers' weights and its layers' KV cache, plus its scratch: the RunState of
//                   runtime/forward.ts (sized by the prefill chunk, maxOut, dim, hiddenDim, vocab, context)
//                   and the read-back staging buffers of runtime/model.ts
//   the last device the final norm and the output head (vocab, dim); with tied embeddings the head is the
//                   embedding matrix, uploaded again there unless the model is on one device
// Every device holds at least one layer (LlamaModel allows at most one device per layer).
//
// Padding: kernels/common.ts storageBuffer rounds each buffer up to a multiple of 16 bytes (at least 16), and
// weights.ts splits each matrix by rows into chunks of rowsPerChunk rows (one binding each), so a matrix costs
// the sum of its padded chunks. Not counted: the per-dispatch Params uniforms (16-48 bytes each, about 25 per
// layer: under 2 KiB a layer), pipelines, and the driver's own overhead; leave some headroom for those.

import type { LlamaConfig } from '../checkpoint/config.ts';
import { rowsPerChunk } from './weights.ts';
import { matrixFormats } from '../checkpoint/tensor-provider.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';
import { FORMATS, formatSpec, storedFormat, type Dtype, type WeightFormat } from '../kernels/weight-formats.ts';
import { kvBytesPerElement, type KvDtype } from '../kernels/kv-cache.ts';
import { RUNTIME_DEFAULTS } from './defaults.ts';
import { paddedBytes, runStateSizes, scratchBytes as deviceScratchBytes, type StepShape } from './buffers.ts';

/** What the planner needs to know about one device. Bytes. */
export interface DeviceBudget {
  memoryBytes: number; // memory the model may use on this device
  maxBindingBytes: number; // maxStorageBufferBindingSize
  maxBufferBytes: number; // maxBufferSize
}

export interface PlanInput {
  config: LlamaConfig;
  dtype: Dtype; // 'native': each matrix in its stored format, from `formats`
  formats?: ReadonlyMap<string, WeightFormat>; // a model's stored formats (TensorProvider.nativeFormats), for 'native'
  context: number; // positions per sequence
  devices: DeviceBudget[];
  kvBudgetBytes?: number; // KV cache of the whole batch (all layers, K and V); default: nSlots full contexts
  prefillChunk?: number; // token rows per step; default RUNTIME_DEFAULTS.prefillChunk
  maxOut?: number; // logits rows per step; default RUNTIME_DEFAULTS.maxOut
  nSlots?: number; // sequences holding KV at once; default RUNTIME_DEFAULTS.nSlots
  blockSize?: number; // KV positions per block; default RUNTIME_DEFAULTS.blockSize
  kvDtype?: KvDtype; // KV cache elements; default f16 (the runtime's default where the adapter has shader-f16)
}

export interface DevicePlan {
  layers: [number, number]; // [first, last], inclusive
  embedding: boolean;
  head: boolean; // final norm + output head
  weightBytes: number;
  kvBytes: number;
  scratchBytes: number;
  bytes: number; // weightBytes + kvBytes + scratchBytes
  memoryBytes: number;
}

export interface Plan {
  fits: boolean;
  devices: DevicePlan[];
  totalBytes: number;
  /** Bytes by which the devices of this plan exceed their memory, summed (0 when they do not). */
  shortfallBytes: number;
  /** Per-buffer limits this plan breaks (each makes it not fit, whatever the memory). */
  violations: string[];
  /** Changes that were re-planned and found to fit, e.g. "fits with --dtype q4". */
  suggestions: string[];
  message: string;
  kv: KvLayout;
}

const F32 = 4; // bytes
const DEFAULTS = RUNTIME_DEFAULTS;

/** The size of a storage buffer of `bytes`, as kernels/common.ts storageBuffer allocates it. */

type Limits = Pick<DeviceBudget, 'maxBindingBytes' | 'maxBufferBytes'>;

/** The largest single buffer a device can bind, and which limit sets it. */
function bindCap(d: Limits): { bytes: number; limit: string } {
  return d.maxBindingBytes <= d.maxBufferBytes
    ? { bytes: d.maxBindingBytes, limit: 'storage binding limit (maxStorageBufferBindingSize)' }
    : { bytes: d.maxBufferBytes, limit: 'buffer size limit (maxBufferSize)' };
}

/** GPU bytes of a (rows, cols) matrix in `dtype`, split into row chunks as weights.ts loadWeights does. */
export function matrixBytes(rows: number, cols: number, dtype: WeightFormat, limits: Limits): number {
  const spec = formatSpec(storedFormat(dtype, cols)); // q8/q4 store a matrix whose K they cannot hold as f16
  const rowBytes = spec.rowBytes(cols);
  // Rows that do not fit a binding are a violation (checked separately); count them as minimal chunks.
  const per = rowBytes * spec.rowAlign <= bindCap(limits).bytes ? rowsPerChunk(limits, rowBytes, spec.rowAlign) : spec.rowAlign;
  const full = Math.floor(rows / per);
  const rest = rows - full * per;
  return full * paddedBytes(spec.bufferBytes(per, cols)) + (rest > 0 ? paddedBytes(spec.bufferBytes(rest, cols)) : 0);
}

export interface WeightBytes {
  embedding: number; // tok_embeddings (vocab, dim)
  layer: number; // the largest layer: wq wk wv wo w1 w2 w3 + attention_norm, ffn_norm (dim) f32
  layers: number[]; // each layer (they differ with dtype 'native': GGUF mixes give some layers more bits)
  norm: number; // final norm (dim) f32
  output: number; // output (vocab, dim); with tied embeddings the embedding's size
}

/** GPU bytes of the weights with each matrix in the format loadWeights gives it (checkpoint/tensor-provider.ts matrixFormats). */
export function weightBytes(c: LlamaConfig, dtype: Dtype, limits: Limits, formats?: ReadonlyMap<string, WeightFormat>): WeightBytes {
  const fmt = matrixFormats(c, dtype, formats);
  const shapes = expectedTensors(c);
  const m = (name: string): number => {
    const [rows, cols] = shapes.get(name)! as [number, number];
    return matrixBytes(rows, cols, fmt.get(name)!, limits);
  };
  const norm = paddedBytes(c.dim * F32);
  const layers = Array.from({ length: c.nLayers }, (_, i) =>
    ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'].reduce((a, t) => a + m(`layers.${i}.${t}`), 2 * norm));
  const embedding = m('tok_embeddings');
  return { embedding, layer: Math.max(...layers), layers, norm, output: c.tieWordEmbeddings ? embedding : m('output') };
}

export interface KvLayout {
  kvDtype: KvDtype;
  blockSize: number; // positions per block
  nBlocks: number; // blocks in the pool (shared by the batch's sequences)
  positions: number; // nBlocks * blockSize
  bytesPerTokenPerLayer: number; // K and V of one position: 2 * nKvHeads * headDim * (2 for f16, 4 for f32)
  bufferBytes: number; // one layer's K (or V) buffer: (nBlocks * blockSize, nKvHeads * headDim) f16 or f32
  layerBytes: number; // K + V of one layer
  totalBytes: number; // every layer
}

/** The KV pool of runtime/model.ts: f16 (default) or f32, in blocks of blockSize positions, one K and one V buffer per layer. */
export function kvLayout(c: LlamaConfig, context: number, kvBudgetBytes?: number, nSlots: number = DEFAULTS.nSlots, blockSize: number = DEFAULTS.blockSize,
  kvDtype: KvDtype = 'f16'): KvLayout {
  const kvDim = c.nKvHeads * c.headDim;
  const E = kvBytesPerElement(kvDtype);
  const blockBytes = 2 * c.nLayers * blockSize * kvDim * E; // one block, all layers, K and V
  let nBlocks: number;
  if (kvBudgetBytes === undefined) nBlocks = Math.ceil(context / blockSize) * nSlots;
  else {
    nBlocks = Math.floor(kvBudgetBytes / blockBytes);
    if (nBlocks < 1) throw new RangeError(`KV budget of ${kvBudgetBytes} bytes is less than one block of ${blockSize} positions (${blockBytes} bytes)`);
  }
  const bufferBytes = paddedBytes(nBlocks * blockSize * kvDim * E);
  return {
    kvDtype, blockSize, nBlocks, positions: nBlocks * blockSize, bytesPerTokenPerLayer: 2 * kvDim * E,
    bufferBytes, layerBytes: 2 * bufferBytes, totalBytes: 2 * c.nLayers * bufferBytes,
  };
}

/** The step shape a plan's options give (runtime/buffers.ts), for a context of `context` positions. */
function stepShape(context: number, opts: { prefillChunk?: number; maxOut?: number; nSlots?: number; blockSize?: number }): StepShape {
  const blockSize = opts.blockSize ?? DEFAULTS.blockSize;
  return {
    maxRows: opts.prefillChunk ?? DEFAULTS.prefillChunk, maxOut: opts.maxOut ?? DEFAULTS.maxOut, nSlots: opts.nSlots ?? DEFAULTS.nSlots,
    blockSize, maxBlocksPerSeq: Math.ceil(context / blockSize),
  };
}

/**
 * Scratch of one device: forward.ts's run state plus model.ts's read-back staging, as runtime/buffers.ts
 * describes both (the head holds logits; a single device also the resident decode loop's token ring).
 */
export function scratchBytes(c: LlamaConfig, context: number, stage: { head: boolean; devices: number },
  opts: { prefillChunk?: number; maxOut?: number; nSlots?: number; blockSize?: number } = {}): number {
  return deviceScratchBytes(c, stepShape(context, opts), stage);
}

/**
 * Consecutive layer counts per device (each >= 1) that minimise the largest load / memory ratio. Device i
 * costs fixed[i] + k * perLayer[i] for k layers. The optimum ratio is one of the values (fixed + k per) / mem;
 * for a given ratio, filling devices in order with as many layers as fit is feasible whenever any split is,
 * so a binary search over the sorted candidates finds it.
 */
function splitLayers(nLayers: number, fixed: number[], perLayer: number[], mem: number[]): number[] {
  const N = fixed.length;
  const cands: number[] = [];
  for (let i = 0; i < N; i++) for (let k = 1; k <= nLayers; k++) cands.push((fixed[i]! + k * perLayer[i]!) / mem[i]!);
  cands.sort((a, b) => a - b);
  const maxLayers = (r: number): number[] | null => {
    const ks: number[] = [];
    for (let i = 0; i < N; i++) {
      const room = r * mem[i]! * (1 + 1e-12) - fixed[i]!; // tolerance: r was computed by a division
      const k = Math.min(nLayers, Math.floor(room / perLayer[i]!));
      if (k < 1) return null;
      ks.push(k);
    }
    return ks.reduce((a, b) => a + b, 0) >= nLayers ? ks : null;
  };
  let lo = 0;
  let hi = cands.length - 1; // every device holding every layer: always feasible
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (maxLayers(cands[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  const ks = maxLayers(cands[lo]!)!;
  const out: number[] = [];
  let left = nLayers;
  for (let i = 0; i < N; i++) {
    const k = Math.min(ks[i]!, left - (N - 1 - i)); // leave one layer for each later device
    out.push(k);
    left -= k;
  }
  return out;
}

function validate(input: PlanInput): void {
  const { config: c, context, devices } = input;
  const posInt = (name: string, v: number | undefined): void => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  };
  if (!Number.isInteger(context) || context < 1 || context > c.maxSeqLen) {
    throw new RangeError(`context ${context} must be between 1 and the model's max_position_embeddings (${c.maxSeqLen})`);
  }
  posInt('prefillChunk', input.prefillChunk);
  posInt('maxOut', input.maxOut);
  posInt('nSlots', input.nSlots);
  posInt('blockSize', input.blockSize);
  if (devices.length < 1) throw new RangeError('no devices to plan for');
  if (devices.length > c.nLayers) throw new RangeError(`${devices.length} devices for ${c.nLayers} layers: at most one device per layer`);
  devices.forEach((d, i) => {
    for (const k of ['memoryBytes', 'maxBindingBytes', 'maxBufferBytes'] as const) {
      if (!Number.isFinite(d[k]) || d[k] <= 0) throw new RangeError(`device ${i}: ${k} must be a positive number of bytes, got ${d[k]}`);
    }
  });
  if (input.dtype === 'native') {
    if (!input.formats) throw new RangeError('dtype "native" needs the model\'s stored formats (PlanInput.formats)');
  } else formatSpec(input.dtype); // throws for an unknown format
}

/** The split and its checks, without suggestions. */
function planCore(input: PlanInput): Omit<Plan, 'suggestions' | 'message'> {
  validate(input);
  const { config: c, dtype, context, devices } = input;
  const opts = { prefillChunk: input.prefillChunk, maxOut: input.maxOut, nSlots: input.nSlots, blockSize: input.blockSize };
  const kv = kvLayout(c, context, input.kvBudgetBytes, input.nSlots, input.blockSize, input.kvDtype);
  const N = devices.length;
  const wb = devices.map((d) => weightBytes(c, dtype, d, input.formats));
  const headWeights = (i: number): number => wb[i]!.norm + (c.tieWordEmbeddings && N === 1 ? 0 : wb[i]!.output);
  const fixedWeights = devices.map((_, i) => (i === 0 ? wb[i]!.embedding : 0) + (i === N - 1 ? headWeights(i) : 0));
  const scratch = devices.map((_, i) => scratchBytes(c, context, { head: i === N - 1, devices: N }, opts));
  // Layers of a GGUF mix differ a little in size: the split is chosen for the largest, the bytes are exact.
  const counts = splitLayers(c.nLayers, fixedWeights.map((f, i) => f + scratch[i]!), wb.map((w) => w.layer + kv.layerBytes), devices.map((d) => d.memoryBytes));

  let first = 0;
  const plans: DevicePlan[] = counts.map((k, i) => {
    const weightBytes = fixedWeights[i]! + wb[i]!.layers.slice(first, first + k).reduce((a, b) => a + b, 0);
    const kvBytes = k * kv.layerBytes;
    const layers: [number, number] = [first, first + k - 1];
    first += k;
    return {
      layers, embedding: i === 0, head: i === N - 1, weightBytes, kvBytes, scratchBytes: scratch[i]!,
      bytes: weightBytes + kvBytes + scratch[i]!, memoryBytes: devices[i]!.memoryBytes,
    };
  });

  // Per-buffer limits, merged across devices that break them the same way.
  const broken = new Map<string, number[]>();
  const breaks = (what: string, bytes: number, i: number): void => {
    const cap = bindCap(devices[i]!);
    if (bytes <= cap.bytes) return;
    const key = `${what} is ${bytes} bytes, over the ${cap.limit} of ${cap.bytes} bytes`;
    broken.set(key, [...(broken.get(key) ?? []), i]);
  };
  // One row of each (format, columns) in use: a chunk holds at least one row (octet formats: 8).
  const rowKinds = new Map<string, number>();
  const shapes = expectedTensors(c);
  for (const [name, f] of matrixFormats(c, dtype, input.formats)) {
    const cols = shapes.get(name)![1]!;
    const spec = formatSpec(f);
    const what = cols === c.dim ? 'wq, wk, wv, w1, w3, embedding, output' : cols === c.hiddenDim ? 'w2' : 'wo';
    rowKinds.set(`one ${f} weight row of ${cols} columns (${what})`, spec.rowBytes(cols));
  }
  devices.forEach((_, i) => {
    for (const [what, bytes] of rowKinds) breaks(what, bytes, i);
    breaks(`one layer's K cache (and its V cache): ${kv.positions} positions x ${c.nKvHeads * c.headDim} x ${kv.kvDtype},`, kv.bufferBytes, i);
    for (const [name, bytes] of Object.entries(runStateSizes(c, stepShape(context, opts)))) breaks(`scratch buffer ${name}`, paddedBytes(bytes), i);
  });
  const violations = [...broken].map(([what, ds]) => `${N > 1 ? `device${ds.length > 1 ? 's' : ''} ${ds.join(', ')}: ` : ''}${what}`);

  const totalBytes = plans.reduce((a, d) => a + d.bytes, 0);
  const shortfallBytes = plans.reduce((a, d) => a + Math.max(0, d.bytes - d.memoryBytes), 0);
  return { fits: shortfallBytes === 0 && violations.length === 0, devices: plans, totalBytes, shortfallBytes, violations, kv };
}

const DTYPE_ORDER = ['f32', 'f16', 'q8', 'q4'] as const; // largest to smallest

/** The smallest device count in (have, nLayers] that fits with copies of the largest device added, or null. */
function devicesNeeded(input: PlanInput): number | null {
  const big = input.devices.reduce((a, d) => (d.memoryBytes > a.memoryBytes ? d : a));
  for (let n = input.devices.length + 1; n <= input.config.nLayers; n++) {
    const devices = [...input.devices, ...Array.from({ length: n - input.devices.length }, () => big)];
    if (planCore({ ...input, devices }).fits) return n;
  }
  return null;
}

/** The largest value in [lo, hi] for which fits(v) holds (fits is monotone: true up to some value), or null. */
function largestFitting(lo: number, hi: number, fits: (v: number) => boolean): number | null {
  if (hi < lo || !fits(lo)) return null;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Single changes (and dtype + device count) that make `input` fit, each found by planning it. */
function suggest(input: PlanInput): string[] {
  const out: string[] = [];
  const N = input.devices.length;
  const same = input.devices.every((d) => d.memoryBytes === input.devices[0]!.memoryBytes);
  const big = Math.max(...input.devices.map((d) => d.memoryBytes));
  const more = (n: number): string => (same ? `${n} devices of ${formatGiB(big)} (--devices ${n})` : `${n} devices (adding ${n - N} of ${formatGiB(big)})`);

  const n = devicesNeeded(input);
  if (n !== null) out.push(`fits with ${more(n)}`);

  const fitsWith = (patch: Partial<PlanInput>): boolean => planCore({ ...input, ...patch }).fits;
  if (input.kvBudgetBytes === undefined) {
    const ctx = largestFitting(1, input.context - 1, (context) => fitsWith({ context }));
    // A round number for the flag: a multiple of 256 positions where that still leaves some.
    if (ctx !== null) out.push(`fits with --context ${ctx >= 256 ? ctx - (ctx % 256) : ctx}`);
  } else {
    const kv = kvLayout(input.config, input.context, input.kvBudgetBytes, input.nSlots, input.blockSize, input.kvDtype);
    const blockBytes = kv.totalBytes / kv.nBlocks;
    const blocks = largestFitting(1, kv.nBlocks - 1, (b) => fitsWith({ kvBudgetBytes: b * blockBytes }));
    if (blocks !== null) out.push(`fits with --kv-budget ${formatSizeFlag(blocks * blockBytes)} (${blocks * kv.blockSize} positions)`);
  }

  const at = DTYPE_ORDER.indexOf(input.dtype as (typeof DTYPE_ORDER)[number]);
  const smaller = (at < 0 ? [] : DTYPE_ORDER.slice(at + 1)).filter((d): d is WeightFormat & (typeof DTYPE_ORDER)[number] => d in FORMATS);
  for (const dtype of smaller) {
    if (fitsWith({ dtype })) {
      out.push(`fits with --dtype ${dtype}`);
      break;
    }
    const m = devicesNeeded({ ...input, dtype });
    if (m !== null) out.push(`fits with --dtype ${dtype} on ${more(m)}`);
  }
  return out;
}

/** Plans `input` (see the header); never allocates. Throws RangeError on invalid input. */
export function planModel(input: PlanInput): Plan {
  const core = planCore(input);
  const suggestions = core.fits ? [] : suggest(input);
  return { ...core, suggestions, message: planMessage(core, suggestions) };
}

function planMessage(p: Omit<Plan, 'suggestions' | 'message'>, suggestions: string[]): string {
  const N = p.devices.length;
  const loads = p.devices.map((d, i) => `device ${i}: layers ${d.layers[0]}-${d.layers[1]}${d.embedding ? ' + embedding' : ''}${d.head ? ' + head' : ''}, ` +
    `${formatGiB(d.bytes)} of ${formatGiB(d.memoryBytes)} (${percent(d.bytes, d.memoryBytes)})`).join('; ');
  const sum = (f: (d: DevicePlan) => number): number => p.devices.reduce((a, d) => a + f(d), 0);
  const needs = `${formatGiB(p.totalBytes)} (weights ${formatGiB(sum((d) => d.weightBytes))}, KV cache ${formatGiB(sum((d) => d.kvBytes))}, ` +
    `scratch ${formatGiB(sum((d) => d.scratchBytes))}) on ${N} device${N > 1 ? 's' : ''}`;
  if (p.fits) return `fits: ${needs}. ${loads}.`;
  const parts = [`does not fit: needs ${needs}`];
  if (p.shortfallBytes > 0) parts.push(`${formatGiB(p.shortfallBytes)} more than the devices hold (${loads})`);
  if (p.violations.length) parts.push(`a buffer is over a per-buffer limit: ${p.violations.join('; ')}`);
  const tail = suggestions.length ? `Would fit: ${suggestions.join('; ')}.` : 'No single change found that fits (tried more devices, a smaller context or KV budget, smaller dtypes).';
  return `${parts.join('; ')}. ${tail}`;
}

export const formatGiB = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const percent = (a: number, b: number): string => `${((100 * a) / b).toFixed(1)}%`;

/** A size that parseSize reads back exactly: whole MiB or GiB where it is one, else bytes. */
export function formatSizeFlag(bytes: number): string {
  if (bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30}GiB`;
  if (bytes % 2 ** 20 === 0) return `${bytes / 2 ** 20}MiB`;
  return String(bytes);
}

const UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** "24GiB" (2^30), "48GB" (10^9), "512MiB", "1.5GiB", "1000000" or a number: bytes (rounded down). */
export function parseSize(size: string | number): number {
  if (typeof size === 'number') {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`invalid size ${size}: expected a whole number of bytes`);
    return size;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(size);
  const unit = m ? (m[2]!.toLowerCase() || 'b') : '';
  if (!m || !(unit in UNITS)) throw new RangeError(`invalid size "${size}" (expected e.g. 24GiB, 48GB, 512MiB or a number of bytes)`);
  if (unit === 'b' && m[1]!.includes('.')) throw new RangeError(`invalid size "${size}": a number of bytes must be whole`);
  const bytes = Math.floor(Number(m[1]) * UNITS[unit]!);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`invalid size "${size}": too large`);
  return bytes;
}

// A loaded Llama-2 model on one or more WebGPU devices: weights, forward pass and KV pool, offering forward
// steps over token rows (the StepModel of scheduler.ts). Generation is the scheduler's loop over those steps;
// generate() and logitsAll() here are that loop, for a model used on its own.

import { createGpuContext, type GpuContext } from './device.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { loadWeights, destroyWeights, type GpuWeights, type LoadProgress } from './weights.ts';
import type { TensorProvider } from '../checkpoint/tensor-provider.ts';
import { stagingSizes } from './buffers.ts';
import { isCpuAdapter } from '../kernels/matmul.ts';
import { createForward, destroyForward, encodeForward, type Forward } from './forward.ts';
import { KvPool } from './kv-pool.ts';
import { planModel } from './planner.ts';
import { packParams, storageBuffer } from '../kernels/common.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import { kvBytesPerElement, type KvDtype } from '../kernels/kv-cache.ts';
import { ContextOverflowError, type GenerateRequest, type GenerationBackend, type ModelInfo } from './generation-types.ts';
import { Scheduler, type ResidentRowSampling, type StepKind, type StepModel, type StepRow } from './scheduler.ts';
import { createGpuSampler, type GpuSampler } from './gpu-sampler.ts';
import { RUNTIME_DEFAULTS, defaultContext } from './defaults.ts';

export { ContextOverflowError };
export type { StepRow };

export interface ModelOptions {
  dtype?: WeightFormat; // default: f16 where the adapter has shader-f16, else f32
  context?: number; // positions per sequence; default min(max_position_embeddings, RUNTIME_DEFAULTS.maxContext)
  prefillChunk?: number; // token rows per step (a prompt is prefilled in chunks of this); default RUNTIME_DEFAULTS.prefillChunk
  maxOut?: number; // logits rows per step; default RUNTIME_DEFAULTS.maxOut
  nSlots?: number; // sequences holding KV cache at once; default RUNTIME_DEFAULTS.nSlots
  blockSize?: number; // KV positions per block; default RUNTIME_DEFAULTS.blockSize
  kvBudgetBytes?: number; // bytes of KV cache (all layers, K and V); default: nSlots full contexts
  /** KV cache elements; default f16 where every device has shader-f16, else f32 (asking for f16 without it falls back with a warning). */
  kvDtype?: KvDtype;
  gpu?: GpuContext; // default: a new device
  gpus?: GpuContext[]; // several devices: the layers are split across them (pipeline sharding)
  layerSplit?: [number, number][]; // [first, last] layer per device; default: as even as possible
  /**
   * Memory of each device in bytes (WebGPU does not report it). When given, the planner places the layers
   * and checks that everything fits before anything is allocated; a plan that does not fit throws its message.
   */
  deviceMemoryBytes?: number[];
  onProgress?: (p: LoadProgress) => void;
  /**
   * Whether resident decode runs pick sampled tokens with the GPU sampler (runtime/gpu-sampler.ts). Default: on
   * GPUs; off on software adapters (lavapipe, SwiftShader), where the sampler kernel costs more than the host's
   * sampler (one sampled sequence here: 53 tok/s resident against 72 serial), so sampled requests decode serially.
   */
  gpuSampling?: boolean;
  /** The fused decode step (runtime/forward.ts fuseDecode and normPrologue); default: on GPUs, off on software adapters. */
  fuseDecode?: boolean;
}

/** One device's share of the model: consecutive layers, plus the embedding (first) or the head (last). */
export interface Stage {
  gpu: GpuContext;
  weights: GpuWeights;
  fwd: Forward;
  stagingX: GPUBuffer; // (maxRows, dim) f32: activations leaving this device (all but the last stage)
  stagingLogits: GPUBuffer; // (maxOut, vocab) f32 (last stage)
  stagingBest: GPUBuffer; // (maxOut) u32 (last stage)
  stagingIds: GPUBuffer[]; // a ring of 2, (residentSteps, maxOut) u32: the tokens of resident decode runs (single-stage models)
}

/**
 * Picks each decode row's next token on the GPU, after a step's head has written the rows' logits
 * (fwd.rs.logits): records its dispatches into `enc` and returns the buffer that then holds the ids (nRows u32).
 * `step` counts the steps of the run (for a sampler's random stream). Greedy is ARGMAX_PICKER; a GPU
 * sampler (temperature, top-k/p, penalties, a seeded generator) is another picker.
 */
export interface GpuPicker {
  encode(enc: GPUCommandEncoder, fwd: Forward, nRows: number, step: number): GPUBuffer;
}

/** Greedy: the argmax that encodeForward already records after the head, into rs.best. */
export const ARGMAX_PICKER: GpuPicker = { encode: (_enc, fwd) => fwd.rs.best };

/** Splits nLayers into `devices` runs of consecutive layers, as even as possible. */
export function evenLayerSplit(nLayers: number, devices: number): [number, number][] {
  const out: [number, number][] = [];
  let first = 0;
  for (let d = 0; d < devices; d++) {
    const n = Math.floor(nLayers / devices) + (d < nLayers % devices ? 1 : 0);
    out.push([first, first + n - 1]);
    first += n;
  }
  return out;
}

export class LlamaModel implements GenerationBackend, StepModel {
  readonly modelInfo: ModelInfo;
  /** The loop of generate() and logitsAll(), made on first use (a served model has its own scheduler). */
  private runner: Scheduler | null = null;
  /** Set once any device is lost: every later readback fails with it. */
  private lostError: Error | null = null;
  /** Rejecters of the readbacks in flight, failed together when a device is lost. */
  private readonly pendingReads = new Set<(e: Error) => void>();

  private constructor(
    readonly stages: Stage[],
    readonly cfg: LlamaConfig,
    readonly pool: KvPool,
    readonly context: number,
    /** KV cache elements (the same on every device). */
    readonly kvDtype: KvDtype,
    gpuSampling: boolean,
  ) {
    if (stages.length === 1) {
      this.decodeResident = (rows, steps, continues, sampling) => this.residentSteps(rows, steps, continues, sampling);
      this.sampledResident = gpuSampling;
    }
    this.modelInfo = { vocabSize: cfg.vocabSize, contextLength: context, bosTokenId: cfg.bosTokenId, eosTokenId: cfg.eosTokenId };
    // Device loss is observed once per device, here. Racing each readback against `lost` instead would
    // attach a reaction to a promise that never settles, per readback, for the life of the process.
    for (const st of stages) {
      void st.gpu.lost.then((message) => {
        this.lostError ??= new Error(message);
        for (const reject of this.pendingReads) reject(this.lostError);
        this.pendingReads.clear();
      });
    }
  }

  /** Token rows of one step (the prefill chunk). */
  get maxRows(): number {
    return this.stages[0]!.fwd.opts.maxRows;
  }
  /** Rows of logits one step computes. */
  get maxOut(): number {
    return this.stages[0]!.fwd.opts.maxOut;
  }
  /** The adapter of the first device (the only one unless the model is sharded). */
  get adapterName(): string {
    return this.stages[0]!.gpu.adapterName;
  }
  get format(): WeightFormat {
    return this.stages[0]!.weights.format;
  }
  get weightBytes(): number {
    return this.stages.reduce((a, s) => a + s.weights.bytes, 0);
  }

  static async fromProvider(src: TensorProvider, opts: ModelOptions = {}): Promise<LlamaModel> {
    const cfg = src.config;
    const gpus = opts.gpus ?? (opts.gpu ? [opts.gpu] : [await createGpuContext()]);
    if (gpus.length < 1) throw new Error('no devices given');
    if (gpus.length > cfg.nLayers) throw new Error(`${gpus.length} devices for ${cfg.nLayers} layers: at most one device per layer`);
    const dtype = opts.dtype ?? src.storedFormat ?? (gpus.every((g) => g.hasF16) ? 'f16' : 'f32');
    const context = opts.context ?? defaultContext(cfg.maxSeqLen);
    if (!Number.isInteger(context) || context < 1 || context > cfg.maxSeqLen) {
      throw new Error(`context ${context} must be between 1 and the model's max_position_embeddings (${cfg.maxSeqLen})`);
    }
    if (cfg.dim % 4 !== 0 || cfg.hiddenDim % 4 !== 0 || cfg.headDim % 4 !== 0) {
      throw new Error(`dims must be multiples of 4 (dim ${cfg.dim}, intermediate ${cfg.hiddenDim}, head ${cfg.headDim})`);
    }
    const blockSize = opts.blockSize ?? RUNTIME_DEFAULTS.blockSize;
    const prefillChunk = opts.prefillChunk ?? RUNTIME_DEFAULTS.prefillChunk;
    const maxOut = opts.maxOut ?? RUNTIME_DEFAULTS.maxOut;
    const allF16 = gpus.every((g) => g.hasF16);
    let kvDtype: KvDtype = opts.kvDtype ?? (allF16 ? 'f16' : 'f32');
    if (kvDtype === 'f16' && !allF16) {
      console.warn('note: the adapter lacks shader-f16, so the KV cache is f32');
      kvDtype = 'f32';
    }
    const nSlots = opts.nSlots ?? RUNTIME_DEFAULTS.nSlots;
    const maxBlocksPerSeq = Math.ceil(context / blockSize);
    // One block holds blockSize positions of K and V, f16 or f32, for every layer.
    const blockLayerBytes = blockSize * cfg.nKvHeads * cfg.headDim * kvBytesPerElement(kvDtype);
    const blockBytes = 2 * cfg.nLayers * blockLayerBytes;
    const maxBindingBytes = Math.min(...gpus.map((g) => g.maxBindingBytes));
    const maxBlocksPerBinding = Math.floor(maxBindingBytes / blockLayerBytes);
    let nBlocks: number;
    if (opts.kvBudgetBytes !== undefined) {
      nBlocks = Math.floor(opts.kvBudgetBytes / blockBytes);
      if (nBlocks < 1) throw new Error(`KV budget of ${opts.kvBudgetBytes} bytes is less than one block (${blockBytes} bytes)`);
      if (nBlocks > maxBlocksPerBinding) {
        throw new Error(`KV budget of ${opts.kvBudgetBytes} bytes needs ${nBlocks * blockLayerBytes} bytes per layer, over the adapter's ${maxBindingBytes}-byte binding limit: at most ${maxBlocksPerBinding * blockBytes} bytes`);
      }
    } else {
      nBlocks = Math.min(maxBlocksPerSeq * nSlots, maxBlocksPerBinding);
    }
    let split = opts.layerSplit ?? evenLayerSplit(cfg.nLayers, gpus.length);
    if (opts.deviceMemoryBytes) {
      if (opts.deviceMemoryBytes.length !== gpus.length) throw new Error(`deviceMemoryBytes has ${opts.deviceMemoryBytes.length} entries for ${gpus.length} devices`);
      const plan = planModel({
        config: cfg, dtype, formats: src.nativeFormats, context, nSlots, blockSize, prefillChunk, maxOut,
        kvBudgetBytes: nBlocks * blockBytes, kvDtype,
        devices: gpus.map((g, i) => ({ memoryBytes: opts.deviceMemoryBytes![i]!, maxBindingBytes: g.maxBindingBytes, maxBufferBytes: g.maxBufferBytes })),
      });
      if (!plan.fits) throw new Error(plan.message);
      if (!opts.layerSplit) split = plan.devices.map((d) => d.layers);
    }
    if (split.length !== gpus.length || split[0]![0] !== 0 || split[split.length - 1]![1] !== cfg.nLayers - 1 ||
      split.some(([a, b], i) => b < a || (i > 0 && a !== split[i - 1]![1] + 1))) {
      throw new Error(`layer split ${JSON.stringify(split)} must cover layers 0..${cfg.nLayers - 1} in order, one run per device`);
    }
    const fopts = {
      maxRows: prefillChunk, maxOut, blockSize, nBlocks, nSlots, maxBlocksPerSeq, kvDtype,
      ...(opts.fuseDecode === undefined ? {} : { fuseDecode: opts.fuseDecode, normPrologue: opts.fuseDecode }),
    };
    const stages: Stage[] = [];
    for (let d = 0; d < gpus.length; d++) {
      const gpu = gpus[d]!;
      const part = { firstLayer: split[d]![0], lastLayer: split[d]![1], embedding: d === 0, head: d === gpus.length - 1 };
      const weights = await loadWeights(gpu, src, dtype, opts.onProgress, part);
      const fwd = await createForward(gpu, cfg, weights, fopts);
      const dev = gpu.device;
      const map = (label: string, size: number) => dev.createBuffer({ label, size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const staging = stagingSizes(cfg, fopts, { head: part.head, devices: gpus.length });
      stages.push({
        gpu, weights, fwd,
        stagingX: map('stagingX', staging.x),
        stagingLogits: map('stagingLogits', staging.logits),
        stagingBest: map('stagingBest', staging.best),
        stagingIds: staging.ids.map((size, i) => map(`stagingIds.${i}`, size)),
      });
    }
    const gpuSampling = opts.gpuSampling ?? !isCpuAdapter(gpus[0]!.device);
    return new LlamaModel(stages, cfg, new KvPool(nBlocks, blockSize, nSlots, maxBlocksPerSeq), context, kvDtype, gpuSampling);
  }

  /**
   * Runs one forward step; returns logits (outRows.length, vocab) or, with argmax, the best id per out row.
   * On a sharded model the residual stream (nTokens, dim) crosses from device to device through the host
   * at each stage boundary (WebGPU has no peer copies).
   */
  async step(rows: StepRow[], outRows: number[], mode: 'logits' | 'argmax', kind: StepKind = 'prefill'): Promise<Float32Array | Uint32Array> {
    const T = rows.length;
    if (T < 1 || T > this.maxRows) throw new Error(`step of ${T} rows (1..${this.maxRows})`);
    if (outRows.length > this.maxOut) throw new Error(`${outRows.length} output rows > maxOut ${this.maxOut}`);
    for (const r of rows) {
      if (!Number.isInteger(r.token) || r.token < 0 || r.token >= this.cfg.vocabSize) throw new Error(`token id ${r.token} is outside the vocabulary (0..${this.cfg.vocabSize - 1})`);
      if (r.pos >= this.context) throw new ContextOverflowError(`position ${r.pos} is past the context length ${this.context}`);
    }
    const ids = Uint32Array.from(rows, (r) => r.token);
    const pos = Uint32Array.from(rows, (r) => r.pos);
    const slot = Uint32Array.from(rows, (r) => r.slot);
    const maxLen = rows.reduce((a, r) => Math.max(a, r.pos + 1), 0);
    const oneSlot = rows.every((r) => r.slot === rows[0]!.slot);
    const stepInfo = packParams([[T, 'u32'], [outRows.length, 'u32'], [0, 'u32'], [0, 'u32']]);
    const nOut = outRows.length;
    let x: Float32Array<ArrayBuffer> | null = null; // residual stream handed to the next device
    for (let i = 0; i < this.stages.length; i++) {
      const st = this.stages[i]!;
      const last = i === this.stages.length - 1;
      const { device } = st.gpu;
      const rs = st.fwd.rs;
      device.queue.writeBuffer(rs.ids, 0, ids);
      device.queue.writeBuffer(rs.pos, 0, pos);
      device.queue.writeBuffer(rs.slot, 0, slot);
      device.queue.writeBuffer(rs.step, 0, stepInfo);
      if (x) device.queue.writeBuffer(rs.x, 0, x);
      const enc = device.createCommandEncoder();
      encodeForward(st.fwd, enc, T, last ? outRows : [], kind, maxLen, oneSlot);
      if (!last) {
        const bytes = T * this.cfg.dim * 4;
        enc.copyBufferToBuffer(rs.x, 0, st.stagingX, 0, bytes);
        device.queue.submit([enc.finish()]);
        x = new Float32Array(await this.readStaging(st.stagingX, bytes));
        continue;
      }
      if (nOut === 0) {
        device.queue.submit([enc.finish()]);
        return new Float32Array(0);
      }
      const staging = mode === 'argmax' ? st.stagingBest : st.stagingLogits;
      const bytes = mode === 'argmax' ? nOut * 4 : nOut * this.cfg.vocabSize * 4;
      enc.copyBufferToBuffer(mode === 'argmax' ? rs.best : rs.logits, 0, staging, 0, bytes);
      device.queue.submit([enc.finish()]);
      const data = await this.readStaging(staging, bytes);
      return mode === 'argmax' ? new Uint32Array(data) : new Float32Array(data);
    }
    throw new Error('unreachable: a model has at least one stage');
  }

  /**
   * The GPU-resident decode loop: `steps` decode steps of the batch `rows` (row i: token, pos, slot), where
   * step j's input ids are step j-1's picks, copied on the GPU (best -> ids in the same command buffer), so
   * each step is recorded and submitted without waiting for the one before; the picks of all steps come
   * back in one readback, (steps, rows.length) u32. Row i of step j is at position rows[i].pos + j: the
   * caller reserves those KV positions. `continues`: the run goes on from the previous run of the same rows,
   * whose last picks are already the input ids on the GPU (rows[i].token is not used), so it can be submitted
   * before that run is read back; at most two runs are in flight (a ring of two staging buffers).
   * Single-device models only (undefined when sharded: there the residual stream crosses devices through the
   * host at every step anyway).
   */
  readonly decodeResident?: (rows: StepRow[], steps: number, continues?: boolean, sampling?: ResidentRowSampling[]) => Promise<Uint32Array>;
  readonly sampledResident: boolean = false;
  private runs = 0; // resident runs so far: run r reads back through stagingIds[r % 2]
  /** The GPU sampler of sampled resident runs (row r samples in its slot r) and its ids buffer, made on first use. */
  private sampler: Promise<{ gs: GpuSampler; ids: GPUBuffer; picker: GpuPicker }> | null = null;

  private samplingPicker(): Promise<{ gs: GpuSampler; ids: GPUBuffer; picker: GpuPicker }> {
    this.sampler ??= (async () => {
      const st = this.stages[0]!;
      const gs = await createGpuSampler(st.gpu, this.cfg.vocabSize, this.maxOut);
      const ids = storageBuffer(st.gpu.device, 'resident.sampledIds', this.maxOut * 4);
      const picker: GpuPicker = {
        encode: (enc, fwd, nRows) => {
          const pass = enc.beginComputePass();
          gs.encode(pass, fwd.rs.logits, nRows, ids);
          pass.end();
          return ids;
        },
      };
      return { gs, ids, picker };
    })();
    return this.sampler;
  }

  private async residentSteps(rows: StepRow[], steps: number, continues = false, sampling?: ResidentRowSampling[]): Promise<Uint32Array> {
    const B = rows.length;
    const st = this.stages[0]!;
    let picker = ARGMAX_PICKER;
    if (sampling) {
      if (sampling.length !== B) throw new Error(`resident decode: ${sampling.length} samplers for ${B} rows`);
      // Awaited by every sampled run alike, so runs still submit in call order.
      const s = await this.samplingPicker();
      picker = s.picker;
      if (!continues) {
        sampling.forEach((r, i) => {
          s.gs.setParams(i, r.params, r.promptTokens, r.generated);
          st.gpu.device.queue.writeBuffer(s.gs.buffers.prng, i * 16, r.prngState.slice());
        });
      }
    }
    if (B < 1 || B > this.maxOut) throw new Error(`resident decode of ${B} rows (1..${this.maxOut})`);
    if (!Number.isInteger(steps) || steps < 1 || steps > RUNTIME_DEFAULTS.residentSteps) throw new Error(`resident decode of ${steps} steps (1..${RUNTIME_DEFAULTS.residentSteps})`);
    for (const r of rows) {
      if (!continues && (!Number.isInteger(r.token) || r.token < 0 || r.token >= this.cfg.vocabSize)) throw new Error(`token id ${r.token} is outside the vocabulary (0..${this.cfg.vocabSize - 1})`);
      if (r.pos + steps > this.context) throw new ContextOverflowError(`position ${r.pos + steps - 1} is past the context length ${this.context}`);
    }
    const staging = st.stagingIds[this.runs++ % 2]!;
    if (staging.mapState !== 'unmapped') throw new Error('resident decode: more than two runs in flight');
    const { device } = st.gpu;
    const rs = st.fwd.rs;
    const all = Array.from(rows, (_, i) => i);
    if (!continues) device.queue.writeBuffer(rs.ids, 0, Uint32Array.from(rows, (r) => r.token));
    device.queue.writeBuffer(rs.slot, 0, Uint32Array.from(rows, (r) => r.slot));
    device.queue.writeBuffer(rs.step, 0, packParams([[B, 'u32'], [B, 'u32'], [0, 'u32'], [0, 'u32']]));
    const bytes = B * 4;
    for (let j = 0; j < steps; j++) {
      // Written in queue order: after step j-1's commands, before step j's.
      device.queue.writeBuffer(rs.pos, 0, Uint32Array.from(rows, (r) => r.pos + j));
      const enc = device.createCommandEncoder();
      encodeForward(st.fwd, enc, B, all, 'decode', rows.reduce((a, r) => Math.max(a, r.pos + j + 1), 0));
      const picked = picker.encode(enc, st.fwd, B, j);
      enc.copyBufferToBuffer(picked, 0, rs.ids, 0, bytes); // the next step's input
      enc.copyBufferToBuffer(picked, 0, staging, j * bytes, bytes);
      device.queue.submit([enc.finish()]);
    }
    return new Uint32Array(await this.readStaging(staging, steps * bytes));
  }

  private async readStaging(staging: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    if (this.lostError) throw this.lostError;
    await new Promise<void>((resolve, reject) => {
      this.pendingReads.add(reject);
      staging.mapAsync(GPUMapMode.READ, 0, bytes).then(resolve, reject).finally(() => this.pendingReads.delete(reject));
    });
    const data = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    return data;
  }

  /** Uploads the block-table row of `slot` (after its blocks changed) to every device. */
  writeTable(slot: number): void {
    const row = this.pool.tableRow(slot);
    for (const st of this.stages) st.gpu.device.queue.writeBuffer(st.fwd.rs.blockTable, slot * this.pool.maxBlocksPerSeq * 4, row);
  }

  /** The loop of generate() and logitsAll(): every slot of the model, no prefix caching, an unbounded queue. */
  private get scheduler(): Scheduler {
    return (this.runner ??= new Scheduler(this, { prefixCaching: false, maxQueue: Infinity }));
  }

  /** Logits for every position of `tokens` from position 0 (tests, quality measurements), (tokens.length, vocab). */
  logitsAll(tokens: number[]): Promise<Float32Array> {
    return this.scheduler.score(tokens);
  }

  /** Yields generated token ids; EOS is yielded last when it ends the sequence. */
  generate(req: GenerateRequest): AsyncGenerator<number> {
    return this.scheduler.generate(req);
  }

  /** Greedy decoding; after the prompt, the argmax runs on the GPU (4 bytes read back per token). */
  async *generateGreedy(prompt: number[], maxTokens: number, signal?: AbortSignal): AsyncGenerator<number> {
    const greedy = {
      greedy: true,
      sample: (l: Float32Array) => {
        let b = 0;
        for (let i = 1; i < l.length; i++) if (l[i]! > l[b]!) b = i;
        return b;
      },
      accept: () => undefined,
    };
    yield* this.generate({ promptTokens: prompt, maxTokens, sampler: greedy, signal });
  }

  destroy(): void {
    for (const st of this.stages) {
      destroyForward(st.fwd);
      destroyWeights(st.weights);
      st.stagingX.destroy();
      st.stagingLogits.destroy();
      st.stagingBest.destroy();
      for (const b of st.stagingIds) b.destroy();
    }
    void this.sampler?.then((s) => {
      s.gs.destroy();
      s.ids.destroy();
    });
  }
}

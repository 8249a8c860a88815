// A loaded Llama-2 model on one WebGPU device: weights, forward pass, KV pool, and generation.
// Generation is small functions: prefill (batched, in chunks), decode one token, sample.

import { createGpuContext, type GpuContext } from './device.ts';
import type { LlamaConfig } from './config.ts';
import { loadWeights, destroyWeights, type GpuWeights, type LoadProgress, type TensorProvider } from './weights.ts';
import { createForward, destroyForward, encodeForward, type Forward } from './forward.ts';
import { KvPool } from './kv-pool.ts';
import { packParams } from '../kernels/common.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import type { GenerateRequest, GenerationBackend, ModelInfo } from './generation-types.ts';

export interface ModelOptions {
  dtype?: WeightFormat; // default: f16 where the adapter has shader-f16, else f32
  context?: number; // positions per sequence; default min(max_position_embeddings, 4096)
  prefillChunk?: number; // token rows per prefill step; default 128
  maxOut?: number; // logits rows per step; default 8
  nSlots?: number; // sequences holding KV cache at once; default 1
  blockSize?: number; // KV positions per block; default 16
  kvBudgetBytes?: number; // bytes of KV cache (all layers, K and V); default: nSlots full contexts
  gpu?: GpuContext; // default: a new device
  onProgress?: (p: LoadProgress) => void;
}

export interface StepRow {
  token: number;
  pos: number;
  slot: number;
}

/**
 * Prefill steps and decode steps use fixed matmul kernels (tiled and matvec), whatever their row count, so a
 * sequence's numbers do not depend on what it is batched with.
 */
export type StepKind = 'prefill' | 'decode';

export class ContextOverflowError extends Error {}

export class LlamaModel implements GenerationBackend {
  readonly modelInfo: ModelInfo;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly stagingLogits: GPUBuffer;
  private readonly stagingBest: GPUBuffer;

  private constructor(
    readonly gpu: GpuContext,
    readonly cfg: LlamaConfig,
    readonly weights: GpuWeights,
    readonly fwd: Forward,
    readonly pool: KvPool,
    readonly context: number,
  ) {
    this.modelInfo = { vocabSize: cfg.vocabSize, contextLength: context, bosTokenId: cfg.bosTokenId, eosTokenId: cfg.eosTokenId };
    const d = gpu.device;
    this.stagingLogits = d.createBuffer({ label: 'stagingLogits', size: fwd.rs.logits.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.stagingBest = d.createBuffer({ label: 'stagingBest', size: fwd.rs.best.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  static async fromProvider(src: TensorProvider, opts: ModelOptions = {}): Promise<LlamaModel> {
    const cfg = src.config;
    const gpu = opts.gpu ?? (await createGpuContext());
    const dtype = opts.dtype ?? (gpu.hasF16 ? 'f16' : 'f32');
    const context = opts.context ?? Math.min(cfg.maxSeqLen, 4096);
    if (!Number.isInteger(context) || context < 1 || context > cfg.maxSeqLen) {
      throw new Error(`context ${context} must be between 1 and the model's max_position_embeddings (${cfg.maxSeqLen})`);
    }
    if (cfg.dim % 4 !== 0 || cfg.hiddenDim % 4 !== 0 || cfg.headDim % 4 !== 0) {
      throw new Error(`dims must be multiples of 4 (dim ${cfg.dim}, intermediate ${cfg.hiddenDim}, head ${cfg.headDim})`);
    }
    const blockSize = opts.blockSize ?? 16;
    const nSlots = opts.nSlots ?? 1;
    const maxBlocksPerSeq = Math.ceil(context / blockSize);
    // One block holds blockSize positions of K and V, f32, for every layer.
    const blockLayerBytes = blockSize * cfg.nKvHeads * cfg.headDim * 4;
    const blockBytes = 2 * cfg.nLayers * blockLayerBytes;
    const maxBlocksPerBinding = Math.floor(gpu.maxBindingBytes / blockLayerBytes);
    let nBlocks: number;
    if (opts.kvBudgetBytes !== undefined) {
      nBlocks = Math.floor(opts.kvBudgetBytes / blockBytes);
      if (nBlocks < 1) throw new Error(`KV budget of ${opts.kvBudgetBytes} bytes is less than one block (${blockBytes} bytes)`);
      if (nBlocks > maxBlocksPerBinding) {
        throw new Error(`KV budget of ${opts.kvBudgetBytes} bytes needs ${nBlocks * blockLayerBytes} bytes per layer, over the adapter's ${gpu.maxBindingBytes}-byte binding limit: at most ${maxBlocksPerBinding * blockBytes} bytes`);
      }
    } else {
      nBlocks = Math.min(maxBlocksPerSeq * nSlots, maxBlocksPerBinding);
    }
    const weights = await loadWeights(gpu, src, dtype, opts.onProgress);
    const fwd = await createForward(gpu, cfg, weights, {
      maxTokens: opts.prefillChunk ?? 128,
      maxOut: opts.maxOut ?? 8,
      blockSize,
      nBlocks,
      nSlots,
      maxBlocksPerSeq,
    });
    return new LlamaModel(gpu, cfg, weights, fwd, new KvPool(nBlocks, blockSize, nSlots, maxBlocksPerSeq), context);
  }

  /** Runs one forward step; returns logits (outRows.length, vocab) or, with argmax, the best id per out row. */
  async step(rows: StepRow[], outRows: number[], mode: 'logits' | 'argmax', kind: StepKind = 'prefill'): Promise<Float32Array | Uint32Array> {
    const { device } = this.gpu;
    const rs = this.fwd.rs;
    const T = rows.length;
    if (T < 1 || T > this.fwd.opts.maxTokens) throw new Error(`step of ${T} rows (1..${this.fwd.opts.maxTokens})`);
    if (outRows.length > this.fwd.opts.maxOut) throw new Error(`${outRows.length} output rows > maxOut ${this.fwd.opts.maxOut}`);
    for (const r of rows) {
      if (!Number.isInteger(r.token) || r.token < 0 || r.token >= this.cfg.vocabSize) throw new Error(`token id ${r.token} is outside the vocabulary (0..${this.cfg.vocabSize - 1})`);
      if (r.pos >= this.context) throw new ContextOverflowError(`position ${r.pos} is past the context length ${this.context}`);
    }
    device.queue.writeBuffer(rs.ids, 0, Uint32Array.from(rows, (r) => r.token));
    device.queue.writeBuffer(rs.pos, 0, Uint32Array.from(rows, (r) => r.pos));
    device.queue.writeBuffer(rs.slot, 0, Uint32Array.from(rows, (r) => r.slot));
    device.queue.writeBuffer(rs.step, 0, packParams([[T, 'u32'], [outRows.length, 'u32'], [0, 'u32'], [0, 'u32']]));
    const enc = device.createCommandEncoder();
    encodeForward(this.fwd, enc, T, outRows, kind);
    const nOut = outRows.length;
    if (nOut === 0) {
      device.queue.submit([enc.finish()]);
      return new Float32Array(0);
    }
    const staging = mode === 'argmax' ? this.stagingBest : this.stagingLogits;
    const bytes = mode === 'argmax' ? nOut * 4 : nOut * this.cfg.vocabSize * 4;
    enc.copyBufferToBuffer(mode === 'argmax' ? rs.best : rs.logits, 0, staging, 0, bytes);
    device.queue.submit([enc.finish()]);
    await Promise.race([staging.mapAsync(GPUMapMode.READ, 0, bytes), this.gpu.lost.then((m) => Promise.reject(new Error(m)))]);
    const data = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    return mode === 'argmax' ? new Uint32Array(data) : new Float32Array(data);
  }

  /** Uploads the block-table row of `slot` (after its blocks changed). */
  writeTable(slot: number): void {
    const row = this.pool.tableRow(slot);
    this.gpu.device.queue.writeBuffer(this.fwd.rs.blockTable, slot * this.pool.maxBlocksPerSeq * 4, row);
  }

  /**
   * Prefills `tokens` at positions start.. of `slot` in chunks; returns the logits of the rows in
   * `wantRows` (indices into tokens; default: the last one), (wantRows.length, vocab).
   */
  async prefill(slot: number, tokens: number[], start: number, wantRows?: number[]): Promise<Float32Array> {
    const want = wantRows ?? [tokens.length - 1];
    if (start + tokens.length > this.context) {
      throw new ContextOverflowError(`prompt of ${start + tokens.length} tokens does not fit the context length ${this.context}`);
    }
    if (!this.pool.reserve(slot, start + tokens.length)) throw new Error('KV cache pool is full');
    this.writeTable(slot);
    const V = this.cfg.vocabSize;
    const out = new Float32Array(want.length * V);
    const chunk = this.fwd.opts.maxTokens;
    const maxOut = this.fwd.opts.maxOut;
    let filled = 0;
    for (let c0 = 0; c0 < tokens.length; ) {
      const n = Math.min(chunk, tokens.length - c0);
      // rows of this chunk whose logits are wanted, at most maxOut per step (shorten the chunk if needed)
      let outIdx = want.map((w, i) => [w, i] as const).filter(([w]) => w >= c0 && w < c0 + n);
      let len = n;
      if (outIdx.length > maxOut) {
        len = outIdx[maxOut - 1]![0] - c0 + 1;
        outIdx = outIdx.slice(0, maxOut);
      }
      const rows = tokens.slice(c0, c0 + len).map((token, i) => ({ token, pos: start + c0 + i, slot }));
      const logits = (await this.step(rows, outIdx.map(([w]) => w - c0), 'logits')) as Float32Array;
      outIdx.forEach(([, i], j) => out.set(logits.subarray(j * V, (j + 1) * V), i * V));
      filled += outIdx.length;
      c0 += len;
    }
    if (filled !== want.length) throw new Error('prefill: internal error, not every wanted row was computed');
    return out;
  }

  /** Logits for every position of `tokens` from position 0 (tests, quality measurements). Serialized with generate(). */
  logitsAll(tokens: number[]): Promise<Float32Array> {
    return this.exclusive(async () => {
      const slot = this.pool.acquireSlot();
      if (slot === null) throw new Error('no free KV slot');
      try {
        return await this.prefill(slot, tokens, 0, tokens.map((_, i) => i));
      } finally {
        this.pool.releaseSlot(slot);
      }
    });
  }

  /** Runs `fn` after every earlier exclusive call has finished (one sequence on the device at a time). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Yields generated token ids; EOS is yielded last when it ends the sequence. */
  async *generate(req: GenerateRequest): AsyncGenerator<number> {
    const prompt = req.promptTokens;
    if (prompt.length === 0) throw new Error('empty prompt');
    if (prompt.length >= this.context) throw new ContextOverflowError(`prompt of ${prompt.length} tokens leaves no room in the context length ${this.context}`);
    // Wait for our turn on the device.
    let release!: () => void;
    const turn = new Promise<void>((r) => (release = r));
    const prev = this.queue;
    this.queue = prev.then(() => turn);
    await prev;
    const slot = this.pool.acquireSlot();
    try {
      if (slot === null) throw new Error('no free KV slot');
      if (req.signal?.aborted) return;
      let logits: Float32Array | Uint32Array = await this.prefill(slot, prompt, 0);
      const generated: number[] = [];
      const maxTokens = Math.min(req.maxTokens, this.context - prompt.length);
      // Greedy without a mask: take the argmax on the GPU and read back one id per step.
      const onGpuArgmax = req.sampler.greedy === true && !req.allowedTokens;
      while (generated.length < maxTokens) {
        if (req.signal?.aborted) return;
        let token: number;
        if (logits instanceof Uint32Array) {
          token = logits[0]!;
        } else {
          const mask = req.allowedTokens?.(generated) ?? null;
          if (mask) for (let i = 0; i < logits.length; i++) if (!mask[i]) logits[i] = -Infinity;
          token = req.sampler.sample(logits);
        }
        req.sampler.accept(token);
        generated.push(token);
        yield token;
        if (token === this.cfg.eosTokenId || generated.length >= maxTokens) break;
        const pos = prompt.length + generated.length - 1;
        if (!this.pool.reserve(slot, pos + 1)) throw new Error('KV cache pool is full');
        this.writeTable(slot);
        logits = await this.step([{ token, pos, slot }], [0], onGpuArgmax ? 'argmax' : 'logits', 'decode');
      }
    } finally {
      if (slot !== null) this.pool.releaseSlot(slot);
      release();
    }
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
    destroyForward(this.fwd);
    destroyWeights(this.weights);
    this.stagingLogits.destroy();
    this.stagingBest.destroy();
  }
}

// A served model, end to end: weights on one or more WebGPU devices, the continuous-batching scheduler,
// the Llama-2 tokenizer, and the OpenAI-compatible engine in front. Used by `llama2-webgpu serve`,
// the browser demo's worker, and ES-module users. No GPU type crosses into the engine.

import { createEngine, type Engine, type Prices } from '../api/engine.ts';
import { llamaChatTokenizer, llamaTokenBytes } from './chat-tokenizer-llama.ts';
import { prometheusText } from './metrics.ts';
import { openModelSource } from '../checkpoint/load.ts';
import type { ByteSource, ModelDir } from '../checkpoint/byte-source.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';
import type { GpuContext } from '../runtime/device.ts';
import type { LlamaModel } from '../runtime/model.ts';
import { loadOnDevices, type DevicePlacement } from './devices.ts';
import { Scheduler } from '../runtime/scheduler.ts';
import type { LoadProgress } from '../runtime/weights.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import { LlamaTokenizer } from '../tokenizer/tokenizer.ts';
import { RUNTIME_DEFAULTS } from '../runtime/defaults.ts';

/** The hosted endpoint's model id, accepted too so that its documented calls work unchanged. */
export const HOSTED_MODEL_ID = 'meta-llama/Llama-2-70b-chat-hf';

export interface LlamaEngineOptions extends DevicePlacement {
  model?: string | ModelDir | ByteSource; // "default", a path (HF dir, converted dir, .gguf), or a ModelDir / GGUF source
  modelName?: string; // the id clients send; default: the directory or file name
  aliases?: string[]; // other accepted ids besides HOSTED_MODEL_ID
  dtype?: WeightFormat;
  context?: number;
  kvDtype?: 'f16' | 'f32'; // KV cache elements (default f16 where the adapter has shader-f16)
  maxBatch?: number; // sequences decoding together (default RUNTIME_DEFAULTS.maxBatch)
  maxQueue?: number; // waiting requests before 429 (default RUNTIME_DEFAULTS.maxQueue)
  kvBudgetBytes?: number; // KV cache for all sequences (default: maxBatch full contexts, capped by the binding limit)
  prefillChunk?: number; // prompt tokens per step (default RUNTIME_DEFAULTS.prefillChunk)
  prefixCaching?: boolean; // default true
  prices?: Prices;
  onProgress?: (p: LoadProgress) => void;
}

export interface LlamaEngine {
  engine: Engine;
  scheduler: Scheduler;
  model: LlamaModel;
  /** The model's parameter count (every tensor's elements). */
  params: number;
  /** Load-log lines: the chat format, where the tokenizer and the sampling defaults came from. */
  notes: string[];
  /** Prometheus text of the scheduler's gauges and counters. */
  metrics(): string;
  close(): Promise<void>;
}

export async function loadLlamaEngine(opts: LlamaEngineOptions = {}): Promise<LlamaEngine> {
  const src = await openModelSource(opts.model ?? 'default');
  let loaded: { model: LlamaModel; gpus: GpuContext[] } | null = null;
  try {
    if (!src.tokenizerJson) throw new Error(`${src.name}: the model has no tokenizer (tokenizer.json, or tokenizer metadata in the GGUF)`);
    const tok = LlamaTokenizer.fromJson(src.tokenizerJson, src.tokenizerConfigJson ?? undefined);
    const chat = llamaChatTokenizer(tok); // compiles the chat template: a bad one fails before any GPU work
    const maxBatch = opts.maxBatch ?? RUNTIME_DEFAULTS.maxBatch;
    loaded = await loadOnDevices(src.provider, {
      devices: opts.devices,
      deviceOptions: opts.deviceOptions,
      deviceMemoryBytes: opts.deviceMemoryBytes,
      dtype: opts.dtype,
      context: opts.context,
      kvDtype: opts.kvDtype,
      nSlots: maxBatch,
      maxOut: maxBatch,
      prefillChunk: opts.prefillChunk,
      kvBudgetBytes: opts.kvBudgetBytes,
      onProgress: opts.onProgress,
    });
    const { model, gpus } = loaded;
    const scheduler = new Scheduler(model, { maxBatch, maxQueue: opts.maxQueue, prefixCaching: opts.prefixCaching });
    const engine = createEngine({
      backend: scheduler,
      tokenizer: chat,
      modelName: opts.modelName ?? src.name,
      aliases: [HOSTED_MODEL_ID, ...(opts.aliases ?? [])],
      prices: opts.prices,
      samplingDefaults: src.sampling.defaults,
      tokenBytes: llamaTokenBytes(tok),
    });
    const notes = [chat.chatFormat === 'model' ? "chat format: the model's own chat_template" : 'chat format: Llama-2 (built in)', ...src.notes];
    let params = 0;
    for (const shape of expectedTensors(model.cfg).values()) params += shape.reduce((a, b) => a * b, 1);
    return {
      engine,
      scheduler,
      model,
      params,
      notes,
      metrics: () => prometheusText(scheduler.metrics()),
      async close() {
        model.destroy();
        for (const g of gpus) g.destroy();
      },
    };
  } catch (e) {
    loaded?.model.destroy();
    for (const g of loaded?.gpus ?? []) g.destroy();
    throw e;
  } finally {
    await src.close();
  }
}

// Opening a model for the chat page, inside the worker: a LoadSpec -> its files (serve/model-files.ts: bytes
// read counted for the progress bar, a URL's files kept in the Cache Storage API) -> serve/llama-engine.ts
// (tokenizer, WebGPU device, model, scheduler, engine), with its failures sorted into the kinds the page explains.

import { loadLlamaEngine, type LlamaEngine } from '../serve/llama-engine.ts';
import { openModelFiles, type ModelFiles, type ModelLocation } from '../serve/model-files.ts';
import { MODEL_CACHE, type FailureKind, type LoadedModelInfo, type LoadOptions, type LoadProgressEvent, type LoadSpec } from './protocol.ts';

/** An error that says which of the page's messages applies. */
export class LoadError extends Error {
  constructor(readonly kind: FailureKind, message: string) {
    super(message);
    this.name = 'LoadError';
  }
}

export interface OpenedEngine {
  llama: LlamaEngine;
  info: LoadedModelInfo;
  /** Resolves with a message when the device is lost (also after close(): the caller tells them apart). */
  lost: Promise<string>;
  close(): Promise<void>;
}

/** Where the model a spec names is, for serve/model-files.ts. */
function locate(spec: LoadSpec): ModelLocation {
  switch (spec.kind) {
    case 'builtin':
      // vite.config.ts serves assets/ at the page's root; the engine runs in a worker one folder below it.
      return { kind: 'default', baseUrl: new URL('../tiny-llama-2-kjv/', self.location.href) };
    case 'folder':
      return { kind: 'files', name: spec.name, files: Object.fromEntries(spec.files.map((f) => [f.path, f.file])) };
    case 'gguf':
      return { kind: 'gguf', name: spec.file.name, file: spec.file };
    case 'url':
      return { kind: 'url', url: spec.url };
  }
}

/** Which message a load failure gets: no WebGPU, over the adapter's limits or memory, or anything else. */
function failureKind(message: string): FailureKind {
  if (/WebGPU is not available|No WebGPU adapter|requestDevice/i.test(message)) return 'no_webgpu';
  if (/does not fit|binding limit|exceeds|out of memory|not enough (GPU )?memory|too large|budget/i.test(message)) return 'does_not_fit';
  return 'load_failed';
}

export async function openEngine(
  spec: LoadSpec, options: LoadOptions, onProgress: (p: LoadProgressEvent) => void,
): Promise<OpenedEngine> {
  const t0 = performance.now();
  const progress: LoadProgressEvent = { phase: 'building', bytesRead: 0, bytesTotal: 0, tensorsDone: 0, tensorsTotal: 0, tensor: '' };
  const report = (patch: Partial<LoadProgressEvent>): void => {
    Object.assign(progress, patch);
    onProgress({ ...progress });
  };
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) throw new LoadError('no_webgpu', 'This browser has no WebGPU (navigator.gpu is missing).');
  if (spec.kind === 'builtin') report({ phase: 'building' });

  // The config, tensor names, shapes and dtypes are all checked before the GPU is touched.
  let files: ModelFiles;
  let llama: LlamaEngine;
  try {
    files = await openModelFiles(locate(spec), {
      onRead: (bytesRead, bytesTotal) => report({ phase: 'reading', bytesRead, bytesTotal }),
      onDownload: (done, bytesTotal) => report({ phase: 'downloading', bytesRead: done, bytesTotal }),
      urlCache: MODEL_CACHE,
    });
    llama = await loadLlamaEngine({
      model: files.source,
      // One conversation at a time in a tab: one sequence's KV cache, not a server's batch.
      maxBatch: 1,
      ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.memoryBytes !== undefined ? { deviceMemoryBytes: options.memoryBytes } : {}),
      ...(options.context !== undefined ? { context: options.context } : {}),
      // The last tensor on the GPU ends the weights; what follows is building the kernels' pipelines.
      onProgress: (p) => report({ phase: p.done < p.total ? 'uploading' : 'compiling', bytesRead: files.bytesRead(), tensorsDone: p.done, tensorsTotal: p.total, tensor: p.tensor }),
    });
  } catch (e) {
    const message = (e as Error).message;
    throw new LoadError(failureKind(message), message);
  }
  const { model } = llama;
  const info: LoadedModelInfo = {
    modelName: llama.engine.modelName,
    adapter: model.adapterName,
    dtype: model.format,
    weightBytes: model.weightBytes,
    params: llama.params,
    contextLength: model.context,
    loadSeconds: (performance.now() - t0) / 1000,
    source: spec.kind === 'builtin' ? 'builtin' : spec.kind === 'url' ? (files.downloads() === 0 && files.cacheHits() > 0 ? 'cache' : 'network') : 'files',
  };
  return { llama, info, lost: model.stages[0]!.gpu.lost, close: () => llama.close() };
}

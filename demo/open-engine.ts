// Opening a model for the chat page, inside the worker: a LoadSpec -> a ModelDir (with a byte counter
// for the progress bar; a URL's files kept in the Cache Storage API) -> serve/llama-engine.ts (tokenizer,
// WebGPU device, model, scheduler, engine), with its failures sorted into the kinds the page explains.

import { loadLlamaEngine, type LlamaEngine } from '../serve/llama-engine.ts';
import { defaultModelDir } from '../checkpoint/default-model.ts';
import { blobSource, mapDir, urlDir, type ByteSource, type ModelDir } from '../checkpoint/byte-source.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';
import type { FailureKind, LoadedModelInfo, LoadOptions, LoadProgressEvent, LoadSpec } from './protocol.ts';

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

/** A URL naming one .gguf file (rather than a model directory). */
const isGgufUrl = (url: string): boolean => /\.gguf$/i.test(new URL(url).pathname);

/** The Cache Storage API cache holding models loaded from URLs (the page lists and clears it too). */
export const MODEL_CACHE = 'llama2-webgpu-models';

/** What a cached URL load did: files found in the cache, files downloaded, and the download's progress. */
class CacheLog {
  hits = 0;
  downloads = 0;
  done = 0;
  total = 0;
  constructor(readonly onDownload: (done: number, total: number) => void) {}
}

/**
 * A model directory over HTTP whose files are kept whole in the Cache Storage API: the first load downloads
 * each file once (into the cache, on disk), later loads read it from there. Without the API (or when the
 * cache refuses a file, e.g. over quota) files are read with Range requests as before.
 */
function cachedUrlDir(baseUrl: string, log: CacheLog): ModelDir {
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const plain = urlDir(base);
  if (typeof caches === 'undefined') return plain;
  return {
    name: baseUrl,
    async open(file) {
      const url = base + file;
      const cache = await caches.open(MODEL_CACHE);
      const hit = await cache.match(url);
      if (hit) {
        if (hit.status === 404) return null; // known to be absent (the loader asks for optional files)
        log.hits++;
        return blobSource(url, await hit.blob());
      }
      const res = await fetch(url);
      if (res.status === 404) {
        // Remembered, so that a later load from the cache does not need the server to say it again.
        await cache.put(url, new Response(null, { status: 404 })).catch(() => undefined);
        return null;
      }
      if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status}`);
      const size = Number(res.headers.get('content-length') ?? 0);
      log.total += size;
      log.downloads++;
      // One stream into the cache, its twin counted for the progress bar.
      const [toCache, toCount] = res.body.tee();
      const putting = cache.put(url, new Response(toCache, { headers: res.headers })).then(() => true, () => false);
      const reader = toCount.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        log.done += value.byteLength;
        log.onDownload(log.done, log.total);
      }
      if (!(await putting)) return plain.open(file);
      const stored = await cache.match(url);
      return stored ? blobSource(url, await stored.blob()) : plain.open(file);
    },
  };
}

/** The model a spec names, as the loader takes it: a directory, or a GGUF file's bytes; reads counted. */
async function openSource(spec: LoadSpec, counter: ReadCounter, log: CacheLog): Promise<ModelDir | ByteSource> {
  switch (spec.kind) {
    case 'builtin':
      // vite.config.ts serves assets/ at the page's root; the engine runs in a worker one folder below it.
      return counter.wrapDir(defaultModelDir(new URL('../tiny-llama-2-kjv/', self.location.href)));
    case 'folder': {
      const files: Record<string, File> = {};
      for (const f of spec.files) files[f.path] = f.file;
      return counter.wrapDir(mapDir(spec.name, files));
    }
    case 'gguf':
      return counter.wrap(blobSource(spec.file.name, spec.file));
    case 'url': {
      if (!isGgufUrl(spec.url)) return counter.wrapDir(cachedUrlDir(spec.url, log));
      const cut = spec.url.lastIndexOf('/', spec.url.search(/[?#]|$/) - 1);
      const src = await cachedUrlDir(spec.url.slice(0, cut + 1), log).open(spec.url.slice(cut + 1));
      if (!src) throw new LoadError('load_failed', `${spec.url}: not found (HTTP 404)`);
      return counter.wrap(src);
    }
  }
}

const isWeightFile = (file: string): boolean => file.endsWith('.safetensors');

/** Counts what is read from weight files, for the progress bar (bytes so far, and total size). */
class ReadCounter {
  read = 0;
  total = 0;
  constructor(private readonly onChange: (read: number, total: number) => void) {}

  /** `src`, counted: its size joins the total, its reads the bytes read. */
  wrap(src: ByteSource): ByteSource {
    this.total += src.size;
    this.onChange(this.read, this.total);
    const counted: ByteSource = {
      name: src.name,
      size: src.size,
      read: async (offset, length) => {
        const bytes = await src.read(offset, length);
        this.read += bytes.byteLength;
        this.onChange(this.read, this.total);
        return bytes;
      },
    };
    if (src.close) counted.close = () => src.close!();
    return counted;
  }

  /** `dir` with its weight files counted. */
  wrapDir(dir: ModelDir): ModelDir {
    return {
      name: dir.name,
      open: async (file) => {
        const src = await dir.open(file);
        return src && isWeightFile(file) ? this.wrap(src) : src;
      },
    };
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
  const counter = new ReadCounter((bytesRead, bytesTotal) => report({ phase: 'reading', bytesRead, bytesTotal }));
  const log = new CacheLog((bytesRead, bytesTotal) => report({ phase: 'downloading', bytesRead, bytesTotal }));
  let llama: LlamaEngine;
  try {
    llama = await loadLlamaEngine({
      model: await openSource(spec, counter, log),
      // One conversation at a time in a tab: one sequence's KV cache, not a server's batch.
      maxBatch: 1,
      ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.memoryBytes !== undefined ? { deviceMemoryBytes: options.memoryBytes } : {}),
      ...(options.context !== undefined ? { context: options.context } : {}),
      // The last tensor on the GPU ends the weights; what follows is building the kernels' pipelines.
      onProgress: (p) => report({ phase: p.done < p.total ? 'uploading' : 'compiling', bytesRead: counter.read, tensorsDone: p.done, tensorsTotal: p.total, tensor: p.tensor }),
    });
  } catch (e) {
    if (e instanceof LoadError) throw e;
    const message = (e as Error).message;
    throw new LoadError(failureKind(message), message);
  }
  const { model } = llama;
  let params = 0;
  for (const shape of expectedTensors(model.cfg).values()) params += shape.reduce((a, b) => a * b, 1);
  const info: LoadedModelInfo = {
    modelName: llama.engine.modelName,
    adapter: model.adapterName,
    dtype: model.format,
    weightBytes: model.weightBytes,
    params,
    contextLength: model.context,
    loadSeconds: (performance.now() - t0) / 1000,
    source: spec.kind === 'builtin' ? 'builtin' : spec.kind === 'url' ? (log.downloads === 0 && log.hits > 0 ? 'cache' : 'network') : 'files',
  };
  return { llama, info, lost: model.stages[0]!.gpu.lost, close: () => llama.close() };
}

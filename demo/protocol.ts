// The messages between the chat page and the engine's Web Worker. The page sends commands (load, chat,
// stop); the worker answers with events (progress, chunk, done, error) that carry the command's id.
// Everything here is structured-clone data: Files and bigints cross as they are.

import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from '../api/types.ts';

/** The Cache Storage API cache holding models loaded from URLs (the worker fills it, the page lists and clears it). */
export const MODEL_CACHE = 'llama2-webgpu-models';

/** Where a model comes from. A new source is a kind here and a case in open-engine.ts `locate`. */
export type LoadSpec =
  | { kind: 'builtin' } // the embedded default model, built in memory (no download)
  | { kind: 'folder'; name: string; files: { path: string; file: File }[] } // an HF directory the user picked
  | { kind: 'gguf'; file: File } // one llama.cpp GGUF file the user picked
  | { kind: 'url'; url: string }; // an HF directory, or a .gguf file, over HTTP; kept in the Cache Storage API

/** Weight formats on the GPU (kernels/weight-formats.ts); q8 and q4 are quantized while loading. */
export type WeightDtype = 'f32' | 'f16' | 'q8' | 'q4';

export interface LoadOptions {
  /** Default: f16 where the adapter has shader-f16, else f32. */
  dtype?: WeightDtype;
  /** GPU memory to plan for (WebGPU does not report it): a model that needs more is refused before loading. */
  memoryBytes?: number;
  /** Positions per sequence (prompt + answer); default: the model's, at most 4096. */
  context?: number;
}

export type PageCommand =
  | { type: 'load'; id: number; spec: LoadSpec; options: LoadOptions }
  | { type: 'chat'; id: number; request: ChatCompletionCreateParamsStreaming }
  /** How many prompt tokens `messages` make in the chat format (for the page's context counter). */
  | { type: 'count'; id: number; messages: ChatCompletionMessageParam[] }
  | { type: 'stop'; id: number };

export interface LoadProgressEvent {
  /**
   * building: the built-in model is generated in memory; downloading: a URL's files go into the cache;
   * reading/uploading: weights are read and put on the GPU; compiling: the GPU kernels are compiled.
   */
  phase: 'building' | 'downloading' | 'reading' | 'uploading' | 'compiling';
  /** Bytes downloaded (downloading) or read from the model's weight files (reading, uploading), of the total (0 until known). */
  bytesRead: number;
  bytesTotal: number;
  /** Tensors uploaded to the GPU so far, of `tensorsTotal`; `tensor` is the last one. */
  tensorsDone: number;
  tensorsTotal: number;
  tensor: string;
}

export interface LoadedModelInfo {
  modelName: string;
  adapter: string;
  dtype: string; // weight format on the GPU: f32 | f16
  weightBytes: number; // GPU bytes of the weights
  params: number; // parameter count
  contextLength: number;
  loadSeconds: number;
  /** Where the weights came from: generated, the user's files, the network, or the Cache Storage API. */
  source: 'builtin' | 'files' | 'network' | 'cache';
}

/** An error as plain data: APIError fields when it is one (status, type, param, code). */
export interface SerializedError {
  name: string;
  message: string;
  status?: number;
  type?: string;
  param?: string | null;
  code?: string | null;
}

/** Why a load or the whole engine failed; the page picks its message and remedy from this. */
export type FailureKind =
  | 'no_webgpu' // no navigator.gpu, no adapter, or no device
  | 'does_not_fit' // the adapter's limits or memory are too small for the model
  | 'device_lost' // the GPU device went away after loading (driver reset, GPU removed)
  | 'load_failed' // bad files, network errors, unsupported checkpoints
  | 'request'; // a chat request failed (validation, abort, generation error)

export type WorkerEvent =
  | { type: 'progress'; id: number; progress: LoadProgressEvent }
  | { type: 'chunk'; id: number; chunk: ChatCompletionChunk }
  /** Before a chat's first token: prompt tokens computed so far, of those not found in the prefix cache. */
  | { type: 'prefill'; id: number; done: number; total: number }
  | { type: 'count'; id: number; promptTokens: number }
  /** A load finished (with the model's info) or a chat stream ended normally. */
  | { type: 'done'; id: number; info?: LoadedModelInfo }
  | { type: 'error'; id: number | null; kind: FailureKind; error: SerializedError };

// The package's main entry, `import { ... } from 'llama2-webgpu'`: the engine, model loading and the
// tokenizer. It runs unchanged in a page (bundled or not), a Web Worker, Deno and Node, so nothing here
// may import a Node built-in: the HTTP server and the CLI live in `llama2-webgpu/server` (server.ts).
// In Node, WebGPU comes from the optional peer dependency `webgpu` (Dawn), loaded only when used.

// The declarations use WebGPU's types (GPUDevice, GPUBuffer): @webgpu/types, a dependency of this package.
/// <reference types="@webgpu/types" preserve="true" />

export { createGpuContext, type GpuContext, type DeviceOptions } from './runtime/device.ts';
export { LlamaModel, ContextOverflowError, type ModelOptions } from './runtime/model.ts';
export { openModelSource, type ModelSource } from './checkpoint/load.ts';
export { defaultModelDir, DEFAULT_MODEL_NAME } from './checkpoint/default-model.ts';
export { tinyRandomModelDir, tinyRandomModelFiles, TINY_RANDOM_MODEL_CONFIG, TINY_RANDOM_MODEL_NAME } from './checkpoint/tiny-random-model.ts';
export { parseHfConfig, type LlamaConfig } from './checkpoint/config.ts';
export { nodeDir, mapDir, urlDir, blobSource, bytesSource, type ModelDir, type ByteSource } from './checkpoint/byte-source.ts';
export { createSampler } from './runtime/sampler.ts';
export type { SamplingParams, TokenSampler, GenerationBackend, GenerateRequest, ModelInfo } from './runtime/generation-types.ts';
export type { LoadProgress } from './runtime/weights.ts';
export type { WeightFormat } from './kernels/weight-formats.ts';
export { LlamaTokenizer, StreamDecoder } from './tokenizer/index.ts';
export { loadLlamaEngine, HOSTED_MODEL_ID, type LlamaEngine, type LlamaEngineOptions } from './serve/llama-engine.ts';
export { createEngine, estimateCost, DEFAULT_PRICES } from './api/engine.ts';
export type { ChatCompletions, Engine, EngineOptions, Prices, RequestOptions } from './api/engine.ts';
export {
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
} from './api/errors.ts';
export { validateChatRequest, LIMITS } from './api/validate.ts';
export type * from './api/types.ts';
export { Scheduler, QueueFullError } from './runtime/scheduler.ts';
export { formatLlama2Chat } from './tokenizer/chat-template.ts';

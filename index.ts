// The package's ES module entry: `import { ... } from 'llama2-webgpu'`.

export { createGpuContext, type GpuContext, type DeviceOptions } from './runtime/device.ts';
export { LlamaModel, ContextOverflowError, type ModelOptions } from './runtime/model.ts';
export { openModelSource, type ModelSource } from './runtime/load.ts';
export { defaultModelDir, DEFAULT_MODEL_NAME } from './runtime/default-model.ts';
export { tinyRandomModelDir, tinyRandomModelFiles, TINY_RANDOM_MODEL_CONFIG, TINY_RANDOM_MODEL_NAME } from './runtime/tiny-random-model.ts';
export { parseHfConfig, type LlamaConfig } from './runtime/config.ts';
export { nodeDir, mapDir, urlDir, blobSource, bytesSource, type ModelDir, type ByteSource } from './runtime/byte-source.ts';
export { createSampler } from './runtime/sampler.ts';
export type { SamplingParams, TokenSampler, GenerationBackend, GenerateRequest, ModelInfo } from './runtime/generation-types.ts';
export { LlamaTokenizer, StreamDecoder } from './tokenizer/index.ts';
export { loadLlamaEngine, type LlamaEngine, type LlamaEngineOptions } from './api/llama-engine.ts';
export { createEngine, startServer, DEFAULT_PRICES } from './api/index.ts';
export type { Engine, ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams } from './api/index.ts';
export { Scheduler, QueueFullError } from './runtime/scheduler.ts';
export { formatLlama2Chat } from './tokenizer/chat-template.ts';

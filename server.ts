// `import { ... } from 'llama2-webgpu/server'`: the Node and Deno side of the package. Everything the
// main entry has, plus what needs a server runtime's built-ins: the OpenAI-compatible HTTP server
// (node:http), its SSE helpers and Prometheus text.

/// <reference types="@webgpu/types" preserve="true" />

export * from './index.ts';
export { startServer, type RunningServer, type ServerOptions } from './api/server.ts';
export { SSE_DONE, sseEvent } from './api/sse.ts';
export { prometheusText } from './serve/metrics.ts';

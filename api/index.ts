// The OpenAI-compatible API: in-process engine, HTTP server, wire types and errors.

export { createEngine, estimateCost, DEFAULT_PRICES } from './engine.ts';
export type { ChatCompletions, Engine, EngineOptions, Prices, RequestLogEntry, RequestOptions } from './engine.ts';
export { isLoopbackOrigin, startServer } from './server.ts';
export type { RunningServer, ServerOptions } from './server.ts';
export type { ChatStreamDecoder, ChatTokenizer, TemplateMessage } from './chat-tokenizer.ts';
export {
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ForbiddenOriginError,
  InternalServerError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  RequestTimeoutError,
} from './errors.ts';
export { validateChatRequest, LIMITS } from './validate.ts';
export type { ResponseFormat, ToolChoice, ValidatedChatRequest, ValidatedMessage } from './validate.ts';
export { buildTemplateMessages } from './prompt.ts';
export { parseToolCall, renderToolCalls, renderToolResult, renderToolsPrompt } from './tools.ts';
export { compileSchema, completionCost, toolCallAcceptor, valueAcceptor } from './json-constraint.ts';
export { checkSchema, MAX_SCHEMA_DEPTH } from './json-schema-check.ts';
export { parseRequestJson } from './raw-json.ts';
export { SSE_DONE, sseEvent } from './sse.ts';
export type * from './types.ts';

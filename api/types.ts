// OpenAI Chat Completions wire types, spelled exactly as the JSON (snake_case, literal types).
// Shapes follow the hosted Llama-2-70b-chat endpoint (DeepInfra's /v1/openai/chat/completions),
// which returns OpenAI's shapes plus `usage.estimated_cost` (USD).

// ---- Request ----

export interface ChatCompletionContentPartText {
  type: 'text';
  text: string;
}

export type ChatCompletionContent = string | ChatCompletionContentPartText[];

export interface ChatCompletionMessageToolCall {
  id: string;
  type: 'function';
  function: {
    name: string;
    /** The arguments as a JSON text (an object). */
    arguments: string;
  };
}

export interface ChatCompletionSystemMessageParam {
  role: 'system';
  content: ChatCompletionContent;
  name?: string;
}

/** OpenAI's newer name for the system message; treated exactly as `system`. */
export interface ChatCompletionDeveloperMessageParam {
  role: 'developer';
  content: ChatCompletionContent;
  name?: string;
}

export interface ChatCompletionUserMessageParam {
  role: 'user';
  content: ChatCompletionContent;
  name?: string;
}

export interface ChatCompletionAssistantMessageParam {
  role: 'assistant';
  content?: ChatCompletionContent | null;
  tool_calls?: ChatCompletionMessageToolCall[];
  name?: string;
}

export interface ChatCompletionToolMessageParam {
  role: 'tool';
  content: ChatCompletionContent;
  tool_call_id: string;
}

export type ChatCompletionMessageParam =
  | ChatCompletionSystemMessageParam
  | ChatCompletionDeveloperMessageParam
  | ChatCompletionUserMessageParam
  | ChatCompletionAssistantMessageParam
  | ChatCompletionToolMessageParam;

/** A JSON Schema object (the subset that constrained decoding follows is in json-constraint.ts). */
export type JsonSchema = { [key: string]: unknown };

export interface ChatCompletionTool {
  type: 'function';
  function: {
    name: string;
    description?: string;
    parameters?: JsonSchema;
  };
}

export interface ChatCompletionNamedToolChoice {
  type: 'function';
  function: { name: string };
}

export type ChatCompletionToolChoiceOption = 'none' | 'auto' | 'required' | ChatCompletionNamedToolChoice;

export interface ChatCompletionStreamOptions {
  include_usage?: boolean | null;
}

export interface ChatCompletionCreateParamsBase {
  model: string;
  messages: ChatCompletionMessageParam[];
  /** 0..2, default 1; 0 is greedy. */
  temperature?: number | null;
  /** (0, 1], default 1. */
  top_p?: number | null;
  /** [0, 1], default 0. */
  min_p?: number | null;
  /** 0..999, default 0 (off). */
  top_k?: number | null;
  /** 0..1000000 and at most the context left after the prompt; default: all of it. */
  max_tokens?: number | null;
  /** Newer OpenAI name of max_tokens; max_tokens wins when both are given. */
  max_completion_tokens?: number | null;
  /** -2..2, default 0. */
  presence_penalty?: number | null;
  /** -2..2, default 0. */
  frequency_penalty?: number | null;
  /** 0.01..5, default 1. */
  repetition_penalty?: number | null;
  /** 0..2^63-1. A bigint carries values above 2^53 exactly (the HTTP server parses them so). */
  seed?: number | bigint | null;
  /** Up to 4 strings; generation stops before the first one and never emits it. */
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: ChatCompletionStreamOptions | null;
  /** Accepted and logged as a hash; never echoed. */
  user?: string;
  tools?: ChatCompletionTool[];
  tool_choice?: ChatCompletionToolChoiceOption;
  /** 1..8 choices from the one prompt (default 1); choice i samples with seed + i. */
  n?: number | null;
  /** Log-probabilities of the generated tokens (see runtime/sampler.ts for the distribution). */
  logprobs?: boolean | null;
  /** 0..20 most likely alternatives per token; needs logprobs: true. */
  top_logprobs?: number | null;
  /** Free text (default), any JSON object, or JSON valid for a schema (constrained decoding). */
  response_format?: ResponseFormatParam | null;
}

export type ResponseFormatParam =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; description?: string; schema?: JsonSchema; strict?: boolean | null } };

export interface ChatCompletionCreateParamsNonStreaming extends ChatCompletionCreateParamsBase {
  stream?: false | null;
}

export interface ChatCompletionCreateParamsStreaming extends ChatCompletionCreateParamsBase {
  stream: true;
}

export type ChatCompletionCreateParams = ChatCompletionCreateParamsNonStreaming | ChatCompletionCreateParamsStreaming;

// ---- Response ----

export type ChatCompletionFinishReason = 'stop' | 'length' | 'tool_calls';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** USD: prompt_tokens * input price + completion_tokens * output price. */
  estimated_cost: number;
  /** Present when the backend caches prompt prefixes (continuous-batching server). */
  prompt_tokens_details?: { cached_tokens: number };
}

export interface ChatCompletionMessage {
  role: 'assistant';
  content: string | null;
  tool_calls?: ChatCompletionMessageToolCall[];
}

export interface ChatCompletionTopLogprob {
  token: string;
  /** Natural log; -9999 for a token of probability 0. */
  logprob: number;
  /** The token's UTF-8 bytes (a token may hold part of a character). */
  bytes: number[] | null;
}

export interface ChatCompletionTokenLogprob extends ChatCompletionTopLogprob {
  top_logprobs: ChatCompletionTopLogprob[];
}

export interface ChatCompletionChoiceLogprobs {
  content: ChatCompletionTokenLogprob[] | null;
  refusal: null;
}

export interface ChatCompletionChoice {
  index: number;
  message: ChatCompletionMessage;
  finish_reason: ChatCompletionFinishReason;
  logprobs: ChatCompletionChoiceLogprobs | null;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage: CompletionUsage;
}

export interface ChatCompletionChunkToolCall {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChatCompletionChunkDelta {
  role?: 'assistant';
  content?: string | null;
  tool_calls?: ChatCompletionChunkToolCall[];
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: ChatCompletionChunkDelta;
  finish_reason: ChatCompletionFinishReason | null;
  logprobs: ChatCompletionChoiceLogprobs | null;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChatCompletionChunkChoice[];
  /**
   * The totals on the final chunk (the one with the last finish_reason), as DeepInfra's streams; with
   * stream_options.include_usage also null on every other chunk and the totals on a last chunk without choices.
   */
  usage?: CompletionUsage | null;
}

export interface Model {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** llama2-webgpu: the model's own sampling defaults (generation_config.json), applied to requests that omit them. */
  sampling_defaults?: Record<string, number>;
}

export interface ModelList {
  object: 'list';
  data: Model[];
}

export interface ErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export interface ErrorBody {
  error: ErrorObject;
}

// The in-process OpenAI-compatible engine: engine.chat.completions.create(request) over a
// GenerationBackend and a ChatTokenizer.
//
// One request: validate (the model's sampling defaults fill what it omits) -> build the chat prompt (the
// model's template, else Llama-2's; tools in the system prompt) -> check the
// context -> sampler -> backend.generate() -> stream decoder (whole UTF-8 characters) -> stop
// strings -> ChatCompletion, or ChatCompletionChunks when stream: true.
//
// Contract with the backend: it masks the logits with allowedTokens (disallowed ids -> -Infinity)
// when given, calls sampler.sample(logits) then sampler.accept(token) for each token, yields each
// token (EOS last when it ends the sequence), stops after maxTokens, and ends promptly when
// `signal` aborts or when the consumer calls return() on its generator.

import type { GenerationBackend, ModelInfo } from '../runtime/generation-types.ts';
import { createSampler } from '../runtime/sampler.ts';
import type { ChatTokenizer } from './chat-tokenizer.ts';
import { APIUserAbortError, BadRequestError, NotFoundError } from './errors.ts';
import { toolCallAcceptor } from './json-constraint.ts';
import { buildTemplateMessages } from './prompt.ts';
import { applySamplingDefaults } from './sampling-defaults.ts';
import { samplingDefaultsWire, type SamplingDefaults } from '../runtime/generation-defaults.ts';
import { StopMatcher } from './stop-matcher.ts';
import { constrainTokens } from './token-mask.ts';
import { mayBeToolCall, newToolCallId, parseToolCall, randomAlnum } from './tools.ts';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionChunkDelta,
  ChatCompletionCreateParams,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionFinishReason,
  ChatCompletionMessage,
  ChatCompletionTool,
  CompletionUsage,
  ModelList,
} from './types.ts';
import { type ValidatedChatRequest, validateChatRequest } from './validate.ts';

/** USD per million tokens. */
export interface Prices {
  inputPerMTok: number;
  outputPerMTok: number;
}

/** The hosted Llama-2-70b-chat's published price (DeepInfra): $0.64 in / $0.80 out per 1M tokens. */
export const DEFAULT_PRICES: Prices = { inputPerMTok: 0.64, outputPerMTok: 0.8 };

/** One line per finished request, for logs. The `user` field appears only as a SHA-256 prefix. */
export interface RequestLogEntry {
  id: string;
  model: string;
  stream: boolean;
  userHash: string | null; // first 16 hex digits of SHA-256(user)
  promptTokens: number;
  completionTokens: number;
  outcome: ChatCompletionFinishReason | 'aborted' | 'error';
  durationMs: number;
}

export interface EngineOptions {
  backend: GenerationBackend;
  tokenizer: ChatTokenizer;
  /** The served name: the `model` of responses and of GET /v1/models. */
  modelName: string;
  /** Other names accepted in requests (e.g. "meta-llama/Llama-2-70b-chat-hf"). */
  aliases?: string[];
  /** Default DEFAULT_PRICES. */
  prices?: Prices;
  ownedBy?: string;
  onRequestLog?: (entry: RequestLogEntry) => void;
  /** The model's sampling defaults (generation_config.json): used for what a request leaves out; shown by models.list(). */
  samplingDefaults?: SamplingDefaults;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface ChatCompletions {
  create(body: ChatCompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<ChatCompletion>;
  create(body: ChatCompletionCreateParamsStreaming, options?: RequestOptions): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(body: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export interface Engine {
  readonly modelName: string;
  readonly modelInfo: ModelInfo;
  readonly chat: { readonly completions: ChatCompletions };
  readonly models: { list(): ModelList };
}

/** prompt * input price + completion * output price, in USD, rounded to 1e-10. */
export function estimateCost(promptTokens: number, completionTokens: number, prices: Prices): number {
  const usd = (promptTokens * prices.inputPerMTok + completionTokens * prices.outputPerMTok) / 1e6;
  return Number(usd.toFixed(10));
}

/** A request after validation and prompt building, ready to generate. */
interface Prepared {
  id: string;
  created: number;
  req: ValidatedChatRequest;
  promptTokens: number[];
  maxTokens: number;
  /** Tools whose calls are recognised in the answer; [] when tools are off. */
  callableTools: ChatCompletionTool[];
  /** A call is required: hold all text until the end. */
  callRequired: boolean;
  allowedTokens?: (generated: number[]) => Uint8Array | null;
  userHash: Promise<string | null>;
  startMs: number;
  /** Filled in by the backend: prompt tokens served from its prefix cache. */
  stats: { cachedTokens?: number };
}

interface GenerationResult {
  finishReason: 'stop' | 'length';
  completionTokens: number;
}

async function sha256Prefix(text: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
}

export function createEngine(opts: EngineOptions): Engine {
  const { backend, tokenizer, modelName } = opts;
  const prices = opts.prices ?? DEFAULT_PRICES;
  const names = new Set([modelName, ...(opts.aliases ?? [])]);
  const createdAt = Math.floor(Date.now() / 1000);
  const log = opts.onRequestLog;

  function prepare(body: unknown): Prepared {
    const req = applySamplingDefaults(validateChatRequest(body), body, opts.samplingDefaults);
    if (!names.has(req.model)) {
      throw new NotFoundError(`The model '${req.model}' does not exist or is not served here.`, 'model', 'model_not_found');
    }
    const promptTokens = tokenizer.formatChat(buildTemplateMessages(req));
    const ctx = backend.modelInfo.contextLength;
    if (promptTokens.length > ctx) {
      throw new BadRequestError(
        `This model's maximum context length is ${ctx} tokens. However, your messages resulted in ${promptTokens.length} tokens.`,
        'messages',
        'context_length_exceeded',
      );
    }
    const left = ctx - promptTokens.length;
    if (req.maxTokens !== null && req.maxTokens > left) {
      throw new BadRequestError(
        `This model's maximum context length is ${ctx} tokens. However, you requested ${promptTokens.length + req.maxTokens} tokens ` +
          `(${promptTokens.length} in the messages, ${req.maxTokens} in the completion). Reduce max_tokens to at most ${left}.`,
        'max_tokens',
        'context_length_exceeded',
      );
    }
    const choice = req.toolChoice;
    const callableTools =
      choice.type === 'none' ? [] : choice.type === 'function' ? req.tools.filter((t) => t.function.name === choice.name) : req.tools;
    const callRequired = choice.type === 'function' || choice.type === 'required';
    const prepared: Prepared = {
      id: `chatcmpl-${randomAlnum(24)}`,
      created: Math.floor(Date.now() / 1000),
      req,
      promptTokens,
      maxTokens: req.maxTokens ?? left,
      callableTools,
      callRequired,
      // Only for the log; crypto.subtle is missing outside secure browser contexts.
      userHash: log && req.user !== null ? sha256Prefix(req.user).catch(() => null) : Promise.resolve(null),
      startMs: Date.now(),
      stats: {},
    };
    if (callRequired && tokenizer.tokenTexts) {
      prepared.allowedTokens = constrainTokens(
        toolCallAcceptor(callableTools),
        tokenizer.tokenTexts(),
        tokenizer.eosId,
        backend.modelInfo.vocabSize,
      );
    }
    return prepared;
  }

  /** Runs the backend; yields text that is safe to show (whole characters, no stop string parts). */
  async function* generateText(p: Prepared, signal: AbortSignal | undefined): AsyncGenerator<string, GenerationResult> {
    if (signal?.aborted) throw new APIUserAbortError();
    let completionTokens = 0;
    if (p.maxTokens === 0) return { finishReason: 'length', completionTokens };
    const inner = new AbortController(); // aborts the backend when this generator is left early
    const onAbort = () => inner.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort);
    const decoder = tokenizer.createStreamDecoder();
    const stop = new StopMatcher(p.req.stop);
    let finishReason: 'stop' | 'length' = 'length';
    let done = false;
    const tokens = backend.generate({
      promptTokens: p.promptTokens,
      maxTokens: p.maxTokens,
      sampler: createSampler(p.req.sampling, p.promptTokens),
      ...(p.allowedTokens ? { allowedTokens: p.allowedTokens } : {}),
      signal: inner.signal,
      stats: p.stats,
    });
    try {
      let stopped = false;
      for (;;) {
        const next = await tokens.next();
        if (next.done || signal?.aborted) break;
        const token = next.value;
        completionTokens++;
        if (token === tokenizer.eosId) {
          finishReason = 'stop';
          break;
        }
        const out = stop.push(decoder.push(token));
        if (out.text) yield out.text;
        if (out.stopped) {
          finishReason = 'stop';
          stopped = true;
          break;
        }
        if (completionTokens >= p.maxTokens) break;
      }
      if (signal?.aborted) throw new APIUserAbortError();
      if (!stopped) {
        const out = stop.push(decoder.flush());
        const rest = out.text + stop.flush();
        if (out.stopped) finishReason = 'stop';
        if (rest) yield rest;
      }
      done = true;
      return { finishReason, completionTokens };
    } catch (err) {
      if (signal?.aborted) throw new APIUserAbortError();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // Left early (caller gone, error): fire the backend's signal first, then close its generator.
      if (!done) inner.abort(new Error('generation cancelled'));
      await tokens.return(undefined);
    }
  }

  function usage(p: Prepared, completionTokens: number): CompletionUsage {
    const promptTokens = p.promptTokens.length;
    return {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      estimated_cost: estimateCost(promptTokens, completionTokens, prices),
      ...(p.stats.cachedTokens !== undefined ? { prompt_tokens_details: { cached_tokens: p.stats.cachedTokens } } : {}),
    };
  }

  async function report(p: Prepared, completionTokens: number, outcome: RequestLogEntry['outcome']): Promise<void> {
    if (!log) return;
    log({
      id: p.id,
      model: modelName,
      stream: p.req.stream,
      userHash: await p.userHash,
      promptTokens: p.promptTokens.length,
      completionTokens,
      outcome,
      durationMs: Date.now() - p.startMs,
    });
  }

  async function complete(p: Prepared, signal: AbortSignal | undefined): Promise<ChatCompletion> {
    const it = generateText(p, signal);
    let text = '';
    let r: IteratorResult<string, GenerationResult>;
    try {
      while (!(r = await it.next()).done) text += r.value;
    } catch (err) {
      await report(p, 0, err instanceof APIUserAbortError ? 'aborted' : 'error');
      throw err;
    }
    const result = r.value;
    let message: ChatCompletionMessage = { role: 'assistant', content: text };
    let finish: ChatCompletionFinishReason = result.finishReason;
    const call = p.callableTools.length > 0 ? parseToolCall(text, p.callableTools) : null;
    if (call) {
      message = { role: 'assistant', content: null, tool_calls: [{ id: newToolCallId(), type: 'function', function: call }] };
      finish = 'tool_calls';
    }
    await report(p, result.completionTokens, finish);
    return {
      id: p.id,
      object: 'chat.completion',
      created: p.created,
      model: modelName,
      choices: [{ index: 0, message, finish_reason: finish, logprobs: null }],
      usage: usage(p, result.completionTokens),
    };
  }

  async function* stream(p: Prepared, signal: AbortSignal | undefined): AsyncGenerator<ChatCompletionChunk> {
    const withUsage = p.req.includeUsage;
    const chunk = (delta: ChatCompletionChunkDelta, finish: ChatCompletionFinishReason | null): ChatCompletionChunk => ({
      id: p.id,
      object: 'chat.completion.chunk',
      created: p.created,
      model: modelName,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      ...(withUsage ? { usage: null } : {}),
    });
    let outcome: RequestLogEntry['outcome'] = 'aborted'; // until it finishes (a consumer may stop early)
    let completionTokens = 0;
    const it = generateText(p, signal);
    try {
      yield chunk({ role: 'assistant', content: '' }, null);
      // While the answer may be a tool call, hold the text back; release it once it cannot be.
      let holding = p.callableTools.length > 0;
      let held = '';
      let r: IteratorResult<string, GenerationResult>;
      while (!(r = await it.next()).done) {
        if (holding) {
          held += r.value;
          if (p.callRequired || mayBeToolCall(held)) continue;
          holding = false;
          yield chunk({ content: held }, null);
          held = '';
        } else {
          yield chunk({ content: r.value }, null);
        }
      }
      const result = r.value;
      completionTokens = result.completionTokens;
      let finish: ChatCompletionFinishReason = result.finishReason;
      if (held) {
        const call = parseToolCall(held, p.callableTools);
        if (call) {
          finish = 'tool_calls';
          yield chunk({ tool_calls: [{ index: 0, id: newToolCallId(), type: 'function', function: call }] }, null);
        } else {
          yield chunk({ content: held }, null);
        }
      }
      yield chunk({}, finish);
      if (withUsage) {
        yield {
          id: p.id,
          object: 'chat.completion.chunk',
          created: p.created,
          model: modelName,
          choices: [],
          usage: usage(p, completionTokens),
        };
      }
      outcome = finish;
    } catch (err) {
      if (!(err instanceof APIUserAbortError)) outcome = 'error';
      throw err;
    } finally {
      await it.return(undefined as never); // a consumer that stopped early: end the generation now
      await report(p, completionTokens, outcome);
    }
  }

  async function create(body: ChatCompletionCreateParams, options: RequestOptions = {}): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const p = prepare(body);
    backend.assertCapacity?.(); // a full queue is a 429 before any response starts
    if (p.req.stream) return stream(p, options.signal);
    return complete(p, options.signal);
  }

  return {
    modelName,
    get modelInfo() {
      return backend.modelInfo;
    },
    chat: { completions: { create: create as ChatCompletions['create'] } },
    models: {
      list: () => ({
        object: 'list',
        data: [...names].map((id) => ({
          id, object: 'model', created: createdAt, owned_by: opts.ownedBy ?? 'llama2-webgpu',
          ...(opts.samplingDefaults && Object.keys(opts.samplingDefaults).length > 0 ? { sampling_defaults: samplingDefaultsWire(opts.samplingDefaults) } : {}),
        })),
      }),
    },
  };
}

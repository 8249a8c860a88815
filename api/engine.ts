// The in-process OpenAI-compatible engine: engine.chat.completions.create(request) over a
// GenerationBackend and a ChatTokenizer.
//
// One request: validate (the model's sampling defaults fill what it omits) -> a cheap size check (a prompt
// that cannot fit is refused before it is tokenized) -> build the chat prompt (the model's template, else
// Llama-2's; tools in the system prompt) -> check the context -> one sampler per choice (n) ->
// backend.generate() -> stream decoder (whole UTF-8 characters) -> stop
// strings -> ChatCompletion, or ChatCompletionChunks when stream: true.
//
// Contract with the backend: it masks the logits with allowedTokens (disallowed ids -> -Infinity)
// when given, calls sampler.sample(logits) then sampler.accept(token) for each token, yields each
// token (EOS last when it ends the sequence), stops after maxTokens, and ends promptly when
// `signal` aborts or when the consumer calls return() on its generator.

import { contextLeft, type GenerationBackend, type ModelInfo, type TokenLogprob, type TokenSampler } from '../runtime/generation-types.ts';
import { createSampler, MAX_SEED } from '../runtime/sampler.ts';
import type { ChatTokenizer } from './chat-tokenizer.ts';
import { APIUserAbortError, BadRequestError, NotFoundError } from './errors.ts';
import { completionCost, toolCallAcceptor, valueAcceptor } from './json-constraint.ts';
import { buildTemplateMessages } from './prompt.ts';
import { applySamplingDefaults, samplingDefaultsWire, type SamplingDefaults } from './sampling-defaults.ts';
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
  ChatCompletionTokenLogprob,
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
  /**
   * The bytes each token id stands for (logprobs' `token`/`bytes`); default: from the tokenizer's
   * tokenTexts(), else its decode().
   */
  tokenBytes?: (id: number) => Uint8Array;
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
  /** A fresh constrained-decoding hook per choice (each follows its own tokens). */
  allowedTokens?: () => (generated: number[]) => Uint8Array | null;
  userHash: Promise<string | null>;
  startMs: number;
  /** Filled in by the backend per choice: prompt tokens served from its prefix cache. */
  stats: { cachedTokens?: number }[];
}

interface GenerationResult {
  finishReason: 'stop' | 'length';
  completionTokens: number;
}

/** Text safe to show (whole characters, no stop-string parts) and the logprobs of the tokens behind it. */
interface TextPiece {
  text: string;
  logprobs: ChatCompletionTokenLogprob[] | null;
}

async function sha256Prefix(text: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** UTF-8 length of `s` without allocating (lone surrogates count 3, as TextEncoder writes U+FFFD). */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Seed of choice `i`: the request's seed + i (mod 2^63), so choice i repeats a single request with that seed. */
function choiceSeed(seed: bigint | undefined, i: number): bigint | undefined {
  return seed === undefined ? undefined : (seed + BigInt(i)) % (MAX_SEED + 1n);
}

/** The hint added to the system prompt for JSON output (decoding enforces it; the hint helps a model aim). */
function jsonInstruction(req: ValidatedChatRequest): string | null {
  const f = req.responseFormat;
  if (f.type === 'json_object') return 'Answer with only one JSON object and no other text.';
  if (f.type === 'json_schema') return `Answer with only one JSON object and no other text, valid for this JSON Schema:\n${JSON.stringify(f.schema)}`;
  return null;
}

const MIN_LOGPROB = -9999; // what OpenAI reports for a token of probability 0

/**
 * Merges the choices' generators: choice 0 starts first and the others once it has its first token
 * (its prompt is then prefilled and in the backend's prefix cache, so they reuse it).
 */
async function* mergeChoices<T, R>(
  n: number,
  start: (index: number, onFirstToken: () => void, stop: AbortSignal) => AsyncGenerator<T, R>,
): AsyncGenerator<{ index: number; value: T } | { index: number; done: R }> {
  // Fired when the merge is left early: the generations still running end at once (a pending next()
  // would otherwise hold their return() until their next token).
  const stop = new AbortController();
  let finished = false;
  const gens: (AsyncGenerator<T, R> | null)[] = new Array(n).fill(null);
  const pending = new Map<number, Promise<{ index: number; r: IteratorResult<T, R> }>>();
  const arm = (i: number) => pending.set(i, gens[i]!.next().then((r) => ({ index: i, r })));
  let released = n === 1;
  let releaseRest!: () => void;
  const rest = new Promise<{ index: -1; r: null }>((r) => (releaseRest = () => r({ index: -1, r: null })));
  gens[0] = start(0, () => releaseRest(), stop.signal);
  arm(0);
  try {
    while (pending.size || !released) {
      const next = await Promise.race<{ index: number; r: IteratorResult<T, R> | null }>([...pending.values(), ...(released ? [] : [rest])]);
      if (next.r === null) {
        released = true;
        for (let i = 1; i < n; i++) {
          gens[i] = start(i, () => {}, stop.signal);
          arm(i);
        }
        continue;
      }
      const { index, r } = next;
      pending.delete(index);
      if (r.done) {
        if (index === 0 && !released) releaseRest(); // ended before a token: start the others anyway
        yield { index, done: r.value };
      } else {
        yield { index, value: r.value };
        arm(index);
      }
    }
    finished = true;
  } finally {
    // Left early (error, consumer gone): end every generation still running.
    if (!finished) stop.abort(new Error('generation cancelled'));
    await Promise.all(gens.map((g) => g?.return(undefined as never).catch(() => {})));
  }
}

export function createEngine(opts: EngineOptions): Engine {
  const { backend, tokenizer, modelName } = opts;
  const prices = opts.prices ?? DEFAULT_PRICES;
  const names = new Set([modelName, ...(opts.aliases ?? [])]);
  const createdAt = Math.floor(Date.now() / 1000);
  const log = opts.onRequestLog;

  // Each token covers at most this many bytes of text (the longest piece of the vocabulary), so a
  // text of B UTF-8 bytes is at least ceil(B / maxPieceBytes) tokens: checked before tokenizing.
  let maxPieceBytes: number | null | undefined;
  function pieceBound(): number | null {
    if (maxPieceBytes === undefined) {
      const texts = tokenizer.tokenTexts?.();
      if (!texts) maxPieceBytes = null;
      else {
        let m = 1; // byte-fallback pieces (null here) cover one byte
        for (const t of texts) if (t) m = Math.max(m, utf8Length(t));
        maxPieceBytes = m;
      }
    }
    return maxPieceBytes;
  }

  const byteCache = new Map<number, Uint8Array>();
  const utf8 = new TextEncoder();
  function bytesOf(id: number): Uint8Array {
    let b = byteCache.get(id);
    if (!b) {
      if (opts.tokenBytes) b = opts.tokenBytes(id);
      else {
        const t = tokenizer.tokenTexts?.()[id];
        b = utf8.encode(t ?? tokenizer.decode([id]));
      }
      byteCache.set(id, b);
    }
    return b;
  }
  const tokenDecoder = new TextDecoder(); // non-fatal: a partial UTF-8 character shows as U+FFFD
  function wireLogprob(lp: TokenLogprob): ChatCompletionTokenLogprob {
    const entry = (token: number, logprob: number) => {
      const bytes = bytesOf(token);
      return { token: tokenDecoder.decode(bytes), logprob: Math.max(MIN_LOGPROB, logprob), bytes: Array.from(bytes) };
    };
    return { ...entry(lp.token, lp.logprob), top_logprobs: lp.top.map((t) => entry(t.token, t.logprob)) };
  }

  async function prepare(body: unknown): Promise<Prepared> {
    const req = applySamplingDefaults(validateChatRequest(body), body, opts.samplingDefaults);
    if (!names.has(req.model)) {
      throw new NotFoundError(`The model '${req.model}' does not exist or is not served here.`, 'model', 'model_not_found');
    }
    const ctx = backend.modelInfo.contextLength;
    const tooLong = (tokens: string) =>
      new BadRequestError(
        `This model's maximum context length is ${ctx} tokens. However, your messages resulted in ${tokens} tokens.`,
        'messages',
        'context_length_exceeded',
      );
    const bound = pieceBound();
    if (bound !== null) {
      let bytes = 0;
      for (const m of req.messages) {
        if (m.content) bytes += utf8Length(m.content.trim());
        if (m.role === 'assistant') for (const c of m.toolCalls) bytes += utf8Length(c.function.arguments.trim());
      }
      const atLeast = Math.ceil(bytes / bound);
      if (contextLeft(ctx, atLeast) < 0) throw tooLong(`at least ${atLeast}`);
    }
    const messages = buildTemplateMessages(req);
    const hint = jsonInstruction(req);
    if (hint !== null) {
      if (messages[0]?.role === 'system') messages[0] = { role: 'system', content: `${messages[0].content}\n\n${hint}` };
      else messages.unshift({ role: 'system', content: hint });
    }
    await new Promise((r) => setTimeout(r, 0)); // let other requests' work run before tokenizing
    const promptTokens = tokenizer.formatChat(messages);
    const left = contextLeft(ctx, promptTokens.length);
    if (left < 0) throw tooLong(String(promptTokens.length));
    // max_tokens is an upper bound: capped at the room the context leaves.
    const maxTokens = Math.min(req.maxTokens ?? left, left);
    const choice = req.toolChoice;
    const callableTools =
      choice.type === 'none' ? [] : choice.type === 'function' ? req.tools.filter((t) => t.function.name === choice.name) : req.tools;
    const callRequired = choice.type === 'function' || choice.type === 'required';
    const prepared: Prepared = {
      id: `chatcmpl-${randomAlnum(24)}`,
      created: Math.floor(Date.now() / 1000),
      req,
      promptTokens,
      maxTokens,
      callableTools,
      callRequired,
      // Only for the log; crypto.subtle is missing outside secure browser contexts.
      userHash: log && req.user !== null ? sha256Prefix(req.user).catch(() => null) : Promise.resolve(null),
      startMs: Date.now(),
      stats: Array.from({ length: req.n }, () => ({})),
    };
    const format = req.responseFormat;
    const acceptor = callRequired
      ? () => toolCallAcceptor(callableTools)
      : format.type === 'json_schema'
        ? () => valueAcceptor(format.schema)
        : format.type === 'json_object'
          ? () => valueAcceptor({ type: 'object' })
          : null;
    if (acceptor && tokenizer.tokenTexts) {
      // Every ASCII character is a token, so the shortest valid answer needs at most its length in
      // tokens, plus EOS: constrained answers end within max_tokens (token-mask.ts).
      const shortest = completionCost(acceptor());
      if (shortest + 1 > maxTokens) {
        throw new BadRequestError(
          `Invalid value for 'max_tokens': ${maxTokens} tokens${maxTokens === left ? ' (the context left)' : ''} may not hold the shortest answer valid ` +
            `for the ${callRequired ? 'tool call' : 'response_format'} (${shortest} characters) and its end; allow at least ${shortest + 1}.`,
          'max_tokens',
        );
      }
      const texts = tokenizer.tokenTexts();
      const { eosId } = tokenizer;
      const { vocabSize } = backend.modelInfo;
      prepared.allowedTokens = () => constrainTokens(acceptor(), texts, eosId, vocabSize, maxTokens);
    } else if (acceptor && format.type !== 'text' && !callRequired) {
      throw new BadRequestError("'response_format' needs a tokenizer that lists its token texts; this one does not.", 'response_format');
    }
    return prepared;
  }

  /** Runs the backend for choice `index`; yields text that is safe to show, with the logprobs of its tokens. */
  async function* generateText(
    p: Prepared,
    index: number,
    signal: AbortSignal | undefined,
    onFirstToken: () => void = () => {},
    abandoned?: AbortSignal, // the request no longer wants this choice: end quietly
  ): AsyncGenerator<TextPiece, GenerationResult> {
    if (signal?.aborted) throw new APIUserAbortError();
    let completionTokens = 0;
    if (p.maxTokens === 0) return { finishReason: 'length', completionTokens };
    const inner = new AbortController(); // aborts the backend when this generator is left early
    const onAbort = () => inner.abort(signal?.reason);
    const onAbandon = () => inner.abort(abandoned?.reason);
    signal?.addEventListener('abort', onAbort);
    abandoned?.addEventListener('abort', onAbandon);
    const decoder = tokenizer.createStreamDecoder();
    const stop = new StopMatcher(p.req.stop);
    let finishReason: 'stop' | 'length' = 'length';
    let done = false;
    const withLogprobs = p.req.topLogprobs !== null;
    const params = { ...p.req.sampling };
    const seed = choiceSeed(params.seed, index);
    if (seed !== undefined) params.seed = seed;
    const sampler: TokenSampler = createSampler(params, p.promptTokens, withLogprobs ? { topLogprobs: p.req.topLogprobs! } : {});
    let pendingLogprobs: ChatCompletionTokenLogprob[] = [];
    const piece = (text: string): TextPiece => {
      const lp = withLogprobs ? pendingLogprobs : null;
      pendingLogprobs = [];
      return { text, logprobs: lp };
    };
    const tokens = backend.generate({
      promptTokens: p.promptTokens,
      maxTokens: p.maxTokens,
      sampler,
      ...(p.allowedTokens ? { allowedTokens: p.allowedTokens() } : {}),
      signal: inner.signal,
      stats: p.stats[index]!,
      ...(index > 0 ? { capacityChecked: true } : {}),
    });
    try {
      let stopped = false;
      for (;;) {
        const next = await tokens.next();
        if (next.done || signal?.aborted) break;
        const token = next.value;
        if (completionTokens === 0) onFirstToken();
        completionTokens++;
        const lp = sampler.logprobs?.shift();
        if (token === tokenizer.eosId) {
          finishReason = 'stop';
          break;
        }
        if (lp) pendingLogprobs.push(wireLogprob(lp));
        const out = stop.push(decoder.push(token));
        if (out.text || (withLogprobs && !out.stopped)) yield piece(out.text);
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
        if (rest || pendingLogprobs.length) yield piece(rest);
      }
      done = true;
      return { finishReason, completionTokens };
    } catch (err) {
      if (signal?.aborted) throw new APIUserAbortError();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      abandoned?.removeEventListener('abort', onAbandon);
      // Left early (caller gone, error): fire the backend's signal first, then close its generator.
      if (!done) inner.abort(new Error('generation cancelled'));
      await tokens.return(undefined);
    }
  }

  function usage(p: Prepared, completionTokens: number): CompletionUsage {
    const promptTokens = p.promptTokens.length;
    const cached = p.stats[0]?.cachedTokens;
    return {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      estimated_cost: estimateCost(promptTokens, completionTokens, prices),
      ...(cached !== undefined ? { prompt_tokens_details: { cached_tokens: cached } } : {}),
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
    const n = p.req.n;
    const texts: string[] = new Array(n).fill('');
    const logprobs: ChatCompletionTokenLogprob[][] = Array.from({ length: n }, () => []);
    const results: GenerationResult[] = new Array(n);
    try {
      for await (const ev of mergeChoices(n, (i, first, abandoned) => generateText(p, i, signal, first, abandoned))) {
        if ('done' in ev) results[ev.index] = ev.done;
        else {
          texts[ev.index] += ev.value.text;
          for (const lp of ev.value.logprobs ?? []) logprobs[ev.index]!.push(lp);
        }
      }
    } catch (err) {
      await report(p, 0, err instanceof APIUserAbortError ? 'aborted' : 'error');
      throw err;
    }
    let completionTokens = 0;
    const choices = results.map((result, index) => {
      completionTokens += result.completionTokens;
      const text = texts[index]!;
      let message: ChatCompletionMessage = { role: 'assistant', content: text };
      let finish: ChatCompletionFinishReason = result.finishReason;
      const call = p.callableTools.length > 0 ? parseToolCall(text, p.callableTools) : null;
      if (call) {
        message = { role: 'assistant', content: null, tool_calls: [{ id: newToolCallId(), type: 'function', function: call }] };
        finish = 'tool_calls';
      }
      const lp = p.req.topLogprobs !== null ? { content: logprobs[index]!, refusal: null } : null;
      return { index, message, finish_reason: finish, logprobs: lp };
    });
    await report(p, completionTokens, choices[0]!.finish_reason);
    return {
      id: p.id,
      object: 'chat.completion',
      created: p.created,
      model: p.req.model,
      choices,
      usage: usage(p, completionTokens),
    };
  }

  async function* stream(p: Prepared, signal: AbortSignal | undefined): AsyncGenerator<ChatCompletionChunk> {
    const withUsage = p.req.includeUsage;
    const withLogprobs = p.req.topLogprobs !== null;
    const n = p.req.n;
    const chunk = (
      index: number,
      delta: ChatCompletionChunkDelta,
      finish: ChatCompletionFinishReason | null,
      lp: ChatCompletionTokenLogprob[] | null = null,
    ): ChatCompletionChunk => ({
      id: p.id,
      object: 'chat.completion.chunk',
      created: p.created,
      model: p.req.model,
      choices: [{ index, delta, finish_reason: finish, logprobs: lp && withLogprobs ? { content: lp, refusal: null } : null }],
      ...(withUsage ? { usage: null } : {}),
    });
    let outcome: RequestLogEntry['outcome'] = 'aborted'; // until it finishes (a consumer may stop early)
    let completionTokens = 0;
    // While an answer may be a tool call, its text is held back; released once it cannot be.
    const holding: boolean[] = new Array(n).fill(p.callableTools.length > 0);
    const held: string[] = new Array(n).fill('');
    const heldLogprobs: ChatCompletionTokenLogprob[][] = Array.from({ length: n }, () => []);
    let firstFinish: ChatCompletionFinishReason | null = null;
    let left = n;
    try {
      for (let i = 0; i < n; i++) yield chunk(i, { role: 'assistant', content: '' }, null);
      for await (const ev of mergeChoices(n, (i, first, abandoned) => generateText(p, i, signal, first, abandoned))) {
        const i = ev.index;
        if (!('done' in ev)) {
          const { text, logprobs } = ev.value;
          if (holding[i]) {
            held[i] += text;
            for (const lp of logprobs ?? []) heldLogprobs[i]!.push(lp);
            if (p.callRequired || mayBeToolCall(held[i]!)) continue;
            holding[i] = false;
            yield chunk(i, { content: held[i] }, null, heldLogprobs[i]!);
            held[i] = '';
            heldLogprobs[i] = [];
          } else if (text || logprobs?.length) {
            yield chunk(i, { content: text }, null, logprobs);
          }
          continue;
        }
        completionTokens += ev.done.completionTokens;
        let finish: ChatCompletionFinishReason = ev.done.finishReason;
        if (held[i]) {
          const call = parseToolCall(held[i]!, p.callableTools);
          if (call) {
            finish = 'tool_calls';
            yield chunk(i, { tool_calls: [{ index: 0, id: newToolCallId(), type: 'function', function: call }] }, null, heldLogprobs[i]!);
          } else {
            yield chunk(i, { content: held[i] }, null, heldLogprobs[i]!);
          }
        }
        left--;
        const last = chunk(i, {}, finish);
        // DeepInfra's streams carry the usage on the final chunk (the one with finish_reason).
        if (left === 0) last.usage = usage(p, completionTokens);
        if (i === 0) firstFinish = finish;
        yield last;
      }
      if (withUsage) {
        yield {
          id: p.id,
          object: 'chat.completion.chunk',
          created: p.created,
          model: p.req.model,
          choices: [],
          usage: usage(p, completionTokens),
        };
      }
      outcome = firstFinish ?? 'stop';
    } catch (err) {
      if (!(err instanceof APIUserAbortError)) outcome = 'error';
      throw err;
    } finally {
      await report(p, completionTokens, outcome);
    }
  }

  async function create(body: ChatCompletionCreateParams, options: RequestOptions = {}): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const p = await prepare(body);
    backend.assertCapacity?.(p.req.n); // a full queue is a 429 before any response starts
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

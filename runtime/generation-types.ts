// What the API layer needs from a loaded model: no GPU types cross this line.

/** Sampling settings for one request, after validation (see api/ for the wire names and ranges). */
export interface SamplingParams {
  temperature: number; // 0 = greedy
  topP: number; // (0, 1]
  topK: number; // 0 = off
  minP: number; // [0, 1]
  presencePenalty: number; // -2..2, additive, over generated tokens
  frequencyPenalty: number; // -2..2, additive, over generated tokens
  repetitionPenalty: number; // 0.01..5, multiplicative, over prompt + generated tokens
  seed?: bigint; // 0..2^63-1; undefined = random
}

/** Log-probability of a sampled token and of the most likely alternatives (see sampler.ts for the distribution). */
export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The most likely ids, most likely first (ties: lower id first); [] when none were asked. */
  top: { token: number; logprob: number }[];
}

/** Decides the next token from one position's logits. `logitMask`, when set, allows only some ids. */
export interface TokenSampler {
  /** True when sample() is a plain argmax (temperature 0, no penalties): the model may then take the argmax on the GPU. */
  readonly greedy?: boolean;
  sample(logits: Float32Array): number;
  /** Records a token as generated (for penalties). */
  accept(token: number): void;
  /** With logprobs asked for: one entry per sample() call, in order (the consumer may shift them off). */
  readonly logprobs?: TokenLogprob[];
  /** Present when a GPU picker can stand in for sample() (runtime/gpu-sampler.ts): no logprobs. */
  readonly resident?: ResidentSampling;
}

/**
 * What a GPU-resident decode loop needs to pick a sampler's tokens on the GPU, and to hand them back: after
 * acceptPicked() of every token the GPU picked from prngState(), the sampler is where sample() + accept() of
 * those tokens would have left it, so it can go on serially.
 */
export interface ResidentSampling {
  /** The request's parameters, with the seed the sampler uses (a random one when none was given). */
  readonly params: SamplingParams & { seed: bigint };
  /** The current xoshiro128** state (a copy; kernels/sample.ts's layout). */
  prngState(): Uint32Array;
  /** Generator draws made so far: one per token sampled with temperature > 0, none for greedy ones. */
  readonly draws: number;
  /** Records a token picked elsewhere with this sampler's generator: accept(), and the draw sample() would have made. */
  acceptPicked(token: number): void;
}

export interface ModelInfo {
  vocabSize: number;
  contextLength: number; // max positions, prompt + completion
  bosTokenId: number;
  eosTokenId: number;
}

export interface GenerateRequest {
  promptTokens: number[];
  maxTokens: number; // completion tokens at most (already bounded by the context left)
  sampler: TokenSampler;
  /** Optional per-step hook to restrict the next token (constrained decoding): returns allowed ids or null for all. */
  allowedTokens?: (generated: number[]) => Uint8Array | null;
  signal?: AbortSignal;
  /** Filled in by backends that cache prompt prefixes: prompt tokens served from the cache. */
  stats?: { cachedTokens?: number };
  /** The caller already checked assertCapacity() for this request (further choices of an n > 1 request). */
  capacityChecked?: boolean;
}

/** A prompt that does not fit a model's context (at least one generated token must fit after it). */
export class ContextOverflowError extends Error {}

/**
 * The context rule, in one place: the completion tokens a context of `contextLength` positions leaves after a
 * prompt of `promptLength` tokens (negative when the prompt alone does not fit).
 */
export const contextLeft = (contextLength: number, promptLength: number): number => contextLength - promptLength;

/** Throws ContextOverflowError unless a prompt of `promptLength` tokens leaves room for a generated token. */
export function assertPromptFits(contextLength: number, promptLength: number): void {
  if (contextLeft(contextLength, promptLength) < 1) {
    throw new ContextOverflowError(`prompt of ${promptLength} tokens leaves no room in the context length ${contextLength}`);
  }
}

/** A loaded model that turns prompts into token streams. EOS is yielded as the last token when it ends the sequence. */
export interface GenerationBackend {
  readonly modelInfo: ModelInfo;
  generate(req: GenerateRequest): AsyncGenerator<number>;
  /**
   * Optional admission check, called before a response starts: throws an Error carrying
   * `retryAfterSeconds` when the backend cannot take another request now (a full queue: HTTP 429).
   */
  assertCapacity?(sequences?: number): void;
}

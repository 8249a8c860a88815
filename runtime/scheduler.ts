// Continuous batching: every running sequence decodes in the same forward step (the weights stream once
// per step for all of them), new requests join between steps, and prompts are prefilled in chunks
// interleaved with the others' decode steps, so a long prompt never stalls everyone. The KV cache is
// paged (kv-pool.ts) with prefix caching; when the pool runs out, the newest running sequence is
// preempted (its blocks freed) and later resumed by recomputing its tokens. Requests are served first
// come, first served; a full waiting queue refuses new requests.

import type { GenerateRequest, GenerationBackend, ModelInfo } from './generation-types.ts';
import type { LlamaModel, StepRow } from './model.ts';
import { Channel } from './channel.ts';

export interface SchedulerOptions {
  maxBatch?: number; // sequences decoding together (default: the model's slots)
  maxQueue?: number; // waiting requests before new ones are refused (default 64)
  prefillChunk?: number; // prompt tokens of one sequence per step (default: the model's prefill chunk)
  prefixCaching?: boolean; // default true
}

export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`the server is busy: the request queue is full; retry in ${retryAfterSeconds} s`);
  }
}

interface Seq {
  id: number;
  req: GenerateRequest;
  tokens: number[]; // prompt + generated
  promptLen: number;
  generated: number;
  slot: number | null;
  computed: number; // positions of `tokens` whose KV is in the cache
  cachedTokens: number; // prompt positions served by the prefix cache (first admission)
  out: Channel<number>;
  cancelled: boolean;
  admittedOnce: boolean;
  tEnqueued: number;
}

export interface SchedulerMetrics {
  running: number;
  waiting: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  kvBlocksCached: number;
  prefixHitTokens: number;
  prefixLookupTokens: number;
  prefillTokens: number;
  prefillSeconds: number;
  decodeTokens: number;
  decodeSeconds: number;
  ttftSecondsSum: number;
  ttftCount: number;
  preemptions: number;
  requestsFinished: number;
}

/** Positions to prefill: the whole prompt, or after a preemption every token but the last generated one. */
const prefillTarget = (s: Seq): number => (s.generated > 0 ? s.tokens.length - 1 : s.tokens.length);

export class Scheduler implements GenerationBackend {
  readonly modelInfo: ModelInfo;
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private pumping = false;
  private nextId = 1;
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly prefillChunk: number;
  readonly prefixCaching: boolean;
  readonly stats: SchedulerMetrics = {
    running: 0, waiting: 0, kvBlocksUsed: 0, kvBlocksFree: 0, kvBlocksCached: 0, prefixHitTokens: 0, prefixLookupTokens: 0,
    prefillTokens: 0, prefillSeconds: 0, decodeTokens: 0, decodeSeconds: 0, ttftSecondsSum: 0, ttftCount: 0, preemptions: 0, requestsFinished: 0,
  };
  /** Prompt tokens reused from the prefix cache, by request (read by the API for usage). */
  readonly cachedTokensOf = new WeakMap<GenerateRequest, number>();

  constructor(readonly model: LlamaModel, opts: SchedulerOptions = {}) {
    this.modelInfo = model.modelInfo;
    this.maxBatch = Math.min(opts.maxBatch ?? model.pool.nSlots, model.pool.nSlots, model.fwd.opts.maxOut);
    this.maxQueue = opts.maxQueue ?? 64;
    this.prefillChunk = Math.min(opts.prefillChunk ?? model.fwd.opts.maxTokens, model.fwd.opts.maxTokens);
    this.prefixCaching = opts.prefixCaching ?? true;
  }

  metrics(): SchedulerMetrics {
    const p = this.model.pool;
    return {
      ...this.stats,
      running: this.running.length,
      waiting: this.waiting.length,
      kvBlocksUsed: p.usedBlocks,
      kvBlocksFree: p.availableBlocks,
      kvBlocksCached: p.cachedBlocks,
      prefixHitTokens: p.hits,
      prefixLookupTokens: p.lookups,
    };
  }

  /** True when nothing runs or waits and every KV block is free or merely cached. */
  get idle(): boolean {
    return this.running.length === 0 && this.waiting.length === 0 && this.model.pool.usedBlocks === 0;
  }

  /**
   * Refuses `sequences` more when they would not all find a running slot or a place in the waiting
   * queue (maxQueue 0: no waiting, only running).
   */
  assertCapacity(sequences = 1): void {
    // Whatever exceeds the running batch waits.
    const wouldWait = this.running.length + this.waiting.length + sequences - this.maxBatch;
    if (wouldWait > this.maxQueue) {
      throw new QueueFullError(Math.max(1, Math.ceil((this.waiting.length + 1) / Math.max(1, this.maxBatch))));
    }
  }

  async *generate(req: GenerateRequest): AsyncGenerator<number> {
    const ctx = this.modelInfo.contextLength;
    if (req.promptTokens.length === 0) throw new Error('empty prompt');
    if (req.promptTokens.length >= ctx) throw new Error(`prompt of ${req.promptTokens.length} tokens leaves no room in the context length ${ctx}`);
    const pool = this.model.pool;
    if (Math.ceil((req.promptTokens.length + 1) / pool.blockSize) > pool.nBlocks) {
      throw new Error(`prompt of ${req.promptTokens.length} tokens does not fit the KV cache pool (${pool.nBlocks * pool.blockSize} positions): raise the KV budget`);
    }
    if (!req.capacityChecked) this.assertCapacity();
    const seq: Seq = {
      id: this.nextId++, req, tokens: [...req.promptTokens], promptLen: req.promptTokens.length, generated: 0, slot: null,
      computed: 0, cachedTokens: 0, out: new Channel<number>(), cancelled: false, admittedOnce: false, tEnqueued: performance.now(),
    };
    this.waiting.push(seq);
    this.kick();
    try {
      for await (const t of seq.out) yield t;
    } finally {
      // The consumer stopped (finished, disconnected or broke out): free the sequence at the next step.
      seq.cancelled = true;
      this.kick();
    }
  }

  private kick(): void {
    if (this.pumping) return;
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
      if (this.waiting.length || this.running.length) this.kick();
    });
  }

  private async pump(): Promise<void> {
    while (this.waiting.length || this.running.length) {
      this.dropCancelled();
      this.admit();
      if (this.running.length === 0 && this.waiting.length) {
        // Nothing runs, yet the head could not be admitted into an empty pool: it can never fit.
        this.waiting.shift()!.out.fail(new Error('the KV cache pool cannot hold this request'));
        continue;
      }
      const prefill = this.running.find((s) => s.computed < prefillTarget(s));
      try {
        if (prefill) await this.prefillStep(prefill);
        this.dropCancelled();
        const decoding = this.running.filter((s) => s.generated > 0 && s.computed === s.tokens.length - 1);
        if (decoding.length) await this.decodeStep(decoding.slice(0, this.maxBatch));
      } catch (e) {
        // A failed step (device lost, ...) fails the sequences in it; the others keep their place.
        for (const s of [...this.running]) this.finish(s, e);
      }
      await new Promise<void>((r) => setTimeout(r, 0)); // let consumers run (and disconnects arrive)
    }
  }

  private dropCancelled(): void {
    for (const s of [...this.running]) if (s.cancelled || s.req.signal?.aborted) this.finish(s);
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const s = this.waiting[i]!;
      if (s.cancelled || s.req.signal?.aborted) {
        this.waiting.splice(i, 1);
        s.out.close();
      }
    }
  }

  /** FCFS: the head of the queue is admitted when a slot and its prompt's blocks are available. */
  private admit(): void {
    const pool = this.model.pool;
    while (this.waiting.length && this.running.length < this.maxBatch) {
      const s = this.waiting[0]!;
      const slot = pool.acquireSlot();
      if (slot === null) return;
      const reused = this.prefixCaching ? pool.attachPrefix(slot, s.tokens) : 0;
      if (!pool.reserve(slot, s.tokens.length)) {
        pool.releaseSlot(slot);
        return;
      }
      this.waiting.shift();
      s.slot = slot;
      s.computed = reused;
      if (!s.admittedOnce) {
        s.cachedTokens = reused;
        this.cachedTokensOf.set(s.req, reused);
        if (s.req.stats) s.req.stats.cachedTokens = reused;
        s.admittedOnce = true;
      }
      this.model.writeTable(slot);
      this.running.push(s);
    }
  }

  private async prefillStep(s: Seq): Promise<void> {
    const end = prefillTarget(s);
    const n = Math.min(this.prefillChunk, end - s.computed);
    const rows: StepRow[] = [];
    for (let i = 0; i < n; i++) rows.push({ token: s.tokens[s.computed + i]!, pos: s.computed + i, slot: s.slot! });
    const last = s.computed + n === end && s.generated === 0;
    const t0 = performance.now();
    const logits = (await this.model.step(rows, last ? [n - 1] : [], 'logits', 'prefill')) as Float32Array;
    this.stats.prefillSeconds += (performance.now() - t0) / 1000;
    this.stats.prefillTokens += n;
    s.computed += n;
    if (this.prefixCaching) this.model.pool.publish(s.slot!, s.tokens, s.computed);
    if (last) {
      this.stats.ttftSecondsSum += (performance.now() - s.tEnqueued) / 1000;
      this.stats.ttftCount++;
      this.emit(s, logits);
    }
  }

  private async decodeStep(batch: Seq[]): Promise<void> {
    const pool = this.model.pool;
    // Every row needs a block for its new position; preempt the newest sequences when the pool is short.
    for (let i = 0; i < batch.length; i++) {
      const s = batch[i]!;
      while (!pool.reserve(s.slot!, s.tokens.length)) {
        const victim = this.running[this.running.length - 1]!;
        this.preempt(victim);
        const j = batch.indexOf(victim);
        if (j >= 0) batch.splice(j, 1);
        if (victim === s) break;
      }
      if (s.slot !== null && batch.includes(s)) this.model.writeTable(s.slot);
    }
    const live = batch.filter((s) => s.slot !== null);
    if (!live.length) return;
    const rows = live.map((s) => ({ token: s.tokens[s.tokens.length - 1]!, pos: s.tokens.length - 1, slot: s.slot! }));
    const greedy = live.every((s) => s.req.sampler.greedy === true && !s.req.allowedTokens);
    const t0 = performance.now();
    const out = await this.model.step(rows, live.map((_, i) => i), greedy ? 'argmax' : 'logits', 'decode');
    this.stats.decodeSeconds += (performance.now() - t0) / 1000;
    this.stats.decodeTokens += live.length;
    const V = this.modelInfo.vocabSize;
    live.forEach((s, i) => {
      s.computed++;
      if (out instanceof Uint32Array) this.emit(s, null, out[i]!);
      else this.emit(s, out.subarray(i * V, (i + 1) * V));
    });
  }

  /** Samples (or takes) the next token of `s`, hands it to the consumer, and ends the sequence when due. */
  private emit(s: Seq, logits: Float32Array | null, token?: number): void {
    if (s.cancelled) return;
    let t: number;
    try {
      if (logits) {
        const mask = s.req.allowedTokens?.(s.tokens.slice(s.promptLen)) ?? null;
        if (mask) for (let i = 0; i < logits.length; i++) if (!mask[i]) logits[i] = -Infinity;
        t = s.req.sampler.sample(logits);
      } else t = token!;
      s.req.sampler.accept(t);
    } catch (e) {
      this.finish(s, e);
      return;
    }
    s.tokens.push(t);
    s.generated++;
    s.out.push(t);
    const maxTokens = Math.min(s.req.maxTokens, this.modelInfo.contextLength - s.promptLen);
    if (t === this.modelInfo.eosTokenId || s.generated >= maxTokens || s.tokens.length >= this.modelInfo.contextLength) this.finish(s);
  }

  private preempt(s: Seq): void {
    this.stats.preemptions++;
    this.running.splice(this.running.indexOf(s), 1);
    if (this.prefixCaching) this.model.pool.publish(s.slot!, s.tokens, s.computed);
    this.model.pool.releaseSlot(s.slot!);
    s.slot = null;
    s.computed = 0;
    this.waiting.unshift(s); // resumes first
  }

  private finish(s: Seq, error?: unknown): void {
    const i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    if (s.slot !== null) {
      if (this.prefixCaching && !error) this.model.pool.publish(s.slot, s.tokens, s.computed);
      this.model.pool.releaseSlot(s.slot);
      s.slot = null;
    }
    this.stats.requestsFinished++;
    if (error) s.out.fail(error);
    else s.out.close();
  }
}

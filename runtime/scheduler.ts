// The one generation loop: prefill, decode, pick a token, stop. It runs over a StepModel (a LlamaModel on
// the GPU, or the CPU fake of the tests), and everything that generates goes through it: the served engine,
// `llama2-webgpu generate`, the benches, and LlamaModel.generate/logitsAll.
//
// Continuous batching: every running sequence decodes in the same forward step (the weights stream once
// per step for all of them), new requests join between steps, and prompts are prefilled in chunks
// interleaved with the others' decode steps, so a long prompt never stalls everyone. The KV cache is
// paged (kv-pool.ts) with prefix caching; when the pool runs out, the newest running sequence is
// preempted (its blocks freed) and later resumed by recomputing its tokens. Requests are served first
// come, first served; a full waiting queue refuses new requests.

import { assertPromptFits, contextLeft, ContextOverflowError, type GenerateRequest, type GenerationBackend, type ModelInfo, type SamplingParams } from './generation-types.ts';
import type { KvPool } from './kv-pool.ts';
import { Channel } from './channel.ts';
import { RUNTIME_DEFAULTS } from './defaults.ts';

/** One token row of a forward step: token `token` at position `pos` of the sequence in KV slot `slot`. */
export interface StepRow {
  token: number;
  pos: number;
  slot: number;
}

/**
 * Prefill steps and decode steps use fixed matmul kernels (tiled and matvec), whatever their row count, so a
 * sequence's numbers do not depend on what it is batched with; the kind picks the attention kernel.
 */
export type StepKind = 'prefill' | 'decode';

/**
 * A sampled row of a resident run: the GPU picker (runtime/gpu-sampler.ts) starts from the sampler's state, so
 * its picks are the tokens the CPU sampler would draw.
 */
export interface ResidentRowSampling {
  params: SamplingParams;
  promptTokens: readonly number[];
  generated: readonly number[];
  /** The xoshiro128** state the row's next draw starts from. */
  prngState: Uint32Array;
}

/** What the loop needs from a model: forward steps over token rows, and the KV cache they read and write. */
export interface StepModel {
  readonly modelInfo: ModelInfo;
  /** The KV cache's blocks and slots; the loop owns their bookkeeping. */
  readonly pool: KvPool;
  /** Token rows of one step (the prefill chunk). */
  readonly maxRows: number;
  /** Rows of logits one step computes. */
  readonly maxOut: number;
  /** One forward step: the logits (outRows.length, vocab) of the rows `outRows`, or with 'argmax' the best id of each. */
  step(rows: StepRow[], outRows: number[], mode: 'logits' | 'argmax', kind: StepKind): Promise<Float32Array | Uint32Array>;
  /** Makes the slot's block table (after its blocks changed) visible to the next steps. */
  writeTable(slot: number): void;
  /**
   * Optional, the GPU-resident decode loop: `steps` greedy decode steps of the batch `rows`, each step's
   * input being the previous step's argmax, with no host round trip between steps; returns the picks,
   * (steps, rows.length). Row i of step j is at position rows[i].pos + j (the loop reserves those positions).
   * `continues`: the run goes on from the previous run's last picks (rows[i].token unused), and may be
   * started before that run has been read back (at most two runs in flight).
   * `sampling` (one per row; only where `sampledResident`): the rows' tokens are picked by the GPU sampler
   * instead of the argmax; a run that does not continue starts the rows' sampler state from it.
   */
  decodeResident?(rows: StepRow[], steps: number, continues?: boolean, sampling?: ResidentRowSampling[]): Promise<Uint32Array>;
  /** decodeResident takes `sampling`: sampled requests run resident too. */
  readonly sampledResident?: boolean;
}

export interface SchedulerOptions {
  maxBatch?: number; // sequences decoding together (default: the model's slots)
  maxQueue?: number; // waiting requests before new ones are refused (default RUNTIME_DEFAULTS.maxQueue)
  prefillChunk?: number; // prompt tokens of one sequence per step (default: the model's maxRows)
  prefixCaching?: boolean; // default true
  /**
   * Decode steps run on the GPU before their tokens are read back, where the model offers it and no sequence
   * of the batch needs the host to pick (a logit mask, logprobs; sampling too where the model has no GPU
   * sampler, sampledResident); default
   * RUNTIME_DEFAULTS.residentSteps. 1: every step is read back before the next (the serial path).
   */
  residentSteps?: number;
}

export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`the server is busy: the request queue is full; retry in ${retryAfterSeconds} s`);
  }
}

interface Seq {
  req: GenerateRequest;
  tokens: number[]; // prompt + generated
  promptLen: number;
  generated: number;
  slot: number | null;
  computed: number; // positions of `tokens` whose KV is in the cache
  out: Channel<number>;
  cancelled: boolean;
  done: boolean; // finished: takes no more tokens
  admittedOnce: boolean;
  tEnqueued: number;
  /** A scoring sequence (score()): the logits of every prompt position, (promptLen, vocab); it generates nothing. */
  scores?: Float32Array;
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

/** Resolves after pending I/O events: setImmediate where there is one (Node; setTimeout(0) waits >= 1 ms there), else setTimeout. */
const nextTurn = (): Promise<void> =>
  new Promise<void>((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));

/** The sampler of a scoring sequence, which never samples. */
const NO_SAMPLER = {
  sample(): number {
    throw new Error('a scoring sequence samples nothing');
  },
  accept: () => undefined,
};

export class Scheduler implements GenerationBackend {
  readonly modelInfo: ModelInfo;
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private pumping = false;
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly prefillChunk: number;
  private readonly residentSteps: number;
  readonly prefixCaching: boolean;
  readonly stats: SchedulerMetrics = {
    running: 0, waiting: 0, kvBlocksUsed: 0, kvBlocksFree: 0, kvBlocksCached: 0, prefixHitTokens: 0, prefixLookupTokens: 0,
    prefillTokens: 0, prefillSeconds: 0, decodeTokens: 0, decodeSeconds: 0, ttftSecondsSum: 0, ttftCount: 0, preemptions: 0, requestsFinished: 0,
  };

  constructor(readonly model: StepModel, opts: SchedulerOptions = {}) {
    this.modelInfo = model.modelInfo;
    this.maxBatch = Math.min(opts.maxBatch ?? model.pool.nSlots, model.pool.nSlots, model.maxOut);
    this.maxQueue = opts.maxQueue ?? RUNTIME_DEFAULTS.maxQueue;
    this.prefillChunk = Math.min(opts.prefillChunk ?? model.maxRows, model.maxRows);
    this.prefixCaching = opts.prefixCaching ?? true;
    this.residentSteps = model.decodeResident ? Math.max(1, Math.min(opts.residentSteps ?? RUNTIME_DEFAULTS.residentSteps, RUNTIME_DEFAULTS.residentSteps)) : 1;
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

  /** Yields generated token ids; EOS is yielded last when it ends the sequence. */
  async *generate(req: GenerateRequest): AsyncGenerator<number> {
    if (req.promptTokens.length === 0) throw new Error('empty prompt');
    assertPromptFits(this.modelInfo.contextLength, req.promptTokens.length);
    this.assertPoolHolds(req.promptTokens.length + 1, `prompt of ${req.promptTokens.length} tokens`);
    if (!req.capacityChecked) this.assertCapacity();
    if (req.maxTokens < 1) return; // nothing to generate
    const seq = this.enqueue(req);
    try {
      for await (const t of seq.out) {
        if (req.signal?.aborted) break; // tokens made before the abort was seen are dropped
        yield t;
      }
    } finally {
      // The consumer stopped (finished, disconnected or broke out): free the sequence at the next step.
      seq.cancelled = true;
      this.kick();
    }
  }

  /**
   * The logits of every position of `tokens` from position 0, (tokens.length, vocab): teacher-forced scoring
   * (perplexity, tests). Queued like a request; never served from the prefix cache.
   */
  async score(tokens: number[]): Promise<Float32Array> {
    const ctx = this.modelInfo.contextLength;
    if (tokens.length === 0) throw new Error('empty prompt');
    if (contextLeft(ctx, tokens.length) < 0) throw new ContextOverflowError(`prompt of ${tokens.length} tokens does not fit the context length ${ctx}`);
    this.assertPoolHolds(tokens.length, `prompt of ${tokens.length} tokens`);
    const seq = this.enqueue({ promptTokens: tokens, maxTokens: 0, sampler: NO_SAMPLER }, new Float32Array(tokens.length * this.modelInfo.vocabSize));
    try {
      for await (const _ of seq.out); // closes when every row is scored
    } finally {
      seq.cancelled = true;
      this.kick();
    }
    return seq.scores!;
  }

  private assertPoolHolds(positions: number, what: string): void {
    const pool = this.model.pool;
    if (Math.ceil(positions / pool.blockSize) > pool.nBlocks) {
      throw new Error(`${what} does not fit the KV cache pool (${pool.nBlocks * pool.blockSize} positions): raise the KV budget`);
    }
  }

  private enqueue(req: GenerateRequest, scores?: Float32Array): Seq {
    const seq: Seq = {
      req, tokens: [...req.promptTokens], promptLen: req.promptTokens.length, generated: 0, slot: null,
      computed: 0, out: new Channel<number>(), cancelled: false, done: false, admittedOnce: false, tEnqueued: performance.now(), scores,
    };
    this.waiting.push(seq);
    this.kick();
    return seq;
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
        // A first token reaches its consumer before the next steps are recorded.
        if (prefill && (await this.prefillStep(prefill))) await nextTurn();
        this.dropCancelled();
        const decoding = this.running.filter((s) => s.generated > 0 && s.computed === s.tokens.length - 1);
        if (decoding.length) await this.decodeStep(decoding.slice(0, this.maxBatch));
      } catch (e) {
        // A failed step (device lost, ...) fails the sequences in it; the others keep their place.
        for (const s of [...this.running]) this.finish(s, e);
      }
      await nextTurn(); // let consumers run (and disconnects arrive)
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
      // A scoring sequence needs every position's logits: nothing may come from the cache.
      const reused = this.prefixCaching && !s.scores ? pool.attachPrefix(slot, s.tokens) : 0;
      if (!pool.reserve(slot, s.tokens.length)) {
        pool.releaseSlot(slot);
        return;
      }
      this.waiting.shift();
      s.slot = slot;
      s.computed = reused;
      if (!s.admittedOnce) {
        if (s.req.stats && this.prefixCaching) s.req.stats.cachedTokens = reused; // reported where prefixes are cached
        s.admittedOnce = true;
      }
      this.model.writeTable(slot);
      this.running.push(s);
    }
  }

  /** One prefill chunk of `s`; true when it gave the sequence its first token. */
  private async prefillStep(s: Seq): Promise<boolean> {
    const end = prefillTarget(s);
    // A scoring sequence wants every row's logits, at most maxOut per step.
    const n = Math.min(s.scores ? Math.min(this.prefillChunk, this.model.maxOut) : this.prefillChunk, end - s.computed);
    const rows: StepRow[] = [];
    for (let i = 0; i < n; i++) rows.push({ token: s.tokens[s.computed + i]!, pos: s.computed + i, slot: s.slot! });
    const last = s.computed + n === end && s.generated === 0;
    const outRows = s.scores ? rows.map((_, i) => i) : last ? [n - 1] : [];
    const t0 = performance.now();
    const logits = (await this.model.step(rows, outRows, 'logits', 'prefill')) as Float32Array;
    this.stats.prefillSeconds += (performance.now() - t0) / 1000;
    this.stats.prefillTokens += n;
    if (s.scores) s.scores.set(logits, s.computed * this.modelInfo.vocabSize);
    s.computed += n;
    if (this.prefixCaching) this.model.pool.publish(s.slot!, s.tokens, s.computed);
    if (!last) return false;
    if (s.scores) {
      this.finish(s);
      return false;
    }
    this.stats.ttftSecondsSum += (performance.now() - s.tEnqueued) / 1000;
    this.stats.ttftCount++;
    this.emit(s, logits);
    return true;
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
    // Sampled batches run resident with the GPU sampler when every sampler can be reproduced there.
    const sampled = !greedy && this.model.sampledResident === true && live.every((s) => s.req.sampler.resident && !s.req.allowedTokens);
    // Runs only while nothing else waits for a step (an admission, a prompt's next chunk): a run delays them.
    const steps = (greedy || sampled) && this.batchStays(live) ? this.residentRun(live) : 1;
    if (steps > 1 && (await this.residentStep(live, rows, steps, sampled))) return;
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

  /**
   * Steps a greedy batch may run on the GPU before reading back, after `ahead` steps already submitted and not
   * yet taken: at most residentSteps, none past any sequence's last token (max_tokens, the context), and only
   * when the pool has every block they need now (else 1: the serial step, which preempts). Reserves the blocks.
   */
  private residentRun(live: Seq[], ahead = 0): number {
    if (this.residentSteps < 2) return 1;
    const ctx = this.modelInfo.contextLength;
    let steps = this.residentSteps;
    for (const s of live) steps = Math.min(steps, Math.min(s.req.maxTokens, contextLeft(ctx, s.promptLen)) - s.generated - ahead);
    if (steps < 2) return 1;
    const pool = this.model.pool;
    // Positions tokens.length - 1 + ahead .. tokens.length + ahead + steps - 2 of each sequence.
    const end = (s: Seq) => s.tokens.length + ahead + steps - 1;
    const extra = live.reduce((a, s) => a + Math.max(0, Math.ceil(end(s) / pool.blockSize) - pool.blocks(s.slot!).length), 0);
    if (extra > pool.availableBlocks) return 1;
    for (const s of live) {
      if (!pool.reserve(s.slot!, end(s))) throw new Error('KV pool: internal error, a counted block was not there');
      this.model.writeTable(s.slot!);
    }
    return steps;
  }

  /**
   * Nothing would change the batch before its next step: no one could be admitted (nobody waits, or the
   * batch is full), no one prefills, stopped or left.
   */
  private batchStays(live: Seq[]): boolean {
    return (this.waiting.length === 0 || this.running.length >= this.maxBatch) && this.running.length === live.length &&
      live.every((s) => !s.done && !s.cancelled && !s.req.signal?.aborted);
  }

  /**
   * Greedy decode steps on the GPU in runs of `steps`; while the batch stays the same, the next run is
   * submitted before this one is read back (it goes on from this run's last picks, on the GPU). The tokens
   * of a run are taken step by step, as if each had been read back at once: a sequence that stops (EOS,
   * max_tokens, its consumer gone) takes none of the later ones, and its `computed` ends where the serial
   * path leaves it, so the pool (and the prefixes it publishes) end the same.
   * False when the first run failed: nothing was taken, and the caller takes the serial step instead (which
   * delivers the tokens before a failing step and then fails as the serial path does).
   */
  private async residentStep(live: Seq[], rows: StepRow[], steps: number, sampled = false): Promise<boolean> {
    // Sampled: the GPU sampler starts from each sampler's state now; continued runs go on from the GPU's.
    const sampling = sampled
      ? live.map((s): ResidentRowSampling => {
          const r = s.req.sampler.resident!;
          return { params: r.params, promptTokens: s.tokens.slice(0, s.promptLen), generated: s.tokens.slice(s.promptLen), prngState: r.prngState() };
        })
      : undefined;
    const decode = (r: StepRow[], n: number, continues: boolean) => {
      const p = this.model.decodeResident!(r, n, continues, sampling);
      p.catch(() => undefined); // a run is awaited below, or dropped after an earlier run failed
      return p;
    };
    let t0 = performance.now();
    let run = decode(rows, steps, false);
    let first = true;
    for (;;) {
      let next: Promise<Uint32Array> | null = null;
      let nextSteps = 1;
      if (this.batchStays(live)) nextSteps = this.residentRun(live, steps);
      const nextRows = rows.map((r) => ({ ...r, pos: r.pos + steps }));
      if (nextSteps > 1) next = decode(nextRows, nextSteps, true);
      let ids: Uint32Array;
      try {
        ids = await run;
      } catch (e) {
        await next?.catch(() => undefined); // nothing stays in flight
        if (!first) throw e;
        return false;
      }
      this.stats.decodeSeconds += (performance.now() - t0) / 1000; // recording, submitting and waiting for the run
      first = false;
      for (let j = 0; j < steps; j++) {
        live.forEach((s, i) => {
          // Step j's row fed the token emitted at step j-1: only a sequence that took it has that position.
          if (s.done || s.computed !== s.tokens.length - 1) return;
          s.computed++;
          this.stats.decodeTokens++;
          this.emit(s, null, ids[j * live.length + i]!);
        });
      }
      if (!next) return true;
      await nextTurn(); // the consumers take this run's tokens before the run after next is recorded
      t0 = performance.now();
      [run, rows, steps] = [next, nextRows, nextSteps];
    }
  }

  /** Samples (or takes) the next token of `s`, hands it to the consumer, and ends the sequence when due. */
  private emit(s: Seq, logits: Float32Array | null, token?: number): void {
    if (s.cancelled || s.done) return;
    let t: number;
    try {
      if (logits) {
        const mask = s.req.allowedTokens?.(s.tokens.slice(s.promptLen)) ?? null;
        if (mask) for (let i = 0; i < logits.length; i++) if (!mask[i]) logits[i] = -Infinity;
        t = s.req.sampler.sample(logits);
        s.req.sampler.accept(t);
      } else {
        t = token!;
        // Picked on the GPU: with a sampler's generator (the draw sample() would have made), or the argmax.
        if (s.req.sampler.resident) s.req.sampler.resident.acceptPicked(t);
        else s.req.sampler.accept(t);
      }
    } catch (e) {
      this.finish(s, e);
      return;
    }
    s.tokens.push(t);
    s.generated++;
    s.out.push(t);
    // At most maxTokens, and never past the context.
    const maxTokens = Math.min(s.req.maxTokens, contextLeft(this.modelInfo.contextLength, s.promptLen));
    if (t === this.modelInfo.eosTokenId || s.generated >= maxTokens) this.finish(s);
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
    s.done = true;
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

// A fake model and tokenizer for API tests: no GPU, deterministic, observable. The model is a CPU StepModel
// under the runtime's own generation loop (runtime/scheduler.ts), so the API tests run the real loop.
//
// Fake vocabulary: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), 3..258 the bytes 0x00..0xff (so a non-ASCII
// character spans several tokens, like Llama's byte fallback), then multi-character pieces
// (EXTRA_PIECES). encode() is byte-level; the extra pieces only appear in generated output.

import type { GenerateRequest, GenerationBackend, ModelInfo } from '../../runtime/generation-types.ts';
import { Scheduler, type StepKind, type StepModel, type StepRow } from '../../runtime/scheduler.ts';
import { KvPool } from '../../runtime/kv-pool.ts';
import { RUNTIME_DEFAULTS } from '../../runtime/defaults.ts';
import type { ChatStreamDecoder, ChatTokenizer, TemplateMessage } from '../../api/chat-tokenizer.ts';

export const UNK = 0;
export const BOS = 1;
export const EOS = 2;
export const BYTE_BASE = 3;
export const EXTRA_PIECES = [
  '{"',
  '":',
  '", "',
  ' "',
  ' {"',
  'name',
  'arguments',
  '"}',
  '}}',
  'get_weather',
  'Paris',
  'hello',
  ' world',
  'END',
  '"name": "',
] as const;
export const EXTRA_BASE = BYTE_BASE + 256;
export const FAKE_VOCAB_SIZE = EXTRA_BASE + EXTRA_PIECES.length;

const utf8 = new TextEncoder();

/** Id of an extra piece. */
export function pieceId(piece: (typeof EXTRA_PIECES)[number]): number {
  return EXTRA_BASE + EXTRA_PIECES.indexOf(piece);
}

function idBytes(id: number): Uint8Array {
  if (id >= BYTE_BASE && id < EXTRA_BASE) return Uint8Array.of(id - BYTE_BASE);
  if (id >= EXTRA_BASE && id < FAKE_VOCAB_SIZE) return utf8.encode(EXTRA_PIECES[id - EXTRA_BASE]!);
  return new Uint8Array(0); // special tokens print nothing
}

export class FakeTokenizer implements ChatTokenizer {
  readonly eosId = EOS;
  readonly bosId = BOS;
  /** The messages of the last formatChat call. */
  lastMessages: TemplateMessage[] | null = null;

  /** Byte-level ids of the text (no BOS). */
  encode(text: string): number[] {
    return Array.from(utf8.encode(text), (b) => b + BYTE_BASE);
  }

  decode(ids: number[]): string {
    const bytes = ids.flatMap((id) => Array.from(idBytes(id)));
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }

  createStreamDecoder(): ChatStreamDecoder {
    const td = new TextDecoder();
    return {
      push: (id) => td.decode(idBytes(id), { stream: true }),
      flush: () => td.decode(),
    };
  }

  /** The Llama-2 chat layout: <s>[INST] <<SYS>>\n{sys}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] ... */
  formatChat(messages: TemplateMessage[]): number[] {
    this.lastMessages = messages.map((m) => ({ ...m }));
    let rest = messages;
    let sys: string | null = null;
    if (rest[0]?.role === 'system') {
      sys = rest[0].content;
      rest = rest.slice(1);
    }
    const ids: number[] = [];
    for (let i = 0; i < rest.length; i += 2) {
      let user = rest[i]!.content;
      if (i === 0 && sys !== null) user = `<<SYS>>\n${sys}\n<</SYS>>\n\n${user}`;
      const answer = rest[i + 1];
      ids.push(BOS, ...this.encode(`[INST] ${user.trim()} [/INST]${answer ? ` ${answer.content.trim()} ` : ''}`));
      if (answer) ids.push(EOS);
    }
    return ids;
  }

  /** Present unless constructed with { tokenTexts: false } (then forced tool calls are not constrained). */
  readonly tokenTexts?: () => ReadonlyArray<string | null>;

  constructor(opts: { tokenTexts?: boolean } = {}) {
    if (opts.tokenTexts !== false) this.tokenTexts = () => TOKEN_TEXTS;
  }
}

const TOKEN_TEXTS: ReadonlyArray<string | null> = Array.from({ length: FAKE_VOCAB_SIZE }, (_, id) => {
  if (id < BYTE_BASE) return null;
  if (id < EXTRA_BASE) return id - BYTE_BASE < 0x80 ? String.fromCharCode(id - BYTE_BASE) : null;
  return EXTRA_PIECES[id - EXTRA_BASE]!;
});

export interface FakeCall {
  request: GenerateRequest;
  produced: number[];
  /** The request's signal fired. */
  aborted: boolean;
  /** The generator has ended (returned, finished or was closed). */
  finished: boolean;
  /** How many times the mask hook was consulted. */
  maskCalls: number;
}

export interface FakeBackendOptions {
  contextLength?: number;
  /** The ids the fake model prefers, one per step (logit 1000 vs 0); then EOS, or `after` forever. */
  script?: number[];
  after?: number;
  /** Instead of a script: the logits at each step. */
  logits?: (step: number, generated: number[]) => Float32Array;
  /** Wait this long before each token (lets tests disconnect mid-stream). */
  delayMs?: number;
  /** Throw an Error("fake backend failure") after this many tokens. */
  failAfter?: number;
}

/**
 * The fake model's forward steps, on the CPU: the StepModel that the runtime's one generation loop (the
 * Scheduler) runs over, as it runs over a LlamaModel. A row's "KV cache" is its token, kept per slot, so the
 * logits of an output row can be a function of the tokens generated so far.
 */
export class FakeStepModel implements StepModel {
  readonly pool: KvPool;
  readonly maxRows = RUNTIME_DEFAULTS.prefillChunk;
  readonly maxOut = 64;
  private readonly history: number[][]; // per slot: the token at each position
  private readonly promptLen: number[]; // per slot: the positions of its prompt (ends at the prefill's output row)

  constructor(readonly modelInfo: ModelInfo, private readonly opts: FakeBackendOptions, private readonly logitsAt: (step: number, generated: number[]) => Float32Array) {
    const blocksPerSeq = Math.ceil(modelInfo.contextLength / RUNTIME_DEFAULTS.blockSize);
    this.pool = new KvPool(this.maxOut * blocksPerSeq, RUNTIME_DEFAULTS.blockSize, this.maxOut, blocksPerSeq);
    this.history = Array.from({ length: this.maxOut }, () => []);
    this.promptLen = new Array<number>(this.maxOut).fill(0);
  }

  writeTable(): void {}

  async step(rows: StepRow[], outRows: number[], mode: 'logits' | 'argmax', kind: StepKind): Promise<Float32Array | Uint32Array> {
    // Wait before each token (a step with output rows), like a model's forward pass.
    if (outRows.length && this.opts.delayMs) await new Promise((r) => setTimeout(r, this.opts.delayMs));
    else await Promise.resolve();
    for (const r of rows) this.history[r.slot]![r.pos] = r.token;
    const V = this.modelInfo.vocabSize;
    const logits = new Float32Array(outRows.length * V);
    const best = new Uint32Array(outRows.length);
    outRows.forEach((o, i) => {
      const { slot, pos } = rows[o]!;
      if (kind === 'prefill') this.promptLen[slot] = pos + 1;
      const generated = this.history[slot]!.slice(this.promptLen[slot], pos + 1);
      if (generated.length === this.opts.failAfter) throw new Error('fake backend failure');
      const l = this.logitsAt(generated.length, generated);
      logits.set(l, i * V);
      for (let t = 1; t < V; t++) if (l[t]! > l[best[i]!]!) best[i] = t;
    });
    return mode === 'argmax' ? best : logits;
  }

  private lastRun: Promise<Uint32Array> | null = null;

  /** The resident decode loop's contract on the CPU: each step's input is the previous step's argmax. */
  decodeResident(rows: StepRow[], steps: number, continues = false): Promise<Uint32Array> {
    const prev = continues ? this.lastRun : null;
    this.lastRun = (async () => {
      // A continuing run starts from the previous run's last picks.
      const before = prev ? await prev : null;
      return this.run(rows, steps, before ? Array.from(before.subarray(before.length - rows.length)) : rows.map((r) => r.token));
    })();
    return this.lastRun;
  }

  private async run(rows: StepRow[], steps: number, first: number[]): Promise<Uint32Array> {
    const out = new Uint32Array(steps * rows.length);
    const all = rows.map((_, i) => i);
    let tokens = first;
    for (let j = 0; j < steps; j++) {
      const best = (await this.step(rows.map((r, i) => ({ token: tokens[i]!, pos: r.pos + j, slot: r.slot })), all, 'argmax', 'decode')) as Uint32Array;
      out.set(best, j * rows.length);
      tokens = Array.from(best);
    }
    return out;
  }
}

/** A GenerationBackend that runs the runtime's generation loop (mask, sample, accept, yield, stop) over the fake model. */
export class FakeBackend implements GenerationBackend {
  readonly modelInfo: ModelInfo;
  readonly calls: FakeCall[] = [];
  private readonly opts: FakeBackendOptions;
  private readonly scheduler: Scheduler;

  constructor(opts: FakeBackendOptions = {}) {
    this.opts = opts;
    this.modelInfo = { vocabSize: FAKE_VOCAB_SIZE, contextLength: opts.contextLength ?? 4096, bosTokenId: BOS, eosTokenId: EOS };
    const model = new FakeStepModel(this.modelInfo, opts, (step, generated) => this.logitsAt(step, generated));
    this.scheduler = new Scheduler(model, { maxQueue: Infinity, prefixCaching: false });
  }

  /** Replaces the script for the next requests. */
  setScript(script: number[], after?: number): void {
    this.opts.script = script;
    this.opts.after = after;
    this.opts.logits = undefined;
  }

  /** Makes the next requests fail after `n` tokens (undefined: never). */
  setFailAfter(n: number | undefined): void {
    this.opts.failAfter = n;
  }

  /** Replaces the logits function for the next requests. */
  setLogits(logits: (step: number, generated: number[]) => Float32Array): void {
    this.opts.logits = logits;
  }

  private logitsAt(step: number, generated: number[]): Float32Array {
    if (this.opts.logits) return this.opts.logits(step, generated);
    const logits = new Float32Array(FAKE_VOCAB_SIZE);
    const script = this.opts.script ?? [];
    const want = step < script.length ? script[step]! : (this.opts.after ?? EOS);
    logits[want] = 1000;
    return logits;
  }

  async *generate(req: GenerateRequest): AsyncGenerator<number> {
    const call: FakeCall = { request: req, produced: [], aborted: false, finished: false, maskCalls: 0 };
    this.calls.push(call);
    const onAbort = () => {
      call.aborted = true;
    };
    if (req.signal?.aborted) call.aborted = true;
    req.signal?.addEventListener('abort', onAbort);
    const mask = req.allowedTokens;
    const counted: GenerateRequest = mask ? { ...req, allowedTokens: (generated) => (call.maskCalls++, mask(generated)) } : req;
    try {
      for await (const token of this.scheduler.generate(counted)) {
        call.produced.push(token);
        yield token;
      }
    } finally {
      call.finished = true;
      req.signal?.removeEventListener('abort', onAbort);
    }
  }

  get lastCall(): FakeCall {
    const c = this.calls[this.calls.length - 1];
    if (!c) throw new Error('no generate() call yet');
    return c;
  }
}

/**
 * Logits of a noisy fake model: uniform noise in [0, scale) from a fixed LCG stream per (seed, step),
 * plus `bias` on some ids. Different every step, identical for the same seed.
 */
export function noisyLogits(seed: number, scale = 4, bias: Record<number, number> = {}): (step: number) => Float32Array {
  return (step) => {
    let x = (seed * 7919 + step * 104729 + 1) >>> 0;
    const l = new Float32Array(FAKE_VOCAB_SIZE);
    for (let i = 0; i < l.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      l[i] = (x / 2 ** 32) * scale + (bias[i] ?? 0);
    }
    return l;
  };
}

/** Ids that make the fake model write `text` (byte-level). */
export function scriptOf(text: string): number[] {
  return new FakeTokenizer().encode(text);
}

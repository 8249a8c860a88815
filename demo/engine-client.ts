// The page's side of the engine worker: the same call as the in-process engine,
//   const stream = await engine.chat.completions.create({ ...request, stream: true }, { signal });
//   for await (const chunk of stream) ...
// with the model, tokenizer and GPU work in the worker. Aborting `signal` stops generation in the
// worker and makes the stream throw APIUserAbortError, as in-process.

import { APIError, APIUserAbortError } from '../api/errors.ts';
import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from '../api/types.ts';
import type {
  FailureKind, LoadedModelInfo, LoadOptions, LoadProgressEvent, LoadSpec, PageCommand, SerializedError, WorkerEvent,
} from './protocol.ts';

/** A load or engine failure, with the kind that selects the page's message. */
export class EngineFailure extends Error {
  constructor(readonly kind: FailureKind, message: string) {
    super(message);
    this.name = 'EngineFailure';
  }
}

function revive(e: SerializedError): Error {
  if (e.name === 'APIUserAbortError') return new APIUserAbortError();
  if (e.status !== undefined) {
    const err = new APIError(e.status, e.message, { type: e.type ?? 'invalid_request_error', param: e.param ?? null, code: e.code ?? null });
    Object.defineProperty(err, 'name', { value: e.name });
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

type QueueItem = { chunk: ChatCompletionChunk } | { end: true } | { error: Error };

/** A one-reader queue of stream items: chunks, then an end or an error. */
class ChunkQueue {
  private readonly items: QueueItem[] = [];
  private wake: (() => void) | null = null;

  push(item: QueueItem): void {
    this.items.push(item);
    this.wake?.();
    this.wake = null;
  }

  async next(): Promise<QueueItem> {
    while (this.items.length === 0) await new Promise<void>((r) => (this.wake = r));
    return this.items.shift()!;
  }
}

type Handler = (ev: WorkerEvent) => void;

export interface ChatOptions {
  signal?: AbortSignal;
  /** Before the first token: prompt tokens computed so far, of those to compute. */
  onPrefill?: (done: number, total: number) => void;
}

export interface LoadCallbacks {
  onProgress?: (p: LoadProgressEvent) => void;
}

export class WorkerEngine {
  private nextId = 1;
  private readonly handlers = new Map<number, Handler>();
  /** Called when the worker reports a failure that belongs to no request (device lost). */
  onFailure: ((f: EngineFailure) => void) | null = null;
  modelName: string | null = null;

  readonly chat = {
    completions: {
      create: (request: ChatCompletionCreateParamsStreaming, options: ChatOptions = {}) => this.create(request, options),
    },
  };

  constructor(private readonly worker: Worker) {
    worker.addEventListener('message', (ev: MessageEvent<WorkerEvent>) => {
      const msg = ev.data;
      if (msg.id === null) {
        if (msg.type === 'error') this.onFailure?.(new EngineFailure(msg.kind, msg.error.message));
        return;
      }
      this.handlers.get(msg.id)?.(msg);
    });
    worker.addEventListener('error', (ev) => {
      this.onFailure?.(new EngineFailure('load_failed', `The engine worker failed: ${ev.message || 'it could not start'}`));
    });
  }

  private send(cmd: PageCommand): void {
    this.worker.postMessage(cmd);
  }

  /** Loads a model (replacing the current one); resolves with its info once it is on the GPU. */
  load(spec: LoadSpec, options: LoadOptions = {}, cb: LoadCallbacks = {}): Promise<LoadedModelInfo> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.handlers.set(id, (ev) => {
        if (ev.type === 'progress') cb.onProgress?.(ev.progress);
        else if (ev.type === 'done' && ev.info) {
          this.handlers.delete(id);
          this.modelName = ev.info.modelName;
          resolve(ev.info);
        } else if (ev.type === 'error') {
          this.handlers.delete(id);
          reject(new EngineFailure(ev.kind, ev.error.message));
        }
      });
      this.send({ type: 'load', id, spec, options });
    });
  }

  /** Prompt tokens of `messages` in the model's chat format (rejects as a request would when they are invalid). */
  count(messages: ChatCompletionMessageParam[]): Promise<number> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.handlers.set(id, (ev) => {
        this.handlers.delete(id);
        if (ev.type === 'count') resolve(ev.promptTokens);
        else if (ev.type === 'error') reject(revive(ev.error));
      });
      this.send({ type: 'count', id, messages });
    });
  }

  /** Resolves once the worker accepted the request (it rejects as in-process on invalid requests). */
  private async create(request: ChatCompletionCreateParamsStreaming, options: ChatOptions): Promise<AsyncIterable<ChatCompletionChunk>> {
    const { signal } = options;
    if (signal?.aborted) throw new APIUserAbortError();
    const id = this.nextId++;
    const queue = new ChunkQueue();
    let finished = false;
    const finish = (): void => {
      finished = true;
      this.handlers.delete(id);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      this.send({ type: 'stop', id });
      queue.push({ error: new APIUserAbortError() });
      finish();
    };
    this.handlers.set(id, (ev) => {
      if (ev.type === 'prefill') options.onPrefill?.(ev.done, ev.total);
      else if (ev.type === 'chunk') queue.push({ chunk: ev.chunk });
      else if (ev.type === 'done') {
        queue.push({ end: true });
        finish();
      } else if (ev.type === 'error') {
        queue.push({ error: revive(ev.error) });
        finish();
      }
    });
    signal?.addEventListener('abort', onAbort);
    this.send({ type: 'chat', id, request });

    const first = await queue.next();
    if ('error' in first) throw first.error;
    const send = (cmd: PageCommand): void => this.send(cmd);
    return {
      async *[Symbol.asyncIterator]() {
        let item: QueueItem = first;
        try {
          for (;;) {
            if ('error' in item) throw item.error;
            if ('end' in item) return;
            yield item.chunk;
            item = await queue.next();
          }
        } finally {
          // The reader left early (break): stop generating.
          if (!finished) {
            send({ type: 'stop', id });
            finish();
          }
        }
      },
    };
  }
}

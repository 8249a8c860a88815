// The engine's Web Worker (a module worker): loads a model and serves
// engine.chat.completions.create({ ..., stream: true }) to the page, chunk by chunk, so that the page's
// thread never blocks on tokenizing, sampling or waiting for the GPU. Protocol: protocol.ts.

import { APIError } from '../api/errors.ts';
import { LoadError, openEngine, type OpenedEngine } from './open-engine.ts';
import type { FailureKind, PageCommand, SerializedError, WorkerEvent } from './protocol.ts';

interface WorkerScope {
  postMessage(event: WorkerEvent): void;
  addEventListener(type: 'message', listener: (ev: MessageEvent<PageCommand>) => void): void;
}
const scope = self as unknown as WorkerScope;
const post = (event: WorkerEvent): void => scope.postMessage(event);

let current: OpenedEngine | null = null;
/** Loads run one after another; a chat waits for the load before it. */
let loading: Promise<unknown> = Promise.resolve();
const requests = new Map<number, AbortController>();

function serialize(e: unknown): SerializedError {
  if (e instanceof APIError) return { name: e.name, message: e.message, status: e.status, type: e.type, param: e.param, code: e.code };
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

function fail(id: number | null, kind: FailureKind, e: unknown): void {
  post({ type: 'error', id, kind, error: serialize(e) });
}

async function load(cmd: Extract<PageCommand, { type: 'load' }>): Promise<void> {
  for (const ac of requests.values()) ac.abort(new Error('a new model is loading'));
  const old = current;
  current = null;
  await old?.close();
  try {
    const opened = await openEngine(cmd.spec, cmd.options, (progress) => post({ type: 'progress', id: cmd.id, progress }));
    current = opened;
    // A destroyed device also resolves `lost`; only a loss of the model still in use is news.
    void opened.lost.then((message) => {
      if (current !== opened) return;
      current = null;
      for (const ac of requests.values()) ac.abort(new Error(message));
      fail(null, 'device_lost', new Error(message));
    });
    post({ type: 'done', id: cmd.id, info: opened.info });
  } catch (e) {
    fail(cmd.id, e instanceof LoadError ? e.kind : 'load_failed', e);
  }
}

/** Prompt tokens of `messages` in the chat format: the engine's own count (max_tokens 0 runs no model). */
async function promptTokens(opened: OpenedEngine, messages: Extract<PageCommand, { type: 'count' }>['messages']): Promise<number> {
  const c = await opened.llama.engine.chat.completions.create({ model: opened.info.modelName, messages, max_tokens: 0 });
  return c.usage.prompt_tokens;
}

async function count(cmd: Extract<PageCommand, { type: 'count' }>): Promise<void> {
  try {
    await loading;
    if (!current) throw new Error('No model is loaded.');
    post({ type: 'count', id: cmd.id, promptTokens: await promptTokens(current, cmd.messages) });
  } catch (e) {
    fail(cmd.id, 'request', e);
  }
}

async function chat(cmd: Extract<PageCommand, { type: 'chat' }>): Promise<void> {
  const ac = new AbortController();
  requests.set(cmd.id, ac);
  let watching: ReturnType<typeof setInterval> | undefined;
  try {
    await loading;
    const opened = current;
    if (!opened) throw new Error('No model is loaded.');
    // Prefill progress from the scheduler's counters (one conversation at a time in a tab): prompt tokens
    // computed since the request, of the prompt less what the prefix cache already held.
    const total = await promptTokens(opened, cmd.request.messages).catch(() => 0);
    const m0 = opened.llama.scheduler.metrics();
    let first = false;
    const report = (): void => {
      const m = opened.llama.scheduler.metrics();
      const cached = m.prefixHitTokens - m0.prefixHitTokens;
      post({ type: 'prefill', id: cmd.id, done: m.prefillTokens - m0.prefillTokens, total: Math.max(total - cached, 0) });
    };
    if (total > 0) watching = setInterval(() => !first && report(), 250);
    const stream = await opened.llama.engine.chat.completions.create({ ...cmd.request, stream: true }, { signal: ac.signal });
    for await (const chunk of stream) {
      if (!first && chunk.choices[0]?.delta.content) {
        first = true;
        clearInterval(watching);
      }
      post({ type: 'chunk', id: cmd.id, chunk });
    }
    post({ type: 'done', id: cmd.id });
  } catch (e) {
    fail(cmd.id, 'request', e);
  } finally {
    clearInterval(watching);
    requests.delete(cmd.id);
  }
}

scope.addEventListener('message', (ev) => {
  const cmd = ev.data;
  switch (cmd.type) {
    case 'load':
      loading = loading.then(() => load(cmd));
      break;
    case 'chat':
      void chat(cmd);
      break;
    case 'count':
      void count(cmd);
      break;
    case 'stop':
      requests.get(cmd.id)?.abort();
      break;
  }
});

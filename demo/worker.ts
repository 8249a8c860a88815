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

async function chat(cmd: Extract<PageCommand, { type: 'chat' }>): Promise<void> {
  const ac = new AbortController();
  requests.set(cmd.id, ac);
  try {
    await loading;
    if (!current) throw new Error('No model is loaded.');
    const stream = await current.llama.engine.chat.completions.create({ ...cmd.request, stream: true }, { signal: ac.signal });
    for await (const chunk of stream) post({ type: 'chunk', id: cmd.id, chunk });
    post({ type: 'done', id: cmd.id });
  } catch (e) {
    fail(cmd.id, 'request', e);
  } finally {
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
    case 'stop':
      requests.get(cmd.id)?.abort();
      break;
  }
});

// The chat page: model loading (built-in, folder, GGUF file, URL kept in the browser's cache) with progress,
// saved conversations (IndexedDB) in a sidebar, the settings panel, and the conversation, streamed from the
// engine worker through WorkerEngine (the in-process engine's API), with a live context counter.

import { APIUserAbortError } from '../api/errors.ts';
import type { ChatCompletionCreateParamsStreaming } from '../api/types.ts';
import { AnswerTiming, ChatView, type AnswerEnd } from './chat-view.ts';
import { EngineFailure, WorkerEngine } from './engine-client.ts';
import { formatBytes, formatCount, formatRate, formatSeconds } from './format.ts';
import { MODEL_CACHE, type FailureKind, type LoadedModelInfo, type LoadOptions, type LoadProgressEvent, type LoadSpec, type WeightDtype } from './protocol.ts';
import { SettingsError, SettingsPanel, type SettingsValues } from './settings.ts';
import { newConversation, Store, titleOf, type Conversation } from './store.ts';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
};

const ui = {
  status: $('model-status'),
  banner: $('banner'),
  bannerTitle: $('banner-title'),
  bannerText: $('banner-text'),
  bannerReload: $<HTMLButtonElement>('banner-reload'),
  bannerClose: $<HTMLButtonElement>('banner-close'),
  conversations: $<HTMLUListElement>('conversations'),
  newChat: $<HTMLButtonElement>('new-chat'),
  storageNote: $('storage-note'),
  loadBuiltin: $<HTMLButtonElement>('load-builtin'),
  folderInput: $<HTMLInputElement>('folder-input'),
  ggufInput: $<HTMLInputElement>('gguf-input'),
  dtype: $<HTMLSelectElement>('dtype'),
  memoryGb: $<HTMLInputElement>('memory-gb'),
  urlForm: $<HTMLFormElement>('url-form'),
  urlInput: $<HTMLInputElement>('url-input'),
  loadUrl: $<HTMLButtonElement>('load-url'),
  cacheInfo: $('cache-info'),
  clearCache: $<HTMLButtonElement>('clear-cache'),
  progress: $('progress'),
  progressPhase: $('progress-phase'),
  progressStep: $('progress-step'),
  progressPercent: $('progress-percent'),
  progressBar: $('progress-bar'),
  progressText: $('progress-text'),
  modelInfo: $('model-info'),
  emptyTitle: $('empty-title'),
  emptyText: $('empty-text'),
  composer: $<HTMLFormElement>('composer'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  send: $<HTMLButtonElement>('send'),
  stop: $<HTMLButtonElement>('stop'),
  counter: $('context-counter'),
  composerNote: $('composer-note'),
};

type PageState = 'empty' | 'loading' | 'ready' | 'generating' | 'dead';
let state: PageState = 'empty';
/** The state now (it changes while an answer streams; a function keeps TypeScript from narrowing it). */
const currentState = (): PageState => state;
let model: LoadedModelInfo | null = null;
let answering: AbortController | null = null;
let deadReason = '';

const store = await Store.open();
const settings = new SettingsPanel($('sampling'), $<HTMLTextAreaElement>('system-prompt'));
const chat = new ChatView($('messages'), $('empty-state'), { regenerate: () => void regenerate(), edit: () => editLast() });
const engine = new WorkerEngine(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'llama2-webgpu engine' }));
let conversation: Conversation = newConversation();
let conversations: Conversation[] = [];

// ---- Page state and messages ----

function setState(next: PageState): void {
  state = next;
  document.body.dataset.state = next;
  const canLoad = next === 'empty' || next === 'ready';
  for (const b of [ui.loadBuiltin, ui.loadUrl]) b.disabled = !canLoad;
  ui.folderInput.disabled = !canLoad;
  ui.ggufInput.disabled = !canLoad;
  ui.prompt.disabled = next !== 'ready' && next !== 'generating';
  ui.send.hidden = next === 'generating';
  ui.stop.hidden = next !== 'generating';
  ui.newChat.disabled = next === 'generating';
  ui.conversations.dataset.locked = next === 'generating' ? 'true' : 'false';
  ui.prompt.placeholder = model ? `Message ${model.modelName}  (Enter to send, Shift+Enter for a new line)` : 'Load a model to start chatting';
  const pill: Record<PageState, [string, string]> = {
    empty: ['No model loaded', 'idle'],
    loading: ['Loading…', 'busy'],
    ready: [model ? `Ready · ${model.modelName}` : 'Ready', 'ready'],
    generating: ['Generating…', 'busy'],
    dead: ['Unavailable', 'error'],
  };
  ui.status.textContent = pill[next][0];
  ui.status.dataset.kind = pill[next][1];
  chat.setActionsEnabled(next === 'ready');
  updateEmptyState();
  updateSendable();
}

/** What the empty chat says: it tells the truth about the page's state. */
function updateEmptyState(): void {
  const [title, text] =
    state === 'dead'
      ? ['Chat is unavailable', deadReason || 'WebGPU is not available in this browser.']
      : state === 'loading'
        ? ['Loading the model…', 'Progress is shown on the left. You can type your first message once it is loaded.']
        : model
          ? [`${model.modelName} is ready`, 'Type a message below. Everything runs on your GPU in this tab: prompts never leave it.']
          : ['Chat with Llama-2 in your browser', 'Load a model on the left. Everything runs locally through WebGPU: prompts never leave this tab.'];
  ui.emptyTitle.textContent = title;
  ui.emptyText.textContent = text;
}

const REMEDY: Record<FailureKind, [string, string]> = {
  no_webgpu: [
    'WebGPU is not available.',
    'This page needs WebGPU: Chrome or Edge 113+, Safari 26+, or Firefox 141+ on Windows. On Linux, enable chrome://flags/#enable-unsafe-webgpu.',
  ],
  does_not_fit: ['This model does not fit this GPU.', 'Try a smaller model, or a GPU with more memory.'],
  device_lost: ['The GPU device was lost.', 'The driver reset or the GPU went away; reload the page to start again.'],
  load_failed: ['The model could not be loaded.', ''],
  request: ['The request failed.', ''],
};

function showBanner(kind: FailureKind, message: string): void {
  const [title, remedy] = REMEDY[kind];
  ui.banner.hidden = false;
  ui.banner.dataset.kind = kind;
  ui.bannerTitle.textContent = title;
  ui.bannerText.textContent = [message, remedy].filter((s) => s).join(' ');
  ui.bannerReload.hidden = kind !== 'device_lost';
  ui.bannerClose.hidden = kind === 'device_lost' || kind === 'no_webgpu';
}

function hideBanner(): void {
  ui.banner.hidden = true;
}

function markField(input: HTMLInputElement, message: string | null): void {
  const row = input.closest<HTMLElement>('.param');
  let note = row?.querySelector<HTMLElement>('.field-error') ?? null;
  if (message === null) {
    input.removeAttribute('aria-invalid');
    row?.classList.remove('invalid');
    note?.remove();
    return;
  }
  input.setAttribute('aria-invalid', 'true');
  row?.classList.add('invalid');
  if (row && !note) {
    note = document.createElement('div');
    note.className = 'field-error';
    row.append(note);
  }
  if (note) note.textContent = message;
}

// ---- Loading ----

/** Load speed over the last two seconds of progress events. */
class RateMeter {
  private samples: Array<[number, number]> = [];
  push(bytes: number): number {
    const now = performance.now();
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > 2000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return now > t0 ? ((bytes - b0) * 1000) / (now - t0) : 0;
  }
}

/** Compiling the kernels is the load's last step: the weights fill the bar up to here. */
const WEIGHTS_SHARE = 95;

function showProgress(p: LoadProgressEvent, meter: RateMeter): void {
  ui.progress.hidden = false;
  const indeterminate = (phase: string, step: string, text: string): void => {
    ui.progress.dataset.indeterminate = 'true';
    ui.progressPhase.textContent = phase;
    ui.progressStep.textContent = step;
    ui.progressPercent.textContent = '';
    ui.progressText.textContent = text;
  };
  if (p.phase === 'building') {
    return indeterminate('Building the model in memory…', 'Step 1 of 3', 'Its weights and tokenizer are generated in this tab');
  }
  delete ui.progress.dataset.indeterminate;
  let pct: number;
  const parts: string[] = [];
  if (p.phase === 'downloading') {
    pct = p.bytesTotal > 0 ? Math.min(100, Math.floor((100 * p.bytesRead) / p.bytesTotal)) : 0;
    ui.progressPhase.textContent = 'Downloading into this browser\u2019s cache';
    ui.progressStep.textContent = 'Step 1 of 3 · the next visit loads from disk';
    parts.push(`${formatBytes(p.bytesRead)} of ${formatBytes(p.bytesTotal)}`, formatRate(meter.push(p.bytesRead)));
  } else if (p.phase === 'compiling') {
    pct = WEIGHTS_SHARE;
    ui.progressPhase.textContent = 'Compiling the GPU kernels…';
    ui.progressStep.textContent = 'Step 3 of 3 · the weights are on the GPU';
    parts.push(`${formatBytes(p.bytesRead)} of ${formatBytes(p.bytesTotal)}`, `tensor ${p.tensorsDone}/${p.tensorsTotal}`);
  } else {
    // The slower of reading and uploading: a tensor counts once it is on the GPU.
    const read = p.bytesTotal > 0 ? p.bytesRead / p.bytesTotal : 0;
    const frac = p.tensorsTotal > 0 ? Math.min(read, p.tensorsDone / p.tensorsTotal) : read;
    pct = Math.floor(frac * WEIGHTS_SHARE);
    ui.progressPhase.textContent = p.tensorsTotal === 0 ? 'Reading the model' : 'Loading weights onto the GPU';
    ui.progressStep.textContent = 'Step 2 of 3';
    parts.push(`${formatBytes(p.bytesRead)} of ${formatBytes(p.bytesTotal)}`, formatRate(meter.push(p.bytesRead)));
    if (p.tensorsTotal > 0) parts.push(`tensor ${p.tensorsDone}/${p.tensorsTotal}`);
  }
  // One number, and the bar shows exactly it.
  ui.progressBar.style.width = `${pct}%`;
  ui.progressPercent.textContent = `${pct}%`;
  ui.progressText.textContent = parts.join(' · ');
}

const SOURCE_LABEL: Record<LoadedModelInfo['source'], string> = {
  builtin: 'built into the page',
  files: 'your files',
  network: 'downloaded, now cached',
  cache: 'this browser\u2019s cache',
};

function showModelInfo(info: LoadedModelInfo): void {
  const rows: Array<[string, string]> = [
    ['Model', info.modelName],
    ['Parameters', formatCount(info.params)],
    ['Weights', `${formatBytes(info.weightBytes)} (${info.dtype})`],
    ['Context', `${info.contextLength} tokens`],
    ['GPU', info.adapter],
    ['Source', SOURCE_LABEL[info.source]],
    ['Loaded in', formatSeconds(info.loadSeconds)],
  ];
  ui.modelInfo.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }),
  );
  ui.modelInfo.hidden = false;
}

/** The load options panel; an invalid field is marked and null returned. */
function loadOptions(): LoadOptions | null {
  const opts: LoadOptions = {};
  if (ui.dtype.value) opts.dtype = ui.dtype.value as WeightDtype;
  const gb = ui.memoryGb.value.trim();
  markField(ui.memoryGb, null);
  if (gb !== '') {
    const v = Number(gb);
    if (!(v > 0) || !Number.isFinite(v)) {
      markField(ui.memoryGb, 'GPU memory must be a positive number of GB, or empty.');
      (ui.memoryGb.closest('details') as HTMLDetailsElement | null)?.setAttribute('open', '');
      ui.memoryGb.focus();
      return null;
    }
    opts.memoryBytes = Math.round(v * 1e9);
  }
  return opts;
}

async function load(spec: LoadSpec): Promise<void> {
  if (state !== 'empty' && state !== 'ready') return;
  const options = loadOptions();
  if (!options) return;
  hideBanner();
  answering?.abort();
  model = null;
  setState('loading');
  ui.modelInfo.hidden = true;
  ui.progressBar.style.width = '0%';
  ui.progressPercent.textContent = '0%';
  const meter = new RateMeter();
  try {
    model = await engine.load(spec, options, { onProgress: (p) => showProgress(p, meter) });
    ui.progress.hidden = true;
    showModelInfo(model);
    // Loaded again after a reload (built-in or cached URL models only: picked files cannot be reopened).
    if (spec.kind === 'builtin' || spec.kind === 'url') void store.set('lastModel', { spec, options });
    setState('ready');
    ui.prompt.focus();
    void refreshCacheInfo();
    scheduleCount();
  } catch (e) {
    ui.progress.hidden = true;
    // The worker drops the old model before loading a new one.
    model = null;
    const kind = e instanceof EngineFailure ? e.kind : 'load_failed';
    showBanner(kind, (e as Error).message);
    if (kind === 'no_webgpu' || kind === 'device_lost') deadReason = (e as Error).message;
    setState(kind === 'no_webgpu' || kind === 'device_lost' ? 'dead' : 'empty');
  }
}

ui.loadBuiltin.addEventListener('click', () => void load({ kind: 'builtin' }));

ui.urlForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const url = ui.urlInput.value.trim();
  if (url) void load({ kind: 'url', url });
});

ui.folderInput.addEventListener('change', () => {
  const picked = Array.from(ui.folderInput.files ?? []);
  ui.folderInput.value = ''; // picking the same folder again fires `change` again
  if (picked.length === 0) return;
  // webkitRelativePath is "folder/file" (or "folder/sub/file"); the model's files are relative to the folder.
  const first = picked[0]!.webkitRelativePath;
  const root = first.includes('/') ? first.slice(0, first.indexOf('/')) : 'model';
  const files = picked.map((file) => ({
    path: file.webkitRelativePath.includes('/') ? file.webkitRelativePath.slice(root.length + 1) : file.name,
    file,
  }));
  if (files.some((f) => f.path === 'config.json')) return void load({ kind: 'folder', name: root, files });
  const ggufs = files.filter((f) => !f.path.includes('/') && /\.gguf$/i.test(f.path));
  if (ggufs.length === 1) return void load({ kind: 'gguf', file: ggufs[0]!.file });
  showBanner('load_failed', ggufs.length > 1
    ? `The folder "${root}" holds ${ggufs.length} .gguf files: choose one with "Choose a .gguf file…".`
    : `The folder "${root}" has no config.json at its top level: pick a Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.`);
});

ui.ggufInput.addEventListener('change', () => {
  const file = ui.ggufInput.files?.[0];
  ui.ggufInput.value = '';
  if (file) void load({ kind: 'gguf', file });
});

// ---- The model cache (Cache Storage API) ----

async function refreshCacheInfo(): Promise<void> {
  if (typeof caches === 'undefined') {
    ui.cacheInfo.textContent = 'This browser offers no cache for models: URLs are read again on each visit.';
    return;
  }
  const cache = await caches.open(MODEL_CACHE);
  const keys = await cache.keys();
  let bytes = 0;
  const models = new Set<string>();
  for (const req of keys) {
    const res = await cache.match(req);
    if (res?.status !== 200) continue; // a remembered 404
    bytes += Number(res.headers.get('content-length') ?? 0);
    models.add(req.url.replace(/[^/]*$/, ''));
  }
  ui.cacheInfo.textContent = models.size === 0 ? 'No models cached.' : `Cached: ${models.size} model${models.size === 1 ? '' : 's'}, ${formatBytes(bytes)}.`;
  ui.clearCache.hidden = keys.length === 0;
}

ui.clearCache.addEventListener('click', async () => {
  await caches.delete(MODEL_CACHE);
  await refreshCacheInfo();
});

// ---- Conversations (IndexedDB) ----

function renderConversationList(): void {
  const items = conversations.filter((c) => c.turns.length > 0 || c.id === conversation.id);
  ui.conversations.replaceChildren(
    ...items.map((c) => {
      const li = document.createElement('li');
      li.className = 'conversation';
      li.dataset.id = c.id;
      if (c.id === conversation.id) li.setAttribute('aria-current', 'true');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'conversation-open';
      open.textContent = c.turns.length > 0 ? c.title : 'New chat';
      open.title = c.title;
      open.addEventListener('click', () => void switchTo(c.id));
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'icon-btn conversation-delete';
      del.textContent = '✕';
      del.setAttribute('aria-label', `Delete "${c.title}"`);
      del.addEventListener('click', () => void deleteConversation(c.id));
      li.append(open, del);
      return li;
    }),
  );
}

async function save(): Promise<void> {
  conversation.updatedAt = Date.now();
  if (conversation.turns.length > 0) conversation.title = titleOf(conversation.turns[0]!.user);
  if (!conversations.includes(conversation)) conversations.unshift(conversation);
  conversations.sort((a, b) => b.updatedAt - a.updatedAt);
  renderConversationList();
  await store.set('currentConversation', conversation.id);
  if (conversation.turns.length > 0) await store.putConversation(conversation);
}

function showConversation(c: Conversation): void {
  conversation = c;
  chat.show(c);
  chat.setActionsEnabled(state === 'ready');
  renderConversationList();
  scheduleCount();
}

async function switchTo(id: string): Promise<void> {
  if (state === 'generating' || id === conversation.id) return;
  const c = conversations.find((x) => x.id === id);
  if (!c) return;
  showConversation(c);
  await store.set('currentConversation', id);
}

async function startNewChat(): Promise<void> {
  if (state === 'generating') return;
  // An empty conversation is reused rather than piled up.
  const c = conversation.turns.length === 0 ? conversation : newConversation();
  if (!conversations.includes(c)) conversations.unshift(c);
  showConversation(c);
  await store.set('currentConversation', c.id);
  ui.prompt.focus();
}

async function deleteConversation(id: string): Promise<void> {
  if (state === 'generating') return;
  await store.deleteConversation(id);
  conversations = conversations.filter((c) => c.id !== id);
  if (id === conversation.id) showConversation(conversations.find((c) => c.turns.length > 0) ?? newConversation());
  else renderConversationList();
  await store.set('currentConversation', conversation.id);
}

ui.newChat.addEventListener('click', () => void startNewChat());

// ---- Context counter ----

let countTimer: ReturnType<typeof setTimeout> | undefined;
let countSeq = 0;
let promptTooLong = false;

/** Counts the conversation plus the draft in the model's tokens, shortly after the last keystroke. */
function scheduleCount(): void {
  clearTimeout(countTimer);
  countTimer = setTimeout(() => void updateCount(), 150);
}

async function updateCount(): Promise<void> {
  if (!model || (state !== 'ready' && state !== 'generating')) {
    ui.counter.textContent = '';
    return;
  }
  const seq = ++countSeq;
  const draft = ui.prompt.value.trim();
  const messages = chat.messages(settings.system, draft === '' ? '…' : draft);
  const ctx = model.contextLength;
  let tokens: number;
  try {
    tokens = await engine.count(messages);
  } catch (e) {
    // Longer than the context: the engine refuses it, saying how long it is.
    const over = (e as { code?: string }).code === 'context_length_exceeded' ? /resulted in (\d+) tokens/.exec((e as Error).message) : null;
    if (!over) return; // e.g. the model changed meanwhile; the next keystroke counts again
    tokens = Number(over[1]);
  }
  if (seq !== countSeq) return;
  promptTooLong = tokens >= ctx;
  ui.counter.textContent = `Context: ${tokens.toLocaleString('en-US')} / ${ctx.toLocaleString('en-US')} tokens`;
  ui.counter.dataset.tokens = String(tokens);
  ui.counter.dataset.level = promptTooLong ? 'over' : tokens > 0.85 * ctx ? 'near' : 'ok';
  updateSendable();
}

function updateSendable(): void {
  const invalidSettings = Number(ui.composer.dataset.invalidSettings ?? 0);
  let note = '';
  if (state === 'ready' && promptTooLong) note = 'Too long for the model\u2019s context: shorten the message or start a new chat.';
  else if (state === 'ready' && invalidSettings > 0) note = `Fix the ${invalidSettings === 1 ? 'setting' : `${invalidSettings} settings`} marked in red first.`;
  ui.composerNote.textContent = note;
  ui.send.disabled = state !== 'ready' || promptTooLong || invalidSettings > 0;
}

ui.prompt.addEventListener('input', scheduleCount);

// ---- Chat ----

async function answer(): Promise<void> {
  if (!model) return;
  const sampling = settings.read();
  const view = chat.addAnswer();
  const request: ChatCompletionCreateParamsStreaming = {
    model: model.modelName,
    messages: chat.messages(settings.system),
    ...sampling,
    stream: true,
    stream_options: { include_usage: true },
  };
  const controller = new AbortController();
  answering = controller;
  setState('generating');
  const timing = new AnswerTiming();
  let tokens: number | null = null; // exact count from the usage chunk
  let end: AnswerEnd = 'stop';
  let error: string | undefined;
  try {
    const stream = await engine.chat.completions.create(request, {
      signal: controller.signal,
      onPrefill: (done, total) => view.showPrefill(done, total),
    });
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      const piece = choice?.delta.content;
      if (piece) {
        timing.piece();
        view.append(piece);
        chat.scroll();
      }
      if (choice?.finish_reason) end = choice.finish_reason;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      if (timing.pieces > 0) view.showStats(timing, tokens ?? timing.pieces, null);
    }
  } catch (e) {
    if (currentState() === 'dead') {
      end = 'error';
      error = 'The GPU device was lost during this answer.';
    } else if (e instanceof APIUserAbortError && controller.signal.aborted) end = 'stopped';
    else {
      end = 'error';
      error = (e as Error).message;
    }
  }
  answering = null;
  view.showStats(timing, tokens ?? timing.pieces, end);
  chat.finishAnswer(view.finish(end, error));
  await save();
  if (currentState() === 'generating') {
    setState('ready');
    ui.prompt.focus();
  }
  scheduleCount();
}

async function send(): Promise<void> {
  const text = ui.prompt.value.trim();
  if (!text || state !== 'ready' || !model || promptTooLong) return;
  try {
    settings.read();
  } catch (e) {
    if (!(e instanceof SettingsError)) throw e;
    updateSendable();
    return;
  }
  hideBanner();
  ui.prompt.value = '';
  chat.addUser(text);
  await save();
  await answer();
}

/** Answers the last message again (the old answer is dropped). */
async function regenerate(): Promise<void> {
  if (state !== 'ready' || chat.turns.length === 0) return;
  chat.dropLastAnswer();
  await answer();
}

/** Puts the last message back in the composer, to change and send again (its answer is dropped). */
function editLast(): void {
  if (state !== 'ready') return;
  const text = chat.popLastTurn();
  if (text === null) return;
  void save().then(() => (conversation.turns.length === 0 ? store.deleteConversation(conversation.id) : undefined));
  ui.prompt.value = text;
  ui.prompt.focus();
  ui.prompt.setSelectionRange(text.length, text.length);
  scheduleCount();
}

ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void send();
});
ui.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    void send();
  }
});
ui.stop.addEventListener('click', () => answering?.abort());
$('reset-settings').addEventListener('click', () => settings.reset());
ui.bannerClose.addEventListener('click', hideBanner);
ui.bannerReload.addEventListener('click', () => location.reload());

settings.onSave = (values) => {
  void store.set('settings', values);
  scheduleCount(); // the system prompt counts too
};
settings.onValidity = (invalid) => {
  ui.composer.dataset.invalidSettings = String(invalid);
  updateSendable();
};

engine.onFailure = (f) => {
  if (f.kind === 'device_lost') {
    answering?.abort();
    model = null;
    deadReason = f.message;
    setState('dead');
  }
  showBanner(f.kind, f.message);
};

// ---- Start ----

async function checkWebGpu(): Promise<boolean> {
  let reason = '';
  if (!window.isSecureContext) reason = 'This page must be served over https:// or from localhost (WebGPU needs a secure context).';
  else if (!('gpu' in navigator) || !navigator.gpu) reason = 'This browser has no WebGPU (navigator.gpu is missing).';
  else if (!(await navigator.gpu.requestAdapter().catch(() => null))) {
    reason = 'WebGPU is present, but the browser offers no GPU adapter (the GPU may be blocklisted or disabled).';
  }
  if (!reason) return true;
  deadReason = reason;
  showBanner('no_webgpu', reason);
  setState('dead');
  return false;
}

async function start(): Promise<void> {
  ui.storageNote.hidden = store.persistent;
  settings.restore((await store.get<SettingsValues>('settings')) ?? {});
  conversations = await store.conversations();
  const currentId = await store.get<string>('currentConversation');
  showConversation(conversations.find((c) => c.id === currentId) ?? conversations[0] ?? newConversation());
  setState('empty');
  void refreshCacheInfo();
  if (!(await checkWebGpu())) return;
  // The model of the last visit comes back by itself when that needs no file picker.
  const last = await store.get<{ spec: LoadSpec; options: LoadOptions }>('lastModel');
  if (last && state === 'empty') {
    if (last.options.dtype) ui.dtype.value = last.options.dtype;
    if (last.spec.kind === 'url') ui.urlInput.value = last.spec.url;
    await load(last.spec);
  }
}

void start();

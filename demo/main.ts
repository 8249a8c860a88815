// The chat page: model loading (built-in, folder, URL) with progress, the settings panel, and the
// conversation, streamed from the engine worker through WorkerEngine (the in-process engine's API).

import { APIUserAbortError } from '../api/errors.ts';
import type { ChatCompletionCreateParamsStreaming } from '../api/types.ts';
import { AnswerTiming, ChatView, type AnswerEnd } from './chat-view.ts';
import { EngineFailure, WorkerEngine } from './engine-client.ts';
import { formatBytes, formatCount, formatRate, formatSeconds } from './format.ts';
import type { FailureKind, LoadedModelInfo, LoadOptions, LoadProgressEvent, LoadSpec, WeightDtype } from './protocol.ts';
import { SettingsPanel } from './settings.ts';

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
  loadBuiltin: $<HTMLButtonElement>('load-builtin'),
  folderInput: $<HTMLInputElement>('folder-input'),
  ggufInput: $<HTMLInputElement>('gguf-input'),
  dtype: $<HTMLSelectElement>('dtype'),
  memoryGb: $<HTMLInputElement>('memory-gb'),
  urlForm: $<HTMLFormElement>('url-form'),
  urlInput: $<HTMLInputElement>('url-input'),
  loadUrl: $<HTMLButtonElement>('load-url'),
  progress: $('progress'),
  progressPhase: $('progress-phase'),
  progressPercent: $('progress-percent'),
  progressBar: $('progress-bar'),
  progressText: $('progress-text'),
  modelInfo: $('model-info'),
  composer: $<HTMLFormElement>('composer'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  send: $<HTMLButtonElement>('send'),
  stop: $<HTMLButtonElement>('stop'),
  clear: $<HTMLButtonElement>('clear'),
};

type PageState = 'empty' | 'loading' | 'ready' | 'generating' | 'dead';
let state: PageState = 'empty';
/** The state now (it changes while an answer streams; a function keeps TypeScript from narrowing it). */
const currentState = (): PageState => state;
let model: LoadedModelInfo | null = null;
let answering: AbortController | null = null;

const settings = new SettingsPanel($('sampling'), $<HTMLTextAreaElement>('system-prompt'));
const chat = new ChatView($('messages'), $('empty-state'));
const engine = new WorkerEngine(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'llama2-webgpu engine' }));

function setState(next: PageState): void {
  state = next;
  document.body.dataset.state = next;
  const canLoad = next === 'empty' || next === 'ready';
  for (const b of [ui.loadBuiltin, ui.loadUrl]) b.disabled = !canLoad;
  ui.folderInput.disabled = !canLoad;
  ui.ggufInput.disabled = !canLoad;
  ui.prompt.disabled = next !== 'ready' && next !== 'generating';
  ui.send.disabled = next !== 'ready';
  ui.send.hidden = next === 'generating';
  ui.stop.hidden = next !== 'generating';
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

function showProgress(p: LoadProgressEvent, meter: RateMeter): void {
  ui.progress.hidden = false;
  if (p.phase === 'building') {
    ui.progress.dataset.indeterminate = 'true';
    ui.progressPhase.textContent = 'Building the built-in model in memory…';
    ui.progressPercent.textContent = '';
    ui.progressText.textContent = 'Random weights and the Llama-2 tokenizer, generated in this tab';
    return;
  }
  delete ui.progress.dataset.indeterminate;
  const frac = p.bytesTotal > 0 ? p.bytesRead / p.bytesTotal : p.tensorsTotal > 0 ? p.tensorsDone / p.tensorsTotal : 0;
  const pct = Math.min(100, Math.floor(frac * 100));
  ui.progressBar.style.width = `${pct}%`;
  ui.progressPercent.textContent = `${pct}%`;
  ui.progressPhase.textContent =
    p.tensorsTotal === 0 ? 'Reading the model' : p.tensorsDone < p.tensorsTotal ? 'Loading weights onto the GPU' : 'Preparing the GPU kernels…';
  const parts = [`${formatBytes(p.bytesRead)} of ${formatBytes(p.bytesTotal)}`, formatRate(meter.push(p.bytesRead))];
  if (p.tensorsTotal > 0) parts.push(`tensor ${p.tensorsDone}/${p.tensorsTotal}`);
  ui.progressText.textContent = parts.join(' · ');
}

function showModelInfo(info: LoadedModelInfo): void {
  const rows: Array<[string, string]> = [
    ['Model', info.modelName],
    ['Parameters', formatCount(info.params)],
    ['Weights', `${formatBytes(info.weightBytes)} (${info.dtype})`],
    ['Context', `${info.contextLength} tokens`],
    ['GPU', info.adapter],
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

/** The load options panel, or an error message naming the field to fix. */
function loadOptions(): LoadOptions {
  const opts: LoadOptions = {};
  if (ui.dtype.value) opts.dtype = ui.dtype.value as WeightDtype;
  const gb = ui.memoryGb.value.trim();
  if (gb !== '') {
    const v = Number(gb);
    if (!(v > 0)) throw new Error('GPU memory must be a positive number of GB, or empty.');
    opts.memoryBytes = Math.round(v * 1e9);
  }
  return opts;
}

async function load(spec: LoadSpec): Promise<void> {
  if (state !== 'empty' && state !== 'ready') return;
  let options: LoadOptions;
  try {
    options = loadOptions();
  } catch (e) {
    showBanner('load_failed', (e as Error).message);
    return;
  }
  hideBanner();
  setState('loading');
  ui.modelInfo.hidden = true;
  ui.progressBar.style.width = '0%';
  const meter = new RateMeter();
  try {
    model = await engine.load(spec, options, { onProgress: (p) => showProgress(p, meter) });
    ui.progress.hidden = true;
    showModelInfo(model);
    chat.clear(); // a new model starts a new conversation
    setState('ready');
    ui.prompt.focus();
  } catch (e) {
    ui.progress.hidden = true;
    // The worker drops the old model before loading a new one.
    model = null;
    const kind = e instanceof EngineFailure ? e.kind : 'load_failed';
    showBanner(kind, (e as Error).message);
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

// ---- Chat ----

async function send(): Promise<void> {
  const text = ui.prompt.value.trim();
  if (!text || state !== 'ready' || !model) return;
  let sampling;
  try {
    sampling = settings.read();
  } catch (e) {
    showBanner('request', (e as Error).message);
    return;
  }
  hideBanner();
  ui.prompt.value = '';
  chat.addUser(text);
  const answer = chat.addAnswer();
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
    const stream = await engine.chat.completions.create(request, { signal: controller.signal });
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      const piece = choice?.delta.content;
      if (piece) {
        timing.piece();
        answer.append(piece);
        chat.scroll();
      }
      if (choice?.finish_reason) end = choice.finish_reason;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      if (timing.pieces > 0) answer.showStats(timing, tokens ?? timing.pieces, null);
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
  answer.showStats(timing, tokens ?? timing.pieces, end);
  answer.finish(end, error);
  if (currentState() === 'generating') {
    setState('ready');
    ui.prompt.focus();
  }
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
ui.clear.addEventListener('click', () => {
  answering?.abort();
  chat.clear();
});
$('reset-settings').addEventListener('click', () => settings.reset());
ui.bannerClose.addEventListener('click', hideBanner);
ui.bannerReload.addEventListener('click', () => location.reload());

engine.onFailure = (f) => {
  if (f.kind === 'device_lost') {
    answering?.abort();
    model = null;
    setState('dead');
  }
  showBanner(f.kind, f.message);
};

// ---- Start ----

async function checkWebGpu(): Promise<void> {
  if (!window.isSecureContext) {
    showBanner('no_webgpu', 'This page must be served over https:// or from localhost (WebGPU needs a secure context).');
    setState('dead');
    return;
  }
  if (!('gpu' in navigator) || !navigator.gpu) {
    showBanner('no_webgpu', 'This browser has no WebGPU (navigator.gpu is missing).');
    setState('dead');
    return;
  }
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) {
    showBanner('no_webgpu', 'WebGPU is present, but the browser offers no GPU adapter (the GPU may be blocklisted or disabled).');
    setState('dead');
  }
}

setState('empty');
void checkWebGpu();

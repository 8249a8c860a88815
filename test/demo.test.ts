// The chat demo end to end: builds it with Vite, serves the build (vite preview on 127.0.0.1), and
// drives it in headless Chromium (SwiftShader WebGPU): the no-WebGPU message, the built-in model with its
// progress bar (one percentage, kernel compilation as a step), a streamed answer with tokens/s, stop
// mid-answer, a second answer to the end, prefill progress and the context counter, invalid settings marked
// on their fields, regenerate and edit, conversations and settings surviving a reload (IndexedDB), the
// sidebar, Markdown answers with code copy (sanitized), the phone layout, models from a folder, a GGUF file
// and a URL (then from the Cache Storage API, with the server gone, and after clearing it), a load error, and
// a lost GPU device. Saves docs/demo.png.
// SwiftShader is slow (this model decodes at ~2 tokens/s on two cores): answers are kept to a few tokens.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';
import { preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_NAME } from '../checkpoint/default-model.ts';
import { TINY_RANDOM_MODEL_CONFIG, TINY_RANDOM_MODEL_SEED, tinyRandomModelFiles } from '../checkpoint/tiny-random-model.ts';
import { parseHfConfig } from '../checkpoint/config.ts';
import { readFileSync, statSync } from 'node:fs';
import { expectedTensors } from '../checkpoint/keymap.ts';
import { formatBytes, formatCount } from '../demo/format.ts';
import { encodeGguf } from '../checkpoint/gguf-writer.ts';
import { randomWeights } from '../checkpoint/random-model.ts';
import { buildLlama2TokenizerJson } from '../tokenizer/llama2-vocab.ts';
import { forwardPageErrors, launchChromium, webGpuAdapter } from './helpers/chromium.ts';
import { startStaticServer, type StaticServer } from './helpers/static-server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CONFIG = join(ROOT, 'demo/vite.config.ts');
const BUILD = join(ROOT, 'dist/demo');
const SCREENSHOT = join(ROOT, 'docs/demo.png');

let server: PreviewServer | null = null;
let files: StaticServer | null = null;
let browser: Browser | null = null;
let page: Page | null = null;
let base = '';
let tmp = '';
let modelDir = ''; // the built-in model's files, as a folder named tiny-llama
let ggufPath = ''; // the built-in model's weights as tiny-q8.gguf

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// The one-click model is whatever the project's default model is: what the page should show for it.
const DEFAULT = (() => {
  const dir = new URL('../assets/tiny-llama-2-kjv/', import.meta.url);
  const DEFAULT_MODEL_CONFIG = parseHfConfig(JSON.parse(readFileSync(new URL('config.json', dir), 'utf8')));
  const weightBytes = statSync(new URL('model.safetensors', dir)).size;
  const shapes = [...expectedTensors(DEFAULT_MODEL_CONFIG).values()];
  return {
    name: DEFAULT_MODEL_NAME,
    size: formatBytes(weightBytes), // "38.4 MB"
    sizeRe: formatBytes(weightBytes).replace('.', '\\.'),
    tensors: shapes.length,
    params: formatCount(shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0)), // "13M"
    context: DEFAULT_MODEL_CONFIG.maxSeqLen,
  };
})();

// The folder, URL and GGUF loads use the random-weights test model's files (tiny-random-model.ts).
const RANDOM = (() => {
  const files = tinyRandomModelFiles();
  const weightBytes = Object.entries(files).filter(([f]) => f.endsWith('.safetensors')).reduce((n, [, b]) => n + b.byteLength, 0);
  const shapes = [...expectedTensors(TINY_RANDOM_MODEL_CONFIG).values()];
  return { size: formatBytes(weightBytes), tensors: shapes.length, params: formatCount(shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0)) };
})();

/** Sets an input's value as a user would (its input listeners run). */
async function setValue(p: Page, selector: string, value: string): Promise<void> {
  await p.$eval(selector, (el, v) => {
    (el as HTMLInputElement).value = v;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

const state = (p: Page): Promise<string> => p.$eval('body', (b) => b.dataset.state ?? '');
const bannerText = (p: Page): Promise<string> => p.$eval('#banner', (b) => ((b as HTMLElement).hidden ? '' : (b as HTMLElement).innerText));

interface AnswerSnapshot {
  count: number; // assistant messages
  text: string;
  stats: string;
  tps: string; // data-tps of the stats ('' until two tokens)
  end: string; // data-end ('' while streaming)
  error: string; // the answer's error message, if it failed
  state: string;
}

const lastAnswer = (p: Page): Promise<AnswerSnapshot> =>
  p.evaluate(() => {
    const all = document.querySelectorAll<HTMLElement>('.msg.assistant');
    const m = all[all.length - 1];
    const stats = m?.querySelector<HTMLElement>('.stats');
    return {
      count: all.length,
      text: m?.querySelector('.text')?.textContent ?? '',
      stats: stats?.textContent ?? '',
      tps: stats?.dataset.tps ?? '',
      end: m?.dataset.end ?? '',
      error: m?.querySelector('.msg-error')?.textContent ?? '',
      state: document.body.dataset.state ?? '',
    };
  });

/**
 * Records the progress panel from now on (every worker message is its own task): "percent | text" lines,
 * and the bar's width and the phase label next to each.
 */
const recordProgress = (p: Page): Promise<void> =>
  p.evaluate(() => {
    const w = window as unknown as { progressLog: string[]; progressBars: Array<[string, string, string]> };
    w.progressLog = [];
    w.progressBars = [];
    const panel = document.getElementById('progress')!;
    new MutationObserver(() => {
      const pct = document.getElementById('progress-percent')!.textContent ?? '';
      w.progressLog.push(`${pct} | ${document.getElementById('progress-text')!.textContent}`);
      w.progressBars.push([pct, document.getElementById('progress-bar')!.style.width, document.getElementById('progress-phase')!.textContent ?? '']);
    }).observe(panel, { subtree: true, childList: true, characterData: true, attributes: true });
  });
const progressLog = (p: Page): Promise<string[]> => p.evaluate(() => (window as unknown as { progressLog: string[] }).progressLog);
const progressBars = (p: Page): Promise<Array<[string, string, string]>> =>
  p.evaluate(() => (window as unknown as { progressBars: Array<[string, string, string]> }).progressBars);

/** The phases a load went through and, whenever a percentage was shown, that the bar showed exactly it. */
async function checkOnePercentage(p: Page): Promise<string[]> {
  const bars = await progressBars(p);
  for (const [pct, width] of bars) if (pct !== '') expect(width).toBe(pct);
  return [...new Set(bars.map(([, , phase]) => phase))];
}

const emptyText = (p: Page): Promise<string> => p.$eval('#empty-state', (e) => ((e as HTMLElement).hidden ? '' : (e as HTMLElement).innerText));
const counter = (p: Page): Promise<{ text: string; tokens: number; level: string }> =>
  p.$eval('#context-counter', (e) => ({ text: e.textContent ?? '', tokens: Number((e as HTMLElement).dataset.tokens ?? NaN), level: (e as HTMLElement).dataset.level ?? '' }));

/** Waits until the last answer has ended (data-end set). */
async function waitForAnswerEnd(p: Page, count: number, timeout: number): Promise<AnswerSnapshot> {
  await p.waitForFunction((n) => {
    const all = document.querySelectorAll<HTMLElement>('.msg.assistant');
    return all.length === n && (all[n - 1]!.dataset.end ?? '') !== '' && document.body.dataset.state !== 'generating';
  }, { timeout, polling: 250 }, count);
  return lastAnswer(p);
}

async function waitForState(p: Page, want: string, timeout: number): Promise<void> {
  await p.waitForFunction((w) => document.body.dataset.state === w, { timeout, polling: 200 }, want);
}

/** Waits for a load to end; a load error fails at once with the page's message. */
async function waitForLoad(p: Page, timeout: number): Promise<void> {
  await p.waitForFunction(() => document.body.dataset.state === 'ready' || !document.getElementById('banner')!.hidden, { timeout, polling: 200 });
  const banner = await bannerText(p);
  if (banner) throw new Error(`the model did not load: ${banner}`);
}

async function modelInfo(p: Page): Promise<Record<string, string>> {
  return p.$$eval('#model-info dt', (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent ?? '', dt.nextElementSibling?.textContent ?? ''])));
}

beforeAll(async () => {
  // The production build, in a clean process (the suite's NODE_ENV is "test").
  execFileSync('npx', ['--no-install', 'vite', 'build', 'demo', '--logLevel', 'warn'], {
    cwd: ROOT, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'production' },
  });
  server = await preview({ configFile: CONFIG, preview: { port: 0, strictPort: false }, logLevel: 'warn' });
  base = server.resolvedUrls!.local[0]!;
  // The built-in model's files, for the folder and URL loads.
  tmp = await mkdtemp(join(tmpdir(), 'llama2-webgpu-demo-'));
  modelDir = join(tmp, 'tiny-llama');
  await mkdir(modelDir);
  for (const [name, bytes] of Object.entries(tinyRandomModelFiles())) await writeFile(join(modelDir, name), bytes);
  // The same model as one llama.cpp GGUF file with Q8_0 matrices.
  ggufPath = join(tmp, 'tiny-q8.gguf');
  const weights = randomWeights(TINY_RANDOM_MODEL_CONFIG, TINY_RANDOM_MODEL_SEED);
  await writeFile(ggufPath, encodeGguf(TINY_RANDOM_MODEL_CONFIG, weights, { type: 'Q8_0', tokenizerJson: buildLlama2TokenizerJson() }));
  files = await startStaticServer({ '/models/tiny/': modelDir });

  browser = await launchChromium();
  if (!browser) return;
  page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 940 });
  forwardPageErrors(page, 'demo');
  await page.goto(base);
  const adapter = await webGpuAdapter(page);
  if (!adapter) {
    await browser.close();
    browser = null;
    page = null;
    return;
  }
  console.log(`demo at ${base}; Chromium WebGPU adapter: ${adapter}`);
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await files?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('chat demo', () => {
  it('builds without Dawn: the bundle holds no Node WebGPU binding, and the engine is a separate worker chunk', async () => {
    const assets = await readdir(join(BUILD, 'assets'));
    const js = assets.filter((f) => f.endsWith('.js'));
    expect(js.some((f) => f.startsWith('worker-'))).toBe(true);
    for (const f of js) {
      const code = await readFile(join(BUILD, 'assets', f), 'utf8');
      expect(code, f).not.toMatch(/dawn\.node|from\s*["']webgpu["']|import\(\s*["']webgpu["']\s*\)/);
    }
    // The page's own chunk stays small (the page, marked and DOMPurify): the tokenizer's vocabulary and the
    // runtime live in the worker.
    const pageChunk = js.find((f) => f.startsWith('index-'))!;
    const page = await readFile(join(BUILD, 'assets', pageChunk), 'utf8');
    expect(page.length).toBeLessThan(160_000);
    expect(page).not.toMatch(/llama-tokenizer|@huggingface\/tokenizers/);
  });

  it('typechecks (Vite only strips the types)', () => {
    execFileSync('npx', ['--no-install', 'tsc', '-p', 'demo/tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
  }, 120_000);

  it('says so clearly when the browser has no WebGPU', async (ctx) => {
    if (!browser) return ctx.skip();
    const p = await browser.newPage();
    try {
      await p.evaluateOnNewDocument(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      await p.goto(base);
      await p.waitForFunction(() => !document.getElementById('banner')!.hidden, { timeout: 30_000 });
      expect(await p.$eval('#banner-title', (e) => e.textContent)).toBe('WebGPU is not available.');
      expect(await bannerText(p)).toContain('navigator.gpu is missing');
      expect(await p.$eval('#load-builtin', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
      expect(await p.$eval('#model-status', (e) => e.textContent)).toBe('Unavailable');
      // The empty chat says the same, not "load a model".
      expect(await emptyText(p)).toMatch(/^Chat is unavailable\n+This browser has no WebGPU/);
    } finally {
      await p.close();
    }
  });

  it('loads the built-in model in one click, with one percentage (bar and label agree) and compilation as a step', async (ctx) => {
    if (!page) return ctx.skip();
    expect(await state(page)).toBe('empty');
    expect(await emptyText(page)).toMatch(/Load a model on the left/);
    await recordProgress(page);
    const t0 = Date.now();
    await page.click('#load-builtin');
    await waitForLoad(page, 180_000);
    console.log(`built-in model loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const log = await progressLog(page);
    // e.g. "53% | 20.6 MB of 38.4 MB · 28.1 MB/s · tensor 27/39"
    const line = new RegExp(`^(\\d+)% \\| [\\d.]+ (?:B|kB|MB|GB) of ${DEFAULT.sizeRe} · [\\d.]+ (?:B|kB|MB|GB)/s`);
    expect(log.some((l) => line.test(l))).toBe(true);
    const percents = log.map((l) => line.exec(l)?.[1]).filter((x) => x !== undefined).map(Number);
    expect(percents.some((x) => x > 0 && x < 95)).toBe(true);
    // Compiling the kernels is the last step: the weights are all on the GPU at 95%.
    expect(log).toContain(`95% | ${DEFAULT.size} of ${DEFAULT.size} · tensor ${DEFAULT.tensors}/${DEFAULT.tensors}`);
    const phases = await checkOnePercentage(page);
    expect(phases).toEqual(expect.arrayContaining(['Building the model in memory…', 'Loading weights onto the GPU', 'Compiling the GPU kernels…']));
    expect(phases.indexOf('Compiling the GPU kernels…')).toBe(phases.length - 1);
    const info = await modelInfo(page);
    expect(info['Model']).toBe(DEFAULT.name);
    expect(info['Source']).toBe('built into the page');
    expect(await emptyText(page)).toBe(`${DEFAULT.name} is ready\n\nType a message below. Everything runs on your GPU in this tab: prompts never leave it.`);
    expect(info['Parameters']).toBe(DEFAULT.params);
    expect(info['Context']).toBe(`${DEFAULT.context} tokens`);
    expect(info['GPU']).toMatch(/swiftshader/i);
    expect(await page.$eval('#progress', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).disabled)).toBe(false);
    // The context counter: the chat format of one empty turn before anything is typed.
    await page.waitForFunction(() => (document.getElementById('context-counter')!.textContent ?? '') !== '', { timeout: 30_000 });
    expect((await counter(page)).text).toMatch(new RegExp(`^Context: \\d+ / ${DEFAULT.context.toLocaleString('en-US')} tokens$`));
  }, 240_000);

  it('streams an answer with time to first token and tokens/s, and stops it mid-answer', async (ctx) => {
    if (!page) return ctx.skip();
    expect(await state(page), 'a model is loaded').toBe('ready');
    await setValue(page, '#max_tokens', '1000');
    await setValue(page, '#temperature', '0.8');
    await setValue(page, '#seed', '11');
    await page.type('#prompt', 'Tell me a long story about the sea.');
    await page.keyboard.press('Enter');
    // Streamed: the text grows over several observations while the answer is still running.
    const lengths = new Set<number>();
    let snap = await lastAnswer(page);
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      snap = await lastAnswer(page);
      expect(snap.end, snap.error).toBe(''); // still streaming: it cannot have finished 1000 tokens yet
      if (snap.text.length > 0) lengths.add(snap.text.length);
      // Long enough to show in the screenshot.
      if (lengths.size >= 2 && snap.tps !== '' && Number(/(\d+) tokens/.exec(snap.stats)?.[1]) >= 12) break;
      await sleep(200);
    }
    expect(lengths.size).toBeGreaterThanOrEqual(2);
    expect(snap.stats).toMatch(/^TTFT [\d.]+ m?s · [\d.]+ tok\/s · \d+ tokens$/);
    expect(Number(snap.tps)).toBeGreaterThan(0);
    expect(await page.$eval('#stop', (b) => (b as HTMLElement).hidden)).toBe(false);

    await page.click('#stop');
    await page.waitForFunction(() => {
      const all = document.querySelectorAll<HTMLElement>('.msg.assistant');
      return all[all.length - 1]?.dataset.end === 'stopped';
    }, { timeout: 10_000 });
    const stopped = await lastAnswer(page);
    console.log(`stopped answer: ${JSON.stringify(stopped.text)} (${stopped.stats})`);
    const tokens = Number(/(\d+) tokens/.exec(stopped.stats)?.[1]);
    expect(tokens).toBeGreaterThanOrEqual(12);
    expect(tokens).toBeLessThan(1000);
    expect(stopped.stats).toMatch(/ · stopped$/);
    // Tokens came every ~0.5 s (at worst ~8 s) on SwiftShader: after 10 s, nothing more may have arrived.
    await sleep(10_000);
    const later = await lastAnswer(page);
    expect(later.text).toBe(stopped.text);
    expect(later.stats).toBe(stopped.stats);
    expect(later.state).toBe('ready');
    expect(await page.$eval('#stop', (b) => (b as HTMLElement).hidden)).toBe(true);
    expect(await page.$eval('#send', (b) => (b as HTMLButtonElement).disabled || (b as HTMLElement).hidden)).toBe(false);
    expect(await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).disabled)).toBe(false);
  }, 300_000);

  it('answers the next message to its end (the stopped one freed the model)', async (ctx) => {
    if (!page) return ctx.skip();
    expect(await state(page), 'a model is loaded').toBe('ready');
    await setValue(page, '#max_tokens', '8');
    await setValue(page, '#system-prompt', 'You are a helpful assistant who loves the sea.');
    const t0 = Date.now();
    await page.type('#prompt', 'Thanks! And a short poem?');
    await page.click('#send');
    // Were the stopped answer still generating in the worker, this one would queue behind its 1000 tokens.
    await page.waitForFunction(() => {
      const all = document.querySelectorAll<HTMLElement>('.msg.assistant');
      return all.length === 2 && (all[1]!.dataset.end ?? '') !== '';
    }, { timeout: 180_000, polling: 250 });
    const snap = await lastAnswer(page);
    console.log(`second answer: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${JSON.stringify(snap.text)} (${snap.stats})`);
    expect(snap.count).toBe(2);
    expect(['length', 'stop'], snap.error).toContain(snap.end);
    if (snap.end === 'length') expect(snap.stats).toMatch(/^TTFT [\d.]+ m?s · [\d.]+ tok\/s · 8 tokens · max tokens reached$/);
    expect(snap.text.length).toBeGreaterThan(0);
    expect(snap.state).toBe('ready');

  }, 240_000);

  it('counts the context as one types, refuses an over-long message, and shows prefill progress', async (ctx) => {
    if (!page) return ctx.skip();
    expect(await state(page), 'a model is loaded').toBe('ready');
    await setValue(page, '#max_tokens', '1');
    await page.waitForFunction(() => (document.getElementById('context-counter')!.dataset.tokens ?? '') !== '', { timeout: 30_000 });
    const before = (await counter(page)).tokens;
    // About 200 tokens: two prefill chunks of 128, so there is a moment with one done.
    const long = Array.from({ length: 24 }, (_, i) => `Sentence number ${i + 1} is here.`).join(' ');
    await setValue(page, '#prompt', long);
    await page.waitForFunction((b) => Number(document.getElementById('context-counter')!.dataset.tokens) > b + 150, { timeout: 30_000 }, before);
    const typed = await counter(page);
    expect(typed.level).toBe('ok');
    // Over the context: marked, Send held, and said why.
    await setValue(page, '#prompt', 'word '.repeat(2100));
    await page.waitForFunction(() => document.getElementById('context-counter')!.dataset.level === 'over', { timeout: 30_000 });
    expect(await page.$eval('#send', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await page.$eval('#composer-note', (e) => e.textContent)).toMatch(/Too long for the model.s context/);
    await setValue(page, '#prompt', long);
    await page.waitForFunction(() => document.getElementById('context-counter')!.dataset.level === 'ok', { timeout: 30_000 });
    expect(await page.$eval('#send', (b) => (b as HTMLButtonElement).disabled)).toBe(false);

    const answersBefore = (await lastAnswer(page)).count;
    await page.focus('#prompt');
    await page.keyboard.press('Enter');
    // The new answer's bubble, not the previous one's (whose end is already set).
    await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant').length > n, { timeout: 30_000 }, answersBefore);
    const seen: string[] = [];
    const deadline = Date.now() + 240_000;
    let snap = await lastAnswer(page);
    while (Date.now() < deadline) {
      snap = await lastAnswer(page);
      if (snap.end !== '') break;
      if (!seen.includes(snap.stats)) seen.push(snap.stats);
      await sleep(100);
    }
    console.log(`prefill progress seen: ${JSON.stringify(seen)}; end ${JSON.stringify(snap.end)} ${snap.error}`);
    const progress = seen.map((t) => /^Reading the prompt: (\d+) of (\d+) tokens \(\d+%\)$/.exec(t)).filter((m) => m !== null);
    expect(progress.some((m) => Number(m![1]) > 0 && Number(m![1]) < Number(m![2]))).toBe(true);
    // The prompt read is the counter's (less what the prefix cache held), and the answer used it all.
    expect(Number(progress[0]![2])).toBeLessThanOrEqual(typed.tokens);
    expect(Number(progress[0]![2])).toBeGreaterThan(typed.tokens - before);
    expect(['length', 'stop'], snap.error).toContain(snap.end);
  }, 300_000);

  it('marks invalid settings on their fields and holds Send until they are fixed', async (ctx) => {
    if (!page) return ctx.skip();
    await setValue(page, '#temperature', '7');
    await setValue(page, '#top_p', '0');
    const marked = await page.$$eval('[aria-invalid="true"]', (els) => els.map((e) => e.id));
    expect(marked.sort()).toEqual(['temperature', 'top_p']);
    expect(await page.$eval('#temperature-error', (e) => e.textContent)).toBe('Temperature must be between 0 and 2.');
    expect(await page.$eval('#top_p-error', (e) => e.textContent)).toBe('Top p must be between 0.01 and 1.');
    expect(await page.$eval('#send', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await page.$eval('#composer-note', (e) => e.textContent)).toBe('Fix the 2 settings marked in red first.');
    await setValue(page, '#temperature', '0.8');
    await setValue(page, '#top_p', '1');
    expect(await page.$$eval('[aria-invalid="true"]', (els) => els.length)).toBe(0);
    expect(await page.$('.field-error')).toBeNull();
    expect(await page.$eval('#send', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
    expect(await bannerText(page)).toBe('');
  });

  it('regenerates the last answer and edits the last message', async (ctx) => {
    if (!page) return ctx.skip();
    const users = (): Promise<string[]> => page!.$$eval('.msg.user .text', (els) => els.map((e) => e.textContent ?? ''));
    const n = (await lastAnswer(page)).count;
    const before = await users();
    await page.click('.msg.assistant.last-turn .regenerate-btn');
    const again = await waitForAnswerEnd(page, n, 240_000);
    expect(['length', 'stop'], again.error).toContain(again.end);
    expect(await users()).toEqual(before);

    await page.click('.msg.user.last-turn .edit-btn');
    expect(await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).value)).toBe(before.at(-1));
    expect(await users()).toEqual(before.slice(0, -1));
    expect((await lastAnswer(page)).count).toBe(n - 1);
    await setValue(page, '#prompt', 'A short poem about the sea, please.');
    await page.focus('#prompt');
    await page.keyboard.press('Enter');
    const edited = await waitForAnswerEnd(page, n, 240_000);
    expect(['length', 'stop'], edited.error).toContain(edited.end);
    expect((await users()).at(-1)).toBe('A short poem about the sea, please.');
  }, 300_000);

  it('keeps conversations and settings across a reload; the sidebar makes, switches and deletes them', async (ctx) => {
    if (!page) return ctx.skip();
    const transcript = (): Promise<string[]> => page!.$$eval('.msg', (els) => els.map((e) => `${e.classList.contains('user') ? 'U' : 'A'}: ${e.querySelector('.text')?.textContent ?? ''}`));
    const first = await transcript();
    expect(first.length).toBeGreaterThanOrEqual(4);
    // A second conversation, then back to the first.
    await page.click('#new-chat');
    expect(await page.$$eval('.msg', (els) => els.length)).toBe(0);
    expect(await emptyText(page)).toMatch(/is ready/);
    await page.type('#prompt', 'Hi there');
    await page.keyboard.press('Enter');
    await waitForAnswerEnd(page, 1, 240_000);
    const items = (): Promise<Array<{ title: string; current: boolean }>> =>
      page!.$$eval('#conversations .conversation', (els) => els.map((e) => ({ title: e.querySelector('.conversation-open')!.textContent ?? '', current: e.getAttribute('aria-current') === 'true' })));
    expect(await items()).toEqual([{ title: 'Hi there', current: true }, { title: 'Tell me a long story about the sea.', current: false }]);
    await page.click('#conversations .conversation:not([aria-current]) .conversation-open');
    expect(await transcript()).toEqual(first);
    // Delete the second one.
    await page.click('#conversations .conversation:not([aria-current]) .conversation-delete');
    await page.waitForFunction(() => document.querySelectorAll('#conversations .conversation').length === 1, { timeout: 10_000 });
    expect(await items()).toEqual([{ title: 'Tell me a long story about the sea.', current: true }]);

    // A conversation written straight into the page's IndexedDB (as the page stores them), with Markdown
    // and markup that must not run, for the next test.
    await page.evaluate(() => new Promise<void>((resolve, reject) => {
      const req = indexedDB.open('llama2-webgpu-demo', 1);
      req.onsuccess = () => {
        const tx = req.result.transaction('conversations', 'readwrite');
        tx.objectStore('conversations').put({
          id: 'markdown-test',
          title: 'Markdown',
          createdAt: 1,
          updatedAt: 2,
          turns: [{
            user: 'Show me Markdown',
            answer: {
              text: ' Here is **bold**, a [link](javascript:window.__xss=1) and code:\n\n```python\nprint("hi")\n```\n\n<img src=x onerror="window.__xss=2"><script>window.__xss=3</script>',
              stats: 'TTFT 1 s · 2.00 tok/s · 30 tokens · finished',
              end: 'stop',
            },
          }],
        });
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error);
      };
      req.onerror = () => reject(req.error);
    }));
    const maxTokens = await page.$eval('#max_tokens', (e) => (e as HTMLInputElement).value);
    const system = await page.$eval('#system-prompt', (e) => (e as HTMLTextAreaElement).value);

    await page.reload();
    // The built-in model comes back by itself; the conversation and the settings too.
    await waitForLoad(page, 240_000);
    expect(await transcript()).toEqual(first);
    expect(await page.$eval('#max_tokens', (e) => (e as HTMLInputElement).value)).toBe(maxTokens);
    expect(await page.$eval('#system-prompt', (e) => (e as HTMLTextAreaElement).value)).toBe(system);
    expect(await items()).toEqual([{ title: 'Tell me a long story about the sea.', current: true }, { title: 'Markdown', current: false }]);
    expect((await modelInfo(page))['Model']).toBe(DEFAULT.name);
  }, 400_000);

  it('renders answers as sanitized Markdown with copyable code blocks, then saves docs/demo.png', async (ctx) => {
    if (!page || !browser) return ctx.skip();
    await page.click('#conversations .conversation:not([aria-current]) .conversation-open');
    const md = await page.$eval('.msg.assistant .markdown', (e) => ({
      strong: e.querySelector('strong')?.textContent,
      code: e.querySelector('.code-block pre code')?.textContent,
      lang: e.querySelector('.code-bar span')?.textContent,
      links: Array.from(e.querySelectorAll("a")).map((a) => a.getAttribute('href')),
      dangerous: e.querySelectorAll('script, [onerror]').length,
    }));
    expect(md.strong).toBe('bold');
    expect(md.code).toBe('print("hi")\n');
    expect(md.lang).toBe('python');
    expect(md.links.every((h) => h === null || !h.startsWith('javascript:'))).toBe(true);
    expect(md.dangerous).toBe(0);
    await sleep(500);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    // Copy puts the code on the clipboard.
    await browser.defaultBrowserContext().overridePermissions(base.replace(/\/$/, ''), ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
    await page.bringToFront();
    await page.click('.code-block .copy-btn');
    await page.waitForFunction(() => document.querySelector('.code-block .copy-btn')!.textContent !== 'Copy', { timeout: 5_000 });
    expect(await page.$eval('.code-block .copy-btn', (b) => b.textContent)).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('print("hi")\n');

    // The screenshot: the model's own conversation, with the sidebar.
    await page.click('#conversations .conversation:not([aria-current]) .conversation-open');
    await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).blur());
    await mkdir(join(ROOT, 'docs'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  }, 120_000);

  it('fits a phone screen: the chat and its composer come first, above the fold', async (ctx) => {
    if (!page) return ctx.skip();
    // Width and height only: changing isMobile would make puppeteer reload the page.
    await page.setViewport({ width: 390, height: 844 });
    try {
      await sleep(300);
      const r = await page.evaluate(() => {
        const box = (sel: string) => document.querySelector(sel)!.getBoundingClientRect().toJSON() as DOMRect;
        return { composer: box('#composer'), prompt: box('#prompt'), chat: box('.chat'), model: box('.model-col'), width: document.documentElement.scrollWidth };
      });
      expect(r.composer.top).toBeGreaterThanOrEqual(0);
      expect(r.composer.bottom).toBeLessThanOrEqual(844);
      expect(r.prompt.height).toBeGreaterThan(20);
      expect(r.chat.top).toBeLessThan(r.model.top);
      expect(r.width).toBeLessThanOrEqual(390); // no sideways scrolling
    } finally {
      await page.setViewport({ width: 1400, height: 940 });
    }
  });

  it('loads a Hugging Face folder the user picks', async (ctx) => {
    if (!page) return ctx.skip();
    expect(Object.keys(tinyRandomModelFiles())).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']));
    await recordProgress(page);
    // What a folder pick gives the page: the folder's files, with webkitRelativePath "tiny-llama/...".
    const input = await page.$('input#folder-input');
    await input!.uploadFile(modelDir);
    await waitForState(page, 'loading', 30_000);
    await waitForLoad(page, 180_000);
    const info = await modelInfo(page);
    expect(info['Model']).toBe('tiny-llama');
    expect(info['Parameters']).toBe(RANDOM.params);
    expect(await progressLog(page)).toContain(`95% | ${RANDOM.size} of ${RANDOM.size} · tensor ${RANDOM.tensors}/${RANDOM.tensors}`);
    await checkOnePercentage(page);
    expect((await modelInfo(page))['Source']).toBe('your files');
    // The conversation stays: a new model answers its next message.
    expect((await lastAnswer(page)).count).toBeGreaterThan(0);
  }, 240_000);

  it('shows the loader\'s message when a URL holds no model', async (ctx) => {
    if (!page) return ctx.skip();
    await setValue(page, '#url-input', `${files!.url}/models/missing/`);
    await page.click('#load-url');
    await page.waitForFunction(() => !document.getElementById('banner')!.hidden, { timeout: 60_000 });
    expect(await page.$eval('#banner-title', (e) => e.textContent)).toBe('The model could not be loaded.');
    expect(await bannerText(page)).toContain('no config.json; not a Hugging Face model directory');
    expect(await state(page)).toBe('empty');
    expect(await page.$eval('#load-builtin', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
  }, 120_000);

  it('refuses a model that needs more than the GPU memory given, before loading it', async (ctx) => {
    if (!page) return ctx.skip();
    await page.click('.load-options summary');
    await setValue(page, '#memory-gb', '0.01');
    await page.click('#load-builtin');
    await page.waitForFunction(() => !document.getElementById('banner')!.hidden, { timeout: 120_000 });
    expect(await page.$eval('#banner-title', (e) => e.textContent)).toBe('This model does not fit this GPU.');
    expect(await bannerText(page)).toMatch(/does not fit: needs [\d.]+ [KMG]i?B/);
    expect(await state(page)).toBe('empty');
    await setValue(page, '#memory-gb', '');
  }, 180_000);

  it('loads a GGUF file, quantizing to q8 on the way, and answers with it', async (ctx) => {
    if (!page) return ctx.skip();
    await page.select('#dtype', 'q8');
    await recordProgress(page);
    const input = await page.$('input#gguf-input');
    await input!.uploadFile(ggufPath);
    await waitForLoad(page, 180_000);
    const info = await modelInfo(page);
    expect(info['Model']).toBe('tiny-q8');
    expect(info['Weights']).toMatch(/\(q8\)$/);
    expect((await progressLog(page)).some((l) => /^95% \| [\d.]+ MB of [\d.]+ MB · tensor \d+\/\d+$/.test(l))).toBe(true);
    await setValue(page, '#max_tokens', '2');
    await page.click('#new-chat');
    await page.type('#prompt', 'Hi!');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => (document.querySelector<HTMLElement>('.msg.assistant')?.dataset.end ?? '') !== '', { timeout: 120_000, polling: 250 });
    const snap = await lastAnswer(page);
    expect(['length', 'stop'], snap.error).toContain(snap.end);
    if (snap.end === 'length') expect(snap.stats).toMatch(/ · 2 tokens · max tokens reached$/);
    await page.select('#dtype', '');
  }, 300_000);

  it('loads a model from a URL (Range requests, another origin)', async (ctx) => {
    if (!page) return ctx.skip();
    await setValue(page, '#url-input', `${files!.url}/models/tiny/`);
    await recordProgress(page);
    await page.click('#load-url');
    await waitForLoad(page, 180_000);
    expect(await bannerText(page)).toBe('');
    const info = await modelInfo(page);
    expect(info['Model']).toBe('tiny');
    expect(info['Parameters']).toBe(RANDOM.params);
    expect(info['Source']).toBe('downloaded, now cached');
    // The files were downloaded whole into the cache (its progress), then read from there onto the GPU.
    expect((await progressLog(page)).some((l) => /^100% \| [\d.]+ MB of [\d.]+ MB · [\d.]+ (?:kB|MB|GB)\/s$/.test(l))).toBe(true);
    expect(await checkOnePercentage(page)).toEqual(expect.arrayContaining(['Downloading into this browser\u2019s cache', 'Loading weights onto the GPU', 'Compiling the GPU kernels…']));
    await page.waitForFunction(() => (document.getElementById('cache-info')!.textContent ?? '').startsWith('Cached: 1 model, '), { timeout: 10_000 });
  }, 240_000);

  it('loads the URL model again from the cache with its server gone; clearing the cache forgets it', async (ctx) => {
    if (!page) return ctx.skip();
    await files!.close();
    files = null;
    await page.click('#load-url');
    await waitForLoad(page, 180_000);
    expect((await modelInfo(page))['Source']).toBe('this browser\u2019s cache');
    await page.click('#clear-cache');
    await page.waitForFunction(() => document.getElementById('cache-info')!.textContent === 'No models cached.', { timeout: 10_000 });
    expect(await page.$eval('#clear-cache', (b) => (b as HTMLElement).hidden)).toBe(true);
    await page.click('#load-url');
    await page.waitForFunction(() => !document.getElementById('banner')!.hidden, { timeout: 60_000 });
    expect(await page.$eval('#banner-title', (e) => e.textContent)).toBe('The model could not be loaded.');
    await page.click('#banner-close');
    // The built-in model again, for the last test.
    await page.click('#load-builtin');
    await waitForLoad(page, 180_000);
  }, 400_000);

  it('reports a lost GPU device and offers a reload', async (ctx) => {
    if (!page || !browser) return ctx.skip();
    expect(await state(page), 'a model is loaded').toBe('ready');
    // A real loss: the GPU process (which runs WebGPU for every tab) crashes.
    const cdp = await browser.target().createCDPSession();
    await cdp.send('Browser.crashGpuProcess');
    await page.waitForFunction(() => !document.getElementById('banner')!.hidden, { timeout: 60_000 });
    expect(await page.$eval('#banner-title', (e) => e.textContent)).toBe('The GPU device was lost.');
    expect(await bannerText(page)).toMatch(/WebGPU device lost/);
    expect(await state(page)).toBe('dead');
    expect(await page.$eval('#model-status', (e) => e.textContent)).toBe('Unavailable');
    expect(await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).disabled)).toBe(true);
    expect(await page.$eval('#banner-reload', (b) => (b as HTMLElement).hidden)).toBe(false);
    const transcript = await page.$$eval('.msg .text', (els) => els.map((e) => e.textContent));
    await Promise.all([page.waitForNavigation({ timeout: 60_000 }), page.click('#banner-reload')]);
    // After the reload the GPU is back: the model loads again by itself and the conversation is still there.
    await waitForLoad(page, 240_000);
    expect((await modelInfo(page))['Model']).toBe(DEFAULT.name);
    expect(await page.$$eval('.msg .text', (els) => els.map((e) => e.textContent))).toEqual(transcript);
  }, 180_000);
});

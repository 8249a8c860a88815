// The chat demo end to end: builds it with Vite, serves the build (vite preview on 127.0.0.1), and
// drives it in headless Chromium (SwiftShader WebGPU): the no-WebGPU message, the built-in model with its
// progress bar, a streamed answer with tokens/s, stop mid-answer, a second answer to the end, models from
// a folder and from a URL, a load error, and a lost GPU device. Saves docs/demo.png.
// SwiftShader is slow (this model decodes at ~2 tokens/s on two cores): answers are kept to a few tokens.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';
import { preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_SEED, defaultModelFiles } from '../runtime/default-model.ts';
import { encodeGguf } from '../runtime/gguf-writer.ts';
import { randomWeights } from '../runtime/random-model.ts';
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

/** Records the progress panel's texts from now on (every worker message is its own task). */
const recordProgress = (p: Page): Promise<void> =>
  p.evaluate(() => {
    const w = window as unknown as { progressLog: string[] };
    w.progressLog = [];
    const panel = document.getElementById('progress')!;
    new MutationObserver(() => {
      w.progressLog.push(`${document.getElementById('progress-percent')!.textContent} | ${document.getElementById('progress-text')!.textContent}`);
    }).observe(panel, { subtree: true, childList: true, characterData: true });
  });
const progressLog = (p: Page): Promise<string[]> => p.evaluate(() => (window as unknown as { progressLog: string[] }).progressLog);

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
  for (const [name, bytes] of Object.entries(defaultModelFiles())) await writeFile(join(modelDir, name), bytes);
  // The same model as one llama.cpp GGUF file with Q8_0 matrices.
  ggufPath = join(tmp, 'tiny-q8.gguf');
  const weights = randomWeights(DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_SEED);
  await writeFile(ggufPath, encodeGguf(DEFAULT_MODEL_CONFIG, weights, { type: 'Q8_0', tokenizerJson: buildLlama2TokenizerJson() }));
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
    // The page's own chunk stays small: the tokenizer's vocabulary and the runtime live in the worker.
    const pageChunk = js.find((f) => f.startsWith('index-'))!;
    expect((await readFile(join(BUILD, 'assets', pageChunk))).byteLength).toBeLessThan(100_000);
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
    } finally {
      await p.close();
    }
  });

  it('loads the built-in model in one click, with bytes, percent and speed', async (ctx) => {
    if (!page) return ctx.skip();
    expect(await state(page)).toBe('empty');
    await recordProgress(page);
    const t0 = Date.now();
    await page.click('#load-builtin');
    await waitForLoad(page, 180_000);
    console.log(`built-in model loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const log = await progressLog(page);
    // e.g. "53% | 20.6 MB of 38.4 MB · 28.1 MB/s · tensor 27/39"
    const line = /^(\d+)% \| [\d.]+ (?:B|kB|MB) of 38\.\d MB · [\d.]+ (?:B|kB|MB|GB)\/s/;
    expect(log.some((l) => line.test(l))).toBe(true);
    const percents = log.map((l) => line.exec(l)?.[1]).filter((x) => x !== undefined).map(Number);
    expect(percents.some((x) => x > 0 && x < 100)).toBe(true);
    expect(Math.max(...percents)).toBe(100);
    expect(log.some((l) => / · tensor 39\/39$/.test(l))).toBe(true);
    const info = await modelInfo(page);
    expect(info['Model']).toBe('tiny-random-llama-2');
    expect(info['Parameters']).toBe('19M');
    expect(info['Context']).toBe('2048 tokens');
    expect(info['GPU']).toMatch(/swiftshader/i);
    expect(await page.$eval('#progress', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).disabled)).toBe(false);
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

  it('answers the next message to its end (the stopped one freed the model), then saves docs/demo.png', async (ctx) => {
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

    await page.$eval('#prompt', (e) => (e as HTMLTextAreaElement).blur());
    await mkdir(join(ROOT, 'docs'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  }, 240_000);

  it('loads a Hugging Face folder the user picks', async (ctx) => {
    if (!page) return ctx.skip();
    expect(Object.keys(defaultModelFiles())).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']));
    await recordProgress(page);
    // What a folder pick gives the page: the folder's files, with webkitRelativePath "tiny-llama/...".
    const input = await page.$('input#folder-input');
    await input!.uploadFile(modelDir);
    await waitForState(page, 'loading', 30_000);
    await waitForLoad(page, 180_000);
    const info = await modelInfo(page);
    expect(info['Model']).toBe('tiny-llama');
    expect(info['Parameters']).toBe('19M');
    expect((await progressLog(page)).some((l) => /^100% \| 38\.\d MB of 38\.\d MB/.test(l))).toBe(true);
    // A new model starts a new conversation.
    expect((await lastAnswer(page)).count).toBe(0);
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
    expect((await progressLog(page)).some((l) => /^100% \| [\d.]+ MB of [\d.]+ MB/.test(l))).toBe(true);
    await setValue(page, '#max_tokens', '2');
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
    expect(info['Parameters']).toBe('19M');
    expect((await progressLog(page)).some((l) => /^100% \| 38\.\d MB of 38\.\d MB · [\d.]+ (?:kB|MB|GB)\/s/.test(l))).toBe(true);
  }, 240_000);

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
    await Promise.all([page.waitForNavigation({ timeout: 60_000 }), page.click('#banner-reload')]);
    await page.waitForFunction(() => document.body.dataset.state !== undefined, { timeout: 30_000 });
    expect(await page.$eval('#messages .msg', () => true).catch(() => false)).toBe(false);
    expect(await page.$eval('#model-info', (e) => (e as HTMLElement).hidden)).toBe(true);
  }, 180_000);
});

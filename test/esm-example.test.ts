// The ES-module examples run as users would run them: examples/deno-example.ts under Deno (the `deno`
// npm package, its built-in WebGPU), and examples/browser-esm.html as a plain page (no bundler, the
// compiled dist/ and an import map) in headless Chromium. Each must produce a real chat completion.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChatCompletion } from '../api/types.ts';
import { forwardPageErrors, launchChromium, webGpuAdapter } from './helpers/chromium.ts';
import { startStaticServer, type StaticServer } from './helpers/static-server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function expectCompletion(c: ChatCompletion, maxTokens: number): void {
  expect(c.object).toBe('chat.completion');
  expect(c.id).toMatch(/^chatcmpl-/);
  expect(c.model).toBe('tiny-llama-2-kjv');
  expect(c.choices).toHaveLength(1);
  expect(c.choices[0]!.message.role).toBe('assistant');
  expect(typeof c.choices[0]!.message.content).toBe('string');
  expect(['length', 'stop']).toContain(c.choices[0]!.finish_reason);
  expect(c.usage.prompt_tokens).toBeGreaterThan(0);
  expect(c.usage.completion_tokens).toBeGreaterThan(0);
  expect(c.usage.completion_tokens).toBeLessThanOrEqual(maxTokens);
  expect(c.usage.total_tokens).toBe(c.usage.prompt_tokens + c.usage.completion_tokens);
  if (c.choices[0]!.finish_reason === 'length') expect(c.usage.completion_tokens).toBe(maxTokens);
}

let files: StaticServer | null = null;
afterAll(async () => {
  await files?.close();
});

describe('ES-module examples', () => {
  it('examples/deno-example.ts prints a chat completion under Deno', () => {
    const out = execFileSync('npx', ['--no-install', 'deno', 'run', '--allow-read', 'examples/deno-example.ts'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', NO_COLOR: '1' },
      timeout: 300_000,
    });
    const completion = JSON.parse(out.trim().split('\n').pop()!) as ChatCompletion;
    expectCompletion(completion, 8);
    // The prompt is the Llama-2 chat format of a system and a user message: BOS [INST] <<SYS>> ...
    expect(completion.usage.prompt_tokens).toBeGreaterThan(20);
  }, 300_000);

  it('examples/browser-esm.html gets a chat completion in Chromium, from dist/ with an import map', async (ctx) => {
    const browser = await launchChromium();
    if (!browser) return ctx.skip();
    try {
      // The repository root, as `python3 -m http.server` would serve it.
      files = await startStaticServer({ '/': ROOT });
      const page = await browser.newPage();
      forwardPageErrors(page, 'browser-esm');
      await page.goto(`${files.url}/examples/browser-esm.html`);
      if (!(await webGpuAdapter(page))) return ctx.skip();
      await page.waitForFunction(() => document.getElementById('out')!.dataset.status !== 'running', { timeout: 240_000, polling: 250 });
      const { status, text } = await page.$eval('#out', (e) => ({ status: (e as HTMLElement).dataset.status ?? '', text: e.textContent ?? '' }));
      expect(status, text).toBe('done');
      expectCompletion(JSON.parse(text) as ChatCompletion, 4);
    } finally {
      await browser.close();
    }
  }, 300_000);
});

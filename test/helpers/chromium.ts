// Headless Chromium for the browser tests: Debian's `chromium` through puppeteer-core, WebGPU on
// SwiftShader (see shared/WEBGPU-ON-CPU.md). Without Chromium or WebGPU the tests skip loudly; under
// CI (CI=true) or REQUIRE_GPU=1 that is a failure instead.
import { existsSync } from 'node:fs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const mustRun = (): boolean => process.env.CI === 'true' || process.env.REQUIRE_GPU === '1';

/** Throws under CI; otherwise warns and returns null (the caller skips). */
export function unavailable(reason: string): null {
  if (mustRun()) throw new Error(`browser tests cannot run: ${reason}`);
  console.warn(`\n\n*** BROWSER TESTS ARE SKIPPED: ${reason} ***\n\n`);
  return null;
}

export async function launchChromium(): Promise<Browser | null> {
  if (!existsSync(CHROMIUM_PATH)) return unavailable(`no Chromium at ${CHROMIUM_PATH} (run scripts/setup.sh, or set CHROMIUM_PATH)`);
  return puppeteer.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, protocolTimeout: 600_000 });
}

/** The WebGPU adapter's architecture as the page sees it ("swiftshader"), or null (then the caller skips). */
export async function webGpuAdapter(page: Page): Promise<string | null> {
  const arch = await page.evaluate(async () => {
    if (!navigator.gpu) return 'no navigator.gpu';
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ? `ok:${adapter.info.architecture || adapter.info.vendor || 'unknown'}` : 'requestAdapter() returned null';
  });
  if (arch.startsWith('ok:')) return arch.slice(3);
  return unavailable(`Chromium has no WebGPU adapter (${arch})`);
}

/** Prints the page's console errors and uncaught exceptions (they explain most browser test failures). */
export function forwardPageErrors(page: Page, tag: string): void {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') console.log(`[${tag} console.${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`[${tag} pageerror] ${(e as Error).message}`));
}

// The package as its users get it: `npm pack`, unpacked as node_modules/llama2-webgpu of a project outside
// the repository, whose other node_modules entries are exactly the packed package.json's dependencies (and the
// optional peer `webgpu` for Node), linked to this repository's installs (no network). Then:
//   - a Vite app importing 'llama2-webgpu' builds without a warning, holds no Node built-in or Dawn, and
//     gets a chat completion in headless Chromium;
//   - a TypeScript project typechecks against the shipped declarations with skipLibCheck: false, as a browser
//     app (only the package's own dependencies) and as a Node app (also llama2-webgpu/server);
//   - Node and Deno (only --allow-read, the `npm:` specifier) load the installed package and answer.
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatCompletion } from '../api/types.ts';
import { forwardPageErrors, launchChromium, webGpuAdapter } from './helpers/chromium.ts';
import { startStaticServer, type StaticServer } from './helpers/static-server.ts';
import { testGpu } from './helpers/gpu.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENV = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', NO_COLOR: '1' };

let tmp = '';
let app = ''; // the consumer project
let packed: { files: { path: string }[]; filename: string } = { files: [], filename: '' };
let pkg: Record<string, any> = {};
let files: StaticServer | null = null;

function link(name: string): void {
  const to = join(app, 'node_modules', name);
  mkdirSync(dirname(to), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules', name), to);
}

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: ENV, timeout, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** One chat completion of the default model, as a consumer writes it (plain JavaScript). */
const COMPLETION_JS = `const { engine, close } = await loadLlamaEngine({ model: 'default', maxBatch: 1 });
const completion = await engine.chat.completions.create({
  model: engine.modelName,
  messages: [{ role: 'user', content: 'Hello!' }],
  max_tokens: 3,
  seed: 1,
});
await close();`;

function expectCompletion(c: ChatCompletion): void {
  expect(c.object).toBe('chat.completion');
  expect(c.model).toBe('tiny-llama-2-kjv');
  expect(c.choices[0]!.message.role).toBe('assistant');
  expect(c.choices[0]!.finish_reason).toBe('length');
  expect(c.usage.completion_tokens).toBe(3);
  expect(c.usage.prompt_tokens).toBeGreaterThan(0);
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'llama2-webgpu-package-'));
  // dist/ is current: the suite's global setup compiled it (--ignore-scripts skips `prepare`).
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT, encoding: 'utf8', env: ENV });
  packed = (JSON.parse(out) as typeof packed[])[0]!;
  app = join(tmp, 'app');
  const dest = join(app, 'node_modules', 'llama2-webgpu');
  mkdirSync(dest, { recursive: true });
  execFileSync('tar', ['xzf', join(tmp, packed.filename), '-C', dest, '--strip-components=1']);
  pkg = JSON.parse(readFileSync(join(dest, 'package.json'), 'utf8'));
  for (const dep of Object.keys(pkg.dependencies ?? {})) link(dep);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { 'llama2-webgpu': `file:../${packed.filename}` } }));
}, 120_000);

afterAll(async () => {
  await files?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('ships the library, its declarations and the CLI; Dawn is an optional peer; the exports map has each runtime', () => {
    const paths = packed.files.map((f) => f.path);
    for (const want of ['dist/index.js', 'dist/index.d.ts', 'dist/server.js', 'dist/server.d.ts', 'bin/llama2-webgpu.js', 'dist/cli/main.js']) {
      expect(paths).toContain(want);
    }
    expect(paths.filter((p) => !/^(dist\/|bin\/|assets\/tiny-llama-2-kjv\/|README\.md$|package\.json$|LICENSE)/.test(p))).toEqual([]);
    // The default model's weights ship with it (loaded from the package in Node and Deno).
    expect(paths).toContain('assets/tiny-llama-2-kjv/model.safetensors');
    expect(paths.filter((p) => p.endsWith('.map') || p.startsWith('dist/demo/') || /^dist\/(cli|bench)\/.*\.d\.ts$/.test(p))).toEqual([]);
    expect(pkg.dependencies.webgpu).toBeUndefined();
    expect(pkg.peerDependencies.webgpu).toBeDefined();
    expect(pkg.peerDependenciesMeta.webgpu.optional).toBe(true);
    expect(pkg.dependencies['@webgpu/types']).toBeDefined();
    expect(Object.keys(pkg.exports['.'])).toEqual(['types', 'browser', 'deno', 'node', 'default']);
    expect(pkg.exports['./server'].types).toBe('./dist/server.d.ts');
    expect(pkg.exports['./server'].node).toBe('./dist/server.js');
    // The CLI and benchmarks are the bin's implementation, not part of the API.
    expect(Object.keys(pkg.exports).filter((k) => /cli|bench/.test(k))).toEqual([]);
    // The declarations name the WebGPU types they use.
    expect(readFileSync(join(app, 'node_modules/llama2-webgpu/dist/index.d.ts'), 'utf8')).toMatch(/reference types="@webgpu\/types"/);
  });

  it('a TypeScript project typechecks against it with skipLibCheck: false (browser app, and Node app with /server)', async () => {
    const common = { strict: true, skipLibCheck: false, noEmit: true, target: 'ES2022' };
    writeFileSync(join(app, 'browser.ts'), `import { loadLlamaEngine, createGpuContext, type ChatCompletion, type GpuContext } from 'llama2-webgpu';
const ctx: GpuContext = await createGpuContext();
const device: GPUDevice = ctx.device;
const { engine } = await loadLlamaEngine({ model: 'default' });
const c: ChatCompletion = await engine.chat.completions.create({ model: engine.modelName, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
for await (const chunk of await engine.chat.completions.create({ model: engine.modelName, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, stream: true })) {
  console.log(chunk.choices[0]?.delta.content, device.label, c.usage.total_tokens);
}
export {};
`);
    writeFileSync(join(app, 'node.ts'), `import { loadLlamaEngine } from 'llama2-webgpu';
import { startServer, type RunningServer } from 'llama2-webgpu/server';
const { engine, close } = await loadLlamaEngine({ model: 'default' });
const server: RunningServer = await startServer({ engine, port: 0 });
console.log(server.url);
await server.close();
await close();
`);
    // A browser app: DOM types, nothing but the package's own dependencies.
    writeFileSync(join(app, 'tsconfig.browser.json'), JSON.stringify({
      compilerOptions: { ...common, module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [] },
      files: ['browser.ts'],
    }));
    // A Node app: Node's types (a Node project has @types/node). @webgpu/types itself builds on the DOM
    // library's declarations (BufferSource, EventTarget), so WebGPU code in Node has "DOM" in lib.
    link('@types/node');
    writeFileSync(join(app, 'tsconfig.node.json'), JSON.stringify({
      compilerOptions: { ...common, module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], types: ['node'] },
      files: ['node.ts'],
    }));
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    for (const config of ['tsconfig.browser.json', 'tsconfig.node.json']) {
      const r = await run(process.execPath, [tsc, '-p', config], app);
      expect(r.stdout + r.stderr, config).toBe('');
      expect(r.code, config).toBe(0);
    }
    // The check is real: a wrong use of the declarations fails it.
    writeFileSync(join(app, 'wrong.ts'), `import { loadLlamaEngine } from 'llama2-webgpu';\nawait loadLlamaEngine({ model: 42 });\nexport {};\n`);
    writeFileSync(join(app, 'tsconfig.wrong.json'), JSON.stringify({ extends: './tsconfig.browser.json', files: ['wrong.ts'] }));
    const wrong = await run(process.execPath, [tsc, '-p', 'tsconfig.wrong.json'], app);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout).toMatch(/wrong\.ts.*error TS2322/);
  }, 180_000);

  it('a Vite app builds with it (no warning, no Node built-in, no Dawn) and answers in Chromium', async (ctx) => {
    writeFileSync(join(app, 'index.html'), `<!doctype html>
<html><head><meta charset="utf-8"><title>consumer</title><link rel="icon" href="data:,"></head>
<body><pre id="out" data-status="running"></pre><script type="module" src="./main.js"></script></body></html>
`);
    // A page serves the default model's files itself: the package's assets/ copied into Vite's public/.
    cpSync(join(app, 'node_modules/llama2-webgpu/assets'), join(app, 'public'), { recursive: true });
    writeFileSync(join(app, 'main.js'), `import { loadLlamaEngine, defaultModelDir } from 'llama2-webgpu';
const out = document.getElementById('out');
try {
${COMPLETION_JS.replace("model: 'default'", "model: defaultModelDir(new URL('tiny-llama-2-kjv/', location.href))")}
  out.textContent = JSON.stringify(completion);
  out.dataset.status = 'done';
} catch (e) {
  out.textContent = String(e?.stack ?? e);
  out.dataset.status = 'error';
}
`);
    const { build, createLogger } = await import('vite');
    const logger = createLogger('warn');
    const warnings: string[] = [];
    logger.warn = (msg) => void warnings.push(msg);
    logger.warnOnce = (msg) => void warnings.push(msg);
    await build({
      root: app,
      configFile: false,
      logLevel: 'warn',
      customLogger: logger,
      // The Llama-2 vocabulary alone is 1.5 MB: a big chunk is expected.
      build: { outDir: join(app, 'dist'), target: 'es2022', chunkSizeWarningLimit: 4096 },
    });
    expect(warnings).toEqual([]);
    const assets = readdirSync(join(app, 'dist/assets')).filter((f) => f.endsWith('.js'));
    for (const f of assets) {
      const code = readFileSync(join(app, 'dist/assets', f), 'utf8');
      expect(code, f).not.toMatch(/node:http|node:buffer|__vite-browser-external|dawn\.node/);
    }

    const browser = await launchChromium();
    if (!browser) return ctx.skip();
    try {
      files = await startStaticServer({ '/': join(app, 'dist') });
      const page = await browser.newPage();
      forwardPageErrors(page, 'vite-consumer');
      await page.goto(`${files.url}/index.html`);
      if (!(await webGpuAdapter(page))) return ctx.skip();
      await page.waitForFunction(() => document.getElementById('out')!.dataset.status !== 'running', { timeout: 240_000, polling: 250 });
      const { status, text } = await page.$eval('#out', (e) => ({ status: (e as HTMLElement).dataset.status ?? '', text: e.textContent ?? '' }));
      expect(status, text).toBe('done');
      expectCompletion(JSON.parse(text) as ChatCompletion);
    } finally {
      await browser.close();
    }
  }, 300_000);

  it('Node: the installed package (with the webgpu peer) serves a completion over HTTP, outside the repository', async (ctx) => {
    if (!(await testGpu())) return ctx.skip();
    link('webgpu');
    writeFileSync(join(app, 'node.mjs'), `import { loadLlamaEngine } from 'llama2-webgpu';
import { startServer } from 'llama2-webgpu/server';
const { engine, close } = await loadLlamaEngine({ model: 'default', maxBatch: 1 });
const server = await startServer({ engine, port: 0 });
const res = await fetch(server.url + '/v1/chat/completions', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ model: engine.modelName, messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 3, seed: 1 }),
});
console.log(JSON.stringify(await res.json()));
await server.close();
await close();
`);
    const r = await run(process.execPath, ['node.mjs'], app);
    expect(r.code, r.stderr).toBe(0);
    expectCompletion(JSON.parse(r.stdout.trim().split('\n').pop()!) as ChatCompletion);
    // The bin from the package runs too.
    const v = await run(process.execPath, ['node_modules/llama2-webgpu/bin/llama2-webgpu.js', '--version'], app);
    expect(v.stdout.trim()).toBe(`llama2-webgpu ${pkg.version}`);
  }, 180_000);

  it('Deno: `npm:llama2-webgpu` from a project with node_modules, only --allow-read', async () => {
    writeFileSync(join(app, 'deno.ts'), `import { loadLlamaEngine } from 'npm:llama2-webgpu';
${COMPLETION_JS}
console.log(JSON.stringify(completion));
`);
    const r = await run(join(ROOT, 'node_modules/.bin/deno'), ['run', '--allow-read', 'deno.ts'], app, 240_000);
    expect(r.code, r.stderr).toBe(0);
    expectCompletion(JSON.parse(r.stdout.trim().split('\n').pop()!) as ChatCompletion);
  }, 300_000);
});

// The README's examples run as written, each to its end on the default model: the curl calls (the hosted
// endpoint's documented calls with only the URL swapped) against a local server, every TypeScript snippet
// (Node, or Deno for the `npm:` ones) from a project outside the repository that has this checkout as its
// node_modules/llama2-webgpu (what `npm install <path>` makes), and the `generate` command lines.
import { it, expect, beforeAll, afterAll, describe } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { testGpu } from './helpers/gpu.ts';
import { loadLlamaEngine, type LlamaEngine } from '../serve/llama-engine.ts';
import { startServer, type RunningServer } from '../api/server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const ENV = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', NO_COLOR: '1', DEEPINFRA_TOKEN: 'not-needed' };

let llama: LlamaEngine | null = null;
let server: RunningServer | null = null;
let project = '';
beforeAll(async () => {
  project = mkdtempSync(join(tmpdir(), 'llama2-webgpu-readme-'));
  mkdirSync(join(project, 'node_modules'));
  symlinkSync(ROOT, join(project, 'node_modules', 'llama2-webgpu'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'readme-snippets', private: true, type: 'module', dependencies: { 'llama2-webgpu': '*' } }));
  if (!(await testGpu())) return;
  llama = await loadLlamaEngine({ model: 'default', maxBatch: 2 });
  server = await startServer({ engine: llama.engine, port: 0 });
});
afterAll(async () => {
  await server?.close();
  await llama?.close();
  if (project) rmSync(project, { recursive: true, force: true });
});

const blocks = (lang: string): string[] => [...README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);

function curlCalls(): string[] {
  const calls: string[] = [];
  for (const block of blocks('sh')) {
    for (const m of block.matchAll(/curl "http:\/\/127\.0\.0\.1:8080[\s\S]*?'\n/g)) calls.push(m[0]);
  }
  return calls;
}

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): Promise<{ code: number; stdout: string; stderr: string; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: ENV, timeout, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

it('every curl call in the README works as written against the server, bounded by its max_tokens', async (t) => {
  if (!server) return t.skip();
  const calls = curlCalls();
  expect(calls.length).toBeGreaterThanOrEqual(2);
  for (const call of calls) {
    const maxTokens = Number(/"max_tokens": (\d+)/.exec(call)?.[1]);
    expect(maxTokens, 'every call bounds its answer').toBeGreaterThan(0);
    // Only the port differs (the test server listens on a free one).
    const r = await run('bash', ['-c', call.replace('http://127.0.0.1:8080', server.url)], ROOT, 60_000);
    expect(r.code, r.stderr).toBe(0);
    console.log(`curl${call.includes('"stream": true') ? ' (stream)' : ''}: ${r.seconds.toFixed(1)} s`);
    if (call.includes('"stream": true')) {
      const events = r.stdout.trim().split('\n\n');
      expect(events.at(-1)).toBe('data: [DONE]');
      const first = JSON.parse(events[0]!.slice(6));
      expect(first.object).toBe('chat.completion.chunk');
      expect(first.choices[0].delta.role).toBe('assistant');
      const last = JSON.parse(events.at(-2)!.slice(6));
      expect(['length', 'stop']).toContain(last.choices[0].finish_reason);
      expect(events.length).toBeLessThanOrEqual(maxTokens + 3);
      expect(last.usage).toMatchObject({ completion_tokens: expect.any(Number), estimated_cost: expect.any(Number) }); // as DeepInfra's streams
    } else {
      const j = JSON.parse(r.stdout);
      expect(j.object).toBe('chat.completion');
      expect(j.model).toBe('meta-llama/Llama-2-70b-chat-hf'); // the id the call sent
      expect(j.choices[0].message.role).toBe('assistant');
      expect(j.usage.completion_tokens).toBeGreaterThan(0);
      expect(j.usage.completion_tokens).toBeLessThanOrEqual(maxTokens);
      if (j.choices[0].finish_reason === 'length') expect(j.usage.completion_tokens).toBe(maxTokens);
      expect(j.usage.prompt_tokens).toBe(j.usage.total_tokens - j.usage.completion_tokens);
    }
  }
});

describe('README snippets', () => {
  const snippets = blocks('ts').filter((b) => /from 'llama2-webgpu|from 'npm:llama2-webgpu/.test(b));

  it('are all found (Node and Deno ones)', () => {
    expect(snippets.filter((s) => s.includes("'npm:llama2-webgpu")).length).toBeGreaterThanOrEqual(1);
    expect(snippets.filter((s) => !s.includes("'npm:llama2-webgpu")).length).toBeGreaterThanOrEqual(2);
  });

  snippets.forEach((snippet, i) => {
    const deno = snippet.includes("'npm:llama2-webgpu");
    const head = snippet.split('\n').find((l) => l.startsWith('const') || l.startsWith('for'))?.slice(0, 60) ?? '';
    it(`#${i + 1} runs to its end under ${deno ? 'Deno' : 'Node'}: ${head}`, async (ctx) => {
      if (!(await testGpu())) return ctx.skip();
      let r;
      if (deno) {
        writeFileSync(join(project, `snippet-${i}.ts`), snippet);
        r = await run(join(ROOT, 'node_modules/.bin/deno'), ['run', '--allow-read', `snippet-${i}.ts`], project);
      } else {
        // Node runs JavaScript: the snippet with its types stripped, nothing else changed.
        const js = ts.transpileModule(snippet, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
        writeFileSync(join(project, `snippet-${i}.mjs`), js);
        r = await run(process.execPath, [`snippet-${i}.mjs`], project);
      }
      console.log(`snippet #${i + 1} (${deno ? 'Deno' : 'Node'}): ${r.seconds.toFixed(1)} s, stdout ${JSON.stringify(r.stdout.slice(0, 200))}`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().length).toBeGreaterThan(0);
      expect(r.stdout.endsWith('\n')).toBe(true);
      // Seconds, not minutes: loading the default model and a few dozen tokens.
      expect(r.seconds).toBeLessThan(90);
    }, 180_000);
  });

  it('the `generate` command lines run to their end', async (ctx) => {
    if (!(await testGpu())) return ctx.skip();
    const lines = blocks('sh').flatMap((b) => b.split('\n')).map((l) => l.replace(/^.*&& /, '')).filter((l) => l.startsWith('npx --no-install llama2-webgpu generate'));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) {
      const r = await run('bash', ['-c', line], ROOT);
      console.log(`${line}: ${r.seconds.toFixed(1)} s`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().length).toBeGreaterThan(0);
      expect(r.stderr).toMatch(/generated/);
    }
  }, 180_000);
});

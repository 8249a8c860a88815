// The CLI as a user runs it: `llama2-webgpu generate` on an HF directory written to disk.
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomWeights, encodeHfModel, writeModelDir } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson } from '../tokenizer/llama2-vocab.ts';
import { encodeGguf } from '../checkpoint/gguf-writer.ts';
import { writeFileSync } from 'node:fs';

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['bin/llama2-webgpu.js', ...args], { env: { ...process.env, XDG_RUNTIME_DIR: '/tmp', ...env }, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const DAWN_NOISE = /artificially reduced from/;

const cfg = TEST_CONFIGS.mha;
const weights = randomWeights(cfg, 31337);
let dir = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'llama2-webgpu-cli-'));
  await writeModelDir(dir, encodeHfModel(cfg, weights, {
    dtype: 'F32',
    tokenizerJson: JSON.stringify(buildLlama2TokenizerJson()),
    tokenizerConfigJson: JSON.stringify(llama2TokenizerConfigJson()),
  }));
});

describe('llama2-webgpu generate', () => {
  it('--json prints the prompt ids, the oracle greedy completion and its text', async () => {
    const r = await cli(['generate', '--model', dir, '--prompt', 'Hello world', '--max-tokens', '12', '--dtype', 'f32', '--json']);
    expect(r.stderr).toMatch(/tok\/s decode/);
    expect(r.code).toBe(0);
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!) as { prompt_tokens: number[]; completion_tokens: number[]; text: string };
    expect(last.prompt_tokens).toEqual([1, 15043, 3186]);
    expect(last.completion_tokens).toEqual(new ReferenceModel(cfg, weights).generateGreedy([1, 15043, 3186], 12));
    expect(typeof last.text).toBe('string');
    expect(last.text.length).toBeGreaterThan(0);
  });

  it('loads a GGUF file (F32, Llama-2 tokenizer from its metadata) and gives the oracle tokens', async () => {
    const gguf = join(dir, 'model-f32.gguf');
    writeFileSync(gguf, encodeGguf(cfg, weights, { type: 'F32', tokenizerJson: buildLlama2TokenizerJson() }));
    const r = await cli(['generate', '--model', gguf, '--prompt', 'Hello world', '--max-tokens', '10', '--dtype', 'f32', '--json']);
    expect(r.code).toBe(0);
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!) as { prompt_tokens: number[]; completion_tokens: number[] };
    expect(last.prompt_tokens).toEqual([1, 15043, 3186]);
    expect(last.completion_tokens).toEqual(new ReferenceModel(cfg, weights).generateGreedy([1, 15043, 3186], 10));
  });

  it('streams text to stdout (ending the line) and progress to stderr without --json, with no Dawn noise', async () => {
    const r = await cli(['generate', '--model', dir, '--prompt', 'Hi', '--max-tokens', '5', '--dtype', 'f16']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/loading .*39\/39|tensors \(100%\)/);
    expect(r.stderr).toMatch(/^2 prompt tokens in [\d.]+ s \([\d.]+ tok\/s\); 5 generated, [\d.]+ tok\/s decode$/m);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
    expect(r.stdout.endsWith('\n')).toBe(true);
    expect(r.stderr).not.toMatch(DAWN_NOISE);
    // The same command without bin/'s filter: where the adapter makes Dawn print its two limit warnings
    // (software Vulkan drivers do), they were really there to filter.
    const raw = await cli(['generate', '--model', dir, '--prompt', 'Hi', '--max-tokens', '1'], { LLAMA2_WEBGPU_CHILD: '1' });
    expect(raw.code).toBe(0);
    const noise = raw.stderr.split('\n').filter((l) => DAWN_NOISE.test(l));
    console.log(`Dawn warnings without the filter: ${noise.length}`);
    for (const l of noise) expect(l).toMatch(/^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+/);
  });

  it('--max-tokens 0 prints the prompt count and no rates', async () => {
    const r = await cli(['generate', '--model', dir, '--prompt', 'Hello world', '--max-tokens', '0']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^3 prompt tokens; 0 generated \([\d.]+ s\)$/m);
    expect(r.stderr).not.toMatch(/tok\/s/);
  });

  it('--devices 2 shards the layers and gives the oracle tokens', async () => {
    const r = await cli(['generate', '--model', dir, '--prompt', 'Hello world', '--max-tokens', '8', '--dtype', 'f32', '--devices', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/on 2 devices/);
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!) as { completion_tokens: number[] };
    expect(last.completion_tokens).toEqual(new ReferenceModel(cfg, weights).generateGreedy([1, 15043, 3186], 8));
  });

  it('bad input gives a readable message and a non-zero exit', async () => {
    const missing = await cli(['generate', '--prompt', 'x', '--model', join(dir, 'nope')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/model not found: .*nope/);
    const badTemp = await cli(['generate', '--prompt', 'x', '--temperature', '7']);
    expect(badTemp.code).toBe(2);
    expect(badTemp.stderr).toMatch(/--temperature must be a number in \[0, 2\]/);
    const noPrompt = await cli(['generate']);
    expect(noPrompt.code).toBe(2);
    expect(noPrompt.stderr).toMatch(/--prompt is required/);
    const unknown = await cli(['generate', '--prompt', 'x', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/bogus/);
  });

  it('usage errors exit 2 with our message: negative numbers, a context over the model\'s, ranges as intervals, typos', async () => {
    const neg = await cli(['generate', '--prompt', 'x', '--max-tokens', '-1']);
    expect(neg.code).toBe(2);
    expect(neg.stderr).toBe('llama2-webgpu: --max-tokens must be an integer in [0, 1000000], got "-1"\nRun "llama2-webgpu generate --help" for usage.\n');
    const topP = await cli(['generate', '--prompt', 'x', '--top-p', '0']);
    expect(topP.code).toBe(2);
    expect(topP.stderr).toMatch(/^llama2-webgpu: --top-p must be a number in \(0, 1\], got "0"$/m);
    const ctx = await cli(['generate', '--model', dir, '--prompt', 'x', '--context', '99999']);
    expect(ctx.code).toBe(2);
    expect(ctx.stderr).toMatch(/--context 99999 is more than .*max_position_embeddings \(\d+\)/);
    const devices = await cli(['generate', '--model', dir, '--prompt', 'x', '--devices', '9']);
    expect(devices.code).toBe(2);
    expect(devices.stderr).toMatch(/--devices 9 is more than .*'s \d+ layers/);
    const typo = await cli(['generate', '--prompt', 'x', '--max-token', '3']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^llama2-webgpu: unknown option --max-token \(did you mean --max-tokens\?\)$/m);
  });
});

describe('llama2-webgpu (the command itself)', () => {
  it('--version prints package.json\'s version', async () => {
    const { readFileSync } = await import('node:fs');
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`llama2-webgpu ${JSON.parse(readFileSync('package.json', 'utf8')).version}\n`);
  });

  it('a mistyped command gets "did you mean" and the top-level help hint, exit 2', async () => {
    const r = await cli(['genrate', '--prompt', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('llama2-webgpu: unknown command "genrate" (did you mean "generate"?)\nCommands: generate, serve, plan, convert, bench. Run "llama2-webgpu --help" for usage.\n');
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toBe('');
    expect(none.stderr).toMatch(/^llama2-webgpu: Llama-2 inference on WebGPU\n\nUsage: llama2-webgpu COMMAND/);
    const far = await cli(['frobnicate']);
    expect(far.code).toBe(2);
    expect(far.stderr).toMatch(/^llama2-webgpu: unknown command "frobnicate"\n/);
  });

  it('generate --help names every kind of --model and the exit codes', async () => {
    const r = await cli(['generate', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\.gguf/);
    expect(r.stdout).toMatch(/llama2-webgpu convert/);
    expect(r.stdout).toMatch(/--devices N/);
    expect(r.stdout).toMatch(/2 on usage errors/);
  });

  it('serve finds a busy port before loading the model, and a bad --context is a usage error', async () => {
    const { createServer } = await import('node:net');
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    try {
      const t0 = Date.now();
      const r = await cli(['serve', '--port', String(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`llama2-webgpu: error: cannot listen on 127.0.0.1:${port}: the port is in use (choose another with --port)\n`);
      console.log(`serve on a busy port failed after ${Date.now() - t0} ms`);
    } finally {
      busy.close();
    }
    const ctx = await cli(['serve', '--port', '0', '--model', dir, '--context', '99999']);
    expect(ctx.code).toBe(2);
    expect(ctx.stderr).toMatch(/--context 99999 is more than the model's max_position_embeddings \(\d+\)/);
  });
});

describe('llama2-webgpu convert', () => {
  it('writes a q4 directory that loads without quantizing and generates like the model quantized at load', async () => {
    const out = join(dir, 'converted-q4');
    const conv = await cli(['convert', '--model', dir, '--dtype', 'q4', '--out', out]);
    expect(conv.stderr).toMatch(/wrote .*converted-q4 \(q4\)/);
    expect(conv.code).toBe(0);
    const a = await cli(['generate', '--model', out, '--prompt', 'Hello world', '--max-tokens', '10', '--json']);
    const b = await cli(['generate', '--model', dir, '--prompt', 'Hello world', '--max-tokens', '10', '--dtype', 'q4', '--json']);
    expect(a.code).toBe(0);
    expect(a.stderr).toMatch(/\(q4,/);
    const ja = JSON.parse(a.stdout.trim().split('\n').pop()!), jb = JSON.parse(b.stdout.trim().split('\n').pop()!);
    expect(ja.prompt_tokens).toEqual([1, 15043, 3186]);
    expect(ja.completion_tokens).toEqual(jb.completion_tokens);
    // A truncated converted file is refused with a message naming the file and tensor.
    const { truncateSync, statSync } = await import('node:fs');
    truncateSync(join(out, 'model.safetensors'), statSync(join(out, 'model.safetensors')).size - 100);
    const bad = await cli(['generate', '--model', out, '--prompt', 'x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/model\.safetensors.*(truncated|past the end|lm_head)/);
  });
});

// The CLI as a user runs it: `llama2-webgpu generate` on an HF directory written to disk.
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_CONFIGS, randomWeights, encodeHfModel, writeModelDir } from '../runtime/random-model.ts';
import { ReferenceModel } from '../runtime/reference.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson } from '../tokenizer/llama2-vocab.ts';
import { encodeGguf } from '../runtime/gguf-writer.ts';
import { writeFileSync } from 'node:fs';

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['bin/llama2-webgpu.js', ...args], { env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' }, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

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

  it('streams text to stdout and progress to stderr without --json', async () => {
    const r = await cli(['generate', '--model', dir, '--prompt', 'Hi', '--max-tokens', '5', '--dtype', 'f16']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/loading .*39\/39|tensors \(100%\)/);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
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

// What a model directory or GGUF says about itself beyond its weights: generation_config.json sampling
// defaults (and GGUF general.sampling.*) applied to requests that omit them; a folder with only
// tokenizer.model; the chat template carried by a GGUF; and all of it end to end through
// loadLlamaEngine on a small random model.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../api/engine.ts';
import { applySamplingDefaults } from '../api/sampling-defaults.ts';
import { validateChatRequest } from '../api/validate.ts';
import { loadLlamaEngine } from '../serve/llama-engine.ts';
import { bytesSource, mapDir } from '../checkpoint/byte-source.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { readGguf } from '../checkpoint/gguf.ts';
import { encodeGguf } from '../checkpoint/gguf-writer.ts';
import { samplingDefaultsFromGenerationConfig, samplingDefaultsFromGguf } from '../checkpoint/generation-defaults.ts';
import { openGgufSource, openModelSource } from '../checkpoint/load.ts';
import { encodeHfModel, randomWeights, writeModelDir } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';
import { buildLlama2TokenizerJson, chatFormat, llama2TokenizerConfigJson, LlamaTokenizer } from '../tokenizer/index.ts';
import { encodeSentencePiecePieces, readSentencePiecePieces } from '../tokenizer/sentencepiece-model.ts';
import llamaTokenizerJs from 'llama-tokenizer-js';
import { FakeBackend, FakeTokenizer } from './helpers/fake-backend.ts';
import { testGpu } from './helpers/gpu.ts';

const ZEPHYR = (JSON.parse(readFileSync(new URL('./fixtures/chat-templates.json', import.meta.url), 'utf8')) as { templates: Record<string, string> }).templates.tinyllama_zephyr!;
const tiny: LlamaConfig = { ...TEST_CONFIGS.gqa, nLayers: 1 };
const enc = new TextEncoder();

// meta-llama/Llama-2-7b-chat-hf's generation_config.json, and TinyLlama-1.1B-Chat-v1.0's.
const LLAMA2_CHAT_GEN = { bos_token_id: 1, do_sample: true, eos_token_id: 2, max_length: 4096, pad_token_id: 0, temperature: 0.6, top_p: 0.9, transformers_version: '4.32.0.dev0' };
const TINYLLAMA_GEN = { bos_token_id: 1, eos_token_id: 2, max_length: 2048, pad_token_id: 0 };

describe('sampling defaults from generation_config.json and GGUF', () => {
  it('reads temperature, top_p, top_k, repetition_penalty; do_sample false means greedy; bad values warn', () => {
    expect(samplingDefaultsFromGenerationConfig(LLAMA2_CHAT_GEN)).toEqual({ defaults: { temperature: 0.6, topP: 0.9 }, source: 'generation_config.json', warnings: [] });
    expect(samplingDefaultsFromGenerationConfig(TINYLLAMA_GEN)).toEqual({ defaults: {}, source: null, warnings: [] });
    expect(samplingDefaultsFromGenerationConfig(null).source).toBeNull();
    expect(samplingDefaultsFromGenerationConfig({ top_k: 40, repetition_penalty: 1.15 }).defaults).toEqual({ topK: 40, repetitionPenalty: 1.15 });
    expect(samplingDefaultsFromGenerationConfig({ do_sample: false, temperature: 0.7, top_p: 0.9 }).defaults).toEqual({ temperature: 0, topP: 0.9 });
    const bad = samplingDefaultsFromGenerationConfig({ temperature: 3, top_p: 0, top_k: 2.5, repetition_penalty: 1.1 });
    expect(bad.defaults).toEqual({ repetitionPenalty: 1.1 });
    expect(bad.warnings).toEqual([
      "generation_config.json temperature: 3 is outside temperature's range [0, 2]; ignored",
      "generation_config.json top_p: 0 is outside top_p's range (0, 1]; ignored",
      "generation_config.json top_k: 2.5 is outside top_k's range [0, 999] (an integer); ignored",
    ]);
  });

  it('reads GGUF general.sampling.temp / top_p / top_k / penalty_repeat (f32 values as written)', async () => {
    const f = await readGguf(bytesSource('m.gguf', encodeGguf(tiny, randomWeights(tiny, 1), { type: 'F32' })));
    expect(samplingDefaultsFromGguf(f.metadata).source).toBeNull();
    f.metadata.set('general.sampling.temp', Math.fround(0.6));
    f.metadata.set('general.sampling.top_p', Math.fround(0.95));
    f.metadata.set('general.sampling.top_k', 20);
    f.metadata.set('general.sampling.penalty_repeat', Math.fround(1.05));
    expect(samplingDefaultsFromGguf(f.metadata)).toEqual({ defaults: { temperature: 0.6, topP: 0.95, topK: 20, repetitionPenalty: 1.05 }, source: 'GGUF general.sampling.*', warnings: [] });
  });

  it('fill only what a request leaves out (absent or null); what it sets wins', () => {
    const d = { temperature: 0.6, topP: 0.9, topK: 40, repetitionPenalty: 1.1 };
    const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }], top_p: 0.5, top_k: null };
    const r = applySamplingDefaults(validateChatRequest(body), body, d);
    expect(r.sampling).toMatchObject({ temperature: 0.6, topP: 0.5, topK: 40, repetitionPenalty: 1.1, minP: 0 });
    const plain = validateChatRequest(body);
    expect(applySamplingDefaults(plain, body, undefined)).toBe(plain);
    expect(plain.sampling).toMatchObject({ temperature: 1, topP: 0.5, topK: 0, repetitionPenalty: 1 }); // the API's own defaults
  });

  it('the engine samples with them (greedy when the model says temperature 0) and lists them in models.list()', async () => {
    const backend = new FakeBackend({ script: [] });
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: 'm', samplingDefaults: { temperature: 0, topK: 5 } });
    const ask = async (extra: Record<string, unknown>) => {
      await engine.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra });
      return backend.calls.at(-1)!.request.sampler;
    };
    expect((await ask({})).greedy).toBe(true);
    expect((await ask({ temperature: 0.8 })).greedy).toBe(false);
    expect(engine.models.list().data[0]).toMatchObject({ id: 'm', object: 'model', sampling_defaults: { temperature: 0, top_k: 5 } });
    const none = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: 'm' });
    expect('sampling_defaults' in none.models.list().data[0]!).toBe(false);
    expect((await none.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }), backend.calls.at(-1)!.request.sampler.greedy)).toBe(false);
  });
});

describe('a folder with tokenizer.model but no tokenizer.json', () => {
  const files = (cfg: LlamaConfig, extra: Record<string, Uint8Array>): Record<string, Uint8Array> => ({ ...encodeHfModel(cfg, randomWeights(cfg, 2), { dtype: 'F16' }), ...extra });

  it('reads the pieces of a real SentencePiece model (trained by the sentencepiece library) exactly', () => {
    const fixture = JSON.parse(readFileSync(new URL('./fixtures/tiny-spm.json', import.meta.url), 'utf8')) as { pieces: string[] };
    const bytes = new Uint8Array(readFileSync(new URL('./fixtures/tiny-spm.model', import.meta.url)));
    expect(readSentencePiecePieces(bytes)).toEqual(fixture.pieces);
    expect(() => readSentencePiecePieces(enc.encode('{"model": "not protobuf"}'))).toThrow(/tokenizer\.model: not a SentencePiece model/);
  });

  it("with Llama-2's 32000 pieces: the built-in Llama-2 tokenizer, said in the load notes", async () => {
    const src = await openModelSource(mapDir('spm-only', files(tiny, { 'tokenizer.model': encodeSentencePiecePieces(llamaTokenizerJs.vocabById) })));
    try {
      expect(src.tokenizerJson).toBe(JSON.stringify(buildLlama2TokenizerJson()));
      expect(src.notes).toContain("spm-only: no tokenizer.json; tokenizer.model holds Llama-2's 32000-piece vocabulary, so the built-in Llama-2 tokenizer is used");
      const tok = LlamaTokenizer.fromJson(src.tokenizerJson!, src.tokenizerConfigJson ?? undefined);
      expect(tok.encode('Hello world')).toEqual([1, 15043, 3186]);
    } finally {
      await src.close();
    }
  });

  it('any other vocabulary, or a vocab_size other than 32000, is refused naming tokenizer.model', async () => {
    const other = [...llamaTokenizerJs.vocabById];
    other[15043] = '▁Howdy';
    await expect(openModelSource(mapDir('other', files(tiny, { 'tokenizer.model': encodeSentencePiecePieces(other) })))).rejects.toThrow(
      /other\/tokenizer\.model: no tokenizer\.json beside it, and it is not Llama-2's vocabulary: piece 15043 is "▁Howdy" where Llama-2's is "▁Hello"/,
    );
    const spm = new Uint8Array(readFileSync(new URL('./fixtures/tiny-spm.model', import.meta.url)));
    await expect(openModelSource(mapDir('tiny', files(tiny, { 'tokenizer.model': spm })))).rejects.toThrow(/it has 400 pieces, Llama-2's has 32000/);
    const small = { ...tiny, vocabSize: 400 };
    await expect(openModelSource(mapDir('small', files(small, { 'tokenizer.model': spm })))).rejects.toThrow(/small\/tokenizer\.model: .*config\.json has vocab_size 400, not Llama-2's 32000/);
  });
});

describe('GGUF tokenizer.chat_template', () => {
  it("becomes the tokenizer's chat template (the model's format, not Llama-2's)", async () => {
    const bytes = encodeGguf(tiny, randomWeights(tiny, 4), { type: 'F32', tokenizerJson: buildLlama2TokenizerJson(), chatTemplate: ZEPHYR });
    const src = await openGgufSource(bytesSource('tinyllama-chat.gguf', bytes));
    try {
      const tok = LlamaTokenizer.fromJson(src.tokenizerJson!, src.tokenizerConfigJson!);
      expect(tok.chatTemplate).toBe(ZEPHYR);
      const fmt = chatFormat(tok);
      expect(fmt.kind).toBe('model');
      const ref = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());
      expect(fmt.format([{ role: 'user', content: 'Hi' }])).toEqual([1, ...ref.encode('<|user|>\nHi', { addBos: false }), 2, ...ref.encode('\n<|assistant|>\n', { addBos: false })]);
    } finally {
      await src.close();
    }
  });
});

describe('end to end through loadLlamaEngine (GPU)', () => {
  it("a model folder's chat_template and generation_config shape the prompt and the sampling", async (t) => {
    if (!(await testGpu())) return t.skip();
    const cfg = tiny;
    const weights = randomWeights(cfg, 11);
    const modelFiles = encodeHfModel(cfg, weights, {
      dtype: 'F32',
      tokenizerJson: JSON.stringify(buildLlama2TokenizerJson()),
      tokenizerConfigJson: JSON.stringify({ ...llama2TokenizerConfigJson(), chat_template: ZEPHYR }),
    });
    modelFiles['generation_config.json'] = enc.encode(JSON.stringify({ bos_token_id: 1, eos_token_id: 2, do_sample: false, top_k: 7 }));
    const llama = await loadLlamaEngine({ model: mapDir('zephyr-random', modelFiles), maxBatch: 1, context: 128 });
    try {
      expect(llama.notes).toEqual(["chat format: the model's own chat_template", 'sampling defaults from generation_config.json: temperature 0, top_k 7 (requests that set them win)']);
      expect(llama.engine.models.list().data[0]!.sampling_defaults).toEqual({ temperature: 0, top_k: 7 });
      const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hello </s><s> there' }];
      const tok = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());
      const promptIds = [1, ...tok.encode('<|system|>\nBe brief.', { addBos: false }), 2, ...tok.encode('\n<|user|>\nHello </s><s> there', { addBos: false }), 2, ...tok.encode('\n<|assistant|>\n', { addBos: false })];
      const want = new ReferenceModel(cfg, weights).generateGreedy(promptIds, 6).filter((id) => id !== 2);
      // No temperature in the request: the model's do_sample false makes it greedy, whatever the seed.
      for (const seed of [1, 2]) {
        const res = await llama.engine.chat.completions.create({ model: 'zephyr-random', messages, max_tokens: 6, seed });
        expect(res.usage.prompt_tokens).toBe(promptIds.length);
        expect(res.choices[0]!.message.content).toBe(tok.decode(want, { continuation: true }));
      }
    } finally {
      await llama.close();
    }
  });
});

describe('llama2-webgpu generate (the compiled CLI) takes omitted sampling flags from generation_config.json', () => {
  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile('node', ['bin/llama2-webgpu.js', ...args], { env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' }, timeout: 300_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
    });

  it('top_k 1 from the model makes temperature 1 greedy; an explicit --top-k 0 wins', async (t) => {
    if (!(await testGpu())) return t.skip();
    const cfg = tiny;
    const weights = randomWeights(cfg, 12);
    const dir = mkdtempSync(join(tmpdir(), 'llama2-webgpu-gencfg-'));
    const files = encodeHfModel(cfg, weights, { dtype: 'F32', tokenizerJson: JSON.stringify(buildLlama2TokenizerJson()) });
    files['generation_config.json'] = enc.encode(JSON.stringify({ do_sample: true, temperature: 1.0, top_k: 1 }));
    await writeModelDir(dir, files);
    const prompt = [1, 15043, 3186];
    const greedy = new ReferenceModel(cfg, weights).generateGreedy(prompt, 8);
    const run = async (extra: string[]) => {
      const r = await cli(['generate', '--model', dir, '--prompt', 'Hello world', '--max-tokens', '8', '--dtype', 'f32', '--seed', '3', '--json', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return { stderr: r.stderr, out: JSON.parse(r.stdout.trim().split('\n').pop()!) as { prompt_tokens: number[]; completion_tokens: number[] } };
    };
    const byModel = await run([]);
    expect(byModel.stderr).toContain('sampling defaults from generation_config.json: temperature 1, top_k 1 (requests that set them win)');
    expect(byModel.out.prompt_tokens).toEqual(prompt);
    expect(byModel.out.completion_tokens).toEqual(greedy);
    const overridden = await run(['--top-k', '0']); // temperature 1 over 32000 near-uniform logits: not the argmax path
    expect(overridden.out.completion_tokens).not.toEqual(greedy);
  });
});

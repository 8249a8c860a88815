// Structured output (response_format), logprobs, n and the prompt size check, through the engine on the
// fake backend. JSON Schema validity is judged by an independent validator (@cfworker/json-schema).
import { Validator } from '@cfworker/json-schema';
import { describe, expect, it } from 'vitest';
import { collect } from './helpers/collect.ts';
import { createEngine } from '../api/engine.ts';
import { BadRequestError } from '../api/errors.ts';
import type { ChatCompletion } from '../api/types.ts';
import { applyTemperature } from '../runtime/sampler.ts';
import { BYTE_BASE, EXTRA_BASE, FakeBackend, FakeTokenizer, noisyLogits } from './helpers/fake-backend.ts';

const MODEL = 'm';

/** The fake vocabulary's bytes: byte tokens are one raw byte, pieces their UTF-8 text. */
function fakeTokenBytes(id: number): Uint8Array {
  if (id >= BYTE_BASE && id < EXTRA_BASE) return Uint8Array.of(id - BYTE_BASE);
  return new TextEncoder().encode(new FakeTokenizer().decode([id]));
}
const HI = [{ role: 'user' as const, content: 'Hi' }];

function setup(logits?: (step: number) => Float32Array, contextLength?: number) {
  const backend = new FakeBackend({ ...(contextLength ? { contextLength } : {}) });
  if (logits) backend.setLogits(logits);
  const tokenizer = new FakeTokenizer();
  const engine = createEngine({ backend, tokenizer, modelName: MODEL, tokenBytes: fakeTokenBytes });
  return { backend, tokenizer, engine };
}

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'full name' },
    age: { type: 'integer', minimum: 0, maximum: 9007199254740991 },
    score: { type: 'number', minimum: -9007199254740991, maximum: 9007199254740991 },
    tags: { type: 'array', items: { type: 'string', enum: ['a', 'b'] } },
    nick: { anyOf: [{ type: 'string' }, { type: 'null' }] },
    ok: { type: 'boolean' },
    address: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  },
  required: ['name', 'age', 'tags', 'address'],
  additionalProperties: false,
  $schema: 'http://json-schema.org/draft-07/schema#',
};

describe('response_format', () => {
  it('json_object: always a parseable JSON object, even from a noisy model cut short by max_tokens', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      for (const max_tokens of [3, 8, 40]) {
        const { engine } = setup(noisyLogits(seed, 6));
        const res = await engine.chat.completions.create({ model: MODEL, messages: HI, response_format: { type: 'json_object' }, max_tokens, seed });
        const text = res.choices[0]!.message.content!;
        const value = JSON.parse(text);
        expect(typeof value === 'object' && value !== null && !Array.isArray(value), text).toBe(true);
        expect(res.usage.completion_tokens).toBeLessThanOrEqual(max_tokens);
      }
    }
  });

  it('json_schema: the output validates against the schema (independent validator), streamed or not', async () => {
    const validator = new Validator(PERSON as never, '7');
    let lengths = 0;
    for (const seed of [11, 12, 13, 14, 15]) {
      for (const max_tokens of [52, 60, 200]) {
        const { engine, tokenizer } = setup(noisyLogits(seed, 6));
        const body = {
          model: MODEL, messages: HI, seed, max_tokens, temperature: 0.8,
          response_format: { type: 'json_schema' as const, json_schema: { name: 'person', schema: PERSON, strict: true } },
        };
        const res = await engine.chat.completions.create(body);
        const text = res.choices[0]!.message.content!;
        const result = validator.validate(JSON.parse(text));
        expect(result.valid, `${text} ${JSON.stringify(result.errors)}`).toBe(true);
        // A constrained answer always ends with EOS, within max_tokens, even when the budget forced it closed.
        expect(res.choices[0]!.finish_reason).toBe('stop');
        if (res.usage.completion_tokens === max_tokens) lengths++;
        // The schema is in the system prompt, so the model knows what to write.
        expect(tokenizer.lastMessages![0]!.role).toBe('system');
        expect(tokenizer.lastMessages![0]!.content).toContain('"required":["name","age","tags","address"]');
        const chunks = await collect(await engine.chat.completions.create({ ...body, stream: true }));
        expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(text);
      }
    }
    expect(lengths).toBeGreaterThan(0); // some answers used every token allowed, and still validate
  });

  it('the shortest valid answer must fit max_tokens: 400 below it, exact at it', async () => {
    // {"name":"","age":0,"tags":[],"address":{"city":""}} is 51 characters: with 52 tokens (+ EOS) a valid answer is written.
    const { engine } = setup(noisyLogits(3, 6));
    const body = { model: MODEL, messages: HI, seed: 3, response_format: { type: 'json_schema' as const, json_schema: { name: 'p', schema: PERSON } } };
    const res = await engine.chat.completions.create({ ...body, max_tokens: 52 });
    expect(new Validator(PERSON as never, '7').validate(JSON.parse(res.choices[0]!.message.content!)).valid).toBe(true);
    expect(res.choices[0]!.finish_reason).toBe('stop');
    const err = await engine.chat.completions.create({ ...body, max_tokens: 51 }).catch((e) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe('max_tokens');
    expect(err.message).toContain('51 characters');
    expect(err.message).toContain('at least 52');
  });

  it('unsupported schema keywords: 400 naming each one with its path', async () => {
    const { engine } = setup();
    const schema = {
      type: 'object',
      properties: { a: { type: 'string', pattern: '^x', minLength: 2 }, b: { type: 'array', items: { type: 'integer', minimum: 1 } }, c: { type: 'number', maximum: 100 } },
      allOf: [{}],
    };
    const err = await engine.chat.completions
      .create({ model: MODEL, messages: HI, response_format: { type: 'json_schema', json_schema: { name: 's', schema } } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.param).toBe('response_format.json_schema.schema');
    expect(err.code).toBe('unsupported_schema');
    for (const k of ['allOf', 'properties.a.pattern', 'properties.a.minLength', 'properties.b.items.minimum', 'properties.c.maximum']) expect(err.message).toContain(k);
  });

  it('malformed response_format: 400 naming the parameter', async () => {
    const { engine } = setup();
    const cases: [unknown, string][] = [
      [{ type: 'xml' }, 'response_format.type'],
      [{}, 'response_format.type'],
      [{ type: 'json_schema' }, 'response_format.json_schema'],
      [{ type: 'json_schema', json_schema: { schema: {} } }, 'response_format.json_schema.name'],
      [{ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: 1 } } } }, 'response_format.json_schema.schema'],
      [{ type: 'json_schema', json_schema: { name: 'x', strict: 'yes' } }, 'response_format.json_schema.strict'],
      ['json', 'response_format'],
    ];
    for (const [rf, param] of cases) {
      const err = await engine.chat.completions.create({ model: MODEL, messages: HI, response_format: rf as never }).catch((e) => e);
      expect(err, JSON.stringify(rf)).toBeInstanceOf(BadRequestError);
      expect(err.param).toBe(param);
    }
  });
});

/** log-softmax reference in float64. */
function logSoftmax(x: Float32Array): number[] {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let z = 0;
  for (const v of x) z += Math.exp(v - m);
  return Array.from(x, (v) => v - m - Math.log(z));
}

describe('logprobs', () => {
  const T = 0.7;
  const logits = noisyLogits(5, 8);

  it('are log-softmax of the logits after temperature, with top_logprobs most likely first, in OpenAI shape', async () => {
    const { engine } = setup(logits);
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 6, temperature: T, seed: 9, logprobs: true, top_logprobs: 3 });
    const lp = res.choices[0]!.logprobs!;
    expect(lp.refusal).toBeNull();
    expect(lp.content!.length).toBe(6);
    lp.content!.forEach((entry, step) => {
      const ref = logSoftmax(applyTemperature(logits(step), T));
      const order = ref.map((v, id) => [v, id] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      expect(entry.top_logprobs.length).toBe(3);
      entry.top_logprobs.forEach((t, j) => {
        const [v, id] = order[j]!;
        expect(t.logprob).toBeCloseTo(v, 5);
        expect(t.bytes).toEqual(Array.from(fakeTokenBytes(id)));
        expect(t.token).toBe(new TextDecoder().decode(fakeTokenBytes(id)));
      });
      // the sampled token: its own logprob, and its bytes make up the content
      const id = ref.findIndex((v) => Math.abs(v - entry.logprob) < 1e-5);
      expect(id).toBeGreaterThanOrEqual(0);
    });
    const bytes = lp.content!.flatMap((e) => e.bytes!);
    expect(new TextDecoder().decode(Uint8Array.from(bytes))).toBe(res.choices[0]!.message.content);
  });

  it('asking for logprobs does not change the sampled tokens; streamed logprobs equal the non-streamed ones', async () => {
    const { engine } = setup(logits);
    const base = { model: MODEL, messages: HI, max_tokens: 8, temperature: T, top_p: 0.9, top_k: 50, seed: 42 };
    const plain = await engine.chat.completions.create(base);
    const withLp = await engine.chat.completions.create({ ...base, logprobs: true, top_logprobs: 0 });
    expect(withLp.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
    expect(plain.choices[0]!.logprobs).toBeNull();
    expect(withLp.choices[0]!.logprobs!.content!.every((e) => e.top_logprobs.length === 0)).toBe(true);
    const chunks = await collect(await engine.chat.completions.create({ ...base, logprobs: true, top_logprobs: 0, stream: true }));
    const streamed = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    expect(streamed).toStrictEqual(withLp.choices[0]!.logprobs!.content);
  });

  it('greedy (temperature 0): logprobs of the distribution after penalties, at temperature 1', async () => {
    const { engine } = setup(logits);
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 1 });
    res.choices[0]!.logprobs!.content!.forEach((e, step) => {
      const ref = logSoftmax(logits(step));
      const best = ref.indexOf(Math.max(...ref));
      expect(e.logprob).toBeCloseTo(ref[best]!, 5);
      expect(e.top_logprobs[0]!.logprob).toBe(e.logprob);
    });
  });

  it('top_logprobs range 0..20 and needs logprobs: true', async () => {
    const { engine } = setup();
    for (const [body, param] of [[{ logprobs: true, top_logprobs: 21 }, 'top_logprobs'], [{ logprobs: true, top_logprobs: -1 }, 'top_logprobs'], [{ top_logprobs: 2 }, 'top_logprobs']] as const) {
      const err = await engine.chat.completions.create({ model: MODEL, messages: HI, ...body }).catch((e) => e);
      expect(err).toBeInstanceOf(BadRequestError);
      expect(err.param).toBe(param);
    }
  });
});

describe('n choices', () => {
  it('choice i is the same completion as a single request with seed + i; usage sums the choices', async () => {
    const { engine, backend } = setup(noisyLogits(7, 6));
    const base = { model: MODEL, messages: HI, max_tokens: 5, temperature: 1, seed: 100 };
    const res = (await engine.chat.completions.create({ ...base, n: 3 })) as ChatCompletion;
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const singles = [];
    for (let i = 0; i < 3; i++) singles.push((await engine.chat.completions.create({ ...base, seed: 100 + i })).choices[0]!.message.content);
    expect(res.choices.map((c) => c.message.content)).toEqual(singles);
    expect(new Set(singles).size).toBe(3);
    expect(res.usage.prompt_tokens).toBe(backend.calls[0]!.request.promptTokens.length);
    expect(res.usage.completion_tokens).toBe(15);
  });

  it('streams every choice with its index, a finish chunk each, and usage once at the end', async () => {
    const { engine } = setup(noisyLogits(8, 6));
    const base = { model: MODEL, messages: HI, max_tokens: 4, seed: 5, logprobs: true };
    const whole = (await engine.chat.completions.create({ ...base, n: 2 })) as ChatCompletion;
    const chunks = await collect(await engine.chat.completions.create({ ...base, n: 2, stream: true }));
    for (const i of [0, 1]) {
      const mine = chunks.filter((c) => c.choices[0]?.index === i);
      expect(mine[0]!.choices[0]!.delta).toStrictEqual({ role: 'assistant', content: '' });
      expect(mine.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe(whole.choices[i]!.message.content);
      expect(mine.filter((c) => c.choices[0]!.finish_reason !== null).length).toBe(1);
      expect(mine.flatMap((c) => c.choices[0]!.logprobs?.content ?? [])).toStrictEqual(whole.choices[i]!.logprobs!.content);
    }
    const withUsage = chunks.filter((c) => c.usage);
    expect(withUsage.length).toBe(1);
    expect(withUsage[0]).toBe(chunks.at(-1));
    expect(withUsage[0]!.usage!.completion_tokens).toBe(8);
  });

  it('a consumer that stops early ends every choice at once', async () => {
    const backend = new FakeBackend({ delayMs: 30 });
    backend.setLogits(noisyLogits(9, 6));
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: MODEL });
    const stream = await engine.chat.completions.create({ model: MODEL, messages: HI, n: 3, max_tokens: 200, stream: true });
    let contents = 0;
    let atBreak: number[] = [];
    for await (const c of stream) {
      if (c.choices[0]?.delta.content && ++contents === 4) {
        atBreak = backend.calls.map((call) => call.produced.length); // each choice is waiting for its next token
        break;
      }
    }
    const t0 = Date.now();
    while (backend.calls.some((c) => !c.finished) && Date.now() - t0 < 1000) await new Promise((r) => setTimeout(r, 2));
    expect(backend.calls.length).toBe(3);
    for (const c of backend.calls) {
      expect(c.finished).toBe(true);
      expect(c.aborted).toBe(true);
    }
    // Ended while waiting for their next token: not one more was made.
    expect(backend.calls.map((c) => c.produced.length)).toEqual(atBreak);
  });

  it('n is 1..8', async () => {
    const { engine } = setup();
    for (const n of [0, 9, 2.5]) {
      const err = await engine.chat.completions.create({ model: MODEL, messages: HI, n }).catch((e) => e);
      expect(err.param).toBe('n');
    }
  });
});

describe('prompt size', () => {
  it('a prompt that cannot fit is refused by its size, before it is tokenized', async () => {
    const { engine, tokenizer } = setup(undefined, 4096);
    // The fake vocabulary's longest piece is 11 bytes ("get_weather"): 1 MiB of text is >= 95326 tokens.
    const big = 'x'.repeat(1024 * 1024);
    const t0 = performance.now();
    const err = await engine.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: big }] }).catch((e) => e);
    expect(performance.now() - t0).toBeLessThan(200);
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.code).toBe('context_length_exceeded');
    expect(err.param).toBe('messages');
    expect(err.message).toContain(`at least ${Math.ceil((1024 * 1024) / 11)} tokens`);
    expect(tokenizer.lastMessages).toBeNull(); // never reached the template
    // Just under the bound: tokenized, then refused by its real length.
    const under = 'y'.repeat(4096 * 11 - 1);
    const err2 = await engine.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: under }] }).catch((e) => e);
    expect(err2.code).toBe('context_length_exceeded');
    expect(tokenizer.lastMessages).not.toBeNull();
    expect(err2.message).toMatch(/resulted in \d+ tokens/);
  });

  it('multi-byte text is counted in UTF-8 bytes', async () => {
    const { engine, tokenizer } = setup(undefined, 100);
    // 400 "é" = 800 bytes: at least ceil(800 / 11) = 73 tokens, under 100: tokenized (then 800+ byte tokens: refused).
    await engine.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'é'.repeat(400) }] }).catch(() => {});
    expect(tokenizer.lastMessages).not.toBeNull();
    const t2 = setup(undefined, 100);
    // 600 "é" = 1200 bytes: at least 110 tokens: refused before tokenizing.
    const err = await t2.engine.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'é'.repeat(600) }] }).catch((e) => e);
    expect(err.message).toContain('at least 110 tokens');
    expect(t2.tokenizer.lastMessages).toBeNull();
  });
});

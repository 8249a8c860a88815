import { describe, expect, it } from 'vitest';
import { collect } from './helpers/collect.ts';
import { lcg } from './helpers/random.ts';
import { createEngine, DEFAULT_PRICES, estimateCost, type EngineOptions, type RequestLogEntry } from '../api/engine.ts';
import { APIUserAbortError, BadRequestError, NotFoundError } from '../api/errors.ts';
import type { ChatCompletionChunk, ChatCompletionTool } from '../api/types.ts';
import { BOS, EOS, FakeBackend, type FakeBackendOptions, FakeTokenizer, pieceId, scriptOf } from './helpers/fake-backend.ts';

const MODEL = 'llama-2-7b-chat';

function setup(backendOpts: FakeBackendOptions = {}, engineOpts: Partial<EngineOptions> = {}) {
  const backend = new FakeBackend(backendOpts);
  const tokenizer = new FakeTokenizer();
  const engine = createEngine({ backend, tokenizer, modelName: MODEL, ...engineOpts });
  return { backend, tokenizer, engine };
}

const HI = [{ role: 'user' as const, content: 'Hi' }];
/** The fake prompt of HI: <s> + "[INST] Hi [/INST]". */
const HI_PROMPT = [BOS, ...new FakeTokenizer().encode('[INST] Hi [/INST]')];

function contentDeltas(chunks: ChatCompletionChunk[]): string[] {
  return chunks.flatMap((c) => (c.choices[0]?.delta.content ? [c.choices[0].delta.content] : []));
}

describe('non-streaming responses', () => {
  it('has exactly the hosted endpoint shape', async () => {
    const { engine, backend } = setup({ script: scriptOf(' Hello!') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI });
    const completion = 8; // 7 characters + EOS
    expect(res).toStrictEqual({
      id: expect.stringMatching(/^chatcmpl-[A-Za-z0-9]{24}$/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: ' Hello!' }, finish_reason: 'stop', logprobs: null }],
      usage: {
        prompt_tokens: HI_PROMPT.length,
        completion_tokens: completion,
        total_tokens: HI_PROMPT.length + completion,
        estimated_cost: Number(((HI_PROMPT.length * 0.64 + completion * 0.8) / 1e6).toFixed(10)),
      },
    });
    expect(Math.abs(res.created - Date.now() / 1000)).toBeLessThan(5);
    expect(backend.lastCall.request.promptTokens).toEqual(HI_PROMPT);
    expect(backend.lastCall.request.maxTokens).toBe(4096 - HI_PROMPT.length);
    expect(backend.lastCall.finished).toBe(true);
    expect(backend.lastCall.aborted).toBe(false);
  });

  it('computes the cost from the configured prices (default $0.64/$0.80 per 1M)', async () => {
    expect(DEFAULT_PRICES).toEqual({ inputPerMTok: 0.64, outputPerMTok: 0.8 });
    expect(estimateCost(15, 16, DEFAULT_PRICES)).toBe(0.0000224);
    expect(estimateCost(1_000_000, 1_000_000, DEFAULT_PRICES)).toBe(1.44);
    expect(estimateCost(0, 0, DEFAULT_PRICES)).toBe(0);
    const { engine } = setup({ script: scriptOf('abc') }, { prices: { inputPerMTok: 3, outputPerMTok: 15 } });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI });
    expect(res.usage.completion_tokens).toBe(4);
    expect(res.usage.estimated_cost).toBe(Number(((HI_PROMPT.length * 3 + 4 * 15) / 1e6).toFixed(10)));
  });

  it('stops at max_tokens with finish_reason "length"', async () => {
    const { engine, backend } = setup({ script: scriptOf('abcdefgh') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 3 });
    expect(res.choices[0]!.message.content).toBe('abc');
    expect(res.choices[0]!.finish_reason).toBe('length');
    expect(res.usage.completion_tokens).toBe(3);
    expect(backend.lastCall.request.maxTokens).toBe(3);

    const zero = await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 0 });
    expect(zero.choices[0]).toStrictEqual({ index: 0, message: { role: 'assistant', content: '' }, finish_reason: 'length', logprobs: null });
    expect(zero.usage.completion_tokens).toBe(0);
    expect(backend.calls.length).toBe(1); // max_tokens 0 never reaches the backend
  });

  it('caps max_tokens at the context left after the prompt', async () => {
    const ctx = HI_PROMPT.length + 5;
    const { engine, backend } = setup({ contextLength: ctx, script: scriptOf('abcdefghij') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI });
    expect(backend.lastCall.request.maxTokens).toBe(5);
    expect(res.choices[0]!.message.content).toBe('abcde');
    expect(res.choices[0]!.finish_reason).toBe('length');
    await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 5 }); // exactly the room left
    expect(backend.lastCall.request.maxTokens).toBe(5);
    // Above the room left (even the largest documented value): capped, not refused.
    for (const max of [6, 1_000_000]) {
      const capped = await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: max });
      expect(backend.lastCall.request.maxTokens).toBe(5);
      expect(capped.choices[0]!.message.content).toBe('abcde');
      expect(capped.choices[0]!.finish_reason).toBe('length');
    }
    await engine.chat.completions.create({ model: MODEL, messages: HI, max_completion_tokens: 3 });
    expect(backend.lastCall.request.maxTokens).toBe(3);
  });

  it('rejects a prompt longer than the context with 400 naming messages', async () => {
    const { engine } = setup({ contextLength: HI_PROMPT.length - 1 });
    const err = await engine.chat.completions.create({ model: MODEL, messages: HI }).catch((e) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.status).toBe(400);
    expect(err.param).toBe('messages');
    expect(err.code).toBe('context_length_exceeded');
  });

  it('answers unknown models with 404 model_not_found and accepts aliases', async () => {
    const { engine } = setup({ script: scriptOf('x') }, { aliases: ['meta-llama/Llama-2-7b-chat-hf'] });
    const err = await engine.chat.completions.create({ model: 'gpt-4', messages: HI }).catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.toJSON()).toStrictEqual({
      error: {
        message: "The model 'gpt-4' does not exist or is not served here.",
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      },
    });
    // The response names the model id the client sent.
    const res = await engine.chat.completions.create({ model: 'meta-llama/Llama-2-7b-chat-hf', messages: HI });
    expect(res.model).toBe('meta-llama/Llama-2-7b-chat-hf');
    expect((await engine.chat.completions.create({ model: MODEL, messages: HI })).model).toBe(MODEL);
    expect(engine.models.list()).toStrictEqual({
      object: 'list',
      data: [
        { id: MODEL, object: 'model', created: expect.any(Number), owned_by: 'llama2-webgpu' },
        { id: 'meta-llama/Llama-2-7b-chat-hf', object: 'model', created: expect.any(Number), owned_by: 'llama2-webgpu' },
      ],
    });
  });

  it('passes the Llama-2 template messages: system first, content parts joined, user turns merged', async () => {
    const { engine, tokenizer, backend } = setup({ script: scriptOf('ok') });
    await engine.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Hello ' }, { type: 'text', text: 'there' }] },
        { role: 'assistant', content: 'Hi!' },
        { role: 'user', content: 'One' },
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Two' },
      ],
    });
    expect(tokenizer.lastMessages).toStrictEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello there' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'One\n\nTwo' },
    ]);
    const t = new FakeTokenizer();
    expect(backend.lastCall.request.promptTokens).toEqual([
      BOS,
      ...t.encode('[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello there [/INST] Hi! '),
      EOS,
      BOS,
      ...t.encode('[INST] One\n\nTwo [/INST]'),
    ]);
  });
});

describe('stop strings', () => {
  it('stops at the first occurrence and never emits the stop string', async () => {
    const { engine, backend } = setup({ script: scriptOf('Hello world. Bye world.') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, stop: ['Bye', 'wor'] });
    expect(res.choices[0]!.message.content).toBe('Hello ');
    expect(res.choices[0]!.finish_reason).toBe('stop');
    expect(res.usage.completion_tokens).toBe('Hello wor'.length);
    expect(backend.lastCall.finished).toBe(true);
    expect(backend.lastCall.produced.length).toBe('Hello wor'.length); // nothing generated after the stop
  });

  it('catches a stop string that spans tokens of several characters', async () => {
    const { engine } = setup({ script: [pieceId('hello'), pieceId(' world'), pieceId('END')] });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, stop: 'o w' });
    expect(res.choices[0]!.message.content).toBe('hell');
    expect(res.choices[0]!.finish_reason).toBe('stop');
  });

  it('holds back streamed text only while it may start a stop string', async () => {
    const { engine } = setup({ script: scriptOf('abcXYdefXYZghi') });
    const chunks = await collect(await engine.chat.completions.create({ model: MODEL, messages: HI, stop: ['XYZ'], stream: true }));
    expect(contentDeltas(chunks)).toEqual(['a', 'b', 'c', 'XYd', 'e', 'f']);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('releases a held prefix at the end when the stop string never completes', async () => {
    const { engine } = setup({ script: scriptOf('abcXY') });
    const chunks = await collect(await engine.chat.completions.create({ model: MODEL, messages: HI, stop: 'XYZ', stream: true }));
    expect(contentDeltas(chunks)).toEqual(['a', 'b', 'c', 'XY']);
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, stop: 'XYZ' });
    expect(res.choices[0]!.message.content).toBe('abcXY');
    expect(res.choices[0]!.finish_reason).toBe('stop'); // ended by EOS
  });

  it('matches stop strings made of multi-byte characters', async () => {
    const { engine } = setup({ script: scriptOf('café! encore') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, stop: 'é!' });
    expect(res.choices[0]!.message.content).toBe('caf');
  });
});

describe('streaming', () => {
  it('sends role first, whole UTF-8 characters, a finish chunk; one id throughout', async () => {
    const { engine } = setup({ script: scriptOf('héllo 🦙') });
    const chunks = await collect(await engine.chat.completions.create({ model: MODEL, messages: HI, stream: true }));
    const id = chunks[0]!.id;
    expect(id).toMatch(/^chatcmpl-[A-Za-z0-9]{24}$/);
    for (const c of chunks) {
      expect(c.id).toBe(id);
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.model).toBe(MODEL);
    }
    // Without include_usage only the final chunk carries usage (as DeepInfra's streams do).
    for (const c of chunks.slice(0, -1)) expect('usage' in c).toBe(false);
    expect(chunks[0]).toStrictEqual({
      id,
      object: 'chat.completion.chunk',
      created: expect.any(Number),
      model: MODEL,
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null }],
    });
    // "é" is 2 byte tokens and "🦙" 4: each arrives as one whole delta.
    expect(contentDeltas(chunks)).toEqual(['h', 'é', 'l', 'l', 'o', ' ', '🦙']);
    expect(chunks.at(-1)!.choices).toStrictEqual([{ index: 0, delta: {}, finish_reason: 'stop', logprobs: null }]);
    const completion = scriptOf('héllo 🦙').length + 1; // + EOS
    expect(chunks.at(-1)!.usage).toStrictEqual({
      prompt_tokens: HI_PROMPT.length,
      completion_tokens: completion,
      total_tokens: HI_PROMPT.length + completion,
      estimated_cost: estimateCost(HI_PROMPT.length, completion, DEFAULT_PRICES),
    });
    expect(chunks.length).toBe(1 + 7 + 1);
  });

  it('adds usage: null to every chunk and a final usage chunk with include_usage', async () => {
    const { engine } = setup({ script: scriptOf('ab') });
    const chunks = await collect(
      await engine.chat.completions.create({ model: MODEL, messages: HI, stream: true, stream_options: { include_usage: true }, max_tokens: 2 }),
    );
    expect(chunks.length).toBe(5);
    for (const c of chunks.slice(0, 3)) expect(c.usage).toBeNull();
    expect(chunks[3]!.choices[0]!.finish_reason).toBe('length');
    expect(chunks[3]!.usage).toStrictEqual(chunks[4]!.usage); // DeepInfra's usage on the finish chunk, OpenAI's after it
    expect(chunks[4]).toStrictEqual({
      id: chunks[0]!.id,
      object: 'chat.completion.chunk',
      created: chunks[0]!.created,
      model: MODEL,
      choices: [],
      usage: {
        prompt_tokens: HI_PROMPT.length,
        completion_tokens: 2,
        total_tokens: HI_PROMPT.length + 2,
        estimated_cost: estimateCost(HI_PROMPT.length, 2, DEFAULT_PRICES),
      },
    });
  });

  it('aborts the backend when the caller aborts or stops iterating', async () => {
    const { engine, backend } = setup({ script: [], after: scriptOf('z')[0]!, delayMs: 2 });
    const ac = new AbortController();
    const stream = await engine.chat.completions.create({ model: MODEL, messages: HI, stream: true }, { signal: ac.signal });
    let n = 0;
    const err = await (async () => {
      for await (const _ of stream) if (++n === 5) ac.abort();
    })().catch((e) => e);
    expect(err).toBeInstanceOf(APIUserAbortError);
    expect(backend.lastCall.aborted).toBe(true);
    expect(backend.lastCall.finished).toBe(true);
    expect(backend.lastCall.produced.length).toBeLessThan(10);

    const stream2 = await engine.chat.completions.create({ model: MODEL, messages: HI, stream: true });
    for await (const c of stream2) if (c.choices[0]?.delta.content) break;
    expect(backend.lastCall.finished).toBe(true);
    expect(backend.lastCall.aborted).toBe(true);

    const ac3 = new AbortController();
    const pending = engine.chat.completions.create({ model: MODEL, messages: HI }, { signal: ac3.signal });
    setTimeout(() => ac3.abort(), 20);
    await expect(pending).rejects.toBeInstanceOf(APIUserAbortError);
    expect(backend.lastCall.aborted).toBe(true);
  });
});

const WEATHER: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string' },
        unit: { type: 'string', enum: ['c', 'f'] },
        days: { type: 'integer' },
        detailed: { type: 'boolean' },
      },
      required: ['city', 'unit'],
    },
  },
};

const TIME: ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] } },
};

const TOOLS_BLOCK = [
  'You can call these tools. Each line is one tool as JSON, with the JSON Schema of its arguments:',
  JSON.stringify({ name: 'get_weather', description: 'Current weather in a city', parameters: WEATHER.function.parameters }),
  'To call a tool, answer with only one JSON object and no other text:',
  '{"name": "<tool name>", "arguments": {<arguments>}}',
  'Results of tool calls come back as: [tool result for <call id> (<tool name>)]: <result>',
].join('\n');

describe('tools', () => {
  const call = ' {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}';

  it('renders tools in the system prompt and parses a JSON answer into tool_calls', async () => {
    const { engine, tokenizer } = setup({ script: scriptOf(call) });
    const res = await engine.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'You are helpful.' },
        { role: 'user', content: 'Weather in Paris?' },
      ],
      tools: [WEATHER],
    });
    expect(tokenizer.lastMessages).toStrictEqual([
      { role: 'system', content: `You are helpful.\n\n${TOOLS_BLOCK}\nIf no tool is needed, answer the user directly.` },
      { role: 'user', content: 'Weather in Paris?' },
    ]);
    expect(res.choices).toStrictEqual([
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: expect.stringMatching(/^call_[A-Za-z0-9]{24}$/), type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' } },
          ],
        },
        finish_reason: 'tool_calls',
        logprobs: null,
      },
    ]);
  });

  it('keeps ordinary answers, unknown tools and tool_choice "none" as content', async () => {
    const { engine, tokenizer } = setup({ script: scriptOf(' {"name": "launch", "arguments": {}}') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER] });
    expect(res.choices[0]!.message).toStrictEqual({ role: 'assistant', content: ' {"name": "launch", "arguments": {}}' });
    expect(res.choices[0]!.finish_reason).toBe('stop');

    const { engine: e2 } = setup({ script: scriptOf(call) });
    const none = await e2.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER], tool_choice: 'none' });
    expect(none.choices[0]!.message.content).toBe(call);
    expect(none.choices[0]!.finish_reason).toBe('stop');

    await engine.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER], tool_choice: 'none' });
    expect(tokenizer.lastMessages).toStrictEqual([{ role: 'user', content: 'Hi' }]); // no tools block
  });

  it('streams a tool call as one tool_calls delta and finish_reason "tool_calls"', async () => {
    const { engine } = setup({ script: scriptOf(call) });
    const chunks = await collect(await engine.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER], stream: true }));
    expect(chunks.map((c) => c.choices[0]!.delta)).toStrictEqual([
      { role: 'assistant', content: '' },
      {
        tool_calls: [
          { index: 0, id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' } },
        ],
      },
      {},
    ]);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });

  it('streams ordinary text as soon as it cannot be a tool call', async () => {
    const { engine } = setup({ script: scriptOf('  Sure.') });
    const chunks = await collect(await engine.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER], stream: true }));
    expect(contentDeltas(chunks)).toEqual(['  S', 'u', 'r', 'e', '.']);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('feeds assistant tool calls and tool results back into the next prompt', async () => {
    const { engine, tokenizer } = setup({ script: scriptOf('It is 21 C in Paris.') });
    const res = await engine.chat.completions.create({
      model: MODEL,
      tools: [WEATHER],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
      ],
    });
    expect(tokenizer.lastMessages).toStrictEqual([
      { role: 'system', content: `${TOOLS_BLOCK}\nIf no tool is needed, answer the user directly.` },
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}}' },
      { role: 'user', content: '[tool result for call_1 (get_weather)]: {"temp":21}' },
    ]);
    expect(res.choices[0]!.message.content).toBe('It is 21 C in Paris.');
  });

  it('constrains a forced call to valid JSON for the schema, even from a noisy model', async () => {
    const tok = new FakeTokenizer();
    const quote = tok.encode('"')[0]!;
    const close = tok.encode('}')[0]!;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const { engine, backend, tokenizer } = setup();
      // Noise everywhere, with a push towards closing strings and objects so the call ends.
      backend.setLogits((step) => {
        const l = new Float32Array(backend.modelInfo.vocabSize);
        const next = lcg(seed * 7919 + step * 104729 + 1);
        for (let i = 0; i < l.length; i++) l[i] = (next() / 2 ** 32) * 4;
        l[quote]! += 4;
        l[close]! += 4;
        return l;
      });
      const res = await engine.chat.completions.create({
        model: MODEL,
        messages: HI,
        tools: [TIME, WEATHER],
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
        max_tokens: 300,
        seed,
      });
      expect(tokenizer.lastMessages![0]!.content).toContain('You must call the tool "get_weather" now.');
      expect(backend.lastCall.maskCalls).toBeGreaterThan(5);
      const choice = res.choices[0]!;
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.tool_calls![0]!.function.name).toBe('get_weather');
      const args = JSON.parse(choice.message.tool_calls![0]!.function.arguments) as Record<string, unknown>;
      expect(Object.keys(args).every((k) => ['city', 'unit', 'days', 'detailed'].includes(k))).toBe(true);
      expect(typeof args.city).toBe('string');
      expect(['c', 'f']).toContain(args.unit);
      if ('days' in args) expect(Number.isInteger(args.days)).toBe(true);
      if ('detailed' in args) expect(typeof args.detailed).toBe('boolean');
      expect(backend.lastCall.produced.at(-1)).toBe(EOS); // EOS only once the object is complete
    }
  });

  it('with tool_choice "required" the constrained call names one of the tools', async () => {
    const { engine, backend } = setup({ script: scriptOf(' {"name": "get_time", "arguments": {"zone": "UTC"}}') });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER, TIME], tool_choice: 'required' });
    expect(res.choices[0]!.message.tool_calls![0]!.function).toStrictEqual({ name: 'get_time', arguments: '{"zone":"UTC"}' });
    expect(backend.lastCall.maskCalls).toBeGreaterThan(0);
  });

  it('without token texts a forced call is asked for but not constrained', async () => {
    const backend = new FakeBackend({ script: scriptOf('no') });
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer({ tokenTexts: false }), modelName: MODEL });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, tools: [WEATHER], tool_choice: 'required' });
    expect(backend.lastCall.request.allowedTokens).toBeUndefined();
    expect(res.choices[0]!.message.content).toBe('no');
    expect(res.choices[0]!.finish_reason).toBe('stop');
  });
});

describe('sampling through the engine', () => {
  it('the same seed gives the same completion; other seeds differ', async () => {
    const { engine, backend } = setup();
    backend.setLogits((step) => {
      const l = new Float32Array(backend.modelInfo.vocabSize).fill(-50);
      for (let c = 0x61; c <= 0x7a; c++) l[c + 3] = ((c * 31 + step * 17) % 7) / 3; // lowercase letters
      return l;
    });
    const run = async (seed: number | bigint) =>
      (await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 24, seed })).choices[0]!.message.content;
    const a = await run(42);
    expect(a).toMatch(/^[a-z]{24}$/);
    expect(await run(42)).toBe(a);
    expect(await run(43)).not.toBe(a);
    expect(await run(9223372036854775807n)).toBe(await run(9223372036854775807n));
  });

  it('temperature 0 follows the argmax', async () => {
    const { engine, backend } = setup();
    backend.setLogits((step) => {
      const l = new Float32Array(backend.modelInfo.vocabSize).fill(1);
      l[0x61 + (step % 3) + 3] = 1.5; // a, b, c, a, ...
      return l;
    });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 6, temperature: 0 });
    expect(res.choices[0]!.message.content).toBe('abcabc');
  });

  it('logs a hash of `user`, never the value', async () => {
    const entries: RequestLogEntry[] = [];
    const { engine } = setup({ script: scriptOf('ok') }, { onRequestLog: (e) => entries.push(e) });
    const res = await engine.chat.completions.create({ model: MODEL, messages: HI, user: 'alice@example.com' });
    expect(JSON.stringify(res)).not.toContain('alice');
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode('alice@example.com')));
    const hex = Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
    expect(entries).toStrictEqual([
      {
        id: res.id,
        model: MODEL,
        stream: false,
        userHash: hex,
        promptTokens: HI_PROMPT.length,
        completionTokens: 3,
        outcome: 'stop',
        durationMs: expect.any(Number),
      },
    ]);
    const stream = await engine.chat.completions.create({ model: MODEL, messages: HI, stream: true });
    for await (const _ of stream) break; // the consumer leaves after the first chunk
    expect(entries[1]).toMatchObject({ stream: true, userHash: null, completionTokens: 0, outcome: 'aborted' });
  });
});

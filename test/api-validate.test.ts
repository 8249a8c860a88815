import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../api/errors.ts';
import { parseRequestJson, topLevelMemberSource } from '../api/raw-json.ts';
import { validateChatRequest } from '../api/validate.ts';

const BASE = { model: 'm', messages: [{ role: 'user', content: 'Hi' }] };

function rejects(body: unknown): BadRequestError {
  try {
    validateChatRequest(body);
  } catch (err) {
    expect(err).toBeInstanceOf(BadRequestError);
    const e = err as BadRequestError;
    expect(e.status).toBe(400);
    expect(e.type).toBe('invalid_request_error');
    return e;
  }
  throw new Error(`accepted: ${JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
}

/** Each parameter: values on the edges of its range that pass, and just past them that fail. */
const RANGES: { param: string; ok: unknown[]; bad: unknown[] }[] = [
  { param: 'temperature', ok: [0, 2, 0.7, null], bad: [-0.001, 2.001, '1', true, Number.NaN] },
  { param: 'top_p', ok: [1e-9, 1, null], bad: [0, -0.1, 1.0001, '0.5'] },
  { param: 'min_p', ok: [0, 1, 0.05], bad: [-0.001, 1.001, [0.1]] },
  { param: 'top_k', ok: [0, 999, 40], bad: [-1, 1000, 1.5, '40'] },
  { param: 'max_tokens', ok: [0, 1_000_000, 16], bad: [-1, 1_000_001, 2.5, '16'] },
  { param: 'max_completion_tokens', ok: [0, 1_000_000], bad: [-1, 1_000_001] },
  { param: 'presence_penalty', ok: [-2, 2, 0], bad: [-2.001, 2.001, false] },
  { param: 'frequency_penalty', ok: [-2, 2, 0], bad: [-2.001, 2.001, {}] },
  { param: 'repetition_penalty', ok: [0.01, 5, 1], bad: [0.0099, 0, 5.001, -1] },
  { param: 'seed', ok: [0, 2 ** 53 - 1, 9223372036854775807n, null], bad: [-1, -1n, 9223372036854775808n, 2 ** 60, 1.5, '7'] },
  { param: 'stop', ok: ['x', ['a', 'b', 'c', 'd'], [], null], bad: [['a', 'b', 'c', 'd', 'e'], [1], '', ['ok', ''], 5] },
  { param: 'stream', ok: [true, false, null], bad: ['yes', 1] },
  { param: 'user', ok: ['u-1'], bad: [5] },
  { param: 'n', ok: [1, 8, null], bad: [9, 0, 1.5, '1'] },
  { param: 'logprobs', ok: [false, true, null], bad: ['true', 1] },
];

describe('parameter ranges', () => {
  for (const { param, ok, bad } of RANGES) {
    it(`${param}: edges accepted, beyond them 400 naming '${param}'`, () => {
      for (const v of ok) expect(() => validateChatRequest({ ...BASE, [param]: v })).not.toThrow();
      for (const v of bad) expect(rejects({ ...BASE, [param]: v }).param).toBe(param);
    });
  }

  it('gives OpenAI error bodies', () => {
    expect(rejects({ ...BASE, temperature: 3 }).toJSON()).toStrictEqual({
      error: {
        message: "Invalid value for 'temperature': 3. It must be at least 0 and at most 2.",
        type: 'invalid_request_error',
        param: 'temperature',
        code: 'invalid_value',
      },
    });
    expect(rejects({ ...BASE, top_p: 0 }).message).toBe("Invalid value for 'top_p': 0. It must be greater than 0 and at most 1.");
    expect(rejects({ ...BASE, top_k: '5' }).toJSON()).toStrictEqual({
      error: { message: "Invalid type for 'top_k': expected an integer, but got string.", type: 'invalid_request_error', param: 'top_k', code: 'invalid_type' },
    });
    expect(rejects({ messages: BASE.messages }).toJSON()).toStrictEqual({
      error: { message: "Missing required parameter: 'model'.", type: 'invalid_request_error', param: 'model', code: 'missing_required_parameter' },
    });
  });

  it('maps wire names to sampling params with the documented defaults', () => {
    expect(validateChatRequest(BASE)).toStrictEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'Hi' }],
      sampling: { temperature: 1, topP: 1, topK: 0, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1 },
      maxTokens: null,
      stop: [],
      stream: false,
      includeUsage: false,
      user: null,
      tools: [],
      toolChoice: { type: 'none' },
      n: 1,
      topLogprobs: null,
      responseFormat: { type: 'text' },
    });
    const v = validateChatRequest({
      ...BASE,
      temperature: 0.3,
      top_p: 0.9,
      top_k: 40,
      min_p: 0.05,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      repetition_penalty: 1.1,
      seed: 9223372036854775807n,
      max_tokens: 64,
      stop: 'END',
      stream: true,
      stream_options: { include_usage: true },
      user: 'bob',
    });
    expect(v.sampling).toStrictEqual({
      temperature: 0.3,
      topP: 0.9,
      topK: 40,
      minP: 0.05,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      repetitionPenalty: 1.1,
      seed: 9223372036854775807n,
    });
    expect([v.maxTokens, v.stop, v.stream, v.includeUsage, v.user]).toEqual([64, ['END'], true, true, 'bob']);
    expect(validateChatRequest({ ...BASE, max_completion_tokens: 9 }).maxTokens).toBe(9);
    expect(validateChatRequest({ ...BASE, seed: 12 }).sampling.seed).toBe(12n);
  });

  it('stream_options needs stream and a boolean include_usage', () => {
    expect(rejects({ ...BASE, stream_options: { include_usage: true } }).param).toBe('stream_options');
    expect(rejects({ ...BASE, stream: true, stream_options: { include_usage: 'yes' } }).param).toBe('stream_options.include_usage');
    expect(rejects({ ...BASE, stream: true, stream_options: 3 }).param).toBe('stream_options');
  });

  it('the body must be an object with a string model', () => {
    for (const body of [null, [], 'x', 3]) expect(rejects(body).param).toBeNull();
    expect(rejects({ ...BASE, model: 5 }).param).toBe('model');
  });
});

describe('messages', () => {
  const u = (content: unknown = 'q') => ({ role: 'user', content });
  const a = (content: unknown = 'r') => ({ role: 'assistant', content });
  const call = { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } };

  it('rejects missing, empty and non-array conversations', () => {
    expect(rejects({ model: 'm' }).param).toBe('messages');
    expect(rejects({ model: 'm', messages: [] }).param).toBe('messages');
    expect(rejects({ model: 'm', messages: {} }).param).toBe('messages');
    expect(rejects({ model: 'm', messages: ['hi'] }).param).toBe('messages[0]');
  });

  it('rejects unknown roles and wrong content types, naming the message', () => {
    expect(rejects({ model: 'm', messages: [{ role: 'bot', content: 'x' }] }).param).toBe('messages[0].role');
    expect(rejects({ model: 'm', messages: [{ content: 'x' }] }).param).toBe('messages[0].role');
    expect(rejects({ model: 'm', messages: [u(), a(), u(5)] }).param).toBe('messages[2].content');
    expect(rejects({ model: 'm', messages: [{ role: 'user' }] }).param).toBe('messages[0].content');
    expect(rejects({ model: 'm', messages: [u([{ type: 'image_url', image_url: { url: 'x' } }])] }).param).toBe('messages[0].content[0].type');
    expect(rejects({ model: 'm', messages: [u([{ type: 'text', text: 3 }])] }).param).toBe('messages[0].content[0].text');
    expect(rejects({ model: 'm', messages: [u(), a(null)] }).param).toBe('messages[1].content');
  });

  it('enforces (user, assistant, tool)* then user/tool with at most one system message', () => {
    const sys = { role: 'system', content: 's' };
    expect(() => validateChatRequest({ model: 'm', messages: [sys, u(), a(), u()] })).not.toThrow();
    expect(() => validateChatRequest({ model: 'm', messages: [u(), a(), sys, u()] })).not.toThrow();
    expect(() => validateChatRequest({ model: 'm', messages: [u(), u()] })).not.toThrow(); // merged into one turn
    expect(rejects({ model: 'm', messages: [sys, u(), sys, u()] }).param).toBe('messages[2].role');
    expect(rejects({ model: 'm', messages: [a(), u()] }).param).toBe('messages[0].role');
    expect(rejects({ model: 'm', messages: [u(), a(), a(), u()] }).param).toBe('messages[2].role');
    expect(rejects({ model: 'm', messages: [u(), a()] }).param).toBe('messages');
    expect(rejects({ model: 'm', messages: [sys] }).param).toBe('messages');
  });

  it('tool messages must answer a call of the assistant message before them', () => {
    const withCall = { role: 'assistant', content: null, tool_calls: [call] };
    const tool = (id: unknown) => ({ role: 'tool', tool_call_id: id, content: 'out' });
    const ok = validateChatRequest({ model: 'm', messages: [u(), withCall, tool('call_1')] });
    expect(ok.messages[2]).toStrictEqual({ role: 'tool', content: 'out', toolCallId: 'call_1', toolName: 'f' });
    expect(ok.messages[1]).toStrictEqual({ role: 'assistant', content: null, toolCalls: [call] });
    expect(rejects({ model: 'm', messages: [u(), withCall, tool('call_2')] }).param).toBe('messages[2].tool_call_id');
    expect(rejects({ model: 'm', messages: [u(), a(), tool('call_1')] }).param).toBe('messages[2].tool_call_id');
    expect(rejects({ model: 'm', messages: [u(), withCall, { role: 'tool', content: 'x' }] }).param).toBe('messages[2].tool_call_id');
    expect(rejects({ model: 'm', messages: [u(), withCall, tool(7)] }).param).toBe('messages[2].tool_call_id');
    const badCall = { role: 'assistant', tool_calls: [{ ...call, function: { name: 'f', arguments: {} } }] };
    expect(rejects({ model: 'm', messages: [u(), badCall, u()] }).param).toBe('messages[1].tool_calls[0].function.arguments');
  });
});

describe('tools and tool_choice', () => {
  const tool = (name: unknown, extra: object = {}) => ({ type: 'function', function: { name, ...extra } });

  it('accepts none/auto/required/named choices, auto by default with tools', () => {
    expect(validateChatRequest({ ...BASE, tools: [tool('f')] }).toolChoice).toStrictEqual({ type: 'auto' });
    expect(validateChatRequest({ ...BASE, tools: [tool('f')], tool_choice: 'none' }).toolChoice).toStrictEqual({ type: 'none' });
    expect(validateChatRequest({ ...BASE, tools: [tool('f')], tool_choice: 'required' }).toolChoice).toStrictEqual({ type: 'required' });
    expect(validateChatRequest({ ...BASE, tools: [tool('f')], tool_choice: { type: 'function', function: { name: 'f' } } }).toolChoice).toStrictEqual({
      type: 'function',
      name: 'f',
    });
    expect(validateChatRequest({ ...BASE, tool_choice: 'none' }).toolChoice).toStrictEqual({ type: 'none' });
  });

  it('rejects malformed tools and choices, naming the parameter', () => {
    expect(rejects({ ...BASE, tools: {} }).param).toBe('tools');
    expect(rejects({ ...BASE, tools: [{ type: 'retrieval' }] }).param).toBe('tools[0].type');
    expect(rejects({ ...BASE, tools: [tool('bad name')] }).param).toBe('tools[0].function.name');
    expect(rejects({ ...BASE, tools: [tool('f'), tool('f')] }).param).toBe('tools[1].function.name');
    expect(rejects({ ...BASE, tools: [tool('f', { parameters: 'x' })] }).param).toBe('tools[0].function.parameters');
    expect(rejects({ ...BASE, tool_choice: 'auto' }).param).toBe('tool_choice');
    expect(rejects({ ...BASE, tools: [tool('f')], tool_choice: 'maybe' }).param).toBe('tool_choice');
    expect(rejects({ ...BASE, tools: [tool('f')], tool_choice: { type: 'function', function: { name: 'g' } } }).param).toBe('tool_choice');
  });
});

describe('exact seeds from JSON text', () => {
  it('reads integer literals above 2^53 exactly', () => {
    expect(JSON.parse('{"seed": 9223372036854775807}').seed).toBe(9223372036854775808); // what JSON.parse loses
    expect((parseRequestJson('{"seed": 9223372036854775807}') as { seed: bigint }).seed).toBe(9223372036854775807n);
    expect((parseRequestJson('{"seed": 9223372036854775808}') as { seed: bigint }).seed).toBe(9223372036854775808n);
    expect((parseRequestJson('{"seed":-1}') as { seed: bigint }).seed).toBe(-1n);
    expect((parseRequestJson('{"seed": 5.0}') as { seed: number }).seed).toBe(5);
    expect((parseRequestJson('{"seed": "12"}') as { seed: string }).seed).toBe('12');
  });

  it('finds the top-level member only, the last one when repeated', () => {
    const text = '{"messages":[{"seed":1,"content":"\\"seed\\": 2 }"}],"a":{"seed":[3]},"seed" : 18446744073709551615 ,"seed":77}';
    expect(topLevelMemberSource(text, 'seed')).toBe('77');
    expect(topLevelMemberSource('{"x":{"seed":1}}', 'seed')).toBeUndefined();
    expect(topLevelMemberSource('[{"seed":1}]', 'seed')).toBeUndefined();
    expect(topLevelMemberSource(' { "s\\u0065ed" : 12345678901234567891 } ', 'seed')).toBe('12345678901234567891');
    const body = parseRequestJson('{"seed": 12345678901234567891, "model": "m"}') as { seed: bigint };
    expect(body.seed).toBe(12345678901234567891n);
    expect(rejects({ ...BASE, seed: body.seed }).param).toBe('seed'); // above 2^63-1
  });
});

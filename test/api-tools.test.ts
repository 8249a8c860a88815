import { describe, expect, it } from 'vitest';
import { compileSchema, feed, isComplete, toolCallAcceptor, type AcceptorState } from '../api/json-constraint.ts';
import { allowedMask, constrainTokens, vocabIndex } from '../api/token-mask.ts';
import { parseToolCall, renderToolCalls } from '../api/tools.ts';
import type { ChatCompletionTool } from '../api/types.ts';
import { EOS, FAKE_VOCAB_SIZE, FakeTokenizer } from './helpers/fake-backend.ts';

const tool = (name: string, parameters?: Record<string, unknown>): ChatCompletionTool => ({
  type: 'function',
  function: parameters ? { name, parameters } : { name },
});

const WEATHER = tool('get_weather', {
  type: 'object',
  properties: {
    city: { type: 'string' },
    unit: { enum: ['c', 'f'] },
    days: { type: 'integer' },
    temp: { type: 'number' },
    tags: { type: 'array', items: { type: 'string' } },
    when: { type: ['string', 'null'] },
    extra: { type: 'object' },
  },
  required: ['city'],
});

/** Does the acceptor take the whole text and end complete? */
function accepts(start: AcceptorState, text: string): boolean {
  const s = feed(start, text);
  return s !== null && isComplete(s);
}

describe('tool-call acceptor', () => {
  const start = toolCallAcceptor([WEATHER]);

  it('accepts calls that are valid for the schema', () => {
    for (const text of [
      '{"name": "get_weather", "arguments": {"city": "Paris"}}',
      ' {"name": "get_weather", "arguments": {"city":"P\\"a\\u00e9\\n", "unit": "f"}}',
      '{"name": "get_weather", "arguments": {"unit":"c","city":""}}',
      '{"name": "get_weather", "arguments": {"city": "x", "days": -12, "temp": 0.5e+3}}',
      '{"name": "get_weather", "arguments": {"city": "x", "tags": [], "when": null}}',
      '{"name": "get_weather", "arguments": {"city": "x", "tags": ["a", "b"], "when": "now"}}',
      '{"name": "get_weather", "arguments": { "city": "x" , "extra": {"k": [1, true, {"z": null}]} }}',
    ]) {
      expect(accepts(start, text), text).toBe(true);
      expect(() => JSON.parse(text)).not.toThrow();
    }
  });

  it('rejects anything else at the first wrong character', () => {
    for (const text of [
      '{"name": "get_time", "arguments": {"city": "x"}}', // unknown tool
      '{"name": "get_weather", "arguments": {}}', // required city missing
      '{"name": "get_weather", "arguments": {"town": "x"}}', // unknown key
      '{"name": "get_weather", "arguments": {"city": "x", "city": "y"}}', // repeated key
      '{"name": "get_weather", "arguments": {"city": 5}}', // wrong type
      '{"name": "get_weather", "arguments": {"city": "x", "unit": "k"}}', // not in enum
      '{"name": "get_weather", "arguments": {"city": "x", "days": 1.5}}', // not an integer
      '{"name": "get_weather", "arguments": {"city": "x", "days": 01}}', // leading zero
      '{"name": "get_weather", "arguments": {"city": "a\nb"}}', // raw control character
      '{"name": "get_weather", "arguments": {"city": "x"}}  ', // trailing text
      '{"name": "get_weather", "arguments": {"city":  "x"}}', // two spaces
      'Sure! {"name": "get_weather"',
    ]) {
      expect(accepts(start, text), text).toBe(false);
    }
    expect(feed(start, '{"name": "get_weather", "arguments": {"city": "x"}')).not.toBeNull(); // a prefix
  });

  it('with several tools, each name takes its own arguments schema', () => {
    const both = toolCallAcceptor([WEATHER, tool('get', { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] })]);
    expect(accepts(both, '{"name": "get", "arguments": {"id": 7}}')).toBe(true);
    expect(accepts(both, '{"name": "get", "arguments": {"city": "x"}}')).toBe(false);
    expect(accepts(both, '{"name": "get_weather", "arguments": {"city": "x"}}')).toBe(true);
    expect(accepts(toolCallAcceptor([tool('ping')]), '{"name": "ping", "arguments": {"any": [1]}}')).toBe(true);
  });

  it('compiles the documented schema subset', () => {
    expect(compileSchema({ type: 'integer' })).toEqual({ kind: 'number', integer: true });
    expect(compileSchema({ const: 'x' })).toEqual({ kind: 'literal', options: ['"x"'] });
    expect(compileSchema({ type: 'boolean' })).toEqual({ kind: 'literal', options: ['true', 'false'] });
    expect(compileSchema({ pattern: '^a' })).toEqual({ kind: 'any' });
    expect(compileSchema({ anyOf: [{ type: 'string' }, { type: 'null' }] })).toEqual({
      kind: 'union',
      options: [{ kind: 'string' }, { kind: 'literal', options: ['null'] }],
    });
  });
});

describe('token masks', () => {
  const texts = new FakeTokenizer().tokenTexts!();

  /** Brute force: feed every token's text from the state. */
  function bruteMask(state: AcceptorState): Uint8Array {
    const mask = new Uint8Array(FAKE_VOCAB_SIZE);
    if (isComplete(state)) {
      mask[EOS] = 1;
      return mask;
    }
    texts.forEach((t, id) => {
      if (t && feed(state, t)) mask[id] = 1;
    });
    return mask;
  }

  it('equals the brute-force mask at every prefix of a call', () => {
    const start = toolCallAcceptor([WEATHER]);
    const index = vocabIndex(texts);
    const call = ' {"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "tags": ["a"], "when": null}}';
    for (let k = 0; k <= call.length; k++) {
      const state = feed(start, call.slice(0, k))!;
      expect(state).not.toBeNull();
      expect(allowedMask(index, state, EOS, FAKE_VOCAB_SIZE)).toEqual(bruteMask(state));
    }
    const end = allowedMask(index, feed(start, call)!, EOS, FAKE_VOCAB_SIZE);
    expect([...end.keys()].filter((i) => end[i])).toEqual([EOS]);
  });

  it('follows generated ids and gives up when an id outside the mask appears', () => {
    const tok = new FakeTokenizer();
    const hook = constrainTokens(toolCallAcceptor([WEATHER]), texts, EOS, FAKE_VOCAB_SIZE);
    const ids = tok.encode('{"name": "get_w');
    const mask = hook(ids)!;
    expect(mask[tok.encode('e')[0]!]).toBe(1);
    expect(mask[tok.encode('x')[0]!]).toBe(0);
    expect(mask[EOS]).toBe(0);
    expect(hook([...ids, ...tok.encode('x')])).toBeNull();
  });
});

describe('parsing and rendering calls', () => {
  const tools = [WEATHER, tool('ping')];

  it('parses a whole-answer JSON call of a known tool', () => {
    expect(parseToolCall(' {"name": "get_weather", "arguments": {"city": "Paris"}} ', tools)).toStrictEqual({
      name: 'get_weather',
      arguments: '{"city":"Paris"}',
    });
    expect(parseToolCall('```json\n{"name": "ping"}\n```', tools)).toStrictEqual({ name: 'ping', arguments: '{}' });
    expect(parseToolCall('{"name": "nope", "arguments": {}}', tools)).toBeNull();
    expect(parseToolCall('{"name": "ping", "arguments": [1]}', tools)).toBeNull();
    expect(parseToolCall('Call {"name": "ping"}', tools)).toBeNull();
    expect(parseToolCall('{"name": "ping", "arguments": {}', tools)).toBeNull();
  });

  it('renders calls back as the JSON the model writes', () => {
    expect(
      renderToolCalls([
        { id: 'call_a', type: 'function', function: { name: 'ping', arguments: '{"x": 1}' } },
        { id: 'call_b', type: 'function', function: { name: 'get_weather', arguments: 'not json' } },
      ]),
    ).toBe('{"name":"ping","arguments":{"x":1}}\n{"name":"get_weather","arguments":"not json"}');
  });
});

describe('renderToolCalls', () => {
  it('keeps arguments too deeply nested to write back as their text', () => {
    const deep = '['.repeat(20000) + ']'.repeat(20000);
    const out = renderToolCalls([{ id: 'c', type: 'function', function: { name: 'f', arguments: deep } }]);
    expect(JSON.parse(out)).toStrictEqual({ name: 'f', arguments: deep });
    expect(renderToolCalls([{ id: 'c', type: 'function', function: { name: 'f', arguments: '{"a": [1]}' } }])).toBe('{"name":"f","arguments":{"a":[1]}}');
  });
});

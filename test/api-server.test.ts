import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect } from './helpers/collect.ts';
import { createEngine } from '../api/engine.ts';
import { startServer, type RunningServer } from '../api/server.ts';
import { FakeBackend, FakeTokenizer, scriptOf } from './helpers/fake-backend.ts';

const MODEL = 'llama-2-7b-chat';
const KEY = 'sk-local-test';
const HELLO = ' Hello! How can I help?';

let backend: FakeBackend;
let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  backend = new FakeBackend({ script: scriptOf(HELLO) });
  const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: MODEL, aliases: ['meta-llama/Llama-2-7b-chat-hf'] });
  server = await startServer({ engine, port: 0, apiKey: KEY, maxBodyBytes: 64 * 1024 });
  client = new OpenAI({ baseURL: `${server.url}/v1/openai`, apiKey: KEY, maxRetries: 0 });
});

afterAll(async () => {
  await server.close();
});

const HI = [{ role: 'user' as const, content: 'Hi' }];

function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(server.url + path, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json', ...headers },
    body,
  });
}

/** A normal request still works (after each failure case). */
async function stillServes(): Promise<void> {
  backend.setScript(scriptOf(HELLO));
  const res = await client.chat.completions.create({ model: MODEL, messages: HI });
  expect(res.choices[0]!.message.content).toBe(HELLO);
}

describe('with the official openai client', () => {
  it('non-streaming: the hosted endpoint shape', async () => {
    backend.setScript(scriptOf(HELLO));
    const res = await client.chat.completions.create({ model: MODEL, messages: HI, temperature: 0.7, max_tokens: 100 });
    expect(res).toStrictEqual({
      id: expect.stringMatching(/^chatcmpl-/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: HELLO }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 18, completion_tokens: 24, total_tokens: 42, estimated_cost: Number(((18 * 0.64 + 24 * 0.8) / 1e6).toFixed(10)) },
    });
  });

  it('streaming: role, content deltas, finish, usage', async () => {
    backend.setScript(scriptOf('Hey'));
    const stream = await client.chat.completions.create({
      model: 'meta-llama/Llama-2-7b-chat-hf',
      messages: HI,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    expect(chunks.map((c) => c.choices[0]?.delta ?? null)).toStrictEqual([
      { role: 'assistant', content: '' },
      { content: 'H' },
      { content: 'e' },
      { content: 'y' },
      {},
      null,
    ]);
    expect(chunks[4]!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks[5]!.usage).toStrictEqual({ prompt_tokens: 18, completion_tokens: 4, total_tokens: 22, estimated_cost: expect.any(Number) });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks[4]!.usage).toStrictEqual(chunks[5]!.usage); // DeepInfra's usage on the finish chunk too
    expect(chunks.every((c) => c.model === 'meta-llama/Llama-2-7b-chat-hf' && c.object === 'chat.completion.chunk')).toBe(true);
  });

  it('lists the served models', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual([MODEL, 'meta-llama/Llama-2-7b-chat-hf']);
    expect(page.data[0]).toStrictEqual({ id: MODEL, object: 'model', created: expect.any(Number), owned_by: 'llama2-webgpu' });
  });

  it('maps errors to the client error classes', async () => {
    const bad = await client.chat.completions.create({ model: MODEL, messages: HI, temperature: 3 }).catch((e) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect([bad.status, bad.param, bad.code, bad.type]).toEqual([400, 'temperature', 'invalid_value', 'invalid_request_error']);

    const missing = await client.chat.completions.create({ model: 'gpt-4o', messages: HI }).catch((e) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect([missing.status, missing.param, missing.code]).toEqual([404, 'model', 'model_not_found']);

    const wrongKey = new OpenAI({ baseURL: `${server.url}/v1/openai`, apiKey: 'sk-wrong', maxRetries: 0 });
    const unauth = await wrongKey.chat.completions.create({ model: MODEL, messages: HI }).catch((e) => e);
    expect(unauth).toBeInstanceOf(OpenAI.AuthenticationError);
    expect([unauth.status, unauth.code]).toEqual([401, 'invalid_api_key']);

    const streamBad = await client.chat.completions.create({ model: MODEL, messages: [], stream: true }).catch((e) => e);
    expect(streamBad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(streamBad.param).toBe('messages');
    await stillServes();
  });

  it('the /v1/chat/completions path works too, with an exact big seed', async () => {
    const v1 = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
    backend.setScript(scriptOf('ok'));
    const res = await v1.chat.completions.create({ model: MODEL, messages: HI, seed: 42 });
    expect(res.choices[0]!.message.content).toBe('ok');
    // A seed past 2^53 goes through the server as its exact JSON literal.
    const big = await post('/v1/chat/completions', `{"model":"${MODEL}","messages":[{"role":"user","content":"Hi"}],"seed":9223372036854775807}`);
    expect(big.status).toBe(200);
    const over = await post('/v1/chat/completions', `{"model":"${MODEL}","messages":[{"role":"user","content":"Hi"}],"seed":9223372036854775808}`);
    expect(over.status).toBe(400);
    expect(((await over.json()) as { error: { param: string } }).error.param).toBe('seed');
  });
});

/** Raw SSE text of a streaming request. */
async function rawStream(body: object): Promise<{ status: number; type: string | null; text: string }> {
  const res = await post('/v1/openai/chat/completions', JSON.stringify(body));
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

describe('raw HTTP', () => {
  it('frames SSE as data: lines and blank lines, ending with [DONE]', async () => {
    backend.setScript(scriptOf('Añ'));
    const { status, type, text } = await rawStream({ model: MODEL, messages: HI, stream: true });
    expect(status).toBe(200);
    expect(type).toBe('text/event-stream; charset=utf-8');
    const lines = text.split('\n');
    // 5 events (role, "A", "ñ", finish, [DONE]), each "data: ..." then a blank line, and the final "\n".
    expect(lines.length).toBe(5 * 2 + 1);
    for (let i = 0; i < lines.length - 1; i++) {
      if (i % 2 === 1) expect(lines[i]).toBe('');
      else expect(lines[i]!.startsWith('data: ')).toBe(true);
    }
    expect(lines.at(-3)).toBe('data: [DONE]');
    const events = lines.filter((_, i) => i % 2 === 0 && i < lines.length - 3).map((l) => JSON.parse(l.slice(6)));
    expect(events.map((e) => e.choices[0].delta)).toStrictEqual([{ role: 'assistant', content: '' }, { content: 'A' }, { content: 'ñ' }, {}]);
    expect(events.map((e) => e.choices[0].finish_reason)).toEqual([null, null, null, 'stop']);
  });

  it('malformed JSON and non-object bodies: 400 with an OpenAI error body', async () => {
    for (const body of ['{"model": ', '', 'null', '[1]', '\xff']) {
      const res = await post('/v1/openai/chat/completions', body);
      expect(res.status).toBe(400);
      const json = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(json.error.type).toBe('invalid_request_error');
    }
    const res = await post('/v1/openai/chat/completions', '{"model": ');
    expect(await res.json()).toStrictEqual({
      error: { message: expect.stringMatching(/^We could not parse the JSON body of your request/), type: 'invalid_request_error', param: null, code: null },
    });
    await stillServes();
  });

  it('401 without or with a wrong key; /health needs none', async () => {
    const none = await fetch(`${server.url}/v1/openai/chat/completions`, { method: 'POST', body: '{}' });
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    const wrong = await post('/v1/chat/completions', '{}', { Authorization: 'Bearer sk-nope' });
    expect(wrong.status).toBe(401);
    const models = await fetch(`${server.url}/v1/models`);
    expect(models.status).toBe(401);
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toStrictEqual({ status: 'ok', model: MODEL });
    await stillServes();
  });

  it('404 for unknown routes and models, 405 for wrong methods', async () => {
    const route = await post('/v1/completions', '{}');
    expect(route.status).toBe(404);
    expect(await route.json()).toStrictEqual({
      error: { message: 'Invalid URL (POST /v1/completions).', type: 'invalid_request_error', param: null, code: 'unknown_url' },
    });
    const model = await post('/v1/chat/completions', JSON.stringify({ model: 'nope', messages: HI }));
    expect(model.status).toBe(404);
    const method = await fetch(`${server.url}/v1/chat/completions`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(method.status).toBe(405);
    expect(method.headers.get('allow')).toBe('POST, OPTIONS');
    expect(((await method.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    await stillServes();
  });

  it('413 for a body over the limit (declared or streamed)', async () => {
    const big = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] });
    const declared = await post('/v1/chat/completions', big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: { code: string } }).error.code).toBe('request_too_large');

    // Chunked upload without Content-Length: counted while reading.
    const status = await new Promise<number>((resolve, reject) => {
      const url = new URL(`${server.url}/v1/chat/completions`);
      const req = httpRequest(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Transfer-Encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('x'.repeat(10 * 1024));
      req.end();
    });
    expect(status).toBe(413);
    await stillServes();
  });

  it('a model failure: 500 before streaming, an error event mid-stream; then it serves again', async () => {
    backend.setScript(scriptOf('abcdef'));
    backend.setFailAfter(2);
    try {
      const res = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: HI }));
      expect(res.status).toBe(500);
      expect(await res.json()).toStrictEqual({
        error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null },
      });
      const { status, text } = await rawStream({ model: MODEL, messages: HI, stream: true });
      expect(status).toBe(200);
      const events = text.split('\n\n').filter(Boolean);
      expect(events.length).toBe(4); // role, "a", "b", error; no [DONE]
      expect(JSON.parse(events[3]!.slice('data: '.length))).toStrictEqual({
        error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null },
      });
      const viaClient = await (async () => {
        const stream = await client.chat.completions.create({ model: MODEL, messages: HI, stream: true });
        for await (const _ of stream);
      })().catch((e) => e);
      expect(viaClient).toBeInstanceOf(OpenAI.APIError);
      expect(viaClient.message).toContain('The server had an error');
    } finally {
      backend.setFailAfter(undefined);
    }
    await stillServes();
  });

  it('CORS: loopback origins are allowed by default, any other origin gets 403 before its body is read', async () => {
    const preflight = (origin: string) =>
      fetch(`${server.url}/v1/openai/chat/completions`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' },
      });
    for (const origin of ['http://localhost:5173', 'http://127.0.0.1:8080', 'http://[::1]:3000', 'https://localhost']) {
      const pre = await preflight(origin);
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
      expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
      expect(pre.headers.get('access-control-allow-headers')).toBe('authorization, content-type');
      const res = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: HI }), { Origin: origin });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      const err = await post('/v1/chat/completions', '{', { Origin: origin });
      expect(err.status).toBe(400);
      expect(err.headers.get('access-control-allow-origin')).toBe(origin);
    }
    for (const origin of ['http://example.com', 'http://localhost.evil.com', 'null', 'http://127.0.0.1.nip.io']) {
      expect((await preflight(origin)).status).toBe(403);
      const calls = backend.calls.length;
      // A "simple" cross-origin POST (no preflight) is refused too, and never reaches the model.
      const res = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: HI }), { Origin: origin, 'Content-Type': 'text/plain' });
      expect(res.status).toBe(403);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(await res.json()).toStrictEqual({ error: { message: expect.stringContaining('--cors-origin'), type: 'invalid_request_error', param: null, code: 'origin_not_allowed' } });
      expect(backend.calls.length).toBe(calls);
    }
    // No Origin (curl, SDKs): no CORS headers, served.
    const plain = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: HI }));
    expect(plain.status).toBe(200);
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    await stillServes();
  });

  it('CORS: corsOrigins widens the allowed origins; "*" allows all', async () => {
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: MODEL });
    const some = await startServer({ engine, port: 0, corsOrigins: ['https://app.example.com'] });
    const all = await startServer({ engine, port: 0, corsOrigins: ['*'] });
    try {
      const get = (s: RunningServer, origin: string) => fetch(`${s.url}/v1/models`, { headers: { Origin: origin } });
      const ok = await get(some, 'https://app.example.com');
      expect(ok.status).toBe(200);
      expect(ok.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      expect((await get(some, 'https://other.example.com')).status).toBe(403);
      expect((await get(some, 'http://localhost:1234')).status).toBe(200);
      const any = await get(all, 'https://other.example.com');
      expect(any.status).toBe(200);
      expect(any.headers.get('access-control-allow-origin')).toBe('*');
    } finally {
      await some.close();
      await all.close();
    }
  });

  it('a client that disconnects mid-stream aborts its generation at once', async () => {
    const slow = new FakeBackend({ script: [], after: scriptOf('z')[0]!, delayMs: 10 });
    const engine = createEngine({ backend: slow, tokenizer: new FakeTokenizer(), modelName: MODEL });
    const local = await startServer({ engine, port: 0 });
    try {
      const url = new URL(`${local.url}/v1/openai/chat/completions`);
      const body = JSON.stringify({ model: MODEL, messages: HI, stream: true });
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest(
          { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'Content-Type': 'application/json' } },
          (res) => {
            let seen = '';
            res.on('data', (d: Buffer) => {
              seen += d.toString();
              if ((seen.match(/"content":"z"/g) ?? []).length >= 3) {
                req.destroy();
                resolve();
              }
            });
          },
        );
        req.on('error', () => {});
        req.end(body);
        setTimeout(() => reject(new Error('no tokens arrived')), 5000);
      });
      const call = slow.lastCall;
      const t0 = Date.now();
      while (!call.finished && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 5));
      expect(call.aborted).toBe(true);
      expect(call.finished).toBe(true);
      expect(Date.now() - t0).toBeLessThan(500);
      const count = call.produced.length;
      await new Promise((r) => setTimeout(r, 100));
      expect(call.produced.length).toBe(count); // stopped pulling tokens
      expect(count).toBeLessThan(20);

      // The server keeps serving.
      slow.setScript(scriptOf('ok'));
      const res = await fetch(url, { method: 'POST', body: JSON.stringify({ model: MODEL, messages: HI }) });
      expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe('ok');
    } finally {
      await local.close();
    }
  });
});

describe('hostile and careless clients', () => {
  it('/metrics needs the key on a keyed server, unless metricsPublic', async () => {
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: MODEL });
    const keyed = await startServer({ engine, port: 0, apiKey: KEY, metrics: () => 'llama2_x 1\n' });
    const open = await startServer({ engine, port: 0, apiKey: KEY, metrics: () => 'llama2_x 1\n', metricsPublic: true });
    try {
      const denied = await fetch(`${keyed.url}/metrics`);
      expect(denied.status).toBe(401);
      expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
      const ok = await fetch(`${keyed.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toBe('llama2_x 1\n');
      expect((await fetch(`${open.url}/metrics`)).status).toBe(200);
      expect((await fetch(`${keyed.url}/health`)).status).toBe(200); // health stays open
    } finally {
      await keyed.close();
      await open.close();
    }
  });

  it('headers over 16 KiB: 431 with an OpenAI error body; then it serves again', async () => {
    const { port } = new URL(server.url);
    const text = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), '127.0.0.1', () => {
        sock.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
      });
      let buf = '';
      sock.on('data', (d) => (buf += d.toString()));
      sock.on('end', () => resolve(buf));
      sock.on('error', reject);
    });
    expect(text).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    expect(body).toStrictEqual({
      error: { message: expect.stringContaining('headers'), type: 'invalid_request_error', param: null, code: 'request_header_fields_too_large' },
    });
    await stillServes();
  });

  it('a body sent too slowly: 408 after bodyTimeoutMs, the connection closed', async () => {
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: MODEL });
    const s = await startServer({ engine, port: 0, bodyTimeoutMs: 500 });
    try {
      const t0 = Date.now();
      const text = await new Promise<string>((resolve, reject) => {
        const sock = connect(Number(new URL(s.url).port), '127.0.0.1', () => {
          sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":');
          const drip = setInterval(() => sock.writable && sock.write(' '), 100); // keeps sending, never finishes
          sock.on('close', () => clearInterval(drip));
        });
        let buf = '';
        sock.on('data', (d) => (buf += d.toString()));
        sock.on('close', () => resolve(buf));
        sock.on('error', reject);
      });
      const dt = Date.now() - t0;
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code).toBe('request_timeout');
      expect(dt).toBeGreaterThanOrEqual(450);
      expect(dt).toBeLessThan(3000);
    } finally {
      await s.close();
    }
  });

  it('accepts the developer role as the system message', async () => {
    backend.setScript(scriptOf('ok'));
    const tok = new FakeTokenizer();
    const engine = createEngine({ backend, tokenizer: tok, modelName: MODEL });
    await engine.chat.completions.create({ model: MODEL, messages: [{ role: 'developer', content: 'Be brief.' }, ...HI] });
    expect(tok.lastMessages).toStrictEqual([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
    const two = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [{ role: 'developer', content: 'a' }, { role: 'system', content: 'b' }, ...HI] }));
    expect(two.status).toBe(400);
  });

  it('max_completion_tokens is validated even when max_tokens is given', async () => {
    const res = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: HI, max_tokens: 5, max_completion_tokens: -1 }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe('max_completion_tokens');
  });

  it('a tool schema nested thousands deep, or malformed: 400 naming it, not 500', async () => {
    // Written as text: JSON.stringify itself would overflow the stack on this.
    const deep = '{"type":"object","properties":{"a":'.repeat(20000) + '{"type":"string"}' + '}}'.repeat(20000);
    const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: MODEL });
    const big = await startServer({ engine, port: 0 }); // the default 1 MiB body limit
    const deepElsewhere = `{"type":"object","examples":${'['.repeat(20000)}${']'.repeat(20000)}}`; // not a subschema, still written into the prompt
    const malformed = [{ type: 'object', properties: [] }, { type: 'objekt' }, { type: 'object', required: [1] }, { properties: { a: 5 } }];
    for (const parameters of [deep, deepElsewhere, ...malformed.map((m) => JSON.stringify(m))]) {
      for (const tool_choice of ['auto', 'required']) {
        const body = `{"model":"${MODEL}","messages":${JSON.stringify(HI)},"tool_choice":"${tool_choice}","tools":[{"type":"function","function":{"name":"f","parameters":${parameters}}}]}`;
        const res = await fetch(`${big.url}/v1/chat/completions`, { method: 'POST', body });
        expect(res.status).toBe(400);
        const err = ((await res.json()) as { error: { param: string; code: string } }).error;
        expect(err.param).toBe('tools[0].function.parameters');
        expect(err.code).toBe('invalid_schema');
      }
    }
    // Tool call arguments nested deep in the conversation: not a 500 (here: too long for the context).
    const args = JSON.stringify('['.repeat(20000) + ']'.repeat(20000));
    const conv = `{"model":"${MODEL}","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"},` +
      `{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":${args}}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}`;
    backend.setScript(scriptOf('fine'));
    const res = await fetch(`${big.url}/v1/chat/completions`, { method: 'POST', body: conv });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
    await big.close();
    await stillServes();
  });
});

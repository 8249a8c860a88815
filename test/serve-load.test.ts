// Load test of the real server (real model on the software adapter): many concurrent streaming clients,
// some disconnecting mid-stream; every other request completes with its exact expected output, the KV
// pool returns to empty, the metrics add up, and a full queue answers 429 with Retry-After.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { testGpu } from './helpers/gpu.ts';
import { randomWeights, encodeHfModel } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { mapDir } from '../checkpoint/byte-source.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson } from '../tokenizer/llama2-vocab.ts';
import { loadLlamaEngine, type LlamaEngine } from '../serve/llama-engine.ts';
import { startServer, type RunningServer } from '../api/server.ts';
import { sseData } from '../api/sse.ts';

const cfg = TEST_CONFIGS.gqa;
const files = encodeHfModel(cfg, randomWeights(cfg, 9), {
  dtype: 'F32', tokenizerJson: JSON.stringify(buildLlama2TokenizerJson()), tokenizerConfigJson: JSON.stringify(llama2TokenizerConfigJson()),
});
let llama: LlamaEngine | null = null;
let server: RunningServer | null = null;

beforeAll(async () => {
  if (!(await testGpu())) return;
  llama = await loadLlamaEngine({ model: mapDir('load-model', files), dtype: 'f32', context: 256, maxBatch: 8, prefillChunk: 32 });
  server = await startServer({ engine: llama.engine, port: 0, metrics: llama.metrics });
});
afterAll(async () => {
  await server?.close();
  await llama?.close();
});

const question = (i: number) => `Question number ${i}: what is ${i} times ${i + 3}?`;
const body = (i: number, stream: boolean) => JSON.stringify({
  model: 'load-model', stream, temperature: 0, max_tokens: 10, messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: question(i) }],
});

/** Streams one request over raw HTTP; returns the concatenated content and the finish reason. */
async function streamChat(i: number, disconnectAfterChunks = Infinity): Promise<{ text: string; finish: string | null; disconnected: boolean }> {
  const ctrl = new AbortController();
  const res = await fetch(`${server!.url}/v1/openai/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: body(i, true), signal: ctrl.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  let text = '', finish: string | null = null, chunks = 0;
  for await (const data of sseData(res.body!)) {
    if (data === '[DONE]') break;
    const c = JSON.parse(data);
    text += c.choices[0]?.delta?.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    if (++chunks >= disconnectAfterChunks) {
      ctrl.abort();
      return { text, finish, disconnected: true };
    }
  }
  return { text, finish, disconnected: false };
}

describe('server under load', () => {
  it('16 concurrent streaming clients (4 disconnect mid-stream) all get their exact answers; the KV pool empties', async (t) => {
    if (!server || !llama) return t.skip();
    // Expected answers: each request alone, non-streaming.
    const expected: string[] = [];
    for (let i = 0; i < 16; i++) {
      const r = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: body(i, false) });
      const j = await r.json();
      expect(j.object).toBe('chat.completion');
      expected.push(j.choices[0].message.content);
    }
    const before = llama.scheduler.metrics().requestsFinished;
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => streamChat(i, i % 4 === 3 ? 3 : Infinity)));
    results.forEach((r, i) => {
      if (i % 4 === 3) expect(r.disconnected).toBe(true);
      else {
        expect(r.text).toBe(expected[i]);
        expect(r.finish).toBe('length');
      }
    });
    // Every sequence, finished or cancelled, leaves; the pool returns to empty.
    for (let k = 0; k < 200 && !llama.scheduler.idle; k++) await new Promise((r) => setTimeout(r, 25));
    expect(llama.scheduler.idle).toBe(true);
    expect(llama.model.pool.usedBlocks).toBe(0);
    expect(llama.scheduler.metrics().requestsFinished - before).toBe(16);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/^llama2_kv_blocks_used 0$/m);
    expect(metrics).toMatch(/^llama2_requests_running 0$/m);
    expect(Number(/^llama2_decode_tokens_total (\d+)$/m.exec(metrics)![1])).toBeGreaterThan(100);
    // And the server still answers.
    const again = await streamChat(5);
    expect(again.text).toBe(expected[5]);
  });

  it('a full queue answers 429 with Retry-After, and the server keeps serving', async (t) => {
    if (!(await testGpu())) return t.skip();
    const small = await loadLlamaEngine({ model: mapDir('q-model', files), dtype: 'f32', context: 256, maxBatch: 1, maxQueue: 1, prefillChunk: 32 });
    const s = await startServer({ engine: small.engine, port: 0 });
    try {
      const long = JSON.stringify({ model: 'q-model', max_tokens: 30, temperature: 0, messages: [{ role: 'user', content: 'long one' }] });
      const post = (b: string) => fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: b });
      const first = post(long);
      while (small.scheduler.metrics().running < 1) await new Promise((r) => setTimeout(r, 5));
      const second = post(long);
      while (small.scheduler.metrics().waiting < 1) await new Promise((r) => setTimeout(r, 5));
      const third = await post(long);
      expect(third.status).toBe(429);
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const err = await third.json();
      expect(err).toEqual({ error: { message: expect.stringMatching(/queue is full/), type: 'rate_limit_exceeded', param: null, code: 'queue_full' } });
      expect((await first).status).toBe(200);
      expect((await second).status).toBe(200);
      expect((await post(long)).status).toBe(200);
    } finally {
      await s.close();
      await small.close();
    }
  });
});

// `llama2-webgpu bench serve`: what continuous batching and prefix caching buy, measured on a real server.
//  1. N concurrent streaming clients against the same N requests served one at a time: aggregate decode tok/s.
//  2. A multi-turn conversation: time to first token of the last turn with prefix caching and without.

import { loadLlamaEngine } from '../serve/llama-engine.ts';
import { startServer } from '../api/server.ts';
import { sseData } from '../api/sse.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';

interface StreamResult { tokens: number; ttftMs: number; ms: number }

async function streamOnce(url: string, body: object): Promise<StreamResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = 0, tokens = 0;
  for await (const ev of sseData(res.body!)) {
    if (ev === '[DONE]') continue;
    const c = JSON.parse(ev);
    if (!ttft && c.choices?.[0]?.delta?.content !== undefined && c.choices[0].delta.role === undefined) ttft = performance.now() - t0;
    if (c.usage) tokens = c.usage.completion_tokens;
  }
  return { tokens, ttftMs: ttft, ms: performance.now() - t0 };
}

/** What `bench serve` runs (cli/bench.ts parses the flags into this). */
export interface BenchServeOptions {
  model: string; // what loadLlamaEngine opens
  dtype?: WeightFormat;
  concurrency: number; // streaming clients at once (and the batch size)
  maxTokens: number; // tokens per request
  turns: number; // turns of the conversation
  turnTokens: number; // about this many words of user text per turn
  json: boolean; // the result as one JSON line on stdout
}

export async function benchServe(o: BenchServeOptions): Promise<void> {
  const { concurrency: N, maxTokens, turns, turnTokens: turnWords } = o;
  const out = (line: string) => process.stderr.write(line + '\n');
  const llama = await loadLlamaEngine({ model: o.model, dtype: o.dtype, maxBatch: N, context: 2048, maxQueue: 4 * N });
  const server = await startServer({ engine: llama.engine, port: 0 });
  const model = llama.engine.modelName;
  const req = (i: number) => ({ model, temperature: 0, max_tokens: maxTokens, messages: [{ role: 'user', content: `Client ${i}: tell me something about the number ${i}.` }] });
  try {
    await streamOnce(server.url, req(999)); // warm-up (pipelines, caches)
    let t0 = performance.now();
    let seqTokens = 0;
    for (let i = 0; i < N; i++) seqTokens += (await streamOnce(server.url, req(i))).tokens;
    const seqS = (performance.now() - t0) / 1000;
    llama.model.pool.clearCache();
    t0 = performance.now();
    const conc = await Promise.all(Array.from({ length: N }, (_, i) => streamOnce(server.url, req(i))));
    const concS = (performance.now() - t0) / 1000;
    const concTokens = conc.reduce((a, r) => a + r.tokens, 0);
    const lost = conc.filter((r) => r.tokens !== maxTokens).length;
    // Multi-turn: each turn adds ~turnWords words of user text plus the answer; time the last turn's first token.
    const filler = (t: number) => Array.from({ length: Math.ceil(turnWords / 4) }, (_, i) => `fact ${t}.${i} is noted`).join(', ');
    const lastTurnTtft = async (caching: boolean): Promise<{ ttftMs: number; promptTokens: number }> => {
      const messages: { role: string; content: string }[] = [];
      let ttft = 0;
      let promptTokens = 0;
      for (let t = 0; t < turns; t++) {
        if (!caching) llama.model.pool.clearCache();
        messages.push({ role: 'user', content: filler(t) });
        const body = { model, temperature: 0, max_tokens: 8, messages };
        const r = await streamOnce(server.url, body);
        ttft = r.ttftMs;
        const full = await (await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })).json();
        promptTokens = full.usage.prompt_tokens;
        messages.push({ role: 'assistant', content: full.choices[0].message.content });
      }
      return { ttftMs: ttft, promptTokens };
    };
    llama.model.pool.clearCache();
    const cold = await lastTurnTtft(false);
    llama.model.pool.clearCache();
    const warm = await lastTurnTtft(true);
    const result = {
      model, adapter: llama.model.adapterName, concurrency: N, max_tokens: maxTokens,
      sequential_decode_tps: seqTokens / seqS, concurrent_decode_tps: concTokens / concS, batching_speedup: (concTokens / concS) / (seqTokens / seqS), lost_requests: lost,
      turns, last_turn_prompt_tokens: warm.promptTokens, ttft_ms_without_prefix_cache: cold.ttftMs, ttft_ms_with_prefix_cache: warm.ttftMs,
      prefix_cache_speedup: cold.ttftMs / warm.ttftMs, date: new Date().toISOString().slice(0, 10),
    };
    if (o.json) process.stdout.write(JSON.stringify(result) + '\n');
    else {
      out(`${N} requests of ${maxTokens} tokens: one at a time ${result.sequential_decode_tps.toFixed(2)} tok/s, ${N} concurrent ${result.concurrent_decode_tps.toFixed(2)} tok/s (${result.batching_speedup.toFixed(2)}x), ${lost} lost`);
      out(`turn ${turns} (${warm.promptTokens} prompt tokens): TTFT ${cold.ttftMs.toFixed(0)} ms without prefix caching, ${warm.ttftMs.toFixed(0)} ms with (${result.prefix_cache_speedup.toFixed(2)}x)`);
    }
  } finally {
    await server.close();
    await llama.close();
  }
}

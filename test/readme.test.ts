// The README's curl calls (the hosted endpoint's documented calls with only the URL swapped) run
// unchanged against a local server.
import { it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { testGpu } from './helpers/gpu.ts';
import { loadLlamaEngine, type LlamaEngine } from '../api/llama-engine.ts';
import { startServer, type RunningServer } from '../api/server.ts';

let llama: LlamaEngine | null = null;
let server: RunningServer | null = null;
beforeAll(async () => {
  if (!(await testGpu())) return;
  llama = await loadLlamaEngine({ model: 'default', maxBatch: 2 });
  server = await startServer({ engine: llama.engine, port: 0 });
});
afterAll(async () => {
  await server?.close();
  await llama?.close();
});

function curlBlocks(): string[] {
  const readme = readFileSync('README.md', 'utf8');
  const sh = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const calls: string[] = [];
  for (const block of sh) {
    for (const m of block.matchAll(/curl "http:\/\/127\.0\.0\.1:8080[\s\S]*?'\n/g)) calls.push(m[0]);
  }
  return calls;
}

it('every curl call in the README works against the server', async (t) => {
  if (!server) return t.skip();
  const calls = curlBlocks();
  expect(calls.length).toBeGreaterThanOrEqual(2);
  for (const call of calls) {
    // Only the port differs (the test server listens on a free one); max_tokens keeps it short on the CPU adapter.
    const cmd = call.replace('http://127.0.0.1:8080', server.url).replace('"model": "meta-llama/Llama-2-70b-chat-hf",', '"model": "meta-llama/Llama-2-70b-chat-hf", "max_tokens": 6,');
    const out = await new Promise<string>((resolve, reject) =>
      execFile('bash', ['-c', cmd], { env: { ...process.env, DEEPINFRA_TOKEN: 'not-needed' } }, (e, stdout) => (e ? reject(e) : resolve(stdout))));
    if (call.includes('"stream": true')) {
      const events = out.trim().split('\n\n');
      expect(events.at(-1)).toBe('data: [DONE]');
      const first = JSON.parse(events[0]!.slice(6));
      expect(first.object).toBe('chat.completion.chunk');
      expect(first.choices[0].delta.role).toBe('assistant');
      const last = JSON.parse(events.at(-2)!.slice(6));
      expect(last.choices[0].finish_reason).toBe('length');
      expect(last.usage).toMatchObject({ completion_tokens: 6, estimated_cost: expect.any(Number) }); // as DeepInfra's streams
    } else {
      const j = JSON.parse(out);
      expect(j.object).toBe('chat.completion');
      expect(j.model).toBe('meta-llama/Llama-2-70b-chat-hf'); // the id the call sent
      expect(j.choices[0].message.role).toBe('assistant');
      expect(j.usage.completion_tokens).toBe(6);
      expect(j.usage.prompt_tokens).toBe(j.usage.total_tokens - 6);
    }
  }
});

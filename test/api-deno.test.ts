import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import OpenAI from 'openai';
import { afterAll, expect, it } from 'vitest';

// The HTTP server under Deno (node:http in Deno's Node compatibility), driven from Node.
let child: ChildProcess | undefined;

afterAll(() => {
  if (child && child.exitCode === null) child.kill();
});

it('serves a streaming chat completion under Deno', async () => {
  child = spawn('node_modules/.bin/deno', ['run', '-A', 'test/helpers/deno-server.ts'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child!.once('exit', (code) => reject(new Error(`deno exited with ${code}`)));
  });
  const { url, runtime } = JSON.parse(first) as { url: string; runtime: string };
  expect(runtime).toMatch(/^deno \d+\.\d+\.\d+$/);
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

  const client = new OpenAI({ baseURL: `${url}/v1/openai`, apiKey: 'sk-deno', maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: 'llama-2-7b-chat',
    messages: [{ role: 'user', content: 'Hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const deltas: string[] = [];
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice?.delta.content) deltas.push(choice.delta.content);
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  expect(deltas.join('')).toBe('Deno says héllo 🦙');
  expect(deltas).toContain('é');
  expect(deltas).toContain('🦙');
  expect(finish).toBe('stop');
  expect(usage?.completion_tokens).toBe(new TextEncoder().encode('Deno says héllo 🦙').length + 1);

  const wrong = await new OpenAI({ baseURL: `${url}/v1/openai`, apiKey: 'nope', maxRetries: 0 }).models.list().catch((e) => e);
  expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError);

  child.stdin!.end(); // the script closes the server and exits
  const code = await new Promise<number | null>((resolve) => child!.once('exit', resolve));
  expect(code).toBe(0);
}, 60_000);

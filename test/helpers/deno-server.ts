// Run under Deno by test/api-deno.test.ts: `deno run -A test/helpers/deno-server.ts`.
// Starts the HTTP server over the fake backend, prints {"url", "runtime"} as one JSON line, then
// serves until stdin closes (the test ends it by closing stdin or killing this process).

import { createEngine } from '../../api/engine.ts';
import { startServer } from '../../api/server.ts';
import { FakeBackend, FakeTokenizer, scriptOf } from './fake-backend.ts';

const backend = new FakeBackend({ script: scriptOf('Deno says héllo 🦙') });
const engine = createEngine({ backend, tokenizer: new FakeTokenizer(), modelName: 'llama-2-7b-chat' });
const server = await startServer({ engine, port: 0, apiKey: 'sk-deno' });
const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
console.log(JSON.stringify({ url: server.url, runtime: deno ? `deno ${deno.version.deno}` : 'not deno' }));

// Serve until stdin reaches its end.
process.stdin.resume();
process.stdin.on('end', async () => {
  await server.close();
  process.exit(0);
});

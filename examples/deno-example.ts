// The engine as an ES module under Deno, whose WebGPU is built in:
//   npx deno run --allow-read examples/deno-example.ts
// (Deno 2.9 has WebGPU without --unstable-webgpu, and the embedded model needs no permission.)
// Loads the embedded default model (no download) and prints one chat completion as JSON.
import { loadLlamaEngine } from '../index.ts'; // outside this repository: from 'npm:llama2-webgpu'

const { engine, model, close } = await loadLlamaEngine({ model: 'default', maxBatch: 1 });
console.error(`${engine.modelName} on ${model.adapterName}`);

const completion = await engine.chat.completions.create({
  model: engine.modelName,
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Hello from Deno!' },
  ],
  max_tokens: 8,
  seed: 1,
});
console.error(completion.choices[0]!.message.content);
console.log(JSON.stringify(completion));
await close();

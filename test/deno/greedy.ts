// Run by test/deno.test.ts under Deno (`deno run`, no flags: Deno 2.9 has WebGPU built in): the WebGPU forward pass through
// Deno's own WebGPU (wgpu), printing the greedy tokens of a random-weights model as JSON.
import { randomWeights } from '../../checkpoint/random-model.ts';
import { TEST_CONFIGS } from '../helpers/configs.ts';
import { memoryProvider } from '../../checkpoint/tensor-provider.ts';
import { LlamaModel } from '../../runtime/model.ts';

const cfg = TEST_CONFIGS.gqa;
const model = await LlamaModel.fromProvider(memoryProvider(cfg, randomWeights(cfg, 4242)), { dtype: 'f32', context: 64 });
const prompt = [1, 15043, 3186, 29892, 590, 11203];
const out: number[] = [];
for await (const t of model.generateGreedy(prompt, 16)) out.push(t);
console.log(JSON.stringify({ adapter: model.adapterName, tokens: out }));
model.destroy();

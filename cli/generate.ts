// `llama2-webgpu generate`: raw completion of BOS + the prompt (no chat template).

import { parseArgs } from 'node:util';
import { openModelSource } from '../runtime/load.ts';
import { LlamaModel } from '../runtime/model.ts';
import { createSampler, MAX_SEED } from '../runtime/sampler.ts';
import { LlamaTokenizer } from '../tokenizer/tokenizer.ts';
import { StreamDecoder } from '../tokenizer/stream-decoder.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import { UsageError, intArg, numArg, choiceArg, progressPrinter } from './common.ts';

export const GENERATE_HELP = `llama2-webgpu generate [options]
  Raw completion of BOS + the prompt (no chat template), through WebGPU.
  --model DIR|default   HF model directory (config.json, *.safetensors, tokenizer.json); default: the embedded model
  --prompt TEXT         the prompt (required)
  --max-tokens N        tokens to generate at most (default 64)
  --temperature T       0 = greedy (default 0)
  --top-p P, --top-k K, --seed S   sampling (with temperature > 0)
  --dtype q4|q8|f16|f32 weight format on the GPU (default: as stored for a GGUF or a converted model, else f16)
  --context N           context length to allocate (default: the model's, at most 4096)
  --json                print {"prompt_tokens":[...],"completion_tokens":[...],"text":"..."} as the last line`;

export const DTYPES = ['q4', 'q8', 'f16', 'f32'] as const satisfies readonly WeightFormat[];

export async function runGenerate(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', default: 'default' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      dtype: { type: 'string' },
      context: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.prompt === undefined) throw new UsageError('--prompt is required');
  const maxTokens = intArg('max-tokens', values['max-tokens'], 64, 0, 1_000_000);
  const temperature = numArg('temperature', values.temperature, 0, 0, 2);
  const topP = numArg('top-p', values['top-p'], 1, Number.MIN_VALUE, 1);
  const topK = intArg('top-k', values['top-k'], 0, 0, 999);
  let seed: bigint | undefined;
  if (values.seed !== undefined) {
    if (!/^\d+$/.test(values.seed) || BigInt(values.seed) > MAX_SEED) throw new UsageError(`--seed must be an integer in [0, 2^63-1], got "${values.seed}"`);
    seed = BigInt(values.seed);
  }
  const dtype = choiceArg('dtype', values.dtype, DTYPES);
  const context = values.context === undefined ? undefined : intArg('context', values.context, 0, 1, 1 << 20);

  const t0 = performance.now();
  const src = await openModelSource(values.model!);
  if (!src.tokenizerJson) throw new Error(`${values.model}: no tokenizer.json in the model directory`);
  const tok = LlamaTokenizer.fromJson(src.tokenizerJson, src.tokenizerConfigJson ?? undefined);
  const model = await LlamaModel.fromProvider(src.provider, { dtype, context, onProgress: progressPrinter(`loading ${src.name}`) });
  await src.close();
  process.stderr.write(`loaded ${src.name} (${model.format}, ${(model.weightBytes / 2 ** 20).toFixed(1)} MiB of weights) on ${model.gpu.adapterName} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  const prompt = tok.encode(values.prompt, { addBos: true });
  const sampler = createSampler({ temperature, topP, topK, minP: 0, presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1, seed }, prompt);
  const decoder = new StreamDecoder(tok, { continuation: true });
  const completion: number[] = [];
  let text = '';
  const tStart = performance.now();
  let tFirst = 0;
  try {
    for await (const t of model.generate({ promptTokens: prompt, maxTokens, sampler })) {
      if (completion.length === 0) tFirst = performance.now();
      completion.push(t);
      const piece = decoder.push(t);
      text += piece;
      if (!values.json && piece) process.stdout.write(piece);
    }
  } finally {
    model.destroy();
  }
  const tail = decoder.flush();
  text += tail;
  const tEnd = performance.now();
  if (values.json) {
    process.stdout.write(JSON.stringify({ prompt_tokens: prompt, completion_tokens: completion, text }) + '\n');
  } else {
    process.stdout.write(tail + '\n');
  }
  const decodeN = Math.max(completion.length - 1, 0);
  const decodeS = (tEnd - tFirst) / 1000;
  process.stderr.write(
    `${prompt.length} prompt tokens in ${((tFirst - tStart) / 1000).toFixed(2)} s (${(prompt.length / Math.max((tFirst - tStart) / 1000, 1e-9)).toFixed(1)} tok/s); ` +
      `${completion.length} generated, ${decodeN > 0 ? (decodeN / decodeS).toFixed(1) : '-'} tok/s decode\n`,
  );
}

// `llama2-webgpu generate`: raw completion of BOS + the prompt (no chat template).

import { openModelSource } from '../checkpoint/load.ts';
import { createSampler, MAX_SEED } from '../runtime/sampler.ts';
import { LlamaTokenizer } from '../tokenizer/tokenizer.ts';
import { StreamDecoder } from '../tokenizer/stream-decoder.ts';
import type { WeightFormat } from '../kernels/weight-formats.ts';
import { loadOnDevices } from '../serve/devices.ts';
import { UsageError, intArg, numArg, choiceArg, progressPrinter, parseCommandArgs, sizeArg } from './common.ts';
import { RUNTIME_DEFAULTS } from '../runtime/defaults.ts';

export const GENERATE_HELP = `llama2-webgpu generate [options]
  Raw completion of BOS + the prompt (no chat template), through WebGPU.
  --model DIR|FILE|default  what to load (default: the embedded model, no download):
                        an HF model directory (config.json, *.safetensors, tokenizer.json),
                        a llama.cpp .gguf file (F32, F16, BF16, Q4_0..Q8_0, Q2_K..Q6_K; tokenizer from its metadata),
                        or a directory written by \`llama2-webgpu convert\` (loads without quantizing)
  --prompt TEXT         the prompt (required)
  --max-tokens N        tokens to generate at most (default 64)
  --temperature T       0 = greedy (default: the model's generation_config.json value, else 0)
  --top-p P, --top-k K, --repetition-penalty R   sampling (default: the model's generation_config.json
                        values, else 1, 0 (off), 1)
  --seed S              seed of the sampler (default: random)
  --dtype q4|q8|f16|f32 weight format on the GPU (default: as stored for a GGUF or a converted model, else f16)
  --context N           context length to allocate (default: the model's, at most ${RUNTIME_DEFAULTS.maxContext})
  --kv-dtype f16|f32    KV cache elements (default f16 where the adapter has shader-f16, else f32)
  --devices N           shard the layers over N WebGPU devices (default 1)
  --device-memory SIZE  memory of each device, e.g. 24GiB: a model that does not fit is refused before loading
  --json                print {"prompt_tokens":[...],"completion_tokens":[...],"text":"..."} as the last line
  Text goes to stdout, progress and timings to stderr. Exit status: 0, 1 on errors, 2 on usage errors.`;

export const DTYPES = ['q4', 'q8', 'f16', 'f32'] as const satisfies readonly WeightFormat[];

export async function runGenerate(argv: string[]): Promise<void> {
  const { values } = parseCommandArgs(argv, {
    model: { type: 'string', default: 'default' },
    prompt: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-p': { type: 'string' },
    'top-k': { type: 'string' },
    'repetition-penalty': { type: 'string' },
    seed: { type: 'string' },
    dtype: { type: 'string' },
    context: { type: 'string' },
    'kv-dtype': { type: 'string' },
    devices: { type: 'string' },
    'device-memory': { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  if (values.prompt === undefined) throw new UsageError('--prompt is required');
  const maxTokens = intArg('max-tokens', values['max-tokens'], 64, 0, 1_000_000);
  // NaN: not given, take the model's default (below).
  const temperature = numArg('temperature', values.temperature, NaN, 0, 2);
  const topP = numArg('top-p', values['top-p'], NaN, 0, 1, true);
  const topK = intArg('top-k', values['top-k'], NaN, 0, 999);
  const repetitionPenalty = numArg('repetition-penalty', values['repetition-penalty'], NaN, 0.01, 5);
  let seed: bigint | undefined;
  if (values.seed !== undefined) {
    if (!/^\d+$/.test(values.seed) || BigInt(values.seed) > MAX_SEED) throw new UsageError(`--seed must be an integer in [0, 2^63-1], got "${values.seed}"`);
    seed = BigInt(values.seed);
  }
  const dtype = choiceArg('dtype', values.dtype, DTYPES);
  const kvDtype = choiceArg('kv-dtype', values['kv-dtype'], ['f16', 'f32'] as const);
  const context = values.context === undefined ? undefined : intArg('context', values.context, 0, 1, 1 << 20);
  const devices = intArg('devices', values.devices, 1, 1, 64);
  const deviceMemory = sizeArg('device-memory', values['device-memory']);

  const t0 = performance.now();
  const src = await openModelSource(values.model!);
  if (!src.tokenizerJson) throw new Error(`${values.model}: no tokenizer.json in the model directory`);
  if (context !== undefined && context > src.config.maxSeqLen) {
    await src.close();
    throw new UsageError(`--context ${context} is more than ${src.name}'s max_position_embeddings (${src.config.maxSeqLen})`);
  }
  if (devices > src.config.nLayers) {
    await src.close();
    throw new UsageError(`--devices ${devices} is more than ${src.name}'s ${src.config.nLayers} layers (at most one device per layer)`);
  }
  const tok = LlamaTokenizer.fromJson(src.tokenizerJson, src.tokenizerConfigJson ?? undefined);
  for (const line of src.notes) process.stderr.write(`${line}\n`);
  const d = src.sampling.defaults;
  const sampling = {
    temperature: Number.isNaN(temperature) ? (d.temperature ?? 0) : temperature,
    topP: Number.isNaN(topP) ? (d.topP ?? 1) : topP,
    topK: Number.isNaN(topK) ? (d.topK ?? 0) : topK,
    repetitionPenalty: Number.isNaN(repetitionPenalty) ? (d.repetitionPenalty ?? 1) : repetitionPenalty,
  };
  let loaded;
  try {
    loaded = await loadOnDevices(src.provider, {
      dtype,
      context,
      kvDtype,
      devices,
      deviceMemoryBytes: deviceMemory,
      onProgress: progressPrinter(`loading ${src.name}`),
    });
  } finally {
    await src.close();
  }
  const { model, gpus } = loaded;
  process.stderr.write(`loaded ${src.name} (${model.format}, ${(model.weightBytes / 2 ** 20).toFixed(1)} MiB of weights) on ${devices > 1 ? `${devices} devices (${model.adapterName})` : model.adapterName} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  const prompt = tok.encode(values.prompt, { addBos: true });
  const sampler = createSampler({ ...sampling, minP: 0, presencePenalty: 0, frequencyPenalty: 0, seed }, prompt);
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
    for (const g of gpus) g.destroy();
  }
  const tail = decoder.flush();
  text += tail;
  const tEnd = performance.now();
  if (values.json) {
    process.stdout.write(JSON.stringify({ prompt_tokens: prompt, completion_tokens: completion, text }) + '\n');
  } else if (text !== '' && !text.endsWith('\n')) {
    process.stdout.write(tail + '\n'); // the shell prompt starts on its own line
  } else {
    process.stdout.write(tail);
  }
  if (completion.length === 0) {
    // Nothing was generated (--max-tokens 0, or an end of sequence at once): no first-token time to report.
    process.stderr.write(`${prompt.length} prompt tokens; 0 generated (${((tEnd - tStart) / 1000).toFixed(2)} s)\n`);
    return;
  }
  const decodeN = completion.length - 1;
  const decodeS = (tEnd - tFirst) / 1000;
  process.stderr.write(
    `${prompt.length} prompt tokens in ${((tFirst - tStart) / 1000).toFixed(2)} s (${(prompt.length / Math.max((tFirst - tStart) / 1000, 1e-9)).toFixed(1)} tok/s); ` +
      `${completion.length} generated, ${decodeN > 0 ? (decodeN / decodeS).toFixed(1) : '-'} tok/s decode\n`,
  );
}

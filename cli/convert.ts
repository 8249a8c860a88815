// `llama2-webgpu convert`: writes a model directory with the weights already packed for the GPU.

import { openModelSource } from '../runtime/load.ts';
import { writeConverted } from '../runtime/converted.ts';
import { FORMATS, type WeightFormat } from '../kernels/weight-formats.ts';
import { UsageError, parseCommandArgs, choiceArg } from './common.ts';

export const CONVERT_HELP = `llama2-webgpu convert --model DIR|FILE --dtype q4|q8|f16|f32 --out DIR
  Writes DIR with the weights packed in the GPU format (safetensors + metadata naming the format), so
  loading it does not quantize again. --model takes an HF directory or a .gguf file.`;

export async function runConvert(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, { model: { type: 'string' }, dtype: { type: 'string' }, out: { type: 'string' } });
  if (!values.model) throw new UsageError('--model is required');
  if (!values.out) throw new UsageError('--out is required');
  const dtype = choiceArg('dtype', values.dtype, Object.keys(FORMATS) as WeightFormat[], 'q4')!;
  const src = await openModelSource(values.model);
  const t0 = performance.now();
  try {
    const extra: Record<string, string> = {};
    if (src.tokenizerJson) extra['tokenizer.json'] = src.tokenizerJson;
    if (src.tokenizerConfigJson) extra['tokenizer_config.json'] = src.tokenizerConfigJson;
    if (src.generationConfig) extra['generation_config.json'] = JSON.stringify(src.generationConfig, null, 2);
    await writeConverted(values.out, src.provider, dtype, extra, (name, done, total) => {
      process.stderr.write(`converting: ${done}/${total} tensors (${Math.floor((100 * done) / total)}%) ${name}\n`);
    });
  } finally {
    await src.close();
  }
  process.stderr.write(`wrote ${values.out} (${dtype}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return 0;
}

// `llama2-webgpu convert`: writes a model directory with the weights already packed for the GPU.

import { openModelSource } from '../checkpoint/load.ts';
import { writeConverted } from '../checkpoint/converted.ts';
import { FORMATS, type Dtype } from '../kernels/weight-formats.ts';
import { UsageError, parseCommandArgs, choiceArg } from './common.ts';

export const CONVERT_HELP = `llama2-webgpu convert --model DIR|FILE [--dtype native|q4|q8|f16|f32] --out DIR
  Writes DIR with the weights packed in the GPU format (safetensors + metadata naming the format), so
  loading it does not quantize again. --model takes an HF directory or a .gguf file. --dtype defaults to
  native for a GGUF (every tensor kept in its own type: Q4_K, Q6_K, ...) and to q4 otherwise.`;

export async function runConvert(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, { model: { type: 'string' }, dtype: { type: 'string' }, out: { type: 'string' } });
  if (!values.model) throw new UsageError('--model is required');
  if (!values.out) throw new UsageError('--out is required');
  const src = await openModelSource(values.model);
  const native = src.provider.storedFormat === 'native';
  const choices = [...(native ? ['native'] : []), ...Object.keys(FORMATS)] as Dtype[];
  let dtype: Dtype;
  try {
    dtype = choiceArg('dtype', values.dtype, choices, native ? 'native' : 'q4')!;
  } catch (e) {
    await src.close();
    throw e;
  }
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

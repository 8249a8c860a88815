// Opening a model from what a user names: "default" (the embedded model), an HF model directory, or a
// ModelDir (browser folder pick, URL). Everything is validated before anything is allocated on the GPU.

import { nodeDir, fileSource, type ByteSource, type ModelDir } from './byte-source.ts';
import { nodeFs } from './node-fs.ts';
import { openGgufModel } from './gguf-provider.ts';
import type { LlamaConfig } from './config.ts';
import { openHfModel, validateHfModel } from './hf-model.ts';
import { hfProvider } from './hf-provider.ts';
import { isConverted, convertedProvider } from './converted.ts';
import type { TensorProvider } from './tensor-provider.ts';
import { DEFAULT_MODEL_NAME, defaultModelDir } from './default-model.ts';
import { TINY_RANDOM_MODEL_NAME, tinyRandomModelDir } from './tiny-random-model.ts';
import { describeSamplingDefaults, samplingDefaultsFromGenerationConfig, samplingDefaultsFromGguf, type ModelSamplingDefaults } from './generation-defaults.ts';

export interface ModelSource {
  name: string; // what the API reports as the model id
  config: LlamaConfig;
  provider: TensorProvider;
  tokenizerJson: string | null;
  tokenizerConfigJson: string | null;
  generationConfig: Record<string, unknown> | null;
  /** The model's sampling defaults (generation_config.json, or GGUF general.sampling.*). */
  sampling: ModelSamplingDefaults;
  /** Lines for the load log: where the tokenizer and the sampling defaults came from, warnings. */
  notes: string[];
  close(): Promise<void>;
}

function loadNotes(notes: string[], sampling: ModelSamplingDefaults): string[] {
  const line = describeSamplingDefaults(sampling);
  return [...notes, ...(line ? [line] : []), ...sampling.warnings];
}

/** A GGUF file (llama.cpp's format): weights, config and tokenizer from its metadata. */
export async function openGgufSource(src: ByteSource, name = src.name): Promise<ModelSource> {
  const g = await openGgufModel(src);
  const sampling = samplingDefaultsFromGguf(g.metadata, src.name);
  return {
    name: name.replace(/\.gguf$/i, '').split('/').pop() || name,
    config: g.config,
    provider: g.provider,
    tokenizerJson: g.tokenizerJson,
    tokenizerConfigJson: g.tokenizerConfigJson,
    generationConfig: null,
    sampling,
    notes: loadNotes([], sampling),
    close: () => g.close(),
  };
}

/**
 * Opens "default", an HF model directory, a converted directory (see convert.ts) or a .gguf file
 * (strings are paths, read with node:fs), or a ModelDir / GGUF ByteSource given directly (browser).
 */
export async function openModelSource(spec: string | ModelDir | ByteSource): Promise<ModelSource> {
  let dir: ModelDir;
  if (typeof spec === 'string') {
    if (spec === 'default' || spec === DEFAULT_MODEL_NAME) dir = defaultModelDir();
    else if (spec === TINY_RANDOM_MODEL_NAME) dir = tinyRandomModelDir();
    else {
      const fs = await nodeFs();
      const st = await fs.stat(spec).catch(() => null);
      if (!st) throw new Error(`model not found: ${spec} (give an HF model directory, a .gguf file, or "default" for the embedded model, "tiny-random-llama-2" for the random-weights test model)`);
      if (!st.isDirectory()) {
        if (!/\.gguf$/i.test(spec)) throw new Error(`${spec} is a file but not a .gguf; expected a model directory (config.json + *.safetensors) or a GGUF file`);
        const src = await fileSource(spec);
        try {
          return await openGgufSource(src);
        } catch (e) {
          await src.close?.();
          throw e;
        }
      }
      dir = nodeDir(spec);
    }
  } else if ('read' in spec) {
    return openGgufSource(spec);
  } else dir = spec;
  const hf = await openHfModel(dir);
  let provider: TensorProvider;
  try {
    if (isConverted(hf)) provider = convertedProvider(hf);
    else {
      validateHfModel(hf);
      provider = hfProvider(hf);
    }
  } catch (e) {
    await hf.close();
    throw e;
  }
  const base = dir.name.replace(/\/+$/, '').split('/').pop() || dir.name;
  const sampling = samplingDefaultsFromGenerationConfig(hf.generationConfig, `${dir.name}/generation_config.json`);
  if (sampling.source !== null) sampling.source = 'generation_config.json';
  return {
    name: base,
    config: hf.config,
    provider,
    tokenizerJson: hf.tokenizerJson,
    tokenizerConfigJson: hf.tokenizerConfigJson,
    generationConfig: hf.generationConfig,
    sampling,
    notes: loadNotes(hf.notes, sampling),
    close: () => hf.close(),
  };
}

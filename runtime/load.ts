// Opening a model from what a user names: "default" (the embedded model), an HF model directory, or a
// ModelDir (browser folder pick, URL). Everything is validated before anything is allocated on the GPU.

import { nodeDir, type ModelDir } from './byte-source.ts';
import type { LlamaConfig } from './config.ts';
import { openHfModel, validateHfModel } from './hf-model.ts';
import { hfProvider } from './hf-provider.ts';
import type { TensorProvider } from './weights.ts';
import { DEFAULT_MODEL_NAME, defaultModelDir } from './default-model.ts';

export interface ModelSource {
  name: string; // what the API reports as the model id
  config: LlamaConfig;
  provider: TensorProvider;
  tokenizerJson: string | null;
  tokenizerConfigJson: string | null;
  generationConfig: Record<string, unknown> | null;
  close(): Promise<void>;
}

export async function openModelSource(spec: string | ModelDir): Promise<ModelSource> {
  let dir: ModelDir;
  if (typeof spec === 'string') {
    if (spec === 'default' || spec === DEFAULT_MODEL_NAME) dir = defaultModelDir();
    else {
      const fs = await import('node:fs/promises');
      const st = await fs.stat(spec).catch(() => null);
      if (!st) throw new Error(`model not found: ${spec} (give an HF model directory, or "default" for the embedded model)`);
      if (!st.isDirectory()) throw new Error(`${spec} is a file; expected a model directory with config.json and *.safetensors`);
      dir = nodeDir(spec);
    }
  } else dir = spec;
  const hf = await openHfModel(dir);
  try {
    validateHfModel(hf);
  } catch (e) {
    await hf.close();
    throw e;
  }
  const base = dir.name.replace(/\/+$/, '').split('/').pop() || dir.name;
  return {
    name: base,
    config: hf.config,
    provider: hfProvider(hf),
    tokenizerJson: hf.tokenizerJson,
    tokenizerConfigJson: hf.tokenizerConfigJson,
    generationConfig: hf.generationConfig,
    close: () => hf.close(),
  };
}

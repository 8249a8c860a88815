// The default model (`--model default`): tiny-llama-2-kjv, a small Llama-2-architecture network trained on the
// King James Bible by scripts/train/ (model card in the README). Its weights ship with the package in
// assets/tiny-llama-2-kjv/ (HF layout: config.json, F16 model.safetensors, generation_config.json); the
// tokenizer is Llama-2's own, built in (tokenizer/llama2-vocab.ts), so the folder carries no tokenizer.json.
//
// Where the files are read from follows where this module runs: from disk through node:fs in Node and Deno
// (a file: URL), over HTTP in a browser (the page's bundler serves assets/ next to the code).

import { bytesSource, nodeDir, urlDir, type ModelDir } from './byte-source.ts';
import { llama2TokenizerConfigJson, llama2TokenizerJsonText } from '../tokenizer/llama2-vocab.ts';

export const DEFAULT_MODEL_NAME = 'tiny-llama-2-kjv';

/**
 * Where the weights are: assets/tiny-llama-2-kjv/ at the package root, found from this module's URL (runtime/
 * in the sources, dist/runtime/ when compiled). A page that serves the folder elsewhere passes its URL.
 */
export function defaultModelUrls(): URL[] {
  return ['../assets/tiny-llama-2-kjv/', '../../assets/tiny-llama-2-kjv/'].map((p) => new URL(p, import.meta.url));
}

let tokenizerJson: Uint8Array | null = null;
let tokenizerConfigJson: Uint8Array | null = null;

/**
 * The default model's folder, with Llama-2's tokenizer.json and tokenizer_config.json supplied in memory.
 * `baseUrl`: where a browser page serves assets/tiny-llama-2-kjv/ (default: found next to this module).
 */
export function defaultModelDir(baseUrl?: string | URL): ModelDir {
  const dirAt = (url: URL): ModelDir => (url.protocol === 'file:' ? nodeDir(filePath(url)) : urlDir(url.href));
  // A folder the caller names is used as it is; otherwise the first candidate that holds config.json.
  let found: ModelDir | null = baseUrl !== undefined ? dirAt(new URL(String(baseUrl), globalThis.location?.href)) : null;
  const locate = async (): Promise<ModelDir> => {
    if (found) return found;
    const urls = defaultModelUrls();
    for (const url of urls) {
      const dir = dirAt(url);
      const probe = await dir.open('config.json').catch(() => null);
      if (probe) {
        await probe.close?.();
        return (found = dir);
      }
    }
    const deno = (globalThis as { Deno?: unknown }).Deno !== undefined ? ' (under Deno, run with --allow-read)' : '';
    throw new Error(`the default model's files (assets/tiny-llama-2-kjv/) were not found at ${urls.map(String).join(' or ')}${deno}`);
  };
  return {
    name: DEFAULT_MODEL_NAME,
    async open(file) {
      if (file === 'tokenizer.json') {
        tokenizerJson ??= new TextEncoder().encode(llama2TokenizerJsonText());
        return bytesSource(`${DEFAULT_MODEL_NAME}/${file}`, tokenizerJson);
      }
      if (file === 'tokenizer_config.json') {
        tokenizerConfigJson ??= new TextEncoder().encode(JSON.stringify(llama2TokenizerConfigJson()));
        return bytesSource(`${DEFAULT_MODEL_NAME}/${file}`, tokenizerConfigJson);
      }
      return (await locate()).open(file);
    },
  };
}

/** A file: URL as a path for node:fs (POSIX, and Windows drive letters). */
function filePath(url: URL): string {
  const p = decodeURIComponent(url.pathname);
  return /^\/[A-Za-z]:\//.test(p) ? p.slice(1) : p;
}

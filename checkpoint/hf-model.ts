// A Hugging Face Llama model directory as a whole: config.json, generation_config.json, tokenizer files,
// and the weights in model.safetensors or in shards listed by model.safetensors.index.json.
// Opening reads only the small files and the safetensors headers; tensors are read later, one at a time,
// through `sources`.

import type { ByteSource, ModelDir } from './byte-source.ts';
import { readText } from './byte-source.ts';
import { parseHfConfig, type LlamaConfig } from './config.ts';
import { fromHfName, tensorSetProblems, toHfName } from './keymap.ts';
import { readSafetensorsHeader, type TensorInfo } from './safetensors.ts';
import { llama2TokenizerJsonText, llama2VocabularyMismatch, LLAMA2_VOCAB_SIZE } from '../tokenizer/llama2-vocab.ts';
import { readSentencePiecePieces } from '../tokenizer/sentencepiece-model.ts';

export interface HfModel {
  dir: ModelDir;
  config: LlamaConfig;
  configJson: Record<string, unknown>;
  generationConfig: Record<string, unknown> | null;
  tokenizerJson: string | null; // tokenizer.json text
  tokenizerConfigJson: string | null; // tokenizer_config.json text
  notes: string[]; // load-log lines (e.g. the tokenizer came from tokenizer.model)
  tensors: Map<string, TensorInfo>; // OUR name (keymap.ts) -> where it lies; TensorInfo.name stays the HF name
  sources: Map<string, ByteSource>; // relative file name (TensorInfo.file) -> open source
  metadata: Record<string, string>; // __metadata__ of all weight files, merged
  close(): Promise<void>;
}

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

async function readJson(dir: ModelDir, file: string): Promise<Record<string, unknown> | null> {
  const text = await readText(dir, file);
  if (text === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${dir.name}/${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${dir.name}/${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * A folder with tokenizer.model but no tokenizer.json: when its pieces are exactly Llama-2's (and
 * config.json says vocab_size 32000), Llama-2's tokenizer.json, built in; null without a
 * tokenizer.model. Any other SentencePiece model is refused by name (it cannot be rebuilt here).
 */
async function llama2FromSentencePiece(dir: ModelDir, config: LlamaConfig): Promise<string | null> {
  const src = await dir.open('tokenizer.model');
  if (!src) return null;
  let bytes: Uint8Array;
  try {
    bytes = await src.read(0, src.size);
  } finally {
    await src.close?.();
  }
  const refuse = (why: string): Error =>
    new Error(`${dir.name}/tokenizer.model: no tokenizer.json beside it, and ${why}; only Llama-2's own vocabulary is built in (save the tokenizer as tokenizer.json with transformers to use another)`);
  if (config.vocabSize !== LLAMA2_VOCAB_SIZE) throw refuse(`config.json has vocab_size ${config.vocabSize}, not Llama-2's ${LLAMA2_VOCAB_SIZE}`);
  const mismatch = llama2VocabularyMismatch(readSentencePiecePieces(bytes, `${dir.name}/tokenizer.model`));
  if (mismatch !== null) throw refuse(`it is not Llama-2's vocabulary: ${mismatch}`);
  return llama2TokenizerJsonText();
}

/** Opens an HF model directory: config, tokenizer files and all safetensors headers. Throws naming the directory/file. */
export async function openHfModel(dir: ModelDir): Promise<HfModel> {
  const configJson = await readJson(dir, 'config.json');
  if (!configJson) throw new Error(`${dir.name}: no config.json; not a Hugging Face model directory`);
  const config = parseHfConfig(configJson, `${dir.name}/config.json`);
  const generationConfig = await readJson(dir, 'generation_config.json');
  const notes: string[] = [];
  let tokenizerJson = await readText(dir, 'tokenizer.json');
  const tokenizerConfigJson = await readText(dir, 'tokenizer_config.json');
  if (tokenizerJson === null) {
    tokenizerJson = await llama2FromSentencePiece(dir, config);
    if (tokenizerJson !== null) notes.push(`${dir.name}: no tokenizer.json; tokenizer.model holds Llama-2's 32000-piece vocabulary, so the built-in Llama-2 tokenizer is used`);
  }

  const sources = new Map<string, ByteSource>();
  const closeAll = async (): Promise<void> => {
    for (const s of sources.values()) await s.close?.();
    sources.clear();
  };
  try {
    // file -> HF names the index promises are in it (null for the single-file layout)
    let plan: Map<string, Set<string> | null>;
    const single = await dir.open(SINGLE);
    if (single) {
      sources.set(SINGLE, single);
      plan = new Map([[SINGLE, null]]);
    } else {
      const index = await readJson(dir, INDEX);
      if (!index) {
        const bin = await dir.open('pytorch_model.bin');
        await bin?.close?.();
        const hint = bin ? ' (pytorch_model.bin is not supported: convert it to safetensors)' : '';
        throw new Error(`${dir.name}: no weights found: neither ${SINGLE} nor ${INDEX}${hint}`);
      }
      const wm = index.weight_map;
      if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new Error(`${dir.name}/${INDEX}: missing "weight_map" object`);
      plan = new Map();
      for (const [hfName, file] of Object.entries(wm)) {
        if (typeof file !== 'string') throw new Error(`${dir.name}/${INDEX}: weight_map["${hfName}"] is not a file name`);
        let set = plan.get(file);
        if (!set) plan.set(file, (set = new Set()));
        set.add(hfName);
      }
      for (const file of plan.keys()) {
        const src = await dir.open(file);
        if (!src) throw new Error(`${dir.name}: ${INDEX} lists ${file}, but that file is missing`);
        sources.set(file, src);
      }
    }

    const tensors = new Map<string, TensorInfo>();
    const metadata: Record<string, string> = {};
    for (const [file, promised] of plan) {
      const src = sources.get(file)!;
      const header = await readSafetensorsHeader(src, file);
      Object.assign(metadata, header.metadata);
      const present = new Set<string>();
      for (const t of header.tensors) {
        present.add(t.name);
        const ours = fromHfName(t.name);
        if (ours === null && t.name.endsWith('.bias')) {
          throw new Error(`${src.name}: tensor "${t.name}": bias tensors are not supported (this runtime has no bias terms)`);
        }
        if (ours === null) continue; // e.g. rotary_emb.inv_freq: recomputed, not loaded
        const prev = tensors.get(ours);
        if (prev) throw new Error(`${src.name}: tensor "${t.name}" is also in ${sources.get(prev.file)!.name}`);
        tensors.set(ours, t);
      }
      for (const hfName of promised ?? []) {
        if (!present.has(hfName)) throw new Error(`${src.name}: missing tensor ${hfName} (${INDEX} says it is in this file)`);
      }
    }

    if (config.tieWordEmbeddings) {
      tensors.delete('output'); // tied: the head is tok_embeddings, whatever the file also carries
    } else if (!tensors.has('output')) {
      const files = [...sources.values()].map((s) => s.name).join(', ');
      throw new Error(`${files}: missing tensor lm_head.weight (config.json does not set tie_word_embeddings)`);
    }

    return {
      dir,
      config,
      configJson,
      generationConfig,
      tokenizerJson,
      tokenizerConfigJson,
      notes,
      tensors,
      sources,
      metadata,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

const shapeStr = (s: readonly number[]): string => `[${s.join(', ')}]`;

/**
 * Checks, before anything is uploaded, that every tensor the config needs is present with the exact
 * shape and an allowed dtype, and that there are no tensors the config does not account for (e.g. more
 * layers than num_hidden_layers). Throws one Error listing every problem; each names file and HF tensor.
 */
export function validateHfModel(m: HfModel, allowedDtypes: readonly string[] = ['F32', 'F16', 'BF16']): void {
  const fileOf = (t: TensorInfo): string => m.sources.get(t.file)?.name ?? `${m.dir.name}/${t.file}`;
  const problems = tensorSetProblems(m.config, m.tensors, {
    nameOf: toHfName,
    missing: (hf, shape) => `${m.dir.name}: missing tensor ${hf} (expected shape ${shapeStr(shape)})`,
    check(t, hf, shape) {
      const found: string[] = [];
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        found.push(`${fileOf(t)}: tensor ${hf} has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)} from config.json`);
      }
      if (!allowedDtypes.includes(t.dtype)) found.push(`${fileOf(t)}: tensor ${hf} has dtype ${t.dtype}, expected one of ${allowedDtypes.join(', ')}`);
      return found;
    },
    unexpected: (t) => `${fileOf(t)}: unexpected tensor ${t.name} (config.json has ${m.config.nLayers} layers)`,
  });
  if (problems.length > 0) {
    const shown = problems.slice(0, 20);
    if (problems.length > shown.length) shown.push(`... and ${problems.length - shown.length} more`);
    throw new Error(shown.join('\n'));
  }
}

// Per GGUF file type: a Llama-2-7B-proportioned stand-in (dim 4096, FFN 11008, 32 heads, vocabulary 32000,
// random weights, LAYERS layers deep) quantized by llama.cpp's own quantizer to each of the twelve mixes
// people download, then loaded as stored (no --dtype) and run: file tensor bytes vs GPU weight bytes, load
// time and greedy decode speed. Prints a Markdown table (the README's) and, with --json, one object per type.
//
//   LIBLLAMA_DIR=bench/llamacpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64 QUANTIZE_PY=.../llama-quantize.py \
//   npx vite-node bench/gguf-types.ts -- [--layers 1] [--tokens 8] [--mixes Q4_0,Q4_K_M,...] [--dtype q4] [--json] [--dir DIR]
// --dtype loads with that format instead of as stored (for comparison: the file's values quantized again).
//
// The F32 source (about 1.9 GB per layer plus 1 GB of embedding and head) and each quantized file are
// written to --dir (default: the OS temp folder) and removed afterwards.

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { fileSource } from '../checkpoint/byte-source.ts';
import { createGpuContext } from '../runtime/device.ts';
import { openGgufModel } from '../checkpoint/gguf-provider.ts';
import { writeGgufFile } from '../checkpoint/gguf-writer.ts';
import { LlamaModel } from '../runtime/model.ts';
import { randomProvider } from '../checkpoint/random-model.ts';
import { buildLlama2TokenizerJson } from '../tokenizer/index.ts';
import type { DtypeFormat } from '../kernels/weight-formats.ts';

const FTYPES: Record<string, number> = {
  Q2_K: 10, Q3_K_S: 11, Q3_K_M: 12, Q3_K_L: 13, Q4_0: 2, Q4_K_S: 14, Q4_K_M: 15, Q5_0: 8, Q5_K_S: 16, Q5_K_M: 17, Q6_K: 18, Q8_0: 7,
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

export interface GgufTypeRow {
  mix: string;
  types: string; // the ggml types of the matrices, most bytes first
  file_bytes: number; // the file's tensor data (matrices and norms)
  gpu_bytes: number; // LlamaModel.weightBytes, loaded as stored
  ratio: number; // gpu_bytes / file_bytes
  load_s: number;
  decode_tps: number; // greedy tokens per second after the first
  tokens: number[];
}

async function main(): Promise<void> {
  const layers = Number(arg('layers', '1'));
  const nTokens = Number(arg('tokens', '8'));
  const mixes = arg('mixes', Object.keys(FTYPES).join(',')).split(',');
  const json = process.argv.includes('--json');
  const dtype = arg('dtype', '') as DtypeFormat | '';
  const quantizePy = process.env.QUANTIZE_PY ?? '/work/shared/tools/llama-quantize.py';
  const cfg: LlamaConfig = {
    dim: 4096, hiddenDim: 11008, nLayers: layers, nHeads: 32, nKvHeads: 32, headDim: 128, vocabSize: 32000,
    maxSeqLen: 4096, normEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, tieWordEmbeddings: false,
  };
  const dir = await mkdtemp(join(arg('dir', tmpdir()), 'gguf-types-'));
  const gpu = await createGpuContext();
  const log = (s: string): void => void process.stderr.write(s + '\n');
  try {
    const f32 = join(dir, 'f32.gguf');
    log(`writing the F32 stand-in (${layers} layer(s)) to ${f32}`);
    await writeGgufFile(f32, randomProvider(cfg, 7), { type: 'F32', tokenizerJson: buildLlama2TokenizerJson(), name: 'llama-2-7b-standin' });
    const rows: GgufTypeRow[] = [];
    if (!json) {
      console.log(`adapter: ${gpu.adapterName}; Llama-2-7B shapes, ${layers} layer(s) + embedding + head, ${nTokens} greedy tokens`);
      console.log('| file type | matrix types | file tensor MiB | GPU weight MiB | GPU / file | decode tok/s |');
      console.log('|---|---|---|---|---|---|');
    }
    for (const mix of mixes) {
      const ftype = FTYPES[mix];
      if (ftype === undefined) throw new Error(`unknown mix ${mix} (have ${Object.keys(FTYPES).join(', ')})`);
      const q = join(dir, `${mix}.gguf`);
      log(`${mix}: quantizing`);
      execFileSync('python3', [quantizePy, f32, q, String(ftype)], { stdio: 'ignore' });
      log(`${mix}: ${((await stat(q)).size / 2 ** 20).toFixed(1)} MiB file, loading`);
      const g = await openGgufModel(await fileSource(q));
      const perType = new Map<string, number>();
      let fileBytes = 0;
      for (const t of g.file.tensors.values()) {
        fileBytes += t.byteLength;
        if (t.shape.length === 2) perType.set(t.type, (perType.get(t.type) ?? 0) + t.byteLength);
      }
      const t0 = performance.now();
      const model = await LlamaModel.fromProvider(g.provider, { gpu, context: 256, ...(dtype ? { dtype } : {}) });
      const loadS = (performance.now() - t0) / 1000;
      const tokens: number[] = [];
      let tFirst = 0;
      for await (const t of model.generateGreedy([1, 15043, 29892, 590, 11203, 338, 274, 1082], nTokens)) {
        tokens.push(t);
        if (tokens.length === 1) tFirst = performance.now();
      }
      const decodeTps = (tokens.length - 1) / ((performance.now() - tFirst) / 1000);
      const row: GgufTypeRow = {
        mix: dtype ? `${mix} --dtype ${dtype}` : mix, types: [...perType].sort((a, b) => b[1] - a[1]).map(([t]) => t).join(' '), file_bytes: fileBytes,
        gpu_bytes: model.weightBytes, ratio: model.weightBytes / fileBytes, load_s: loadS, decode_tps: decodeTps, tokens,
      };
      model.destroy();
      await g.close();
      await rm(q);
      rows.push(row);
      if (json) console.log(JSON.stringify(row));
      else {
        const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
        console.log(`| ${row.mix} | ${row.types} | ${mib(fileBytes)} | ${mib(row.gpu_bytes)} | ${row.ratio.toFixed(4)} | ${decodeTps.toFixed(2)} |`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

await main();

// Cross-check against llama.cpp (issue 2, "Done when"): the same random-weights Llama models, written
// once as HF safetensors and once as GGUF, must give the same greedy tokens in our CPU oracle
// (checkpoint/reference.ts, weights read back from the safetensors) and in llama.cpp (the GGUF, through
// node-llama-cpp's prebuilt CPU binary). Also compares the raw logits of every position.
//
// For each model (TEST_CONFIGS.mha and .gqa, fixed seed) and each GGUF type:
//   1. free greedy: prompt ids -> N tokens, llama.cpp (temperature 0, no repeat penalty) vs oracle;
//   2. teacher-forced: prompt + the oracle's tokens fed to llama.cpp with logits at every position:
//      top-1 agreement and the largest |logit difference| against the oracle.
// F32 must match exactly (tokens); F16/Q8_0/Q4_0 are compared with the oracle run on the weights our
// GGUF reader decodes from the same file, so llama.cpp and the oracle see the same weights. llama.cpp
// rounds activations to f16 / q8_0 inside those matmuls, so small logit differences are expected there.
//
// llama.cpp runs through runner.ts's session (greedy run, logits, tokenize), as bench/perplexity.ts does.
// node-llama-cpp is not a dependency of this project: it is pinned in bench/llamacpp/package.json (a
// bench-only package), CPU binary only, nothing downloaded or compiled at install (see runner.ts):
//   npm install --prefix bench/llamacpp --omit=optional --ignore-scripts --no-audit --no-fund
//   npx vite-node scripts/llamacpp/greedy-check.ts [--tokens 24] [--types F32,F16,Q8_0,Q4_0] [--out DIR] [--json]
// NODE_LLAMA_CPP_DIR=/path/to/node_modules/node-llama-cpp uses another install instead.
// The files stay in --out (default $TMPDIR/llama2-webgpu-llamacpp) for gguf_py_check.py.
// Exit status 1 when an F32 comparison differs.

import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeDir, fileSource } from '../../checkpoint/byte-source.ts';
import type { LlamaConfig } from '../../checkpoint/config.ts';
import { openGgufModel } from '../../checkpoint/gguf-provider.ts';
import { writeGgufFile, type GgufWriteType } from '../../checkpoint/gguf-writer.ts';
import { openHfModel } from '../../checkpoint/hf-model.ts';
import { hfProvider } from '../../checkpoint/hf-provider.ts';
import { expectedTensors } from '../../checkpoint/keymap.ts';
import { encodeHfModel, randomWeights, writeModelDir } from '../../checkpoint/random-model.ts';
import { TEST_CONFIGS } from '../../test/helpers/configs.ts';
import { ReferenceModel } from '../../checkpoint/reference.ts';
import type { TensorProvider } from '../../checkpoint/tensor-provider.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson, LlamaTokenizer } from '../../tokenizer/index.ts';
import { loadLlamaCpp } from '../../bench/llamacpp/runner.ts';

const SEED = 20240601;
const PROMPT_TEXT = 'Hello, my dog is cute';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

// Strings llama.cpp tokenizes with the vocabulary we embed (its SPM tokenizer merges by our scores).
const TOKENIZE_CASES = [
  'Hello world', 'Hello, my dog is cute', ' ', '   ', '      x', 'a  b   c    d', '\n\n', '\t\tx\n    y',
  'The quick brown fox jumps over the lazy dog.', "It's 3.14159, isn't it?", 'for (let i = 0; i < n; i++) {}',
  'naïve café', 'Привет мир', '日本語のテキスト', '🦙 llama', '👩🏽‍💻', '∑ x² ≥ 0', 'GGUF q4_0 / q8_0 blocks',
  'ſtrange ﬁ ligatures', '    def f():\n        return 1\n',
];

async function readAll(p: TensorProvider): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(p.config)) out.set(name, (await p.readRowsF32(name, 0, shape.length === 2 ? shape[0]! : 1)).slice());
  return out;
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

interface Row {
  model: string;
  type: string;
  oracle: number[];
  llamacpp: number[];
  identical: boolean;
  firstDiff: number; // index of the first differing generated token, -1 when identical
  positions: number; // teacher-forced positions compared
  top1Agree: number; // positions whose argmax matches
  maxLogitDiff: number; // over all positions and the whole vocabulary
  firstPosMaxLogitDiff: number; // position 0 (BOS) only
  logitScale: number; // max |oracle logit|, for scale
}

async function main(): Promise<void> {
  const nTokens = Number(arg('tokens', '24'));
  const types = arg('types', 'F32,F16,Q8_0,Q4_0').split(',') as GgufWriteType[];
  const out = arg('out', join(tmpdir(), 'llama2-webgpu-llamacpp'));
  const json = process.argv.includes('--json');

  // CPU only and never build or download: node-llama-cpp's prebuilt binary from @node-llama-cpp/linux-x64.
  const llama = await loadLlamaCpp({ threads: 2, install: false, log: (line) => console.error(line) });
  const tokJson = buildLlama2TokenizerJson();
  const tok = LlamaTokenizer.fromJson(tokJson, llama2TokenizerConfigJson());
  const prompt = tok.encode(PROMPT_TEXT); // [1, 15043, 29892, 590, 11203, 338, 274, 1082]
  const rows: Row[] = [];
  let tokenizeMismatches: string[] = [];

  await rm(out, { recursive: true, force: true });
  for (const [label, cfg] of Object.entries(TEST_CONFIGS) as [string, LlamaConfig][]) {
    // One set of weights, written as an HF directory (the oracle's input) ...
    const hfPath = join(out, `${label}-hf`);
    await writeModelDir(hfPath, encodeHfModel(cfg, randomWeights(cfg, SEED), { dtype: 'F32', tokenizerJson: JSON.stringify(tokJson) }));
    const hf = await openHfModel(nodeDir(hfPath));
    const hfWeights = await readAll(hfProvider(hf));

    for (const type of types) {
      // ... and as GGUF, streamed from that HF directory, with the Llama-2 vocabulary embedded.
      const ggufPath = join(out, `${label}-${type}.gguf`);
      await mkdir(out, { recursive: true });
      await writeGgufFile(ggufPath, hfProvider(hf), { type, tokenizerJson: tokJson, name: `random-${label}` });
      // The oracle runs on the weights llama.cpp sees: the HF ones for F32 (the GGUF holds them
      // exactly), otherwise what our reader decodes from the GGUF.
      let weights = hfWeights;
      if (type !== 'F32') {
        const g = await openGgufModel(await fileSource(ggufPath));
        weights = await readAll(g.provider);
        await g.close();
      }
      const oracle = new ReferenceModel(cfg, weights).generateGreedy(prompt, nTokens);
      const forced = [...prompt, ...oracle];
      const oracleLogits = new ReferenceModel(cfg, weights).forward(forced, 0);

      // An f32 KV cache: no f16 rounding of keys/values.
      const session = await llama.open(ggufPath, cfg.maxSeqLen, { f32Cache: true });
      if (type === 'F32' && label === 'mha') {
        // llama.cpp tokenizes with the scores we derived from the merges; no BOS from tokenize().
        const bad = TOKENIZE_CASES.filter((t) => JSON.stringify(session.tokenize(t)) !== JSON.stringify(tok.encode(t, { addBos: false })));
        tokenizeMismatches = bad;
        if (!json) console.log(`tokenizer: llama.cpp and ours agree on ${TOKENIZE_CASES.length - bad.length}/${TOKENIZE_CASES.length} strings${bad.length ? ' ' + JSON.stringify(bad) : ''}`);
      }
      // Greedy to nTokens tokens, or to the end of sequence (included).
      const generated = (await session.run(prompt, nTokens)).tokens;
      const eos = generated.indexOf(cfg.eosTokenId);
      const llamacpp = eos < 0 ? generated : generated.slice(0, eos + 1);
      const theirLogits = await session.logits(forced, cfg.vocabSize);
      await session.close();
      let maxDiff = 0;
      let firstPos = 0;
      let agree = 0;
      let scale = 0;
      for (let p = 0; p < forced.length; p++) {
        const mine = oracleLogits.subarray(p * cfg.vocabSize, (p + 1) * cfg.vocabSize);
        const theirs = theirLogits.subarray(p * cfg.vocabSize, (p + 1) * cfg.vocabSize);
        let d = 0;
        for (let i = 0; i < cfg.vocabSize; i++) {
          d = Math.max(d, Math.abs(theirs[i]! - mine[i]!));
          scale = Math.max(scale, Math.abs(mine[i]!));
        }
        if (p === 0) firstPos = d;
        maxDiff = Math.max(maxDiff, d);
        if (argmax(theirs) === argmax(mine)) agree++;
      }

      const firstDiff = oracle.findIndex((t, i) => llamacpp[i] !== t);
      const identical = firstDiff < 0 && llamacpp.length === oracle.length;
      rows.push({
        model: label, type, oracle, llamacpp, identical, firstDiff: identical ? -1 : firstDiff < 0 ? oracle.length : firstDiff,
        positions: forced.length, top1Agree: agree, maxLogitDiff: maxDiff, firstPosMaxLogitDiff: firstPos, logitScale: scale,
      });
      const r = rows.at(-1)!;
      if (json) console.log(JSON.stringify(r));
      else {
        console.log(`${label.padEnd(4)} ${type.padEnd(5)} tokens ${identical ? 'IDENTICAL' : `DIFFER at ${r.firstDiff}`} (${oracle.length})  ` +
          `top-1 ${agree}/${forced.length}  max|dlogit| ${maxDiff.toExponential(2)} (pos 0: ${firstPos.toExponential(2)}, logits up to ${scale.toFixed(1)})`);
        if (type === 'F32') {
          console.log(`     oracle   ${JSON.stringify(oracle)}\n     llama.cpp ${JSON.stringify(llamacpp)}\n     text: ${JSON.stringify(tok.decode(llamacpp, { continuation: true }))}`);
        }
      }
    }
    await hf.close();
  }
  if (json) console.log(JSON.stringify({ tokenize_cases: TOKENIZE_CASES.length, tokenize_mismatches: tokenizeMismatches }));
  const bad = rows.filter((r) => r.type === 'F32' && !r.identical);
  if (!json) console.log(bad.length === 0 ? 'F32: llama.cpp and the oracle agree on every token.' : `F32 MISMATCH in ${bad.map((r) => r.model).join(', ')}`);
  await llama.close();
  process.exitCode = bad.length === 0 ? 0 : 1;
}

await main();

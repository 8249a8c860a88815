// Cross-check of linear RoPE scaling against llama.cpp: a random-weights GQA model with
// ropeScaleFactor F is written as an F32 GGUF carrying llama.rope.scaling.type "linear" and
// llama.rope.scaling.factor F (what convert_hf_to_gguf.py writes for rope_scaling linear); our CPU
// oracle (checkpoint/reference.ts, which the GPU path matches within 1e-4, test/rope-scaling.test.ts) and
// llama.cpp (node-llama-cpp's prebuilt CPU binary, f32 KV cache) then give greedy tokens and the logits
// of every teacher-forced position. The oracle without scaling is shown beside, so that agreement
// cannot come from the scale being ignored on both sides.
//   npx vite-node scripts/llamacpp/rope-scaling-check.ts [--factors 2,4] [--tokens 24]
// (node-llama-cpp installed as bench/llamacpp/README.md says; driven through runner.ts's session.)

import { rm } from 'node:fs/promises';
import { writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LlamaConfig } from '../../checkpoint/config.ts';
import { encodeGguf } from '../../checkpoint/gguf-writer.ts';
import { randomWeights } from '../../checkpoint/random-model.ts';
import { TEST_CONFIGS } from '../../test/helpers/configs.ts';
import { ReferenceModel } from '../../checkpoint/reference.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson, LlamaTokenizer } from '../../tokenizer/index.ts';
import { loadLlamaCpp } from '../../bench/llamacpp/runner.ts';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
};

async function main(): Promise<void> {
  const factors = arg('factors', '2,4').split(',').map(Number);
  const nTokens = Number(arg('tokens', '24'));
  const out = join(tmpdir(), 'llama2-webgpu-rope-scaling');
  mkdirSync(out, { recursive: true });
  const llama = await loadLlamaCpp({ threads: 2, install: false, log: (line) => console.error(line) });
  const tokJson = buildLlama2TokenizerJson();
  const tok = LlamaTokenizer.fromJson(tokJson, llama2TokenizerConfigJson());
  const prompt = tok.encode('Hello, my dog is cute');
  let failed = false;
  for (const factor of factors) {
    const cfg: LlamaConfig = { ...TEST_CONFIGS.gqa, ropeScaleFactor: factor };
    const weights = randomWeights(cfg, 20240601);
    const path = join(out, `gqa-linear-${factor}.gguf`);
    writeFileSync(path, encodeGguf(cfg, weights, { type: 'F32', tokenizerJson: tokJson }));
    const oracle = new ReferenceModel(cfg, weights).generateGreedy(prompt, nTokens);
    const forced = [...prompt, ...oracle];
    const scaled = new ReferenceModel(cfg, weights).forward(forced, 0);
    const unscaled = new ReferenceModel({ ...cfg, ropeScaleFactor: undefined }, weights).forward(forced, 0);

    const session = await llama.open(path, cfg.maxSeqLen, { f32Cache: true });
    // Greedy to nTokens tokens, or to the end of sequence (included).
    const generated = (await session.run(prompt, nTokens)).tokens;
    const eos = generated.indexOf(cfg.eosTokenId);
    const theirsTokens = eos < 0 ? generated : generated.slice(0, eos + 1);
    const theirs = await session.logits(forced, cfg.vocabSize);
    await session.close();
    let dScaled = 0, dUnscaled = 0, scale = 0;
    for (let i = 0; i < theirs.length; i++) {
      dScaled = Math.max(dScaled, Math.abs(theirs[i]! - scaled[i]!));
      dUnscaled = Math.max(dUnscaled, Math.abs(theirs[i]! - unscaled[i]!));
      scale = Math.max(scale, Math.abs(scaled[i]!));
    }
    const same = JSON.stringify(theirsTokens) === JSON.stringify(oracle);
    failed ||= !same;
    console.log(`factor ${factor}: greedy tokens ${same ? 'IDENTICAL' : 'DIFFER'} (${oracle.length}); max|dlogit| vs our scaled oracle ${dScaled.toExponential(2)}, ` +
      `vs the unscaled oracle ${dUnscaled.toExponential(2)} (logits up to ${scale.toFixed(2)}, ${forced.length} positions)`);
    if (!same) console.log(`  ours ${JSON.stringify(oracle)}\n  llama.cpp ${JSON.stringify(theirsTokens)}`);
  }
  await llama.close();
  await rm(out, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

await main();

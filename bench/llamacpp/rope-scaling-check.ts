// Cross-check of linear RoPE scaling against llama.cpp: a random-weights GQA model with
// ropeScaleFactor F is written as an F32 GGUF carrying llama.rope.scaling.type "linear" and
// llama.rope.scaling.factor F (what convert_hf_to_gguf.py writes for rope_scaling linear); our CPU
// oracle (checkpoint/reference.ts, which the GPU path matches within 1e-4, test/rope-scaling.test.ts) and
// llama.cpp (node-llama-cpp's prebuilt CPU binary, f32 KV cache) then give greedy tokens and the logits
// of every teacher-forced position. The oracle without scaling is shown beside, so that agreement
// cannot come from the scale being ignored on both sides.
//   npx vite-node bench/llamacpp/rope-scaling-check.ts [--factors 2,4] [--tokens 24]
// (node-llama-cpp installed as bench/llamacpp/README.md says.)

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
import { importNodeLlamaCpp } from './runner.ts';

interface NlcSequence {
  evaluate(tokens: number[], opts: { temperature: number; yieldEogToken: boolean }): AsyncGenerator<number>;
  controlledEvaluate(input: [number, { generateNext: { logits: true } }][]): Promise<({ next: { logits?: Map<number, number> } } | undefined)[]>;
}
interface Nlc {
  getLlama(opts: Record<string, unknown>): Promise<{
    loadModel(opts: { modelPath: string }): Promise<{
      createContext(opts: Record<string, unknown>): Promise<{ getSequence(): NlcSequence; dispose(): Promise<void> }>;
      dispose(): Promise<void>;
    }>;
  }>;
}

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
};

async function main(): Promise<void> {
  const factors = arg('factors', '2,4').split(',').map(Number);
  const nTokens = Number(arg('tokens', '24'));
  const out = join(tmpdir(), 'llama2-webgpu-rope-scaling');
  mkdirSync(out, { recursive: true });
  const nlc = (await importNodeLlamaCpp()) as Nlc;
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
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

    const model = await llama.loadModel({ modelPath: path });
    const ctx = await model.createContext({ contextSize: cfg.maxSeqLen, sequences: 2, threads: 2, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
    const theirsTokens: number[] = [];
    for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      theirsTokens.push(t);
      if (theirsTokens.length >= nTokens || t === cfg.eosTokenId) break;
    }
    const res = await ctx.getSequence().controlledEvaluate(forced.map((t) => [t, { generateNext: { logits: true } }]));
    let dScaled = 0, dUnscaled = 0, scale = 0;
    for (let p = 0; p < forced.length; p++) {
      const lg = res[p]!.next.logits!;
      for (const [id, v] of lg) {
        const i = p * cfg.vocabSize + id;
        dScaled = Math.max(dScaled, Math.abs(v - scaled[i]!));
        dUnscaled = Math.max(dUnscaled, Math.abs(v - unscaled[i]!));
        scale = Math.max(scale, Math.abs(scaled[i]!));
      }
    }
    await ctx.dispose();
    await model.dispose();
    const same = JSON.stringify(theirsTokens) === JSON.stringify(oracle);
    failed ||= !same;
    console.log(`factor ${factor}: greedy tokens ${same ? 'IDENTICAL' : 'DIFFER'} (${oracle.length}); max|dlogit| vs our scaled oracle ${dScaled.toExponential(2)}, ` +
      `vs the unscaled oracle ${dUnscaled.toExponential(2)} (logits up to ${scale.toFixed(2)}, ${forced.length} positions)`);
    if (!same) console.log(`  ours ${JSON.stringify(oracle)}\n  llama.cpp ${JSON.stringify(theirsTokens)}`);
  }
  await rm(out, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

await main();

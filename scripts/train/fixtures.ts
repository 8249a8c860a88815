// Records PyTorch's answers on the default model's weights, for test/default-model.test.ts: the greedy
// continuation of several prompts and the top-10 logits after each prompt (scripts/train/reference.py, float32).
// Run where PyTorch is installed (Debian's python3-torch): npx vite-node scripts/train/fixtures.ts
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { LlamaTokenizer } from '../../tokenizer/tokenizer.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson } from '../../tokenizer/llama2-vocab.ts';

export const GREEDY_PROMPTS = [
  'In the beginning',
  'And Jesus said unto them,',
  'The LORD is my shepherd',
  'Genesis 1:3',
  'Blessed are the',
  'And the king of Babylon',
];
const TOKENS = 24;

const tok = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());
const prompts = GREEDY_PROMPTS.map((t) => tok.encode(t));
const python = process.env.PYTHON ?? '/usr/bin/python3';
const out = execFileSync(python, ['scripts/train/reference.py'], {
  input: JSON.stringify({ model: 'assets/tiny-llama-2-kjv', prompts, tokens: TOKENS }),
  maxBuffer: 64 << 20,
});
const res = JSON.parse(out.toString()) as { torch: string; results: { prompt: number[]; greedy: number[]; top10_last_prompt_position: unknown }[] };
const fixture = {
  about: 'PyTorch (float32, scripts/train/reference.py) on assets/tiny-llama-2-kjv: greedy continuations and top-10 logits after each prompt. Regenerate: npx vite-node scripts/train/fixtures.ts',
  torch: res.torch,
  tokens: TOKENS,
  cases: res.results.map((r, i) => ({ text: GREEDY_PROMPTS[i], ...r, greedy_text: tok.decode(r.greedy, { continuation: true }) })),
};
writeFileSync('test/fixtures/kjv-greedy.json', JSON.stringify(fixture, null, 1) + '\n');
for (const c of fixture.cases) console.log(`${c.text} ->${c.greedy_text}`);

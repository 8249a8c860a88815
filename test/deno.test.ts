// The same forward pass under Deno (its built-in WebGPU, through the `deno` npm package) gives the
// oracle's greedy tokens.
import { it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomWeights } from '../checkpoint/random-model.ts';
import { TEST_CONFIGS } from './helpers/configs.ts';
import { ReferenceModel } from '../checkpoint/reference.ts';

it('greedy tokens under Deno equal the CPU oracle', () => {
  const out = execFileSync('npx', ['--no-install', 'deno', 'run', 'test/deno/greedy.ts'], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', NO_COLOR: '1' },
    timeout: 300_000,
  });
  const last = JSON.parse(out.trim().split('\n').pop()!) as { adapter: string; tokens: number[] };
  console.log(`deno adapter: ${last.adapter}`);
  const cfg = TEST_CONFIGS.gqa;
  const want = new ReferenceModel(cfg, randomWeights(cfg, 4242)).generateGreedy([1, 15043, 3186, 29892, 590, 11203], 16);
  expect(last.tokens).toEqual(want);
});

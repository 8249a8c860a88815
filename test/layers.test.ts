// The folders are the architecture (README, "Architecture"): each folder may import only the folders below
// it, and no file imports itself back through a chain. This reads every product source file's relative
// imports (static, dynamic and `export ... from`) and checks both rules, so a change that runs an arrow
// upward or closes a circle fails here with the offending files named.

import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..');

/** What each folder may import (besides itself and packages). Top of the stack first. */
const ALLOWED: Record<string, string[]> = {
  cli: ['bench', 'serve', 'api', 'runtime', 'checkpoint', 'tokenizer', 'kernels'],
  demo: ['serve', 'api'],
  bench: ['serve', 'api', 'runtime', 'checkpoint', 'tokenizer', 'kernels'],
  serve: ['api', 'runtime', 'checkpoint', 'tokenizer', 'kernels'],
  api: ['runtime'],
  runtime: ['checkpoint', 'kernels'],
  checkpoint: ['tokenizer', 'kernels'],
  tokenizer: [],
  kernels: [],
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (name === 'node_modules' || name === 'results' || name === 'data') continue;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts') && name !== 'vite.config.ts') out.push(rel);
  }
  return out;
}

/** Relative imports of a file, resolved to repository paths. */
function importsOf(file: string): string[] {
  const src = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...src.matchAll(/(?:^|[\s;])(?:import|export)\b[^'"`;]*?(?:from\s*)?\(?\s*['"](\.{1,2}\/[^'"]+)['"]/gm)].map((m) => m[1]!);
  return specs.filter((s) => /\.(ts|js)$/.test(s)).map((s) => normalize(join(dirname(file), s)));
}

const folderOf = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '.');

const files = Object.keys(ALLOWED).flatMap(sourceFiles);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

describe('the import graph of the product code', () => {
  it('reads the files of every layer', () => {
    for (const dir of Object.keys(ALLOWED)) expect(files.some((f) => folderOf(f) === dir), dir).toBe(true);
    expect(graph.get('runtime/model.ts')!.length).toBeGreaterThan(3);
  });

  it('has no import running upward or sideways between folders', () => {
    const bad: string[] = [];
    for (const [file, deps] of graph) {
      const from = folderOf(file);
      for (const dep of deps) {
        const to = folderOf(dep);
        if (to !== from && !ALLOWED[from]!.includes(to)) bad.push(`${file} -> ${relative(ROOT, join(ROOT, dep))}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('has no circle of imports between files', () => {
    // Depth-first search with colours; a grey node reached again closes a circle.
    const colour = new Map<string, 'grey' | 'black'>();
    const circles: string[] = [];
    const stack: string[] = [];
    const visit = (f: string): void => {
      colour.set(f, 'grey');
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (!graph.has(d)) continue;
        if (colour.get(d) === 'grey') circles.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
        else if (!colour.has(d)) visit(d);
      }
      stack.pop();
      colour.set(f, 'black');
    };
    for (const f of graph.keys()) if (!colour.has(f)) visit(f);
    expect(circles).toEqual([]);
  });
});

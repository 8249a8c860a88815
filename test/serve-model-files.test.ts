// serve/model-files.ts outside a browser (no GPU): a model's files from memory, one GGUF blob, a URL
// (a directory or one .gguf file, read with Range requests from a local server) and the default model
// open as the loader takes them, with what is read from the weight files counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStaticServer, type StaticServer } from './helpers/static-server.ts';
import { openModelFiles, type ModelFiles, type ModelLocation } from '../serve/model-files.ts';
import { openModelSource, type ModelSource } from '../checkpoint/load.ts';
import type { LlamaConfig } from '../checkpoint/config.ts';
import { encodeHfModel, randomWeights } from '../checkpoint/random-model.ts';
import { encodeGguf } from '../checkpoint/gguf-writer.ts';
import { expectedTensors } from '../checkpoint/keymap.ts';
import { DEFAULT_MODEL_NAME } from '../checkpoint/default-model.ts';

const cfg: LlamaConfig = {
  dim: 64, hiddenDim: 172, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: 320, maxSeqLen: 64,
  normEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, tieWordEmbeddings: false,
};
const weights = randomWeights(cfg, 3);
const hfFiles = encodeHfModel(cfg, weights, { dtype: 'F32' });
const gguf = encodeGguf(cfg, weights, { type: 'F32', name: 'tiny' });
const safetensorsBytes = Object.entries(hfFiles).filter(([f]) => f.endsWith('.safetensors')).reduce((n, [, b]) => n + b.byteLength, 0);

/** Opens `location`, recording the read counter's reports; then every tensor, checked against the weights. */
async function openAll(location: ModelLocation): Promise<{ files: ModelFiles; src: ModelSource; reads: [number, number][] }> {
  const reads: [number, number][] = [];
  const files = await openModelFiles(location, { onRead: (read, total) => reads.push([read, total]) });
  const src = await openModelSource(files.source);
  try {
    for (const [name, shape] of expectedTensors(src.config)) {
      expect(await src.provider.readRowsF32(name, 0, shape.length === 2 ? shape[0]! : 1), name).toEqual(weights.get(name));
    }
  } finally {
    await src.close();
  }
  return { files, src, reads };
}

/** `exact`: every byte read once (safetensors); else at least once (the GGUF reader reads ahead over its header). */
function expectCounted(files: ModelFiles, reads: [number, number][], total: number, exact = true): void {
  expect(reads.length).toBeGreaterThan(1);
  expect(reads.every(([, t]) => t === total)).toBe(true);
  for (let i = 1; i < reads.length; i++) expect(reads[i]![0]).toBeGreaterThanOrEqual(reads[i - 1]![0]);
  expect(files.bytesRead()).toBe(reads.at(-1)![0]);
  if (exact) expect(files.bytesRead()).toBe(total);
  else expect(files.bytesRead()).toBeGreaterThanOrEqual(total);
}

describe('model files without a path', () => {
  let dir = '';
  let server: StaticServer | null = null;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'model-files-'));
    await Promise.all(Object.entries(hfFiles).map(([f, b]) => writeFile(join(dir, f), b)));
    await writeFile(join(dir, 'tiny.gguf'), gguf);
    server = await startStaticServer({ '/m/': dir });
  });
  afterAll(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('picked files: the weights as written, the safetensors bytes counted and nothing else', async () => {
    const { files, src, reads } = await openAll({ kind: 'files', name: 'picked', files: hfFiles });
    expect(src.name).toBe('picked');
    expect(src.config).toEqual(cfg);
    expectCounted(files, reads, safetensorsBytes);
    expect([files.downloads(), files.cacheHits()]).toEqual([0, 0]);
  });

  it('one GGUF blob: named after the file, its whole size counted', async () => {
    const { files, src, reads } = await openAll({ kind: 'gguf', name: 'tiny.gguf', file: new Blob([gguf as Uint8Array<ArrayBuffer>]) });
    expect(src.name).toBe('tiny');
    expectCounted(files, reads, gguf.byteLength, false);
  });

  it('a URL: a model directory, or one .gguf file, read with Range requests', async () => {
    const hf = await openAll({ kind: 'url', url: `${server!.url}/m/` });
    expect(hf.src.config).toEqual(cfg);
    expectCounted(hf.files, hf.reads, safetensorsBytes);
    const one = await openAll({ kind: 'url', url: `${server!.url}/m/tiny.gguf` });
    expect(one.src.name).toBe('tiny');
    expectCounted(one.files, one.reads, gguf.byteLength, false);
    await expect(openModelFiles({ kind: 'url', url: `${server!.url}/m/none.gguf` })).rejects.toThrow(`${server!.url}/m/none.gguf: not found (HTTP 404)`);
  });

  it('the default model, found next to the sources', async () => {
    const files = await openModelFiles({ kind: 'default' });
    const src = await openModelSource(files.source);
    await src.close();
    expect(src.name).toBe(DEFAULT_MODEL_NAME);
    expect(src.tokenizerJson).not.toBeNull();
  });
});

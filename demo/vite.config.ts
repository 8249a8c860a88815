// Vite config of the chat demo: `npm run demo` (dev server), `npm run demo:build` (to dist/demo) and
// `npm run demo:preview` (serves the build). Both servers listen on 127.0.0.1 only; WebGPU needs a secure
// context, which http://127.0.0.1 and http://localhost are.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const demoDir = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root: demoDir,
  base: './',
  // Unknown paths are 404s, not index.html: the model loader probes for optional files (generation_config.json).
  appType: 'mpa',
  // assets/ (the default model's weights, tiny-llama-2-kjv/) is served and copied as the page's static files.
  publicDir: fileURLToPath(new URL('../assets', import.meta.url)),
  // The page imports ../api, and its engine worker ../serve (and through it the rest), straight from the sources.
  server: { host: '127.0.0.1', port: 5173, fs: { allow: [repoRoot] } },
  preview: { host: '127.0.0.1', port: 4173 },
  // The engine worker uses dynamic import() (checkpoint/load.ts), which needs ES-module workers.
  worker: { format: 'es' },
  // The dev server's dependency scan starts at index.html and does not follow the worker: list the
  // worker's dependencies so that their first use does not re-optimize and reload the page mid-load.
  optimizeDeps: { include: ['@huggingface/tokenizers', '@huggingface/jinja', 'llama-tokenizer-js'] },
  build: {
    outDir: fileURLToPath(new URL('../dist/demo', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // llama-tokenizer-js carries Llama-2's vocabulary (~1.5 MB): one chunk, loaded by the worker only.
    chunkSizeWarningLimit: 4096,
  },
});

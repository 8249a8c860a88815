#!/usr/bin/env node
// Entry point of the CLI; the TypeScript sources are compiled to dist/ by `npm run build` (run by `npm install`).
import { main } from '../dist/cli/main.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp'; // silences Vulkan loader warnings on headless machines
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);

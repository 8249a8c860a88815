#!/usr/bin/env node
// Entry point of the CLI; the TypeScript sources are compiled to dist/ by `npm run build` (run by `npm install`).
//
// Dawn (the `webgpu` package) prints two warnings straight to file descriptor 2 from native code on every
// adapter request of a software Vulkan driver ("Warning: maxDynamicUniformBuffersPerPipelineLayout
// artificially reduced from 1000000 to 16 ..."): they say nothing to a user, and no Dawn option turns them
// off. A process cannot filter what native code writes to its own stderr, so the commands that open a GPU
// run in a child process whose stderr passes through a filter that drops exactly those lines.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

process.env.XDG_RUNTIME_DIR ??= '/tmp'; // silences Vulkan loader warnings on headless machines

const DAWN_NOISE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;
const GPU_COMMANDS = new Set(['generate', 'serve', 'bench', 'convert']);
const argv = process.argv.slice(2);
const wantsHelp = argv.includes('--help') || argv.includes('-h');

if (process.env.LLAMA2_WEBGPU_CHILD === '1' || !GPU_COMMANDS.has(argv[0] ?? '') || wantsHelp) {
  if (process.env.LLAMA2_WEBGPU_CHILD === '1') {
    // Under the filter process: if it is killed outright (SIGKILL), do not live on without it (a server would).
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
    }, 1000).unref();
  }
  const { main } = await import('../dist/cli/main.js');
  main(argv).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...argv], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, LLAMA2_WEBGPU_CHILD: '1', ...(process.stderr.isTTY ? { LLAMA2_WEBGPU_STDERR_TTY: '1' } : {}) },
  });
  // Whole lines are checked; a partial line is held back only while it could still become a Dawn warning,
  // so progress lines ("\r...") pass at once.
  let pending = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop();
    let out = '';
    for (const line of lines) if (!DAWN_NOISE.test(line)) out += line + '\n';
    if (pending !== '' && !'Warning: maxDynamic'.startsWith(pending.slice(0, 19))) {
      out += pending;
      pending = '';
    }
    if (out) process.stderr.write(out);
  });
  child.stderr.on('end', () => {
    if (pending) process.stderr.write(pending);
  });
  // Signals sent to this process go on to the command (serve shuts down on SIGINT/SIGTERM).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal) {
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.removeAllListeners(sig);
      process.kill(process.pid, signal);
    } else process.exitCode = code ?? 1;
  });
}

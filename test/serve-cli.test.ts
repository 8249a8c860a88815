// `llama2-webgpu serve` (the compiled CLI): the security flags and the start-up warning.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../cli/serve.ts';
import { testGpu } from './helpers/gpu.ts';

describe('serve', () => {
  it('isLoopbackHost', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '192.168.1.2', 'example.com', '128.0.0.1']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('warns loudly when listening beyond loopback without a key; --cors-origin and --metrics-public apply', async (t) => {
    if (!(await testGpu())) return t.skip();
    const args = ['bin/llama2-webgpu.js', 'serve', '--host', '0.0.0.0', '--port', '0', '--context', '256', '--max-batch', '1', '--cors-origin', 'https://app.example.com', '--metrics-public'];
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: '/tmp' };
    delete env.LLAMA2_WEBGPU_API_KEY;
    const child = spawn('node', args, { env });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          stdout += d;
          const m = /listening on http:\/\/[^:]+:(\d+)/.exec(stdout);
          if (m) resolve(Number(m[1]));
        });
        child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
      });
      await new Promise((r) => setTimeout(r, 100)); // the warning follows the "listening" line
      expect(stderr).toMatch(/WARNING: listening on 0\.0\.0\.0 without an API key/);
      const url = `http://127.0.0.1:${port}`;
      const get = (path: string, origin?: string) => fetch(url + path, { headers: origin ? { Origin: origin } : {} });
      expect((await get('/v1/models', 'https://app.example.com')).status).toBe(200);
      expect((await get('/v1/models', 'https://evil.example.com')).status).toBe(403);
      expect((await get('/metrics')).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});

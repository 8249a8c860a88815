// `llama2-webgpu serve`: the OpenAI-compatible HTTP server (DeepInfra's /v1/openai/chat/completions and
// OpenAI's /v1/chat/completions) with continuous batching, and /metrics.

import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { loadLlamaEngine, type LlamaEngine, type LlamaEngineOptions } from '../serve/llama-engine.ts';
import { startServer } from '../api/server.ts';
import { DEFAULT_PRICES } from '../api/engine.ts';
import { UsageError, intArg, numArg, choiceArg, progressPrinter, sizeArg, parseCommandArgs } from './common.ts';
import { DTYPES } from './generate.ts';
import { RUNTIME_DEFAULTS } from '../runtime/defaults.ts';

export const SERVE_HELP = `llama2-webgpu serve [options]
  OpenAI-compatible chat completions over HTTP (POST /v1/openai/chat/completions, /v1/chat/completions),
  GET /v1/models, /health, /metrics (Prometheus).
  --model DIR|FILE|default  HF directory, converted directory or .gguf file (default: the embedded model)
  --model-name NAME     the model id clients send (default: the directory name); also accepted:
                        meta-llama/Llama-2-70b-chat-hf and the other names given with --alias
  --alias NAME          another accepted model id (repeatable)
  --host H --port P     listen address (default 127.0.0.1:8080; port 0 picks a free one)
  --api-key KEY         require "Authorization: Bearer KEY" on /v1 and /metrics (default: env
                        LLAMA2_WEBGPU_API_KEY, else none; a warning is printed when listening beyond loopback without one)
  --cors-origin ORIGIN  also allow browser pages from ORIGIN (repeatable; "*" allows every origin). By default only
                        pages from loopback origins (localhost, 127.0.0.1, [::1]) may call the server; others get 403
  --metrics-public      serve /metrics without the API key
  --dtype ${DTYPES.join('|')}   weight format on the GPU
  --context N           context length per sequence (default: the model's, at most ${RUNTIME_DEFAULTS.maxContext})
  --kv-dtype f16|f32    KV cache elements (default f16 where the adapter has shader-f16, else f32)
  --max-batch N         sequences decoding together (default ${RUNTIME_DEFAULTS.maxBatch})
  --max-queue N         waiting requests before 429 (default ${RUNTIME_DEFAULTS.maxQueue}; 0: no waiting, only the running batch)
  --kv-budget SIZE      KV cache for all sequences, e.g. 2GiB (default: max-batch full contexts)
  --prefill-chunk N     prompt tokens computed per step for one sequence (default ${RUNTIME_DEFAULTS.prefillChunk})
  --no-prefix-cache     disable prefix caching
  --devices N           shard the layers over N WebGPU devices (default 1); each device is its own memory
                        space (requested from the adapter WebGPU offers)
  --device-memory SIZE  memory of each device, e.g. 24GiB: the layers are placed by the planner and a model
                        that does not fit is refused before anything is allocated
  --price-input USD --price-output USD   per million tokens, for usage.estimated_cost
                        (default ${DEFAULT_PRICES.inputPerMTok} / ${DEFAULT_PRICES.outputPerMTok}, the hosted Llama-2-70b-chat's)`;

/** True when `host` only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export async function runServe(argv: string[]): Promise<void> {
  const { values } = parseCommandArgs(argv, {
    model: { type: 'string', default: 'default' },
    'model-name': { type: 'string' },
    alias: { type: 'string', multiple: true },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    'api-key': { type: 'string' },
    'cors-origin': { type: 'string', multiple: true },
    'metrics-public': { type: 'boolean', default: false },
    dtype: { type: 'string' },
    context: { type: 'string' },
    'kv-dtype': { type: 'string' },
    'max-batch': { type: 'string' },
    'max-queue': { type: 'string' },
    'kv-budget': { type: 'string' },
    'prefill-chunk': { type: 'string' },
    'no-prefix-cache': { type: 'boolean', default: false },
    devices: { type: 'string' },
    'device-memory': { type: 'string' },
    'price-input': { type: 'string' },
    'price-output': { type: 'string' },
  });
  const port = intArg('port', values.port, 8080, 0, 65535);
  const dtype = choiceArg('dtype', values.dtype, DTYPES);
  const context = values.context === undefined ? undefined : intArg('context', values.context, 0, 1, 1 << 20);
  const prices = {
    inputPerMTok: numArg('price-input', values['price-input'], DEFAULT_PRICES.inputPerMTok, 0, 1e6),
    outputPerMTok: numArg('price-output', values['price-output'], DEFAULT_PRICES.outputPerMTok, 0, 1e6),
  };
  const apiKey = values['api-key'] ?? process.env.LLAMA2_WEBGPU_API_KEY;
  if (apiKey === '') throw new UsageError('--api-key must not be empty');
  const options: LlamaEngineOptions = {
    model: values.model,
    modelName: values['model-name'],
    aliases: values.alias,
    dtype,
    context,
    kvDtype: choiceArg('kv-dtype', values['kv-dtype'], ['f16', 'f32'] as const),
    maxBatch: intArg('max-batch', values['max-batch'], RUNTIME_DEFAULTS.maxBatch, 1, 256),
    maxQueue: intArg('max-queue', values['max-queue'], RUNTIME_DEFAULTS.maxQueue, 0, 100000),
    kvBudgetBytes: sizeArg('kv-budget', values['kv-budget']),
    prefillChunk: intArg('prefill-chunk', values['prefill-chunk'], RUNTIME_DEFAULTS.prefillChunk, 1, 4096),
    prefixCaching: !values['no-prefix-cache'],
    devices: intArg('devices', values.devices, 1, 1, 64),
    deviceMemoryBytes: sizeArg('device-memory', values['device-memory']),
    prices,
    onProgress: progressPrinter(`loading ${values.model}`),
  };
  // Hold the address before the (possibly minutes-long) load, so that a busy port fails at once.
  const hold = await holdPort(values.host!, port);
  const t0 = performance.now();
  let llama: LlamaEngine;
  try {
    llama = await loadLlamaEngine(options);
  } catch (e) {
    await closeNet(hold.server);
    // The model's own bound on a flag given here is a usage error like any other range check.
    const m = /^context (\d+) must be between 1 and the model's max_position_embeddings \((\d+)\)/.exec((e as Error).message);
    if (m) throw new UsageError(`--context ${m[1]} is more than the model's max_position_embeddings (${m[2]})`);
    const d = /^(\d+) devices for (\d+) layers/.exec((e as Error).message);
    if (d) throw new UsageError(`--devices ${d[1]} is more than the model's ${d[2]} layers (at most one device per layer)`);
    throw e;
  }
  const m = llama.model;
  process.stderr.write(`loaded ${llama.engine.modelName} (${m.format}, ${(m.weightBytes / 2 ** 20).toFixed(1)} MiB of weights, ` +
    `${m.pool.nBlocks * m.pool.blockSize} KV positions) on ${m.stages.length} device(s) (${m.adapterName}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  for (const line of llama.notes) process.stderr.write(`${line}\n`);
  await closeNet(hold.server);
  const server = await startServer({
    engine: llama.engine,
    host: values.host,
    port: hold.port,
    apiKey,
    metrics: llama.metrics,
    corsOrigins: values['cors-origin'],
    metricsPublic: values['metrics-public'],
  });
  process.stdout.write(`listening on ${server.url} (model "${llama.engine.modelName}"${apiKey ? ', API key required' : ''})\n`);
  if (!apiKey && !isLoopbackHost(values.host)) {
    process.stderr.write(
      `\n*** WARNING: listening on ${values.host} without an API key: anyone who can reach this machine can use the model. ***\n` +
        '*** Pass --api-key KEY (or set LLAMA2_WEBGPU_API_KEY), or listen on 127.0.0.1.                                     ***\n\n',
    );
  }
  // The first signal shuts down cleanly. A terminal's Ctrl-C reaches both bin/'s filter process and this one,
  // and the filter forwards it too: a duplicate within a second is that same signal; a later one (a second
  // Ctrl-C while shutdown hangs) exits at once.
  let stopping = 0;
  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      if (stopping === 0) {
        stopping = Date.now();
        resolve();
      } else if (Date.now() - stopping > 1000) {
        process.stderr.write('llama2-webgpu: forced exit\n');
        process.exit(130);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  process.stderr.write('shutting down\n');
  await server.close();
  await llama.close();
}

const closeNet = (server: NetServer): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

/** Binds host:port (0: a free port) and keeps it until the HTTP server takes it over; a busy port fails here. */
async function holdPort(host: string, port: number): Promise<{ server: NetServer; port: number }> {
  const server = createNetServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: Error & { code?: string }) => {
      if (e.code === 'EADDRINUSE') reject(new Error(`cannot listen on ${host}:${port}: the port is in use (choose another with --port)`));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') reject(new UsageError(`--host ${host}: not an address of this machine`));
      else if (e.code === 'EACCES') reject(new Error(`cannot listen on ${host}:${port}: permission denied (ports below 1024 need privileges)`));
      else reject(e);
    });
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return { server, port: addr && typeof addr === 'object' ? addr.port : port };
}

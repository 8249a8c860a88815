// `llama2-webgpu plan`: where each layer, the embedding, the output head and the KV cache would go on N
// devices, and whether it fits (runtime/planner.ts). Arithmetic only: needs no GPU, allocates nothing.

import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseHfConfig, type LlamaConfig } from '../checkpoint/config.ts';
import { BUILTIN_MODEL_NAMES, builtinConfig } from '../checkpoint/builtin-configs.ts';
import { formatGiB, formatSizeFlag, planModel, type DeviceBudget, type Plan } from '../runtime/planner.ts';
import { FORMATS, type WeightFormat } from '../kernels/weight-formats.ts';
import { UsageError, parseCommandArgs, intArg, choiceArg, isUsageError, reportUsageError, sizeArg } from './common.ts';
import { RUNTIME_DEFAULTS, defaultContext } from '../runtime/defaults.ts';

// The WebGPU spec's default limits: every adapter offers at least these, so a plan made with them holds anywhere.
const DEFAULT_MAX_BINDING = '128MiB';
const DEFAULT_MAX_BUFFER = '256MiB';
const PLAN_DTYPES = ['q4', 'q8', 'f16', 'f32'] as const;

export const PLAN_HELP = `llama2-webgpu plan [options]
  Plans where every layer, the embedding, the output head and each layer's KV cache go on N devices
  (consecutive layers per device), and whether that fits. Needs no GPU and allocates nothing.
  --model NAME|DIR        ${BUILTIN_MODEL_NAMES.join(', ')}, or an HF model directory (config.json) (required)
  --dtype ${PLAN_DTYPES.join('|')}   weight format (default f16)
  --context N             positions per sequence (default: the model's, at most ${RUNTIME_DEFAULTS.maxContext})
  --devices N             number of devices (default 1, or the number of --device-memory sizes)
  --device-memory SIZE    memory of each device, e.g. 24GiB, 48GB, 512MiB; or one per device: 24GiB,8GiB (required)
  --kv-budget SIZE        KV cache of the whole batch, all layers (default: one full context)
  --kv-dtype f16|f32      KV cache elements (default f16, the runtime's default where the adapter has shader-f16)
  --prefill-chunk N       token rows per prefill step (default ${RUNTIME_DEFAULTS.prefillChunk})
  --max-binding SIZE      maxStorageBufferBindingSize of each device (default ${DEFAULT_MAX_BINDING}, the WebGPU minimum)
  --max-buffer SIZE       maxBufferSize of each device (default ${DEFAULT_MAX_BUFFER}, the WebGPU minimum)
  --json                  print the plan as JSON on the last line
  Exit status: 0 fits, 3 does not fit, 2 usage error.`;

/** Runs `plan`; returns the exit status (0 fits, 3 does not fit, 2 usage error). */
export async function runPlan(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(PLAN_HELP + '\n');
    return 0;
  }
  try {
    return planCommand(argv);
  } catch (e) {
    if (isUsageError(e)) return reportUsageError('plan', e);
    throw e;
  }
}

function loadConfig(model: string): { name: string; config: LlamaConfig } {
  const builtin = builtinConfig(model);
  if (builtin) return { name: model, config: builtin };
  const file = join(model, 'config.json');
  if (!existsSync(file)) {
    throw new UsageError(`--model "${model}" is neither a built-in config (${BUILTIN_MODEL_NAMES.join(', ')}) nor a directory with a config.json`);
  }
  return { name: basename(resolve(model)), config: parseHfConfig(JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>, file) };
}

function planCommand(argv: string[]): number {
  const { values } = parseCommandArgs(argv, {
    model: { type: 'string' },
    dtype: { type: 'string', default: 'f16' },
    context: { type: 'string' },
    devices: { type: 'string' },
    'device-memory': { type: 'string' },
    'kv-budget': { type: 'string' },
    'kv-dtype': { type: 'string' },
    'prefill-chunk': { type: 'string' },
    'max-binding': { type: 'string', default: DEFAULT_MAX_BINDING },
    'max-buffer': { type: 'string', default: DEFAULT_MAX_BUFFER },
    json: { type: 'boolean', default: false },
  });
  if (values.model === undefined) throw new UsageError('--model is required');
  if (values['device-memory'] === undefined) throw new UsageError('--device-memory is required (e.g. 24GiB)');
  const dtype = values.dtype!;
  if (!(PLAN_DTYPES as readonly string[]).includes(dtype)) throw new UsageError(`--dtype must be one of ${PLAN_DTYPES.join(', ')}, got "${dtype}"`);
  if (!(dtype in FORMATS)) throw new UsageError(`--dtype ${dtype} is not available in this build (have ${Object.keys(FORMATS).join(', ')})`);
  const { name, config } = loadConfig(values.model);
  const context = intArg('context', values.context, defaultContext(config.maxSeqLen), 1, config.maxSeqLen);
  const memories = values['device-memory'].split(',').map((s) => sizeArg('device-memory', s, true));
  const nDevices = intArg('devices', values.devices, memories.length, 1, config.nLayers);
  if (memories.length > 1 && memories.length !== nDevices) {
    throw new UsageError(`--device-memory gives ${memories.length} sizes for --devices ${nDevices}`);
  }
  const maxBindingBytes = sizeArg('max-binding', values['max-binding']!, true);
  const maxBufferBytes = sizeArg('max-buffer', values['max-buffer']!, true);
  const devices: DeviceBudget[] = Array.from({ length: nDevices }, (_, i) => ({
    memoryBytes: memories[memories.length > 1 ? i : 0]!, maxBindingBytes, maxBufferBytes,
  }));
  const kvDtype = choiceArg('kv-dtype', values['kv-dtype'], ['f16', 'f32'] as const);
  const kvBudgetBytes = sizeArg('kv-budget', values['kv-budget'], true);
  const prefillChunk = intArg('prefill-chunk', values['prefill-chunk'], RUNTIME_DEFAULTS.prefillChunk, 1, 1 << 16);

  let plan: Plan;
  try {
    plan = planModel({ config, dtype: dtype as WeightFormat, context, devices, kvBudgetBytes, prefillChunk, kvDtype });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  process.stdout.write(formatPlan(name, dtype, context, plan, devices));
  if (values.json) {
    const { fits, devices: ds, ...rest } = plan;
    process.stdout.write(JSON.stringify({ fits, devices: ds, model: name, dtype, context, ...rest }) + '\n');
  }
  return plan.fits ? 0 : 3;
}

/** The plan as a table, one row per device, and the verdict. */
function formatPlan(model: string, dtype: string, context: number, p: Plan, budgets: DeviceBudget[]): string {
  const kv = p.kv;
  const limits = [...new Set(budgets.map((b) => `${formatSizeFlag(b.maxBindingBytes)} per binding, ${formatSizeFlag(b.maxBufferBytes)} per buffer`))];
  const lines = [
    `${model}, ${dtype} weights, context ${context}, ${p.devices.length} device${p.devices.length > 1 ? 's' : ''} (${limits.join('; ')})`,
    `KV cache: ${kv.positions} positions x ${kv.bytesPerTokenPerLayer / 1024} KiB per position per layer (${kv.kvDtype} K and V) = ${formatGiB(kv.totalBytes)}`,
    '',
  ];
  const head = ['device', 'layers', 'holds', 'weights', 'KV cache', 'scratch', 'total', 'memory', 'use'];
  const rows = p.devices.map((d, i) => [
    String(i), `${d.layers[0]}-${d.layers[1]}`, [d.embedding ? 'embedding' : '', d.head ? 'norm+output' : ''].filter((s) => s).join(', '),
    formatGiB(d.weightBytes), formatGiB(d.kvBytes), formatGiB(d.scratchBytes), formatGiB(d.bytes), formatGiB(d.memoryBytes),
    `${((100 * d.bytes) / d.memoryBytes).toFixed(1)}%`,
  ]);
  const sum = (f: (d: Plan['devices'][number]) => number): string => formatGiB(p.devices.reduce((a, d) => a + f(d), 0));
  const mem = p.devices.reduce((a, d) => a + d.memoryBytes, 0);
  rows.push(['total', '', '', sum((d) => d.weightBytes), sum((d) => d.kvBytes), sum((d) => d.scratchBytes), formatGiB(p.totalBytes), formatGiB(mem),
    `${((100 * p.totalBytes) / mem).toFixed(1)}%`]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const left = new Set([1, 2]); // text columns; numbers align right
  const fmt = (r: string[]): string => r.map((s, c) => (left.has(c) ? s.padEnd(widths[c]!) : s.padStart(widths[c]!))).join('  ').trimEnd();
  lines.push(fmt(head), ...rows.map(fmt), '');
  if (p.fits) {
    lines.push('fits');
  } else {
    lines.push(p.shortfallBytes > 0 ? `does not fit: ${formatGiB(p.shortfallBytes)} more than the devices hold` : 'does not fit');
    for (const v of p.violations) lines.push(`  over a per-buffer limit: ${v}`);
    if (p.suggestions.length) lines.push('would fit:', ...p.suggestions.map((s) => `  - ${s}`));
    else lines.push('no single change found that fits (tried more devices, a smaller context or KV budget, smaller dtypes)');
  }
  return lines.join('\n') + '\n';
}

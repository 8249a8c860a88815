// `bench host` (bench/host.ts): the host cost of one decode step on Llama-2-7B's layer structure, counted on the
// runtime's own forward pass. The counts are exact; the times only have to be there.
import { describe, it, expect, beforeAll } from 'vitest';
import type { GpuContext } from '../runtime/device.ts';
import { testGpu } from './helpers/gpu.ts';
import { benchHost, parseBenchHostArgs } from '../bench/host.ts';
import { formatSpec } from '../kernels/weight-formats.ts';

let ctx: GpuContext | null = null;
beforeAll(async () => {
  ctx = await testGpu();
});

describe('bench host', () => {
  it('7B f16: dispatches per layer and per step of a decode step, fused and not, and the JSON fields', async (t) => {
    if (!ctx) return t.skip();
    const r = await benchHost(ctx, 'llama-2-7b', 'f16', 2);
    const u = await benchHost(ctx, 'llama-2-7b', 'f16', 2, false);
    const f16 = formatSpec('f16');
    const cap = Math.min(ctx.maxBindingBytes, ctx.maxBufferBytes);
    const chunks = (rows: number, K: number) => Math.ceil((rows * f16.rowBytes(K)) / cap); // whole-row chunks, as loadWeights splits
    // q|k|v: one matmul where the three fit one binding, else one per matrix (chunk); w1|w3: fused chunk by chunk,
    // each chunk holding the gate and up rows of its hidden units.
    const qkv = f16.bufferBytes(3 * 4096, 4096) <= cap ? 1 : 3 * chunks(4096, 4096);
    const gateUp = Math.ceil(f16.bufferBytes(2 * 11008, 4096) / cap);
    const w2 = chunks(4096, 11008);
    // Fused: q|k|v (+ norm, rope, kv write), attention, wo, w1|w3 (+ norm, swiglu), w2.
    expect(r.dispatches_per_layer).toBe(qkv + 2 + gateUp + w2);
    // Separate kernels: + attention_norm, rope_kv, ffn_norm, swiglu.
    expect(u.dispatches_per_layer).toBe(r.dispatches_per_layer + 4);
    // + the embedding's chunks, the final norm, the head's chunks, argmax
    expect(r.dispatches_per_step).toBe(32 * r.dispatches_per_layer + 2 * chunks(32000, 4096) + 2);
    expect(r).toMatchObject({ model: 'llama-2-7b', dtype: 'f16', fused: true, layers: 32, set_bind_group_per_step: r.dispatches_per_step });
    expect(u).toMatchObject({ fused: false, set_bind_group_per_step: u.dispatches_per_step });
    expect(r.set_pipeline_per_step).toBeLessThanOrEqual(r.dispatches_per_step);
    for (const k of ['encode_us_per_layer', 'encode_us_per_step', 'submit_us_per_step', 'host_us_per_step'] as const) expect(r[k]).toBeGreaterThan(0);
  });

  it('parses its flags', () => {
    expect(parseBenchHostArgs(['--json', '--models', '7b:q4'])).toMatchObject({ json: true, unfused: false, models: [['llama-2-7b', 'q4']], curve: false });
    expect(parseBenchHostArgs(['--unfused'])).toMatchObject({ unfused: true });
    expect(parseBenchHostArgs(['--decode-curve', '--positions', '63,4095', '--kv-dtype', 'f32'])).toMatchObject({ curve: true, positions: [63, 4095], kvDtype: 'f32' });
    expect(() => parseBenchHostArgs(['--models', '8b:f16'])).toThrow(/unknown model/);
    expect(() => parseBenchHostArgs(['--positions', '5000'])).toThrow(/positions/);
  });
});

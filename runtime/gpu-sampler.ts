// The GPU token picker for a resident decode loop (kernel and its equivalence with the CPU sampler:
// kernels/sample.ts). It owns, per slot (one sequence each), the sampling parameters, the token counts the
// penalties read (prompt + generated) and the generator state; the kernel updates the counts and the state
// itself, so consecutive steps can be recorded and submitted without reading anything back.
//
//   const gs = await createGpuSampler(ctx, vocab, maxRows);
//   gs.setParams(slot, params, promptTokens);      // once per sequence (seed: params.seed ?? a random one)
//   gs.setRowSlots([slotOfRow0, slotOfRow1, ...]);  // only when the batch's rows are not slots 0, 1, ...
//   gs.encode(pass, logits, rows, outIds);          // per step: outIds[r] = the token of logits row r
//
// A step's pick is the token createSampler(params, promptTokens) would return for the same logits after
// accept() of every earlier pick (same seed: same u), within the limits documented in kernels/sample.ts.
// Requests whose logits need the host (constrained-decoding masks, logprobs) keep the CPU sampler.
//
// setParams() and setRowSlots() write through the queue: they apply to command buffers submitted after them,
// so a slot can be refilled while earlier steps are still in flight. GPU memory: 12 * vocab bytes per row
// (counts 4, scratch 8), e.g. 384 KiB per row for a 32000-token vocabulary.

import type { GpuContext } from './device.ts';
import type { SamplingParams } from './generation-types.ts';
import { randomSeed, MAX_SEED } from './sampler.ts';
import { bindGroup, getPipeline, storageBuffer, uniformBuffer, writeBufferPadded } from '../kernels/common.ts';
import { SAMPLE_WGSL, SLOT_PARAMS_BYTES, countsRow, packSampleParams, packSlotParams, prngState } from '../kernels/sample.ts';

export interface GpuSampler {
  readonly vocab: number;
  /** Rows per encode() at most; also the number of slots. */
  readonly maxRows: number;
  /**
   * Starts a sequence in `slot`: its parameters, its seed (params.seed, or a random one), the prompt tokens
   * (repetition penalty) and any tokens it has already generated (counted as accept() would have).
   * The generator starts from the seed, as a fresh createSampler() does.
   */
  setParams(slot: number, params: SamplingParams, promptTokens: readonly number[], generated?: readonly number[]): void;
  /** Row r of the following steps samples for slot slots[r] (the default is slot r). */
  setRowSlots(slots: readonly number[]): void;
  /**
   * Records the pick of `rows` rows of `logits` ((rows, vocab) f32 from offset 0) into `outIds` ((rows) u32,
   * STORAGE usage; 0xffffffff for a row whose logits are all -inf). One dispatch of `rows` workgroups.
   */
  encode(pass: GPUComputePassEncoder, logits: GPUBuffer, rows: number, outIds: GPUBuffer): void;
  /** The state buffers (for tests and diagnostics). */
  readonly buffers: {
    counts: GPUBuffer; // (maxRows, vocab) u32: bit 31 in the prompt, bits 0-30 times generated
    prng: GPUBuffer; // (maxRows) vec4<u32> xoshiro128** state
    scratch: GPUBuffer; // (maxRows, 2, vocab): the last step's logits after penalties and temperature (f32), their masses (u32)
  };
  destroy(): void;
}

export async function createGpuSampler(ctx: GpuContext, vocab: number, maxRows: number): Promise<GpuSampler> {
  const { device } = ctx;
  if (!(vocab > 0 && maxRows > 0)) throw new RangeError(`vocab ${vocab} and maxRows ${maxRows} must be positive`);
  const pipeline = await getPipeline(device, 'sample', SAMPLE_WGSL);
  const uniform = uniformBuffer(device, 'sample.params', packSampleParams(vocab));
  const slotOf = storageBuffer(device, 'sample.slotOf', maxRows * 4);
  const params = storageBuffer(device, 'sample.slotParams', maxRows * SLOT_PARAMS_BYTES);
  const counts = storageBuffer(device, 'sample.counts', maxRows * vocab * 4);
  const prng = storageBuffer(device, 'sample.prng', maxRows * 16);
  const scratch = storageBuffer(device, 'sample.scratch', maxRows * 2 * vocab * 4);
  const owned = [uniform, slotOf, params, counts, prng, scratch];
  // Bind groups by (logits, outIds): made on first use, then reused every step.
  const groups = new WeakMap<GPUBuffer, WeakMap<GPUBuffer, GPUBindGroup>>();

  const setRowSlots = (slots: readonly number[]): void => {
    if (slots.length > maxRows) throw new RangeError(`${slots.length} rows > maxRows ${maxRows}`);
    for (const s of slots) if (!(Number.isInteger(s) && s >= 0 && s < maxRows)) throw new RangeError(`slot ${s} out of range`);
    if (new Set(slots).size !== slots.length) throw new RangeError('two rows share a slot');
    writeBufferPadded(device, slotOf, 0, Uint32Array.from(slots));
  };
  setRowSlots(Array.from({ length: maxRows }, (_, i) => i));

  return {
    vocab,
    maxRows,
    setParams(slot, p, promptTokens, generated = []) {
      if (!(Number.isInteger(slot) && slot >= 0 && slot < maxRows)) throw new RangeError(`slot ${slot} out of range`);
      const seed = p.seed ?? randomSeed();
      if (seed < 0n || seed > MAX_SEED) throw new RangeError(`seed must be in 0..2^63-1, got ${seed}`);
      device.queue.writeBuffer(params, slot * SLOT_PARAMS_BYTES, packSlotParams(p));
      device.queue.writeBuffer(prng, slot * 16, prngState(seed));
      device.queue.writeBuffer(counts, slot * vocab * 4, countsRow(vocab, promptTokens, generated));
    },
    setRowSlots,
    encode(pass, logits, rows, outIds) {
      if (rows === 0) return;
      if (rows > maxRows) throw new RangeError(`${rows} rows > maxRows ${maxRows}`);
      let byOut = groups.get(logits);
      if (!byOut) groups.set(logits, (byOut = new WeakMap()));
      let bg = byOut.get(outIds);
      if (!bg) byOut.set(outIds, (bg = bindGroup(device, pipeline, 'sample', [uniform, logits, slotOf, params, counts, prng, scratch, outIds])));
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(rows);
    },
    buffers: { counts, prng, scratch },
    destroy() {
      for (const b of owned) b.destroy();
    },
  };
}

// The test suite's WebGPU device. Tests may skip only when no adapter exists at all, and then say so
// loudly; under CI (CI=true) or REQUIRE_GPU=1 a missing adapter is a failure, never a skip.
import { createGpuContext, type GpuContext } from '../../runtime/device.ts';
import { getPipeline, bindGroup, uniformBuffer, packParams, uploadBuffer, storageBuffer, readBuffer } from '../../kernels/common.ts';

let ctxPromise: Promise<GpuContext | null> | null = null;

export function testGpu(): Promise<GpuContext | null> {
  if (!ctxPromise) {
    ctxPromise = createGpuContext().catch((e: Error) => {
      if (process.env.CI === 'true' || process.env.REQUIRE_GPU === '1') throw new Error(`GPU tests cannot run: ${e.message}`);
      console.warn(`\n\n*** NO WEBGPU ADAPTER: GPU TESTS ARE SKIPPED (${e.message}) ***\n\n`);
      return null;
    });
  }
  return ctxPromise;
}

/** Runs one kernel once: binding 0 = Step{nTokens, nOut}, 1 = params, 2.. = buffers. */
export async function runKernel(
  ctx: GpuContext, code: string, params: ArrayBuffer, buffers: GPUBuffer[], grid: [number, number?, number?],
  step: { nTokens: number; nOut?: number },
): Promise<void> {
  const { device } = ctx;
  const pipeline = await getPipeline(device, 'test:' + code.length + ':' + hash(code), code);
  const stepBuf = uniformBuffer(device, 'step', packParams([[step.nTokens, 'u32'], [step.nOut ?? 0, 'u32'], [0, 'u32'], [0, 'u32']]));
  const paramBuf = uniformBuffer(device, 'params', params);
  const bg = bindGroup(device, pipeline, 'test', [stepBuf, paramBuf, ...buffers]);
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(grid[0], grid[1] ?? 1, grid[2] ?? 1);
  pass.end();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export { uploadBuffer, storageBuffer, readBuffer };

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

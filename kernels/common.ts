// Shared plumbing for the WGSL kernels: pipeline creation (cached by key), uniform packing, buffers,
// grid sizing and read-back. Every kernel binds `Step` at binding 0: the per-step values (number of
// token rows, number of output rows) written once per forward step; its own static `Params` uniform,
// made at load, is at binding 1.

export const STEP_WGSL = /* wgsl */ `
struct Step {
  nTokens: u32, // token rows in this step (prefill chunk length, or the decode batch)
  nOut: u32,    // rows whose logits are computed
  _pad0: u32,
  _pad1: u32,
}`;

export type FieldType = 'u32' | 'i32' | 'f32';

/** Packs a Params struct of 4-byte scalars (in declaration order) into a 16-byte-aligned buffer. */
export function packParams(fields: [number, FieldType][]): ArrayBuffer {
  const bytes = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
  const buf = new ArrayBuffer(bytes);
  const dv = new DataView(buf);
  fields.forEach(([v, t], i) => {
    if (t === 'f32') dv.setFloat32(i * 4, v, true);
    else if (t === 'i32') dv.setInt32(i * 4, v, true);
    else {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`param ${i} = ${v} is not a u32`);
      dv.setUint32(i * 4, v, true);
    }
  });
  return buf;
}

export function uniformBuffer(device: GPUDevice, label: string, data: ArrayBuffer): GPUBuffer {
  const buf = device.createBuffer({ label, size: data.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buf, 0, data);
  return buf;
}

export function storageBuffer(device: GPUDevice, label: string, bytes: number, extraUsage = 0): GPUBuffer {
  const size = Math.max(16, Math.ceil(bytes / 16) * 16);
  return device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage });
}

/** Uploads `data` into a new storage buffer (padded to 16 bytes). */
export function uploadBuffer(device: GPUDevice, label: string, data: ArrayBufferView): GPUBuffer {
  const buf = storageBuffer(device, label, data.byteLength);
  writeBufferPadded(device, buf, 0, data);
  return buf;
}

/** queue.writeBuffer requires a multiple of 4 bytes; pads the tail with zeros. */
export function writeBufferPadded(device: GPUDevice, buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
  const u8 = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  const main = u8.byteLength & ~3;
  if (main > 0) device.queue.writeBuffer(buf, offset, u8, 0, main);
  if (main < u8.byteLength) {
    const tail = new Uint8Array(4);
    tail.set(u8.subarray(main));
    device.queue.writeBuffer(buf, offset + main, tail);
  }
}

/** Copies `bytes` from a GPU buffer to the host. */
export async function readBuffer(device: GPUDevice, src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, offset, staging, 0, size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/**
 * Compiles `code` and creates its compute pipeline once per (device, key). Compilation errors and
 * warnings are turned into an exception that quotes the offending lines.
 */
export function getPipeline(device: GPUDevice, key: string, code: string): Promise<GPUComputePipeline> {
  let cache = pipelineCache.get(device);
  if (!cache) pipelineCache.set(device, (cache = new Map()));
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      const module = device.createShaderModule({ label: key, code });
      const messages = await shaderMessages(module);
      const bad = messages.filter((m) => m.type === 'error' || m.type === 'warning');
      if (bad.length) throw new Error(`shader ${key} did not compile cleanly:\n${formatMessages(bad, code)}`);
      return device.createComputePipelineAsync({ label: key, layout: 'auto', compute: { module, entryPoint: 'main' } });
    })();
    cache.set(key, p);
  }
  return p;
}

export async function shaderMessages(module: GPUShaderModule): Promise<GPUCompilationMessage[]> {
  const info = await module.getCompilationInfo();
  return [...info.messages];
}

function formatMessages(msgs: GPUCompilationMessage[], code: string): string {
  const lines = code.split('\n');
  return msgs.map((m) => `  ${m.type} at line ${m.lineNum}:${m.linePos}: ${m.message}\n    ${lines[m.lineNum - 1]?.trim() ?? ''}`).join('\n');
}

export function bindGroup(device: GPUDevice, pipeline: GPUComputePipeline, label: string, buffers: GPUBuffer[]): GPUBindGroup {
  return device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
}

/** A 1-D grid of `n` invocations in workgroups of `wg`, folded into (x, y) to stay under 65535 per dimension. */
export function grid1d(n: number, wg: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

/** WGSL for the linear invocation index of a grid1d() dispatch. */
export const LINEAR_INDEX_WGSL = /* wgsl */ `
fn linearIndex(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
  return gid.x + gid.y * nwg.x * wg;
}`;

/**
 * WGSL entry point of an elementwise kernel dispatched with grid1d(count, wg): `body` runs once for each
 * linear index i < count (`count` a WGSL u32 expression). Includes LINEAR_INDEX_WGSL.
 */
export const linearMainWgsl = (wg: number, count: string, body: string): string => /* wgsl */ `${LINEAR_INDEX_WGSL}

@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg, ${wg}u);
  if (i >= ${count}) { return; }
${body}
}`;

/** One dispatch, recorded at load and encoded every step with a grid that may depend on the step. */
export interface Dispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  label: string;
}

export function encodeDispatch(pass: GPUComputePassEncoder, d: Dispatch, x: number, y = 1, z = 1): void {
  if (x === 0 || y === 0 || z === 0) return;
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(x, y, z);
}

// One way to get a GPUDevice in every environment: navigator.gpu in Chrome and Deno, the `webgpu` npm
// package (Dawn) in Node. The device is requested with the adapter's real limits (the defaults cap
// maxBufferSize at 256 MiB) and with `shader-f16` / `subgroups` when the adapter has them.

export interface GpuContext {
  device: GPUDevice;
  adapterName: string; // e.g. "llvmpipe: Mesa 25.0.7" or "swiftshader"
  /** Largest storage buffer binding in bytes (128 MiB on lavapipe): bigger tensors are split. */
  maxBindingBytes: number;
  maxBufferBytes: number;
  maxWorkgroupStorageBytes: number;
  maxWorkgroupInvocations: number;
  hasF16: boolean; // shader-f16
  hasSubgroups: boolean;
  /** Resolves with a readable message when the device is lost (never rejects). */
  lost: Promise<string>;
  destroy(): void;
}

export interface DeviceOptions {
  powerPreference?: GPUPowerPreference;
  /** Caps maxBindingBytes below the adapter's (tests use it to force tensor splitting). */
  maxBindingBytes?: number;
  /** Pretend the adapter has no shader-f16 (tests the f32 fallback). */
  disableF16?: boolean;
}

// Dawn tears down under live devices when the object from create() is garbage-collected (see
// shared/WEBGPU-ON-CPU.md), so the Node GPU object lives here for the life of the process.
let nodeGpu: GPU | null = null;

async function getGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
  if (!isNode) throw new Error('WebGPU is not available: this environment has no navigator.gpu (Chrome 113+, Deno with --unstable-webgpu, or Node with the `webgpu` package)');
  if (!nodeGpu) {
    const specifier = 'webgpu'; // a variable keeps bundlers from pulling Dawn into browser builds
    let mod: { create: (opts: string[]) => GPU; globals: Record<string, unknown> };
    try {
      mod = await import(/* @vite-ignore */ specifier);
    } catch (e) {
      throw new Error(`WebGPU is not available in Node: the \`webgpu\` package could not be loaded (${(e as Error).message}); install it next to llama2-webgpu: npm install webgpu (an optional peer dependency: only Node needs it)`);
    }
    Object.assign(globalThis, mod.globals);
    nodeGpu = mod.create([]);
  }
  return nodeGpu;
}

export async function createGpuContext(opts: DeviceOptions = {}): Promise<GpuContext> {
  const gpu = await getGpu();
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new Error('No WebGPU adapter found. On a machine without a GPU install a software Vulkan driver (Mesa lavapipe 25: see README, "Set-up"); in Chrome enable WebGPU (chrome://flags/#enable-unsafe-webgpu).');
  }
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const adapterName = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ') || 'unknown adapter';
  const wanted: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has('shader-f16') && !opts.disableF16;
  if (hasF16) wanted.push('shader-f16');
  const hasSubgroups = adapter.features.has('subgroups' as GPUFeatureName);
  if (hasSubgroups) wanted.push('subgroups' as GPUFeatureName);
  const L = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: wanted,
    requiredLimits: {
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxBufferSize: L.maxBufferSize,
      maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
    },
  });
  const lost = device.lost.then((i) => `WebGPU device lost (${i.reason}): ${i.message || 'no message'}`);
  device.addEventListener?.('uncapturederror', (ev) => {
    console.error(`WebGPU error: ${(ev as GPUUncapturedErrorEvent).error.message}`);
  });
  // Bindings must also respect 4-byte alignment; keep the cap a multiple of 256 (minStorageBufferOffsetAlignment).
  const cap = Math.min(device.limits.maxStorageBufferBindingSize, opts.maxBindingBytes ?? Infinity);
  return {
    device,
    adapterName: adapterName.trim(),
    maxBindingBytes: Math.floor(cap / 256) * 256,
    maxBufferBytes: device.limits.maxBufferSize,
    maxWorkgroupStorageBytes: device.limits.maxComputeWorkgroupStorageSize,
    maxWorkgroupInvocations: device.limits.maxComputeInvocationsPerWorkgroup,
    hasF16,
    hasSubgroups,
    lost,
    destroy: () => device.destroy(),
  };
}

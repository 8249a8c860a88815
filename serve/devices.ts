// A model's weights on new WebGPU devices, the layers split across them when there are several: the step
// of a served model's assembly that `generate` shares.

import type { TensorProvider } from '../checkpoint/tensor-provider.ts';
import { createGpuContext, type DeviceOptions, type GpuContext } from '../runtime/device.ts';
import { LlamaModel, type ModelOptions } from '../runtime/model.ts';

/** Where a model's layers go: new WebGPU devices. */
export interface DevicePlacement {
  devices?: number; // pipeline-shard the layers over this many devices (default 1)
  deviceMemoryBytes?: number; // memory of each device: plan and check the placement before allocating
  deviceOptions?: DeviceOptions;
}

/**
 * `provider`'s model on new WebGPU devices. A failed load destroys the devices again; a loaded model's
 * devices are the caller's to destroy, after the model.
 */
export async function loadOnDevices(
  provider: TensorProvider, opts: Omit<ModelOptions, 'gpu' | 'gpus' | 'deviceMemoryBytes'> & DevicePlacement,
): Promise<{ model: LlamaModel; gpus: GpuContext[] }> {
  const { devices = 1, deviceOptions, deviceMemoryBytes, ...modelOptions } = opts;
  const gpus: GpuContext[] = [];
  try {
    for (let i = 0; i < devices; i++) gpus.push(await createGpuContext(deviceOptions));
    const model = await LlamaModel.fromProvider(provider, {
      ...modelOptions,
      gpus,
      deviceMemoryBytes: deviceMemoryBytes === undefined ? undefined : gpus.map(() => deviceMemoryBytes),
    });
    return { model, gpus };
  } catch (e) {
    for (const g of gpus) g.destroy(); // a failed load leaves no device behind (a browser tab may retry)
    throw e;
  }
}

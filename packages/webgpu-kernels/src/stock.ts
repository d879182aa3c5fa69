// The backend's own kernels that ours replace, kept so that a case ours does not cover (NCHW data, a
// strided input gradient) still runs, and so that registration can be undone.
import type * as tf from '@tensorflow/tfjs-core';

const stockKernels = new Map<string, tf.KernelConfig>();

/** Remembers tfjs-backend-webgpu's own kernel before ours replaces it (the first one seen wins). */
export function rememberStockKernel(config: tf.KernelConfig | undefined): void {
  if (config && !stockKernels.has(config.kernelName)) stockKernels.set(config.kernelName, config);
}

/** tfjs-backend-webgpu's own kernel for `kernelName`, as registered before ours, if any. */
export function stockKernel(kernelName: string): tf.KernelConfig | undefined {
  return stockKernels.get(kernelName);
}

/** Runs the backend's own kernel; throws, naming the kernel, when there was none to remember. */
export function runStockKernel(
  kernelName: string,
  args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap },
): tf.TensorInfo {
  const stock = stockKernels.get(kernelName);
  if (!stock) throw new Error(`${kernelName} (@sparkmim/webgpu-kernels): no stock webgpu kernel was registered to fall back on`);
  return stock.kernelFunc({ inputs: args.inputs, backend: args.backend, attrs: args.attrs ?? {} }) as tf.TensorInfo;
}

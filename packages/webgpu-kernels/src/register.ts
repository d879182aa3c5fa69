import * as tf from '@tensorflow/tfjs-core';
import { activeMomentsConfig, channelSumsConfig } from './kernels/ActiveMoments';
import { conv2DBackpropFilterConfig } from './kernels/Conv2DBackpropFilter';
import { conv2DBackpropInputConfig, registerInputGradientFlag } from './kernels/Conv2DBackpropInput';
import { rememberStockKernel, stockKernel } from './stock';

/**
 * The kernels {@link registerWebGpuTrainingKernels} registers for `webgpu`, each replacing
 * tfjs-backend-webgpu 4.22's own: `Conv2DBackpropFilter` (a split-K implicit GEMM in WGSL instead of one
 * thread per filter weight) and `Conv2DBackpropInput` (instead of a naive loop: at stride 1 the backend's
 * forward convolution of dy with the flipped filter, strided an implicit GEMM per stride phase). Their
 * gradients are tfjs-core's own (they are tfjs's kernel names), so what trains with the stock kernels
 * trains with these. Also `SparkActiveMoments` and `SparkChannelSums`, kernels of sparkmim's own with no
 * stock counterpart (masked batch norm's statistics and its gradient's per-channel sums, which
 * @sparkmim/sparse-ops runs when they are registered; restoring the stock kernels unregisters them).
 */
export const WEBGPU_TRAINING_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterConfig,
  conv2DBackpropInputConfig,
  activeMomentsConfig,
  channelSumsConfig,
];

/**
 * Registers {@link WEBGPU_TRAINING_KERNELS} for the `webgpu` backend, replacing the backend's own (kept
 * for the cases ours hand back, and for {@link restoreStockWebGpuKernels}). Call it after importing
 * `@tensorflow/tfjs-backend-webgpu` (whose import registers its kernels); calling it again does nothing.
 * Nothing is registered when this package is imported.
 *
 * @example
 * import * as tf from '@tensorflow/tfjs-core';
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { registerWebGpuTrainingKernels } from '@sparkmim/webgpu-kernels';
 * registerWebGpuTrainingKernels();
 * await tf.setBackend('webgpu');
 */
export function registerWebGpuTrainingKernels(): void {
  registerInputGradientFlag();
  for (const config of WEBGPU_TRAINING_KERNELS) {
    const existing = tf.getKernel(config.kernelName, 'webgpu');
    if (existing?.kernelFunc === config.kernelFunc) continue;
    rememberStockKernel(existing);
    if (existing) tf.unregisterKernel(config.kernelName, 'webgpu');
    tf.registerKernel(config);
  }
}

/**
 * Puts tfjs-backend-webgpu's own kernels back in place of {@link WEBGPU_TRAINING_KERNELS} (to measure or
 * compare them); {@link registerWebGpuTrainingKernels} swaps ours in again. Does nothing for a kernel of
 * ours that is not registered.
 *
 * @example
 * restoreStockWebGpuKernels();
 * const stockFilterGradient = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs);
 * registerWebGpuTrainingKernels();
 */
export function restoreStockWebGpuKernels(): void {
  for (const config of WEBGPU_TRAINING_KERNELS) {
    const existing = tf.getKernel(config.kernelName, 'webgpu');
    if (existing?.kernelFunc !== config.kernelFunc) continue;
    tf.unregisterKernel(config.kernelName, 'webgpu');
    const stock = stockKernel(config.kernelName);
    if (stock) tf.registerKernel(stock);
  }
}

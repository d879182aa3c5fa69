import * as tf from '@tensorflow/tfjs-core';

/**
 * The kernels {@link registerWebGpuTrainingKernels} registers for `webgpu`, each replacing tfjs-backend-webgpu
 * 4.22's own. Their gradients are tfjs-core's own (they are tfjs's kernel names), so what trains with the
 * stock kernels trains with these, only faster.
 */
export const WEBGPU_TRAINING_KERNELS: readonly tf.KernelConfig[] = [];

/**
 * Registers {@link WEBGPU_TRAINING_KERNELS} for the `webgpu` backend, replacing the backend's own. Call it
 * after importing `@tensorflow/tfjs-backend-webgpu` (whose import registers its kernels) and before
 * training; calling it again does nothing. Nothing is registered when this package is imported.
 *
 * @example
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { registerWebGpuTrainingKernels } from '@sparkmim/webgpu-kernels';
 * registerWebGpuTrainingKernels();
 * await tf.setBackend('webgpu');
 */
export function registerWebGpuTrainingKernels(): void {
  for (const config of WEBGPU_TRAINING_KERNELS) {
    const existing = tf.getKernel(config.kernelName, 'webgpu');
    if (existing?.kernelFunc === config.kernelFunc) continue;
    if (existing) tf.unregisterKernel(config.kernelName, 'webgpu');
    tf.registerKernel(config);
  }
}

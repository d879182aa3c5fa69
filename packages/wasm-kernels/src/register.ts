import * as tf from '@tensorflow/tfjs-core';
import { batchMatMulConfig, captureStockBatchMatMul } from './kernels/BatchMatMul';
import { conv2DBackpropFilterConfig } from './kernels/Conv2DBackpropFilter';
import { conv2DBackpropInputConfig, depthwiseConv2dNativeBackpropInputConfig } from './kernels/Conv2DBackpropInput';
import { depthwiseConv2dNativeBackpropFilterConfig } from './kernels/DepthwiseConv2dNativeBackpropFilter';
import { captureStockGather, gatherV2Config } from './kernels/GatherV2';
import { captureStockIdentity, identityConfig } from './kernels/Identity';
import { maxPoolGradConfig } from './kernels/MaxPoolGrad';
import { captureStockMean, captureStockSum, meanConfig, sumConfig } from './kernels/Sum';
import { captureStockTile, tileConfig } from './kernels/Tile';
import { captureStockTranspose, transposeConfig } from './kernels/Transpose';
import { unsortedSegmentSumConfig } from './kernels/UnsortedSegmentSum';

/**
 * The kernels {@link registerWasmTrainingKernels} registers for `wasm`: the ones tfjs-backend-wasm 4.22
 * lacks (Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropInput/Filter, UnsortedSegmentSum), the ones it
 * gets wrong (MaxPoolGrad, GatherV2 with batchDims), and Conv2DBackpropInput, which it has but runs about
 * 8x slower than the forward convolution it is rewritten as here, and Identity, which it runs as a copy
 * although tfjs clones every tensor an op saves for its gradient, and Tile, which it runs ~20x slower than a
 * plain loop, and Transpose, ~3x slower than a blocked loop where the permutation swaps two blocks of axes, and Sum,
 * which transposes first to sum over leading axes (and Mean, likewise), and BatchMatMul, 8-45x slower with transposed operands (the
 * products tf.matMul's gradient asks for) than with the operands transposed first. Their gradients are tfjs-core's own
 * (they are tfjs's kernel names), so every op that trains on cpu trains on wasm.
 */
export const WASM_TRAINING_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterConfig,
  conv2DBackpropInputConfig,
  depthwiseConv2dNativeBackpropInputConfig,
  depthwiseConv2dNativeBackpropFilterConfig,
  maxPoolGradConfig,
  unsortedSegmentSumConfig,
  gatherV2Config,
  identityConfig,
  tileConfig,
  transposeConfig,
  sumConfig,
  meanConfig,
  batchMatMulConfig,
];

/**
 * Registers {@link WASM_TRAINING_KERNELS} for the `wasm` backend, replacing the backend's own where it has
 * one. Call it after importing `@tensorflow/tfjs-backend-wasm` (whose import registers its kernels) and
 * before training; calling it again does nothing. Nothing is registered when this package is imported.
 *
 * @example
 * import '@tensorflow/tfjs-backend-wasm';
 * import { registerWasmTrainingKernels } from '@sparkmim/wasm-kernels';
 * registerWasmTrainingKernels();
 * await tf.setBackend('wasm');
 */
export function registerWasmTrainingKernels(): void {
  for (const config of WASM_TRAINING_KERNELS) {
    const existing = tf.getKernel(config.kernelName, 'wasm');
    if (existing?.kernelFunc === config.kernelFunc) continue;
    if (config === gatherV2Config) captureStockGather(existing);
    if (config === identityConfig) captureStockIdentity(existing);
    if (config === tileConfig) captureStockTile(existing);
    if (config === transposeConfig) captureStockTranspose(existing);
    if (config === sumConfig) captureStockSum(existing);
    if (config === meanConfig) captureStockMean(existing);
    if (config === batchMatMulConfig) captureStockBatchMatMul(existing);
    if (existing) tf.unregisterKernel(config.kernelName, 'wasm');
    tf.registerKernel(config);
  }
}

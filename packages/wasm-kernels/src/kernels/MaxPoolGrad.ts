// dL/dx of maxPool for wasm. tfjs-backend-wasm 4.22's MaxPoolGrad gave wrong values in issue 17's probe;
// this one routes each output's gradient to the first maximum of its window in row-major order, as
// tfjs-cpu and PyTorch do (ties matter: after a ReLU, windows of zeros are common).
import * as tf from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackendLike } from '../compose';

function maxPoolGrad({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { dy, input } = inputs as Record<string, tf.TensorInfo>;
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as tf.MaxPoolGradAttrs;
  const wasm = backend as WasmBackendLike;
  const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode);
  const dx = wasm.makeOutput(input.shape, 'float32');
  // Views taken after makeOutput: allocating may grow the wasm heap, which detaches earlier views.
  const dxValues = wasm.typedArrayFromHeap(dx) as Float32Array;
  const xValues = wasm.typedArrayFromHeap(input) as Float32Array;
  const dyValues = wasm.typedArrayFromHeap(dy) as Float32Array;
  dxValues.fill(0);
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth, strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const { top, left } = info.padInfo;
  for (let b = 0; b < batchSize; b++) {
    for (let y = 0; y < outHeight; y++) {
      const rowStart = y * strideHeight - top;
      const rowFrom = Math.max(0, rowStart);
      const rowTo = Math.min(inHeight, rowStart + filterHeight);
      for (let x = 0; x < outWidth; x++) {
        const colStart = x * strideWidth - left;
        const colFrom = Math.max(0, colStart);
        const colTo = Math.min(inWidth, colStart + filterWidth);
        const dyBase = ((b * outHeight + y) * outWidth + x) * channels;
        for (let c = 0; c < channels; c++) {
          let best = -Infinity;
          let bestIndex = -1;
          for (let row = rowFrom; row < rowTo; row++) {
            for (let col = colFrom; col < colTo; col++) {
              const index = ((b * inHeight + row) * inWidth + col) * channels + c;
              const value = xValues[index];
              if (value > best || bestIndex < 0) {
                best = value;
                bestIndex = index;
              }
            }
          }
          if (bestIndex >= 0) dxValues[bestIndex] += dyValues[dyBase + c];
        }
      }
    }
  }
  return dx;
}

/** `MaxPoolGrad` for wasm: the gradient of `tf.maxPool`. */
export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: 'MaxPoolGrad',
  backendName: 'wasm',
  kernelFunc: maxPoolGrad as unknown as tf.KernelFunc,
};

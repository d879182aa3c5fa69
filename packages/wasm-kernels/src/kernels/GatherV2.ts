// gather for wasm with batchDims > 0, which tfjs-backend-wasm 4.22 gets wrong (issue 17's probe); gathers
// without batch dimensions keep the backend's own kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from '../compose';

/** The backend's own GatherV2, captured when ours is registered. */
let stockGather: tf.KernelFunc | undefined;
let stockSetup: tf.KernelSetupFunc | undefined;

export function captureStockGather(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== gatherV2Config.kernelFunc) {
    stockGather = kernel.kernelFunc;
    stockSetup = kernel.setupFunc;
  }
}

function gatherV2(args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, indices } = inputs as Record<string, tf.TensorInfo>;
  const { axis, batchDims } = attrs as unknown as tf.GatherV2Attrs;
  if (!batchDims && stockGather) return stockGather(args as never) as tf.TensorInfo;
  const parsedAxis = tf.util.parseAxisParam(axis, x.shape)[0];
  const batch = batchDims < 0 ? batchDims + indices.shape.length : batchDims;
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, parsedAxis, batch);
  const { batchSize, outerSize, dimSize, sliceSize } = info;
  const wasm = backend as WasmBackendLike;
  const out = wasm.makeOutput(info.outputShape, x.dtype);
  const outValues = wasm.typedArrayFromHeap(out);
  const xValues = wasm.typedArrayFromHeap(x);
  const indexValues = wasm.typedArrayFromHeap(indices);
  const perBatch = indexValues.length / batchSize;
  // x as [batchSize, outerSize, dimSize, sliceSize], indices as [batchSize, perBatch].
  for (let b = 0; b < batchSize; b++) {
    for (let o = 0; o < outerSize; o++) {
      for (let k = 0; k < perBatch; k++) {
        const index = indexValues[b * perBatch + k];
        if (index < 0 || index >= dimSize) {
          throw new Error(`GatherV2 (@sparkmim/wasm-kernels): index ${index} is not in [0, ${dimSize - 1}]`);
        }
        const from = ((b * outerSize + o) * dimSize + index) * sliceSize;
        const to = ((b * outerSize + o) * perBatch + k) * sliceSize;
        outValues.set(xValues.subarray(from, from + sliceSize), to);
      }
    }
  }
  return out;
}

/** `GatherV2` for wasm: the backend's own kernel without batch dimensions, a correct loop with them. */
export const gatherV2Config: tf.KernelConfig = {
  kernelName: 'GatherV2',
  backendName: 'wasm',
  kernelFunc: gatherV2 as unknown as tf.KernelFunc,
  // The stock kernel binds its C++ function when the backend starts; it still has to when it is ours
  // that is registered then.
  setupFunc: (backend) => stockSetup?.(backend),
};

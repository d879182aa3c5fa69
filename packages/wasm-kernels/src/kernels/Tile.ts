// Tile for wasm as one pass over the heap. tfjs-backend-wasm 4.22's Tile took ~12 ms of CPU to broadcast
// an [1, 1, 1, 8] tensor to [8, 48, 48, 8] (147k values; this loop: under 1 ms), and tfjs-core's
// broadcastTo, which masked batch norm's statistics go through, is a Tile.
import * as tf from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from '../compose';

let stockTile: tf.KernelFunc | undefined;

export function captureStockTile(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== tileConfig.kernelFunc) stockTile = kernel.kernelFunc;
}

function tile(args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x } = args.inputs as Record<string, tf.TensorInfo>;
  const { reps } = args.attrs as unknown as tf.TileAttrs;
  if ((x.dtype === 'string' || x.shape.length === 0) && stockTile) return stockTile(args as never) as tf.TensorInfo;
  const backend = args.backend as WasmBackendLike;
  const rank = x.shape.length;
  const outShape = x.shape.map((dim, axis) => dim * reps[axis]);
  const out = backend.makeOutput(outShape, x.dtype);
  const outValues = backend.typedArrayFromHeap(out);
  const xValues = backend.typedArrayFromHeap(x);
  if (outValues.length === 0) return out;
  const xStrides = tf.util.computeStrides(x.shape);
  const lastDim = x.shape[rank - 1];
  const rowLength = outShape[rank - 1];
  const rowCount = outValues.length / rowLength;
  // One output row (all axes but the last fixed) at a time; `index` counts the leading axes like an odometer.
  const index = new Array<number>(Math.max(0, rank - 1)).fill(0);
  for (let row = 0; row < rowCount; row++) {
    let from = 0;
    for (let axis = 0; axis < rank - 1; axis++) from += (index[axis] % x.shape[axis]) * xStrides[axis];
    const to = row * rowLength;
    for (let k = 0; k < rowLength; k++) outValues[to + k] = xValues[from + (k % lastDim)];
    for (let axis = rank - 2; axis >= 0; axis--) {
      if (++index[axis] < outShape[axis]) break;
      index[axis] = 0;
    }
  }
  return out;
}

/** `Tile` for wasm (numbers and booleans; strings keep the backend's own kernel). */
export const tileConfig: tf.KernelConfig = {
  kernelName: 'Tile',
  backendName: 'wasm',
  kernelFunc: tile as unknown as tf.KernelFunc,
};

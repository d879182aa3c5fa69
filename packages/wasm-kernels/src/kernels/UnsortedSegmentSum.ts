// unsortedSegmentSum for wasm (missing in tfjs-backend-wasm 4.22): the gradient of gather, which the
// sparse row ops train through. A loop over the wasm heap: one pass over x, no intermediate.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackendLike } from '../compose';

function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { x, segmentIds } = inputs as Record<string, tf.TensorInfo>;
  const { numSegments } = attrs as unknown as tf.UnsortedSegmentSumAttrs;
  const wasm = backend as WasmBackendLike;
  // segmentIds covers the leading axes of x; each id picks the output row the slice after them adds to.
  const idRank = segmentIds.shape.length;
  if (segmentIds.shape.some((dim, axis) => dim !== x.shape[axis])) {
    throw new Error(
      `UnsortedSegmentSum (@sparkmim/wasm-kernels): segmentIds [${segmentIds.shape.join(', ')}] must be a prefix of x's shape [${x.shape.join(', ')}]`,
    );
  }
  const rowShape = x.shape.slice(idRank);
  const rowSize = tf.util.sizeFromShape(rowShape);
  const out = wasm.makeOutput([numSegments, ...rowShape], x.dtype);
  const outValues = wasm.typedArrayFromHeap(out);
  const xValues = wasm.typedArrayFromHeap(x);
  const ids = wasm.typedArrayFromHeap(segmentIds);
  outValues.fill(0);
  for (let row = 0; row < ids.length; row++) {
    const segment = ids[row];
    // TensorFlow drops rows whose id is negative or >= numSegments.
    if (segment < 0 || segment >= numSegments) continue;
    const from = row * rowSize;
    const to = segment * rowSize;
    for (let k = 0; k < rowSize; k++) outValues[to + k] += xValues[from + k];
  }
  return out;
}

/** `UnsortedSegmentSum` for wasm (float32 and int32). */
export const unsortedSegmentSumConfig: tf.KernelConfig = {
  kernelName: 'UnsortedSegmentSum',
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc,
};

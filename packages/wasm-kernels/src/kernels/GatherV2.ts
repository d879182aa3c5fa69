// gather for wasm. tfjs-backend-wasm 4.22's own kernel gets batchDims > 0 wrong (issue 17's probe) and costs
// about 170 ns per gathered element (a strided C++ loop per element plus a readSync of the indices), which
// alone made the sparse row path (sparse-ops' gatherRows: whole rows of a [sites, channels] matrix, axis 0)
// slower than masked-dense. Both cases here are loops over the wasm heap that copy one contiguous slice per
// index with one typed-array `set`. Other gathers without batch dimensions (another axis; bool, complex64,
// string) keep the backend's own kernel.
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

/**
 * Throws tfjs's own GatherV2 error (the message stock wasm and tfjs-cpu give) for the first index outside
 * `[0, dimSize - 1]`. Checked before the output is allocated, so a throw leaves no buffer behind.
 */
function checkIndices(indexValues: tf.backend_util.TypedArray, dimSize: number): void {
  for (let i = 0; i < indexValues.length; i++) {
    const index = indexValues[i];
    if (!(index >= 0 && index <= dimSize - 1)) {
      throw new Error(`GatherV2: the index value ${index} is not in [0, ${dimSize - 1}]`);
    }
  }
}

/**
 * Axis 0 without batch dimensions: output `[...indices.shape, ...x.shape.slice(1)]`, row `i` of it a copy of
 * row `indices[i]` of `x` (rows are contiguous, so one `set` each).
 */
function gatherRows(wasm: WasmBackendLike, x: tf.TensorInfo, indices: tf.TensorInfo): tf.TensorInfo {
  const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
  checkIndices(wasm.typedArrayFromHeap(indices), x.shape[0]);
  const out = wasm.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  // Views taken after makeOutput: allocating can grow the wasm memory, which detaches older views.
  const source = wasm.typedArrayFromHeap(x);
  const target = wasm.typedArrayFromHeap(out);
  const index = wasm.typedArrayFromHeap(indices);
  if (rowSize === 0) return out;
  if (rowSize < ROW_COPY_MIN) {
    // Short rows (an image's 3 channels): a loop beats any per-row call (stem at 224: ~3 ms against ~22).
    for (let i = 0; i < index.length; i++) {
      const from = index[i] * rowSize;
      const to = i * rowSize;
      for (let k = 0; k < rowSize; k++) target[to + k] = source[from + k];
    }
    return out;
  }
  // Longer rows: copyWithin over one view of the whole heap (float32 and int32 both move as 4-byte words)
  // is a memmove per row without the subarray that `set` needs, ~2-6x faster for rows of 16-512 values.
  const heap = new Int32Array(target.buffer);
  const sourceStart = source.byteOffset / 4;
  const targetStart = target.byteOffset / 4;
  for (let i = 0; i < index.length; i++) {
    const from = sourceStart + index[i] * rowSize;
    heap.copyWithin(targetStart + i * rowSize, from, from + rowSize);
  }
  return out;
}

/** Row length (values) from which one copyWithin per row beats an element loop (measured in Node 20). */
const ROW_COPY_MIN = 16;

function gatherV2(args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, indices } = inputs as Record<string, tf.TensorInfo>;
  const { axis, batchDims } = attrs as unknown as tf.GatherV2Attrs;
  const wasm = backend as WasmBackendLike;
  const parsedAxis = tf.util.parseAxisParam(axis, x.shape)[0];
  const batch = batchDims < 0 ? batchDims + indices.shape.length : batchDims;
  if (!batch) {
    if (parsedAxis === 0 && (x.dtype === 'float32' || x.dtype === 'int32')) return gatherRows(wasm, x, indices);
    if (stockGather) return stockGather(args as never) as tf.TensorInfo;
  }
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, parsedAxis, batch);
  const { batchSize, outerSize, dimSize, sliceSize } = info;
  checkIndices(wasm.typedArrayFromHeap(indices), dimSize);
  const out = wasm.makeOutput(info.outputShape, x.dtype);
  const outValues = wasm.typedArrayFromHeap(out);
  const xValues = wasm.typedArrayFromHeap(x);
  const indexValues = wasm.typedArrayFromHeap(indices);
  const perBatch = indexValues.length / batchSize;
  // x as [batchSize, outerSize, dimSize, sliceSize], indices as [batchSize, perBatch].
  for (let b = 0; b < batchSize; b++) {
    for (let o = 0; o < outerSize; o++) {
      for (let k = 0; k < perBatch; k++) {
        const from = ((b * outerSize + o) * dimSize + indexValues[b * perBatch + k]) * sliceSize;
        const to = ((b * outerSize + o) * perBatch + k) * sliceSize;
        outValues.set(xValues.subarray(from, from + sliceSize), to);
      }
    }
  }
  return out;
}

/**
 * `GatherV2` for wasm: float32 and int32 gathers on axis 0 without batch dimensions (what
 * `tf.gather(rows, indices)` runs) copy one whole row per index over the heap, ~40x faster than the
 * backend's own kernel; gathers with batch dimensions are a loop over batch, outer index and index (any
 * dtype); the rest keep the backend's own kernel. An index outside `[0, x.shape[axis] - 1]` throws tfjs's
 * own error, e.g. `GatherV2: the index value 5 is not in [0, 2]`.
 */
export const gatherV2Config: tf.KernelConfig = {
  kernelName: 'GatherV2',
  backendName: 'wasm',
  kernelFunc: gatherV2 as unknown as tf.KernelFunc,
  // The stock kernel binds its C++ function when the backend starts; it still has to when it is ours
  // that is registered then.
  setupFunc: (backend) => stockSetup?.(backend),
};

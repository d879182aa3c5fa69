// Transpose for wasm as loops over the heap. tfjs-backend-wasm 4.22's kernel moves one value at a time
// through a generic index computation: ~10 ns per value, 23 ms for a [9, 512, 512] filter swapped tap by
// tap, which the row path's convolution gradients need once per layer and step. Every permutation that
// swaps two blocks of axes (after merging axes that stay neighbours and dropping axes of size 1) is
// `[B, R, C, K] -> [B, C, R, K]`: a blocked 2-D transpose per batch when K is 1, a copy of K-value runs
// otherwise. Other permutations, and dtypes other than float32 and int32, keep the backend's own kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackendLike } from '../compose';

let stockTranspose: tf.KernelFunc | undefined;
let stockSetup: tf.KernelSetupFunc | undefined;

export function captureStockTranspose(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== transposeConfig.kernelFunc) {
    stockTranspose = kernel.kernelFunc;
    stockSetup = kernel.setupFunc;
  }
}

/** Edge of the square tiles the 2-D transpose walks, so that reads and writes both stay in cache. */
const TILE = 32;

/**
 * `perm` on `shape` as `[B, R, C, K]` (output `[B, C, R, K]`), or undefined when it is not a swap of two
 * blocks of axes. A permutation that moves nothing gives `R = 1` or `C = 1` (a plain copy).
 */
export function asBlockSwap(shape: readonly number[], perm: readonly number[]): [number, number, number, number] | undefined {
  // The axes that matter, in output order, merged where an output neighbour is also a source neighbour.
  const groups: { first: number; last: number; size: number }[] = [];
  for (const axis of perm) {
    if (shape[axis] === 1) continue;
    const previous = groups[groups.length - 1];
    if (previous && axis === previous.last + 1) {
      previous.last = axis;
      previous.size *= shape[axis];
    } else {
      groups.push({ first: axis, last: axis, size: shape[axis] });
    }
  }
  const sizes = groups.map((group) => group.size);
  // Each group's place in the source order.
  const sourceOrder = groups.map((group) => groups.filter((other) => other.first < group.first).length);
  const key = sourceOrder.join(',');
  if (sourceOrder.every((place, index) => place === index)) return [1, 1, tf.util.sizeFromShape(shape as number[]), 1];
  if (key === '1,0') return [1, sizes[1], sizes[0], 1];
  if (key === '0,2,1') return [sizes[0], sizes[2], sizes[1], 1];
  if (key === '1,0,2') return [1, sizes[1], sizes[0], sizes[2]];
  if (key === '0,2,1,3') return [sizes[0], sizes[2], sizes[1], sizes[3]];
  return undefined;
}

/**
 * The `rows x columns` matrix at `source[sourceOffset]` (row-major) written transposed at
 * `target[targetOffset]`, in square tiles.
 */
export function transposeMatrix(
  source: tf.backend_util.TypedArray,
  sourceOffset: number,
  target: tf.backend_util.TypedArray,
  targetOffset: number,
  rows: number,
  columns: number,
): void {
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < columns; c0 += TILE) {
      const c1 = Math.min(columns, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        const from = sourceOffset + r * columns;
        for (let c = c0; c < c1; c++) target[targetOffset + c * rows + r] = source[from + c];
      }
    }
  }
}

function transpose(args: KernelArgs): tf.TensorInfo {
  const { x } = args.inputs as Record<string, tf.TensorInfo>;
  const { perm } = args.attrs as unknown as tf.TransposeAttrs;
  const swap = x.dtype === 'float32' || x.dtype === 'int32' ? asBlockSwap(x.shape, perm) : undefined;
  if (!swap && stockTranspose) return stockTranspose(args as never) as tf.TensorInfo;
  if (!swap) throw new Error(`Transpose (@sparkmim/wasm-kernels): the backend's own kernel was not captured for perm [${perm.join(', ')}]`);
  const backend = args.backend as WasmBackendLike;
  const out = backend.makeOutput(
    perm.map((axis) => x.shape[axis]),
    x.dtype,
  );
  // Views taken after makeOutput: allocating can grow the wasm memory, which detaches older views.
  const source = backend.typedArrayFromHeap(x);
  const target = backend.typedArrayFromHeap(out);
  const [batch, rows, columns, run] = swap;
  const plane = rows * columns * run;
  if (run === 1) {
    for (let b = 0; b < batch; b++) transposeMatrix(source, b * plane, target, b * plane, rows, columns);
    return out;
  }
  // Runs of 16 values and more move with copyWithin over one view of the heap (4-byte words), as GatherV2's.
  const heap = run >= 16 ? new Int32Array(target.buffer) : undefined;
  const sourceStart = source.byteOffset / 4;
  const targetStart = target.byteOffset / 4;
  for (let b = 0; b < batch; b++) {
    const offset = b * plane;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        const from = offset + (r * columns + c) * run;
        const to = offset + (c * rows + r) * run;
        if (heap) heap.copyWithin(targetStart + to, sourceStart + from, sourceStart + from + run);
        else for (let k = 0; k < run; k++) target[to + k] = source[from + k];
      }
    }
  }
  return out;
}

/** `Transpose` for wasm: block swaps of float32 and int32 tensors; the rest keep the backend's kernel. */
export const transposeConfig: tf.KernelConfig = {
  kernelName: 'Transpose',
  backendName: 'wasm',
  kernelFunc: transpose as unknown as tf.KernelFunc,
  // The stock kernel binds its C++ function when the backend starts, and other stock kernels (Sum, Mean,
  // ...) call it directly: that binding must still happen when ours is the registered one.
  setupFunc: (backend) => stockSetup?.(backend),
};

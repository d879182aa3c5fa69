// Sum and Mean for wasm over leading axes as one pass over the heap. tfjs-backend-wasm 4.22 sums only over the
// innermost axes, so a sum over the rows of `[N, C]` (batch norm's statistics and gradients, over
// `[1, 1, N, C]` or `[B, H, W, C]`, and the row path's) first transposes the whole tensor with its generic
// transpose: ~12 ms for `[10240, 64]`, against ~1 ms for this loop. Sums over innermost axes, and of
// dtypes other than float32, keep the backend's own kernel.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelArgs, WasmBackendLike } from '../compose';

let stockSum: tf.KernelFunc | undefined;
let stockSetup: tf.KernelSetupFunc | undefined;
let stockMean: tf.KernelFunc | undefined;
let stockMeanSetup: tf.KernelSetupFunc | undefined;

export function captureStockSum(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== sumConfig.kernelFunc) {
    stockSum = kernel.kernelFunc;
    stockSetup = kernel.setupFunc;
  }
}

export function captureStockMean(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== meanConfig.kernelFunc) {
    stockMean = kernel.kernelFunc;
    stockMeanSetup = kernel.setupFunc;
  }
}

/**
 * `[rows, columns]` when the reduced axes are the leading ones (axes of size 1 before them do not count),
 * so the sum runs over `rows` contiguous blocks of `columns` values; undefined otherwise, or when nothing
 * is kept (a full sum, the backend's inner reduction is fine).
 */
export function asLeadingReduction(shape: readonly number[], axes: readonly number[]): [number, number] | undefined {
  const reduced = new Set(axes);
  const last = Math.max(...axes);
  for (let axis = 0; axis < last; axis++) if (!reduced.has(axis) && shape[axis] !== 1) return undefined;
  const rows = tf.util.sizeFromShape(shape.slice(0, last + 1) as number[]);
  const columns = tf.util.sizeFromShape(shape.slice(last + 1) as number[]);
  return last === shape.length - 1 ? undefined : [rows, columns];
}

/**
 * Sum (`mean` false) or mean over the reduced axes of `x` when they are its leading ones (float32): one
 * pass over the heap, accumulated in float64 (tfjs-cpu's reductions accumulate in JavaScript numbers too)
 * and rounded once; undefined when the backend's own kernel should run.
 */
function leadingReduction(args: KernelArgs, mean: boolean): tf.TensorInfo | undefined {
  const { x } = args.inputs as Record<string, tf.TensorInfo>;
  const { axis, keepDims } = args.attrs as unknown as tf.SumAttrs;
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const leading = x.dtype === 'float32' && axes.length > 0 ? asLeadingReduction(x.shape, axes) : undefined;
  if (!leading) return undefined;
  const [rows, columns] = leading;
  const kept = x.shape.map((dim, index) => (axes.includes(index) ? 1 : dim));
  const backend = args.backend as WasmBackendLike;
  const out = backend.makeOutput(keepDims ? kept : x.shape.filter((_, index) => !axes.includes(index)), 'float32');
  const source = backend.typedArrayFromHeap(x);
  const target = backend.typedArrayFromHeap(out);
  const totals = new Float64Array(columns);
  for (let row = 0; row < rows; row++) {
    const offset = row * columns;
    for (let column = 0; column < columns; column++) totals[column] += source[offset + column];
  }
  if (mean) for (let column = 0; column < columns; column++) totals[column] /= rows;
  target.set(totals);
  return out;
}

function sum(args: KernelArgs): tf.TensorInfo {
  const out = leadingReduction(args, false);
  if (out) return out;
  if (!stockSum) throw new Error("Sum (@sparkmim/wasm-kernels): the backend's own kernel was not captured");
  return stockSum(args as never) as tf.TensorInfo;
}

function mean(args: KernelArgs): tf.TensorInfo {
  const out = leadingReduction(args, true);
  if (out) return out;
  if (!stockMean) throw new Error("Mean (@sparkmim/wasm-kernels): the backend's own kernel was not captured");
  return stockMean(args as never) as tf.TensorInfo;
}

/** `Sum` for wasm: float32 sums over leading axes; the rest keep the backend's own kernel. */
export const sumConfig: tf.KernelConfig = {
  kernelName: 'Sum',
  backendName: 'wasm',
  kernelFunc: sum as unknown as tf.KernelFunc,
  // The stock kernel binds its C++ function when the backend starts (and other stock kernels call it).
  setupFunc: (backend) => stockSetup?.(backend),
};

/**
 * `Mean` for wasm: float32 means over leading axes (tf.moments over `[B, H, W]`, the decoder's batch norms),
 * which the backend's own kernel transposes first, as Sum; the rest keep the backend's own kernel.
 */
export const meanConfig: tf.KernelConfig = {
  kernelName: 'Mean',
  backendName: 'wasm',
  kernelFunc: mean as unknown as tf.KernelFunc,
  setupFunc: (backend) => stockMeanSetup?.(backend),
};

import * as tf from '@tensorflow/tfjs-core';
import { maskOrDense, type ActiveMask } from './active-sites';
import { pair, resolveSides, toTfPadding, type Padding2d } from './padding';

export interface SparsePool2dOptions {
  /** Window size, one number or `[height, width]`. */
  filterSize: number | [number, number];
  /** Stride; defaults to the window size, as in PyTorch. */
  strides?: number | [number, number];
  /** Padding, PyTorch style. Default 0. */
  pad?: Padding2d;
  /** `[B, h, w, 1]` (or ActiveSites), 1 = active. Omitted: the ordinary dense pooling. */
  active?: ActiveMask;
}

/**
 * Max pooling whose output is zero at inactive sites (official SparK's `SparseMaxPooling`). Padding
 * counts as -infinity, as in PyTorch.
 *
 * @param x `[B, H, W, C]`, zero at inactive sites
 * @returns `[B, H', W', C]`
 *
 * @example
 * const y = sparseMaxPool2d(x, { filterSize: 3, strides: 2, pad: 1, active });
 */
export function sparseMaxPool2d(x: tf.Tensor4D, options: SparsePool2dOptions): tf.Tensor4D {
  const { filterSize, strides = filterSize, pad = 0, active } = options;
  return tf.tidy(() => {
    const y = tf.maxPool(x, pair(filterSize), pair(strides), toTfPadding(pad));
    const mask = maskOrDense(active, y, 'sparseMaxPool2d');
    return mask ? tf.mul(y, mask) : y;
  });
}

export interface SparseAvgPool2dOptions extends SparsePool2dOptions {
  /**
   * Whether padded zeros count in the average (PyTorch's `count_include_pad`). Default true. Applies to
   * `'same'` padding too, which is first resolved to TensorFlow's explicit sides.
   */
  countIncludePad?: boolean;
}

/**
 * Average pooling whose output is zero at inactive sites (official SparK's `SparseAvgPooling`).
 *
 * @param x `[B, H, W, C]`, zero at inactive sites
 * @returns `[B, H', W', C]`
 *
 * @example
 * const y = sparseAvgPool2d(x, { filterSize: 2, active });
 */
export function sparseAvgPool2d(x: tf.Tensor4D, options: SparseAvgPool2dOptions): tf.Tensor4D {
  const { filterSize, strides = filterSize, pad = 0, countIncludePad = true, active } = options;
  const windowSize = pair(filterSize);
  const stride = pair(strides);
  return tf.tidy(() => {
    const [top, bottom, left, right] = resolveSides(pad, x.shape, windowSize, stride);
    // Padding is applied here and tfjs pools with 'valid', which divides by the whole window. tfjs's own
    // padded avgPool divides by the in-bounds count, but its gradient (AvgPoolGrad, tfjs 4.22) divides by
    // the whole window, so it would train wrongly; the in-bounds rescale below has a correct gradient.
    const padded = top + bottom + left + right > 0;
    const paddings: [number, number][] = [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ];
    let y = tf.avgPool(padded ? tf.pad(x, paddings) : x, windowSize, stride, 'valid');
    if (padded && !countIncludePad) {
      const [, height, width] = x.shape;
      // The in-bounds fraction of each window: a constant, so the gradient is the rescaled window mean's.
      const inBoundsFraction = tf.avgPool(tf.pad(tf.ones([1, height, width, 1]), paddings) as tf.Tensor4D, windowSize, stride, 'valid');
      y = tf.div(y, inBoundsFraction);
    }
    const mask = maskOrDense(active, y, 'sparseAvgPool2d');
    return mask ? tf.mul(y, mask) : y;
  });
}

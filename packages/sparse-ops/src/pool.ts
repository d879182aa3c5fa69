import * as tf from '@tensorflow/tfjs-core';
import { activeAt, type ActiveMask } from './active-sites';
import { explicitSides, pair, toTfPadding, type Padding2d } from './padding';

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
    return active ? tf.mul(y, activeAt(active, y, 'sparseMaxPool2d')) : y;
  });
}

export interface SparseAvgPool2dOptions extends SparsePool2dOptions {
  /** Whether padded zeros count in the average (PyTorch's `count_include_pad`). Default true. */
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
  return tf.tidy(() => {
    const sides = explicitSides(pad);
    let y: tf.Tensor4D;
    if (sides && sides.some((side) => side > 0) && countIncludePad) {
      // PyTorch divides by the full window when padding counts; tfjs excludes padding, so pad first.
      const padded = tf.pad(x, [[0, 0], [sides[0], sides[1]], [sides[2], sides[3]], [0, 0]]);
      y = tf.avgPool(padded, pair(filterSize), pair(strides), 'valid');
    } else {
      y = tf.avgPool(x, pair(filterSize), pair(strides), toTfPadding(pad));
    }
    return active ? tf.mul(y, activeAt(active, y, 'sparseAvgPool2d')) : y;
  });
}

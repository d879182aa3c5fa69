import * as tf from '@tensorflow/tfjs-core';
import { assertImageShape, assertPatchSizeDivides, assertPositiveInteger, formatShape } from './checks';

/** patchify without argument checks, for callers that checked already. */
export function patchifyUnchecked(images: tf.Tensor, patchSize: number): tf.Tensor3D {
  const [batch, height, width, channels] = images.shape as number[];
  const gridH = height / patchSize;
  const gridW = width / patchSize;
  // NHWC is [B, h, p, w, p, C] in memory. SparK's order is 'bhwpqc', which only swaps the row-in-patch and
  // patch-column axes; merging B with h and p with C makes that a rank-4 transpose (cheaper than rank 6,
  // and supported with gradients on every backend).
  const rows = tf.reshape(images, [batch * gridH, patchSize, gridW, patchSize * channels]);
  const patches = tf.transpose(rows, [0, 2, 1, 3]);
  return tf.reshape(patches, [batch, gridH * gridW, patchSize * patchSize * channels]);
}

/** unpatchify without argument checks, for callers that checked already. */
export function unpatchifyUnchecked(patches: tf.Tensor, patchSize: number, gridH: number, gridW: number): tf.Tensor4D {
  const [batch, , patchLength] = patches.shape as number[];
  const channels = patchLength / (patchSize * patchSize);
  const rows = tf.reshape(patches, [batch * gridH, gridW, patchSize, patchSize * channels]);
  const pixels = tf.transpose(rows, [0, 2, 1, 3]);
  return tf.reshape(pixels, [batch, gridH * patchSize, gridW * patchSize, channels]);
}

/**
 * Cuts images into non-overlapping `patchSize x patchSize` patches, flattened in SparK's order: patches
 * row-major over the grid, and inside a patch (row, column, channel), channel fastest.
 *
 * @param images `[B, H, W, C]`, `H` and `W` multiples of `patchSize`. Not disposed.
 * @returns `[B, L = (H / p) * (W / p), p * p * C]`. The caller owns it.
 *
 * @example
 * const patches = patchify(tf.zeros([2, 224, 224, 3]), 32); // [2, 49, 3072]
 */
export function patchify(images: tf.Tensor, patchSize: number): tf.Tensor3D {
  assertImageShape(images, 'images', 'patchify');
  assertPatchSizeDivides(images, patchSize, 'images', 'patchify');
  return tf.tidy(() => patchifyUnchecked(images, patchSize));
}

/**
 * Puts patches made by {@link patchify} back into images.
 *
 * @param patches `[B, gridH * gridW, p * p * C]`. Not disposed.
 * @param patchSize `p`.
 * @param grid `[gridH, gridW]`, the number of patches down and across.
 * @returns `[B, gridH * p, gridW * p, C]`. The caller owns it.
 *
 * @example
 * const images = unpatchify(patches, 32, [7, 7]); // [2, 49, 3072] -> [2, 224, 224, 3]
 */
export function unpatchify(patches: tf.Tensor, patchSize: number, [gridH, gridW]: [number, number]): tf.Tensor4D {
  const caller = 'unpatchify';
  assertPositiveInteger(patchSize, 'patchSize', caller);
  assertPositiveInteger(gridH, 'gridH', caller);
  assertPositiveInteger(gridW, 'gridW', caller);
  if (patches.rank !== 3) {
    throw new Error(`${caller}: patches must have shape [B, L, p * p * C], got ${formatShape(patches.shape)}`);
  }
  const [, patchCount, patchLength] = patches.shape as number[];
  if (patchCount !== gridH * gridW) {
    throw new Error(`${caller}: patches ${formatShape(patches.shape)} hold ${patchCount} patches, but a ${gridH}x${gridW} grid has ${gridH * gridW}`);
  }
  if (patchLength % (patchSize * patchSize) !== 0) {
    throw new Error(
      `${caller}: patch length ${patchLength} of patches ${formatShape(patches.shape)} is not a multiple of ` +
        `patchSize * patchSize = ${patchSize * patchSize}`,
    );
  }
  return tf.tidy(() => unpatchifyUnchecked(patches, patchSize, gridH, gridW));
}

import type * as tf from '@tensorflow/tfjs-core';

import { assertPositiveInteger, formatShape } from '@sparkmim/masking';

export { assertPositiveInteger, formatShape };

export function assertImageShape(images: tf.Tensor, name: string, caller: string): void {
  if (images.rank !== 4) {
    throw new Error(`${caller}: ${name} must have shape [B, H, W, C], got ${formatShape(images.shape)}`);
  }
}

/** Throws unless `patchSize` divides both spatial sizes of `images` (named `name` in the message). */
export function assertPatchSizeDivides(images: tf.Tensor, patchSize: number, name: string, caller: string): void {
  assertPositiveInteger(patchSize, 'patchSize', caller);
  const [, height, width] = images.shape as number[];
  const problems: string[] = [];
  if (height % patchSize !== 0) problems.push(`height ${height} is not a multiple of ${patchSize}`);
  if (width % patchSize !== 0) problems.push(`width ${width} is not a multiple of ${patchSize}`);
  if (problems.length > 0) {
    throw new Error(`${caller}: patch size ${patchSize} does not divide ${name} ${formatShape(images.shape)} (${problems.join(', ')})`);
  }
}

/**
 * Checks the `(reconstruction, images, active)` triple of the loss and the composite, and returns SparK's
 * patch size: the downsample ratio `H / h`, which must be the same along both axes (square patches).
 */
export function checkedPatchSize(reconstruction: tf.Tensor, images: tf.Tensor, active: tf.Tensor, caller: string): number {
  assertImageShape(reconstruction, 'reconstruction', caller);
  assertImageShape(images, 'images', caller);
  if (!reconstruction.shape.every((size, axis) => size === images.shape[axis])) {
    throw new Error(
      `${caller}: reconstruction ${formatShape(reconstruction.shape)} and images ${formatShape(images.shape)} must have the same shape`,
    );
  }
  if (active.rank !== 4 || active.shape[3] !== 1) {
    throw new Error(`${caller}: active mask must have shape [B, h, w, 1], got ${formatShape(active.shape)}`);
  }
  const [batch, height, width] = images.shape as number[];
  const [maskBatch, gridH, gridW] = active.shape as number[];
  if (batch !== maskBatch) {
    throw new Error(
      `${caller}: images ${formatShape(images.shape)} and active mask ${formatShape(active.shape)} have different ` +
        `batch sizes (${batch} vs ${maskBatch})`,
    );
  }
  const problems: string[] = [];
  if (height % gridH !== 0) problems.push(`height ${height} is not a multiple of ${gridH}`);
  if (width % gridW !== 0) problems.push(`width ${width} is not a multiple of ${gridW}`);
  if (problems.length > 0) {
    throw new Error(
      `${caller}: active mask ${formatShape(active.shape)} does not divide images ${formatShape(images.shape)} (${problems.join(', ')})`,
    );
  }
  if (height / gridH !== width / gridW) {
    throw new Error(
      `${caller}: active mask ${formatShape(active.shape)} cuts images ${formatShape(images.shape)} into ` +
        `${height / gridH}x${width / gridW} patches; SparK's patches are square`,
    );
  }
  return height / gridH;
}

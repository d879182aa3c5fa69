import * as tf from '@tensorflow/tfjs-core';
import { assertMaskShape, assertPositiveInteger, formatShape } from './validate';

/** Throws unless `[height, width]` is an integer multiple of the mask's grid; names both shapes. */
function assertMaskDivides(active: tf.Tensor, height: number, width: number, target: string, caller: string): void {
  const [, gridH, gridW] = active.shape;
  const problems: string[] = [];
  if (height % gridH !== 0) problems.push(`height ${height} is not a multiple of ${gridH}`);
  if (width % gridW !== 0) problems.push(`width ${width} is not a multiple of ${gridW}`);
  if (problems.length > 0) {
    throw new Error(`${caller}: active mask ${formatShape(active.shape)} does not divide ${target} (${problems.join(', ')})`);
  }
}

function assertImages(images: tf.Tensor, active: tf.Tensor, caller: string): void {
  if (images.rank !== 4) {
    throw new Error(`${caller}: images must have shape [B, H, W, C], got ${formatShape(images.shape)}`);
  }
  assertMaskShape(active, caller);
  if (images.shape[0] !== active.shape[0]) {
    throw new Error(
      `${caller}: images ${formatShape(images.shape)} and active mask ${formatShape(active.shape)} have different ` +
        `batch sizes (${images.shape[0]} vs ${active.shape[0]})`,
    );
  }
  const [, height, width] = images.shape as number[];
  assertMaskDivides(active, height, width, `images ${formatShape(images.shape)}`, caller);
}

/** Nearest-neighbour upsampling by reshape and broadcast multiply (differentiable on every backend). */
function upsample(active: tf.Tensor, height: number, width: number): tf.Tensor4D {
  const [batch, gridH, gridW] = active.shape;
  const mask = active.dtype === 'float32' ? active : tf.cast(active, 'float32');
  const rowRepeat = height / gridH;
  const columnRepeat = width / gridW;
  if (rowRepeat === 1 && columnRepeat === 1) return tf.clone(mask) as tf.Tensor4D;
  // Each grid cell becomes a rowRepeat x columnRepeat block. tf.image.resizeNearestNeighbor would do the
  // same forward, but its cpu gradient is wrong for batch > 1 in tfjs 4.22.
  const cells = tf.reshape(mask, [batch, gridH, 1, gridW, 1]);
  const block = tf.ones([1, 1, rowRepeat, 1, columnRepeat]);
  return tf.reshape(tf.mul(cells, block), [batch, height, width, 1]);
}

/**
 * Upsamples a patch mask to pixel (or feature-map) resolution by nearest neighbour: each grid cell becomes
 * an `H/h x W/w` block of the same value.
 *
 * @param active `[B, h, w, 1]` mask, 1 = visible, 0 = masked. Not disposed.
 * @param size `[H, W]`, integer multiples of `h` and `w`.
 * @returns `[B, H, W, 1]` float32. The caller owns it.
 *
 * @example
 * const pixels = upsampleMask(active, [224, 224]); // active [B, 7, 7, 1] -> [B, 224, 224, 1]
 */
export function upsampleMask(active: tf.Tensor, [height, width]: [number, number]): tf.Tensor4D {
  const caller = 'upsampleMask';
  assertMaskShape(active, caller);
  assertPositiveInteger(height, 'height', caller);
  assertPositiveInteger(width, 'width', caller);
  assertMaskDivides(active, height, width, `output [${height}, ${width}]`, caller);
  return tf.tidy(() => upsample(active, height, width));
}

/**
 * Zeroes the masked patches of a batch of images (SparK's `inp_bchw * active_b1hw`).
 *
 * @param images `[B, H, W, C]`. Not disposed.
 * @param active `[B, h, w, 1]` mask, 1 = visible, 0 = masked; `H` and `W` are multiples of `h` and `w`.
 * @returns `[B, H, W, C]`: the images where visible, 0 where masked. The caller owns it.
 *
 * @example
 * const masked = applyMask(images, randomPatchMask(images.shape[0], [7, 7], 0.6));
 */
export function applyMask(images: tf.Tensor, active: tf.Tensor): tf.Tensor4D {
  assertImages(images, active, 'applyMask');
  const [, height, width] = images.shape as number[];
  return tf.tidy(() => tf.mul(images, upsample(active, height, width)) as tf.Tensor4D);
}

/** How {@link maskPicture} paints masked patches. */
export interface MaskPictureOptions {
  /**
   * The value of masked pixels, in the images' own units: one number, or one per channel (`[r, g, b]`).
   * Default 0.5, mid-gray for images in [0, 1]; use 127.5 for [0, 255] images, and 0 for images normalised
   * by the dataset mean and std (0 is then the mean colour).
   */
  fill?: number | number[];
}

/**
 * Makes a picture of what the model sees, for people: visible patches keep their pixels, masked patches are
 * painted with a flat fill colour (mid-gray by default).
 *
 * @param images `[B, H, W, C]`. Not disposed.
 * @param active `[B, h, w, 1]` mask, 1 = visible, 0 = masked; `H` and `W` are multiples of `h` and `w`.
 * @returns `[B, H, W, C]`. The caller owns it.
 *
 * @example
 * const picture = maskPicture(images01, active, { fill: [1, 0, 1] }); // masked patches magenta
 */
export function maskPicture(images: tf.Tensor, active: tf.Tensor, { fill = 0.5 }: MaskPictureOptions = {}): tf.Tensor4D {
  const caller = 'maskPicture';
  assertImages(images, active, caller);
  const [, height, width, channels] = images.shape as number[];
  const fillValues = typeof fill === 'number' ? [fill] : fill;
  if (typeof fill !== 'number' && fill.length !== channels) {
    throw new Error(`${caller}: fill must be one number or one per channel (${channels}), got ${fill.length} values`);
  }
  if (!fillValues.every(Number.isFinite)) {
    throw new Error(`${caller}: fill must be finite, got ${typeof fill === 'number' ? fill : `[${fill.join(', ')}]`}`);
  }
  return tf.tidy(() => {
    const visible = upsample(active, height, width);
    const fillColour = tf.tensor1d(fillValues, 'float32');
    // visible * image + (1 - visible) * fill: exact for a 0/1 mask (x * 1 + 0 and 0 + fill * 1).
    return tf.add(tf.mul(images, visible), tf.mul(fillColour, tf.sub(1, visible))) as tf.Tensor4D;
  });
}

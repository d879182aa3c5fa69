import * as tf from '@tensorflow/tfjs-core';
import { upsampleMask } from '@sparkmim/masking';
import { checkedPatchSize, formatShape } from './checks';
import { patchifyUnchecked, unpatchifyUnchecked } from './patchify';

/** Options of {@link sparkLoss} and {@link reconstructionComposite}. */
export interface SparkLossOptions {
  /**
   * Whether the target of each patch is the patch normalised by its own mean and std (SparK's and MAE's
   * default, `true`), or the raw pixels (`false`).
   */
  normalizeTarget?: boolean;
}

/** Added to the variance before the square root, as in SparK (`(var + 1e-6) ** .5`). */
const VARIANCE_EPSILON = 1e-6;
/** Added to the masked-patch count, as in SparK, so a mask with nothing masked gives 0 instead of NaN. */
const COUNT_EPSILON = 1e-8;

function assertPatchLength(patchLength: number, images: tf.Tensor, caller: string): void {
  if (patchLength < 2) {
    throw new Error(
      `${caller}: normalizeTarget needs at least 2 values per patch for an unbiased variance, got ${patchLength} ` +
        `(images ${formatShape(images.shape)}); pass normalizeTarget: false`,
    );
  }
}

/** Per-patch mean and std of `patches` `[B, L, N]`, each `[B, L, 1]`. */
function patchStatistics(patches: tf.Tensor): { mean: tf.Tensor; std: tf.Tensor } {
  const patchLength = patches.shape[2] as number;
  const mean = tf.mean(patches, -1, true);
  const squaredDeviations = tf.sum(tf.square(tf.sub(patches, mean)), -1, true);
  // SparK uses torch's `var`, which is unbiased (divides by N - 1), not the biased tf.moments variance.
  const variance = tf.div(squaredDeviations, patchLength - 1);
  return { mean, std: tf.sqrt(tf.add(variance, VARIANCE_EPSILON)) };
}

/** `active` as float32 `[B, L]`, patches row-major as patchify orders them. */
function flatMask(active: tf.Tensor): tf.Tensor2D {
  const [batch, gridH, gridW] = active.shape as number[];
  const mask = active.dtype === 'float32' ? active : tf.cast(active, 'float32');
  return tf.reshape(mask, [batch, gridH * gridW]);
}

/**
 * SparK's reconstruction loss: the mean squared error between each reconstructed patch and its
 * (normalised) target, averaged over the masked patches only.
 *
 * Per patch, the target is `(x - mean) / sqrt(var + 1e-6)` with the unbiased variance over its `p * p * C`
 * values; the loss is `sum(mse * (1 - active)) / (sum(1 - active) + 1e-8)`. The patch size `p` is `H / h`.
 * Differentiable with respect to `reconstruction`.
 *
 * @param reconstruction `[B, H, W, C]`, the decoder output (in normalised-patch units by default).
 * @param images `[B, H, W, C]`, the unmasked input.
 * @param active `[B, h, w, 1]` mask, 1 = visible, 0 = masked; `H / h = W / w`.
 * @returns A scalar. None of the arguments is disposed.
 *
 * @example
 * const loss = sparkLoss(decoderOutput, images, active); // inside optimizer.minimize(() => ...)
 */
export function sparkLoss(
  reconstruction: tf.Tensor,
  images: tf.Tensor,
  active: tf.Tensor,
  { normalizeTarget = true }: SparkLossOptions = {},
): tf.Scalar {
  const caller = 'sparkLoss';
  const patchSize = checkedPatchSize(reconstruction, images, active, caller);
  const patchLength = patchSize * patchSize * (images.shape[3] as number);
  if (normalizeTarget) assertPatchLength(patchLength, images, caller);
  return tf.tidy(() => {
    let target = patchifyUnchecked(images, patchSize) as tf.Tensor;
    if (normalizeTarget) {
      const { mean, std } = patchStatistics(target);
      target = tf.div(tf.sub(target, mean), std);
    }
    const predicted = patchifyUnchecked(reconstruction, patchSize);
    const patchErrors = tf.mean(tf.square(tf.sub(predicted, target)), 2); // [B, L]
    // Only masked patches count: the encoder saw the visible ones, so predicting them teaches nothing.
    const masked = tf.sub(1, flatMask(active));
    return tf.div(tf.sum(tf.mul(patchErrors, masked)), tf.add(tf.sum(masked), COUNT_EPSILON)) as tf.Scalar;
  });
}

/** What {@link reconstructionComposite} returns; every tensor is `[B, H, W, C]` and owned by the caller. */
export interface ReconstructionComposite {
  /** A copy of the images. */
  input: tf.Tensor4D;
  /** The images with masked patches set to 0 (what the encoder sees). */
  masked: tf.Tensor4D;
  /** The reconstruction in pixel units: each patch de-normalised with its image patch's mean and std. */
  reconstruction: tf.Tensor4D;
  /** The images where visible, the reconstruction where masked. */
  recOrInput: tf.Tensor4D;
}

/**
 * The pictures of SparK's `forward(vis=True)`: the input, the masked input, and the input with its masked
 * patches replaced by the reconstruction de-normalised to pixels (`unpatchify(rec * std + mean)`).
 *
 * @param reconstruction `[B, H, W, C]`, the decoder output. Not disposed.
 * @param images `[B, H, W, C]`, the unmasked input. Not disposed.
 * @param active `[B, h, w, 1]` mask, 1 = visible, 0 = masked; `H / h = W / w`. Not disposed.
 * @returns Four new `[B, H, W, C]` tensors; dispose them (e.g. `tf.dispose(Object.values(result))`).
 *
 * @example
 * const pictures = reconstructionComposite(decoderOutput, images, active);
 * // ... draw pictures.recOrInput ...
 * tf.dispose(Object.values(pictures));
 */
export function reconstructionComposite(
  reconstruction: tf.Tensor,
  images: tf.Tensor,
  active: tf.Tensor,
  { normalizeTarget = true }: SparkLossOptions = {},
): ReconstructionComposite {
  const caller = 'reconstructionComposite';
  const patchSize = checkedPatchSize(reconstruction, images, active, caller);
  const [, height, width, channels] = images.shape as number[];
  const [, gridH, gridW] = active.shape as number[];
  if (normalizeTarget) assertPatchLength(patchSize * patchSize * channels, images, caller);
  return tf.tidy(() => {
    const visible = upsampleMask(active, [height, width]);
    let pixels: tf.Tensor4D;
    if (normalizeTarget) {
      const { mean, std } = patchStatistics(patchifyUnchecked(images, patchSize));
      const denormalised = tf.add(tf.mul(patchifyUnchecked(reconstruction, patchSize), std), mean);
      pixels = unpatchifyUnchecked(denormalised, patchSize, gridH, gridW);
    } else {
      pixels = tf.clone(reconstruction) as tf.Tensor4D;
    }
    return {
      input: tf.clone(images) as tf.Tensor4D,
      masked: tf.mul(images, visible) as tf.Tensor4D,
      reconstruction: pixels,
      recOrInput: tf.where(tf.cast(visible, 'bool'), images, pixels) as tf.Tensor4D,
    };
  });
}

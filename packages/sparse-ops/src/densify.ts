import * as tf from '@tensorflow/tfjs-core';
import { activeAt, type ActiveMask } from './active-sites';

/**
 * Fills the inactive sites with a (learned) vector and keeps the active ones: SparK's densify step, which
 * turns a sparse feature map back into a dense one for a dense decoder (SparK, Sec. 3.2).
 *
 * @param features `[B, H, W, C]`
 * @param active `[B, h, w, 1]` (or ActiveSites), 1 = active
 * @param maskToken `[C]`
 * @returns `[B, H, W, C]`
 *
 * @example
 * const dense = densify(features, active, maskToken);
 */
export function densify(features: tf.Tensor4D, active: ActiveMask, maskToken: tf.Tensor1D): tf.Tensor4D {
  if (features.rank !== 4) {
    throw new Error(`densify: features must have shape [B, H, W, C], got [${features.shape.join(', ')}]`);
  }
  const channels = features.shape[3];
  if (maskToken.rank !== 1 || maskToken.shape[0] !== channels) {
    throw new Error(`densify: maskToken must have shape [${channels}], got [${maskToken.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    // No all-active shortcut here: the mask token must stay connected to the output, so that its
    // gradient is a defined zero rather than an error in tf.grads when no site is masked.
    const mask = activeAt(active, features, 'densify');
    // With a 0/1 mask, x*m + t*(1-m) picks exactly x or t, and unlike `where` it differentiates w.r.t. both.
    return tf.add(tf.mul(features, mask), tf.mul(maskToken, tf.sub(1, mask))) as tf.Tensor4D;
  });
}

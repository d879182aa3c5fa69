import * as tf from '@tensorflow/tfjs-core';

/** torch's clip_grad_norm_ factor: max / (norm + 1e-6), at most 1. */
export function clipGradNormScale(globalNorm: tf.Scalar, maxGradNorm: number | undefined): tf.Scalar {
  return tf.tidy(() => {
    if (maxGradNorm === undefined) return tf.scalar(1);
    return tf.minimum(tf.div(maxGradNorm, tf.add(globalNorm, 1e-6)), 1) as tf.Scalar;
  });
}

/** Throws unless `maxGradNorm` is absent or a positive number. */
export function checkMaxGradNorm(className: string, maxGradNorm: number | undefined): void {
  if (maxGradNorm !== undefined && !(maxGradNorm > 0)) {
    throw new Error(`${className}: maxGradNorm is ${maxGradNorm}, expected a number > 0 (or leave it out for no clipping)`);
  }
}

import * as tf from '@tensorflow/tfjs-core';

/** Options of {@link classificationLoss}. */
export interface ClassificationLossOptions {
  /**
   * Label smoothing ε in [0, 1): the target of class k is `1 - ε + ε/K` for the true class and `ε/K` for
   * the others (timm's `Mixup(label_smoothing=ε)`, which the official fine-tuning uses with ε = 0.1).
   * Default 0.
   */
  labelSmoothing?: number;
  /**
   * `'ce'`: soft-target cross-entropy, mean over the batch of `-Σ_k t_k log softmax(z)_k` (timm's
   * `SoftTargetCrossEntropy`, the official choice with AdamW / ConvNeXt). `'bce'`: binary cross-entropy
   * with logits, mean over batch and classes (timm's `BinaryCrossEntropy`, the official choice with LAMB /
   * ResNet). Default 'ce'.
   */
  loss?: 'ce' | 'bce';
}

/**
 * Smoothed one-hot targets `[B, K]` from class indices `[B]` (timm `mixup.one_hot` with `on_value = 1 - ε +
 * ε/K`, `off_value = ε/K`).
 *
 * @example
 * smoothedTargets(tf.tensor1d([2], 'int32'), 4, 0.1); // [[0.025, 0.025, 0.925, 0.025]]
 */
export function smoothedTargets(labels: tf.Tensor1D, numClasses: number, labelSmoothing = 0): tf.Tensor2D {
  if (!(labelSmoothing >= 0 && labelSmoothing < 1)) {
    throw new Error(`smoothedTargets: labelSmoothing must be in [0, 1), got ${labelSmoothing}`);
  }
  const off = labelSmoothing / numClasses;
  const on = 1 - labelSmoothing + off;
  // oneHot's output is int32 (on webgpu its on/off values are truncated to integers), so the smoothed
  // values are made in float32 from a 0/1 one-hot.
  return tf.tidy(() => tf.add(tf.mul(tf.cast(tf.oneHot(tf.cast(labels, 'int32'), numClasses), 'float32'), on - off), off) as tf.Tensor2D);
}

/**
 * The classification loss of the official fine-tuning, a scalar: cross-entropy (or BCE) of `logits`
 * `[B, K]` against smoothed one-hot targets of `labels` `[B]` (int32 class indices).
 *
 * @example
 * const loss = classificationLoss(logits, labels, 10, { labelSmoothing: 0.1 }); // scalar, caller disposes
 */
export function classificationLoss(logits: tf.Tensor2D, labels: tf.Tensor1D, numClasses: number, options: ClassificationLossOptions = {}): tf.Scalar {
  const { labelSmoothing = 0, loss = 'ce' } = options;
  if (logits.rank !== 2 || logits.shape[1] !== numClasses || labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) {
    throw new Error(
      `classificationLoss: expected logits [B, ${numClasses}] and labels [B], got logits [${logits.shape.join(', ')}] and labels [${labels.shape.join(', ')}]`,
    );
  }
  return tf.tidy(() => {
    const targets = smoothedTargets(labels, numClasses, labelSmoothing);
    if (loss === 'bce') {
      // max(z, 0) - z t + log(1 + exp(-|z|)): torch's stable binary_cross_entropy_with_logits.
      const z = logits;
      const perElement = tf.add(tf.sub(tf.relu(z), tf.mul(z, targets)), tf.log1p(tf.exp(tf.neg(tf.abs(z)))));
      return tf.mean(perElement) as tf.Scalar;
    }
    if (loss !== 'ce') throw new Error(`classificationLoss: loss must be 'ce' or 'bce', got '${String(loss)}'`);
    return tf.mean(tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  });
}

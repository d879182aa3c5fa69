import * as tf from '@tensorflow/tfjs-core';
import { maskOrDense, type ActiveMask } from './active-sites';

// A type alias rather than an interface so that tf.tidy can return it (it needs an index signature).
export type BatchStatistics = {
  /** `[C]` mean over the active sites. */
  mean: tf.Tensor1D;
  /** `[C]` biased variance over the active sites (what normalises). */
  variance: tf.Tensor1D;
  /** Number of active sites (all sites without a mask) the statistics were taken over. */
  count: tf.Scalar;
};

/**
 * Per-channel mean and biased variance over the active sites only (all sites without a mask). With no
 * active site at all the statistics are NaN, as PyTorch's BatchNorm over an empty selection.
 *
 * @param x `[B, H, W, C]`
 * @param active `[B, h, w, 1]` (or ActiveSites), 1 = active
 *
 * @example
 * const { mean, variance, count } = activeMoments(x, active);
 */
export function activeMoments(x: tf.Tensor4D, active?: ActiveMask): BatchStatistics {
  checkChannelVector(x, undefined, '', 'activeMoments');
  return tf.tidy(() => momentsOver(x, maskOrDense(active, x, 'activeMoments')));
}

function momentsOver(x: tf.Tensor4D, mask: tf.Tensor4D | undefined): BatchStatistics {
  const [batch, height, width] = x.shape;
  if (!mask) {
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return { mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D, count: tf.scalar(batch * height * width) };
  }
  // Official SparK gathers the active sites and runs BatchNorm1d on them; weighting every site by the 0/1
  // mask gives the same sums without a gather (which has no gradient in tfjs).
  const count = tf.sum(mask) as tf.Scalar;
  const mean = tf.div(tf.sum(tf.mul(x, mask), [0, 1, 2]), count) as tf.Tensor1D;
  const centred = tf.mul(tf.sub(x, mean), mask);
  const variance = tf.div(tf.sum(tf.square(centred), [0, 1, 2]), count) as tf.Tensor1D;
  return { mean, variance, count };
}

export interface SparseBatchNormOptions {
  /** `[C]` scale. */
  gamma?: tf.Tensor1D;
  /** `[C]` shift. */
  beta?: tf.Tensor1D;
  /** Default 1e-5, PyTorch's. */
  epsilon?: number;
  /** `[B, h, w, 1]` (or ActiveSites), 1 = active. Omitted: ordinary batch norm over every site. */
  active?: ActiveMask;
}

/**
 * Batch norm whose statistics come from the active sites only, with output zero at inactive sites
 * (official SparK's `SparseBatchNorm2d`: BatchNorm1d over the gathered active sites). Training mode:
 * pass no `mean`/`variance` and the batch's active-site statistics normalise (biased variance, as
 * PyTorch normalises). Inference: pass the running statistics. Without a mask (or with an all-active
 * {@link ActiveSites}) this is exactly `tf.moments` + `tf.batchNorm`.
 *
 * @param x `[B, H, W, C]`
 * @param mean `[C]` running mean (inference); pass together with `variance` or not at all
 * @param variance `[C]` running variance (inference)
 * @returns `[B, H, W, C]`
 *
 * @example
 * const y = sparseBatchNorm(x, { gamma, beta, active });                       // training
 * const z = sparseBatchNorm(x, { gamma, beta, active }, runningMean, runningVar); // inference
 */
export function sparseBatchNorm(x: tf.Tensor4D, options: SparseBatchNormOptions = {}, mean?: tf.Tensor1D, variance?: tf.Tensor1D): tf.Tensor4D {
  const { gamma, beta, epsilon = 1e-5, active } = options;
  const caller = 'sparseBatchNorm';
  checkChannelVector(x, gamma, 'gamma', caller);
  checkChannelVector(x, beta, 'beta', caller);
  checkChannelVector(x, mean, 'mean', caller);
  checkChannelVector(x, variance, 'variance', caller);
  if ((mean === undefined) !== (variance === undefined)) {
    throw new Error(`${caller}: pass both mean and variance (inference) or neither (training), got only ${mean ? 'mean' : 'variance'}`);
  }
  return tf.tidy(() => {
    const mask = maskOrDense(active, x, caller);
    const statistics = mean && variance ? { mean, variance } : momentsOver(x, mask);
    const y = tf.batchNorm(x, statistics.mean, statistics.variance, beta, gamma, epsilon);
    return mask ? tf.mul(y, mask) : y;
  });
}

export interface SparseLayerNormOptions {
  /** `[C]` scale. */
  gamma?: tf.Tensor1D;
  /** `[C]` shift. */
  beta?: tf.Tensor1D;
  /** Default 1e-6, as ConvNeXt and SparK use. */
  epsilon?: number;
  /** `[B, h, w, 1]` (or ActiveSites), 1 = active. Omitted: ordinary layer norm. */
  active?: ActiveMask;
}

/**
 * Layer norm over channels (channels-last) at each site, output zero at inactive sites (official
 * SparK's `SparseConvNeXtLayerNorm`, both data formats: in NHWC they are the same op).
 *
 * @param x `[B, H, W, C]`
 * @returns `[B, H, W, C]`
 *
 * @example
 * const y = sparseLayerNorm(x, { gamma, beta, active });
 */
export function sparseLayerNorm(x: tf.Tensor4D, options: SparseLayerNormOptions = {}): tf.Tensor4D {
  const { gamma, beta, epsilon = 1e-6, active } = options;
  checkChannelVector(x, gamma, 'gamma', 'sparseLayerNorm');
  checkChannelVector(x, beta, 'beta', 'sparseLayerNorm');
  return tf.tidy(() => {
    const mask = maskOrDense(active, x, 'sparseLayerNorm');
    // Each site is normalised over its own channels, so inactive sites never mix into active ones; the
    // mask only zeroes their outputs (official SparK normalises the gathered active sites, the same values).
    const { mean, variance } = tf.moments(x, 3, true);
    let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon)));
    if (gamma) y = tf.mul(y, gamma);
    if (beta) y = tf.add(y, beta);
    return (mask ? tf.mul(y, mask) : y) as tf.Tensor4D;
  });
}

/** Throws unless `x` is `[B, H, W, C]` and `vector`, when given, is `[C]`. */
function checkChannelVector(x: tf.Tensor4D, vector: tf.Tensor | undefined, name: string, caller: string): void {
  if (x.rank !== 4) throw new Error(`${caller}: x must have shape [B, H, W, C], got [${x.shape.join(', ')}]`);
  if (vector && (vector.rank !== 1 || vector.shape[0] !== x.shape[3])) {
    throw new Error(`${caller}: ${name} must have shape [${x.shape[3]}], got [${vector.shape.join(', ')}]`);
  }
}

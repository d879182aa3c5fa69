import * as tf from '@tensorflow/tfjs-core';
import { activeAt, type ActiveMask } from './active-sites';

export interface BatchStatistics {
  /** `[C]` mean over the active sites. */
  mean: tf.Tensor1D;
  /** `[C]` biased variance over the active sites (what normalises). */
  variance: tf.Tensor1D;
  /** Number of active sites (all sites without a mask) the statistics were taken over. */
  count: tf.Scalar;
}

/**
 * Per-channel mean and biased variance over the active sites only (all sites without a mask).
 *
 * @param x `[B, H, W, C]`
 * @param active `[B, h, w, 1]` (or ActiveSites), 1 = active
 *
 * @example
 * const { mean, variance, count } = activeMoments(x, active);
 */
export function activeMoments(x: tf.Tensor4D, active?: ActiveMask): BatchStatistics {
  return tf.tidy(() => {
    const [batch, height, width] = x.shape;
    if (!active) {
      const mean = tf.mean(x, [0, 1, 2]) as tf.Tensor1D;
      const variance = tf.mean(tf.square(tf.sub(x, mean)), [0, 1, 2]) as tf.Tensor1D;
      return { mean, variance, count: tf.scalar(batch * height * width) };
    }
    const mask = activeAt(active, x, 'activeMoments');
    const count = tf.sum(mask) as tf.Scalar;
    const mean = tf.div(tf.sum(tf.mul(x, mask), [0, 1, 2]), count) as tf.Tensor1D;
    const centred = tf.mul(tf.sub(x, mean), mask);
    const variance = tf.div(tf.sum(tf.square(centred), [0, 1, 2]), count) as tf.Tensor1D;
    return { mean, variance, count };
  });
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
 * PyTorch normalises). Inference: pass the running statistics.
 *
 * @param x `[B, H, W, C]`
 * @returns `[B, H, W, C]`
 *
 * @example
 * const y = sparseBatchNorm(x, { gamma, beta, active });                       // training
 * const z = sparseBatchNorm(x, { gamma, beta, active }, runningMean, runningVar); // inference
 */
export function sparseBatchNorm(
  x: tf.Tensor4D,
  options: SparseBatchNormOptions = {},
  mean?: tf.Tensor1D,
  variance?: tf.Tensor1D,
): tf.Tensor4D {
  const { gamma, beta, epsilon = 1e-5, active } = options;
  checkChannelVector(x, gamma, 'gamma', 'sparseBatchNorm');
  checkChannelVector(x, beta, 'beta', 'sparseBatchNorm');
  return tf.tidy(() => {
    let useMean = mean;
    let useVariance = variance;
    if (!useMean || !useVariance) {
      const statistics = activeMoments(x, active);
      useMean = statistics.mean;
      useVariance = statistics.variance;
    }
    return normalize(x, useMean, useVariance, epsilon, gamma, beta, active, 'sparseBatchNorm');
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
    const mean = tf.mean(x, 3, true);
    const variance = tf.mean(tf.square(tf.sub(x, mean)), 3, true);
    return normalize(x, mean, variance, epsilon, gamma, beta, active, 'sparseLayerNorm');
  });
}

function normalize(
  x: tf.Tensor4D,
  mean: tf.Tensor,
  variance: tf.Tensor,
  epsilon: number,
  gamma: tf.Tensor1D | undefined,
  beta: tf.Tensor1D | undefined,
  active: ActiveMask | undefined,
  caller: string,
): tf.Tensor4D {
  let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon)));
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  if (active) y = tf.mul(y, activeAt(active, x, caller));
  return y as tf.Tensor4D;
}

function checkChannelVector(x: tf.Tensor4D, vector: tf.Tensor | undefined, name: string, caller: string): void {
  if (x.rank !== 4) throw new Error(`${caller}: x must have shape [B, H, W, C], got [${x.shape.join(', ')}]`);
  if (vector && (vector.rank !== 1 || vector.shape[0] !== x.shape[3])) {
    throw new Error(`${caller}: ${name} must have shape [${x.shape[3]}], got [${vector.shape.join(', ')}]`);
  }
}

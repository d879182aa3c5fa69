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
 * Name of the optional backend kernel that computes the active-site statistics in one pass per channel
 * block (`@sparkmim/webgpu-kernels` registers it for webgpu); batch norm without a mask calls it with a
 * mask of ones. sparse-ops does not depend on any kernel package: the name is the whole contract, and with
 * no kernel registered for the current backend the same statistics come from tfjs ops. The contract:
 * - inputs `{x, mask}`: `x` float32 `[B, H, W, C]`, `mask` float32 `[B, H, W, 1]` of 0/1, no attributes;
 * - outputs `[mean, variance]`, both float32 `[C]`: the mean over the sites where mask is 1 and the biased
 *   variance `sum(mask * (x - mean)^2) / count`, in two passes as PyTorch's BatchNorm computes it (never
 *   `E[x^2] - E[x]^2`, which loses the variance of large-mean channels to rounding); NaN for a channel when
 *   no site is active (0 / 0, as PyTorch over an empty selection).
 */
export const ACTIVE_MOMENTS_KERNEL = 'SparkActiveMoments';

/**
 * Name of the optional backend kernel for the per-channel sums of batch norm's backward pass
 * (`@sparkmim/webgpu-kernels` registers it for webgpu, where tfjs's own sum over `[B, H, W]` transposes the
 * map first). As with {@link ACTIVE_MOMENTS_KERNEL}, the name is the contract: input `{x}` float32
 * `[B, H, W, C]`, no attributes; output float32 `[C]`, what `tf.sum(x, [0, 1, 2])` gives.
 */
export const CHANNEL_SUMS_KERNEL = 'SparkChannelSums';

/** `tf.sum(x, [0, 1, 2])`, through {@link CHANNEL_SUMS_KERNEL} when the backend has one. */
function channelSums(x: tf.Tensor4D): tf.Tensor1D {
  if (x.dtype === 'float32' && tf.getKernel(CHANNEL_SUMS_KERNEL, tf.getBackend()) !== undefined) {
    return tf.engine().runKernel(CHANNEL_SUMS_KERNEL, { x }, {}) as tf.Tensor1D;
  }
  return tf.sum(x, [0, 1, 2]);
}

/**
 * Per-channel mean and biased variance over the active sites only (all sites without a mask). With no
 * active site at all the statistics are NaN, as PyTorch's BatchNorm over an empty selection. Differentiable
 * as one op (a hand-written gradient, see {@link momentsOver}).
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

/**
 * The statistics as one differentiable op. Autodiff of the composite (mask, sums, centring, square,
 * divisions, or tf.moments' mean/square/mean) records a dozen kernels, most of them over the whole feature
 * map, and replays each one's gradient; the gradient is short in closed form, because the mean-centred
 * deviations of the active sites sum to zero:
 *   d/dx = mask * (dMean + 2 * dVariance * (x - mean)) / count,
 * four elementwise kernels and no reduction. The two outputs travel stacked as one `[2, C]` tensor
 * (tf.customGrad returns one tensor).
 */
function momentsOver(x: tf.Tensor4D, mask: tf.Tensor4D | undefined): BatchStatistics {
  const [batch, height, width] = x.shape;
  const count = (mask ? tf.sum(mask) : tf.scalar(batch * height * width)) as tf.Scalar;
  const moments = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [features, save] = args as [tf.Tensor4D, tf.GradSaveFunc];
    const { mean, variance } = forwardMoments(features, mask, count);
    const stacked = tf.stack([mean, variance]) as tf.Tensor2D;
    // The mask and the count are no inputs of this op (they have no gradient); saved, they outlive the
    // caller's tidy until the backward pass. The mean is saved within the output (saving an intermediate
    // would hold a buffer the op does not return).
    save(mask ? [features, stacked, count, mask] : [features, stacked, count]);
    return {
      value: stacked,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [savedFeatures, savedMoments, savedCount, savedMask] = saved;
        const savedMean = tf.slice(savedMoments, [0, 0], [1, -1]);
        const [dMean, dVariance] = tf.unstack(dy);
        const meanWeight = tf.div(dMean, savedCount);
        const centredWeight = tf.div(tf.mul(dVariance, 2), savedCount);
        const gradient = tf.add(tf.mul(tf.sub(savedFeatures, savedMean), centredWeight), meanWeight);
        return savedMask ? tf.mul(gradient, savedMask) : gradient;
      },
    };
  });
  const [mean, variance] = tf.unstack(moments(x)) as tf.Tensor1D[];
  return { mean, variance, count };
}

/**
 * The statistics' values: the registered {@link ACTIVE_MOMENTS_KERNEL} when the backend has one (with a
 * mask of ones when there is none), else tfjs ops (tf.moments without a mask). Called where no gradient is
 * recorded (inside a tf.customGrad forward).
 */
function forwardMoments(x: tf.Tensor4D, mask: tf.Tensor4D | undefined, count: tf.Scalar): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  if (x.dtype === 'float32' && tf.getKernel(ACTIVE_MOMENTS_KERNEL, tf.getBackend()) !== undefined) {
    // Without a mask every site counts: a mask of ones (1/C of x's size) lets the kernel serve the dense
    // batch norms too (the decoder's), which tf.moments would reduce as slowly as the masked composite.
    const [batch, height, width] = x.shape;
    const siteMask = mask ? (mask.dtype === 'float32' ? mask : tf.cast(mask, 'float32')) : tf.ones([batch, height, width, 1]);
    const [mean, variance] = tf.engine().runKernel(ACTIVE_MOMENTS_KERNEL, { x, mask: siteMask }, {}) as tf.Tensor1D[];
    return { mean, variance };
  }
  if (!mask) {
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return { mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
  }
  // Official SparK gathers the active sites and runs BatchNorm1d on them; weighting every site by the 0/1
  // mask gives the same sums without a gather. Two passes (mean, then centred squares), as PyTorch.
  const mean = tf.div(tf.sum(tf.mul(x, mask), [0, 1, 2]), count) as tf.Tensor1D;
  const centred = tf.mul(tf.sub(x, mean), mask);
  const variance = tf.div(tf.sum(tf.square(centred), [0, 1, 2]), count) as tf.Tensor1D;
  return { mean, variance };
}

/**
 * Training-mode batch norm over the active sites as one differentiable op, with the statistics it
 * normalised with (for the running averages; no gradient flows through those). The forward pass is the
 * statistics op's values, tf.batchNorm and the mask, as before; the backward pass is batch norm's closed
 * form restricted to the active sites, with `xhat = (x - mean) * rstd`, `n` = count and `dy` masked:
 *   dbeta = sum(dy), dgamma = sum(dy * xhat),
 *   dx = mask * gamma * rstd / n * (n * dy - dbeta - xhat * dgamma),
 * two reductions (through {@link CHANNEL_SUMS_KERNEL} when the backend has one) and nine elementwise
 * kernels over the map (seven without a mask), where autodiff through tf.batchNorm and the statistics
 * replays about thirty, four of them reductions.
 *
 * @param x `[B, H, W, C]`
 * @param mask `[B, H, W, 1]` at the resolution of x, or undefined for every site
 */
function batchNormOverActive(
  x: tf.Tensor4D,
  mask: tf.Tensor4D | undefined,
  gamma: tf.Tensor1D | undefined,
  beta: tf.Tensor1D | undefined,
  epsilon: number,
): { output: tf.Tensor4D; statistics: BatchStatistics } {
  // Through the statistics op, so that the tape holds one node for them (pruned in the backward pass, as
  // only the running averages read them) rather than the composite's, which would keep centred copies.
  const { mean, variance, count } = momentsOver(x, mask);
  const normalise = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [features, scale, shift] = [args[0] as tf.Tensor4D, gamma && (args[1] as tf.Tensor1D), beta && (args[gamma ? 2 : 1] as tf.Tensor1D)];
    const normalised = tf.batchNorm(features, mean, variance, shift, scale, epsilon);
    save([features, mean, variance, count, ...(scale ? [scale] : []), ...(mask ? [mask] : [])]);
    return {
      value: (mask ? tf.mul(normalised, mask) : normalised) as tf.Tensor4D,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [savedFeatures, savedMean, savedVariance, savedCount] = saved;
        const savedScale = scale ? saved[4] : undefined;
        const savedMask = mask ? saved[saved.length - 1] : undefined;
        const rstd = tf.rsqrt(tf.add(savedVariance, epsilon));
        const dyActive = savedMask ? tf.mul(dy, savedMask) : dy;
        const xhat = tf.mul(tf.sub(savedFeatures, savedMean), rstd);
        const dShift = channelSums(dyActive as tf.Tensor4D);
        const dScale = channelSums(tf.mul(dyActive, xhat));
        const gain = savedScale ? tf.mul(savedScale, rstd) : rstd;
        // gain / n * (n * dy - dShift - xhat * dScale), with the two per-channel terms folded into [C] vectors.
        const perSite = tf.add(tf.mul(xhat, tf.div(tf.mul(gain, dScale), savedCount)), tf.div(tf.mul(gain, dShift), savedCount));
        const dx = tf.sub(tf.mul(dyActive, gain), savedMask ? tf.mul(perSite, savedMask) : perSite);
        return [dx, ...(scale ? [dScale] : []), ...(shift ? [dShift] : [])];
      },
    };
  });
  const inputs = [x, ...(gamma ? [gamma] : []), ...(beta ? [beta] : [])];
  return { output: normalise(...inputs) as tf.Tensor4D, statistics: { mean, variance, count } };
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
 * {@link ActiveSites}) the output is exactly `tf.moments` + `tf.batchNorm`'s (the same kernels), unless the
 * backend has an {@link ACTIVE_MOMENTS_KERNEL} for the statistics. In training mode it is one op whose
 * gradient is batch norm's closed form over the active sites.
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
    if (!mean || !variance) return batchNormOverActive(x, mask, gamma, beta, epsilon).output;
    const y = tf.batchNorm(x, mean, variance, beta, gamma, epsilon);
    return mask ? tf.mul(y, mask) : y;
  });
}

/**
 * {@link sparseBatchNorm} in training mode that also returns the batch statistics it normalised with, for
 * a layer's running averages: one statistics pass instead of two. The statistics carry no gradient (the
 * output's gradient already accounts for them). Package-private (SparseBatchNorm2d uses it).
 *
 * @param x `[B, H, W, C]`
 * @returns output `[B, H, W, C]`, statistics `[C]` mean and biased variance, and the active-site count
 */
export function sparseBatchNormTraining(x: tf.Tensor4D, options: SparseBatchNormOptions = {}): { output: tf.Tensor4D; statistics: BatchStatistics } {
  const { gamma, beta, epsilon = 1e-5, active } = options;
  const caller = 'sparseBatchNorm';
  checkChannelVector(x, gamma, 'gamma', caller);
  checkChannelVector(x, beta, 'beta', caller);
  return tf.tidy(() => batchNormOverActive(x, maskOrDense(active, x, caller), gamma, beta, epsilon));
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

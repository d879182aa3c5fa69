import * as tf from '@tensorflow/tfjs-core';
import { Module, type Initializer } from '@sparkmim/sparse-ops';
import type { SeededRandom } from '@sparkmim/sparse-ops';

export interface LinearConfig {
  inFeatures: number;
  outFeatures: number;
  /** Whether the layer has a bias. Default true, as in PyTorch. */
  bias?: boolean;
  /** Initial weight `[in, out]`. */
  weightInit: Initializer;
  /** Initial bias `[out]`. */
  biasInit: Initializer;
}

/**
 * `torch.nn.Linear` over the last axis (ConvNeXt's pointwise convs): parameters `weight` (stored here as
 * `[in, out]`, PyTorch's `(out, in)` through the 'linear' layout) and `bias`. Position-wise, so it needs
 * no mask: masking happens after the block, as in the official code.
 *
 * @example
 * const linear = new Linear({ inFeatures: 96, outFeatures: 384, weightInit, biasInit });
 * const y = linear.apply(x); // [B, H, W, 96] → [B, H, W, 384]
 */
export class Linear extends Module {
  readonly weight: tf.Variable;
  readonly bias?: tf.Variable;

  constructor(readonly config: LinearConfig) {
    super();
    const { inFeatures, outFeatures, bias = true } = config;
    this.weight = this.registerParameter('weight', config.weightInit([inFeatures, outFeatures]), 'linear');
    if (bias) this.bias = this.registerParameter('bias', config.biasInit([outFeatures]));
  }

  /** `x: [..., in]` → `[..., out]`. */
  apply<T extends tf.Tensor>(x: T): T {
    const { inFeatures, outFeatures } = this.config;
    const inSize = x.shape[x.rank - 1];
    if (inSize !== inFeatures) {
      throw new Error(`Linear: expected ${inFeatures} input features, got [${x.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const rows = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
      let y: tf.Tensor = tf.matMul(rows, this.weight as tf.Tensor2D);
      if (this.bias) y = tf.add(y, this.bias);
      return tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]) as T;
    });
  }
}

/**
 * The exact (erf) GELU of PyTorch's `nn.GELU()`: `0.5 x (1 + erf(x / sqrt 2))`. tfjs-core 4.22 has no GELU
 * op; `tf.erf` has a gradient (and is accurate to ~1e-7), so this trains as is. GELU(0) = 0, which is
 * why the ConvNeXt block need not mask between its pointwise layers.
 *
 * @example
 * const y = gelu(tf.tensor1d([-1, 0, 1])); // [-0.1587, 0, 0.8413]
 */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as T);
}

/**
 * Stochastic depth (timm's `DropPath`): in training, each sample's residual branch is zeroed with
 * probability `rate` and otherwise scaled by `1 / (1 - rate)`; in evaluation, or at rate 0, `x` itself is
 * returned and nothing is drawn. Sample i is kept when the i-th number drawn from `random` is below
 * `1 - rate` (one draw per sample, in batch order), so a seeded stream drops the same samples on every run
 * and a stream of 0s and 1s replays given decisions (what the golden tests do with PyTorch's draws).
 *
 * @param x `[B, ...]` the residual branch
 * @param random a {@link SeededRandom} or any source of uniform numbers in [0, 1) (e.g. the training run's)
 *
 * @example
 * const branch = dropPath(residual, 0.1, model.training, new SeededRandom(0));
 * const same = dropPath(residual, 0.1, true, () => Math.random()); // a plain () => number works too
 */
export function dropPath<T extends tf.Tensor>(x: T, rate: number, training: boolean, random: SeededRandom | (() => number)): T {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropPath: rate must be in [0, 1), got ${rate}`);
  if (!training || rate === 0) return x;
  const next = typeof random === 'function' ? random : random.next;
  const keep = 1 - rate;
  const batch = x.shape[0];
  const scale = new Float32Array(batch);
  for (let i = 0; i < batch; i++) scale[i] = next() < keep ? 1 / keep : 0;
  return tf.tidy(() => tf.mul(x, tf.tensor(scale, [batch, ...x.shape.slice(1).map(() => 1)])) as T);
}

/** timm's ResNet rule: rate grows linearly from 0 at the first block to `rate` at the last. */
export function linearDropPathRates(rate: number, blockCount: number): number[] {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropPathRate must be in [0, 1), got ${rate}`);
  return Array.from({ length: blockCount }, (_, i) => (blockCount > 1 ? (rate * i) / (blockCount - 1) : 0));
}

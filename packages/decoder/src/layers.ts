import * as tf from '@tensorflow/tfjs-core';
import { Module, conv2dTranspose, uniformFanIn, type Initializer } from '@sparkmim/sparse-ops';

export interface ConvTranspose2dConfig {
  inChannels: number;
  outChannels: number;
  kernelSize: number;
  strides: number;
  /** PyTorch's `padding`: how much the output is cropped on each side. */
  pad: number;
  /** Default true, as in PyTorch. */
  bias?: boolean;
  /** Initial filter `[kH, kW, outC, inC]`; default PyTorch's U(±1/sqrt(fanIn)). */
  filterInit?: Initializer;
  biasInit?: Initializer;
}

/**
 * A transposed convolution that upsamples by `strides` (PyTorch's `nn.ConvTranspose2d`, parameters
 * `weight` and `bias`). The filter is kept as `[kH, kW, outC, inC]`, tfjs's layout for `conv2dTranspose`,
 * which converts to PyTorch's `(inC, outC, kH, kW)` through the `conv2dTranspose` torch layout.
 *
 * @example
 * const up = new ConvTranspose2d({ inChannels: 64, outChannels: 64, kernelSize: 4, strides: 2, pad: 1 });
 * const y = up.apply(x); // [B, H, W, 64] → [B, 2H, 2W, 64]
 * up.dispose();
 */
export class ConvTranspose2d extends Module {
  readonly filter: tf.Variable;
  readonly bias?: tf.Variable;

  constructor(readonly config: ConvTranspose2dConfig) {
    super();
    const { inChannels, outChannels, kernelSize, bias = true } = config;
    // PyTorch computes the default bound from weight.size(1) * k * k, which is outC for a transposed conv.
    const fanIn = outChannels * kernelSize * kernelSize;
    const filterInit = config.filterInit ?? uniformFanIn(fanIn);
    this.filter = this.registerParameter('weight', filterInit([kernelSize, kernelSize, outChannels, inChannels]), 'conv2dTranspose');
    if (bias) this.bias = this.registerParameter('bias', (config.biasInit ?? uniformFanIn(fanIn))([outChannels]));
  }

  /** `x: [B, H, W, inC]` → `[B, (H - 1) * s - 2 * pad + k, (W - 1) * s - 2 * pad + k, outC]`. */
  apply(x: tf.Tensor4D): tf.Tensor4D {
    const { inChannels, outChannels, kernelSize, strides, pad } = this.config;
    if (x.rank !== 4 || x.shape[3] !== inChannels) {
      throw new Error(`ConvTranspose2d: x must have shape [B, H, W, ${inChannels}], got [${x.shape.join(', ')}]`);
    }
    const [batch, height, width] = x.shape;
    const outputShape: [number, number, number, number] = [
      batch,
      (height - 1) * strides - 2 * pad + kernelSize,
      (width - 1) * strides - 2 * pad + kernelSize,
      outChannels,
    ];
    return tf.tidy(() => {
      // A numeric pad here is the padding of the convolution this one transposes, which is exactly
      // PyTorch's ConvTranspose2d `padding` (the output is cropped by `pad` on every side).
      const y = conv2dTranspose(x, this.filter as tf.Tensor4D, outputShape, strides, pad);
      return this.bias ? tf.add(y, this.bias) : y;
    });
  }
}

/**
 * A module that returns its input, standing where PyTorch has `nn.Identity()` (no state-dict entries).
 *
 * @example
 * const same = new Identity().apply(x); // x itself
 */
export class Identity extends Module {
  apply<T extends tf.Tensor>(x: T): T {
    return x;
  }
}

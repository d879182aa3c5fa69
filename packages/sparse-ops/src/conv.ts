import * as tf from '@tensorflow/tfjs-core';
import { maskOrDense, type ActiveMask } from './active-sites';
import { conv2d } from './conv-filter-gradient';
import { pair, toTfPadding, type Padding2d } from './padding';

export interface SparseConv2dOptions {
  /** Stride, one number or `[vertical, horizontal]`. Default 1. */
  strides?: number | [number, number];
  /** Padding, PyTorch style (see {@link Padding2d}). Default 0. */
  pad?: Padding2d;
  /** Dilation, one number or `[vertical, horizontal]`. Default 1. */
  dilations?: number | [number, number];
  /** Channel groups: `inC / groups` input channels feed each group of `outC / groups` outputs. Default 1. */
  groups?: number;
  /** `[outC]`, added before the output is masked. */
  bias?: tf.Tensor1D;
  /** `[B, h, w, 1]` (or {@link ActiveSites}), 1 = active. Omitted: the ordinary dense convolution. */
  active?: ActiveMask;
}

/**
 * Submanifold-style masked convolution: an ordinary convolution whose output is zero at inactive sites
 * of the output resolution, so the set of active sites never grows from layer to layer (SparK, Sec. 3.1).
 *
 * Inputs are expected to be zero at inactive sites, as every op of this package leaves them; then this
 * is exactly official SparK's `SparseConv2d` (a dense conv followed by `x *= active`).
 *
 * @param x `[B, H, W, inC]`
 * @param filter `[kH, kW, inC / groups, outC]` (PyTorch's OIHW weight transposed to HWIO)
 * @returns `[B, H', W', outC]`
 *
 * @example
 * const y = sparseConv2d(x, filter, { strides: 2, pad: 3, bias, active });
 */
export function sparseConv2d(x: tf.Tensor4D, filter: tf.Tensor4D, options: SparseConv2dOptions = {}): tf.Tensor4D {
  const { strides = 1, pad = 0, dilations = 1, groups = 1, bias, active } = options;
  const caller = 'sparseConv2d';
  if (x.rank !== 4) throw new Error(`${caller}: x must have shape [B, H, W, C], got [${x.shape.join(', ')}]`);
  if (filter.rank !== 4) {
    throw new Error(`${caller}: filter must have shape [kH, kW, inC / groups, outC], got [${filter.shape.join(', ')}]`);
  }
  const [, , filterInC, outC] = filter.shape;
  const inC = x.shape[3];
  if (!Number.isInteger(groups) || groups < 1 || inC % groups !== 0 || outC % groups !== 0) {
    throw new Error(`${caller}: groups ${groups} must divide input channels ${inC} and output channels ${outC}`);
  }
  if (filterInC * groups !== inC) {
    throw new Error(
      `${caller}: filter [${filter.shape.join(', ')}] expects ${filterInC * groups} input channels (${filterInC} x ${groups} groups), x [${x.shape.join(', ')}] has ${inC}`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outC)) {
    throw new Error(`${caller}: bias must have shape [${outC}], got [${bias.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const [dilationH, dilationW] = pair(dilations);
    // tfjs 4.22 has no gradient for dilated conv2d; a filter with zeros between its taps is the same
    // convolution and trains on every backend.
    const effectiveFilter = dilationH > 1 || dilationW > 1 ? dilateFilter(filter, dilationH, dilationW) : filter;
    const tfPad = toTfPadding(pad);
    const stride = pair(strides);
    let y: tf.Tensor4D;
    if (groups === 1) {
      y = conv2d(x, effectiveFilter, stride, pad);
    } else if (groups === inC) {
      // Depthwise: output channel c * multiplier + m reads input channel c, as tfjs's layout has it.
      const multiplier = outC / inC;
      const depthwiseFilter = tf.reshape(effectiveFilter, [effectiveFilter.shape[0], effectiveFilter.shape[1], inC, multiplier]);
      y = tf.depthwiseConv2d(x, depthwiseFilter as tf.Tensor4D, stride, tfPad);
    } else {
      const inputs = tf.split(x, groups, 3) as tf.Tensor4D[];
      const filters = tf.split(effectiveFilter, groups, 3);
      y = tf.concat(
        inputs.map((input, g) => conv2d(input, filters[g] as tf.Tensor4D, stride, pad)),
        3,
      ) as tf.Tensor4D;
    }
    if (bias) y = tf.add(y, bias);
    const mask = maskOrDense(active, y, caller);
    return mask ? tf.mul(y, mask) : y;
  });
}

/**
 * `[kH, kW, I, O]` → `[(kH-1)*dH+1, (kW-1)*dW+1, I, O]` with zeros between taps, by pad + reshape only
 * (both differentiable everywhere). Kept at rank <= 4: tfjs-backend-webgpu 4.22 pads rank-6 tensors wrongly.
 */
function dilateFilter(filter: tf.Tensor4D, dilationH: number, dilationW: number): tf.Tensor4D {
  const [kernelH, kernelW, inC, outC] = filter.shape;
  // Rows: each tap row followed by dH - 1 zero rows.
  let spread: tf.Tensor = tf.reshape(filter, [kernelH, 1, kernelW * inC * outC]);
  spread = tf.pad(spread, [
    [0, 0],
    [0, dilationH - 1],
    [0, 0],
  ]);
  // Columns: each tap column followed by dW - 1 zero columns.
  spread = tf.reshape(spread, [kernelH * dilationH, kernelW, 1, inC * outC]);
  spread = tf.pad(spread, [
    [0, 0],
    [0, 0],
    [0, dilationW - 1],
    [0, 0],
  ]);
  spread = tf.reshape(spread, [kernelH * dilationH, kernelW * dilationW, inC, outC]);
  // Drop the zeros after the last tap.
  return tf.slice(spread, [0, 0, 0, 0], [(kernelH - 1) * dilationH + 1, (kernelW - 1) * dilationW + 1, inC, outC]) as tf.Tensor4D;
}

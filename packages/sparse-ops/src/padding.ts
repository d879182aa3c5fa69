import type * as tf from '@tensorflow/tfjs-core';

/**
 * Padding as PyTorch states it: one number for all sides, `[vertical, horizontal]`, or explicit
 * `[[top, bottom], [left, right]]`; or TensorFlow's `'same'` / `'valid'`.
 *
 * PyTorch pads strided convolutions symmetrically (`padding=3` for a 7x7 stride-2 stem); TensorFlow's
 * `'same'` puts the odd pixel at the bottom/right instead, which shifts every output on even sizes. Give
 * numbers to reproduce PyTorch.
 */
export type Padding2d = number | [number, number] | [[number, number], [number, number]] | 'same' | 'valid';

/**
 * tfjs's explicit NHWC padding for a {@link Padding2d}, for calling tfjs ops with PyTorch's padding.
 *
 * @example
 * toTfPadding(3);                // [[0, 0], [3, 3], [3, 3], [0, 0]]
 * toTfPadding([[0, 1], [1, 0]]); // [[0, 0], [0, 1], [1, 0], [0, 0]]
 * const y = tf.conv2d(x, filter, 2, toTfPadding(3));
 */
export function toTfPadding(pad: Padding2d): 'same' | 'valid' | tf.backend_util.ExplicitPadding {
  if (pad === 'same' || pad === 'valid') return pad;
  if (typeof pad === 'number')
    return [
      [0, 0],
      [pad, pad],
      [pad, pad],
      [0, 0],
    ];
  const [vertical, horizontal] = pad;
  const [top, bottom] = typeof vertical === 'number' ? [vertical, vertical] : vertical;
  const [left, right] = typeof horizontal === 'number' ? [horizontal, horizontal] : horizontal;
  return [
    [0, 0],
    [top, bottom],
    [left, right],
    [0, 0],
  ];
}

/**
 * `[top, bottom, left, right]` of any padding for an input of `shape` (`[B, H, W, C]`): numbers as given,
 * `'valid'` none, `'same'` TensorFlow's sides (output `ceil(size / stride)`, the odd pixel after).
 */
export function resolveSides(
  pad: Padding2d,
  shape: number[],
  windowSize: [number, number],
  stride: [number, number],
): [number, number, number, number] {
  if (pad === 'valid') return [0, 0, 0, 0];
  if (pad === 'same') {
    const sides = (size: number, window: number, step: number): [number, number] => {
      const total = Math.max((Math.ceil(size / step) - 1) * step + window - size, 0);
      return [Math.floor(total / 2), total - Math.floor(total / 2)];
    };
    return [...sides(shape[1], windowSize[0], stride[0]), ...sides(shape[2], windowSize[1], stride[1])];
  }
  const tfPad = toTfPadding(pad) as tf.backend_util.ExplicitPadding;
  return [tfPad[1][0], tfPad[1][1], tfPad[2][0], tfPad[2][1]];
}

export function pair(value: number | [number, number]): [number, number] {
  return typeof value === 'number' ? [value, value] : value;
}

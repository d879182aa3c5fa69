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

/** tfjs's explicit NHWC padding for a {@link Padding2d}. */
export function toTfPadding(pad: Padding2d): 'same' | 'valid' | tf.backend_util.ExplicitPadding {
  if (pad === 'same' || pad === 'valid') return pad;
  if (typeof pad === 'number') return [[0, 0], [pad, pad], [pad, pad], [0, 0]];
  const [vertical, horizontal] = pad;
  const [top, bottom] = typeof vertical === 'number' ? [vertical, vertical] : vertical;
  const [left, right] = typeof horizontal === 'number' ? [horizontal, horizontal] : horizontal;
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}

/** `[top, bottom, left, right]` of a numeric padding; undefined for 'same'/'valid'. */
export function explicitSides(pad: Padding2d): [number, number, number, number] | undefined {
  const tfPad = toTfPadding(pad);
  if (typeof tfPad === 'string') return undefined;
  return [tfPad[1][0], tfPad[1][1], tfPad[2][0], tfPad[2][1]];
}

export function pair(value: number | [number, number]): [number, number] {
  return typeof value === 'number' ? [value, value] : value;
}

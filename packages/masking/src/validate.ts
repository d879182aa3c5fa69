import type * as tf from '@tensorflow/tfjs-core';

/**
 * `[2, 4, 4, 1]`: the way every sparkmim package writes a shape in an error message.
 *
 * @example
 * throw new Error(`myOp: expected [B, H, W, C], got ${formatShape(x.shape)}`);
 */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Throws unless `value` is a positive integer; `name` and `caller` go into the message.
 *
 * @example
 * assertPositiveInteger(patchSize, 'patchSize', 'patchify'); // 'patchify: patchSize must be a positive integer, got 0'
 */
export function assertPositiveInteger(value: number, name: string, caller: string): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${caller}: ${name} must be a positive integer, got ${value}`);
  }
}

/**
 * Throws unless `active` has the mask shape `[B, h, w, 1]`.
 *
 * @example
 * assertMaskShape(active, 'sparkLoss'); // 'sparkLoss: active mask must have shape [B, h, w, 1], got [2, 7, 7]'
 */
export function assertMaskShape(active: tf.Tensor, caller: string): void {
  if (active.rank !== 4 || active.shape[3] !== 1) {
    throw new Error(`${caller}: active mask must have shape [B, h, w, 1], got ${formatShape(active.shape)}`);
  }
}

/**
 * Throws unless every value is exactly 0 or 1, naming the first offending index and value; a sync check
 * for mask values still in JS (before they become a tensor).
 *
 * @example
 * assertBinaryMaskValues([1, 0, 0, 1], 'myLoader'); // passes
 * assertBinaryMaskValues([1, 0.5], 'myLoader'); // throws 'myLoader: mask values must be 0 (masked) or 1 (visible), got 0.5 at index 1'
 */
export function assertBinaryMaskValues(values: ArrayLike<number>, caller = 'assertBinaryMaskValues'): void {
  for (let index = 0; index < values.length; index++) {
    const value = values[index];
    if (value !== 0 && value !== 1) {
      throw new Error(`${caller}: mask values must be 0 (masked) or 1 (visible), got ${value} at index ${index}`);
    }
  }
}

/**
 * Checks that `active` is a `[B, h, w, 1]` mask of only 0s and 1s; async because it reads the tensor with
 * `await data()`, which (unlike `dataSync()`) works on every backend, webgpu included.
 *
 * @param active `[B, h, w, 1]` float32 mask, 1 = visible patch, 0 = masked. Not disposed.
 * @param caller Name put at the start of the error message.
 *
 * @example
 * await assertBinaryMask(active, 'myTrainingStep'); // throws on a value other than 0 or 1
 */
export async function assertBinaryMask(active: tf.Tensor, caller = 'assertBinaryMask'): Promise<void> {
  assertMaskShape(active, caller);
  assertBinaryMaskValues(await active.data(), caller);
}

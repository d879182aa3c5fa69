import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { applyMask, assertBinaryMask, assertBinaryMaskValues, maskPicture, upsampleMask } from './index';

/** Nearest-neighbour upsampling by loops: output pixel (y, x) reads grid cell (y / rowRepeat, x / columnRepeat). */
function upsampleReference(mask: number[], [batch, gridH, gridW]: number[], height: number, width: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch; b++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const cellY = Math.floor(y / (height / gridH));
        const cellX = Math.floor(x / (width / gridW));
        out.push(mask[(b * gridH + cellY) * gridW + cellX]);
      }
  return out;
}

/** Deterministic, distinct test values, already float32 so that exact comparisons hold. */
function ramp(count: number, scale = 0.1, offset = -1): number[] {
  return Array.from({ length: count }, (_, index) => Math.fround(offset + scale * ((index * 7) % 23)));
}

// Batch 2, a non-square 2x3 grid, and non-square blocks (2 x 1) catch mixed-up axes and batch strides.
const MASK = [1, 0, 1, 0, 0, 1, /* sample 2 */ 0, 1, 1, 1, 0, 0];
const MASK_SHAPE: [number, number, number, number] = [2, 2, 3, 1];

describeBackends('upsampleMask', () => {
  it('repeats each grid cell as a block (nearest neighbour)', async () => {
    const active = tf.tensor4d(MASK, MASK_SHAPE);
    const upsampled = upsampleMask(active, [4, 3]);
    expect(upsampled.shape).toEqual([2, 4, 3, 1]);
    await expectClose(upsampled, upsampleReference(MASK, [2, 2, 3], 4, 3), { relative: 0 });
    const same = upsampleMask(active, [2, 3]);
    await expectClose(same, MASK, { relative: 0 });
    tf.dispose([active, upsampled, same]);
  });

  it('names both shapes when the size is not a multiple of the grid', () => {
    const active = tf.zeros([2, 4, 4, 1]);
    expect(() => upsampleMask(active, [30, 32])).toThrow(
      'upsampleMask: active mask [2, 4, 4, 1] does not divide output [30, 32] (height 30 is not a multiple of 4)',
    );
    expect(() => upsampleMask(active, [30, 30])).toThrow('(height 30 is not a multiple of 4, width 30 is not a multiple of 4)');
    expect(() => upsampleMask(active, [0, 32])).toThrow('upsampleMask: height must be a positive integer, got 0');
    const notAMask = tf.zeros([2, 4, 4, 3]);
    expect(() => upsampleMask(notAMask, [8, 8])).toThrow('upsampleMask: active mask must have shape [B, h, w, 1], got [2, 4, 4, 3]');
    tf.dispose([active, notAMask]);
  });
});

describeBackends('applyMask', () => {
  it('multiplies images by the upsampled mask', async () => {
    const [batch, height, width, channels] = [2, 4, 3, 2];
    const imageValues = ramp(batch * height * width * channels);
    const images = tf.tensor4d(imageValues, [batch, height, width, channels]);
    const active = tf.tensor4d(MASK, MASK_SHAPE);
    const masked = applyMask(images, active);
    const pixelMask = upsampleReference(MASK, [2, 2, 3], height, width);
    const expected = imageValues.map((value, index) => value * pixelMask[Math.floor(index / channels)]);
    expect(masked.shape).toEqual([batch, height, width, channels]);
    await expectClose(masked, expected, { relative: 0 });
    tf.dispose([images, active, masked]);
  });

  it('has the gradients of images * upsampled mask (w.r.t. images and mask)', async () => {
    const [batch, height, width, channels] = [2, 4, 3, 2];
    const imageValues = ramp(batch * height * width * channels);
    const weightValues = ramp(batch * height * width * channels, 0.05, 0.3);
    const pixelMask = upsampleReference(MASK, [2, 2, 3], height, width);
    // d/dimages sum(w * x * m) = w * m; d/dmask[cell] = sum over its block and channels of w * x.
    const expectedImageGrad = weightValues.map((weight, index) => weight * pixelMask[Math.floor(index / channels)]);
    const expectedMaskGrad = new Array<number>(MASK.length).fill(0);
    for (let b = 0; b < batch; b++)
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++)
          for (let c = 0; c < channels; c++) {
            const index = ((b * height + y) * width + x) * channels + c;
            const cell = (b * 2 + Math.floor(y / 2)) * 3 + x;
            expectedMaskGrad[cell] += weightValues[index] * imageValues[index];
          }
    const images = tf.tensor4d(imageValues, [batch, height, width, channels]);
    const active = tf.tensor4d(MASK, MASK_SHAPE);
    const weights = tf.tensor4d(weightValues, [batch, height, width, channels]);
    const [imageGrad, maskGrad] = tf.grads((x: tf.Tensor, m: tf.Tensor) => tf.sum(tf.mul(weights, applyMask(x, m))))([images, active]);
    await expectClose(imageGrad, expectedImageGrad, { relative: 1e-6, label: 'd/dimages' });
    await expectClose(maskGrad, expectedMaskGrad, { relative: 1e-5, label: 'd/dactive' });
    tf.dispose([images, active, weights, imageGrad, maskGrad]);
  });

  it('names both shapes for mismatched batch sizes or a grid that does not divide the images', () => {
    const images = tf.zeros([2, 8, 8, 3]);
    const threeMasks = tf.zeros([3, 2, 2, 1]);
    const badGrid = tf.zeros([2, 3, 2, 1]);
    expect(() => applyMask(images, threeMasks)).toThrow(
      'applyMask: images [2, 8, 8, 3] and active mask [3, 2, 2, 1] have different batch sizes (2 vs 3)',
    );
    expect(() => applyMask(images, badGrid)).toThrow(
      'applyMask: active mask [2, 3, 2, 1] does not divide images [2, 8, 8, 3] (height 8 is not a multiple of 3)',
    );
    const flat = tf.zeros([2, 8, 8]);
    const mask = tf.zeros([2, 2, 2, 1]);
    expect(() => applyMask(flat, mask)).toThrow('applyMask: images must have shape [B, H, W, C], got [2, 8, 8]');
    tf.dispose([images, threeMasks, badGrid, flat, mask]);
  });
});

describeBackends('maskPicture', () => {
  it('keeps visible pixels and paints masked ones with the fill (default 0.5, or per channel)', async () => {
    const [batch, height, width, channels] = [2, 4, 3, 3];
    const imageValues = ramp(batch * height * width * channels, 0.04, 0);
    const pixelMask = upsampleReference(MASK, [2, 2, 3], height, width);
    const images = tf.tensor4d(imageValues, [batch, height, width, channels]);
    const active = tf.tensor4d(MASK, MASK_SHAPE);
    const gray = maskPicture(images, active);
    const coloured = maskPicture(images, active, { fill: [1, 0, 0.25] });
    const expectedGray = imageValues.map((value, index) => (pixelMask[Math.floor(index / channels)] ? value : 0.5));
    const expectedColoured = imageValues.map((value, index) => (pixelMask[Math.floor(index / channels)] ? value : [1, 0, 0.25][index % channels]));
    await expectClose(gray, expectedGray, { relative: 0, label: 'default fill' });
    await expectClose(coloured, expectedColoured, { relative: 0, label: 'per-channel fill' });
    tf.dispose([images, active, gray, coloured]);
  });

  it('names a fill that does not match the channels', () => {
    const images = tf.zeros([1, 4, 4, 3]);
    const active = tf.ones([1, 2, 2, 1]);
    expect(() => maskPicture(images, active, { fill: [1, 0] })).toThrow('maskPicture: fill must be one number or one per channel (3), got 2 values');
    expect(() => maskPicture(images, active, { fill: NaN })).toThrow('maskPicture: fill must be finite, got NaN');
    tf.dispose([images, active]);
  });
});

describeBackends('assertBinaryMask', () => {
  it('accepts a 0/1 mask and names the first other value', async () => {
    const good = tf.tensor4d(MASK, MASK_SHAPE);
    const bad = tf.tensor4d([1, 0, 0.5, 1], [1, 2, 2, 1]);
    const wrongShape = tf.zeros([1, 2, 2]);
    await expect(assertBinaryMask(good)).resolves.toBeUndefined();
    await expect(assertBinaryMask(bad, 'myStep')).rejects.toThrow('myStep: mask values must be 0 (masked) or 1 (visible), got 0.5 at index 2');
    await expect(assertBinaryMask(wrongShape)).rejects.toThrow('assertBinaryMask: active mask must have shape [B, h, w, 1], got [1, 2, 2]');
    tf.dispose([good, bad, wrongShape]);
  });
});

describe('assertBinaryMaskValues', () => {
  it('checks JS values before they become a tensor', () => {
    expect(() => assertBinaryMaskValues([1, 0, 0, 1])).not.toThrow();
    expect(() => assertBinaryMaskValues(new Float32Array([1, -1]), 'loader')).toThrow(
      'loader: mask values must be 0 (masked) or 1 (visible), got -1 at index 1',
    );
  });
});

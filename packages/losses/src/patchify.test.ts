import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { patchify, unpatchify } from './index';
import { patchifyReference } from './reference-for-tests';

function counting(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}

describeBackends('patchify', () => {
  it('orders patches as SparK does (row-major patches, then row, column, channel inside a patch)', async () => {
    // Batch 2, a 2x3 grid of 2x2 patches, 3 channels: every axis has its own size.
    const shape = [2, 4, 6, 3];
    const values = counting(2 * 4 * 6 * 3);
    const images = tf.tensor4d(values, shape as [number, number, number, number]);
    const patches = patchify(images, 2);
    expect(patches.shape).toEqual([2, 6, 12]);
    await expectClose(patches, patchifyReference(values, shape, 2), { relative: 0 });
    tf.dispose([images, patches]);
  });

  it('is undone by unpatchify', async () => {
    const shape = [2, 4, 6, 3];
    const values = counting(2 * 4 * 6 * 3);
    // unpatchify of the reference patches must give the images back: checks unpatchify on its own.
    const patches = tf.tensor3d(patchifyReference(values, shape, 2), [2, 6, 12]);
    const images = unpatchify(patches, 2, [2, 3]);
    expect(images.shape).toEqual(shape);
    await expectClose(images, values, { relative: 0 });
    tf.dispose([patches, images]);
  });

  it('names the patch size and the images when it does not divide them', () => {
    const images = tf.zeros([2, 100, 128, 3]);
    expect(() => patchify(images, 32)).toThrow(
      'patchify: patch size 32 does not divide images [2, 100, 128, 3] (height 100 is not a multiple of 32)',
    );
    expect(() => patchify(images, 0)).toThrow('patchify: patchSize must be a positive integer, got 0');
    const flat = tf.zeros([2, 8, 8]);
    expect(() => patchify(flat, 4)).toThrow('patchify: images must have shape [B, H, W, C], got [2, 8, 8]');
    tf.dispose([images, flat]);
  });

  it('names the grid and the patches when unpatchify cannot fit them', () => {
    const patches = tf.zeros([2, 6, 12]);
    expect(() => unpatchify(patches, 2, [2, 2])).toThrow('unpatchify: patches [2, 6, 12] hold 6 patches, but a 2x2 grid has 4');
    expect(() => unpatchify(patches, 5, [2, 3])).toThrow(
      'unpatchify: patch length 12 of patches [2, 6, 12] is not a multiple of patchSize * patchSize = 25',
    );
    const images = tf.zeros([2, 4, 4, 3]);
    expect(() => unpatchify(images, 2, [2, 2])).toThrow('unpatchify: patches must have shape [B, L, p * p * C], got [2, 4, 4, 3]');
    tf.dispose([patches, images]);
  });
});

import * as tf from '@tensorflow/tfjs-core';
import { createTinyConvNet } from '@sparkmim/backbones';
import { keepCount } from '@sparkmim/masking';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { SparkModel } from '../index';

// Rectangular images through the whole model (the official code is square-only): a 64x96 batch is a 2x3
// grid of 32-pixel patches; the mask keeps exactly keepCount(2, 3) of them; every map, the reconstruction and
// the pictures keep the rectangle; the loss is SparK's, recomputed here in float64 from the reconstruction.

/** SparK's loss in float64: per-patch normalised target, mean squared error, averaged over masked patches. */
function referenceLoss(
  rec: ArrayLike<number>,
  images: ArrayLike<number>,
  active: ArrayLike<number>,
  [batch, height, width, channels]: number[],
  patch: number,
): number {
  const [gridH, gridW] = [height / patch, width / patch];
  const length = patch * patch * channels;
  let total = 0;
  let masked = 0;
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < gridH; i++) {
      for (let j = 0; j < gridW; j++) {
        const weight = 1 - active[(b * gridH + i) * gridW + j];
        masked += weight;
        const at: number[] = [];
        for (let y = 0; y < patch; y++) {
          for (let x = 0; x < patch; x++) {
            for (let c = 0; c < channels; c++) at.push(((b * height + i * patch + y) * width + j * patch + x) * channels + c);
          }
        }
        const values = at.map((index) => images[index]);
        const mean = values.reduce((sum, value) => sum + value, 0) / length;
        const std = Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / (length - 1) + 1e-6);
        let error = 0;
        at.forEach((index, k) => (error += (rec[index] - (values[k] - mean) / std) ** 2));
        total += (error / length) * weight;
      }
    }
  }
  return total / (masked + 1e-8);
}

describeBackends('SparkModel on rectangular images', () => {
  it('64x96: a 2x3 mask with the exact keep count, rectangular maps, reconstruction and pictures, and the float64 loss', async () => {
    const model = new SparkModel({ backbone: createTinyConvNet({ channels: [4, 8, 8, 8], seed: 1 }), decoderWidth: 32, seed: 2 });
    const images = tf.randomNormal([2, 64, 96, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const output = model.forwardWithIntermediates(images, { seed: 4 });
    expect(output.active.shape).toEqual([2, 2, 3, 1]);
    const active = await output.active.data();
    for (let b = 0; b < 2; b++) expect(Array.from(active.slice(b * 6, b * 6 + 6)).reduce((sum, value) => sum + value, 0)).toBe(keepCount(2, 3, 0.6));
    expect(output.features.map((map) => map.shape)).toEqual([
      [2, 16, 24, 4],
      [2, 8, 12, 8],
      [2, 4, 6, 8],
      [2, 2, 3, 8],
    ]);
    expect(output.reconstruction.shape).toEqual([2, 64, 96, 3]);
    const expected = referenceLoss(await output.reconstruction.data(), await images.data(), active, images.shape, 32);
    await expectClose(output.loss, [expected], { relative: 1e-5, label: 'loss' });
    const vis = model.visualizeOutput(images, output);
    expect(vis.recOrInput.shape).toEqual([2, 64, 96, 3]);
    tf.dispose([images, output, vis]);
    model.dispose();
  });
});

import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { IMAGENET_MEAN, IMAGENET_STD, denormalizeImages, imagesToRgba, normalizationTable, normalizeImages } from './normalize';

// (value / 255 - mean) / std, worked out by hand for the channel means and stds of timm:
//   R:   0 -> -0.485 / 0.229 = -2.117904,  255 -> 0.515 / 0.229 = 2.248908
//   G:   0 -> -0.456 / 0.224 = -2.035714,  255 -> 0.544 / 0.224 = 2.428571
//   B:   0 -> -0.406 / 0.225 = -1.804444,  255 -> 0.594 / 0.225 = 2.640000
const BLACK = [-2.117904, -2.035714, -1.804444];
const WHITE = [2.248908, 2.428571, 2.64];

describe('normalizationTable', () => {
  it('holds the hand-worked ends and is the formula at every value', () => {
    const table = normalizationTable();
    for (let channel = 0; channel < 3; channel++) {
      expect(table[channel * 256]).toBeCloseTo(BLACK[channel], 5);
      expect(table[channel * 256 + 255]).toBeCloseTo(WHITE[channel], 5);
      for (let value = 0; value < 256; value++) {
        expect(table[channel * 256 + value]).toBeCloseTo((value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel], 5);
      }
    }
  });
});

describeBackends('normalizeImages / denormalizeImages', () => {
  it('normalises black and white pixels to the hand-worked values', async () => {
    const pixels = tf.tensor4d([0, 0, 0, 255, 255, 255], [1, 1, 2, 3]);
    const normalized = normalizeImages(pixels);
    await expectClose(normalized, [...BLACK, ...WHITE], { relative: 1e-6, label: 'normalized' });
    tf.dispose([pixels, normalized]);
  });

  it('equals the float32 lookup table the folder source uses, for every 8-bit value', async () => {
    const values = Array.from({ length: 256 * 3 }, (_, i) => Math.floor(i / 3));
    const pixels = tf.tensor4d(values, [1, 16, 16, 3], 'int32');
    const normalized = normalizeImages(pixels);
    const table = normalizationTable();
    await expectClose(
      normalized,
      values.map((value, i) => table[(i % 3) * 256 + value]),
      { relative: 1e-6, label: 'table' },
    );
    tf.dispose([pixels, normalized]);
  });

  it('denormalises back to the same integers, clipping what lies outside 0..255', async () => {
    const values = Array.from({ length: 256 * 3 }, (_, i) => Math.floor(i / 3));
    const pixels = tf.tensor4d(values, [2, 8, 16, 3]);
    const normalized = normalizeImages(pixels);
    const back = denormalizeImages(normalized);
    expect(back.dtype).toBe('int32');
    expect(Array.from(await back.data())).toEqual(values);
    const outside = tf.tensor4d([-10, 0, 0, 0, 0, 10], [1, 1, 2, 3]);
    const clipped = denormalizeImages(outside);
    const clippedValues = Array.from(await clipped.data());
    expect([clippedValues[0], clippedValues[5]]).toEqual([0, 255]);
    tf.dispose([pixels, normalized, back, outside, clipped]);
  });

  it('turns a batch into RGBA pictures with opaque alpha', async () => {
    const pixels = tf.tensor4d([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120], [2, 1, 2, 3]);
    const normalized = normalizeImages(pixels);
    const pictures = await imagesToRgba(normalized);
    expect(pictures.map((picture) => ({ width: picture.width, height: picture.height, data: Array.from(picture.data) }))).toEqual([
      { width: 2, height: 1, data: [10, 20, 30, 255, 40, 50, 60, 255] },
      { width: 2, height: 1, data: [70, 80, 90, 255, 100, 110, 120, 255] },
    ]);
    tf.dispose([pixels, normalized]);
  });

  it('says what it expected for images without 3 channels', () => {
    const gray = tf.zeros([1, 4, 4, 1]) as tf.Tensor4D;
    expect(() => normalizeImages(gray)).toThrow('normalizeImages: images are [1, 4, 4, 1], expected [B, H, W, 3]');
    expect(() => denormalizeImages(gray)).toThrow('denormalizeImages: images are [1, 4, 4, 1], expected [B, H, W, 3]');
    gray.dispose();
  });
});

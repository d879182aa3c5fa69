// Rectangular crops of ImageFolderSource (Node only: sharp decodes): a rectangle that is a square gives the
// square path's batches, and a rectangle is the crop resized to width x height without stretching.
import { describeBackends } from '@sparkmim/test-utils';
import { cropRatioFor, imageSizeOf } from './crop';
import { ImageFolderSource } from './image-folder';
import { IMAGENET_MEAN, IMAGENET_STD } from './normalize';
import type { Batch } from './source';
import { encodePng, makeTempFolder, rampPixels, removeFolder } from './test-images';

const folders: string[] = [];
afterAll(() => folders.forEach(removeFolder));

async function firstBatch(source: ImageFolderSource, seed: number): Promise<{ shape: number[]; values: Float32Array; indices: number[] }> {
  for await (const batch of source.epochBatches(0, { batchSize: source.size, seed }) as AsyncIterable<Batch>) {
    const values = (await batch.images.data()) as Float32Array;
    const shape = batch.images.shape.slice();
    batch.images.dispose();
    return { shape, values, indices: batch.indices };
  }
  throw new Error('no batch');
}

describeBackends('ImageFolderSource with a rectangular inputSize', () => {
  it('gives the same batches for { height: S, width: S } as for S (crops, flips, resizes)', async () => {
    const folder = makeTempFolder({
      'a.png': encodePng(rampPixels(20, 14, 9), 20, 14, 3),
      'b.png': encodePng(rampPixels(13, 17, 11, 40), 13, 17, 3),
      'c.png': encodePng(rampPixels(16, 16, 13, 200), 16, 16, 3),
    });
    folders.push(folder);
    const square = await ImageFolderSource.open(folder, { inputSize: 8 });
    const rectangle = await ImageFolderSource.open(folder, { inputSize: { height: 8, width: 8 } });
    for (const seed of [0, 1]) {
      const [a, b] = [await firstBatch(square, seed), await firstBatch(rectangle, seed)];
      expect(b.shape).toEqual([3, 8, 8, 3]);
      expect(b.indices).toEqual(a.indices);
      expect(Array.from(b.values)).toEqual(Array.from(a.values));
    }
    square.dispose();
    rectangle.dispose();
  });

  it('resizes the crop to width x height: a 60x40 ramp, kept whole, halves exactly into 30x20', async () => {
    // red = 4x, green = 4y: the whole image (scale 1, ratio 1 relative to the 3:2 output) halved is red = 8x' + 2,
    // green = 8y' + 2 at output pixel (x', y') away from the borders (a cubic kernel reproduces a linear ramp).
    const folder = makeTempFolder({ 'ramp.png': encodePng(rampPixels(60, 40, 4, 100), 60, 40, 3) });
    folders.push(folder);
    const source = await ImageFolderSource.open(folder, { inputSize: { height: 20, width: 30 }, scale: [1, 1], ratio: [1, 1], flip: false });
    expect(source.imageSize).toEqual({ height: 20, width: 30 });
    const { shape, values } = await firstBatch(source, 0);
    expect(shape).toEqual([1, 20, 30, 3]);
    const level = (value: number, channel: number) => (value * IMAGENET_STD[channel] + IMAGENET_MEAN[channel]) * 255;
    let worst = 0;
    for (let y = 2; y < 18; y++) {
      for (let x = 2; x < 28; x++) {
        const at = (y * 30 + x) * 3;
        worst = Math.max(
          worst,
          Math.abs(level(values[at], 0) - (8 * x + 2)),
          Math.abs(level(values[at + 1], 1) - (8 * y + 2)),
          Math.abs(level(values[at + 2], 2) - 100),
        );
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
    source.dispose();
  });
});

describe('imageSizeOf and cropRatioFor', () => {
  it('reads one number or a rectangle, and names a bad one', () => {
    expect(imageSizeOf(224)).toEqual({ height: 224, width: 224 });
    expect(imageSizeOf({ height: 192, width: 320 })).toEqual({ height: 192, width: 320 });
    expect(() => imageSizeOf(0, 'X')).toThrow('X: inputSize is 0, expected a whole number >= 1');
    expect(() => imageSizeOf({ height: 96, width: 12.5 }, 'X')).toThrow(
      'X: inputSize {"height":96,"width":12.5} has width 12.5, expected a whole number >= 1',
    );
  });

  it("is torchvision's range for a square and the range times the aspect for a rectangle", () => {
    expect(cropRatioFor([3 / 4, 4 / 3], { height: 64, width: 64 })).toEqual([3 / 4, 4 / 3]);
    expect(cropRatioFor([3 / 4, 4 / 3], { height: 96, width: 128 })).toEqual([1, 16 / 9]);
  });
});

// Preview grids of `sparkmim pretrain`: for a fixed set of images and a fixed mask, one row per image and
// four columns: input, masked input, reconstruction, reconstruction with the visible patches pasted back.
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type Sharp from 'sharp';
import { denormalizeImages, type DataSource, type SparkModel } from '@sparkmim/trainer';
import { loadSharp } from '@sparkmim/trainer/node';

/** Pictures smaller than this many pixels are shown enlarged by a whole factor (nearest neighbour). */
const MIN_PICTURE_SIZE = 128;

/** Gap between the pictures, in pixels (white). */
const GAP = 2;

/**
 * The first batch of `count` images of the source's order under `seed` (augmented as training batches
 * are, but always the same), kept for every preview of the run. The caller disposes it.
 */
export async function previewImages(source: DataSource, count: number, seed: number): Promise<tf.Tensor4D> {
  const iterator = source.epochBatches(0, { batchSize: count, seed })[Symbol.asyncIterator]();
  try {
    const next = await iterator.next();
    if (next.done) throw new Error('pretrain: the data source gave no batch for the previews');
    return next.value.images;
  } finally {
    await iterator.return?.();
  }
}

/**
 * Writes the grid for `images` `[N, H, W, 3]` (normalised; rectangles too) with the mask drawn from `maskSeed` (the same
 * every time), in evaluation mode so that previews leave the batch-norm statistics alone. Returns the file.
 */
export async function writePreview(model: SparkModel, images: tf.Tensor4D, maskSeed: number, file: string): Promise<string> {
  model.eval();
  let columns: tf.Tensor4D[] = [];
  try {
    const vis = model.visualize(images, { seed: maskSeed });
    columns = [vis.input, vis.masked, vis.reconstruction, vis.recOrInput].map((picture) => denormalizeImages(picture));
    tf.dispose(vis);
    const pixels = await Promise.all(columns.map((column) => column.data() as Promise<Int32Array>));
    const [count, imageHeight, imageWidth] = images.shape;
    // Small inputs (the quickstart's 96 pixels) are enlarged by whole pixels, so that patches stay sharp.
    const scale = Math.max(1, Math.ceil(MIN_PICTURE_SIZE / Math.min(imageHeight, imageWidth)));
    const [cellHeight, cellWidth] = [imageHeight * scale, imageWidth * scale];
    const width = 4 * cellWidth + 5 * GAP;
    const height = count * cellHeight + (count + 1) * GAP;
    const grid = Buffer.alloc(width * height * 3, 255);
    for (let row = 0; row < count; row++) {
      for (let column = 0; column < 4; column++) {
        const values = pixels[column];
        const left = GAP + column * (cellWidth + GAP);
        const top = GAP + row * (cellHeight + GAP);
        for (let y = 0; y < cellHeight; y++) {
          const from = (row * imageHeight + Math.floor(y / scale)) * imageWidth * 3;
          const to = ((top + y) * width + left) * 3;
          for (let x = 0; x < cellWidth; x++) {
            const source = from + Math.floor(x / scale) * 3;
            grid[to + x * 3] = values[source];
            grid[to + x * 3 + 1] = values[source + 1];
            grid[to + x * 3 + 2] = values[source + 2];
          }
        }
      }
    }
    await mkdir(path.dirname(file), { recursive: true });
    const sharp = await loadSharp<typeof Sharp>('sparkmim pretrain (previews)');
    await sharp(grid, { raw: { width, height, channels: 3 } })
      .png()
      .toFile(file);
    return file;
  } finally {
    tf.dispose(columns);
    model.train(true);
  }
}

import * as tf from '@tensorflow/tfjs-core';
import { normalizeImages } from './normalize';
import { augmentationRandom, indexAt, planEpoch } from './source';
import type { Batch, DataSource, EpochOptions } from './source';

export interface InMemorySourceOptions {
  /** Mirror each image left-right with probability 1/2 (SparK's `RandomHorizontalFlip`), seeded. Default false. */
  flip?: boolean;
}

/** One picture as plain pixels: RGB or RGBA bytes, row-major (a canvas's `ImageData` fits). */
export interface PixelImage {
  /** `height · width · channels` values 0 .. 255. */
  data: ArrayLike<number>;
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA, alpha dropped). Default: worked out from the length of `data`. */
  channels?: 3 | 4;
}

/**
 * A {@link DataSource} over images already in memory (browser and Node): the same seeded epoch order and
 * fixed batch shapes as {@link ImageFolderSource}, with an optional seeded horizontal flip and no crop.
 * Batches are gathered, flipped and normalised on the backend. Holds one float32 copy of the pixels until
 * `dispose()`.
 *
 * @example
 * const source = InMemorySource.fromTensor(pixels, { flip: true }); // pixels: [N, H, W, 3], values 0..255
 * for await (const batch of source.epochBatches(0, { batchSize: 8, seed: 1 })) {
 *   await step(batch.images); // [8, H, W, 3], ImageNet-normalised
 *   batch.images.dispose();
 * }
 * source.dispose();
 */
export class InMemorySource implements DataSource {
  readonly size: number;
  /** The images' height (their side when square). */
  readonly inputSize: number;
  /** The images' height and width: batches are `[B, height, width, 3]`. */
  readonly imageSize: { readonly height: number; readonly width: number };
  readonly flip: boolean;
  private pixels: tf.Tensor4D | undefined;

  private constructor(pixels: tf.Tensor4D, options: InMemorySourceOptions) {
    this.pixels = pixels;
    this.size = pixels.shape[0];
    this.inputSize = pixels.shape[1];
    this.imageSize = { height: pixels.shape[1], width: pixels.shape[2] };
    this.flip = options.flip ?? false;
  }

  /**
   * A source over `[N, H, W, 3]` RGB pixels with values 0 .. 255 (any dtype; square or not). The tensor is
   * copied (as float32), so the caller may dispose its own.
   *
   * @example
   * const source = InMemorySource.fromTensor(tf.randomUniform([16, 32, 32, 3], 0, 255) as tf.Tensor4D);
   */
  static fromTensor(pixels: tf.Tensor4D, options: InMemorySourceOptions = {}): InMemorySource {
    const shape = pixels.shape;
    if (pixels.rank !== 4 || shape[3] !== 3 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1) {
      throw new Error(`InMemorySource.fromTensor: pixels are [${shape.join(', ')}], expected [N, H, W, 3] with N >= 1`);
    }
    return new InMemorySource(tf.tidy(() => tf.cast(pixels, 'float32').clone()) as tf.Tensor4D, options);
  }

  /**
   * A source over pictures given as pixel arrays (RGB or RGBA, e.g. canvas `ImageData`), all of one size
   * (square or not).
   *
   * @example
   * const source = InMemorySource.fromPixels([context.getImageData(0, 0, 64, 64)], { flip: true });
   */
  static fromPixels(images: readonly PixelImage[], options: InMemorySourceOptions = {}): InMemorySource {
    if (images.length === 0) throw new Error('InMemorySource.fromPixels: no images, expected at least one');
    const { width, height } = images[0];
    if (!(Number.isInteger(width) && width >= 1 && Number.isInteger(height) && height >= 1)) {
      throw new Error(`InMemorySource.fromPixels: image 0 is ${width}x${height}, expected at least 1x1`);
    }
    const perImage = width * height;
    const values = new Float32Array(images.length * perImage * 3);
    images.forEach((image, index) => {
      if (image.width !== width || image.height !== height) {
        throw new Error(`InMemorySource.fromPixels: image ${index} is ${image.width}x${image.height}, expected ${width}x${height} like image 0`);
      }
      const channels = image.channels ?? image.data.length / perImage;
      if ((channels !== 3 && channels !== 4) || image.data.length !== perImage * channels) {
        throw new Error(
          `InMemorySource.fromPixels: image ${index} has ${image.data.length} values, expected ${perImage * 3} (RGB) or ${perImage * 4} (RGBA) for ${width}x${height}`,
        );
      }
      const offset = index * perImage * 3;
      for (let pixel = 0; pixel < perImage; pixel++) {
        for (let channel = 0; channel < 3; channel++) values[offset + pixel * 3 + channel] = image.data[pixel * channels + channel];
      }
    });
    return new InMemorySource(tf.tensor4d(values, [images.length, height, width, 3]), options);
  }

  /**
   * The batches of one epoch (see {@link DataSource.epochBatches}); each `images` belongs to the caller.
   *
   * @example
   * for await (const { images, indices } of source.epochBatches(3, { batchSize: 4, seed: 7 })) images.dispose();
   */
  async *epochBatches(epoch: number, options: EpochOptions): AsyncIterable<Batch> {
    const plan = planEpoch('InMemorySource.epochBatches', this.size, epoch, options);
    for (let batchIndex = plan.startBatch; batchIndex < plan.batchCount; batchIndex++) {
      const pixels = this.pixels;
      if (!pixels) throw new Error('InMemorySource.epochBatches: the source was disposed');
      const indices: number[] = [];
      const flips: number[] = [];
      for (let slot = 0; slot < plan.batchSize; slot++) {
        const position = batchIndex * plan.batchSize + slot;
        indices.push(indexAt(plan, position));
        // One draw per image, as RandomHorizontalFlip's `torch.rand(1) < p`.
        flips.push(this.flip && augmentationRandom(plan.seed, epoch, batchIndex, position)() < 0.5 ? 1 : 0);
      }
      const images = tf.tidy(() => {
        let selected = tf.gather(pixels, tf.tensor1d(indices, 'int32')) as tf.Tensor4D;
        if (flips.some((flip) => flip === 1)) {
          // x·(1 - f) + mirror(x)·f with f ∈ {0, 1} per image: exact, and one shape for every batch.
          const flipMask = tf.tensor4d(flips, [flips.length, 1, 1, 1]);
          selected = tf.add(tf.mul(selected, tf.sub(1, flipMask)), tf.mul(tf.reverse(selected, 2), flipMask));
        }
        return normalizeImages(selected);
      });
      yield { images, indices, batchIndex };
    }
  }

  /**
   * Frees the pixel copy. Batches already handed out stay valid.
   *
   * @example
   * source.dispose();
   */
  dispose(): void {
    this.pixels?.dispose();
    this.pixels = undefined;
  }
}

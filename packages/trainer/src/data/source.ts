import type * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '@sparkmim/masking';

/** One training batch. The consumer owns `images` and must dispose it (e.g. `tf.dispose(batch.images)`). */
export interface Batch {
  /** `[B, S, S, 3]` float32, ImageNet-normalised: `(pixel / 255 - IMAGENET_MEAN) / IMAGENET_STD`, channels RGB. */
  images: tf.Tensor4D;
  /** The dataset index of each image, in batch order (for a folder source: an index into `source.files`). */
  indices: number[];
  /** Which batch of the epoch this is: 0 .. batchesPerEpoch - 1. */
  batchIndex: number;
}

export interface EpochOptions {
  /** Images per batch; every batch has exactly this many (fixed shapes: WebGPU compiles a shader per shape). */
  batchSize: number;
  /** Seed of the run: the order and the augmentation of an epoch depend only on (seed, epoch). Default 0. */
  seed?: number;
  /**
   * Drop the images that do not fill a last batch: `floor(size / batchSize)` batches. Default false: the
   * last batch is completed with the first images of the epoch's order, `ceil(size / batchSize)` batches (the
   * official `DistInfiniteBatchSampler(filling=True)`).
   */
  dropLast?: boolean;
  /** Start the epoch at this batch (to resume a run mid-epoch; the batches before it are not decoded). Default 0. */
  startBatch?: number;
}

/**
 * A file a data source left out because it could not be read or decoded (corrupt, truncated, not an image,
 * empty, unreadable). {@link ImageFolderSource}'s `SkippedImage` is one (with the file's index besides).
 */
export interface SkippedFile {
  /** The file's path (absolute for a folder source). */
  readonly path: string;
  /** Why it was skipped: the reader's or decoder's message. */
  readonly reason: string;
}

/**
 * Where the training loop gets its images. An epoch is one pass over a seeded permutation of the dataset,
 * cut into batches of exactly `batchSize` images; the same (seed, epoch) always gives the same batches, in
 * the same order, with the same augmentation (whatever the prefetching or timing), so a resumed run sees
 * what an uninterrupted one would have.
 *
 * Implementations: {@link ImageFolderSource} (Node: a folder of JPEG, PNG, WebP files, decoded with sharp,
 * SparK's augmentation) and {@link InMemorySource} (browser and Node: images already in memory).
 *
 * @example
 * const iterations = batchesPerEpoch(source.size, { batchSize: 32 });
 * for (let epoch = 0; epoch < epochs; epoch++) {
 *   for await (const { images, batchIndex } of source.epochBatches(epoch, { batchSize: 32, seed: 0 })) {
 *     try {
 *       await trainStep(images); // images: [32, S, S, 3]
 *     } finally {
 *       images.dispose(); // the consumer owns each batch's tensor
 *     }
 *   }
 * }
 * source.dispose();
 */
export interface DataSource {
  /** Images in the dataset (a folder source counts every file found, broken ones included, so it never changes). */
  readonly size: number;
  /** Side `S` of the square images of every batch (`images` is `[B, S, S, 3]`); for rectangles, their height. */
  readonly inputSize: number;
  /** Height and width of every batch's images (`[B, height, width, 3]`); absent: `inputSize` x `inputSize`. */
  readonly imageSize?: { readonly height: number; readonly width: number };
  /**
   * The batches of one epoch, in order ({@link batchesPerEpoch} of them, fewer with `startBatch`). Each
   * batch's `images` belongs to the caller, who disposes it. Breaking out of the loop early is fine.
   */
  epochBatches(epoch: number, options: EpochOptions): AsyncIterable<Batch>;
  /**
   * Optional: the files skipped so far, in the order they were found (a folder source's broken files). The
   * training loop copies it into its end-of-run summary (`TrainResult.skipped`). Omitted by sources
   * that cannot skip anything ({@link InMemorySource}).
   */
  readonly skipped?: readonly SkippedFile[];
  /** Frees what the source holds (tensors, pending work). Batches already handed out stay valid. */
  dispose(): void;
}

/**
 * Batches per epoch for a dataset of `size` images: `ceil(size / batchSize)`, or `floor` with `dropLast`
 * (the `iterationsPerEpoch` of the schedule).
 *
 * @example
 * batchesPerEpoch(1000, { batchSize: 64 }); // 16 (the last one completed with images from the start)
 * batchesPerEpoch(1000, { batchSize: 64, dropLast: true }); // 15
 */
export function batchesPerEpoch(size: number, { batchSize, dropLast = false }: Pick<EpochOptions, 'batchSize' | 'dropLast'>): number {
  if (!(Number.isInteger(size) && size >= 0)) throw new Error(`batchesPerEpoch: size is ${size}, expected a whole number >= 0`);
  checkBatchSize('batchesPerEpoch', batchSize);
  return dropLast ? Math.floor(size / batchSize) : Math.ceil(size / batchSize);
}

function checkBatchSize(caller: string, batchSize: number): void {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
    throw new Error(`${caller}: batchSize is ${batchSize}, expected a whole number >= 1`);
  }
}

/** Folds integers into one 32-bit seed (murmur3's finaliser after each part): nearby inputs give unrelated seeds. */
export function hashSeed(...parts: number[]): number {
  let hash = 0x9e3779b9;
  for (const part of parts) {
    // Both 32-bit halves, so every bit of a safe integer (and its sign) counts.
    for (const word of [part >>> 0, Math.floor(part / 4294967296) >>> 0]) {
      hash = Math.imul(hash ^ word, 0xcc9e2d51);
      hash ^= hash >>> 16;
      hash = Math.imul(hash, 0x85ebca6b);
      hash ^= hash >>> 13;
      hash = Math.imul(hash, 0xc2b2ae35);
      hash ^= hash >>> 16;
    }
  }
  return hash >>> 0;
}

// Stream tags: the order and the augmentation of an epoch come from unrelated streams of one seed.
const ORDER_STREAM = 1;
const AUGMENT_STREAM = 2;

/**
 * The epoch's order: a Fisher–Yates shuffle of 0 .. size - 1 driven by a stream seeded from (seed, epoch),
 * the role of the official sampler's `torch.randperm(n, generator seeded with seed + epoch)`.
 */
export function epochPermutation(size: number, seed: number, epoch: number): Int32Array {
  const random = seededRandom(hashSeed(seed, epoch, ORDER_STREAM));
  const order = new Int32Array(size);
  for (let i = 0; i < size; i++) order[i] = i;
  for (let i = size - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = order[i];
    order[i] = order[j];
    order[j] = swap;
  }
  return order;
}

/**
 * The random stream of one image of a batch. `position` is the image's place in the epoch's (cyclic) order,
 * so the augmentation does not depend on which other images decoded first.
 */
export function augmentationRandom(seed: number, epoch: number, batchIndex: number, position: number): () => number {
  return seededRandom(hashSeed(seed, epoch, batchIndex, position, AUGMENT_STREAM));
}

/** The checked options of one epoch and its order. */
export interface EpochPlan {
  epoch: number;
  seed: number;
  batchSize: number;
  batchCount: number;
  startBatch: number;
  order: Int32Array;
}

/** Checks the arguments of `epochBatches` and draws the epoch's order; errors name `caller`. */
export function planEpoch(caller: string, size: number, epoch: number, options: EpochOptions): EpochPlan {
  const { batchSize, seed = 0, dropLast = false, startBatch = 0 } = options;
  if (!(Number.isSafeInteger(epoch) && epoch >= 0)) throw new Error(`${caller}: epoch is ${epoch}, expected a whole number >= 0`);
  checkBatchSize(caller, batchSize);
  if (!Number.isSafeInteger(seed)) throw new Error(`${caller}: seed is ${seed}, expected an integer`);
  const batchCount = batchesPerEpoch(size, { batchSize, dropLast });
  if (batchCount === 0) {
    throw new Error(`${caller}: batchSize ${batchSize} is larger than the ${size} images and dropLast is set, so an epoch has no batches`);
  }
  if (!(Number.isInteger(startBatch) && startBatch >= 0 && startBatch <= batchCount)) {
    throw new Error(`${caller}: startBatch is ${startBatch}, expected a whole number in [0, ${batchCount}]`);
  }
  return { epoch, seed, batchSize, batchCount, startBatch, order: epochPermutation(size, seed, epoch) };
}

/**
 * The dataset index at `position` of the epoch's order, read cyclically: positions past the end wrap to the
 * start, which is how the last batch is completed (the official `filling`) and where replacements for
 * broken files come from.
 */
export function indexAt(plan: EpochPlan, position: number): number {
  return plan.order[position % plan.order.length];
}

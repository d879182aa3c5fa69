import * as tf from '@tensorflow/tfjs-core';
import type * as FsPromises from 'node:fs/promises';
import type * as NodePath from 'node:path';
import { DEFAULT_CROP_RATIO, SPARK_CROP_SCALE, cropRatioFor, imageSizeOf, randomResizedCropParams, type ImageSize } from './crop';
import { resizeBicubicLikePil } from './resize';
import { fs, loadSharp, path } from './node-modules';
import type { SharpFactory, SharpInstance } from './node-modules';
import { normalizationTable } from './normalize';
import { augmentationRandom, indexAt, planEpoch } from './source';
import type { Batch, DataSource, EpochOptions, EpochPlan } from './source';

/** File extensions the folder source reads (compared case-insensitively). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

/** Why {@link ImageFolderSource.open} failed, for a CLI that prints one line per case. */
export type ImageFolderErrorCode = 'missing-folder' | 'not-a-folder' | 'unreadable-folder' | 'no-images' | 'no-decodable-images';

/** A folder that cannot serve as a dataset. `message` is one line naming the folder. */
export class ImageFolderError extends Error {
  readonly code: ImageFolderErrorCode;
  readonly folder: string;

  constructor(code: ImageFolderErrorCode, folder: string, message: string) {
    super(message);
    this.name = 'ImageFolderError';
    this.code = code;
    this.folder = folder;
  }
}

/** A file that was skipped because it could not be read or decoded. */
export interface SkippedImage {
  /** Absolute path. */
  path: string;
  /** Its index in `source.files`. */
  index: number;
  /** The reader's or decoder's message. */
  reason: string;
}

export interface ImageFolderSourceOptions {
  /**
   * Side of the square crops (batches `[B, inputSize, inputSize, 3]`; SparK: 224), or `{ height, width }` for
   * rectangular crops (batches `[B, height, width, 3]`; the aspect-ratio range is then relative to the
   * rectangle's, see {@link cropRatioFor}).
   */
  inputSize: ImageSize;
  /** RandomResizedCrop area range. Default SparK's (0.67, 1.0). */
  scale?: readonly [number, number];
  /** RandomResizedCrop aspect-ratio range. Default (3/4, 4/3). */
  ratio?: readonly [number, number];
  /** RandomHorizontalFlip with probability 1/2. Default true. */
  flip?: boolean;
  /** Batches decoded ahead of the one the consumer holds. 0 decodes on demand. Default 2. */
  prefetch?: number;
  /** Files read and decoded at once (sharp runs them on libuv's pool, 4 threads unless UV_THREADPOOL_SIZE says otherwise). Default 4. */
  concurrency?: number;
  /** Called once per skipped file; replaces the default warning (`console.warn`). */
  onSkip?: (skipped: SkippedImage, skippedSoFar: number) => void;
  /**
   * Images of more pixels (width × height, read from the header before anything is decoded) are skipped.
   * Default {@link MAX_IMAGE_PIXELS} (64 Mi pixels: 8192 × 8192), which bounds the memory one decode takes.
   */
  maxPixels?: number;
}

/**
 * The default pixel limit of {@link ImageFolderSource}: 64 Mi pixels (8192 × 8192; a 24-megapixel photo is well
 * below). A small file can declare a huge image (a 1 MB PNG of 16000 × 16000), whose decode would take gigabytes.
 */
export const MAX_IMAGE_PIXELS = 8192 * 8192;

/** Runs at most `limit` tasks at once, the rest in the order they were queued (earlier batches first). */
class TaskQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running += 1;
    try {
      return await task();
    } finally {
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }
}

interface DecodedBatch {
  values: Float32Array;
  indices: number[];
  batchIndex: number;
}

async function scanImages(fs: typeof FsPromises, path: typeof NodePath, root: string) {
  const files: string[] = [];
  let filesSeen = 0;
  let foldersSeen = 0;
  const visited = new Set<string>();
  const walk = async (folder: string): Promise<void> => {
    // Symbolic links are followed (datasets are often linked in); the real path guards against cycles.
    const real = await fs.realpath(folder);
    if (visited.has(real)) return;
    visited.add(real);
    foldersSeen += 1;
    const entries = await fs.readdir(folder, { withFileTypes: true });
    for (const entry of entries) {
      const entryPath = path.join(folder, entry.name);
      let isFolder = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await fs.stat(entryPath).catch(() => undefined);
        isFolder = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isFolder) await walk(entryPath);
      else if (isFile) {
        filesSeen += 1;
        if (IMAGE_EXTENSIONS.includes(path.extname(entry.name).toLowerCase())) files.push(entryPath);
      }
    }
  };
  await walk(root);
  // Code-unit order (as Python's sorted): the same list on every file system.
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { files, filesSeen, foldersSeen };
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}

/**
 * A {@link DataSource} over a folder of images (Node only), with SparK's training augmentation
 * (`utils/imagenet.py`): `RandomResizedCrop(inputSize, scale=(0.67, 1), ratio=(3/4, 4/3), bicubic)`,
 * `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(IMAGENET_MEAN, IMAGENET_STD)`.
 *
 * - Files: every `.jpg`, `.jpeg`, `.png`, `.webp` below the folder (any case, links followed), in sorted
 *   order; pass ImageNet's `train` folder itself. Decoded with sharp to 8-bit sRGB RGB: grayscale is
 *   repeated to RGB, alpha is dropped (as PIL's `convert('RGB')`), 16-bit is reduced to 8. EXIF orientation
 *   is ignored, as PIL does.
 * - Crop and resize: the crop box is drawn as torchvision's `get_params` ({@link randomResizedCropParams}),
 *   then sharp extracts it and resizes with its cubic (Catmull-Rom) kernel.
 * - Randomness: all from the epoch's `seed`: the order from (seed, epoch), each image's crop and flip from
 *   (seed, epoch, batch, position), so batches do not depend on timing or prefetching.
 * - Size limit: an image of more than `maxPixels` pixels ({@link MAX_IMAGE_PIXELS}, 8192 × 8192, by default),
 *   read from its header, is skipped undecoded; images with alpha have only their crop box decoded.
 * - Broken files (corrupt, truncated, not an image, empty, unreadable) are skipped with a warning, remembered
 *   in {@link skipped} and never retried; a batch that loses one takes the next file of the epoch's order
 *   instead, so every batch is full.
 * - Prefetching: while the consumer holds a batch, the next `prefetch` batches are being decoded.
 *
 * @example
 * const source = await ImageFolderSource.open('imagenet/train', { inputSize: 224 });
 * for await (const batch of source.epochBatches(epoch, { batchSize: 64, seed: 0 })) {
 *   await trainStep(batch.images); // [64, 224, 224, 3]
 *   batch.images.dispose();
 * }
 * console.log(`${source.skipped.length} files skipped`);
 */
export class ImageFolderSource implements DataSource {
  /** The folder, as an absolute path. */
  readonly folder: string;
  /** Every image file found (absolute paths, sorted); `Batch.indices` index into it. */
  readonly files: readonly string[];
  /** The crops' height (their side when square). */
  readonly inputSize: number;
  /** The crops' height and width: batches are `[B, height, width, 3]`. */
  readonly imageSize: { readonly height: number; readonly width: number };
  readonly scale: readonly [number, number];
  readonly ratio: readonly [number, number];
  readonly flip: boolean;
  readonly prefetch: number;
  private readonly skippedByIndex = new Map<number, SkippedImage>();
  private readonly queue: TaskQueue;
  private readonly table = normalizationTable();
  private readonly onSkip: (skipped: SkippedImage, skippedSoFar: number) => void;
  private readonly maxPixels: number;
  private disposed = false;

  private constructor(
    private readonly fs: typeof FsPromises,
    private readonly sharp: SharpFactory,
    folder: string,
    files: string[],
    options: ImageFolderSourceOptions,
  ) {
    this.folder = folder;
    this.files = files;
    this.imageSize = imageSizeOf(options.inputSize, 'ImageFolderSource');
    this.inputSize = this.imageSize.height;
    this.scale = options.scale ?? SPARK_CROP_SCALE;
    this.ratio = options.ratio ?? DEFAULT_CROP_RATIO;
    this.flip = options.flip ?? true;
    this.prefetch = options.prefetch ?? 2;
    this.queue = new TaskQueue(options.concurrency ?? 4);
    this.maxPixels = options.maxPixels ?? MAX_IMAGE_PIXELS;
    this.onSkip =
      options.onSkip ??
      ((skipped, count) => console.warn(`ImageFolderSource: skipping ${skipped.path}: ${skipped.reason} (${count} skipped so far)`));
  }

  /**
   * Scans `folder` and checks that it holds at least one image that decodes (decoding files in order until
   * one does). Fails with an {@link ImageFolderError} naming the case: `missing-folder`, `not-a-folder`,
   * `no-images` (no file with an image extension) or `no-decodable-images` (every one is broken); and when
   * sharp is not installed, with the command that installs it.
   *
   * @example
   * const source = await ImageFolderSource.open('data/train', { inputSize: 224, prefetch: 2 });
   */
  static async open(folder: string, options: ImageFolderSourceOptions): Promise<ImageFolderSource> {
    const caller = 'ImageFolderSource.open';
    const { inputSize, prefetch = 2, concurrency = 4, maxPixels = MAX_IMAGE_PIXELS } = options;
    if (!(Number.isInteger(maxPixels) && maxPixels >= 1)) throw new Error(`${caller}: maxPixels is ${maxPixels}, expected a whole number >= 1`);
    imageSizeOf(inputSize, caller);
    if (!(Number.isInteger(prefetch) && prefetch >= 0)) throw new Error(`${caller}: prefetch is ${prefetch}, expected a whole number >= 0`);
    if (!(Number.isInteger(concurrency) && concurrency >= 1)) {
      throw new Error(`${caller}: concurrency is ${concurrency}, expected a whole number >= 1`);
    }
    // Checks scale and ratio now rather than at the first decode.
    randomResizedCropParams(1, 1, () => 0.5, options);
    const root = path.resolve(folder);
    const stats = await fs.stat(root).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') {
        throw new ImageFolderError('missing-folder', root, `image folder not found: ${root}`);
      }
      throw new ImageFolderError('missing-folder', root, `image folder ${root} cannot be read: ${message(error)}`);
    });
    if (!stats.isDirectory()) throw new ImageFolderError('not-a-folder', root, `${root} is a file, expected a folder of images`);
    const { files, filesSeen, foldersSeen } = await scanImages(fs, path, root).catch((error: NodeJS.ErrnoException) => {
      // A sub-folder that cannot be listed (EACCES, EIO ...): the scan cannot tell which images exist.
      const reason = error.code === 'EACCES' || error.code === 'EPERM' ? 'permission denied' : message(error);
      throw new ImageFolderError('unreadable-folder', root, `cannot read ${error.path ?? root} (in the image folder ${root}): ${reason}`);
    });
    if (files.length === 0) {
      throw new ImageFolderError(
        'no-images',
        root,
        `no images in ${root}: none of its ${filesSeen} files (in ${foldersSeen} folders) ends in ${IMAGE_EXTENSIONS.join(', ')} (any case)`,
      );
    }
    const sharp = await loadSharp(caller);
    const source = new ImageFolderSource(fs, sharp, root, files, options);
    await source.probe();
    return source;
  }

  get size(): number {
    return this.files.length;
  }

  /** The files skipped so far (corrupt or unreadable), in the order they were found. */
  get skipped(): readonly SkippedImage[] {
    return [...this.skippedByIndex.values()];
  }

  /** Decodes files in order until one succeeds: a folder of broken files fails at `open`, not mid-run. */
  private async probe(): Promise<void> {
    const random = () => 0.5;
    for (let index = 0; index < this.files.length; index++) {
      if (await this.decodeFile(index, random)) return;
    }
    const first = this.skippedByIndex.values().next().value as SkippedImage;
    throw new ImageFolderError(
      'no-decodable-images',
      this.folder,
      `none of the ${this.files.length} image files in ${this.folder} could be decoded (e.g. ${first.path}: ${first.reason})`,
    );
  }

  private skip(index: number, reason: string): void {
    if (this.skippedByIndex.has(index)) return;
    const skipped = { path: this.files[index], index, reason };
    this.skippedByIndex.set(index, skipped);
    this.onSkip(skipped, this.skippedByIndex.size);
  }

  /**
   * One file cropped, resized and flipped to `inputSize`² RGB bytes, or undefined when it is broken (then
   * recorded as skipped). Draws from `random`: the crop (as torchvision), then the flip.
   */
  private decodeFile(index: number, random: () => number): Promise<Uint8Array | undefined> {
    if (this.skippedByIndex.has(index)) return Promise.resolve(undefined);
    const size = this.imageSize;
    const ratio = cropRatioFor(this.ratio, size);
    return this.queue.run(async () => {
      if (this.skippedByIndex.has(index)) return undefined;
      try {
        const bytes = await this.fs.readFile(this.files[index]);
        if (bytes.byteLength === 0) throw new Error('empty file');
        // failOn 'warning' (sharp's default, stated here): a truncated JPEG fails as it does in PIL.
        const limit = this.maxPixels;
        const { width, height } = await this.sharp(bytes, { failOn: 'warning' }).metadata();
        if (!width || !height) throw new Error('no image size in the header');
        if (width * height > limit) throw new Error(`${width}x${height} is ${width * height} pixels, more than the limit of ${limit} (maxPixels)`);
        const image: SharpInstance = this.sharp(bytes, { failOn: 'warning', limitInputPixels: limit });
        const box = randomResizedCropParams(height, width, random, { scale: this.scale, ratio });
        const flip = this.flip && random() < 0.5;
        const region = { left: box.left, top: box.top, width: box.width, height: box.height };
        // Only the crop box is decoded, to 8-bit sRGB RGB (alpha dropped, as PIL's convert('RGB')), under the
        // same pixel limit as every image; then resized as torchvision resizes a PIL image, with Pillow's
        // bicubic bit for bit (sharp's cubic is 1 to 3.5 levels off when enlarging; see the README).
        const cropped = await image.extract(region).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
        if (cropped.info.width !== box.width || cropped.info.height !== box.height || cropped.info.channels !== 3) {
          throw new Error(
            `decoded the crop to ${cropped.info.width}x${cropped.info.height}x${cropped.info.channels}, expected ${box.width}x${box.height}x3`,
          );
        }
        const data = resizeBicubicLikePil(cropped.data, box.width, box.height, 3, size.width, size.height);
        if (flip) mirrorRows(data, size.width, size.height);
        return data;
      } catch (error) {
        this.skip(index, message(error));
        return undefined;
      }
    });
  }

  /**
   * Batch `batchIndex` of the epoch: the first `batchSize` files that decode, reading the epoch's order
   * cyclically from position batchIndex · batchSize. Each round decodes as many files as are still missing,
   * all at once; results are kept in order of position, so the batch does not depend on timing.
   */
  private async decodeBatch(plan: EpochPlan, batchIndex: number): Promise<DecodedBatch> {
    const { batchSize, seed, epoch } = plan;
    const perImage = this.imageSize.height * this.imageSize.width * 3;
    const values = new Float32Array(batchSize * perImage);
    const indices: number[] = [];
    const table = this.table;
    let position = batchIndex * batchSize;
    let failedInARow = 0;
    while (indices.length < batchSize) {
      if (this.disposed) throw new Error('ImageFolderSource.epochBatches: the source was disposed');
      const positions = Array.from({ length: batchSize - indices.length }, (_, offset) => position + offset);
      position += positions.length;
      const decoded = await Promise.all(positions.map((at) => this.decodeFile(indexAt(plan, at), augmentationRandom(seed, epoch, batchIndex, at))));
      decoded.forEach((pixels, offset) => {
        if (!pixels) {
          failedInARow += 1;
          return;
        }
        failedInARow = 0;
        const start = indices.length * perImage;
        for (let i = 0; i < perImage; i += 3) {
          values[start + i] = table[pixels[i]];
          values[start + i + 1] = table[256 + pixels[i + 1]];
          values[start + i + 2] = table[512 + pixels[i + 2]];
        }
        indices.push(indexAt(plan, positions[offset]));
      });
      // `size` failures in a row span the whole cyclic order: every file has become unreadable.
      if (failedInARow >= this.size) {
        throw new ImageFolderError(
          'no-decodable-images',
          this.folder,
          `none of the ${this.size} image files in ${this.folder} can be decoded any more (${this.skippedByIndex.size} skipped)`,
        );
      }
    }
    return { values, indices, batchIndex };
  }

  /**
   * The batches of one epoch (see {@link DataSource.epochBatches}), decoded `prefetch` batches ahead; each
   * `images` belongs to the caller. Leaving the loop early leaves the batches in flight to finish unused.
   *
   * @example
   * for await (const { images, indices } of source.epochBatches(0, { batchSize: 32, seed: 1 })) images.dispose();
   */
  async *epochBatches(epoch: number, options: EpochOptions): AsyncIterable<Batch> {
    const caller = 'ImageFolderSource.epochBatches';
    if (this.disposed) throw new Error(`${caller}: the source was disposed`);
    const plan = planEpoch(caller, this.size, epoch, options);
    const pending: Promise<DecodedBatch>[] = [];
    let nextBatch = plan.startBatch;
    const start = () => {
      const decoding = this.decodeBatch(plan, nextBatch++);
      // Handled here so a batch that fails while an earlier one is awaited is no unhandled rejection; the
      // error still reaches the consumer when that batch's turn comes.
      decoding.catch(() => undefined);
      pending.push(decoding);
    };
    const shape: [number, number, number, number] = [plan.batchSize, this.imageSize.height, this.imageSize.width, 3];
    while (nextBatch < plan.batchCount || pending.length > 0) {
      while (pending.length <= this.prefetch && nextBatch < plan.batchCount) start();
      const decoded = await (pending.shift() as Promise<DecodedBatch>);
      // The tensor is made only when the consumer takes the batch: nothing leaks if it stops early.
      yield { images: tf.tensor4d(decoded.values, shape), indices: decoded.indices, batchIndex: decoded.batchIndex };
    }
  }

  /**
   * Stops decoding for this source: later `epochBatches` calls fail, batches in flight are dropped.
   *
   * @example
   * source.dispose();
   */
  dispose(): void {
    this.disposed = true;
  }
}

/** Mirrors RGB rows in place (RandomHorizontalFlip). */
function mirrorRows(pixels: Uint8Array, width: number, height: number): void {
  for (let y = 0; y < height; y++) {
    for (let left = y * width * 3, right = left + (width - 1) * 3; left < right; left += 3, right -= 3) {
      for (let c = 0; c < 3; c++) {
        const value = pixels[left + c];
        pixels[left + c] = pixels[right + c];
        pixels[right + c] = value;
      }
    }
  }
}

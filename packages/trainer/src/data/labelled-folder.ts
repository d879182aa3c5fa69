// A folder of labelled images for fine-tuning and probing: one subfolder per class (ImageNet's `train/` and
// `val/` layout, torchvision's ImageFolder), classes in sorted order. Node only (file system, sharp).

import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '@sparkmim/masking';
import { SPARK_CROP_SCALE, randomResizedCropParams } from './crop';
import { IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS } from './image-folder';
import { fs, loadSharp, path, type SharpFactory } from './node-modules';
import { normalizationTable } from './normalize';
import { resizeBicubicLikePil } from './resize';

/** Why a folder cannot serve as a labelled data set. */
export type LabelledFolderErrorCode =
  | 'missing-folder'
  | 'not-a-folder'
  | 'too-few-classes'
  | 'empty-class'
  | 'no-decodable-images'
  | 'class-mismatch';

/** A folder that cannot serve as a labelled data set; `message` is one line naming the folder. */
export class LabelledFolderError extends Error {
  constructor(
    readonly code: LabelledFolderErrorCode,
    readonly folder: string,
    message: string,
  ) {
    super(message);
    this.name = 'LabelledFolderError';
  }
}

export interface LabelledImageFolderOptions {
  /** Side of the square images served (a multiple of the model's downsample ratio). */
  inputSize: number;
  /** Use these class names, in this order (e.g. the training folder's, for a separate validation folder). */
  classes?: readonly string[];
  /** Refuse images of more pixels than this. Default {@link MAX_IMAGE_PIXELS}. */
  maxPixels?: number;
}

/** A file left out because it could not be decoded. */
export interface SkippedLabelledImage {
  path: string;
  reason: string;
}

/**
 * Labelled images read once into memory at `inputSize` x `inputSize` (centre square crop of each image,
 * resized with Pillow's bicubic, 8-bit RGB), served as normalised batches: plain for evaluation and
 * feature extraction, or augmented for training (SparK's random resized crop, scale 0.67-1, and a
 * horizontal flip, seeded). Small data sets only: every image stays decoded (3 bytes a pixel).
 *
 * @example
 * const data = await LabelledImageFolder.open('flowers/', { inputSize: 96 });
 * const { train, validation } = data.split(0.25, 0);
 * const { images, labels } = data.batch(train.slice(0, 8), { augment: seededRandom(1) });
 * images.dispose();
 */
export class LabelledImageFolder {
  private readonly table = normalizationTable();

  private constructor(
    readonly root: string,
    /** Class names (subfolder names), sorted; a label is an index into this. */
    readonly classes: readonly string[],
    /** Paths relative to `root` of the images that decoded, e.g. `cat/001.jpg`. */
    readonly files: readonly string[],
    /** The class index of each file. */
    readonly labels: readonly number[],
    private readonly pixels: readonly Uint8Array[],
    readonly inputSize: number,
    /** Files that did not decode (left out of `files`). */
    readonly skipped: readonly SkippedLabelledImage[],
  ) {}

  get size(): number {
    return this.files.length;
  }

  /**
   * Reads a folder with one subfolder per class (images found recursively inside each). Refuses, in one
   * line, a missing folder, fewer than two classes, a class without images, or no decodable image.
   */
  static async open(root: string, options: LabelledImageFolderOptions): Promise<LabelledImageFolder> {
    const { inputSize, maxPixels = MAX_IMAGE_PIXELS } = options;
    if (!(Number.isInteger(inputSize) && inputSize >= 1))
      throw new Error(`LabelledImageFolder: inputSize is ${inputSize}, expected a whole number >= 1`);
    const absolute = path.resolve(root);
    let stat: Awaited<ReturnType<typeof fs.stat>>;
    try {
      stat = await fs.stat(absolute);
    } catch {
      throw new LabelledFolderError('missing-folder', absolute, `data folder ${absolute} does not exist`);
    }
    if (!stat.isDirectory()) throw new LabelledFolderError('not-a-folder', absolute, `data folder ${absolute} is not a folder`);
    const found = (await fs.readdir(absolute, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
      .map((entry) => entry.name)
      .sort();
    const classes = options.classes ? [...options.classes] : found;
    if (options.classes) {
      const unknown = found.filter((name) => !classes.includes(name));
      if (unknown.length > 0) {
        throw new LabelledFolderError(
          'class-mismatch',
          absolute,
          `data folder ${absolute} has classes the training data lacks: ${unknown.slice(0, 5).join(', ')}`,
        );
      }
    }
    if (!options.classes && classes.length < 2) {
      throw new LabelledFolderError(
        'too-few-classes',
        absolute,
        `data folder ${absolute} has ${classes.length} class${classes.length === 1 ? ` (${classes[0]})` : 'es'}: expected one subfolder per class, at least 2`,
      );
    }
    const sharp = await loadSharp('LabelledImageFolder');
    const files: string[] = [];
    const labels: number[] = [];
    const pixels: Uint8Array[] = [];
    const skipped: SkippedLabelledImage[] = [];
    for (const [label, name] of classes.entries()) {
      if (!found.includes(name)) continue;
      const classFiles = (await listImages(path.join(absolute, name))).sort();
      if (classFiles.length === 0 && !options.classes) {
        throw new LabelledFolderError(
          'empty-class',
          absolute,
          `data folder ${absolute}: class '${name}' has no images (${IMAGE_EXTENSIONS.join(', ')})`,
        );
      }
      for (const file of classFiles) {
        try {
          pixels.push(await decodeSquare(sharp, await fs.readFile(file), inputSize, maxPixels));
          files.push(path.relative(absolute, file));
          labels.push(label);
        } catch (error) {
          skipped.push({ path: file, reason: error instanceof Error ? error.message.split('\n')[0] : String(error) });
        }
      }
    }
    if (files.length === 0) throw new LabelledFolderError('no-decodable-images', absolute, `data folder ${absolute}: no image could be decoded`);
    return new LabelledImageFolder(absolute, classes, files, labels, pixels, inputSize, skipped);
  }

  /**
   * A seeded split, stratified by class: in each class, `round(fraction · n)` images (at least one when the
   * class has two or more) go to validation. The same (fraction, seed) gives the same split.
   */
  split(validationFraction: number, seed = 0): { train: number[]; validation: number[] } {
    if (!(validationFraction > 0 && validationFraction < 1))
      throw new Error(`LabelledImageFolder.split: fraction is ${validationFraction}, expected a number in (0, 1)`);
    const random = seededRandom(seed);
    const train: number[] = [];
    const validation: number[] = [];
    for (let label = 0; label < this.classes.length; label++) {
      const members = this.labels.flatMap((value, index) => (value === label ? [index] : []));
      shuffle(members, random);
      const count = members.length >= 2 ? Math.max(1, Math.round(validationFraction * members.length)) : 0;
      validation.push(...members.slice(0, count));
      train.push(...members.slice(count));
    }
    return { train: train.sort((a, b) => a - b), validation: validation.sort((a, b) => a - b) };
  }

  /**
   * `[B, S, S, 3]` ImageNet-normalised images of these files and their labels. With `augment` (uniform
   * numbers in [0, 1)), each image gets a random resized crop (scale 0.67-1) and a coin-flip mirror.
   */
  batch(indices: readonly number[], { augment }: { augment?: () => number } = {}): { images: tf.Tensor4D; labels: number[] } {
    const size = this.inputSize;
    const perImage = size * size * 3;
    const values = new Float32Array(indices.length * perImage);
    indices.forEach((index, slot) => {
      let image = this.pixels[index];
      if (!image) throw new Error(`LabelledImageFolder.batch: index ${index} is outside [0, ${this.size - 1}]`);
      if (augment) {
        const box = randomResizedCropParams(size, size, augment, { scale: SPARK_CROP_SCALE });
        const crop = new Uint8Array(box.width * box.height * 3);
        for (let y = 0; y < box.height; y++) {
          const from = ((box.top + y) * size + box.left) * 3;
          crop.set(image.subarray(from, from + box.width * 3), y * box.width * 3);
        }
        image = resizeBicubicLikePil(crop, box.width, box.height, 3, size, size);
        if (augment() < 0.5) image = mirrored(image, size);
      }
      const offset = slot * perImage;
      for (let i = 0; i < perImage; i++) values[offset + i] = this.table[(i % 3) * 256 + image[i]];
    });
    return { images: tf.tensor4d(values, [indices.length, size, size, 3]), labels: indices.map((index) => this.labels[index]) };
  }
}

async function listImages(folder: string): Promise<string[]> {
  const result: string[] = [];
  for (const entry of await fs.readdir(folder, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) result.push(...(await listImages(full)));
    else if (IMAGE_EXTENSIONS.includes(path.extname(entry.name).toLowerCase())) result.push(full);
  }
  return result;
}

async function decodeSquare(sharp: SharpFactory, bytes: Uint8Array, size: number, maxPixels: number): Promise<Uint8Array> {
  if (bytes.byteLength === 0) throw new Error('empty file');
  const { width, height } = await sharp(bytes, { failOn: 'warning' }).metadata();
  if (!width || !height) throw new Error('no image size in the header');
  if (width * height > maxPixels) throw new Error(`${width}x${height} is more than ${maxPixels} pixels`);
  const side = Math.min(width, height);
  const region = { left: Math.floor((width - side) / 2), top: Math.floor((height - side) / 2), width: side, height: side };
  const decoded = await sharp(bytes, { failOn: 'warning', limitInputPixels: maxPixels })
    .extract(region)
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (decoded.info.channels !== 3) throw new Error(`decoded to ${decoded.info.channels} channels, expected 3`);
  return side === size ? new Uint8Array(decoded.data) : resizeBicubicLikePil(decoded.data, side, side, 3, size, size);
}

function mirrored(pixels: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(pixels.length);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const from = (y * size + x) * 3;
      const to = (y * size + size - 1 - x) * 3;
      out[to] = pixels[from];
      out[to + 1] = pixels[from + 1];
      out[to + 2] = pixels[from + 2];
    }
  }
  return out;
}

function shuffle(values: number[], random: () => number): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
}

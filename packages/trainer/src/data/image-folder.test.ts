import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { randomResizedCropParams } from './crop';
import { ImageFolderError, ImageFolderSource } from './image-folder';
import type { ImageFolderSourceOptions, SkippedImage } from './image-folder';
import { loadSharp } from './node-modules';
import { IMAGENET_MEAN, IMAGENET_STD } from './normalize';
import { augmentationRandom, epochPermutation } from './source';
import type { Batch, EpochOptions } from './source';
import { encodePng, makeTempFolder, rampPixels, removeFolder } from './test-images';

// Crops that keep the whole (square) image and no flip: the batch holds the decoded pixels themselves.
const IDENTITY: Omit<ImageFolderSourceOptions, 'inputSize'> = { scale: [1, 1], ratio: [1, 1], flip: false };

/** Deterministic pixel values 0..255 (no Math.random: the same files on every run). */
function noiseBytes(count: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

function noisePixels(count: number, seed: number): number[] {
  return Array.from(noiseBytes(count, seed));
}

function normalized(rgb: ArrayLike<number>): number[] {
  return Array.from(rgb, (value, i) => (value / 255 - IMAGENET_MEAN[i % 3]) / IMAGENET_STD[i % 3]);
}

async function rgbPng(width: number, height: number, seed: number): Promise<Buffer> {
  return encodePng(noisePixels(width * height * 3, seed), width, height, 3);
}

async function jpeg(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp(noiseBytes(width * height * 3, seed), { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** A JPEG cut in half: the header is fine, the data ends early. */
async function truncatedJpeg(): Promise<Buffer> {
  const whole = await jpeg(32, 32, 99);
  return whole.subarray(0, Math.floor(whole.length / 2));
}

interface ReadBatch {
  indices: number[];
  batchIndex: number;
  shape: number[];
  values: Float32Array;
}

async function read(batch: Batch): Promise<ReadBatch> {
  const values = (await batch.images.data()) as Float32Array;
  const shape = batch.images.shape.slice();
  batch.images.dispose();
  return { indices: batch.indices, batchIndex: batch.batchIndex, shape, values };
}

async function collect(source: ImageFolderSource, epoch: number, options: EpochOptions): Promise<ReadBatch[]> {
  const batches: ReadBatch[] = [];
  for await (const batch of source.epochBatches(epoch, options)) batches.push(await read(batch));
  return batches;
}

const quiet = { onSkip: () => undefined };
const folders: string[] = [];
function tempFolder(files: Record<string, Uint8Array | string> = {}): string {
  const folder = makeTempFolder(files);
  folders.push(folder);
  return folder;
}
afterAll(() => folders.forEach(removeFolder));

async function openError(folder: string, options: Partial<ImageFolderSourceOptions> = {}): Promise<ImageFolderError> {
  try {
    await ImageFolderSource.open(folder, { inputSize: 8, ...quiet, ...options });
  } catch (error) {
    expect(error).toBeInstanceOf(ImageFolderError);
    return error as ImageFolderError;
  }
  throw new Error(`opening ${folder} did not fail`);
}

describe('ImageFolderSource: folders and files', () => {
  it('finds JPEG, PNG and WebP files in sub-folders by extension in any case, sorted', async () => {
    const png = await rgbPng(4, 4, 1);
    const folder = tempFolder({
      'b/z.PNG': png,
      'b/a.jpeg': await jpeg(4, 4, 2),
      'a.JPG': await jpeg(4, 4, 3),
      'c/d/e.WebP': await sharp(png).webp().toBuffer(),
      'notes.txt': 'not an image',
      'c/picture.gif': 'GIF89a',
    });
    const source = await ImageFolderSource.open(folder, { inputSize: 4 });
    expect(source.files.map((file) => path.relative(folder, file))).toEqual(['a.JPG', 'b/a.jpeg', 'b/z.PNG', 'c/d/e.WebP']);
    expect(source.size).toBe(4);
    expect(source.folder).toBe(path.resolve(folder));
    expect(source.skipped).toEqual([]);
  });

  it('fails with a distinct one-line error for a missing folder, a file, no images, and only broken images', async () => {
    const root = tempFolder({ 'file.png': await rgbPng(4, 4, 1), 'empty/.keep': '', 'texts/a.txt': 'a', 'texts/b.md': 'b' });
    const missing = await openError(path.join(root, 'nowhere'));
    expect({ code: missing.code, message: missing.message }).toEqual({
      code: 'missing-folder',
      message: `image folder not found: ${path.join(root, 'nowhere')}`,
    });
    const file = await openError(path.join(root, 'file.png'));
    expect({ code: file.code, message: file.message }).toEqual({
      code: 'not-a-folder',
      message: `${path.join(root, 'file.png')} is a file, expected a folder of images`,
    });
    const empty = await openError(path.join(root, 'empty'));
    expect({ code: empty.code, message: empty.message }).toEqual({
      code: 'no-images',
      message: `no images in ${path.join(root, 'empty')}: none of its 1 files (in 1 folders) ends in .jpg, .jpeg, .png, .webp (any case)`,
    });
    expect((await openError(path.join(root, 'texts'))).message).toBe(
      `no images in ${path.join(root, 'texts')}: none of its 2 files (in 1 folders) ends in .jpg, .jpeg, .png, .webp (any case)`,
    );
    const brokenFolder = tempFolder({ 'a.jpg': await truncatedJpeg(), 'b.png': 'hello, I am text', 'c.webp': '' });
    const skips: SkippedImage[] = [];
    const broken = await openError(brokenFolder, { onSkip: (skipped) => skips.push(skipped) });
    expect(broken.code).toBe('no-decodable-images');
    expect(broken.message).toMatch(
      new RegExp(`^none of the 3 image files in ${brokenFolder} could be decoded \\(e\\.g\\. ${brokenFolder}/a\\.jpg: .+\\)$`),
    );
    expect(broken.message).not.toContain('\n');
    expect(skips.map((skipped) => path.basename(skipped.path))).toEqual(['a.jpg', 'b.png', 'c.webp']);
  });

  it('names the install command when sharp is absent', async () => {
    await expect(loadSharp('ImageFolderSource.open', 'sharp-is-not-installed-here')).rejects.toThrow(
      'ImageFolderSource.open: decoding images needs the package sharp, which is not installed. Install it with: npm install sharp@0.34.5',
    );
  });

  it('says what it expected for bad options', async () => {
    const folder = tempFolder({ 'a.png': await rgbPng(4, 4, 1) });
    await expect(ImageFolderSource.open(folder, { inputSize: 0 })).rejects.toThrow(
      'ImageFolderSource.open: inputSize is 0, expected a whole number >= 1',
    );
    await expect(ImageFolderSource.open(folder, { inputSize: 4, prefetch: -1 })).rejects.toThrow(
      'ImageFolderSource.open: prefetch is -1, expected a whole number >= 0',
    );
    await expect(ImageFolderSource.open(folder, { inputSize: 4, scale: [0.5, 0.2] })).rejects.toThrow(
      'randomResizedCropParams: scale is (0.5, 0.2), expected 0 < min <= max',
    );
  });
});

describeBackends('ImageFolderSource', () => {
  it('decodes RGB, grayscale, RGBA, 16-bit PNG, WebP and JPEG to normalised 8-bit sRGB RGB', async () => {
    const side = 8;
    const count = side * side;
    const rgb = noisePixels(count * 3, 1);
    const gray = noisePixels(count, 2);
    const rgba = noisePixels(count * 4, 3).map((value, i) => (i % 4 === 3 ? (i % 8 === 3 ? 0 : value) : value)); // half the pixels fully transparent
    const deep = noisePixels(count * 3, 4).map((value, i) => value * 256 + (i % 256)); // 16-bit samples
    const grayDeep = noisePixels(count, 5).map((value) => value * 256 + 255);
    const grayAlpha = noisePixels(count * 2, 6);
    const folder = tempFolder({
      'rgb.png': encodePng(rgb, side, side, 3),
      'gray.png': encodePng(gray, side, side, 1),
      'rgba.png': encodePng(rgba, side, side, 4),
      'rgb16.png': encodePng(deep, side, side, 3, 16),
      'gray16.png': encodePng(grayDeep, side, side, 1, 16),
      'graya.png': encodePng(grayAlpha, side, side, 2),
      'lossless.webp': await sharp(Buffer.from(rgb), { raw: { width: side, height: side, channels: 3 } })
        .webp({ lossless: true })
        .toBuffer(),
      'photo.jpg': await sharp(Buffer.from(rgb), { raw: { width: side, height: side, channels: 3 } })
        .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
        .toBuffer(),
    });
    const expected: Record<string, number[]> = {
      'rgb.png': rgb,
      'gray.png': gray.flatMap((value) => [value, value, value]),
      'rgba.png': rgba.filter((_, i) => i % 4 !== 3), // colours kept under alpha 0, as PIL's convert('RGB')
      'rgb16.png': deep.map((value) => value / 257),
      'gray16.png': grayDeep.flatMap((value) => [value / 257, value / 257, value / 257]),
      'graya.png': grayAlpha.filter((_, i) => i % 2 === 0).flatMap((value) => [value, value, value]),
      'lossless.webp': rgb,
      'photo.jpg': rgb,
    };
    // 16-bit: within one level of value / 257; JPEG quality 100: within a few levels of the original.
    const tolerance: Record<string, number> = { 'rgb16.png': 1, 'gray16.png': 1, 'photo.jpg': 6 };
    const source = await ImageFolderSource.open(folder, { inputSize: side, ...IDENTITY });
    const [batch] = await collect(source, 0, { batchSize: source.size, seed: 0 });
    expect(batch.shape).toEqual([8, side, side, 3]);
    expect(source.skipped).toEqual([]);
    for (const [slot, index] of batch.indices.entries()) {
      const name = path.basename(source.files[index]);
      const values = batch.values.subarray(slot * count * 3, (slot + 1) * count * 3);
      // Tolerance in pixel levels, as normalised values: one level of red is 1 / (255 · 0.229) ≈ 0.0171.
      const levels = tolerance[name] ?? 0;
      await expectClose(values, normalized(expected[name]), { relative: 0, absolute: (levels + 1e-3) / (255 * 0.224), label: name });
    }
  });

  it('skips images over the pixel limit from their header alone, with alpha or without, and decodes the rest', async () => {
    // A PNG that declares 16000 x 16000 RGBA (a 1 GB decode) in a few bytes: signature, IHDR, IEND.
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(data.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(zlib.crc32(body));
      return Buffer.concat([length, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(16000, 0);
    ihdr.writeUInt32BE(16000, 4);
    ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
    const huge = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', zlib.deflateSync(Buffer.alloc(1000))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    const folder = tempFolder({
      'huge-rgba.png': huge,
      'wide-rgb.png': await rgbPng(40, 30, 1),
      'wide-rgba.png': encodePng(noisePixels(40 * 30 * 4, 2), 40, 30, 4),
      'small.png': await rgbPng(8, 8, 3),
    });
    const source = await ImageFolderSource.open(folder, { inputSize: 8, ...quiet, maxPixels: 1000 });
    const batches = await collect(source, 0, { batchSize: 2, seed: 0 });
    expect(batches.map((batch) => batch.indices.map((index) => path.basename(source.files[index])))).toEqual([
      ['small.png', 'small.png'],
      ['small.png', 'small.png'],
    ]);
    expect(Object.fromEntries(source.skipped.map((skipped) => [path.basename(skipped.path), skipped.reason]))).toEqual({
      'huge-rgba.png': '16000x16000 is 256000000 pixels, more than the limit of 1000 (maxPixels)',
      'wide-rgb.png': '40x30 is 1200 pixels, more than the limit of 1000 (maxPixels)',
      'wide-rgba.png': '40x30 is 1200 pixels, more than the limit of 1000 (maxPixels)',
    });
    // The default limit (8192 x 8192) still refuses the 16000 x 16000 header.
    const defaults = await ImageFolderSource.open(folder, { inputSize: 8, ...quiet });
    await collect(defaults, 0, { batchSize: 4, seed: 0 });
    expect(defaults.skipped.map((skipped) => skipped.reason)).toEqual([
      '16000x16000 is 256000000 pixels, more than the limit of 67108864 (maxPixels)',
    ]);
  });

  it('skips broken files with a warning each, fills batches from the next files, keeps shapes fixed', async () => {
    const files: Record<string, Uint8Array | string> = {};
    for (let i = 0; i < 7; i++) files[`good${i}.png`] = await rgbPng(12, 10, 10 + i);
    files['corrupt.jpg'] = await truncatedJpeg();
    const garbled = Buffer.from(await jpeg(32, 32, 7));
    garbled.fill(0xff, Math.floor(garbled.length / 3), Math.floor(garbled.length / 3) + 40);
    files['garbled.jpg'] = garbled;
    files['text.png'] = 'this is not a PNG';
    files['empty.webp'] = '';
    const folder = tempFolder(files);
    const warnings: string[] = [];
    const source = await ImageFolderSource.open(folder, {
      inputSize: 6,
      onSkip: (skipped, soFar) => warnings.push(`${path.basename(skipped.path)} ${soFar}`),
    });
    expect(source.size).toBe(11);
    const brokenNames = new Set(['corrupt.jpg', 'garbled.jpg', 'text.png', 'empty.webp']);
    const isBroken = (index: number) => brokenNames.has(path.basename(source.files[index]));
    for (let epoch = 0; epoch < 2; epoch++) {
      const batches = await collect(source, epoch, { batchSize: 4, seed: 5 });
      // Reference of the rule: batch k holds the first 4 decodable files reading the order cyclically from 4k.
      const order = epochPermutation(11, 5, epoch);
      const expectedIndices = [0, 1, 2].map((batchIndex) => {
        const picked: number[] = [];
        for (let position = batchIndex * 4; picked.length < 4; position++) {
          const index = order[position % 11];
          if (!isBroken(index)) picked.push(index);
        }
        return picked;
      });
      expect(batches.map((batch) => batch.indices)).toEqual(expectedIndices);
      expect(batches.map((batch) => batch.shape)).toEqual([
        [4, 6, 6, 3],
        [4, 6, 6, 3],
        [4, 6, 6, 3],
      ]);
    }
    // One warning per broken file (the probe at open saw them first, in file order), never repeated.
    expect(warnings.map((warning) => warning.split(' ')[0]).sort()).toEqual([...brokenNames].sort());
    expect(warnings.map((warning) => Number(warning.split(' ')[1]))).toEqual([1, 2, 3, 4]);
    expect(source.skipped.map((skipped) => path.basename(skipped.path)).sort()).toEqual([...brokenNames].sort());
    const reasons = Object.fromEntries(source.skipped.map((skipped) => [path.basename(skipped.path), skipped.reason]));
    // libvips reports a truncated JPEG as the premature end itself or, when first seen as a warning, as
    // sharp's failOn refusal: both are the decoder rejecting the file.
    expect(reasons['corrupt.jpg']).toMatch(/premature end|warning treated as error/i);
    expect(reasons['text.png']).toMatch(/unsupported image format/i);
    expect(reasons['empty.webp']).toBe('empty file');
  });

  it('crops and flips where the seeded torchvision crop says, resized with a cubic kernel', async () => {
    // Red = 4x, green = 4y: a linear ramp, which a (normalised, symmetric) cubic resampling reproduces in the
    // interior, so every output pixel says where in the source it was taken.
    const [width, height, side, step] = [64, 48, 16, 4];
    const folder = tempFolder({ 'ramp.png': encodePng(rampPixels(width, height, step), width, height, 3) });
    const source = await ImageFolderSource.open(folder, { inputSize: side });
    let flips = 0;
    for (let epoch = 0; epoch < 6; epoch++) {
      const batches = await collect(source, epoch, { batchSize: 2, seed: 17 });
      const { values } = batches[0];
      for (let slot = 0; slot < 2; slot++) {
        const random = augmentationRandom(17, epoch, 0, slot);
        const box = randomResizedCropParams(height, width, random);
        const flipped = random() < 0.5;
        flips += flipped ? 1 : 0;
        for (let y = 2; y < side - 2; y++) {
          for (let x = 2; x < side - 2; x++) {
            const sourceX = box.left + ((flipped ? side - 1 - x : x) + 0.5) * (box.width / side) - 0.5;
            const sourceY = box.top + (y + 0.5) * (box.height / side) - 0.5;
            const offset = ((slot * side + y) * side + x) * 3;
            const red = (values[offset] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255;
            const green = (values[offset + 1] * IMAGENET_STD[1] + IMAGENET_MEAN[1]) * 255;
            expect(Math.abs(red - sourceX * step)).toBeLessThan(1.5);
            expect(Math.abs(green - sourceY * step)).toBeLessThan(1.5);
          }
        }
      }
    }
    expect(flips).toBeGreaterThan(0);
    expect(flips).toBeLessThan(12);
  });

  it('is deterministic per seed across sources, differs across seeds, and resumes with startBatch', async () => {
    const files: Record<string, Uint8Array> = {};
    for (let i = 0; i < 6; i++) files[`img${i}.png`] = await rgbPng(20, 14, i);
    const folder = tempFolder(files);
    const first = await ImageFolderSource.open(folder, { inputSize: 8, prefetch: 0 });
    const second = await ImageFolderSource.open(folder, { inputSize: 8, prefetch: 3, concurrency: 1 });
    const a = await collect(first, 1, { batchSize: 4, seed: 2 });
    expect(await collect(second, 1, { batchSize: 4, seed: 2 })).toEqual(a);
    const other = await collect(first, 1, { batchSize: 4, seed: 3 });
    expect(other.map((batch) => Array.from(batch.values))).not.toEqual(a.map((batch) => Array.from(batch.values)));
    expect(await collect(second, 1, { batchSize: 4, seed: 2, startBatch: 1 })).toEqual(a.slice(1));
  });

  it('decodes the next batches while the consumer holds one (prefetch)', async () => {
    const files: Record<string, Uint8Array> = {};
    for (let i = 0; i < 24; i++) {
      // Noise blown up 4x (cheaper to make than 384 x 384 noise), so each decode takes a few milliseconds.
      files[`big${i}.jpg`] = await sharp(noiseBytes(96 * 96 * 3, 100 + i), { raw: { width: 96, height: 96, channels: 3 } })
        .resize(384, 384, { kernel: 'nearest' })
        .jpeg({ quality: 90 })
        .toBuffer();
    }
    const folder = tempFolder(files);
    const options = { batchSize: 8, seed: 0 };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    // Time to get batches 1 and 2 after holding batch 0 for `holdMs`.
    const waitAfterHold = async (prefetch: number, holdMs: number) => {
      const source = await ImageFolderSource.open(folder, { inputSize: 32, prefetch });
      const iterator = source.epochBatches(0, options)[Symbol.asyncIterator]();
      (await iterator.next()).value.images.dispose();
      await sleep(holdMs);
      const started = performance.now();
      (await iterator.next()).value.images.dispose();
      (await iterator.next()).value.images.dispose();
      const waited = performance.now() - started;
      await iterator.return?.(undefined);
      return waited;
    };
    const onDemand = await waitAfterHold(0, 0); // two batches decoded while the consumer waits
    const prefetched = await waitAfterHold(2, Math.max(200, 3 * onDemand));
    expect(prefetched).toBeLessThan(onDemand * 0.3);
  });

  it('leaves nothing behind when the consumer stops early, and refuses to run after dispose', async () => {
    const files: Record<string, Uint8Array> = {};
    for (let i = 0; i < 9; i++) files[`img${i}.png`] = await rgbPng(10, 10, i);
    const source = await ImageFolderSource.open(tempFolder(files), { inputSize: 4, prefetch: 2 });
    for await (const batch of source.epochBatches(0, { batchSize: 2 })) {
      batch.images.dispose();
      break;
    }
    source.dispose();
    await expect(collect(source, 0, { batchSize: 2 })).rejects.toThrow('ImageFolderSource.epochBatches: the source was disposed');
  });
});

describe('test-images', () => {
  it('writes PNGs that sharp reads back with the same samples', async () => {
    const samples = noisePixels(5 * 3 * 4, 8);
    const { data, info } = await sharp(encodePng(samples, 5, 3, 4))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect({ width: info.width, height: info.height, channels: info.channels }).toEqual({ width: 5, height: 3, channels: 4 });
    expect(Array.from(data)).toEqual(samples);
    expect(fs.existsSync(`${tempFolder({ 'x/y.txt': 'z' })}/x/y.txt`)).toBe(true);
  });
});

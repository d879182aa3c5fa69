import * as tf from '@tensorflow/tfjs-core';

/** ImageNet channel means (RGB), timm's `IMAGENET_DEFAULT_MEAN`, used by SparK's `Normalize`. */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
/** ImageNet channel standard deviations (RGB), timm's `IMAGENET_DEFAULT_STD`. */
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/**
 * The normalised float32 value of every 8-bit pixel value per channel, `lut[channel * 256 + value]`,
 * computed with float32 rounding after each step as torchvision does (`ToTensor`: value / 255, then
 * `Normalize`: (x - mean) / std), so it equals {@link normalizeImages} bit for bit.
 */
export function normalizationTable(): Float32Array {
  const table = new Float32Array(3 * 256);
  for (let channel = 0; channel < 3; channel++) {
    const mean = Math.fround(IMAGENET_MEAN[channel]);
    const std = Math.fround(IMAGENET_STD[channel]);
    for (let value = 0; value < 256; value++) {
      table[channel * 256 + value] = Math.fround(Math.fround(Math.fround(value / 255) - mean) / std);
    }
  }
  return table;
}

function checkImages(caller: string, images: tf.Tensor): void {
  if (images.rank !== 4 || images.shape[3] !== 3) {
    throw new Error(`${caller}: images are [${images.shape.join(', ')}], expected [B, H, W, 3]`);
  }
}

/**
 * Pixels `[B, H, W, 3]` with values 0 .. 255 (RGB) → SparK's input: `(pixels / 255 - IMAGENET_MEAN) /
 * IMAGENET_STD` as float32 (torchvision's `ToTensor` then `Normalize`, channels last).
 *
 * @example
 * const pixels = tf.browser.fromPixels(canvas).expandDims(0); // [1, H, W, 3] int32
 * const input = normalizeImages(pixels as tf.Tensor4D);
 */
export function normalizeImages(pixels: tf.Tensor4D): tf.Tensor4D {
  checkImages('normalizeImages', pixels);
  return tf.tidy(() => {
    const unit = tf.div(tf.cast(pixels, 'float32'), 255);
    return tf.div(tf.sub(unit, tf.tensor1d([...IMAGENET_MEAN])), tf.tensor1d([...IMAGENET_STD])) as tf.Tensor4D;
  });
}

/**
 * The inverse of {@link normalizeImages} for previews: normalised `[B, H, W, 3]` → int32 pixels 0 .. 255
 * (rounded and clipped), ready for `tf.browser.toPixels` or {@link imagesToRgba}.
 *
 * @example
 * const pixels = denormalizeImages(batch.images); // [B, S, S, 3] int32
 * await tf.browser.toPixels(pixels.slice(0, 1).squeeze([0]) as tf.Tensor3D, canvas);
 */
export function denormalizeImages(images: tf.Tensor4D): tf.Tensor4D {
  checkImages('denormalizeImages', images);
  return tf.tidy(() => {
    const unit = tf.add(tf.mul(images, tf.tensor1d([...IMAGENET_STD])), tf.tensor1d([...IMAGENET_MEAN]));
    return tf.cast(tf.clipByValue(tf.round(tf.mul(unit, 255)), 0, 255), 'int32') as tf.Tensor4D;
  });
}

/** An RGBA picture as a canvas `ImageData` holds it (`new ImageData(data, width, height)`). */
export interface RgbaImage {
  /** `height · width · 4` bytes, row-major, alpha 255. */
  data: Uint8ClampedArray;
  width: number;
  height: number;
}

/**
 * Normalised images `[B, H, W, 3]` (a batch's `images`) → one RGBA picture per image, for previews: a
 * canvas (`putImageData`) in a browser, or sharp in Node (`sharp(data, { raw: { width, height, channels: 4 } })`).
 * Reads the values back with `await data()`, so it works on every backend; `images` is not disposed.
 *
 * @example
 * const [first] = await imagesToRgba(batch.images);
 * context.putImageData(new ImageData(first.data, first.width, first.height), 0, 0);
 */
export async function imagesToRgba(images: tf.Tensor4D): Promise<RgbaImage[]> {
  checkImages('imagesToRgba', images);
  const pixels = denormalizeImages(images);
  let values: Int32Array;
  try {
    values = (await pixels.data()) as Int32Array;
  } finally {
    pixels.dispose();
  }
  const [count, height, width] = images.shape;
  const perImage = height * width;
  return Array.from({ length: count }, (_, image) => {
    const data = new Uint8ClampedArray(perImage * 4);
    const start = image * perImage * 3;
    for (let pixel = 0; pixel < perImage; pixel++) {
      data[pixel * 4] = values[start + pixel * 3];
      data[pixel * 4 + 1] = values[start + pixel * 3 + 1];
      data[pixel * 4 + 2] = values[start + pixel * 3 + 2];
      data[pixel * 4 + 3] = 255;
    }
    return { data, width, height };
  });
}

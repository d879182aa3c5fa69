/** A crop box in pixels of the source image. */
export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface ResizedCropOptions {
  /** Range of the crop's area as a fraction of the image's. SparK: (0.67, 1.0) (torchvision's default is (0.08, 1.0)). */
  scale?: readonly [number, number];
  /** Range of the crop's aspect ratio (width / height), sampled log-uniformly. Default (3/4, 4/3). */
  ratio?: readonly [number, number];
}

/** SparK's RandomResizedCrop scale (`utils/imagenet.py`). */
export const SPARK_CROP_SCALE: readonly [number, number] = [0.67, 1.0];
/** torchvision's default RandomResizedCrop aspect-ratio range. */
export const DEFAULT_CROP_RATIO: readonly [number, number] = [3 / 4, 4 / 3];

/** Python's round(): to the nearest integer, halves to even. */
export function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The crop of torchvision's `RandomResizedCrop.get_params` for an image of `imageHeight` × `imageWidth`:
 * up to 10 attempts, each drawing an area `uniform(scale) · H·W` and an aspect ratio
 * `exp(uniform(log ratio))`, rounding `w = round(sqrt(area · ratio))`, `h = round(sqrt(area / ratio))` (half
 * to even, as Python) and accepting when `0 < w <= W` and `0 < h <= H`, then drawing `top = randint(0, H - h)`
 * and `left = randint(0, W - w)` (both ends included); after 10 rejections the centre crop of the whole
 * image, clamped to the ratio range. The draws are the same, in the same order, as torchvision's, from
 * `random` (uniform in [0, 1)) instead of torch's generator; arithmetic is float64 (torch rounds the log ratio
 * and the uniform draws to float32, which moves a box by a pixel only at exact rounding ties).
 *
 * @example
 * const box = randomResizedCropParams(375, 500, seededRandom(1), { scale: [0.67, 1] });
 * // { top, left, height, width }: 0.67·375·500 <= height·width <= 375·500 (up to rounding)
 */
export function randomResizedCropParams(
  imageHeight: number,
  imageWidth: number,
  random: () => number,
  { scale = SPARK_CROP_SCALE, ratio = DEFAULT_CROP_RATIO }: ResizedCropOptions = {},
): CropBox {
  for (const [label, value] of [
    ['imageHeight', imageHeight],
    ['imageWidth', imageWidth],
  ] as const) {
    if (!(Number.isInteger(value) && value >= 1)) throw new Error(`randomResizedCropParams: ${label} is ${value}, expected a whole number >= 1`);
  }
  if (!(scale[0] > 0 && scale[0] <= scale[1])) {
    throw new Error(`randomResizedCropParams: scale is (${scale[0]}, ${scale[1]}), expected 0 < min <= max`);
  }
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1])) {
    throw new Error(`randomResizedCropParams: ratio is (${ratio[0]}, ${ratio[1]}), expected 0 < min <= max`);
  }
  const area = imageHeight * imageWidth;
  const logRatioMin = Math.log(ratio[0]);
  const logRatioMax = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * random());
    const aspectRatio = Math.exp(logRatioMin + (logRatioMax - logRatioMin) * random());
    const width = roundHalfToEven(Math.sqrt(targetArea * aspectRatio));
    const height = roundHalfToEven(Math.sqrt(targetArea / aspectRatio));
    if (width > 0 && width <= imageWidth && height > 0 && height <= imageHeight) {
      const top = Math.floor(random() * (imageHeight - height + 1));
      const left = Math.floor(random() * (imageWidth - width + 1));
      return { top, left, height, width };
    }
  }
  // torchvision's fallback: the centre crop, as large as the ratio range allows.
  const inRatio = imageWidth / imageHeight;
  let width = imageWidth;
  let height = imageHeight;
  if (inRatio < Math.min(...ratio)) {
    height = roundHalfToEven(width / Math.min(...ratio));
  } else if (inRatio > Math.max(...ratio)) {
    width = roundHalfToEven(height * Math.max(...ratio));
  }
  return { top: Math.floor((imageHeight - height) / 2), left: Math.floor((imageWidth - width) / 2), height, width };
}

/** The size of a source's images: one number for N x N, or a rectangle. */
export type ImageSize = number | { readonly height: number; readonly width: number };

/**
 * `{ height, width }` of an {@link ImageSize}, checked: whole numbers >= 1.
 *
 * @example
 * imageSizeOf(224); // { height: 224, width: 224 }
 * imageSizeOf({ height: 192, width: 320 }); // { height: 192, width: 320 }
 */
export function imageSizeOf(size: ImageSize, caller = 'imageSizeOf'): { height: number; width: number } {
  if (typeof size === 'number') {
    if (!(Number.isInteger(size) && size >= 1)) throw new Error(`${caller}: inputSize is ${size}, expected a whole number >= 1`);
    return { height: size, width: size };
  }
  const { height, width } = size ?? ({} as { height?: number; width?: number });
  for (const [label, value] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (!(Number.isInteger(value) && (value as number) >= 1)) {
      throw new Error(`${caller}: inputSize ${JSON.stringify(size)} has ${label} ${value}, expected a whole number >= 1`);
    }
  }
  return { height: height as number, width: width as number };
}

/**
 * The aspect-ratio range of the crops for an output of `height` x `width`: `ratio` (width / height, relative
 * to a square output) times the output's own aspect, so that a crop resized to a rectangle is, on average,
 * not stretched. For a square output this is `ratio` itself, torchvision's RandomResizedCrop.
 *
 * @example
 * cropRatioFor(DEFAULT_CROP_RATIO, { height: 96, width: 128 }); // [1, 16/9]
 */
export function cropRatioFor(ratio: readonly [number, number], { height, width }: { height: number; width: number }): readonly [number, number] {
  if (height === width) return ratio;
  const aspect = width / height;
  return [ratio[0] * aspect, ratio[1] * aspect];
}

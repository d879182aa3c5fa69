/**
 * Pillow's bicubic resize (`Image.resize(size, Image.BICUBIC)`, what torchvision's RandomResizedCrop runs
 * on PIL images, so what SparK's pre-training saw), bit for bit on 8-bit images: Keys' cubic with a = -0.5,
 * widened by the scale factor when shrinking (antialiasing), each output pixel's weights normalised to sum 1,
 * rounded to 22-bit fixed point (Pillow's `PRECISION_BITS` for 8-bit images), a horizontal pass into an
 * 8-bit image, then a vertical pass (Pillow's order), each rounded half up and clamped to 0..255.
 *
 * sharp's cubic resize (libvips) agrees with this within 0.2 levels on average when shrinking, but differs by
 * 1 to 3.5 levels when enlarging (see the trainer README), which is why ImageFolderSource uses this.
 */

/** Pillow's `PRECISION_BITS` for 8-bit images: 32 - 8 - 2. */
const PRECISION_BITS = 22;
const BICUBIC_SUPPORT = 2;

/** Keys' cubic convolution kernel with a = -0.5 (Pillow's `bicubic_filter`). */
function bicubic(value: number): number {
  const a = -0.5;
  const x = Math.abs(value);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Per output pixel: the first input pixel, how many it reads, and their fixed-point weights (`precompute_coeffs`). */
interface Coefficients {
  first: Int32Array;
  count: Int32Array;
  /** `size` weights per output pixel. */
  weights: Int32Array;
  size: number;
}

function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const inverseScale = 1 / filterScale;
  const size = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * size);
  const row = new Float64Array(size);
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    // C's (int) truncates toward zero; center - support + 0.5 may be negative, then clamped to 0.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      // Multiplied by 1 / filterScale as Pillow does (not divided): the same float64 rounding.
      const weight = bicubic((x + xmin - center + 0.5) * inverseScale);
      row[x] = weight;
      total += weight;
    }
    for (let x = 0; x < xmax; x++) {
      const normalised = total !== 0 ? row[x] / total : row[x];
      // normalize_coeffs_8bpc: round half away from zero into fixed point.
      weights[out * size + x] = Math.trunc(normalised * (1 << PRECISION_BITS) + (normalised < 0 ? -0.5 : 0.5));
    }
    first[out] = xmin;
    count[out] = xmax;
  }
  return { first, count, weights, size };
}

/** Pillow's `clip8`: the fixed-point sum (already offset by a half) shifted down and clamped. */
function clip8(sum: number): number {
  const value = Math.floor(sum / (1 << PRECISION_BITS));
  return value < 0 ? 0 : Math.min(value, 255);
}

/**
 * Resizes interleaved 8-bit pixels (`height · width · channels`, row-major) to `outWidth` x `outHeight` as
 * Pillow's bicubic `resize` does, bit for bit. A side of the same length is not resampled (Pillow skips that
 * pass too).
 *
 * @example
 * const small = resizeBicubicLikePil(rgb, 500, 375, 3, 224, 224); // Uint8Array of 224 · 224 · 3
 */
export function resizeBicubicLikePil(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  for (const [label, value] of [
    ['width', width],
    ['height', height],
    ['channels', channels],
    ['outWidth', outWidth],
    ['outHeight', outHeight],
  ] as const) {
    if (!(Number.isInteger(value) && value >= 1)) throw new Error(`resizeBicubicLikePil: ${label} is ${value}, expected a whole number >= 1`);
  }
  if (pixels.length !== width * height * channels) {
    throw new Error(`resizeBicubicLikePil: ${pixels.length} values, expected ${width} x ${height} x ${channels} = ${width * height * channels}`);
  }
  const half = 1 << (PRECISION_BITS - 1);
  let current = pixels;
  let currentWidth = width;
  // Horizontal first, over the rows the vertical pass reads (all of them: the box is the whole image).
  if (outWidth !== width) {
    const { first, count, weights, size } = coefficients(width, outWidth);
    const out = new Uint8Array(height * outWidth * channels);
    for (let y = 0; y < height; y++) {
      const rowIn = y * width * channels;
      const rowOut = y * outWidth * channels;
      for (let x = 0; x < outWidth; x++) {
        const xmin = first[x];
        const n = count[x];
        const k = x * size;
        for (let c = 0; c < channels; c++) {
          let sum = half;
          for (let i = 0; i < n; i++) sum += current[rowIn + (xmin + i) * channels + c] * weights[k + i];
          out[rowOut + x * channels + c] = clip8(sum);
        }
      }
    }
    current = out;
    currentWidth = outWidth;
  }
  if (outHeight !== height) {
    const { first, count, weights, size } = coefficients(height, outHeight);
    const out = new Uint8Array(outHeight * currentWidth * channels);
    const stride = currentWidth * channels;
    for (let y = 0; y < outHeight; y++) {
      const ymin = first[y];
      const n = count[y];
      const k = y * size;
      for (let x = 0; x < stride; x++) {
        let sum = half;
        for (let i = 0; i < n; i++) sum += current[(ymin + i) * stride + x] * weights[k + i];
        out[y * stride + x] = clip8(sum);
      }
    }
    current = out;
  }
  return current === pixels ? Uint8Array.from(pixels) : current;
}

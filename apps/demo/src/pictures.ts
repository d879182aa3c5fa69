// Pictures in the page: decoding files, cropping and resizing to the model's input, and drawing the views.

/** A picture the page can show: decoded once, cropped and resized on demand to any input size. */
export interface Picture {
  name: string;
  /** Decoded image; drawn into a canvas at the model's input size. */
  bitmap: ImageBitmap;
  /** Whether the user brought it (trained on) or it ships with the page. */
  own: boolean;
}

/** Decodes an image file (JPEG, PNG, WebP, GIF, ...); a file that is not one gives a readable error. */
export async function decodePicture(file: Blob, name: string, own: boolean): Promise<Picture> {
  try {
    return { name, bitmap: await createImageBitmap(file), own };
  } catch {
    throw new Error(`'${name}' is not an image this browser can read (expected JPEG, PNG, WebP or GIF)`);
  }
}

/** An input shape in pixels, `[height, width]`, each a multiple of the patch size. */
export type InputShape = readonly [height: number, width: number];

/**
 * The input shape that keeps a picture's aspect ratio: the short side `shortSide`, the long side the nearest
 * multiple of `patch` to the picture's proportion, at most `maxRatio` times the short side.
 */
export function fittedShape(picture: Picture, shortSide: number, patch: number, maxRatio = 2): InputShape {
  const { width, height } = picture.bitmap;
  const longSide = Math.min(
    maxRatio * shortSide,
    Math.max(shortSide, Math.round((shortSide * Math.max(width, height)) / Math.min(width, height) / patch) * patch),
  );
  return width >= height ? [shortSide, longSide] : [longSide, shortSide];
}

/**
 * RGB bytes `[height, width, 3]` of the picture's centred crop to the shape's proportion, resized to it
 * (the browser's smoothing). SparK's convnets take any multiple of 32 on each side.
 */
export function croppedPixels(picture: Picture, [height, width]: InputShape): Uint8Array {
  const source = picture.bitmap;
  const scale = Math.min(source.width / width, source.height / height);
  const [cropWidth, cropHeight] = [width * scale, height * scale];
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true })!;
  context.imageSmoothingQuality = 'high';
  context.drawImage(source, (source.width - cropWidth) / 2, (source.height - cropHeight) / 2, cropWidth, cropHeight, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let pixel = 0; pixel < width * height; pixel++) {
    rgb[pixel * 3] = rgba[pixel * 4];
    rgb[pixel * 3 + 1] = rgba[pixel * 4 + 1];
    rgb[pixel * 3 + 2] = rgba[pixel * 4 + 2];
  }
  return rgb;
}

/** RGB bytes `[size, size, 3]` of the picture's centred square crop (what training batches take). */
export function squarePixels(picture: Picture, size: number): Uint8Array {
  return croppedPixels(picture, [size, size]);
}

/** Draws RGB values `[height, width, 3]` (0 .. 255, any array type; rounded and clipped) into a canvas of their size. */
export function drawRgb(canvas: HTMLCanvasElement, rgb: ArrayLike<number>, [height, width]: InputShape): void {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d')!;
  const image = context.createImageData(width, height);
  for (let pixel = 0; pixel < width * height; pixel++) {
    image.data[pixel * 4] = rgb[pixel * 3];
    image.data[pixel * 4 + 1] = rgb[pixel * 3 + 1];
    image.data[pixel * 4 + 2] = rgb[pixel * 3 + 2];
    image.data[pixel * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

/** The grey of hidden patches in the masked view (and the "flat grey fill" a reconstruction must beat). */
export const MASK_GREY = 128;

/** The picture with hidden patches filled with {@link MASK_GREY}. `visible[row * columns + column]` is 1 or 0. */
export function maskedRgb(rgb: ArrayLike<number>, visible: ArrayLike<number>, [height, width]: InputShape, patch: number): Uint8Array {
  const columns = width / patch;
  const out = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const shown = visible[Math.floor(y / patch) * columns + Math.floor(x / patch)] === 1;
      for (let channel = 0; channel < 3; channel++) {
        const index = (y * width + x) * 3 + channel;
        out[index] = shown ? rgb[index] : MASK_GREY;
      }
    }
  }
  return out;
}

/** Mean squared error per patch between two RGB pictures, in (value / 255)^2 units, row-major over the grid. */
export function patchErrors(a: ArrayLike<number>, b: ArrayLike<number>, [height, width]: InputShape, patch: number): Float64Array {
  const columns = width / patch;
  const sums = new Float64Array((height / patch) * columns);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = Math.floor(y / patch) * columns + Math.floor(x / patch);
      for (let channel = 0; channel < 3; channel++) {
        const index = (y * width + x) * 3 + channel;
        const difference = (Math.min(255, Math.max(0, a[index])) - b[index]) / 255;
        sums[cell] += difference * difference;
      }
    }
  }
  return sums.map((sum) => sum / (patch * patch * 3));
}

/**
 * The per-patch error map: each patch coloured from dark blue (0) to yellow (`scale` and above), hidden patches
 * labelled with their error x1000, visible ones crossed out (pasted back from the original, so their error
 * in the composite is zero). Drawn at `cell` pixels per patch so the labels stay legible.
 */
export function drawErrorMap(
  canvas: HTMLCanvasElement,
  errors: Float64Array,
  visible: ArrayLike<number>,
  [rows, columns]: readonly [number, number],
  cell: number,
  scale: number,
): void {
  canvas.width = columns * cell;
  canvas.height = rows * cell;
  const context = canvas.getContext('2d')!;
  context.font = `${Math.max(10, Math.round(cell / 3.2))}px system-ui, sans-serif`;
  context.textAlign = 'center';
  context.textBaseline = 'middle';
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) {
      const index = row * columns + column;
      const t = Math.min(1, errors[index] / scale);
      // A dark-blue to yellow ramp (luminance rises with the error, readable without colour vision).
      const [r, g, b] = [Math.round(30 + 225 * t), Math.round(30 + 200 * t), Math.round(90 - 60 * t)];
      context.fillStyle = `rgb(${r} ${g} ${b})`;
      context.fillRect(column * cell, row * cell, cell, cell);
      context.strokeStyle = '#000';
      context.strokeRect(column * cell + 0.5, row * cell + 0.5, cell - 1, cell - 1);
      if (visible[index] === 1) {
        context.strokeStyle = t > 0.5 ? '#000' : '#fff';
        context.beginPath();
        context.moveTo(column * cell + cell * 0.3, row * cell + cell * 0.3);
        context.lineTo(column * cell + cell * 0.7, row * cell + cell * 0.7);
        context.moveTo(column * cell + cell * 0.7, row * cell + cell * 0.3);
        context.lineTo(column * cell + cell * 0.3, row * cell + cell * 0.7);
        context.stroke();
      } else {
        context.fillStyle = t > 0.5 ? '#000' : '#fff';
        context.fillText((errors[index] * 1000).toFixed(1), column * cell + cell / 2, row * cell + cell / 2);
      }
    }
  }
}

/** Draws a loss curve (one value per step) with its first and last values, into a canvas. */
export function drawLossCurve(canvas: HTMLCanvasElement, losses: readonly number[]): void {
  const context = canvas.getContext('2d')!;
  const { width, height } = canvas;
  context.fillStyle = '#fff';
  context.fillRect(0, 0, width, height);
  context.strokeStyle = '#767676';
  context.strokeRect(0.5, 0.5, width - 1, height - 1);
  if (losses.length === 0) return;
  const low = Math.min(...losses);
  const high = Math.max(...losses);
  const span = high - low || 1;
  const pad = 24;
  const x = (step: number) => pad + ((width - 2 * pad) * step) / Math.max(1, losses.length - 1);
  const y = (loss: number) => height - pad - ((height - 2 * pad) * (loss - low)) / span;
  context.strokeStyle = '#1a56b0';
  context.lineWidth = 2;
  context.beginPath();
  for (const [step, loss] of losses.entries()) {
    if (step === 0) context.moveTo(x(step), y(loss));
    else context.lineTo(x(step), y(loss));
  }
  context.stroke();
  context.fillStyle = '#222';
  context.font = '12px system-ui, sans-serif';
  context.textBaseline = 'top';
  context.fillText(`max ${high.toFixed(3)}`, 4, 4);
  context.textBaseline = 'bottom';
  context.fillText(`min ${low.toFixed(3)} · ${losses.length} steps`, 4, height - 4);
}

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

/**
 * RGB bytes `[size, size, 3]` of the picture's centred square crop, resized to `size` (the browser's
 * smoothing): SparK's models take squares of a multiple of 32.
 */
export function squarePixels(picture: Picture, size: number): Uint8Array {
  const { width, height } = picture.bitmap;
  const side = Math.min(width, height);
  const canvas = new OffscreenCanvas(size, size);
  const context = canvas.getContext('2d', { willReadFrequently: true })!;
  context.imageSmoothingQuality = 'high';
  context.drawImage(picture.bitmap, (width - side) / 2, (height - side) / 2, side, side, 0, 0, size, size);
  const rgba = context.getImageData(0, 0, size, size).data;
  const rgb = new Uint8Array(size * size * 3);
  for (let pixel = 0; pixel < size * size; pixel++) {
    rgb[pixel * 3] = rgba[pixel * 4];
    rgb[pixel * 3 + 1] = rgba[pixel * 4 + 1];
    rgb[pixel * 3 + 2] = rgba[pixel * 4 + 2];
  }
  return rgb;
}

/** Draws RGB values (0 .. 255, any array type; rounded and clipped) into a canvas of their size. */
export function drawRgb(canvas: HTMLCanvasElement, rgb: ArrayLike<number>, size: number): void {
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext('2d')!;
  const image = context.createImageData(size, size);
  for (let pixel = 0; pixel < size * size; pixel++) {
    image.data[pixel * 4] = rgb[pixel * 3];
    image.data[pixel * 4 + 1] = rgb[pixel * 3 + 1];
    image.data[pixel * 4 + 2] = rgb[pixel * 3 + 2];
    image.data[pixel * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

/** The grey of hidden patches in the masked view (and the "flat grey fill" a reconstruction must beat). */
export const MASK_GREY = 128;

/** The picture with hidden patches filled with {@link MASK_GREY}. `visible[row * grid + column]` is 1 or 0. */
export function maskedRgb(rgb: ArrayLike<number>, visible: ArrayLike<number>, size: number, patch: number): Uint8Array {
  const grid = size / patch;
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const shown = visible[Math.floor(y / patch) * grid + Math.floor(x / patch)] === 1;
      for (let channel = 0; channel < 3; channel++) {
        const index = (y * size + x) * 3 + channel;
        out[index] = shown ? rgb[index] : MASK_GREY;
      }
    }
  }
  return out;
}

/** Mean squared error per patch between two RGB pictures, in (value / 255)^2 units, row-major over the grid. */
export function patchErrors(a: ArrayLike<number>, b: ArrayLike<number>, size: number, patch: number): Float64Array {
  const grid = size / patch;
  const sums = new Float64Array(grid * grid);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const cell = Math.floor(y / patch) * grid + Math.floor(x / patch);
      for (let channel = 0; channel < 3; channel++) {
        const index = (y * size + x) * 3 + channel;
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
 * in the composite is zero). Drawn at `pixels` per side so the labels stay legible.
 */
export function drawErrorMap(
  canvas: HTMLCanvasElement,
  errors: Float64Array,
  visible: ArrayLike<number>,
  grid: number,
  pixels: number,
  scale: number,
): void {
  canvas.width = pixels;
  canvas.height = pixels;
  const context = canvas.getContext('2d')!;
  const cell = pixels / grid;
  context.font = `${Math.max(10, Math.round(cell / 3.2))}px system-ui, sans-serif`;
  context.textAlign = 'center';
  context.textBaseline = 'middle';
  for (let row = 0; row < grid; row++) {
    for (let column = 0; column < grid; column++) {
      const index = row * grid + column;
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

import * as tf from '@tensorflow/tfjs-core';
import { maskPicture, randomPatchMask } from '@sparkmim/masking';
import { setupFastestBackend } from '@sparkmim/runtime';

// The demo shows SparK's input side on the GPU: an image, its random 32x32 patch mask at SparK's default
// ratio (60% hidden), and what the encoder sees. Reconstruction joins once a pre-trained checkpoint ships.
const IMAGE_SIZE = 224;
const PATCH = 32;
const MASK_RATIO = 0.6;

const status = document.getElementById('status')!;
const pictures = document.getElementById('pictures')!;

/** A synthetic picture (gradients and discs) so the page needs no network and no image file. */
function syntheticImage(size: number): tf.Tensor4D {
  const pixels = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const offset = (y * size + x) * 3;
      const inDisc = (x - size * 0.35) ** 2 + (y - size * 0.4) ** 2 < (size * 0.22) ** 2;
      const inSquare = x > size * 0.55 && x < size * 0.9 && y > size * 0.5 && y < size * 0.85;
      pixels[offset] = inDisc ? 0.95 : x / size;
      pixels[offset + 1] = inSquare ? 0.85 : y / size;
      pixels[offset + 2] = inDisc || inSquare ? 0.2 : 0.6;
    }
  }
  return tf.tensor4d(pixels, [1, size, size, 3]);
}

async function draw(image: tf.Tensor4D, title: string): Promise<void> {
  const [, height, width] = image.shape;
  const values = await image.data();
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  canvas.title = title;
  const context = canvas.getContext('2d')!;
  const rgba = context.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let channel = 0; channel < 3; channel++) {
      rgba.data[i * 4 + channel] = Math.round(Math.min(1, Math.max(0, values[i * 3 + channel])) * 255);
    }
    rgba.data[i * 4 + 3] = 255;
  }
  context.putImageData(rgba, 0, 0);
  const figure = document.createElement('figure');
  figure.style.display = 'inline-block';
  const caption = document.createElement('figcaption');
  caption.textContent = title;
  figure.append(canvas, caption);
  pictures.append(figure);
}

async function start(): Promise<void> {
  // The page exists to show WebGPU; its few small ops run fine on a software adapter (SwiftShader) too.
  const info = await setupFastestBackend(['webgpu', 'cpu'], { acceptSoftwareAdapter: true });
  const adapter = info.adapter ? ` (${info.adapter.vendor} ${info.adapter.architecture})` : '';
  status.textContent = `backend: ${info.tfjsBackend}${adapter}`;
  const image = syntheticImage(IMAGE_SIZE);
  const grid = IMAGE_SIZE / PATCH;
  const active = randomPatchMask(1, [grid, grid], MASK_RATIO, { seed: 7 });
  const masked = maskPicture(image, active);
  await draw(image, 'input');
  await draw(masked, `masked (${Math.round(MASK_RATIO * 100)}% of ${PATCH}x${PATCH} patches hidden)`);
  tf.dispose([image, active, masked]);
  document.body.dataset.backend = info.tfjsBackend;
}

start().catch((error: Error) => {
  status.textContent = `error: ${error.message}`;
});

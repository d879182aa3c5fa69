// Test support for the CLI specs that run real pre-training (not a spec itself): small images and the
// flags of a model small enough that a step takes a fraction of a second on the cpu backend.
import * as path from 'node:path';
import sharp from 'sharp';

/** Writes `count` 64x64 PNGs of distinct patterns, `image0.png` ... into `folder` (which must exist). */
export async function writeTestImages(folder: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const pixels = Buffer.alloc(64 * 64 * 3);
    for (let p = 0; p < pixels.length; p++) pixels[p] = (p * (i + 3) + 17 * i) & 255;
    await sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toFile(path.join(folder, `image${i}.png`));
  }
}

/** A tiny resnet18 (one block per stage, narrow), 64x64 inputs in batches of 2, on the cpu backend. */
export const TINY_RUN_FLAGS: readonly string[] = [
  '--model',
  'resnet18',
  '--stem-width',
  '4',
  '--widths',
  '4,8,8,8',
  '--depths',
  '1,1,1,1',
  '--decoder-width',
  '32',
  '--input-size',
  '64',
  '--batch-size',
  '2',
  '--backend',
  'cpu',
];

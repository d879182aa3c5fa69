#!/usr/bin/env node
// Rebuilds apps/pretrain/data/sample-images: square crops of public-domain and CC0 photographs, the
// embedded data set of `sparkmim pretrain --config apps/pretrain/configs/quickstart.json`.
//
// The photographs come from three Debian (bookworm, main) packages; their licences are in
// data/sample-images/LICENSE.md. To rebuild:
//
//   mkdir -p /tmp/sparkmim-photos && cd /tmp/sparkmim-photos
//   apt-get download python3-skimage xplanet-images lomiri-wallpapers-16.04
//   for deb in *.deb; do dpkg-deb -x "$deb" x; done
//   cp x/usr/lib/python3/dist-packages/skimage/data/{astronaut.png,chelsea.png,coffee.png,rocket.jpg} \
//      x/usr/lib/python3/dist-packages/skimage/data/{retina.jpg,camera.png} \
//      x/usr/lib/python3/dist-packages/skimage/data/{clock_motion.png,brick.png,cell.png,text.png} \
//      x/usr/share/xplanet/images/earth.jpg x/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg .
//   node apps/pretrain/scripts/make-sample-images.mjs /tmp/sparkmim-photos apps/pretrain/data/sample-images
//
// Crops are drawn with a fixed seed, so the same photographs give the same files.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);
const sharp = require('sharp');

/**
 * Crops per photograph: more from the large, varied ones, fewer from textures and maps. Star fields
 * (scikit-image's Hubble deep field, NASA's night lights) and fine textures (gravel, grass) are left out:
 * at the quickstart's size their per-patch-normalised pixels are noise that no model predicts, which only flattens the
 * loss curve of the quickstart run.
 */
const CROPS = {
  'seeding_by_Clements_Engelhardt.jpg': 84,
  'astronaut.png': 40,
  'coffee.png': 38,
  'chelsea.png': 28,
  'rocket.jpg': 24,
  'retina.jpg': 20,
  'earth.jpg': 24,
  'camera.png': 22,
  'clock_motion.png': 12,
  'brick.png': 10,
  'cell.png': 10,
  'text.png': 8,
};
/** Side of the stored crops, in pixels (training crops again, at the config's input size). */
const SIZE = Number(process.env.SIZE ?? 96);

// mulberry32: a small seeded generator, so that the crops do not change between runs.
function generator(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Whether every 32x32 block of the crop (SparK's patch), seen at 64x64 in grey, varies by at least
 * MIN_BLOCK_STD levels.
 * SparK's loss normalises each patch by its own deviation: a flat patch (sky, a blurred background) turns
 * into amplified noise that no model can predict, so such crops teach nothing in a five-minute run.
 */
const MIN_BLOCK_STD = 5;
async function hasStructure(crop) {
  const grey = await crop.resize(64, 64, { kernel: 'cubic' }).greyscale().raw().toBuffer();
  for (let by = 0; by < 64; by += 32) {
    for (let bx = 0; bx < 64; bx += 32) {
      let sum = 0;
      let sumSquares = 0;
      for (let y = by; y < by + 32; y++) {
        for (let x = bx; x < bx + 32; x++) {
          const value = grey[y * 64 + x];
          sum += value;
          sumSquares += value * value;
        }
      }
      const mean = sum / 1024;
      if (Math.sqrt(Math.max(0, sumSquares / 1024 - mean * mean)) < MIN_BLOCK_STD) return false;
    }
  }
  return true;
}

const [sourceDir, outDir] = process.argv.slice(2);
if (!sourceDir || !outDir) {
  console.error('usage: node make-sample-images.mjs PHOTO_FOLDER OUT_FOLDER');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
for (const file of readdirSync(outDir)) if (file.endsWith('.jpg')) rmSync(path.join(outDir, file));

const random = generator(2023);
let written = 0;
for (const [file, count] of Object.entries(CROPS)) {
  const { width, height } = await sharp(path.join(sourceDir, file)).metadata();
  const shortSide = Math.min(width, height);
  const stem = path
    .basename(file, path.extname(file))
    .replace(/_by_.*$/, '')
    .replace(/_/g, '-');
  let attempts = 0;
  for (let index = 0; index < count; ) {
    if (++attempts > count * 100) {
      console.warn(`${file}: only ${index} of ${count} crops have structure in every patch`);
      break;
    }
    // A square of 25-70% of the short side (large photographs: 8-30%, so that crops show objects, not
    // whole scenes shrunk to a few pixels), anywhere in the picture.
    const [low, high] = shortSide > 1500 ? [0.08, 0.3] : [0.25, 0.7];
    const side = Math.max(SIZE / 2, Math.round(shortSide * (low + (high - low) * random())));
    const left = Math.floor(random() * (width - side + 1));
    const top = Math.floor(random() * (height - side + 1));
    const crop = sharp(path.join(sourceDir, file)).removeAlpha().extract({ left, top, width: side, height: side });
    if (!(await hasStructure(crop.clone()))) continue;
    await crop
      .resize(SIZE, SIZE, { kernel: 'lanczos3' })
      .toColourspace('srgb')
      .jpeg({ quality: 88, mozjpeg: true })
      .toFile(path.join(outDir, `${stem}-${String(index).padStart(3, '0')}.jpg`));
    index++;
    written++;
  }
}
console.log(`wrote ${written} crops of ${SIZE}x${SIZE} to ${outDir}`);

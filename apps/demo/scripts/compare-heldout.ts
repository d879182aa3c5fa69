// Compares SparK checkpoints on the pictures held out of the demo weights' training (the page's samples):
// the mean SparK loss over the hidden patches (per-patch normalised L2; 1.0 = filling each hidden patch with
// its own mean colour) under fixed masks, and a picture grid of their reconstructions.
//   node scripts/run-ts.mjs apps/demo/scripts/compare-heldout.ts LABEL=model.safetensors [LABEL=...] [--out PREFIX]
// writes PREFIX.json and PREFIX.png (default apps/demo/weights/heldout-comparison).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { randomPatchMask } from '@sparkmim/masking';
import { setupBackend } from '@sparkmim/runtime';
import { SparkModel, imagesToRgba, normalizeImages } from '@sparkmim/trainer';

const SIZE = 96;
const GRID = 3;
const MASK_SEEDS = [0, 1, 2, 3, 4, 5, 6, 7];
const demoDir = join(process.cwd(), 'apps', 'demo');
const samplesDir = join(demoDir, 'public', 'samples');

// sharp is the trainer's dependency (native, so loaded at run time rather than bundled).
type Sharp = (
  input?: Buffer | Uint8Array,
  options?: object,
) => {
  resize(width: number, height: number): ReturnType<Sharp>;
  removeAlpha(): ReturnType<Sharp>;
  raw(): ReturnType<Sharp>;
  png(): ReturnType<Sharp>;
  toBuffer(): Promise<Buffer>;
  toFile(path: string): Promise<unknown>;
};
const sharp = createRequire(createRequire(join(demoDir, 'package.json')).resolve('@sparkmim/trainer/package.json'))('sharp') as Sharp;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf('--out');
  const out = outIndex >= 0 ? args.splice(outIndex, 2)[1] : join(demoDir, 'weights', 'heldout-comparison');
  const models = args.map((arg) => {
    const [label, path] = arg.split('=');
    if (!label || !path) throw new Error(`expected LABEL=path/to/model.safetensors, got '${arg}'`);
    return { label, path };
  });
  if (models.length === 0) throw new Error('usage: compare-heldout.ts LABEL=model.safetensors [LABEL=...] [--out PREFIX]');
  await setupBackend('cpu');
  const names = readdirSync(samplesDir)
    .filter((name) => name.endsWith('.jpg'))
    .sort();
  const pixels = await Promise.all(
    names.map((name) =>
      sharp(readFileSync(join(samplesDir, name)))
        .resize(SIZE, SIZE)
        .removeAlpha()
        .raw()
        .toBuffer(),
    ),
  );
  const images = tf.tidy(() => normalizeImages(tf.tensor4d(Buffer.concat(pixels), [names.length, SIZE, SIZE, 3], 'int32')));
  const masks = MASK_SEEDS.map((seed) => randomPatchMask(names.length, [GRID, GRID], 0.6, { seed }));
  const results: Record<string, { meanLoss: number; perImage: Record<string, number> }> = {};
  const columns: Uint8ClampedArray[][] = [];
  for (const { label, path } of models) {
    const model = await SparkModel.fromSafetensors(new Uint8Array(readFileSync(path)), { source: path });
    model.eval();
    const perImage = new Array<number>(names.length).fill(0);
    for (const active of masks) {
      // One image at a time: SparK's loss is a mean over the batch, and batch norm is in eval mode anyway.
      for (let index = 0; index < names.length; index++) {
        const loss = tf.tidy(() => model.forward(images.slice(index, 1) as tf.Tensor4D, { active: active.slice(index, 1) as tf.Tensor4D }));
        perImage[index] += (await loss.data())[0] / masks.length;
        loss.dispose();
      }
    }
    const visualization = model.visualize(images, { active: masks[0] });
    if (columns.length === 0) {
      columns.push((await imagesToRgba(visualization.input)).map((image) => image.data));
      columns.push((await imagesToRgba(visualization.masked)).map((image) => image.data));
    }
    columns.push((await imagesToRgba(visualization.recOrInput)).map((image) => image.data));
    tf.dispose(visualization);
    model.dispose();
    const meanLoss = perImage.reduce((a, b) => a + b, 0) / perImage.length;
    results[label] = { meanLoss, perImage: Object.fromEntries(names.map((name, index) => [name, Number(perImage[index].toFixed(4))])) };
    console.log(`${label}: mean held-out loss ${meanLoss.toFixed(4)} (${names.length} pictures x ${masks.length} masks, ratio 0.6)  ${path}`);
  }
  tf.dispose([images, ...masks]);
  // The grid: one row per picture; columns: input, masked (ImageNet-mean fill, as the model sees it), then each model.
  const width = columns.length * SIZE;
  const height = names.length * SIZE;
  const canvas = new Uint8Array(width * height * 4);
  for (const [c, column] of columns.entries()) {
    for (const [r, data] of column.entries()) {
      for (let y = 0; y < SIZE; y++) canvas.set(data.subarray(y * SIZE * 4, (y + 1) * SIZE * 4), ((r * SIZE + y) * width + c * SIZE) * 4);
    }
  }
  await sharp(canvas, { raw: { width, height, channels: 4 } })
    .png()
    .toFile(`${out}.png`);
  writeFileSync(
    `${out}.json`,
    `${JSON.stringify(
      { pictures: names, maskSeeds: MASK_SEEDS, maskRatio: 0.6, columns: ['input', 'masked', ...models.map((m) => m.label)], models: results },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${out}.png (rows: ${names.join(', ')}; columns: input, masked, ${models.map((m) => m.label).join(', ')}) and ${out}.json`);
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});

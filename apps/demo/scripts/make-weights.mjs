#!/usr/bin/env node
// Makes the weights the demo page ships (apps/demo/weights/), with the project's own CLI:
//   node apps/demo/scripts/make-weights.mjs            (from the repository root; ~3 min on wasm, 2 shared cores)
// 1. copies the embedded sample images (apps/pretrain/data/sample-images) into weights/train-images/
//    (gitignored), leaving out the HELD_OUT crops: the page's bundled samples, never seen in training;
// 2. runs `sparkmim pretrain --config apps/pretrain/configs/demo.json --out <run>` (the quickstart's tiny
//    ResNet-18 at 96x96, 16 epochs instead of 4, on the CPU default backend, wasm);
// 3. copies the run's model.*.safetensors, config.json, metrics.jsonl, loss-curve.png and last preview
//    into weights/ in place of the old ones (pass --from RUN to skip step 2 and copy from a finished run).
// The held-out comparison with the quickstart is a separate command (apps/demo/README.md).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HELD_OUT = ['astronaut-007.jpg', 'chelsea-005.jpg', 'coffee-010.jpg', 'rocket-003.jpg', 'earth-004.jpg', 'seeding-020.jpg'];

const demoDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = join(demoDir, '..', '..');
const source = join(repoRoot, 'apps', 'pretrain', 'data', 'sample-images');
const weights = join(demoDir, 'weights');
const trainImages = join(weights, 'train-images');
const samples = join(demoDir, 'public', 'samples');

const fromIndex = process.argv.indexOf('--from');
const run = fromIndex > 0 ? process.argv[fromIndex + 1] : join(repoRoot, 'runs', 'demo-weights');

// The bundled samples are the held-out crops, so the page shows pictures the model never trained on.
mkdirSync(samples, { recursive: true });
for (const name of HELD_OUT) copyFileSync(join(source, name), join(samples, name));

if (fromIndex < 0) {
  rmSync(trainImages, { recursive: true, force: true });
  mkdirSync(trainImages, { recursive: true });
  let copied = 0;
  for (const name of readdirSync(source)) {
    if (!/\.jpe?g$/i.test(name) || HELD_OUT.includes(name)) continue;
    copyFileSync(join(source, name), join(trainImages, name));
    copied += 1;
  }
  console.log(`make-weights: ${copied} training images, ${HELD_OUT.length} held out`);
  execFileSync(
    process.execPath,
    [
      join(repoRoot, 'apps', 'pretrain', 'bin', 'sparkmim.mjs'),
      'pretrain',
      '--config',
      join(repoRoot, 'apps', 'pretrain', 'configs', 'demo.json'),
      '--out',
      run,
    ],
    { stdio: 'inherit', cwd: repoRoot },
  );
}

const checkpoint = JSON.parse(readFileSync(join(run, 'checkpoint.json'), 'utf8'));
for (const name of readdirSync(weights)) if (/^model\..*safetensors$/.test(name)) rmSync(join(weights, name));
console.log(`make-weights: copying ${run} at epoch ${checkpoint.progress.epoch}, iteration ${checkpoint.progress.iteration}`);
for (const name of readdirSync(run)) {
  if (/^model\..*safetensors$/.test(name) || ['config.json', 'metrics.jsonl', 'loss-curve.png'].includes(name)) {
    copyFileSync(join(run, name), join(weights, name));
  }
}
const previews = existsSync(join(run, 'previews')) ? readdirSync(join(run, 'previews')).sort() : [];
if (previews.length > 0) copyFileSync(join(run, 'previews', previews.at(-1)), join(weights, 'preview.png'));

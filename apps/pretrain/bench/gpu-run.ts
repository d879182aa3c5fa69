// One GPU session's measurements, as JSON lines on stdout (see apps/pretrain/bench/README.md):
//   1. the filter-gradient methods of @sparkmim/sparse-ops on ResNet-50's convolution shapes;
//   2. `sparkmim pretrain` of SparK ResNet-50 at 224x224, batch 32 (the official throughput figure's
//      setting) on the embedded images, images per second from its metrics;
//   3. `sparkmim pretrain --config apps/pretrain/configs/quickstart.json` on the same backend.
//
// usage: node gpu-run.mjs --data FOLDER --out FOLDER [--backend webgpu] [--quickEpochs N] [--skip conv,resnet50,quickstart] [--smoke]
// --smoke shrinks every shape (for a check on SwiftShader before spending GPU time).
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from '@sparkmim/runtime';
import { conv2d, type FilterGradientMethod } from '@sparkmim/sparse-ops';
import { main as cli } from '../src/cli';

const { values } = parseArgs({
  options: {
    data: { type: 'string' },
    out: { type: 'string' },
    config: { type: 'string', default: 'apps/pretrain/configs/quickstart.json' },
    backend: { type: 'string', default: 'webgpu' },
    smoke: { type: 'boolean', default: false },
    skip: { type: 'string', default: '' },
    // Epochs of the quickstart run (its config's own count is sized for a laptop CPU).
    quickEpochs: { type: 'string', default: '10' },
  },
});
if (!values.data || !values.out) throw new Error('usage: gpu-run --data FOLDER --out FOLDER [--backend webgpu] [--smoke]');
const smoke = values.smoke;
const skip = new Set(values.skip!.split(',').filter(Boolean));
const emit = (record: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(record)}\n`);

const info = await setupBackend(values.backend!);
emit({ type: 'backend', name: info.name, adapter: info.adapter });

// 1. Filter-gradient methods: forward + both gradients of one conv, per method, after a warm-up.
const totalMs = new Map<FilterGradientMethod, number>();
if (!skip.has('conv')) {
  const batch = smoke ? 2 : 32;
  const shapes: [string, number, number, number, number, number, number][] = smoke
    ? [['3x3 s1', 8, 4, 4, 3, 1, 1]]
    : [
        ['stem 7x7 s2', 224, 3, 64, 7, 2, 3],
        ['layer1 3x3', 56, 64, 64, 3, 1, 1],
        ['layer1 1x1 expand', 56, 64, 256, 1, 1, 0],
        ['layer2 3x3 s2', 56, 128, 128, 3, 2, 1],
        ['layer3 3x3', 14, 256, 256, 3, 1, 1],
        ['layer4 3x3', 7, 512, 512, 3, 1, 1],
      ];
  for (const [name, size, inC, outC, kernel, stride, pad] of shapes) {
    const x = tf.randomNormal([batch, size, size, inC]) as tf.Tensor4D;
    const filter = tf.randomNormal([kernel, kernel, inC, outC], 0, 0.05) as tf.Tensor4D;
    for (const method of ['backend', 'conv', 'im2col'] as FilterGradientMethod[]) {
      const step = () =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad, { filterGradient: method })))([
          x,
          filter,
        ]);
      const run = async () => {
        const grads = step();
        await Promise.all(grads.map((g) => g.data()));
        tf.dispose(grads);
      };
      try {
        await run();
        const reps = smoke ? 1 : 3;
        const started = performance.now();
        for (let i = 0; i < reps; i++) await run();
        const ms = (performance.now() - started) / reps;
        totalMs.set(method, (totalMs.get(method) ?? 0) + ms);
        emit({ type: 'conv', shape: name, batch, size, inC, outC, kernel, stride, method, ms });
      } catch (error) {
        totalMs.set(method, Infinity);
        emit({ type: 'conv', shape: name, method, error: String((error as Error).message).slice(0, 300) });
      }
    }
    tf.dispose([x, filter]);
  }
}

/** Runs the CLI's pretrain command and reports its steps' throughput (warm-up steps left out). */
async function pretrain(label: string, args: string[]): Promise<void> {
  const out = path.join(values.out!, label);
  const started = performance.now();
  const code = await cli(['pretrain', ...args, '--backend', values.backend!, '--data', values.data!, '--out', out]);
  const seconds = (performance.now() - started) / 1000;
  const lines = (await readFile(path.join(out, 'metrics.jsonl'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
  const records = lines.map((line) => JSON.parse(line) as Record<string, number | string>);
  const steps = records.filter((record) => record.type === 'step');
  const epochs = records.filter((record) => record.type === 'epoch');
  const steady = steps.slice(Math.min(2, Math.max(0, steps.length - 1)));
  const images = steady.reduce((sum, step) => sum + Number(step.batchSize), 0);
  const stepSeconds = steady.reduce((sum, step) => sum + Number(step.seconds), 0);
  emit({
    type: 'pretrain',
    label,
    exitCode: code,
    seconds,
    steps: steps.length,
    imagesPerSecondAfterWarmup: stepSeconds > 0 ? images / stepSeconds : null,
    firstStepSeconds: steps[0]?.seconds,
    epochMeanLoss: epochs.map((epoch) => epoch.meanLoss),
  });
}

const resnet50Args = smoke
  ? [
      '--model',
      'resnet18',
      '--stem-width',
      '8',
      '--widths',
      '8,8,8,8',
      '--decoder-width',
      '32',
      '--input-size',
      '64',
      '--batch-size',
      '2',
      '--epochs',
      '1',
      '--preview-every',
      '0',
    ]
  : ['--model', 'resnet50', '--input-size', '224', '--batch-size', '32', '--epochs', '1', '--preview-every', '0'];
if (!skip.has('resnet50')) {
  await pretrain('resnet50-224-b32', resnet50Args);
  // The whole model again with the fastest other filter-gradient method of step 1, if one was faster.
  const candidates = [...totalMs].filter(([method]) => method !== 'backend').sort((a, b) => a[1] - b[1]);
  if (candidates.length && candidates[0][1] < (totalMs.get('backend') ?? Infinity)) {
    tf.env().set('SPARKMIM_FILTER_GRADIENT', candidates[0][0]);
    await pretrain(`resnet50-224-b32-${candidates[0][0]}`, resnet50Args);
    tf.env().set('SPARKMIM_FILTER_GRADIENT', 'auto');
  }
}
if (!skip.has('quickstart')) {
  await pretrain('quickstart', [
    '--config',
    values.config!,
    ...(smoke ? ['--epochs', '1', '--batch-size', '2', '--input-size', '64'] : ['--epochs', values.quickEpochs!]),
  ]);
}
emit({ type: 'done' });

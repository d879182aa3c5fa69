// `sparkmim probe`: a linear classifier on frozen features (a linear probe). The encoder runs once over the
// training and validation images (no augmentation, evaluation mode); features are standardised with the
// training set's statistics; one linear layer is trained with AdamW and cross-entropy on the whole training
// set per step (full batch: a probe's data fit in memory), warm-up then cosine.
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from '@sparkmim/runtime';
import { AdamW, ClassificationMeter, LinearProbe, lrWdAt, stateToSafetensors, type ClassificationMetrics } from '@sparkmim/trainer';
import { torchState } from '@sparkmim/sparse-ops';
import { writeFileAtomic } from '@sparkmim/trainer/node';
import { UsageError } from '../errors';
import {
  LABELLED_HELP,
  LABELLED_OPTIONS,
  appendMetrics,
  buildClassifier,
  extractFeatures,
  intOption,
  numberOption,
  openLabelledData,
  percent,
  prepareRunFolder,
} from './labelled';

export const PROBE_HELP = `usage: sparkmim probe (--weights FILE | --model NAME) --data FOLDER --out RUN [options]

A linear probe: the encoder's pooled features (frozen, computed once, evaluation mode, no augmentation),
standardised with the training images' mean and deviation, and one linear layer trained on them with AdamW
and cross-entropy (full batch, warm-up then cosine). Validation top-1 / top-5 every 10 steps and at the end.
The run folder holds config.json, metrics.jsonl (the last line: a summary with the confusion matrix) and
probe.safetensors (fc.weight, fc.bias, feature_mean, feature_std).

${LABELLED_HELP}  --out RUN                run folder (refused when it holds a run, unless --overwrite)
  --overwrite              replace the run in --out
  --steps N                optimiser steps (default 300)
  --lr X                   peak learning rate (default 0.01)
  --weight-decay X         (default 1e-4)
  --label-smoothing X      (default 0)
`;

/** Runs `sparkmim probe`; returns the exit code. */
export async function probeCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...LABELLED_OPTIONS,
      out: { type: 'string' },
      overwrite: { type: 'boolean' },
      steps: { type: 'string' },
      lr: { type: 'string' },
      'weight-decay': { type: 'string' },
      'label-smoothing': { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(PROBE_HELP);
    return 0;
  }
  if (!values.out) throw new UsageError('--out RUN is required (the run folder)');
  const inputSize = intOption(values, 'input-size', 96);
  if (inputSize % 32 !== 0) throw new UsageError(`--input-size: expected a multiple of 32, got ${inputSize}`);
  const batchSize = intOption(values, 'batch-size', 16);
  const seed = intOption(values, 'seed', 0, 0);
  const steps = intOption(values, 'steps', 300, 2);
  const lr = numberOption(values, 'lr', 0.01, 0);
  const weightDecay = numberOption(values, 'weight-decay', 1e-4, 0);
  const labelSmoothing = numberOption(values, 'label-smoothing', 0, 0, 0.99);
  await setupBackend(values.backend ?? 'cpu');
  const data = await openLabelledData(values, inputSize, seed);
  const { classifier, source } = await buildClassifier(values, data.classes.length, seed);
  const started = Date.now();
  let trainFeatures: Float32Array;
  let validationFeatures: Float32Array;
  const featureSize = classifier.featureSize;
  try {
    trainFeatures = await extractFeatures(classifier, data.train, data.trainIndices, batchSize);
    validationFeatures = await extractFeatures(classifier, data.validation, data.validationIndices, batchSize);
  } finally {
    classifier.dispose();
  }
  await prepareRunFolder(values.out, { overwrite: Boolean(values.overwrite) });
  const settings = { ...values, inputSize, batchSize, seed, steps, lr, weightDecay, labelSmoothing };
  await writeFileAtomic(path.join(values.out, 'config.json'), new TextEncoder().encode(`${JSON.stringify(settings, null, 2)}\n`));
  const trainLabels = data.trainIndices.map((i) => data.train.labels[i]);
  const validationLabels = data.validationIndices.map((i) => data.validation.labels[i]);
  const train = tf.tensor2d(trainFeatures, [trainLabels.length, featureSize]);
  const validation = tf.tensor2d(validationFeatures, [validationLabels.length, featureSize]);
  const probe = new LinearProbe({ featureSize, numClasses: data.classes.length, seed });
  const optimizer = new AdamW([{ name: 'probe', variables: probe.namedParameters() }], { weightDecay: 0 });
  const measure = async (): Promise<ClassificationMetrics> => {
    const logits = probe.logits(validation);
    const meter = new ClassificationMeter(data.classes.length);
    meter.add(await logits.data(), validationLabels);
    logits.dispose();
    return meter.result();
  };
  try {
    probe.setStandardization(train);
    process.stdout.write(
      `probe: ${source}; ${data.classes.length} classes, ${trainLabels.length} training and ${validationLabels.length} validation images, ` +
        `${featureSize} features (extracted in ${((Date.now() - started) / 1000).toFixed(1)} s); ${steps} AdamW steps, peak lr ${lr}\n`,
    );
    const schedule = {
      peakLr: lr,
      weightDecay,
      weightDecayEnd: weightDecay,
      warmupIterations: Math.min(Math.round(steps / 20), steps - 2),
      maxIterations: steps,
    };
    let metrics: ClassificationMetrics | undefined;
    for (let step = 0; step < steps; step++) {
      const { loss } = await probe.trainStep(optimizer, train, trainLabels, { lrWd: lrWdAt(schedule, step), labelSmoothing });
      if ((step + 1) % 10 === 0 || step === steps - 1) {
        metrics = await measure();
        await appendMetrics(values.out, { type: 'step', step: step + 1, loss, valTop1: metrics.top1, valTop5: metrics.top5, valLoss: metrics.loss });
      }
    }
    metrics ??= await measure();
    await writeFileAtomic(
      path.join(values.out, 'probe.safetensors'),
      stateToSafetensors(await torchState(probe), { classes: JSON.stringify(data.classes) }),
    );
    await appendMetrics(values.out, {
      type: 'summary',
      steps,
      valTop1: metrics.top1,
      valTop5: metrics.top5,
      valLoss: metrics.loss,
      classes: data.classes,
      confusion: metrics.confusion,
    });
    process.stdout.write(`done: val top-1 ${percent(metrics.top1)}, top-5 ${percent(metrics.top5)}; ${path.join(values.out, 'probe.safetensors')}\n`);
    return 0;
  } finally {
    tf.dispose([train, validation]);
    optimizer.dispose();
    probe.dispose();
  }
}

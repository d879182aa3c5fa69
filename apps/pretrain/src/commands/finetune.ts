// `sparkmim finetune`: the whole network (pre-trained encoder + a new linear head) trained on labelled images
// as the official downstream_imagenet does it: LAMB + BCE for ResNets, AdamW + cross-entropy otherwise,
// layer-wise lr decay, label smoothing, warm-up then cosine, an optional EMA of the weights; top-1 / top-5
// on the validation images after every epoch; a checkpoint after every epoch that --resume continues.
import { mkdir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '@sparkmim/masking';
import { setupBackend } from '@sparkmim/runtime';
import { loadTorchState, torchState } from '@sparkmim/sparse-ops';
import {
  AdamW,
  Lamb,
  WeightEma,
  classifierTrainStep,
  decodeSafetensors,
  evaluateLogits,
  layerDecayParamGroups,
  lrWdAt,
  peakLearningRate,
  safetensorsEntriesFromTensors,
  encodeSafetensors,
  stateFromSafetensors,
  stateToSafetensors,
  tensorsFromSafetensors,
  type ClassificationMetrics,
  type Classifier,
  type LrWdSchedule,
  type Optimizer,
} from '@sparkmim/trainer';
import { writeFileAtomic } from '@sparkmim/trainer/node';
import { UsageError } from '../errors';
import { oneLine, readBytes } from './inputs';
import {
  LABELLED_HELP,
  LABELLED_OPTIONS,
  appendMetrics,
  buildClassifier,
  intOption,
  numberOption,
  openLabelledData,
  percent,
  prepareRunFolder,
  readJson,
  type LabelledData,
} from './labelled';

export const FINETUNE_HELP = `usage: sparkmim finetune (--weights FILE | --model NAME) --data FOLDER --out RUN [options]
       sparkmim finetune --resume RUN [--epochs N]

Fine-tunes the whole network, a pre-trained encoder with a new head (global average pool + linear), on
labelled images, as the official SparK fine-tuning does: LAMB with binary cross-entropy for ResNets, AdamW
with cross-entropy otherwise, layer-wise lr decay, label smoothing, linear warm-up then cosine, optional
EMA. Validation top-1 / top-5 after every epoch. The run folder holds config.json, metrics.jsonl (a line per
step, per epoch, and a summary with the confusion matrix), checkpoint/ (rewritten after every epoch:
model, optimiser, EMA, position) and classifier.safetensors (PyTorch names, e.g. fc.weight).

${LABELLED_HELP}  --out RUN                run folder (refused when it holds a run, unless --overwrite)
  --overwrite              replace the run in --out
  --resume RUN             continue RUN from its last checkpoint with its settings (--epochs may extend it)
  --epochs N               (default 10)
  --warmup-epochs N        (default 1)
  --base-lr X              lr per 256 images; peak lr = base-lr x batch-size / 256 (default 2e-3)
  --optimizer NAME         lamb or adamw (default: lamb for ResNets, adamw otherwise)
  --loss NAME              bce or ce (default: bce with lamb, ce with adamw, as the official code)
  --lr-decay X             layer-wise lr decay, official --lr_scale (default 0.7; 1 turns it off)
  --weight-decay X         (default 0.02)
  --label-smoothing X      (default 0.1)
  --ema X                  decay of an EMA of the weights, evaluated too (default 0: none)
  --stop-after N           stop after N epochs, checkpoint written, as if interrupted (--resume continues)
`;

interface FinetuneSettings {
  data: string;
  val?: string;
  valFraction?: string;
  weights?: string;
  model?: string;
  depths?: string;
  widths?: string;
  stemWidth?: string;
  inputSize: number;
  batchSize: number;
  seed: number;
  backend: string;
  epochs: number;
  warmupEpochs: number;
  baseLr: number;
  optimizer: 'lamb' | 'adamw';
  loss: 'bce' | 'ce';
  lrDecay: number;
  weightDecay: number;
  labelSmoothing: number;
  ema: number;
}

interface CheckpointPosition {
  epochsDone: number;
  iteration: number;
  best: number;
}

const OPTIONS = {
  ...LABELLED_OPTIONS,
  out: { type: 'string' },
  overwrite: { type: 'boolean' },
  resume: { type: 'string' },
  epochs: { type: 'string' },
  'warmup-epochs': { type: 'string' },
  'base-lr': { type: 'string' },
  optimizer: { type: 'string' },
  loss: { type: 'string' },
  'lr-decay': { type: 'string' },
  'weight-decay': { type: 'string' },
  'label-smoothing': { type: 'string' },
  ema: { type: 'string' },
  'stop-after': { type: 'string' },
} as const;

/** Runs `sparkmim finetune`; returns the exit code. */
export async function finetuneCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, strict: true, options: OPTIONS });
  if (values.help) {
    process.stdout.write(FINETUNE_HELP);
    return 0;
  }
  let settings: FinetuneSettings;
  let out: string;
  let resumed: CheckpointPosition | undefined;
  if (values.resume) {
    out = values.resume;
    settings = await readJson<FinetuneSettings>(path.join(out, 'config.json'), '--resume');
    resumed = await readJson<CheckpointPosition>(path.join(out, 'checkpoint', 'position.json'), '--resume');
    if (values.epochs !== undefined) settings.epochs = intOption(values, 'epochs', settings.epochs);
  } else {
    if (!values.out) throw new UsageError('--out RUN is required (the run folder)');
    out = values.out;
    settings = settingsFrom(values);
  }
  await setupBackend(settings.backend);
  const flags = {
    data: settings.data,
    val: settings.val,
    'val-fraction': settings.valFraction,
    weights: settings.weights,
    model: settings.model,
    depths: settings.depths,
    widths: settings.widths,
    'stem-width': settings.stemWidth,
  };
  const data = await openLabelledData(flags, settings.inputSize, settings.seed);
  const { classifier, source } = await buildClassifier(flags, data.classes.length, settings.seed);
  if (!values.resume) settings.optimizer ??= classifier.backbone.kind === 'resnet' ? 'lamb' : 'adamw';
  if (!values.resume) settings.loss ??= settings.optimizer === 'lamb' ? 'bce' : 'ce';
  const groups = layerDecayParamGroups(classifier.namedParameters(), {
    kind: classifier.backbone.kind,
    depths: backboneDepths(classifier),
    decay: settings.lrDecay,
  });
  // The official optimiser settings (downstream_imagenet/util.py): timm's Lamb with max_grad_norm 1e7,
  // always_adapt, no bias correction; AdamW with torch's defaults.
  const optimizer: Optimizer =
    settings.optimizer === 'lamb'
      ? new Lamb(groups, { maxGradNorm: 1e7, alwaysAdapt: true, biasCorrection: false })
      : new AdamW(groups, { weightDecay: 0 });
  const ema = settings.ema > 0 ? new WeightEma(classifier.stateEntries(), settings.ema) : undefined;
  try {
    if (!values.resume) {
      await prepareRunFolder(out, { overwrite: Boolean(values.overwrite) });
      await writeFileAtomic(path.join(out, 'config.json'), new TextEncoder().encode(`${JSON.stringify(settings, null, 2)}\n`));
    } else {
      await restoreCheckpoint(out, classifier, optimizer, ema);
    }
    const stopAfter = values['stop-after'] === undefined ? settings.epochs : intOption(values, 'stop-after', settings.epochs);
    return await run(settings, out, data, classifier, optimizer, ema, source, resumed, stopAfter);
  } finally {
    ema?.dispose();
    optimizer.dispose();
    classifier.dispose();
  }
}

function settingsFrom(values: Record<string, unknown>): FinetuneSettings {
  const optimizer = values.optimizer as string | undefined;
  if (optimizer !== undefined && optimizer !== 'lamb' && optimizer !== 'adamw')
    throw new UsageError(`--optimizer: expected lamb or adamw, got '${optimizer}'`);
  const loss = values.loss as string | undefined;
  if (loss !== undefined && loss !== 'bce' && loss !== 'ce') throw new UsageError(`--loss: expected bce or ce, got '${loss}'`);
  const inputSize = intOption(values, 'input-size', 96);
  if (inputSize % 32 !== 0) throw new UsageError(`--input-size: expected a multiple of 32, got ${inputSize}`);
  const settings = {
    data: values.data as string,
    val: values.val as string | undefined,
    valFraction: values['val-fraction'] as string | undefined,
    weights: values.weights as string | undefined,
    model: values.model as string | undefined,
    depths: values.depths as string | undefined,
    widths: values.widths as string | undefined,
    stemWidth: values['stem-width'] as string | undefined,
    inputSize,
    batchSize: intOption(values, 'batch-size', 16),
    seed: intOption(values, 'seed', 0, 0),
    backend: (values.backend as string | undefined) ?? 'cpu',
    epochs: intOption(values, 'epochs', 10),
    warmupEpochs: intOption(values, 'warmup-epochs', 1, 0),
    baseLr: numberOption(values, 'base-lr', 2e-3, 0),
    optimizer: optimizer as 'lamb' | 'adamw',
    loss: loss as 'bce' | 'ce',
    lrDecay: numberOption(values, 'lr-decay', 0.7, 0, 1),
    weightDecay: numberOption(values, 'weight-decay', 0.02, 0),
    labelSmoothing: numberOption(values, 'label-smoothing', 0.1, 0, 0.99),
    ema: numberOption(values, 'ema', 0, 0, 0.999999),
  };
  if (!(settings.baseLr > 0)) throw new UsageError(`--base-lr: expected a number > 0, got ${settings.baseLr}`);
  return settings;
}

function backboneDepths(classifier: Classifier): number[] | undefined {
  if (classifier.backbone.kind === 'custom') return undefined;
  return (classifier.backbone as unknown as { config: { depths: number[] } }).config?.depths ?? depthsFromNames(classifier);
}

// Blocks per stage from parameter names (`layer3.5.`, `stages.2.7.`), for backbones without a config.
function depthsFromNames(classifier: Classifier): number[] {
  const depths = [0, 0, 0, 0];
  for (const { name } of classifier.namedParameters()) {
    const resnet = /^layer(\d)\.(\d+)\./.exec(name);
    const convnext = /^stages\.(\d)\.(\d+)\./.exec(name);
    if (resnet) depths[Number(resnet[1]) - 1] = Math.max(depths[Number(resnet[1]) - 1], Number(resnet[2]) + 1);
    if (convnext) depths[Number(convnext[1])] = Math.max(depths[Number(convnext[1])], Number(convnext[2]) + 1);
  }
  return depths;
}

async function evaluate(classifier: Classifier, data: LabelledData, batchSize: number): Promise<ClassificationMetrics> {
  classifier.eval();
  const batches: number[][] = [];
  for (let start = 0; start < data.validationIndices.length; start += batchSize) batches.push(data.validationIndices.slice(start, start + batchSize));
  async function* labelled() {
    for (const indices of batches) {
      const batch = data.validation.batch(indices);
      try {
        yield batch;
      } finally {
        batch.images.dispose();
      }
    }
  }
  const metrics = await evaluateLogits((x) => classifier.logits(x), labelled(), data.classes.length);
  classifier.train();
  return metrics;
}

async function run(
  settings: FinetuneSettings,
  out: string,
  data: LabelledData,
  classifier: Classifier,
  optimizer: Optimizer,
  ema: WeightEma | undefined,
  source: string,
  resumed: CheckpointPosition | undefined,
  stopAfter: number,
): Promise<number> {
  const { batchSize, epochs } = settings;
  const trainCount = data.trainIndices.length;
  const stepsPerEpoch = Math.ceil(trainCount / batchSize);
  const schedule: LrWdSchedule = {
    peakLr: peakLearningRate(settings.baseLr, batchSize),
    weightDecay: settings.weightDecay,
    weightDecayEnd: settings.weightDecay, // the official fine-tuning keeps weight decay constant
    warmupIterations: Math.min(settings.warmupEpochs * stepsPerEpoch, epochs * stepsPerEpoch - 2),
    maxIterations: epochs * stepsPerEpoch,
  };
  if (schedule.maxIterations < 2)
    throw new UsageError(`finetune: ${epochs} epoch(s) of ${stepsPerEpoch} step(s) is fewer than the 2 steps a schedule needs (more --epochs)`);
  const startEpoch = resumed?.epochsDone ?? 0;
  let iteration = resumed?.iteration ?? 0;
  let best = resumed?.best ?? 0;
  process.stdout.write(
    `finetune: ${source}; ${data.classes.length} classes, ${trainCount} training and ${data.validationIndices.length} validation images; ` +
      `${settings.optimizer}, ${settings.loss}, peak lr ${schedule.peakLr.toExponential(2)}, lr decay ${settings.lrDecay}, ${epochs} epochs of ${stepsPerEpoch} steps` +
      `${startEpoch > 0 ? `, resuming after epoch ${startEpoch}` : ''}\n`,
  );
  classifier.train();
  let last: ClassificationMetrics | undefined;
  let lastEma: ClassificationMetrics | undefined;
  for (let epoch = startEpoch; epoch < epochs; epoch++) {
    const started = Date.now();
    // Order and augmentation depend only on (seed, epoch), so a resumed run sees what an uninterrupted one would.
    const random = seededRandom(settings.seed * 100003 + epoch + 1);
    const order = [...data.trainIndices];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    let lossSum = 0;
    for (let step = 0; step < stepsPerEpoch; step++) {
      // Fixed batch shapes: the last batch is filled from the start of the epoch's order (the official sampler's filling).
      const indices = Array.from({ length: batchSize }, (_, k) => order[(step * batchSize + k) % order.length]);
      const batch = data.train.batch(indices, { augment: random });
      try {
        const result = await classifierTrainStep(classifier, optimizer, batch.images, batch.labels, {
          lrWd: lrWdAt(schedule, iteration),
          labelSmoothing: settings.labelSmoothing,
          loss: settings.loss,
          iteration,
        });
        ema?.update(classifier.stateEntries());
        lossSum += result.loss;
        await appendMetrics(out, {
          type: 'step',
          epoch: epoch + 1,
          iteration,
          loss: result.loss,
          lr: result.lrWd.maxLr,
          gradNorm: result.globalGradNorm,
        });
      } finally {
        batch.images.dispose();
      }
      iteration++;
    }
    last = await evaluate(classifier, data, batchSize);
    lastEma = ema ? await ema.withAverage(classifier.stateEntries(), () => evaluate(classifier, data, batchSize)) : undefined;
    best = Math.max(best, last.top1, lastEma?.top1 ?? 0);
    const seconds = (Date.now() - started) / 1000;
    await appendMetrics(out, {
      type: 'epoch',
      epoch: epoch + 1,
      loss: lossSum / stepsPerEpoch,
      valTop1: last.top1,
      valTop5: last.top5,
      valLoss: last.loss,
      ...(lastEma ? { emaTop1: lastEma.top1, emaTop5: lastEma.top5 } : {}),
      seconds,
    });
    process.stdout.write(
      `epoch ${epoch + 1}/${epochs}  loss ${(lossSum / stepsPerEpoch).toFixed(4)}  val top-1 ${percent(last.top1)}  top-5 ${percent(last.top5)}` +
        `${lastEma ? `  ema top-1 ${percent(lastEma.top1)}` : ''}  ${seconds.toFixed(0)}s\n`,
    );
    await saveCheckpoint(out, classifier, optimizer, ema, { epochsDone: epoch + 1, iteration, best });
    if (epoch + 1 >= stopAfter && epoch + 1 < epochs) {
      process.stdout.write(`stopped after epoch ${epoch + 1} (--stop-after); continue with: sparkmim finetune --resume ${out}\n`);
      return 0;
    }
  }
  if (!last) last = await evaluate(classifier, data, batchSize);
  await writeFileAtomic(
    path.join(out, 'classifier.safetensors'),
    stateToSafetensors(await torchState(classifier), { classes: JSON.stringify(data.classes) }),
  );
  await appendMetrics(out, {
    type: 'summary',
    epochs,
    valTop1: last.top1,
    valTop5: last.top5,
    ...(lastEma ? { emaTop1: lastEma.top1, emaTop5: lastEma.top5 } : {}),
    bestTop1: best,
    classes: data.classes,
    confusion: last.confusion,
  });
  process.stdout.write(
    `done: val top-1 ${percent(last.top1)}, top-5 ${percent(last.top5)} (best top-1 ${percent(best)}); ${path.join(out, 'classifier.safetensors')}\n`,
  );
  return 0;
}

async function saveCheckpoint(
  out: string,
  classifier: Classifier,
  optimizer: Optimizer,
  ema: WeightEma | undefined,
  position: CheckpointPosition,
): Promise<void> {
  const folder = path.join(out, 'checkpoint');
  await mkdir(folder, { recursive: true });
  // Position last: a checkpoint without it (cut mid-write) is refused by --resume rather than half-loaded.
  await rm(path.join(folder, 'position.json'), { force: true });
  await writeFileAtomic(path.join(folder, 'model.safetensors'), stateToSafetensors(await torchState(classifier)));
  await writeFileAtomic(path.join(folder, 'optimizer.safetensors'), encodeSafetensors(await safetensorsEntriesFromTensors(optimizer.getState())));
  if (ema) await writeFileAtomic(path.join(folder, 'ema.safetensors'), encodeSafetensors(await safetensorsEntriesFromTensors(ema.state())));
  await writeFileAtomic(path.join(folder, 'position.json'), new TextEncoder().encode(`${JSON.stringify(position)}\n`));
}

async function restoreCheckpoint(out: string, classifier: Classifier, optimizer: Optimizer, ema: WeightEma | undefined): Promise<void> {
  const folder = path.join(out, 'checkpoint');
  try {
    const model = stateFromSafetensors(await readBytes('resume', path.join(folder, 'model.safetensors')), { source: 'checkpoint/model.safetensors' });
    loadTorchState(classifier, model, { strict: true, caller: 'finetune --resume' });
    const optimizerState = tensorsFromSafetensors(decodeSafetensors(await readBytes('resume', path.join(folder, 'optimizer.safetensors'))).tensors);
    try {
      await optimizer.setState(optimizerState);
    } finally {
      tf.dispose([...optimizerState.values()]);
    }
    if (ema) {
      const emaState = tensorsFromSafetensors(decodeSafetensors(await readBytes('resume', path.join(folder, 'ema.safetensors'))).tensors);
      try {
        ema.setState(emaState);
      } finally {
        tf.dispose([...emaState.values()]);
      }
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--resume: the checkpoint in ${folder} cannot be loaded: ${oneLine((error as Error).message)}`);
  }
}

// What `sparkmim features`, `probe` and `finetune` share: the labelled data (a folder with one subfolder per
// class, split by seed or given a validation folder), the classifier (from --weights, or a named
// architecture with random weights), progress lines and the metrics file. Problems the user can fix are
// one line and exit code 2 (UsageError), as in `pretrain`.
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createBackbone } from '@sparkmim/backbones';
import { Classifier, type WeightsFile } from '@sparkmim/trainer';
import { LabelledFolderError, LabelledImageFolder } from '@sparkmim/trainer/node';
import { UsageError } from '../errors';
import { oneLine } from './inputs';
import { readWeightsOption } from './weights';

/** Options every labelled command takes (parseArgs spec). */
export const LABELLED_OPTIONS = {
  data: { type: 'string' },
  val: { type: 'string' },
  'val-fraction': { type: 'string' },
  weights: { type: 'string' },
  model: { type: 'string' },
  depths: { type: 'string' },
  widths: { type: 'string' },
  'stem-width': { type: 'string' },
  'input-size': { type: 'string' },
  'batch-size': { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const LABELLED_HELP = `  --data FOLDER            labelled images: one subfolder per class (at least 2), images inside each
  --val FOLDER             validation images, same layout (default: a seeded split of --data)
  --val-fraction X         share of each class held out for validation when there is no --val (default 0.2)
  --weights FILE           encoder weights: a run's encoder.safetensors, a SparK checkpoint, an official .pth
  --model NAME             instead of --weights: random weights of this architecture (resnet18, ...), with
  --depths A,B,C,D --widths A,B,C,D --stem-width N   (ResNet shape, as in 'pretrain')
  --input-size N           image side, a multiple of 32 (default 96)
  --batch-size N           images per step (default 16)
  --seed N                 split, initialisation, order and augmentation (default 0)
  --backend NAME           cpu, wasm, webgpu, ... (default cpu)
`;

type Values = Partial<Record<keyof typeof LABELLED_OPTIONS, string | boolean>>;

/** A whole number option in [min, ∞), or its default. */
export function intOption(values: Record<string, unknown>, name: string, fallback: number, min = 1): number {
  const text = values[name];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(Number.isInteger(value) && value >= min)) throw new UsageError(`--${name}: expected a whole number >= ${min}, got '${String(text)}'`);
  return value;
}

/** A number option in [min, max], or its default. */
export function numberOption(values: Record<string, unknown>, name: string, fallback: number, min = 0, max = Infinity): number {
  const text = values[name];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(Number.isFinite(value) && value >= min && value <= max))
    throw new UsageError(`--${name}: expected a number in [${min}, ${max}], got '${String(text)}'`);
  return value;
}

function listOption(values: Values, name: 'depths' | 'widths'): number[] | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const list = String(text).split(',').map(Number);
  if (list.length !== 4 || !list.every((value) => Number.isInteger(value) && value >= 1)) {
    throw new UsageError(`--${name}: expected four whole numbers >= 1 such as 1,1,1,1, got '${String(text)}'`);
  }
  return list;
}

/** The labelled data: training and validation index lists into one or two folders. */
export interface LabelledData {
  train: LabelledImageFolder;
  trainIndices: number[];
  validation: LabelledImageFolder;
  validationIndices: number[];
  classes: readonly string[];
}

/** Opens --data (and --val), refusing in one line what cannot be used. */
export async function openLabelledData(values: Values, inputSize: number, seed: number): Promise<LabelledData> {
  if (typeof values.data !== 'string') throw new UsageError('--data FOLDER is required (a folder with one subfolder per class)');
  try {
    const train = await LabelledImageFolder.open(values.data, { inputSize });
    for (const skipped of train.skipped) process.stderr.write(`warning: skipped ${skipped.path}: ${skipped.reason}\n`);
    if (typeof values.val === 'string') {
      if (values['val-fraction'] !== undefined) throw new UsageError('--val and --val-fraction exclude each other');
      const validation = await LabelledImageFolder.open(values.val, { inputSize, classes: train.classes });
      return {
        train,
        trainIndices: train.files.map((_, i) => i),
        validation,
        validationIndices: validation.files.map((_, i) => i),
        classes: train.classes,
      };
    }
    const fraction = numberOption(values, 'val-fraction', 0.2, 0, 1);
    if (!(fraction > 0 && fraction < 1)) throw new UsageError(`--val-fraction: expected a number in (0, 1), got ${fraction}`);
    const { train: trainIndices, validation: validationIndices } = train.split(fraction, seed);
    if (validationIndices.length === 0) throw new UsageError(`--data: no class has 2 images, so nothing can be held out for validation (give --val)`);
    return { train, trainIndices, validation: train, validationIndices, classes: train.classes };
  } catch (error) {
    if (error instanceof LabelledFolderError)
      throw new UsageError(`--${error.folder === path.resolve(String(values.val ?? '')) ? 'val' : 'data'}: ${error.message}`);
    throw error;
  }
}

/** Builds the classifier: from --weights (architecture read off the weights), or --model with random weights. */
export async function buildClassifier(
  values: Values,
  numClasses: number,
  seed: number,
): Promise<{ classifier: Classifier; source: string; weights?: WeightsFile }> {
  if (typeof values.weights === 'string') {
    if (values.model !== undefined) throw new UsageError('--weights and --model exclude each other (the architecture is read off the weights)');
    const weights = await readWeightsOption('weights', values.weights);
    try {
      return { classifier: Classifier.fromWeights(weights, { numClasses, seed }), source: values.weights, weights };
    } catch (error) {
      throw new UsageError(`--weights: ${oneLine((error as Error).message)}`);
    }
  }
  if (typeof values.model !== 'string') throw new UsageError('give --weights FILE (pre-trained encoder) or --model NAME (random initialisation)');
  const depths = listOption(values, 'depths');
  const channels = listOption(values, 'widths');
  const stemWidth = values['stem-width'] === undefined ? undefined : intOption(values, 'stem-width', 64);
  let backbone: ReturnType<typeof createBackbone>;
  try {
    backbone = createBackbone(values.model, {
      seed,
      ...(depths ? { depths } : {}),
      ...(channels ? { channels } : {}),
      ...(stemWidth ? { stemWidth } : {}),
    });
  } catch (error) {
    throw new UsageError(`--model: ${oneLine((error as Error).message)}`);
  }
  return { classifier: new Classifier({ backbone, numClasses, seed }), source: `${values.model} (random initialisation, seed ${seed})` };
}

/** Pooled features `[N, C]` of these images, in eval mode, batch by batch. */
export async function extractFeatures(
  classifier: Classifier,
  folder: LabelledImageFolder,
  indices: readonly number[],
  batchSize: number,
): Promise<Float32Array> {
  classifier.eval();
  const size = classifier.featureSize;
  const out = new Float32Array(indices.length * size);
  for (let start = 0; start < indices.length; start += batchSize) {
    const { images } = folder.batch(indices.slice(start, start + batchSize));
    const features = classifier.features(images);
    out.set(await features.data(), start * size);
    tf.dispose([images, features]);
  }
  return out;
}

/** A run folder: refused when it holds a run already, unless resuming or overwriting. */
export async function prepareRunFolder(out: string, { resume = false, overwrite = false } = {}): Promise<void> {
  const existing = await stat(path.join(out, 'metrics.jsonl')).catch(() => undefined);
  if (existing && !resume && !overwrite)
    throw new UsageError(`--out: ${out} holds a run already (resume it with --resume ${out}, or pass --overwrite)`);
  await mkdir(out, { recursive: true });
  if (existing && overwrite && !resume) await import('node:fs/promises').then((fs) => fs.rm(path.join(out, 'metrics.jsonl'), { force: true }));
}

/** Appends one JSON line to the run's metrics file. */
export async function appendMetrics(out: string, record: Record<string, unknown>): Promise<void> {
  await appendFile(path.join(out, 'metrics.jsonl'), `${JSON.stringify(record)}\n`);
}

/** Reads a JSON file the run wrote, with a one-line error when it is broken. */
export async function readJson<T>(file: string, what: string): Promise<T> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    throw new UsageError(`${what}: cannot read ${file}: ${oneLine((error as Error).message)}`);
  }
}

/** `12.5%` */
export function percent(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

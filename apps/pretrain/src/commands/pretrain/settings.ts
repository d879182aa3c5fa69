// The settings of one `sparkmim pretrain` invocation: flags, the config file and a resumed run's saved
// settings, resolved and checked before anything is set up (no backend, no folder created), so that every
// mistake is one line and costs nothing.
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { BACKBONE_NAMES } from '@sparkmim/backbones';
import { BACKEND_NAMES } from '@sparkmim/runtime';
import { CHECKPOINT_MANIFEST, readCheckpointManifest, type CheckpointManifest } from '@sparkmim/trainer/node';
import { UsageError } from '../../errors';
import { oneLine } from '../inputs';
import { isModulePath } from '../pretrain-model';
import { CONFIG_FLAG_OPTIONS, CONFIG_KEYS, flagValues, readConfigFile, resolveConfig, type PretrainConfig } from '../pretrain-config';
import { pathFromRun } from './run-folder';

/** A run being continued: its folder (the one written) and its manifest. */
export interface ResumedRun {
  dir: string;
  manifest: CheckpointManifest;
}

export interface PretrainSettings {
  config: PretrainConfig;
  /** The run folder: the resumed one, --out, or runs/<model>-<date>-<time>. */
  out: string;
  resumed?: ResumedRun;
  /** --overwrite: a new run may replace the run in `out`. */
  overwrite: boolean;
  /** --verbose: show what backend probing printed. */
  verbose: boolean;
}

/**
 * Bounds beyond which a value is a typo rather than a plan (SparK: 1600 epochs, batches of 4096 over many
 * GPUs, 224-pixel images). The batch limit is on its bytes: the images of one batch as float32.
 */
export const LIMITS = { epochs: 100_000, inputSide: 8192, batchImageBytes: 4 * 1024 ** 3 } as const;

/** What a resumed run starts from: its folder (or its checkpoint.json) and manifest. */
async function resumedRunOf(resume: string): Promise<ResumedRun> {
  let dir = resume;
  try {
    if (!(await stat(resume)).isDirectory()) dir = path.dirname(resume);
  } catch {
    throw new UsageError(`--resume: ${resume} does not exist (expected a run folder or its ${CHECKPOINT_MANIFEST})`);
  }
  try {
    return { dir, manifest: await readCheckpointManifest(dir) };
  } catch (error) {
    throw new UsageError(`--resume: ${oneLine((error as Error).message)}`);
  }
}

function defaultRunFolder(model: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return path.join('runs', `${model}-${stamp}`);
}

/** Height and width of `inputSize`: N (N x N) or 'WxH' (width x height). */
export function inputSides(inputSize: unknown): [number, number] {
  if (typeof inputSize === 'string') {
    const [width, height] = inputSize.split('x').map(Number);
    return [height, width ?? height];
  }
  if (typeof inputSize === 'object' && inputSize !== null) {
    const { height, width } = inputSize as { height?: number; width?: number };
    return [Number(height), Number(width)];
  }
  return [Number(inputSize), Number(inputSize)];
}

const REGISTRY_DOWNSAMPLE_RATIO = 32;

function checkLimits(config: PretrainConfig): void {
  // A path (to a module exporting a custom backbone) is checked when it is loaded.
  const isPath = isModulePath(config.model);
  if (!isPath && !(BACKBONE_NAMES as readonly string[]).includes(config.model)) {
    throw new UsageError(`--model: unknown model '${config.model}': expected one of ${BACKBONE_NAMES.join(', ')}`);
  }
  if (config.backend !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(config.backend)) {
    throw new UsageError(
      `--backend: unknown backend '${config.backend}': expected one of ${BACKEND_NAMES.join(', ')} (or leave it out: the fastest available)`,
    );
  }
  if (config.epochs > LIMITS.epochs) throw new UsageError(`--epochs is ${config.epochs}, expected at most ${LIMITS.epochs} (SparK runs 1600)`);
  const [height, width] = inputSides(config.inputSize);
  if (Math.max(height, width) > LIMITS.inputSide) {
    throw new UsageError(`--input-size is ${config.inputSize}, expected sides of at most ${LIMITS.inputSide} pixels (SparK uses 224)`);
  }
  // Every model of the registry downsamples by 32 (ResNet and ConvNeXt alike): a size that does not divide
  // is refused before any backend or model is set up (custom models are checked once built).
  if (!isPath && typeof config.inputSize === 'number' && config.inputSize % REGISTRY_DOWNSAMPLE_RATIO !== 0) {
    const ratio = REGISTRY_DOWNSAMPLE_RATIO;
    const lower = Math.floor(config.inputSize / ratio) * ratio;
    const suggestion = lower > 0 ? `${lower} or ${lower + ratio}` : `${ratio}`;
    throw new UsageError(
      `--input-size is ${config.inputSize}, which is not a multiple of ${config.model}'s downsample ratio ${ratio} (use ${suggestion})`,
    );
  }
  const batchBytes = config.batchSize * height * width * 3 * 4;
  if (batchBytes > LIMITS.batchImageBytes) {
    throw new UsageError(
      `--batch-size ${config.batchSize} of ${height}x${width} images is ${(batchBytes / 1024 ** 3).toPrecision(3)} GiB of input alone, ` +
        `more than the ${LIMITS.batchImageBytes / 1024 ** 3} GiB one batch may take: use a smaller --batch-size (SparK: 64 per GPU at 224)`,
    );
  }
}

/**
 * Reads the flags, the config file and the resumed run into settings, every value checked. Returns
 * undefined for --help (after printing `help`). Writes nothing and sets no backend up.
 */
export async function readSettings(argv: string[], help: string): Promise<PretrainSettings | undefined> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        ...CONFIG_FLAG_OPTIONS,
        config: { type: 'string' },
        resume: { type: 'string' },
        overwrite: { type: 'boolean' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    throw new UsageError(`pretrain: ${oneLine((error as Error).message)} (run 'sparkmim pretrain --help')`);
  }
  if (values.help) {
    process.stdout.write(help);
    return undefined;
  }

  // Settings: defaults < a resumed run's < the config file's < the flags.
  const layers: Parameters<typeof resolveConfig>[0] = [];
  let resumed: ResumedRun | undefined;
  if (typeof values.resume === 'string') {
    if (values['init-weights'] !== undefined)
      throw new UsageError('--resume and --init-weights exclude each other: a resumed run has its weights already');
    if (values.overwrite)
      throw new UsageError('--resume and --overwrite exclude each other: a resumed run continues its folder, --overwrite starts a new one');
    resumed = await resumedRunOf(values.resume);
    const saved: Record<string, unknown> = Object.fromEntries(
      Object.entries(resumed.manifest.config).filter(([key]) => (CONFIG_KEYS as string[]).includes(key)),
    );
    // The resumed run's weights come from its checkpoint, not from the file it was initialised with; its
    // folder is the one resumed, wherever it was first written.
    delete saved.initWeights;
    delete saved.out;
    // Paths saved with a run are relative to its folder.
    if (typeof saved.data === 'string') saved.data = pathFromRun(saved.data, resumed.dir);
    layers.push({ values: saved, from: path.join(resumed.dir, CHECKPOINT_MANIFEST) });
  }
  if (typeof values.config === 'string') layers.push({ values: readConfigFile(values.config), from: values.config });
  layers.push({ values: flagValues(values), from: 'flag' });
  const config = resolveConfig(layers);
  if (config.data === undefined) throw new UsageError("pretrain needs --data FOLDER, a folder of images (run 'sparkmim pretrain --help')");
  checkLimits(config);

  let out: string;
  if (resumed) {
    // The folder resumed is the folder written: never the `out` it was first run with.
    if (typeof values.out === 'string' && path.resolve(values.out) !== path.resolve(resumed.dir)) {
      throw new UsageError(
        `--resume ${values.resume} continues in its own folder ${resumed.dir}, so --out ${values.out} cannot name another: copy the run folder there and resume the copy`,
      );
    }
    out = resumed.dir;
  } else {
    out = config.out ?? defaultRunFolder(config.model);
  }
  config.out = out;
  return { config, out, resumed, overwrite: values.overwrite === true, verbose: values.verbose === true };
}

// The parts of a run that are set up from its settings before training: the data (opened and checked first),
// the schedule, the resumed position checked against the data, the starting weights, and the settings as
// saved with the run.
import { ImageFolderError, ImageFolderSource, initFromWeights, resumeFromCheckpoint, type CheckpointManifest } from '@sparkmim/trainer/node';
import { sparkSchedule, type Optimizer, type SparkModel } from '@sparkmim/trainer';
import { UsageError } from '../../errors';
import { oneLine } from '../inputs';
import { CONFIG_KEYS, inputSizeOf, warmupEpochsOf, type PretrainConfig } from '../pretrain-config';
import { savedPath } from './run-folder';
import type { PretrainSettings, ResumedRun } from './settings';

/** The image folder of a run, opened; files skipped meanwhile are held until {@link OpenedData.showHeldWarnings}. */
export interface OpenedData {
  source: ImageFolderSource;
  /** Files skipped so far (also while training). */
  skippedCount(): number;
  /** Prints the warnings held while the folder was opened; later ones go out at once through `warn`. */
  showHeldWarnings(): void;
}

/**
 * Opens the data folder. Files skipped while it opens are reported only once the run is sure to start: when
 * none decodes, the error alone (one line) says so.
 */
export async function openData(config: PretrainConfig, warn: (line: string) => void): Promise<OpenedData> {
  let skipped = 0;
  let held: string[] | undefined = [];
  let source: ImageFolderSource;
  try {
    source = await ImageFolderSource.open(config.data!, {
      inputSize: inputSizeOf(config),
      onSkip: (file) => {
        skipped++;
        const line = `sparkmim: skipped ${file.path}: ${oneLine(file.reason)}\n`;
        if (held) held.push(line);
        else warn(line);
      },
    });
  } catch (error) {
    if (error instanceof ImageFolderError) throw new UsageError(`--data: ${oneLine(error.message)}`);
    throw error;
  }
  return {
    source,
    skippedCount: () => skipped,
    showHeldWarnings: () => {
      held?.forEach(warn);
      held = undefined;
    },
  };
}

/** A resumed run's position must fit this data: a folder that gained or lost images has other epochs. */
export function checkResumePosition(resumed: ResumedRun, iterationsPerEpoch: number, imageCount: number, config: PretrainConfig): void {
  const { epoch, iterationInEpoch, iteration } = resumed.manifest.progress;
  if (iteration !== epoch * iterationsPerEpoch + iterationInEpoch || iterationInEpoch >= iterationsPerEpoch) {
    throw new UsageError(
      `--resume: ${resumed.dir} stopped at epoch ${epoch + 1}, batch ${iterationInEpoch + 1} (iteration ${iteration}), which does not fit ` +
        `${iterationsPerEpoch} batches per epoch (${imageCount} images in ${config.data}, batches of ${config.batchSize}): ` +
        'the data folder or --batch-size changed since the run was saved',
    );
  }
}

/** SparK's lr / weight-decay schedule of the run, or a usage error naming the warm-up. */
export function runSchedule(
  config: PretrainConfig,
  iterationsPerEpoch: number,
): { schedule: ReturnType<typeof sparkSchedule>; warmupEpochs: number } {
  const warmupEpochs = warmupEpochsOf(config);
  try {
    const schedule = sparkSchedule({
      batchSize: config.batchSize,
      iterationsPerEpoch,
      epochs: config.epochs,
      warmupEpochs,
      baseLr: config.baseLr,
      weightDecay: config.weightDecay,
      weightDecayEnd: config.weightDecayEnd,
    });
    return { schedule, warmupEpochs };
  } catch (error) {
    throw new UsageError(`--warmup-epochs ${warmupEpochs} with --epochs ${config.epochs}: ${oneLine((error as Error).message)}`);
  }
}

/** Loads what the run starts from: the resumed checkpoint (returned), or --init-weights, or nothing. */
export async function startingWeights(settings: PretrainSettings, model: SparkModel, optimizer: Optimizer): Promise<CheckpointManifest | undefined> {
  const { resumed, config } = settings;
  if (resumed) {
    try {
      return await resumeFromCheckpoint(resumed.dir, { model, optimizer });
    } catch (error) {
      throw new UsageError(`--resume: ${resumed.dir} does not fit the settings (${oneLine((error as Error).message)})`);
    }
  }
  if (config.initWeights !== undefined) {
    try {
      await initFromWeights(model, config.initWeights);
    } catch (error) {
      throw new UsageError(`--init-weights: ${oneLine((error as Error).message)}`);
    }
  }
  return undefined;
}

/**
 * The settings as saved with the run (config.json and every checkpoint): paths relative to the run folder
 * `out`, so that a run can be moved or resumed from anywhere, and not the folder itself (the folder resumed
 * is the folder written).
 */
export function savedSettings(config: PretrainConfig, out: string): Record<string, unknown> {
  const saved: Record<string, unknown> = JSON.parse(JSON.stringify(config, CONFIG_KEYS));
  delete saved.out;
  for (const key of ['data', 'initWeights']) if (typeof saved[key] === 'string') saved[key] = savedPath(saved[key] as string, out);
  return saved;
}

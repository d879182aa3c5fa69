import * as tf from '@tensorflow/tfjs-core';
import { batchesPerEpoch as countBatches } from '../data/source';
import type { DataSource, SkippedFile } from '../data/source';
import type { Optimizer } from '../optim/optimizer';
import { lrWdAt } from '../optim/schedule';
import type { LrWd, LrWdSchedule } from '../optim/schedule';
import { NonFiniteStateError, saveCheckpoint } from './checkpoint';
import type { CheckpointManifest, RandomState, TrainingProgress } from './checkpoint';
import { JsonlWriter } from './metrics';
import type { EpochMetrics, RunSummaryMetrics, StepMetrics } from './metrics';
import { SeededRandom } from '@sparkmim/sparse-ops';
import { deriveSeeds } from './random';
import { NonFiniteLossError, trainStep } from './step';
import type { TrainableModel } from './trainable';

/** How the learning rate and weight decay of each iteration are chosen. */
export type LrWdSource = LrWdSchedule | ((iteration: number) => LrWd);

export interface TrainOptions {
  model: TrainableModel;
  optimizer: Optimizer;
  /**
   * The images: `epochBatches(epoch, { batchSize, seed, dropLast, startBatch })` of an {@link ImageFolderSource}
   * or {@link InMemorySource} (any {@link DataSource}). Its seed is `deriveSeeds(seed).data`.
   */
  data: DataSource;
  /** Images per batch. */
  batchSize: number;
  /** Drop the images that do not fill a last batch (default false: the last batch is filled up, as SparK does). */
  dropLast?: boolean;
  /** Epochs in the whole run (a resumed run continues up to this). */
  epochs: number;
  /**
   * lr and weight decay per global iteration, set before each forward pass: a schedule (`sparkSchedule`,
   * evaluated with `lrWdAt`) or a function. Default: the optimiser groups' current values throughout.
   */
  schedule?: LrWdSource;
  /**
   * The run seed: masks are drawn from `deriveSeeds(seed).mask`, the data source's order and augmentation
   * from `.data` (the model's initialisation should take `.init`). Default: a random seed, recorded in
   * checkpoints.
   */
  seed?: number;
  /** Where a resumed run starts: the manifest {@link resumeFromCheckpoint} returned. Default: epoch 0. */
  resume?: Pick<CheckpointManifest, 'progress' | 'random'>;
  /** Folder of the full checkpoint, rewritten at the end of every epoch and when stopped (Node only). */
  checkpointDir?: string;
  /** Also save every this many iterations, mid-epoch. Default: only at epoch ends. */
  checkpointEveryIterations?: number;
  /** Write `encoder.safetensors` with each checkpoint. Default true. */
  saveEncoder?: boolean;
  /** Settings saved in each checkpoint's manifest (JSON). */
  config?: Record<string, unknown>;
  /** Append each step's and epoch's metrics to this JSON-lines file (Node only). */
  metricsFile?: string;
  onStep?: (metrics: StepMetrics) => void | Promise<void>;
  onEpochEnd?: (metrics: EpochMetrics) => void | Promise<void>;
  /** Aborting it has the effect of {@link Trainer.stop} (also when aborted before the run starts). */
  signal?: AbortSignal;
}

export interface TrainResult {
  /** Where the run stands now (what a resume would continue from). */
  progress: TrainingProgress;
  /** True when stopped early (stop() or the signal), false when all epochs ran. */
  stopped: boolean;
  /** Steps run by this call. */
  steps: number;
  /** Loss of the last step run, if any. */
  lastLoss?: number;
  /** The last checkpoint saved by this call. */
  checkpoint?: CheckpointManifest;
  /**
   * The files the data source skipped (`data.skipped` at the end of the run: corrupt, not an image, empty,
   * unreadable), path and reason each; `skipped.length` is the count. Absent when the source does not
   * report skips ({@link DataSource} `skipped` is optional). Also the last line of `metricsFile`,
   * `{"type":"summary", "skippedCount", "skipped", ...}`.
   */
  skipped?: SkippedFile[];
}

function checkWholeNumber(value: number, label: string, minimum: number): void {
  if (!(Number.isInteger(value) && value >= minimum)) throw new Error(`train: ${label} is ${value}, expected a whole number >= ${minimum}`);
}

/**
 * SparK's pre-training loop (`main.py`): epochs of batches; each iteration sets lr and weight decay from
 * the schedule, runs the forward pass in training mode, the backward pass and the optimiser step (see
 * {@link trainStep}); after every epoch a full checkpoint. Metrics go to `onStep` / `onEpochEnd` and to a
 * JSON-lines file. A NaN or infinite loss, or parameters left non-finite by an update (checked before every
 * checkpoint), stop the run with a {@link NonFiniteLossError} naming the step and saying which checkpoint
 * the folder still holds: nothing diverged is ever saved over the last good checkpoint. `stop()` (or aborting `signal`) lets the
 * current step finish, saves a checkpoint and returns. The result (and a last `summary` line of the metrics
 * file) lists the files the data source skipped, when it reports them (`TrainResult.skipped`).
 *
 * @example
 * const trainer = new Trainer({ model, optimizer, data: source, batchSize: 32, epochs: 1600, schedule, seed: 0, checkpointDir: 'runs/r50', metricsFile: 'runs/r50/metrics.jsonl' });
 * process.once('SIGINT', () => trainer.stop());
 * const { progress, stopped } = await trainer.run();
 */
export class Trainer {
  /** Batches in each epoch (the schedule's iterations per epoch). */
  readonly batchesPerEpoch: number;
  private stopRequested = false;
  private running = false;

  constructor(readonly options: TrainOptions) {
    const { epochs, data, checkpointEveryIterations } = options;
    checkWholeNumber(epochs, 'epochs', 1);
    if (!data || typeof data.epochBatches !== 'function')
      throw new Error('train: data must be a DataSource (ImageFolderSource, InMemorySource, ...)');
    checkWholeNumber(options.batchSize, 'batchSize', 1);
    this.batchesPerEpoch = countBatches(data.size, { batchSize: options.batchSize, dropLast: options.dropLast });
    if (this.batchesPerEpoch === 0) throw new Error(`train: ${data.size} images make no batch of ${options.batchSize} with dropLast`);
    const batchesPerEpoch = this.batchesPerEpoch;
    if (checkpointEveryIterations !== undefined) checkWholeNumber(checkpointEveryIterations, 'checkpointEveryIterations', 1);
    if (options.seed !== undefined && !Number.isSafeInteger(options.seed)) throw new Error(`train: seed must be an integer, got ${options.seed}`);
    const schedule = options.schedule;
    if (schedule && typeof schedule !== 'function' && schedule.maxIterations < epochs * batchesPerEpoch) {
      throw new Error(
        `train: the schedule covers ${schedule.maxIterations} iterations, but ${epochs} epochs of ${batchesPerEpoch} batches need ${epochs * batchesPerEpoch}`,
      );
    }
    if (options.signal?.aborted) this.stop();
    else options.signal?.addEventListener('abort', () => this.stop(), { once: true });
  }

  /**
   * Asks the run to stop after the current step; it then saves a checkpoint (when `checkpointDir` is set and
   * a step ran since the last one) and `run()` resolves with `stopped: true`.
   *
   * @example
   * process.once('SIGINT', () => trainer.stop());
   */
  stop(): void {
    this.stopRequested = true;
  }

  /**
   * Runs (or continues, with `resume`) training; see {@link Trainer}.
   *
   * @example
   * const { progress, stopped, lastLoss } = await trainer.run();
   */
  async run(): Promise<TrainResult> {
    if (this.running) throw new Error('Trainer.run: already running');
    this.running = true;
    const { options } = this;
    const { model, optimizer, data, epochs, resume } = options;
    const { batchesPerEpoch } = this;
    const progress: TrainingProgress = resume ? { ...resume.progress } : { epoch: 0, iterationInEpoch: 0, iteration: 0 };
    if (progress.iteration !== progress.epoch * batchesPerEpoch + progress.iterationInEpoch || progress.iterationInEpoch >= batchesPerEpoch) {
      throw new Error(
        `train: cannot resume at epoch ${progress.epoch}, batch ${progress.iterationInEpoch}, iteration ${progress.iteration} with ${batchesPerEpoch} batches per epoch ` +
          '(the data source has another size than the run that saved the checkpoint)',
      );
    }
    const seed = resume?.random.seed ?? options.seed ?? Math.floor(Math.random() * 2 ** 32);
    const seeds = deriveSeeds(seed);
    const maskRandom = new SeededRandom(seeds.mask);
    if (resume) maskRandom.state = resume.random.mask;
    const randomState = (): RandomState => {
      const modelState = model.randomState?.();
      return { seed, mask: maskRandom.state, ...(modelState === undefined ? {} : { model: modelState }) };
    };
    const lrWdOf = (iteration: number): LrWd | undefined => {
      const { schedule } = options;
      if (!schedule) return undefined;
      return typeof schedule === 'function' ? schedule(iteration) : lrWdAt(schedule, iteration);
    };
    const writer = options.metricsFile ? new JsonlWriter(options.metricsFile) : undefined;
    const result: TrainResult = { progress, stopped: false, steps: 0 };
    const runStart = performance.now();
    let savedAt = progress.iteration;
    // The iteration of the checkpoint in checkpointDir: the resumed one, then each one saved here.
    let checkpointAt = resume && options.checkpointDir ? progress.iteration : undefined;
    // What a stop on non-finite values leaves, in words: the messages say exactly what was and was not saved.
    const savedState = (): string => {
      if (!options.checkpointDir) return 'nothing was saved (no checkpoint folder was given)';
      if (checkpointAt === undefined) return `nothing was saved: ${options.checkpointDir} holds no checkpoint of this run yet`;
      return `nothing after iteration ${checkpointAt} was saved: ${options.checkpointDir} still holds the checkpoint of iteration ${checkpointAt}`;
    };
    let minLastLoss = Infinity;
    const save = async (): Promise<void> => {
      if (options.checkpointDir) {
        try {
          result.checkpoint = await saveCheckpoint(options.checkpointDir, {
            model,
            optimizer,
            progress: { ...progress },
            random: randomState(),
            config: options.config,
            metrics:
              result.lastLoss === undefined ? undefined : { lastLoss: result.lastLoss, ...(Number.isFinite(minLastLoss) ? { minLastLoss } : {}) },
            encoder: options.saveEncoder ?? true,
          });
        } catch (error) {
          if (!(error instanceof NonFiniteStateError)) throw error;
          // The loss was finite but the update that followed it was not: the weights diverged in the last step.
          throw new NonFiniteLossError(
            `train: stopped after iteration ${progress.iteration - 1}: its loss was ${result.lastLoss} but the update left '${error.entry}' with NaN or ` +
              `infinite values; the checkpoint of iteration ${progress.iteration} was not written and ${savedState()}; lower the learning rate or check the data`,
            NaN,
            progress.iteration - 1,
          );
        }
        checkpointAt = progress.iteration;
      }
      savedAt = progress.iteration;
    };

    try {
      model.train(true);
      while (progress.epoch < epochs && !this.stopRequested) {
        const epochStart = performance.now();
        let epochLossSum = 0;
        let epochSteps = 0;
        let epochImages = 0;
        const iterator = data
          .epochBatches(progress.epoch, {
            batchSize: options.batchSize,
            seed: seeds.data,
            dropLast: options.dropLast,
            startBatch: progress.iterationInEpoch,
          })
          [Symbol.asyncIterator]();
        // The next batch is asked for before the step runs, so that its decoding (sharp's threads, file
        // reads) and, on a GPU backend, its preparation overlap the step; `pending` is that request.
        let pending: ReturnType<typeof iterator.next> | undefined;
        try {
          while (progress.iterationInEpoch < batchesPerEpoch && !this.stopRequested) {
            const stepStart = performance.now();
            const next = await (pending ?? iterator.next());
            pending = undefined;
            if (next.done) {
              throw new Error(
                `train: the data source ended epoch ${progress.epoch} after ${progress.iterationInEpoch} batches, expected ${batchesPerEpoch} (${data.size} images in batches of ${options.batchSize})`,
              );
            }
            const { images, batchIndex } = next.value;
            if (batchIndex !== progress.iterationInEpoch) {
              images.dispose();
              throw new Error(
                `train: the data source gave batch ${batchIndex} of epoch ${progress.epoch}, expected batch ${progress.iterationInEpoch}`,
              );
            }
            const dataSeconds = (performance.now() - stepStart) / 1000;
            if (progress.iterationInEpoch + 1 < batchesPerEpoch) {
              pending = iterator.next();
              // Its failure is reported when the loop awaits it; until then it must not count as unhandled.
              pending.catch(() => undefined);
            }
            let step: Awaited<ReturnType<typeof trainStep>>;
            try {
              step = await trainStep(model, optimizer, images, {
                lrWd: lrWdOf(progress.iteration),
                random: maskRandom.next,
                iteration: progress.iteration,
              });
            } catch (error) {
              if (error instanceof NonFiniteLossError) {
                throw new NonFiniteLossError(
                  `train: stopped at iteration ${progress.iteration} (epoch ${progress.epoch}, batch ${progress.iterationInEpoch}): the loss is ${error.loss}; ` +
                    `${savedState()}; lower the learning rate or check the data`,
                  error.loss,
                  progress.iteration,
                );
              }
              throw error;
            } finally {
              images.dispose();
            }
            const seconds = (performance.now() - stepStart) / 1000;
            const batchSize = images.shape[0];
            const memory = tf.memory();
            const metrics: StepMetrics = {
              type: 'step',
              epoch: progress.epoch,
              iterationInEpoch: progress.iterationInEpoch,
              iteration: progress.iteration,
              loss: step.loss,
              lr: step.lrWd.maxLr,
              minLr: step.lrWd.minLr,
              weightDecay: step.lrWd.maxWeightDecay,
              minWeightDecay: step.lrWd.minWeightDecay,
              gradNorm: step.globalGradNorm,
              batchSize,
              imagesPerSecond: batchSize / seconds,
              seconds,
              dataSeconds,
              numTensors: memory.numTensors,
              numBytes: memory.numBytes,
            };
            progress.iteration++;
            progress.iterationInEpoch++;
            result.steps++;
            result.lastLoss = step.loss;
            epochLossSum += step.loss;
            epochSteps++;
            epochImages += batchSize;
            await writer?.write(metrics);
            await options.onStep?.(metrics);
            const every = options.checkpointEveryIterations;
            const epochDone = progress.iterationInEpoch === batchesPerEpoch;
            if (!epochDone && !this.stopRequested && every !== undefined && progress.iteration % every === 0) await save();
          }
        } finally {
          // A batch asked for but not trained on (a stop, an error) is disposed.
          if (pending) {
            const unused = await pending.catch(() => undefined);
            if (unused && !unused.done) unused.value.images.dispose();
          }
          await iterator.return?.();
        }
        if (progress.iterationInEpoch < batchesPerEpoch) break; // stopped mid-epoch
        const finishedEpoch = progress.epoch;
        progress.epoch++;
        progress.iterationInEpoch = 0;
        if (epochSteps > 0) minLastLoss = Math.min(minLastLoss, result.lastLoss!);
        await save();
        const seconds = (performance.now() - epochStart) / 1000;
        const epochMetrics: EpochMetrics = {
          type: 'epoch',
          epoch: finishedEpoch,
          steps: epochSteps,
          meanLoss: epochSteps > 0 ? epochLossSum / epochSteps : NaN,
          lastLoss: result.lastLoss ?? NaN,
          minLastLoss,
          seconds,
          imagesPerSecond: epochImages / seconds,
        };
        await writer?.write(epochMetrics);
        await options.onEpochEnd?.(epochMetrics);
      }
      if (progress.epoch < epochs) {
        result.stopped = true;
        if (progress.iteration !== savedAt) await save();
      }
      if (data.skipped) result.skipped = data.skipped.map(({ path, reason }) => ({ path, reason }));
      const summary: RunSummaryMetrics = {
        type: 'summary',
        stopped: result.stopped,
        steps: result.steps,
        epoch: progress.epoch,
        iteration: progress.iteration,
        ...(result.lastLoss === undefined ? {} : { lastLoss: result.lastLoss }),
        seconds: (performance.now() - runStart) / 1000,
        ...(result.skipped ? { skippedCount: result.skipped.length, skipped: result.skipped } : {}),
      };
      await writer?.write(summary);
      return result;
    } finally {
      await writer?.close();
      this.running = false;
    }
  }
}

/**
 * Runs {@link Trainer} to the end (or until `signal` aborts): `new Trainer(options).run()`.
 *
 * @example
 * const controller = new AbortController();
 * process.once('SIGINT', () => controller.abort());
 * await train({ model, optimizer, data: source, batchSize: 8, epochs: 10, schedule, seed: 0, checkpointDir: 'runs/tiny', signal: controller.signal });
 */
export function train(options: TrainOptions): Promise<TrainResult> {
  return new Trainer(options).run();
}

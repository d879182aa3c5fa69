// What the training loop reports, one record per step, per epoch and per run (to callbacks and, one JSON
// object a line, to the metrics file). Types only, so the main entry can export them without Node.
import type { SkippedFile } from '../data/source';

/** What the loop reports after every step (to `onStep` and, one JSON object a line, to the metrics file). */
export interface StepMetrics {
  type: 'step';
  /** Epoch of this step (0-based). */
  epoch: number;
  /** Index of the batch within its epoch (0-based). */
  iterationInEpoch: number;
  /** Global iteration (0-based), the schedule's `iteration`. */
  iteration: number;
  /** Loss of the batch, before this step's update. */
  loss: number;
  /** Learning rate of this step (largest over the groups) and the smallest. */
  lr: number;
  minLr: number;
  /** Weight decay of this step (largest over the groups: the `decay` group) and the smallest. */
  weightDecay: number;
  minWeightDecay: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  batchSize: number;
  /** Batch size / seconds of this step (data wait included). */
  imagesPerSecond: number;
  /** Wall seconds of this step, of which `dataSeconds` waiting for the batch (asked for while the previous step ran, so only what was left). */
  seconds: number;
  dataSeconds: number;
  /** `tf.memory()` after the step: live tensors and their bytes. */
  numTensors: number;
  numBytes: number;
}

/** What the loop reports at the end of each epoch. */
export interface EpochMetrics {
  type: 'epoch';
  epoch: number;
  /** Steps run in this epoch by this run (fewer than an epoch's batches when it resumed mid-epoch). */
  steps: number;
  meanLoss: number;
  lastLoss: number;
  /** Smallest last-loss of any epoch so far in this run (the official `min_loss`). */
  minLastLoss: number;
  seconds: number;
  imagesPerSecond: number;
}

/**
 * What the loop writes last to the metrics file when a run ends (all epochs done or stopped; not after an
 * error): the {@link TrainResult} of the run, with the files the data source skipped.
 */
export interface RunSummaryMetrics {
  type: 'summary';
  /** True when stopped early. */
  stopped: boolean;
  /** Steps run by this call; `epoch` and `iteration`: where the run stands now. */
  steps: number;
  epoch: number;
  iteration: number;
  /** Loss of the last step run (absent if none ran). */
  lastLoss?: number;
  /** Wall seconds of this call. */
  seconds: number;
  /** How many files the data source skipped, and which, with why (absent when the source does not report skips). */
  skippedCount?: number;
  skipped?: SkippedFile[];
}

import type { ParamGroup } from './optimizer';

/** SparK's per-iteration learning-rate and weight-decay schedule (`utils/lr_control.py`, `lr_wd_annealing`). */
export interface LrWdSchedule {
  /** Learning rate at the end of warm-up (see {@link peakLearningRate}). */
  peakLr: number;
  /** Weight decay at iteration 0. */
  weightDecay: number;
  /** Weight decay at the last iteration. */
  weightDecayEnd: number;
  /** Warm-up length in iterations (warm-up epochs × iterations per epoch); rounded half to even as Python's round. */
  warmupIterations: number;
  /** Total iterations (epochs × iterations per epoch); iterations run 0 .. maxIterations - 1. */
  maxIterations: number;
}

/** Learning rate and weight decay of one iteration. */
export interface LrWd {
  lr: number;
  weightDecay: number;
}

/** Python's round(): to the nearest integer, halves to even. */
function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * SparK's peak learning rate: `base_lr × global batch size / 256` (the linear scaling rule; base 2e-4).
 *
 * @example
 * peakLearningRate(2e-4, 4096); // 0.0032
 */
export function peakLearningRate(baseLr: number, globalBatchSize: number): number {
  if (!(baseLr > 0)) throw new Error(`peakLearningRate: baseLr is ${baseLr}, expected a number > 0`);
  if (!(Number.isInteger(globalBatchSize) && globalBatchSize > 0)) {
    throw new Error(`peakLearningRate: globalBatchSize is ${globalBatchSize}, expected a whole number > 0`);
  }
  return (baseLr * globalBatchSize) / 256;
}

export interface SparkScheduleOptions {
  /** Global batch size (all devices). */
  batchSize: number;
  /** Iterations per epoch (batches the loader yields per epoch). */
  iterationsPerEpoch: number;
  /** Default 1600. */
  epochs?: number;
  /** Default 40. */
  warmupEpochs?: number;
  /** Default 2e-4. */
  baseLr?: number;
  /** Default 0.04. */
  weightDecay?: number;
  /** Default 0.2. */
  weightDecayEnd?: number;
}

/**
 * The schedule of SparK's `main.py` from its arguments (defaults of `utils/arg_util.py`: base lr 2e-4,
 * 1600 epochs with 40 of warm-up, weight decay 0.04 → 0.2).
 *
 * @example
 * const schedule = sparkSchedule({ batchSize: 4096, iterationsPerEpoch: 312 });
 * // { peakLr: 0.0032, weightDecay: 0.04, weightDecayEnd: 0.2, warmupIterations: 12480, maxIterations: 499200 }
 */
export function sparkSchedule(options: SparkScheduleOptions): LrWdSchedule {
  const { batchSize, iterationsPerEpoch, epochs = 1600, warmupEpochs = 40, baseLr = 2e-4, weightDecay = 0.04, weightDecayEnd = 0.2 } = options;
  if (!(Number.isInteger(iterationsPerEpoch) && iterationsPerEpoch > 0)) {
    throw new Error(`sparkSchedule: iterationsPerEpoch is ${iterationsPerEpoch}, expected a whole number > 0`);
  }
  const schedule = {
    peakLr: peakLearningRate(baseLr, batchSize),
    weightDecay,
    weightDecayEnd,
    warmupIterations: warmupEpochs * iterationsPerEpoch,
    maxIterations: epochs * iterationsPerEpoch,
  };
  checkSchedule(schedule);
  return schedule;
}

function checkSchedule(schedule: LrWdSchedule): void {
  const { peakLr, weightDecay, weightDecayEnd, warmupIterations, maxIterations } = schedule;
  if (!(peakLr > 0)) throw new Error(`lr/wd schedule: peakLr is ${peakLr}, expected a number > 0`);
  if (!(weightDecay >= 0) || !(weightDecayEnd >= 0)) {
    throw new Error(`lr/wd schedule: weight decay goes ${weightDecay} → ${weightDecayEnd}, expected numbers >= 0`);
  }
  if (!(Number.isInteger(maxIterations) && maxIterations >= 2)) {
    throw new Error(`lr/wd schedule: maxIterations is ${maxIterations}, expected a whole number >= 2`);
  }
  // The cosine part divides by maxIterations - 1 - warm-up, so at least one iteration must follow warm-up.
  const warmup = roundHalfToEven(warmupIterations);
  if (!(warmup >= 0 && warmup < maxIterations - 1)) {
    throw new Error(
      `lr/wd schedule: warm-up of ${warmupIterations} iterations must be >= 0 and shorter than maxIterations - 1 = ${maxIterations - 1} ` +
        '(fewer warm-up epochs or more epochs)',
    );
  }
}

/**
 * The learning rate and weight decay of `iteration` (0-based, counted over the whole run: epoch ×
 * iterations per epoch + iteration in the epoch), as `lr_wd_annealing`: lr rises linearly from 0.5% of
 * the peak over the warm-up, then follows a cosine down to 0.1% of the peak at the last iteration;
 * weight decay follows a cosine from `weightDecay` to `weightDecayEnd` over the whole run.
 *
 * @example
 * const { lr, weightDecay } = lrWdAt(schedule, epoch * iterationsPerEpoch + iterationInEpoch);
 */
export function lrWdAt(schedule: LrWdSchedule, iteration: number): LrWd {
  checkSchedule(schedule);
  const { peakLr, weightDecay, weightDecayEnd, maxIterations } = schedule;
  if (!(Number.isInteger(iteration) && iteration >= 0 && iteration < maxIterations)) {
    throw new Error(`lrWdAt: iteration is ${iteration}, expected a whole number in [0, ${maxIterations - 1}]`);
  }
  const warmup = roundHalfToEven(schedule.warmupIterations);
  // Same operation order as the Python source, so the doubles agree.
  let lr: number;
  if (iteration < warmup) {
    lr = 0.005 * peakLr + (0.995 * peakLr * iteration) / warmup;
  } else {
    const ratio = (iteration - warmup) / (maxIterations - 1 - warmup);
    lr = 0.001 * peakLr + 0.999 * peakLr * (0.5 + 0.5 * Math.cos(Math.PI * ratio));
  }
  const ratio = iteration / (maxIterations - 1);
  const wd = weightDecayEnd + (weightDecay - weightDecayEnd) * (0.5 + 0.5 * Math.cos(Math.PI * ratio));
  return { lr, weightDecay: wd };
}

/** The range of learning rates and weight decays {@link applyLrWd} set (what SparK logs). */
export interface AppliedLrWd {
  minLr: number;
  maxLr: number;
  minWeightDecay: number;
  maxWeightDecay: number;
}

/**
 * Sets every group's `lr = lr × lrScale` and `weightDecay = weightDecay × weightDecayScale` (the second
 * half of `lr_wd_annealing`), so the `no_decay` group (scale 0) never decays. Returns the min/max set.
 *
 * @example
 * applyLrWd(lamb, lrWdAt(schedule, iteration));
 */
export function applyLrWd(optimizer: { readonly paramGroups: readonly ParamGroup[] }, { lr, weightDecay }: LrWd): AppliedLrWd {
  if (!Number.isFinite(lr) || !Number.isFinite(weightDecay)) {
    throw new Error(`applyLrWd: got lr ${lr} and weight decay ${weightDecay}, expected finite numbers`);
  }
  const applied: AppliedLrWd = { minLr: lr, maxLr: lr, minWeightDecay: weightDecay, maxWeightDecay: weightDecay };
  for (const group of optimizer.paramGroups) {
    group.lr = lr * group.lrScale;
    group.weightDecay = weightDecay * group.weightDecayScale;
    applied.minLr = Math.min(applied.minLr, group.lr);
    applied.maxLr = Math.max(applied.maxLr, group.lr);
    applied.minWeightDecay = Math.min(applied.minWeightDecay, group.weightDecay);
    applied.maxWeightDecay = Math.max(applied.maxWeightDecay, group.weightDecay);
  }
  return applied;
}

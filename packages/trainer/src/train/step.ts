import * as tf from '@tensorflow/tfjs-core';
import type { Optimizer } from '../optim/optimizer';
import { applyLrWd } from '../optim/schedule';
import type { AppliedLrWd, LrWd } from '../optim/schedule';
import { variableGradsReleasing } from './releasing-grads';
import type { LossOptions, TrainableModel } from './trainable';

/**
 * Thrown when a step's loss is NaN or infinite; the step's update was not applied.
 *
 * @example
 * try {
 *   await trainer.run();
 * } catch (error) {
 *   if (error instanceof NonFiniteLossError) console.error(`diverged at iteration ${error.iteration}`);
 * }
 */
export class NonFiniteLossError extends Error {
  override name = 'NonFiniteLossError';

  constructor(
    message: string,
    /** The loss that came back (NaN, Infinity or -Infinity). */
    readonly loss: number,
    /** The global iteration (0-based) whose loss it was. */
    readonly iteration: number,
  ) {
    super(message);
  }
}

export interface TrainStepOptions extends LossOptions {
  /**
   * This iteration's learning rate and weight decay (e.g. `lrWdAt(schedule, iteration)`), set on the
   * optimiser's groups before the forward pass, as the official loop anneals at the start of each
   * iteration. Without it the groups keep their current values.
   */
  lrWd?: LrWd;
  /** The global iteration, for error messages and {@link NonFiniteLossError}. Default 0. */
  iteration?: number;
}

export interface TrainStepResult {
  /** The loss of the batch before this step's update. */
  loss: number;
  /** Global L2 norm of all gradients before clipping. */
  globalGradNorm: number;
  /** The learning rates and weight decays the groups had for this step. */
  lrWd: AppliedLrWd;
}

/**
 * The lr/wd range the optimiser's groups hold now (what {@link applyLrWd} would report).
 *
 * @example
 * const { maxLr, maxWeightDecay } = currentLrWd(lamb);
 */
export function currentLrWd(optimizer: Pick<Optimizer, 'paramGroups'>): AppliedLrWd {
  const lrs = optimizer.paramGroups.map((group) => group.lr);
  const wds = optimizer.paramGroups.map((group) => group.weightDecay);
  return { minLr: Math.min(...lrs), maxLr: Math.max(...lrs), minWeightDecay: Math.min(...wds), maxWeightDecay: Math.max(...wds) };
}

/**
 * One training iteration in the order of SparK's `pre_train_one_ep`: set lr and weight decay, forward in
 * training mode, backward (gradients of every trainable parameter the loss depends on, by official name),
 * check the loss is finite, then the optimiser step (which computes the global gradient norm, clips and
 * updates). A non-finite loss throws {@link NonFiniteLossError} before anything is updated (BN running
 * statistics of that forward pass excepted, as in PyTorch). Leaves no tensor behind.
 *
 * Reads back two numbers, both asynchronously (never `dataSync`): the loss, before the update (the finite
 * check needs it, as the official loop's `loss.item()`), and the global gradient norm at the end of the
 * optimiser's step. Nothing else in the step waits for the device.
 *
 * @param images `[B, H, W, 3]`, ImageNet-normalised; not disposed.
 * @example
 * const { loss, globalGradNorm } = await trainStep(model, lamb, images, { lrWd: lrWdAt(schedule, iteration), random: maskRandom.next });
 */
export async function trainStep(
  model: TrainableModel,
  optimizer: Optimizer,
  images: tf.Tensor4D,
  options: TrainStepOptions = {},
): Promise<TrainStepResult> {
  const { lrWd, iteration = 0, active, random } = options;
  const applied = lrWd ? applyLrWd(optimizer, lrWd) : currentLrWd(optimizer);
  model.train(true);
  const optimized = new Map<tf.Variable, string>();
  for (const group of optimizer.paramGroups) for (const { name, variable } of group.variables) optimized.set(variable, name);
  const parameters = model.namedParameters().filter(({ variable }) => variable.trainable && optimized.has(variable));
  if (parameters.length === 0) {
    throw new Error(
      "trainStep: none of the model's parameters is in the optimiser's parameter groups (build the groups from model.namedParameters())",
    );
  }
  const { value, grads } = variableGradsReleasing(
    () => model.forward(images, { active, random }),
    parameters.map(({ variable }) => variable),
  );
  // variableGrads names gradients by the variables' engine names; the optimiser wants official names.
  const named = new Map<string, tf.Tensor>();
  for (const { variable } of parameters) {
    const grad = grads[variable.name];
    if (grad) named.set(optimized.get(variable)!, grad);
  }
  try {
    const loss = (await value.data())[0];
    if (!Number.isFinite(loss)) {
      throw new NonFiniteLossError(
        `the loss at iteration ${iteration} is ${loss}; the step was not applied (lower the learning rate, or check the data for NaN)`,
        loss,
        iteration,
      );
    }
    const { globalGradNorm } = await optimizer.step(named);
    return { loss, globalGradNorm, lrWd: applied };
  } finally {
    value.dispose();
    tf.dispose(Object.values(grads));
  }
}

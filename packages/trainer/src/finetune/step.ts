import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '@sparkmim/backbones';
import { SeededRandom, uniformFanIn, type NamedVariable } from '@sparkmim/sparse-ops';
import type { Optimizer } from '../optim/optimizer';
import { applyLrWd, type LrWd } from '../optim/schedule';
import { trainStep, type TrainStepResult } from '../train/step';
import { variableGradsReleasing } from '../train/releasing-grads';
import type { Classifier } from './classifier';
import { classificationLoss, type ClassificationLossOptions } from './loss';

export interface ClassifierStepOptions extends ClassificationLossOptions {
  /** This iteration's learning rate and weight decay (before each group's scales). */
  lrWd?: LrWd;
  /** The global iteration, for error messages. */
  iteration?: number;
}

/**
 * One fine-tuning iteration in the official order (`fine_tune_one_epoch`): set lr / wd, forward in
 * training mode, loss, backward, optimiser step (clipping inside the optimiser). Throws
 * `NonFiniteLossError` without updating on a NaN loss. Update an EMA after it if you keep one.
 *
 * @param images `[B, H, W, 3]`, ImageNet-normalised; `labels`: B class indices. Neither is disposed.
 * @example
 * const { loss } = await classifierTrainStep(classifier, adamw, images, labels, { lrWd: lrWdAt(schedule, it), labelSmoothing: 0.1 });
 */
export async function classifierTrainStep(
  classifier: Classifier,
  optimizer: Optimizer,
  images: tf.Tensor4D,
  labels: ArrayLike<number>,
  options: ClassifierStepOptions = {},
): Promise<TrainStepResult> {
  const { lrWd, iteration, ...lossOptions } = options;
  const labelTensor = tf.tensor1d(Array.from(labels), 'int32');
  try {
    return await trainStep(classifier.lossModel(labelTensor, lossOptions), optimizer, images, { lrWd, iteration });
  } finally {
    labelTensor.dispose();
  }
}

/**
 * A linear classifier on frozen features (a linear probe): features are standardised with the training
 * set's mean and standard deviation (kept with the weights), then one linear layer. Parameters `fc.weight`
 * `[C, K]`, `fc.bias`; `feature_mean`, `feature_std` as buffers in {@link LinearProbe.stateEntries}.
 *
 * @example
 * const probe = new LinearProbe({ featureSize: 64, numClasses: 12, seed: 0 });
 * probe.setStandardization(trainFeatures); // [N, 64]
 * await probe.trainStep(adamw, featuresBatch, labels, { lrWd, labelSmoothing: 0 });
 */
export class LinearProbe {
  readonly head: Linear;
  readonly mean: tf.Variable;
  readonly std: tf.Variable;

  constructor(readonly config: { featureSize: number; numClasses: number; seed?: number }) {
    const { featureSize, numClasses, seed } = config;
    const random = new SeededRandom(seed);
    this.head = new Linear({
      inFeatures: featureSize,
      outFeatures: numClasses,
      weightInit: uniformFanIn(featureSize, random),
      biasInit: uniformFanIn(featureSize, random),
    });
    this.mean = tf.tidy(() => tf.variable(tf.zeros([featureSize]), false));
    this.std = tf.tidy(() => tf.variable(tf.ones([featureSize]), false));
  }

  get numClasses(): number {
    return this.config.numClasses;
  }

  /** Sets the standardisation from training features `[N, C]` (std floored at 1e-6). */
  setStandardization(features: tf.Tensor2D): void {
    tf.tidy(() => {
      const { mean, variance } = tf.moments(features, 0);
      this.mean.assign(mean);
      this.std.assign(tf.maximum(tf.sqrt(variance), 1e-6));
    });
  }

  /** `features: [B, C]` → logits `[B, K]`. */
  logits(features: tf.Tensor2D): tf.Tensor2D {
    if (features.rank !== 2 || features.shape[1] !== this.config.featureSize) {
      throw new Error(`LinearProbe: expected features [B, ${this.config.featureSize}], got [${features.shape.join(', ')}]`);
    }
    return tf.tidy(() => this.head.apply(tf.div(tf.sub(features, this.mean), this.std)) as tf.Tensor2D);
  }

  namedParameters(): NamedVariable[] {
    return this.head.namedParameters('fc.');
  }

  stateEntries(): NamedVariable[] {
    return [
      ...this.head.stateEntries('fc.'),
      { name: 'feature_mean', variable: this.mean, layout: 'same' },
      { name: 'feature_std', variable: this.std, layout: 'same' },
    ];
  }

  /** One optimiser step on a batch of features `[B, C]` and B labels. */
  async trainStep(
    optimizer: Optimizer,
    features: tf.Tensor2D,
    labels: ArrayLike<number>,
    options: ClassifierStepOptions = {},
  ): Promise<{ loss: number }> {
    const { lrWd, ...lossOptions } = options;
    if (lrWd) applyLrWd(optimizer, lrWd);
    const labelTensor = tf.tensor1d(Array.from(labels), 'int32');
    const parameters = this.namedParameters();
    const { value, grads } = variableGradsReleasing(
      () => classificationLoss(this.logits(features), labelTensor, this.numClasses, lossOptions),
      parameters.map(({ variable }) => variable),
    );
    try {
      const loss = (await value.data())[0];
      const named = new Map(parameters.map(({ name, variable }) => [name, grads[variable.name]]));
      await optimizer.step(named);
      return { loss };
    } finally {
      labelTensor.dispose();
      value.dispose();
      tf.dispose(Object.values(grads));
    }
  }

  dispose(): void {
    this.head.dispose();
    this.mean.dispose();
    this.std.dispose();
  }
}

// A stand-in model and an in-memory data source for the loop's tests: small enough that a multi-epoch run
// takes a second on the cpu backend, with the parts that matter to training (a buffer updated in the
// forward pass, a mask token, an encoder under `sparse_encoder.sp_cnn.`, a random mask per step).
import * as tf from '@tensorflow/tfjs-core';
import { applyMask, randomPatchMask, upsampleMask } from '@sparkmim/masking';
import { Module } from '@sparkmim/sparse-ops';
import type { LossOptions } from './trainable';
import { InMemorySource } from '../data/in-memory';
import { Lamb } from '../optim/lamb';
import { paramGroupsFromVariables } from '../optim/param-groups';

class Conv extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(kernel: number, inChannels: number, outChannels: number, seed: number) {
    super();
    this.weight = this.registerParameter('weight', tf.randomNormal([kernel, kernel, inChannels, outChannels], 0, 0.3, 'float32', seed), 'conv2d');
    this.bias = this.registerParameter('bias', tf.randomNormal([outChannels], 0, 0.05, 'float32', seed + 1));
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.add(tf.conv2d(x, this.weight as tf.Tensor4D, 1, 'same'), this.bias);
  }
}

class RunningMean extends Module {
  readonly runningMean: tf.Variable;
  readonly numBatchesTracked: tf.Variable;

  constructor(channels: number) {
    super();
    this.runningMean = this.registerBuffer('running_mean', tf.zeros([channels]));
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', tf.scalar(0, 'int32'));
  }

  update(x: tf.Tensor4D): void {
    if (!this.training) return;
    const mean = tf.mean(x, [0, 1, 2]);
    this.runningMean.assign(tf.add(tf.mul(this.runningMean, 0.9), tf.mul(mean, 0.1)));
    this.numBatchesTracked.assign(tf.add(this.numBatchesTracked, tf.scalar(1, 'int32')));
  }
}

class Encoder extends Module {
  readonly conv1: Conv;
  readonly bn1: RunningMean;

  constructor(seed: number) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv(3, 3, 4, seed));
    this.bn1 = this.registerModule('bn1', new RunningMean(4));
  }
}

class Wrapper extends Module {
  constructor(name: string, child: Module) {
    super();
    this.registerModule(name, child);
  }
}

class Tokens extends Module {
  readonly token: tf.Variable;

  constructor(channels: number, seed: number) {
    super();
    this.token = this.registerParameter('0', tf.randomNormal([channels], 0, 0.5, 'float32', seed), 'token');
  }
}

/** The stand-in: masked image → conv (+ running mean buffer) → mask-token fill → 3x3 conv → masked L2. */
export class TinyModel extends Module {
  readonly encoder: Encoder;
  readonly proj: Conv;
  readonly tokens: Tokens;
  readonly patch = 4;
  forwardCalls = 0;
  /** When set, the loss of that forward call (1-based) comes out NaN. */
  nanAtCall: number | undefined;

  constructor(seed = 1) {
    super();
    this.encoder = new Encoder(seed);
    this.registerModule('sparse_encoder', new Wrapper('sp_cnn', this.encoder));
    // 3x3, so masked pixels next to visible ones see the encoder: every parameter gets a gradient.
    this.proj = new Conv(3, 4, 3, seed + 10);
    this.registerModule('dense_decoder', new Wrapper('proj', this.proj));
    this.tokens = this.registerModule('mask_tokens', new Tokens(4, seed + 20));
  }

  forward(images: tf.Tensor4D, { active, random }: LossOptions = {}): tf.Scalar {
    this.forwardCalls++;
    return tf.tidy(() => {
      const [batch, height, width] = images.shape;
      const mask = active ?? randomPatchMask(batch, [height / this.patch, width / this.patch], 0.5, { random: random ?? Math.random });
      const features = tf.relu(this.encoder.conv1.apply(applyMask(images, mask)));
      this.encoder.bn1.update(features);
      const pixels = upsampleMask(mask, [height, width]);
      const filled = tf.add(tf.mul(features, pixels), tf.mul(tf.sub(1, pixels), this.tokens.token));
      const reconstruction = this.proj.apply(filled as tf.Tensor4D);
      const errors = tf.mul(tf.square(tf.sub(reconstruction, images)), tf.sub(1, pixels));
      const loss = tf.div(tf.sum(errors), tf.add(tf.mul(tf.sum(tf.sub(1, pixels)), 3), 1e-8)) as tf.Scalar;
      return this.forwardCalls === this.nanAtCall ? (tf.mul(loss, NaN) as tf.Scalar) : loss;
    });
  }
}

/** `count` random pictures of `size` x `size` (values 0..255, fixed by `seed`) as an in-memory source with flips. */
export function randomImages(count: number, size = 8, seed = 0): InMemorySource {
  const pixels = tf.randomUniform([count, size, size, 3], 0, 255, 'float32', seed) as tf.Tensor4D;
  const source = InMemorySource.fromTensor(pixels, { flip: true });
  pixels.dispose();
  return source;
}

/** A tiny model, LAMB over its parameters and `imageCount` random images: what the loop and checkpoint specs train. */
export interface TinyRun {
  model: TinyModel;
  optimizer: Lamb;
  data: InMemorySource;
  batchSize: number;
}

export function setupTinyRun(initSeed: number, imageCount: number): TinyRun {
  const model = new TinyModel(initSeed);
  const optimizer = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, 0.95] });
  return { model, optimizer, data: randomImages(imageCount), batchSize: 4 };
}

export function disposeTinyRun(run: { model: TinyModel; optimizer: Lamb; data: InMemorySource }): void {
  run.data.dispose();
  run.optimizer.dispose();
  run.model.dispose();
}

/** Every state entry's values by name, for exact comparisons between runs. */
export async function stateValues(model: TinyModel): Promise<Record<string, number[]>> {
  const values: Record<string, number[]> = {};
  for (const { name, variable } of model.stateEntries()) values[name] = Array.from(await variable.data());
  return values;
}

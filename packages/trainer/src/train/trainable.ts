import type * as tf from '@tensorflow/tfjs-core';
import type { NamedVariable } from '@sparkmim/sparse-ops';

/** Options of one training forward pass. */
export interface LossOptions {
  /** `[B, f, f, 1]` patch mask, 1 = visible. Without it the model draws one with `random`. */
  active?: tf.Tensor4D;
  /** Uniform numbers in [0, 1) for the mask (and any other draw of the forward pass). */
  random?: () => number;
}

/**
 * What the training loop needs from a model: its parameters and state with official PyTorch names (as
 * `Module` of @sparkmim/sparse-ops gives them), a training flag, and the loss of a batch. `SparkModel`
 * is one; a stand-in with the same members trains just the same.
 */
export interface TrainableModel {
  /** Trainable parameters in PyTorch's `named_parameters()` order. */
  namedParameters(): NamedVariable[];
  /** Parameters then buffers, PyTorch's `state_dict()` order: what checkpoints hold. */
  stateEntries(): NamedVariable[];
  /** Training (true) or evaluation mode. */
  train(training?: boolean): unknown;
  /**
   * The training loss of `images` (`[B, H, W, 3]`, ImageNet-normalised): a scalar the caller disposes.
   * Called inside `tf.variableGrads`, so it must be a pure function of the parameters (buffers such as BN
   * running statistics may be assigned).
   */
  forward(images: tf.Tensor4D, options?: LossOptions): tf.Scalar;
  /** Position of the model's own random stream (drop path), saved in checkpoints when present. */
  randomState?(): number | undefined;
  /** Restores what {@link TrainableModel.randomState} returned. */
  setRandomState?(state: number): void;
}

/** The prefix of the encoder's entries in SparK's state dict; removed for encoder-only weights. */
export const ENCODER_STATE_PREFIX = 'sparse_encoder.sp_cnn.';

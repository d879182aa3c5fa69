import * as tf from '@tensorflow/tfjs-core';
import { fromTorchLayout, toTorchLayout, torchShapeOf } from '@sparkmim/sparse-ops';
import type { NamedVariable, TorchTensorData } from '@sparkmim/sparse-ops';

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

/**
 * A model's state dict in PyTorch names and layouts (F32 data), optionally only the keys under
 * `prefix`, with the prefix removed (e.g. {@link ENCODER_STATE_PREFIX} for timm-style backbone weights).
 *
 * @example
 * const state = await modelTorchState(model); // 'dense_decoder.proj.weight' → { shape: [3, 2, 1, 1], data }
 * const encoder = await modelTorchState(model, { prefix: ENCODER_STATE_PREFIX }); // 'conv1.weight' → ...
 */
export async function modelTorchState(model: Pick<TrainableModel, 'stateEntries'>, { prefix = '' }: { prefix?: string } = {}): Promise<Map<string, TorchTensorData>> {
  const state = new Map<string, TorchTensorData>();
  for (const entry of model.stateEntries()) {
    if (!entry.name.startsWith(prefix)) continue;
    const torchTensor = toTorchLayout(entry.variable, entry.layout);
    try {
      const data = (await torchTensor.data()) as Float32Array;
      state.set(entry.name.slice(prefix.length), { shape: torchTensor.shape, data: Float32Array.from(data) });
    } finally {
      torchTensor.dispose();
    }
  }
  if (prefix && state.size === 0) {
    throw new Error(`modelTorchState: the model has no state entry under '${prefix}' (it has ${describeNames(model.stateEntries().map((entry) => entry.name))})`);
  }
  return state;
}

export interface AssignStateOptions {
  /** Every model entry must be in `state` and every key of `state` in the model (default true). */
  strict?: boolean;
  /** Error messages start with this. */
  caller?: string;
}

/** What {@link assignModelState} left out (only when not strict). */
export interface AssignStateReport {
  missing: string[];
  unexpected: string[];
}

/**
 * Copies a PyTorch-layout state dict into the model's parameters and buffers. Everything is checked
 * (names, shapes) before anything changes; errors list every problem.
 *
 * @example
 * assignModelState(model, stateFromSafetensors(bytes, { stripPrefix: 'param.' }));
 */
export function assignModelState(
  model: Pick<TrainableModel, 'stateEntries'>,
  state: ReadonlyMap<string, TorchTensorData>,
  { strict = true, caller = 'assignModelState' }: AssignStateOptions = {},
): AssignStateReport {
  const entries = model.stateEntries();
  const known = new Set(entries.map((entry) => entry.name));
  const missing: string[] = [];
  const misShaped: string[] = [];
  const assignments: [NamedVariable, TorchTensorData][] = [];
  for (const entry of entries) {
    const stored = state.get(entry.name);
    if (!stored) {
      missing.push(entry.name);
      continue;
    }
    const expected = torchShapeOf(entry.variable.shape, entry.layout);
    if (stored.shape.length !== expected.length || stored.shape.some((size, i) => size !== expected[i])) {
      misShaped.push(`${entry.name}: expected [${expected.join(', ')}], got [${stored.shape.join(', ')}]`);
      continue;
    }
    if (stored.data.length !== expected.reduce((a, b) => a * b, 1)) {
      misShaped.push(`${entry.name}: shape [${expected.join(', ')}] but ${stored.data.length} values`);
      continue;
    }
    assignments.push([entry, stored]);
  }
  const unexpected = [...state.keys()].filter((key) => !known.has(key)).sort();
  const problems: string[] = [];
  if (misShaped.length) problems.push(`mis-shaped: ${misShaped.join('; ')}`);
  if (strict && missing.length) problems.push(`missing: ${describeNames(missing)}`);
  if (strict && unexpected.length) problems.push(`unexpected: ${describeNames(unexpected)}`);
  if (problems.length) throw new Error(`${caller}: the state dict does not fit the model (${problems.join('; ')})`);
  for (const [entry, stored] of assignments) {
    tf.tidy(() => {
      const value = fromTorchLayout({ shape: stored.shape, data: stored.data }, entry.layout);
      // Integer buffers (num_batches_tracked) are stored as F32, as in the golden files.
      entry.variable.assign(value.dtype === entry.variable.dtype ? value : tf.cast(value, entry.variable.dtype));
    });
  }
  return { missing, unexpected };
}

/** A short list of names for error messages. */
export function describeNames(names: readonly string[]): string {
  if (names.length === 0) return 'no entries';
  return names.length <= 6 ? names.join(', ') : `${names.slice(0, 6).join(', ')}, ... (${names.length} in all)`;
}

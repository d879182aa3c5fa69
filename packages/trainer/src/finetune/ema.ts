import * as tf from '@tensorflow/tfjs-core';
import type { NamedVariable } from '@sparkmim/sparse-ops';

/**
 * An exponential moving average of a model's state (timm's `ModelEmaV2`, which the official fine-tuning
 * updates after every optimiser step with decay 0.9999): for every parameter and float buffer (BN running
 * statistics included), `ema = decay · ema + (1 - decay) · value`. Integer buffers (BN's
 * `num_batches_tracked`) are copied. Evaluate the average with {@link WeightEma.withAverage}.
 *
 * @example
 * const ema = new WeightEma(classifier.stateEntries(), 0.999);
 * // after each optimiser step:
 * ema.update(classifier.stateEntries());
 * const accuracy = await ema.withAverage(classifier.stateEntries(), () => evaluate(classifier, batches));
 * ema.dispose();
 */
export class WeightEma {
  readonly decay: number;
  private readonly averages = new Map<string, tf.Variable>();

  constructor(entries: readonly NamedVariable[], decay: number) {
    if (!(decay >= 0 && decay < 1)) throw new Error(`WeightEma: decay must be in [0, 1), got ${decay}`);
    this.decay = decay;
    for (const { name, variable } of entries) {
      const copy = variable.clone();
      this.averages.set(name, tf.variable(copy, false));
      copy.dispose(); // the variable keeps its own reference to the data
    }
  }

  /** Moves every average towards the model's current value. `entries` must name what the constructor got. */
  update(entries: readonly NamedVariable[]): void {
    for (const { name, variable } of entries) {
      const average = this.averages.get(name);
      if (!average) throw new Error(`WeightEma.update: '${name}' is not among the ${this.averages.size} averaged entries`);
      if (variable.dtype !== 'float32') {
        average.assign(variable);
        continue;
      }
      tf.tidy(() => average.assign(tf.add(tf.mul(average, this.decay), tf.mul(variable, 1 - this.decay))));
    }
  }

  /** The averages by name (owned by this object: do not dispose). */
  state(): Map<string, tf.Variable> {
    return new Map(this.averages);
  }

  /** Restores averages saved from {@link WeightEma.state} (shapes must match). */
  setState(state: ReadonlyMap<string, tf.Tensor>): void {
    for (const [name, average] of this.averages) {
      const saved = state.get(name);
      if (!saved) throw new Error(`WeightEma.setState: '${name}' is missing from the saved state`);
      if (saved.shape.join() !== average.shape.join()) {
        throw new Error(`WeightEma.setState: '${name}' is [${saved.shape.join(', ')}], expected [${average.shape.join(', ')}]`);
      }
      tf.tidy(() => average.assign(saved.dtype === average.dtype ? saved : tf.cast(saved, average.dtype)));
    }
  }

  /**
   * Runs `fn` with the averages copied into the model's variables, then puts the model's own values back
   * (even when `fn` throws): evaluation of the EMA model without a second model in memory.
   */
  async withAverage<T>(entries: readonly NamedVariable[], fn: () => Promise<T> | T): Promise<T> {
    const saved = entries.map(({ name, variable }) => {
      const average = this.averages.get(name);
      if (!average) throw new Error(`WeightEma.withAverage: '${name}' is not among the averaged entries`);
      return { variable, average, copy: variable.clone() };
    });
    for (const { variable, average } of saved) variable.assign(average);
    try {
      return await fn();
    } finally {
      for (const { variable, copy } of saved) {
        variable.assign(copy);
        copy.dispose();
      }
    }
  }

  dispose(): void {
    for (const average of this.averages.values()) average.dispose();
    this.averages.clear();
  }
}

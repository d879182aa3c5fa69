import * as tf from '@tensorflow/tfjs-core';
import { checkMaxGradNorm, clipGradNormScale } from './clip';
import { NamedOptimizerBase } from './optimizer';
import type { NamedGradients, ParamGroupInit, StepOptions, StepResult } from './optimizer';

export interface AdamWOptions {
  /** Learning rate of groups that set none. Default 1e-3. */
  lr?: number;
  /** (beta1, beta2); default (0.9, 0.999). SparK uses {@link defaultBetas}. */
  betas?: readonly [number, number];
  /** Added to sqrt(v̂). Default 1e-8 (torch's). */
  eps?: number;
  /** Weight decay of groups that set none. Default 1e-2 (torch's). */
  weightDecay?: number;
  /**
   * Clip the global gradient norm to this first, as `torch.nn.utils.clip_grad_norm_` (SparK's `--clip`,
   * 5 by default, used with AdamW and SGD): scale = min(1, max / (norm + 1e-6)). Default: no clipping.
   */
  maxGradNorm?: number;
}

/**
 * AdamW as `torch.optim.AdamW` (torch 1.13): p *= 1 - lr · wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²;
 * p -= (lr / (1 - b1^t)) · m / (sqrt(v) / sqrt(1 - b2^t) + eps), with a step count t per parameter
 * (torch's `state['step']`). One of SparK's `--opt` choices (`adamw`), usually with `maxGradNorm: 5`.
 *
 * @example
 * const adamw = new AdamW(paramGroupsFromVariables(namedVariables), { betas: defaultBetas('convnext_small'), maxGradNorm: 5 });
 * applyLrWd(adamw, lrWdAt(schedule, iteration));
 * await adamw.step(grads);
 */
export class AdamW extends NamedOptimizerBase {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly maxGradNorm: number | undefined;
  private readonly steps = new Map<string, number>();

  constructor(paramGroups: readonly ParamGroupInit[], options: AdamWOptions = {}) {
    super('AdamW', paramGroups, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 1e-2 }, ['exp_avg', 'exp_avg_sq']);
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.maxGradNorm = options.maxGradNorm;
    for (const [label, beta] of [
      ['beta1', this.beta1],
      ['beta2', this.beta2],
    ] as const) {
      if (!(beta >= 0 && beta < 1)) throw new Error(`AdamW: ${label} is ${beta}, expected a number in [0, 1)`);
    }
    if (!(this.eps >= 0)) throw new Error(`AdamW: eps is ${this.eps}, expected a number >= 0`);
    checkMaxGradNorm('AdamW', this.maxGradNorm);
  }

  /**
   * One AdamW step with `grads` (by parameter name; not disposed). Returns the global gradient norm
   * before clipping.
   *
   * @example
   * const { globalGradNorm } = await adamw.step(grads);
   */
  async step(grads: NamedGradients, options: StepOptions = {}): Promise<StepResult> {
    const checked = this.checkGradients(grads);
    const globalNorm = this.globalNorm(checked, options.globalGradNorm);
    for (const name of checked.keys()) {
      this.slot('exp_avg', name);
      this.slot('exp_avg_sq', name);
    }
    const { beta1, beta2 } = this;
    tf.tidy(() => {
      const clipScale = clipGradNormScale(globalNorm, this.maxGradNorm);
      for (const group of this.paramGroups) {
        for (const { name, variable } of group.variables) {
          const rawGrad = checked.get(name);
          if (!rawGrad) continue;
          const step = (this.steps.get(name) ?? 0) + 1;
          this.steps.set(name, step);
          const biasCorrection1 = 1 - beta1 ** step;
          const biasCorrection2 = 1 - beta2 ** step;
          const expAvg = this.slot('exp_avg', name);
          const expAvgSq = this.slot('exp_avg_sq', name);
          tf.tidy(() => {
            const grad = tf.mul(rawGrad, clipScale);
            const decayed = tf.mul(variable, 1 - group.lr * group.weightDecay);
            const newExpAvg = tf.add(tf.mul(expAvg, beta1), tf.mul(grad, 1 - beta1));
            const newExpAvgSq = tf.add(tf.mul(expAvgSq, beta2), tf.mul(tf.mul(grad, grad), 1 - beta2));
            const denom = tf.add(tf.div(tf.sqrt(newExpAvgSq), Math.sqrt(biasCorrection2)), this.eps);
            const stepSize = group.lr / biasCorrection1;
            variable.assign(tf.sub(decayed, tf.mul(tf.div(newExpAvg, denom), stepSize)));
            expAvg.assign(newExpAvg);
            expAvgSq.assign(newExpAvgSq);
          });
        }
      }
    });
    const norm = (await globalNorm.data())[0];
    globalNorm.dispose();
    return { globalGradNorm: norm };
  }

  protected override isScalarKey(key: string): boolean {
    return key.startsWith('step.');
  }

  protected override scalarState(): Map<string, number> {
    return new Map([...this.steps].map(([name, step]) => [`step.${name}`, step]));
  }

  protected override applyScalarState(scalars: Map<string, number>, paramsWithSlots: ReadonlySet<string>): void {
    const steps = new Map<string, number>();
    for (const [key, step] of scalars) {
      const name = key.slice('step.'.length);
      if (!paramsWithSlots.has(name)) throw new Error(`AdamW.setState: '${key}' has no exp_avg/exp_avg_sq beside it`);
      if (!Number.isInteger(step) || step < 0) throw new Error(`AdamW.setState: '${key}' is ${step}, expected a whole number >= 0`);
      steps.set(name, step);
    }
    for (const name of paramsWithSlots) {
      if (!steps.has(name)) throw new Error(`AdamW.setState: '${name}' has moments but no 'step.${name}'`);
    }
    this.steps.clear();
    for (const [name, step] of steps) this.steps.set(name, step);
  }
}

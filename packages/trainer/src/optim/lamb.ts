import * as tf from '@tensorflow/tfjs-core';
import { NamedOptimizerBase } from './optimizer';
import type { NamedGradients, ParamGroupInit, StepOptions, StepResult } from './optimizer';

export interface LambOptions {
  /** Learning rate of groups that set none; a schedule usually overwrites it each iteration. Default 1e-3. */
  lr?: number;
  /** (beta1, beta2); default (0.9, 0.999). SparK uses {@link defaultBetas}: 0.95 for ResNets. */
  betas?: readonly [number, number];
  /** Added to sqrt(v̂) (after the square root). Default 1e-6. */
  eps?: number;
  /** Weight decay of groups that set none. Default 0 (SparK's groups get it from the schedule). */
  weightDecay?: number;
  /** The global gradient norm is scaled down to this when above it. Default 5.0 (SparK's value); `Infinity` never clips. */
  maxGradNorm?: number;
  /** Divide the moments by 1 - beta^step. Default true. */
  biasCorrection?: boolean;
  /** Scale the gradient by 1 - beta1 in the first moment. Default true. */
  gradAveraging?: boolean;
  /** LAMBC: cap the trust ratio at 1. Default false. */
  trustClip?: boolean;
  /** Apply the trust ratio to groups with weight decay 0 too. Default false. */
  alwaysAdapt?: boolean;
}

/**
 * LAMB exactly as SparK trains with it (`utils/lamb.py`, `TheSameAsTimmLAMB`, a copy of timm 0.5.4's Lamb):
 *
 * 1. the global L2 norm of all gradients; if above `maxGradNorm`, every gradient is scaled by maxGradNorm / norm;
 * 2. Adam moments m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g²; update = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps)
 *    with bc = 1 - b^step (one step count shared by all groups, as the official groups step together);
 * 3. in groups with weight decay ≠ 0: update += wd · p, then update *= ‖p‖ / ‖update‖ (the trust ratio; 1 when
 *    either norm is 0). Groups with weight decay 0 get no trust ratio unless `alwaysAdapt`;
 * 4. p -= lr · update.
 *
 * Parameters are updated in place (`variable.assign`); `step` resolves once the norm is read back.
 *
 * @example
 * const lamb = new Lamb(paramGroupsFromVariables(namedVariables), { betas: defaultBetas('resnet50') });
 * applyLrWd(lamb, lrWdAt(schedule, iteration));
 * const { globalGradNorm } = await lamb.step(grads);
 * lamb.dispose();
 */
export class Lamb extends NamedOptimizerBase {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly maxGradNorm: number;
  readonly biasCorrection: boolean;
  readonly gradAveraging: boolean;
  readonly trustClip: boolean;
  readonly alwaysAdapt: boolean;
  private steps = 0;

  constructor(paramGroups: readonly ParamGroupInit[], options: LambOptions = {}) {
    super('Lamb', paramGroups, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 0 }, ['exp_avg', 'exp_avg_sq']);
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-6;
    this.maxGradNorm = options.maxGradNorm ?? 5.0;
    this.biasCorrection = options.biasCorrection ?? true;
    this.gradAveraging = options.gradAveraging ?? true;
    this.trustClip = options.trustClip ?? false;
    this.alwaysAdapt = options.alwaysAdapt ?? false;
    for (const [label, beta] of [
      ['beta1', this.beta1],
      ['beta2', this.beta2],
    ] as const) {
      if (!(beta >= 0 && beta < 1)) throw new Error(`Lamb: ${label} is ${beta}, expected a number in [0, 1)`);
    }
    if (!(this.eps >= 0)) throw new Error(`Lamb: eps is ${this.eps}, expected a number >= 0`);
    if (!(this.maxGradNorm > 0)) throw new Error(`Lamb: maxGradNorm is ${this.maxGradNorm}, expected a number > 0`);
  }

  /** Steps taken so far (torch's `group['step']`, shared by all groups). */
  get stepCount(): number {
    return this.steps;
  }

  /**
   * One LAMB step with `grads` (by parameter name; not disposed). Returns the global gradient norm before
   * clipping (computed over `grads`, or `options.globalGradNorm` when given).
   *
   * @example
   * const { globalGradNorm } = await lamb.step({ 'proj.weight': gradWeight, 'proj.bias': gradBias });
   */
  async step(grads: NamedGradients, options: StepOptions = {}): Promise<StepResult> {
    const checked = this.checkGradients(grads);
    const globalNorm = this.globalNorm(checked, options.globalGradNorm);
    this.steps += 1;
    const { beta1, beta2 } = this;
    const beta3 = this.gradAveraging ? 1 - beta1 : 1;
    const biasCorrection1 = this.biasCorrection ? 1 - beta1 ** this.steps : 1;
    const biasCorrection2 = this.biasCorrection ? 1 - beta2 ** this.steps : 1;
    // Moments start at zero when a parameter first gets a gradient (torch's lazy state).
    for (const name of checked.keys()) {
      this.slot('exp_avg', name);
      this.slot('exp_avg_sq', name);
    }
    tf.tidy(() => {
      // 1 / where(norm > max, norm / max, 1): the official expression, kept on the device.
      const maxNorm = tf.scalar(this.maxGradNorm);
      const clipScale = tf.div(1, tf.where(tf.greater(globalNorm, maxNorm), tf.div(globalNorm, maxNorm), tf.onesLike(globalNorm)));
      for (const group of this.paramGroups) {
        for (const { name, variable } of group.variables) {
          const rawGrad = checked.get(name);
          if (!rawGrad) continue;
          const expAvg = this.slot('exp_avg', name);
          const expAvgSq = this.slot('exp_avg_sq', name);
          tf.tidy(() => {
            const grad = tf.mul(rawGrad, clipScale);
            const newExpAvg = tf.add(tf.mul(expAvg, beta1), tf.mul(grad, beta3));
            const newExpAvgSq = tf.add(tf.mul(expAvgSq, beta2), tf.mul(tf.mul(grad, grad), 1 - beta2));
            const denom = tf.add(tf.div(tf.sqrt(newExpAvgSq), Math.sqrt(biasCorrection2)), this.eps);
            let update = tf.div(tf.div(newExpAvg, biasCorrection1), denom);
            if (group.weightDecay !== 0) update = tf.add(update, tf.mul(variable, group.weightDecay));
            if (group.weightDecay !== 0 || this.alwaysAdapt) {
              // Layer-wise adaptation: 1 when either norm is 0 (the official nested where).
              const weightNorm = tf.norm(variable);
              const updateNorm = tf.norm(update);
              const one = tf.onesLike(weightNorm);
              let trustRatio = tf.where(tf.greater(weightNorm, 0), tf.where(tf.greater(updateNorm, 0), tf.div(weightNorm, updateNorm), one), one);
              if (this.trustClip) trustRatio = tf.minimum(trustRatio, one);
              update = tf.mul(update, trustRatio);
            }
            variable.assign(tf.sub(variable, tf.mul(update, group.lr)));
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
    return key === 'step';
  }

  protected override scalarState(): Map<string, number> {
    return new Map([['step', this.steps]]);
  }

  protected override applyScalarState(scalars: Map<string, number>): void {
    // Every parameter shares this count, so moments of any parameter may come with it.
    const step = scalars.get('step');
    if (step === undefined || !Number.isInteger(step) || step < 0) {
      throw new Error(`Lamb.setState: expected a scalar 'step' holding a whole number >= 0, got ${step}`);
    }
    this.steps = step;
  }
}

import * as tf from '@tensorflow/tfjs-core';
import { checkMaxGradNorm, clipGradNormScale } from './clip';
import { NamedOptimizerBase } from './optimizer';
import type { NamedGradients, ParamGroupInit, StepOptions, StepResult } from './optimizer';

export interface SgdOptions {
  /** Learning rate of groups that set none (torch requires one; a schedule usually sets it). Default 1e-3. */
  lr?: number;
  /** Momentum factor. Default 0.9 (SparK's `sgd` choice). */
  momentum?: number;
  /** Nesterov momentum. Default true (SparK's `sgd` choice). */
  nesterov?: boolean;
  /** Weight decay (L2, added to the gradient) of groups that set none. Default 0. */
  weightDecay?: number;
  /** Clip the global gradient norm first, as `torch.nn.utils.clip_grad_norm_`. Default: no clipping. */
  maxGradNorm?: number;
}

/**
 * SGD with momentum as `torch.optim.SGD` (dampening 0): d = g + wd · p; buf = d at the first step, then
 * buf = momentum · buf + d; with Nesterov d += momentum · buf, else d = buf; p -= lr · d. SparK's `sgd`
 * choice is momentum 0.9 with Nesterov, the defaults here.
 *
 * @example
 * const sgd = new Sgd(paramGroupsFromVariables(namedVariables), { lr: 0.1, maxGradNorm: 5 });
 * await sgd.step(grads);
 */
export class Sgd extends NamedOptimizerBase {
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly maxGradNorm: number | undefined;

  constructor(paramGroups: readonly ParamGroupInit[], options: SgdOptions = {}) {
    super('Sgd', paramGroups, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 0 }, ['momentum_buffer']);
    this.momentum = options.momentum ?? 0.9;
    this.nesterov = options.nesterov ?? true;
    this.maxGradNorm = options.maxGradNorm;
    if (!(this.momentum >= 0)) throw new Error(`Sgd: momentum is ${this.momentum}, expected a number >= 0`);
    if (this.nesterov && this.momentum === 0) throw new Error('Sgd: Nesterov momentum needs momentum > 0, got momentum 0');
    checkMaxGradNorm('Sgd', this.maxGradNorm);
  }

  /**
   * One SGD step with `grads` (by parameter name; not disposed). Returns the global gradient norm before
   * clipping.
   *
   * @example
   * const { globalGradNorm } = await sgd.step(grads);
   */
  async step(grads: NamedGradients, options: StepOptions = {}): Promise<StepResult> {
    const checked = this.checkGradients(grads);
    const globalNorm = this.globalNorm(checked, options.globalGradNorm);
    const { momentum } = this;
    tf.tidy(() => {
      const clipScale = clipGradNormScale(globalNorm, this.maxGradNorm);
      for (const group of this.paramGroups) {
        for (const { name, variable } of group.variables) {
          const rawGrad = checked.get(name);
          if (!rawGrad) continue;
          const firstStep = !this.hasSlots(name);
          // Kept outside the inner tidy: a new slot variable must outlive it.
          const buffer = momentum !== 0 ? this.slot('momentum_buffer', name) : undefined;
          tf.tidy(() => {
            let direction = tf.mul(rawGrad, clipScale);
            if (group.weightDecay !== 0) direction = tf.add(direction, tf.mul(variable, group.weightDecay));
            if (buffer) {
              // torch starts the buffer at the first gradient itself, not at momentum · 0 + d.
              const newBuffer = firstStep ? direction : tf.add(tf.mul(buffer, momentum), direction);
              direction = this.nesterov ? tf.add(direction, tf.mul(newBuffer, momentum)) : newBuffer;
              buffer.assign(newBuffer);
            }
            variable.assign(tf.sub(variable, tf.mul(direction, group.lr)));
          });
        }
      }
    });
    const norm = (await globalNorm.data())[0];
    globalNorm.dispose();
    return { globalGradNorm: norm };
  }

  protected override isScalarKey(): boolean {
    return false;
  }

  protected override applyScalarState(scalars: Map<string, number>): void {
    if (scalars.size > 0) throw new Error(`Sgd.setState: unexpected entries ${[...scalars.keys()].join(', ')}`);
  }
}
